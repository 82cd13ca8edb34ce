"""SI units. Everything inside dlgpu is stored in SI base units (s, bytes, J, W, FLOP); only
``report`` turns them into human strings. These helpers exist so conversions are written once."""

from __future__ import annotations

import math

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
    """A human duration: '850 ms', '12.3 s', '4.2 min', '3.1 h', '145 days', '3.4 years' ('never': infinite)."""
    if seconds is None:
        return "-"
    if not math.isfinite(seconds):
        return "never"
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


_SIZE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
               "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_bytes(text: str) -> int:
    """ "80GB" -> 80e9, "24GiB" or "24g" -> 24 x 2^30, "1000" -> 1000. ValueError on anything else."""
    import re

    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", text)
    if not m or m.group(2).lower() not in _SIZE_UNITS:
        raise ValueError(f"{text!r} is not a size (e.g. 80GB, 24GiB, 16g)")
    value = float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()]
    if value <= 0:
        raise ValueError(f"{text!r}: a size must be positive")
    return int(value)


def parse_duration(text: str) -> float:
    """'12h', '90m', '2d', '1w', '3600s' or a number of hours; seconds. ValueError with the reason."""
    t = text.strip().lower()
    units = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}
    for suffix in sorted(units, key=len, reverse=True):
        if t.endswith(suffix):
            number = t[: -len(suffix)].strip()
            break
    else:
        number, suffix = t, "h"
    try:
        value = float(number)
    except ValueError:
        raise ValueError(f"{text!r} is not a duration (e.g. 12h, 90m, 2d, 1w)") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{text!r}: a duration must be positive")
    return value * units[suffix]
