"""The fine-tuning section of ``dlgpu compare`` and ``dlgpu report`` (``report.compare_finetune``) over real runs:
``test_llm`` (a 2-layer Llama) fine-tuned on this CPU with LoRA and with full fine-tuning at seq_len 32, each stored
by ``dlgpu bench --task finetune`` in a fresh database; the rows must be the stored results' figures, the ratio
LoRA's over full fine-tuning's, the training tables must ignore them, and the JSON, HTML and Markdown must carry
the section. Repeated runs and a baseline other than full are checked on copies of the stored documents."""

from __future__ import annotations

import copy
import json
import statistics
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dlgpu import api
from dlgpu.catalog import load_catalog
from dlgpu.cli.main import main
from dlgpu.report.compare import build_comparison
from dlgpu.report.html import render_html
from dlgpu.report.markdown import render_markdown
from dlgpu.report.model import FINETUNE_SECTION, SECTION_TITLES, Comparison
from dlgpu.store.history import stored_documents

SEQ = 32
FT_TABLES = ("finetune", "finetune_memory", "finetune_ratio")


def _rows(comp: Comparison, table_id: str) -> list[dict[str, Any]]:
    t = next(t for t in comp.tables if t.id == table_id)
    return [{c.key: cell for c, cell in zip(t.columns, row, strict=True)} for row in t.rows]


