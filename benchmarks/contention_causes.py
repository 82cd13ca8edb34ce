"""Why a competing process slows a CPU measurement more than the CPU it takes: each variant of the runtime's
settings times the same steps quiet and beside one busy process (``while True: pass``), in fresh processes.

Variants: ``default`` (all physical cores as threads, OpenMP's default wait policy); ``passive``
(``OMP_WAIT_POLICY=PASSIVE``: waiting threads sleep instead of spinning); ``free-cores`` (one thread fewer
than the cores: the busy process keeps its core, ours keep theirs). For each configuration and variant:
quiet and busy median step time (a plain loop, ``_steps.py``), and slowdown = busy / quiet. The fair figure
for one busy process on C cores with T threads of ours is about (C + 1) / C when T = C (the scheduler shares
C cores among C + 1 runnable threads) and 1 when T < C.

Usage: python benchmarks/contention_causes.py [--seconds 3] [--json]. Run it alone.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _steps import quick_batch, run_child

CONFIGS = (("dcgan", "train", "bf16"), ("lstm_lm", "infer", "bf16"), ("resnet50", "infer", "fp32"),
           ("dcgan", "infer", "bf16"))


def variants(cores: int) -> dict[str, dict[str, str]]:
    return {"default": {}, "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
            "free-cores": {"STEPS_THREADS": str(max(1, cores - 1))}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    import psutil

    cores = psutil.cpu_count(logical=False) or 1
    rows: list[dict[str, Any]] = []
    for w, task, prec in CONFIGS:
        batch = quick_batch(w)
        for name, env in variants(cores).items():
            quiet = run_child(w, task, prec, batch, "loop", args.seconds, env)
            loop = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            time.sleep(0.3)
            try:
                busy = run_child(w, task, prec, batch, "loop", args.seconds, env)
            finally:
                loop.kill()
                loop.wait()
            row = {"config": f"{w} {task} {prec}", "variant": name, "threads": quiet["threads"],
                   "quiet_ms": 1e3 * quiet["median_s"], "busy_ms": 1e3 * busy["median_s"],
                   "slowdown": busy["median_s"] / quiet["median_s"]}
            rows.append(row)
            print(f"{row['config']:<22} {name:<11} threads {row['threads']}: quiet {row['quiet_ms']:.1f} ms, "
                  f"busy {row['busy_ms']:.1f} ms, slowdown {row['slowdown']:.2f}x", file=sys.stderr)
    if args.json:
        print(json.dumps({"schema": "dlgpu.bench-contention-causes/1", "cores": cores, "cpus": os.cpu_count(),
                          "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
