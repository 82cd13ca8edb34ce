"""The backend seam, the null backend, the CPU's utilization/memory sensors and the labelled TDP estimate.

A backend turns one device's sensors into ``Sample``s. ``start`` opens a window (and returns its first
sample), ``read`` takes the next one, ``close`` releases the library. Backends are built by
``select.telemetry_backend`` or directly (tests hand them fake libraries); none raises at import, and a
missing library or sensor is an ``Unavailable`` backend that says why."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Protocol

import psutil

from .model import EnergyMethod, Sample, Source


class Sensors(Protocol):
    """Anything that reads samples: a full backend, or utilization-only sensors an estimate builds on."""

    label: str  # what is read, in words, for a result's basis

    def start(self, timestamp_s: float) -> Sample: ...

    def read(self, timestamp_s: float) -> Sample: ...

    def close(self) -> None: ...


class TelemetryBackend(Sensors, Protocol):
    source: Source
    basis: str
    energy_method: EnergyMethod
    update_interval_s: float  # how often the sensor behind energy_j / power_w refreshes
    reason: str | None  # why unavailable, or a caveat worth keeping with the result


class Unavailable:
    """No sensor: windows get no samples and no figures, and ``reason`` says why."""

    source: Source = "unavailable"
    energy_method: EnergyMethod = "none"
    update_interval_s = 0.0

    def __init__(self, reason: str) -> None:
        self.reason: str | None = reason
        self.label = "no sensor"
        self.basis = f"no power or energy figure: {reason}"

    def start(self, timestamp_s: float) -> Sample:
        return Sample(timestamp_s)

    def read(self, timestamp_s: float) -> Sample:
        return Sample(timestamp_s)

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"Unavailable({self.reason!r})"


def clock_tick_s() -> float:
    """The kernel's CPU-time accounting tick (USER_HZ), the resolution of /proc/stat's CPU times."""
    try:
        return 1.0 / os.sysconf("SC_CLK_TCK")
    except (ValueError, OSError, AttributeError):
        return 0.01


class CpuSensors:
    """System-wide CPU utilization from ``psutil.cpu_times()`` differenced between reads (psutil's own
    busy formula: everything but idle and iowait), and system memory in use. Both are seams.

    psutil's ``cpu_percent(interval=None)`` is avoided: its "since last call" state is shared with every other
    caller in the process."""

    def __init__(
        self,
        cpu_times: Callable[[], Any] = psutil.cpu_times,
        memory_used: Callable[[], int | None] | None = None,
    ) -> None:
        self.cpu_times = cpu_times
        self.memory_used = memory_used if memory_used is not None else _system_memory_used
        self.label = "psutil.cpu_times() busy share of all logical CPUs, system-wide"
        self._last: tuple[float, float] | None = None

    def _busy_total(self) -> tuple[float, float]:
        t = self.cpu_times()
        total = sum(float(v) for v in t)
        # Linux counts guest time inside user/nice as well: subtract it once, as psutil does.
        total -= float(getattr(t, "guest", 0.0)) + float(getattr(t, "guest_nice", 0.0))
        idle = float(t.idle) + float(getattr(t, "iowait", 0.0))
        return total - idle, total

    def utilization_pct(self) -> float | None:
        """Busy share since the previous call, or None when no CPU time was accounted in between."""
        now = self._busy_total()
        last, self._last = self._last, now
        if last is None:
            return None
        d_busy, d_total = now[0] - last[0], now[1] - last[1]
        if d_total <= 0:
            return None
        return min(100.0, max(0.0, 100.0 * d_busy / d_total))

    def start(self, timestamp_s: float) -> Sample:
        self._last = None
        self.utilization_pct()  # primes the interval; the first sample closes no interval
        return Sample(timestamp_s, memory_used_bytes=self.memory_used())

    def read(self, timestamp_s: float) -> Sample:
        return Sample(timestamp_s, utilization_pct=self.utilization_pct(), memory_used_bytes=self.memory_used())

    def close(self) -> None:
        pass


def _system_memory_used() -> int | None:
    try:
        vm = psutil.virtual_memory()
    except OSError:
        return None
    return int(vm.total - vm.available)


ESTIMATE_IDLE_SHARE = 0.1
"""Idle draw as a share of TDP in the estimate. Basis: CodeCarbon's CPU load model,
``TDP x (0.1 + 0.9 x load^3)`` (codecarbon/external/hardware.py), floors a CPU at 10% of its TDP at zero
load. We keep that floor and rise linearly with utilization to TDP at 100%, which over-estimates rather than
under-estimates partial loads. A rough figure for any device: it is why the result says ``estimated``."""


class EstimatedBackend:
    """No power sensor: power = idle + utilization x (TDP - idle), idle = ``idle_share`` x TDP.

    ``tdp_w`` and ``tdp_source`` come from the caller (the catalog row and its source); nothing here knows a
    hardware figure. Utilization comes from ``sensors`` (CPU times, or NVML utilization on a GPU without a
    power reading). Each interval's estimated power is held over that interval and summed into a running
    energy, so ``energy_j`` is the exact integral of the model over the window."""

    source: Source = "estimated"
    energy_method: EnergyMethod = "model"

    def __init__(
        self,
        sensors: Sensors,
        tdp_w: float,
        tdp_source: str,
        idle_share: float = ESTIMATE_IDLE_SHARE,
        why: str | None = None,
        update_interval_s: float | None = None,
    ) -> None:
        if not tdp_w > 0:
            raise ValueError(f"an estimate needs a positive TDP, got {tdp_w!r}")
        if not tdp_source:
            raise ValueError("an estimate needs the TDP's source")
        if not 0.0 <= idle_share <= 1.0:
            raise ValueError(f"idle_share must be within [0, 1], got {idle_share!r}")
        self.sensors = sensors
        self.tdp_w = float(tdp_w)
        self.tdp_source = tdp_source
        self.idle_share = idle_share
        self.idle_w = idle_share * self.tdp_w
        self.reason: str | None = why
        self.label = sensors.label
        self.update_interval_s = clock_tick_s() if update_interval_s is None else update_interval_s
        self.basis = (
            f"estimated, not measured: power = {idle_share:g} x TDP + utilization x (1 - {idle_share:g}) x TDP "
            f"with TDP = {self.tdp_w:g} W ({tdp_source}); utilization = {sensors.label}; each interval's "
            f"estimate held over the interval and summed; idle share {idle_share:g} after CodeCarbon's load "
            f"model floor (0.1 x TDP at zero load, codecarbon/external/hardware.py), rising linearly here"
            + (f"; no sensor because {why}" if why else ""))
        self._energy_j = 0.0
        self._last_t = 0.0
        self._last_p: float | None = None

    def power_w(self, utilization_pct: float) -> float:
        u = min(100.0, max(0.0, utilization_pct)) / 100.0
        return self.idle_w + u * (self.tdp_w - self.idle_w)

    def start(self, timestamp_s: float) -> Sample:
        s = self.sensors.start(timestamp_s)
        self._energy_j, self._last_t, self._last_p = 0.0, timestamp_s, None
        return Sample(timestamp_s, power_w=None, energy_j=0.0, utilization_pct=None,
                      memory_used_bytes=s.memory_used_bytes, core_clock_hz=s.core_clock_hz,
                      mem_clock_hz=s.mem_clock_hz, temperature_c=s.temperature_c,
                      throttle_reasons=s.throttle_reasons)

    def read(self, timestamp_s: float) -> Sample:
        s = self.sensors.read(timestamp_s)
        p = None if s.utilization_pct is None else self.power_w(s.utilization_pct)
        # No utilization for this interval (no CPU tick elapsed, or a failed read): hold the previous
        # estimate, or idle before any, so the running energy never skips time.
        held = p if p is not None else (self._last_p if self._last_p is not None else self.idle_w)
        self._energy_j += held * max(0.0, timestamp_s - self._last_t)
        self._last_t = timestamp_s
        if p is not None:
            self._last_p = p
        return Sample(timestamp_s, power_w=p, energy_j=self._energy_j, utilization_pct=s.utilization_pct,
                      memory_used_bytes=s.memory_used_bytes, core_clock_hz=s.core_clock_hz,
                      mem_clock_hz=s.mem_clock_hz, temperature_c=s.temperature_c,
                      throttle_reasons=s.throttle_reasons)

    def close(self) -> None:
        self.sensors.close()
