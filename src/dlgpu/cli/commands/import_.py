"""``dlgpu import FILE...``: runs measured elsewhere, every file validated before anything is written."""

from __future__ import annotations

import argparse
from pathlib import Path

from dlgpu import api
from dlgpu.cli.common import Subparsers, add_db, add_json, console, emit_json
from dlgpu.results import IMPORT_SCHEMA


def add_parser(sub: Subparsers) -> None:
    i = sub.add_parser("import", help="add runs from JSON files (dlgpu export bundles or bench/predict/advise "
                                      "documents)",
                       description="Import runs measured elsewhere. Every file is validated before anything is "
                                   "written; a malformed file is refused with the first problem and nothing is "
                                   "imported. Runs already present (same id) are left as they are.")
    i.add_argument("files", nargs="+", type=Path, metavar="FILE")
    add_db(i)
    add_json(i, IMPORT_SCHEMA)
    i.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from dlgpu.report.terminal_runs import print_import

    doc = api.import_files(args.files, args.db)
    if args.json:
        emit_json(doc)
    else:
        print_import(console(stderr=True), doc)
    return 0
