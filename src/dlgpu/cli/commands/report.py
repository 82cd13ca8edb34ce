"""``dlgpu report [RUN...] --html FILE | --markdown FILE``: the comparison as one self-contained HTML file with
charts, or as Markdown."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dlgpu import api
from dlgpu.cli.common import Subparsers, add_json, emit_json
from dlgpu.errors import BadInput
from dlgpu.home import write_text_atomic
from dlgpu.results import REPORT_SCHEMA

from .compare import add_selection

STDOUT = Path("-")


def add_parser(sub: Subparsers) -> None:
    r = sub.add_parser("report", help="write the comparison as a self-contained HTML file (or Markdown)",
                       description="One HTML file that opens offline in any browser: the comparison tables and "
                                   "charts (speedup, time to train, roofline, throughput vs batch, value).")
    add_selection(r)
    r.add_argument("--html", type=Path, metavar="FILE", help="write the HTML report to FILE")
    r.add_argument("--markdown", type=Path, metavar="FILE", help="write the Markdown report to FILE ('-' = stdout)")
    r.add_argument("--title", default="dlgpu report", help="the report's title")
    add_json(r, help=f"print one JSON document ({REPORT_SCHEMA}) naming the files")
    r.set_defaults(run=run)


def _check(args: argparse.Namespace) -> None:
    if not args.html and not args.markdown:
        raise BadInput("report: say where to write it: --html FILE and/or --markdown FILE ('-' for stdout)")
    if args.json and args.markdown == STDOUT:
        raise BadInput("report: --markdown - and --json both want stdout; write the Markdown to a file")


def run(args: argparse.Namespace) -> int:
    from dlgpu.report.html import render_html
    from dlgpu.report.markdown import render_markdown

    _check(args)
    comp = api.compare(args.run_refs, args.db, args.workload, args.catalog)
    written: dict[str, str] = {}
    if args.html:
        write_text_atomic(args.html, render_html(comp, title=args.title))
        written["html"] = str(args.html)
        sys.stderr.write(f"wrote {args.html}\n")
    if args.markdown == STDOUT:
        sys.stdout.write(render_markdown(comp))
    elif args.markdown:
        write_text_atomic(args.markdown, render_markdown(comp))
        written["markdown"] = str(args.markdown)
        sys.stderr.write(f"wrote {args.markdown}\n")
    if args.json:
        emit_json({"schema": REPORT_SCHEMA, "files": written, "runs": [r.id for r in comp.runs],
                   "tables": [t.id for t in comp.tables], "charts": [c.id for c in comp.charts]})
    return 0
