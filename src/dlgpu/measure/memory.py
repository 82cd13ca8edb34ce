"""Peak memory during the timed steps.

Accelerators: the allocator's peak (``max_memory_allocated`` after ``reset_peak_memory_stats``): the
tensors the workload needed, not the cache. CPU: the process's peak resident set size (VmHWM), reset
before the run by writing ``5`` to ``/proc/self/clear_refs`` (Linux >= 4.0); where that is not possible a
sampling thread polls RSS instead. The CPU figure includes the interpreter and PyTorch's libraries."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import threading
from pathlib import Path
from typing import Any, Protocol

import psutil


class PeakMemory(Protocol):
    kind: str

    def reset(self) -> None: ...

    def peak_bytes(self) -> int | None: ...

    def close(self) -> None: ...


def release_cpu_memory() -> None:
    """Collect garbage and hand freed heap back to the OS, so an earlier run's RSS does not count here."""
    gc.collect()
    name = ctypes.util.find_library("c")
    if name:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(name).malloc_trim(0)


class CpuPeakRss:
    """Peak RSS of this process since ``reset``."""

    kind = "process-peak-rss"

    def __init__(self, proc: Path = Path("/proc/self"), sample_period_s: float = 0.005) -> None:
        self.proc = proc
        self.period = sample_period_s
        self._sampled_peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._hwm_ok = False

    def _read_hwm(self) -> int | None:
        try:
            for line in (self.proc / "status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            return None
        return None

    def reset(self) -> None:
        release_cpu_memory()
        try:
            (self.proc / "clear_refs").write_text("5")
            self._hwm_ok = self._read_hwm() is not None
        except OSError:
            self._hwm_ok = False
        if not self._hwm_ok:
            self._start_sampler()

    def _start_sampler(self) -> None:
        self.close()
        self._stop.clear()
        me = psutil.Process()
        self._sampled_peak = me.memory_info().rss

        def loop() -> None:
            while not self._stop.wait(self.period):
                self._sampled_peak = max(self._sampled_peak, me.memory_info().rss)

        self._thread = threading.Thread(target=loop, name="dlgpu-rss", daemon=True)
        self._thread.start()

    def peak_bytes(self) -> int | None:
        if self._hwm_ok:
            return self._read_hwm()
        if self._thread is not None:
            self._sampled_peak = max(self._sampled_peak, psutil.Process().memory_info().rss)
            return self._sampled_peak
        return None

    def close(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None


class AllocatorPeak:
    """``torch.cuda`` / ``torch.xpu`` allocator peak for one device index."""

    kind = "allocator-peak"

    def __init__(self, backend: Any, index: int) -> None:
        self.backend = backend
        self.index = index

    def reset(self) -> None:
        gc.collect()
        self.backend.empty_cache()
        self.backend.reset_peak_memory_stats(self.index)

    def peak_bytes(self) -> int | None:
        return int(self.backend.max_memory_allocated(self.index))

    def close(self) -> None:
        pass


class MpsDriverMemory:
    """MPS has no peak counter: the driver's allocation is read after the run (a lower bound of the peak)."""

    kind = "mps-driver-allocated"

    def __init__(self, mps: Any) -> None:
        self.mps = mps

    def reset(self) -> None:
        gc.collect()
        self.mps.empty_cache()

    def peak_bytes(self) -> int | None:
        return int(self.mps.driver_allocated_memory())

    def close(self) -> None:
        pass