def _values(comp: Comparison, table_id: str) -> list[dict[str, Any]]:
    return [{k: c.value for k, c in row.items()} for row in _rows(comp, table_id)]


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Two real fine-tuning runs of test_llm on the CPU (LoRA, then full), saved in a fresh database."""
    tmp = tmp_path_factory.mktemp("compare_finetune")
    db = tmp / "ft.sqlite"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DLGPU_HOME", str(tmp / "home"))
        mp.delenv("DLGPU_DB", raising=False)
        for method in ("lora", "full"):
            assert main(["bench", "-w", "test_llm", "--task", "finetune", "--method", method, "--set",
                         f"seq_len={SEQ}", "-b", "1", "--device", "cpu", "--budget", "1", "--no-telemetry",
                         "--db", str(db)]) == 0
        docs = stored_documents([], db)
        results = {r["settings"]["method"]: r for _, doc in docs for r in doc["results"]}
        yield {"db": db, "docs": docs, "results": results, "tmp": tmp}


def test_one_row_per_configuration_with_the_stored_figures(stored: dict[str, Any]) -> None:
    comp = api.compare(db=stored["db"])
    rows = _rows(comp, "finetune")
    assert [r["method"].value for r in rows] == ["full", "LoRA r=8 q_proj,v_proj"]  # full first: methods' order
    for row in rows:
        v = {k: c.value for k, c in row.items()}
        r = stored["results"]["full" if v["method"] == "full" else "lora"]
        s = r["settings"]
        assert v["model"] == "test_llm" and v["weights"] == r["precision"] == "bf16"
        assert v["optimizer"] == "adamw" and v["checkpointing"] == "no"
        assert v["seq_len"] == SEQ and v["batch"] == "1 x 1" and "cores" in v["device"]
        assert v["step"] == pytest.approx(r["step_time_s"]["median"])
        assert row["step"].spread == pytest.approx(r["step_time_s"]["iqr"])
        assert v["sps"] == pytest.approx(r["samples_per_s"])
        assert v["tps"] == pytest.approx(s["tokens_per_s"])
        assert v["peak_mem"] == r["peak_mem_bytes"] and row["peak_mem"].flag == "process peak RSS"
        assert (v["trainable"], v["total"]) == (s["trainable_parameters"], s["total_parameters"])
        # every figure is marked measured, and the flags say what the stored result says
        assert all(row[k].source == "measured" for k in ("step", "tps", "sps", "peak_mem", "trainable", "total"))
        assert ("contended" in (v["flags"] or "")) == bool(r.get("contended"))
        assert ("noisy" in (v["flags"] or "")) == bool(r.get("noisy"))
    full, lora = stored["results"]["full"], stored["results"]["lora"]
    assert full["settings"]["trainable_parameters"] == full["settings"]["total_parameters"]
    assert lora["settings"]["trainable_parameters"] < lora["settings"]["total_parameters"]


def test_memory_breakdown_is_the_stored_tensor_bytes(stored: dict[str, Any]) -> None:
    comp = api.compare(db=stored["db"])
    rows = _rows(comp, "finetune_memory")
    assert len(rows) == 2
    for row in rows:
        v = {k: c.value for k, c in row.items()}
        r = stored["results"]["full" if str(v["configuration"]).startswith("full") else "lora"]
        s = r["settings"]
        parts = (s["base_weights_bytes"], s["trainable_weights_bytes"], s["gradients_bytes"],
                 s["optimizer_state_bytes"])
        assert (v["frozen_weights"], v["trainable_weights"], v["gradients"], v["optimizer_state"]) == parts
        assert all(row[k].source == "measured"
                   for k in ("peak_mem", "frozen_weights", "trainable_weights", "gradients", "optimizer_state"))
        assert v["tensors"] == sum(parts) and row["tensors"].source == "computed"
        assert v["peak_above_start"] == r["peak_mem_bytes"] - s["memory"]["rss_before_build_bytes"]
        assert "seq_len 32, 1 x 1" in v["configuration"] and "bf16, adamw" in v["configuration"]


def test_lora_against_full_fine_tuning(stored: dict[str, Any]) -> None:
    comp = api.compare(db=stored["db"])
    (row,) = _rows(comp, "finetune_ratio")
    v = {k: c.value for k, c in row.items()}
    full, lora = stored["results"]["full"], stored["results"]["lora"]
    assert v["a"] == "full, bf16, adamw" and v["b"] == "LoRA r=8 q_proj,v_proj, bf16, adamw"
    assert (v["seq_len"], v["batch"]) == (SEQ, "1 x 1")
    assert v["step_a"] == pytest.approx(full["step_time_s"]["median"])
    assert v["step_b"] == pytest.approx(lora["step_time_s"]["median"])
    assert v["step_ratio"] == pytest.approx(lora["step_time_s"]["median"] / full["step_time_s"]["median"])
    assert v["tps_ratio"] == pytest.approx(lora["settings"]["tokens_per_s"] / full["settings"]["tokens_per_s"])
    assert v["peak_ratio"] == pytest.approx(lora["peak_mem_bytes"] / full["peak_mem_bytes"])

    def tensors(r: dict[str, Any]) -> int:
        s = r["settings"]
        return sum(s[k] for k in ("base_weights_bytes", "trainable_weights_bytes", "gradients_bytes",
                                  "optimizer_state_bytes"))

    assert v["tensors_ratio"] == pytest.approx(tensors(lora) / tensors(full)) and v["tensors_ratio"] < 1
    assert v["trainable_ratio"] == pytest.approx(lora["settings"]["trainable_parameters"]
                                                 / full["settings"]["trainable_parameters"])
    assert all(row[k].source == "computed" for k in ("step_ratio", "tps_ratio", "peak_ratio", "tensors_ratio"))
    assert row["step_a"].source == row["step_b"].source == "measured"


def test_other_sections_do_not_count_fine_tuning(stored: dict[str, Any]) -> None:
    comp = api.compare(db=stored["db"])
    for table_id in ("train_time", "inference", "infer_time", "mixed_precision", "measured_vs_predicted"):
        assert _rows(comp, table_id) == [], table_id
    assert not any(t.section == "llm" for t in comp.tables)  # test_llm is an LLM, but fine-tuning is no inference
    sections = {t.id: t.section for t in comp.tables if t.section}
    assert sections == dict.fromkeys(FT_TABLES, FINETUNE_SECTION)
    assert any("2 fine-tuning figures" in n for n in comp.notes)


def test_json_carries_the_section(stored: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", "--db", str(stored["db"]), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "dlgpu.compare/1"
    tables = {t["id"]: t for t in doc["tables"]}
    assert all(tables[t]["section"] == FINETUNE_SECTION for t in FT_TABLES)
    main_keys = [c["key"] for c in tables["finetune"]["columns"]]
    assert main_keys == ["model", "method", "weights", "optimizer", "checkpointing", "seq_len", "batch", "device",
                         "step", "tps", "sps", "peak_mem", "trainable", "total", "flags"]
    assert {"step_ratio", "tps_ratio", "peak_ratio", "tensors_ratio"} <= {
        c["key"] for c in tables["finetune_ratio"]["columns"]}
    step = tables["finetune"]["rows"][0][main_keys.index("step")]
    assert step["unit"] == "s" and step["source"] == "measured" and "spread" in step
    assert step["value"] == pytest.approx(stored["results"]["full"]["step_time_s"]["median"])


def test_terminal_html_and_markdown_draw_the_tables(stored: dict[str, Any],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", "--db", str(stored["db"])]) == 0
    out = capsys.readouterr().out
    assert "Fine-tuning: step time, tokens/s and peak memory" in out and "Fine-tuning methods compared" in out
    html_path, md_path = stored["tmp"] / "r.html", stored["tmp"] / "r.md"
    assert main(["report", "--db", str(stored["db"]), "--html", str(html_path), "--markdown", str(md_path)]) == 0
    html, md = html_path.read_text(encoding="utf-8"), md_path.read_text(encoding="utf-8")
    assert f'data-section="{FINETUNE_SECTION}"' in html
    assert all(f'data-table="{t}"' in html for t in FT_TABLES)
    assert f"## {SECTION_TITLES[FINETUNE_SECTION]}" in md
    assert "### Fine-tuning: step time, tokens/s and peak memory" in md and "LoRA r=8 q_proj,v_proj" in md
    assert "step time B/A" in md and "tensors B/A" in md
    comp = api.compare(db=stored["db"])
    assert render_html(comp).count("<h3>Fine-tuning") == 3
    assert render_markdown(comp).count("### Fine-tuning") == 3


def _copy(stored: dict[str, Any], method: str, run_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A stored run with only its ``method`` result, under another run id."""
    run, doc = next((r, d) for r, d in stored["docs"] if d["results"][0]["settings"]["method"] == method)
    run, doc = copy.deepcopy(run), copy.deepcopy(doc)
    run["id"] = run_id
    return run, doc


