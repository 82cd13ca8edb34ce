"""A fine-tuning job's activations traced on fake tensors with the method applied (``analyze.finetune_trace``): real
tiny traces on the CPU against ``finetune.memory``'s formula, their linearity in blocks and tokens, the prediction's
switch between the traced figure and the formula, the cache read without torch, and what is not traced (QLoRA, MoE).

Tolerance of (a): the formula and the trace agree to the byte for the Llama/Qwen decoders (bf16, fp16, fp32 under
autocast; full, freeze, LoRA); for BERT the trace is 8 B per token per block lower, the LayerNorms' mean and rstd,
which PyTorch's CPU kernel keeps in bf16 and its CUDA kernel (the formula) in fp32. The tests allow 0.1% or those
8 B, whichever is larger."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from dlgpu import api
from dlgpu.analyze.finetune_trace import trace_activations
from dlgpu.finetune.config import parse_finetune
from dlgpu.finetune.memory import TracedActivations, finetune_memory, formula_per_block, trace_key
from dlgpu.finetune.model import FtModel, Weight, from_arch, resolve_finetune_model
from dlgpu.llm.architectures import arch_from_hf_config
from dlgpu.workloads.llm import TEST_SHAPE
from test_torch_free import _env, dlgpu_blocked

TOLERANCE, LAYER_NORM_STATS = 1e-3, 8


def _test_llm() -> FtModel:
    """test_llm's shapes from the Hugging Face config its workload builds (``workloads.llm.TEST_SHAPE``)."""
    s = TEST_SHAPE
    config = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": s.hidden,
              "intermediate_size": s.intermediate, "num_hidden_layers": s.layers, "num_attention_heads": s.heads,
              "num_key_value_heads": s.kv_heads, "head_dim": s.head_dim, "vocab_size": s.vocab,
              "max_position_embeddings": s.max_context, "tie_word_embeddings": s.tied}
    return from_arch(arch_from_hf_config(config, "test_llm"))


def _test_bert() -> FtModel:
    """test_bert (``workloads.language.test_bert``: 2 layers, hidden 64, 2 heads, FFN 128, 64 positions)."""
    h, f, layers = 64, 128, 2
    ws = [Weight("word_embeddings", None, "embedding", h, 1000)]
    for i in range(layers):
        ws += [Weight("q_proj", i, "linear", h, h), Weight("k_proj", i, "linear", h, h),
               Weight("v_proj", i, "linear", h, h), Weight("o_proj", i, "linear", h, h),
               Weight("up_proj", i, "linear", h, f), Weight("down_proj", i, "linear", f, h)]
    return FtModel("test_bert", "tiny BERT", "encoder", layers, h, f, 2, 2, h // 2, 1000, 64, False, tuple(ws), 2,
                   "workloads.language.test_bert")


MODELS = {"test_llm": _test_llm, "test_bert": _test_bert}
_TRACES: dict[tuple[str, str], TracedActivations | str] = {}


def traced(name: str, method: str, **settings: str) -> TracedActivations:
    key = (name, repr((method, sorted(settings.items()))))
    if key not in _TRACES:
        _TRACES[key] = trace_activations(name, parse_finetune(method, settings))
    got = _TRACES[key]
    assert isinstance(got, TracedActivations), got
    return got


def model_of(name: str) -> FtModel:
    return MODELS[name]() if name in MODELS else resolve_finetune_model(name)


# --- (a) the traced figure against the formula ------------------------------------------------------------------

CASES = [
    ("test_llm", "lora", {}), ("test_llm", "full", {}), ("test_llm", "freeze", {}),
    ("test_llm", "lora", {"weights_dtype": "fp32"}), ("test_llm", "full", {"weights_dtype": "fp32"}),
    ("test_llm", "lora", {"lora_targets": "all-linear", "lora_rank": "4"}),
    ("test_llm", "lora", {"lora_targets": "all-linear", "weights_dtype": "fp32"}),
    ("test_bert", "lora", {}), ("test_bert", "full", {}), ("test_bert", "freeze", {}),
    ("test_bert", "lora", {"weights_dtype": "fp32"}), ("test_bert", "full", {"weights_dtype": "fp32"}),
    # catalog shapes: Qwen3's per-head q/k norms, BERT-base's FFN of 4h (Korthikanti's 34 sbh)
    ("qwen3-0.6b", "lora", {}), ("qwen3-0.6b", "full", {"weights_dtype": "fp32"}), ("bert_base", "full", {}),
]


@pytest.mark.parametrize(("name", "method", "settings"), CASES)
def test_traced_bytes_per_token_per_block_agree_with_the_formula(name: str, method: str,
                                                                  settings: dict[str, str]) -> None:
    t = traced(name, method, **settings)
    formula = formula_per_block(model_of(name), parse_finetune(method, settings))
    assert t.per_block_per_token == pytest.approx(formula, rel=TOLERANCE, abs=LAYER_NORM_STATS), \
        (t.per_block_per_token, formula)
    assert t.basis.startswith("traced on fake tensors with ") and "peft " in t.basis and "transformers " in t.basis


