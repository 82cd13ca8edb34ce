"""The typed, frozen catalog entries. SI units inside (bytes, bytes/s, FLOP/s, Hz, W, USD); every field
name carries its unit, and ``None`` means "no source gave this figure" — never zero, never a guess.

Unit conventions, chosen to match what each datasheet means by its figure (the loader converts):

- *bandwidth* (``memory_bandwidth_gbs``, ``interconnect_gbs``): decimal, 1 GB/s = 1e9 bytes/s, as every
  vendor datasheet states bandwidth.
- *compute* (``*_tflops``, ``*_tops``, ``*_gflops``): decimal, 1 TFLOPS = 1e12 FLOP/s.
- *memory capacity* (``memory_gb`` of GPUs and of cloud instances): binary, 1 GB = 2**30 bytes. DRAM and
  HBM are built in powers of two, so a "16 GB" V100 or "80 GB" A100 holds 16 or 80 GiB (the driver
  reports 16160 / 81920 MiB), and AWS and Azure state instance memory in GiB (the cloud notes say so for
  p4d/p5). Reading these as 1e9 would understate capacity by 7%.
- *cache* (``l2_cache_mb``): binary, 1 MB = 2**20 bytes (the GTX 1080 Ti's "2.75 MB" is 2816 KiB).
- *clocks*: MHz = 1e6 Hz, GHz = 1e9 Hz.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from dlgpu.results import HARDWARE_ENTRY_SCHEMA, HARDWARE_SCHEMA

PRECISION_FIELDS: dict[str, str] = {
    "fp32": "fp32_flops_per_s",
    "tf32": "tf32_flops_per_s",
    "bf16": "bf16_flops_per_s",
    "fp16": "fp16_fp32acc_flops_per_s",
    "fp16-fp16acc": "fp16_flops_per_s",
    "int8": "int8_ops_per_s",
}
"""Precision name -> the GpuSpec field holding its dense peak. ``fp16`` is the tensor rate with FP32
accumulate, because that is what PyTorch autocast runs; the (faster on GeForce) FP16-accumulate rate is
``fp16-fp16acc``."""


@dataclass(frozen=True)
class GpuSpec:
    """One GPU or accelerator as its datasheet describes it. Peaks are dense (no 2:4 sparsity)."""

    id: str
    name: str
    vendor: str
    kind: str  # "gpu" | "accelerator"
    arch: str | None
    compute_capability: str | None  # "8.0" for NVIDIA; AMD rows carry their gfx target ("gfx90a")
    release_year: int | None
    memory_bytes: int | None
    memory_bandwidth_bytes_per_s: float | None
    fp32_flops_per_s: float | None
    tf32_flops_per_s: float | None  # tensor cores, dense
    fp16_flops_per_s: float | None  # tensor cores, dense, FP16 accumulate
    fp16_fp32acc_flops_per_s: float | None  # tensor cores, dense, FP32 accumulate (what autocast uses)
    bf16_flops_per_s: float | None  # tensor cores, dense
    int8_ops_per_s: float | None  # tensor cores, dense
    sm_count: int | None  # SMs (NVIDIA), CUs (AMD), cores (Apple)
    boost_clock_hz: float | None
    l2_cache_bytes: int | None
    tdp_w: float | None
    interconnect: str | None
    interconnect_bytes_per_s: float | None
    launch_price_usd: float | None
    source: str
    notes: str | None = None
    origin: str = "builtin"  # "builtin" or the user file the entry came from

    @property
    def cuda_cc(self) -> tuple[int, int] | None:
        """The CUDA compute capability as (major, minor), for NVIDIA parts only (others have none)."""
        if self.vendor.lower() != "nvidia" or not self.compute_capability:
            return None
        return parse_cuda_cc(self.compute_capability)

    def peak_flops_per_s(self, precision: str) -> float | None:
        """Dense peak for a precision name of ``PRECISION_FIELDS``; None where no source gave it."""
        field = PRECISION_FIELDS.get(precision)
        if field is None:
            raise KeyError(f"unknown precision {precision!r} (valid: {', '.join(PRECISION_FIELDS)})")
        value: float | None = getattr(self, field)
        return value

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        cc = self.cuda_cc
        d["cuda_cc"] = None if cc is None else list(cc)
        return d


@dataclass(frozen=True)
class CpuSpec:
    """One CPU model. Peaks are those the row's notes state the clock for (base or all-core turbo)."""

    id: str
    name: str
    vendor: str
    arch: str | None
    release_year: int | None
    cores: int
    threads: int | None
    base_clock_hz: float | None
    all_core_turbo_hz: float | None
    simd: str | None
    fp32_flops_per_cycle_per_core: int | None
    fp32_flops_per_s: float | None
    bf16_flops_per_s: float | None
    amx: bool | None  # Intel Advanced Matrix Extensions
    memory_channels: int | None
    memory_type: str | None
    memory_bandwidth_bytes_per_s: float | None
    tdp_w: float | None
    launch_price_usd: float | None
    source: str
    notes: str | None = None
    origin: str = "builtin"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CloudInstance:
    """An on-demand cloud offering and its hourly price on ``price_date`` (prices move: keep the date)."""

    provider: str
    instance: str
    gpu_id: str
    gpu_count: int
    vcpus: int | None
    memory_bytes: int | None
    price_usd_per_hour: float
    region: str | None
    price_date: str  # YYYY-MM or YYYY-MM-DD, as stated by the source
    source: str
    notes: str | None = None
    origin: str = "builtin"

    @property
    def key(self) -> tuple[str, str]:
        """What identifies an instance (and what a user file overrides by): (provider, instance)."""
        return (self.provider, self.instance)

    @property
    def price_usd_per_gpu_hour(self) -> float:
        return self.price_usd_per_hour / self.gpu_count

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["price_usd_per_gpu_hour"] = self.price_usd_per_gpu_hour
        return d


