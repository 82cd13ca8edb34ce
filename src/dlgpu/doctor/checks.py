"""The checks: pure functions of ``Facts``, each giving a verdict (pass | warn | fail | skip), what it found and,
unless it passes, the fix. ``run_checks`` runs them all in the order they print.

Only a ``fail`` makes ``dlgpu doctor`` exit 1: something that stops deep learning here or makes it run on the wrong
device (a GPU torch cannot use, a driver older than torch's CUDA, no room for the dataset, one thread on many
cores). A ``warn`` costs speed or future trouble but runs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dlgpu.devices.precision import PrecisionFacts, parse_cc, precision_unsupported
from dlgpu.units import format_bytes

from .facts import TENSOR_CORE_PRECISIONS, Facts, Gpu
from .frameworks import RETIRED

STATUSES = ("pass", "warn", "fail", "skip")
SELECTOR = "https://pytorch.org/get-started/locally/"
"""PyTorch's install selector: the pip command for each CUDA, ROCm and XPU build of the current release."""
CUDA_COMPAT = "https://docs.nvidia.com/deploy/cuda-compatibility/"
"""NVIDIA's CUDA compatibility guide: the minimum driver of each CUDA release, and minor version compatibility
(an application built with CUDA 12.x runs on any 12.x driver, without PTX JIT of newer code)."""
TENSOR_CORE_PRECISION_NAMES = tuple(dict.fromkeys(p for _, p, _ in TENSOR_CORE_PRECISIONS))


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # pass | warn | fail | skip
    found: str
    fix: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "found": self.found, "fix": self.fix}


def _names(gpus: Sequence[Gpu]) -> str:
    return ", ".join(g.name + (f" (compute capability {g.compute_capability})" if g.compute_capability else "")
                     for g in gpus)


def _major_minor(text: str | None) -> tuple[int, int] | None:
    """ "12.4" or "12.4.1" -> (12, 4)."""
    return parse_cc(text)


def _worst(statuses: Sequence[str]) -> str:
    for s in ("fail", "warn", "pass"):
        if s in statuses:
            return s
    return "skip"


def check_pytorch(f: Facts) -> Check:
    t = f.torch
    if not t.installed:
        return Check("pytorch", "fail", "PyTorch is not installed",
                     f"pip install torch (the command for your GPU and OS: {SELECTOR})")
    if t.error:
        return Check("pytorch", "fail", f"torch {t.version or ''} is installed but `import torch` fails: {t.error}",
                     "reinstall it: pip install --force-reinstall torch (a missing lib*.so in the error names the "
                     f"library at fault; the build for your GPU: {SELECTOR})")
    build = {"cuda": f"CUDA {t.cuda} build", "rocm": f"ROCm {t.hip} build", "cpu": "CPU-only build"}[t.build]
    extras = [f"cuDNN {t.cudnn_text}" if t.cudnn else None, "MPS" if t.mps_available else None,
              "XPU" if t.xpu_available else None, "oneDNN" if t.mkldnn else None]
    extra = ", ".join(e for e in extras if e)
    return Check("pytorch", "pass", f"torch {t.version}, {build}" + (f" ({extra})" if extra else ""))


def _hidden(env_value: str | None) -> bool:
    """Whether a *_VISIBLE_DEVICES value hides every GPU ("" or "-1"; anything not starting with a valid entry)."""
    if env_value is None:
        return False
    v = env_value.strip()
    return v == "" or v.startswith("-") or v.lower() in ("none", "void", "nodevfiles")


