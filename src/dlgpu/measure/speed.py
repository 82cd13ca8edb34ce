"""The machine-speed check of ``dlgpu bench``: is this CPU as fast now as when it was probed?

A virtual machine can slow down with nothing inside it to show why (neighbours on the host, clocks the guest cannot
see): the contention probe (``measure.contention``) sees other processes' CPU time and steal, not a slower host. So
before the first timed result and after the last one, a bench run on the CPU times a short reference, the same
operation and size as a figure of this machine's newest uncontended ``dlgpu probe`` (``torch.matmul`` of n=1024 at
fp32, and at bf16 where the CPU has native bf16 and the probe has that figure), with the probe's own machinery
(``probe.run.gemm_sweep``: random inputs, warm-up, ``measure.timer.Timer``, the contention probe) on a short budget,
and compares: ratio = measured now / probed. A run whose ratio falls under ``SLOWED_RATIO`` before or after is
``slowed``: its timings are not comparable with runs at full speed.

Every result gets ``settings["machine_speed"]`` (``SpeedCheck.settings_for``); where nothing was checked (no probe
stored, a probe without the figure, a GPU), it says so and why. The check never fails a run.

The stored probe comes from the caller (``StoredProbeFn``; the api reads ``store.history.newest_probe``): ``measure``
does not import ``store``. torch is imported inside the functions that time only."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from dlgpu.measure.timer import Budget
from dlgpu.results import DeviceInfo

StoredProbeFn = Callable[[str], tuple[Mapping[str, Any] | None, str]]
"""device id -> (this machine's newest uncontended ``dlgpu.probe/1`` document that measured it, or None; why none)."""

SLOWED_RATIO = 0.85
"""A run is ``slowed`` when a reference ran at under this share of its probed rate (before or after the run). The
probes stored on the 2-core development VM put each figure's own spread well inside it: fp32 GEMM n=1024's middle
half of steps is within about +-1% of its median (IQR 2%) and three full or quick probes of one day gave 343-357
GFLOP/s (4% apart); bf16 n=1024's IQR is 2.6% and those probes gave 1.30-1.49 TFLOP/s (7% either side of their
middle). 15% is about four times fp32's probe-to-probe spread and twice bf16's, so a flagged run is slower than the
probe's own noise explains; the slowdown seen on that VM (bf16 985 GFLOP/s against 1.44 TFLOP/s probed: 0.68) is
well past it."""

REFERENCE_SIZE = 1024
"""The reference product's n (n x n x n): a size every probe measures (the full sweep's and ``--quick``'s), large
enough to run at the GEMM's sustained rate, small enough that a step is milliseconds."""

REFERENCE_PRECISIONS: tuple[str, ...] = ("fp32", "bf16")
"""fp32 always; bf16 where this CPU has native bf16 (``DeviceInfo.details["native_bf16"]``) and the probe has it."""

REFERENCE_BUDGET = Budget(warmup_steps=1, min_steps=5, max_steps=10, budget_s=0.15, ci_rel=0.02)
"""One reference figure: one warm-up step, then 5 to 10 timed steps, stopping once the median's 95% interval is
within +-2% or the steps add up to 0.15 s. Two references, before and after: about 0.8 s in all on the 2-core VM
(each figure also sizes its step with a few untimed calls)."""

REFERENCE_MIN_STEP_S = 0.02
"""A timed step of the reference runs calls until it lasts about this long (fp32 n=1024 on 2 cores: 3 calls), so
that 5 steps already give a steady median."""


@dataclass(frozen=True)
class Reference:
    """One stored probe figure to check against: a GEMM at ``precision`` and n=``size`` on ``device``."""

    device: str
    precision: str
    size: int
    probed: float  # FLOP/s, the probe figure's value (median)
    probed_low: float  # the middle half of its steps
    probed_high: float
    threads: int | None  # the CPU threads the probe ran it on

    @property
    def label(self) -> str:
        threads = f", {self.threads} threads" if self.threads else ""
        return f"{self.precision} GEMM n={self.size} (torch.matmul{threads})"


def is_slowed(ratio: float | None) -> bool:
    """A ratio (now / probed) under ``SLOWED_RATIO``; None (not measured) is not slowed."""
    return ratio is not None and ratio < SLOWED_RATIO


def speed_ratio(measured: float | None, probed: float) -> float | None:
    """now / probed (None where nothing was measured)."""
    return None if measured is None or not probed > 0 else measured / probed


def references_in(doc: Mapping[str, Any], device: DeviceInfo) -> tuple[list[Reference], str]:
    """The reference figures of ``device`` in a stored probe document (fp32; bf16 where the CPU has native bf16),
    uncontended, at ``REFERENCE_SIZE``; or none and why."""
    from dlgpu.results.probe import probe_from_dict

    rep = probe_from_dict(doc)
    found: dict[str, Reference] = {}
    for f in rep.of(device.id):
        if f.what != "gemm" or f.size != REFERENCE_SIZE or f.precision not in REFERENCE_PRECISIONS or f.contended:
            continue
        if f.precision == "bf16" and not device.details.get("native_bf16"):
            continue
        low, high = f.spread
        threads = f.settings.get("threads")
        found[str(f.precision)] = Reference(device.id, str(f.precision), REFERENCE_SIZE, f.value, low, high,
                                            int(threads) if threads else None)
    if "fp32" not in found:
        run = str(doc.get("run_id") or "")[:8] or "unsaved"
        return [], (f"the stored `dlgpu probe` (run {run}) has no uncontended fp32 GEMM n={REFERENCE_SIZE} figure on "
                    f"{device.id}: run `dlgpu probe` to check this machine's speed")
    return [found[p] for p in REFERENCE_PRECISIONS if p in found], ""


@dataclass
class _Measured:
    ref: Reference
    before: float | None = None
    after: float | None = None
    contended_before: bool | None = None
    contended_after: bool | None = None

    @property
    def ratio_before(self) -> float | None:
        return speed_ratio(self.before, self.ref.probed)

    @property
    def ratio_after(self) -> float | None:
        return speed_ratio(self.after, self.ref.probed)

    @property
    def worst(self) -> float:
        ratios = [r for r in (self.ratio_before, self.ratio_after) if r is not None]
        return min(ratios) if ratios else float("inf")

    def to_dict(self) -> dict[str, Any]:
        return {"reference": self.ref.label, "precision": self.ref.precision, "probed_value": self.ref.probed,
                "probed_low": self.ref.probed_low, "probed_high": self.ref.probed_high,
                "measured_before": self.before, "measured_after": self.after, "ratio_before": self.ratio_before,
                "ratio_after": self.ratio_after, "contended_before": self.contended_before,
                "contended_after": self.contended_after,
                "slowed": is_slowed(self.ratio_before) or is_slowed(self.ratio_after)}


def measure_reference(ref: Reference, device: DeviceInfo, seams: Any = None,
                      budget: Budget = REFERENCE_BUDGET, min_step_s: float = REFERENCE_MIN_STEP_S,
                      ) -> tuple[float, bool | None]:
    """(FLOP/s now, contended) of ``ref`` timed as the probe times it (``probe.run.gemm_sweep`` at one size), on
    the probe's thread count; ``seams``: the probe's ``Seams`` (a fake clock in the tests; no re-measure by
    default: the check must stay short)."""
    import torch

    from dlgpu.probe.peaks import Peak
    from dlgpu.probe.run import QUICK, Seams, cpu_threads, gemm_sweep

    settings = replace(QUICK, gemm_sizes_cpu=(ref.size,), min_step_s_cpu=min_step_s, budget=budget)
    with cpu_threads(ref.threads if device.kind == "cpu" else None):
        figs, skipped = gemm_sweep(torch, device, ref.precision, (ref.size,), settings,
                                   Peak(None, "machine-speed reference"), seams or Seams(remeasure=0),
                                   lambda: None, lambda f: None)
    if not figs:
        raise RuntimeError(skipped[0].reason if skipped else "no figure")
    return figs[0].value, figs[0].contended


@dataclass
class SpeedCheck:
    """The check of one bench run: ``before()`` ahead of the first timed result, ``after()`` behind the last one,
    ``settings_for(device)`` the ``machine_speed`` setting of each result. ``why_not``: why nothing is checked (no
    probe, a probe without the figure, no CPU in the run, a failed reference)."""

    device: DeviceInfo | None
    references: list[Reference] = field(default_factory=list)
    probe_run: str | None = None
    probe_created: str = ""
    why_not: str = ""
    seams: Any = None
    budget: Budget = REFERENCE_BUDGET
    min_step_s: float = REFERENCE_MIN_STEP_S
    measured: list[_Measured] = field(default_factory=list)
    after_error: str = ""

    @classmethod
    def for_run(cls, cpu: DeviceInfo, devices: Sequence[DeviceInfo], stored_probe: StoredProbeFn | None,
                **kw: Any) -> SpeedCheck:
        """The check of a run on ``devices`` (the plans'): the CPU's references from the stored probe, or why
        there are none."""
        if not any(d.kind == "cpu" for d in devices):
            return cls(None, why_not="no CPU result in this run (the check times the CPU)", **kw)
        if stored_probe is None:
            return cls(cpu, why_not="not checked: no stored `dlgpu probe` was handed to this run (`dlgpu bench` "
                                    "reads this machine's newest)", **kw)
        try:
            doc, why = stored_probe(cpu.id)
        except Exception as exc:  # a database this version cannot read: never fail the run
            doc, why = None, f"{type(exc).__name__}: {exc}"
        if doc is None:
            hint = "" if "run `dlgpu probe`" in why else ": run `dlgpu probe` to check this machine's speed"
            return cls(cpu, why_not=f"not checked: {why or 'no probe stored'}{hint}", **kw)
        refs, why = references_in(doc, cpu)
        if not refs:
            return cls(cpu, why_not=f"not checked: {why}", **kw)
        return cls(cpu, refs, str(doc.get("run_id") or "") or None, str(doc.get("created_at") or ""), **kw)

    @property
    def active(self) -> bool:
        return self.device is not None and bool(self.references) and not self.why_not

    def describe(self) -> str:
        refs = " and ".join(r.label for r in self.references)
        run = f"`dlgpu probe` run {self.probe_run[:8]}" if self.probe_run else "`dlgpu probe`"
        return f"{refs} against {run} of {self.probe_created[:10]}"

    def _time(self, when: str) -> None:
        if not self.active or self.device is None:
            return
        if not self.measured:
            self.measured = [_Measured(r) for r in self.references]
        try:
            for m in self.measured:
                value, contended = measure_reference(m.ref, self.device, self.seams, self.budget, self.min_step_s)
                setattr(m, when, value)
                setattr(m, f"contended_{when}", contended)
        except Exception as exc:  # the reference must never fail a run
            why = (f"the reference GEMM failed {when} the run: {type(exc).__name__}: "
                   f"{str(exc).splitlines()[0][:200] if str(exc) else ''}")
            if when == "before":
                self.why_not = f"not checked: {why}"
            else:
                self.after_error = why

    def before(self) -> None:
        self._time("before")

    def after(self) -> None:
        self._time("after")

    def summary(self) -> dict[str, Any]:
        """The ``machine_speed`` setting of a CPU result: the reference that slowed the most (its ratios, figures
        and the probe run), every reference, the threshold and ``slowed``; or ``checked`` false and why."""
        if not self.active or any(m.before is None for m in self.measured) or not self.measured:
            why = self.why_not or "not checked: the reference has not run yet"
            return {"checked": False, "why": why}
        worst = min(self.measured, key=lambda m: m.worst)
        slowed = any(is_slowed(m.ratio_before) or is_slowed(m.ratio_after) for m in self.measured)
        return {"checked": True, "ratio_before": worst.ratio_before, "ratio_after": worst.ratio_after,
                "reference": f"{worst.ref.label} against `dlgpu probe` run {(self.probe_run or 'unsaved')[:8]} of "
                             f"{self.probe_created[:10]}",
                "probe_run": self.probe_run, "probed_value": worst.ref.probed, "measured_before": worst.before,
                "measured_after": worst.after, "slowed": slowed, "threshold": SLOWED_RATIO,
                "references": [m.to_dict() for m in self.measured],
                **({"after_error": self.after_error} if self.after_error else {})}

    def settings_for(self, device: str) -> dict[str, Any]:
        """``machine_speed`` of a result on ``device``: the CPU's check; a GPU's is not checked yet."""
        if self.device is not None and device == self.device.id:
            return self.summary()
        if device == "cpu":
            return {"checked": False, "why": self.why_not or "not checked"}
        return {"checked": False, "why": f"the machine-speed check times the CPU only; {device}'s speed is not "
                                         "checked yet"}