@dataclass(frozen=True)
class LocalCpu:
    """This machine's CPU when no catalog row matches its model name: what could be read, and an
    *estimated* FP32 peak = cores x clock x FLOP/cycle/core (from the SIMD flags). ``basis`` says how."""

    model_name: str
    cores: int
    clock_hz: float | None
    flags: tuple[str, ...]
    simd: str | None
    fp32_flops_per_cycle_per_core: int | None
    fp32_flops_per_s: float | None
    basis: str
    estimated: bool = True

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["flags"] = list(self.flags)
        return d


def is_consumer(gpu: GpuSpec) -> bool:
    """A GeForce, Titan, Radeon RX or Intel Arc card (bought by people, not datacenters or workstations): on
    GeForce its fp16 with fp32 accumulate may run at a fraction of its fp16 rate, which advise says."""
    name = f"{gpu.name} {gpu.id}".lower()
    return any(w in name for w in ("geforce", "rtx-", "gtx", "radeon rx", "titan", "intel arc")) and not any(
        w in name for w in ("rtx a", "rtx-a", "rtx pro", "rtx-pro", "quadro", "ada generation", "-ada", "l40", "a10"))


def parse_cuda_cc(text: str) -> tuple[int, int] | None:
    """ "8.6" -> (8, 6); anything else (a gfx target, garbage) -> None."""
    major, sep, minor = text.strip().partition(".")
    if not sep or not major.isdigit() or not minor.isdigit():
        return None
    return int(major), int(minor)


KINDS: tuple[str, ...] = ("gpu", "cpu", "cloud", "all")


@dataclass(frozen=True)
class HardwareListing:
    """What ``dlgpu hardware list`` shows: the entries of the requested kind(s)."""

    kind: str  # one of KINDS
    gpus: tuple[GpuSpec, ...]
    cpus: tuple[CpuSpec, ...]
    cloud: tuple[CloudInstance, ...]
    user_files: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"schema": HARDWARE_SCHEMA, "kind": self.kind, "user_files": list(self.user_files)}
        if self.kind in ("gpu", "all"):
            d["gpus"] = [g.to_dict() for g in self.gpus]
        if self.kind in ("cpu", "all"):
            d["cpus"] = [c.to_dict() for c in self.cpus]
        if self.kind in ("cloud", "all"):
            d["cloud"] = [c.to_dict() for c in self.cloud]
        return d


@dataclass(frozen=True)
class HardwareEntry:
    """What ``dlgpu hardware show`` shows: a GPU with the cloud instances that carry it, a CPU, or this
    machine's CPU (``type == "local"``: the matched catalog row, or an estimate that says so)."""

    type: str  # "gpu" | "cpu" | "local"
    spec: GpuSpec | CpuSpec | LocalCpu
    cloud: tuple[CloudInstance, ...] = ()
    local_model_name: str | None = None

    @property
    def estimated(self) -> bool:
        return isinstance(self.spec, LocalCpu)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"schema": HARDWARE_ENTRY_SCHEMA, "type": self.type, "estimated": self.estimated,
                             "entry": self.spec.to_dict()}
        if self.type == "gpu":
            d["cloud_instances"] = [c.to_dict() for c in self.cloud]
        if self.type == "local":
            d["local"] = {"model_name": self.local_model_name,
                          "matched_id": None if isinstance(self.spec, LocalCpu) else self.spec.id}
        return d
