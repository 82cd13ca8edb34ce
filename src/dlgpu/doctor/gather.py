"""The real readers of ``Facts``, each with its source as a parameter (the NVML module, the sysfs and procfs roots,
the affinity and psutil calls) so that tests hand them fakes: two GPUs through a fake NVML, a cgroup quota from a
file in a temporary directory."""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import psutil

from dlgpu.devices.cpu import cpu_flags, cpu_model_name

from .facts import Cpu, Facts, Gpu, Host, Nvml, Workload
from .frameworks import PROBE_TIMEOUT_S, gather_frameworks

ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES",
            "ROCR_VISIBLE_DEVICES", "ZE_AFFINITY_MASK")
"""The environment variables the checks read: thread counts of OpenMP and MKL, and which GPUs are visible."""

PCI_VENDORS = {"0x10de": "nvidia", "0x1002": "amd", "0x8086": "intel"}
"""PCI vendor ids (the PCI-SIG vendor list, as in the pci.ids database) of GPU makers."""

PCI_DISPLAY_CLASS = "0x03"
"""PCI base class 03h: display controllers (VGA 0300, XGA 0301, 3D 0302: data-centre GPUs, other 0380)."""

NVML_LIBRARY_HINT = "no NVIDIA driver here: libnvidia-ml.so, which the driver installs, is not found"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def cuda_version_text(v: int) -> str:
    """NVML's CUDA driver version integer (1000 * major + 10 * minor: 12040) as "12.4"."""
    return f"{v // 1000}.{(v % 1000) // 10}"


def load_pynvml() -> tuple[Any | None, str | None]:
    try:
        import pynvml
    except ImportError as exc:
        return None, f"pynvml is not importable ({exc}); install nvidia-ml-py"
    return pynvml, None


def nvml_facts(nvml: Any | None = None) -> Nvml:
    """The driver version, the newest CUDA it supports, and each GPU's name, memory and compute capability, from
    NVML (``nvml``: the pynvml module, or a fake with its function names). Not ``nvidia-smi``'s text."""
    if nvml is None:
        nvml, why = load_pynvml()
        if nvml is None:
            return Nvml(available=False, reason=why)
    try:
        nvml.nvmlInit()
    except Exception as exc:
        missing = type(exc).__name__ == "NVMLError_LibraryNotFound" or "Library Not Found" in str(exc)
        return Nvml(available=False, reason=NVML_LIBRARY_HINT if missing else f"NVML failed to start: {exc}")
    try:
        def read(name: str, *args: Any) -> Any:
            f = getattr(nvml, name, None)
            if f is None:
                return None
            try:
                return f(*args)
            except Exception:
                return None

        driver = read("nvmlSystemGetDriverVersion")
        cuda = read("nvmlSystemGetCudaDriverVersion_v2")
        if cuda is None:
            cuda = read("nvmlSystemGetCudaDriverVersion")
        gpus = []
        for i in range(int(read("nvmlDeviceGetCount") or 0)):
            h = read("nvmlDeviceGetHandleByIndex", i)
            if h is None:
                continue
            mem = read("nvmlDeviceGetMemoryInfo", h)
            cc = read("nvmlDeviceGetCudaComputeCapability", h)
            pci = read("nvmlDeviceGetPciInfo", h)
            bus = getattr(pci, "busId", None) if pci is not None else None
            gpus.append(Gpu(index=i, name=_text(read("nvmlDeviceGetName", h) or f"NVIDIA GPU {i}"), vendor="nvidia",
                            source="nvml", memory_bytes=int(mem.total) if mem is not None else None,
                            compute_capability=f"{cc[0]}.{cc[1]}" if cc else None,
                            pci_address=_text(bus) if bus else None))
        return Nvml(available=True, driver_version=_text(driver) if driver else None,
                    cuda_driver_version=cuda_version_text(int(cuda)) if cuda else None, gpus=tuple(gpus))
    finally:
        with contextlib.suppress(Exception):
            nvml.nvmlShutdown()


