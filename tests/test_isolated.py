"""CPU runs in a child process: real children, a real SIGKILL."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time

import pytest

import dlgpu
from conftest import TINY_BUDGET
from dlgpu.devices import detect
from dlgpu.measure import plan
from dlgpu.measure.isolated import _killed_reason, measure_isolated
from dlgpu.measure.timer import Budget

CPU = detect()[0][0]


def test_child_measures_and_sends_results() -> None:
    results = list(measure_isolated("test_resnet", {"image_size": 16, "num_classes": 10}, CPU, "infer",
                                    ["fp32", "bf16"], 2, TINY_BUDGET, {}, {"threads": 1}, 1, "note"))
    assert [r.precision for r in results] == ["fp32", "bf16"]
    assert all(r.status == "ok" and r.settings["isolated_process"] for r in results)
    assert results[0].settings["threads"] == 1


def test_a_killed_child_becomes_a_failed_result_and_keeps_earlier_ones() -> None:
    long = Budget(warmup_steps=0, min_steps=10_000, max_steps=10_000, budget_s=1e9)
    gen = measure_isolated("test_resnet", {"image_size": 16, "num_classes": 10}, CPU, "infer",
                           ["fp32"], 2, long, {}, {}, 1, "needs at least 9 GiB; cpu has 1 GiB free")

    def oom_killer() -> None:  # kill the child once it is measuring, as the kernel would
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            children = mp.active_children()
            if children:
                time.sleep(1.0)
                os.kill(children[0].pid, signal.SIGKILL)
                return
            time.sleep(0.05)

    killer = threading.Thread(target=oom_killer)
    killer.start()
    (r,) = list(gen)
    killer.join()
    assert r.status == "failed"
    assert "SIGKILL" in (r.reason or "") and "out-of-memory killer" in (r.reason or "")
    assert "needs at least 9 GiB" in (r.reason or "")


def test_killed_reason_wording() -> None:
    assert "SIGTERM" in _killed_reason(-signal.SIGTERM, "x")
    assert "exited with code 3" in _killed_reason(3, "x")


def test_bench_isolates_runs_large_for_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plan, "ISOLATE_ABOVE_FRACTION", 0.0)
    rep = dlgpu.bench(workloads=["test_resnet"], devices=["cpu"], precisions=["fp32"], tasks=["infer"],
                      timing=TINY_BUDGET)
    (r,) = rep.results
    assert r.status == "ok" and r.settings["isolated_process"] is True
    assert r.speedup_vs_cpu_fp32 == pytest.approx(1.0)
