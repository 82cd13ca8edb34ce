"""LLM workloads (family ``llm``) measured here in their weight formats: real tiny computation on the CPU with
``test_llm`` (2 layers, hidden 64, 4 query heads sharing 2 KV heads, vocab 256), weights really stored in the
format (bf16 tensors, torchao int8/int4 tensors), through the real harness, the bench loop and the CLI."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import pytest
import torch

import dlgpu
from conftest import TINY_BUDGET
from dlgpu.cli.main import main
from dlgpu.devices import detect, unsupported_reason
from dlgpu.errors import BadInput
from dlgpu.llm.architectures import get_arch
from dlgpu.measure.harness import build, make_step, measure, precision_settings, weight_format
from dlgpu.measure.plan import MemoryCheck, make_plans
from dlgpu.results import PRECISIONS, DeviceInfo
from dlgpu.results.vocab import BENCH_PRECISIONS, WEIGHT_PRECISIONS
from dlgpu.workloads import PlainContext, get_workload, list_workloads
from dlgpu.workloads.llm import CATALOG_SHAPES, LlmShape
from dlgpu.workloads.models.llm import LlmWorkload, int4_unavailable, weight_bytes

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def cpu() -> DeviceInfo:
    device = detect()[0][0]
    assert device.kind == "cpu"
    return device


def _linear_weights(w: LlmWorkload) -> list[torch.Tensor]:
    return [m.weight for m in w.model.modules() if isinstance(m, torch.nn.Linear)]


def _decode_logits(w: LlmWorkload) -> torch.Tensor:
    torch.manual_seed(1)  # the same context and token for every format
    with torch.inference_mode():
        batch = w.make_decode_batch(2, CPU, PlainContext())
        return w.decode_step(batch, PlainContext()).float()


# --- the registry -------------------------------------------------------------------------------------------


def test_catalog_rows_are_the_llm_catalog_s_architectures() -> None:
    """The shapes repeated in workloads/llm.py (layer 1 cannot import dlgpu.llm) equal the catalog's rows."""
    assert {s.id for s in CATALOG_SHAPES} >= {"llama-3.2-1b", "qwen3-0.6b"}
    for shape in CATALOG_SHAPES:
        arch = get_arch(shape.id)
        assert not arch.is_moe and not arch.is_mla and set(arch.layer_kinds) <= {"full", "sliding"}
        assert (arch.name, arch.hf_repo, arch.architecture, arch.layers, arch.hidden, arch.intermediate, arch.heads,
                arch.kv_heads, arch.head_dim, arch.vocab, arch.max_context, arch.tied_embeddings,
                arch.sliding_window) == (shape.name, shape.hf_repo, shape.architecture, shape.layers, shape.hidden,
                                         shape.intermediate, shape.heads, shape.kv_heads, shape.head_dim, shape.vocab,
                                         shape.max_context, shape.tied, shape.sliding_window), shape.id
        spec = get_workload(shape.id)
        assert spec.family == "llm" and spec.tasks == ("infer", "decode", "finetune") and spec.sample_unit == "token"
        assert not spec.tiny and spec.extra["shape"] == shape
    assert [f.name for f in fields(LlmShape)][:4] == ["id", "name", "hf_repo", "architecture"]


def test_workloads_list_shows_the_llm_family(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["workloads", "--json"]) == 0
    rows = {w["name"]: w for w in json.loads(capsys.readouterr().out)["workloads"]}
    assert rows["qwen3-0.6b"]["family"] == "llm" and rows["llama-3.2-1b"]["family"] == "llm"
    assert main(["workloads", "list"]) == 0
    text = capsys.readouterr().out
    assert "qwen3-0.6b" in text and "llama-3.2-1b" in text and "llm" in text


def test_test_llm_builds_the_tiny_gqa_model_in_bf16() -> None:
    spec = get_workload("test_llm")
    torch.manual_seed(0)
    w = spec.build(spec.defaults())
    assert isinstance(w, LlmWorkload)
    cfg = w.model.config
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads,
            cfg.vocab_size) == (2, 64, 4, 2, 256)
    assert all(p.dtype == torch.bfloat16 for p in w.model.parameters())
    # prefill: the batch counts tokens, in prompts of prompt_len
    assert w.make_batch(32, CPU).shape == (2, 16)
    with pytest.raises(ValueError, match="multiple of prompt_len 16"):
        w.make_batch(24, CPU)
    with pytest.raises(BadInput, match="context_len=64"):
        spec.build(spec.resolve({"context_len": "64"}))


# --- weight formats -----------------------------------------------------------------------------------------