def check_gpu_backend(f: Facts) -> Check:
    """A GPU is here and torch can use it; else which is missing: the backend in the build, the driver, or the
    GPU is hidden by the environment."""
    name = "torch uses the GPU"
    t = f.torch
    if not t.installed or t.error:
        return Check(name, "skip", "no working PyTorch (see the pytorch check)")
    vendors = f.vendors()
    gpus = f.gpus()
    if "nvidia" in vendors:
        nvidia = [g for g in gpus if g.vendor == "nvidia"]
        if t.build != "cuda":
            driver = f.nvml.cuda_driver_version
            pick = (f"a CUDA version at most {driver}, the newest this driver supports" if driver else
                    "the CUDA version your driver supports (install the NVIDIA driver first: no NVML here)")
            return Check(name, "fail", f"NVIDIA GPU present ({_names(nvidia)}) but torch {t.version} is a "
                         f"{'ROCm' if t.build == 'rocm' else 'CPU-only'} build: it cannot use it",
                         "install a CUDA build: pip install --force-reinstall torch --index-url "
                         f"https://download.pytorch.org/whl/cuXYZ with XYZ {pick} ({SELECTOR})")
        if not t.cuda_available:
            visible = f.env.get("CUDA_VISIBLE_DEVICES")
            if _hidden(visible):
                return Check(name, "fail", f"NVIDIA GPU present ({_names(nvidia)}) but CUDA_VISIBLE_DEVICES="
                             f"{visible!r} hides it from torch", "unset CUDA_VISIBLE_DEVICES (or list the GPUs "
                             "to use: CUDA_VISIBLE_DEVICES=0)")
            if not f.nvml.available:
                return Check(name, "fail", f"NVIDIA GPU present ({_names(nvidia)}) but the NVIDIA driver does not "
                             f"answer ({f.nvml.reason}); torch {t.version} (CUDA {t.cuda}) sees no GPU",
                             f"install the NVIDIA driver for CUDA {t.cuda} or newer ({CUDA_COMPAT}), then reboot "
                             "(or load the nvidia kernel module)")
            return Check(name, "fail", f"NVIDIA GPU present ({_names(nvidia)}) but torch {t.version} (CUDA "
                         f"{t.cuda}) sees none: {t.cuda_reason}",
                         "see the driver check; check the user may open /dev/nvidia* and that "
                         "`python -c 'import torch; torch.cuda.init()'` runs")
        return Check(name, "pass", f"torch {t.version} (CUDA {t.cuda}) uses {len(t.gpus)} GPU(s): "
                     f"{_names([g for g in t.gpus if g.vendor == 'nvidia'])}")
    if "amd" in vendors:
        amd = [g for g in gpus if g.vendor == "amd"]
        if t.build != "rocm":
            return Check(name, "fail", f"AMD GPU present ({_names(amd)}) but torch {t.version} is a "
                         f"{'CUDA' if t.build == 'cuda' else 'CPU-only'} build: it cannot use it",
                         "install a ROCm build: pip install --force-reinstall torch --index-url "
                         f"https://download.pytorch.org/whl/rocmX.Y (the ROCm version your GPU and driver support; "
                         f"{SELECTOR})")
        if not t.cuda_available:
            hidden = [k for k in ("HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES")
                      if _hidden(f.env.get(k))]
            return Check(name, "fail", f"AMD GPU present ({_names(amd)}) but torch {t.version} (ROCm {t.hip}) sees "
                         f"none: {t.cuda_reason}" + (f"; {', '.join(hidden)} hides it" if hidden else ""),
                         f"unset {', '.join(hidden)}" if hidden else "install the amdgpu driver with ROCm and add "
                         "the user to the render and video groups (/dev/kfd and /dev/dri must open)")
        return Check(name, "pass", f"torch {t.version} (ROCm {t.hip}) uses {len(t.gpus)} GPU(s): {_names(t.gpus)}")
    if "intel" in vendors:
        intel = [g for g in gpus if g.vendor == "intel"]
        if t.xpu_available:
            return Check(name, "pass", f"torch {t.version} uses the Intel GPU(s) through XPU: {_names(t.gpus)}")
        return Check(name, "warn", f"Intel GPU present ({_names(intel)}) but torch {t.version} has no XPU device "
                     "(an integrated GPU, or a build without XPU)",
                     "for an Intel Arc or Data Center GPU: pip install torch --index-url "
                     f"https://download.pytorch.org/whl/xpu ({SELECTOR}); an integrated GPU is rarely faster "
                     "than the CPU")
    if t.mps_available:
        return Check(name, "pass", f"torch {t.version} uses the Apple GPU through MPS")
    build = {"cuda": f"its CUDA {t.cuda} build", "rocm": f"its ROCm {t.hip} build", "cpu": "its CPU build"}[t.build]
    return Check(name, "pass", f"no GPU here (PCI bus, NVML, torch): torch {t.version} runs on the CPU "
                 f"({build} does too)")


