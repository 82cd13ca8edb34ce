"""``dlgpu advise MODEL --task serve|generate``: the verdict, the cheapest candidates that fit and meet the rate,
the smallest device per format, every figure with its basis; bad input is one line and exit 2."""

from __future__ import annotations

import json

import pytest

from dlgpu import api
from dlgpu.catalog import load_catalog
from dlgpu.cli.main import main
from dlgpu.llm.architectures import get_arch
from dlgpu.llm.memory import llm_memory


@pytest.fixture(autouse=True)
def _cpu_not_measured(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every machine the same: this CPU without llama.cpp measurements (tests/test_llm_cpu.py covers them; on
    dlgpu's development VM the shipped ones would otherwise judge it)."""
    from dlgpu.llm.cpu import LocalCpuRuns

    monkeypatch.setattr(api, "local_llm_cpu", lambda db=None: LocalCpuRuns("Test CPU", 2, 2**34, (), "none"))


def test_serving_advice_fits_every_user_and_meets_the_rate() -> None:
    doc = api.advise_llm("llama-3.1-8b", "serve", users=8, tokens_per_s=20, context=8192)
    assert doc["schema"] == "dlgpu.llm-advise/1" and doc["runtime"] == "llama.cpp"
    arch = get_arch("llama-3.1-8b")
    runtimes = set()
    for c in doc["candidates"]:
        kv = "fp8" if c["weight_format"] == "fp8" else "fp16"  # a serving engine keeps an FP8 model's cache in fp8
        need = llm_memory(arch, c["weight_format"], kv, 8192, 8).total_bytes
        assert c["need_bytes"] == need and c["fits"] == (need <= c["usable_bytes"])
        assert c["meets"] == (c["fits"] and c["tokens_per_s_per_user"] >= 20)
        assert c["tokens_per_s_total"] == pytest.approx(8 * c["tokens_per_s_per_user"])
        runtimes.add(c["runtime"])
    assert runtimes == {"llama.cpp", "tensorrt-llm"}  # serving engines on NVIDIA GPUs, llama.cpp everywhere
    rent = doc["cheapest"]["rent"]
    assert rent is not None and rent["meets"]
    cheaper = [c for c in doc["candidates"] if c["how"] == "rent" and c["meets"] and c["cost_usd"] < rent["cost_usd"]]
    assert not cheaper
    # more users at the same rate need more memory (KV for each) and more bandwidth
    many = api.advise_llm("llama-3.1-8b", "serve", users=64, tokens_per_s=20, context=8192, sources=["rent"])
    assert many["cheapest"]["rent"]["cost_usd"] >= rent["cost_usd"]
    assert "Cheapest that fits and meets it" in doc["verdict"] and "dlgpu bench -w llama-3.1-8b" in doc["verdict"]


def test_the_smallest_device_per_format_holds_the_model_and_a_smaller_one_does_not() -> None:
    doc = api.advise_llm("llama-3.1-70b", "serve", users=1, context=4096, sources=["buy"])
    cat = load_catalog()
    for fmt, best in doc["smallest_that_fits"].items():
        if best is None:
            continue
        assert best["need_bytes"] <= best["usable_bytes"]
        smaller = [c for c in doc["candidates"]
                   if c["weight_format"] == fmt and c["usable_bytes"] < best["usable_bytes"]]
        assert all(not c["fits"] for c in smaller)
        assert cat.gpu(best["hardware"])
    # 70B in fp16 (141 GB of weights) fits no single consumer card
    assert doc["smallest_that_fits"]["fp16"] is None or doc["smallest_that_fits"]["fp16"]["usable_bytes"] > 130 * 2**30


def test_generate_against_a_deadline_and_the_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["advise", "qwen3-8b", "--task", "generate", "--tokens", "100000", "--deadline", "1h", "--rent",
                 "--json", "--no-save"]) == 0
    out = capsys.readouterr()
    doc = json.loads(out.out)
    assert doc["task"] == "generate" and doc["deadline_s"] == 3600
    for c in doc["candidates"]:
        assert c["meets"] == (c["fits"] and 100000 / c["tokens_per_s_per_user"] <= 3600)
    assert "candidates" in out.err  # the table goes to stderr with --json


@pytest.mark.parametrize(("argv", "needle"), [
    (["advise", "llama-3.1-8b", "--task", "serve", "--users", "0"], "--users 0"),
    (["advise", "llama-3.1-8b", "--task", "serve", "--tokens-per-s", "-3"], "--tokens-per-s -3"),
    (["advise", "llama-3.1-8b", "--task", "generate"], "--tokens"),
    (["advise", "llama-3.1-8b", "--task", "serve", "--context", "999999999"], "--context 999999999"),
    (["advise", "llama-3.1-8b", "--task", "serve", "--format", "q9_z"], "q9_z"),
    (["advise", "no-such-model", "--task", "serve"], "no-such-model"),
])
def test_llm_advise_bad_input(argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*argv, "--no-save"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]


def test_this_machine_is_judged_by_its_stored_measurement() -> None:
    from dlgpu.advise.llm import advise_llm

    cat = load_catalog()
    stored = {"samples_per_s": 12.0, "batch_size": 1, "precision": "bf16", "_runs": 3, "_run_id": "abc"}
    enough = advise_llm(cat, "qwen3-0.6b", "serve", users=1, tokens_per_s=10, context=1024, local=stored)
    assert enough["verdict"].startswith("A CPU is enough") and enough["this_machine"]["source"] == "measured"
    assert enough["this_machine"]["tokens_per_s_per_user"] == 12.0
    # four users share the batch-1 rate: 3 tokens/s each, too slow for 10
    shared = advise_llm(cat, "qwen3-0.6b", "serve", users=4, tokens_per_s=10, context=1024, local=stored)
    assert shared["this_machine"]["tokens_per_s_per_user"] == pytest.approx(3.0)
    assert shared["verdict"].startswith("A GPU is needed") and "(measured), too slow" in shared["verdict"]
    # generating 100k tokens at 12/s takes 2.3 h: within a 3 h deadline, not a 1 h one
    assert advise_llm(cat, "qwen3-0.6b", "generate", tokens=100_000, deadline_s=3 * 3600,
                      local=stored)["this_machine"]["meets"] is True
    assert advise_llm(cat, "qwen3-0.6b", "generate", tokens=100_000, deadline_s=3600,
                      local=stored)["this_machine"]["meets"] is False
    unmeasured = advise_llm(cat, "qwen3-0.6b", "serve", users=1, tokens_per_s=10, local=None)
    assert unmeasured["this_machine"]["source"] == "not measured"
    assert "dlgpu bench -w qwen3-0.6b --task decode" in unmeasured["this_machine"]["basis"]
