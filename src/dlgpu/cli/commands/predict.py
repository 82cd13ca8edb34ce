"""``dlgpu predict``: a workload's step on a catalog GPU or CPU (or this CPU), predicted, not measured."""

from __future__ import annotations

import argparse

from dlgpu import api
from dlgpu.cli.common import (
    Subparsers,
    add_batch_size,
    add_catalog,
    add_db,
    add_json,
    add_overrides,
    console,
    emit_json,
)
from dlgpu.errors import BadInput
from dlgpu.results import PRECISIONS, PREDICT_SCHEMA, TASKS


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("predict", help="predict a workload on a catalog GPU you may not have")
    p.add_argument("workload")
    p.add_argument("--hardware", "-H", required=True, metavar="ID", help="a catalog id (see `dlgpu hardware list`)")
    p.add_argument("--precision", "-p", default="fp32", choices=(*PRECISIONS, *_llm_formats()),
                   help="fp32, tf32, bf16, fp16; for an LLM's decode or prefill, a weight format (int8, int4, q4_k_m, "
                        "q8_0, fp8, nvfp4, ...)")
    p.add_argument("--task", "-t", default="train", choices=tuple(dict.fromkeys((*TASKS, "prefill", "serve",
                                                                               "finetune"))),
                   help="train, infer, decode (a step, traced); for an LLM served by a runtime, decode or prefill "
                        "(llama.cpp) or serve (TensorRT-LLM, in-flight batching; -b: the concurrency); finetune "
                        "(--method; -b: the micro-batch; --set lora_rank=16 gpus=4 sharding=zero3 ...)")
    p.add_argument("--method", "-m", metavar="M",
                   help="--task finetune: full, freeze, lora or qlora (`--set` keys: see dlgpu.finetune.config)")
    p.add_argument("--no-trace", action="store_true",
                   help="--task finetune: size the activations by the formula, without tracing the model on fake "
                        "tensors")
    add_batch_size(p)
    add_overrides(p)
    add_catalog(p)
    add_db(p, help="the results database to save the prediction in, and to read this machine's `dlgpu probe` "
                   "ceilings from (-H local)")
    p.add_argument("--no-save", action="store_true", help="do not save the prediction in the results database")
    add_json(p, PREDICT_SCHEMA)
    p.set_defaults(run=run)


def _llm_formats() -> tuple[str, ...]:
    from dlgpu.llm.formats import WEIGHT_FORMATS

    return tuple(f for f in WEIGHT_FORMATS if f not in PRECISIONS)


def one_line(exc: BadInput) -> BadInput:
    """A fine-tuning ``--set`` error already names its flag: drop the parameter so the line does not repeat it."""
    if exc.param == "overrides" and exc.message.startswith("--set"):
        return BadInput(exc.message)
    return exc


def _finetune(args: argparse.Namespace) -> int:
    from dlgpu.report.terminal_finetune import print_finetune_prediction

    try:
        doc = api.predict_finetune(args.workload, args.hardware, args.method, api.parse_overrides(args.overrides),
                                   args.batch_size, args.catalog, args.db, trace=not args.no_trace)
    except BadInput as exc:
        raise one_line(exc) from None
    if args.json:
        emit_json(doc)
    else:
        print_finetune_prediction(console(), doc)
    return 0


def _tabular(args: argparse.Namespace) -> int:
    """A tabular estimator (``xgboost``, ``lightgbm``, ...): its training time (``tabular.predict``)."""
    from dlgpu.report.terminal_tabular import print_tabular_prediction

    if args.task != "train":
        raise BadInput(f"{args.task}: a tabular estimator's prediction is for training (--task train)", param="task")
    if args.precision != "fp32" or args.method is not None or args.batch_size is not None:
        raise BadInput(f"{args.workload}: a tabular job is set by --set rows=N features=N trees=N depth=N (no "
                       "--precision, --method or --batch-size)", param="overrides")
    doc = api.predict_tabular(args.workload, args.hardware, api.parse_overrides(args.overrides), args.catalog,
                              args.db)
    if args.json:
        emit_json(doc)
    else:
        print_tabular_prediction(console(), doc)
    return 0


def run(args: argparse.Namespace) -> int:
    from dlgpu.llm.predict import is_llm_request
    from dlgpu.report.terminal_predict import print_llm_prediction, print_prediction
    from dlgpu.tabular.jobs import is_tabular

    if is_tabular(args.workload):
        return _tabular(args)
    if args.task == "finetune":
        return _finetune(args)
    if args.method is not None:
        raise BadInput(f"--method {args.method} goes with --task finetune", param="method")
    if args.no_trace:
        raise BadInput("--no-trace goes with --task finetune")

    if is_llm_request(args.workload, args.precision, args.task):
        doc = api.predict_llm(args.workload, args.hardware, args.precision, args.task, args.batch_size,
                              api.parse_overrides(args.overrides), args.catalog)
        if args.json:
            emit_json(doc)
        else:
            print_llm_prediction(console(), doc)
        return 0

    pred = api.predict(args.workload, args.hardware, args.precision, args.task, args.batch_size,
                       api.parse_overrides(args.overrides), args.catalog, args.db)
    if not args.no_save:
        pred = api.save_prediction(pred, args.db)
    if args.json:
        emit_json(pred.to_dict())
    else:
        print_prediction(console(), pred)
    return 0
