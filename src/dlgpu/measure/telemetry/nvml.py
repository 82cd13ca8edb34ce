"""NVIDIA GPUs through NVML (``pynvml``, from the ``nvidia-ml-py`` package), imported only when a backend is
built. The module object is a seam: tests pass a fake with the same function names.

Energy: ``nvmlDeviceGetTotalEnergyConsumption`` (mJ since the driver loaded) on Volta and newer, differenced
over the window. Power: the instantaneous field ``NVML_FI_DEV_POWER_INSTANT`` where the driver has it, else
``nvmlDeviceGetPowerUsage`` (a 1 s average on Ampere and newer except GA100). Devices are matched to CUDA
indices by UUID: NVML numbers GPUs in PCI order, CUDA fastest-first and through ``CUDA_VISIBLE_DEVICES``."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .backend import Unavailable
from .model import EnergyMethod, Sample, Source

NVML_ENERGY_UPDATE_S = 0.1
"""The NVML energy counter refreshes every 10-100 ms (gpuopenanalytics/pynvml PR #18; PETSc docs): the upper
end, so a window is long enough whichever it is."""

NVML_AVERAGE_POWER_S = 1.0
"""``nvmlDeviceGetPowerUsage`` averages over 1 s on Ampere (except GA100) and newer (NVML API reference)."""

# NVML enum values, used when the module object (a fake, an old binding) lacks the named constant.
_NVML_DEFAULTS = {
    "NVML_CLOCK_SM": 1, "NVML_CLOCK_MEM": 2, "NVML_TEMPERATURE_GPU": 0, "NVML_DEVICE_ARCH_VOLTA": 5,
    "NVML_FI_DEV_POWER_INSTANT": 186, "NVML_POWER_SCOPE_GPU": 0,
}
_PERMANENT_ERRORS = (3, 13)  # NVML_ERROR_NOT_SUPPORTED, NVML_ERROR_FUNCTION_NOT_FOUND

CLOCK_EVENT_REASONS: tuple[tuple[int, str], ...] = (
    (0x1, "gpu_idle"),
    (0x2, "applications_clocks_setting"),
    (0x4, "sw_power_cap"),
    (0x8, "hw_slowdown"),
    (0x10, "sync_boost"),
    (0x20, "sw_thermal_slowdown"),
    (0x40, "hw_thermal_slowdown"),
    (0x80, "hw_power_brake_slowdown"),
    (0x100, "display_clock_setting"),
)
"""``nvmlClocksEventReason*`` bits (nvml.h) and the names samples carry."""


def clock_event_reasons(mask: int) -> tuple[str, ...]:
    """Names of the bits set in an NVML clocks-event (throttle) reason mask; unknown bits as hex."""
    names = [name for bit, name in CLOCK_EVENT_REASONS if mask & bit]
    known = 0
    for bit, _ in CLOCK_EVENT_REASONS:
        known |= bit
    if mask & ~known:
        names.append(f"unknown_{mask & ~known:#x}")
    return tuple(names)


def load_nvml() -> tuple[Any | None, str | None]:
    """(the pynvml module, None), or (None, why it cannot be used)."""
    try:
        import pynvml
    except ImportError as exc:
        return None, f"pynvml is not importable ({exc}); install nvidia-ml-py"
    return pynvml, None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def normalize_uuid(uuid: str) -> str:
    """Lower-case, without the ``GPU-`` prefix: NVML says ``GPU-8932f937-...``, torch's properties ``8932f937-...``."""
    u = uuid.strip().lower()
    return u[4:] if u.startswith("gpu-") else u


def _leading_int(text: str) -> int:
    """The leading decimal digits of ``text`` as CUDA's strtoul reads them, or -1 if there are none."""
    digits = ""
    for ch in text.strip():
        if not ch.isdigit():
            break
        digits += ch
    return int(digits) if digits else -1


def visible_nvml_indices(visible: str | None, nvml_uuids: Sequence[str]) -> list[int]:
    """NVML indices of the devices CUDA numbers 0, 1, ... under ``CUDA_VISIBLE_DEVICES=visible``.

    Follows the CUDA runtime's parsing as PyTorch reproduces it (torch/cuda/__init__.py
    ``_parse_visible_devices``, ``_transform_uuid_to_ordinals``): a comma-separated list of indices or of
    ``GPU-`` UUIDs (unique prefixes accepted); parsing stops at the first invalid entry or out-of-range
    index; a repeated device hides every device; an ambiguous UUID prefix too. Unset = all, in order.
    Index entries are taken as NVML (PCI) order: exact with ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` and on machines
    whose GPUs are all the same model; pass the CUDA UUID to ``nvml_index_for_cuda`` to be exact anyway."""
    count = len(nvml_uuids)
    if visible is None:
        return list(range(count))
    entries = [e.strip() for e in visible.split(",")]
    out: list[int] = []
    if visible.strip().startswith("GPU-"):
        for entry in entries:
            if not entry.startswith("GPU-"):
                break
            matches = [i for i, u in enumerate(nvml_uuids) if _text(u).startswith(entry)]
            if len(matches) != 1:
                return [] if len(matches) > 1 else out
            if matches[0] in out:
                return []
            out.append(matches[0])
        return out
    for entry in entries:
        i = _leading_int(entry)
        if i < 0 or i >= count:
            break
        if i in out:
            return []
        out.append(i)
    return out


def nvml_index_for_cuda(
    cuda_index: int,
    nvml_uuids: Sequence[str],
    visible: str | None,
    cuda_uuid: str | None = None,
) -> int:
    """The NVML index of CUDA device ``cuda_index``. By ``cuda_uuid`` (``torch.cuda.get_device_properties(i)
    .uuid``) when known, else through ``CUDA_VISIBLE_DEVICES``. Raises ``LookupError`` with the reason."""
    if cuda_uuid:
        want = normalize_uuid(cuda_uuid)
        for i, u in enumerate(nvml_uuids):
            if normalize_uuid(_text(u)) == want:
                return i
        raise LookupError(f"no NVML device has the UUID {cuda_uuid} of cuda:{cuda_index}")
    if visible is not None and visible.strip().startswith("MIG-"):
        raise LookupError("CUDA_VISIBLE_DEVICES selects a MIG instance: NVML gives no power or energy "
                          "for MIG slices (ml-energy/zeus#109)")
    order = visible_nvml_indices(visible, nvml_uuids)
    if not 0 <= cuda_index < len(order):
        shown = "unset" if visible is None else repr(visible)
        raise LookupError(f"cuda:{cuda_index} is not among the {len(order)} device(s) visible to CUDA "
                          f"(CUDA_VISIBLE_DEVICES {shown}, {len(nvml_uuids)} NVML device(s))")
    return order[cuda_index]


class NvmlBackend:
    """One NVIDIA GPU through NVML. What the device supports is probed once; a call that reports "not
    supported" is not made again, and any other failed read leaves that field ``None`` for that sample."""

    source: Source = "measured-nvml"

    def __init__(self, nvml: Any, handle: Any, device: str) -> None:
        self.nvml = nvml
        self.handle = handle
        self.device = device
        self._off: set[str] = set()
        self._closed = False
        notes: list[str] = []
        arch = self._call("nvmlDeviceGetArchitecture")
        volta = self._const("NVML_DEVICE_ARCH_VOLTA")
        self.has_energy = False
        if arch is not None and int(arch) < volta:
            notes.append("no energy counter before Volta")
        elif self._call("nvmlDeviceGetTotalEnergyConsumption") is not None:
            self.has_energy = True
        else:
            notes.append("nvmlDeviceGetTotalEnergyConsumption not supported (vGPU, or an old driver)")
        self.power_kind: str | None = None
        if self._instant_power_w() is not None:
            self.power_kind = "instant"
        elif self._call("nvmlDeviceGetPowerUsage") is not None:
            self.power_kind = "average"
        else:
            notes.append("no power reading")
        self.energy_method: EnergyMethod = (
            "counter" if self.has_energy else "trapezoid" if self.power_kind else "none")
        self.update_interval_s = (NVML_ENERGY_UPDATE_S if self.has_energy
                                  else NVML_AVERAGE_POWER_S if self.power_kind == "average"
                                  else NVML_ENERGY_UPDATE_S)
        power_text = {"instant": "instantaneous power (NVML_FI_DEV_POWER_INSTANT)",
                      "average": "nvmlDeviceGetPowerUsage (a 1 s average on Ampere and newer except GA100)",
                      None: "no power reading"}[self.power_kind]
        energy_text = ("NVML total-energy counter (mJ) differenced over the window" if self.has_energy
                       else f"trapezoidal integration of {power_text}" if self.power_kind
                       else "no energy figure")
        self.label = f"NVML {device}"
        self.basis = f"{energy_text}; power samples: {power_text}; utilization: nvmlDeviceGetUtilizationRates.gpu"
        self.reason: str | None = "; ".join(notes) or None

    def _const(self, name: str) -> int:
        return int(getattr(self.nvml, name, _NVML_DEFAULTS[name]))

    def _call(self, name: str, *args: Any) -> Any:
        """``nvml.<name>(handle, *args)``, or None on failure (never called again if unsupported)."""
        if name in self._off:
            return None
        fn: Callable[..., Any] | None = getattr(self.nvml, name, None)
        if fn is None:
            self._off.add(name)
            return None
        try:
            return fn(self.handle, *args)
        except Exception as exc:
            if getattr(exc, "value", None) in _PERMANENT_ERRORS:
                self._off.add(name)
            return None

    def _instant_power_w(self) -> float | None:
        fid = (self._const("NVML_FI_DEV_POWER_INSTANT"), self._const("NVML_POWER_SCOPE_GPU"))
        values = self._call("nvmlDeviceGetFieldValues", [fid])
        if not values:
            return None
        fv = values[0]
        if int(getattr(fv, "nvmlReturn", 1)) != 0:
            self._off.add("nvmlDeviceGetFieldValues")
            return None
        member = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal", 6: "usVal"}.get(
            int(fv.valueType), "uiVal")
        return float(getattr(fv.value, member)) / 1000.0

    def _power_w(self) -> float | None:
        if self.power_kind == "instant":
            return self._instant_power_w()
        if self.power_kind == "average":
            mw = self._call("nvmlDeviceGetPowerUsage")
            return None if mw is None else float(mw) / 1000.0
        return None

    def _reasons(self) -> tuple[str, ...] | None:
        mask = self._call("nvmlDeviceGetCurrentClocksEventReasons")
        if mask is None:
            mask = self._call("nvmlDeviceGetCurrentClocksThrottleReasons")  # the deprecated name
        return None if mask is None else clock_event_reasons(int(mask))

    def read(self, timestamp_s: float) -> Sample:
        energy_mj = self._call("nvmlDeviceGetTotalEnergyConsumption") if self.has_energy else None
        util = self._call("nvmlDeviceGetUtilizationRates")
        mem = self._call("nvmlDeviceGetMemoryInfo")
        sm = self._call("nvmlDeviceGetClockInfo", self._const("NVML_CLOCK_SM"))
        mclk = self._call("nvmlDeviceGetClockInfo", self._const("NVML_CLOCK_MEM"))
        sensor = self._const("NVML_TEMPERATURE_GPU")
        temp = self._call("nvmlDeviceGetTemperatureV", sensor)
        if temp is None:
            temp = self._call("nvmlDeviceGetTemperature", sensor)  # deprecated, gone in CUDA 14's NVML
        return Sample(
            timestamp_s,
            power_w=self._power_w(),
            energy_j=None if energy_mj is None else float(energy_mj) / 1000.0,
            utilization_pct=None if util is None else float(util.gpu),
            memory_used_bytes=None if mem is None else int(mem.used),
            core_clock_hz=None if sm is None else float(sm) * 1e6,
            mem_clock_hz=None if mclk is None else float(mclk) * 1e6,
            temperature_c=None if temp is None else float(temp),
            throttle_reasons=self._reasons(),
        )

    def start(self, timestamp_s: float) -> Sample:
        return self.read(timestamp_s)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            with contextlib.suppress(Exception):
                self.nvml.nvmlShutdown()


