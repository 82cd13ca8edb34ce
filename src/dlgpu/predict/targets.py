"""The devices predictions are made for: catalog GPUs and CPUs by id, or ``local`` (this machine's CPU), in the
roofline's terms, with where their figures come from; and the CPU a stored bench document was measured on."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dlgpu.catalog import Catalog, CpuSpec, GpuSpec, describe_local_cpu, this_cpu
from dlgpu.errors import BadInput

from .roofline import cpu_as_device

LOCAL_IDS = ("local", "this", "cpu")


def prediction_device(hardware: str, catalog: Catalog) -> tuple[GpuSpec, int | None, str]:
    """(device in the roofline's terms, its memory in bytes or None, where its figures come from) for a
    catalog GPU or CPU id, or ``local`` for this machine's CPU."""
    from dlgpu.devices.detect import probe_cpu

    if hardware.strip().lower() in LOCAL_IDS:
        _, cpu = this_cpu(catalog)
        dev = cpu_as_device(cpu)
        basis = cpu.source if isinstance(cpu, CpuSpec) else cpu.basis
        if not dev.fp32_flops_per_s:
            raise BadInput(f"{hardware}: this CPU has no FP32 peak to predict from ({basis})", param="hardware")
        return dev, probe_cpu().memory_bytes, f"this machine's CPU: {basis}"
    spec = catalog.get(hardware)
    if isinstance(spec, CpuSpec):
        return cpu_as_device(spec), None, f"catalog CPU (source: {spec.source})"
    return spec, spec.memory_bytes, f"catalog (source: {spec.source})"


def bench_cpu(doc: Mapping[str, Any], catalog: Catalog) -> GpuSpec:
    """The CPU a bench document was measured on, described as ``prediction_device`` would describe it."""
    dev = next(d for d in doc["machine"]["devices"] if d["kind"] == "cpu")
    det = dev.get("details") or {}
    cpu = describe_local_cpu(dev["name"], int(dev.get("physical_cores") or 0), det.get("flags") or [],
                             det.get("max_clock_hz"), catalog=catalog, clock_source="maximum clock at bench time",
                             current_clock_hz=det.get("current_clock_hz"))
    return cpu_as_device(cpu)


def roof_peaks(gpu: GpuSpec) -> dict[str, float]:
    """A device's compute roofs (FLOP/s) by unit, as the catalog gives them."""
    names: tuple[tuple[str, str], ...] = (("fp32", "fp32_flops_per_s"), ("tf32 tensor", "tf32_flops_per_s"),
             ("fp16 tensor (fp32 acc.)", "fp16_fp32acc_flops_per_s"), ("bf16 tensor", "bf16_flops_per_s"))
    if gpu.kind == "cpu":
        names = (("fp32", "fp32_flops_per_s"), ("bf16 matrix", "bf16_flops_per_s"))
    return {label: float(v) for label, attr in names if (v := getattr(gpu, attr, None))}
