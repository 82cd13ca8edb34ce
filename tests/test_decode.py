"""Task ``decode``: one generated token per sequence against a KV cache, measured on real tiny models,
traced at full size on fake tensors, and predicted through the same roofline as train and infer."""

from __future__ import annotations

import json

import pytest
import torch

import dlgpu
from conftest import TINY_BUDGET
from dlgpu import api
from dlgpu.analyze import kv_cache_bytes, memory_floor
from dlgpu.analyze.profiles import profile
from dlgpu.catalog import load_catalog
from dlgpu.cli.main import main
from dlgpu.errors import BadInput
from dlgpu.predict.calibration import calibration_samples
from dlgpu.results import DEFAULT_TASKS, TASKS
from dlgpu.workloads import PlainContext, get_workload, list_workloads
from dlgpu.workloads.models.language import CausalLMWorkload, DecodeBatch

CPU = torch.device("cpu")
DECODERS = {"gpt2_large", "gpt3_xl", "opt_1_3b", "llama3_8b", "test_gpt", "test_llama",
            # the LLM inference workloads (family llm, tests/test_llm_bench.py)
            "llama-3.2-1b", "llama-3.2-3b", "llama-3-8b", "llama-3.1-8b", "mistral-7b-v0.1", "mistral-7b-v0.3",
            "qwen2.5-7b", "qwen3-0.6b", "qwen3-4b", "qwen3-8b", "test_llm"}

# GPT-2 large: 36 layers, d_model 1280, 20 heads of 64, 1024 learned positions; 774,030,080 parameters.
GPT2_LARGE_PARAMS, GPT2_LAYERS, GPT2_HIDDEN = 774_030_080, 36, 1280


def test_decode_is_a_task_and_only_decoder_only_models_support_it() -> None:
    assert "decode" in TASKS and DEFAULT_TASKS == ("train", "infer")
    assert {s.name for s in list_workloads() if s.supports("decode")} == DECODERS
    for name in DECODERS:
        assert "context_len" in get_workload(name).defaults()
    assert not get_workload("bert_base").supports("decode")
    assert get_workload("gpt2_large").defaults()["context_len"] == 1023  # the step that fills 1024 positions
    assert get_workload("llama3_8b").defaults()["context_len"] == 1024


