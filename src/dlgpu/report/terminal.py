"""Rich tables on a console (stderr when stdout carries JSON)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from dlgpu.results import BenchReport, BenchResult
from dlgpu.units import format_bytes, format_duration, format_rate
from dlgpu.workloads.registry import WorkloadSpec

STATUS_STYLE = {"ok": "", "skipped": "yellow", "failed": "red"}


def make_console(stderr: bool = False) -> Console:
    """A console on stdout or stderr. Rich assumes 80 columns off a terminal; a log file or a pipe is
    better served by one wide line per table row."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(file=stream, highlight=False, width=None if stream.isatty() else 200)


def _epochs(n: float) -> str:
    return f"{n:g} epoch" + ("" if n == 1 else "s")


def _step(r: BenchResult) -> str:
    if r.step_time is None:
        return "-"
    s = f"{format_duration(r.step_time.median)} ± {format_duration(r.step_time.iqr)}"
    return s + " (noisy)" if r.step_time.noisy else s


def bench_table(report: BenchReport, footnotes: dict[str, int]) -> Table:
    """The results table; the reasons of skipped and failed rows go to ``footnotes`` (reason -> number)."""
    t = Table(title="dlgpu bench: measured on this machine", title_justify="left", show_lines=False)
    for col, justify in (("workload", "left"), ("task", "left"), ("device", "left"), ("precision", "left"),
                         ("batch", "right"), ("samples/s", "right"), ("step (median ± IQR)", "right"),
                         ("peak mem", "right"), ("vs CPU fp32", "right"), ("real task", "right")):
        t.add_column(col, justify=justify, no_wrap=col in ("workload", "precision", "device"))  # type: ignore[arg-type]
    for r in report.results:
        if r.status != "ok":
            mark = footnotes.setdefault(r.reason or r.status, len(footnotes) + 1)
            t.add_row(r.workload, r.task, r.device, r.precision, str(r.batch_size or "-"),
                      f"[{STATUS_STYLE[r.status]}]{r.status} [{mark}][/]", "", "", "", "")
            continue
        batch = str(r.batch_size)
        if r.requested_batch_size and r.batch_size != r.requested_batch_size:
            batch += f" (asked {r.requested_batch_size})"
        t.add_row(
            r.workload, r.task, r.device, r.precision, batch,
            format_rate(r.samples_per_s), _step(r), format_bytes(r.peak_mem_bytes),
            "-" if r.speedup_vs_cpu_fp32 is None else f"{r.speedup_vs_cpu_fp32:.2f}x",
            "-" if r.projection is None else format_duration(r.projection.time_s),
        )
    return t


def headlines(report: BenchReport, specs: dict[str, WorkloadSpec]) -> list[str]:
    """One sentence per workload and task: the real task's time on the fastest measured configuration
    of each device (projected from measured throughput)."""
    lines = []
    best: dict[tuple[str, str, str], BenchResult] = {}
    for r in report.results:
        if r.status != "ok" or r.projection is None:
            continue
        k = (r.workload, r.task, r.device)
        if k not in best or (r.samples_per_s or 0) > (best[k].samples_per_s or 0):
            best[k] = r
    for (w, _task, dev), r in best.items():  # in the order they were measured
        assert r.projection is not None
        what = "on this CPU" if dev == "cpu" else f"on {dev}"
        desc = specs[w].description.split(",")[0] if w in specs else w
        lines.append(f"{desc}, {r.projection.description}: {format_duration(r.projection.time_s)} {what} "
                     f"({r.precision}, {format_rate(r.samples_per_s)} {_unit(specs.get(w))}/s measured)")
    return lines


def _unit(spec: WorkloadSpec | None) -> str:
    return "samples" if spec is None else f"{spec.sample_unit}s"


def print_bench(console: Console, report: BenchReport, specs: dict[str, WorkloadSpec]) -> None:
    footnotes: dict[str, int] = {}
    console.print(bench_table(report, footnotes))
    for reason, mark in footnotes.items():
        console.print(f"  [{mark}] {reason}", highlight=False)
    cpu = next((d for d in report.machine.devices if d.kind == "cpu"), None)
    notes = []
    if cpu is not None:
        notes.append(f"CPU: {cpu.name}, {cpu.threads_used} threads on {cpu.physical_cores} physical cores"
                     f"{', native bf16' if cpu.details.get('native_bf16') else ''}.")
    notes.append("samples/s and step times are measured (median of per-step times after warm-up); "
                 "'real task' is projected: task samples / measured samples/s.")
    notes.append("peak mem: allocator peak on accelerators; process peak RSS (incl. PyTorch itself) on the CPU.")
    for line in headlines(report, specs):
        console.print(f"• {line}")
    for n in notes:
        console.print(f"[dim]{n}[/]")
    if report.interrupted:
        console.print("[yellow]Interrupted: the results above are what was measured before Ctrl-C.[/]")


def workloads_table(specs: Sequence[WorkloadSpec]) -> Table:
    t = Table(title="dlgpu workloads", title_justify="left")
    for col in ("name", "family", "description", "batch", "quick batch", "real task"):
        t.add_column(col)
    for s in specs:
        f = s.facts
        task = f.dataset + (f", {_epochs(f.epochs)}" if f.epochs else "")
        t.add_row(s.name, s.family, s.description, str(s.batch_size), str(s.quick_batch_size), task)
    return t


def print_workload(console: Console, spec: WorkloadSpec, parameters: int | None) -> None:
    console.print(f"[bold]{spec.name}[/] ({spec.family}): {spec.description}")
    if parameters is not None:
        console.print(f"  parameters: {parameters:,} (counted on the meta device)")
    console.print(f"  optimizer: {spec.optimizer}; channels-last: {spec.channels_last}; "
                  f"batch {spec.batch_size} (quick {spec.quick_batch_size}); one sample = one {spec.sample_unit}")
    if spec.architecture_source:
        console.print(f"  architecture: {spec.architecture_source}")
    t = Table(title="parameters (--set name=value)", title_justify="left")
    for col in ("name", "default", "type", "meaning"):
        t.add_column(col)
    for p in spec.params:
        t.add_row(p.name, str(p.default), p.type_name, p.help)
    console.print(t)
    f = spec.facts
    console.print("[bold]real task[/]")
    rows: list[tuple[str, object]] = [
        ("dataset", f.dataset),
        ("training samples", None if f.train_samples is None else f"{f.train_samples:,}"),
        ("training tokens", None if f.train_tokens is None else f"{f.train_tokens:,.0f}"),
        ("size on disk", format_bytes(f.dataset_bytes) if f.dataset_bytes else None),
        ("epochs", f.epochs), ("target quality", f.target_quality),
        ("evaluation samples", None if f.eval_samples is None else f"{f.eval_samples:,}"),
        ("notes", f.notes or None), ("source", f.source),
    ]
    optional = {"training tokens", "notes"} | ({"training samples"} if f.train_tokens else set())
    for label, value in rows:
        if value is None and label in optional:
            continue
        console.print(f"  {label}: {'not published / unknown' if value is None else value}")
