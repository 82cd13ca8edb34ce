"""A fine-tuning job's activations, traced: what autograd keeps for the backward of the forward and the loss, with the
method applied to the model ``dlgpu bench --task finetune`` builds (``workloads.models.finetune``: peft's LoRA
adapters, full, freeze), counted on fake tensors (nothing allocated, nothing computed).

How (``trace_activations``): the workload's model is built under ``FakeTensorMode`` (``trace._no_init``: no weight
initialization) with fewer blocks (decoders: the catalog shape's layers, BERT: the ``layers`` its builder
``workloads.language._bert`` takes; both become the Hugging Face config's ``num_hidden_layers``), the job's method
applied as the bench applies it (method freeze: every block of the reduced model trained), without checkpointing, and
its forward and loss (the bench's ``FinetuneWorkload.loss``) run on one sequence at each length, in the weights'
dtype (fp32 under bf16 autocast, as the bench runs fp32 weights) under ``torch.autograd.graph.saved_tensors_hooks``.
The bytes saved are counted once per storage (views of one buffer once: ``untyped_storage()``, which fake tensors
keep per buffer), the parameters' storages left out (peft's frozen base weights and their transposed views included).
From blocks 1 and 2 at two token counts the bytes solve ``tokens x (blocks x per_block_per_token + rest_per_token) +
blocks x per_block + fixed``; a fifth trace (3 blocks, a third length) checks that the figures predict it
(``residual``). One sequence each: RoPE's cos and sin are per position, shared by the sequences of a micro-batch (in
``rest_per_token``).

What the CPU would do differently from a GPU is made as on the GPU: each ``scaled_dot_product_attention`` is one
autograd node that saves what PyTorch's CUDA flash attention saves for its backward (query, key, value, the output
laid out as the kernel writes it, the fp32 log-sum-exp per query row; dropout keeps only its RNG state there, so none
here), whatever the CPU would dispatch, in the autocast dtype under autocast as CUDA autocast casts SDPA; dropout is
``native_dropout`` (a 1-byte mask; the CPU's own path keeps a mask in the input's dtype); and transformers' mask
checks read the batch's values (no padding, one sequence a row) rather than giving up on fake tensors, so SDPA gets
no mask and grouped-query keys and values stay unexpanded (``_masks_as_on_a_device``).

Not traced (the reason is returned, and ``finetune.memory``'s formula stays): QLoRA (bitsandbytes' 4-bit kernels do
not run on fake tensors), mixture-of-experts models (which experts a token reaches depends on the values), a model no
registered workload builds, and a trace that fails (its error). Gradient checkpointing is traced without: the
checkpointed total is composed from the traced block (``finetune.memory.activation_bytes``).

Imports no torch until a trace runs: ``analyze.profiles.finetune_activations`` (the cache) checks what cannot be
traced and reads cached figures without it."""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import replace
from importlib import metadata
from typing import TYPE_CHECKING, Any

from dlgpu.errors import BadInput
from dlgpu.finetune.config import FinetuneConfig, check
from dlgpu.finetune.memory import TracedActivations, trace_key
from dlgpu.workloads.registry import WorkloadSpec, get_workload

if TYPE_CHECKING:
    import torch

BLOCKS = (1, 2)
"""Blocks of the reduced models the figures are solved from."""
CHECK_BLOCKS = 3
"""The point the fit is checked at: 3 blocks, one sequence of a length between the two fitted ones."""
SEQ_LENS = (32, 64)
"""Tokens per sequence of the fitted traces (one sequence each), halved where the model has fewer positions."""
MAX_RESIDUAL = 0.01
"""A fit that misses its check point by more than this share is not used (the bytes are not linear)."""
NEEDS_TORCH = "the trace needs torch, transformers and peft"
"""How the reason starts where they cannot be imported here (not cached: installing them makes the job traceable)."""


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "none"


def versions() -> str:
    """The libraries a trace depends on, read without importing them."""
    return ", ".join(f"{p} {_version(p)}" for p in ("peft", "transformers", "torch"))


