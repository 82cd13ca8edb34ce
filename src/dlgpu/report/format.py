"""Numbers to strings for the report renderers (HTML, SVG, Markdown): one place that knows how each unit of
``report.model`` reads. Missing and non-finite values read as an en dash; nothing prints NaN or inf."""

from __future__ import annotations

import math
from typing import TypeGuard

from dlgpu.report.model import Cell
from dlgpu.units import format_bytes, format_duration

MISSING = "–"

SOURCE_WORDS: dict[str, str] = {
    "measured": "measured by dlgpu bench",
    "estimated": "estimated from a measurement with a stated model",
    "predicted": "predicted by dlgpu's performance model",
    "catalog": "cited from the hardware catalog",
    "computed": "computed from the other figures (see the notes)",
}
SOURCE_MARKS: dict[str, str] = {"measured": "ᵐ", "estimated": "ᵉ", "predicted": "ᵖ", "catalog": "ᶜ", "computed": "ᵃ"}
"""A compact superscript marker per source, for text renderings (``ᵃ`` as in arithmetic)."""

UNIT_LABELS: dict[str, str] = {"usd": "$", "samples/s/usd": "samples/s/$", "samples/usd": "samples/$",
                               "flop/s": "FLOP/s", "x": "×", "text": ""}

_PREFIXES = ((1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1.0, ""),
             (1e-3, "m"), (1e-6, "µ"), (1e-9, "n"))
_SI_UNITS = {"W": "W", "J": "J", "J/token": "J/token", "flop/s": "FLOP/s"}
_COUNT_UNITS = {"samples/s": "samples/s", "tokens/s": "tokens/s", "rows/s": "rows/s", "samples/s/W": "samples/s/W",
                "samples/s/usd": "samples/s/$", "samples/usd": "samples/$"}


def finite(value: object) -> TypeGuard[float]:
    """A real number that can be drawn or printed (not None, a string, a bool, NaN or inf)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def source_words(source: str | None) -> str:
    if not source:
        return ""
    return f"{source}: {SOURCE_WORDS[source]}" if source in SOURCE_WORDS else source


def source_mark(source: str | None) -> str:
    return SOURCE_MARKS.get(source or "", "")


def unit_label(unit: str) -> str:
    """How a unit reads in an axis title or a column header ('usd' -> '$')."""
    return UNIT_LABELS.get(unit, unit)


def sig3(value: float) -> str:
    """3 significant digits, thousands grouped above 1000 ('0.123', '12.3', '1,234')."""
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    text = f"{value:.3g}"
    return f"{value:.2e}" if "e" in text else text


def si(value: float, unit: str = "", small: bool = True) -> str:
    """An SI prefix and 3 significant digits: si(3.1e14, 'FLOP/s') = '310 TFLOP/s', si(0.0123, 'J') = '12.3 mJ',
    si(12345) = '12.3k' (no unit: the prefix is glued to the number). ``small=False`` uses no prefix below 1."""
    prefixes = _PREFIXES if small else _PREFIXES[:7]
    a = abs(value)
    factor, prefix = prefixes[-1]
    if a == 0:
        factor, prefix = 1.0, ""
    else:
        for f, p in prefixes:
            if a >= f * 0.9995:  # 999.7 reads as 1k, not as 1e+03
                factor, prefix = f, p
                break
    number = sig3(value / factor)
    return f"{number} {prefix}{unit}" if unit else f"{number}{prefix}"


def _percent(value: float) -> str:
    return f"{value:.0f}%" if abs(value) >= 10 or value == 0 else f"{value:.2g}%"


def _usd(value: float) -> str:
    a = abs(value)
    text = f"{a:,.0f}" if a >= 100 else f"{a:.2f}" if a >= 0.01 or a == 0 else f"{a:.2g}"
    return ("-$" if value < 0 else "$") + text


def _plain(value: float) -> str:
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    return sig3(value)


def format_value(value: float | str | None, unit: str) -> str:
    """A value in ``unit`` (SI) as a human string: '850 ms', '1.50 GiB', '12.3k samples/s', '20 tokens/s', '2.4x',
    '12%', '$1,234', '350 W', '12.3 mJ', '45 mJ/token', '310 TFLOP/s'. None and non-finite numbers read '–'."""
    if isinstance(value, str):
        return value
    if not finite(value):
        return MISSING
    v = float(value)
    if unit == "s":
        return format_duration(v)
    if unit == "bytes":
        return format_bytes(v)
    if unit == "x":
        return f"{sig3(v)}x"
    if unit == "%":
        return _percent(v)
    if unit == "usd":
        return _usd(v)
    if unit in _SI_UNITS:
        return si(v, _SI_UNITS[unit])
    if unit in _COUNT_UNITS:
        return f"{si(v, small=False)} {_COUNT_UNITS[unit]}"
    if unit in ("", "text", "ratio"):
        return _plain(v) if unit != "ratio" else sig3(v)
    return f"{sig3(v)} {unit}"


def format_axis(value: float, unit: str) -> str:
    """A compact axis tick label: the unit's symbol only where it is short (the axis title names it)."""
    if unit in ("s", "bytes", "%", "usd"):
        return format_value(value, unit)
    if unit == "x":
        return f"{si(value, small=False)}x"
    if unit in ("W", "J", "J/token"):
        return si(value, unit)
    return si(value, small=unit == "flop/s")


def _interval(low: str, high: str) -> str:
    """'2.5k–3.6k samples/s' rather than '2.5k samples/s–3.6k samples/s'; '2–2.9x'."""
    if " " in low and " " in high and low.rsplit(" ", 1)[1] == high.rsplit(" ", 1)[1]:
        low = low.rsplit(" ", 1)[0]
    elif low[-1:] in ("x", "%") and low[-1:] == high[-1:]:
        low = low[:-1]
    return f"{low}–{high}"


def format_cell_parts(cell: Cell) -> tuple[str, str]:
    """A cell's value with its unit, and what qualifies it: '± IQR', '(low–high)', '(flag)' ('' if none)."""
    extras = []
    if finite(cell.spread):
        extras.append(f"± {format_value(cell.spread, cell.unit)}")
    low, high = finite(cell.low), finite(cell.high)
    if low and high:
        extras.append(f"({_interval(format_value(cell.low, cell.unit), format_value(cell.high, cell.unit))})")
    elif low or high:
        extras.append(f"({'≥ ' if low else '≤ '}{format_value(cell.low if low else cell.high, cell.unit)})")
    if cell.flag:
        extras.append(f"({cell.flag})")
    return format_value(cell.value, cell.unit), " ".join(extras)


def format_cell(cell: Cell) -> str:
    """A cell as one string: '850 ms ± 12 ms', '3.02k samples/s (2.5k–3.6k samples/s)', '410 samples/s (noisy)'."""
    value, extras = format_cell_parts(cell)
    return f"{value} {extras}" if extras else value