def check_driver(f: Facts) -> Check:
    """The NVIDIA driver supports the CUDA version torch was built with (NVML's CUDA driver version)."""
    name = "driver supports torch's CUDA"
    t = f.torch
    if "nvidia" not in f.vendors():
        return Check(name, "skip", "no NVIDIA GPU" + ("" if f.nvml.available else f" (NVML: {f.nvml.reason})"))
    if not f.nvml.available:
        return Check(name, "fail", f"NVIDIA GPU present but NVML does not answer: {f.nvml.reason}",
                     f"install the NVIDIA driver ({CUDA_COMPAT} lists the minimum for each CUDA), then reboot")
    drv = _major_minor(f.nvml.cuda_driver_version)
    if t.build != "cuda" or not t.cuda:
        return Check(name, "skip", f"driver {f.nvml.driver_version} (CUDA {f.nvml.cuda_driver_version}); torch is "
                     "not a CUDA build (see the GPU check)")
    need = _major_minor(t.cuda)
    if drv is None or need is None:
        return Check(name, "warn", f"driver {f.nvml.driver_version}: the CUDA version it supports could not be read",
                     f"compare the driver with the minimum for CUDA {t.cuda} in {CUDA_COMPAT}")
    found = (f"driver {f.nvml.driver_version} supports CUDA {f.nvml.cuda_driver_version}; torch {t.version} is "
             f"built with CUDA {t.cuda}")
    fix = (f"upgrade the NVIDIA driver to one supporting CUDA {need[0]}.{need[1]} ({CUDA_COMPAT}), or install a "
           f"torch built for CUDA {f.nvml.cuda_driver_version} or older: pip install --force-reinstall torch "
           f"--index-url https://download.pytorch.org/whl/cuXYZ ({SELECTOR})")
    if drv[0] < need[0]:
        return Check(name, "fail", found + ": the driver is too old, CUDA will not start", fix)
    if drv < need:
        return Check(name, "warn", found + ": runs through CUDA minor version compatibility, without PTX JIT "
                     "(kernels not built for this GPU fail)", fix)
    return Check(name, "pass", found)


def _arch_covers(arch_list: Sequence[str], cc: tuple[int, int]) -> bool:
    """Whether a build with these targets runs on compute capability ``cc``: a cubin sm_XY runs on X.Z for Z >= Y
    (same major: CUDA C++ Programming Guide, "Binary Compatibility"; arch-specific sm_XYa only on X.Y itself), a
    PTX compute_XY is JIT-compiled for any later one ("Application Compatibility")."""
    for a in arch_list:
        kind, _, num = a.partition("_")
        exact = num.endswith(("a", "f"))
        digits = num.rstrip("af")
        if not digits.isdigit() or len(digits) < 2:
            continue
        target = (int(digits[:-1]), int(digits[-1]))
        if kind == "sm" and (target == cc or (not exact and target[0] == cc[0] and target[1] <= cc[1])):
            return True
        if kind == "compute" and not exact and target <= cc:
            return True
    return False


def check_architectures(f: Facts) -> Check:
    name = "torch has kernels for the GPU"
    t = f.torch
    nvidia = [g for g in f.gpus() if g.vendor == "nvidia" and parse_cc(g.compute_capability)]
    if t.build != "cuda" or not nvidia or not t.arch_list:
        why = ("torch is not a CUDA build" if t.build != "cuda" else "no NVIDIA GPU with a known compute capability"
               if not nvidia else "the build's architecture list could not be read")
        return Check(name, "skip", why)
    missing = [g for g in nvidia if not _arch_covers(t.arch_list, parse_cc(g.compute_capability) or (0, 0))]
    found = f"torch {t.version} is built for {' '.join(t.arch_list)}"
    if missing:
        return Check(name, "fail", f"{found}; no kernels for {_names(missing)}",
                     f"install a torch build whose CUDA supports compute capability "
                     f"{', '.join(sorted({g.compute_capability or '' for g in missing}))} (a newer torch and CUDA; "
                     f"{SELECTOR})")
    return Check(name, "pass", f"{found}: covers {_names(nvidia)}")