def test_the_formula_is_exact_for_a_llama_block() -> None:
    # every tensor a Llama block saves, counted (tolerance 0): the formula was fixed until it is
    for method, settings in (("lora", {}), ("full", {}), ("full", {"weights_dtype": "fp32"}),
                             ("lora", {"weights_dtype": "fp32"})):
        t = traced("test_llm", method, **settings)
        assert t.per_block_per_token == formula_per_block(_test_llm(), parse_finetune(method, settings))


def test_what_the_rest_is_made_of() -> None:
    # outside the blocks a decoder saves the loss's fp32 log-softmax, 4 B x vocab per token, and little else
    t = traced("test_llm", "lora")
    vocab = TEST_SHAPE.vocab
    assert 4 * vocab <= t.rest_per_token < 4 * vocab + 8 * TEST_SHAPE.hidden
    # the formula's logits part adds the head's bf16 output and the loss's fp32 gradient: more than is saved
    assert finetune_memory(_test_llm(), parse_finetune("lora", {"seq_len": "1"})).part("logits") > t.rest_per_token


def test_fp32_weights_trace_autocast_s_weight_copies_per_block() -> None:
    # a block's bytes that do not grow with tokens are autocast's bf16 copies of its matrices (and adapters): what
    # memory's weight_copies part counts, 2 B per matrix parameter
    model = _test_llm()
    for method, settings in (("full", {"weights_dtype": "fp32"}), ("lora", {"weights_dtype": "fp32"})):
        t = traced("test_llm", method, **settings)
        cfg = parse_finetune(method, settings)
        mats = sum(w.elements for w in model.weights if w.layer == 0 and w.role == "linear")
        adapters = sum(cfg.lora_rank * (w.d_in + w.d_out) for w in model.weights
                       if w.layer == 0 and w.module in cfg.lora_targets) if cfg.trains_adapters else 0
        assert t.per_block == 2 * (mats + adapters), (method, t.per_block, mats, adapters)
    assert traced("test_llm", "full").per_block == 0  # bf16 weights: no copies


def test_bf16_and_fp16_trace_alike_so_one_trace_serves_both() -> None:
    bf16, fp16 = traced("test_llm", "lora"), traced("test_llm", "lora", weights_dtype="fp16")
    assert (bf16.per_block_per_token, bf16.rest_per_token) == (fp16.per_block_per_token, fp16.rest_per_token)
    assert trace_key(parse_finetune("lora", {"weights_dtype": "fp16"})) == trace_key(parse_finetune("lora", {}))
    assert trace_key(parse_finetune("lora", {"weights_dtype": "fp32"})) != trace_key(parse_finetune("lora", {}))


def test_the_job_may_be_the_plain_dict_the_bench_takes() -> None:
    got = trace_activations("test_llm", parse_finetune("lora", {}).to_dict())
    assert isinstance(got, TracedActivations)
    assert got.per_block_per_token == traced("test_llm", "lora").per_block_per_token


# --- (b) linear in blocks and tokens -----------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "method"), [("test_llm", "lora"), ("test_llm", "full"), ("test_bert", "lora")])
def test_bytes_are_linear_in_blocks_and_tokens(name: str, method: str) -> None:
    t = traced(name, method)
    # the fifth trace (3 blocks, a third length) is predicted by the figures of the four others
    assert t.residual < 1e-9, t.points
    assert [p[0] for p in t.points] == [1, 1, 2, 2, 3]
    blocks, _, seq, got = t.points[-1]
    assert got == pytest.approx(seq * (blocks * t.per_block_per_token + t.rest_per_token) + blocks * t.per_block
                                + t.fixed)
    # and other lengths give the same figures
    other = trace_activations(name, parse_finetune(method, {}), seq_lens=(16, 24))
    assert isinstance(other, TracedActivations)
    assert (other.per_block_per_token, other.rest_per_token) == (t.per_block_per_token, t.rest_per_token)


# --- (c) the prediction uses it, and says so ---------------------------------------------------------------------


JOB = {"seq_len": "128"}


def test_predict_uses_the_traced_figure_and_says_so() -> None:
    doc = api.predict_finetune("qwen3-0.6b", "a100-sxm4-80gb", "lora", JOB)
    assert doc["activations_source"] == "traced"
    act = next(p for p in doc["breakdown"] if p["key"] == "activations")
    assert "traced on fake tensors with the adapters applied (peft " in act["basis"]
    assert "B per token per block" in act["basis"]
    trace = doc["activations_trace"]
    model = resolve_finetune_model("qwen3-0.6b")
    assert act["bytes"] == int(128 * model.layers * trace["per_block_per_token"])
    assert trace["formula_per_block_per_token"] == pytest.approx(trace["per_block_per_token"], rel=TOLERANCE)

    plain = api.predict_finetune("qwen3-0.6b", "a100-sxm4-80gb", "lora", JOB, trace=False)
    assert plain["activations_source"] == "formula"
    assert "not traced: not asked" in next(p for p in plain["breakdown"] if p["key"] == "activations")["basis"]


