"""A fine-tuning job's step traced on fake tensors (``analyze.finetune_profile``): real tiny traces of the bench's model
with the method applied (test_llm, test_bert; full, freeze, LoRA; checkpointing on and off; fp32 weights under
autocast), composed from 1 and 2 blocks, against 3 blocks traced whole and against ``finetune.perf``'s written-out
profile; what is not traced and why; the prediction's ``profile_source``; the cache read without torch.

Tolerance against the written-out profile: for test_llm every difference in matrix-product FLOPs is accounted for
exactly (the written-out profile gives the lowest trained block an input gradient that autograd does not compute when
the block's input needs none; it recomputes each checkpointed block whole where ``torch.utils.checkpoint`` stops
before the block's last product, down_proj, whose output nothing saved); attention's traced FLOPs are twice the
written-out ones for a causal decoder (torch's FLOP counter ignores ``is_causal``; the written-out profile halves
them as FlashAttention-2 skips the masked tiles). test_bert's products agree to ``BERT_TOLERANCE`` once the lowest
block's input gradients are added back."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from dlgpu import api
from dlgpu.analyze.finetune_profile import (
    RECOMPUTE,
    StepParts,
    compose,
    step_key,
    trace_counts,
    trace_step,
)
from dlgpu.analyze.finetune_trace import finetune_spec
from dlgpu.catalog import load_catalog
from dlgpu.finetune.config import FinetuneConfig, parse_finetune
from dlgpu.finetune.model import FtModel
from dlgpu.finetune.perf import optimizer_records, step_profile, step_time
from dlgpu.predict.calibration import load_calibration
from dlgpu.results import OpProfile, OpRecord
from test_finetune_trace import _test_bert, _test_llm
from test_torch_free import _env, dlgpu_blocked

SEQ = 48  # tokens per sequence: no shape of test_llm or test_bert is 48 (or 96), so a product's K names the tokens
BERT_TOLERANCE = 0.01
MODELS = {"test_llm": _test_llm, "test_bert": _test_bert}
_PARTS: dict[tuple[str, str, str], StepParts | str] = {}


def job(method: str, micro_batch: int = 1, **settings: str) -> FinetuneConfig:
    return parse_finetune(method, {"seq_len": str(SEQ), **settings}, micro_batch)


def parts(name: str, cfg: FinetuneConfig, target: str = "gpu") -> StepParts:
    key = (name, repr(cfg), target)
    if key not in _PARTS:
        _PARTS[key] = trace_step(name, cfg, target)
    got = _PARTS[key]
    assert isinstance(got, StepParts), got
    return got


def traced(name: str, cfg: FinetuneConfig, target: str = "gpu") -> OpProfile:
    return compose(parts(name, cfg, target), MODELS[name](), cfg)


def counts(records: tuple[OpRecord, ...] | OpProfile, phase_of_recompute: str = "forward") -> Counter[Any]:
    ops = records.ops if isinstance(records, OpProfile) else records
    out: Counter[Any] = Counter()
    for o in ops:
        phase = phase_of_recompute if o.phase == RECOMPUTE else o.phase
        out[(o.op, o.kind, phase, o.dtype, o.flops, o.bytes_read, o.bytes_written, o.gemm)] += o.count
    return Counter({k: v for k, v in out.items() if v})


def flops(profile: OpProfile | tuple[OpRecord, ...], kind: str, phase: str | None = None) -> float:
    ops = profile.ops if isinstance(profile, OpProfile) else profile
    return sum(o.flops * o.count for o in ops if o.kind == kind and (phase is None or o.phase == phase))


def products(records: tuple[OpRecord, ...], phase: str) -> Counter[tuple[int, ...]]:
    """GEMM shapes (M, N, K) of the matrix products of one phase, counted."""
    got: Counter[tuple[int, ...]] = Counter()
    for o in records:
        if o.kind == "matmul" and o.phase == phase and o.gemm is not None:
            got[tuple(o.gemm[1:])] += o.count
    return got


# --- composition: linear in blocks ----------------------------------------------------------------------------------

LINEAR = [("test_llm", "lora", {}), ("test_llm", "full", {"checkpointing": "true"}),
          ("test_llm", "lora", {"weights_dtype": "fp32", "checkpointing": "true"}), ("test_bert", "lora", {}),
          ("test_bert", "full", {"weights_dtype": "fp32"}), ("test_llm", "full", {"grad_accum": "2"})]


@pytest.mark.parametrize(("name", "method", "settings"), LINEAR)
def test_three_blocks_traced_whole_equal_the_rest_and_three_blocks(name: str, method: str,
                                                                     settings: dict[str, str]) -> None:
    cfg = job(method, **settings)
    p = parts(name, cfg)
    spec = finetune_spec(name)
    assert spec is not None
    first, later = trace_counts(spec, cfg, "gpu", 3)
    want = counts(p.pieces["rest"], RECOMPUTE)
    for k, v in counts(p.pieces["trained"], RECOMPUTE).items():
        want[k] += 3 * v
    assert counts(tuple(_records(first)), RECOMPUTE) == Counter({k: v for k, v in want.items() if v})
    if cfg.grad_accum > 1:  # a later micro-batch: the same plus each gradient added into the accumulated one
        assert later is not None
        added = Counter(later)
        added.subtract(first)
        acc = counts(p.pieces["accumulate_rest"], RECOMPUTE)
        for k, v in counts(p.pieces["accumulate_trained"], RECOMPUTE).items():
            acc[k] += 3 * v
        assert counts(tuple(_records(Counter({k: v for k, v in added.items() if v}))), RECOMPUTE) == \
            Counter({k: v for k, v in acc.items() if v})
        assert all(o.op == "add_" and o.phase == "backward" for o in p.pieces["accumulate_trained"])


def test_method_freeze_composes_trained_and_frozen_blocks_as_traced_whole() -> None:
    for settings in ({}, {"checkpointing": "true"}):
        cfg = job("freeze", **settings)
        p = parts("test_llm", cfg)
        spec = finetune_spec("test_llm")
        assert spec is not None
        first, _ = trace_counts(spec, cfg, "gpu", 3, trained=1)  # one trained block over two frozen ones
        want = counts(p.pieces["rest"], RECOMPUTE)
        for piece, n in (("trained", 1), ("frozen", 2)):
            for k, v in counts(p.pieces[piece], RECOMPUTE).items():
                want[k] += n * v
        assert counts(tuple(_records(first)), RECOMPUTE) == Counter({k: v for k, v in want.items() if v})


def _records(c: Counter[Any]) -> list[OpRecord]:
    return [OpRecord(op=k[0], kind=k[1], phase=k[2], dtype=k[3], flops=k[4], bytes_read=k[5], bytes_written=k[6],
                     count=n, gemm=k[7]) for k, n in c.items()]


def test_the_step_is_grad_accum_micro_batches_and_the_optimizer() -> None:
    model, cfg = _test_llm(), job("full", grad_accum="4")
    p = parts("test_llm", cfg)
    prof = compose(p, model, cfg)
    want: Counter[Any] = Counter()
    for piece, n in (("rest", 4), ("trained", 4 * model.layers), ("accumulate_rest", 3),
                     ("accumulate_trained", 3 * model.layers)):
        for k, v in counts(p.pieces[piece]).items():
            want[k] += n * v
    assert counts(tuple(o for o in prof.ops if o.phase != "optimizer")) == Counter({k: v for k, v in want.items()
                                                                                     if v})
    assert tuple(o for o in prof.ops if o.phase == "optimizer") == optimizer_records(model, cfg)
    # a later micro-batch adds each trainable gradient into the accumulated one: one add per parameter
    added = flops(p.pieces["accumulate_rest"], "elementwise") + model.layers * flops(
        p.pieces["accumulate_trained"], "elementwise")
    assert added == model.params
    assert prof.params["traced"] == step_key(cfg, "gpu") and "operators per step" in prof.params["traced_basis"]


# --- what the trace holds -------------------------------------------------------------------------------------------

def _linears(model: FtModel) -> set[tuple[int, int]]:
    return {(w.d_out, w.d_in) for w in model.weights if w.layer == 0 and w.role == "linear"}


@pytest.mark.parametrize("name", ["test_llm", "test_bert"])
def test_frozen_weights_get_no_weight_gradient_and_trained_ones_do(name: str) -> None:
    model = MODELS[name]()
    base = _linears(model)

    def weight_grads(cfg: FinetuneConfig) -> set[tuple[int, int]]:
        # dW = dYᵀ X: (d_out x d_in) summed over the micro-batch's tokens (K)
        return {(m, n) for (m, n, k) in products(parts(name, cfg).pieces["trained"], "backward") if k == SEQ}

    assert base <= weight_grads(job("full"))
    lora = job("lora")
    assert not base & weight_grads(lora)
    r = lora.lora_rank
    adapted = {(w.d_out, w.d_in) for w in model.weights if w.layer == 0 and w.module in lora.lora_targets}
    assert weight_grads(lora) == {(r, d_in) for _, d_in in adapted} | {(d_out, r) for d_out, _ in adapted}
    # the frozen base still carries the gradient to the input: dX = dY W for every linear layer
    assert {(SEQ, d_in, d_out) for d_out, d_in in base} <= set(products(parts(name, lora).pieces["trained"],
                                                                           "backward"))


def test_the_adapters_gemms_are_peft_s_with_their_shapes_and_dtype() -> None:
    model, cfg = _test_llm(), job("lora", lora_rank="4")
    r = cfg.lora_rank
    got = products(parts("test_llm", cfg).pieces["trained"], "forward")
    for w in (w for w in model.weights if w.layer == 0 and w.module in cfg.lora_targets):
        assert got[(SEQ, r, w.d_in)] >= 1 and got[(SEQ, w.d_out, r)] >= 1  # x A, then (x A) B
    fp32 = [o for o in parts("test_llm", cfg).pieces["trained"] if o.kind == "matmul" and o.gemm is not None
            and r in o.gemm[1:3]]
    assert fp32 and all(o.dtype == "float32" for o in fp32)  # peft keeps the adapters in fp32
    autocast = parts("test_llm", job("lora", lora_rank="4", weights_dtype="fp32")).pieces["trained"]
    assert {o.dtype for o in autocast if o.kind == "matmul"} == {"bfloat16"}  # under autocast: bf16 products


def test_checkpointing_traces_the_recomputation() -> None:
    model = _test_llm()
    plain, ckpt = parts("test_llm", job("full")), parts("test_llm", job("full", checkpointing="true"))
    assert not any(o.phase == RECOMPUTE for o in plain.pieces["trained"])
    again = products(ckpt.pieces["trained"], RECOMPUTE)
    forward = products(ckpt.pieces["trained"], "forward")
    # the block's forward again, but for its last product (down_proj): checkpointing's early stop, nothing saved
    # needs down_proj's output
    down = next(w for w in model.weights if w.layer == 0 and w.module == "down_proj")
    assert again + Counter({(SEQ, down.d_out, down.d_in): 1}) == forward
    # in the profile the recomputation is forward work
    prof = traced("test_llm", job("full", checkpointing="true"))
    block = flops(plain.pieces["trained"], "matmul", "forward")
    assert flops(prof, "matmul", "forward") == pytest.approx(
        flops(traced("test_llm", job("full")), "matmul", "forward")
        + model.layers * (block - 2.0 * SEQ * down.d_in * down.d_out))


def test_freeze_runs_frozen_blocks_forward_only_unless_checkpointing_needs_their_input_gradients() -> None:
    p = parts("test_llm", job("freeze"))
    assert counts(p.pieces["frozen"]) == counts(tuple(o for o in p.pieces["trained"] if o.phase == "forward"))
    # with checkpointing, transformers makes the embeddings' output require a gradient (enable_input_require_grads):
    # the backward runs through the frozen blocks too, activation gradients only, and recomputes them
    ckpt = parts("test_llm", job("freeze", checkpointing="true")).pieces["frozen"]
    base = _linears(_test_llm())
    assert products(ckpt, "backward") and not {(m, n) for (m, n, k) in products(ckpt, "backward") if k == SEQ} & base
    assert products(ckpt, RECOMPUTE)


def test_bf16_and_fp16_weights_trace_alike() -> None:
    spec = finetune_spec("test_llm")
    assert spec is not None
    fp16 = job("lora", weights_dtype="fp16")
    direct, _ = trace_counts(spec, fp16, "gpu", 2)
    assert step_key(fp16, "gpu") == step_key(job("lora"), "gpu")
    composed = compose(parts("test_llm", fp16), replace(_test_llm(), layers=2), fp16)
    assert counts(tuple(o for o in composed.ops if o.phase != "optimizer")) == counts(tuple(_records(direct)))


def test_the_cpu_target_runs_attention_as_the_cpu_does() -> None:
    gpu, cpu = traced("test_llm", job("lora")), traced("test_llm", job("lora"), "cpu")
    assert {o.op for o in gpu.ops if o.kind == "attention"} == {"scaled_dot_product_attention",
                                                                "scaled_dot_product_attention_backward"}
    assert {o.op for o in cpu.ops if o.kind == "attention"} <= {"_scaled_dot_product_flash_attention_for_cpu",
                                                                "_scaled_dot_product_flash_attention_for_cpu_backward"}
    assert flops(gpu, "matmul") == flops(cpu, "matmul")


# --- against the written-out profile ----------------------------------------------------------------------------------


def test_test_llm_products_agree_with_the_written_out_profile_to_the_flop() -> None:
    model, t = _test_llm(), SEQ
    h, q, kv = model.hidden, model.q_dim, model.kv_dim
    down = next(w for w in model.weights if w.layer == 0 and w.module == "down_proj")
    for settings in ({}, {"weights_dtype": "fp32"}):
        full = job("full", **settings)
        assert flops(traced("test_llm", full), "matmul") == flops(step_profile(model, full), "matmul")
        lora = job("lora", **settings)
        # the lowest block's input needs no gradient: no dX for q, k, v nor for the adapters of those it adapts
        skipped = 2.0 * t * h * (q + 2 * kv) + sum(2.0 * t * lora.lora_rank * h for m in lora.lora_targets
                                                   if m in ("q_proj", "k_proj", "v_proj"))
        assert flops(step_profile(model, lora), "matmul") - flops(traced("test_llm", lora), "matmul") == \
            pytest.approx(skipped)
    ckpt = job("full", checkpointing="true")  # both stop the recomputation before down_proj
    assert flops(traced("test_llm", ckpt), "matmul") == pytest.approx(flops(step_profile(model, ckpt), "matmul"))
    recompute = flops(traced("test_llm", ckpt), "matmul") - flops(traced("test_llm", full), "matmul")
    block = sum(2.0 * t * w.d_in * w.d_out for w in model.weights if w.layer == 0 and w.role == "linear")
    assert recompute == pytest.approx(model.layers * (block - 2.0 * t * down.d_in * down.d_out))
    # freeze + checkpointing: the backward runs through the frozen blocks (activation gradients only), as traced
    frozen = job("freeze", checkpointing="true")
    assert flops(traced("test_llm", frozen), "matmul") == pytest.approx(flops(step_profile(model, frozen), "matmul"),
                                                                         rel=0.01)
    # attention: torch's FLOP counter counts the causal product whole; the written-out profile halves it
    assert flops(traced("test_llm", full), "attention") == pytest.approx(2 * flops(step_profile(model, full),
                                                                                   "attention"))


@pytest.mark.parametrize("method", ["full", "lora", "freeze"])
def test_test_bert_flops_agree_with_the_written_out_profile(method: str) -> None:
    model, cfg = _test_bert(), job(method)
    got, want = traced("test_bert", cfg), step_profile(model, cfg)
    h = model.hidden
    skipped = 0.0 if method == "full" else 2.0 * SEQ * h * 3 * h + (
        sum(2.0 * SEQ * cfg.lora_rank * h for m in cfg.lora_targets if m in ("q_proj", "k_proj", "v_proj"))
        if method == "lora" else 0.0)
    assert flops(got, "matmul") + skipped == pytest.approx(flops(want, "matmul"), rel=BERT_TOLERANCE)
    assert flops(got, "attention") == pytest.approx(flops(want, "attention"), rel=BERT_TOLERANCE)


# --- not traced ------------------------------------------------------------------------------------------------------


def test_qlora_moe_and_unknown_models_are_not_traced_and_say_why() -> None:
    qlora = trace_step("llama3_8b", parse_finetune("qlora", {}))
    assert isinstance(qlora, str) and "bitsandbytes" in qlora and "fake tensors" in qlora
    moe = trace_step("qwen3-30b-a3b", parse_finetune("lora", {}))
    assert isinstance(moe, str) and "mixture of experts" in moe
    nobody = trace_step("llama-3.1-70b", parse_finetune("lora", {}))
    assert isinstance(nobody, str) and "no registered workload" in nobody
    cal, catalog = load_calibration(), load_catalog()
    gpu = catalog.gpu("a100-sxm4-80gb")
    st = step_time(_test_llm(), job("qlora"), gpu, cal, catalog, qlora)
    assert st.profile_source == "formula" and f"written-out profile (not traced: {qlora})" in st.basis


def test_a_trace_that_fails_says_so() -> None:
    got = trace_step("test_bert", parse_finetune("lora", {"seq_len": "512"}))  # test_bert has 64 positions
    assert isinstance(got, str) and got.startswith("the trace failed (")


# --- the prediction ---------------------------------------------------------------------------------------------------

JOB = {"seq_len": "128"}


def test_predict_takes_the_traced_profile_and_says_so() -> None:
    doc = api.predict_finetune("qwen3-0.6b", "a100-sxm4-80gb", "lora", JOB)
    assert doc["time"]["profile_source"] == "traced"
    assert "traced on fake tensors" in doc["basis"]["time"] and "operators per step" in doc["basis"]["time"]
    plain = api.predict_finetune("qwen3-0.6b", "a100-sxm4-80gb", "lora", JOB, trace=False)
    assert plain["time"]["profile_source"] == "formula"
    assert "written-out profile (not traced: not asked (--no-trace))" in plain["basis"]["time"]
    qlora = api.predict_finetune("qwen3-0.6b", "a100-sxm4-80gb", "qlora", JOB)
    assert qlora["time"]["profile_source"] == "formula" and "not traced: QLoRA" in qlora["basis"]["time"]
    # the optimizer stays perf's record: the probed rate and ZeRO's share apply to the traced profile too
    zero = api.predict_finetune("qwen3-0.6b", "a100-sxm4-80gb", "full", {**JOB, "gpus": "4", "sharding": "zero3"})
    assert zero["time"]["profile_source"] == "traced" and zero["time"]["collectives_s"] > 0


def test_predict_json_on_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    from dlgpu.cli.main import main

    argv = ["predict", "qwen3-0.6b", "--task", "finetune", "--method", "full", "-H", "local", "--set",
            "seq_len=128", "--no-save", "--json"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["time"]["profile_source"] == "traced"
    assert main([*argv, "--no-trace"]) == 0
    assert json.loads(capsys.readouterr().out)["time"]["profile_source"] == "formula"


def test_advise_times_each_setup_from_its_own_trace() -> None:
    doc = api.advise_finetune("qwen3-0.6b", ["lora", "qlora"], samples=1000, seq_len=128,
                              hardware=["a100-sxm4-80gb", "rtx-4090"])
    sources = {(c["method"], c["profile_source"]) for c in doc["candidates"] if c["fits"]}
    assert ("lora", "traced") in sources and ("qlora", "formula") in sources
    assert all("traced on fake tensors" in r["basis"] or "written-out profile" in r["basis"]
               for r in doc["this_machine"]["methods"] if r["source"] == "predicted")


# --- the cache, read without torch ------------------------------------------------------------------------------------

PREDICT = ["predict", "qwen3-0.6b", "--task", "finetune", "--method", "lora", "-H", "a100-sxm4-80gb", "--set",
           "seq_len=128", "--no-save", "--json"]
WARM = """
import contextlib, io, json, sys
from dlgpu.cli.main import main
buf = io.StringIO()
with contextlib.redirect_stdout(buf):
    code = main(json.loads(sys.argv[1]))
