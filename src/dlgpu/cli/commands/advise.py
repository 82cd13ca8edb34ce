"""``dlgpu advise``: does this workload need a GPU, which one, and what will it cost?"""

from __future__ import annotations

import argparse

from dlgpu import api
from dlgpu.cli.common import (
    Subparsers,
    add_batch_size,
    add_catalog,
    add_db,
    add_json,
    add_model,
    add_overrides,
    add_precisions,
    console,
    emit_json,
    wants_own_model,
)
from dlgpu.errors import BadInput
from dlgpu.results import ADVISE_SCHEMA, PRECISIONS, SOURCES, TASKS
from dlgpu.units import format_duration, parse_duration


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "advise", help="does this workload need a GPU, which one, and what will it cost?",
        description="Combine what `dlgpu bench` measured on this machine with what `dlgpu predict` gives for "
                    "every catalog GPU and cloud instance, for a whole job (the workload's real task by default), "
                    "and answer with a plain verdict, its reasons, and a ranked table.")
    p.add_argument("workload", nargs="?", help="a registered workload (see `dlgpu workloads`), or for --task serve|"
                                               "generate an LLM (catalog id, Hugging Face repo or config.json)")
    p.add_argument("--task", "-t", default="train", choices=tuple(dict.fromkeys((*TASKS, "serve", "generate",
                                                                               "finetune"))),
                   help="train, infer, decode; for an LLM: serve (--users, --tokens-per-s, --context) or generate "
                        "(--tokens); finetune (--method, --samples, --seq-len, --epochs, --deadline)")
    _job_flags(p)
    _llm_flags(p)
    _finetune_flags(p)
    _tabular_flags(p)
    _constraint_flags(p)
    cand = p.add_argument_group("candidates (default: all three sources)")
    cand.add_argument("--own", action="store_true", help="the devices of this machine")
    cand.add_argument("--buy", action="store_true", help="catalog GPUs at their launch price (or --price)")
    cand.add_argument("--rent", action="store_true", help="cloud instances from the catalog")
    cand.add_argument("--hardware", "-H", nargs="+", action="extend", default=[], metavar="ID",
                      help="only these catalog GPUs (and 'local' for this machine)")
    cand.add_argument("--measure", action="store_true",
                      help="measure this machine now (quick `dlgpu bench`) instead of using stored results")
    p.add_argument("--top", type=int, default=15, metavar="N", help="rows of the ranked table (default 15)")
    add_catalog(p)
    add_db(p, help="the results database (stored measurements; the run is saved there)")
    p.add_argument("--no-save", action="store_true", help="do not save this advice in the results database")
    add_json(p, ADVISE_SCHEMA)
    p.set_defaults(run=run)


def _job_flags(p: argparse.ArgumentParser) -> None:
    job = p.add_argument_group("the job (default: the workload's real task)")
    job.add_argument("--dataset-size", type=float, metavar="N", help="training samples per epoch")
    job.add_argument("--epochs", type=float, metavar="E")
    job.add_argument("--samples", type=float, metavar="N",
                     help="samples (or tokens, for decode) to process: inference jobs")
    add_batch_size(job, help="batch per device (default: the workload's)")
    add_precisions(job, help=f"precisions to consider (default all: {' '.join(PRECISIONS)})")
    add_overrides(job)
    add_model(job, help="your own model (with --input), instead of a workload; give the job with --dataset-size "
                        "and --epochs (or --samples)")


def _llm_flags(p: argparse.ArgumentParser) -> None:
    llm = p.add_argument_group("an LLM job (--task serve or generate)")
    llm.add_argument("--users", type=int, default=1, metavar="U", help="concurrent users (sequences), default 1")
    llm.add_argument("--tokens-per-s", type=float, metavar="T", help="output tokens per second each user needs")
    llm.add_argument("--context", type=int, default=4096, metavar="C", help="tokens of context per user (4096)")
    llm.add_argument("--tokens", type=int, metavar="N", help="tokens to generate (--task generate)")
    llm.add_argument("--output", type=int, default=256, metavar="O",
                     help="tokens each served request generates (of its --context), for serving engines (256)")
    llm.add_argument("--format", nargs="+", action="extend", default=[], metavar="F",
                     help="weight formats to consider (default fp16 q8_0 q4_k_m)")
    llm.add_argument("--kv", default="fp16", metavar="F", help="KV cache format (fp16, q8_0, q4_0, fp8)")