def pci_gpus(root: Path = Path("/sys/bus/pci/devices")) -> tuple[Gpu, ...]:
    """Display controllers on the PCI bus, with or without a driver bound (a GPU whose driver is missing is still
    here); the name is the vendor and PCI device id, as nothing here holds the marketing name. Linux only."""
    out: list[Gpu] = []
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return ()
    for dev in entries:
        try:
            cls = (dev / "class").read_text().strip().lower()
            vendor_id = (dev / "vendor").read_text().strip().lower()
            device_id = (dev / "device").read_text().strip().lower()
        except OSError:
            continue
        if not cls.startswith(PCI_DISPLAY_CLASS):
            continue
        vendor = PCI_VENDORS.get(vendor_id, "other")
        if vendor == "other":
            continue  # a server's BMC display (ASPEED 0x1a03), a virtual VGA (0x1234, 0x1af4): not compute GPUs
        out.append(Gpu(index=len(out), name=f"{vendor.upper() if vendor != 'nvidia' else 'NVIDIA'} PCI device "
                       f"{vendor_id[2:]}:{device_id[2:]}", vendor=vendor, source="pci", pci_address=dev.name))
    return tuple(out)


def _own_cgroup(proc_cgroup: Path, controller: str) -> tuple[str | None, str | None]:
    """(v2 path, v1 path of ``controller``) of this process's cgroup, from /proc/self/cgroup."""
    v2 = v1 = None
    try:
        for line in proc_cgroup.read_text().splitlines():
            num, _, rest = line.partition(":")
            ctrls, _, path = rest.partition(":")
            if num == "0" and ctrls == "":
                v2 = path
            elif controller in ctrls.split(","):
                v1 = path
    except OSError:
        pass
    return v2, v1


def _candidates(root: Path, own: str | None, *sub: str) -> list[Path]:
    """The cgroup directory of this process and its ancestors up to the mount root: a limit set on a parent
    applies too."""
    base = root.joinpath(*sub)
    dirs = []
    if own and own != "/":
        p = Path(own.lstrip("/"))
        while str(p) not in ("", "."):
            dirs.append(base / p)
            p = p.parent
    dirs.append(base)
    return dirs


def cgroup_cpu_quota(root: Path = Path("/sys/fs/cgroup"),
                     proc_cgroup: Path = Path("/proc/self/cgroup")) -> tuple[float | None, str | None]:
    """(the CPUs the cgroup quota allows, the file it was read from), or (None, None) when unlimited or absent.
    cgroup v2: ``cpu.max`` "QUOTA PERIOD" ("max" = unlimited); v1: ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``
    (-1 = unlimited). The smallest quota on the path from this process's cgroup to the root wins."""
    v2, v1 = _own_cgroup(proc_cgroup, "cpu")
    best: tuple[float | None, str | None] = (None, None)

    def keep(cpus: float, where: Path) -> None:
        nonlocal best
        if cpus > 0 and (best[0] is None or cpus < best[0]):
            best = (cpus, str(where))

    for d in _candidates(root, v2):
        f = d / "cpu.max"
        with contextlib.suppress(OSError, ValueError, ZeroDivisionError):
            quota, period = f.read_text().split()[:2]
            if quota != "max":
                keep(int(quota) / int(period), f)
    for sub in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
        for d in _candidates(root, v1, sub):
            q = d / "cpu.cfs_quota_us"
            with contextlib.suppress(OSError, ValueError, ZeroDivisionError):
                quota_us = int(q.read_text().strip())
                if quota_us > 0:
                    keep(quota_us / int((d / "cpu.cfs_period_us").read_text().strip()), q)
    return best


def cgroup_memory_limit(root: Path = Path("/sys/fs/cgroup"),
                        proc_cgroup: Path = Path("/proc/self/cgroup")) -> int | None:
    """The smallest cgroup memory limit on this process's path (v2 ``memory.max``, v1 ``memory.limit_in_bytes``;
    "max" and v1's huge "unlimited" value read as none), or None."""
    v2, v1 = _own_cgroup(proc_cgroup, "memory")
    limits = []
    for d in _candidates(root, v2):
        with contextlib.suppress(OSError, ValueError):
            text = (d / "memory.max").read_text().strip()
            if text != "max":
                limits.append(int(text))
    for d in _candidates(root, v1, "memory"):
        with contextlib.suppress(OSError, ValueError):
            limits.append(int((d / "memory.limit_in_bytes").read_text().strip()))
    real = [v for v in limits if 0 < v < 2**62]  # v1 says "no limit" with PAGE_COUNTER_MAX pages, about 2**63
    return min(real) if real else None


