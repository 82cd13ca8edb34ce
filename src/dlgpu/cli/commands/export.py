"""``dlgpu export RUN...``: stored runs, raw samples included, as one JSON document (always JSON)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dlgpu import api
from dlgpu.cli.common import Subparsers, add_db, add_json, emit_json
from dlgpu.home import write_json_atomic
from dlgpu.results import EXPORT_SCHEMA


def add_parser(sub: Subparsers) -> None:
    e = sub.add_parser("export", help=f"write stored runs as one JSON document ({EXPORT_SCHEMA}) on stdout",
                       description="Export runs, raw samples included, to share them: `dlgpu export RUN... > "
                                   "runs.json`, then `dlgpu import runs.json` on another machine.")
    e.add_argument("run_refs", nargs="*", metavar="RUN", help="run ids or prefixes (default: every run)")
    e.add_argument("--output", "-o", type=Path, metavar="FILE", help="write to FILE instead of stdout")
    add_json(e, help="(the default: export always writes JSON)")
    add_db(e)
    e.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    doc = api.export_runs(args.run_refs, args.db)
    if args.output:
        write_json_atomic(args.output, doc)
        sys.stderr.write(f"exported {len(doc['runs'])} run(s) to {args.output}\n")
    else:
        emit_json(doc)
    return 0
