"""Charts of a ``Comparison`` as inline SVG strings, drawn by hand (no plotting library): grouped bars,
rooflines, lines and labelled scatter points, on linear or log axes, with SI tick labels and a legend.

Every chart is an ``<svg class="chart" role="img" aria-label=... data-chart="<id>">`` with a ``<title>``,
sized by its ``viewBox`` so it scales with the page. Every drawn datum is tagged ``class="mark ..."`` and
``data-mark="bar" | "point" | "line" | "roof"`` (so tests and tools can count them) and carries a ``<title>``
tooltip. A chart with nothing to draw renders ``<p data-chart-empty="<id>">no data: ...</p>`` instead.
All text from the comparison is HTML-escaped. Colours: Okabe & Ito's colour-blind-safe palette; the source
of a datum is also told by shape (points) or fill (bars), never by colour alone."""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from dlgpu.report.format import finite, format_axis, format_value, si, source_mark, unit_label
from dlgpu.report.model import BarChart, Chart, LineChart, RooflineChart, ScatterChart

PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#8C6D1F", "#000000")
SOURCE_COLOURS = {"measured": "#0072B2", "predicted": "#E69F00", "estimated": "#CC79A7", "catalog": "#7A7A7A",
                  "computed": "#009E73"}
SOURCE_SHAPES = {"measured": "circle", "predicted": "triangle", "estimated": "diamond", "catalog": "square",
                 "computed": "down"}
DASHES = ("", "7 4", "2 3", "9 3 2 3")

W = 720  # viewBox width; the SVG is drawn at 100% of its container
PLOT_L, PLOT_R, PLOT_T, PLOT_H = 78, W - 20, 14, 300
FONT = 12
HALO = ' paint-order="stroke" stroke="#fff" stroke-width="3" stroke-linejoin="round"'
DURATION_TICKS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0, 60.0, 600.0, 3600.0, 86400.0, 864000.0, 8640000.0,
                  31557600.0, 315576000.0)
"""Log-axis ticks in seconds that read as round durations: 1 µs ... 1 s, 10 s, 1 min, 10 min, 1 h, 1 day, 10 days..."""


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _n(x: float) -> str:
    return f"{x:.1f}"


def _text_w(text: str, size: float = FONT) -> float:
    return len(text) * size * 0.58


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _colours(keys: Iterable[str]) -> dict[str, str]:
    return {k: PALETTE[i % len(PALETTE)] for i, k in enumerate(_unique(keys))}


# ---- scales -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Scale:
    """Maps data ``lo..hi`` (linear or log) to pixels ``p0..p1``; ``step`` is the linear tick step."""

    lo: float
    hi: float
    log: bool
    p0: float
    p1: float
    step: float = 0.0

    def __call__(self, v: float) -> float:
        if self.log:
            t = (math.log10(v) - math.log10(self.lo)) / (math.log10(self.hi) - math.log10(self.lo))
        else:
            t = (v - self.lo) / (self.hi - self.lo)
        return self.p0 + t * (self.p1 - self.p0)

    def ticks(self) -> list[float]:
        if not self.log:
            n = round((self.hi - self.lo) / self.step)
            return [round(self.lo + i * self.step, 12) for i in range(n + 1)]
        a, b = round(math.log10(self.lo)), round(math.log10(self.hi))
        if b - a <= 2:
            return [m * 10.0**e for e in range(a, b + 1) for m in (1, 2, 5) if m * 10.0**e <= self.hi * 1.000001]
        return [10.0**e for e in range(a, b + 1, max(1, math.ceil((b - a) / 8)))]


def _nice_step(span: float, n: int = 5) -> float:
    raw = span / n
    mag = 10.0 ** math.floor(math.log10(raw))
    return next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw * 0.999)


