"""LLM figures in ``dlgpu compare`` and ``dlgpu report``: TPOT, TTFT, tokens/s (per sequence and total) and energy
per token derived from stored bench results (real ``BenchResult``/``BenchReport`` documents with chosen step
times: no model runs here), the LLM section of the HTML and Markdown, the decode chart, and the ratio of two runs
of the same LLM configuration."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dlgpu.catalog import load_catalog
from dlgpu.report.compare import build_comparison
from dlgpu.report.format import MISSING, format_cell, format_value
from dlgpu.report.html import render_html
from dlgpu.report.markdown import render_markdown
from dlgpu.report.model import LLM_SECTION, BarChart, Comparison, Table
from dlgpu.results import (
    BenchConfig,
    BenchReport,
    BenchResult,
    DeviceInfo,
    MachineInfo,
    StepStats,
)

MODEL = "llama-3.2-1b"
PARAMS = {"context_len": 1024, "prompt_len": 512, "attention": "sdpa"}


def _result(task: str, precision: str, batch: int, step_s: float, *, workload: str = MODEL,
            energy_j: float | None = None, energy_source: str | None = None, overrides: dict[str, Any] | None = None,
            params: dict[str, Any] | None = None, contended: bool = False) -> BenchResult:
    """An ok result whose timed steps all took ``step_s`` (one outlier-free window: the median is ``step_s``)."""
    llm = workload == MODEL
    settings: dict[str, Any] = {"params": dict(PARAMS if params is None else params)}
    if llm:
        settings["weights"] = {"format": precision, "dtype": "bfloat16"}
    return BenchResult(
        workload=workload, task=task, device="cpu", precision=precision, batch_size=batch,
        overrides=dict(overrides or {}), status="ok", step_time=StepStats((step_s,) * 5), settings=settings,
        peak_mem_bytes=3 * 2**30, peak_mem_kind="process-peak-rss", energy_j_per_sample=energy_j,
        energy_source=energy_source, contended=contended)


def _doc(results: list[BenchResult], host: str, runtime: dict[int, str] | None = None) -> dict[str, Any]:
    """A bench document as the store keeps it; ``runtime`` sets the runtime field of result i (as a result from
    the llama.cpp runtime carries it)."""
    machine = MachineInfo(hostname=host, platform="Linux", python="3.12", torch="2.5", torchvision=None,
                          transformers=None, torch_cuda=None, torch_hip=None, cudnn=None, dlgpu="0",
                          cpu_flags=(), devices=(DeviceInfo("cpu", "cpu", "Test CPU 9000", 64 * 2**30, "cpu",
                                                            physical_cores=8, threads_used=8),))
    config = BenchConfig(workloads=(MODEL,), devices=("cpu",), precisions=("bf16",), tasks=("decode", "infer"),
                         quick=True, batch_size=None, overrides={}, budget_s=1.0, warmup_steps=1, min_steps=2,
                         max_steps=5)
    doc = BenchReport(created_at="2026-01-01T00:00:00Z", machine=machine, config=config,
                      results=tuple(results)).to_dict()
    for i, rt in (runtime or {}).items():
        doc["results"][i]["runtime"] = rt
    return doc


def _run(run_id: str, machine: str) -> dict[str, Any]:
    return {"id": run_id, "kind": "bench", "created_at": "2026-01-01T00:00:00Z", "machine": machine, "summary": ""}


def _rows(comp: Comparison, table_id: str) -> list[dict[str, Any]]:
    t = _table(comp, table_id)
    return [{c.key: cell for c, cell in zip(t.columns, row, strict=True)} for row in t.rows]


def _table(comp: Comparison, table_id: str) -> Table:
    return next(t for t in comp.tables if t.id == table_id)


RUN_A = [
    _result("decode", "bf16", 1, 0.05, energy_j=2.5, energy_source="measured-rapl"),
    _result("decode", "int8", 4, 0.08, energy_source="unavailable"),
    _result("infer", "bf16", 512, 0.4, energy_j=0.01, energy_source="estimated"),
    _result("decode", "q8_0", 1, 0.04),  # from llama.cpp (its runtime field below)
    _result("infer", "fp32", 8, 0.2, workload="resnet50", params={"image_size": 224}, energy_j=1.0,
            energy_source="estimated"),
]
RUN_B = [_result("decode", "bf16", 1, 0.025, energy_j=1.0, energy_source="measured-rapl", contended=True)]


@pytest.fixture(scope="module")
def comp() -> Comparison:
    runs = [(_run("run-a", "box-a"), _doc(RUN_A, "box-a", runtime={3: "llama.cpp"})),
            (_run("run-b", "box-b"), _doc(RUN_B, "box-b"))]
    return build_comparison(runs, load_catalog())


def _row(comp: Comparison, runtime: str, weights: str, task: str, device: str = "box-a") -> dict[str, Any]:
    (row,) = [r for r in _rows(comp, "llm") if r["runtime"].value == runtime and r["weights"].value == weights
              and r["task"].value.startswith(task) and device in str(r["device"].value)]
    return row


def test_decode_figures_from_the_step_median(comp: Comparison) -> None:
    r = _row(comp, "pytorch", "bf16", "decode")
    assert r["model"].value == MODEL and r["source"].value == "measured"
    assert r["tpot"].value == pytest.approx(0.05) and r["tpot"].unit == "s"  # TPOT = the median decode step
    assert r["ttft"].value is None
    assert r["tps"].value == pytest.approx(20.0) and r["tps"].unit == "tokens/s"  # batch 1 / 0.05 s
    assert r["tps_seq"].value == pytest.approx(20.0)
    assert r["length"].value == 1024  # the context, from the parameters it ran with
    assert r["sequences"].value == 1 and r["batch"].value == 1
    assert r["j_token"].value == pytest.approx(2.5) and r["j_token"].source == "measured"
    assert r["energy_source"].value == "measured-rapl"
    assert r["peak_mem"].value == 3 * 2**30 and r["peak_mem"].flag == "process RSS"
    assert format_value(r["tpot"].value, "s") == "50 ms" and format_cell(r["tps"]) == "20 tokens/s"
    assert format_cell(r["j_token"]) == "2.5 J/token"

    # Batch 4: four sequences share each 80 ms step.
    b4 = _row(comp, "pytorch", "int8", "decode")
    assert b4["tpot"].value == pytest.approx(0.08)
    assert b4["tps"].value == pytest.approx(50.0) and b4["tps_seq"].value == pytest.approx(12.5)
    assert b4["sequences"].value == 4


def test_prefill_ttft_and_tokens_per_s(comp: Comparison) -> None:
    r = _row(comp, "pytorch", "bf16", "infer")
    assert r["ttft"].value == pytest.approx(0.4) and r["tpot"].value is None
    assert r["tps"].value == pytest.approx(512 / 0.4) and r["tps_seq"].value is None
    assert r["length"].value == 512 and r["sequences"].value == 1  # one prompt of prompt_len tokens
    assert r["j_token"].value == pytest.approx(0.01) and r["j_token"].source == "estimated"
    assert format_value(r["ttft"].value, "s") == "400 ms" and format_cell(r["j_token"]) == "10 mJ/token"


def test_two_prompts_and_overridden_lengths() -> None:
    """A prefill batch of two prompts: both get their first token when the one step ends (TTFT = the step), and
    the lengths come from the result's overrides, shown in their own column rather than in the model's name."""
    params = {**PARAMS, "context_len": 2048, "attention": "eager"}
    over = {"context_len": 2048, "attention": "eager"}
    results = [_result("infer", "bf16", 1024, 0.7, params=params, overrides=over),
               _result("decode", "fp16", 2, 0.1, params=params, overrides=over)]
    comp = build_comparison([(_run("run-d", "box-d"), _doc(results, "box-d"))], load_catalog())
    prefill, decode = sorted(_rows(comp, "llm"), key=lambda r: r["task"].value != "infer (prefill)")
    assert prefill["model"].value == decode["model"].value == f"{MODEL} (attention=eager)"
    assert prefill["sequences"].value == 2 and prefill["length"].value == 512
    assert prefill["ttft"].value == pytest.approx(0.7) and prefill["tps"].value == pytest.approx(1024 / 0.7)
    assert decode["length"].value == 2048 and decode["tpot"].value == pytest.approx(0.1)
    assert decode["tps"].value == pytest.approx(20.0) and decode["tps_seq"].value == pytest.approx(10.0)
    assert not [t for t in comp.tables if t.id == "llm_ratio"]  # one run: nothing to set against


def test_missing_energy_is_blank_not_zero(comp: Comparison) -> None:
    for r in (_row(comp, "pytorch", "int8", "decode"), _row(comp, "llama.cpp", "q8_0", "decode")):
        assert r["j_token"].value is None and r["j_token"].source is None
        assert format_cell(r["j_token"]) == MISSING
    assert _row(comp, "pytorch", "int8", "decode")["energy_source"].value == "unavailable"
    md = render_markdown(comp)
    line = next(ln for ln in md.splitlines() if ln.startswith(f"| {MODEL} | pytorch | int8 |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    j_col = [c.key for c in _table(comp, "llm").columns].index("j_token")
    assert cells[j_col] == MISSING


def test_runtime_and_weight_format(comp: Comparison) -> None:
    r = _row(comp, "llama.cpp", "q8_0", "decode")
    assert r["tpot"].value == pytest.approx(0.04) and r["tps"].value == pytest.approx(25.0)
    assert {row["model"].value for row in _rows(comp, "llm")} == {MODEL}  # resnet50 is no LLM row
    inference = _rows(comp, "inference")
    assert {r["unit"].value for r in inference if r["workload"].value == MODEL} == {"tokens/s"}
    assert {r["sps"].unit for r in inference if r["workload"].value == MODEL} == {"tokens/s"}
    assert {r["unit"].value for r in inference if r["workload"].value == "resnet50"} == {"samples/s"}
    assert {r["sps"].unit for r in inference if r["workload"].value == "resnet50"} == {"samples/s"}


def test_ratio_of_two_runs_of_the_same_config(comp: Comparison) -> None:
    (r,) = _rows(comp, "llm_ratio")  # only the bf16 decode at batch 1, context 1024 was measured by both runs
    assert r["weights"].value == "bf16" and r["length"].value == 1024
    assert "run-a" in r["a"].value and "run-b" in r["b"].value
    assert r["tps_a"].value == pytest.approx(20.0) and r["tps_b"].value == pytest.approx(40.0)
    assert r["tps_ratio"].value == pytest.approx(2.0) and r["tps_ratio"].unit == "x"
    assert r["lat_a"].value == pytest.approx(0.05) and r["lat_b"].value == pytest.approx(0.025)
    assert r["lat_ratio"].value == pytest.approx(0.5)
    assert "B: contended" in r["flags"].value


def test_decode_chart_per_weight_format(comp: Comparison) -> None:
    chart = next(c for c in comp.charts if c.id == "llm_decode_tokens")
    assert isinstance(chart, BarChart) and chart.unit == "tokens/s" and chart.section == LLM_SECTION
    got = {(b.group, b.label.split(" · ")[0], "box-b" in b.label): b.value for b in chart.bars}
    one, four = f"{MODEL} b1 ctx 1024", f"{MODEL} b4 ctx 1024"
    assert got == pytest.approx({(one, "bf16", False): 20.0, (four, "int8", False): 50.0,
                                 (one, "q8_0 (llama.cpp)", False): 25.0, (one, "bf16", True): 40.0})
    assert all(b.source == "measured" for b in chart.bars)


def test_html_has_the_llm_section_table_and_chart(comp: Comparison) -> None:
    page = render_html(comp)
    start = page.index('<section id="llm" data-section="llm">')
    section = page[start:page.index('<section id="charts">')]
    assert '<table data-table="llm">' in section and '<table data-table="llm_ratio">' in section
    assert '<figure data-figure="llm_decode_tokens">' in section and "<svg" in section
    assert section.count('data-mark="bar"') == 4
    for text in ("TPOT (time per output token)", "TTFT (time to first token)", "energy per token (J/token)",
                 "50 ms", "400 ms", "20 tokens/s", "2.5 J/token", "measured-rapl", "q8_0 (llama.cpp)"):
        assert text in section, text
    assert 'data-figure="llm_decode_tokens"' not in page[page.index('<section id="charts">'):]


def test_json_and_markdown_carry_the_llm_figures(comp: Comparison) -> None:
    d = json.loads(json.dumps(comp.to_dict(), allow_nan=False))
    llm = next(t for t in d["tables"] if t["id"] == "llm")
    assert llm["section"] == LLM_SECTION
    assert "section" not in next(t for t in d["tables"] if t["id"] == "train_time")  # other tables as they were
    tpot = [row[[c["key"] for c in llm["columns"]].index("tpot")] for row in llm["rows"]]
    assert {"value": 0.05, "unit": "s", "source": "measured", "spread": 0.0} in tpot
    md = render_markdown(comp)
    assert "## LLM inference" in md and "### LLM inference: TTFT, TPOT" in md and "### LLM runs compared" in md
    assert md.index("## LLM inference") < md.index("## Charts")


def test_no_llm_results_no_llm_section() -> None:
    comp = build_comparison([(_run("run-c", "box-c"), _doc([RUN_A[4]], "box-c"))], load_catalog())
    assert not [t for t in comp.tables if t.id.startswith("llm")]
    assert not [c for c in comp.charts if c.id.startswith("llm")]
    assert 'data-section="llm"' not in render_html(comp) and "LLM inference" not in render_markdown(comp)


def test_units_read_as_labelled() -> None:
    assert format_value(20.0, "tokens/s") == "20 tokens/s"
    assert format_value(1280.0, "tokens/s") == "1.28k tokens/s"
    assert format_value(0.0123, "J/token") == "12.3 mJ/token"
    assert format_value(None, "J/token") == MISSING


def test_cli_compare_json_and_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Through the store: both documents imported, then ``compare --json`` and ``report --html``."""
    from dlgpu.cli.main import main

    db = str(tmp_path / "r.sqlite")
    files = []
    # PyTorch results only: whether the store takes llama.cpp results is the schema's business, not the report's.
    for name, doc in (("a", _doc(RUN_A[:3] + RUN_A[4:], "box-a")), ("b", _doc(RUN_B, "box-b"))):
        f = tmp_path / f"{name}.json"
        f.write_text(json.dumps(doc))
        files.append(str(f))
    assert main(["import", *files, "--db", db]) == 0
    capsys.readouterr()
    assert main(["compare", "--db", db, "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    ids = {t["id"] for t in d["tables"]}
    assert {"llm", "llm_ratio"} <= ids and "llm_decode_tokens" in {c["id"] for c in d["charts"]}
    ratio = next(t for t in d["tables"] if t["id"] == "llm_ratio")
    keys = [c["key"] for c in ratio["columns"]]
    assert [row[keys.index("tps_ratio")]["value"] for row in ratio["rows"]] == [pytest.approx(2.0)]
    assert main(["compare", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "LLM inference" in out and "TPOT" in out
    html = tmp_path / "r.html"
    assert main(["report", "--db", db, "--html", str(html)]) == 0
    assert 'data-figure="llm_decode_tokens"' in html.read_text(encoding="utf-8")