def job_config(job: FinetuneConfig | Mapping[str, Any]) -> FinetuneConfig:
    """The job as a ``FinetuneConfig``: as given, or from the plain dict ``FinetuneWorkload`` takes."""
    if isinstance(job, FinetuneConfig):
        return job
    fields = set(FinetuneConfig.__dataclass_fields__)
    kw = {k: v for k, v in job.items() if k in fields}
    if "lora_targets" in kw:
        kw["lora_targets"] = tuple(kw["lora_targets"])
    return check(replace(FinetuneConfig(), **kw))


def finetune_spec(name: str) -> WorkloadSpec | None:
    """The registered workload that fine-tunes ``name`` (a workload, a catalog id, an alias such as ``llama3_8b``, a
    Hugging Face repo name); None where no workload builds it."""
    from dlgpu.llm.workload import WORKLOAD_ALIASES, resolve_model
    from dlgpu.workloads.finetune import finetune_kind

    candidates = [name, WORKLOAD_ALIASES.get(name, name), name.strip().lower()]
    with contextlib.suppress(BadInput):
        candidates.append(resolve_model(name).id)
    for c in dict.fromkeys(candidates):
        try:
            spec = get_workload(c)
        except (BadInput, KeyError):
            continue
        if finetune_kind(spec) is not None:
            return spec
    return None


def untraced_reason(name: str, cfg: FinetuneConfig) -> tuple[WorkloadSpec | None, str | None]:
    """(the workload to trace, None) or (None, why this job's activations cannot be traced). No torch."""
    if cfg.method == "qlora":
        return None, ("QLoRA: bitsandbytes' 4-bit NF4 kernels do not run on fake tensors, so the formula sizes its "
                      "activations")
    from dlgpu.llm.workload import resolve_model

    with contextlib.suppress(BadInput):
        arch = resolve_model(name)
        if arch.is_moe:
            return None, (f"{arch.id} is a mixture of experts: which experts a token reaches depends on the values, "
                          "which fake tensors do not have")
    spec = finetune_spec(name)
    if spec is None:
        return None, f"no registered workload builds {name} (`dlgpu workloads --all` lists those that fine-tune)"
    return spec, None


def trace_activations(name: str, job: FinetuneConfig | Mapping[str, Any],
                      seq_lens: tuple[int, int] = SEQ_LENS) -> TracedActivations | str:
    """``name``'s activations under ``job``, traced (module docstring); or the reason they are not. Not cached
    (``analyze.profiles.finetune_activations`` caches)."""
    cfg = job_config(job)
    spec, why = untraced_reason(name, cfg)
    if spec is None:
        return why or "not traced"
    try:
        return _trace(spec, cfg, seq_lens)
    except ImportError as exc:
        return f"{NEEDS_TORCH} ({exc}); nothing cached"
    except Exception as exc:  # the model or a library refuses these settings on fake tensors: the formula stays
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        return f"the trace failed ({type(exc).__name__}: {first})"


# --------------------------------------------------------------------------------------------------------
# The torch side
# --------------------------------------------------------------------------------------------------------