def make_scale(values: Sequence[float], log: bool, p0: float, p1: float, zero: bool = False) -> Scale:
    """A scale covering ``values`` with round ends: decades on a log scale (values must be > 0), multiples of
    a 1-2-2.5-5 step on a linear one (from 0 where ``zero``)."""
    lo, hi = min(values), max(values)
    if log:
        a, b = math.floor(math.log10(lo) + 1e-9), math.ceil(math.log10(hi) - 1e-9)
        return Scale(10.0**a, 10.0 ** max(b, a + 1), True, p0, p1)
    if zero:
        lo, hi = min(lo, 0.0), max(hi, 0.0)
    if hi == lo:
        pad = abs(lo) * 0.5 or 1.0
        lo, hi = (lo if zero and lo == 0 else lo - pad), hi + pad
    step = _nice_step(hi - lo)
    return Scale(math.floor(lo / step + 1e-9) * step, math.ceil(hi / step - 1e-9) * step, False, p0, p1, step)


# ---- primitives ---------------------------------------------------------------------------------------------

def _marker(shape: str, x: float, y: float, r: float, attrs: str) -> str:
    if shape == "circle":
        return f'<circle cx="{_n(x)}" cy="{_n(y)}" r="{_n(r)}" {attrs}>'
    if shape == "square":
        a, side = r * .85, _n(r * 1.7)
        return f'<rect x="{_n(x - a)}" y="{_n(y - a)}" width="{side}" height="{side}" {attrs}>'
    pts = {"triangle": ((0, -1.2), (1.05, .75), (-1.05, .75)), "down": ((0, 1.2), (1.05, -.75), (-1.05, -.75)),
           "diamond": ((0, -1.25), (1, 0), (0, 1.25), (-1, 0))}[shape]
    d = "M" + " L".join(f"{_n(x + dx * r)},{_n(y + dy * r)}" for dx, dy in pts) + "Z"
    return f'<path d="{d}" {attrs}>'


def _close(tag_open: str) -> str:
    """The closing tag for an element opened by ``_marker`` or by hand."""
    return "</" + tag_open[1:].split(" ", 1)[0] + ">"


def shape_icon(shape: str, colour: str, size: int = 16) -> str:
    """A small standalone SVG of a marker shape, for legends in HTML."""
    m = _marker(shape, size / 2, size / 2, size * 0.31, f'fill="{colour}"')
    return (f'<svg width="{size}" height="{size}" viewBox="0 0 {size} {size}" aria-hidden="true">'
            f"{m}{_close(m)}</svg>")


def _mark(open_tag: str, tooltip: str) -> str:
    """A mark element with its tooltip."""
    return f"{open_tag}<title>{esc(tooltip)}</title>{_close(open_tag)}"


def _point(shape: str, x: float, y: float, r: float, fill: str, tooltip: str, cls: str = "",
           stroke: str = "#fff", stroke_w: float = 0.8) -> str:
    attrs = (f'class="mark point{cls}" data-mark="point" fill="{fill}" stroke="{stroke}" '
             f'stroke-width="{stroke_w}"')
    return _mark(_marker(shape, x, y, r, attrs), tooltip)


def _text(x: float, y: float, text: str, anchor: str = "start", cls: str = "", extra: str = "") -> str:
    c = f' class="{cls}"' if cls else ""
    return f'<text x="{_n(x)}" y="{_n(y)}" text-anchor="{anchor}"{c}{extra}>{esc(text)}</text>'


def empty_chart(chart_id: str, message: str) -> str:
    """What a chart with nothing to draw shows instead of an empty plot."""
    return f'<p class="chart-empty" data-chart-empty="{esc(chart_id)}">no data: {esc(message)}</p>'


def _svg(chart_id: str, kind: str, title: str, summary: str, height: float, body: str) -> str:
    return (f'<svg class="chart" role="img" aria-label="{esc(f"{kind}: {title}. {summary}")}" '
            f'data-chart="{esc(chart_id)}" data-kind="{kind}" viewBox="0 0 {W} {math.ceil(height)}" width="100%" '
            f'preserveAspectRatio="xMidYMid meet" font-size="{FONT}">'
            f'<title>{esc(title)}</title><desc>{esc(summary)}</desc>'
            f'<rect class="bg" x="0" y="0" width="{W}" height="{math.ceil(height)}" fill="#fff"></rect>{body}</svg>')


