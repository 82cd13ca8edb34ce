"""Telemetry overhead: the same training steps run with and without the telemetry sampler beside them.

Both run in one process on the same built workload and batch, interleaved round by round (the order flips
every round) so that thermal and background drift hit both alike. Each run is timed once around its steps,
by the wall clock and by the process's CPU time (steadier when other programs load the machine). Prints the
throughput with sampling over the throughput without it, per round and as the median, and the direct cost:
the time one backend read takes, times reads per second = the share of one core the sampler uses.

The backend is what ``dlgpu bench`` would use for this CPU: RAPL where readable, else the labelled TDP
estimate on psutil CPU times (the TDP from the catalog row, or ``--tdp-w``, or a placeholder: the figure
does not change what sampling costs).

Target: sampling costs < 1% (median ratio >= 0.99).
Usage: python benchmarks/telemetry_overhead.py [--workload resnet50] [--rounds 8] [--period 0.1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from dlgpu.catalog.local import this_cpu
from dlgpu.devices import detect, use_threads
from dlgpu.measure.harness import HarnessContext, build
from dlgpu.measure.telemetry import Telemetry, telemetry_backend
from dlgpu.workloads import get_workload


def run(step, steps: int) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of ``steps`` back-to-back steps."""
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    return time.perf_counter() - t0, time.process_time() - c0


def read_cost_s(backend, reads: int = 2000) -> float:
    """Wall seconds one backend read takes, on average (the sampler thread's whole work per tick)."""
    backend.start(time.perf_counter())
    t0 = time.perf_counter()
    for _ in range(reads):
        backend.read(time.perf_counter())
    return (time.perf_counter() - t0) / reads


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workload", default="resnet50")
    ap.add_argument("--set", dest="overrides", action="append", default=["image_size=64"])
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--period", type=float, default=0.1, help="sampling period, s")
    ap.add_argument("--tdp-w", type=float, default=None, help="TDP for the estimate when no catalog row matches")
    args = ap.parse_args()

    cpu = detect()[0][0]
    use_threads(cpu.threads_used or 1)
    _, spec_row = this_cpu()
    tdp_w = getattr(spec_row, "tdp_w", None)
    tdp_source = f"catalog: {getattr(spec_row, 'source', '')}" if tdp_w else None
    if tdp_w is None:
        tdp_w, tdp_source = (args.tdp_w, "--tdp-w") if args.tdp_w else (
            1.0, "placeholder: no catalog row; the figure does not change the sampling cost")
    backend = telemetry_backend(cpu, tdp_w=tdp_w, tdp_source=tdp_source)
    tel = Telemetry(backend, period_s=args.period)

    spec = get_workload(args.workload)
    params = spec.resolve(dict(o.split("=", 1) for o in args.overrides))
    built = build(spec, params, cpu)
    inst = built.instance
    batch = inst.make_batch(args.batch_size, torch.device("cpu"), spec.channels_last)
    ctx = HarnessContext("cpu", "fp32", train=True)
    inst.train(True)

    def step() -> None:
        inst.train_step(batch, ctx)
        ctx.end_step()

    for _ in range(3):
        step()
    cost_s = read_cost_s(backend)
    wall, cpu_time, n_samples = [], [], []
    for r in range(args.rounds):
        def sampled() -> tuple[float, float]:
            with tel:
                return run(step, args.steps)

        if r % 2 == 0:
            plain, with_tel = run(step, args.steps), sampled()
        else:
            with_tel, plain = sampled(), run(step, args.steps)
        res = tel.result
        n_samples.append(len(res.samples))
        wall.append(plain[0] / with_tel[0])
        cpu_time.append(plain[1] / with_tel[1])
        print(f"round {r + 1}: plain {args.steps * args.batch_size / plain[0]:.2f}/s, "
              f"sampled {args.steps * args.batch_size / with_tel[0]:.2f}/s ({len(res.samples)} samples, "
              f"{res.source}), wall ratio {wall[-1]:.4f}, CPU-time ratio {cpu_time[-1]:.4f}")
    backend.close()
    print(f"\n{spec.name} {params} batch {args.batch_size}, {args.steps} steps x {args.rounds} rounds, "
          f"{cpu.threads_used} threads, period {args.period} s, backend {backend.source}")
    print(f"direct cost: {cost_s * 1e6:.0f} us per read = {100 * cost_s / args.period:.3f}% of one core "
          f"at one read per {args.period} s")
    print(f"sampled / plain throughput (median over rounds; target >= 0.99): wall {statistics.median(wall):.4f} "
          f"(min {min(wall):.3f}, max {max(wall):.3f}), CPU time {statistics.median(cpu_time):.4f} "
          f"(min {min(cpu_time):.3f}, max {max(cpu_time):.3f}); median {statistics.median(n_samples)} samples/run")


if __name__ == "__main__":
    main()
