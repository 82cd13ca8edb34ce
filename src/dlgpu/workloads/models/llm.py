"""The torch side of the LLM workloads (``dlgpu.workloads.llm`` declares them): a transformers model built from a
catalog shape with random weights stored in a given dtype, the weight formats (torchao weight-only int8 and int4 on
the linear layers), and the prefill and decode steps.

Weight formats (torchao >= 0.18; ``/work/shared/notes/LLM.md`` section 2):

- ``int8``: ``Int8WeightOnlyConfig(granularity=PerRow())``, int8 weights with a scale per output row; the matmul
  casts the weight to the activations' dtype (bf16) and scales, on any device;
- ``int4``: groups of ``INT4_GROUP`` along the input. On x86 CPUs the API moved between torchao releases, so it is
  looked up newest first (``PrototypeInt4WeightOnlyConfig``, ``Int4WeightOnlyOpaqueTensorConfig``,
  ``Int4WeightOnlyConfig(int4_packing_format="opaque")``, ``Int4WeightOnlyConfig(layout=Int4CPULayout())``); on
  CUDA it is tinygemm (``int4_packing_format="tile_packed_to_4d"``). A linear layer whose input size is not a
  multiple of the group stays bf16 (never the case in the catalog's models; the tiny test model has such layers).

``quantize_`` replaces every ``nn.Linear`` weight, the LM head included: a tied LM head gets its own quantized copy
while the embedding table (a lookup, a row per token) stays bf16."""

from __future__ import annotations

import contextlib
import gc
import importlib
import inspect
import math
from typing import Any

import torch
from torch import nn
from transformers import DynamicCache

from ..base import StepContext, WorkloadInstance
from ..llm import LlmShape
from .language import DecodeBatch

INT4_GROUP = 128
INIT_STD = 0.02  # transformers' initializer_range default, the std of every weight matrix here
STORAGE_DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16,
                  "int8": torch.bfloat16, "int4": torch.bfloat16}
"""The dtype each precision builds the model in; int8/int4 quantize the linear layers of the bf16 model."""
QUANTIZED = ("int8", "int4")


class FormatUnavailable(RuntimeError):
    """No torchao path for this weight format on this device with the installed torchao: the reason."""


# --------------------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------------------


def _config(shape: LlmShape, attention: str) -> tuple[Any, type[nn.Module]]:
    import transformers

    names = {"llama": "Llama", "qwen2": "Qwen2", "qwen3": "Qwen3", "mistral": "Mistral"}
    if shape.architecture not in names:
        raise ValueError(f"{shape.id}: architecture {shape.architecture!r} is not built here "
                         f"(built: {', '.join(names)})")
    prefix = names[shape.architecture]
    kwargs: dict[str, Any] = {
        "vocab_size": shape.vocab, "hidden_size": shape.hidden, "intermediate_size": shape.intermediate,
        "num_hidden_layers": shape.layers, "num_attention_heads": shape.heads, "num_key_value_heads": shape.kv_heads,
        "head_dim": shape.head_dim, "max_position_embeddings": shape.max_context,
        "tie_word_embeddings": shape.tied, "use_cache": True, "attn_implementation": attention,
    }
    if shape.architecture == "mistral":
        kwargs["sliding_window"] = shape.sliding_window
    config = getattr(transformers, f"{prefix}Config")(**kwargs)
    model_class: type[nn.Module] = getattr(transformers, f"{prefix}ForCausalLM")
    return config, model_class


def _no_init() -> contextlib.AbstractContextManager[Any]:
    """transformers' ``no_init_weights``: no torch or transformers initialization while building (the weights are
    filled once afterwards, ``_random_init``, instead of twice)."""
    factory = _find(("transformers.initialization", "no_init_weights"),
                    ("transformers.modeling_utils", "no_init_weights"))  # transformers 5, 4.x
    if factory is None:
        return contextlib.nullcontext()
    cm: contextlib.AbstractContextManager[Any] = factory()
    return cm


def _find(*where: tuple[str, str]) -> Any:
    """The first ``module.attribute`` of ``where`` that exists (feature detection across releases), or None."""
    for module, name in where:
        try:
            found = getattr(importlib.import_module(module), name, None)
        except ImportError:
            continue
        if found is not None:
            return found
    return None


