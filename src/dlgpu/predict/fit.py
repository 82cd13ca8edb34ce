"""Fit the roofline's efficiencies to published and local measurements; report honest errors.

The fit minimizes squared log errors of samples/s (a 2x over- and under-prediction weigh alike), with a
small ridge on the per-generation offsets so that a generation seen in few rows stays near the common
efficiency. ``leave_one_device_out`` refits without each device and predicts it: the figure that says
how well dlgpu predicts hardware it has never seen. Vectorized with numpy: every operator of every sample
is one element, so a fit over ~160 published rows takes seconds."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from dlgpu.catalog import GpuSpec
from dlgpu.results import OpProfile

from .roofline import (
    EFFICIENCY_CEILING,
    PHASE_RANGE,
    RIDGED,
    Calibration,
    architecture,
    efficiency_terms,
    fits_l2,
    gemm_utilization,
    generation,
    memory_terms,
    op_group,
    overhead_terms,
    predict_step,
    scale_terms,
    unit_peak,
)

LOSS, F_SCALE = "soft_l1", 0.3  # robust: a measurement 10x off (a slow CPU kernel path) must not drag the fit
RIDGE = 1.0
"""Default weight of the L2 penalty on ridged offsets (log units). ``calibrate`` chooses it among ``RIDGES`` by
an inner split (``select_ridge``), never on the error it reports."""

RIDGES = (0.3, 1.0, 3.0)
"""The ridge weights ``select_ridge`` chooses among."""

INNER_FOLDS = 3
"""Device groups of the inner split that chooses the ridge (``select_ridge``)."""


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
    stack: str = ""  # the benchmark suite that measured it (see roofline.scale_terms)


class _Design:
    """Every operator of every sample flattened into arrays, so one evaluation is a few numpy ops.

    Each operator's log-efficiency is a sum of parameters (``roofline.efficiency_terms``): a matrix of
    parameter indices, one column per term."""

    def __init__(self, samples: Sequence[Sample], ridge: float = RIDGE) -> None:
        names: list[str] = []
        idx: dict[str, int] = {n: i for i, n in enumerate(names)}

        def pid(name: str) -> int:
            if name not in idx:
                idx[name] = len(names)
                names.append(name)
            return idx[name]

        c, m, n, s, terms, f, pw, tdp, lu = [], [], [], [], [], [], [], [], []
        alpha = pid("shape:alpha")
        kernels, batch, mterms, sterms, kidx, lidx = [], [], [], [], [], []
        for k, smp in enumerate(samples):
            gen = generation(smp.gpu)
            bw = smp.gpu.memory_bandwidth_bytes_per_s or np.inf  # unknown (a LocalCpu): compute alone
            for op in smp.profile.ops:
                unit, peak = unit_peak(op, smp.gpu, smp.precision)
                c.append(op.flops / peak if peak else 0.0)
                f.append(op.flops if peak else 0.0)
                pw.append(pid(f"power:{unit}"))
                tdp.append(smp.gpu.tdp_w or np.inf)
                m.append(op.bytes / bw)
                n.append(op.count)
                s.append(k)
                terms.append([pid(t) for t in efficiency_terms(unit, op_group(op), gen, op.phase)])
                mterms.append([pid(t) for t in memory_terms(gen, op.kind, fits_l2(op, smp.gpu))])
                sms = smp.gpu.sm_count if smp.gpu.kind != "cpu" else None
                lu.append(np.log(gemm_utilization(op.gemm, unit, sms)))
            kterm, lterms = overhead_terms(gen)
            kidx.append(pid(kterm))
            lidx.append([pid(t) for t in lterms])
            kernels.append(smp.profile.kernels)
            batch.append(smp.profile.batch_size)
            sterms.append([pid(t) for t in scale_terms(smp.framework, smp.stack)])
        self.names = names
        self.alpha, self.lu = alpha, np.array(lu)
        self.c, self.m, self.n = np.array(c), np.array(m), np.array(n, dtype=float)
        pad = len(names)  # ragged term lists are padded with an index past the end, which reads 0 (see _theta)
        width = max((len(t) for t in terms + mterms), default=1)
        self.s = np.array(s)
        self.terms = np.array([t + [pad] * (width - len(t)) for t in terms], dtype=int).reshape(len(terms), width)
        self.f, self.pw, self.tdp = np.array(f), np.array(pw), np.array(tdp, dtype=float)
        self.kernels, self.batch = np.array(kernels, dtype=float), np.array(batch, dtype=float)
        self.mterms = np.array([t + [pad] * (width - len(t)) for t in mterms], dtype=int).reshape(len(mterms), width)
        self.kidx = np.array(kidx, dtype=int)
        lw = max((len(x) for x in lidx), default=1) or 1  # host-dispatch terms, padded like the others
        self.lidx = np.array([x + [pad] * (lw - len(x)) for x in lidx], dtype=int).reshape(len(lidx), lw)
        self.hosted_on_gpu = np.array([bool(x) for x in lidx])
        # scale terms vary in number per sample: a 0/1 matrix (samples x parameters)
        self.scale = np.zeros((len(samples), len(names)))
        for k, ts in enumerate(sterms):
            self.scale[k, ts] = 1.0
        self.measured = np.array([x.measured_samples_per_s for x in samples])
        self.offsets = np.array([i for i, nm in enumerate(names) if nm.startswith(RIDGED)], dtype=int)
        self.ridge = np.full(len(self.offsets), ridge)
        self.bases = [i for i, nm in enumerate(names) if ":" in nm and not nm.startswith(RIDGED)
                      and not nm.startswith(("power:", "framework:", "mem-kind:", "cpu:mem-kind:"))
                      and nm != "cpu:op_s"]

    def _parts(self, theta: np.ndarray) -> dict[str, np.ndarray]:
        padded = np.append(theta, 0.0)
        e_c = np.exp(padded[self.terms].sum(axis=1) + np.exp(theta[self.alpha]) * self.lu)
        e_m = np.exp(padded[self.mterms].sum(axis=1))
        cap = self.f / (self.tdp * np.exp(theta[self.pw]))  # see Calibration.seconds_per_flop
        t_c = self.n * (self.c + cap) / e_c
        t_m = self.n * self.m / e_m
        kern = np.exp(theta[self.kidx]) * self.kernels
        t = np.bincount(self.s, weights=np.maximum(t_c, t_m), minlength=len(self.batch)) + kern
        host = np.where(self.hosted_on_gpu, np.exp(padded[self.lidx].sum(axis=1)) * self.kernels, 0.0)
        return {"e_c": e_c, "cap": cap, "t_c": t_c, "t_m": t_m, "kern": kern, "t": t, "host": host,
                "T": np.maximum(t, host)}  # host-side launch bound on GPUs (see roofline)

    def predicted(self, theta: np.ndarray) -> np.ndarray:
        return self.batch / (self._parts(theta)["T"] * np.exp(self.scale @ theta))

    def residuals(self, theta: np.ndarray) -> np.ndarray:
        r = np.log(self.predicted(theta)) - np.log(self.measured)
        return np.concatenate([r, self.ridge * theta[self.offsets]])

    def jacobian(self, theta: np.ndarray) -> np.ndarray:
        """d residuals / d theta, analytically: finite differences would cost one evaluation per parameter."""
        p = self._parts(theta)
        k, n = len(self.batch), len(theta)
        dT = np.zeros((k, n + 1))  # last column: the padding index
        compute = p["t_c"] >= p["t_m"]
        ops = np.flatnonzero(compute)
        for col in range(self.terms.shape[1]):
            np.add.at(dT, (self.s[ops], self.terms[ops, col]), -p["t_c"][ops])
        np.add.at(dT, (self.s[ops], self.pw[ops]), -(self.n[ops] * p["cap"][ops] / p["e_c"][ops]))
        np.add.at(dT[:, self.alpha], self.s[ops], -p["t_c"][ops] * np.exp(theta[self.alpha]) * self.lu[ops])
        mem = np.flatnonzero(~compute)
        for col in range(self.mterms.shape[1]):
            np.add.at(dT, (self.s[mem], self.mterms[mem, col]), -p["t_m"][mem])
        np.add.at(dT, (np.arange(k), self.kidx), p["kern"])
        hosted = np.flatnonzero(p["host"] > p["t"])
        dT[hosted] = 0.0
        for col in range(self.lidx.shape[1]):
            np.add.at(dT, (hosted, self.lidx[hosted, col]), p["host"][hosted])
        jac = -dT[:, :n] / p["T"][:, None] - self.scale
        ridge = np.zeros((len(self.offsets), n))
        ridge[np.arange(len(self.offsets)), self.offsets] = self.ridge
        return np.vstack([jac, ridge])

    def start(self) -> np.ndarray:
        theta = np.zeros(len(self.names))
        for i, name in enumerate(self.names):
            if name == "kernel_s":
                theta[i] = np.log(3e-6)  # a few microseconds of fixed GPU cost per kernel
            elif name in ("launch_s", "cpu:op_s"):
                theta[i] = np.log(1e-5)  # ~10 us of host dispatch per eager operator
            elif name == "shape:alpha":
                theta[i] = np.log(0.5)  # half the idle share of a partial wave costs time, to start from
            elif name.startswith("power:"):
                theta[i] = np.log(1e12)  # ~1 TFLOP per joule: a loose cap to start from
            elif i in self.bases or name in ("mem", "cpu:mem"):
                theta[i] = np.log(0.5)
        return theta


def bounds(names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Physical limits of the parameters (log space): an efficiency base at most ``EFFICIENCY_CEILING`` of peak, a
    memory efficiency at most the bandwidth (an L2 hit at most 4x it), a CPU phase within ``PHASE_RANGE`` of the
    forward's, the shape exponent between 0 and 1; the rest unbounded."""
    lo, hi = np.full(len(names), -np.inf), np.full(len(names), np.inf)
    for i, name in enumerate(names):
        if name.startswith(("tensor", "vector:", "cpu-vector:", "cpu-matrix:")):
            hi[i] = np.log(EFFICIENCY_CEILING)
        elif name in ("mem", "cpu:mem"):
            hi[i] = 0.0
        elif name == "l2:hit":
            lo[i], hi[i] = 0.0, np.log(4.0)
        elif name.startswith("cpu:phase:"):
            lo[i], hi[i] = -np.log(PHASE_RANGE), np.log(PHASE_RANGE)
        elif name == "shape:alpha":
            hi[i] = 0.0
    return lo, hi


