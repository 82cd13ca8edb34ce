"""What ``dlgpu doctor`` knows about this machine, as plain frozen data: the real readers (``gather``,
``frameworks``) build it, the checks (``checks``) judge it, and tests hand the checks fakes of it.

Sizes are bytes, counts are ints; ``None`` means "could not be read" and every reader says why where it matters."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from dlgpu.devices.precision import parse_cc

TENSOR_CORE_PRECISIONS: tuple[tuple[tuple[int, int], str, str], ...] = (
    ((7, 0), "fp16",
     "NVIDIA Tesla V100 (Volta) architecture whitepaper, 2017: first Tensor Cores, FP16 multiply with FP32 "
     "accumulate; CUDA C++ Programming Guide, Warp Matrix Functions: half from sm_70"),
    ((7, 2), "int8",
     "CUDA C++ Programming Guide, Warp Matrix Functions: 8-bit integer fragments from sm_72; NVIDIA Turing "
     "architecture whitepaper, 2018: INT8/INT4 Tensor Core modes"),
    ((8, 0), "bf16",
     "NVIDIA A100 Tensor Core GPU (Ampere) architecture whitepaper, 2020: BF16 and TF32 Tensor Core operations; "
     "CUDA C++ Programming Guide, Warp Matrix Functions: __nv_bfloat16 and tf32 from sm_80"),
    ((8, 0), "tf32", "as bf16: NVIDIA A100 (Ampere) whitepaper, 2020; CUDA C++ Programming Guide"),
    ((8, 9), "fp8",
     "NVIDIA Ada Lovelace architecture whitepaper, 2022 (4th-generation Tensor Cores with FP8, compute capability "
     "8.9) and NVIDIA H100 (Hopper, 9.0) whitepaper, 2022: FP8 E4M3/E5M2 Tensor Cores"),
    ((10, 0), "fp4",
     "NVIDIA Blackwell architecture technical brief, 2024: 5th-generation Tensor Cores with FP4 (compute "
     "capability 10.0 and newer)"),
)
"""(first NVIDIA compute capability, precision its Tensor Cores run, source), oldest first. A precision is
accelerated on every later compute capability too."""


def tensor_core_precisions(compute_capability: str | None) -> tuple[str, ...] | None:
    """The precisions an NVIDIA GPU of this compute capability runs on Tensor Cores: () for none (before 7.0),
    None when the compute capability is unknown (an AMD or Intel GPU, or unread)."""
    cc = parse_cc(compute_capability)
    if cc is None:
        return None
    return tuple(p for first, p, _ in TENSOR_CORE_PRECISIONS if cc >= first)


@dataclass(frozen=True)
class Gpu:
    """One GPU as a source reports it. ``source``: nvml | torch | pci (a PCI display device, driver or not)."""

    index: int
    name: str
    vendor: str  # nvidia | amd | intel | other
    source: str
    memory_bytes: int | None = None
    compute_capability: str | None = None  # NVIDIA "8.6"; None for others or when unread
    pci_address: str | None = None

    @property
    def tensor_cores(self) -> tuple[str, ...] | None:
        return tensor_core_precisions(self.compute_capability) if self.vendor == "nvidia" else None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        tc = self.tensor_cores
        d["tensor_cores"] = None if tc is None else bool(tc)
        d["tensor_core_precisions"] = None if tc is None else list(tc)
        return d


@dataclass(frozen=True)
class Nvml:
    """The NVIDIA driver through NVML: ``available`` False with ``reason`` when NVML cannot be used (no driver,
    no library, no permission). ``cuda_driver_version``: the newest CUDA the driver supports, "12.4"."""

    available: bool
    reason: str | None = None
    driver_version: str | None = None
    cuda_driver_version: str | None = None
    gpus: tuple[Gpu, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"available": self.available, "reason": self.reason, "driver_version": self.driver_version,
                "cuda_driver_version": self.cuda_driver_version, "gpus": [g.to_dict() for g in self.gpus]}


@dataclass(frozen=True)
class Torch:
    """PyTorch as a child process importing it found it (``frameworks.torch_facts``). ``installed`` False: no
    torch here; ``error``: installed but the probe failed (import error, crash, timeout)."""

    installed: bool
    version: str | None = None
    cuda: str | None = None  # torch.version.cuda: the CUDA the build targets, None for CPU and ROCm builds
    hip: str | None = None  # torch.version.hip: ROCm builds
    cudnn: int | None = None
    cuda_available: bool = False
    cuda_reason: str | None = None
    gpus: tuple[Gpu, ...] = ()
    arch_list: tuple[str, ...] = ()  # torch.cuda.get_arch_list(): sm_80, compute_90...
    mps_built: bool | None = None
    mps_available: bool | None = None
    xpu_available: bool | None = None
    mkldnn: bool | None = None
    num_threads: int | None = None
    num_interop_threads: int | None = None
    error: str | None = None

    @property
    def cudnn_text(self) -> str | None:
        """cuDNN's version integer as text: 9 packs it as major*10000 + minor*100 + patch (92400 -> 9.24.0), 8 and
        older as major*1000 + minor*100 + patch (8902 -> 8.9.2) (cudnn_version.h)."""
        v = self.cudnn
        if not v:
            return None
        major, rest = (v // 10000, v % 10000) if v >= 90000 else (v // 1000, v % 1000)
        return f"{major}.{rest // 100}.{rest % 100}"

    @property
    def build(self) -> str:
        """cuda | rocm | cpu (a build without either, which may still have MPS or XPU)."""
        return "rocm" if self.hip else "cuda" if self.cuda else "cpu"

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["build"] = self.build if self.installed and not self.error else None
        d["cudnn_text"] = self.cudnn_text
        d["gpus"] = [g.to_dict() for g in self.gpus]
        d["arch_list"] = list(self.arch_list)
        return d


@dataclass(frozen=True)
class Framework:
    """Another framework. ``accelerators``: the non-CPU devices it sees, None where not probed (not installed,
    ``--quick``, or the probe failed: ``error``). ``retired``: no longer maintained upstream (``note`` says so)."""

    name: str
    module: str
    installed: bool
    version: str | None = None
    accelerators: tuple[str, ...] | None = None
    backend: str | None = None  # Keras: the framework it runs on
    error: str | None = None
    retired: bool = False
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["accelerators"] = None if self.accelerators is None else list(self.accelerators)
        return d


@dataclass(frozen=True)
class Cpu:
    """The CPU and how much of it this process may use: ``usable_cores`` is the smallest of the physical cores,
    the affinity mask and the cgroup CPU quota (``devices.cpu.usable_cores``'s rule)."""

    model: str
    flags: tuple[str, ...]
    physical_cores: int | None
    logical_cores: int | None
    affinity_cores: int | None
    cgroup_cpus: float | None  # the cgroup CPU quota in CPUs, None when unlimited or unread
    cgroup_source: str | None  # the file it was read from
    usable_cores: int

    def simd(self) -> dict[str, bool]:
        f = set(self.flags)
        return {"avx2": "avx2" in f, "avx512f": "avx512f" in f, "avx512_bf16": "avx512_bf16" in f,
                "amx": bool({"amx_tile", "amx_bf16", "amx_int8"} & f), "amx_bf16": "amx_bf16" in f}

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["flags"] = list(self.flags)
        d["simd"] = self.simd()
        return d


@dataclass(frozen=True)
class Host:
    """Memory, the disk where data would live, and the OS."""

    ram_total_bytes: int
    ram_available_bytes: int
    ram_cgroup_limit_bytes: int | None  # a cgroup memory limit below the machine's RAM, else None
    data_dir: str
    disk_path: str  # the nearest existing directory of data_dir, where free space was read
    disk_free_bytes: int | None
    disk_total_bytes: int | None
    os: dict[str, str] = field(default_factory=dict)

    @property
    def ram_usable_bytes(self) -> int:
        return min(self.ram_total_bytes, self.ram_cgroup_limit_bytes or self.ram_total_bytes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["ram_usable_bytes"] = self.ram_usable_bytes
        return d


@dataclass(frozen=True)
class Workload:
    """The real task of ``dlgpu doctor -w NAME`` (``workloads`` TaskFacts)."""

    name: str
    dataset: str
    dataset_bytes: int | None
    source: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Facts:
    """Everything the checks judge. ``pci_gpus``: display controllers on the PCI bus, found with or without a
    driver; ``env``: the variables that steer threads and device visibility (None: unset)."""

    torch: Torch
    nvml: Nvml
    cpu: Cpu
    host: Host
    pci_gpus: tuple[Gpu, ...] = ()
    frameworks: tuple[Framework, ...] = ()
    env: dict[str, str | None] = field(default_factory=dict)
    workload: Workload | None = None
    precision: str = "fp16"

    def gpus(self) -> tuple[Gpu, ...]:
        """The GPUs, from the best source that has them: NVML (with AMD/Intel ones from PCI), else torch, else PCI."""
        nvidia = self.nvml.gpus or tuple(g for g in self.torch.gpus if g.vendor == "nvidia") or tuple(
            g for g in self.pci_gpus if g.vendor == "nvidia")
        others = tuple(g for g in self.torch.gpus if g.vendor != "nvidia") or tuple(
            g for g in self.pci_gpus if g.vendor != "nvidia")
        return nvidia + others

    def vendors(self) -> set[str]:
        """The GPU vendors present here by any source (PCI, NVML, torch)."""
        return {g.vendor for g in (*self.pci_gpus, *self.nvml.gpus, *self.torch.gpus)}
