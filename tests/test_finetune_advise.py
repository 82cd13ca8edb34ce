"""``dlgpu advise MODEL --task finetune``: the verdict for a fine-tuning job, the cheapest device per method that fits
and meets the deadline, and this machine's CPU judged from its prediction or a stored measurement. Torch-free."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dlgpu.advise.finetune import advise_finetune
from dlgpu.catalog import load_catalog
from dlgpu.cli.main import main
from dlgpu.predict.calibration import load_calibration
from dlgpu.predict.targets import prediction_device

JOB = ["--samples", "50000", "--seq-len", "512", "--epochs", "3", "--deadline", "12h"]


@pytest.fixture(scope="module")
def all_methods() -> dict[str, Any]:
    cat = load_catalog()
    return advise_finetune(cat, load_calibration(), "llama3_8b", None, 50_000, 512, 3, 12 * 3600, {},
                           this_machine=prediction_device("local", cat))


def test_a_12h_qlora_job_is_cheaper_than_full_fine_tuning(all_methods: dict[str, Any]) -> None:
    pm = all_methods["per_method"]
    assert set(pm) == {"full", "freeze", "lora", "qlora"}
    q, full = pm["qlora"], pm["full"]
    assert q["cheapest_rent"] is not None and full["cheapest_rent"] is not None
    assert q["cheapest_rent"]["job_cost_usd"] < full["cheapest_rent"]["job_cost_usd"]
    # one card holds QLoRA; no single card for sale in the catalog holds full fine-tuning and meets 12 h cheaper
    assert q["cheapest_buy"] is not None
    assert full["cheapest_buy"] is None or full["cheapest_buy"]["price_usd"] > q["cheapest_buy"]["price_usd"]
    best = q["cheapest_buy"]
    assert best["fits"] and best["meets"] and best["time_s"] <= 12 * 3600
    assert best["peak_mem_bytes"] <= best["usable_bytes"]
    # every cheaper card for sale either does not fit or misses the deadline
    for c in all_methods["candidates"]:
        if c["method"] == "qlora" and c["how"] == "buy" and c["price_usd"] and c["price_usd"] < best["price_usd"]:
            assert not c["meets"]


def test_this_cpu_is_judged_honestly(all_methods: dict[str, Any]) -> None:
    here = all_methods["this_machine"]
    assert {r["method"] for r in here["methods"]} == {"full", "freeze", "lora", "qlora"}
    for r in here["methods"]:
        assert r["source"] == "predicted" and r["time_s"] > 12 * 3600 and r["meets"] is False
        assert "CPU's peak" in r["basis"]
    assert all_methods["verdict"].startswith("A GPU is needed: this machine's CPU")
    assert "qlora: cheapest that fits and meets it" in all_methods["verdict"]


def test_a_stored_measurement_of_the_job_judges_this_machine() -> None:
    cat = load_catalog()
    stored = {"qlora": {"samples_per_s": 1000.0, "_runs": 3, "batch_size": 4}}
    doc = advise_finetune(cat, load_calibration(), "llama3_8b", ["qlora"], 50_000, 512, 3, 12 * 3600, {},
                          sources=("buy",), hardware=("rtx-4090",), this_machine=prediction_device("local", cat),
                          stored=stored)
    row = doc["this_machine"]["methods"][0]
    assert row["source"] == "measured" and row["time_s"] == pytest.approx(150.0)
    assert doc["verdict"].startswith("This machine is enough")


def test_advise_finetune_on_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["advise", "llama3_8b", "--task", "finetune", "--method", "qlora", *JOB, "--json"]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert doc["schema"] == "dlgpu.finetune-advise/1" and doc["methods"] == ["qlora"]
    assert doc["per_method"]["qlora"]["cheapest_buy"] is not None
    assert "cheapest that fits and meets the deadline" in captured.err  # the report goes to stderr with --json


@pytest.mark.parametrize(("argv", "needle"), [
    (["--method", "qlora", "--seq-len", "512"], "--samples"),
    (["--method", "dora", *JOB], "--method dora: valid"),
    (["--method", "lora", *JOB, "--set", "lora_rank=0"], "lora_rank=0"),
    (["--method", "lora", *JOB[:-2], "--deadline", "soon"], "--deadline"),
])
def test_bad_input_is_one_line_and_exit_2(argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["advise", "llama3_8b", "--task", "finetune", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
