"""The LLM architecture catalog, weight/KV formats and memory model (dlgpu.llm), checked against the published
figures they come from: the catalog rows' own numbers (``total_params_b``, and the counts their notes computed
from each config), LLM.md §1's whole-file GGUF sizes of Llama 3/3.1 8B, LLM.md §2's torchao checkpoint sizes,
LLM.md §3's KV-cache sizes and LLM.md §6's Apple memory measurements. No fakes: real rows, real files."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dlgpu.errors import BadInput
from dlgpu.llm import architectures
from dlgpu.llm.architectures import LlmArch, arch_from_hf_config, get_arch, load_architectures, parse_layer_kinds
from dlgpu.llm.formats import (
    KV_FORMATS,
    WEIGHT_FORMATS,
    get_format,
    get_kv_format,
    gguf_tensor_type,
    tensor_bytes,
    weight_bytes,
)
from dlgpu.llm.memory import largest_concurrency, largest_context, llm_memory, unified_memory_share

SHARED_CSV = Path("/work/shared/data/llm_architectures.csv")
PACKAGE_CSV = Path(architectures.__file__).parent / "data" / "architectures.csv"
KiB, MiB, GiB = 2**10, 2**20, 2**30
NUMBER = r"(\d{1,3}(?:,\d{3}){2,})"


def _n(text: str) -> int:
    return int(text.replace(",", ""))


def notes_counts(notes: str) -> tuple[int | None, int | None]:
    """The (total, active) parameter counts a row's notes say were computed from its config: "total/active computed
    from config (46,702,792,704 / 12,879,925,248", "text params computed with it (3,880,263,168)", "active computed
    counting unembedding but not embedding (3,608,307,264)"."""
    total = active = None
    for m in re.finditer(rf"(?<!/)(active )?computed\b[^;]*?{NUMBER}(?: / {NUMBER})?", notes):
        if m[1]:
            active = _n(m[2])
        elif total is None:
            total, active = _n(m[2]), _n(m[3]) if m[3] else active
    return total, active


# --- the data file -----------------------------------------------------------------------------------------------

def test_catalog_is_a_verbatim_copy_of_the_shared_file() -> None:
    if not SHARED_CSV.exists():
        pytest.skip("the project's shared data folder is not here")
    assert PACKAGE_CSV.read_bytes() == SHARED_CSV.read_bytes()


def test_every_row_loads_with_one_kind_per_layer() -> None:
    catalog = load_architectures()
    assert len(catalog) == 37
    for arch in catalog.values():
        assert len(arch.layer_kinds) == arch.layers and set(arch.layer_kinds) <= set(architectures.LAYER_KINDS)
        assert arch.source.startswith("https://") and arch.total_params_published
    g = catalog["gemma-3-4b"].layer_kinds  # "29 local + 5 global", global at (i + 1) % 6 == 0
    assert (g.count("sliding"), g.count("full")) == (29, 5) and g[5] == "full" and g[4] == "sliding"
    assert catalog["gpt-oss-120b"].layer_kinds[:2] == ("sliding", "full")  # "starting sliding"
    assert catalog["llama-4-scout-17b-16e"].chunk_size == 8192
    assert catalog["qwen3.5-27b"].layer_kinds.count("full") == 16
    assert catalog["gemma-4-31b"].global_kv_heads == 4 and catalog["gemma-4-31b"].global_head_dim == 512
    with pytest.raises(ValueError, match="the text says 28"):
        parse_layer_kinds("5 local : 1 global (sliding_window_pattern 6); 28 local + 5 global", 34)


# --- parameter counts --------------------------------------------------------------------------------------------

def test_computed_parameters_equal_the_notes_and_the_published_totals() -> None:
    """Every computable row: the count equals the one its notes computed, to the parameter, and the published
    total_params_b within 0.5% (dense) or 3% (MoE). Exceptions, asserted below: Gemma 3 and Llama 4 Scout publish
    the whole checkpoint with the vision tower; gpt-oss publishes active parameters without the input embedding."""
    catalog = load_architectures()
    exceptions = {"gemma-3-4b", "gemma-3-12b", "gemma-3-27b", "gpt-oss-20b", "gpt-oss-120b"}
    checked = 0
    for arch in catalog.values():
        if not arch.params_computed:
            continue
        total, active = arch.param_counts()
        noted_total, noted_active = notes_counts(arch.notes)
        assert noted_total == total, arch.id
        if noted_active is not None:
            lookup = arch.vocab * arch.hidden if arch.family == "gpt-oss" else 0
            assert noted_active == active - lookup, arch.id
        published_total, published_active = arch.total_params_published, arch.active_params_published
        assert published_total and published_active
        if arch.id in exceptions:
            continue
        tolerance = 0.03 if arch.is_moe else 0.005
        assert total == pytest.approx(published_total, rel=tolerance), arch.id
        assert active == pytest.approx(published_active, rel=tolerance), arch.id
        checked += 1
    assert checked == 25
    llama = catalog["llama-3.1-8b"].param_counts()
    assert llama == (8_030_261_248, 8_030_261_248)  # the row's notes: "total_params computed from config (8,030,...)"
    for gid in ("gemma-3-4b", "gemma-3-12b", "gemma-3-27b"):
        gemma = catalog[gid]
        vision = re.search(rf"SigLIP vision tower \({NUMBER}\)", gemma.notes)
        assert vision and gemma.total_params_published
        extra = gemma.total_params_published - gemma.param_counts()[0] - _n(vision[1])  # the projector, rounding
        assert 0 < extra < 0.002 * gemma.total_params_published
    for gid in ("gpt-oss-20b", "gpt-oss-120b"):
        oss = catalog[gid]
        assert oss.active_params_published
        assert oss.param_counts()[1] - oss.vocab * oss.hidden == pytest.approx(oss.active_params_published, rel=1e-3)


def test_rows_without_a_computable_count_use_the_published_one() -> None:
    for arch in load_architectures().values():
        if arch.architecture in ("qwen3_5", "qwen3_5_moe", "gemma4"):
            assert not arch.params_computed and arch.not_computed_why()
            assert arch.param_counts() == (arch.total_params_published, arch.active_params_published)
            with pytest.raises(BadInput, match="not computable"):
                arch.tensors()


def test_moe_weights_count_every_expert_but_a_token_uses_few() -> None:
    """DeepSeek-V3: 671B total / 37B activated (LLM.md §4); the weights in memory are all 671B."""
    ds = get_arch("deepseek-v3")
    total, active = ds.param_counts()
    assert total / 1e9 == pytest.approx(671, rel=1e-3) and active / 1e9 == pytest.approx(37.55, rel=1e-3)
    fp8 = weight_bytes(ds, get_format("fp8"))
    assert fp8 > 0.99 * total  # every expert at a byte each (the embedding and head at two)
    assert llm_memory(ds, "fp8", "bf16", 1).weights_bytes == fp8


# --- KV cache (LLM.md §3) ----------------------------------------------------------------------------------------

def test_kv_cache_per_token_of_llama_and_deepseek_mla() -> None:
    fp16 = get_kv_format("fp16").bytes_per_element
    assert get_arch("llama-3-8b").kv_cache_elements(1) * fp16 == 128 * KiB
    assert get_arch("llama-3-70b").kv_cache_elements(1) * fp16 == 320 * KiB
    ds = get_arch("deepseek-v3")  # MLA: latent 512 + RoPE key 64 per layer, no separate V
    assert ds.kv_cache_elements(1) * get_kv_format("bf16").bytes_per_element == 61 * 576 * 2
    assert ds.kv_cache_elements(1000, sequences=3) == 3 * 1000 * 61 * 576


def test_sliding_window_layers_cap_the_cache() -> None:
    ctx = 32_768
    gemma = get_arch("gemma-3-27b")
    assert gemma.sliding_window == 1024
    per_token = 2 * gemma.kv_heads * gemma.head_dim
    expected = sum((ctx if (i + 1) % 6 == 0 else 1024) * per_token for i in range(gemma.layers))  # 5 local : 1 global
    assert gemma.kv_cache_elements(ctx) == expected == (10 * ctx + 52 * 1024) * per_token
    full = dataclasses.replace(gemma, layer_kinds=("full",) * gemma.layers)
    assert gemma.kv_cache_elements(ctx) < 0.2 * full.kv_cache_elements(ctx)
    mistral = get_arch("mistral-7b-v0.1")  # every layer sliding (4096)
    assert mistral.kv_cache_elements(ctx) == 32 * 4096 * 2 * 8 * 128
    assert get_arch("mistral-7b-v0.3").kv_cache_elements(ctx) == 8 * mistral.kv_cache_elements(ctx)
    oss = get_arch("gpt-oss-120b")  # LLM.md §3: ~9.66 GB bf16 at 131k tokens by the full-attention formula
    oss_full = dataclasses.replace(oss, layer_kinds=("full",) * oss.layers)
    assert round(oss_full.kv_cache_elements(131_072) * 2 / 1e9, 2) == 9.66
    assert oss.kv_cache_elements(131_072) == 18 * (131_072 + 128) * 2 * 8 * 64  # alternating, window 128
    qwen = get_arch("qwen3.5-27b")  # hybrid: only the 16 full-attention layers keep a KV cache
    assert qwen.kv_cache_elements(ctx) == 16 * ctx * 2 * 4 * 256


# --- Hugging Face config.json ------------------------------------------------------------------------------------

def hf_config(a: LlmArch) -> dict[str, Any]:
    """A config.json with the keys each family's Hugging Face config uses, from a catalog row's fields."""
    c: dict[str, Any] = {"model_type": a.architecture, "num_hidden_layers": a.layers, "hidden_size": a.hidden,
                         "intermediate_size": a.intermediate, "num_attention_heads": a.heads,
                         "num_key_value_heads": a.kv_heads, "head_dim": a.head_dim, "vocab_size": a.vocab,
                         "max_position_embeddings": a.max_context, "tie_word_embeddings": a.tied_embeddings,
                         "sliding_window": a.sliding_window, "torch_dtype": a.dtype}
    if a.architecture in ("qwen2", "qwen3", "qwen3_moe"):
        c.update(use_sliding_window=False, sliding_window=a.max_context)
    if a.architecture == "mixtral":
        c.update(num_local_experts=a.experts, num_experts_per_tok=a.experts_per_token)
    if a.architecture == "qwen3_moe":
        c.update(num_experts=a.experts, num_experts_per_tok=a.experts_per_token,
                 moe_intermediate_size=a.moe_intermediate)
    if a.architecture == "gpt_oss":
        c.update(num_local_experts=a.experts, experts_per_token=a.experts_per_token, num_experts_per_tok=4,
                 layer_types=[{"sliding": "sliding_attention", "full": "full_attention"}[k] for k in a.layer_kinds])
    if a.architecture == "deepseek_v3":
        del c["head_dim"]
        c.update(n_routed_experts=a.experts, num_experts_per_tok=a.experts_per_token, n_shared_experts=1,
                 moe_intermediate_size=a.moe_intermediate, first_k_dense_replace=a.first_k_dense,
                 kv_lora_rank=a.kv_lora_rank, q_lora_rank=a.q_lora_rank, qk_rope_head_dim=a.qk_rope_head_dim,
                 qk_nope_head_dim=a.qk_nope_head_dim, v_head_dim=a.v_head_dim)
    if a.architecture == "gemma3":  # multimodal: text keys nested, the Gemma3TextConfig defaults left out
        text = {k: v for k, v in c.items() if k not in ("vocab_size", "max_position_embeddings", "tie_word_embeddings",
                                                        "model_type", "torch_dtype")}
        return {"model_type": "gemma3", "torch_dtype": a.dtype, "text_config": {"model_type": "gemma3_text", **text}}
    return c


@pytest.mark.parametrize("row", ["llama-3.1-8b", "llama-3.2-1b", "mistral-7b-v0.1", "mixtral-8x7b", "qwen2.5-7b",
                                 "qwen3-0.6b", "qwen3-30b-a3b", "gemma-3-27b", "gpt-oss-20b", "deepseek-v3",
                                 "phi-3-mini-4k"])
def test_a_config_json_round_trips_to_the_same_counts(row: str, tmp_path: Path) -> None:
    a = get_arch(row)
    (tmp_path / "config.json").write_text(json.dumps(hf_config(a)), encoding="utf-8")
    for where in (tmp_path / "config.json", tmp_path):  # the file, or the folder holding it
        b = get_arch(str(where))
        assert b.param_counts() == a.param_counts()
        assert b.layer_kinds == a.layer_kinds and b.sliding_window == a.sliding_window
        assert b.kv_cache_elements(32_768, 2) == a.kv_cache_elements(32_768, 2)
        assert weight_bytes(b, get_format("q4_k_m")) == weight_bytes(a, get_format("q4_k_m"))


def test_bad_config_and_names_say_what_is_valid(tmp_path: Path) -> None:
    assert get_arch("META-LLAMA/llama-3.1-8b").id == "llama-3.1-8b"
    assert get_arch("Llama-3.1-8B").id == "llama-3.1-8b"  # the repo name without its organisation
    with pytest.raises(BadInput) as err:
        get_arch("llama-9-1t")
    message = str(err.value)
    assert "llama-9-1t" in message and "deepseek-v3" in message and "config.json" in message
    assert "\n" not in message
    with pytest.raises(BadInput, match="hidden_size"):
        arch_from_hf_config({"num_hidden_layers": 2}, "tiny")
    bad = tmp_path / "config.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(BadInput, match=r"not a readable config\.json"):
        get_arch(str(bad))


# --- weight formats (LLM.md §1, §2) ------------------------------------------------------------------------------

@pytest.mark.parametrize(("fmt", "bpw"), [("q8_0", 8.5008), ("q6_k", 6.5633), ("q5_k_m", 5.7036),
                                          ("q4_k_m", 4.8944), ("q2_k", 3.1593), ("iq4_xs", 4.4597)])
def test_gguf_whole_file_bits_per_weight_of_llama_3_1_8b(fmt: str, bpw: float) -> None:
    """tools/quantize/README.md's whole-file bpw (LLM.md §1). IQ4_XS's own mix rules are not modelled (only the
    output to Q6_K): 4.40 against 4.46."""
    a = get_arch("llama-3.1-8b")
    computed = weight_bytes(a, get_format(fmt)) * 8 / a.param_counts()[0]
    assert computed == pytest.approx(bpw, rel=0.02 if fmt == "iq4_xs" else 1e-4)
    if fmt == "q4_k_m":
        assert round(weight_bytes(a, get_format(fmt)) / GiB, 2) == 4.58


@pytest.mark.parametrize(("fmt", "gib"), [("q4_0", 4.34), ("q5_0", 5.21), ("q3_k_m", 3.74)])
def test_gguf_sizes_of_llama_3_8b(fmt: str, gib: float) -> None:
    """tools/quantize/quantize.cpp's "4.34G @ Llama-3-8B" and so on (LLM.md §1)."""
    assert weight_bytes(get_arch("llama-3-8b"), get_format(fmt)) / GiB == pytest.approx(gib, rel=0.02)


def test_gguf_mix_rules() -> None:
    a, q4km = get_arch("llama-3.1-8b"), get_format("q4_k_m")
    by_name = {(t.name, t.layer): t for t in a.tensors()}
    kinds = {i: gguf_tensor_type(a, q4km, by_name["attn_v", i]) for i in range(32)}
    more = [i for i, k in kinds.items() if k == "q6_k"]  # use_more_bits(i, 32): i < 4, i >= 28, (i - 4) % 3 == 2
    assert more == [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]
    assert gguf_tensor_type(a, q4km, by_name["output", None]) == "q6_k"
    assert gguf_tensor_type(a, q4km, by_name["token_embd", None]) == "q4_k"
    assert gguf_tensor_type(a, q4km, by_name["attn_norm", 0]) == "f32"
    assert gguf_tensor_type(a, get_format("q8_0"), by_name["output", None]) == "q8_0"
    # Mixtral (8 experts): attn_k and attn_v to Q8_0, "trades just ~128MB" over Q4_K
    mx = get_arch("mixtral-8x7b")
    kv = [t for t in mx.tensors() if t.name in ("attn_k", "attn_v")]
    assert {gguf_tensor_type(mx, q4km, t) for t in kv} == {"q8_0"}
    extra = sum(tensor_bytes(mx, q4km, t) - t.rows * t.row // 256 * 144 for t in kv)
    assert extra == 128 * MiB
    # gpt-oss rows of 2880 are no multiple of 256: Q4_K falls back to Q5_0
    oss = get_arch("gpt-oss-20b")
    down = next(t for t in oss.tensors() if t.name == "ffn_down_exps" and t.layer == 4)  # not a more-bits layer
    assert gguf_tensor_type(oss, q4km, down) == "q5_0"


def test_torchao_checkpoint_sizes_of_llama_3_1_8b() -> None:
    """LLM.md §2 (torchao docs/source/workflows/inference.md): bf16 16.1 GB, int8/fp8 9.1 GB."""
    a = get_arch("llama-3.1-8b")
    assert weight_bytes(a, get_format("bf16")) / 1e9 == pytest.approx(16.1, rel=0.01)
    assert weight_bytes(a, get_format("int8")) / 1e9 == pytest.approx(9.1, rel=0.01)
    assert weight_bytes(a, get_format("fp8")) / 1e9 == pytest.approx(9.1, rel=0.01)


def test_format_tables_and_names() -> None:
    for f in WEIGHT_FORMATS.values():
        assert f.source and f.runtimes
        if f.group:  # block-scaled: the rate is the elements plus their scales
            assert f.bits_per_weight == pytest.approx(f.bits + 8 * f.group_bytes / f.group)
    assert (get_format("mxfp4").bits_per_weight, get_format("nvfp4").bits_per_weight) == (4.25, 4.5)
    assert get_format("int4").bits_per_weight == 4.25 and get_format("Q4_K_M").name == "q4_k_m"
    assert {k: v.bytes_per_element for k, v in KV_FORMATS.items() if k in ("fp32", "fp16", "bf16", "fp8", "q8_0",
            "q4_0")} == {"fp32": 4, "fp16": 2, "bf16": 2, "fp8": 1, "q8_0": 1.0625, "q4_0": 0.5625}
    assert "Flash Attention" in get_kv_format("q8_0").note
    with pytest.raises(BadInput, match=r"valid: .*q4_k_m"):
        get_format("q4_k_s")
    with pytest.raises(BadInput, match=r"valid: .*q8_0"):
        get_kv_format("int3")


# --- memory ------------------------------------------------------------------------------------------------------

def test_memory_parts_and_the_largest_context_and_concurrency() -> None:
    a = get_arch("llama-3.1-8b")
    m = llm_memory(a, "q4_k_m", "fp16", 8192, sequences=2, runtime_bytes=500 * MiB)
    assert m.weights_bytes == weight_bytes(a, get_format("q4_k_m"))
    assert m.kv_cache_bytes == 2 * 8192 * 128 * KiB
    assert m.activation_bytes == 512 * ((4096 + 2 * 14336) * 2 + 128_256 * 4)
    assert m.total_bytes == m.weights_bytes + m.kv_cache_bytes + m.activation_bytes + m.runtime_bytes
    budget = 8 * GiB
    ctx = largest_context(a, "q4_k_m", "fp16", budget, sequences=2, runtime_bytes=500 * MiB)
    assert 0 < ctx < a.max_context
    assert llm_memory(a, "q4_k_m", "fp16", ctx, 2, runtime_bytes=500 * MiB).total_bytes <= budget
    assert llm_memory(a, "q4_k_m", "fp16", ctx + 1, 2, runtime_bytes=500 * MiB).total_bytes > budget
    n = largest_concurrency(a, "q4_k_m", "q8_0", budget, 4096)
    assert n > 1
    assert llm_memory(a, "q4_k_m", "q8_0", 4096, n).total_bytes <= budget
    assert llm_memory(a, "q4_k_m", "q8_0", 4096, n + 1).total_bytes > budget
    assert largest_context(a, "q4_k_m", "fp16", 80 * GiB) == a.max_context  # capped at the model's context
    big = get_arch("llama-3.1-405b")
    assert largest_context(big, "q4_k_m", "fp16", 24 * GiB) == 0
    assert largest_concurrency(big, "q4_k_m", "fp16", 24 * GiB, 4096) == 0
    with pytest.raises(BadInput):
        llm_memory(a, "q4_k_m", "fp16", -1)


def test_apple_unified_memory_share() -> None:
    """LLM.md §6: 21845 MB of 32 GB measured on an M1 Max (2/3); ~47 GB of 64 GB (3/4 = 48)."""
    share, basis = unified_memory_share(32 * GiB)
    assert share // MiB == 21845
    assert unified_memory_share(64 * GiB)[0] == 48 * GiB
    assert "not Apple's statement" in basis and "recommended_max_memory" in basis


def test_llm_modules_do_not_import_torch() -> None:
    code = ("import sys\nimport dlgpu.llm.architectures, dlgpu.llm.formats, dlgpu.llm.memory\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'numpy')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "torch" not in out.stdout and "transformers" not in out.stdout, out.stdout