def nvml_backend(
    cuda_index: int,
    *,
    cuda_uuid: str | None = None,
    nvml: Any | None = None,
    environ: Mapping[str, str] | None = None,
) -> NvmlBackend | Unavailable:
    """The NVML backend for CUDA device ``cuda_index``, or ``Unavailable`` with the reason."""
    if nvml is None:
        nvml, why = load_nvml()
        if nvml is None:
            return Unavailable(why or "pynvml is not importable")
    env = os.environ if environ is None else environ
    try:
        nvml.nvmlInit()
    except Exception as exc:
        return Unavailable(f"nvmlInit failed: {exc} (no NVIDIA driver, or a container without it)")
    try:
        count = int(nvml.nvmlDeviceGetCount())
        uuids = [_text(nvml.nvmlDeviceGetUUID(nvml.nvmlDeviceGetHandleByIndex(i))) for i in range(count)]
        index = nvml_index_for_cuda(cuda_index, uuids, env.get("CUDA_VISIBLE_DEVICES"), cuda_uuid)
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
    except Exception as exc:
        with contextlib.suppress(Exception):
            nvml.nvmlShutdown()
        return Unavailable(str(exc) if isinstance(exc, LookupError) else f"NVML device lookup failed: {exc}")
    return NvmlBackend(nvml, handle, f"cuda:{cuda_index} = NVML {index} ({uuids[index]})")