def fit(samples: Sequence[Sample], start: Calibration | None = None, ridge: float = RIDGE) -> Calibration:
    """Least squares on log throughput (robust loss, ridge on offsets). ``start``: a previous fit to begin
    from (a leave-one-out refit differs little from the full fit, so it converges in a few iterations)."""
    from scipy.optimize import least_squares
    from threadpoolctl import threadpool_limits

    design = _Design(samples, ridge)
    theta0 = design.start()
    if start is not None:
        for i, name in enumerate(design.names):
            if name in start.values:
                theta0[i] = start.values[name]
    # One BLAS thread: the matrices are tiny, and OpenBLAS's threads spinning on busy cores made each SVD
    # 150x slower (0.2 s instead of 1.5 ms on the 2-core development machine).
    lo, hi = bounds(design.names)
    theta0 = np.clip(theta0, lo + 1e-9, hi - 1e-9)
    # overflow while the solver tries far-off steps is expected (it rejects them); not the user's concern
    with threadpool_limits(1, user_api="blas"), np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        sol = least_squares(design.residuals, theta0, jac=design.jacobian, method="trf", x_scale=1.0,
                            max_nfev=2000, loss=LOSS, f_scale=F_SCALE, bounds=(lo, hi))
    values = {name: float(v) for name, v in zip(design.names, sol.x, strict=True)}
    return Calibration(values, {"ridge": ridge})


