"""Which devices this machine has. Always returns at least the CPU; every absent backend says why.

Each probe takes the torch module as an argument: that is the seam through which tests present a GPU's
properties on a machine that has none."""

from __future__ import annotations

import logging
from typing import Any

import psutil

from dlgpu.results import DeviceInfo

from .cpu import cpu_flags, cpu_model_name, native_bf16, usable_cores

log = logging.getLogger(__name__)


def probe_cpu() -> DeviceInfo:
    threads, physical = usable_cores()
    flags = cpu_flags()
    return DeviceInfo(
        id="cpu",
        kind="cpu",
        name=cpu_model_name(),
        memory_bytes=psutil.virtual_memory().total,
        backend="cpu",
        physical_cores=physical,
        threads_used=threads,
        details={"flags": list(flags), "native_bf16": native_bf16(flags),
                 "logical_cores": psutil.cpu_count(logical=True), **_clocks()},
    )


def _clocks() -> dict[str, float]:
    """The CPU's maximum and current clock in Hz where the OS reports them (describes the CPU for prediction)."""
    try:
        freq = psutil.cpu_freq()
    except (OSError, NotImplementedError):  # some containers and platforms have no cpufreq
        return {}
    out = {}
    if freq is not None and freq.max:
        out["max_clock_hz"] = freq.max * 1e6
    if freq is not None and freq.current:
        out["current_clock_hz"] = freq.current * 1e6
    return out


def probe_cuda(torch: Any) -> tuple[list[DeviceInfo], str | None]:
    """CUDA and ROCm devices (ROCm builds of PyTorch expose HIP devices through ``torch.cuda``)."""
    try:
        if not torch.cuda.is_available():
            return [], "torch.cuda.is_available() is False (no NVIDIA/AMD GPU or driver, or a CPU-only build)"
        count = torch.cuda.device_count()
    except Exception as exc:  # a broken driver must not stop a CPU benchmark
        return [], f"CUDA probe failed: {exc}"
    hip = getattr(torch.version, "hip", None)
    out = []
    for i in range(count):
        p = torch.cuda.get_device_properties(i)
        details: dict[str, Any] = {
            "multi_processor_count": getattr(p, "multi_processor_count", None),
            "uuid": str(getattr(p, "uuid", "")) or None,
        }
        if hip:
            details["gcn_arch"] = getattr(p, "gcnArchName", None)
        out.append(DeviceInfo(
            id=f"cuda:{i}",
            kind="cuda",
            name=p.name,
            memory_bytes=int(p.total_memory),
            backend="rocm" if hip else "cuda",
            compute_capability=f"{p.major}.{p.minor}",
            details=details,
        ))
    return out, None


def probe_mps(torch: Any) -> tuple[list[DeviceInfo], str | None]:
    mps = getattr(torch.backends, "mps", None)
    if mps is None or not mps.is_available():
        return [], "torch.backends.mps.is_available() is False (not an Apple-silicon Mac)"
    try:
        mem = int(torch.mps.recommended_max_memory())
    except Exception:
        mem = psutil.virtual_memory().total  # unified memory
    return [DeviceInfo(id="mps", kind="mps", name="Apple MPS", memory_bytes=mem, backend="mps",
                       details={"bf16": bool(mps.is_macos_or_newer(14, 0))
                                if hasattr(mps, "is_macos_or_newer") else None})], None


def probe_xpu(torch: Any) -> tuple[list[DeviceInfo], str | None]:
    xpu = getattr(torch, "xpu", None)
    if xpu is None or not xpu.is_available():
        return [], "torch.xpu.is_available() is False (no Intel GPU or a build without XPU)"
    out = []
    for i in range(xpu.device_count()):
        p = xpu.get_device_properties(i)
        out.append(DeviceInfo(id=f"xpu:{i}", kind="xpu", name=p.name,
                              memory_bytes=int(getattr(p, "total_memory", 0)) or None, backend="xpu"))
    return out, None


def detect(torch: Any | None = None) -> tuple[list[DeviceInfo], dict[str, str]]:
    """(devices, why each absent backend is absent). The CPU is always first."""
    if torch is None:
        import torch as _torch

        torch = _torch
    devices = [probe_cpu()]
    absent: dict[str, str] = {}
    for kind, probe in (("cuda", probe_cuda), ("mps", probe_mps), ("xpu", probe_xpu)):
        found, why = probe(torch)
        devices.extend(found)
        if why:
            absent[kind] = why
            log.debug("%s: %s", kind, why)
    return devices, absent


def select(devices: list[DeviceInfo], wanted: list[str]) -> list[DeviceInfo]:
    """Resolve ``--device`` values (cpu, cuda, cuda:1, mps, xpu, all) against what is present.

    ``cuda`` means every CUDA device. Raises BadInput naming the devices that exist."""
    from dlgpu.errors import BadInput

    if not wanted or "all" in wanted:
        return list(devices)
    chosen: list[DeviceInfo] = []
    for w in wanted:
        w = w.strip().lower()
        hits = [d for d in devices if (d.id if ":" in w else d.kind) == w]
        if not hits:
            kinds = ("cpu", "cuda", "cuda:N", "mps", "xpu", "all")
            present = ", ".join(d.id for d in devices)
            if w.split(":")[0] not in ("cpu", "cuda", "mps", "xpu"):
                raise BadInput(f"{w}: not a device kind (valid: {', '.join(kinds)})", param="devices")
            raise BadInput(f"{w}: not present on this machine (present: {present}; "
                           "or 'all')", param="devices")
        chosen.extend(h for h in hits if h not in chosen)
    return chosen


def available_memory(device: DeviceInfo) -> int | None:
    """Free memory on ``device`` now, in bytes (None where nothing can be read)."""
    if device.kind == "cpu":
        return int(psutil.virtual_memory().available)
    if device.kind == "cuda":
        import torch

        free, _total = torch.cuda.mem_get_info(int(device.id.split(":")[1]))
        return int(free)
    return device.memory_bytes


def use_threads(n: int) -> None:
    """Run CPU work on ``n`` threads (all usable physical cores for a fair baseline)."""
    import torch

    torch.set_num_threads(max(1, n))
