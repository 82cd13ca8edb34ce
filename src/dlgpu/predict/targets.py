"""The devices predictions are made for: catalog GPUs and CPUs by id, or ``local`` (this machine's CPU), in the
roofline's terms, with where their figures come from; and the CPU a stored bench document was measured on."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dlgpu.catalog import Catalog, CpuSpec, GpuSpec, describe_local_cpu, this_cpu
from dlgpu.errors import BadInput
from dlgpu.results.probe import MeasuredCeilings

from .roofline import PROBED_MEMORY_RULE, ProbedCpu, cpu_as_device

LOCAL_IDS = ("local", "this", "cpu")


def ceilings_basis(dev: GpuSpec, ceilings: MeasuredCeilings | None) -> str:
    """What a prediction for this machine's CPU took from its probe, in words (or that there was none)."""
    if isinstance(dev, ProbedCpu) and dev.measured is not None:
        return (f"{dev.measured.bandwidth_basis}; {PROBED_MEMORY_RULE}; {dev.measured.gemm_basis}, reported, not "
                "used as peaks")
    if ceilings is not None:  # a probe without a bandwidth figure (interrupted before it)
        return f"{ceilings.bandwidth_basis}; {ceilings.gemm_basis}"
    if dev.memory_bandwidth_bytes_per_s:
        return f"memory bandwidth: {dev.memory_bandwidth_bytes_per_s / 1e9:.1f} GB/s from the catalog"
    return ("memory bandwidth: none (no uncontended `dlgpu probe` of this machine is stored, and no catalog row "
            "gives one): memory-bound operators are timed by compute alone")


def prediction_device(hardware: str, catalog: Catalog,
                      ceilings: MeasuredCeilings | None = None) -> tuple[GpuSpec, int | None, str]:
    """(device in the roofline's terms, its memory in bytes or None, where its figures come from) for a
    catalog GPU or CPU id, or ``local`` for this machine's CPU. ``ceilings``: this machine's probed ceilings
    (``dlgpu probe``, read from the store by the api), used for ``local`` only (``roofline.cpu_as_device``)."""
    from dlgpu.devices.detect import probe_cpu

    if hardware.strip().lower() in LOCAL_IDS:
        _, cpu = this_cpu(catalog)
        dev = cpu_as_device(cpu, ceilings)
        basis = cpu.source if isinstance(cpu, CpuSpec) else cpu.basis
        if not dev.fp32_flops_per_s:
            raise BadInput(f"{hardware}: this CPU has no FP32 peak to predict from ({basis})", param="hardware")
        return dev, probe_cpu().memory_bytes, f"this machine's CPU: {basis}; {ceilings_basis(dev, ceilings)}"
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
    roofs = {label: float(v) for label, attr in names if (v := getattr(gpu, attr, None))}
    if isinstance(gpu, ProbedCpu) and gpu.measured is not None:  # the measured ceilings beside the peaks
        roofs.update({f"{p} GEMM (probed)": v for p, v in gpu.measured.gemm_flops_per_s.items() if v})
    return roofs