def _advise_llm(args: argparse.Namespace) -> int:
    from dlgpu.report.terminal_advise import print_llm_advice

    if not args.workload:
        raise BadInput("advise: name an LLM, e.g. dlgpu advise llama-3.1-8b --task serve --users 4")
    if args.top <= 0:
        raise BadInput(f"{args.top}: must be a positive integer", param="top")
    doc = api.advise_llm(args.workload, args.task, users=args.users, tokens_per_s=args.tokens_per_s,
                         context=args.context, tokens=args.tokens, deadline_s=_deadline_s(args.deadline),
                         formats=args.format, kv_format=args.kv,
                         sources=[s for s in ("buy", "rent") if getattr(args, s)] or ("buy", "rent"),
                         hardware=args.hardware, budget_usd=args.budget, catalog_files=args.catalog, db=args.db,
                         output_tokens=args.output)
    print_llm_advice(console(stderr=args.json), doc, args.top)
    if args.json:
        emit_json(doc)
    return 0


def _finetune_flags(p: argparse.ArgumentParser) -> None:
    ft = p.add_argument_group("a fine-tuning job (--task finetune)")
    ft.add_argument("--method", "-m", nargs="+", action="extend", metavar="M",
                    help="full, freeze, lora, qlora (default: compare all four); -b is the micro-batch, --samples the "
                         "sequences per epoch, --set the job's settings (lora_rank, gpus, sharding, ...)")
    ft.add_argument("--seq-len", type=int, metavar="S", help="tokens per sample (default 512)")
    ft.add_argument("--no-trace", action="store_true",
                    help="size the activations by the formula, without tracing the model on fake tensors")


def _advise_finetune(args: argparse.Namespace) -> int:
    from dlgpu.cli.commands.predict import one_line
    from dlgpu.report.terminal_finetune import print_finetune_advice

    if not args.workload:
        raise BadInput("advise: name a model, e.g. dlgpu advise llama3_8b --task finetune --method qlora --samples "
                       "50000")
    if args.top <= 0:
        raise BadInput(f"{args.top}: must be a positive integer", param="top")
    try:
        doc = api.advise_finetune(args.workload, args.method, samples=args.samples, seq_len=args.seq_len,
                                  epochs=args.epochs, deadline_s=_deadline_s(args.deadline),
                                  overrides=api.parse_overrides(args.overrides), batch_size=args.batch_size,
                                  sources=[s for s in ("buy", "rent") if getattr(args, s)] or ("buy", "rent"),
                                  hardware=args.hardware, budget_usd=args.budget, catalog_files=args.catalog,
                                  db=args.db, trace=not args.no_trace)
    except BadInput as exc:
        raise one_line(exc) from None
    print_finetune_advice(console(stderr=args.json), doc, args.top)
    if args.json:
        emit_json(doc)
    return 0


def _tabular_flags(p: argparse.ArgumentParser) -> None:
    tab = p.add_argument_group("a tabular job (xgboost, lightgbm, catboost, h2o: --set rows=N features=N trees=N "
                               "depth=N)")
    tab.add_argument("--gpu-overhead", metavar="TIME",
                     help="the time it takes to get the job onto a GPU not in hand: start the instance, move the data "
                          "(default 1m, an assumption); a GPU pays when it saves more")


