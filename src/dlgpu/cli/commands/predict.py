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
    add_precision,
    add_task,
    console,
    emit_json,
)
from dlgpu.results import PREDICT_SCHEMA


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("predict", help="predict a workload on a catalog GPU you may not have")
    p.add_argument("workload")
    p.add_argument("--hardware", "-H", required=True, metavar="ID", help="a catalog id (see `dlgpu hardware list`)")
    add_precision(p)
    add_task(p)
    add_batch_size(p)
    add_overrides(p)
    add_catalog(p)
    add_db(p, help="the results database to save the prediction in")
    p.add_argument("--no-save", action="store_true", help="do not save the prediction in the results database")
    add_json(p, PREDICT_SCHEMA)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from dlgpu.report.terminal_predict import print_prediction

    pred = api.predict(args.workload, args.hardware, args.precision, args.task, args.batch_size,
                       api.parse_overrides(args.overrides), args.catalog)
    if not args.no_save:
        pred = api.save_prediction(pred, args.db)
    if args.json:
        emit_json(pred.to_dict())
    else:
        print_prediction(console(), pred)
    return 0
