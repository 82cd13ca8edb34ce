"""Training time of gradient-boosted trees on a CPU or a GPU, from the job's shape and the device's catalog figures.

The model, per library family and device kind (cpu | gpu)::

    seconds = trees x levels(depth) x ( fixed[family, kind]
                                        + rows x bytes_per_row_pass(features) / rate[family, kind](device) )

    bytes_per_row_pass(F) = F x 1 (a one-byte histogram bin per value: 256 bins or fewer)
                            + 8 (the row's float32 gradient and hessian) + 4 (its uint32 index in the node's rows)
    levels(depth)         = depth for depth-wise trees (XGBoost, H2O, CatBoost); for LightGBM's leaf-wise trees with
                            ``leaves`` given, min(depth, ceil(log2(leaves))): every level touches each row once
    rate on a GPU         = efficiency[family] x the GPU's memory bandwidth (catalog)
    rate on a CPU         = per16[family] x (threads / 16) ^ beta, at most the CPU's memory bandwidth where the
                            catalog knows it

Histogram building, the part that grows with the data, reads each row's binned values, its gradient pair and its
index once per level (O(rows x features) per level: the LightGBM and XGBoost papers, notes section 8): it is bound by
memory traffic, so a GPU's rate is a share of its bandwidth. ``fixed`` is what a level costs whatever the data: on a
GPU kernel launches and synchronisation, on a CPU thread synchronisation and split finding over the bins; in
published wall-clock times it also carries the start (moving the data, building the quantiles), spread over the
levels. It dominates small data: 100 trees of depth 10 are 1,000 levels.

On a CPU the histograms are built by scattered adds that scale with the threads, not by streaming: the fitted rate
of XGBoost on the 16-thread Xeon E5-2686 v4 is a few GB/s, a fraction of any socket's bandwidth. So the CPU rate
scales with the threads by a power ``beta`` fitted on the published CPUs (16 and 48 threads; one beta for every
family), and the memory bandwidth is only a hard ceiling. None of the published CPUs is in the catalog: their
bandwidth is unknown, and no published row shows where it would bind. Every published row is at depth 10 and on the
airline data (8 values per row): how time grows with depth and features is the formula's, not the data's.

Fit: least squares on log seconds, two parameters per (family, kind) group (``fixed`` and ``rate``/``efficiency``,
both log) and ``beta`` (bounded to [0.2, 1]: no faster than linear in threads): 17 parameters on 33 published times.
A group needs rows at two sizes at least (else ``fixed`` and ``rate`` cannot be told apart); beta needs CPU rows at
two thread counts, else it is fixed at 1 (linear) and the fit says so. No torch here."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dlgpu.errors import BadInput

BIN_BYTES = 1
GRADIENT_BYTES = 8
INDEX_BYTES = 4
INPUT_BYTES = 4
"""Bytes per value, per row and per level of the model (see the docstring); ``INPUT_BYTES``: the float32 matrix the
library is handed, which the memory estimate adds to the binned copy."""

REF_THREADS = 16
"""The thread count the CPU ``rate`` is stated at: the published rows' 16-thread Xeon."""

BETA_BOUNDS = (0.2, 1.0)
BETA_WHEN_UNFITTED = 1.0

KINDS = ("cpu", "gpu")


@dataclass(frozen=True)
class Device:
    """A device as the model reads it: a GPU's memory bandwidth; a CPU's threads (and its bandwidth where known)."""

    key: str  # a catalog id, or a stable key for a CPU not in the catalog
    name: str
    kind: str  # cpu | gpu
    threads: int | None
    bandwidth_bytes_per_s: float | None
    basis: str

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "name": self.name, "kind": self.kind, "threads": self.threads,
                "bandwidth_bytes_per_s": self.bandwidth_bytes_per_s, "basis": self.basis}