def _advise_tabular(args: argparse.Namespace) -> int:
    from dlgpu.report.terminal_tabular import print_tabular_advice

    if args.task != "train":
        raise BadInput(f"{args.task}: a tabular estimator is advised for training (--task train)", param="task")
    if args.top <= 0:
        raise BadInput(f"{args.top}: must be a positive integer", param="top")
    overhead = None
    if args.gpu_overhead is not None:
        try:
            overhead = parse_duration(args.gpu_overhead)
        except ValueError as exc:
            raise BadInput(f"--gpu-overhead {exc}") from None
    doc = api.advise_tabular(args.workload, api.parse_overrides(args.overrides), deadline_s=_deadline_s(args.deadline),
                             gpu_overhead_s=overhead,
                             sources=[s for s in ("buy", "rent") if getattr(args, s)] or ("buy", "rent"),
                             hardware=args.hardware, budget_usd=args.budget, catalog_files=args.catalog, db=args.db)
    print_tabular_advice(console(stderr=args.json), doc, args.top)
    if args.json:
        emit_json(doc)
    return 0


def _constraint_flags(p: argparse.ArgumentParser) -> None:
    con = p.add_argument_group("constraints and prices")
    con.add_argument("--deadline", metavar="TIME",
                     help=f"e.g. 12h, 3d, 90m (default {format_duration(api.DEFAULT_DEADLINE_S)})")
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


def _workload(args: argparse.Namespace) -> str | api.WorkloadSpec:
    """The registered workload named, or the user's own model (``--model``/``--input``)."""
    if wants_own_model(args):
        if args.workload:
            raise BadInput(f"advise: give a workload ({args.workload}) or --model, not both")
        return api.custom_workload(args.model, args.inputs, args.batch_size)
    if not args.workload:
        raise BadInput("advise: name a workload (see `dlgpu workloads`), e.g. dlgpu advise resnet50")
    return str(args.workload)


def _deadline_s(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise BadInput(str(exc), param="deadline_s") from None


def _prices_usd(items: list[str]) -> dict[str, float]:
    """``--price ID=USD`` (repeatable), by catalog id."""
    prices: dict[str, float] = {}
    for item in items:
        hid, sep, usd = item.partition("=")
        try:
            price = float(usd) if sep and hid.strip() else None
        except ValueError:
            price = None
        if price is None:
            raise BadInput(f"{item!r}: give ID=USD, e.g. --price rtx-4090=1599", param="prices_usd")
        prices[hid.strip()] = price
    return prices


def _limits(args: argparse.Namespace) -> api.Limits:
    return api.Limits(
        deadline_s=_deadline_s(args.deadline), deadline_basis=None if args.deadline is None else
        f"--deadline {args.deadline}", budget_usd=args.budget, max_power_w=args.max_power,
        electricity_usd_per_kwh=args.electricity, carbon_g_per_kwh=args.carbon_intensity, pue=args.pue,
        hours_per_day=args.hours_per_day, lifetime_years=args.lifetime_years, power_factor=args.power_factor)


def run(args: argparse.Namespace) -> int:
    from dlgpu.report.terminal_advise import print_advice
    from dlgpu.tabular.jobs import is_tabular

    if is_tabular(args.workload) and not wants_own_model(args):
        return _advise_tabular(args)
    if args.task in ("serve", "generate"):
        return _advise_llm(args)
    if args.task == "finetune":
        return _advise_finetune(args)
    if args.method or args.seq_len is not None:
        raise BadInput("--method and --seq-len go with --task finetune", param="method")
    if args.no_trace:
        raise BadInput("--no-trace goes with --task finetune")
    workload = _workload(args)
    if args.top <= 0:
        raise BadInput(f"{args.top}: must be a positive integer", param="top")
    advice = api.advise(
        workload, args.task, size=api.JobSize(args.dataset_size, args.epochs, args.samples), limits=_limits(args),
        sources=[s for s in SOURCES if getattr(args, s)], hardware=args.hardware,
        prices_usd=_prices_usd(args.price), precisions=args.precision, batch_size=args.batch_size,
        overrides=api.parse_overrides(args.overrides), measure=args.measure, db=args.db,
        catalog_files=args.catalog)
    if not args.no_save:
        advice = api.save_advice(advice, args.db)
    print_advice(console(stderr=args.json), advice, args.top)
    if args.json:
        emit_json(advice.to_dict())
    return 0