if code != 0:
    sys.exit(f"exited {code}")
print(buf.getvalue())
"""


def test_a_warm_cache_gives_the_traced_profile_without_torch(tmp_path: Path) -> None:
    cold = json.loads(dlgpu_blocked(PREDICT, tmp_path / "cold"))
    assert cold["time"]["profile_source"] == "formula" and "torch" in cold["time"]["profile_basis"]

    home = tmp_path / "home"
    proc = subprocess.run([sys.executable, "-c", WARM, json.dumps(PREDICT)], env=_env(home), capture_output=True,
                          text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    warm = json.loads(proc.stdout)
    assert warm["time"]["profile_source"] == "traced"
    cached = sorted(p.name for p in home.rglob("*.json"))

    blocked = json.loads(dlgpu_blocked(PREDICT, home))
    assert blocked["time"]["profile_source"] == "traced"
    assert blocked["step_time_s"] == warm["step_time_s"] and blocked["basis"]["time"] == warm["basis"]["time"]
    assert sorted(p.name for p in home.rglob("*.json")) == cached  # nothing traced again


def test_the_parts_round_trip_through_json() -> None:
    p = parts("test_llm", job("freeze", grad_accum="2"))
    assert StepParts.from_dict(json.loads(json.dumps(p.to_dict()))) == p
    assert set(p.pieces) == {"rest", "trained", "frozen", "accumulate_rest", "accumulate_trained",
                             "accumulate_frozen"}


COPIES = """
from dlgpu.analyze.finetune_profile import trace_step
from dlgpu.analyze.finetune_trace import trace_activations
from dlgpu.analyze.trace import profile
from dlgpu.finetune.config import parse_finetune
from dlgpu.workloads.registry import get_workload
for b in (1, 2, 3):
    assert not isinstance(trace_step("test_bert", parse_finetune("lora", {"seq_len": "32"}, b)), str)
assert not isinstance(trace_activations("test_bert", parse_finetune("lora", {})), str)
import gc; gc.collect()
spec = get_workload("test_gpt")
print(len(profile(spec, spec.resolve({}), "train", "fp32", 2).ops))
"""


def test_traces_of_a_peft_task_head_leave_the_process_sound(tmp_path: Path) -> None:
    # peft deep-copies BERT's span head: before ``_copies_keep_the_fake_mode`` the copy took a second FakeTensorMode
    # sharing the first one's native state, and a later trace in the process crashed in malloc
    proc = subprocess.run([sys.executable, "-c", COPIES], env=_env(tmp_path), capture_output=True, text=True,
                          timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert int(proc.stdout.strip().splitlines()[-1]) > 0
