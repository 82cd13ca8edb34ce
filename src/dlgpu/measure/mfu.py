"""Model FLOPs utilization: the one definition. FLOPs per step come from dlgpu's operator profile of the step
(``analyze``), the peak from the catalog at the precision used; MFU = FLOPs / median step time / peak."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from dlgpu.results import BenchResult

from .plan import Plan


def mfu(achieved_flops_per_s: float, peak_flops_per_s: float) -> float:
    """Model FLOP utilization: achieved FLOP/s over the device's peak FLOP/s at the precision used."""
    if peak_flops_per_s <= 0:
        raise ValueError("peak_flops_per_s must be positive")
    return achieved_flops_per_s / peak_flops_per_s


def flops_note(flops: float, target: str, batch: int) -> str:
    return (f"{flops / 1e9:,.4g} GFLOP per step (dlgpu's operator profile of this step at batch {batch}, traced on "
            f"fake tensors as eager PyTorch runs it on a {target.upper()})")


ProfileFn = Callable[..., Any]
"""``(workload, task, precision, batch_size, overrides, target=...) -> OpProfile`` (``analyze.profiles.profile``)."""

PeakFn = Callable[[Any, str], tuple[float | None, str]]
"""``(device, precision) -> (peak FLOP/s or None, its basis)``."""

CeilingFn = Callable[[str, str], tuple[float, str] | None]
"""``(device id, precision) -> (this machine's measured GEMM ceiling in FLOP/s, where it comes from)`` or None:
what ``dlgpu probe`` stored (the api reads it)."""


class MfuCounter:
    """Adds FLOPs per step and MFU to measured results. One trace per workload, task, batch and target (seconds
    for a full-size model): autocast changes the dtypes of the same operators, not their FLOPs, so the other
    precisions reuse it and say so.

    MFU is always over the peak (the datasheet's, or the CPU's estimate): that is its definition. Where
    ``ceiling`` gives this machine's measured GEMM ceiling at the precision (``dlgpu probe``), the basis adds the
    step's share of it too: how far the step is from what this device's matrix multiplies really reach."""

    def __init__(self, profile: ProfileFn, peak: PeakFn, on_trace: Callable[[str], None] | None = None,
                 ceiling: CeilingFn | None = None) -> None:
        self._profile, self._peak, self._on_trace, self._ceiling = profile, peak, on_trace, ceiling
        self._counted: dict[tuple[Any, ...], tuple[float, float, str] | str] = {}  # (FLOPs, bytes, precision)/why

    def _count(self, plan: Plan, precision: str, batch: int, target: str) -> tuple[float, float, str] | str:
        key = (plan.spec.name, plan.task, batch, target, repr(sorted(plan.overrides.items())))
        if key not in self._counted:
            if self._on_trace is not None:
                self._on_trace(f"{plan.spec.name} {plan.task}: counting FLOPs (operator profile)")
            try:
                prof = self._profile(plan.spec.name, plan.task, precision, batch, plan.overrides, target=target)
                self._counted[key] = (float(prof.flops), float(prof.bytes), precision)
            except Exception as exc:  # a model that cannot be traced on fake tensors (data-dependent shapes)
                self._counted[key] = f"no MFU: the step cannot be traced on fake tensors ({type(exc).__name__}: {exc})"
        return self._counted[key]

    def add(self, result: BenchResult, plan: Plan) -> BenchResult:
        """``result`` with ``flops_per_step``, ``bytes_per_step``, ``mfu`` and ``mfu_basis`` (why none, if none)."""
        stats, batch = result.step_time, result.batch_size
        if result.status != "ok" or stats is None or not batch:
            return result
        if plan.spec.family == "custom":
            return replace(result, mfu_basis="no MFU: a custom --model workload has no operator profile")
        if getattr(plan, "finetune", None) is not None:
            return replace(result, mfu_basis="no MFU: dlgpu's operator profile traces the train and infer steps, "
                                             "not a fine-tuning step (frozen weights, adapters, 4-bit layers)")
        target = "cpu" if plan.device.kind == "cpu" else "gpu"
        counted = self._count(plan, result.precision, batch, target)
        if isinstance(counted, str):
            return replace(result, mfu_basis=counted[:400])
        flops, traffic, at = counted
        result = replace(result, bytes_per_step=traffic or None)
        note = flops_note(flops, target, batch) + ("" if at == result.precision else
                                                   f", counted on the {at} step: autocast changes the dtypes of the "
                                                   "same operators, not their FLOPs")
        peak, peak_basis = self._peak(plan.device, result.precision)
        if flops <= 0 or not peak:
            why = "the profile counts no FLOPs" if flops <= 0 else f"no peak FLOP/s: {peak_basis}"
            return replace(result, flops_per_step=flops or None, mfu_basis=f"no MFU: {why}; {note}")
        achieved = flops / stats.median
        how = (f"{note} / median step time {stats.median:.4g} s = {achieved / 1e9:,.4g} GFLOP/s achieved, "
               f"over the peak {peak / 1e9:,.4g} GFLOP/s ({peak_basis})")
        measured = None if self._ceiling is None else self._ceiling(plan.device.id, result.precision)
        if measured is not None:
            how += (f"; {achieved / measured[0]:.1%} of this machine's measured {result.precision} GEMM ceiling "
                    f"{measured[0] / 1e9:,.4g} GFLOP/s ({measured[1]})")
        if achieved > peak:  # a utilization over 100% says the peak is wrong, not the device
            return replace(result, flops_per_step=flops, mfu_basis=(
                f"no MFU: the step achieved more than the peak taken for it, so that peak understates the device; "
                f"{how}"))
        return replace(result, flops_per_step=flops, mfu=mfu(achieved, peak), mfu_basis=how)
