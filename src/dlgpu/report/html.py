"""A ``Comparison`` as one self-contained HTML page: inline CSS and SVG, a few lines of optional script to
sort tables, no URL anywhere, and a Content-Security-Policy that forbids every network load, so the file
opens offline in any browser and prints cleanly. Every string from the comparison is HTML-escaped."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from dlgpu.report.format import MISSING, SOURCE_MARKS, SOURCE_WORDS, finite, format_cell_parts, source_words
from dlgpu.report.model import (
    FINETUNE_SECTION,
    LLM_SECTION,
    PANEL_LABELS,
    SECTION_TITLES,
    TABULAR_SECTION,
    Cell,
    Chart,
    Column,
    Comparison,
    RunRef,
    Table,
    section_of,
)
from dlgpu.report.svg import SOURCE_COLOURS, SOURCE_SHAPES, chart_kind, esc, render_chart, shape_icon

CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"

_SRC_CSS = "".join(f".src-{s}{{box-shadow:inset 3px 0 0 {c}}}.chip-{s}{{border-left:6px solid {c}}}"
                   for s, c in SOURCE_COLOURS.items())
CSS = """
:root{color-scheme:light;--fg:#1b1b1b;--muted:#5a5a5a;--line:#d9d9d9;--zebra:#f5f7fa}
*{box-sizing:border-box}
body{margin:0 auto;max-width:1120px;padding:24px 20px 48px;color:var(--fg);background:#fff;
 font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,"Noto Sans",sans-serif}
h1{font-size:1.7em;margin:0 0 .2em}h2{font-size:1.3em;margin:1.8em 0 .4em;border-bottom:1px solid var(--line)}
.meta,.muted,caption,figcaption,.notes{color:var(--muted)}
.legend{display:flex;flex-wrap:wrap;gap:8px;padding:0;margin:.8em 0;list-style:none;font-size:.9em}
.legend li{padding:2px 8px;background:var(--zebra);border-radius:3px}.legend svg{vertical-align:middle}
.scroll{overflow-x:auto}
table{border-collapse:collapse;margin:.4em 0;font-size:.92em;min-width:50%}
caption{caption-side:top;text-align:left;padding:0 0 .4em;font-size:.95em}
th,td{padding:4px 10px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{background:#eef1f5;font-weight:600}
thead th[data-sort]{cursor:pointer}
tbody tr:nth-child(even){background:var(--zebra)}
td.num{text-align:right;font-variant-numeric:tabular-nums}.v{white-space:nowrap}
.extra{color:var(--muted);font-size:.9em}
.mark{color:var(--muted);font-size:.9em;margin-left:1px}
.flag{color:#a33}
section[data-section] h3{font-size:1.1em;margin:1.4em 0 .3em}
figure{margin:1.2em 0;padding:8px;border:1px solid var(--line);border-radius:4px}
svg.chart{display:block;width:100%;height:auto;max-width:960px}
svg.chart text{fill:#222;font-family:inherit}svg.chart .tick,svg.chart .axis-title{fill:#555}
svg.chart .value,svg.chart .point-label{font-size:11px}
svg.chart .roof-label,svg.chart .crossover-label{font-size:11px;fill:#333}
.chart-empty{padding:1em;background:var(--zebra);color:var(--muted);font-style:italic}
.panel{border:1px solid var(--line);border-left:6px solid #0072B2;border-radius:4px;padding:8px 14px;margin:.8em 0}
.panel h3{margin:.2em 0}.panel dt{font-weight:600}.panel dd{margin:0 0 .4em 1em}
footer{margin-top:2.5em;font-size:.85em;color:var(--muted)}
@media print{body{max-width:none;padding:0;font-size:11pt}
 figure,table,.panel{break-inside:avoid}h2{break-after:avoid}.scroll{overflow:visible}}
""" + _SRC_CSS

SCRIPT = """
document.querySelectorAll("table[data-table]").forEach(function (t) {
  var body = t.tBodies[0];
  t.querySelectorAll("thead th").forEach(function (th, i) {
    th.setAttribute("data-sort", "");
    th.addEventListener("click", function () {
      var asc = th.getAttribute("aria-sort") !== "ascending";
      var key = function (r) {
        var c = r.cells[i], v = c ? c.getAttribute("data-v") : null;
        return v === null ? [1, c ? c.textContent : ""] : [0, parseFloat(v)];
      };
      var rows = Array.prototype.slice.call(body.rows).sort(function (a, b) {
        var x = key(a), y = key(b), d = x[0] - y[0] || (x[1] < y[1] ? -1 : x[1] > y[1] ? 1 : 0);
        return asc ? d : -d;
      });
      t.querySelectorAll("thead th").forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", asc ? "ascending" : "descending");
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in text)[:60] or "x"


def _source_legend(sources: Iterable[str]) -> str:
    items = []
    for s in sources:
        icon = shape_icon(SOURCE_SHAPES[s], SOURCE_COLOURS[s])
        items.append(f'<li class="chip-{s}" title="{esc(SOURCE_WORDS[s])}">{icon} '
                     f'<span class="mark">{SOURCE_MARKS[s]}</span> <b>{s}</b>: {esc(SOURCE_WORDS[s])}</li>')
    return f'<ul class="legend" aria-label="sources">{"".join(items)}</ul>'


def _header(c: Comparison, title: str) -> str:
    nav = "".join(f'<a href="#t-{esc(_slug(t.id))}">{esc(t.title)}</a> · ' for t in c.tables)
    return (f"<header><h1>{esc(title)}</h1>"
            f'<p class="meta">Created {esc(c.created_at)} · {len(c.runs)} runs · schema {esc(c.schema)}</p>'
            "<p>Each figure says where it came from: a marker after the value and a coloured bar at the cell's "
            "left edge; in charts, the shape of a point. ± is the IQR of repeated measurements; (low–high) a "
            "prediction's interval.</p>"
            f"{_source_legend(SOURCE_WORDS)}"
            f'<nav class="muted">{nav}<a href="#charts">charts</a></nav></header>')


def _cell(cell: Cell | None, column: Column | None) -> str:
    """A ``<td>``: formatted value, a class and a tooltip for its source, ``data-v`` for sorting numbers."""
    if cell is None:
        return f"<td>{MISSING}</td>"
    numeric = finite(cell.value) or (cell.value is None and column is not None and column.unit != "text")
    classes = (["num"] if numeric else []) + ([f"src-{_slug(cell.source)}"] if cell.source else [])
    attrs = f' class="{" ".join(classes)}"' if classes else ""
    if cell.source:
        attrs += f' title="{esc(source_words(cell.source))}"'
    if finite(cell.value):
        attrs += f' data-v="{float(cell.value)!r}"'
    value, extras = format_cell_parts(cell)
    mark = SOURCE_MARKS.get(cell.source or "", "") if (value, extras) != (MISSING, "") else ""
    mark_html = f'<span class="mark" aria-hidden="true">{mark}</span>' if mark else ""
    extras_html = f' <span class="extra">{esc(extras)}</span>' if extras else ""
    return f'<td{attrs}><span class="v">{esc(value)}</span>{extras_html}{mark_html}</td>'


def _notes(notes: Iterable[str], cls: str = "notes") -> str:
    items = "".join(f"<li>{esc(n)}</li>" for n in notes)
    return f'<ul class="{cls}">{items}</ul>' if items else ""


def _table(t: Table, level: int = 2) -> str:
    head = "".join(f'<th scope="col" data-key="{esc(col.key)}">{esc(col.title)}</th>' for col in t.columns)
    rows = []
    for row in t.rows:
        cells: list[Cell | None] = [*row, *([None] * (len(t.columns) - len(row)))]
        cols: list[Column | None] = [*t.columns, *([None] * max(0, len(row) - len(t.columns)))]
        rows.append("<tr>" + "".join(_cell(cell, col) for cell, col in zip(cells, cols, strict=False)) + "</tr>")
    empty = "" if t.rows else '<p class="muted">No rows.</p>'
    return (f'<section id="t-{esc(_slug(t.id))}"><h{level}>{esc(t.title)}</h{level}><div class="scroll">'
            f'<table data-table="{esc(t.id)}"><caption>{esc(t.caption)}</caption>'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
            f"{empty}{_notes(t.notes)}</section>")


def _runs(runs: Iterable[RunRef]) -> str:
    rows = "".join(f"<tr><td><code>{esc(r.id)}</code></td><td>{esc(r.kind)}</td><td>{esc(r.created_at)}</td>"
                   f"<td>{esc(r.machine)}</td><td>{esc(r.summary)}</td></tr>" for r in runs)
    if not rows:
        return '<section id="runs"><h2>Runs</h2><p class="muted">No runs.</p></section>'
    return ('<section id="runs"><h2>Runs</h2><div class="scroll"><table class="runs" data-runs="">'
            "<caption>The runs this comparison drew on.</caption><thead><tr><th>run</th><th>kind</th>"
            f"<th>created</th><th>machine</th><th>summary</th></tr></thead><tbody>{rows}</tbody></table></div>"
            "</section>")


def _figure(chart: Chart) -> str:
    return (f'<figure data-figure="{esc(chart.id)}">{render_chart(chart)}'
            f"<figcaption><b>{esc(chart.title)}</b> · {chart_kind(chart)}</figcaption></figure>")


def _value_html(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "<ul>" + "".join(f"<li>{_value_html(v)}</li>" for v in value) + "</ul>"
    if isinstance(value, str):
        return esc(value)
    try:
        return esc(json.dumps(value, default=str, allow_nan=False, ensure_ascii=False))
    except ValueError:  # NaN or inf inside
        return MISSING


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str | list | tuple | dict) and not value)


def _panel(panel: Any) -> str:
    """An advise verdict box: its title, verdict and reasons first, any other key as a term and its value."""
    if not isinstance(panel, Mapping):
        return f'<div class="panel">{esc(panel)}</div>'
    title = panel.get("title") or panel.get("workload") or "verdict"
    parts = [f'<div class="panel" data-panel=""><h3>{esc(title)}</h3>']
    if "verdict" in panel:
        parts.append(f'<p class="verdict"><b>{_value_html(panel["verdict"])}</b></p>')
    if "reasons" in panel:
        reasons = panel["reasons"]
        parts.append(_value_html(reasons if isinstance(reasons, list | tuple) else [reasons]))
    rest = [(k, v) for k, v in panel.items() if k not in ("title", "verdict", "reasons") and not _empty(v)]
    if rest:
        parts.append("<dl>" + "".join(f"<dt>{esc(PANEL_LABELS.get(str(k), k))}</dt><dd>{_value_html(v)}</dd>"
                                      for k, v in rest) + "</dl>")
    return "".join(parts) + "</div>"


SECTION_INTROS: dict[str, str] = {
    LLM_SECTION: ("LLM workloads count their samples in tokens. Per result: time per output token (TPOT, decode), "
                  "time to first token (TTFT, prefill), tokens/s per sequence and in total, and energy per token, "
                  "each derived from the stored step times and telemetry as the table's caption says; then the "
                  "decode tokens/s of each weight format."),
    TABULAR_SECTION: ("Gradient-boosted trees and classical ML (XGBoost, LightGBM, scikit-learn; cuML on a GPU), a "
                      "sample being a row: the time of one fit or predict per workload, library, device and shape, "
                      "then that time against rows, one line per device and library (log-log), with where a CPU and a "
                      "GPU line cross marked: computed where both were measured at the same rows, predicted where a "
                      "model's line is drawn."),
    FINETUNE_SECTION: ("Measured fine-tuning steps (dlgpu bench --task finetune --method full|freeze|lora|qlora): per "
                       "configuration its step time, tokens/s, samples/s, peak memory, trainable and total parameters "
                       "and the bytes of weights, gradients and optimizer state; then, where several methods of one "
                       "model were measured on one device at the same seq_len and batch, each against the baseline "
                       "(full fine-tuning where measured)."),
}


def _section(key: str, tables: Iterable[Table], charts: Iterable[Chart]) -> str:
    """Tables and charts of one section (say the LLM figures) under one heading, tables first."""
    body = "".join(_table(t, level=3) for t in tables) + "".join(_figure(ch) for ch in charts)
    intro = SECTION_INTROS.get(key, "")
    return (f'<section id="{esc(_slug(key))}" data-section="{esc(key)}"><h2>{esc(SECTION_TITLES.get(key, key))}</h2>'
            f"{f'<p>{esc(intro)}</p>' if intro else ''}{body}</section>")


def render_html(comparison: Comparison, title: str = "dlgpu report") -> str:
    """The whole report as one HTML document (a string; write it with ``encoding="utf-8"``). Tables and charts of
    a section (the LLM figures) are drawn together in it, after the other tables."""
    c = comparison
    keys = list(dict.fromkeys(section_of(x) for x in (*c.tables, *c.charts) if section_of(x)))
    sections = "".join(_section(k, (t for t in c.tables if section_of(t) == k),
                                (ch for ch in c.charts if section_of(ch) == k)) for k in keys)
    charts = "".join(_figure(ch) for ch in c.charts if not section_of(ch)) or '<p class="muted">No charts.</p>'
    panels = ('<section id="panels"><h2>Verdicts</h2>' + "".join(_panel(p) for p in c.panels) + "</section>"
              if c.panels else "")
    notes = f'<section id="notes"><h2>Notes</h2>{_notes(c.notes)}</section>' if c.notes else ""
    return ("<!DOCTYPE html>\n"
            '<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            '<meta name="generator" content="dlgpu">'
            f"<title>{esc(title)}</title><style>{CSS}</style></head>\n<body>"
            f"{_header(c, title)}<main>{_runs(c.runs)}{''.join(_table(t) for t in c.tables if not section_of(t))}"
            f"{sections}"
            f'<section id="charts"><h2>Charts</h2>{charts}</section>{panels}{notes}</main>'
            f"<footer>Generated by dlgpu. Figures are SI; estimated, predicted and catalog figures are marked as "
            f"such.</footer><script>{SCRIPT}</script></body></html>\n")
