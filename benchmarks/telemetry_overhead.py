"""Telemetry overhead: the same training configuration measured by dlgpu's harness with and without the
telemetry sampler beside its timed steps.

Both go through ``measure.harness.measure`` (what ``dlgpu bench`` runs) on the same built workload and batch,
with a fixed number of timed steps, interleaved round by round (the order flips every round) so that thermal
and background drift hit both alike. Per round it compares:

- reported: the samples/s dlgpu reports (batch / median step) with telemetry over without;
- steps:    the summed time of the timed steps without telemetry over with it (every cost inside the window);
- CPU time: the process's CPU time of the whole ``measure`` call without over with (steadier when other
            programs load the machine; includes the sampler thread's own work).

It also prints the direct cost: the time one backend read takes, times reads per second = the share of one
core the sampler uses. The backend is what ``dlgpu bench`` would use for this CPU: RAPL where readable, else
the labelled TDP estimate on psutil CPU times with the TDP ``catalog.device_facts`` gives (the catalog row's,
or the estimate from similar catalog CPUs).

Target: sampling costs < 1% (median ratios >= 0.99).
Usage: python benchmarks/telemetry_overhead.py [--workload resnet50] [--rounds 8] [--period 0.1]
"""

from __future__ import annotations

import argparse
import statistics
import time

from dlgpu.catalog import device_facts, load_catalog
from dlgpu.devices import detect, use_threads
from dlgpu.measure.harness import TelemetrySetup, build, measure
from dlgpu.measure.telemetry import telemetry_backend
from dlgpu.measure.timer import Budget
from dlgpu.workloads import get_workload


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
    args = ap.parse_args()

    cpu = detect()[0][0]
    use_threads(cpu.threads_used or 1)
    facts = device_facts(cpu, load_catalog())
    tdp_source = facts.tdp_basis if facts.tdp_w else None
    backend = telemetry_backend(cpu, tdp_w=facts.tdp_w, tdp_source=tdp_source)
    setup = TelemetrySetup(period_s=args.period, tdp_w=facts.tdp_w, tdp_source=tdp_source, backend=backend)

    spec = get_workload(args.workload)
    params = spec.resolve(dict(o.split("=", 1) for o in args.overrides))
    built = build(spec, params, cpu)
    budget = Budget(warmup_steps=1, min_steps=args.steps, max_steps=args.steps, budget_s=1e9)
    measure(built, "train", "fp32", args.batch_size, budget)  # warm the allocator and caches once

    def timed(with_telemetry: bool):
        c0 = time.process_time()
        res = measure(built, "train", "fp32", args.batch_size, budget, telemetry=setup if with_telemetry else None)
        assert res.status == "ok" and res.step_time is not None and res.samples_per_s, res.reason
        return res, time.process_time() - c0

    cost_s = read_cost_s(backend)
    reported, steps, cpu_time, n_samples, extended = [], [], [], [], []
    for r in range(args.rounds):
        if r % 2 == 0:
            (plain, plain_cpu), (sampled, sampled_cpu) = timed(False), timed(True)
        else:
            (sampled, sampled_cpu), (plain, plain_cpu) = timed(True), timed(False)
        reported.append(sampled.samples_per_s / plain.samples_per_s)
        steps.append(sum(plain.step_time.samples_s) / sum(sampled.step_time.samples_s))
        cpu_time.append(plain_cpu / sampled_cpu)
        tel = sampled.telemetry or {}
        n_samples.append(len(tel.get("samples", [])))
        extended.append(tel.get("extended_steps", 0))
        print(f"round {r + 1}: plain {plain.samples_per_s:.2f}/s, sampled {sampled.samples_per_s:.2f}/s "
              f"({n_samples[-1]} samples, {sampled.energy_source}), reported ratio {reported[-1]:.4f}, "
              f"steps ratio {steps[-1]:.4f}, CPU-time ratio {cpu_time[-1]:.4f}")
    backend.close()
    print(f"\n{spec.name} {params} batch {args.batch_size}, {args.steps} timed steps x {args.rounds} rounds through "
          f"measure.harness.measure, {cpu.threads_used} threads, period {args.period} s, backend {backend.source}")
    print(f"direct cost: {cost_s * 1e6:.0f} us per read = {100 * cost_s / args.period:.3f}% of one core "
          f"at one read per {args.period} s")
    print(f"with / without telemetry (median over rounds; target >= 0.99): reported samples/s "
          f"{statistics.median(reported):.4f} (min {min(reported):.3f}, max {max(reported):.3f}), steps "
          f"{statistics.median(steps):.4f} (min {min(steps):.3f}, max {max(steps):.3f}), CPU time "
          f"{statistics.median(cpu_time):.4f} (min {min(cpu_time):.3f}, max {max(cpu_time):.3f}); "
          f"median {statistics.median(n_samples)} samples and {statistics.median(extended)} extended steps per run")


if __name__ == "__main__":
    main()
