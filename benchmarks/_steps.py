"""Shared by the measurement benchmarks: time dlgpu's own step of one configuration in a fresh process, with
PyTorch's ``torch.utils.benchmark.Timer.blocked_autorange`` or a plain loop, and run the real ``dlgpu bench`` CLI.

``python benchmarks/_steps.py WORKLOAD TASK PRECISION BATCH METHOD SECONDS`` is the child: it builds the
workload exactly as ``dlgpu bench`` does (``measure.harness.build`` and ``make_step``, channels-last, the same
thread count: all usable physical cores), warms up, times for about SECONDS, and prints one JSON line:
``{"median_s", "n", "method", "threads"}``. METHOD is ``peer`` (blocked_autorange) or ``loop`` (perf_counter
around each step, the median). ``STEPS_THREADS`` in the environment overrides the thread count."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
WARMUP_STEPS = 3


def child(workload: str, task: str, precision: str, batch: int, method: str, seconds: float) -> dict[str, Any]:
    import torch
    import torch.utils.benchmark as tb

    from dlgpu.devices import detect, use_threads
    from dlgpu.measure.harness import build, make_step, precision_settings
    from dlgpu.workloads.registry import get_workload

    cpu = detect()[0][0]
    use_threads(int(os.environ.get("STEPS_THREADS") or cpu.threads_used or cpu.physical_cores or 1))
    spec = get_workload(workload)
    built = build(spec, spec.resolve({}), cpu)
    with precision_settings(precision):
        step = make_step(built, task, precision, batch)
        for _ in range(WARMUP_STEPS):
            step()
        if method == "peer":
            m = tb.Timer(stmt="step()", globals={"step": step}, num_threads=torch.get_num_threads()).blocked_autorange(
                min_run_time=seconds)
            median, n = m.median, len(m.times)
        else:
            times: list[float] = []
            end = time.perf_counter() + seconds
            while time.perf_counter() < end or len(times) < 5:
                t0 = time.perf_counter()
                step()
                times.append(time.perf_counter() - t0)
            median, n = statistics.median(times), len(times)
    return {"median_s": median, "n": n, "method": method, "threads": torch.get_num_threads()}


def run_child(workload: str, task: str, precision: str, batch: int, method: str, seconds: float,
              env: dict[str, str] | None = None) -> dict[str, Any]:
    out = subprocess.run([sys.executable, str(HERE / "_steps.py"), workload, task, precision, str(batch), method,
                          str(seconds)], capture_output=True, text=True, env={**os.environ, **(env or {})},
                         check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{workload} {task} {precision} ({method}) failed: {out.stderr.strip()[-500:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def dlgpu_exe() -> list[str]:
    exe = Path(sys.executable).with_name("dlgpu")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "dlgpu"]


def run_cli_bench(args: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """``dlgpu bench ARGS --json --no-save`` in a fresh process, exactly as a user runs it: its JSON document."""
    out = subprocess.run([*dlgpu_exe(), "bench", *args, "--json", "--no-save"], capture_output=True, text=True,
                         env={**os.environ, **(env or {})}, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"dlgpu bench {' '.join(args)} failed ({out.returncode}): {out.stderr.strip()[-800:]}")
    return dict(json.loads(out.stdout))


def quick_batch(workload: str) -> int:
    from dlgpu.workloads.registry import get_workload

    spec = get_workload(workload)
    return int(spec.quick_batch_size or spec.batch_size)


if __name__ == "__main__":
    w, t, p, b, meth, secs = sys.argv[1:7]
    print(json.dumps(child(w, t, p, int(b), meth, float(secs))))