def check_precision(f: Facts) -> Check:
    """The precision asked for (fp16 by default: mixed precision) on each NVIDIA GPU: fail where dlgpu's precision
    rule (``devices.precision``) says it cannot run, warn where it runs without Tensor Cores (no faster than fp32,
    often slower)."""
    p = f.precision
    name = f"{p} on tensor cores"
    nvidia = [g for g in f.gpus() if g.vendor == "nvidia" and parse_cc(g.compute_capability)]
    if not nvidia:
        return Check(name, "skip", "no NVIDIA GPU with a known compute capability (AMD and Intel matrix units are "
                     "not judged)")
    verdicts = []
    lines = []
    fixes = []
    for g in nvidia:
        cc = parse_cc(g.compute_capability)
        tc = g.tensor_cores or ()
        why = precision_unsupported(p, PrecisionFacts("cuda", g.name, cc))
        if why:
            verdicts.append("fail")
            lines.append(why)
            fixes.append(f"use {'fp16' if 'fp16' in tc else 'fp32'} on {g.name}")
        elif p in TENSOR_CORE_PRECISION_NAMES and p not in tc:
            verdicts.append("warn")
            lines.append(f"{g.name} (compute capability {g.compute_capability}) has "
                         + ("no tensor cores" if not tc else f"tensor cores for {', '.join(tc)} only")
                         + f": {p} runs on its CUDA cores, no faster than fp32")
            fixes.append(f"train {g.name} in fp32, or use a GPU of compute capability "
                         f"{next('.'.join(map(str, c)) for c, q, _ in TENSOR_CORE_PRECISIONS if q == p)} or newer "
                         f"for {p} tensor cores")
        else:
            verdicts.append("pass")
            lines.append(f"{g.name} (compute capability {g.compute_capability}): tensor cores for "
                         f"{', '.join(tc) or 'nothing'}" + ("" if p in tc else f"; {p} needs none"))
    return Check(name, _worst(verdicts), "; ".join(lines), "; ".join(fixes))


def _env_threads(value: str | None) -> int | str | None:
    """A thread count variable: its int, None when unset, or the raw text when it is not a positive integer."""
    if value is None:
        return None
    try:
        n = int(value.strip().split(",")[0])  # OpenMP takes a list per nesting level: the first is the outer
    except ValueError:
        return value
    return n if n >= 1 else value


