"""The catalog facts of a device present on this machine: the catalog GPU a CUDA/ROCm device name is, the
TDP an estimate of its power needs (the matched row's, or for an unmatched CPU one derived from similar
catalog CPUs), and its dense peak FLOP/s per precision (the denominator of model FLOPs utilization).

Pure: the ``DeviceInfo`` comes from ``devices.detect`` (or a stored bench document), the catalog is passed
in, and every figure carries a basis naming the rows it came from. No hardware figure lives here."""

from __future__ import annotations

import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from dlgpu.results import PRECISIONS, DeviceInfo

from .loader import Catalog
from .local import describe_local_cpu, estimated_bf16_peak, normalize_cpu_name, simd_rate
from .specs import CpuSpec, GpuSpec, LocalCpu

FORM_FACTORS = frozenset({"pcie", "sxm", "sxm2", "sxm3", "sxm4", "sxm5", "nvl", "hgx", "oam"})
VENDOR_WORDS = frozenset({"nvidia", "amd", "intel", "apple", "tesla", "geforce", "quadro", "instinct", "radeon"})
_MEMORY_WORD = re.compile(r"^\d+(?:\.\d+)?(?:gb|gib|g)$")
_PAREN = re.compile(r"\([^)]*\)")

MEMORY_MATCH = (0.85, 1.05)
"""A device matches a catalog GPU only if the memory the driver reports is within this ratio of the row's:
drivers report a little less than the nominal size (an A10G's 24 GB shows as 22.5 GiB; an H100's 80 GB as
79.1 GiB) and never more, while variants of one model differ by more (H100 80 GB vs H100 NVL 94 GB)."""


def _words(name: str) -> list[str]:
    s = _PAREN.sub(" ", name.lower().replace("(r)", " ").replace("(tm)", " "))
    return [w for w in re.split(r"[\s\-_/,]+", s) if w]


def _model_words(words: Sequence[str]) -> set[str]:
    """The words that name a model: those with a digit that are neither a memory size nor a form factor."""
    return {w for w in words if any(c.isdigit() for c in w) and w not in FORM_FACTORS and not _MEMORY_WORD.match(w)}


def match_gpu(name: str, memory_bytes: int | None, catalog: Catalog) -> tuple[GpuSpec | None, str]:
    """The catalog GPU a device reporting ``name`` (``torch.cuda.get_device_properties(i).name``) and
    ``memory_bytes`` is, and why; ``(None, why not)`` when none matches or several match equally.

    A row is a candidate when every model word of its name ("a100", "4090", "mi300x") is in the device's
    name and the device's memory is within ``MEMORY_MATCH`` of the row's. Among candidates, PCIe rows go
    with device names that say PCIe and the others with those that do not (SXM parts often omit it: an
    H100 SXM reports "NVIDIA H100 80GB HBM3"); then the row sharing the most words wins."""
    dev_set = set(_words(name))
    scored: list[tuple[int, GpuSpec]] = []
    memory_misses: list[str] = []
    for row in catalog.gpus:
        row_words = [w for w in _words(row.name) if w not in VENDOR_WORDS]
        # A name without a model number ("TITAN RTX") must appear whole.
        models = _model_words(row_words) or {w for w in row_words if not _MEMORY_WORD.match(w)}
        if not models or not models <= dev_set:
            continue
        if memory_bytes and row.memory_bytes:
            ratio = memory_bytes / row.memory_bytes
            if not MEMORY_MATCH[0] <= ratio <= MEMORY_MATCH[1]:
                memory_misses.append(row.id)
                continue
        score = sum(1 for w in row_words if w in dev_set and not _MEMORY_WORD.match(w))
        if ("pcie" in row_words) != ("pcie" in dev_set):
            score -= 10
        scored.append((score, row))
    if not scored:
        if memory_misses and memory_bytes:
            return None, (f"{name!r} names {', '.join(memory_misses)} but its memory ({memory_bytes / 2**30:.1f} "
                          f"GiB) matches none of them: another variant, or a partition (MIG)")
        return None, f"no catalog GPU matches {name!r}"
    scored.sort(key=lambda sr: -sr[0])
    best = scored[0][0]
    top = [r for s, r in scored if s == best]
    if len(top) > 1:
        return None, f"{name!r} matches {', '.join(r.id for r in top)} equally: ambiguous"
    row = top[0]
    return row, f"catalog GPU {row.id} ({row.name}), matched by the device name {name!r}"


def _row_note(c: CpuSpec) -> str:
    return f"{c.id} {c.tdp_w:g} W/{c.cores} cores"


def estimate_cpu_tdp(model_name: str, cores: int, flags: Sequence[str],
                     catalog: Catalog) -> tuple[float | None, str]:
    """A TDP for a CPU no catalog row matches: ``cores`` x the median TDP per core of the most similar catalog
    CPUs, and the basis naming them. Similar = the longest leading words of the normalized model name that
    some rows share ("intel xeon" -> the Xeon rows; "intel" alone -> every Intel row), else the rows with the
    same FP32 FLOP/cycle (SIMD level), else every row with a TDP."""
    if cores <= 0:
        return None, "no TDP: the core count could not be read"
    rows = [c for c in catalog.cpus if c.tdp_w and c.cores > 0]
    if not rows:
        return None, "no TDP: no catalog CPU has one"
    words = normalize_cpu_name(model_name).split()
    chosen: list[CpuSpec] = []
    how = ""
    for n in range(len(words), 0, -1):
        prefix = words[:n]
        chosen = [c for c in rows if normalize_cpu_name(c.name).split()[:n] == prefix]
        if chosen:
            how = f"catalog CPUs whose names begin {' '.join(prefix)!r}"
            break
    if not chosen:
        level = simd_rate(flags)
        if level is not None:
            chosen = [c for c in rows if c.fp32_flops_per_cycle_per_core == level[2]]
            how = f"catalog CPUs with the same SIMD level ({level[1]}, {level[2]} FP32 FLOP/cycle/core)"
    if not chosen:
        chosen, how = rows, "catalog CPUs with a TDP"
    per_core = statistics.median((c.tdp_w or 0.0) / c.cores for c in chosen)
    tdp = per_core * cores
    basis = (f"estimated TDP (no catalog row matches {model_name!r}): {cores} physical cores x {per_core:.3g} W/core, "
             f"the median TDP per core of the {len(chosen)} {how} ({'; '.join(_row_note(c) for c in chosen)}; "
             f"sources in the catalog's cpus.csv); a virtual machine's share of a larger part is assumed to draw in "
             f"proportion to its cores")
    return tdp, basis