def _as_a_user(samples: Sequence[Sample]) -> list[Sample]:
    """The samples as a user's prediction is made: eager PyTorch, no benchmark suite's correction."""
    return [replace(s, stack="", framework="pytorch") for s in samples]


def select_ridge(samples: Sequence[Sample], extra: Sequence[Sample] = (), start: Calibration | None = None,
                 ridges: Sequence[float] = RIDGES, folds: int = INNER_FOLDS) -> tuple[float, dict[float, float]]:
    """The ridge weight (of ``ridges``) whose fits predict held-out devices best, as a user's prediction is made
    (median |error|), over ``folds`` groups of the devices of ``samples`` (round-robin in name order; ``extra``
    always fitted on): (the chosen weight, the inner error of each)."""
    devices = sorted({s.gpu.id for s in samples})
    groups = [set(devices[i::folds]) for i in range(min(folds, len(devices)))]
    scores: dict[float, float] = {}
    for ridge in ridges:
        errs: list[float] = []
        for group in groups:
            train = [s for s in samples if s.gpu.id not in group] + list(extra)
            test = [s for s in samples if s.gpu.id in group]
            cal = fit(train, start=start, ridge=ridge)
            errs += [abs(e) for e in errors_pct(cal, _as_a_user(test))]
        scores[ridge] = statistics.median(errs) if errs else float("inf")
    return min(ridges, key=lambda r: (scores[r], r)), scores


