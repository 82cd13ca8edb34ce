"""``dlgpu compare [RUN...]``: the comparison tables over stored runs, measured and predicted side by side."""

from __future__ import annotations

import argparse
import sys

from dlgpu import api
from dlgpu.cli.common import Subparsers, add_catalog, add_db, add_json, console, emit_json
from dlgpu.results import COMPARE_SCHEMA


def add_selection(p: argparse.ArgumentParser) -> None:
    """Which runs and workloads to compare (``compare`` and ``report``)."""
    p.add_argument("run_refs", nargs="*", metavar="RUN", help="run ids or prefixes (default: every stored run)")
    p.add_argument("--workload", "-w", nargs="+", action="extend", default=[], metavar="NAME",
                   help="only these workloads")
    add_catalog(p)
    add_db(p)

def add_parser(sub: Subparsers) -> None:
    c = sub.add_parser("compare", help="compare stored runs: CPU vs GPU, precisions, power, value, predictions",
                       description="Build the comparison tables over runs from any number of machines: training "
                                   "time CPU vs GPU with the speedup, inference latency and throughput, mixed-"
                                   "precision speedup, utilization and power, price and performance per dollar "
                                   "and per watt, and measured vs predicted with the prediction error.")
    add_selection(c)
    c.add_argument("--markdown", action="store_true", help="print Markdown tables on stdout instead")
    add_json(c, COMPARE_SCHEMA)
    c.set_defaults(run=run)

def run(args: argparse.Namespace) -> int:
    comp = api.compare(args.run_refs, args.db, args.workload, args.catalog)
    if args.json:
        emit_json(comp.to_dict())
    elif args.markdown:
        from dlgpu.report.markdown import render_markdown

        sys.stdout.write(render_markdown(comp))
    else:
        from dlgpu.report.terminal import print_comparison

        print_comparison(console(), comp)
    return 0
