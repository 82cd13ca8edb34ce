"""``dlgpu bench``: measure workloads on every device here, at every precision each supports."""

from __future__ import annotations

import argparse
from pathlib import Path

from dlgpu import api
from dlgpu.cli.common import (
    Subparsers,
    add_batch_size,
    add_db,
    add_json,
    add_model,
    add_overrides,
    add_precisions,
    console,
    emit_json,
    wants_own_model,
)
from dlgpu.finetune.config import METHODS, SETTINGS
from dlgpu.results import BENCH_SCHEMA, BENCH_TASK_CHOICES, PRECISIONS
from dlgpu.results.vocab import GGUF_PRECISIONS, RUNTIMES, WEIGHT_PRECISIONS


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("bench", help="measure workloads on this machine's devices",
                       description="Measure real workloads for training and inference on every device "
                                   "here, at every precision each device supports.")
    p.add_argument("--workload", "-w", nargs="+", action="extend", metavar="NAME",
                   help="workloads to run (default: the classic suite; 'all' for every one)")
    p.add_argument("--device", "-d", nargs="+", action="extend", metavar="DEV",
                   help="cpu, cuda, cuda:N, mps, xpu or all (default all)")
    p.add_argument("--runtime", metavar="R",
                   help=f"what runs the workloads: {' or '.join(RUNTIMES)} (default pytorch; llamacpp also works). "
                        "llama.cpp: LLM workloads on the CPU (llama-cpp-python's CPU build, the dlgpu[llamacpp] "
                        "extra), a synthetic GGUF with random weights at each --precision "
                        f"{', '.join(GGUF_PRECISIONS)}, tasks infer and decode, batch 1")
    add_precisions(p, help=f"{', '.join(PRECISIONS)}, the LLM weight formats {', '.join(WEIGHT_PRECISIONS)} (LLM "
                           "workloads only, whose bf16/fp16 also mean weights stored in that dtype), or all (default "
                           "all: every precision each workload has); with --runtime llama.cpp the GGUF weight types "
                           f"{', '.join(GGUF_PRECISIONS)} or all")
    p.add_argument("--task", "-t", nargs="+", action="extend", metavar="T",
                   help=f"{', '.join(BENCH_TASK_CHOICES[:-1])} or {BENCH_TASK_CHOICES[-1]} (default and both: "
                        "train and infer; decode: decoder-only language models, one token at a time with a KV "
                        "cache, see --set context_len; all: train, infer and decode; finetune, asked for by name: "
                        "one optimizer step of fine-tuning an LLM or BERT, see --method)")
    p.add_argument("--method", metavar="M",
                   help=f"--task finetune: {', '.join(METHODS)} (default lora); its settings are --set "
                        f"{', '.join(k for k in SETTINGS if k not in ('gpus', 'sharding', 'offload'))}; "
                        "-b is the micro-batch and --precision the weights' dtype (fp32, bf16, fp16; default bf16; "
                        "fp32 = mixed precision under bf16 autocast)")
    add_batch_size(p, help="override every workload's batch size (--task finetune: the micro-batch)")
    add_overrides(p, help="override a workload parameter, e.g. image_size=64 (see `dlgpu workloads show`), or a "
                          "fine-tuning setting (see --method)")
    p.add_argument("--quick", action="store_true", help="short budgets and small batches (minutes on a laptop)")
    p.add_argument("--budget", type=float, metavar="SECONDS",
                   help="time budget per configuration (default 10, quick 2)")
    p.add_argument("--telemetry-period", type=float, metavar="S",
                   help="seconds between power/utilization samples beside each measured region (default 0.1)")
    p.add_argument("--no-telemetry", action="store_true",
                   help="do not sample power, energy and utilization (and measure no idle baseline)")
    add_model(p, help="measure your own model (with --input)")
    p.add_argument("--output", "-o", type=Path, metavar="FILE",
                   help="also write the JSON document to FILE (rewritten after every result)")
    add_db(p, help="the results database to save the run in (default: $DLGPU_DB, else the user data dir)")
    p.add_argument("--no-save", action="store_true", help="do not save the run in the results database")
    p.add_argument("--hostname", action="store_true", help="record this machine's hostname in the results")
    add_json(p, BENCH_SCHEMA)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from dlgpu.report.terminal import BenchProgress, print_bench, print_saved

    custom = [api.custom_workload(args.model, args.inputs, args.batch_size)] if wants_own_model(args) else []
    db = None if args.no_save else (args.db or api.default_db_path())
    with BenchProgress() as progress:
        report = api.bench(
            workloads=args.workload, devices=args.device, precisions=args.precision, tasks=args.task,
            quick=args.quick, batch_size=args.batch_size, overrides=api.parse_overrides(args.overrides),
            budget_s=args.budget, observer=progress, save_to=args.output, db=db, custom_specs=custom,
            include_hostname=args.hostname, telemetry=not args.no_telemetry,
            telemetry_period_s=args.telemetry_period, runtime=args.runtime, method=args.method)
    registered = [w for w in report.config.workloads if not w.startswith("custom:")]
    specs = {s.name: s for s in [*(api.resolve_workloads(registered) if registered else []), *custom]}
    print_bench(console(stderr=args.json), report, specs)
    print_saved(console(stderr=True), report, db, args.output)
    if args.json:
        emit_json(report.to_dict())
    return 130 if report.interrupted else 0
