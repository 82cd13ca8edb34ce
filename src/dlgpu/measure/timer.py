"""Adaptive step timing: warm up, then time single steps until a budget is spent or the median is stable.

Each step is timed alone, with the device synchronized before and after it (asynchronous CUDA, MPS and
XPU kernels otherwise make a step look ~free; a known 10x error on MPS in the wild). Every per-step time
is kept. The clock and the synchronization are seams: tests drive this with a fake clock."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Budget:
    """How long to measure one configuration.

    Timing stops at ``max_steps``, or once at least ``min_steps`` ran and either ``budget_s`` is spent or
    the running median has moved less than ``stable_rel`` over the last ``stable_window`` steps."""

    warmup_steps: int = 3
    min_steps: int = 5
    max_steps: int = 200
    budget_s: float = 10.0
    stable_rel: float = 0.005
    stable_window: int = 10

    def __post_init__(self) -> None:
        if self.warmup_steps < 0 or self.min_steps < 1 or self.max_steps < self.min_steps:
            raise ValueError("need warmup_steps >= 0 and 1 <= min_steps <= max_steps")
        if self.budget_s <= 0:
            raise ValueError("budget_s must be positive")


QUICK = Budget(warmup_steps=1, min_steps=3, max_steps=30, budget_s=2.0)
STANDARD = Budget()


@dataclass(frozen=True)
class Timing:
    samples_s: list[float]
    warmup_s: list[float]
    stop_reason: str  # "max_steps" | "budget" | "stable"


class Timer:
    """Times ``step`` with ``sync`` around every timed region. ``clock`` returns seconds."""

    def __init__(
        self,
        step: Callable[[], object],
        sync: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.step = step
        self.sync = sync
        self.clock = clock

    def _one(self) -> float:
        self.sync()
        t0 = self.clock()
        self.step()
        self.sync()
        return self.clock() - t0

    def run(self, budget: Budget, on_step: Callable[[int, float], None] | None = None) -> Timing:
        warm = [self._one() for _ in range(budget.warmup_steps)]
        samples: list[float] = []
        spent = 0.0
        medians: list[float] = []
        reason = "max_steps"
        while len(samples) < budget.max_steps:
            dt = self._one()
            samples.append(dt)
            spent += dt
            if on_step is not None:
                on_step(len(samples), dt)
            if len(samples) < budget.min_steps:
                continue
            if spent >= budget.budget_s:
                reason = "budget"
                break
            medians.append(statistics.median(samples))
            if len(medians) > budget.stable_window:
                old = medians[-budget.stable_window - 1]
                if abs(medians[-1] - old) <= budget.stable_rel * old:
                    reason = "stable"
                    break
        return Timing(samples_s=samples, warmup_s=warm, stop_reason=reason)
