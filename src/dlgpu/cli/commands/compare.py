"""``dlgpu compare`` and ``dlgpu report``: comparison tables and the HTML / Markdown report over stored runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from dlgpu import api

from .store import add_db


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_refs", nargs="*", metavar="RUN", help="run ids or prefixes (default: every stored run)")
    p.add_argument("--workload", "-w", nargs="+", action="extend", default=[], metavar="NAME",
                   help="only these workloads")
    p.add_argument("--catalog", action="append", type=Path, default=[], metavar="FILE")
    add_db(p)


def add_parser(sub: Any) -> None:
    c = sub.add_parser("compare", help="compare stored runs: CPU vs GPU, precisions, power, value, predictions",
                       description="Build the comparison tables over runs from any number of machines: training "
                                   "time CPU vs GPU with the speedup, inference latency and throughput, mixed-"
                                   "precision speedup, utilization and power, price and performance per dollar "
                                   "and per watt, and measured vs predicted with the prediction error.")
    _common(c)
    c.add_argument("--markdown", action="store_true", help="print Markdown tables on stdout instead")
    c.add_argument("--json", action="store_true", help="print one JSON document (dlgpu.compare/1)")
    c.set_defaults(run=run_compare)

    r = sub.add_parser("report", help="write the comparison as a self-contained HTML file (or Markdown)",
                       description="One HTML file that opens offline in any browser: the comparison tables and "
                                   "charts (speedup, time to train, roofline, throughput vs batch, value).")
    _common(r)
    r.add_argument("--html", type=Path, metavar="FILE", help="write the HTML report to FILE")
    r.add_argument("--markdown", type=Path, metavar="FILE", help="write the Markdown report to FILE ('-' = stdout)")
    r.add_argument("--title", default="dlgpu report", help="the report's title")
    r.add_argument("--json", action="store_true", help="print one JSON document (dlgpu.report/1) naming the files")
    r.set_defaults(run=run_report)


def run_compare(args: argparse.Namespace) -> int:
    from dlgpu.cli.main import emit_json
    from dlgpu.report.markdown import render_markdown
    from dlgpu.report.terminal import make_console, print_comparison

    comp = api.compare(args.run_refs, args.db, args.workload, args.catalog)
    if args.json:
        emit_json(comp.to_dict())
    elif args.markdown:
        sys.stdout.write(render_markdown(comp))
    else:
        print_comparison(make_console(), comp)
    return 0


def run_report(args: argparse.Namespace) -> int:
    from dlgpu.cli.main import emit_json
    from dlgpu.errors import BadInput
    from dlgpu.report.html import render_html
    from dlgpu.report.markdown import render_markdown
    from dlgpu.store import write_text_atomic

    if not args.html and not args.markdown:
        raise BadInput("report: say where to write it: --html FILE and/or --markdown FILE ('-' for stdout)")
    if args.json and args.markdown == Path("-"):
        raise BadInput("report: --markdown - and --json both want stdout; write the Markdown to a file")
    comp = api.compare(args.run_refs, args.db, args.workload, args.catalog)
    written = {}
    if args.html:
        write_text_atomic(args.html, render_html(comp, title=args.title))
        written["html"] = str(args.html)
        sys.stderr.write(f"wrote {args.html}\n")
    if args.markdown:
        text = render_markdown(comp)
        if args.markdown == Path("-"):
            sys.stdout.write(text)
        else:
            write_text_atomic(args.markdown, text)
            written["markdown"] = str(args.markdown)
            sys.stderr.write(f"wrote {args.markdown}\n")
    if args.json:
        emit_json({"schema": "dlgpu.report/1", "files": written, "runs": [r.id for r in comp.runs],
                   "tables": [t.id for t in comp.tables], "charts": [c.id for c in comp.charts]})
    return 0