def errors_pct(cal: Calibration, samples: Sequence[Sample]) -> list[float]:
    """Signed percentage error of predicted samples/s for each sample."""
    out = []
    for smp in samples:
        pred = predict_step(smp.profile, smp.gpu, smp.precision, cal, smp.framework, smp.stack)
        sps = smp.profile.batch_size / pred.step_time_s
        out.append(100.0 * (sps - smp.measured_samples_per_s) / smp.measured_samples_per_s)
    return out


def summary(errs: Sequence[float]) -> dict[str, float]:
    a = [abs(e) for e in errs]
    p90 = statistics.quantiles(a, n=10, method="inclusive")[-1] if len(a) >= 2 else (a[0] if a else float("nan"))
    return {"n": len(a), "median_abs_error_pct": statistics.median(a) if a else float("nan"),
            "mean_abs_error_pct": statistics.fmean(a) if a else float("nan"), "p90_abs_error_pct": p90}


def unfitted_terms(samples: Sequence[Sample], cal: Calibration) -> list[str]:
    """The parameters no sample's error depends on (their column of the fit's Jacobian is zero at the fitted values):
    they keep their starting value, and a prediction that uses one rests on an assumption, not on a fit (e.g.
    ``cpu:mem`` while no calibrated CPU has a memory-bandwidth figure)."""
    design = _Design(samples)
    theta = np.array([cal.values.get(n, v) for n, v in zip(design.names, design.start(), strict=True)])
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        jac = design.jacobian(theta)[: len(samples)]
    moved = np.nan_to_num(np.abs(jac), nan=1.0).max(axis=0) > 1e-12
    return sorted(name for i, name in enumerate(design.names) if name in cal.values and not moved[i])


def accuracy_report(rows: Sequence[dict[str, Any]], interval_share: float = 0.8) -> dict[str, Any]:
    """What a user of held-out predictions gets, from ``_held_out`` rows (each with its device, generation,
    workload configuration, measured throughput and errors). Every figure uses the error of the row predicted as a
    user's prediction is made (``user_error_pct``: eager PyTorch, no benchmark suite's or framework's correction);
    the error with the row's own suite correction is kept apart, for reference only.

    - median and 90th-percentile |error| overall, per family and per generation;
    - interval coverage: how often a row's error lies within the stated ``interval_share`` interval (10th-90th
      percentile) computed from the errors of the OTHER devices' rows, as a prediction for a new device would;
    - rank correlation across devices (Spearman rho of measured vs predicted throughput) per configuration
      (workload, task, precision, batch) measured on at least 3 devices: whether the model orders GPUs right."""
    from scipy.stats import spearmanr

    def err(x: dict[str, Any]) -> float:  # as the interval of a user's prediction is made (forecast.interval)
        return float(x.get("user_error_pct", x["error_pct"]))

    tail = (1 - interval_share) / 2
    inside = 0
    for r in rows:
        others = sorted(err(x) for x in rows if x["device"] != r["device"])
        q = statistics.quantiles(others, n=100, method="inclusive")
        lo, hi = q[max(0, round(100 * tail) - 1)], q[min(98, round(100 * (1 - tail)) - 1)]
        inside += lo <= err(r) <= hi
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r["config"], []).append(r)
    rho = {}
    for cfg, g in sorted(groups.items()):
        if len({x["device"] for x in g}) >= 3:
            measured = [x["measured"] for x in g]
            predicted = [x["measured"] * (1 + err(x) / 100) for x in g]
            rho[cfg] = float(spearmanr(measured, predicted).statistic)

    def by(key: str) -> dict[str, dict[str, float]]:
        out: dict[str, list[float]] = {}
        for r in rows:
            out.setdefault(r[key], []).append(err(r))
        return {k: summary(v) for k, v in sorted(out.items())}

    return {"overall": summary([err(r) for r in rows]),
            "basis": "held-out rows predicted as a user's prediction is: eager PyTorch at the calibrated stacks' "
                     "average speed, without the row's own benchmark suite or framework correction",
            "overall_with_suite_corrections": summary([r["error_pct"] for r in rows]),
            "by_family": by("family"),
            "by_generation": by("generation"),
            "interval_coverage": {"stated": interval_share, "observed": inside / len(rows) if rows else float("nan"),
                                  "basis": "share of rows whose held-out error (predicted as a user's prediction is) "
                                           "lies within the 10th-90th percentile of the other devices' ones"},
            "spearman": {"configs": rho, "median": statistics.median(rho.values()) if rho else float("nan"),
                         "min": min(rho.values()) if rho else float("nan")}}


