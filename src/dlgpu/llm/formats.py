"""Weight formats (how many bytes a model's weights take in memory) and KV-cache formats (bytes per cached value).

Sources: LLM.md (the project's sourced notes) §1 for GGUF (block sizes from llama.cpp's ``GGML_QUANT_SIZES``,
gguf-py/gguf/constants.py @ef035f77; the ``_M`` mixes from src/llama-quant.cpp @007dbbf3
``llama_tensor_get_type_impl``), §2 for torchao, §3 for the KV-cache types. A figure that no source gives is
marked "assumed" in its format's ``source``.

Which tensors a format quantizes:

- fp32, bf16, fp16: every tensor at that width;
- GGUF: every matrix, by llama.cpp's rules (``gguf_tensor_type``); 1-D tensors (norms, biases) and the MoE router
  (``ffn_gate_inp``) stay F32 (LLM.md §1). Assumed: an untied ``token_embd`` stays at the base type for every type
  here (llama.cpp lowers it only for some IQ types); the layer index of ``use_more_bits`` is the block number,
  and an MoE layer's 3-D ``*_exps`` tensors count as one tensor each;
- torchao int8/int4/fp8, GPTQ/AWQ, MXFP4, NVFP4: the decoder's matrices (attention and MLP/experts); the token
  embedding, the output head, the router and 1-D tensors stay bf16. That split is what makes torchao's Llama-3.1-8B
  checkpoints 16.1 GB in bf16 and 9.1 GB in int8/fp8 (LLM.md §2: 8.03 B params, of which 2 x 0.525 B in the
  embedding and head). MXFP4 on an MoE model quantizes the experts only: gpt-oss's checkpoint keeps self_attn,
  router, embed_tokens and lm_head unconverted (``modules_to_not_convert``, catalog notes)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from dlgpu.errors import BadInput

from .architectures import LlmArch, Tensor

# ggml type: (elements per block, bytes per block), LLM.md §1 (GGML_QUANT_SIZES). q5_1 is not in that table:
# assumed from ggml's block_q5_1 (fp16 d and m, 4 bytes of high bits, 16 of nibbles = 24 bytes per 32).
GGML_TYPES: dict[str, tuple[int, int]] = {
    "f32": (1, 4), "f16": (1, 2), "bf16": (1, 2), "q8_0": (32, 34), "q6_k": (256, 210), "q5_k": (256, 176),
    "q5_0": (32, 22), "q5_1": (32, 24), "q4_k": (256, 144), "q4_0": (32, 18), "q3_k": (256, 110),
    "q2_k": (256, 84), "iq4_xs": (256, 136),
}
# a row not a multiple of the block (LLM.md §1): Q4_K->Q5_0, Q5_K->Q5_1, Q6_K->Q8_0, Q2_K/Q3_K->Q4_0, else F16
_ROW_FALLBACK = {"q4_k": "q5_0", "q5_k": "q5_1", "q6_k": "q8_0", "q2_k": "q4_0", "q3_k": "q4_0"}

GGUF_SOURCE = ("llama.cpp GGML_QUANT_SIZES (gguf-py/gguf/constants.py @ef035f77) and llama_tensor_get_type_impl "
               "(src/llama-quant.cpp @007dbbf3), via LLM.md §1")


@dataclass(frozen=True)
class WeightFormat:
    """A weight format. ``bits_per_weight`` is the quantized tensors' rate, scales included (a GGUF file's
    whole-file rate is higher: its mix puts some tensors at more bits). For a block-scaled format ``bits`` per
    element plus ``group_bytes`` of scale (and zero point) per ``group`` elements of a row (``group`` None: one per
    row) plus ``tensor_bytes`` per tensor; for GGUF ``ggml_type`` is the base type of the mix."""

    name: str
    bits_per_weight: float
    kind: str  # float | gguf | weight-only | microscaling
    source: str
    runtimes: tuple[str, ...]
    bits: float = 16.0
    group: int | None = 0  # 0: no groups
    group_bytes: float = 0.0
    tensor_bytes: int = 0
    ggml_type: str | None = None


@dataclass(frozen=True)
class KvFormat:
    """A KV-cache element type: bytes per cached value."""

    name: str
    bytes_per_element: float
    source: str
    note: str = ""


def _gguf(name: str, base: str, runtimes: tuple[str, ...] = ("llama.cpp", "ollama", "LM Studio")) -> WeightFormat:
    block, size = GGML_TYPES[base]
    return WeightFormat(name, 8 * size / block, "gguf", GGUF_SOURCE, runtimes, ggml_type=base)


_TORCHAO = "torchao 0.18 quantize_ (torchao/quantization/quant_api.py), via LLM.md §2"
WEIGHT_FORMATS: dict[str, WeightFormat] = {f.name: f for f in (
    WeightFormat("fp32", 32.0, "float", "IEEE binary32: 4 bytes", ("pytorch",), bits=32.0),
    WeightFormat("bf16", 16.0, "float", "bfloat16: 2 bytes", ("pytorch", "vllm", "sglang", "tensorrt-llm")),
    WeightFormat("fp16", 16.0, "float", "IEEE binary16: 2 bytes", ("pytorch", "vllm", "llama.cpp")),
    WeightFormat("int8", 8.0, "weight-only",
                 f"Int8WeightOnlyConfig(granularity=PerRow()): int8 weights and one scale per output row, {_TORCHAO}; "
                 "the scale's bf16 width is assumed", ("torchao", "vllm"), bits=8.0, group=None, group_bytes=2.0),
    WeightFormat("int4", 4.25, "weight-only",
                 f"Int4WeightOnlyConfig(group_size=128), {_TORCHAO}; a bf16 scale and a bf16 zero point per group of "
                 "128 (4 + 32/128 = 4.25 bits) assumed", ("torchao", "vllm"), bits=4.0, group=128, group_bytes=4.0),
    WeightFormat("fp8", 8.0, "weight-only",
                 f"Float8WeightOnlyConfig (float8_e4m3fn), {_TORCHAO}; one fp32 scale per tensor assumed",
                 ("torchao", "vllm", "sglang", "tensorrt-llm"), bits=8.0, tensor_bytes=4),
    WeightFormat("gptq_int4", 4.15625, "weight-only",
                 "assumed: the common GPTQ layout (AutoGPTQ/GPTQModel, group_size 128): 4-bit weights packed in int32, "
                 "an fp16 scale and a 4-bit zero point per group of 128 (4 + 20/128 bits); act-order's g_idx ignored",
                 ("vllm", "transformers", "exllamav2"), bits=4.0, group=128, group_bytes=2.5),
    WeightFormat("awq_int4", 4.15625, "weight-only",
                 "assumed: the common AWQ layout (AutoAWQ GEMM, group_size 128): 4-bit weights, an fp16 scale and a "
                 "4-bit zero point per group of 128 (4 + 20/128 bits)", ("vllm", "transformers"),
                 bits=4.0, group=128, group_bytes=2.5),
    WeightFormat("mxfp4", 4.25, "microscaling",
                 "OCP Microscaling MXFP4: 4-bit E2M1 elements, one 8-bit E8M0 scale per 32 (4 + 8/32 bits); gpt-oss "
                 "ships its experts so (quantization_config quant_method mxfp4, catalog notes)",
                 ("vllm", "llama.cpp", "transformers"), bits=4.0, group=32, group_bytes=1.0),
    WeightFormat("nvfp4", 4.5, "microscaling",
                 "NVIDIA NVFP4: 4-bit E2M1 elements, one FP8 E4M3 scale per 16 (4 + 8/16 bits) and one fp32 scale "
                 "per tensor", ("tensorrt-llm", "vllm", "sglang"), bits=4.0, group=16, group_bytes=1.0, tensor_bytes=4),
    _gguf("q8_0", "q8_0"), _gguf("q6_k", "q6_k"), _gguf("q5_k_m", "q5_k"), _gguf("q5_0", "q5_0"),
    _gguf("q4_k_m", "q4_k"), _gguf("q4_0", "q4_0"), _gguf("q3_k_m", "q3_k"), _gguf("q2_k", "q2_k"),
    _gguf("iq4_xs", "iq4_xs"),
)}
_WEIGHT_ALIASES = {"float32": "fp32", "f32": "fp32", "bfloat16": "bf16", "float16": "fp16", "f16": "fp16",
                   "int8_weight_only": "int8", "int4_weight_only": "int4", "gptq": "gptq_int4", "awq": "awq_int4",
                   "q4_k": "q4_k_m", "q5_k": "q5_k_m", "q3_k": "q3_k_m"}

_LLAMA_KV = "llama.cpp -ctk/-ctv (common/arg.cpp @145b6280), bytes from the block sizes, via LLM.md §3"
_FA = ("llama.cpp: a quantized V cache requires Flash Attention (-fa; src/llama-context.cpp @4c7103b9, LLM.md §3); "
       "a quantized K alone does not")
KV_FORMATS: dict[str, KvFormat] = {f.name: f for f in (
    KvFormat("fp32", 4.0, _LLAMA_KV),
    KvFormat("fp16", 2.0, _LLAMA_KV),
    KvFormat("bf16", 2.0, _LLAMA_KV),
    KvFormat("fp8", 1.0, "vLLM kv_cache_dtype=\"fp8\" (fp8_e4m3/fp8_e5m2), one byte, via LLM.md §3",
             "vLLM: per-tensor scales, 1.0 unless calibrated"),
    KvFormat("q8_0", 34 / 32, _LLAMA_KV, _FA),
    KvFormat("q5_0", 22 / 32, _LLAMA_KV, _FA),
    KvFormat("q4_0", 18 / 32, _LLAMA_KV, _FA),
)}
_KV_ALIASES = {"f32": "fp32", "float32": "fp32", "f16": "fp16", "float16": "fp16", "bfloat16": "bf16",
               "fp8_e4m3": "fp8", "fp8_e5m2": "fp8", "float8": "fp8"}


def get_format(name: str) -> WeightFormat:
    key = name.strip().lower()
    key = _WEIGHT_ALIASES.get(key, key)
    if key not in WEIGHT_FORMATS:
        raise BadInput(f"{name!r}: unknown weight format; valid: {', '.join(WEIGHT_FORMATS)}", param="weight_format")
    return WEIGHT_FORMATS[key]


def get_kv_format(name: str) -> KvFormat:
    key = name.strip().lower()
    key = _KV_ALIASES.get(key, key)
    if key not in KV_FORMATS:
        raise BadInput(f"{name!r}: unknown KV-cache format; valid: {', '.join(KV_FORMATS)}", param="kv_format")
    return KV_FORMATS[key]


def use_more_bits(i: int, n: int) -> bool:
    """llama.cpp's "more bits" layers (LLM.md §1): i < n/8, or i >= 7n/8, or (i - n/8) % 3 == 2 (integer n/8)."""
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def gguf_tensor_type(arch: LlmArch, fmt: WeightFormat, t: Tensor) -> str:
    """The ggml type llama.cpp gives tensor ``t`` in ``fmt`` (LLM.md §1, ``llama_tensor_get_type_impl``)."""
    base = fmt.ggml_type or "f16"
    if t.vector or t.name == "ffn_gate_inp":
        return "f32"  # never quantized: 1-D tensors and the MoE router
    if t.name == "output" or (t.name == "token_embd" and arch.tied_embeddings):
        new = base if base == "q8_0" else "q6_k"
    elif t.name == "token_embd":
        new = base  # assumed (module docstring)
    else:
        new, i, n, mix = base, t.layer or 0, arch.layers, fmt.name
        if t.name in ("attn_v", "attn_qkv", "attn_kv_b"):
            if mix in ("q4_k_m", "q5_k_m") and use_more_bits(i, n):
                new = "q6_k"
            elif mix == "q3_k_m":
                new = "q5_k" if i < 2 else "q4_k"
            elif mix == "q2_k":
                new = "q4_k" if arch.gqa >= 4 else "q3_k"
            if arch.experts == 8 and t.name == "attn_v":
                new = "q8_0"  # "trades just ~128MB" (Mixtral)
        elif t.name == "attn_k" and arch.experts == 8:
            new = "q8_0"
        elif t.name.startswith("ffn_down"):
            if mix in ("q4_k_m", "q5_k_m") and use_more_bits(i, n):
                new = "q6_k"
            elif mix == "q3_k_m":
                new = "q5_k" if i < n // 16 else "q4_k"
            elif mix == "q2_k":
                new = "q3_k"
        elif t.name == "attn_output" and mix in ("q3_k_m", "q2_k"):
            new = "q4_k" if mix == "q3_k_m" else "q3_k"
    if t.row % GGML_TYPES[new][0]:
        new = _ROW_FALLBACK.get(new, "f16")
    return new