@dataclass(frozen=True)
class Job:
    """What is trained: ``trees`` trees of ``depth`` (``leaves``: LightGBM's num_leaves, if given) on ``rows`` rows of
    ``features`` values each."""

    family: str
    rows: int
    features: int
    trees: int
    depth: int
    leaves: int | None = None

    @property
    def passes(self) -> int:
        """Levels built per tree (see the docstring)."""
        if self.leaves is not None and self.family == "lightgbm":
            return max(1, min(self.depth, math.ceil(math.log2(max(self.leaves, 2)))))
        return self.depth

    @property
    def levels(self) -> int:
        return self.trees * self.passes

    @property
    def bytes_per_row_pass(self) -> int:
        return self.features * BIN_BYTES + GRADIENT_BYTES + INDEX_BYTES

    @property
    def memory_bytes(self) -> int:
        """The data held while training: the float32 matrix, its one-byte bins, the gradient pairs and row indices."""
        return self.rows * (self.features * (INPUT_BYTES + BIN_BYTES) + GRADIENT_BYTES + INDEX_BYTES)

    def to_dict(self) -> dict[str, Any]:
        return {"family": self.family, "rows": self.rows, "features": self.features, "trees": self.trees,
                "depth": self.depth, "leaves": self.leaves, "levels_per_tree": self.passes}


def group(family: str, kind: str) -> str:
    return f"{kind}:{family}"


def rate_bytes_per_s(values: Mapping[str, float], family: str, device: Device) -> float:
    """The effective bytes/s histogram building reaches for ``family`` on ``device`` (see the docstring)."""
    g = group(family, device.kind)
    if device.kind == "gpu":
        if not device.bandwidth_bytes_per_s:
            raise BadInput(f"{device.name}: the catalog gives no memory bandwidth for it", param="hardware")
        return math.exp(values[f"{g}:rate"]) * device.bandwidth_bytes_per_s
    beta = values.get("cpu:beta", BETA_WHEN_UNFITTED)
    r = math.exp(values[f"{g}:rate"]) * (max(device.threads or 1, 1) / REF_THREADS) ** beta
    if device.bandwidth_bytes_per_s:
        r = min(r, device.bandwidth_bytes_per_s)
    return r


def terms_s(values: Mapping[str, float], job: Job, device: Device) -> tuple[float, float]:
    """(fixed seconds, histogram seconds) of the job on the device."""
    g = group(job.family, device.kind)
    fixed = job.levels * math.exp(values[f"{g}:fixed"])
    hist = job.levels * job.rows * job.bytes_per_row_pass / rate_bytes_per_s(values, job.family, device)
    return fixed, hist


def train_s(values: Mapping[str, float], job: Job, device: Device) -> float:
    fixed, hist = terms_s(values, job, device)
    return fixed + hist


@dataclass(frozen=True)
class Sample:
    """One measured training time: the job, the device, the seconds, and where it comes from."""

    label: str
    job: Job
    device: Device
    seconds: float
    row: int = 0  # the published row's line, or 0
    source: str = ""


def _groups(samples: Iterable[Sample]) -> dict[str, list[Sample]]:
    out: dict[str, list[Sample]] = {}
    for s in samples:
        out.setdefault(group(s.job.family, s.device.kind), []).append(s)
    return out


def identifiable(samples: Sequence[Sample]) -> tuple[set[str], bool]:
    """(groups with rows at two sizes or more, whether beta can be fitted: CPU rows at two thread counts or more)."""
    ok = {g for g, ss in _groups(samples).items() if len({s.job.rows for s in ss}) >= 2}
    threads = {s.device.threads for s in samples if s.device.kind == "cpu" and group(s.job.family, "cpu") in ok}
    return ok, len(threads) >= 2


