"""A profile at another batch size without tracing again (a trace of a full-size model costs about a second;
``dlgpu advise`` needs a step at the largest batch that fits on each of fifty GPUs).

Forward and backward operators process the batch: their FLOPs, bytes and the activations kept scale with
it. Optimizer operators touch the parameters only: they do not. The error is in the bytes of operators
that also read weights (a convolution reads its weights once per call, whatever the batch), which this
scales too: at half the traced batch it under-counts them. ``tests/test_rescale.py`` bounds the error
against real traces.

A GEMM's shape (``OpRecord.gemm``, for the tile and wave model) is rescaled in the one dimension that carries the
batch, which the trace does not name: the batch of a batched product where it is a multiple of the traced batch,
else M (tokens or output pixels), else K (a weight gradient sums over the batch)."""

from __future__ import annotations

from dataclasses import replace

from dlgpu.results import OpProfile


def rescale(profile: OpProfile, batch_size: int) -> OpProfile:
    if batch_size == profile.batch_size:
        return profile
    f = batch_size / profile.batch_size
    ops = tuple(o if o.phase == "optimizer" else
                replace(o, flops=o.flops * f, bytes_read=o.bytes_read * f, bytes_written=o.bytes_written * f,
                        gemm=_gemm(o.gemm, profile.batch_size, f))
                for o in profile.ops)
    return replace(profile, batch_size=batch_size, ops=ops,
                   activation_bytes=None if profile.activation_bytes is None else int(profile.activation_bytes * f),
                   cache_bytes=None if profile.cache_bytes is None else int(profile.cache_bytes * f))


def _gemm(g: tuple[int, ...] | None, traced: int, f: float) -> tuple[int, ...] | None:
    if g is None or len(g) != 4:
        return g
    dims = list(g)
    for i in (0, 1, 3):  # batch of a bmm, M, K (see the module docstring)
        if (i > 0 or dims[0] > 1) and dims[i] % traced == 0:
            dims[i] = max(1, round(dims[i] * f))
            break
    return tuple(dims)