def check_threads(f: Facts) -> Check:
    """torch's intra-op threads and OMP_NUM_THREADS/MKL_NUM_THREADS against the cores this process may use."""
    name = "cpu threads"
    c = f.cpu
    usable = c.usable_cores
    limits = [f"{c.physical_cores} physical" if c.physical_cores else None,
              f"affinity {c.affinity_cores}" if c.affinity_cores else None,
              f"cgroup quota {c.cgroup_cpus:g} CPUs" if c.cgroup_cpus else None]
    cores = f"{usable} usable core{'s' if usable != 1 else ''} ({', '.join(x for x in limits if x)})"
    env = {k: _env_threads(f.env.get(k)) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    setting = ", ".join(f"{k}={f.env.get(k)}" for k, v in env.items() if v is not None)
    threads = f.torch.num_threads if f.torch.installed and not f.torch.error else None
    bad = [k for k, v in env.items() if isinstance(v, str)]
    if bad:
        return Check(name, "warn", f"{', '.join(f'{k}={f.env.get(k)!r}' for k in bad)} is not a positive "
                     f"integer (ignored or an error, by library); {cores}",
                     f"set {' and '.join(bad)} to {usable} or unset {'them' if len(bad) > 1 else 'it'}")
    too_many = [k for k, v in env.items() if isinstance(v, int) and v > usable]
    set_one = [k for k, v in env.items() if v == 1]
    how = f" ({setting})" if setting else ""
    unset = " and ".join(set_one or too_many) or "OMP_NUM_THREADS"
    if usable > 1 and (threads == 1 or (threads is None and set_one)):
        return Check(name, "fail", f"torch runs CPU work on 1 thread of {cores}{how}",
                     f"unset {unset} or set it to {usable} (torchrun sets OMP_NUM_THREADS=1 for each of several "
                     f"processes on purpose; a single process should use every core), or call "
                     f"torch.set_num_threads({usable})")
    if threads is not None and threads > usable:
        return Check(name, "warn", f"torch uses {threads} threads on {cores}{how}: threads beyond the usable cores "
                     "wait on each other" + (" and on the cgroup quota" if c.cgroup_cpus else ""),
                     f"export OMP_NUM_THREADS={usable} or call torch.set_num_threads({usable})")
    if too_many:
        return Check(name, "warn", f"{how.strip(' ()')} asks for more threads than the {cores}",
                     f"set {' and '.join(too_many)} to {usable}")
    if threads is not None and threads < usable:
        return Check(name, "warn", f"torch uses {threads} of {cores}{how}",
                     f"export OMP_NUM_THREADS={usable} or call torch.set_num_threads({usable})")
    what = f"torch uses {threads} thread{'s' if threads != 1 else ''} on" if threads is not None else "no torch;"
    return Check(name, "pass", f"{what} {cores}{how}")


def check_dataset(f: Facts) -> Check:
    """The workload's real dataset against the free disk where data lives (fail: it cannot be stored) and the
    usable RAM (warn: it cannot stay in the page cache, so every epoch reads it from disk)."""
    name = "room for the dataset"
    w, h = f.workload, f.host
    if w is None:
        return Check(name, "skip", "no workload given (dlgpu doctor -w WORKLOAD compares its dataset with the "
                     "free disk and RAM)")
    if not w.dataset_bytes:
        return Check(name, "skip", f"{w.name}'s task facts give no size for its dataset ({w.dataset})")
    size = f"{w.name}'s dataset, {w.dataset}, is {format_bytes(w.dataset_bytes)}"
    ram = h.ram_usable_bytes
    if h.disk_free_bytes is None:
        return Check(name, "warn", f"{size}; the free disk at {h.disk_path} could not be read",
                     "check the free space where the data will live (--data-dir)")
    if h.disk_free_bytes < w.dataset_bytes:
        return Check(name, "fail", f"{size}; {h.disk_path} has {format_bytes(h.disk_free_bytes)} free",
                     f"free {format_bytes(w.dataset_bytes - h.disk_free_bytes)} there, or point --data-dir at a "
                     "disk with room")
    disk = f"{h.disk_path} has {format_bytes(h.disk_free_bytes)} free"
    if ram < w.dataset_bytes:
        return Check(name, "warn", f"{size}; {disk}, but the {format_bytes(ram)} of RAM cannot cache it: each "
                     "epoch reads it from disk", "keep it on a local SSD (not a network disk) and use several "
                     "DataLoader workers; or add RAM")
    return Check(name, "pass", f"{size}; {disk} and the {format_bytes(ram)} of RAM can cache it")


OTHER_FIXES = {
    "tensorflow": "pip install 'tensorflow[and-cuda]' (Linux; https://www.tensorflow.org/install/pip)",
    "jax": "pip install -U 'jax[cuda12]' (https://docs.jax.dev/en/latest/installation.html)",
    "keras": "install its backend with GPU support (TensorFlow, JAX or PyTorch)",
}


def check_frameworks(f: Facts) -> Check:
    """Other frameworks: retired ones present (warn), ones whose import fails or that see no accelerator while a
    GPU is here (warn)."""
    name = "other frameworks"
    lines, fixes = [], []
    status = "pass"
    gpu_here = bool(f.vendors() & {"nvidia", "amd"})
    for fw in f.frameworks:
        if not fw.installed:
            continue
        label = f"{fw.name} {fw.version or ''}".strip()
        if fw.retired:
            status = "warn"
            lines.append(f"{label}: {fw.note}")
            fixes.append(f"port what uses {fw.name} to PyTorch or JAX; pip uninstall {fw.module} if nothing does")
        elif fw.error:
            status = "warn"
            lines.append(f"{label}: importing it fails ({fw.error})")
            fixes.append(f"reinstall {fw.name}: pip install --force-reinstall {fw.module}")
        elif fw.accelerators is None:
            lines.append(f"{label} (not imported)")
        elif gpu_here and not fw.accelerators:
            status = "warn"
            lines.append(f"{label}" + (f" (backend {fw.backend})" if fw.backend else "") + " sees no GPU")
            fixes.append(OTHER_FIXES.get(fw.module, f"install {fw.name}'s GPU build"))
        else:
            seen = ", ".join(fw.accelerators) or "no accelerator (none here)"
            lines.append(f"{label}" + (f" (backend {fw.backend})" if fw.backend else "") + f": {seen}")
    if not lines:
        names = ", ".join(fw.name for fw in f.frameworks if not fw.retired)
        return Check(name, "pass", f"{names or 'TensorFlow, JAX, Keras'}: not installed; no retired framework "
                     f"({', '.join(r[0] for r in RETIRED)})")
    return Check(name, status, "; ".join(lines), "; ".join(fixes))


CHECKS: tuple[Callable[[Facts], Check], ...] = (
    check_pytorch, check_gpu_backend, check_driver, check_architectures, check_precision, check_threads,
    check_dataset, check_frameworks,
)


def run_checks(facts: Facts) -> list[Check]:
    return [c(facts) for c in CHECKS]
