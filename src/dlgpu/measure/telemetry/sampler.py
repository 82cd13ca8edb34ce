"""The sampler: a background thread that reads a backend every ``period_s`` while a measured region runs.

    tel = Telemetry(backend)
    tel.measure_idle(2.0)          # optional: idle baseline, subtracted in the result's net_* figures
    with tel:
        run_the_steps()
    result = tel.result            # TelemetryResult: raw samples + energy, power, utilization, throttling

The first sample is read synchronously in ``start`` and the last in ``stop``, so counters are differenced
over exactly the region. Between them the thread reads on a fixed schedule (missed ticks are skipped, not
bunched). The clock is a seam and stamps every sample (``time.perf_counter``, the Timer's clock)."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from types import TracebackType

from .backend import TelemetryBackend
from .model import DEFAULT_PERIOD_S, MIN_WINDOW_UPDATES, Sample, TelemetryResult


class Telemetry:
    def __init__(
        self,
        backend: TelemetryBackend,
        period_s: float = DEFAULT_PERIOD_S,
        clock: Callable[[], float] = time.perf_counter,
        idle: TelemetryResult | None = None,
        device: str | None = None,
    ) -> None:
        if not period_s > 0:
            raise ValueError("period_s must be positive")
        self.backend = backend
        self.period_s = period_s
        self.clock = clock
        self.idle = idle
        self.device = device
        self._samples: list[Sample] = []
        self._errors: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0
        self._running = False
        self._result: TelemetryResult | None = None

    @property
    def min_window_s(self) -> float:
        """The shortest region this sensor measures to within ~1/MIN_WINDOW_UPDATES: run at least this long."""
        if self.backend.source == "unavailable":
            return 0.0
        return max(MIN_WINDOW_UPDATES * self.backend.update_interval_s, self.period_s)

    @property
    def running(self) -> bool:
        return self._running

    @property
    def latest(self) -> Sample | None:
        """The most recent sample of the running (or last) window, e.g. for a live power display."""
        samples = self._samples
        return samples[-1] if samples else None

    @property
    def result(self) -> TelemetryResult:
        if self._result is None:
            raise RuntimeError("no window measured yet: use start()/stop() or the context manager")
        return self._result

    def _read(self) -> None:
        try:
            self._samples.append(self.backend.read(self.clock()))
        except Exception as exc:  # a backend should not raise; if it does, keep the window going
            if len(self._errors) < 5:
                self._errors.append(f"{type(exc).__name__}: {exc}")

    def _loop(self) -> None:
        next_t = time.perf_counter() + self.period_s
        while True:
            if self._stop.wait(max(0.0, next_t - time.perf_counter())):
                return
            self._read()
            next_t += self.period_s
            now = time.perf_counter()
            if next_t <= now:  # a slow read or a stalled thread: skip the missed ticks
                next_t = now + self.period_s

    def start(self) -> None:
        if self._running:
            raise RuntimeError("telemetry window already running")
        self._samples, self._errors, self._result = [], [], None
        self._stop.clear()
        self._t0 = self.clock()
        self._running = True
        if self.backend.source == "unavailable":
            return
        self._samples.append(self.backend.start(self._t0))
        self._thread = threading.Thread(target=self._loop, name="dlgpu-telemetry", daemon=True)
        self._thread.start()

    def stop(self) -> TelemetryResult:
        if not self._running:
            raise RuntimeError("telemetry window not running")
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        t1 = self.clock()
        if self.backend.source != "unavailable":
            try:
                self._samples.append(self.backend.read(t1))
            except Exception as exc:
                self._errors.append(f"{type(exc).__name__}: {exc}")
        self._running = False
        reasons = [r for r in (self.backend.reason, *(f"read error: {e}" for e in self._errors)) if r]
        result = TelemetryResult(
            source=self.backend.source,
            basis=self.backend.basis,
            energy_method=self.backend.energy_method,
            samples=tuple(self._samples),
            window_start_s=self._t0,
            window_end_s=t1,
            period_s=self.period_s,
            min_window_s=self.min_window_s,
            device=self.device,
            reason="; ".join(reasons) or None,
        )
        if self.idle is not None:
            if self.idle.source == result.source:
                result = result.with_idle(self.idle)
            else:
                result = dataclasses.replace(result, idle_basis=(
                    f"idle baseline ignored: measured with {self.idle.source}, this window with {result.source}"))
        self._result = result
        return result

    def __enter__(self) -> Telemetry:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._running:
            self.stop()

    def measure_idle(self, duration_s: float, sleep: Callable[[float], None] = time.sleep) -> TelemetryResult:
        """Sample ``duration_s`` of doing nothing and keep it as the idle baseline of later windows. Call it with
        the device idle (before the workload, or after a cool-down); it should be at least ``min_window_s``."""
        self.idle = None
        self.start()
        try:
            sleep(duration_s)
        finally:
            baseline = self.stop()
        self.idle = baseline
        return baseline
