"""AMD GPUs through ``amdsmi`` (optional: ``pip install dlgpu[amd]``), imported only when a backend is built.
The module object is a seam: tests pass a fake with the same function names.

Energy: ``amdsmi_get_energy_count`` = ``energy_accumulator`` x ``counter_resolution`` in µJ, differenced over
the window. Power: ``current_socket_power`` (W), or ``average_socket_power`` where the former reads "N/A".
ROCm 6.3 or newer is needed for fresh values (older ones returned stale readings, ROCm/amdsmi#22, #38)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping
from typing import Any

from .backend import Unavailable
from .model import EnergyMethod, Sample, Source
from .nvml import normalize_uuid

AMDSMI_UPDATE_S = 0.1
"""amdsmi documents no refresh interval for its energy accumulator or power readings; we assume NVML's
(10-100 ms, upper end), so the minimum window is the same as on NVIDIA."""

MIB = 1024**2  # amdsmi_get_gpu_vram_usage reports MB (amdsmi.h: "in MB"), i.e. MiB


def load_amdsmi() -> tuple[Any | None, str | None]:
    try:
        import amdsmi
    except ImportError as exc:
        return None, f"amdsmi is not importable ({exc}); install it with ROCm >= 6.3 (pip install dlgpu[amd])"
    except Exception as exc:  # the binding loads libamd_smi.so at import and fails without ROCm
        return None, f"amdsmi failed to load: {exc}"
    return amdsmi, None


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, str):  # "N/A"
        return None
    return float(value)


def _visible_hip_indices(environ: Mapping[str, str]) -> list[int] | None:
    """Ordinals from HIP_VISIBLE_DEVICES (or CUDA_VISIBLE_DEVICES, which HIP also honours), indices only."""
    for var in ("HIP_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES"):
        value = environ.get(var)
        if value is None:
            continue
        out: list[int] = []
        for entry in value.split(","):
            entry = entry.strip()
            if not entry.isdigit():
                break
            out.append(int(entry))
        return out
    return None


class AmdSmiBackend:
    source: Source = "measured-amdsmi"
    update_interval_s = AMDSMI_UPDATE_S

    def __init__(self, amdsmi: Any, handle: Any, device: str) -> None:
        self.amdsmi = amdsmi
        self.handle = handle
        self.device = device
        self._closed = False
        self._off: set[str] = set()
        notes: list[str] = []
        self.has_energy = self._energy_j() is not None
        if not self.has_energy:
            notes.append("amdsmi_get_energy_count failed")
        self.has_power = self._power_w() is not None
        if not self.has_power:
            notes.append("no socket power reading")
        self.energy_method: EnergyMethod = (
            "counter" if self.has_energy else "trapezoid" if self.has_power else "none")
        self.label = f"amdsmi {device}"
        self.basis = ("amdsmi energy accumulator x counter resolution (µJ) differenced over the window"
                      if self.has_energy else "trapezoidal integration of amdsmi socket power"
                      if self.has_power else "no energy figure") + (
            "; power samples: current_socket_power (average_socket_power where N/A); "
            "utilization: amdsmi_get_gpu_activity gfx_activity")
        self.reason: str | None = "; ".join(notes) or None

    def _call(self, name: str, *args: Any) -> Any:
        if name in self._off:
            return None
        fn: Callable[..., Any] | None = getattr(self.amdsmi, name, None)
        if fn is None:
            self._off.add(name)
            return None
        try:
            return fn(self.handle, *args)
        except Exception:
            return None

    def _energy_j(self) -> float | None:
        e = self._call("amdsmi_get_energy_count")
        if not e:
            return None
        acc, res = _number(e.get("energy_accumulator")), _number(e.get("counter_resolution"))
        return None if acc is None or res is None else acc * res / 1e6

    def _power_w(self) -> float | None:
        p = self._call("amdsmi_get_power_info")
        if not p:
            return None
        current = _number(p.get("current_socket_power"))
        return current if current is not None else _number(p.get("average_socket_power"))

    def _enum(self, cls: str, member: str) -> Any:
        return getattr(getattr(self.amdsmi, cls, None), member, None)

    def read(self, timestamp_s: float) -> Sample:
        act = self._call("amdsmi_get_gpu_activity") or {}
        vram = self._call("amdsmi_get_gpu_vram_usage") or {}
        gfx = self._call("amdsmi_get_clock_info", self._enum("AmdSmiClkType", "GFX")) or {}
        mclk = self._call("amdsmi_get_clock_info", self._enum("AmdSmiClkType", "MEM")) or {}
        temp = self._call("amdsmi_get_temp_metric", self._enum("AmdSmiTemperatureType", "HOTSPOT"),
                          self._enum("AmdSmiTemperatureMetric", "CURRENT"))
        used = _number(vram.get("vram_used"))
        gfx_mhz, mem_mhz = _number(gfx.get("clk")), _number(mclk.get("clk"))
        return Sample(
            timestamp_s,
            power_w=self._power_w(),
            energy_j=self._energy_j() if self.has_energy else None,
            utilization_pct=_number(act.get("gfx_activity")),
            memory_used_bytes=None if used is None else int(used * MIB),
            core_clock_hz=None if gfx_mhz is None else gfx_mhz * 1e6,
            mem_clock_hz=None if mem_mhz is None else mem_mhz * 1e6,
            temperature_c=_number(temp),
            throttle_reasons=None,
        )

    def start(self, timestamp_s: float) -> Sample:
        return self.read(timestamp_s)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            with contextlib.suppress(Exception):
                self.amdsmi.amdsmi_shut_down()


def amdsmi_backend(
    hip_index: int,
    *,
    device_uuid: str | None = None,
    amdsmi: Any | None = None,
    environ: Mapping[str, str] | None = None,
) -> AmdSmiBackend | Unavailable:
    """The amdsmi backend for HIP device ``hip_index`` (``cuda:N`` on a ROCm build of PyTorch), or
    ``Unavailable``. Matched by ``device_uuid`` when given (the HIP UUID amdsmi reports in its enumeration info,
    or its device UUID), else by the HIP id amdsmi reports for the visible ordinal, else by enumeration order."""
    if amdsmi is None:
        amdsmi, why = load_amdsmi()
        if amdsmi is None:
            return Unavailable(why or "amdsmi is not importable")
    env = os.environ if environ is None else environ
    try:
        amdsmi.amdsmi_init()
    except Exception as exc:
        return Unavailable(f"amdsmi_init failed: {exc} (no amdgpu driver, or a container without it)")
    try:
        handles = list(amdsmi.amdsmi_get_processor_handles())
        enum: list[dict[str, Any]] = []
        for h in handles:
            try:
                enum.append(dict(amdsmi.amdsmi_get_gpu_enumeration_info(h)))
            except Exception:
                enum.append({})
        index: int | None = None
        if device_uuid:
            want = normalize_uuid(device_uuid)
            for i, h in enumerate(handles):
                ids = {normalize_uuid(str(enum[i].get("hip_uuid", "")))}
                with contextlib.suppress(Exception):
                    ids.add(normalize_uuid(str(amdsmi.amdsmi_get_gpu_device_uuid(h))))
                if want in ids:
                    index = i
                    break
            if index is None:
                raise LookupError(f"no amdsmi device has the UUID {device_uuid} of cuda:{hip_index}")
        else:
            visible = _visible_hip_indices(env)
            ordinal = hip_index if visible is None else (visible[hip_index] if hip_index < len(visible) else -1)
            if ordinal < 0:
                raise LookupError(f"cuda:{hip_index} is not among the {len(visible or [])} visible HIP device(s)")
            by_hip_id = [i for i, e in enumerate(enum) if e.get("hip_id") == ordinal]
            index = by_hip_id[0] if by_hip_id else ordinal
            if index >= len(handles):
                raise LookupError(f"HIP device {ordinal} is beyond the {len(handles)} device(s) amdsmi lists")
    except Exception as exc:
        with contextlib.suppress(Exception):
            amdsmi.amdsmi_shut_down()
        return Unavailable(str(exc) if isinstance(exc, LookupError) else f"amdsmi device lookup failed: {exc}")
    return AmdSmiBackend(amdsmi, handles[index], f"cuda:{hip_index} = amdsmi {index}")
