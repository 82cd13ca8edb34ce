"""What ``advise`` is asked: the job (how many samples, from the workload's real task or given) and the
constraints and prices it is judged under, every figure with its unit and its provenance (given, or a default
that says it is an assumption). Everything is validated here, before anything is predicted."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dlgpu.errors import BadInput
from dlgpu.results import SOURCES, TASKS, Constraints, Figure, Job
from dlgpu.units import format_duration
from dlgpu.workloads.registry import WorkloadSpec

DEFAULT_DEADLINE_S = 24 * 3600.0
DEFAULT_ELECTRICITY_USD_PER_KWH = 0.15
DEFAULT_HOURS_PER_DAY = 8.0
DEFAULT_LIFETIME_YEARS = 3.0
DEFAULT_CARBON_G_PER_KWH = 475.0
CARBON_BASIS = "default: the world-average intensity CodeCarbon falls back to (see MEASUREMENT.md §3)"


@dataclass(frozen=True)
class JobSize:
    """The job as asked: training ``epochs`` over ``dataset_size`` samples, or ``samples`` to infer/decode;
    None: from the workload's real task."""

    dataset_size: float | None = None
    epochs: float | None = None
    samples: float | None = None


@dataclass(frozen=True)
class Limits:
    """The constraints and prices as asked (None: the default, which the advice labels an assumption)."""

    deadline_s: float | None = None
    deadline_basis: str | None = None  # how the caller named it, e.g. "--deadline 12h"
    budget_usd: float | None = None
    max_power_w: float | None = None
    electricity_usd_per_kwh: float | None = None
    carbon_g_per_kwh: float | None = None
    pue: float = 1.0
    hours_per_day: float | None = None
    lifetime_years: float | None = None
    power_factor: float = 1.0  # share of TDP drawn where power was not measured


def _non_negative(value: float | None, param: str, zero_ok: bool = False) -> None:
    if value is not None and (not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok)):
        raise BadInput(f"{value:g}: must be a {'non-negative' if zero_ok else 'positive'} number", param=param)


def validate(task: str, size: JobSize, limits: Limits, sources: Sequence[str], batch_size: int | None) -> None:
    """``BadInput`` naming the parameter for anything out of range."""
    if task not in TASKS:
        raise BadInput(f"{task}: not one of {', '.join(TASKS)}", param="task")
    for value, param, zero_ok in ((limits.budget_usd, "budget_usd", True), (limits.max_power_w, "max_power_w", False),
                                  (limits.electricity_usd_per_kwh, "electricity_usd_per_kwh", True),
                                  (limits.carbon_g_per_kwh, "carbon_g_per_kwh", True),
                                  (limits.lifetime_years, "lifetime_years", False),
                                  (limits.deadline_s, "deadline_s", False), (size.dataset_size, "dataset_size", False),
                                  (size.epochs, "epochs", False), (size.samples, "samples", False)):
        _non_negative(value, param, zero_ok)
    if limits.hours_per_day is not None and not 0 < limits.hours_per_day <= 24:
        raise BadInput(f"{limits.hours_per_day:g}: must be in (0, 24]", param="hours_per_day")
    if not limits.pue >= 1:
        raise BadInput(f"{limits.pue:g}: a power usage effectiveness is 1 or more", param="pue")
    if not 0 < limits.power_factor <= 1:
        raise BadInput(f"{limits.power_factor:g}: must be in (0, 1] (the share of TDP drawn)", param="power_factor")
    if batch_size is not None and batch_size <= 0:
        raise BadInput(f"{batch_size}: must be a positive integer", param="batch_size")
    bad = [s for s in sources if s not in SOURCES]
    if bad:
        raise BadInput(f"{bad[0]}: not a candidate source (valid: {', '.join(SOURCES)})", param="sources")


def job(spec: WorkloadSpec, params: Mapping[str, Any], task: str, size: JobSize) -> Job:
    """The samples the job processes, what it is, and where that comes from."""
    f = spec.facts
    unit = "tokens" if task == "decode" else f"{spec.sample_unit}s"
    if task == "train" and (size.dataset_size is not None or size.epochs is not None):
        n = size.dataset_size if size.dataset_size is not None else f.train_samples
        e = size.epochs if size.epochs is not None else f.epochs
        if n is None or e is None:
            raise BadInput(f"{spec.name}: give both the dataset size and the epochs (its real task does not say "
                           f"{'the dataset size' if n is None else 'the epochs'})", param="dataset_size")
        given = ("dataset size and epochs" if size.dataset_size is not None and size.epochs is not None else
                 ("dataset size" if size.dataset_size is not None else "epochs") + " with the rest from the real task")
        return Job(n * e, f"{e:g} epochs of {n:,.0f} {spec.sample_unit}s", f"given ({given})", unit)
    if task != "train" and size.samples is not None:
        return Job(size.samples, f"{size.samples:,.0f} {unit}", "given (samples)", unit)
    real = spec.task_samples(task, params)
    if real is None:
        need = "the dataset size and the epochs" if task == "train" else "the samples"
        raise BadInput(f"{spec.name} {task}: no real task is recorded for it; give {need}",
                       param="dataset_size" if task == "train" else "samples")
    return Job(real[0], real[1], f"the workload's real task, sources in `dlgpu workloads show {spec.name}`", unit)


def constraints(limits: Limits) -> Constraints:
    """The constraints with their defaults filled in, each default labelled as one."""
    deadline = DEFAULT_DEADLINE_S if limits.deadline_s is None else limits.deadline_s
    basis = (f"default: {format_duration(DEFAULT_DEADLINE_S)}" if limits.deadline_s is None
             else limits.deadline_basis or f"given: {format_duration(deadline)}")
    elec, carbon = limits.electricity_usd_per_kwh, limits.carbon_g_per_kwh
    return Constraints(
        deadline_s=deadline, deadline_basis=basis, budget_usd=limits.budget_usd, max_power_w=limits.max_power_w,
        electricity_usd_per_kwh=Figure(DEFAULT_ELECTRICITY_USD_PER_KWH, "assumed",
                                       "default, an assumption: set the electricity price") if elec is None
        else Figure(elec, "given", "given"),
        carbon_g_per_kwh=Figure(DEFAULT_CARBON_G_PER_KWH, "assumed", CARBON_BASIS) if carbon is None
        else Figure(carbon, "given", "given"),
        pue=limits.pue, hours_per_day=limits.hours_per_day or DEFAULT_HOURS_PER_DAY,
        lifetime_years=limits.lifetime_years or DEFAULT_LIFETIME_YEARS, power_factor=limits.power_factor)