@pytest.mark.parametrize("name", ["test_gpt", "test_llama"])
def test_tiny_decode_step_matches_a_full_forward_and_keeps_the_cache_size(name: str) -> None:
    spec = get_workload(name)
    torch.manual_seed(0)
    w = spec.build(spec.defaults())
    assert isinstance(w, CausalLMWorkload)
    w.train(False)
    torch.manual_seed(1)
    with torch.inference_mode():
        batch = w.make_decode_batch(3, CPU, PlainContext())
    assert isinstance(batch, DecodeBatch) and batch.input_ids.shape == (3, 1) and batch.context_len == 16
    assert batch.cache.get_seq_length() == 16
    torch.manual_seed(1)  # the same draw as make_decode_batch's: 16 context tokens + the new one
    ids = torch.randint(0, 1000, (3, 17))
    assert torch.equal(ids[:, -1:], batch.input_ids)
    with torch.inference_mode():
        first = w.decode_step(batch, PlainContext())
        assert batch.cache.get_seq_length() == 16  # cropped back: every step attends to the same context
        second = w.decode_step(batch, PlainContext())
        full = w.model(input_ids=ids).logits
    assert first.shape == (3, 1, 1000) and bool(torch.isfinite(first).all())
    # One token against the cache = the last position of a full forward over context + token.
    torch.testing.assert_close(first[:, 0], full[:, -1], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(second, first)
    # The real cache is what the formula says: 2 x layers x context x (KV heads x head dim) x 4 B x batch.
    cache = sum(t.numel() * t.element_size() for layer in batch.cache.layers for t in (layer.keys, layer.values))
    kv_heads, head_dim = (2, 32) if name == "test_gpt" else (2, 16)
    assert cache == 2 * 2 * 16 * kv_heads * head_dim * 4 * 3 == w.kv_cache_bytes(3, 4)


def test_kv_cache_bytes_formula_on_full_size_models() -> None:
    gpt2 = get_workload("gpt2_large")
    assert kv_cache_bytes(gpt2, gpt2.resolve({}), 1, "fp32") == 2 * 36 * 1023 * 1280 * 4 == 377_118_720
    llama = get_workload("llama3_8b")  # grouped-query attention: 8 KV heads of 128, not 32
    assert kv_cache_bytes(llama, llama.resolve({"context_len": "4096"}), 4, "bf16") == \
        2 * 32 * 4096 * 8 * 128 * 2 * 4 == 2 * 2**30


@pytest.mark.slow
def test_traced_gpt2_large_decode_is_two_flops_per_parameter_plus_attention_over_the_cache() -> None:
    prof = api.analyze("gpt2_large", "decode", "fp32")  # batch 1 (DECODE_BATCH), context 1023
    assert prof.task == "decode" and prof.batch_size == 1 and prof.params["context_len"] == 1023
    assert prof.parameters == GPT2_LARGE_PARAMS
    # Every weight multiplies the one token once (2 FLOPs per multiply-add; the tied embedding is the LM
    # head): 2 x parameters within 0.5% (position table, biases and norms do no matmul). Attention: q.K and
    # p.V over the 1023 cached tokens + the new one, 2 x 2 x 1024 x 1280 per layer.
    matmul = prof.by_kind()["matmul"]["flops"]
    assert matmul == pytest.approx(2 * GPT2_LARGE_PARAMS, rel=0.005)
    attention = 4 * GPT2_LAYERS * 1024 * GPT2_HIDDEN
    assert prof.by_kind()["attention"]["flops"] == pytest.approx(attention, rel=0.01)
    assert prof.flops == pytest.approx(2 * GPT2_LARGE_PARAMS + attention, rel=0.01)
    # The prefill is not in the profile: it alone would be about 1023 x as many FLOPs.
    assert prof.flops < 1.1 * (2 * GPT2_LARGE_PARAMS + attention)
    # Each step reads every weight (fp32) and the whole KV cache.
    weights = 4 * GPT2_LARGE_PARAMS
    assert prof.bytes >= weights + 377_118_720
    assert prof.cache_bytes == 377_118_720
    assert prof.state_bytes == memory_floor(get_workload("gpt2_large"), prof.params, "decode").total_bytes
    # bf16 autocast keeps a bf16 cache: half the bytes, same FLOPs.
    half = api.analyze("gpt2_large", "decode", "bf16")
    assert half.cache_bytes == 377_118_720 // 2 and half.flops == pytest.approx(prof.flops)


@pytest.mark.slow
def test_predict_decode_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", "gpt2_large", "--hardware", "a100-sxm4-80gb", "--task", "decode", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["task"] == "decode" and doc["batch_size"] == 1 and doc["hardware"] == "a100-sxm4-80gb"
    assert doc["samples_per_s"] == pytest.approx(1 / doc["step_time_s"])  # tokens/s
    floor = memory_floor(get_workload("gpt2_large"), get_workload("gpt2_large").resolve({}), "decode")
    prof = api.analyze("gpt2_large", "decode", "fp32")
    workspace = max(o.bytes_written for o in prof.ops)  # the largest operator output (the logits)
    assert doc["peak_mem_bytes"] == floor.total_bytes + 377_118_720 + workspace  # weights + KV cache + workspace
    assert "KV cache of 1023 tokens" in doc["peak_mem_basis"] and doc["fits"] is True
    assert doc["bound"]["compute"] < 0.05  # one token per weight read: never compute-bound
    # No prediction may beat reading every weight once per token at the datasheet bandwidth.
    gpu = load_catalog().gpu("a100-sxm4-80gb")
    assert gpu.memory_bandwidth_bytes_per_s is not None
    assert doc["samples_per_s"] < gpu.memory_bandwidth_bytes_per_s / (4 * GPT2_LARGE_PARAMS)


@pytest.mark.parametrize(("argv", "needle"), [
    (["predict", "resnet50", "--hardware", "a100-sxm4-80gb", "-t", "decode"],
     "resnet50 does not support --task decode (workloads that do: gpt2_large, gpt3_xl, llama-3-8b"),
    (["analyze", "bert_base", "-t", "decode"], "bert_base does not support --task decode"),
    (["predict", "gpt2_large", "--hardware", "a100-sxm4-80gb", "-t", "decode", "--set", "context_len=1024"],
     "context_len at most 1023"),
    (["analyze", "opt_1_3b", "-t", "decode", "--set", "context_len=4096"], "context_len at most 2047"),
    (["predict", "gpt2_large", "--hardware", "a100-sxm4-80gb", "-t", "decode", "--set", "context_len=0"],
     "--set context_len=0: must be at least 1"),
    (["bench", "-w", "test_resnet", "-t", "decode"], "test_resnet does not support --task decode"),
    (["bench", "-w", "test_resnet", "test_bert", "-t", "decode"], "none of the selected workloads supports it"),
    (["analyze", "test_gpt", "-t", "decode", "--set", "context_len=64"], "context_len at most 63"),
])
def test_decode_bad_input_one_line_exit_2(argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1, err
    assert needle in err


def test_bench_measures_decode_only_when_asked() -> None:
    rep = dlgpu.bench(workloads=["test_gpt", "test_resnet"], devices=["cpu"], precisions=["fp32"],
                      tasks=["decode"], timing=TINY_BUDGET)
    by = {r.workload: r for r in rep.results}
    assert set(by) == {"test_gpt", "test_resnet"}
    r = by["test_gpt"]
    assert r.status == "ok" and r.task == "decode" and r.batch_size == 1  # DECODE_BATCH
    assert r.step_time is not None and r.step_time.n >= 2
    assert r.samples_per_s == pytest.approx(1 / r.step_time.median)  # tokens/s
    assert r.settings["params"]["context_len"] == 16 and r.projection is None
    skipped = by["test_resnet"]
    assert skipped.status == "skipped" and "does not support --task decode" in (skipped.reason or "")
    # Without --task decode (and through "all" for workloads that cannot), no decode is planned.
    default = dlgpu.bench(workloads=["test_gpt"], devices=["cpu"], precisions=["fp32"], timing=TINY_BUDGET)
    assert {r.task for r in default.results} == {"train", "infer"}
    every = dlgpu.bench(workloads=["test_resnet"], devices=["cpu"], precisions=["fp32"], tasks=["all"],
                        timing=TINY_BUDGET)
    assert {r.task for r in every.results} == {"train", "infer"}


def test_bench_cli_decode_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "-w", "test_llama", "-t", "decode", "-p", "fp32", "bf16", "-d", "cpu", "--quick",
                 "--budget", "0.05", "--set", "context_len=8", "--json", "--no-save"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["config"]["tasks"] == ["decode"]
    ok = [r for r in doc["results"] if r["status"] == "ok"]
    assert {r["precision"] for r in ok} == {"fp32", "bf16"}
    for r in ok:
        assert r["task"] == "decode" and r["samples_per_s"] > 0 and r["settings"]["params"]["context_len"] == 8


def test_calibration_keeps_refusing_llama_cpp_but_not_decode() -> None:
    rows = [
        {"workload": "test_gpt", "task": "decode", "hardware": "a100-sxm4-80gb", "precision": "fp16",
         "batch_size": "2", "overrides": "context_len=8", "samples_per_s": "100", "framework": "pytorch"},
        {"workload": "llama3_8b", "task": "decode", "hardware": "a100-sxm4-80gb", "precision": "fp16",
         "batch_size": "1", "overrides": "context_len=1024", "samples_per_s": "53", "framework": "llama.cpp"},
    ]
    samples, skipped = calibration_samples(rows, load_catalog(), profile)
    (smp,) = samples
    assert smp.profile.task == "decode" and smp.profile.batch_size == 2 and smp.profile.params["context_len"] == 8
    assert smp.profile.cache_bytes == 2 * 2 * 8 * 2 * 32 * 2 * 2  # fp16 cache: 2 bytes per element
    assert skipped == [(1, "llama.cpp rows measure a different runtime than the PyTorch steps dlgpu traces")]


def test_analyze_rejects_decode_for_non_decoders() -> None:
    with pytest.raises(BadInput, match="task decode: resnet50 does not support"):
        api.analyze("resnet50", "decode")