@dataclass(frozen=True)
class DeviceFacts:
    """What the catalog says about one present device, each figure with its basis."""

    device: str  # the DeviceInfo id
    matched_id: str | None  # the catalog row this device is, if any
    match_basis: str
    tdp_w: float | None
    tdp_basis: str  # where the TDP comes from, or why there is none
    peaks: dict[str, tuple[float | None, str]] = field(default_factory=dict)  # precision -> (FLOP/s, basis)

    def peak(self, precision: str) -> tuple[float | None, str]:
        return self.peaks.get(precision, (None, f"no peak FLOP/s for {precision} on {self.device}"))

    def to_dict(self) -> dict[str, Any]:
        return {"device": self.device, "matched_id": self.matched_id, "match_basis": self.match_basis,
                "tdp_w": self.tdp_w, "tdp_basis": self.tdp_basis,
                "peaks": {p: {"flops_per_s": v, "basis": b} for p, (v, b) in self.peaks.items()}}


def _cpu_facts(device: DeviceInfo, catalog: Catalog) -> DeviceFacts:
    det = device.details if isinstance(device.details, dict) else {}
    flags = list(det.get("flags") or [])
    cores = int(device.physical_cores or 0)
    cpu = describe_local_cpu(device.name, cores, flags, det.get("max_clock_hz"), catalog=catalog,
                             clock_source="maximum clock reported by psutil",
                             current_clock_hz=det.get("current_clock_hz"))
    peaks: dict[str, tuple[float | None, str]] = {}
    tdp: float | None
    if isinstance(cpu, CpuSpec):
        where = f"catalog CPU {cpu.id} (source: {cpu.source})"
        if cpu.tdp_w:
            tdp, tdp_basis = cpu.tdp_w, f"TDP of {where}"
        else:
            est, why = estimate_cpu_tdp(device.name, cores, flags, catalog)
            tdp, tdp_basis = est, f"{cpu.id} has no TDP in the catalog; {why}"
        fp32 = cpu.fp32_flops_per_s
        fp32_basis = f"FP32 peak of {where}" if fp32 else f"{cpu.id} has no FP32 peak in the catalog"
        bf16 = cpu.bf16_flops_per_s
        match, matched = f"{where}, matched by the model name {device.name!r}", cpu.id
    else:
        assert isinstance(cpu, LocalCpu)
        tdp, tdp_basis = estimate_cpu_tdp(device.name, cores, flags, catalog)
        fp32, fp32_basis = cpu.fp32_flops_per_s, f"FP32 peak {cpu.basis}"
        amx = estimated_bf16_peak(cpu)
        bf16, bf16_basis = amx if amx else (None, "")
        match, matched = f"no catalog CPU matches {device.name!r}", None
    peaks["fp32"] = (fp32, fp32_basis)
    if bf16 and matched:
        peaks["bf16"] = (bf16, f"BF16 peak of catalog CPU {matched}")
    elif bf16:
        peaks["bf16"] = (bf16, f"BF16 peak {bf16_basis}")
    else:
        peaks["bf16"] = (fp32, "no BF16 peak known for this CPU, so its FP32 peak is used (AMX or AVX512-BF16 "
                               "units can exceed it, and MFU against it then overstates utilization); " + fp32_basis)
    return DeviceFacts(device.id, matched, match, tdp, tdp_basis, peaks)


def device_facts(device: DeviceInfo, catalog: Catalog) -> DeviceFacts:
    """TDP and per-precision peaks for a device ``devices.detect`` reported (CPU, CUDA or ROCm GPU)."""
    if device.kind == "cpu":
        return _cpu_facts(device, catalog)
    if device.kind != "cuda":
        return DeviceFacts(device.id, None, f"{device.kind} devices are not matched to the catalog yet", None,
                           f"no TDP: {device.kind} devices are not matched to the catalog yet")
    row, why = match_gpu(device.name, device.memory_bytes, catalog)
    if row is None:
        return DeviceFacts(device.id, None, why, None, f"no TDP: {why}")
    where = f"catalog GPU {row.id} (source: {row.source})"
    tdp_basis = f"TDP of {where}" if row.tdp_w else f"no TDP: {row.id} has none in the catalog"
    peaks: dict[str, tuple[float | None, str]] = {}
    for p in PRECISIONS:
        v = row.peak_flops_per_s(p)
        what = "FP16 tensor peak with FP32 accumulate (what autocast runs)" if p == "fp16" else \
            f"{p.upper()} dense peak"
        peaks[p] = (v, f"{what} of {where}" if v else f"{row.id} has no {p} peak in the catalog")
    return DeviceFacts(device.id, row.id, why, row.tdp_w, tdp_basis, peaks)
