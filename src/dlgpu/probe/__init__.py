"""``dlgpu probe``: this machine's real ceilings, measured on each device (``run``: GEMM throughput per precision over
a sweep of sizes, STREAM copy and triad bandwidth, host-device transfers, dispatch and launch overhead), each next to
the figure it is a fraction of (``peaks``: the catalog's datasheet figure, or the CPU's estimated peak).

Layer 2: imports ``measure`` (the timer, the synchronizer, the contention probe), ``devices``, ``catalog`` and
``results``; torch only inside the functions that measure. The report is a ``results.probe.ProbeReport``; the store
keeps it as a ``probe`` run, and ``predict -H local`` takes its ceilings (``results.probe.MeasuredCeilings``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from dlgpu.catalog import Catalog
from dlgpu.results import DeviceInfo
from dlgpu.results.probe import ProbeFigure, Skipped

from .run import FULL, QUICK, ProbeSettings, Seams, cpu_threads, notes_on, probe_device

__all__ = ["FULL", "QUICK", "ProbeSettings", "Seams", "probe_devices"]


def probe_devices(devices: Sequence[DeviceInfo], settings: ProbeSettings, catalog: Catalog,
                  seams: Seams | None = None, on_figure: Callable[[ProbeFigure], None] | None = None,
                  on_device: Callable[[DeviceInfo], None] | None = None, threads: int | None = None,
                  ) -> tuple[list[ProbeFigure], list[Skipped], list[str], bool]:
    """Every figure of every device, in turn: (figures, skipped, notes, interrupted), the CPU's on ``threads``
    (its usable physical cores, as ``bench`` runs; restored afterwards). Ctrl-C stops the probe and keeps what was
    measured (``interrupted``)."""
    figures: list[ProbeFigure] = []
    skipped: list[Skipped] = []
    interrupted = False
    try:
        with cpu_threads(threads):
            _each(devices, settings, catalog, seams, on_figure, on_device, figures, skipped)
    except KeyboardInterrupt:
        interrupted = True
    return figures, skipped, notes_on(figures), interrupted


def _each(devices: Sequence[DeviceInfo], settings: ProbeSettings, catalog: Catalog, seams: Seams | None,
          on_figure: Callable[[ProbeFigure], None] | None, on_device: Callable[[DeviceInfo], None] | None,
          figures: list[ProbeFigure], skipped: list[Skipped]) -> None:
    """Probe each device in turn; every figure lands in ``figures`` as it is measured (kept if interrupted)."""

    def keep(f: ProbeFigure) -> None:
        figures.append(f)
        if on_figure is not None:
            on_figure(f)

    for dev in devices:
        if on_device is not None:
            on_device(dev)
        _, skip = probe_device(dev, settings, catalog, seams, keep)
        skipped += skip