def _held_out(samples: Sequence[Sample], key: Callable[[Sample], str], extra: Sequence[Sample],
              nested: bool = False) -> dict[str, Any]:
    """Refit without each value of ``key`` (the ``extra`` samples always kept), predict what was left out. With
    ``nested``, each refit's ridge is chosen by ``select_ridge`` on that refit's own rows: the held-out rows never
    choose a hyperparameter."""
    per_row: list[tuple[Sample, float]] = []
    user_errors: dict[str, float] = {}
    ridges: dict[str, float] = {}
    full = fit([*samples, *extra])
    for value in sorted({key(s) for s in samples}):
        train = [s for s in samples if key(s) != value] + list(extra)
        test = [s for s in samples if key(s) == value]
        # a generation left with no training row must not keep the offsets the full fit gave it
        gone = {generation(s.gpu) for s in test} - {generation(s.gpu) for s in train}
        start = Calibration({k: v for k, v in full.values.items() if k.rsplit(":", 1)[-1] not in gone})
        ridge = RIDGE
        if nested:
            ridge = select_ridge([s for s in samples if key(s) != value], extra, start=start)[0]
        ridges[value] = ridge
        cal = fit(train, start=start, ridge=ridge)
        per_row += list(zip(test, errors_pct(cal, test), strict=True))
        # as a user's prediction is made: eager PyTorch, no benchmark suite's correction
        user_errors.update(zip((s.label for s in test), errors_pct(cal, _as_a_user(test)), strict=True))
    by_device: dict[str, list[float]] = {}
    by_family: dict[str, list[float]] = {}
    by_workload: dict[str, list[float]] = {}
    for smp, e in per_row:
        by_device.setdefault(smp.gpu.id, []).append(e)
        by_family.setdefault(smp.family, []).append(e)
        by_workload.setdefault(smp.profile.workload, []).append(e)
    return {
        "overall": summary([e for _, e in per_row]),
        "ridges": ridges, "nested": nested,
        "by_device": {k: summary(v) for k, v in sorted(by_device.items())},
        "by_family": {k: summary(v) for k, v in sorted(by_family.items())},
        "by_workload": {k: summary(v) for k, v in sorted(by_workload.items())},
        "rows": [{"label": s.label, "error_pct": e, "user_error_pct": user_errors[s.label], "device": s.gpu.id,
                  "generation": generation(s.gpu), "family": s.family, "measured": s.measured_samples_per_s,
                  "config": f"{s.profile.workload} {s.profile.task} {s.precision} bs{s.profile.batch_size}"}
                 for s, e in per_row],
    }


def leave_one_device_out(samples: Sequence[Sample], extra: Sequence[Sample] = (),
                         nested: bool = False) -> dict[str, Any]:
    """Refit without each device, predict it: the error on hardware never measured. Errors per device,
    per workload family and per workload. ``extra`` samples (CPU rows) are fitted on but not held out; ``nested``:
    see ``_held_out``."""
    return _held_out(samples, lambda s: s.gpu.id, extra, nested)


def leave_one_architecture_out(samples: Sequence[Sample], extra: Sequence[Sample] = ()) -> dict[str, Any]:
    """Refit without each architecture (``roofline.architecture``: all its devices), predict it: how far a
    prediction misses on an architecture with no calibration row, the interval of an *extrapolated* device."""
    return _held_out(samples, lambda s: architecture(s.gpu), extra)


def leave_one_workload_out(samples: Sequence[Sample], extra: Sequence[Sample] = (),
                           nested: bool = False) -> dict[str, Any]:
    """Refit without each workload, predict it: how well a workload never measured is predicted (for CPU rows,
    all measured on one CPU, the honest figure). ``nested``: see ``_held_out``."""
    return _held_out(samples, lambda s: s.profile.workload, extra, nested)
