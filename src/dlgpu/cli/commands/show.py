"""``dlgpu show RUN``: one stored run, its results and raw figures."""

from __future__ import annotations

import argparse

from dlgpu import api
from dlgpu.cli.common import Subparsers, add_db, add_json, console, emit_json


def add_parser(sub: Subparsers) -> None:
    s = sub.add_parser("show", help="show one stored run (its results and raw figures)")
    s.add_argument("run_ref", metavar="RUN", help="a run id, a unique prefix of one, or 'latest'")
    add_db(s)
    add_json(s, help="print the run's document (dlgpu.bench/1, dlgpu.predict/1 or dlgpu.advise/1)")
    s.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from dlgpu.report.terminal_runs import print_stored_run

    got = api.show_run(args.run_ref, args.db)
    if args.json:
        emit_json(got.document)
    else:
        print_stored_run(console(), got.row, got.document)
    return 0
