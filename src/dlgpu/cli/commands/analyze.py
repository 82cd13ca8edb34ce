"""``dlgpu analyze``: the operator profile of one full-size step, traced on fake tensors, with the memory it
needs and, for a memory size, the largest batch that fits it."""

from __future__ import annotations

import argparse

from dlgpu import api
from dlgpu.cli.common import (
    Subparsers,
    add_batch_size,
    add_json,
    add_overrides,
    add_precision,
    add_task,
    console,
    emit_json,
)
from dlgpu.errors import BadInput
from dlgpu.results import ANALYZE_SCHEMA
from dlgpu.units import parse_bytes


def add_parser(sub: Subparsers) -> None:
    a = sub.add_parser("analyze", help="operator profile of one full-size step, traced on fake tensors")
    a.add_argument("workload")
    add_precision(a)
    add_task(a)
    add_batch_size(a)
    add_overrides(a)
    a.add_argument("--memory", metavar="SIZE", help="also find the largest batch that fits SIZE (e.g. 80GB, 24GiB)")
    a.add_argument("--hardware", "-H", metavar="ID", help="also find the largest batch that fits this device's memory")
    add_json(a, ANALYZE_SCHEMA)
    a.set_defaults(run=run)


def _memory_bytes(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return parse_bytes(text)
    except ValueError as exc:
        raise BadInput(f"{text}: {exc}", param="memory") from None


def run(args: argparse.Namespace) -> int:
    from dlgpu.report.terminal_predict import print_analysis

    analysis = api.analysis(args.workload, args.task, args.precision, args.batch_size,
                            api.parse_overrides(args.overrides), memory_bytes=_memory_bytes(args.memory),
                            hardware=args.hardware)
    if args.json:
        emit_json(analysis.to_dict())
    else:
        print_analysis(console(), analysis)
    return 0
