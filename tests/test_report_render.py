"""The report renderers: cell formatting, the self-contained HTML page (escaping, no URL, marks per chart)
and the Markdown. ``sample_comparison`` is also the page the browser test opens."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from dlgpu.report.format import format_axis, format_cell, format_value, si
from dlgpu.report.html import render_html
from dlgpu.report.markdown import md_escape, render_markdown
from dlgpu.report.model import (
    Bar,
    BarChart,
    Cell,
    Column,
    Comparison,
    LineChart,
    Roof,
    RooflineChart,
    RoofPoint,
    RunRef,
    ScatterChart,
    ScatterPoint,
    Series,
    Table,
)
from dlgpu.report.svg import make_scale, roofline_chart

SCRIPT_ATTACK = "<script>alert(1)</script>"
ATTR_ATTACK = '"><img src=x onerror=alert(1)>'
NAN, INF = float("nan"), float("inf")

# What sample_comparison() draws: rows per table, and marks per chart (data-mark -> count).
EXPECTED_ROWS = {"train_time": 6, "cost": 4, "accuracy": 3}
EXPECTED_MARKS = {
    "speedup": {"bar": 9},
    "train_time": {"bar": 6},
    "roofline": {"roof": 4, "point": 8},
    "batch_throughput": {"line": 3, "point": 15},
    "value": {"point": 4},
}
EMPTY_CHARTS = ("time_cost",)


def _c(value: float | str | None, unit: str = "text", source: str | None = None, **kw: object) -> Cell:
    return Cell(value, unit, source, **kw)  # type: ignore[arg-type]


def sample_comparison() -> Comparison:
    """A realistic comparison of a CPU, an RTX 4090 (measured) and an H100 (predicted), with hostile strings
    in a run summary, a column title, cells, a caption, chart labels, a panel and the notes."""
    m, p, k, x, e = "measured", "predicted", "catalog", "computed", "estimated"
    runs = (
        RunRef("20240611-093012-bench", "bench", "2024-06-11T09:30:12Z", "Xeon Gold 6338 + RTX 4090",
               "resnet50, bert-base: train and infer, fp32 and fp16"),
        RunRef("20240611-101500-predict", "predict", "2024-06-11T10:15:00Z", "from the RTX 4090 run",
               "H100 SXM predicted from the 4090 profile"),
        RunRef("imported|run\n2", "bench", "2024-06-12T08:00:00Z", "laptop", f"hostile summary {SCRIPT_ATTACK}"),
    )
    train_cols = (Column("workload", "workload"), Column("device", "device"),
                  Column("throughput", "samples/s", "samples/s"), Column("step", "step (median ± IQR)", "s"),
                  Column("time", "time to train", "s"), Column("speedup", f"vs CPU {ATTR_ATTACK}", "x"))
    train_rows = (
        (_c("resnet50 train fp32 b64"), _c("Xeon Gold 6338 (cpu)"), _c(41.2, "samples/s", m),
         _c(1.553, "s", m, spread=0.041), _c(3.1e5, "s", x), _c(1.0, "x", x)),
        (_c("resnet50 train fp16 b256"), _c("RTX 4090"), _c(1234.5, "samples/s", m),
         _c(0.2074, "s", m, spread=0.0031), _c(10370.0, "s", x), _c(29.96, "x", x)),
        (_c("resnet50 train fp16 b256"), _c("H100 SXM"), _c(3015.0, "samples/s", p, low=2500.0, high=3600.0),
         _c(0.0849, "s", p, low=0.071, high=0.102), _c(4245.0, "s", x), _c(73.2, "x", x, flag="extrapolated")),
        (_c("bert-base train fp16 b32"), _c("RTX 4090"), _c(410.0, "samples/s", m, flag="noisy"),
         _c(0.078, "s", m, spread=0.011), _c(NAN, "s", x), _c(None, "x", x)),
        (_c(f"bert | {SCRIPT_ATTACK}"), _c("H100 SXM"), _c(1190.0, "samples/s", p),
         _c(0.0269, "s", p), _c(INF, "s", x), _c(2.9, "x", x)),
        (_c("gpt2 infer fp16 b1\nline two"), _c("RTX 4090"), _c(None, "samples/s", m, flag="does not fit"),
         _c(None, "s"), _c(None, "s"), _c(None, "x")),
    )
    cost_cols = (Column("device", "device"), Column("price", "price / hour", "usd"), Column("mem", "memory", "bytes"),
                 Column("tdp", "TDP", "W"), Column("j", "energy / sample", "J"),
                 Column("ppw", "samples/s/W", "samples/s/W"), Column("ppd", "samples/s per $/h", "samples/s/usd"),
                 Column("util", "utilization", "%"), Column("peak", "peak fp16", "flop/s"))
    cost_rows = (
        (_c("Xeon Gold 6338 (cpu)"), _c(1.42, "usd", k), _c(256 * 2**30, "bytes", k), _c(205.0, "W", k),
         _c(4.61, "J", e), _c(0.217, "samples/s/W", e), _c(29.0, "samples/s/usd", x), _c(97.0, "%", m),
         _c(2.5e12, "flop/s", k)),
        (_c("RTX 4090"), _c(0.74, "usd", k), _c(24 * 2**30, "bytes", k), _c(450.0, "W", k),
         _c(0.3156, "J", m), _c(3.17, "samples/s/W", m), _c(1668.0, "samples/s/usd", x), _c(88.4, "%", m),
         _c(165.2e12, "flop/s", k)),
        (_c("H100 SXM"), _c(3.99, "usd", k), _c(80 * 10**9, "bytes", k), _c(700.0, "W", k),
         _c(0.205, "J", e), _c(4.31, "samples/s/W", e), _c(755.6, "samples/s/usd", x), _c(None, "%"),
         _c(989.4e12, "flop/s", k)),
        (_c(ATTR_ATTACK), _c(12345.0, "usd", k), _c(512.0, "bytes", k), _c(NAN, "W", k), _c(None, "J"),
         _c(None, "samples/s/W"), _c(None, "samples/s/usd"), _c(3.4, "%", m), _c(None, "flop/s")),
    )
    acc_cols = (Column("workload", "workload"), Column("pred", "predicted step", "s"),
                Column("meas", "measured step", "s"), Column("err", "error", "%"), Column("ratio", "ratio", "ratio"))
    acc_rows = (
        (_c("resnet50 train fp16 b256 on 4090"), _c(0.198, "s", p), _c(0.2074, "s", m), _c(-4.5, "%", x),
         _c(0.955, "ratio", x)),
        (_c("bert-base train fp16 b32 on 4090"), _c(0.069, "s", p), _c(0.078, "s", m), _c(-11.5, "%", x),
         _c(0.885, "ratio", x)),
        (_c("resnet50 train fp32 b64 on cpu"), _c(1.71, "s", p), _c(1.553, "s", m), _c(10.1, "%", x),
         _c(1.101, "ratio", x)),
    )
    tables = (
        Table("train_time", "Training time", "Samples per second and the time to train to the target accuracy; "
              "the H100 row is predicted from the 4090 profile.", train_cols, train_rows,
              ("time to train = epochs x dataset size / samples/s", f"hostile note {SCRIPT_ATTACK}")),
        Table("cost", "Cost and energy", f"Catalog prices and measured energy {ATTR_ATTACK}", cost_cols, cost_rows,
              ("samples/s per $/h = samples/s / price per hour",)),
        Table("accuracy", "How good the predictions were", "Predicted vs measured step time.", acc_cols, acc_rows),
    )
    workloads = ("resnet50 train fp16 b256", "bert-base train fp16 b32", SCRIPT_ATTACK)
    speed = {"Xeon Gold 6338 (cpu)": (1.0, 1.0, 1.0), "RTX 4090": (29.96, 21.3, 8.2), "H100 SXM": (73.2, 61.0, 19.9)}
    speed_bars = tuple(Bar(w, dev, v[i], p if dev == "H100 SXM" else m)
                       for dev, v in speed.items() for i, w in enumerate(workloads))
    time_bars = tuple(Bar(w, dev, t, p if dev == "H100 SXM" else m) for w, pairs in (
        ("resnet50 train fp16 b256", (("Xeon Gold 6338 (cpu)", 3.1e5), ("RTX 4090", 10370.0), ("H100 SXM", 4245.0))),
        ("bert-base train fp16 b32", (("Xeon Gold 6338 (cpu)", 5.2e4), ("RTX 4090", 2440.0), ("H100 SXM", 852.0))),
    ) for dev, t in pairs)
    roofs = (Roof("RTX 4090", 1.008e12, {"fp32": 82.6e12, "tensor fp16": 165.2e12}, k),
             Roof(f"H100 SXM {ATTR_ATTACK}", 3.35e12, {"fp32": 66.9e12, "tensor fp16": 989.4e12}, "estimated"))
    points = (
        RoofPoint("RTX 4090", "resnet50 train fp16 b256", "conv", 92.0, 98e12, m),
        RoofPoint("RTX 4090", "resnet50 train fp16 b256", "batch_norm", 2.1, 1.7e12, m),
        RoofPoint("RTX 4090", "resnet50 train fp16 b256", "relu", 0.25, 0.21e12, m),
        RoofPoint("RTX 4090", "resnet50 train fp16 b256", "step", 38.0, 31e12, m),
        RoofPoint("H100 SXM", "bert-base train fp16 b32", "matmul", 180.0, 610e12, p),
        RoofPoint("H100 SXM", "bert-base train fp16 b32", "softmax", 1.2, 3.1e12, p),
        RoofPoint("H100 SXM", SCRIPT_ATTACK, "layer_norm", 0.9, 2.4e12, p),
        RoofPoint("H100 SXM", "bert-base train fp16 b32", "step", 45.0, 140e12, p),
        RoofPoint("H100 SXM", "bert-base train fp16 b32", "broken", NAN, 1e12, p),  # not drawn
    )
    batches = (1.0, 4.0, 16.0, 64.0, 256.0)
    series = (
        Series("resnet50 train fp32 on Xeon (cpu)", m, tuple((b, 41.2 * b / (b + 2)) for b in batches)),
        Series("resnet50 train fp16 on RTX 4090", m, tuple((b, 1400 * b / (b + 20)) for b in batches)),
        Series(f"resnet50 on H100 {ATTR_ATTACK}", p, (*((b, 3400 * b / (b + 24)) for b in batches), (512.0, INF))),
    )
    value_pts = (ScatterPoint("Xeon Gold 6338", "cpu", 29.0, 0.217, e),
                 ScatterPoint("RTX 4090", "gpu", 1668.0, 3.17, m), ScatterPoint("H100 SXM", "gpu", 755.6, 4.31, p),
                 ScatterPoint(SCRIPT_ATTACK, ATTR_ATTACK, 120.0, 1.1, k))
    charts = (
        BarChart("speedup", "Speedup over the CPU", "x", False, (*speed_bars, Bar("broken bar", "RTX 4090", NAN, m))),
        BarChart("train_time", "Time to train", "s", True, time_bars),
        RooflineChart("roofline", f"Roofline {ATTR_ATTACK}", roofs, points),
        LineChart("batch_throughput", "Throughput by batch size", "batch size", "throughput", "", "samples/s",
                  True, True, series),
        ScatterChart("value", "Performance per dollar and per watt", "samples/s per $/h", "samples/s/W",
                     "samples/s/usd", "samples/s/W", True, False, value_pts),
        ScatterChart("time_cost", "Time and cost", "time", "cost", "s", "usd", False, False, ()),
    )
    panels = ({"title": "resnet50 train fp16 b256", "verdict": "RTX 4090", "reasons": [
        "29.96x faster than the CPU, measured", f"H100 costs 5.4x more per hour {SCRIPT_ATTACK}"],
        "confidence": 0.8, "alternatives": {"H100 SXM": "2.4x faster, predicted"}, ATTR_ATTACK: NAN},)
    notes = ("Prices are on-demand list prices, June 2024.", f"hostile comparison note {ATTR_ATTACK}")
    return Comparison("2024-06-12T09:00:00Z", runs, tables, charts, panels, notes)


class _Tags(HTMLParser):
    """Every start tag with its attributes, and the text, of an HTML document."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self._code = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._code = tag in ("style", "script")

    def handle_endtag(self, tag: str) -> None:
        self._code = False

    def handle_data(self, data: str) -> None:
        if not self._code:
            self.text.append(data)


