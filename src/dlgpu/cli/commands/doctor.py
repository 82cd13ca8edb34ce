"""``dlgpu doctor [-w WORKLOAD] [--data-dir DIR] [--precision P] [--quick] [--json]``: is this machine set up for
deep learning? Exit 0 when no check fails (warnings allowed), 1 when one does, 2 on bad input."""

from __future__ import annotations

import argparse
from pathlib import Path

from dlgpu.cli.common import Subparsers, add_json, console, emit_json
from dlgpu.results import PRECISIONS
from dlgpu.results.vocab import DOCTOR_SCHEMA


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("doctor", help="is this machine set up for deep learning? frameworks, GPUs and driver, CPU, "
                                      "RAM, disk, with a verdict and a fix per check (exit 1 if one fails)")
    p.set_defaults(run=run)
    p.add_argument("--workload", "-w", metavar="NAME",
                   help="also check the RAM and free disk against this workload's real dataset")
    p.add_argument("--data-dir", type=Path, metavar="DIR",
                   help="where the data would live, for the free-disk figure (default: dlgpu's cache dir)")
    p.add_argument("--precision", "-p", choices=PRECISIONS, default="fp16",
                   help="the precision to judge each GPU's tensor cores for (default: fp16, mixed precision)")
    p.add_argument("--quick", action="store_true",
                   help="report TensorFlow, JAX and Keras as installed without importing them (no accelerator "
                        "probe); PyTorch is always probed")
    add_json(p, schema=DOCTOR_SCHEMA)


def run(args: argparse.Namespace) -> int:
    from dlgpu.doctor import diagnose

    diagnosis = diagnose(data_dir=args.data_dir, workload=args.workload, precision=args.precision,
                         quick=args.quick)
    if args.json:
        emit_json(diagnosis.to_dict())
    else:
        from dlgpu.report.terminal_doctor import print_diagnosis

        print_diagnosis(console(), diagnosis)
    return diagnosis.exit_code
