"""``dlgpu hardware [list [--kind gpu|cpu|cloud|all]] | show ID|local``, each with ``--catalog FILE``."""

from __future__ import annotations

import argparse
from typing import Any

from dlgpu import api
from dlgpu.cli.common import Subparsers, add_catalog, add_json, console, emit_json

CATALOG_HELP = ("a CSV of extra or overriding GPUs, CPUs or cloud instances (same columns as the builtin files; may "
                "be repeated; the user config dir is always read)")


def _common(p: argparse.ArgumentParser, default: Any) -> None:
    """``--catalog`` and ``--json``, on ``dlgpu hardware`` and on each action (where they keep what was given
    before the action: ``default=argparse.SUPPRESS``)."""
    add_catalog(p, help=CATALOG_HELP, default=None if default is False else default)
    add_json(p, default=default)


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("hardware", help="the hardware catalog: GPUs, CPUs and cloud prices, with sources")
    p.set_defaults(run=run, action=None, kind="all")
    inner = p.add_subparsers(dest="action", metavar="ACTION", parser_class=type(p))
    lst = inner.add_parser("list", help="list catalog entries (default)")
    lst.add_argument("--kind", choices=api.HARDWARE_KINDS, default="all", help="which entries (default: all)")
    _common(lst, argparse.SUPPRESS)
    show = inner.add_parser("show", help="every figure of one entry, with units, source and notes")
    show.add_argument("id", help="a catalog id (see `dlgpu hardware list`), or 'local' for this machine's CPU")
    _common(show, argparse.SUPPRESS)
    _common(p, False)


def run(args: argparse.Namespace) -> int:
    return _show(args) if args.action == "show" else _list(args)


def _list(args: argparse.Namespace) -> int:
    from dlgpu.report.terminal import print_hardware

    listing = api.hardware_list(args.kind, args.catalog)
    if args.json:
        emit_json(listing.to_dict())
    else:
        print_hardware(console(), listing)
    return 0


def _show(args: argparse.Namespace) -> int:
    from dlgpu.report.terminal import print_hardware_entry

    entry = api.hardware_show(args.id, args.catalog)
    if args.json:
        emit_json(entry.to_dict())
    else:
        print_hardware_entry(console(), entry)
    return 0