def _parse(doc: str) -> _Tags:
    p = _Tags()
    p.feed(doc)
    p.close()
    return p


@pytest.fixture(scope="module")
def page() -> str:
    return render_html(sample_comparison(), title=f"report {SCRIPT_ATTACK}")


# ---- formatting ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("cell", "text"), [
    (Cell(0.85, "s", "measured", spread=0.012), "850 ms ± 12 ms"),
    (Cell(1.5 * 2**30, "bytes", "catalog"), "1.50 GiB"),
    (Cell(12345.0, "samples/s", "measured"), "12.3k samples/s"),
    (Cell(41.23, "samples/s", "measured"), "41.2 samples/s"),
    (Cell(12.34, "x", "computed"), "12.3x"),
    (Cell(12.4, "%", "measured"), "12%"),
    (Cell(1234.4, "usd", "catalog"), "$1,234"),
    (Cell(0.74, "usd", "catalog"), "$0.74"),
    (Cell(350.0, "W", "catalog"), "350 W"),
    (Cell(0.0123, "J", "estimated"), "12.3 mJ"),
    (Cell(989.4e12, "flop/s", "catalog"), "989 TFLOP/s"),
    (Cell(999.7, "samples/s"), "1k samples/s"),
    (Cell(0.955, "ratio", "computed"), "0.955"),
    (Cell(256, ""), "256"),
    (Cell(2.4, "x", "predicted", low=2.0, high=2.9, flag="extrapolated"), "2.4x (2–2.9x) (extrapolated)"),
    (Cell(0.2, "s", "measured", flag="noisy"), "200 ms (noisy)"),
    (Cell(0.0849, "s", "predicted", low=0.071, high=1.2), "84.9 ms (71 ms–1.2 s)"),
    (Cell(12.0, "%", "predicted", low=10.0, high=14.0), "12% (10–14%)"),
    (Cell(5.0, "usd", "catalog", high=6.0), "$5.00 (≤ $6.00)"),
    (Cell(None, "s", "measured"), "–"),
    (Cell(NAN, "s", "measured", spread=NAN, low=INF), "–"),
    (Cell(-INF, "x"), "–"),
    (Cell("RTX 4090"), "RTX 4090"),
])
def test_format_cell(cell: Cell, text: str) -> None:
    assert format_cell(cell) == text


