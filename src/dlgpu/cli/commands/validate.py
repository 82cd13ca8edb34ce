"""``dlgpu validate``: predict every row of a file of measurements and report the errors."""

from __future__ import annotations

import argparse
from pathlib import Path

from dlgpu import api
from dlgpu.cli.common import Subparsers, add_catalog, add_json, console, emit_json
from dlgpu.results import VALIDATE_SCHEMA


def add_parser(sub: Subparsers) -> None:
    v = sub.add_parser("validate", help="predict every row of a CSV of measurements and report the errors")
    v.add_argument("file", type=Path)
    add_catalog(v)
    add_json(v, VALIDATE_SCHEMA)
    v.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from dlgpu.report.terminal_predict import print_validation

    doc = api.validate(args.file, args.catalog)
    if args.json:
        emit_json(doc)
    else:
        print_validation(console(), doc)
    return 0