def test_weights_are_stored_in_the_format_and_int8_decodes_like_bf16(cpu: DeviceInfo) -> None:
    built = build(get_workload("test_llm"), get_workload("test_llm").defaults(), cpu)
    w = built.instance
    assert isinstance(w, LlmWorkload)

    fp32 = weight_format(built, "fp32")
    assert fp32 is not None and all(t.dtype == torch.float32 for t in _linear_weights(w))
    assert fp32["weights_bytes"] == weight_bytes(w.model) == sum(p.numel() * 4 for p in w.model.parameters())

    bf16 = weight_format(built, "bf16")
    assert bf16 is not None and all(type(t) is torch.nn.Parameter and t.dtype == torch.bfloat16
                                    for t in _linear_weights(w))
    assert bf16["weights_bytes"] * 2 == fp32["weights_bytes"]  # half of fp32's parameter bytes, exactly
    reference = _decode_logits(w)
    torch.manual_seed(1)
    with torch.inference_mode():
        cache = w.make_decode_batch(1, CPU, PlainContext()).cache
    assert cache.layers[0].keys.dtype == torch.bfloat16 and cache.layers[0].values.dtype == torch.bfloat16

    int8 = weight_format(built, "int8")
    assert int8 is not None and int8["quantized_linear_layers"] == int8["linear_layers"] == 15
    linear = _linear_weights(w)
    assert {type(t).__name__ for t in linear} == {"Int8Tensor"} and all(
        type(t).__module__.startswith("torchao") for t in linear)
    assert getattr(linear[0], "qdata").dtype == torch.int8  # noqa: B009 (a torchao attribute)
    assert int8["weights_bytes"] < bf16["weights_bytes"]
    quantized = _decode_logits(w)
    cosine = torch.nn.functional.cosine_similarity(quantized.flatten(), reference.flatten(), dim=0)
    assert cosine > 0.99

    # back to bf16: rebuilt from the same seed, the same weights and logits as before
    weight_format(built, "bf16")
    assert torch.equal(_decode_logits(w), reference)


def test_int4_runs_on_this_cpu_or_is_refused_with_the_reason(cpu: DeviceInfo) -> None:
    why = int4_unavailable("cpu")
    assert why == unsupported_reason(cpu, "int4", "llm")
    if why is not None:
        assert "int4" in why
        return
    spec = get_workload("test_llm")
    r = measure(build(spec, spec.defaults(), cpu), "decode", "int4", 1, TINY_BUDGET)
    assert r.status == "ok", r.reason
    weights = r.settings["weights"]
    # only the two down projections (input 128) hold whole groups of 128; the rest stay bf16, said so
    assert weights["quantized_linear_layers"] == 2 and "stay bf16" in weights["note"]
    assert "int4" in weights["method"].lower()


def test_weight_formats_are_offered_to_llm_workloads_only(cpu: DeviceInfo) -> None:
    assert WEIGHT_PRECISIONS == ("int8", "int4")
    assert BENCH_PRECISIONS[:len(PRECISIONS)] == PRECISIONS and BENCH_PRECISIONS[len(PRECISIONS):] == WEIGHT_PRECISIONS
    for family in ("vision", None):
        why = unsupported_reason(cpu, "int8", family)
        assert why is not None and "LLM weight format" in why and "family llm" in why
    assert unsupported_reason(cpu, "int8", "llm") is None
    assert unsupported_reason(cpu, "bf16", "llm") is None
    assert "fp16 weights" in (unsupported_reason(cpu, "fp16", "llm") or "")
    # never in a non-LLM workload's default precisions; in an LLM workload's
    resnet, llm = get_workload("resnet50"), get_workload("qwen3-0.6b")
    plans = make_plans([resnet, llm], ["infer"], [], [cpu], None,
                       {"resnet50": resnet.defaults(), "qwen3-0.6b": llm.defaults()},
                       {"resnet50": {}, "qwen3-0.6b": {}}, None, True)
    by = {p.spec.name: p for p in plans}
    assert by["resnet50"].precisions == PRECISIONS
    assert by["qwen3-0.6b"].precisions == BENCH_PRECISIONS
    assert by["qwen3-0.6b"].batch_size == 512  # the prefill's batch counts tokens: one prompt of prompt_len