def _trace(spec: WorkloadSpec, cfg: FinetuneConfig, seq_lens: tuple[int, int]) -> TracedActivations | str:
    import torch
    import transformers.masking_utils  # noqa: F401  (imported before the clock starts, as peft is)
    from torch._subclasses.fake_tensor import FakeTensorMode

    from dlgpu.workloads.finetune import max_seq_len
    from dlgpu.workloads.models import finetune as models

    from .trace import OpRecorder, _no_init

    if cfg.trains_adapters:
        models._import_peft()
    start = time.perf_counter()  # the trace's own time: the libraries above take seconds to import, once
    bound = max_seq_len(spec)
    s1, s2 = seq_lens
    while bound is not None and s2 > bound:
        s1, s2 = s1 // 2, s2 // 2
    if s1 < 2 or s1 >= s2:
        return f"{spec.name}: too few positions ({bound}) to trace two sequence lengths"
    s3 = (s1 + s2) // 2
    params = spec.resolve({})
    runs = {BLOCKS[0]: [(1, s1), (1, s2)], BLOCKS[1]: [(1, s1), (1, s2)], CHECK_BLOCKS: [(1, s3)]}
    points: list[tuple[int, int, int, int]] = []
    for blocks, sizes in runs.items():
        mode, rec = FakeTensorMode(allow_non_fake_inputs=True), OpRecorder()
        with mode, rec, _no_init(), _converted_in_place(), _copies_keep_the_fake_mode(), warnings.catch_warnings():
            # peft deep-copies a trained task head (BERT's), which asks a fake tensor for its data pointer
            warnings.filterwarnings("ignore", message=".*data pointer of FakeTensor.*")
            torch.manual_seed(0)
            wl = _reduced(spec, params, cfg, blocks, max(s for _, s in sizes))
        for micro_batch, seq in sizes:
            with mode, rec:
                points.append((blocks, micro_batch, seq, _saved_bytes(wl, micro_batch, seq, cfg.weights_dtype)))
        del wl
    return _solve(spec.name, cfg, points, time.perf_counter() - start)


def _solve(workload: str, cfg: FinetuneConfig, points: list[tuple[int, int, int, int]],
           seconds: float) -> TracedActivations | str:
    """The figures from the four fitted traces, checked against the fifth (module docstring)."""
    by = {(blocks, mb * seq): n for blocks, mb, seq, n in points}
    (l1, l2), ts = BLOCKS, sorted({mb * seq for blocks, mb, seq, _ in points if blocks == BLOCKS[0]})
    t1, t2 = ts
    slope1 = (by[(l1, t2)] - by[(l1, t1)]) / (t2 - t1)  # per token with l1 blocks
    slope2 = (by[(l2, t2)] - by[(l2, t1)]) / (t2 - t1)
    per_block_per_token = (slope2 - slope1) / (l2 - l1)
    rest_per_token = slope1 - l1 * per_block_per_token
    per_block = (by[(l2, t1)] - by[(l1, t1)]) / (l2 - l1) - per_block_per_token * t1
    fixed = by[(l1, t1)] - t1 * (l1 * per_block_per_token + rest_per_token) - l1 * per_block
    blocks, mb, seq, got = points[-1]
    t = mb * seq
    want = t * (blocks * per_block_per_token + rest_per_token) + blocks * per_block + fixed
    residual = abs(want - got) / got if got else 0.0
    if residual > MAX_RESIDUAL:
        return (f"the traced bytes are not linear in blocks and tokens: {blocks} blocks x {t} tokens saved {got:,} B, "
                f"the fit says {want:,.0f} B ({100 * residual:.1f}% off)")
    return TracedActivations(workload, trace_key(cfg), per_block_per_token, rest_per_token, per_block, fixed,
                             residual, tuple(points), versions(), seconds)


def _reduced(spec: WorkloadSpec, params: Mapping[str, Any], cfg: FinetuneConfig, blocks: int, seq_len: int,
             trained: int | None = None, checkpointing: bool = False) -> Any:
    """The bench's ``FinetuneWorkload`` of ``spec`` with ``blocks`` blocks, under method freeze the top ``trained`` of
    them trained (default every one: the real job's lowest trained block also takes an input that needs no gradient),
    with gradient checkpointing where ``checkpointing`` (the bench's own: transformers', non-reentrant)."""
    from torch import nn

    from dlgpu.workloads.models.finetune import FinetuneWorkload, layer_stack

    class Reduced(FinetuneWorkload):
        def _base_model(self, dtype: torch.dtype) -> nn.Module:
            model = super()._base_model(dtype)
            _, stack = layer_stack(model)
            if len(stack) > blocks:  # encoders: the workload builds every layer; keep the first ``blocks``
                del stack[blocks:]
                config: Any = model.config
                config.num_hidden_layers = blocks
            return model

    shape = spec.extra.get("shape")
    if shape is not None:  # decoders: the catalog shape's layers become the config's num_hidden_layers
        spec = replace(spec, extra={**spec.extra, "shape": replace(shape, layers=blocks)})
    # the optimizer keeps no state before its first step: it changes nothing here
    job = {**cfg.to_dict(), "seq_len": seq_len, "freeze_layers": blocks if trained is None else trained,
           "checkpointing": checkpointing, "grad_accum": 1, "optimizer": "adamw"}
    with _encoder_layers(spec, blocks):
        wl = Reduced(spec, params, job)
    _, stack = layer_stack(wl.model)
    if len(stack) != blocks:
        raise ValueError(f"{spec.name}: built {len(stack)} blocks, not {blocks}")
    return wl


