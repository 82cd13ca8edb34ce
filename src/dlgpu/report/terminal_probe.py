"""``dlgpu probe`` on a console: each device's ceilings as sentences ("fp32 GEMM 351 GFLOP/s = 105% of peak (peak:
...)"), then every figure of the sweep with its spread, steps and contention, what was skipped and why, and notes.
Renders, never judges: every figure and fraction comes from the ``results.probe.ProbeReport``."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dlgpu.report.format import si
from dlgpu.results.probe import ProbeFigure, ProbeReport, is_rate
from dlgpu.units import format_bytes

CEILING_ORDER = ("gemm:fp32", "gemm:tf32", "gemm:bf16", "gemm:fp16", "gemm:int8", "copy", "triad", "optimizer:bf16",
                 "optimizer:fp32", "h2d:pinned",
                 "h2d:pageable", "d2h:pinned", "d2h:pageable", "dispatch", "launch")


def value_text(f: ProbeFigure, value: float | None = None) -> str:
    v = f.value if value is None else value
    if not is_rate(f.what):
        return f"{si(v, 's')} per {'launch' if f.what == 'launch' else 'op'}"
    if f.what == "optimizer":
        return f"{si(1.0 / v, 's')} per parameter"
    unit = "OP/s" if f.precision == "int8" and f.what == "gemm" else f.unit
    return si(v, unit)


def ceiling_line(f: ProbeFigure) -> str:
    """``fp32 GEMM 351 GFLOP/s = 105% of peak (peak: estimated, 2 cores x 2.60 GHz x 64 FLOP/cycle)``."""
    where = f" at n={f.size}" if f.what == "gemm" else ""
    text = f"{f.label} {value_text(f)}{where}"
    frac = f.fraction_of_peak
    if frac is not None and f.peak:
        text += f" = {frac:.0%} of peak (peak: {value_text(f, f.peak)}, {f.peak_short or f.peak_basis})"
    elif is_rate(f.what) and f.peak_short:
        text += f" (no peak to compare: {f.peak_short})"
    if f.contended:
        text += " [contended]"
    return text


def _device_title(rep: ProbeReport, dev_id: str) -> str:
    dev = next(d for d in rep.devices if d.id == dev_id)
    threads = next((f.settings.get("threads") for f in rep.of(dev_id) if f.settings.get("threads")), None)
    extra = f", {threads} threads" if threads else ""
    return f"{dev.id}: {dev.name}{extra}"


def print_probe(console: Console, rep: ProbeReport) -> None:
    run = f"run {rep.run_id[:12]}" if rep.run_id else "not saved"
    console.print(f"[bold]dlgpu probe[/]: this machine's ceilings ({run}, {rep.created_at}"
                  f"{', --quick' if rep.quick else ''}{', interrupted' if rep.interrupted else ''})")
    for dev in rep.devices:
        ceilings = rep.ceilings(dev.id)
        if not ceilings:
            continue
        console.print(f"\n[bold]{escape(_device_title(rep, dev.id))}[/]")
        for key in CEILING_ORDER:
            if key in ceilings:
                console.print(f"  {escape(ceiling_line(ceilings[key]))}")
    if rep.figures:
        console.print(sweep_table(rep))
    if rep.skipped:
        console.print("[dim]not measured:[/]")
        for s in rep.skipped:
            what = (f"{s.precision} GEMM" if s.what == "gemm" else f"{s.precision} AdamW" if s.what == "optimizer"
                    else s.what)
            console.print(f"[dim]  {escape(s.device)} {escape(what)}: {escape(s.reason)}[/]")
    for why in rep.absent.values():
        console.print(f"[dim]  {escape(why)}[/]")
    for f in {f.settings.get("note") for f in rep.figures if f.settings.get("note")}:
        console.print(f"[yellow]note:[/] {escape(str(f))}")
    for note in rep.notes:
        console.print(f"[yellow]note:[/] {escape(note)}")
    if rep.contended:
        console.print("[yellow]contended: other processes used the CPUs while some figures were timed; `predict -H "
                      "local` will not use this probe (run it again on a quiet machine)[/]")


def sweep_table(rep: ProbeReport) -> Table:
    t = Table(title="every figure (median of the timed steps; spread: the middle half of the steps)",
              title_justify="left")
    for col in ("device", "figure", "size", "measured", "spread", "of peak", "steps", "calls/step", "stop",
                "contended"):
        t.add_column(col, justify="right" if col in ("size", "measured", "of peak", "steps", "calls/step")
                     else "left")
    for f in rep.figures:
        low, high = f.spread
        if f.what == "optimizer":  # seconds per parameter: the slower rate is the larger figure
            low, high = high, low
        size = ("" if f.size is None else f"n={f.size}" if f.what == "gemm" else
                f"{f.size / 1e6:,.0f}M params" if f.what == "optimizer" else
                format_bytes(f.size * 4) if f.what in ("copy", "triad") else format_bytes(f.size))
        frac = f.fraction_of_peak
        t.add_row(f.device, f.label, size, value_text(f), f"{value_text(f, low)} - {value_text(f, high)}",
                  "-" if frac is None else f"{frac:.0%}", str(f.step_time.n), str(f.reps_per_step),
                  f.stop_reason or "-", "yes" if f.contended else "no")
    return t