def test_format_helpers() -> None:
    assert si(3.12e14, "FLOP/s") == "312 TFLOP/s"
    assert si(0.0) == "0"
    assert format_value(-5.0, "usd") == "-$5.00"
    assert format_axis(1e15, "flop/s") == "1P"
    assert format_axis(0.5, "ratio") == "0.5"
    assert format_axis(100.0, "x") == "100x"


def test_scales_have_round_ends_and_ticks() -> None:
    lin = make_scale([3.0, 87.0], False, 0, 100, zero=True)
    assert (lin.lo, lin.hi) == (0.0, 100.0)
    assert lin.ticks() == [0.0, 20.0, 40.0, 60.0, 80.0, 100.0]
    assert lin(50.0) == pytest.approx(50.0)
    log = make_scale([0.3, 4.0e3], True, 0, 400)
    assert (log.lo, log.hi) == pytest.approx((0.1, 1e4))
    assert log.ticks() == pytest.approx([0.1, 1.0, 10.0, 100.0, 1e3, 1e4])
    assert log(1.0) == pytest.approx(80.0)
    narrow = make_scale([2.0, 30.0], True, 0, 1)
    assert narrow.ticks() == pytest.approx([1, 2, 5, 10, 20, 50, 100])
    flat = make_scale([5.0, 5.0], False, 0, 1)
    assert flat.lo < 5.0 < flat.hi