# ---- legend -------------------------------------------------------------------------------------------------

LegendItem = tuple[str, str, str, str]
"""(kind, colour, style, label): kind 'box' (style '' solid or 'faded'), 'line' (style: a dash array) or
'marker' (style: a shape)."""


def _legend(items: Sequence[LegendItem], y0: float) -> tuple[str, float]:
    """Legend items flowed into rows from ``y0``; returns the SVG and the height it takes."""
    if not items:
        return "", 0.0
    parts, x, y = ['<g class="legend">'], 12.0, y0 + 10
    for kind, colour, style, label in items:
        text = _clip(label, 56)
        w = 30 + _text_w(text) + 16
        if x > 12 and x + w > W - 12:
            x, y = 12.0, y + 20
        if kind == "box":
            faded = ' fill-opacity="0.35" stroke-dasharray="3 2"' if style == "faded" else ""
            parts.append(f'<rect x="{_n(x)}" y="{_n(y - 6)}" width="20" height="12" fill="{colour}" '
                         f'stroke="{colour}"{faded}></rect>')
        elif kind == "line":
            dash = f' stroke-dasharray="{style}"' if style else ""
            parts.append(f'<line x1="{_n(x)}" y1="{_n(y)}" x2="{_n(x + 22)}" y2="{_n(y)}" stroke="{colour}" '
                         f'stroke-width="2"{dash}></line>')
        else:
            m = _marker(style, x + 10, y, 5, f'fill="{colour}" stroke="#fff" stroke-width="0.8"')
            parts.append(m + _close(m))
        parts.append(_text(x + 28, y + 4, text, extra=f' data-legend="{kind}"'))
        x += w
    parts.append("</g>")
    return "".join(parts), y - y0 + 18


def _source_items(sources: Iterable[str]) -> list[LegendItem]:
    return [("marker", "#555", SOURCE_SHAPES.get(s, "square"), s) for s in _unique(sources)]


# ---- axes ---------------------------------------------------------------------------------------------------

def _axis_title(title: str, unit: str, log: bool) -> str:
    u = unit_label(unit)
    return f"{title}{f' ({u})' if u and u not in title else ''}{', log scale' if log else ''}"


def _grid(x1: float, y1: float, x2: float, y2: float) -> str:
    return f'<line class="grid" stroke="#e4e4e4" x1="{_n(x1)}" y1="{_n(y1)}" x2="{_n(x2)}" y2="{_n(y2)}"></line>'


def _ticks(scale: Scale, unit: str) -> list[float]:
    if scale.log and unit == "s":
        ticks = [t for t in DURATION_TICKS if scale.lo <= t <= scale.hi]
        if len(ticks) >= 3:
            return ticks[:: math.ceil(len(ticks) / 9)]
    return scale.ticks()


def _x_axis(xs: Scale, top: float, bottom: float, unit: str, title: str) -> str:
    ticks = _ticks(xs, unit)
    labels = [format_axis(t, unit) for t in ticks]
    spacing = abs(xs.p1 - xs.p0) / max(1, len(ticks) - 1)
    every = max(1, math.ceil((max(_text_w(s) for s in labels) + 10) / spacing))
    out = []
    for i, (t, label) in enumerate(zip(ticks, labels, strict=True)):
        x = xs(t)
        out.append(_grid(x, top, x, bottom))
        if i % every == 0:  # centred under its tick, but never past the edge of the drawing
            half = _text_w(label) / 2
            out.append(_text(min(max(x, half + 2), W - half - 2), bottom + 16, label, "middle", "tick"))
    out.append(_text((xs.p0 + xs.p1) / 2, bottom + 36, title, "middle", "axis-title"))
    return "".join(out)


