"""``dlgpu advise``: does this workload need a GPU, which one, and what will it cost?"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dlgpu import api


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "advise", help="does this workload need a GPU, which one, and what will it cost?",
        description="Combine what `dlgpu bench` measured on this machine with what `dlgpu predict` gives for "
                    "every catalog GPU and cloud instance, for a whole job (the workload's real task by default), "
                    "and answer with a plain verdict, its reasons, and a ranked table.")
    p.add_argument("workload", nargs="?", help="a registered workload (see `dlgpu workloads`)")
    p.add_argument("--task", "-t", default="train", choices=("train", "infer", "decode"))
    job = p.add_argument_group("the job (default: the workload's real task)")
    job.add_argument("--dataset-size", type=float, metavar="N", help="training samples per epoch")
    job.add_argument("--epochs", type=float, metavar="E")
    job.add_argument("--samples", type=float, metavar="N", help="samples (or tokens, for decode) to process: "
                                                                 "inference jobs")
    job.add_argument("--batch-size", "-b", type=int, metavar="N", help="batch per device (default: the workload's)")
    job.add_argument("--precision", "-p", nargs="+", action="extend", metavar="P",
                     help="precisions to consider (default all: fp32 tf32 bf16 fp16)")
    job.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE")
    job.add_argument("--model", metavar="PKG.MODULE:FACTORY", help="your own model (with --input), instead of a "
                                                                  "workload; give the job with --dataset-size and "
                                                                  "--epochs (or --samples)")
    job.add_argument("--input", dest="inputs", metavar="SPEC",
                     help="your model's inputs without the batch dim, e.g. 3x224x224 or 128:int64:30522")
    con = p.add_argument_group("constraints and prices")
    con.add_argument("--deadline", metavar="TIME", help="e.g. 12h, 3d, 90m (default 24 h)")
    con.add_argument("--budget", type=float, metavar="USD", help="the most to spend: a purchase or the rent")
    con.add_argument("--max-power", type=float, metavar="W", help="the most power a candidate may draw")
    con.add_argument("--electricity", type=float, metavar="USD_PER_KWH",
                     help=f"electricity price (default {api.DEFAULT_ELECTRICITY_USD_PER_KWH}, an assumption)")
    con.add_argument("--carbon-intensity", type=float, metavar="G_PER_KWH",
                     help=f"grid carbon intensity (default {api.DEFAULT_CARBON_G_PER_KWH:g}, the world average "
                          "CodeCarbon falls back to)")
    con.add_argument("--pue", type=float, default=1.0, help="power usage effectiveness of the room (default 1)")
    con.add_argument("--hours-per-day", type=float, metavar="H",
                     help=f"use of a bought device, for amortizing it (default {api.DEFAULT_HOURS_PER_DAY:g})")
    con.add_argument("--lifetime-years", type=float, metavar="Y",
                     help=f"service life of a bought device (default {api.DEFAULT_LIFETIME_YEARS:g})")
    con.add_argument("--power-factor", type=float, default=1.0, metavar="F",
                     help="share of TDP drawn where power was not measured (default 1: TDP, an upper bound)")
    con.add_argument("--price", action="append", default=[], metavar="ID=USD",
                     help="your price for a catalog GPU (repeatable), e.g. rtx-4090=1599")
    cand = p.add_argument_group("candidates (default: all three sources)")
    cand.add_argument("--own", action="store_true", help="the devices of this machine")
    cand.add_argument("--buy", action="store_true", help="catalog GPUs at their launch price (or --price)")
    cand.add_argument("--rent", action="store_true", help="cloud instances from the catalog")
    cand.add_argument("--hardware", "-H", nargs="+", action="extend", default=[], metavar="ID",
                      help="only these catalog GPUs (and 'local' for this machine)")
    cand.add_argument("--measure", action="store_true",
                      help="measure this machine now (quick `dlgpu bench`) instead of using stored results")
    p.add_argument("--top", type=int, default=15, metavar="N", help="rows of the ranked table (default 15)")
    p.add_argument("--catalog", action="append", type=Path, default=[], metavar="FILE")
    p.add_argument("--db", type=Path, metavar="PATH", help="the results database (stored measurements; the run "
                                                          "is saved there)")
    p.add_argument("--no-save", action="store_true", help="do not save this advice in the results database")
    p.add_argument("--json", action="store_true", help="print one JSON document (dlgpu.advise/1)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from dlgpu.cli.main import emit_json
    from dlgpu.errors import BadInput
    from dlgpu.report.terminal import make_console, print_advice

    custom = None
    if args.model or args.inputs:
        from dlgpu.workloads.custom import custom_spec

        if not (args.model and args.inputs):
            raise BadInput("--model and --input go together, e.g. --model mypkg.nets:make --input 3x224x224")
        if args.workload:
            raise BadInput(f"advise: give a workload ({args.workload}) or --model, not both")
        custom = custom_spec(args.model, args.inputs, args.batch_size or 8)
    elif not args.workload:
        raise BadInput("advise: name a workload (see `dlgpu workloads`), e.g. dlgpu advise resnet50")
    if args.top <= 0:
        raise BadInput(f"--top {args.top}: must be a positive integer")
    sources = [s for s in ("own", "buy", "rent") if getattr(args, s)]
    doc = api.advise(
        args.workload or (custom.name if custom else ""), args.task, dataset_size=args.dataset_size,
        epochs=args.epochs, samples=args.samples,
        deadline=args.deadline, budget=args.budget, max_power=args.max_power, electricity=args.electricity,
        hours_per_day=args.hours_per_day, lifetime_years=args.lifetime_years, carbon=args.carbon_intensity,
        pue=args.pue, power_factor=args.power_factor, sources=sources, hardware=args.hardware, prices=args.price,
        precisions=args.precision, batch_size=args.batch_size, overrides=api.parse_overrides(args.overrides),
        measure=args.measure, db=args.db, catalog_files=args.catalog, custom=custom)
    if not args.no_save:
        api.save_advice(doc, args.db)
    print_advice(make_console(stderr=args.json), doc, args.top)
    if args.json:
        emit_json(doc)
    return 0
