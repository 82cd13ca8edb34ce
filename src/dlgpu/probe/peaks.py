"""The figures a probe's measurements are fractions of: for a GPU, its catalog row's datasheet figures (dense peak
per precision, memory bandwidth, the PCIe host link); for the CPU, its catalog row where its model name matches
one, else the peak computed from cores x clock x FLOP per cycle for its SIMD width, and AMX's bf16 peak where its
flags show AMX (``catalog.local``). A figure no source gives is None, with the reason: never a guess.

Torch-free: the device comes from ``devices.detect``; the catalog is handed in."""

from __future__ import annotations

from dataclasses import dataclass

from dlgpu.catalog import Catalog, CpuSpec, GpuSpec, LocalCpu, match_gpu, this_cpu
from dlgpu.catalog.local import AMX_BF16_FLOPS_PER_CYCLE, estimated_bf16_peak
from dlgpu.results import DeviceInfo


@dataclass(frozen=True)
class Peak:
    """A figure to compare a measurement with (``value`` None where no source gives one), where it comes from in
    full (``basis``) and in a few words (``short``)."""

    value: float | None
    basis: str
    short: str = ""


def _none(why: str) -> Peak:
    return Peak(None, why, why)


def cpu_peaks(catalog: Catalog) -> dict[str, Peak]:
    """This machine's CPU: ``gemm:fp32``, ``gemm:bf16``, ``gemm:fp16``, ``gemm:int8``, ``bandwidth`` (copy and
    triad), by ``catalog.this_cpu``."""
    _name, cpu = this_cpu(catalog)
    if isinstance(cpu, CpuSpec):
        where = f"catalog CPU {cpu.id} (source: {cpu.source})"
        fp32 = (Peak(cpu.fp32_flops_per_s, f"FP32 peak of {where}", f"datasheet, catalog {cpu.id}")
                if cpu.fp32_flops_per_s else _none(f"{cpu.id} has no FP32 peak in the catalog"))
        bf16 = (Peak(cpu.bf16_flops_per_s, f"BF16 peak of {where}", f"datasheet, catalog {cpu.id}")
                if cpu.bf16_flops_per_s else _none(f"{cpu.id} has no BF16 peak in the catalog"))
        bw = (Peak(cpu.memory_bandwidth_bytes_per_s, f"memory bandwidth of {where}", f"datasheet, catalog {cpu.id}")
              if cpu.memory_bandwidth_bytes_per_s else _none(f"no datasheet bandwidth: {cpu.id} has none in the "
                                                             "catalog"))
        cores, clock = cpu.cores, cpu.all_core_turbo_hz or cpu.base_clock_hz
    else:
        assert isinstance(cpu, LocalCpu)
        cores, clock = cpu.cores, cpu.clock_hz
        if cpu.fp32_flops_per_s and clock:
            fp32 = Peak(cpu.fp32_flops_per_s, f"FP32 peak {cpu.basis}",
                        f"estimated, {cores} cores x {clock / 1e9:.2f} GHz x {cpu.fp32_flops_per_cycle_per_core} "
                        "FLOP/cycle")
        else:
            fp32 = _none(cpu.basis)
        amx = estimated_bf16_peak(cpu)
        bf16 = (Peak(amx[0], f"BF16 peak {amx[1]}", f"estimated, {cores} cores x {(clock or 0) / 1e9:.2f} GHz x "
                                                    f"{AMX_BF16_FLOPS_PER_CYCLE} BF16 FLOP/cycle (AMX)")
                if amx else _none("no bf16 peak known for this CPU (only AMX's per-cycle figure has a source)"))
        bw = _none(f"no datasheet bandwidth: no catalog CPU matches {cpu.model_name!r}")
    return {"gemm:fp32": fp32, "gemm:bf16": bf16,
            "gemm:fp16": _none("no fp16 peak known for CPUs (the catalog and the estimate give fp32 and bf16)"),
            "gemm:int8": _none("no int8 peak known for CPUs (the catalog and the estimate give fp32 and bf16)"),
            "bandwidth": bw, "_cores_clock": Peak(float(cores or 0), f"{cores} cores at {(clock or 0) / 1e9:.2f} GHz")}


def gpu_peaks(device: DeviceInfo, catalog: Catalog) -> dict[str, Peak]:
    """A CUDA device: its catalog row's dense peaks (``gemm:PREC``; fp16 is the tensor rate with FP32 accumulate,
    what ``torch.matmul`` runs), memory bandwidth and PCIe host link each way (``link``)."""
    row, why = match_gpu(device.name, device.memory_bytes, catalog)
    if row is None:
        miss = _none(f"no catalog GPU matches {device.name!r}: {why}")
        return {k: miss for k in ("gemm:fp32", "gemm:tf32", "gemm:bf16", "gemm:fp16", "gemm:int8", "bandwidth",
                                  "link")}
    return gpu_row_peaks(row, catalog)


def gpu_row_peaks(row: GpuSpec, catalog: Catalog) -> dict[str, Peak]:
    from dlgpu.finetune.sharding import host_link

    where = f"catalog GPU {row.id} (source: {row.source})"
    out: dict[str, Peak] = {}
    for p in ("fp32", "tf32", "bf16", "fp16", "int8"):
        v = row.peak_flops_per_s(p)
        what = "FP16 tensor peak with FP32 accumulate" if p == "fp16" else f"{p.upper()} dense peak"
        out[f"gemm:{p}"] = (Peak(v, f"{what} of {where}", f"datasheet, {row.id}") if v
                            else _none(f"{row.id} has no {p} peak in the catalog"))
    out["bandwidth"] = (Peak(row.memory_bandwidth_bytes_per_s, f"memory bandwidth of {where}",
                             f"datasheet, {row.id}") if row.memory_bandwidth_bytes_per_s
                        else _none(f"{row.id} has no memory bandwidth in the catalog"))
    rate, basis = host_link(catalog, row)
    out["link"] = Peak(rate, basis, "PCIe, each way") if rate else _none(basis)
    return out
