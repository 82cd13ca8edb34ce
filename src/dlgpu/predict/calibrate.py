"""Fit the roofline's efficiencies to published and local measurements; report honest errors.

The fit minimizes squared log errors of samples/s (a 2x over- and under-prediction weigh alike), with a
small ridge on the per-generation offsets so that a generation seen in few rows stays near the common
efficiency. ``leave_one_device_out`` refits without each device and predicts it: the figure that says
how well dlgpu predicts hardware it has never seen. Vectorized with numpy: every operator of every sample
is one element, so a fit over ~160 published rows takes seconds."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dlgpu.catalog import GpuSpec
from dlgpu.results import OpProfile

from .roofline import Calibration, generation, op_group, predict_step, unit_peak

RIDGE = 3.0  # weight of the L2 penalty on per-generation offsets (log units); chosen among 0.1-3 by LOO error


@dataclass(frozen=True)
class Sample:
    """One measured configuration: its profile, the device, and the throughput that was measured."""

    label: str
    family: str
    profile: OpProfile
    gpu: GpuSpec
    precision: str
    framework: str
    measured_samples_per_s: float


class _Design:
    """Every operator of every sample flattened into arrays, so one evaluation is a few numpy ops."""

    def __init__(self, samples: Sequence[Sample]) -> None:
        names = ["mem", "kernel_s", "launch_s"]
        idx: dict[str, int] = {n: i for i, n in enumerate(names)}

        def pid(name: str) -> int:
            if name not in idx:
                idx[name] = len(names)
                names.append(name)
            return idx[name]

        c, m, n, s, g, gg, f, pw, tdp = [], [], [], [], [], [], [], [], []
        kernels, batch, mgen, fw = [], [], [], []
        for k, smp in enumerate(samples):
            gen = generation(smp.gpu)
            bw = smp.gpu.memory_bandwidth_bytes_per_s or 1.0
            for op in smp.profile.ops:
                unit, peak = unit_peak(op, smp.gpu, smp.precision)
                c.append(op.flops / peak if peak else 0.0)
                f.append(op.flops if peak else 0.0)
                pw.append(pid(f"power:{unit}"))
                tdp.append(smp.gpu.tdp_w or np.inf)
                m.append(op.bytes / bw)
                n.append(op.count)
                s.append(k)
                g.append(pid(f"{unit}:{op_group(op)}"))
                gg.append(pid(f"gen:{gen}"))
            kernels.append(smp.profile.kernels)
            batch.append(smp.profile.batch_size)
            mgen.append(pid("mem:common"))
            fw.append(pid(f"framework:{smp.framework}") if smp.framework != "pytorch" else -1)
        self.names = names
        self.c, self.m, self.n = np.array(c), np.array(m), np.array(n, dtype=float)
        self.s, self.g, self.gg = np.array(s), np.array(g), np.array(gg)
        self.f, self.pw, self.tdp = np.array(f), np.array(pw), np.array(tdp, dtype=float)
        self.kernels, self.batch = np.array(kernels, dtype=float), np.array(batch, dtype=float)
        self.mgen, self.fw = np.array(mgen), np.array(fw)
        self.measured = np.array([x.measured_samples_per_s for x in samples])
        self.offsets = np.array([i for i, nm in enumerate(names) if nm.startswith(("gen:", "mem:"))])

    def predicted(self, theta: np.ndarray) -> np.ndarray:
        e_c = np.exp(theta[self.g] + theta[self.gg])
        e_m = np.exp(theta[0] + theta[self.mgen])
        c = self.c + self.f / (self.tdp * np.exp(theta[self.pw]))  # see Calibration.seconds_per_flop
        t_op = self.n * np.maximum(c / e_c, self.m / e_m[self.s])
        t = np.bincount(self.s, weights=t_op, minlength=len(self.batch)) + np.exp(theta[1]) * self.kernels
        t = np.maximum(t, np.exp(theta[2]) * self.kernels)  # host-side launch bound (see roofline)
        scale = np.where(self.fw >= 0, np.exp(theta[np.maximum(self.fw, 0)]), 1.0)
        return self.batch / (t * scale)

    def residuals(self, theta: np.ndarray) -> np.ndarray:
        r = np.log(self.predicted(theta)) - np.log(self.measured)
        return np.concatenate([r, RIDGE * theta[self.offsets]])

    def start(self) -> np.ndarray:
        theta = np.full(len(self.names), np.log(0.5))
        theta[self.offsets] = 0.0
        theta[1] = np.log(3e-6)  # a few microseconds of fixed GPU cost per kernel
        theta[2] = np.log(1e-5)  # ~10 us of host dispatch per eager operator
        for i, name in enumerate(self.names):
            if name.startswith("framework:"):
                theta[i] = 0.0
            if name.startswith("power:"):
                theta[i] = np.log(1e12)  # ~1 TFLOP per joule: a loose cap to start from
        return theta


def fit(samples: Sequence[Sample]) -> Calibration:
    from scipy.optimize import least_squares

    design = _Design(samples)
    sol = least_squares(design.residuals, design.start(), method="trf", x_scale=1.0, max_nfev=2000)
    values = {name: float(v) for name, v in zip(design.names, sol.x, strict=True)}
    return Calibration(values)


def errors_pct(cal: Calibration, samples: Sequence[Sample]) -> list[float]:
    """Signed percentage error of predicted samples/s for each sample."""
    out = []
    for smp in samples:
        pred = predict_step(smp.profile, smp.gpu, smp.precision, cal, smp.framework)
        sps = smp.profile.batch_size / pred.step_time_s
        out.append(100.0 * (sps - smp.measured_samples_per_s) / smp.measured_samples_per_s)
    return out


def summary(errs: Sequence[float]) -> dict[str, float]:
    a = [abs(e) for e in errs]
    return {"n": len(a), "median_abs_error_pct": statistics.median(a) if a else float("nan"),
            "mean_abs_error_pct": statistics.fmean(a) if a else float("nan")}


def leave_one_device_out(samples: Sequence[Sample]) -> dict[str, Any]:
    """Refit without each device, predict it; errors per device and per workload family."""
    per_row: list[tuple[Sample, float]] = []
    for dev in sorted({s.gpu.id for s in samples}):
        train = [s for s in samples if s.gpu.id != dev]
        test = [s for s in samples if s.gpu.id == dev]
        cal = fit(train)
        per_row += list(zip(test, errors_pct(cal, test), strict=True))
    by_device: dict[str, list[float]] = {}
    by_family: dict[str, list[float]] = {}
    for smp, e in per_row:
        by_device.setdefault(smp.gpu.id, []).append(e)
        by_family.setdefault(smp.family, []).append(e)
    return {
        "overall": summary([e for _, e in per_row]),
        "by_device": {k: summary(v) for k, v in sorted(by_device.items())},
        "by_family": {k: summary(v) for k, v in sorted(by_family.items())},
        "rows": [{"label": s.label, "error_pct": e} for s, e in per_row],
    }