# ---- HTML ---------------------------------------------------------------------------------------------------

def test_hostile_strings_never_appear_unescaped(page: str) -> None:
    parsed = _parse(page)
    tags = [t for t, _ in parsed.tags]
    assert tags.count("script") == 1 and "img" not in tags  # only our own sorting script
    assert not any(a.startswith("on") for _, attrs in parsed.tags for a in attrs)
    for raw in (SCRIPT_ATTACK, ATTR_ATTACK, "<img", "<script>alert"):
        assert raw not in page
    # ... and they are shown, as text, in a table cell, a column header, a run, a chart label and a note
    text = "".join(parsed.text)
    assert text.count(SCRIPT_ATTACK) >= 5 and text.count(ATTR_ATTACK) >= 4
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in page


def test_page_is_self_contained(page: str) -> None:
    assert page.startswith("<!DOCTYPE html>")
    assert '<meta charset="utf-8">' in page
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert not re.search(r"(?i)(https?|ftp|wss?):|//[a-z0-9]|url\(|@import", page)
    for tag, attrs in _parse(page).tags:
        assert "src" not in attrs, tag
        href = attrs.get("href")
        assert href is None or href.startswith("#"), (tag, href)


def test_no_nan_or_inf_is_printed(page: str) -> None:
    text = " ".join(_parse(page).text)
    assert not re.search(r"(?i)\b(nan|inf|infinity|none)\b", text)
    assert "–" in text