def _y_axis(ys: Scale, left: float, right: float, unit: str, title: str) -> str:
    out = []
    for t in _ticks(ys, unit):
        y = ys(t)
        out.append(_grid(left, y, right, y))
        out.append(_text(left - 6, y + 4, format_axis(t, unit), "end", "tick"))
    cy = (ys.p0 + ys.p1) / 2
    out.append(_text(16, cy, title, "middle", "axis-title", f' transform="rotate(-90 16 {_n(cy)})"'))
    return "".join(out)


def _frame(left: float, top: float, right: float, bottom: float) -> str:
    return (f'<rect class="frame" x="{_n(left)}" y="{_n(top)}" width="{_n(right - left)}" '
            f'height="{_n(bottom - top)}" fill="none" stroke="#999"></rect>')


def _xy(xs_values: Sequence[float], ys_values: Sequence[float], log_x: bool, log_y: bool,
        zero_y: bool = False) -> tuple[Scale, Scale]:
    xs = make_scale(xs_values, log_x, PLOT_L, PLOT_R)
    ys = make_scale(ys_values, log_y, PLOT_T + PLOT_H, PLOT_T, zero=zero_y)
    return xs, ys


def _xy_chart(chart_id: str, kind: str, title: str, summary: str, axes: str, marks: str,
              legend: Sequence[LegendItem]) -> str:
    bottom = PLOT_T + PLOT_H
    legend_svg, legend_h = _legend(legend, bottom + 46)
    body = axes + _frame(PLOT_L, PLOT_T, PLOT_R, bottom) + f'<g class="marks">{marks}</g>' + legend_svg
    return _svg(chart_id, kind, title, summary, bottom + 50 + legend_h, body)


def _usable(x: float, y: float, log_x: bool, log_y: bool) -> bool:
    return finite(x) and finite(y) and (x > 0 or not log_x) and (y > 0 or not log_y)


# ---- bar charts ---------------------------------------------------------------------------------------------

def bar_chart(chart: BarChart) -> str:
    """Horizontal grouped bars: one block per ``group`` (workload), one bar per ``label`` (device, by colour);
    measured bars solid, other sources faded with a dashed outline. Values are written at the bar ends."""
    bars = [b for b in chart.bars if finite(b.value) and (b.value > 0 or not chart.log_scale)]
    if not bars:
        why = "no bar has a value above zero (log scale)" if chart.bars else "no bars"
        return empty_chart(chart.id, why)
    labels = _unique(b.label for b in bars)
    colour = _colours(labels)
    gutter, bar_h, gap, group_gap = 210.0, 16.0, 3.0, 12.0
    xs = make_scale([b.value for b in bars], chart.log_scale, gutter, W - 96, zero=True)
    base = xs(xs.lo) if chart.log_scale else xs(0.0)
    y, parts = PLOT_T + 4.0, []
    for g in _unique(b.group for b in bars):
        members = sorted((b for b in bars if b.group == g), key=lambda b: labels.index(b.label))
        top = y
        for b in members:
            end = xs(b.value)
            faded = "" if b.source == "measured" else ' fill-opacity="0.35" stroke-dasharray="4 2"'
            value = format_value(b.value, chart.unit)
            rect = (f'<rect class="mark bar src-{esc(b.source)}" data-mark="bar" x="{_n(min(base, end))}" '
                    f'y="{_n(y)}" width="{_n(max(abs(end - base), 1.0))}" height="{_n(bar_h)}" '
                    f'fill="{colour[b.label]}" stroke="{colour[b.label]}"{faded}>')
            parts.append(_mark(rect, f"{b.group} · {b.label}: {value} ({b.source})"))
            parts.append(_text(max(base, end) + 4, y + bar_h - 4, value + source_mark(b.source), cls="value"))
            y += bar_h + gap
        cy = (top + y - gap) / 2
        parts.append(f'<text x="{_n(gutter - 8)}" y="{_n(cy + 4)}" text-anchor="end" class="group">'
                     f'<title>{esc(g)}</title>{esc(_clip(g, 32))}</text>')
        y += group_gap
    bottom = y - group_gap + 4
    ref = ""
    if chart.unit == "x" and xs.lo < 1 < xs.hi:
        ref = (f'<line class="ref" stroke="#555" x1="{_n(xs(1))}" y1="{PLOT_T}" x2="{_n(xs(1))}" y2="{_n(bottom)}" '
               f'stroke-dasharray="4 3"></line>')
    axis = _x_axis(xs, PLOT_T, bottom, chart.unit, _axis_title("value", chart.unit, chart.log_scale))
    sources = _unique(b.source for b in bars)
    items: list[LegendItem] = [("box", colour[label], "", label) for label in labels]
    items += [("box", "#777", "" if s == "measured" else "faded", s) for s in sources]
    legend_svg, legend_h = _legend(items, bottom + 46)
    body = axis + ref + f'<g class="marks">{"".join(parts)}</g>' + legend_svg
    summary = f"{len(bars)} bars in {len(_unique(b.group for b in bars))} groups ({', '.join(sources)})"
    return _svg(chart.id, "bar chart", chart.title, summary, bottom + 50 + legend_h, body)


