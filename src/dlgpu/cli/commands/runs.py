"""``dlgpu runs``: the runs kept in the results store, newest first, filtered."""

from __future__ import annotations

import argparse

from dlgpu import api
from dlgpu.cli.common import Subparsers, add_db, add_json, console, emit_json
from dlgpu.results import RUN_KINDS, RUNS_SCHEMA


def add_parser(sub: Subparsers) -> None:
    r = sub.add_parser("runs", help="list the runs in the results store",
                       description="List the bench, predict and advise runs saved in the results store, newest "
                                   "first. The store is a SQLite file: --db PATH, else $DLGPU_DB, else $DLGPU_HOME/"
                                   "results.sqlite, else the user data dir (~/.local/share/dlgpu on Linux).")
    r.add_argument("--workload", "-w", metavar="NAME", help="only runs with a result for this workload")
    r.add_argument("--device", "-d", metavar="DEV",
                   help="only runs with a result on this device (an id such as cuda:0, a catalog id, or part of "
                        "its name, e.g. A100)")
    r.add_argument("--kind", choices=RUN_KINDS, help="only this kind of run")
    r.add_argument("--since", metavar="WHEN", help="only runs from then on: a date, a time, or an age (7d, 12h)")
    r.add_argument("--until", metavar="WHEN", help="only runs before then")
    r.add_argument("--limit", "-n", type=int, metavar="N", help="at most N runs")
    add_db(r)
    add_json(r, RUNS_SCHEMA)
    r.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from dlgpu.report.terminal_runs import print_runs

    rows = api.list_runs(args.db, args.workload, args.device, args.kind, args.since, args.until, args.limit)
    if args.json:
        emit_json({"schema": RUNS_SCHEMA, "runs": [r.to_dict() for r in rows]})
    else:
        print_runs(console(), rows)
    return 0
