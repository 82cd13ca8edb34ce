"""LLM inference time: decode and prefill, from the bytes a token reads and the FLOPs it costs, with efficiencies
fitted per runtime and device backend to published measurements (``published``).

Decode (one new token per sequence, batch B, context C) is bandwidth bound at small batch: every step reads the
active weights once and each sequence's KV cache (LLM.md section 5: t_token = c + bytes / BW_eff):

    t_step = layers x floor + max((active weight bytes + B x KV bytes per token x C) / (bandwidth x e_mem),
                                   B x FLOPs per token / (peak x e_compute))

The per-layer floor (kernel launches and synchronisation of one layer's kernels, independent of its size) is
what keeps a big datacenter GPU at a fraction of its bandwidth at batch 1: an 8B model's 32 layers take about as
long to launch on an H100 as on an RTX 4090, whose bandwidth is a third. Prefill (a prompt of P tokens in one
pass) is compute bound: t = layers x floor + max(P x FLOPs per token / (peak x e_prefill), weight bytes /
(bandwidth x e_mem)). llama.cpp's layer split over several GPUs runs the layers one GPU after the other: the
time is the same formula on one of them (each reads its share of the layers at its bandwidth).

The efficiencies (``e_mem``, ``e_prefill``) and the floor are fitted per (runtime, backend) by ``fit_llm``:
``llama.cpp`` on ``cuda`` and on ``metal`` today. No torch here."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dlgpu.catalog import GpuSpec


@dataclass(frozen=True)
class LlmWork:
    """What a model in a weight format costs per token (see ``llm.workload.llm_work``)."""

    name: str
    layers: int
    weight_bytes: float  # resident: every expert, the embedding table
    decode_bytes: float  # weights read by one decode step at batch 1: active experts, one embedding row
    flops_per_token: float  # 2 x the multiply-adds of the active weights (the matmuls)
    kv_bytes_per_token: float  # per sequence, per token of context, every layer (0 for none)
    attention_flops_per_context_token: float = 0.0  # QK^T and AV per new token, per token of context


def backend(gpu: GpuSpec) -> str:
    """The device backend a runtime runs on: ``metal`` (Apple), ``rocm`` (AMD), ``cuda`` (NVIDIA), ``cpu``."""
    vendor = gpu.vendor.lower()
    if gpu.kind == "cpu" or vendor == "cpu":
        return "cpu"
    return {"apple": "metal", "amd": "rocm", "nvidia": "cuda"}.get(vendor, vendor)


def compute_peak(gpu: GpuSpec) -> float | None:
    """The peak a runtime's prompt GEMMs use: fp16 tensor cores (fp16 accumulate, what llama.cpp's cuBLAS path
    asks for) where the catalog has them, else the fp32 rate (Apple GPUs run fp16 at their fp32 rate)."""
    return gpu.fp16_flops_per_s or gpu.fp16_fp32acc_flops_per_s or gpu.bf16_flops_per_s or gpu.fp32_flops_per_s


def terms(runtime: str, device_backend: str) -> tuple[str, str, str, str]:
    """(memory efficiency, per-layer floor in seconds, prefill compute efficiency: log-space; the exponent of the
    prompt speed-up over GPUs of a layer split: linear) parameter names."""
    key = f"{runtime}:{device_backend}"
    return f"{key}:mem", f"{key}:layer_s", f"{key}:prefill", f"{key}:split_exponent"


START = {"mem": math.log(0.6), "layer_s": math.log(5e-5), "prefill": math.log(0.3), "split_exponent": 0.0}
"""Where the fit starts (and what an unfitted runtime/backend falls back to, said so): 60% of bandwidth, 50 us per
layer, 30% of the compute peak, no prompt speed-up from more GPUs."""


@dataclass(frozen=True)
class LlmCalibration:
    values: dict[str, float]
    fit: dict[str, Any] = field(default_factory=dict)

    def get(self, runtime: str, device_backend: str) -> tuple[float, float, float, bool]:
        """(e_mem, floor per layer in s, e_prefill, fitted?): an unfitted pair gets ``START``."""
        names = terms(runtime, device_backend)
        fitted = all(n in self.values for n in names[:3])
        vals = [self.values.get(n, START[n.rsplit(":", 1)[1]]) for n in names]
        return math.exp(vals[0]), math.exp(vals[1]), math.exp(vals[2]), fitted

    def split_exponent(self, runtime: str, device_backend: str) -> float:
        """How a prompt speeds up over the GPUs of a layer split: gpus ** this (llama.cpp pipelines micro-batches
        of a prompt through the GPUs; one token's decode cannot be pipelined)."""
        return self.values.get(terms(runtime, device_backend)[3], START["split_exponent"])


def decode_step_s(work: LlmWork, gpu: GpuSpec, e_mem: float, floor_s: float, e_compute: float, batch: int = 1,
                  context: float = 0.0) -> float:
    """Seconds of one decode step (one token for each of ``batch`` sequences at ``context`` tokens of context)."""
    bw, peak = gpu.memory_bandwidth_bytes_per_s or 0.0, compute_peak(gpu) or 0.0
    if bw <= 0 or peak <= 0:
        raise ValueError(f"{gpu.id}: the catalog has no bandwidth or compute peak for it")
    bytes_read = work.decode_bytes + batch * work.kv_bytes_per_token * context
    flops = batch * (work.flops_per_token + work.attention_flops_per_context_token * context)
    return work.layers * floor_s + max(bytes_read / (bw * e_mem), flops / (peak * e_compute))


def prefill_s(work: LlmWork, gpu: GpuSpec, e_mem: float, floor_s: float, e_prefill: float, prompt: int,
              speedup: float = 1.0) -> float:
    """Seconds to process a prompt of ``prompt`` tokens in one pass (time to first token, without queueing);
    ``speedup``: of the compute over the GPUs of a layer split (``LlmCalibration.split_exponent``)."""
    bw, peak = gpu.memory_bandwidth_bytes_per_s or 0.0, compute_peak(gpu) or 0.0
    if bw <= 0 or peak <= 0:
        raise ValueError(f"{gpu.id}: the catalog has no bandwidth or compute peak for it")
    flops = prompt * work.flops_per_token + work.attention_flops_per_context_token * prompt * prompt / 2
    return work.layers * floor_s + max(flops / (peak * e_prefill * speedup), work.weight_bytes / (bw * e_mem))


@dataclass(frozen=True)
class LlmSample:
    """One published per-sequence figure the model can be fitted on: tokens/s of a phase."""

    label: str
    runtime: str
    gpu: GpuSpec
    work: LlmWork
    phase: str  # decode | prefill
    tokens: int  # decode: tokens generated from an empty context (llama-bench tg N); prefill: the prompt
    measured_tok_s: float
    gpus: int = 1  # a layer split over this many GPUs of the kind


def predicted_tok_s(s: LlmSample, values: dict[str, float]) -> float:
    cal = LlmCalibration(values)
    e_mem, floor_s, e_pf, _ = cal.get(s.runtime, backend(s.gpu))
    if s.phase == "decode":  # llama-bench tg N: N tokens from an empty context, so N / 2 on average
        return 1.0 / decode_step_s(s.work, s.gpu, e_mem, floor_s, e_pf, 1, s.tokens / 2)
    speedup = s.gpus ** cal.split_exponent(s.runtime, backend(s.gpu))
    return s.tokens / prefill_s(s.work, s.gpu, e_mem, floor_s, e_pf, s.tokens, speedup)


class _Design:
    """The samples as arrays, so that one evaluation of the model over all of them is a few numpy operations."""

    def __init__(self, samples: Sequence[LlmSample]) -> None:
        self.names = sorted({t for s in samples for t in terms(s.runtime, backend(s.gpu))})
        idx = {n: i for i, n in enumerate(self.names)}
        cols = [[idx[t] for t in terms(s.runtime, backend(s.gpu))] for s in samples]
        self.mem, self.floor, self.pf, self.split = (np.array([c[i] for c in cols]) for i in range(4))
        self.log_gpus = np.log(np.array([s.gpus for s in samples], dtype=float))
        self.layers = np.array([s.work.layers for s in samples], dtype=float)
        self.bw = np.array([s.gpu.memory_bandwidth_bytes_per_s or np.nan for s in samples])
        self.peak = np.array([compute_peak(s.gpu) or np.nan for s in samples])
        self.decode = np.array([s.phase == "decode" for s in samples])
        tokens = np.array([s.tokens for s in samples], dtype=float)
        ctx = np.where(self.decode, tokens / 2, 0.0)
        self.tokens = tokens
        self.dec_bytes = np.array([s.work.decode_bytes + s.work.kv_bytes_per_token * c
                                   for s, c in zip(samples, ctx, strict=True)])
        self.dec_flops = np.array([s.work.flops_per_token + s.work.attention_flops_per_context_token * c
                                   for s, c in zip(samples, ctx, strict=True)])
        self.pf_flops = np.array([t * s.work.flops_per_token + s.work.attention_flops_per_context_token * t * t / 2
                                  for s, t in zip(samples, tokens, strict=True)])
        self.weight_bytes = np.array([s.work.weight_bytes for s in samples])
        self.measured = np.array([s.measured_tok_s for s in samples])

    def tok_s(self, theta: np.ndarray) -> np.ndarray:
        e_mem, floor, e_pf = np.exp(theta[self.mem]), np.exp(theta[self.floor]), np.exp(theta[self.pf])
        fixed = self.layers * floor
        decode = fixed + np.maximum(self.dec_bytes / (self.bw * e_mem), self.dec_flops / (self.peak * e_pf))
        speedup = np.exp(theta[self.split] * self.log_gpus)
        prefill = fixed + np.maximum(self.pf_flops / (self.peak * e_pf * speedup),
                                     self.weight_bytes / (self.bw * e_mem))
        return np.where(self.decode, 1.0 / decode, self.tokens / prefill)


def fit_llm(samples: Sequence[LlmSample], ridge: float = 0.1) -> LlmCalibration:
    """Least squares on log tokens/s (robust soft-L1 loss) over every (runtime, backend) the samples have, with a
    weak pull towards ``START`` so that a pair with few rows stays near it. Efficiencies are bounded to at most 1
    (of the catalog's bandwidth and peak), the per-layer floor to at most 10 ms, the split exponent to [0, 1]."""
    from scipy.optimize import least_squares

    d = _Design(samples)
    theta0 = np.array([START[n.rsplit(":", 1)[1]] for n in d.names])
    log_measured = np.log(d.measured)

    def residuals(theta: np.ndarray) -> np.ndarray:
        return np.concatenate([np.log(d.tok_s(theta)) - log_measured, ridge * (theta - theta0)])

    lo = np.array([-np.inf if n.endswith("layer_s") else 0.0 if n.endswith("split_exponent") else math.log(1e-3)
                   for n in d.names])
    hi = np.array([math.log(1e-2) if n.endswith("layer_s") else 1.0 if n.endswith("split_exponent") else 0.0
                   for n in d.names])
    sol = least_squares(residuals, np.clip(theta0, lo + 1e-9, hi - 1e-9), bounds=(lo, hi), loss="soft_l1",
                        f_scale=0.3, max_nfev=500)
    return LlmCalibration(dict(zip(d.names, (float(v) for v in sol.x), strict=True)), {"ridge": ridge})


def errors_pct(cal: LlmCalibration, samples: Sequence[LlmSample]) -> list[float]:
    return [100.0 * (predicted_tok_s(s, cal.values) - s.measured_tok_s) / s.measured_tok_s for s in samples]


def _summary(errs: Sequence[float]) -> dict[str, float]:
    a = sorted(abs(e) for e in errs)
    if not a:
        return {"n": 0}
    p90 = statistics.quantiles(a, n=10, method="inclusive")[-1] if len(a) >= 2 else a[0]
    return {"n": len(a), "median_abs_error_pct": statistics.median(a), "p90_abs_error_pct": p90}


def held_out(samples: Sequence[LlmSample], key: Callable[[LlmSample], str]) -> dict[str, Any]:
    """Refit without each value of ``key`` (a device: leave-one-device-out), predict what was left out; errors per
    phase, per device and per row."""
    rows: list[tuple[LlmSample, float]] = []
    for value in sorted({key(s) for s in samples}):
        train = [s for s in samples if key(s) != value]
        test = [s for s in samples if key(s) == value]
        cal = fit_llm(train)
        rows += list(zip(test, errors_pct(cal, test), strict=True))
    by_phase: dict[str, list[float]] = {}
    by_device: dict[str, list[float]] = {}
    for s, e in rows:
        by_phase.setdefault(s.phase, []).append(e)
        by_device.setdefault(s.gpu.id, []).append(e)
    return {"overall": _summary([e for _, e in rows]),
            "by_phase": {k: _summary(v) for k, v in sorted(by_phase.items())},
            "by_device": {k: _summary(v) for k, v in sorted(by_device.items())},
            "rows": [{"label": s.label, "device": s.gpu.id, "phase": s.phase, "measured": s.measured_tok_s,
                      "error_pct": e} for s, e in rows]}