# ---- roofline -----------------------------------------------------------------------------------------------

def _roof_path(xs: Scale, ys: Scale, bandwidth: float, peak: float) -> str:
    """min(peak, intensity x bandwidth) across the x range, starting where the slope enters the plot."""
    ridge = peak / bandwidth
    start = max(xs.lo, ys.lo / bandwidth)
    pts = [(start, min(peak, start * bandwidth))]
    if start < ridge < xs.hi:
        pts.append((ridge, peak))
    pts.append((xs.hi, min(peak, xs.hi * bandwidth)))
    return "M" + " L".join(f"{_n(xs(x))},{_n(ys(y))}" for x, y in pts)


def roofline_chart(chart: RooflineChart) -> str:
    """Log-log roofline: each roof's peaks as min(peak, intensity x bandwidth), labelled; points coloured by
    workload, shaped by source, whole steps drawn larger."""
    roofs = [r for r in chart.roofs if finite(r.bandwidth_bytes_per_s) and r.bandwidth_bytes_per_s > 0]
    peaks = [(i, r, name, p) for i, r in enumerate(roofs) for name, p in r.peaks.items() if finite(p) and p > 0]
    points = [p for p in chart.points if _usable(p.intensity_flops_per_byte, p.flops_per_s, True, True)]
    if not peaks and not points:
        return empty_chart(chart.id, "no roofs and no points with a positive intensity and FLOP/s")
    ridges = [p / r.bandwidth_bytes_per_s for _, r, _, p in peaks]
    x_vals = [p.intensity_flops_per_byte for p in points] + ridges
    y_vals = [p.flops_per_s for p in points] + [p for *_, p in peaks]
    xs, ys = _xy([min(x_vals) / 4, max(x_vals) * 8], [min(y_vals) / 20, max(y_vals) * 2], True, True)
    parts: list[str] = []
    labels: list[tuple[float, str]] = []
    for i, r, name, peak in peaks:
        fade = ' stroke-opacity="0.55"' if r.source != "catalog" else ""
        dash = f' stroke-dasharray="{DASHES[i % len(DASHES)]}"' if DASHES[i % len(DASHES)] else ""
        tip = (f"{r.label} {name}: {si(peak, 'FLOP/s')}, {si(r.bandwidth_bytes_per_s, 'B/s')} ({r.source})")
        d = _roof_path(xs, ys, r.bandwidth_bytes_per_s, peak)
        path = (f'<path class="mark roof src-{esc(r.source)}" data-mark="roof" d="{d}" fill="none" stroke="#333" '
                f'stroke-width="1.6"{dash}{fade}>')
        parts.append(_mark(path, tip))
        labels.append((ys(peak) - 4, f"{r.label} · {name} {si(peak, 'FLOP/s')}"))
    last = -math.inf
    for py, text in sorted(labels):  # nudged apart where two peaks lie close
        last = max(py, last + 13)
        parts.append(_text(PLOT_R - 4, last, text, "end", "roof-label", HALO))
    colour = _colours(p.workload for p in points)
    for p in sorted(points, key=lambda p: p.kind == "step"):
        step = p.kind == "step"
        tip = (f"{p.workload} · {p.kind} on {p.device}: {si(p.intensity_flops_per_byte)} FLOP/byte, "
               f"{si(p.flops_per_s, 'FLOP/s')} ({p.source})")
        parts.append(_point(SOURCE_SHAPES.get(p.source, "square"), xs(p.intensity_flops_per_byte),
                            ys(p.flops_per_s), 7.0 if step else 4.0, colour[p.workload], tip,
                            " step" if step else "", "#000" if step else "#fff", 1.4 if step else 0.8))
    axes = (_x_axis(xs, PLOT_T, PLOT_T + PLOT_H, "", "arithmetic intensity (FLOP/byte, log scale)")
            + _y_axis(ys, PLOT_L, PLOT_R, "flop/s", "performance (FLOP/s, log scale)"))
    items: list[LegendItem] = [("box", c, "", w) for w, c in colour.items()]
    items += _source_items(p.source for p in points)
    if any(p.kind == "step" for p in points):
        items.append(("marker", "#555", "circle", "large, outlined: a whole step"))
    items += [("line", "#333", DASHES[i % len(DASHES)], f"{r.label} ({r.source})") for i, r in enumerate(roofs)]
    summary = f"{len(roofs)} roofs, {len(points)} points"
    return _xy_chart(chart.id, "roofline chart", chart.title, summary, axes, "".join(parts), items)


