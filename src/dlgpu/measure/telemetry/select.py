"""Which backend measures a device: a hardware sensor where one can be read, else a labelled estimate when
the caller gives a TDP (and a utilization source exists), else ``Unavailable`` with every reason."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dlgpu.results import DeviceInfo

from .amd import AmdSmiBackend, amdsmi_backend
from .backend import CpuSensors, EstimatedBackend, TelemetryBackend, Unavailable
from .nvml import NvmlBackend, nvml_backend
from .rapl import POWERCAP_ROOT, RaplBackend, RaplUnavailable


def _index(device: DeviceInfo) -> int:
    return int(device.id.split(":")[1]) if ":" in device.id else 0


def telemetry_backend(
    device: DeviceInfo,
    *,
    tdp_w: float | None = None,
    tdp_source: str | None = None,
    powercap_root: Path = POWERCAP_ROOT,
    nvml: Any | None = None,
    amdsmi: Any | None = None,
    environ: Mapping[str, str] | None = None,
) -> TelemetryBackend:
    """The backend for ``device`` (a ``DeviceInfo`` from ``devices.detect``).

    - NVIDIA (``cuda``): NVML, matched by the UUID in ``device.details["uuid"]`` or via CUDA_VISIBLE_DEVICES.
    - AMD (``rocm``): amdsmi where installed.
    - CPU: RAPL package counters under ``powercap_root``, utilization from psutil.
    - Otherwise, or when the sensor is missing: with ``tdp_w`` (and ``tdp_source``, e.g. the catalog row's
      source) an ``estimated`` backend on the utilization that can still be read (CPU times; NVML/amdsmi
      utilization on a GPU that reports no power); without one, ``Unavailable``.

    ``nvml``/``amdsmi`` are the library seams (None = import the real one). The caller closes the backend."""
    if tdp_w is not None and not tdp_source:
        raise ValueError("tdp_w needs tdp_source: where the TDP figure comes from")

    def estimate(sensors: Any, why: str) -> TelemetryBackend:
        if tdp_w is None or tdp_source is None:
            sensors.close()
            return Unavailable(f"{why}; no TDP given for an estimate")
        return EstimatedBackend(sensors, tdp_w, tdp_source, why=why)

    if device.kind == "cpu":
        try:
            return RaplBackend(powercap_root)
        except RaplUnavailable as exc:
            return estimate(CpuSensors(), f"RAPL unavailable: {exc}")
    if device.kind == "cuda":
        uuid = device.details.get("uuid") if isinstance(device.details, dict) else None
        gpu: NvmlBackend | AmdSmiBackend | Unavailable
        if device.backend == "rocm":
            gpu = amdsmi_backend(_index(device), device_uuid=uuid, amdsmi=amdsmi, environ=environ)
        else:
            gpu = nvml_backend(_index(device), cuda_uuid=uuid, nvml=nvml, environ=environ)
        if isinstance(gpu, Unavailable):
            return Unavailable(f"{gpu.reason}; no utilization source for an estimate either")
        if gpu.energy_method == "none":
            return estimate(gpu, f"{gpu.label} reports no power or energy ({gpu.reason})")
        return gpu
    return Unavailable(f"no power sensor reader for {device.kind} devices yet")
