"""Per ``bench`` run sensor sessions: each device's catalog facts (TDP, peaks), one open telemetry backend and
its idle baseline, made when the device is first measured and closed at the end of the run."""

from __future__ import annotations

from typing import Any

from dlgpu.results import DeviceInfo

IDLE_BASELINE_S = {True: 1.0, False: 3.0}
"""Seconds of idle baseline per device per ``bench`` run (quick, standard), or the per-configuration budget if
shorter (an idle window as long as the windows it is subtracted from; at least the sensor's minimum window):
measured once, before the first configuration on the device, and subtracted from every window's energy there."""


class DeviceEnergy:
    """The sensor session of one ``bench`` run: ``setup(device)`` opens a device's backend and measures its idle
    baseline the first time; ``summary`` records per device what was used; ``close()`` closes every backend."""

    def __init__(self, enabled: bool, period_s: float, idle_s: float) -> None:
        self.enabled, self.period_s, self.idle_s = enabled, period_s, idle_s
        self._catalog: Any = None
        self._facts: dict[str, Any] = {}
        self._setups: dict[str, Any] = {}
        self.summary: dict[str, dict[str, Any]] = {}

    def facts(self, device: DeviceInfo) -> Any:
        """The device's ``catalog.DeviceFacts`` (TDP, peak FLOP/s per precision, with their basis)."""
        from dlgpu.catalog import device_facts, load_catalog

        if device.id not in self._facts:
            if self._catalog is None:
                self._catalog = load_catalog()
            self._facts[device.id] = device_facts(device, self._catalog)
        return self._facts[device.id]

    def needs_idle(self, device: DeviceInfo) -> bool:
        """Whether ``setup`` will first measure this device's idle power."""
        return self.enabled and device.id not in self.summary

    def setup(self, device: DeviceInfo) -> Any:
        """The ``TelemetrySetup`` for ``device`` (None with telemetry off)."""
        from .harness import TelemetrySetup, idle_baseline
        from .telemetry import telemetry_backend

        if not self.enabled:
            return None
        if device.id not in self._setups:
            facts = self.facts(device)
            tdp_source = facts.tdp_basis if facts.tdp_w else None
            backend = telemetry_backend(device, tdp_w=facts.tdp_w, tdp_source=tdp_source)
            try:
                idle = idle_baseline(backend, device, self.period_s, self.idle_s)
            except BaseException:  # Ctrl-C while idling: nothing holds the backend yet
                backend.close()
                raise
            self._setups[device.id] = TelemetrySetup(self.period_s, facts.tdp_w, tdp_source, idle, backend)
            self.summary[device.id] = {"source": backend.source, "basis": backend.basis, "reason": backend.reason,
                                       "facts": facts.to_dict(), "idle_baseline": idle.to_dict()}
        return self._setups[device.id]

    def close(self) -> None:
        for setup in self._setups.values():
            setup.backend.close()