def _random_init(model: nn.Module) -> None:
    """Every matrix uniform with std ``INIT_STD`` (uniform is the cheapest random fill), biases 0, norm scales 1."""
    bound = INIT_STD * math.sqrt(3.0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                p.uniform_(-bound, bound)
            elif name.endswith("bias"):
                p.zero_()
            else:
                p.fill_(1.0)


def cache_keyword(model: nn.Module) -> str:
    """The forward argument that takes the KV cache: ``cache`` in recent transformers 5 releases (which deprecate
    ``past_key_values``), ``past_key_values`` before."""
    return "cache" if "cache" in inspect.signature(type(model).forward).parameters else "past_key_values"


def build_model(shape: LlmShape, attention: str, dtype: torch.dtype) -> nn.Module:
    """The model of ``shape`` with random weights created in ``dtype`` (on the caller's ``torch.device``)."""
    config, model_class = _config(shape, attention)
    saved = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with _no_init():
            model = model_class(config)
    finally:
        torch.set_default_dtype(saved)
    if shape.tied:
        model.tie_weights()  # type: ignore[operator]
    _random_init(model)
    model.train(False)
    return model


# --------------------------------------------------------------------------------------------------------
# Weight formats
# --------------------------------------------------------------------------------------------------------


def _quiet(config_class: Any, **kwargs: Any) -> Any:
    """``config_class(**kwargs)`` without torchao's global inductor settings where the config lets us (nothing here
    compiles)."""
    try:
        return config_class(**kwargs, set_inductor_config=False)
    except TypeError:
        return config_class(**kwargs)


def _int4_cpu() -> tuple[Any, str]:
    """The int4 weight-only config for x86 CPUs in the installed torchao, newest API first (LLM.md section 2)."""
    prototype = _find(("torchao.prototype.quantization.int4.inference_workflow", "PrototypeInt4WeightOnlyConfig"),
                      ("torchao.prototype.quantization.int4", "PrototypeInt4WeightOnlyConfig"))
    if prototype is not None:  # 2026: torchao/prototype/quantization/int4/inference_workflow.py
        return (_quiet(prototype, group_size=INT4_GROUP),
                f"torchao PrototypeInt4WeightOnlyConfig(group_size={INT4_GROUP}) (CPU opaque int4 tensor, "
                "aten._weight_int4pack_mm_for_cpu)")
    opaque_config = _find(("torchao.prototype.quantization", "Int4WeightOnlyOpaqueTensorConfig"),
                          ("torchao.quantization", "Int4WeightOnlyOpaqueTensorConfig"))
    if opaque_config is not None:  # Nov 2025
        return (_quiet(opaque_config, group_size=INT4_GROUP),
                f"torchao Int4WeightOnlyOpaqueTensorConfig(group_size={INT4_GROUP})")
    int4_config = _find(("torchao.quantization", "Int4WeightOnlyConfig"))
    packing = _find(("torchao.quantization.quantize_.workflows.int4.int4_packing_format", "Int4PackingFormat"))
    if int4_config is not None and packing is not None and "opaque" in {f.value for f in packing}:  # Aug 2025
        return (int4_config(group_size=INT4_GROUP, int4_packing_format="opaque"),
                f"torchao Int4WeightOnlyConfig(group_size={INT4_GROUP}, int4_packing_format='opaque')")
    cpu_layout = _find(("torchao.dtypes", "Int4CPULayout"))
    if int4_config is not None and cpu_layout is not None:  # before Aug 2025
        return (int4_config(group_size=INT4_GROUP, layout=cpu_layout()),
                f"torchao Int4WeightOnlyConfig(group_size={INT4_GROUP}, layout=Int4CPULayout())")
    import torchao

    raise FormatUnavailable(
        f"torchao {torchao.__version__} has no int4 weight-only path for CPUs (looked for "
        "PrototypeInt4WeightOnlyConfig, Int4WeightOnlyOpaqueTensorConfig, int4_packing_format='opaque' and "
        "Int4CPULayout)")


def weight_only_config(precision: str, device_kind: str) -> tuple[Any, str]:
    """(torchao config, what it is) for ``int8``/``int4`` on a device of ``device_kind`` (cpu | cuda | rocm | mps |
    xpu); ``FormatUnavailable`` with the reason where the installed torchao has no path for it."""
    try:
        from torchao.quantization import Int8WeightOnlyConfig, PerRow
    except ImportError as exc:
        raise FormatUnavailable(f"{precision} needs torchao (pip install 'torchao>=0.18'): {exc}") from None
    if precision == "int8":
        return (Int8WeightOnlyConfig(granularity=PerRow(), set_inductor_config=False),
                "torchao Int8WeightOnlyConfig(granularity=PerRow()): int8 weights with a scale per output row, "
                "cast to bf16 in the matmul")
    if precision != "int4":
        raise ValueError(f"{precision} is not a weight-only format (valid: {', '.join(QUANTIZED)})")
    if device_kind == "cpu":
        return _int4_cpu()
    if device_kind == "cuda":
        from torchao.quantization import Int4WeightOnlyConfig

        return (Int4WeightOnlyConfig(group_size=INT4_GROUP, int4_packing_format="tile_packed_to_4d",
                                     set_inductor_config=False),
                f"torchao Int4WeightOnlyConfig(group_size={INT4_GROUP}, int4_packing_format='tile_packed_to_4d') "
                "(tinygemm)")
    raise FormatUnavailable(f"torchao has no int4 weight-only kernel for {device_kind} devices (CPU: an opaque "
                            "int4 tensor; NVIDIA CUDA: tinygemm)")


def int4_unavailable(device_kind: str) -> str | None:
    """Why int4 weights cannot run on a ``device_kind`` device with the installed torchao; None when they can."""
    try:
        weight_only_config("int4", device_kind)
    except FormatUnavailable as exc:
        return str(exc)
    except Exception as exc:  # an API that exists but refuses its arguments in this release
        return f"int4: torchao's int4 weight-only config failed here ({type(exc).__name__}: {exc})"
    return None


def stored_bytes(t: torch.Tensor) -> int:
    """Bytes ``t`` really stores: a tensor subclass (torchao's quantized weights) is the sum of its inner tensors
    (the int8/packed int4 data, scales, zero points), whatever dtype it reports to the model."""
    flatten = getattr(t, "__tensor_flatten__", None)
    if callable(flatten):
        names, _ = flatten()
        inner = [getattr(t, n) for n in names]
        return sum(stored_bytes(x) for x in inner if isinstance(x, torch.Tensor))
    return t.numel() * t.element_size()


def weight_bytes(model: nn.Module) -> int:
    """Bytes of ``model``'s parameters as stored (a tied weight once)."""
    return sum(stored_bytes(p) for p in model.parameters())


def _linears(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]


def apply_weight_format(model: nn.Module, precision: str, device_kind: str) -> dict[str, Any]:
    """Quantize ``model``'s linear layers in place for ``int8``/``int4`` (the model is bf16); other precisions were
    built in their dtype. Returns what the weights now are (for the result's settings)."""
    linears = _linears(model)
    info: dict[str, Any] = {"format": precision, "dtype": str(STORAGE_DTYPES[precision]).removeprefix("torch."),
                            "linear_layers": len(linears), "quantized_linear_layers": 0}
    if precision in QUANTIZED:
        from torchao.quantization import quantize_

        config, method = weight_only_config(precision, device_kind)

        def eligible(module: nn.Module, _fqn: str) -> bool:
            return isinstance(module, nn.Linear) and (precision == "int8" or module.in_features % INT4_GROUP == 0)

        quantized = sum(1 for _n, m in linears if eligible(m, _n))
        quantize_(model, config, filter_fn=eligible)
        info.update(method=method, quantized_linear_layers=quantized, activations="bfloat16")
        if quantized < len(linears):
            info["note"] = (f"{len(linears) - quantized} of {len(linears)} linear layers stay bf16: their input size "
                            f"is not a multiple of the int4 group ({INT4_GROUP})")
    info["weights_bytes"] = weight_bytes(model)
    info["buffers_bytes"] = sum(stored_bytes(b) for b in model.buffers())
    return info


# --------------------------------------------------------------------------------------------------------
# The workload
# --------------------------------------------------------------------------------------------------------


class LlmWorkload(WorkloadInstance):
    """An LLM served here: prefill (``infer``) and decode, with the weights in one format at a time.

    Built in bf16; ``set_weight_format`` rebuilds the model (same seed, so the same random weights) in another
    format, dropping the previous one first so that only one copy is resident. No optimizer: it does not train."""

    def __init__(self, shape: LlmShape, attention: str = "sdpa", context_len: int = 1, prompt_len: int = 1) -> None:
        self.shape = shape
        self.attention = attention
        self.context_len = context_len
        self.prompt_len = prompt_len
        self.vocab_size = shape.vocab
        self.optimizers = {}
        self.optimizer_kind = "none"
        model = build_model(shape, attention, STORAGE_DTYPES["bf16"])
        self.modules = {"model": model}
        self.cache_kw = cache_keyword(model)
        self.weight_format = "bf16"
        self.format_info = apply_weight_format(model, "bf16", "cpu")

    @property
    def model(self) -> nn.Module:
        return self.modules["model"]

    def set_weight_format(self, precision: str, device: torch.device, seed: int = 0) -> dict[str, Any]:
        """Rebuild the model with its weights in ``precision``'s format on ``device`` (no-op when they already are);
        returns what the weights are (``apply_weight_format``)."""
        if precision not in STORAGE_DTYPES:
            raise ValueError(f"{precision}: not a weight format (valid: {', '.join(STORAGE_DTYPES)})")
        if precision == self.weight_format:
            return self.format_info
        if precision in QUANTIZED:
            weight_only_config(precision, device.type)  # FormatUnavailable before the model is dropped
        self.modules.clear()
        gc.collect()
        torch.manual_seed(seed)
        with torch.device(device):
            model = build_model(self.shape, self.attention, STORAGE_DTYPES[precision])
        self.format_info = apply_weight_format(model, precision, device.type)
        self.modules["model"] = model
        self.weight_format = precision
        return self.format_info

    # --- prefill (task infer) ---

    def make_batch(self, batch_size: int, device: torch.device, channels_last: bool = False) -> torch.Tensor:
        """``batch_size`` tokens as prompts of ``prompt_len`` tokens: a prefill batch counts tokens."""
        if batch_size < self.prompt_len or batch_size % self.prompt_len:
            raise ValueError(f"a prefill batch counts tokens: {batch_size} is not a multiple of prompt_len "
                             f"{self.prompt_len} (give --batch-size as prompts x prompt_len)")
        return torch.randint(0, self.vocab_size, (batch_size // self.prompt_len, self.prompt_len), device=device)

    def infer_step(self, batch: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        """The prefill: one forward pass over the prompts filling a fresh KV cache; the next token's logits."""
        with ctx.autocast():
            logits: torch.Tensor = self.model(input_ids=batch, use_cache=True, logits_to_keep=1,
                                              **{self.cache_kw: DynamicCache()}).logits
        return logits

    def train_step(self, batch: Any, ctx: StepContext) -> None:
        raise NotImplementedError(f"{self.shape.id} is an inference workload (tasks infer and decode)")

    # --- decode ---

    def make_decode_batch(self, batch_size: int, device: torch.device, ctx: StepContext) -> DecodeBatch:
        """Prefill ``context_len`` random tokens per sequence into a fresh cache (in the model's dtype) and draw the
        token the step will feed."""
        ids = torch.randint(0, self.vocab_size, (batch_size, self.context_len + 1), device=device)
        cache = DynamicCache()
        with torch.no_grad(), ctx.autocast():
            self.model(input_ids=ids[:, :-1], use_cache=True, logits_to_keep=1, **{self.cache_kw: cache})
        return DecodeBatch(ids[:, -1:], cache, self.context_len)

    def decode_step(self, batch: DecodeBatch, ctx: StepContext) -> torch.Tensor:
        """Logits (batch, 1, vocab) of the next token; the cache is cropped back to ``context_len`` afterwards so
        that every step attends to the same context (as ``CausalLMWorkload.decode_step``)."""
        with ctx.autocast():
            logits: torch.Tensor = self.model(input_ids=batch.input_ids, use_cache=True,
                                              **{self.cache_kw: batch.cache}).logits
        grown = batch.cache.get_seq_length() - batch.context_len
        if grown > 0:
            batch.cache.crop(-grown)
        return logits

    def kv_cache_bytes(self, batch_size: int, element_bytes: int) -> int:
        """Bytes of the KV cache at ``context_len``: 2 x layers x context_len x KV heads x head dim x bytes x batch."""
        s = self.shape
        return 2 * s.layers * self.context_len * s.kv_heads * s.head_dim * element_bytes * batch_size