# ---- lines and scatter --------------------------------------------------------------------------------------

def line_chart(chart: LineChart) -> str:
    """One line per series (colour), dashed unless measured, with a marker (shape by source) at each point; each
    crossover a dotted vertical line with its label."""
    series = [(s, sorted((x, y) for x, y in s.points if _usable(x, y, chart.log_x, chart.log_y)))
              for s in chart.series]
    series = [(s, pts) for s, pts in series if pts]
    if not series:
        return empty_chart(chart.id, "no series has a point that can be drawn")
    all_pts = [p for _, pts in series for p in pts]
    crossings = [c for c in chart.crossovers if finite(c.x) and (c.x > 0 or not chart.log_x)]
    xs, ys = _xy([x for x, _ in all_pts] + [c.x for c in crossings], [y for _, y in all_pts], chart.log_x,
                 chart.log_y, zero_y=min(y for _, y in all_pts) >= 0)
    parts, items = [], []
    for i, c in enumerate(crossings):
        x = xs(c.x)
        line = (f'<line class="mark crossover src-{esc(c.source)}" data-mark="crossover" x1="{_n(x)}" y1="{PLOT_T}" '
                f'x2="{_n(x)}" y2="{PLOT_T + PLOT_H}" stroke="#333" stroke-width="1.5" stroke-dasharray="2 3">')
        parts.append(_mark(line, f"{c.label}: {chart.x_title} {format_value(c.x, chart.x_unit)} ({c.source})"))
        right = x > (PLOT_L + PLOT_R) / 2  # the label on the side with room
        parts.append(_text(x - 4 if right else x + 4, PLOT_T + 14 + 13 * i, _clip(c.label, 48),
                           "end" if right else "start", "crossover-label", HALO))
        items.append(("line", "#333", "2 3", f"{c.label} ({c.source})"))
    for i, (s, pts) in enumerate(series):
        colour, shape = PALETTE[i % len(PALETTE)], SOURCE_SHAPES.get(s.source, "square")
        dash = "" if s.source == "measured" else "6 4"
        if len(pts) > 1:
            d = "M" + " L".join(f"{_n(xs(x))},{_n(ys(y))}" for x, y in pts)
            dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
            path = (f'<path class="mark line src-{esc(s.source)}" data-mark="line" d="{d}" fill="none" '
                    f'stroke="{colour}" stroke-width="2"{dash_attr}>')
            parts.append(_mark(path, f"{s.label} ({s.source})"))
        for x, y in pts:
            tip = f"{s.label}: {chart.x_title} {format_value(x, chart.x_unit)}, {format_value(y, chart.y_unit)}"
            parts.append(_point(shape, xs(x), ys(y), 4.0, colour, tip))
        items.append(("line", colour, dash, f"{s.label} ({s.source})"))
    axes = (_x_axis(xs, PLOT_T, PLOT_T + PLOT_H, chart.x_unit, _axis_title(chart.x_title, chart.x_unit, chart.log_x))
            + _y_axis(ys, PLOT_L, PLOT_R, chart.y_unit, _axis_title(chart.y_title, chart.y_unit, chart.log_y)))
    items += _source_items(s.source for s, _ in series)
    summary = f"{len(series)} series, {len(all_pts)} points"
    return _xy_chart(chart.id, "line chart", chart.title, summary, axes, "".join(parts), items)


