"""This machine's CPU as a catalog device: the catalog row whose name matches its model name, or else a
description from what can be read, with an *estimated* FP32 peak whose basis is spelled out.

``describe_local_cpu`` is pure (tests hand it fake inputs); ``this_cpu`` reads the real machine."""

from __future__ import annotations

import contextlib
import platform
import re
from collections.abc import Sequence

from .loader import Catalog, load_catalog
from .specs import CpuSpec, LocalCpu

FLOPS_PER_CYCLE_SOURCES = (
    "https://stackoverflow.com/questions/15655835/flops-per-cycle-for-sandy-bridge-and-haswell-sse2-avx-avx2",
    "Intel 64 and IA-32 Architectures Optimization Reference Manual (FMA/AVX-512 port throughput)",
)
"""Where the per-cycle figures below come from: the Stack Overflow answer cpus.csv cites (8 FP32 FLOP/cycle
with SSE on Nehalem, 16 with AVX on Sandy Bridge, 32 with AVX2+FMA on Haswell, 64 with AVX-512 on Skylake-SP
with two FMA units) and Intel's optimization manual."""

SIMD_FP32_FLOPS_PER_CYCLE: tuple[tuple[tuple[str, ...], str, int, str], ...] = (
    (("avx512f",), "AVX-512, two 512-bit FMA units assumed", 64,
     "parts with one 512-bit FMA unit or with 256-bit datapaths (e.g. Zen 4) reach half"),
    (("avx2", "fma"), "AVX2 + FMA3, two 256-bit FMA units", 32, ""),
    (("avx",), "AVX, 256-bit add + multiply, no FMA", 16, ""),
    (("sse2",), "SSE2, 128-bit add + multiply", 8, ""),
    (("sse",), "SSE, 128-bit add + multiply", 8, ""),
)
"""(flags that must all be present, what it means, FP32 FLOP per cycle per core, caveat), best first.
Sources: ``FLOPS_PER_CYCLE_SOURCES``. Arm (NEON/SVE) is absent: the FMA pipe count varies by core and no
source was read, so an Arm CPU that no catalog row matches gets no estimated peak."""

AMX_BF16_FLOPS_PER_CYCLE = 1024
AMX_SOURCE = "https://en.wikipedia.org/wiki/Advanced_Matrix_Extensions"
"""BF16 FLOP per cycle per core of Intel's AMX tile unit (TMUL), the figure cpus.csv computes its AMX rows' BF16
peaks with, from the AMX article it cites."""

X86_64 = ("x86_64", "amd64")  # SSE2 is part of the x86-64 baseline, so it is present even if unlisted
_CLOCK_IN_NAME = re.compile(r"@\s*(\d+(?:\.\d+)?)\s*([gm])hz", re.IGNORECASE)


def normalize_cpu_name(name: str) -> str:
    """Lower-case, without (R)/(TM), parentheses, "CPU", "Processor", "NN-Core", "with ... Graphics" and
    "@ x.xxGHz": what is left names the model the same way in /proc/cpuinfo and in cpus.csv."""
    s = name.lower()
    s = re.sub(r"\([^)]*\)", " ", s)  # (R), (TM), and cpus.csv's "(12-core CPU)"
    s = _CLOCK_IN_NAME.sub(" ", s)
    s = re.sub(r"\bwith\b.*\bgraphics\b", " ", s)
    s = re.sub(r"\b\d+-core\b", " ", s)
    s = re.sub(r"\b(cpu|processor)\b", " ", s)
    return re.sub(r"\s+", " ", s).strip()


def match_cpu(model_name: str, catalog: Catalog) -> CpuSpec | None:
    """The catalog CPU this model name is: same normalized name, or else the row all of whose name words
    appear in the model name (the longest such name wins). Never the reverse — a vague name such as
    "Intel Xeon Processor" must not match a specific Xeon."""
    local = normalize_cpu_name(model_name)
    if not local:
        return None
    words = set(local.split())
    exact = [c for c in catalog.cpus if normalize_cpu_name(c.name) == local]
    if exact:
        return exact[0]
    within = [c for c in catalog.cpus if set(normalize_cpu_name(c.name).split()) <= words]
    return max(within, key=lambda c: len(normalize_cpu_name(c.name).split()), default=None)


def simd_rate(flags: Sequence[str]) -> tuple[tuple[str, ...], str, int, str] | None:
    """The best SIMD level these flags show: (flags it was read from, what, FLOP/cycle/core, caveat)."""
    have = {f.lower() for f in flags}
    for level in SIMD_FP32_FLOPS_PER_CYCLE:
        if all(f in have for f in level[0]):
            return level
    return None


