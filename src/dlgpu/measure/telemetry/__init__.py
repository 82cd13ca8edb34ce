"""Power, energy, utilization, memory, clocks, temperature and throttling beside a measured region.

- ``model``: ``Sample``, ``TelemetryResult`` (raw samples + derived figures), integration, counter
  differencing, efficiency figures (J/step, J/sample, samples/s/W, MFU).
- ``sampler``: ``Telemetry``, the background sampling thread (a context manager), with an idle baseline.
- backends: ``nvml`` (NVIDIA), ``amd`` (amdsmi), ``rapl`` (CPU packages), ``backend`` (the protocol,
  ``Unavailable``, the labelled TDP ``EstimatedBackend``); ``select.telemetry_backend`` picks one per device.

Vendor libraries are imported only when a backend is built; importing this package needs neither."""

from __future__ import annotations

from .amd import AmdSmiBackend, amdsmi_backend
from .backend import ESTIMATE_IDLE_SHARE, CpuSensors, EstimatedBackend, Sensors, TelemetryBackend, Unavailable
from .model import (
    DEFAULT_PERIOD_S,
    MEASURED_SOURCES,
    MIN_WINDOW_UPDATES,
    THROTTLING_REASONS,
    Efficiency,
    EnergyMethod,
    Sample,
    Source,
    TelemetryResult,
    counter_delta,
    counter_total,
    efficiency,
    energy_j_per_sample,
    energy_j_per_step,
    samples_per_s_per_w,
    trapezoid_energy_j,
)
from .nvml import NvmlBackend, clock_event_reasons, nvml_backend, nvml_index_for_cuda, visible_nvml_indices
from .rapl import POWERCAP_ROOT, RaplBackend, RaplReader, RaplUnavailable, RaplZone, rapl_zones
from .sampler import Telemetry
from .select import telemetry_backend

__all__ = [
    "DEFAULT_PERIOD_S",
    "ESTIMATE_IDLE_SHARE",
    "MEASURED_SOURCES",
    "MIN_WINDOW_UPDATES",
    "POWERCAP_ROOT",
    "THROTTLING_REASONS",
    "AmdSmiBackend",
    "CpuSensors",
    "Efficiency",
    "EnergyMethod",
    "EstimatedBackend",
    "NvmlBackend",
    "RaplBackend",
    "RaplReader",
    "RaplUnavailable",
    "RaplZone",
    "Sample",
    "Sensors",
    "Source",
    "Telemetry",
    "TelemetryBackend",
    "TelemetryResult",
    "Unavailable",
    "amdsmi_backend",
    "clock_event_reasons",
    "counter_delta",
    "counter_total",
    "efficiency",
    "energy_j_per_sample",
    "energy_j_per_step",
    "nvml_backend",
    "nvml_index_for_cuda",
    "rapl_zones",
    "samples_per_s_per_w",
    "telemetry_backend",
    "trapezoid_energy_j",
    "visible_nvml_indices",
]