Box = tuple[float, float, float, float]


def _overlaps(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _label_spot(px: float, py: float, label: str, placed: list[Box]) -> tuple[float, str, Box] | None:
    """Where a point's label goes (x, anchor, its box): right of the point, else left, else nowhere (it
    would cover another label or leave the plot; the point's tooltip still names it)."""
    w, top = _text_w(label, 11), py - 6 - 11
    for x0, anchor in ((px + 8, "start"), (px - 8 - w, "end")):
        box = (x0, top, x0 + w, py - 6 + 3)
        if x0 >= PLOT_L and x0 + w <= PLOT_R and top >= 0 and not any(_overlaps(box, b) for b in placed):
            return (x0 if anchor == "start" else x0 + w), anchor, box
    return None


def scatter_chart(chart: ScatterChart) -> str:
    """Labelled points, coloured by ``group`` and shaped by source. Labels never cover one another: points
    earlier in ``chart.points`` are labelled first, a later one whose label has no room goes unlabelled (its
    tooltip names it)."""
    points = [p for p in chart.points if _usable(p.x, p.y, chart.log_x, chart.log_y)]
    if not points:
        return empty_chart(chart.id, "no point can be drawn")
    xs, ys = _xy([p.x for p in points], [p.y for p in points], chart.log_x, chart.log_y)
    colour = _colours(p.group for p in points)
    parts: list[str] = []
    labels: list[str] = []
    placed: list[Box] = []
    for p in points:
        px, py = xs(p.x), ys(p.y)
        tip = (f"{p.label} ({p.group}, {p.source}): {chart.x_title} {format_value(p.x, chart.x_unit)}, "
               f"{chart.y_title} {format_value(p.y, chart.y_unit)}")
        parts.append(_point(SOURCE_SHAPES.get(p.source, "square"), px, py, 5.0, colour[p.group], tip))
        label = _clip(p.label, 32)
        spot = _label_spot(px, py, label, placed)
        if spot is not None:
            x, anchor, box = spot
            placed.append(box)
            labels.append(_text(x, py - 6, label, anchor, "point-label"))
    parts += labels
    axes = (_x_axis(xs, PLOT_T, PLOT_T + PLOT_H, chart.x_unit, _axis_title(chart.x_title, chart.x_unit, chart.log_x))
            + _y_axis(ys, PLOT_L, PLOT_R, chart.y_unit, _axis_title(chart.y_title, chart.y_unit, chart.log_y)))
    items: list[LegendItem] = [("box", c, "", g) for g, c in colour.items()]
    items += _source_items(p.source for p in points)
    return _xy_chart(chart.id, "scatter chart", chart.title, f"{len(points)} points", axes, "".join(parts), items)


def render_chart(chart: Chart) -> str:
    """The SVG of any chart of ``report.model`` (or its 'no data' paragraph)."""
    if isinstance(chart, BarChart):
        return bar_chart(chart)
    if isinstance(chart, RooflineChart):
        return roofline_chart(chart)
    if isinstance(chart, LineChart):
        return line_chart(chart)
    return scatter_chart(chart)


def chart_kind(chart: Chart) -> str:
    return {BarChart: "bar chart", RooflineChart: "roofline chart", LineChart: "line chart",
            ScatterChart: "scatter chart"}[type(chart)]