def _basis(cores: int, clock_hz: float, clock_how: str, level: tuple[tuple[str, ...], str, int, str]) -> str:
    needed, what, per_cycle, caveat = level
    peak = cores * clock_hz * per_cycle
    caveats = "; ".join(c for c in ("sustained vector clocks are often lower", caveat) if c)
    return (f"estimated (not in the catalog): {cores} physical cores x {clock_hz / 1e9:.2f} GHz ({clock_how}) "
            f"x {per_cycle} FP32 FLOP/cycle/core ({what}; from the {'+'.join(needed)} "
            f"flag{'s' if len(needed) > 1 else ''}) = {peak / 1e9:,.1f} GFLOP/s, an upper bound ({caveats}); "
            f"per-cycle figures: {FLOPS_PER_CYCLE_SOURCES[0]}")


def describe_local_cpu(
    model_name: str,
    cores: int,
    flags: Sequence[str],
    max_clock_hz: float | None,
    *,
    catalog: Catalog | None = None,
    clock_source: str = "maximum clock reported by the OS",
    current_clock_hz: float | None = None,
) -> CpuSpec | LocalCpu:
    """The catalog row for this CPU model, else an estimate from ``cores`` x clock x FLOP/cycle/core.

    The clock is ``max_clock_hz``, else the nominal clock in the model name ("@ 2.50GHz"), else
    ``current_clock_hz`` (which may be below what the CPU reaches). The estimate is an upper bound: it
    assumes every core issues the widest FMA every cycle at that clock, which dense GEMMs approach and
    little else does."""
    cat = load_catalog() if catalog is None else catalog
    found = match_cpu(model_name, cat)
    if found is not None:
        return found
    clock, clock_how = max_clock_hz, clock_source
    if not clock or clock <= 0:
        m = _CLOCK_IN_NAME.search(model_name)
        if m:
            clock = float(m.group(1)) * (1e9 if m.group(2).lower() == "g" else 1e6)
            clock_how = "nominal clock in the model name"
        elif current_clock_hz and current_clock_hz > 0:
            clock, clock_how = current_clock_hz, "current clock, may be below the maximum"
        else:
            clock = None
    level = simd_rate(flags)
    why_not = []
    if level is None:
        why_not.append("no FLOP/cycle figure for these SIMD flags" + (f" ({', '.join(flags)})" if flags else ""))
    if clock is None:
        why_not.append("the clock could not be read")
    if cores <= 0:
        why_not.append("the core count could not be read")
    peak = None
    if level is not None and clock is not None and not why_not:
        peak = cores * clock * level[2]
        basis = _basis(cores, clock, clock_how, level)
    else:
        basis = f"not in the catalog; no FP32 peak estimated: {'; '.join(why_not)}"
    simd = None if level is None else level[1]
    per_cycle = None if level is None else level[2]
    return LocalCpu(model_name=model_name, cores=cores, clock_hz=clock, flags=tuple(flags), simd=simd,
                    fp32_flops_per_cycle_per_core=per_cycle, fp32_flops_per_s=peak, basis=basis)


def estimated_bf16_peak(cpu: LocalCpu) -> tuple[float, str] | None:
    """(FLOP/s, basis) of this CPU's BF16 matrix unit where its flags show one and its clock is known: AMX-BF16
    (Sapphire Rapids and later Xeons). None otherwise (AVX512-BF16 alone: no per-cycle figure from a source)."""
    if "amx_bf16" not in {f.lower() for f in cpu.flags} or not cpu.clock_hz or cpu.cores <= 0:
        return None
    peak = cpu.cores * cpu.clock_hz * AMX_BF16_FLOPS_PER_CYCLE
    return peak, (f"estimated (not in the catalog): {cpu.cores} physical cores x {cpu.clock_hz / 1e9:.2f} GHz x "
                  f"{AMX_BF16_FLOPS_PER_CYCLE} BF16 FLOP/cycle/core (AMX tile unit, from the amx_bf16 flag; "
                  f"{AMX_SOURCE}) = {peak / 1e9:,.1f} GFLOP/s, an upper bound that eager PyTorch approaches only "
                  "in large matmuls and convolutions")


def this_cpu(catalog: Catalog | None = None) -> tuple[str, CpuSpec | LocalCpu]:
    """(model name, description) of the CPU this process runs on, read via psutil and /proc/cpuinfo."""
    import psutil

    from dlgpu.devices.cpu import cpu_flags, cpu_model_name

    name = cpu_model_name()
    flags = list(cpu_flags())
    if platform.machine().lower() in X86_64 and "sse2" not in flags:
        flags.append("sse2")
    cores = psutil.cpu_count(logical=False) or psutil.cpu_count() or 0
    freq = None
    with contextlib.suppress(OSError, NotImplementedError):  # some containers and platforms have no cpufreq
        freq = psutil.cpu_freq()
    max_hz = freq.max * 1e6 if freq is not None and freq.max else None
    current_hz = freq.current * 1e6 if freq is not None and freq.current else None
    return name, describe_local_cpu(name, cores, flags, max_hz, catalog=catalog,
                                    clock_source="maximum clock reported by psutil", current_clock_hz=current_hz)
