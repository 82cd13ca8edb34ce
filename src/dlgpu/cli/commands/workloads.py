"""``dlgpu workloads [list [PATTERN]] | show NAME``."""

from __future__ import annotations

import argparse
from typing import Any

from dlgpu import api
from dlgpu.results import WORKLOAD_SCHEMA, WORKLOADS_SCHEMA


def add_parser(sub: Any) -> None:
    p = sub.add_parser("workloads", help="list the registered workloads, or show one")
    p.set_defaults(run=run_list, pattern="*", all=False, json=False)
    inner = p.add_subparsers(dest="action", metavar="ACTION", parser_class=type(p))
    lst = inner.add_parser("list", help="list workloads (default)")
    lst.add_argument("pattern", nargs="?", default="*", help="glob, e.g. 'resnet*'")
    lst.add_argument("--all", action="store_true", help="include the tiny test_* variants")
    lst.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    lst.set_defaults(run=run_list)
    show = inner.add_parser("show", help="details of one workload: parameters and the real task")
    show.add_argument("name")
    show.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    show.set_defaults(run=run_show)
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")


def run_list(args: argparse.Namespace) -> int:
    from dlgpu.cli.main import emit_json
    from dlgpu.report.terminal import make_console, workloads_table

    specs = api.workloads(args.pattern, include_tiny=args.all)
    if args.json:
        emit_json({"schema": WORKLOADS_SCHEMA, "workloads": [api.workload_summary(s) for s in specs]})
    else:
        make_console().print(workloads_table(specs))
    return 0


def run_show(args: argparse.Namespace) -> int:
    from dlgpu.cli.main import emit_json
    from dlgpu.report.terminal import make_console, print_workload

    spec, parameters = api.workload_details(args.name)
    if args.json:
        emit_json({"schema": WORKLOAD_SCHEMA, **api.workload_summary(spec), "parameters": parameters})
    else:
        print_workload(make_console(), spec, parameters)
    return 0
