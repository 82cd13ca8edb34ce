"""``dlgpu probe``'s CPU figures against plain PyTorch loops in the same process.

For each precision (fp32, bf16) and square size: the probe's GEMM figure (``probe.run.gemm_sweep``: calls per timed
step, median of the steps, with the contention check) against a plain loop
(``torch.matmul(a, b)`` N times after a warm-up, ``time.perf_counter`` around the loop, 2 n^3 N / wall time), on the
same operands' shapes, interleaved round by round so that drift hits both alike. Then the probe's copy bandwidth
against a plain ``b.copy_(a)`` loop on arrays of the same size (2 x the array's bytes per call).

Prints both figures and probe / plain for each; the target (issue 16) is within 10% (0.90-1.10). Run it alone:
``uptime`` load under 1, nothing else running.

Usage: python benchmarks/probe_gemm.py [--sizes 512 1024 2048] [--rounds 5] [--array-mib 512]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

from dlgpu.catalog import load_catalog
from dlgpu.devices import detect, use_threads
from dlgpu.measure.harness import synchronizer
from dlgpu.probe.peaks import cpu_peaks
from dlgpu.probe.run import FULL, Seams, gemm_flops, gemm_sweep, stream_array_bytes, stream_figures


def plain_matmul(precision: str, n: int, seconds: float) -> float:
    """FLOP/s of a plain ``torch.matmul`` loop: warm up, then N calls timed once around the loop."""
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[precision]
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    for _ in range(3):
        torch.matmul(a, b)
    t0 = time.perf_counter()
    torch.matmul(a, b)
    one = time.perf_counter() - t0
    calls = max(3, math.ceil(seconds / max(one, 1e-9)))
    t0 = time.perf_counter()
    for _ in range(calls):
        torch.matmul(a, b)
    return calls * gemm_flops(n, n, n) / (time.perf_counter() - t0)


def plain_copy(array_bytes: int, seconds: float) -> float:
    """Bytes/s (read + written) of a plain ``b.copy_(a)`` loop on two fp32 arrays of ``array_bytes``."""
    a = torch.rand(array_bytes // 4)
    b = torch.rand(array_bytes // 4)
    for _ in range(2):
        b.copy_(a)
    t0 = time.perf_counter()
    b.copy_(a)
    one = time.perf_counter() - t0
    calls = max(3, math.ceil(seconds / max(one, 1e-9)))
    t0 = time.perf_counter()
    for _ in range(calls):
        b.copy_(a)
    return calls * 2 * (array_bytes // 4) * 4 / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    ap.add_argument("--sizes", nargs="+", type=int, default=[512, 1024, 2048, 4096])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=1.0, help="length of each plain loop")
    ap.add_argument("--array-mib", type=int, help="bandwidth arrays (default: the probe's own sizing)")
    args = ap.parse_args()

    import psutil

    from dlgpu.probe.run import last_level_cache_bytes

    cpu = detect()[0][0]
    use_threads(cpu.threads_used or 1)
    peaks = cpu_peaks(load_catalog())
    sync = synchronizer(cpu)
    seams = Seams()
    print(f"{cpu.name}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"{'figure':<16}{'probe':>16}{'plain loop':>16}{'probe/plain':>13}")
    ratios = []
    for precision in args.precisions:
        for n in args.sizes:
            probe, plain = [], []
            for _ in range(args.rounds):
                figs, _skip = gemm_sweep(torch, cpu, precision, (n,), FULL, peaks[f"gemm:{precision}"], seams, sync,
                                         lambda f: None)
                probe.append(figs[0].value)
                plain.append(plain_matmul(precision, n, args.seconds))
            p, q = statistics.median(probe), statistics.median(plain)
            ratios.append(p / q)
            print(f"{precision} n={n:<9}{p / 1e9:>11,.1f} GF/s{q / 1e9:>11,.1f} GF/s{p / q:>13.3f}")
    llc = last_level_cache_bytes()
    if args.array_mib:
        array, how = args.array_mib * 2**20, f"{args.array_mib} MiB (--array-mib)"
    else:
        array, how = stream_array_bytes(llc, int(psutil.virtual_memory().available))
    probe, plain = [], []
    for _ in range(args.rounds):
        figs = stream_figures(torch, cpu, array, how, llc, FULL, peaks["bandwidth"], seams, sync, lambda f: None)
        probe.append(next(f for f in figs if f.what == "copy").value)
        plain.append(plain_copy(array, args.seconds))
    p, q = statistics.median(probe), statistics.median(plain)
    ratios.append(p / q)
    print(f"{'copy':<16}{p / 1e9:>11,.1f} GB/s{q / 1e9:>11,.1f} GB/s{p / q:>13.3f}   (arrays of {array / 2**20:,.0f} "
          f"MiB: {how})")
    inside = sum(0.9 <= r <= 1.1 for r in ratios)
    print(f"{inside} of {len(ratios)} within 10% of the plain loop (target: all); probe/plain "
          f"{min(ratios):.3f}-{max(ratios):.3f}")


if __name__ == "__main__":
    main()
