"""The performance model on a console: a prediction, an operator profile with the memory it needs, the
validation of predictions against measurements, and a calibration's fit. Renders only."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dlgpu.results import Analysis, OpProfile, Prediction
from dlgpu.units import GIB, format_bytes, format_duration, format_rate

FITS = {True: "fits", False: "does NOT fit", None: "unknown fit"}


def print_prediction(console: Console, pred: Prediction) -> None:
    iv = pred.interval
    rng = "" if not iv else f" (likely {format_rate(iv['low'])}-{format_rate(iv['high'])})"
    console.print(f"[bold]{escape(pred.workload)}[/] {pred.task} on [bold]{escape(pred.hardware)}[/] at "
                  f"{pred.precision}, batch {pred.batch_size} [dim](predicted, not measured)[/]")
    unit = "tokens" if pred.task == "decode" else "samples"  # a decode step makes one token per sequence
    console.print(f"  throughput: {format_rate(pred.samples_per_s)} {unit}/s{rng}")
    console.print(f"  step time: {format_duration(pred.step_time_s)}")
    b = pred.bound
    console.print(f"  time shares: compute {b['compute']:.0%}, memory traffic {b['memory']:.0%}, "
                  f"per-kernel overhead {b['overhead']:.0%}; tensor-core FLOPs {pred.tensor_core_flops_share:.0%}")
    usable, total = pred.usable_memory_bytes, pred.memory_bytes
    of = format_bytes(total) if usable == total or usable is None or total is None else (
        f"{format_bytes(usable)} usable ({format_bytes(total - usable)} of {format_bytes(total)} reserved for the "
        "runtime)")
    console.print(f"  memory: about {format_bytes(pred.peak_mem_bytes)} of {of}: "
                  f"{FITS[pred.fits]} [dim]({escape(pred.peak_mem_basis)})[/]")
    proj = pred.task_projection
    if proj:
        console.print(f"  real task: {escape(proj['description'])}: {format_duration(proj['time_s'])} at the "
                      "predicted throughput")
    console.print(f"[dim]{escape(pred.provenance)}[/]")


def print_profile(console: Console, prof: OpProfile) -> None:
    console.print(f"[bold]{escape(prof.workload)}[/] {prof.task} at {prof.precision}, batch {prof.batch_size}: "
                  f"{prof.flops / 1e12:.3g} TFLOP, {format_bytes(prof.bytes)} moved (eager, unfused), "
                  f"{prof.kernels} kernels, {prof.parameters:,} parameters")
    if prof.activation_bytes is not None:
        console.print(f"  activations kept for backward: {format_bytes(prof.activation_bytes)}; "
                      f"weights+gradients+optimizer: {format_bytes(prof.state_bytes)}")
    if prof.cache_bytes is not None:
        console.print(f"  KV cache of {prof.params.get('context_len')} tokens x batch {prof.batch_size}: "
                      f"{format_bytes(prof.cache_bytes)}; weights: {format_bytes(prof.state_bytes)}")
    t = Table(title="by operator kind", title_justify="left")
    for col in ("kind", "GFLOP", "bytes", "kernels", "FLOP/byte"):
        t.add_column(col, justify="left" if col == "kind" else "right")
    for kind, d in sorted(prof.by_kind().items(), key=lambda kv: -kv[1]["flops"]):
        t.add_row(kind, f"{d['flops'] / 1e9:,.1f}", format_bytes(d["bytes"]), f"{d['kernels']:.0f}",
                  f"{d['flops'] / d['bytes']:.1f}" if d["bytes"] else "-")
    console.print(t)


def print_analysis(console: Console, analysis: Analysis) -> None:
    """``dlgpu analyze``: the profile, then the memory it needs and its FLOPs on tensor cores."""
    prof = analysis.profile
    print_profile(console, prof)
    console.print(f"memory needed at batch {prof.batch_size}: {format_bytes(analysis.memory_need_bytes)} "
                  "(weights, gradients, optimizer state, activations, KV cache, largest operator output)")
    console.print(f"FLOPs on tensor cores: {analysis.tensor_core_flops_share:.0%} (fp16/bf16 autocast dense ops; "
                  "fp32 convolutions and, at tf32, matmuls use TF32 tensor cores on Ampere and newer)")
    fit = analysis.largest_batch
    if fit:
        usable = fit.get("usable_memory_bytes") or fit["memory_bytes"]
        reserve = "" if usable == fit["memory_bytes"] else (
            f" of {format_bytes(fit['memory_bytes'])}, the rest reserved for the runtime")
        console.print(f"largest batch that fits {format_bytes(usable)}{reserve} ({escape(str(fit['memory_of']))}):"
                      f" {fit['batch_size']:,}")


def print_validation(console: Console, doc: dict[str, Any]) -> None:
    """``dlgpu.validate/1``: each row measured and predicted, with the error, or its status where it was not
    predicted; the rows left out, with why; the summary over the rows predicted."""
    t = Table(title=f"dlgpu validate {escape(str(doc['file']))}", title_justify="left")
    llm = doc.get("kind") == "llm"
    cols = (("row", "model", "hardware", "quant", "metric", "measured"), ("row", "model", "hardware", "quant",
                                                                          "metric", "value")) if llm else (
        ("row", "workload", "task", "hardware", "precision", "batch", "measured/s"),
        ("row", "workload", "task", "hardware", "precision", "batch_size", "samples_per_s"))
    for col in (*cols[0], "predicted", "error", "status"):
        t.add_column(col)
    for r in doc["rows"]:
        first = [escape(str(r.get(k) if r.get(k) is not None else "")) for k in cols[1]]
        if r["status"] != "ok":
            style = "red" if r["status"] == "error" else "yellow"
            t.add_row(*first, "-", "-", f"[{style}]{escape(str(r['status']))}[/]")
            continue
        pred = r["predicted_value"] if llm else r["predicted_samples_per_s"]
        t.add_row(*first, format_rate(pred), f"{r['error_pct']:+.0f}%", "ok")
    console.print(t)
    left = doc.get("left_out_by_reason") or []
    if left:
        console.print(f"left out of the errors: {doc['left_out']} row(s)")
        for g in left:
            rows = ("row " if len(g["rows"]) == 1 else "rows ") + ", ".join(str(n) for n in g["rows"])
            console.print(f"  {rows} ({escape(g['status'])}): {escape(g['reason'] or '')}")
    if doc["median_abs_error_pct"] is not None:
        console.print(f"median |error| {doc['median_abs_error_pct']:.1f}%, mean |error| "
                      f"{doc['mean_abs_error_pct']:.1f}% over {doc['predicted']} rows; "
                      f"{doc['left_out']} left out")
    else:
        console.print(f"no row predicted; {doc['left_out']} left out")


def print_calibration(console: Console, doc: dict[str, Any]) -> None:
    """``dlgpu.calibration/1``: how well the refitted model fits, in sample and held out (as a user's prediction is
    made: no benchmark suite's correction)."""
    acc = doc.get("accuracy") or {}
    ridge = doc.get("ridge") or {}
    console.print(f"fitted on {doc['rows_used']} rows ({len(doc['rows_skipped'])} not usable); in-sample median "
                  f"|error| {doc['in_sample']['median_abs_error_pct']:.1f}%"
                  + (f"; ridge {ridge['chosen']:g}, chosen on an inner split of the devices" if ridge else ""))
    held = [("leave-one-device-out", acc)]
    lowo = (doc.get("leave_one_workload_out") or {}).get("accuracy")
    if lowo:
        held.append(("leave-one-workload-out", lowo))
    for name, a in held:
        if not a:
            continue
        o = a["overall"]
        console.print(f"{name}: median |error| {o['median_abs_error_pct']:.1f}%, 90th percentile "
                      f"{o['p90_abs_error_pct']:.1f}% over {o['n']} rows (predicted as a user's are)")
        for part in ("by_family", "by_generation"):
            for k, g in a[part].items():
                console.print(f"  {escape(k)}: median {g['median_abs_error_pct']:.1f}%, 90th percentile "
                              f"{g['p90_abs_error_pct']:.1f}% over {g['n']} rows")
    if acc:
        cov, rho = acc["interval_coverage"], acc["spearman"]
        console.print(f"{cov['stated']:.0%} interval covers {cov['observed']:.0%} of held-out devices' rows; rank "
                      f"correlation across devices (Spearman) median {rho['median']:.2f}, lowest {rho['min']:.2f} "
                      f"over {len(rho['configs'])} configurations measured on 3+ devices")
    dis = doc.get("source_disagreement") or {}
    if dis.get("configurations"):
        console.print(f"suites disagree: {len(dis['configurations'])} configurations published by two or more suites "
                      f"differ by a median {dis['median_ratio']:.2f}x, so a prediction for one stated stack is at "
                      f"least {dis['median_floor_pct']:.0f}% off one of them (median)")
    loao = (doc.get("leave_one_architecture_out") or {}).get("overall")
    if loao:
        console.print(f"leave-one-architecture-out median |error| {loao['median_abs_error_pct']:.1f}%: the interval of "
                      f"an extrapolated device (calibrated architectures: "
                      f"{escape(', '.join(doc.get('calibrated_architectures') or []))})")
    if doc.get("unfitted_terms"):
        console.print(f"not fitted (no row depends on them; predictions that use them say so): "
                      f"{escape(', '.join(doc['unfitted_terms']))}")
    cpu = doc["cpu"]
    if cpu["rows_used"]:
        lwo = cpu["leave_one_workload_out"]["overall"]
        console.print(f"CPU ({escape(', '.join(cpu['devices']))}): {cpu['rows_used']} bench rows; in-sample median "
                      f"|error| {cpu['in_sample']['median_abs_error_pct']:.1f}%, leave-one-workload-out "
                      f"{lwo['median_abs_error_pct']:.1f}%")
    mem = doc["memory_model"]
    if mem.get("n"):
        console.print(f"memory model vs measured peaks: median |error| {mem['median_abs_error_pct']:.1f}% over "
                      f"{mem['n']} results (+{mem['runtime_bytes'] / GIB:.2f} GiB runtime, the median difference)")


def print_llm_prediction(console: Console, doc: dict[str, Any]) -> None:
    """``dlgpu.llm-predict/1``: an LLM's decode or prefill on a device, predicted, with its memory."""
    mem = doc["memory"]
    head = (f"{escape(doc['model_name'])} ({doc['weight_format']}, KV {doc['kv_format']}) on "
            f"{escape(doc['hardware_name'])}, {doc['runtime']}, batch {doc['batch_size']}: ")
    iv = doc.get("interval")
    rng = f" (likely {iv['low']:,.1f}-{iv['high']:,.1f})" if iv else ""
    if doc.get("tokens_per_s_per_sequence") is None:
        console.print(head + f"not predicted: {escape(doc['basis'])}")
    elif doc["task"] == "serve":
        console.print(head + f"{doc['tokens_per_s_total']:,.0f} output tokens/s in total{rng}, "
                      f"{doc['tokens_per_s_per_sequence']:,.1f} per request, serving requests of "
                      f"{doc['prompt_tokens']} + {doc['output_tokens']} tokens (predicted)")
    elif doc["task"] == "decode":
        console.print(head + f"{doc['tokens_per_s_per_sequence']:,.1f} tokens/s per sequence{rng}, "
                      f"{doc['tpot_ms']:.2f} ms per output token, {doc['tokens_per_s_total']:,.1f} tokens/s in total "
                      "(predicted)")
    else:
        console.print(head + f"prompt of {doc['prompt_tokens']} tokens in {doc['ttft_ms']:,.1f} ms (time to first "
                      f"token), {doc['tokens_per_s_per_sequence']:,.0f} tokens/s{rng} (predicted)")
    usable = mem.get("usable_bytes")
    fit = ("fits" if mem.get("fits") else "does not fit") if mem.get("fits") is not None else "no memory size"
    console.print(f"  memory: weights {mem['weights_bytes'] / GIB:.2f} GiB + KV cache "
                  f"{mem['kv_cache_bytes'] / GIB:.2f} GiB + activations {mem['activation_bytes'] / GIB:.2f} GiB = "
                  f"{mem['total_bytes'] / GIB:.2f} GiB"
                  + (f" of {usable / GIB:.2f} GiB usable: {fit}" if usable else f": {fit}"))
    if mem.get("largest_context"):
        console.print(f"  at most {mem['largest_context']:,} tokens of context for {doc['batch_size']} sequence(s), or "
                      f"{mem['largest_concurrency']:,} sequences of {doc['prompt_tokens'] + doc['output_tokens']:,} "
                      "tokens, fit this device")
    if doc.get("note"):
        console.print(f"  {escape(doc['note'])}" + (": the speed above is what the device would do if it held the "
                                                     "model" if mem.get("fits") is False else ""))
    if doc.get("tokens_per_s_per_sequence") is not None:
        console.print(f"  basis: {escape(doc['basis'])}")
    if iv:
        console.print(f"  range: {escape(iv['basis'])}")
    console.print(f"  verify with: {escape(doc['verify'])}")


def print_llm_calibration(console: Console, doc: dict[str, Any]) -> None:
    """``dlgpu.llm-calibration/1``: the LLM model's fit and its leave-one-device-out errors per phase."""
    o = doc["leave_one_device_out"]
    console.print(f"fitted on {doc['rows_used']} published rows ({len(doc['rows_skipped'])} not used) over "
                  f"{len(doc['devices'])} devices; in-sample median |error| "
                  f"{doc['in_sample']['median_abs_error_pct']:.1f}%")
    for phase, s in o["by_phase"].items():
        console.print(f"  leave-one-device-out {phase}: median |error| {s['median_abs_error_pct']:.1f}%, 90th "
                      f"percentile {s['p90_abs_error_pct']:.1f}% over {s['n']} rows")
    serving = (doc.get("serving") or {}).get("leave_one_device_out")
    if serving:
        s = serving["overall"]
        console.print(f"  serving (TensorRT-LLM max-throughput tables, {doc['serving']['rows_used']} rows over "
                      f"{len(doc['serving']['devices'])} GPUs), leave-one-device-out: median |error| "
                      f"{s['median_abs_error_pct']:.1f}%, 90th percentile {s['p90_abs_error_pct']:.1f}%")