def _affinity() -> int | None:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None


def cpu_facts(
    cpuinfo: Path = Path("/proc/cpuinfo"),
    physical: Callable[[], int | None] = lambda: psutil.cpu_count(logical=False),
    logical: Callable[[], int | None] = lambda: psutil.cpu_count(logical=True),
    affinity: Callable[[], int | None] = _affinity,
    quota: Callable[[], tuple[float | None, str | None]] = cgroup_cpu_quota,
) -> Cpu:
    """The CPU's model and SIMD flags (``devices.cpu``) and the cores this process may use: the smallest of the
    physical cores, the affinity mask and the cgroup quota (rounded down, at least one)."""
    from dlgpu.devices.cpu import usable_cores

    phys, logi, aff = physical(), logical(), affinity()
    cpus, source = quota()
    usable, _ = usable_cores(physical=lambda: phys, affinity=lambda: aff, cgroup=lambda: cpus)
    return Cpu(model=cpu_model_name(cpuinfo), flags=cpu_flags(cpuinfo), physical_cores=phys, logical_cores=logi,
               affinity_cores=aff, cgroup_cpus=cpus, cgroup_source=source, usable_cores=usable)


def default_data_dir() -> Path:
    """Where data lives unless ``--data-dir`` says: dlgpu's cache dir (``home.cache_dir``: $DLGPU_CACHE_DIR, else
    $DLGPU_HOME/cache, else the platform's user cache dir)."""
    from dlgpu.home import cache_dir

    return cache_dir()


def host_facts(data_dir: Path | None = None, memory_limit: Callable[[], int | None] = cgroup_memory_limit) -> Host:
    """RAM (and a cgroup limit below it), free disk at ``data_dir`` (its nearest existing ancestor when it does not
    exist yet), and the OS."""
    target = (data_dir or default_data_dir()).expanduser().absolute()
    probe = target
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = total = None
    with contextlib.suppress(OSError):
        usage = shutil.disk_usage(probe)
        free, total = int(usage.free), int(usage.total)
    vm = psutil.virtual_memory()
    limit = memory_limit()
    return Host(
        ram_total_bytes=int(vm.total), ram_available_bytes=int(vm.available),
        ram_cgroup_limit_bytes=limit if limit is not None and limit < vm.total else None,
        data_dir=str(target), disk_path=str(probe), disk_free_bytes=free, disk_total_bytes=total,
        os={"system": platform.system(), "release": platform.release(), "platform": platform.platform(),
            "machine": platform.machine(), "python": sys.version.split()[0],
            "libc": " ".join(platform.libc_ver()).strip()},
    )


def workload_facts(name: str) -> Workload:
    """The workload's real dataset from its task facts; BadInput (--workload) naming the valid ones if unknown."""
    from dlgpu.errors import BadInput
    from dlgpu.workloads.registry import get_workload

    try:
        spec = get_workload(name)
    except BadInput as exc:
        raise BadInput(exc.message, param="workloads") from None
    f = spec.facts
    return Workload(name=spec.name, dataset=f.dataset, dataset_bytes=f.dataset_bytes, source=f.source)


def environment(env: Mapping[str, str] | None = None) -> dict[str, str | None]:
    e = os.environ if env is None else env
    return {k: e.get(k) for k in ENV_VARS}


def gather(data_dir: Path | None = None, workload: str | None = None, precision: str = "fp16",
           quick: bool = False, timeout_s: float = PROBE_TIMEOUT_S) -> Facts:
    """Every fact from the real machine. ``quick``: TensorFlow, JAX and Keras reported as installed with their
    versions, not imported (PyTorch is always probed)."""
    work = workload_facts(workload) if workload else None  # bad input before the slow part
    torch, frameworks = gather_frameworks(probe_others=not quick, timeout_s=timeout_s)
    return Facts(torch=torch, nvml=nvml_facts(), cpu=cpu_facts(), host=host_facts(data_dir), pci_gpus=pci_gpus(),
                 frameworks=frameworks, env=environment(), workload=work, precision=precision)
