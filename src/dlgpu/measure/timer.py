"""Adaptive step timing: warm up, then time single steps until the median is known to a target width (its
bootstrap confidence interval, ``results.median_ci``) or a time ceiling is hit, and say which.

Each step is timed alone, with the device synchronized before and after it (asynchronous CUDA, MPS and
XPU kernels otherwise make a step look ~free; a known 10x error on MPS in the wild). Every per-step time
is kept. The clock and the synchronization are seams: tests drive this with a fake clock."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Budget:
    """How long to measure one configuration.

    Timing stops at ``max_steps``, or once at least ``min_steps`` ran and either the median's 95% confidence
    interval is within +-``ci_rel`` of it ("ci") or the timed steps add up to ``budget_s`` (the ceiling,
    "budget"). The interval is checked when the sample count has grown by a fifth since the last check (a
    bootstrap costs about a millisecond per 100 samples)."""

    warmup_steps: int = 3
    min_steps: int = 5
    max_steps: int = 200
    budget_s: float = 10.0
    ci_rel: float = 0.01

    def __post_init__(self) -> None:
        if self.warmup_steps < 0 or self.min_steps < 1 or self.max_steps < self.min_steps:
            raise ValueError("need warmup_steps >= 0 and 1 <= min_steps <= max_steps")
        if self.budget_s <= 0:
            raise ValueError("budget_s must be positive")
        if not self.ci_rel > 0:
            raise ValueError("ci_rel must be positive")


QUICK = Budget(warmup_steps=2, min_steps=5, max_steps=60, budget_s=3.0, ci_rel=0.03)
STANDARD = Budget()


MAX_EXTENDED_STEPS = 100_000
"""However fast a step, an extension to a sensor's minimum window (``Timer.run``'s ``min_time_s``) stops after
this many extra steps: the window's time is the real bound, this only caps the list of samples."""


@dataclass(frozen=True)
class Timing:
    samples_s: list[float]
    warmup_s: list[float]
    stop_reason: str  # "ci" | "budget" | "max_steps": why the budget alone would have stopped
    extended_steps: int = 0  # steps run after that, only to reach ``min_time_s``


class Timer:
    """Times ``step`` with ``sync`` around every timed region. ``clock`` returns seconds. ``prepare``, where given,
    runs before each step, outside its timed region (llama.cpp: dropping what the previous step put in the KV
    cache, ``measure.llamacpp_bench``)."""

    def __init__(
        self,
        step: Callable[[], object],
        sync: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.perf_counter,
        prepare: Callable[[], object] | None = None,
    ) -> None:
        self.step = step
        self.sync = sync
        self.clock = clock
        self.prepare = prepare

    def _one(self) -> float:
        if self.prepare is not None:
            self.prepare()
        self.sync()
        t0 = self.clock()
        self.step()
        self.sync()
        return self.clock() - t0

    def run(
        self,
        budget: Budget,
        on_step: Callable[[int, float], None] | None = None,
        *,
        min_time_s: float = 0.0,
        on_timed_start: Callable[[], None] | None = None,
    ) -> Timing:
        """Warm up, call ``on_timed_start`` (e.g. open a telemetry window), then time steps until the budget
        says stop. Where the timed steps then add up to less than ``min_time_s`` (the shortest window a power
        sensor resolves), keep stepping until they reach it (at most ``MAX_EXTENDED_STEPS`` more): every step
        is kept as a sample, and ``Timing.extended_steps`` counts the extra ones."""
        warm = [self._one() for _ in range(budget.warmup_steps)]
        if on_timed_start is not None:
            on_timed_start()
        from dlgpu.results import median_ci

        samples: list[float] = []
        spent = 0.0
        next_check = budget.min_steps
        reason: str | None = None
        extended = 0
        while True:
            dt = self._one()
            samples.append(dt)
            spent += dt
            if on_step is not None:
                on_step(len(samples), dt)
            if reason is not None:  # extending to min_time_s: the budget has already said stop
                extended += 1
            elif len(samples) >= budget.min_steps:
                if len(samples) >= next_check:
                    next_check = max(len(samples) + 1, math.ceil(len(samples) * 1.2))
                    ci = median_ci(samples)
                    med = statistics.median(samples)
                    if ci is not None and med > 0 and (ci[1] - ci[0]) / 2 <= budget.ci_rel * med:
                        reason = "ci"
                if reason is None and spent >= budget.budget_s:
                    reason = "budget"
            if reason is None and len(samples) >= budget.max_steps:
                reason = "max_steps"
            if reason is not None and (spent >= min_time_s or extended >= MAX_EXTENDED_STEPS):
                return Timing(samples_s=samples, warmup_s=warm, stop_reason=reason, extended_steps=extended)