def test_repeated_runs_are_reconciled_spelled_out_settings_or_not(stored: dict[str, Any]) -> None:
    """A second LoRA run with its rank spelled out (``--set lora_rank=8``: the default) and another speed is the same
    configuration: one row, the median samples/s of the two, 'median of 2 runs'."""
    runs = [copy.deepcopy(x) for x in stored["docs"]]
    run, doc = _copy(stored, "lora", "again")
    r = doc["results"][0]
    r["overrides"]["lora_rank"] = "8"
    r["samples_per_s"] *= 2
    r["step_time_s"]["median"] /= 2
    r["contended"] = False
    runs.append((run, doc))
    comp = build_comparison(runs, load_catalog())
    lora = [v for v in _values(comp, "finetune") if str(v["method"]).startswith("LoRA")]
    assert len(lora) == 1
    first = stored["results"]["lora"]
    both = [first, r]
    calm = [x for x in both if not x.get("contended")] or both
    expected = statistics.median(x["samples_per_s"] for x in calm)
    assert lora[0]["sps"] == pytest.approx(expected)
    assert lora[0]["tps"] == pytest.approx(expected * SEQ)
    assert lora[0]["step"] == pytest.approx(1 / expected)
    assert ("median of 2 runs" in lora[0]["flags"]) == (len(calm) == 2)


def test_without_full_fine_tuning_the_first_method_is_the_baseline(stored: dict[str, Any]) -> None:
    """LoRA and a QLoRA (a copy of the LoRA run relabelled): QLoRA is measured against LoRA."""
    lora = _copy(stored, "lora", "lora")
    run, doc = _copy(stored, "lora", "q")
    s = doc["results"][0]["settings"]
    s["method"] = s["finetune"]["method"] = "qlora"
    doc["results"][0]["overrides"]["method"] = "qlora"
    doc["results"][0]["samples_per_s"] /= 2
    doc["results"][0]["step_time_s"]["median"] *= 2
    comp = build_comparison([lora, (run, doc)], load_catalog())
    (v,) = _values(comp, "finetune_ratio")
    assert v["a"].startswith("LoRA r=8") and v["b"].startswith("QLoRA r=8 q_proj,v_proj (NF4 + double quant)")
    assert v["step_ratio"] == pytest.approx(2.0) and v["tps_ratio"] == pytest.approx(0.5)


def test_a_lone_configuration_has_no_ratio_and_no_fine_tuning_means_no_section(stored: dict[str, Any],
                                                                               tmp_path: Path) -> None:
    comp = build_comparison([_copy(stored, "lora", "x")], load_catalog())
    assert [t.id for t in comp.tables if t.section == FINETUNE_SECTION] == ["finetune", "finetune_memory"]
    run, doc = _copy(stored, "lora", "y")
    doc["results"][0]["task"] = "train"  # not a fine-tuning result: the section is gone
    comp = build_comparison([(run, doc)], load_catalog())
    assert not any(t.section == FINETUNE_SECTION for t in comp.tables)
    assert len(_rows(comp, "train_time")) == 1
