"""``dlgpu runs``, ``dlgpu show``, ``dlgpu export`` and ``dlgpu import``: the results store."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dlgpu import api

DB_HELP = "the results database (default: $DLGPU_DB, else the user data dir; see `dlgpu runs --help`)"


def add_db(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", type=Path, metavar="PATH", help=DB_HELP)


def add_parser(sub: Any) -> None:
    r = sub.add_parser("runs", help="list the runs in the results store",
                       description="List the bench and predict runs saved in the results store, newest first. "
                                   "The store is a SQLite file: --db PATH, else $DLGPU_DB, else $DLGPU_HOME/"
                                   "results.sqlite, else the user data dir (~/.local/share/dlgpu on Linux).")
    r.add_argument("--workload", "-w", metavar="NAME", help="only runs with a result for this workload")
    r.add_argument("--device", "-d", metavar="DEV",
                   help="only runs with a result on this device (an id such as cuda:0, a catalog id, or part of "
                        "its name, e.g. A100)")
    r.add_argument("--kind", choices=("bench", "predict", "advise"), help="only this kind of run")
    r.add_argument("--since", metavar="WHEN", help="only runs from then on: a date, a time, or an age (7d, 12h)")
    r.add_argument("--until", metavar="WHEN", help="only runs before then")
    r.add_argument("--limit", "-n", type=int, metavar="N", help="at most N runs")
    add_db(r)
    r.add_argument("--json", action="store_true", help="print one JSON document (dlgpu.runs/1)")
    r.set_defaults(run=run_runs)

    s = sub.add_parser("show", help="show one stored run (its results and raw figures)")
    s.add_argument("run_ref", metavar="RUN", help="a run id, a unique prefix of one, or 'latest'")
    add_db(s)
    s.add_argument("--json", action="store_true", help="print the run's document (dlgpu.bench/1 or dlgpu.predict/1)")
    s.set_defaults(run=run_show)

    e = sub.add_parser("export", help="write stored runs as one JSON document (dlgpu.export/1) on stdout",
                       description="Export runs, raw samples included, to share them: `dlgpu export RUN... > "
                                   "runs.json`, then `dlgpu import runs.json` on another machine.")
    e.add_argument("run_refs", nargs="*", metavar="RUN", help="run ids or prefixes (default: every run)")
    e.add_argument("--output", "-o", type=Path, metavar="FILE", help="write to FILE instead of stdout")
    e.add_argument("--json", action="store_true", help="(the default: export always writes JSON)")
    add_db(e)
    e.set_defaults(run=run_export)

    i = sub.add_parser("import", help="add runs from JSON files (dlgpu export bundles or bench/predict documents)",
                       description="Import runs measured elsewhere. Every file is validated before anything is "
                                   "written; a malformed file is refused with the first problem and nothing is "
                                   "imported. Runs already present (same id) are left as they are.")
    i.add_argument("files", nargs="+", type=Path, metavar="FILE")
    add_db(i)
    i.add_argument("--json", action="store_true", help="print one JSON document (dlgpu.import/1)")
    i.set_defaults(run=run_import)


def run_runs(args: argparse.Namespace) -> int:
    from dlgpu.cli.main import emit_json
    from dlgpu.report.terminal import make_console, print_runs

    rows = api.list_runs(args.db, args.workload, args.device, args.kind, args.since, args.until, args.limit)
    if args.json:
        emit_json({"schema": "dlgpu.runs/1", "runs": [r.to_dict() for r in rows]})
    else:
        print_runs(make_console(), rows)
    return 0


def run_show(args: argparse.Namespace) -> int:
    from dlgpu.cli.main import emit_json
    from dlgpu.report.terminal import make_console, print_stored_run

    got = api.show_run(args.run_ref, args.db)
    if args.json:
        emit_json(got.document)
    else:
        print_stored_run(make_console(), got.row, got.document)
    return 0


def run_export(args: argparse.Namespace) -> int:
    import sys

    from dlgpu.cli.main import emit_json
    from dlgpu.store import write_json_atomic

    doc = api.export_runs(args.run_refs, args.db)
    if args.output:
        write_json_atomic(args.output, doc)
        sys.stderr.write(f"exported {len(doc['runs'])} run(s) to {args.output}\n")
    else:
        emit_json(doc)
    return 0


def run_import(args: argparse.Namespace) -> int:
    import sys

    from dlgpu.cli.main import emit_json

    doc = api.import_files(args.files, args.db)
    if args.json:
        emit_json(doc)
    else:
        sys.stderr.write(f"imported {len(doc['added'])} run(s)"
                         + (f"; {len(doc['already_present'])} already present" if doc["already_present"] else "")
                         + "\n")
        for run_id in doc["added"]:
            sys.stderr.write(f"  {run_id}\n")
    return 0