@contextlib.contextmanager
def _encoder_layers(spec: WorkloadSpec, blocks: int) -> Iterator[None]:
    """The BERT workloads build their config in ``workloads.language._bert(p, layers=...)``, which becomes
    ``BertConfig(num_hidden_layers=...)``: within this block it builds ``blocks`` layers. Other workloads as they
    are (``Reduced`` cuts a longer stack)."""
    import sys

    module = sys.modules.get(getattr(spec.factory, "__module__", ""))
    builder = getattr(module, "_bert", None) if spec.extra.get("shape") is None else None
    if builder is None:
        yield
        return

    def reduced(p: Mapping[str, Any], **kw: Any) -> Any:
        return builder(p, **{**kw, "layers": blocks})

    setattr(module, "_bert", reduced)  # noqa: B010  (a module found at run time)
    try:
        yield
    finally:
        setattr(module, "_bert", builder)  # noqa: B010


def _saved_bytes(wl: Any, micro_batch: int, seq_len: int, weights_dtype: str) -> int:
    """Bytes autograd saves for the backward of ``wl``'s forward and loss, once per storage, parameters left out."""
    import torch

    model = wl.model
    params = {p.untyped_storage()._cdata for p in model.parameters()}
    kept: dict[int, Any] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        key = storage._cdata
        if key not in params and key not in kept:
            kept[key] = storage  # held: a freed storage's address could be reused by another
        return t

    wl.seq_len = seq_len
    if getattr(wl, "_encoder", None) is not None:
        wl._encoder.seq_len = seq_len
    batch = wl.make_batch(micro_batch, torch.device("cpu"))
    model.train(True)
    autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if weights_dtype == "fp32" else
                contextlib.nullcontext())
    with _fused_attention(), _masks_as_on_a_device(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), \
            autocast:
        loss = wl.loss(batch)
    total = sum(int(s.nbytes()) for s in kept.values())
    del loss
    return total


@contextlib.contextmanager
def _converted_in_place() -> Iterator[None]:
    """``nn.Module.to(dtype)`` (peft moving its adapters to the base layer's dtype and back to fp32, the encoders'
    ``model.to(dtype)``) swaps each fake parameter for its converted copy with ``torch.utils.swap_tensors``, which
    refuses a tensor that FakeTensorMode holds a weak reference to (every fake tensor, in torch 2.14): the parameter
    takes the converted data instead (``param.data = ...``), the same parameter in the new dtype."""
    import torch
    import torch.utils

    original = torch.utils.swap_tensors

    def swap(t1: torch.Tensor, t2: torch.Tensor) -> None:
        with torch.no_grad():
            t1.data = t2.data

    torch.utils.swap_tensors = swap
    try:
        yield
    finally:
        torch.utils.swap_tensors = original


