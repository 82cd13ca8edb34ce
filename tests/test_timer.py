from __future__ import annotations

import itertools

import pytest

from dlgpu.measure.timer import Budget, Timer
from dlgpu.results import StepStats


class FakeClock:
    """Each step advances time by the next duration; sync calls are counted."""

    def __init__(self, durations: list[float]) -> None:
        self.now = 0.0
        self.durations = itertools.cycle(durations)
        self.syncs = 0

    def clock(self) -> float:
        return self.now

    def step(self) -> None:
        self.now += next(self.durations)

    def sync(self) -> None:
        self.syncs += 1


def test_warmup_excluded_and_sync_around_every_step() -> None:
    fc = FakeClock([5.0, 1.0, 1.0, 1.0, 1.0])  # first (warm-up) step is slow
    timing = Timer(fc.step, fc.sync, fc.clock).run(Budget(warmup_steps=1, min_steps=4, max_steps=4, budget_s=100))
    assert timing.warmup_s == [5.0]
    assert timing.samples_s == [1.0, 1.0, 1.0, 1.0]
    assert fc.syncs == 2 * 5
    assert timing.stop_reason == "max_steps"


def test_stops_when_budget_spent_but_not_before_min_steps() -> None:
    fc = FakeClock([2.0])
    timing = Timer(fc.step, fc.sync, fc.clock).run(Budget(warmup_steps=0, min_steps=3, max_steps=100, budget_s=1.0))
    assert len(timing.samples_s) == 3  # the floor wins over a budget spent after one step
    assert timing.stop_reason == "budget"


def test_stops_when_median_is_stable() -> None:
    fc = FakeClock([0.010, 0.011, 0.009])
    b = Budget(warmup_steps=0, min_steps=5, max_steps=1000, budget_s=1e9, stable_rel=0.01, stable_window=5)
    timing = Timer(fc.step, fc.sync, fc.clock).run(b)
    assert timing.stop_reason == "stable"
    assert 5 < len(timing.samples_s) < 50


def test_unstable_run_goes_to_ceiling() -> None:
    # Steadily growing step times never stabilise: the ceiling stops it.
    fc = FakeClock([0.01 * 1.1**i for i in range(100)])
    b = Budget(warmup_steps=0, min_steps=2, max_steps=30, budget_s=1e9, stable_rel=0.001)
    assert len(Timer(fc.step, fc.sync, fc.clock).run(b).samples_s) == 30


def test_stats_median_iqr_noisy() -> None:
    s = StepStats((1.0, 2.0, 3.0, 4.0, 5.0))
    assert s.median == 3.0
    assert s.iqr == pytest.approx(2.0)  # q1 = 2, q3 = 4 (inclusive method)
    assert s.noisy  # 2/3 > 10%
    quiet = StepStats((1.00, 1.01, 0.99, 1.00, 1.02))
    assert not quiet.noisy
    assert StepStats((0.5,)).iqr == 0.0


@pytest.mark.parametrize("kwargs", [dict(min_steps=0), dict(max_steps=1, min_steps=2), dict(budget_s=0)])
def test_budget_rejects_nonsense(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        Budget(**kwargs)
