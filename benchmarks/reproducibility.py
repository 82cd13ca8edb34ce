"""Reproducibility: the same ``dlgpu bench --quick`` twice on a quiet machine, then once beside a busy process.

1. ``dlgpu bench --quick -d cpu --json --no-save`` (the default suite) twice, each in a fresh process. Per
   configuration (workload, task, precision): the second run's samples/s over the first's. Targets: every
   configuration within +-15%, and the median of |run 2 / run 1 - 1| within 5%.
2. The same once more with a busy loop (``while True: pass``, one process) running beside it. Every
   configuration it slowed by more than 15% (against the mean of the two quiet runs) must be flagged
   ``contended`` in the result; the benchmark lists those that are not. (Those slowed less may be flagged too:
   the flag judges the CPU others took, not the slowdown.)

A table goes to stderr; ``--json`` prints one document (dlgpu.bench-reproducibility/1). Exit 1 with ``--check``
when a target is missed. Run it alone: the quiet runs must be quiet.

Usage: python benchmarks/reproducibility.py [--json] [--check] [-w dcgan lstm_lm ...] [--no-busy]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _steps import run_cli_bench

SCHEMA = "dlgpu.bench-reproducibility/1"
EACH = 0.15
MEDIAN = 0.05
SLOWED = 0.15


def _sps(doc: dict[str, Any]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(r["workload"], r["task"], r["precision"]): r for r in doc["results"] if r["status"] == "ok"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workload", "-w", nargs="+", default=None)
    ap.add_argument("--no-busy", action="store_true", help="skip step 2")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    bench = ["--quick", "-d", "cpu", *(["-w", *args.workload] if args.workload else [])]
    loads = [os.getloadavg()[0]]
    started = time.perf_counter()
    quiet = []
    for i in range(2):
        print(f"quiet run {i + 1} ...", file=sys.stderr)
        quiet.append(_sps(run_cli_bench(bench)))
        loads.append(os.getloadavg()[0])
    busy_doc: dict[tuple[str, str, str], dict[str, Any]] = {}
    if not args.no_busy:
        print("run beside a busy loop ...", file=sys.stderr)
        loop = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            busy_doc = _sps(run_cli_bench(bench))
        finally:
            loop.kill()
            loop.wait()
    rows = []
    for key in quiet[0]:
        if key not in quiet[1]:
            continue
        a, b = quiet[0][key]["samples_per_s"], quiet[1][key]["samples_per_s"]
        row: dict[str, Any] = {"config": " ".join(key), "run1": a, "run2": b, "ratio": b / a,
                               "ok": abs(b / a - 1) <= EACH,
                               "contended_quiet": [bool(quiet[0][key].get("contended")),
                                                   bool(quiet[1][key].get("contended"))]}
        if key in busy_doc:
            c = busy_doc[key]["samples_per_s"]
            slowed = 1 - c / ((a + b) / 2)
            flagged = bool(busy_doc[key].get("contended"))
            row.update(busy=c, slowed=slowed, flagged=flagged,
                       others_share=(busy_doc[key].get("contention") or {}).get("others_share"),
                       busy_ok=flagged or slowed <= SLOWED)
        rows.append(row)
    med = statistics.median(abs(r["ratio"] - 1) for r in rows) if rows else float("nan")
    every = all(r["ok"] for r in rows)
    busy_ok = all(r.get("busy_ok", True) for r in rows)
    print(f"\nquick suite twice, then beside a busy loop; load average {loads}; {time.perf_counter() - started:.0f} s",
          file=sys.stderr)
    print(f"{'configuration':<28}{'run 1':>10}{'run 2':>10}{'2/1':>7}{'busy':>10}{'slowed':>8}  flagged",
          file=sys.stderr)
    for r in rows:
        busy = "" if "busy" not in r else f"{r['busy']:>10.3g}{100 * r['slowed']:>7.0f}%  {r['flagged']}"
        print(f"{r['config']:<28}{r['run1']:>10.3g}{r['run2']:>10.3g}{r['ratio']:>7.2f}{busy}"
              + ("" if r["ok"] else "  OUTSIDE 15%") + ("" if r.get("busy_ok", True) else "  SLOWED, NOT FLAGGED"),
              file=sys.stderr)
    print(f"median |2/1 - 1| = {100 * med:.1f}% (target {100 * MEDIAN:.0f}%); every configuration within "
          f"{100 * EACH:.0f}%: {every}; every configuration slowed > {100 * SLOWED:.0f}% flagged: {busy_ok}",
          file=sys.stderr)
    if args.json:
        print(json.dumps({"schema": SCHEMA, "targets": {"each": EACH, "median": MEDIAN, "slowed": SLOWED},
                          "median_abs_dev": med, "every_within": every, "slowed_flagged": busy_ok,
                          "load_average": loads, "rows": rows}, indent=1))
    ok = every and med <= MEDIAN and busy_ok
    return 1 if args.check and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