def test_tables_rows_and_cells(page: str) -> None:
    parsed = _parse(page)
    rows: dict[str, int] = {}
    current = None
    for tag, attrs in parsed.tags:
        if tag == "table":
            current = attrs.get("data-table")
        elif tag == "tr" and current is not None:
            rows[current] = rows.get(current, 0) + 1
    assert rows == {k: v + 1 for k, v in EXPECTED_ROWS.items()}  # + the header row
    tds = [a for t, a in parsed.tags if t == "td"]
    predicted = [a for a in tds if "src-predicted" in (a.get("class") or "")]
    assert predicted and all("predicted" in (a.get("title") or "") for a in predicted)
    assert any("num" in (a.get("class") or "") and a.get("data-v") == "1234.5" for a in tds)
    assert '<span class="v">207 ms</span> <span class="extra">± 3.1 ms</span>' in page
    assert '<span class="v">1.23k samples/s</span><span class="mark" aria-hidden="true">ᵐ</span>' in page
    assert '<span class="extra">(noisy)</span>' in page
    assert '–</span><span class="mark"' not in page  # no source marker on a missing figure


def test_every_chart_is_accessible_and_has_its_marks(page: str) -> None:
    parsed = _parse(page)
    marks: dict[str, dict[str, int]] = {}
    svgs: dict[str, dict[str, str | None]] = {}
    chart = None
    for tag, attrs in parsed.tags:
        if tag == "svg" and attrs.get("data-chart") is not None:
            chart = str(attrs["data-chart"])
            svgs[chart] = attrs
        if chart and "data-mark" in attrs:
            kind = str(attrs["data-mark"])
            marks.setdefault(chart, {})[kind] = marks.setdefault(chart, {}).get(kind, 0) + 1
    assert marks == EXPECTED_MARKS
    for attrs in svgs.values():
        assert attrs["role"] == "img" and attrs.get("aria-label")
        assert attrs.get("viewbox") and attrs.get("width") == "100%"
    assert page.count("<svg class=\"chart\"") == len(EXPECTED_MARKS)
    assert len(re.findall(r'<svg class="chart"[^>]*>\s*<title>', page)) == len(EXPECTED_MARKS)
    for chart_id in EMPTY_CHARTS:
        assert f'data-chart-empty="{chart_id}"' in page and f'data-chart="{chart_id}"' not in page


