"""Serving throughput: output tokens/s of a serving engine (TensorRT-LLM today) answering many requests of P prompt
and O output tokens with in-flight batching, fitted to the engine's published max-throughput tables.

In steady state the engine keeps B requests in flight. One round of B requests costs their prefills (compute
bound: B x P x FLOPs per token over the peak) and O decode steps at batch B (``perf.decode_step_s``: the weights
read once per step, each sequence's KV cache, or the batch's FLOPs, whichever bounds it, plus the per-layer
floor), so output tokens/s = B x O / (prefill + O x step). B is what the engine chooses: as many as fit the
memory (weights + a KV cache of P + O tokens each, ``memory.largest_concurrency``), up to a fitted cap (engines
bound their batch: TensorRT-LLM's max batch size, vLLM's max_num_seqs), or the concurrency asked for.

FP8 runs at the 8-bit tensor rate (the catalog's int8 peak: equal to the dense FP8 rate on Ada, Hopper and
Blackwell datasheets); FP16 at the fp16 tensor rate. No torch here."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dlgpu.catalog import GpuSpec

from .perf import LlmWork

SERVE_START = {"mem": math.log(0.7), "layer_s": math.log(2e-5), "compute": math.log(0.5), "batch_cap": math.log(256)}
"""Where the fit starts: 70% of bandwidth, 20 us per layer, 50% of the tensor peak, at most 256 requests in flight."""


def serve_terms(runtime: str) -> tuple[str, str, str, str]:
    return tuple(f"{runtime}:serve:{k}" for k in SERVE_START)  # type: ignore[return-value]


def serve_peak(gpu: GpuSpec, weight_format: str) -> float | None:
    """The tensor rate a serving engine's GEMMs run at in a weight format (see the module docstring)."""
    if weight_format.lower() in ("fp8", "int8"):
        return gpu.int8_ops_per_s or gpu.fp16_flops_per_s or gpu.fp16_fp32acc_flops_per_s
    return gpu.fp16_flops_per_s or gpu.fp16_fp32acc_flops_per_s or gpu.bf16_flops_per_s


@dataclass(frozen=True)
class ServeSample:
    label: str
    runtime: str
    gpu: GpuSpec
    gpus: int  # tensor parallel: bandwidth and compute add up
    work: LlmWork
    weight_format: str
    prompt: int
    output: int
    memory_concurrency: int  # the most requests of prompt + output tokens whose KV caches fit
    concurrency: int | None  # asked for; None: the engine chooses
    measured_tok_s: float = 0.0


def serve_tok_s(s: ServeSample, values: dict[str, float]) -> tuple[float, float]:
    """(output tokens/s in total, the concurrency it assumes)."""
    names = serve_terms(s.runtime)
    v = [values.get(n, SERVE_START[n.rsplit(":", 1)[1]]) for n in names]
    e_mem, floor_s, e_c, cap = (math.exp(x) for x in v)
    batch = float(s.concurrency) if s.concurrency else max(1.0, min(float(s.memory_concurrency), cap))
    bw = (s.gpu.memory_bandwidth_bytes_per_s or 0.0) * s.gpus
    peak = (serve_peak(s.gpu, s.weight_format) or 0.0) * s.gpus
    w = s.work
    prefill = batch * (s.prompt * w.flops_per_token + w.attention_flops_per_context_token * s.prompt ** 2 / 2) / (
        peak * e_c)
    ctx = s.prompt + s.output / 2
    flops = batch * (w.flops_per_token + w.attention_flops_per_context_token * ctx)
    step = w.layers * floor_s + max((w.decode_bytes + batch * w.kv_bytes_per_token * ctx) / (bw * e_mem),
                                    flops / (peak * e_c))
    return batch * s.output / (prefill + s.output * step), batch


def fit_serving(samples: Sequence[ServeSample], ridge: float = 0.1) -> dict[str, float]:
    """Least squares on log tokens/s (soft-L1), parameters per runtime, bounded: efficiencies at most 1, the floor
    at most 10 ms per layer, the cap between 1 and 100,000 requests."""
    from scipy.optimize import least_squares

    names = sorted({n for s in samples for n in serve_terms(s.runtime)})
    theta0 = np.array([SERVE_START[n.rsplit(":", 1)[1]] for n in names])

    def residuals(theta: np.ndarray) -> np.ndarray:
        values = dict(zip(names, theta.tolist(), strict=True))
        r = [math.log(serve_tok_s(s, values)[0]) - math.log(s.measured_tok_s) for s in samples]
        return np.concatenate([np.array(r), ridge * (theta - theta0)])

    lo = np.array([{"mem": math.log(1e-2), "layer_s": math.log(1e-7), "compute": math.log(1e-2),
                    "batch_cap": 0.0}[n.rsplit(":", 1)[1]] for n in names])
    hi = np.array([{"mem": 0.0, "layer_s": math.log(1e-2), "compute": 0.0, "batch_cap": math.log(1e5)}[
        n.rsplit(":", 1)[1]] for n in names])
    sol = least_squares(residuals, np.clip(theta0, lo + 1e-9, hi - 1e-9), bounds=(lo, hi), loss="soft_l1",
                        f_scale=0.3, max_nfev=300)
    return dict(zip(names, (float(x) for x in sol.x), strict=True))


def serving_held_out(samples: Sequence[ServeSample]) -> dict[str, Any]:
    """Leave-one-device-out over the serving rows: errors overall, per device and per row."""
    rows: list[tuple[ServeSample, float]] = []
    for dev in sorted({s.gpu.id for s in samples}):
        values = fit_serving([s for s in samples if s.gpu.id != dev])
        for s in (x for x in samples if x.gpu.id == dev):
            rows.append((s, 100.0 * (serve_tok_s(s, values)[0] - s.measured_tok_s) / s.measured_tok_s))

    def summary(errs: Sequence[float]) -> dict[str, float]:
        a = sorted(abs(e) for e in errs)
        p90 = statistics.quantiles(a, n=10, method="inclusive")[-1] if len(a) >= 2 else (a[0] if a else math.nan)
        return {"n": len(a), "median_abs_error_pct": statistics.median(a) if a else math.nan, "p90_abs_error_pct": p90}

    by_device: dict[str, list[float]] = {}
    for s, e in rows:
        by_device.setdefault(s.gpu.id, []).append(e)
    return {"overall": summary([e for _, e in rows]), "by_device": {k: summary(v) for k, v in by_device.items()},
            "rows": [{"label": s.label, "device": s.gpu.id, "phase": "serve", "measured": s.measured_tok_s,
                      "error_pct": e} for s, e in rows]}
