"""Trace a step as eager PyTorch runs it on a CUDA GPU, not as it runs on the CPU the trace runs on.

The fake-tensor trace executes CPU kernels' dispatch decisions. Two of them differ from what the same
model does on a GPU, and both matter to a prediction:

- **Attention.** ``scaled_dot_product_attention`` on the CPU falls back to the unfused math path whenever
  training uses attention dropout, and CPU autocast leaves it in fp32: a matmul, a softmax, a dropout
  and a second matmul, each writing a (batch, heads, seq, seq) tensor in fp32. On a GPU it is one fused
  kernel (flash or memory-efficient attention) in the autocast dtype, which reads q, k, v and writes the
  output (and a log-sum-exp for backward), and saves only those for backward. Under ``gpu_semantics``
  each call is recorded as one ``attention`` operator with PyTorch's own SDPA FLOP formulas.
- **Optimizers.** On CUDA, ``torch.optim`` defaults to the multi-tensor (``foreach``) implementation: a
  handful of ``_foreach_*`` ops per step, each launching kernels over chunks of all parameters. On the
  CPU it loops over parameters (thousands of small kernels for a large model). Under ``gpu_semantics``
  optimizers run with ``foreach=True``; ``foreach_launches`` estimates how many kernels each call
  launches (see there).

Convolutions, matmuls, norms and elementwise ops dispatch the same way on both, so they are traced as
they are."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
import torch.utils.flop_counter as fc

# PyTorch's multi_tensor_apply (ATen/native/cuda/MultiTensorApply.cuh): a launch takes at most this many
# tensors (for two-list ops; fewer for deeper ops) and this many blocks of this many elements each.
FOREACH_MAX_TENSORS = 64
FOREACH_MAX_BLOCKS = 320
FOREACH_CHUNK_ELEMENTS = 65536


def foreach_launches(tensors: int, elements: int) -> int:
    """Kernels one ``_foreach_*`` call launches on CUDA for ``tensors`` tensors holding ``elements`` in all:
    a launch ends when its tensor list or its block list is full, so whichever fills first counts."""
    by_tensors = math.ceil(tensors / FOREACH_MAX_TENSORS)
    by_blocks = math.ceil(math.ceil(elements / FOREACH_CHUNK_ELEMENTS) / FOREACH_MAX_BLOCKS)
    return max(1, by_tensors, by_blocks)


def _nbytes(*ts: torch.Tensor | None) -> float:
    return float(sum(t.numel() * t.element_size() for t in ts if t is not None))


def _gqa_shapes(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[Any, Any, Any]:
    """Shapes for the FLOP formulas: grouped-query k/v count as repeated to q's heads (the work done)."""
    if k.dim() == 4 and k.shape[1] != q.shape[1]:
        return q.shape, (*k.shape[:1], q.shape[1], *k.shape[2:]), (*v.shape[:1], q.shape[1], *v.shape[2:])
    return q.shape, k.shape, v.shape


class _FusedAttention(torch.autograd.Function):
    """One fused attention kernel forward and one backward, recorded on the recorder as such."""

    @staticmethod
    def forward(ctx: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
                recorder: Any, original: Any, kwargs: dict[str, Any]) -> torch.Tensor:
        was = recorder.recording
        recorder.recording = False
        try:
            out: torch.Tensor = original(q, k, v, attn_mask=mask, **{**kwargs, "dropout_p": 0.0})
        finally:
            recorder.recording = was
        qs, ks, vs = _gqa_shapes(q, k, v)
        lse = q.shape[0] * q.shape[1] * q.shape[2] * 4 if q.dim() == 4 else 0  # fp32 log-sum-exp per row
        recorder.record("scaled_dot_product_attention", "attention", str(q.dtype).replace("torch.", ""),
                        float(fc.sdpa_flop_count(qs, ks, vs)), _nbytes(q, k, v, mask), _nbytes(out) + lse,
                        _attention_gemm(qs, ks))
        ctx.recorder = recorder
        ctx.has_mask = mask is not None
        ctx.save_for_backward(q, k, v, out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        q, k, v, out = ctx.saved_tensors
        qs, ks, vs = _gqa_shapes(q, k, v)
        ctx.recorder.record("scaled_dot_product_attention_backward", "attention", str(q.dtype).replace("torch.", ""),
                            float(fc.sdpa_backward_flop_count(grad.shape, qs, ks, vs)),
                            _nbytes(grad, q, k, v, out), _nbytes(q, k, v), _attention_gemm(qs, ks))
        return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v), None, None, None, None


def _attention_gemm(qs: Any, ks: Any) -> tuple[int, int, int, int] | None:
    """A fused attention kernel as the predictor's GEMM (batch x heads, query rows, key rows, head size): the
    flash kernels tile the query rows over the SMs, one (batch, head) per tile column."""
    if len(qs) != 4:
        return None
    return int(qs[0]) * int(qs[1]), int(qs[2]), int(ks[2]), int(qs[3])


@contextlib.contextmanager
def gpu_semantics(instance: Any, recorder: Any, autocast_dtype: torch.dtype | None) -> Iterator[None]:
    """Within this block, attention is one fused kernel in the autocast dtype and optimizers use
    ``foreach``, as on a CUDA device. ``recorder`` needs ``recording`` and ``record(name, kind, dtype,
    flops, bytes_read, bytes_written)``."""
    original = F.scaled_dot_product_attention

    def fused(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attn_mask: torch.Tensor | None = None,
              dropout_p: float = 0.0, is_causal: bool = False, scale: float | None = None, **kw: Any) -> torch.Tensor:
        if autocast_dtype is not None and torch.is_autocast_enabled("cpu") and query.is_floating_point():
            # CUDA autocast runs SDPA in the lower precision; CPU autocast leaves it in fp32.
            query, key, value = (t.to(autocast_dtype) for t in (query, key, value))
            if attn_mask is not None and attn_mask.is_floating_point():
                attn_mask = attn_mask.to(autocast_dtype)
        with torch.autocast("cpu", enabled=False):
            out: torch.Tensor = _FusedAttention.apply(query, key, value, attn_mask, recorder, original,
                                                      {"is_causal": is_causal, "scale": scale, **kw})
        return out

    saved_groups = []
    for opt in getattr(instance, "optimizers", {}).values():
        for group in opt.param_groups:
            saved_groups.append((group, group.get("foreach")))
            group["foreach"] = True
    F.scaled_dot_product_attention = fused  # type: ignore[assignment]
    try:
        yield
    finally:
        F.scaled_dot_product_attention = original
        for group, value in saved_groups:
            group["foreach"] = value