def _quantized(arch: LlmArch, fmt: WeightFormat, t: Tensor) -> bool:
    """Whether a non-GGUF format quantizes ``t`` (module docstring)."""
    if t.vector or t.name in ("token_embd", "output", "ffn_gate_inp"):
        return False
    return not (fmt.name == "mxfp4" and arch.is_moe and not t.name.endswith("_exps"))


def tensor_bytes(arch: LlmArch, fmt: WeightFormat, t: Tensor) -> int:
    """Bytes of tensor ``t`` in ``fmt``: GGUF Σ rows x ceil(row / block) x block bytes; others their elements at
    ``bits`` plus scales, or bf16 where the format leaves ``t`` alone."""
    matrices = t.rows * t.copies
    if fmt.kind == "gguf":
        block, size = GGML_TYPES[gguf_tensor_type(arch, fmt, t)]
        return matrices * math.ceil(t.row / block) * size
    if fmt.kind == "float":
        return math.ceil(t.elements * fmt.bits / 8)
    if not _quantized(arch, fmt, t):
        return 2 * t.elements
    groups = 0 if fmt.group == 0 else 1 if fmt.group is None else math.ceil(t.row / fmt.group)
    return math.ceil(t.elements * fmt.bits / 8 + matrices * groups * fmt.group_bytes) + fmt.tensor_bytes


def weight_bytes(arch: LlmArch, fmt: WeightFormat) -> int:
    """Bytes of all the weights (every expert) in ``fmt``, per tensor. Where the parameters are not computable
    (``arch.params_computed`` False), the published total at ``fmt.bits_per_weight``."""
    if not arch.params_computed:
        return math.ceil(arch.param_counts()[0] * fmt.bits_per_weight / 8)
    return sum(tensor_bytes(arch, fmt, t) for t in arch.tensors())