def test_int8_is_refused_for_resnet_with_the_reason() -> None:
    with pytest.raises(BadInput, match=r"int8: .*LLM weight format, offered only to LLM workloads") as info:
        dlgpu.bench(workloads=["test_resnet"], devices=["cpu"], precisions=["int8"], timing=TINY_BUDGET)
    assert info.value.param == "precisions"
    rep = dlgpu.bench(workloads=["test_resnet", "test_llm"], devices=["cpu"], precisions=["int8"], tasks=["infer"],
                      timing=TINY_BUDGET, telemetry=False)
    by = {r.workload: r for r in rep.results}
    assert by["test_resnet"].status == "skipped"
    assert "offered only to LLM workloads" in (by["test_resnet"].reason or "")
    assert by["test_llm"].status == "ok" and by["test_llm"].batch_size == 16  # prefill: 16 tokens
    step = by["test_llm"].step_time
    assert step is not None and by["test_llm"].samples_per_s == pytest.approx(16 / step.median)  # tokens/s


def test_memory_check_counts_the_weights_in_their_format(cpu: DeviceInfo) -> None:
    spec = get_workload("test_llm")
    (plan,) = make_plans([spec], ["decode"], ["decode"], [cpu], ("fp32", "bf16"), {"test_llm": spec.defaults()},
                         {"test_llm": {}}, None, True)
    check = MemoryCheck()
    fp32, note32 = check.need(plan, "fp32")
    bf16, note16 = check.need(plan, "bf16")
    int8, _ = check.need(plan, "int8")
    assert fp32 > bf16 == int8 and "fp32 weights" in note32 and "bf16 weights" in note16


# --- measured through the harness and the CLI --------------------------------------------------------------


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_decode_is_measured_at_bf16_and_int8(cpu: DeviceInfo, precision: str) -> None:
    spec = get_workload("test_llm")
    r = measure(build(spec, spec.defaults(), cpu), "decode", precision, 1, TINY_BUDGET)
    assert r.status == "ok", r.reason
    assert r.samples_per_s is not None and r.samples_per_s > 0 and r.step_time is not None and r.step_time.n >= 2
    assert r.settings["weights"]["format"] == precision and r.settings["autocast_dtype"] is None
    assert r.peak_mem_bytes and r.peak_mem_bytes > 0


def test_make_step_runs_the_stored_format_without_autocast(cpu: DeviceInfo) -> None:
    spec = get_workload("test_llm")
    built = build(spec, spec.defaults(), cpu)
    with precision_settings("bf16", autocast=False) as prec:
        step = make_step(built, "infer", "fp16", 16)  # on the CPU too: fp16 weights, no autocast
        step()
    assert prec["autocast_dtype"] is None
    assert all(p.dtype == torch.float16 for p in built.instance.parameters())


def test_bench_cli_measures_two_weight_formats(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "-w", "test_llm", "--task", "decode", "-p", "bf16", "-p", "int8", "--quick", "--json",
                 "--no-save"]) == 0
    doc = json.loads(capsys.readouterr().out)  # one JSON document
    assert doc["config"]["precisions"] == ["bf16", "int8"]
    results = doc["results"]
    assert [(r["precision"], r["status"]) for r in results] == [("bf16", "ok"), ("int8", "ok")]
    for r in results:
        assert r["task"] == "decode" and r["samples_per_s"] > 0
        assert r["settings"]["weights"]["format"] == r["precision"]


def test_llm_workloads_are_registered_once() -> None:
    names = [s.name for s in list_workloads() if s.family == "llm"]
    assert len(names) == len(set(names)) == len(CATALOG_SHAPES) + 1 and "test_llm" in names


def test_an_int8_run_is_stored_exported_and_imported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "runs.sqlite"
    assert main(["bench", "-w", "test_llm", "--task", "decode", "-p", "int8", "--quick", "--json",
                 "--db", str(db)]) == 0
    run_id = json.loads(capsys.readouterr().out)["run_id"]
    out = tmp_path / "export.json"
    assert main(["export", run_id, "--db", str(db), "-o", str(out)]) == 0
    capsys.readouterr()
    other = tmp_path / "other.sqlite"
    assert main(["import", str(out), "--db", str(other), "--json"]) == 0  # validated against the schema first
    capsys.readouterr()
    assert main(["show", run_id, "--db", str(other), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert "int8" in json.dumps(shown) and run_id in json.dumps(shown)


def test_predict_routes_a_registered_llm_to_the_runtime_model(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", "llama-3-8b", "--task", "decode", "-H", "rtx-4090", "-p", "bf16", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["schema"] == "dlgpu.llm-predict/1"


def test_the_bench_table_says_what_an_llm_sample_is(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "-w", "test_llm", "--task", "decode", "-p", "bf16", "--quick", "--no-save"]) == 0
    out = capsys.readouterr()
    text = out.out + out.err
    assert "LLM decode: a sample is one output token" in text and "(TPOT)" in text