def test_no_trace_on_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    from dlgpu.cli.main import main

    argv = ["--task", "finetune", "--method", "lora", "--set", "seq_len=128", "--no-trace", "--json"]
    assert main(["predict", "qwen3-0.6b", "-H", "a100-sxm4-80gb", "--no-save", *argv]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["activations_source"] == "formula" and "--no-trace" in doc["activations_trace"]["reason"]
    assert main(["advise", "qwen3-0.6b", "--samples", "1000", "-H", "a100-sxm4-80gb", *argv]) == 0
    advice = json.loads(capsys.readouterr().out)
    assert advice["per_method"]["lora"]["activations_source"] == "formula"
    assert main(["predict", "test_resnet", "-H", "a100-sxm4-80gb", "--no-trace"]) == 2
    assert "--no-trace goes with --task finetune" in capsys.readouterr().err


def test_checkpointing_composes_the_traced_block() -> None:
    doc = api.predict_finetune("qwen3-0.6b", "a100-sxm4-80gb", "full", {**JOB, "checkpointing": "true"})
    assert doc["activations_source"] == "traced"
    model = resolve_finetune_model("qwen3-0.6b")
    per_block = doc["activations_trace"]["per_block_per_token"]
    act = next(p for p in doc["breakdown"] if p["key"] == "activations")
    assert act["bytes"] == int(128 * (model.layers * 2 * model.hidden + per_block))  # block inputs + one block


def test_largest_micro_batch_and_suggestions_take_the_traces() -> None:
    model = resolve_finetune_model("qwen3-0.6b")
    cfg = parse_finetune("lora", JOB)
    t = traced("qwen3-0.6b", "lora", **JOB)
    bigger = replace(t, per_block_per_token=10 * t.per_block_per_token)
    usable = 20 * 2**30
    from dlgpu.finetune.memory import largest_micro_batch

    assert largest_micro_batch(model, cfg, usable, {trace_key(cfg): bigger}) < largest_micro_batch(model, cfg, usable)
    mem = finetune_memory(model, cfg, {trace_key(cfg): "a reason"})
    assert mem.activations_source == "formula" and mem.activations_trace == {"reason": "a reason"}


def test_advise_says_where_each_method_s_activations_come_from() -> None:
    doc = api.advise_finetune("qwen3-0.6b", ["lora", "qlora"], samples=1000, seq_len=128, hardware=["a100-sxm4-80gb"])
    assert doc["per_method"]["lora"]["activations_source"] == "traced"
    assert doc["per_method"]["qlora"]["activations_source"] == "formula"
    assert "QLoRA" in doc["per_method"]["qlora"]["activations_basis"]


# --- (d) the cache, read without torch ----------------------------------------------------------------------------


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


def test_a_warm_cache_gives_the_traced_figures_without_torch(tmp_path: Path) -> None:
    cold = json.loads(dlgpu_blocked(PREDICT, tmp_path / "cold"))
    assert cold["activations_source"] == "formula"
    assert "torch" in cold["activations_trace"]["reason"]

    home = tmp_path / "home"
    proc = subprocess.run([sys.executable, "-c", WARM, json.dumps(PREDICT)], env=_env(home), capture_output=True,
                          text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    warm = json.loads(proc.stdout)
    assert warm["activations_source"] == "traced"
    cached = sorted(p.name for p in home.rglob("*.json"))

    blocked = json.loads(dlgpu_blocked(PREDICT, home))
    assert blocked["activations_source"] == "traced"
    assert blocked["activations_trace"] == warm["activations_trace"]
    assert blocked["peak_mem_bytes"] == warm["peak_mem_bytes"]
    assert sorted(p.name for p in home.rglob("*.json")) == cached  # nothing traced again


# --- (e) what is not traced says why -------------------------------------------------------------------------------


def test_qlora_moe_and_unknown_models_fall_back_with_a_reason() -> None:
    qlora = trace_activations("llama3_8b", parse_finetune("qlora", {}))
    assert isinstance(qlora, str) and "bitsandbytes" in qlora and "fake tensors" in qlora
    moe = trace_activations("qwen3-30b-a3b", parse_finetune("lora", {}))
    assert isinstance(moe, str) and "mixture of experts" in moe
    nobody = trace_activations("llama-3.1-70b", parse_finetune("lora", {}))
    assert isinstance(nobody, str) and "no registered workload" in nobody

    doc = api.predict_finetune("llama3_8b", "rtx-4090", "qlora", {})
    assert doc["activations_source"] == "formula"
    act = next(p for p in doc["breakdown"] if p["key"] == "activations")
    assert "not traced: QLoRA" in act["basis"]
    assert doc["activations_trace"]["reason"].startswith("QLoRA")
