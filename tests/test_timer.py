from __future__ import annotations

import itertools
import random
import statistics
from dataclasses import replace

import pytest

from dlgpu.measure.timer import Budget, Timer
from dlgpu.results import StepStats, median_ci


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
    fc = FakeClock([5.0, 1.0, 1.1, 0.9, 1.3, 0.8])  # first (warm-up) step is slow
    timing = Timer(fc.step, fc.sync, fc.clock).run(Budget(warmup_steps=1, min_steps=4, max_steps=4, budget_s=100))
    assert timing.warmup_s == [5.0]
    assert timing.samples_s == pytest.approx([1.0, 1.1, 0.9, 1.3])
    assert fc.syncs == 2 * 5
    assert timing.stop_reason == "max_steps"  # 4 samples this spread are not known to 1%


def test_stops_when_budget_spent_but_not_before_min_steps() -> None:
    fc = FakeClock([2.0, 2.6, 1.7])
    timing = Timer(fc.step, fc.sync, fc.clock).run(Budget(warmup_steps=0, min_steps=3, max_steps=100, budget_s=1.0))
    assert len(timing.samples_s) == 3  # the floor wins over a budget spent after one step
    assert timing.stop_reason == "budget"


def test_stops_once_the_median_is_known_to_the_target_width() -> None:
    # 10 ms steps with 5% gaussian noise: the median's interval narrows to +-2% after a few dozen steps
    # (about (1.96 x 1.25 x 5% / 2%)^2 = 38 for a normal sample), never to +-0.1%.
    rng = random.Random(1)
    noisy = [0.010 * (1 + rng.gauss(0, 0.05)) for _ in range(1000)]
    fc = FakeClock(noisy)
    b = Budget(warmup_steps=0, min_steps=5, max_steps=1000, budget_s=1e9, ci_rel=0.02)
    timing = Timer(fc.step, fc.sync, fc.clock).run(b)
    assert timing.stop_reason == "ci"
    ci = median_ci(timing.samples_s)
    assert ci is not None and (ci[1] - ci[0]) / 2 <= 0.02 * statistics.median(timing.samples_s)
    assert 10 < len(timing.samples_s) < 100
    fc2 = FakeClock(noisy)
    strict = Timer(fc2.step, fc2.sync, fc2.clock).run(replace(b, ci_rel=0.001, max_steps=200))
    assert strict.stop_reason == "max_steps" and len(strict.samples_s) == 200


def test_the_time_ceiling_stops_a_median_not_yet_known() -> None:
    # Steadily growing step times: the interval never narrows, the ceiling (budget_s) stops it, and says so.
    fc = FakeClock([0.01 * 1.1**i for i in range(100)])
    b = Budget(warmup_steps=0, min_steps=2, max_steps=1000, budget_s=0.5, ci_rel=0.001)
    timing = Timer(fc.step, fc.sync, fc.clock).run(b)
    assert timing.stop_reason == "budget"
    assert sum(timing.samples_s[:-1]) < 0.5 <= sum(timing.samples_s)


def test_median_ci_is_a_seeded_bootstrap_interval_around_the_median() -> None:
    xs = [1.0, 1.2, 0.9, 1.1, 1.05, 0.95, 1.3, 1.0, 0.98, 1.02]
    lo, hi = median_ci(xs)  # type: ignore[misc]
    assert lo <= statistics.median(xs) <= hi and min(xs) <= lo < hi <= max(xs)
    assert median_ci(xs) == (lo, hi)  # seeded: the same samples give the same interval
    assert median_ci([1.0, 2.0]) is None
    assert median_ci([2.0] * 5) == (2.0, 2.0)
    s = StepStats(tuple(xs))
    assert s.ci95 == (lo, hi) and s.ci_rel == pytest.approx((hi - lo) / 2 / s.median)
    wide = median_ci([*xs, 5.0, 0.2, 4.0, 0.3])
    assert wide is not None and wide[1] - wide[0] >= hi - lo


def test_stats_median_iqr_noisy() -> None:
    s = StepStats((1.0, 2.0, 3.0, 4.0, 5.0))
    assert s.median == 3.0
    assert s.iqr == pytest.approx(2.0)  # q1 = 2, q3 = 4 (inclusive method)
    assert s.noisy  # 2/3 > 10%
    quiet = StepStats((1.00, 1.01, 0.99, 1.00, 1.02))
    assert not quiet.noisy
    assert StepStats((0.5,)).iqr == 0.0


@pytest.mark.parametrize("kwargs", [dict(min_steps=0), dict(max_steps=1, min_steps=2), dict(budget_s=0),
                                    dict(ci_rel=0)])
def test_budget_rejects_nonsense(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        Budget(**kwargs)
