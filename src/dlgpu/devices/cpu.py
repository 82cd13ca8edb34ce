"""What the CPU is and how many cores a fair baseline should use.

A fair CPU baseline uses every *physical* core the process may run on: hyperthreads do not add FLOP/s
to dense kernels, and a container's affinity mask or cgroup quota may allow fewer cores than the
machine has (psutil ignores both, so they are read here)."""

from __future__ import annotations

import math
import os
import platform
from collections.abc import Callable
from pathlib import Path

import psutil


def cpu_model_name(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> tuple[str, ...]:
    """SIMD and matrix-unit flags that matter for throughput (avx2, avx512f, avx512_bf16, amx_bf16...)."""
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith(("flags", "Features")):
                have = set(line.split(":", 1)[1].split())
                wanted = ("avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16",
                          "amx_bf16", "amx_int8", "amx_tile", "asimd", "sve", "bf16")
                return tuple(f for f in wanted if f in have)
    except OSError:
        pass
    return ()


def cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs allowed by a cgroup v2 ``cpu.max`` quota (``max`` means unlimited), or None."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return int(quota) / int(period)
    except (ValueError, ZeroDivisionError):
        return None


def usable_cores(
    physical: Callable[[], int | None] = lambda: psutil.cpu_count(logical=False),
    affinity: Callable[[], int | None] = lambda: len(os.sched_getaffinity(0))
    if hasattr(os, "sched_getaffinity") else None,
    cgroup: Callable[[], float | None] = cgroup_cpu_limit,
) -> tuple[int, int | None]:
    """(threads to use, physical cores). The smallest of physical cores, affinity and cgroup quota."""
    phys = physical()
    limits = [v for v in (phys, affinity()) if v]
    quota = cgroup()
    if quota is not None:
        limits.append(max(1, math.floor(quota)))
    if not limits:
        limits.append(os.cpu_count() or 1)
    return max(1, min(limits)), phys


def native_bf16(flags: tuple[str, ...]) -> bool:
    """Whether the CPU has bf16 arithmetic (AVX512-BF16, AMX-BF16 or Arm BF16); else bf16 is emulated."""
    return any(f in flags for f in ("avx512_bf16", "amx_bf16", "bf16"))
