"""The results store on a console: the runs it keeps, one stored run (its document read back into the typed
result first), and what an import added."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dlgpu.report.terminal import bench_table
from dlgpu.report.terminal_advise import print_advice
from dlgpu.report.terminal_predict import print_prediction
from dlgpu.results import advice_from_dict, prediction_from_dict, report_from_dict

if TYPE_CHECKING:
    from dlgpu.store import RunRow

STATUS_STYLE = {"complete": "", "interrupted": "yellow", "incomplete": "red", "running": "cyan"}


def print_runs(console: Console, rows: Sequence[RunRow]) -> None:
    if not rows:
        console.print("no runs match (run `dlgpu bench` or `dlgpu predict`, or `dlgpu import` a file)")
        return
    t = Table(title="dlgpu runs", title_justify="left")
    for col in ("run", "kind", "created (UTC)", "status", "machine", "what", "origin"):
        t.add_column(col, no_wrap=col in ("run", "created (UTC)"))
    for r in rows:
        style = STATUS_STYLE.get(r.status)
        t.add_row(r.id[:12], r.kind, r.created_at.replace("+00:00", "").replace("T", " "),
                  f"[{style}]{r.status}[/]" if style else r.status, escape(r.machine), escape(r.summary),
                  escape(r.origin))
    console.print(t)
    console.print("[dim]`dlgpu show RUN` for one run (a prefix of its id is enough); `dlgpu export RUN...` to share[/]")


def print_stored_run(console: Console, row: RunRow, doc: dict[str, Any]) -> None:
    console.print(f"[bold]run {row.id}[/] ({row.kind}, {row.status}), {row.created_at}, {escape(row.origin)}")
    console.print(f"machine: {escape(row.machine)}")
    if row.kind == "predict":
        print_prediction(console, prediction_from_dict(doc))
        return
    if row.kind == "advise":
        print_advice(console, advice_from_dict(doc))
        return
    if row.kind == "probe":
        from dlgpu.report.terminal_probe import print_probe
        from dlgpu.results.probe import probe_from_dict

        print_probe(console, probe_from_dict(doc))
        return
    report = report_from_dict(doc)
    m = report.machine
    console.print(f"[dim]torch {escape(m.torch)}, CUDA {m.torch_cuda or '-'}, driver {escape(m.gpu_driver or '-')}, "
                  f"dlgpu {escape(m.dlgpu)}, {escape(m.platform)}[/]")
    footnotes: dict[str, int] = {}
    console.print(bench_table(report, footnotes))
    for reason, n in footnotes.items():
        console.print(f"[dim][{n}] {escape(reason)}[/]")


def print_import(console: Console, doc: dict[str, Any]) -> None:
    """``dlgpu.import/1``: how many runs were added (and which), and how many were there already."""
    present = doc["already_present"]
    console.print(f"imported {len(doc['added'])} run(s)" + (f"; {len(present)} already present" if present else ""))
    for run_id in doc["added"]:
        console.print(f"  {escape(run_id)}")
