"""SI units. Everything inside dlgpu is stored in SI base units (s, bytes, J, W, FLOP); only
``report`` turns them into human strings. These helpers exist so conversions are written once."""

from __future__ import annotations

KIB = 1024
MIB = 1024**2
GIB = 1024**3
GB = 10**9

MINUTE_S = 60.0
HOUR_S = 3600.0
DAY_S = 86400.0


def gib(n_bytes: float) -> float:
    return n_bytes / GIB


def format_bytes(n_bytes: float | None) -> str:
    """Binary units (GiB), as allocators and `free` report them."""
    if n_bytes is None:
        return "-"
    for unit, size in (("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
        if abs(n_bytes) >= size:
            return f"{n_bytes / size:.2f} {unit}"
    return f"{n_bytes:.0f} B"


def format_duration(seconds: float | None) -> str:
    """A human duration: '850 ms', '12.3 s', '4.2 min', '3.1 h', '580 days', '3.4 years'."""
    if seconds is None:
        return "-"
    if seconds < 0.9995:  # below that, 3 significant digits of ms would print as 1e+03
        return f"{seconds * 1e3:.3g} ms"
    if seconds < MINUTE_S:
        return f"{seconds:.3g} s"
    if seconds < HOUR_S:
        return f"{seconds / MINUTE_S:.3g} min"
    if seconds < 2 * DAY_S:
        return f"{seconds / HOUR_S:.3g} h"
    if seconds < 365 * DAY_S:
        return f"{seconds / DAY_S:.3g} days"
    return f"{seconds / (365.25 * DAY_S):.3g} years"


def format_rate(per_s: float | None) -> str:
    if per_s is None:
        return "-"
    if per_s >= 100:
        return f"{per_s:,.0f}"
    return f"{per_s:.3g}"
