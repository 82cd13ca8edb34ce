"""A ``Comparison`` as GitHub-flavoured Markdown: the runs and every table as pipe tables, each value followed
by a superscript marker of its source (legend at the top). Charts cannot be drawn here: each gets a line
pointing to the HTML report, and a bar chart also a compact table of its values."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

from dlgpu.report.format import MISSING, SOURCE_MARKS, finite, format_cell, format_value, source_mark
from dlgpu.report.model import PANEL_LABELS, SECTION_TITLES, BarChart, Cell, Chart, Comparison, Table, section_of
from dlgpu.report.svg import chart_kind

_MD_ESCAPES = str.maketrans({"\\": "\\\\", "|": "\\|", "<": "&lt;", ">": "&gt;", "&": "&amp;", "`": "\\`",
                             "*": "\\*", "[": "\\[", "]": "\\]"})
_EDGE_UNDERSCORE = re.compile(r"(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")  # an intraword _ is no markup in GFM


def md_escape(text: object) -> str:
    """Text that reads literally in Markdown and inside a pipe table: no markup, no raw HTML, one line."""
    lines = _EDGE_UNDERSCORE.sub(r"\\_", str(text).translate(_MD_ESCAPES)).splitlines() or [""]
    return "<br>".join(line.strip() for line in lines)


def _md_cell(cell: Cell | None) -> str:
    text = MISSING if cell is None else format_cell(cell)
    return MISSING if text == MISSING else md_escape(text) + source_mark(cell.source if cell else None)


def pipe_table(header: Sequence[str], rows: Iterable[Sequence[str]], right: Sequence[bool] = ()) -> str:
    """A pipe table of already-escaped strings; ``right`` marks right-aligned columns."""
    align = ["---:" if i < len(right) and right[i] else "---" for i in range(len(header))]
    lines = [f"| {' | '.join(header)} |", f"| {' | '.join(align)} |"]
    for row in rows:
        cells = [*row, *([""] * (len(header) - len(row)))]
        lines.append(f"| {' | '.join(c or ' ' for c in cells)} |")
    return "\n".join(lines)


def _table(t: Table, level: int = 2) -> str:
    header = [md_escape(c.title) for c in t.columns]
    right = [c.unit != "text" for c in t.columns]
    out = [f"{'#' * level} {md_escape(t.title)}", "", md_escape(t.caption), ""]
    if t.rows and header:
        out.append(pipe_table(header, ([_md_cell(c) for c in row] for row in t.rows), right))
    else:
        out.append("_No rows._")
    if t.notes:
        out += ["", *(f"- {md_escape(n)}" for n in t.notes)]
    return "\n".join(out)


def _bar_values(chart: BarChart) -> str:
    """Groups down, labels across; two bars of one cell (say measured and predicted) joined by ' / '."""
    bars = [b for b in chart.bars if finite(b.value)]
    groups = list(dict.fromkeys(b.group for b in bars))
    labels = list(dict.fromkeys(b.label for b in bars))
    cells: dict[tuple[str, str], list[str]] = {}
    for b in bars:
        text = md_escape(format_value(b.value, chart.unit)) + source_mark(b.source)
        cells.setdefault((b.group, b.label), []).append(text)
    rows = [[md_escape(g), *(" / ".join(cells.get((g, lb), [MISSING])) for lb in labels)] for g in groups]
    return pipe_table(["", *(md_escape(lb) for lb in labels)], rows, [False, *([True] * len(labels))])


def _chart(chart: Chart) -> str:
    line = (f"- **{md_escape(chart.title)}** ({chart_kind(chart)}, id {md_escape(chart.id)}): "
            "drawn in the HTML report.")
    if isinstance(chart, BarChart) and any(finite(b.value) for b in chart.bars):
        return f"{line}\n\n{_bar_values(chart)}\n"
    return line


def _plain(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, default=str, allow_nan=False, ensure_ascii=False)
    except ValueError:  # NaN or inf inside
        return MISSING


def _panel(panel: Any) -> str:
    if not isinstance(panel, dict):
        return f"- {md_escape(panel)}"
    title = panel.get("title") or panel.get("workload") or "verdict"
    out = [f"### {md_escape(title)}", ""]
    if "verdict" in panel:
        out += [f"**{md_escape(panel['verdict'])}**", ""]
    reasons = panel.get("reasons", [])
    out += [f"- {md_escape(r)}" for r in (reasons if isinstance(reasons, list | tuple) else [reasons])]
    for k, v in panel.items():
        if k in ("title", "verdict", "reasons") or v is None or (isinstance(v, str | list | tuple | dict) and not v):
            continue
        label = md_escape(PANEL_LABELS.get(str(k), k))
        if isinstance(v, list | tuple):
            out.append(f"- {label}:")
            out += [f"  - {md_escape(_plain(x))}" for x in v]
        else:
            out.append(f"- {label}: {md_escape(_plain(v))}")
    return "\n".join(out)


def render_markdown(comparison: Comparison) -> str:
    """The comparison as a Markdown document; the tables and charts of a section (the LLM figures) under its own
    heading after the other tables."""
    c = comparison
    legend = " · ".join(f"{m} {s}" for s, m in SOURCE_MARKS.items())
    out = ["# dlgpu comparison", "",
           f"Created {md_escape(c.created_at)} from {len(c.runs)} runs.", "",
           f"Sources: {legend}. ± is the IQR of repeated measurements; (low–high) a prediction's interval; "
           f"{MISSING} no figure.", "", "## Runs", ""]
    if c.runs:
        out.append(pipe_table(["run", "kind", "created", "machine", "summary"],
                              ([md_escape(r.id), md_escape(r.kind), md_escape(r.created_at),
                                md_escape(r.machine), md_escape(r.summary)] for r in c.runs)))
    else:
        out.append("_No runs._")
    out += [p for t in c.tables if not section_of(t) for p in ("", _table(t))]
    for key in dict.fromkeys(section_of(x) for x in (*c.tables, *c.charts) if section_of(x)):
        out += ["", f"## {md_escape(SECTION_TITLES.get(key, key))}"]
        out += [p for t in c.tables if section_of(t) == key for p in ("", _table(t, level=3))]
        out += [p for ch in c.charts if section_of(ch) == key for p in ("", _chart(ch))]
    charts = [ch for ch in c.charts if not section_of(ch)]
    if charts:
        out += ["", "## Charts", "", *(_chart(ch) for ch in charts)]
    if c.panels:
        out += ["", "## Verdicts", *(p for panel in c.panels for p in ("", _panel(panel)))]
    if c.notes:
        out += ["", "## Notes", "", *(f"- {md_escape(n)}" for n in c.notes)]
    return "\n".join(out).rstrip() + "\n"
