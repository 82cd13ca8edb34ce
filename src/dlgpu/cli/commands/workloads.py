"""``dlgpu workloads [list [PATTERN]] [--all] | show NAME``, each with ``--json``."""

from __future__ import annotations

import argparse

from dlgpu import api
from dlgpu.cli.common import Subparsers, add_json, console, emit_json
from dlgpu.results import WORKLOAD_SCHEMA, WORKLOADS_SCHEMA

ALL_HELP = "include the tiny test_* variants"


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("workloads", help="list the registered workloads, or show one")
    p.set_defaults(run=run, action=None, pattern="*")  # `dlgpu workloads [--all] [--json]` lists them all
    inner = p.add_subparsers(dest="action", metavar="ACTION", parser_class=type(p))
    lst = inner.add_parser("list", help="list workloads (default)")
    lst.add_argument("pattern", nargs="?", default="*", help="glob, e.g. 'resnet*'")
    lst.add_argument("--all", action="store_true", default=argparse.SUPPRESS, help=ALL_HELP)
    add_json(lst, default=argparse.SUPPRESS)
    llm = inner.add_parser("llm", help="the LLM architecture catalog: every published configuration dlgpu predicts "
                                       "(dense and mixture-of-experts), with its parameters, context and KV cache")
    add_json(llm, default=argparse.SUPPRESS)
    show = inner.add_parser("show", help="details of one workload: parameters and the real task")
    show.add_argument("name")
    add_json(show, default=argparse.SUPPRESS)
    p.add_argument("--all", action="store_true", help=ALL_HELP)
    add_json(p)


def run(args: argparse.Namespace) -> int:
    if args.action == "llm":
        return _llm(args)
    return _show(args) if args.action == "show" else _list(args)


LLM_CATALOG_SCHEMA = "dlgpu.llm-catalog/1"


def _llm(args: argparse.Namespace) -> int:
    from rich.table import Table

    rows = api.llm_catalog()
    if args.json:
        emit_json({"schema": LLM_CATALOG_SCHEMA, "models": rows})
        return 0
    t = Table(title="LLM architectures (`dlgpu predict ID --task decode -p q4_k_m -H GPU`; measurable here: `dlgpu "
                    "bench -w ID --task decode`)", title_justify="left")
    for col in ("id", "name", "params", "active", "layers", "context", "KV/token (fp16)", "measurable here"):
        t.add_column(col)
    for r in rows:
        t.add_row(r["id"], r["name"], f"{r['total_params'] / 1e9:,.2f}B", f"{r['active_params'] / 1e9:,.2f}B",
                  str(r["layers"]), f"{r['max_context']:,}", f"{r['kv_bytes_per_token_fp16'] / 1024:,.1f} KiB",
                  "yes" if r["measurable_here"] else "-")
    console().print(t)
    return 0


def _list(args: argparse.Namespace) -> int:
    from dlgpu.report.terminal import workloads_table

    specs = api.find_workloads(args.pattern, include_tiny=args.all)
    if args.json:
        emit_json({"schema": WORKLOADS_SCHEMA, "workloads": [api.workload_summary(s) for s in specs]})
    else:
        console().print(workloads_table(specs))
    return 0


def _show(args: argparse.Namespace) -> int:
    from dlgpu.report.terminal import print_workload

    spec, parameters = api.workload_details(args.name)
    if args.json:
        emit_json({"schema": WORKLOAD_SCHEMA, **api.workload_summary(spec), "parameters": parameters})
    else:
        print_workload(console(), spec, parameters)
    return 0
