"""Contention: how much of the machine other processes used while a configuration was timed.

A ``ContentionProbe`` snapshots, at the start and end of the timed window, the machine's CPU times
(``psutil.cpu_times()``: busy = everything but idle and iowait; ``steal`` on virtual machines), the CPU time of
this process (the one that runs the steps: an isolated run probes inside its child), and its involuntary
context switches (the scheduler took the CPU away). Others' CPU time = the machine's busy time minus this
process's, and their *share* is that over the window's CPU capacity (window x logical CPUs).

A window is ``contended`` when others took more than ``CONTENDED_SHARE`` of the capacity, or the hypervisor
stole more than ``CONTENDED_STEAL_SHARE``. The figures and the thresholds go into the result, so that a reader
sees what was judged and why. psutil only; no torch."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

CONTENDED_SHARE = 0.10
"""Others' CPU time above this share of the machine's CPU capacity during the window marks it contended. On the
2-core development VM, one busy process beside a run is 0.5; system daemons, the telemetry sampler and dlgpu's
own parent process stay near 0.01-0.03 (docs/MEASUREMENT-NOISE.md has the figures)."""

CONTENDED_STEAL_SHARE = 0.05
"""Steal time (a VM's CPUs given to other guests) above this share of the capacity marks the window contended."""

MAX_REMEASURE = 1
"""A contended configuration is measured again at most this many times (on a CPU, on the cores others left
free: ``harness.measure``). One is enough: the second attempt is the informative one, and each costs at least
the warm-up and the minimum steps at the slowed pace (a busy run of the quick suite took 16 min with two)."""

REMEASURE_PAUSE_S = 1.0
"""Pause before measuring a contended configuration again (a short burst elsewhere may be over by then)."""

CPU_TIME_RESOLUTION_S = 0.01
"""Linux counts CPU time in clock ticks (USER_HZ = 100 on every mainstream kernel, see proc(5)): the machine's and
each process's totals are each uncertain by about a tick, so (CPUs + 1) ticks of others' time are not judged."""

_IDLE_FIELDS = ("idle", "iowait")


@dataclass(frozen=True)
class Contention:
    """What other processes took during one timed window (CPU-seconds, and shares of the window's capacity)."""

    window_s: float
    cpus: int
    others_cpu_s: float
    others_share: float
    own_cpu_s: float
    steal_s: float | None
    steal_share: float | None
    involuntary_switches: int | None
    contended: bool
    basis: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _busy_and_steal() -> tuple[float, float | None]:
    import psutil

    t = psutil.cpu_times()
    fields = t._asdict()
    total = sum(fields.values())
    # guest time is already counted in user (Linux), so it is not added twice
    busy = total - sum(fields.get(f, 0.0) for f in _IDLE_FIELDS) - fields.get("guest", 0.0) - fields.get(
        "guest_nice", 0.0)
    return busy, fields.get("steal")


def _own_cpu_and_switches() -> tuple[float, int | None]:
    """This process's CPU time (all its threads) and involuntary context switches. Children are others: the
    measurement runs in this process (an isolated run probes inside its own child process)."""
    import psutil

    me = psutil.Process()
    t = me.cpu_times()
    try:
        switches: int | None = me.num_ctx_switches().involuntary
    except psutil.Error:
        switches = None
    return t.user + t.system, switches


def judge(window_s: float, cpus: int, others_cpu_s: float, own_cpu_s: float, steal_s: float | None,
          involuntary: int | None) -> Contention:
    """The verdict on one window from its figures (pure: the tests hand it numbers)."""
    capacity = max(window_s, 1e-9) * max(cpus, 1)
    others = max(0.0, others_cpu_s)
    share = others / capacity
    judged = max(0.0, others - (cpus + 1) * CPU_TIME_RESOLUTION_S) / capacity
    steal_share = None if steal_s is None else max(0.0, steal_s) / capacity
    reasons = []
    if judged > CONTENDED_SHARE:
        reasons.append(f"other processes used {share:.0%} of the {cpus} CPUs (over {CONTENDED_SHARE:.0%})")
    if steal_share is not None and steal_share > CONTENDED_STEAL_SHARE:
        reasons.append(f"the hypervisor stole {steal_share:.0%} of the CPU time (over {CONTENDED_STEAL_SHARE:.0%})")
    basis = ("; ".join(reasons) if reasons else
             f"other processes used {share:.1%} of the {cpus} CPUs (contended above {CONTENDED_SHARE:.0%})")
    basis += (f", over a {window_s:.3g} s window (psutil: machine busy time minus this process's "
              f"{own_cpu_s:.3g} CPU-s)")
    return Contention(window_s, cpus, others, share, own_cpu_s, steal_s, steal_share, involuntary,
                      bool(reasons), basis)


class ContentionProbe:
    """``start()`` before the first timed step, ``stop()`` after the last: the ``Contention`` of that window."""

    def __init__(self, cpus: int | None = None) -> None:
        import psutil

        self.cpus = cpus or psutil.cpu_count(logical=True) or 1
        self._t0: float | None = None
        self._busy0 = 0.0
        self._steal0: float | None = None
        self._own0 = 0.0
        self._sw0: int | None = None

    def start(self) -> None:
        self._busy0, self._steal0 = _busy_and_steal()
        self._own0, self._sw0 = _own_cpu_and_switches()
        self._t0 = time.perf_counter()

    def stop(self) -> Contention:
        if self._t0 is None:
            raise RuntimeError("ContentionProbe.stop() before start()")
        window = time.perf_counter() - self._t0
        busy, steal = _busy_and_steal()
        own, sw = _own_cpu_and_switches()
        own_used = max(0.0, own - self._own0)
        steal_used = None if steal is None or self._steal0 is None else steal - self._steal0
        involuntary = None if sw is None or self._sw0 is None else max(0, sw - self._sw0)
        return judge(window, self.cpus, (busy - self._busy0) - own_used, own_used, steal_used, involuntary)