def test_roofline_draws_each_peak_and_bends_at_the_ridge() -> None:
    roof = Roof("gpu", 1e12, {"fp32": 50e12, "fp16": 200e12}, "catalog")
    svg = roofline_chart(RooflineChart("r", "r", (roof,), (RoofPoint("gpu", "w", "step", 10.0, 20e12, "measured"),)))
    paths = re.findall(r'data-mark="roof" d="([^"]+)"', svg)
    assert len(paths) == 2
    assert all(len(d.split("L")) == 3 for d in paths)  # slope, ridge, flat
    assert "gpu · fp16 200 TFLOP/s" in svg and 'class="mark point step"' in svg
    empty = roofline_chart(RooflineChart("r2", "r2", (), ()))
    assert 'data-chart-empty="r2"' in empty and "<svg" not in empty


def test_panels_show_verdict_reasons_and_unknown_keys(page: str) -> None:
    panel = page[page.index('data-panel=""'):]
    assert "RTX 4090" in panel and "29.96x faster than the CPU" in panel
    assert "confidence" in panel and "0.8" in panel and "alternatives" in panel


# ---- Markdown -----------------------------------------------------------------------------------------------

def test_markdown_tables_marks_and_escaping() -> None:
    md = render_markdown(sample_comparison())
    assert md.startswith("# dlgpu comparison\n")
    assert "ᵐ measured" in md and "ᵖ predicted" in md and "ᶜ catalog" in md and "ᵉ estimated" in md
    for title in ("## Runs", "## Training time", "## Cost and energy", "## How good the predictions were"):
        assert title in md
    assert "| 1.23k samples/sᵐ |" in md and "| $0.74ᶜ |" in md and "3.02k samples/s (2.5k–3.6k samples/s)ᵖ" in md
    assert "| 1.18 hᵃ | 73.2x (extrapolated)ᵃ |" in md and "| 26.9 msᵖ | – | 2.9xᵃ |" in md  # no mark on –
    assert "broken bar" not in md  # a bar with no value is left out of the chart's table
    assert "imported\\|run<br>2" in md and "gpt2 infer fp16 b1<br>line two" in md
    assert "<script>" not in md and "<img" not in md and "&lt;script&gt;" in md
    assert not re.search(r"(?i)\b(nan|inf|none)\b", md)
    # every table line of the "train_time" table has as many unescaped pipes as the header
    lines = md[md.index("## Training time"):].split("\n\n")[2].splitlines()
    assert len(lines) == 2 + EXPECTED_ROWS["train_time"]
    assert {len(re.findall(r"(?<!\\)\|", line)) for line in lines} == {7}
    assert "Speedup over the CPU** (bar chart, id speedup): drawn in the HTML report" in md
    assert "| resnet50 train fp16 b256 | 1xᵐ | 30xᵐ | 73.2xᵖ |" in md  # the speedup bars, pivoted
    assert "Roofline" in md and "### resnet50 train fp16 b256" in md and "**RTX 4090**" in md


def test_md_escape() -> None:
    assert md_escape("a|b") == "a\\|b"
    assert md_escape("one\ntwo") == "one<br>two"
    assert md_escape("<b>*x*</b>") == "&lt;b&gt;\\*x\\*&lt;/b&gt;"
    assert md_escape("resnet50_train _x_") == "resnet50_train \\_x\\_"


def test_empty_comparison_renders() -> None:
    empty = Comparison("2024-01-01T00:00:00Z", (), (), ())
    page = render_html(empty)
    assert "No runs." in page and "No charts." in page
    assert "_No runs._" in render_markdown(empty) and "## Charts" not in render_markdown(empty)
