"""``dlgpu hardware [list [--kind gpu|cpu|cloud|all]] | show ID|local``, each with ``--catalog FILE``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dlgpu import api
from dlgpu.catalog import KINDS


def _common(p: Any) -> None:
    p.add_argument("--catalog", metavar="FILE", type=Path, action="append", default=[],
                   help="a CSV of extra or overriding GPUs, CPUs or cloud instances (same columns as the "
                        "builtin files; may be repeated; the user config dir is always read)")
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")


def add_parser(sub: Any) -> None:
    p = sub.add_parser("hardware", help="the hardware catalog: GPUs, CPUs and cloud prices, with sources")
    p.set_defaults(run=run_list, kind="all", catalog=[], json=False)
    inner = p.add_subparsers(dest="action", metavar="ACTION", parser_class=type(p))
    lst = inner.add_parser("list", help="list catalog entries (default)")
    lst.add_argument("--kind", choices=KINDS, default="all", help="which entries (default: all)")
    _common(lst)
    lst.set_defaults(run=run_list)
    show = inner.add_parser("show", help="every figure of one entry, with units, source and notes")
    show.add_argument("id", help="a catalog id (see `dlgpu hardware list`), or 'local' for this machine's CPU")
    _common(show)
    show.set_defaults(run=run_show)
    _common(p)


def run_list(args: argparse.Namespace) -> int:
    from dlgpu.cli.main import emit_json
    from dlgpu.report.terminal import hardware_tables, make_console

    listing = api.hardware_list(args.kind, args.catalog)
    if args.json:
        emit_json(listing.to_dict())
    else:
        console = make_console()
        for table in hardware_tables(listing):
            console.print(table)
        if listing.user_files:
            console.print(f"[dim]merged user catalog files: {', '.join(listing.user_files)}[/]")
    return 0


def run_show(args: argparse.Namespace) -> int:
    from dlgpu.cli.main import emit_json
    from dlgpu.report.terminal import make_console, print_hardware_entry

    entry = api.hardware_show(args.id, args.catalog)
    if args.json:
        emit_json(entry.to_dict())
    else:
        print_hardware_entry(make_console(), entry)
    return 0