@dataclass(frozen=True)
class Fit:
    """Fitted values (``{group}:fixed`` log seconds per level, ``{group}:rate`` log bytes/s at 16 threads or log share
    of a GPU's bandwidth, ``cpu:beta``), what they rest on, and their errors."""

    values: dict[str, float]
    samples: tuple[Sample, ...]
    beta_fitted: bool
    extra: dict[str, Any] = field(default_factory=dict)

    def has(self, family: str, kind: str) -> bool:
        return f"{group(family, kind)}:fixed" in self.values

    def predict(self, job: Job, device: Device) -> float:
        return train_s(self.values, job, device)

    @property
    def beta(self) -> float:
        return self.values.get("cpu:beta", BETA_WHEN_UNFITTED)

    def describe(self, family: str, kind: str) -> str:
        """The fitted terms of a group in words."""
        g = group(family, kind)
        fixed = math.exp(self.values[f"{g}:fixed"])
        rate = math.exp(self.values[f"{g}:rate"])
        if kind == "gpu":
            what = f"{100 * rate:.2g}% of the GPU's memory bandwidth"
        else:
            what = (f"{rate / 1e9:.2g} GB/s at {REF_THREADS} threads, x (threads/{REF_THREADS})^{self.beta:.2f}"
                    + ("" if self.beta_fitted else " (beta not fitted: linear assumed)"))
        return f"{family} on a {kind.upper()}: {fixed * 1e3:.3g} ms per tree level fixed, histograms at {what}"


def fit(samples: Sequence[Sample]) -> Fit:
    """Least squares on log seconds (see the docstring) over the identifiable groups of ``samples``."""
    from scipy.optimize import least_squares

    ok, beta_ok = identifiable(samples)
    used = [s for s in samples if group(s.job.family, s.device.kind) in ok]
    if not used:
        raise BadInput("no group of samples has times at two sizes: nothing to fit")
    groups = _groups(used)
    names: list[str] = []
    theta0: list[float] = []
    lo: list[float] = []
    hi: list[float] = []
    for g, ss in sorted(groups.items()):
        small = min(ss, key=lambda s: s.job.rows)
        big = max(ss, key=lambda s: s.job.rows)
        fixed0 = 0.5 * small.seconds / small.job.levels
        bytes_big = big.job.levels * big.job.rows * big.job.bytes_per_row_pass
        rate0 = bytes_big / max(big.seconds - fixed0 * big.job.levels, 0.2 * big.seconds)
        if g.startswith("gpu:"):
            rate0 /= big.device.bandwidth_bytes_per_s or 1.0
            rate_lo, rate_hi = math.log(1e-6), math.log(1.0)
        else:
            rate0 /= (max(big.device.threads or 1, 1) / REF_THREADS) ** (0.6 if beta_ok else BETA_WHEN_UNFITTED)
            rate_lo, rate_hi = math.log(1e5), math.log(1e13)
        names += [f"{g}:fixed", f"{g}:rate"]
        theta0 += [math.log(fixed0), min(max(math.log(rate0), rate_lo + 1e-6), rate_hi - 1e-6)]
        lo += [math.log(1e-7), rate_lo]
        hi += [math.log(30.0), rate_hi]
    if beta_ok:
        names.append("cpu:beta")
        theta0.append(0.6)
        lo.append(BETA_BOUNDS[0])
        hi.append(BETA_BOUNDS[1])
    measured = np.log([s.seconds for s in used])

    def residuals(theta: np.ndarray) -> np.ndarray:
        values = dict(zip(names, (float(t) for t in theta), strict=True))
        return np.log([train_s(values, s.job, s.device) for s in used]) - measured

    x0 = np.clip(np.array(theta0), np.array(lo) + 1e-9, np.array(hi) - 1e-9)
    sol = least_squares(residuals, x0, bounds=(np.array(lo), np.array(hi)), max_nfev=5000, x_scale="jac")
    values = dict(zip(names, (float(v) for v in sol.x), strict=True))
    return Fit(values, tuple(used), beta_ok)


