"""Agreement with PyTorch's own timer: the real ``dlgpu bench`` CLI against ``torch.utils.benchmark`` on the same step.

For every default-suite workload at its quick batch, on this machine's CPU, each round runs in fresh processes,
in alternating order (so that a drift of the machine falls on both alike):

- ``dlgpu bench -w W -t TASK -p PRECISION -d cpu --quick --json --no-save``, as a user runs it (telemetry
  and progress included): the median step time of the result;
- the same step (``measure.harness.make_step`` on the workload ``build`` makes: same model, batch, channels-last
  and thread count), warmed up, then ``torch.utils.benchmark.Timer(...).blocked_autorange(min_run_time)``'s median;
- with ``--loop``, also a plain loop (perf_counter around each step, the median).

ratio = peer median step time / dlgpu median step time (= dlgpu's samples/s over the peer's): 1 is agreement,
below 1 dlgpu reports the step slower. Target: the median ratio over rounds within 0.98-1.02 for every workload.
A table goes to stderr; ``--json`` prints one document (dlgpu.bench-peer-agreement/1) on stdout. Exit 1 with
``--check`` when a workload misses the target. Run it alone: any other work on the machine skews both sides.

Usage: python benchmarks/peer_agreement.py [--rounds 3] [--task train] [--precision fp32] [-w resnet50 ...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _steps import quick_batch, run_child, run_cli_bench

SCHEMA = "dlgpu.bench-peer-agreement/1"
TARGET = (0.98, 1.02)
PEER_SECONDS = 3.0  # what --quick's time ceiling gives dlgpu (measure.timer.QUICK.budget_s)


def main() -> int:
    from dlgpu.workloads.registry import DEFAULT_SUITE

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--task", default="train", choices=("train", "infer"))
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    ap.add_argument("--workload", "-w", nargs="+", default=list(DEFAULT_SUITE))
    ap.add_argument("--loop", action="store_true", help="also time a plain loop")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    load0 = os.getloadavg()
    rows: list[dict[str, Any]] = []
    for w in args.workload:
        batch = quick_batch(w)
        rounds = []
        for i in range(args.rounds):
            def cli(w: str = w) -> float:
                doc = run_cli_bench(["-w", w, "-t", args.task, "-p", args.precision, "-d", "cpu", "--quick"])
                (r,) = [x for x in doc["results"] if x["status"] == "ok"]
                return float(r["step_time_s"]["median"])

            def peer(w: str = w, batch: int = batch) -> float:
                return float(run_child(w, args.task, args.precision, batch, "peer", PEER_SECONDS)["median_s"])

            if i % 2 == 0:
                d, p = cli(), peer()
            else:
                p, d = peer(), cli()
            entry = {"dlgpu_s": d, "peer_s": p, "ratio": p / d}
            if args.loop:
                lp = float(run_child(w, args.task, args.precision, batch, "loop", PEER_SECONDS)["median_s"])
                entry.update(loop_s=lp, loop_ratio=lp / d)
            rounds.append(entry)
            print(f"{w} round {i + 1}: dlgpu {d * 1e3:.1f} ms, peer {p * 1e3:.1f} ms, ratio {p / d:.3f}",
                  file=sys.stderr)
        ratio = statistics.median(r["ratio"] for r in rounds)
        rows.append({"workload": w, "task": args.task, "precision": args.precision, "batch_size": batch,
                     "rounds": rounds, "median_ratio": ratio, "ok": TARGET[0] <= ratio <= TARGET[1]})
    load1 = os.getloadavg()
    print(f"\ndlgpu bench vs torch.utils.benchmark blocked_autorange, {args.task} {args.precision}, quick batch, "
          f"median of {args.rounds} rounds; load average {load0[0]:.2f} -> {load1[0]:.2f}", file=sys.stderr)
    print(f"{'workload':<14}{'batch':>6}{'dlgpu':>12}{'peer':>12}{'ratio':>8}  rounds", file=sys.stderr)
    for r in rows:
        d = statistics.median(x["dlgpu_s"] for x in r["rounds"])
        p = statistics.median(x["peer_s"] for x in r["rounds"])
        print(f"{r['workload']:<14}{r['batch_size']:>6}{d * 1e3:>10.1f}ms{p * 1e3:>10.1f}ms{r['median_ratio']:>8.3f}  "
              + " ".join(f"{x['ratio']:.3f}" for x in r["rounds"]) + ("" if r["ok"] else "  MISSED"), file=sys.stderr)
    if args.json:
        print(json.dumps({"schema": SCHEMA, "target": TARGET, "machine": platform.processor() or platform.machine(),
                          "cpus": os.cpu_count(), "load_average": [load0, load1], "results": rows}, indent=1))
    return 1 if args.check and not all(r["ok"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
