"""``dlgpu probe``: this machine's real ceilings on each device, measured, each as a fraction of its peak."""

from __future__ import annotations

import argparse

from dlgpu import api
from dlgpu.cli.common import Subparsers, add_db, add_json, console, emit_json
from dlgpu.results import DeviceInfo
from dlgpu.results.probe import ProbeFigure
from dlgpu.results.vocab import PROBE_SCHEMA


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("probe", help="measure this machine's real ceilings (GEMM, memory bandwidth, overheads)",
                       description="Measure this machine's ceilings on each device: matrix-multiply throughput per "
                                   "precision over a sweep of sizes, memory bandwidth (STREAM copy and triad, bytes "
                                   "read + written, all usable cores on the CPU), host-device transfers (pinned and "
                                   "pageable, GPUs only), per-op dispatch and kernel launch overhead; each next to "
                                   "the catalog's datasheet figure (or the CPU's estimated peak) as a fraction. "
                                   "Saved in the results store: `predict -H local`, `advise` and MFU then use them "
                                   "and say so. Run it on a quiet machine: a contended probe is not used.")
    p.add_argument("--device", "-d", nargs="+", action="extend", metavar="DEV",
                   help="cpu, cuda, cuda:N, mps, xpu or all (default all)")
    p.add_argument("--quick", action="store_true",
                   help="fewer and smaller sizes, short budgets (seconds; smaller bandwidth arrays, which the output "
                        "flags where they are under 4x the last-level cache)")
    p.add_argument("--no-save", action="store_true", help="do not save the probe in the results database")
    add_db(p)
    add_json(p, PROBE_SCHEMA, help=f"print one JSON document ({PROBE_SCHEMA}: every figure with its raw samples)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from rich.markup import escape

    from dlgpu.report.terminal_probe import print_probe, value_text

    progress = console(stderr=True)

    def on_device(dev: DeviceInfo) -> None:
        progress.print(f"[dim]probing {escape(dev.id)} ({escape(dev.name)})...[/]")

    def on_figure(f: ProbeFigure) -> None:
        size = "" if f.size is None else f" n={f.size}" if f.what == "gemm" else ""
        progress.print(f"[dim]  {escape(f.label)}{size}: {value_text(f)}{' (contended)' if f.contended else ''}[/]")

    rep = api.probe(args.device, quick=args.quick, save=not args.no_save, db=args.db, on_figure=on_figure,
                    on_device=on_device)
    if args.json:
        emit_json(rep.to_dict())
    else:
        print_probe(console(), rep)
    if rep.interrupted:
        return 130  # Ctrl-C: what was measured is printed (and saved), as `bench` does
    return 0 if rep.figures else 1