def crossover_rows(cpu: tuple[float, float], gpu: tuple[float, float], overhead_s: float) -> float:
    """The rows where cpu = gpu + overhead, each time (a, b) as a + b x rows: inf where the GPU's b is not below the
    CPU's (it never catches up), 0 where it is ahead at any size."""
    (ac, bc), (ag, bg) = cpu, gpu
    if bc <= bg:
        return math.inf
    return max(0.0, (ag + overhead_s - ac) / (bc - bg))


def error_pct(predicted: float, measured: float) -> float:
    return 100.0 * (predicted - measured) / measured


def predicted_row(s: Sample, predicted: float, **more: Any) -> dict[str, Any]:
    """A sample beside its prediction, with the error in %."""
    return {"row": s.row, "label": s.label, "family": s.job.family, "kind": s.device.kind, "device": s.device.key,
            "rows": s.job.rows, "measured_s": s.seconds, "predicted_s": predicted,
            "error_pct": error_pct(predicted, s.seconds), **more}


def summary(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per (kind, family) and over all: n, median and largest absolute error, the most under and over, in %."""
    def one(errs: list[float]) -> dict[str, Any]:
        a = sorted(abs(e) for e in errs)
        return {"n": len(errs), "median_abs_error_pct": statistics.median(a), "max_abs_error_pct": a[-1],
                "min_error_pct": min(errs), "max_error_pct": max(errs)}

    out: dict[str, Any] = {}
    by: dict[str, list[float]] = {}
    for r in rows:
        by.setdefault(group(r["family"], r["kind"]), []).append(float(r["error_pct"]))
    for g in sorted(by):
        out[g] = one(by[g])
    if rows:
        out["all"] = one([float(r["error_pct"]) for r in rows])
    return out


def in_sample(f: Fit) -> list[dict[str, Any]]:
    return [predicted_row(s, f.predict(s.job, s.device)) for s in f.samples]


def held_out(samples: Sequence[Sample], key: Callable[[Sample], str], what: str,
             alone: Callable[[str, Sequence[Sample]], str | None] | None = None) -> dict[str, Any]:
    """Refit without each ``key`` value's samples and predict them (``what`` names the fold, e.g. "device"). A sample
    whose group the rest cannot fit is listed as not estimable, with why; ``alone(k, rest)`` may rule a whole fold out
    first (a device alone in its kind). Where the CPU rows left have one thread count, beta is fixed at 1 (linear) in
    that fold and the CPU rows predicted by it say so."""
    rows: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    for k in sorted({key(s) for s in samples}):
        out = [s for s in samples if key(s) == k]
        rest = [s for s in samples if key(s) != k]
        why_all = alone(k, rest) if alone else None
        if why_all:
            skipped += [{"row": s.row, "label": s.label, "fold": k, "reason": why_all} for s in out]
            continue
        ok, beta_ok = identifiable(rest)
        try:
            f = fit(rest)
        except BadInput as exc:
            skipped += [{"row": s.row, "label": s.label, "fold": k, "reason": str(exc)} for s in out]
            continue
        for s in out:
            g = group(s.job.family, s.device.kind)
            if g not in ok:
                n = len({x.job.rows for x in rest if group(x.job.family, x.device.kind) == g})
                skipped.append({"row": s.row, "label": s.label, "fold": k,
                                "reason": f"without this {what}, {s.job.family} on a {s.device.kind.upper()} has "
                                          f"times at {n} size{'s' if n != 1 else ''}: its fixed cost and rate "
                                          "cannot be told apart"})
                continue
            more = {} if s.device.kind != "cpu" or beta_ok else {
                "beta": f"fixed at {BETA_WHEN_UNFITTED:g} (linear in threads): without this {what}, every CPU row left "
                        "has one thread count"}
            rows.append(predicted_row(s, f.predict(s.job, s.device), fold=k, **more))
    return {"by": what, "rows": rows, "not_estimable": skipped, "summary": summary(rows)}
