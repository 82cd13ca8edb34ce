"""``dlgpu calibrate``: refit the performance model on the published calibration data and on bench results."""

from __future__ import annotations

import argparse
from pathlib import Path

from dlgpu import api
from dlgpu.cli.common import Subparsers, add_json, console, emit_json
from dlgpu.results import CALIBRATION_SCHEMA


def add_parser(sub: Subparsers) -> None:
    c = sub.add_parser("calibrate", help="refit the performance model on the published calibration data")
    c.add_argument("--data", action="append", type=Path, default=[], metavar="FILE",
                   help="extra measurements in the calibration file's columns")
    c.add_argument("--output", "-o", type=Path, help="where to write the parameters (default: the package's)")
    c.add_argument("--bench", action="append", type=Path, metavar="FILE",
                   help="a `dlgpu bench --json` document whose CPU results to fit CPU efficiencies on "
                        "(repeatable; default: the documents shipped with dlgpu)")
    c.add_argument("--llm", action="store_true",
                   help="refit the LLM inference model on published llama.cpp rows instead (writes the package's "
                        "llm/data/llm_calibration.json, or --output)")
    add_json(c, CALIBRATION_SCHEMA)
    c.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from dlgpu.report.terminal_predict import print_calibration, print_llm_calibration

    if args.llm:
        llm = api.calibrate_llm(args.output, args.data)
        if args.json:
            emit_json(llm)
        else:
            print_llm_calibration(console(), llm)
        return 0
    doc = api.calibrate(args.data, args.output, args.bench)
    if args.json:
        emit_json(doc)
    else:
        print_calibration(console(), doc)
    return 0
