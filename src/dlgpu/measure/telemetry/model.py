"""The telemetry data model and the pure arithmetic on it: samples, a window's result, energy integration,
counter differencing with wraparound, and the efficiency figures derived from a window.

Raw samples are kept in the result; every statistic (energy, average and peak power, mean utilization,
throttling) is a property derived from them, never stored instead of them. No torch and no vendor library
here: stored results can be recomputed anywhere."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

Source = Literal["measured-nvml", "measured-rapl", "measured-amdsmi", "estimated", "unavailable"]
"""Where a window's power figures come from. ``estimated`` is a model (TDP x utilization), never a sensor;
``unavailable`` means no figure at all (the result's ``reason`` says why)."""

MEASURED_SOURCES: tuple[str, ...] = ("measured-nvml", "measured-rapl", "measured-amdsmi")

EnergyMethod = Literal["counter", "trapezoid", "model", "none"]
"""How ``energy_j`` is obtained from the samples: ``counter`` differences a hardware energy counter (first and
last sample); ``trapezoid`` integrates instantaneous power samples; ``model`` differences the estimate's own
running integral (estimated power held constant over each sampling interval); ``none``: no energy."""

DEFAULT_PERIOD_S = 0.1
"""Sampling period. Fast enough to poll RAPL well inside its wrap period and to catch power transients of a
training step, slow enough that sampling costs well under 1% of a 2-core CPU (benchmarks/telemetry_overhead.py)."""

MIN_WINDOW_UPDATES = 10
"""A window must span at least this many sensor updates. A counter that ticks every ``u`` seconds can lag by
up to one tick at each edge, so 10 ticks bound the quantization error to about 10% of the window's energy."""

THROTTLING_REASONS: frozenset[str] = frozenset(
    {"sw_power_cap", "hw_slowdown", "sw_thermal_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown"})
"""Reasons that mean the clocks were held below what the work asked for. Others that NVML reports (``gpu_idle``,
``applications_clocks_setting``, ``sync_boost``, ``display_clock_setting``) are kept in the samples but do not
set ``throttled``."""


@dataclass(frozen=True)
class Sample:
    """One reading of a device's sensors. ``None`` = not available from this backend (or this read failed).

    ``energy_j`` is a cumulative energy counter in joules (its zero is arbitrary; only differences matter),
    already unwrapped by the backend. ``power_w`` is either instantaneous (NVML, amdsmi) or the average over the
    interval this sample closes (RAPL, the estimate). ``core_clock_hz`` is the SM clock (NVIDIA) or GFX clock
    (AMD). ``utilization_pct`` is NVML's/amdsmi's busy share, or for a CPU the system-wide busy share of all
    logical CPUs over the interval this sample closes."""

    timestamp_s: float
    power_w: float | None = None
    energy_j: float | None = None
    utilization_pct: float | None = None
    memory_used_bytes: int | None = None
    core_clock_hz: float | None = None
    mem_clock_hz: float | None = None
    temperature_c: float | None = None
    throttle_reasons: tuple[str, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if self.throttle_reasons is not None:
            d["throttle_reasons"] = list(self.throttle_reasons)
        return d


def trapezoid_energy_j(times_s: Sequence[float], powers_w: Sequence[float]) -> float:
    """Energy of a power trace by the trapezoid rule: exact for power that is linear between samples."""
    if len(times_s) != len(powers_w):
        raise ValueError(f"{len(times_s)} timestamps but {len(powers_w)} power samples")
    energy = 0.0
    for i in range(1, len(times_s)):
        dt = times_s[i] - times_s[i - 1]
        if dt < 0:
            raise ValueError(f"timestamps go backwards at index {i}")
        energy += 0.5 * (powers_w[i] + powers_w[i - 1]) * dt
    return energy


def counter_delta(before: float, after: float, max_range: float | None = None) -> float:
    """How far a monotonic counter advanced from ``before`` to ``after``, allowing for one wraparound.

    A counter that reached ``max_range`` restarts at 0 (RAPL's ``energy_uj`` at ``max_energy_range_uj``), so a
    smaller ``after`` means it advanced ``max_range - before + after``. Polling must be faster than one full
    wrap (range / power), which no reading can detect."""
    if after >= before:
        return after - before
    if max_range is None:
        raise ValueError(f"counter went backwards ({before} -> {after}) and has no wraparound range")
    return max_range - before + after


def counter_total(readings: Sequence[float], max_range: float | None = None) -> float:
    """Total advance of a counter over consecutive readings, each step allowing one wraparound."""
    return sum(counter_delta(readings[i - 1], readings[i], max_range) for i in range(1, len(readings)))


@dataclass(frozen=True)
class TelemetryResult:
    """What a device's sensors said over one measured window, raw samples included.

    The first sample is read at ``window_start_s`` and the last at ``window_end_s`` (both on the sampler's
    clock), so counters are differenced over exactly the window. ``idle_power_w`` is a baseline measured
    beforehand with the device idle (``Telemetry.measure_idle``); ``net_*`` figures subtract it."""

    source: Source
    basis: str  # how the figures were obtained, in words (sensor, units, formula for an estimate)
    energy_method: EnergyMethod
    samples: tuple[Sample, ...]
    window_start_s: float
    window_end_s: float
    period_s: float
    min_window_s: float  # the shortest window the sensor can measure to within ~1/MIN_WINDOW_UPDATES
    device: str | None = None
    reason: str | None = None  # why unavailable, or read errors met during the window
    idle_power_w: float | None = None
    idle_basis: str | None = None

    @property
    def measured(self) -> bool:
        return self.source in MEASURED_SOURCES

    @property
    def duration_s(self) -> float:
        return self.window_end_s - self.window_start_s

    @property
    def too_short(self) -> bool:
        """True when the window is shorter than the sensor can resolve: extend the run to ``min_window_s``."""
        return self.source != "unavailable" and self.duration_s < self.min_window_s

    def _steady(self) -> list[tuple[Sample, float]]:
        """(sample, length of the interval it closes). Samples closing an interval under half a period (the
        final read at stop, right after a periodic one) are dropped: interval averages over a few clock ticks
        are noise. The first sample closes no interval (length 0)."""
        out: list[tuple[Sample, float]] = []
        for i, s in enumerate(self.samples):
            dt = 0.0 if i == 0 else s.timestamp_s - self.samples[i - 1].timestamp_s
            if i == 0 or dt >= 0.5 * self.period_s:
                out.append((s, dt))
        return out

    @property
    def energy_j(self) -> float | None:
        """Energy the device used over the window (gross: idle draw included)."""
        if self.energy_method in ("counter", "model"):
            pts = [s.energy_j for s in self.samples if s.energy_j is not None]
            return pts[-1] - pts[0] if len(pts) >= 2 else None
        if self.energy_method == "trapezoid":
            pw = [(s.timestamp_s, s.power_w) for s in self.samples if s.power_w is not None]
            if len(pw) < 2:
                return None
            return trapezoid_energy_j([t for t, _ in pw], [p for _, p in pw])
        return None

    @property
    def avg_power_w(self) -> float | None:
        e = self.energy_j
        if e is None or self.duration_s <= 0:
            return None
        return e / self.duration_s

    @property
    def peak_power_w(self) -> float | None:
        powers = [s.power_w for s, _ in self._steady() if s.power_w is not None]
        return max(powers) if powers else None

    @property
    def mean_utilization_pct(self) -> float | None:
        """Mean utilization, each sample weighted by the interval it closes (a plain mean if none has one)."""
        pts = [(s.utilization_pct, dt) for s, dt in self._steady() if s.utilization_pct is not None]
        if not pts:
            return None
        total = sum(dt for _, dt in pts)
        if total <= 0:
            return sum(u for u, _ in pts) / len(pts)
        return sum(u * dt for u, dt in pts) / total

    @property
    def throttle_reasons(self) -> tuple[str, ...]:
        """Every clock-event reason any sample reported, sorted."""
        seen: set[str] = set()
        for s in self.samples:
            seen.update(s.throttle_reasons or ())
        return tuple(sorted(seen))

    @property
    def throttled(self) -> bool | None:
        """Whether clocks were held down (power cap, thermal, power brake) at any sample; None if unknown."""
        if not any(s.throttle_reasons is not None for s in self.samples):
            return None
        return bool(THROTTLING_REASONS.intersection(self.throttle_reasons))

    @property
    def idle_energy_j(self) -> float | None:
        """What the idle baseline would have used over this window."""
        return None if self.idle_power_w is None else self.idle_power_w * self.duration_s

    @property
    def net_energy_j(self) -> float | None:
        """Energy above the idle baseline: what the work itself cost. Not clamped: a negative value says the
        baseline was noisier than the difference."""
        e, idle = self.energy_j, self.idle_energy_j
        return None if e is None or idle is None else e - idle

    @property
    def net_avg_power_w(self) -> float | None:
        e = self.net_energy_j
        return None if e is None or self.duration_s <= 0 else e / self.duration_s

    def with_idle(self, baseline: TelemetryResult) -> TelemetryResult:
        """This window with ``baseline``'s average power as its idle draw (same sensor required)."""
        if baseline.source != self.source:
            raise ValueError(f"idle baseline from {baseline.source}, window from {self.source}: not comparable")
        if baseline.avg_power_w is None:
            return dataclasses.replace(self, idle_power_w=None,
                                       idle_basis=f"idle window gave no power ({baseline.reason or 'no samples'})")
        return dataclasses.replace(
            self, idle_power_w=baseline.avg_power_w,
            idle_basis=(f"average power over a {baseline.duration_s:.3g} s idle window ({len(baseline.samples)} "
                        f"samples, {baseline.source}, {baseline.energy_method})"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "measured": self.measured,
            "basis": self.basis,
            "energy_method": self.energy_method,
            "device": self.device,
            "reason": self.reason,
            "window_start_s": self.window_start_s,
            "window_end_s": self.window_end_s,
            "duration_s": self.duration_s,
            "period_s": self.period_s,
            "min_window_s": self.min_window_s,
            "too_short": self.too_short,
            "energy_j": self.energy_j,
            "avg_power_w": self.avg_power_w,
            "peak_power_w": self.peak_power_w,
            "mean_utilization_pct": self.mean_utilization_pct,
            "throttled": self.throttled,
            "throttle_reasons": list(self.throttle_reasons),
            "idle_power_w": self.idle_power_w,
            "idle_basis": self.idle_basis,
            "idle_energy_j": self.idle_energy_j,
            "net_energy_j": self.net_energy_j,
            "net_avg_power_w": self.net_avg_power_w,
            "samples": [s.to_dict() for s in self.samples],
        }


def energy_j_per_step(energy_j: float, steps: int) -> float:
    if steps <= 0:
        raise ValueError("steps must be positive")
    return energy_j / steps


def energy_j_per_sample(energy_j: float, samples: float) -> float:
    if samples <= 0:
        raise ValueError("samples must be positive")
    return energy_j / samples


def samples_per_s_per_w(samples_per_s: float, power_w: float) -> float:
    """Throughput per watt = samples per joule."""
    if power_w <= 0:
        raise ValueError("power_w must be positive")
    return samples_per_s / power_w


@dataclass(frozen=True)
class Efficiency:
    """Energy and compute efficiency of one window. ``net`` = idle baseline subtracted from the energy."""

    source: Source
    net: bool
    energy_j: float | None
    energy_j_per_step: float | None
    energy_j_per_sample: float | None
    samples_per_s_per_w: float | None
    achieved_flops_per_s: float | None
    mfu: float | None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def efficiency(
    result: TelemetryResult,
    *,
    steps: int,
    samples: float,
    samples_per_s: float | None = None,
    flops: float | None = None,
    peak_flops_per_s: float | None = None,
    net: bool = False,
) -> Efficiency:
    """Per-step and per-sample energy, samples/s per watt and MFU for the ``steps`` steps (``samples`` samples,
    ``flops`` FLOPs in all) that ran inside ``result``'s window.

    ``samples_per_s`` defaults to ``samples / duration``; pass the harness's figure (batch / median step) to
    keep one throughput across the report. Watts are the window's average power (net of idle if ``net``).
    Achieved FLOP/s = ``flops / duration``; MFU needs ``peak_flops_per_s`` from the catalog."""
    from dlgpu.measure.mfu import mfu

    energy = result.net_energy_j if net else result.energy_j
    power = result.net_avg_power_w if net else result.avg_power_w
    duration = result.duration_s
    sps = samples_per_s if samples_per_s is not None else (samples / duration if duration > 0 else None)
    achieved = flops / duration if flops is not None and duration > 0 else None
    return Efficiency(
        source=result.source,
        net=net,
        energy_j=energy,
        energy_j_per_step=None if energy is None else energy_j_per_step(energy, steps),
        energy_j_per_sample=None if energy is None else energy_j_per_sample(energy, samples),
        samples_per_s_per_w=None if sps is None or power is None or power <= 0 else samples_per_s_per_w(sps, power),
        achieved_flops_per_s=achieved,
        mfu=None if achieved is None or not peak_flops_per_s else mfu(achieved, peak_flops_per_s),
    )
