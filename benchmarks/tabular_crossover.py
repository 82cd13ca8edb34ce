"""Trees on this CPU: XGBoost and LightGBM training measured over rows, beside dlgpu's predictions (issue 17).

For each library and row count (default 10K, 30K, 100K, 300K, 1M, 3M; ``--quick``: 10K, 100K, 1M) it fits the
``xgboost``/``lightgbm`` workload's estimator (``dlgpu.workloads.models.tabular.build_model``: XGBClassifier hist /
LGBMClassifier, n_jobs = the usable cores) on the workload's synthetic data (``make_data``, the same seeded
generator; features, trees and depth the workload's defaults: 8, 100, 10), after one untimed warm-up fit on 2,000
rows, and times whole ``fit(X, y)`` calls (the median of up to ``--repeats``, fewer once a size has taken 10 s).
Beside each time:

- ``published``: dlgpu's prediction for this CPU from the published CPU fit alone, scaled to its threads (what a user
  gets before measuring anything here);
- ``held out``: this CPU's own fit on the other sizes measured here (leave-one-size-out), the prediction at a size
  never measured;
- the predicted GPU times (V100, T4, L4, A10, A100, H100: the published V100 fit x the catalog bandwidth);
- per GPU, the crossover rows against this CPU fitted on every size measured: where the GPU becomes faster
  (overhead 0), and where it pays with ``advise``'s default one-minute overhead.

Sizes whose time, extrapolated from the smaller ones, would overrun ``--budget`` seconds are skipped and listed.
``--save FILE`` writes the measurements as ``dlgpu.tabular-measured/1`` (``tabular/data/measured/``: the calibration
``dlgpu predict/advise`` use on this CPU with this many threads when no stored ``dlgpu bench`` result exists).
Run it alone: other processes on a 2-core machine distort timings (a fit during which they took more than 10% of the
CPUs, ``dlgpu.measure.contention``, is done again after a pause, and the rows say so). Bad input (rows <= 0, a depth
out of range, an estimator that does not exist): one line, exit 2.

Usage: python benchmarks/tabular_crossover.py [--quick] [--libraries xgboost lightgbm] [--rows 10K 100K 1M]
       [--budget 540] [--json] [--save FILE] [--from FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_ROWS = ("10K", "30K", "100K", "300K", "1M", "3M")
QUICK_ROWS = ("10K", "100K", "1M")
GPUS = ("v100-sxm2-16gb", "t4", "l4", "a10", "a100-sxm4-80gb", "h100-sxm5-80gb")
LIBRARIES = ("xgboost", "lightgbm")


def bad(message: str) -> int:
    sys.stderr.write(f"tabular_crossover: error: {message}\n")
    return 2


def fit_seconds(model: Any, x: Any, y: Any, repeats: int, enough_s: float = 10.0,
                retries: int = 3) -> tuple[list[float], list[float], int]:
    """(seconds of each kept fit, others' share of the CPUs during each, fits thrown away as contended). A fit
    during which other processes took more than ``CONTENDED_SHARE`` of the CPUs (``measure.contention``) is done
    again after a pause, up to ``retries`` times per kept fit; the last try is kept either way, with its share."""
    from dlgpu.measure.contention import ContentionProbe

    times: list[float] = []
    shares: list[float] = []
    dropped = 0
    while len(times) < repeats and sum(times) < enough_s:
        for attempt in range(retries + 1):
            probe = ContentionProbe()
            probe.start()
            t0 = time.perf_counter()
            model.fit(x, y)
            took = time.perf_counter() - t0
            seen = probe.stop()
            if not seen.contended or attempt == retries:
                break
            dropped += 1
            print(f"  contended ({seen.basis.split(',')[0]}): again in 10 s", file=sys.stderr)
            time.sleep(10)
        times.append(took)
        shares.append(seen.others_share)
    return times, shares, dropped


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--libraries", nargs="+", default=list(LIBRARIES), metavar="LIB")
    ap.add_argument("--rows", nargs="+", default=None, metavar="N", help="row counts (10K, 1M, 3000000)")
    ap.add_argument("--quick", action="store_true", help=f"rows {' '.join(QUICK_ROWS)}, one fit each")
    ap.add_argument("--features", type=int, default=None)
    ap.add_argument("--trees", type=int, default=None)
    ap.add_argument("--depth", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--budget", type=float, default=540.0, metavar="S", help="seconds of fitting at most (540)")
    ap.add_argument("--json", action="store_true", help="print the dlgpu.tabular-measured/1 document")
    ap.add_argument("--save", type=Path, metavar="FILE", help="write the dlgpu.tabular-measured/1 document there")
    ap.add_argument("--from", dest="from_file", type=Path, metavar="FILE",
                    help="measure nothing: the predictions and tables for a saved dlgpu.tabular-measured/1 document")
    args = ap.parse_args()
    if args.from_file is not None:
        try:
            saved = json.loads(args.from_file.read_text())
        except (OSError, ValueError) as exc:
            return bad(f"--from {args.from_file}: {exc}")
        from dlgpu.catalog import CpuSpec, load_catalog

        cid = (saved.get("machine") or {}).get("catalog_id")
        spec = load_catalog().get(cid) if cid else None
        saved["predictions"] = predictions(saved, spec if isinstance(spec, CpuSpec) else None)
        if args.json:
            print(json.dumps(saved, indent=1))
        else:
            print_tables(saved)
        return 0

    from dlgpu.errors import BadInput
    from dlgpu.tabular.jobs import resolve_job
    from dlgpu.tabular.published import parse_rows

    unknown = [lib for lib in args.libraries if lib not in LIBRARIES]
    if unknown:
        return bad(f"--libraries {unknown[0]}: not an estimator this benchmark measures ({', '.join(LIBRARIES)})")
    try:
        sizes = sorted({parse_rows(r) for r in (args.rows or (QUICK_ROWS if args.quick else DEFAULT_ROWS))})
    except ValueError as exc:
        return bad(f"--rows {exc}")
    if sizes[0] <= 0:
        return bad(f"--rows {sizes[0]}: must be a positive number of rows")
    if args.repeats <= 0 or args.budget <= 0:
        return bad("--repeats and --budget must be positive")
    overrides = {k: str(v) for k, v in (("features", args.features), ("trees", args.trees), ("depth", args.depth))
                 if v is not None}
    try:
        jobs = {lib: resolve_job(lib, {**overrides, "rows": str(sizes[0])}) for lib in args.libraries}
    except BadInput as exc:
        return bad(f"--{exc.message}" if exc.param == "overrides" else exc.message)
    repeats = 1 if args.quick else args.repeats

    import psutil

    from dlgpu.catalog import CpuSpec
    from dlgpu.catalog.local import this_cpu
    from dlgpu.devices.cpu import usable_cores
    from dlgpu.measure.contention import CONTENDED_SHARE
    from dlgpu.workloads.models.tabular import build_model, make_data, versions

    threads = usable_cores()[0]
    cpu_name, spec = this_cpu()
    load_before = os.getloadavg()[0]
    if load_before >= 1.0:
        print(f"warning: load average {load_before:.2f} >= 1: other processes share this CPU", file=sys.stderr)
    measured: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    spent = 0.0
    for lib in args.libraries:
        p = jobs[lib].params
        features, trees, depth = int(p["features"]), int(p["trees"]), int(p["depth"])
        model = build_model(lib, {**p}, "cpu", None, threads)
        wx, wy = make_data(2_000, features)
        model.fit(wx, wy)  # untimed: the library loaded, its thread pool started
        done: list[tuple[int, float]] = []
        for rows in sizes:
            if len(done) >= 2:
                (r0, t0), (r1, t1) = done[-2], done[-1]
                guess = t1 + (t1 - t0) / (r1 - r0) * (rows - r1)
                if spent + guess > args.budget:
                    skipped.append({"library": lib, "rows": rows, "reason": f"~{guess:.0f} s extrapolated would "
                                                                            f"overrun the {args.budget:.0f} s budget"})
                    continue
            x, y = make_data(rows, features)
            times, shares, dropped = fit_seconds(model, x, y, repeats)
            spent += sum(times)
            med = statistics.median(times)
            done.append((rows, med))
            measured.append({"library": lib, "rows": rows, "features": features, "trees": trees, "depth": depth,
                             "measured_s": med, "fits": len(times), "times_s": [round(t, 4) for t in times],
                             "others_cpu_share": [round(s, 3) for s in shares], "contended_fits_redone": dropped,
                             "contended": any(s > CONTENDED_SHARE for s in shares)})
            if not args.json:
                print(f"{lib:9} {rows:>10,} rows  {med:8.3f} s  ({len(times)} fit{'s' if len(times) > 1 else ''})",
                      file=sys.stderr)
            del x, y
    doc: dict[str, Any] = {
        "schema": "dlgpu.tabular-measured/1", "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpu": cpu_name, "threads": threads, "ram_bytes": int(psutil.virtual_memory().total),
                    "catalog_id": spec.id if isinstance(spec, CpuSpec) else None,
                    "load_average_before": round(load_before, 2)},
        "versions": versions(), "estimators": {lib: build_model(lib, jobs[lib].params, "cpu", None, threads).settings
                                               for lib in args.libraries},
        "step": "one fit(X, y) of the workload's estimator on make_data(rows, features), float32 in host memory; "
                "median of the fits; one untimed warm-up fit on 2,000 rows first; a fit during which other processes "
                "took more than 10% of the CPUs (dlgpu.measure.contention) is done again after 10 s, up to 3 times",
        "rows": measured, "skipped": skipped,
    }
    doc["predictions"] = predictions(doc, spec if isinstance(spec, CpuSpec) else None)
    if args.save:
        args.save.write_text(json.dumps({k: v for k, v in doc.items() if k != "predictions"}, indent=1) + "\n")
    if args.json:
        print(json.dumps(doc, indent=1))
    else:
        print_tables(doc)
    return 0


def predictions(doc: dict[str, Any], spec: Any) -> dict[str, Any]:
    """Published-only and held-out predictions for each measured row, the GPUs' predicted times and the
    crossovers (see the module docstring)."""
    from dlgpu.advise.tabular import DEFAULT_GPU_OVERHEAD_S, crossover_rows
    from dlgpu.catalog import load_catalog
    from dlgpu.tabular.calibration import published_calibration
    from dlgpu.tabular.jobs import resolve_job
    from dlgpu.tabular.local import LocalCpu, fit_local, runs_from_measured
    from dlgpu.tabular.predict import gpu_device, predicted_time

    m = doc["machine"]
    cal = published_calibration()
    catalog = load_catalog(include_user_dir=False)
    runs = runs_from_measured(doc)
    bw = None if spec is None else spec.memory_bandwidth_bytes_per_s

    def cpu_with(rs: Any) -> LocalCpu:
        return LocalCpu(m["cpu"], int(m["threads"]), bw, m["ram_bytes"], m["catalog_id"], tuple(rs), "this benchmark")

    full = fit_local(cpu_with(runs), cal.fit)
    out_rows = []
    for r in doc["rows"]:
        tj = resolve_job(r["library"], {k: str(r[k]) for k in ("rows", "features", "trees", "depth")})
        dev = cpu_with(()).device()
        pub = predicted_time(tj, dev)["train_s"]
        rest = [x for x in runs if not (x.job.family == r["library"] and x.job.rows == r["rows"])]
        held = fit_local(cpu_with(rest), cal.fit)
        held_s = held.predict(tj.job) if held.has(r["library"]) and tj.job is not None else None
        gpus = {g: predicted_time(tj, gpu_device(catalog.gpu(g)))["train_s"] for g in GPUS}
        out_rows.append({**r, "published_s": pub,
                         "published_error_pct": 100 * (pub - r["measured_s"]) / r["measured_s"],
                         "held_out_s": held_s, "held_out_how": held.how.get(r["library"]),
                         "held_out_error_pct": None if held_s is None else
                         100 * (held_s - r["measured_s"]) / r["measured_s"], "gpu_s": gpus})
    cross: dict[str, Any] = {}
    for lib in sorted({r["library"] for r in doc["rows"]}):
        if not full.has(lib):
            continue
        ref = next(r for r in doc["rows"] if r["library"] == lib)
        tj = resolve_job(lib, {k: str(ref[k]) for k in ("rows", "features", "trees", "depth")})
        assert tj.job is not None
        fixed, hist = full.terms(tj.job)
        cpu_line = (fixed, hist / tj.job.rows)
        cross[lib] = {"cpu_fit": full.how[lib], "per_gpu": {}}
        for g in GPUS:
            t = predicted_time(tj, gpu_device(catalog.gpu(g)))
            gline = (t["fixed_s"], t["histogram_s"] / tj.job.rows)
            faster = crossover_rows(cpu_line, gline, 0.0)
            pays = crossover_rows(cpu_line, gline, DEFAULT_GPU_OVERHEAD_S)
            cross[lib]["per_gpu"][g] = {"faster_from_rows": None if faster == float("inf") else faster,
                                        "pays_from_rows": None if pays == float("inf") else pays}
    return {"rows": out_rows, "crossover": cross, "gpu_overhead_s": DEFAULT_GPU_OVERHEAD_S,
            "published_fit": {g: cal.fit.describe(g.split(":")[1], g.split(":")[0])
                              for g in ("cpu:xgboost", "cpu:lightgbm", "gpu:xgboost", "gpu:lightgbm")}}


def _s(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.3g} s" if x < 100 else f"{x:,.0f} s"


def _n(x: float | None) -> str:
    if x is None:
        return "never"
    return f"{x / 1e6:.3g}M" if x >= 1e6 else f"{x / 1e3:.3g}K" if x >= 1e3 else f"{x:.0f}"


def print_tables(doc: dict[str, Any]) -> None:
    m = doc["machine"]
    pred = doc["predictions"]
    print(f"This CPU: {m['cpu']}, {m['threads']} threads; load average before {m['load_average_before']}; "
          f"{', '.join(f'{k} {v}' for k, v in doc['versions'].items() if k in ('xgboost', 'lightgbm'))}")
    print()
    head = "| library | rows | measured | published fit (err) | held out (err) | " + " | ".join(
        g.split("-")[0].upper() for g in GPUS) + " |"
    print(head)
    print("|" + "---|" * (5 + len(GPUS)))
    for r in pred["rows"]:
        held = "-" if r["held_out_s"] is None else f"{_s(r['held_out_s'])} ({r['held_out_error_pct']:+.0f}%)"
        print(f"| {r['library']} | {r['rows']:,} | {_s(r['measured_s'])} | {_s(r['published_s'])} "
              f"({r['published_error_pct']:+.0f}%) | {held} | " + " | ".join(_s(r["gpu_s"][g]) for g in GPUS) + " |")
    print()
    print(f"Crossover rows against this CPU (fitted on every size above): GPU faster from / GPU pays from (with a "
          f"{pred['gpu_overhead_s']:.0f} s overhead)")
    print()
    print("| library | " + " | ".join(g for g in GPUS) + " |")
    print("|" + "---|" * (1 + len(GPUS)))
    for lib, c in pred["crossover"].items():
        print(f"| {lib} | " + " | ".join(f"{_n(v['faster_from_rows'])} / {_n(v['pays_from_rows'])}"
                                         for v in c["per_gpu"].values()) + " |")
    for lib, c in pred["crossover"].items():
        print(f"\n{lib} on this CPU: {c['cpu_fit']}")
    for s in doc["skipped"]:
        print(f"skipped {s['library']} at {s['rows']:,} rows: {s['reason']}")


if __name__ == "__main__":
    sys.exit(main())
