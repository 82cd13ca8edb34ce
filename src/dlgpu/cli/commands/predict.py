"""``dlgpu predict``, ``dlgpu analyze``, ``dlgpu validate`` and ``dlgpu calibrate``: the prediction engine."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dlgpu import api


def add_parser(sub: Any) -> None:
    p = sub.add_parser("predict", help="predict a workload on a catalog GPU you may not have")
    p.add_argument("workload")
    p.add_argument("--hardware", "-H", required=True, metavar="ID", help="a catalog id (see `dlgpu hardware list`)")
    p.add_argument("--precision", "-p", default="fp32", choices=("fp32", "tf32", "bf16", "fp16"))
    p.add_argument("--task", "-t", default="train", choices=("train", "infer", "decode"))
    p.add_argument("--batch-size", "-b", type=int, metavar="N")
    p.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE")
    p.add_argument("--catalog", action="append", type=Path, default=[], metavar="FILE")
    p.add_argument("--db", type=Path, metavar="PATH", help="the results database to save the prediction in")
    p.add_argument("--no-save", action="store_true", help="do not save the prediction in the results database")
    p.add_argument("--json", action="store_true", help="print one JSON document (dlgpu.predict/1)")
    p.set_defaults(run=run_predict)

    a = sub.add_parser("analyze", help="operator profile of one full-size step, traced on fake tensors")
    a.add_argument("workload")
    a.add_argument("--precision", "-p", default="fp32", choices=("fp32", "tf32", "bf16", "fp16"))
    a.add_argument("--task", "-t", default="train", choices=("train", "infer", "decode"))
    a.add_argument("--batch-size", "-b", type=int, metavar="N")
    a.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE")
    a.add_argument("--memory", metavar="SIZE", help="also find the largest batch that fits SIZE (e.g. 80GB, 24GiB)")
    a.add_argument("--hardware", "-H", metavar="ID", help="also find the largest batch that fits this device's memory")
    a.add_argument("--json", action="store_true", help="print one JSON document (dlgpu.analyze/1)")
    a.set_defaults(run=run_analyze)

    v = sub.add_parser("validate", help="predict every row of a CSV of measurements and report the errors")
    v.add_argument("file", type=Path)
    v.add_argument("--catalog", action="append", type=Path, default=[], metavar="FILE")
    v.add_argument("--json", action="store_true", help="print one JSON document (dlgpu.validate/1)")
    v.set_defaults(run=run_validate)

    c = sub.add_parser("calibrate", help="refit the performance model on the published calibration data")
    c.add_argument("--data", action="append", type=Path, default=[], metavar="FILE",
                   help="extra measurements in the calibration file's columns")
    c.add_argument("--output", "-o", type=Path, help="where to write the parameters (default: the package's)")
    c.add_argument("--bench", action="append", type=Path, metavar="FILE",
                   help="a `dlgpu bench --json` document whose CPU results to fit CPU efficiencies on "
                        "(repeatable; default: the documents shipped with dlgpu)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(run=run_calibrate)


def run_predict(args: argparse.Namespace) -> int:
    from dlgpu.cli.main import emit_json
    from dlgpu.report.terminal import make_console, print_prediction

    doc = api.predict(args.workload, args.hardware, args.precision, args.task, args.batch_size,
                      api.parse_overrides(args.overrides), args.catalog)
    if not args.no_save:
        api.save_prediction(doc, args.db)
    if args.json:
        emit_json(doc)
    else:
        print_prediction(make_console(), doc)
    return 0


def run_analyze(args: argparse.Namespace) -> int:
    from dlgpu.cli.main import emit_json
    from dlgpu.report.terminal import make_console, print_profile
    from dlgpu.units import format_bytes

    overrides = api.parse_overrides(args.overrides)
    fit = api.fit_memory(args.workload, args.task, args.precision, overrides, args.memory, args.hardware)
    prof = api.analyze(args.workload, args.task, args.precision, args.batch_size, overrides,
                       target=fit["target"] if fit else "gpu")
    doc = {"schema": "dlgpu.analyze/1", **prof.to_dict(), "memory_need_bytes": api.memory_need(prof),
           "largest_batch": fit}
    for op in doc["ops"]:
        op["unit"] = api.op_unit(op["kind"], op["dtype"], args.precision)
    if args.json:
        emit_json(doc)
    else:
        con = make_console()
        print_profile(con, prof)
        con.print(f"memory needed at batch {prof.batch_size}: {format_bytes(doc['memory_need_bytes'])} "
                  "(weights, gradients, optimizer state, activations, KV cache, largest operator output)")
        tc = sum(o["flops"] * o["count"] for o in doc["ops"] if o["unit"] != "vector")
        con.print(f"FLOPs on tensor cores: {100 * tc / (prof.flops or 1):.0f}% (fp16/bf16 autocast dense ops; "
                  "fp32 convolutions and, at tf32, matmuls use TF32 tensor cores on Ampere and newer)")
        if fit:
            con.print(f"largest batch that fits {format_bytes(fit['memory_bytes'])} ({fit['memory_of']}): "
                      f"{fit['batch_size']:,}")
    return 0


def run_validate(args: argparse.Namespace) -> int:
    from dlgpu.cli.main import emit_json
    from dlgpu.report.terminal import make_console, print_validation

    doc = api.validate(args.file, args.catalog)
    if args.json:
        emit_json(doc)
    else:
        print_validation(make_console(), doc)
    return 0


def run_calibrate(args: argparse.Namespace) -> int:
    from dlgpu.cli.main import emit_json
    from dlgpu.report.terminal import make_console

    doc = api.calibrate(args.data, args.output, args.bench)
    if args.json:
        emit_json(doc)
    else:
        con = make_console()
        loo = doc["leave_one_device_out"]
        con.print(f"fitted on {doc['rows_used']} rows ({len(doc['rows_skipped'])} not usable); "
                  f"in-sample median |error| {doc['in_sample']['median_abs_error_pct']:.1f}%, "
                  f"leave-one-device-out median |error| {loo['overall']['median_abs_error_pct']:.1f}%")
        for fam, s in loo["by_family"].items():
            con.print(f"  {fam}: median |error| {s['median_abs_error_pct']:.1f}% over {s['n']} rows (LOO)")
        cpu = doc["cpu"]
        if cpu["rows_used"]:
            lwo = cpu["leave_one_workload_out"]["overall"]
            con.print(f"CPU ({', '.join(cpu['devices'])}): {cpu['rows_used']} bench rows; in-sample median |error| "
                      f"{cpu['in_sample']['median_abs_error_pct']:.1f}%, leave-one-workload-out "
                      f"{lwo['median_abs_error_pct']:.1f}%")
        mem = doc["memory_model"]
        if mem.get("n"):
            con.print(f"memory model vs measured peaks: median |error| {mem['median_abs_error_pct']:.1f}% over "
                      f"{mem['n']} results (+{mem['runtime_bytes'] / 2**30:.2f} GiB runtime, the median difference)")
    return 0