@contextlib.contextmanager
def _copies_keep_the_fake_mode() -> Iterator[None]:
    """``copy.deepcopy`` of a fake tensor (peft copies a trained task head, BERT's span classifier, into its
    ``modules_to_save``) copies the tensor's ``__dict__``, its ``fake_mode`` with it: a second ``FakeTensorMode``
    sharing the first one's native state, whose release corrupts the heap (a later trace in the process crashes in
    malloc, torch 2.14). Within this block a mode deep-copies to itself: the copied tensor belongs to the same mode,
    as one cloned in it does."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    had = "__deepcopy__" in FakeTensorMode.__dict__
    original = FakeTensorMode.__dict__.get("__deepcopy__")

    def same(self: Any, memo: dict[int, Any]) -> Any:
        return self

    FakeTensorMode.__deepcopy__ = same  # type: ignore[attr-defined]
    try:
        yield
    finally:
        if had:
            FakeTensorMode.__deepcopy__ = original  # type: ignore[attr-defined]
        else:
            del FakeTensorMode.__deepcopy__  # type: ignore[attr-defined]


@contextlib.contextmanager
def _masks_as_on_a_device() -> Iterator[None]:
    """transformers takes a fake tensor for a graph being traced (``is_tracing``) and then never leaves the attention
    mask out, so SDPA would get a materialized causal mask, and grouped-query attention keys and values expanded to
    every head (``repeat_kv``, done only with a mask). On a device, with dlgpu's batches (no padding, one sequence a
    row), it checks the values and passes no mask (``is_causal``, ``enable_gqa``). Here the checks read the values
    too, answered by ``trace.OpRecorder`` as a full batch answers them (no padding token, no packed sequence)."""
    import transformers.masking_utils as masking

    original = masking.is_tracing

    def is_tracing(tensor: Any = None) -> bool:
        return bool(original(None))  # compiling, jit tracing, stream capture: not a fake tensor

    masking.is_tracing = is_tracing
    try:
        yield
    finally:
        masking.is_tracing = original


@contextlib.contextmanager
def _fused_attention() -> Iterator[None]:
    """``scaled_dot_product_attention`` as one node saving what CUDA's flash attention saves, and dropout as CUDA
    runs it (``native_dropout``: a 1-byte mask saved; the CPU's own path multiplies by a mask in the input's dtype)
    (module docstring)."""
    import torch
    import torch.nn.functional as F

    original = F.scaled_dot_product_attention

    class Fused(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
                    kwargs: dict[str, Any]) -> torch.Tensor:
            out = original(q, k, v, attn_mask=mask, **kwargs)
            if out.dim() == 4:  # the flash kernel writes (batch, seq, heads, dim) and returns it transposed
                out = out.transpose(1, 2).contiguous().transpose(1, 2)
            lse = torch.empty(q.shape[:-1], dtype=torch.float32, device=q.device)  # fp32 log-sum-exp per row
            ctx.save_for_backward(q, k, v, out, lse, *([mask] if mask is not None else []))
            return out

        @staticmethod
        def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
            q, k, v = ctx.saved_tensors[:3]
            return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v), None, None

    def fused(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attn_mask: torch.Tensor | None = None,
              dropout_p: float = 0.0, is_causal: bool = False, scale: float | None = None,
              **kw: Any) -> torch.Tensor:
        if torch.is_autocast_enabled("cpu") and query.is_floating_point():
            dtype = torch.get_autocast_dtype("cpu")  # as CUDA autocast casts SDPA to its lower precision
            query, key, value = (t.to(dtype) for t in (query, key, value))
            if attn_mask is not None and attn_mask.is_floating_point():
                attn_mask = attn_mask.to(dtype)
        with torch.autocast("cpu", enabled=False):
            out: torch.Tensor = Fused.apply(query, key, value, attn_mask,
                                            {"dropout_p": 0.0, "is_causal": is_causal, "scale": scale, **kw})
        return out

    F.scaled_dot_product_attention = fused  # type: ignore[assignment]
    try:
        with _cuda_dropout():
            yield
    finally:
        F.scaled_dot_product_attention = original


@contextlib.contextmanager
def _cuda_dropout() -> Iterator[None]:
    """Dropout as CUDA runs it: ``native_dropout``, one kernel writing the output and a 1-byte mask (the CPU's own path
    draws a mask in the input's dtype and multiplies by it)."""
    import torch
    import torch.nn.functional as F

    original = F.dropout

    def dropout(input: torch.Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> torch.Tensor:
        if not training or p == 0.0:
            return input
        out: torch.Tensor = torch.ops.aten.native_dropout(input, p, True)[0]
        return out

    F.dropout = dropout
    try:
        yield
    finally:
        F.dropout = original
