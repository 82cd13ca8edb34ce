"""This machine's CPU for the tabular model: its own measurements when there are some, else the published CPU fit
scaled to its threads.

What calibrates it, first found first:

1. stored ``dlgpu bench`` results of the tabular workloads on this machine (``runs_from_results``: a result dict of
   the bench document, task ``train`` on the CPU, with its job's settings and its median step: one step is one fit);
2. dlgpu's shipped measurements (``data/measured/``, written by ``benchmarks/tabular_crossover.py``) where they were
   made on this CPU model with this many threads (the development VM): another machine's figures never stand for
   this one.

Per family measured at two sizes or more, the two terms of the model (fixed seconds per tree level, bytes/s of
histogram building) are fitted to this CPU's runs alone (least squares on log seconds); measured at one size, the
published fit for this CPU is scaled by measured / predicted. A family not measured here is the published CPU fit at
this CPU's threads (``model``'s scaling, and the catalog bandwidth as a ceiling where the CPU is in the catalog), and
says so. No torch here."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from .model import Device, Fit, Job, Sample, error_pct, fit, rate_bytes_per_s, train_s

MEASURED_SCHEMA = "dlgpu.tabular-measured/1"
FAMILIES_MEASURED = ("xgboost", "lightgbm")


@dataclass(frozen=True)
class LocalRun:
    """One training time measured on this CPU."""

    job: Job
    seconds: float
    threads: int | None
    source: str  # a run id, or the shipped file


def _specs() -> dict[str, Any]:
    from dlgpu.workloads.registry import list_workloads

    return {s.name: s for s in list_workloads(include_tiny=True) if s.family == "tabular"}


def runs_from_results(results: Sequence[Mapping[str, Any]], threads: int | None = None) -> list[LocalRun]:
    """Stored bench results (``BenchResult.to_dict()`` dicts, each maybe with ``_run_id``) as runs: the ok ``train``
    results on a CPU of XGBoost or LightGBM (the workload's estimator), with their job (the result's
    ``settings.params``, else its overrides over the workload's defaults) and the seconds of one fit
    (``step_time_s.median``, else rows / samples_per_s); ``threads``: only results that ran that many (the bench
    may run fewer when others hold cores). Several results of one job: their median."""
    specs = _specs()
    by_job: dict[Job, list[tuple[float, int | None, str]]] = {}
    for r in results:
        if r.get("task") != "train" or r.get("status") != "ok" or not str(r.get("device", "")).startswith("cpu"):
            continue
        workload = str(r.get("workload", ""))
        spec = specs.get(workload)
        settings = r.get("settings") or {}
        family = str(spec.extra.get("estimator")) if spec is not None else str(settings.get("library") or workload)
        if family not in FAMILIES_MEASURED:
            continue
        params: dict[str, Any] = {**(dict(spec.defaults()) if spec is not None else {}), **(r.get("overrides") or {}),
                                  **(settings.get("params") or {})}
        try:
            rows = int(params.get("rows") or r.get("batch_size") or 0)
            job = Job(family=family, rows=rows, features=int(params["features"]), trees=int(params["trees"]),
                      depth=int(params["depth"]))
        except (KeyError, TypeError, ValueError):
            continue
        step = r.get("step_time_s") or {}
        seconds = step.get("median") if isinstance(step, Mapping) else None
        if not seconds and r.get("samples_per_s") and rows:
            seconds = rows / float(r["samples_per_s"])
        used = settings.get("threads")
        if not seconds or rows <= 0 or (threads is not None and used is not None and int(used) != threads):
            continue
        by_job.setdefault(job, []).append((float(seconds), int(used) if used else None, str(r.get("_run_id", ""))))
    out = []
    for job, got in by_job.items():
        ids = sorted({g[2] for g in got if g[2]})
        out.append(LocalRun(job, statistics.median(g[0] for g in got), got[0][1], ", ".join(ids) or "stored"))
    return out


def runs_from_measured(doc: Mapping[str, Any]) -> list[LocalRun]:
    """The runs of a ``benchmarks/tabular_crossover.py --json`` document (``dlgpu.tabular-measured/1``)."""
    out = []
    threads = int((doc.get("machine") or {}).get("threads") or 0) or None
    for r in doc.get("rows") or []:
        if not r.get("measured_s"):
            continue
        job = Job(family=str(r["library"]), rows=int(r["rows"]), features=int(r["features"]), trees=int(r["trees"]),
                  depth=int(r["depth"]))
        out.append(LocalRun(job, float(r["measured_s"]), threads, "shipped measurements (tabular/data/measured)"))
    return out


def shipped_measurements() -> list[tuple[str, dict[str, Any]]]:
    """(file name, document) of every shipped measurement document."""
    out: list[tuple[str, dict[str, Any]]] = []
    base = resources.files("dlgpu.tabular").joinpath("data", "measured")
    if not base.is_dir():
        return out
    for entry in sorted(base.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".json"):
            out.append((entry.name, json.loads(entry.read_text(encoding="utf-8"))))
    return out


def shipped_runs_for(cpu: str, threads: int) -> tuple[tuple[LocalRun, ...], str]:
    """The shipped runs made on this CPU model with this many threads, and the file they come from."""
    for name, doc in shipped_measurements():
        machine = doc.get("machine") or {}
        if machine.get("cpu") == cpu and int(machine.get("threads") or 0) == threads:
            return tuple(runs_from_measured(doc)), name
    return (), ""


@dataclass(frozen=True)
class LocalCpu:
    """This machine's CPU as the model reads it, and the measurements made on it."""

    name: str
    threads: int
    bandwidth_bytes_per_s: float | None
    ram_bytes: int | None
    catalog_id: str | None
    runs: tuple[LocalRun, ...] = ()
    source: str = "none"

    def device(self) -> Device:
        bw = "" if self.bandwidth_bytes_per_s is None else (
            f", memory bandwidth {self.bandwidth_bytes_per_s / 1e9:.0f} GB/s (catalog {self.catalog_id}) as a ceiling")
        return Device(key="local", name=self.name, kind="cpu", threads=self.threads,
                      bandwidth_bytes_per_s=self.bandwidth_bytes_per_s,
                      basis=f"this machine's CPU, {self.threads} usable threads{bw}")


@dataclass(frozen=True)
class LocalFit:
    """Per measured family, the model's terms fitted on this CPU (``values`` as ``model.Fit``'s, rate at the
    model's reference threads), how, and the held-out errors."""

    cpu: LocalCpu
    values: dict[str, dict[str, float]] = field(default_factory=dict)
    how: dict[str, str] = field(default_factory=dict)
    held_out: dict[str, dict[str, Any]] = field(default_factory=dict)

    def has(self, family: str) -> bool:
        return family in self.values

    def predict(self, job: Job) -> float:
        return train_s(self.values[job.family], job, self.cpu.device())

    def terms(self, job: Job) -> tuple[float, float]:
        from .model import terms_s

        return terms_s(self.values[job.family], job, self.cpu.device())

    def interval(self, family: str, seconds: float) -> dict[str, Any] | None:
        h = self.held_out.get(family) or {}
        errs = [float(r["error_pct"]) for r in h.get("rows", [])]
        if not errs:
            return None
        lo, hi = min(min(errs), 0.0) / 100, max(max(errs), 0.0) / 100
        return {"low_s": seconds / (1 + hi), "high_s": seconds / (1 + lo), "n": len(errs),
                "basis": f"the smallest and largest of {len(errs)} leave-one-size-out errors of {family} on this CPU "
                         f"({min(errs):+.0f}% to {max(errs):+.0f}%)"}


def _samples(runs: Sequence[LocalRun], device: Device) -> list[Sample]:
    return [Sample(f"{r.job.family} {r.job.rows:,} rows here", r.job, device, r.seconds, 0, r.source) for r in runs]


def fit_local(cpu: LocalCpu, published: Fit) -> LocalFit:
    """This CPU's terms per family measured here (see the module docstring)."""
    dev = cpu.device()
    values: dict[str, dict[str, float]] = {}
    how: dict[str, str] = {}
    held: dict[str, dict[str, Any]] = {}
    for family in sorted({r.job.family for r in cpu.runs}):
        runs = [r for r in cpu.runs if r.job.family == family]
        sizes = sorted({r.job.rows for r in runs})
        if len(sizes) >= 2:
            f = fit(_samples(runs, dev))
            values[family] = dict(f.values)
            fixed = math.exp(f.values[f"cpu:{family}:fixed"])
            rate = rate_bytes_per_s(f.values, family, dev)
            how[family] = (f"fitted on {len(runs)} runs on this CPU ({sizes[0]:,} to {sizes[-1]:,} rows; "
                           f"{cpu.source}): {fixed * 1e3:.3g} ms per tree level fixed, histograms at "
                           f"{rate / 1e9:.2g} GB/s with its {cpu.threads} threads")
            if len(sizes) >= 3:
                held[family] = _leave_one_size_out(runs, dev)
        elif published.has(family, "cpu"):
            pub = dict(published.values)
            ratio = statistics.median(r.seconds / train_s(pub, r.job, dev) for r in runs)
            scaled = dict(pub)
            scaled[f"cpu:{family}:fixed"] += math.log(ratio)
            scaled[f"cpu:{family}:rate"] -= math.log(ratio)
            values[family] = scaled
            how[family] = (f"the published CPU fit at {cpu.threads} threads x {ratio:.2f}, the measured / predicted "
                           f"ratio of {len(runs)} run(s) at {sizes[0]:,} rows on this CPU ({cpu.source})")
    return LocalFit(cpu, values, how, held)


def _leave_one_size_out(runs: Sequence[LocalRun], dev: Device) -> dict[str, Any]:
    rows = []
    for size in sorted({r.job.rows for r in runs}):
        rest = [r for r in runs if r.job.rows != size]
        if len({r.job.rows for r in rest}) < 2:
            continue
        f = fit(_samples(rest, dev))
        for r in runs:
            if r.job.rows == size:
                p = f.predict(r.job, dev)
                rows.append({"rows": size, "measured_s": r.seconds, "predicted_s": p,
                             "error_pct": error_pct(p, r.seconds)})
    return {"by": "size", "rows": rows}
