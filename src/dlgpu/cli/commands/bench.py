"""``dlgpu bench``: measure workloads on every device here, at every precision each supports."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from dlgpu import api
from dlgpu.results import BenchResult


def add_parser(sub: Any) -> None:
    p = sub.add_parser("bench", help="measure workloads on this machine's devices",
                       description="Measure real workloads for training and inference on every device "
                                   "here, at every precision each device supports.")
    p.add_argument("--workload", "-w", nargs="+", action="extend", metavar="NAME",
                   help="workloads to run (default: the classic suite; 'all' for every one)")
    p.add_argument("--device", "-d", nargs="+", action="extend", metavar="DEV",
                   help="cpu, cuda, cuda:N, mps, xpu or all (default all)")
    p.add_argument("--precision", "-p", nargs="+", action="extend", metavar="P",
                   help="fp32, tf32, bf16, fp16 or all (default all)")
    p.add_argument("--task", "-t", nargs="+", action="extend", metavar="T",
                   help="train, infer, both, decode (decoder-only language models: one token at a time "
                        "with a KV cache, see --set context_len) or all (default: train and infer)")
    p.add_argument("--batch-size", "-b", type=int, metavar="N", help="override every workload's batch size")
    p.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE",
                   help="override a workload parameter, e.g. image_size=64 (see `dlgpu workloads show`)")
    p.add_argument("--quick", action="store_true", help="short budgets and small batches (minutes on a laptop)")
    p.add_argument("--budget", type=float, metavar="SECONDS",
                   help="time budget per configuration (default 10, quick 2)")
    p.add_argument("--telemetry-period", type=float, metavar="S",
                   help="seconds between power/utilization samples beside each measured region (default 0.1)")
    p.add_argument("--no-telemetry", action="store_true",
                   help="do not sample power, energy and utilization (and measure no idle baseline)")
    p.add_argument("--model", metavar="PKG.MODULE:FACTORY", help="measure your own model (with --input)")
    p.add_argument("--input", dest="inputs", metavar="SPEC",
                   help="your model's inputs without the batch dim, e.g. 3x224x224 or 128:int64:30522")
    p.add_argument("--output", "-o", type=Path, metavar="FILE",
                   help="also write the JSON document to FILE (rewritten after every result)")
    p.add_argument("--db", type=Path, metavar="PATH",
                   help="the results database to save the run in (default: $DLGPU_DB, else the user data dir)")
    p.add_argument("--no-save", action="store_true", help="do not save the run in the results database")
    p.add_argument("--hostname", action="store_true", help="record this machine's hostname in the results")
    p.add_argument("--json", action="store_true", help="print one JSON document (dlgpu.bench/1) on stdout")
    p.set_defaults(run=run)


class _ProgressObserver:
    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task = progress.add_task("planning", total=None)

    def planned(self, total: int) -> None:
        self.progress.update(self.task, total=total)

    def started(self, label: str) -> None:
        self.progress.update(self.task, description=label)

    def finished(self, r: BenchResult) -> None:
        self.progress.advance(self.task)
        what = r.status if r.status != "ok" else f"{r.samples_per_s:.3g} samples/s"
        self.progress.console.print(f"[dim]{r.workload} {r.task} {r.device} {r.precision}: {what}[/]",
                                    highlight=False)


def _budget(args: argparse.Namespace) -> Any:
    from dataclasses import replace

    from dlgpu.errors import BadInput
    from dlgpu.measure.timer import QUICK, STANDARD

    if args.budget is None:
        return None
    if args.budget <= 0:
        raise BadInput(f"--budget {args.budget}: must be a positive number of seconds")
    return replace(QUICK if args.quick else STANDARD, budget_s=args.budget)


def run(args: argparse.Namespace) -> int:
    from dlgpu.cli.main import emit_json
    from dlgpu.errors import BadInput
    from dlgpu.report.terminal import make_console, print_bench
    from dlgpu.store import default_db_path
    from dlgpu.workloads.custom import custom_spec

    custom = []
    if args.model or args.inputs:
        if not (args.model and args.inputs):
            raise BadInput("--model and --input go together, e.g. --model mypkg.nets:make --input 3x224x224")
        custom.append(custom_spec(args.model, args.inputs, args.batch_size or 8))
    db = None if args.no_save else (args.db or default_db_path())
    console = make_console(stderr=args.json)
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=Console(stderr=True), transient=True)
    with progress:
        report = api.bench(
            workloads=args.workload, devices=args.device, precisions=args.precision, tasks=args.task,
            quick=args.quick, batch_size=args.batch_size, overrides=api.parse_overrides(args.overrides),
            budget=_budget(args), observer=_ProgressObserver(progress), save_to=args.output, db=db,
            custom_specs=custom, include_hostname=args.hostname,
            telemetry=not args.no_telemetry, telemetry_period_s=args.telemetry_period,
        )
    registered = [w for w in report.config.workloads if not w.startswith("custom:")]
    specs = {s.name: s for s in (api.resolve_workloads(registered) if registered else [])}
    specs |= {s.name: s for s in custom}
    print_bench(console, report, specs)
    note = make_console(stderr=True)
    if db is not None and report.run_id:
        note.print(f"[dim]saved as run {report.run_id} in {db} (`dlgpu show {report.run_id[:8]}`)[/]")
    if args.output is not None:
        note.print(f"[dim]written: {args.output}[/]")
    if args.json:
        emit_json(report.to_dict())
    return 130 if report.interrupted else 0
