"""Fine-tuning on a console: a predicted job (``dlgpu.finetune-predict/1``: the memory breakdown per GPU, the fit,
the step time) and the advice for a job (``dlgpu.finetune-advise/1``). Renders only."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dlgpu.units import format_duration

GIB = 2**30


def _gib(n: float | None) -> str:
    return "-" if n is None else f"{n / GIB:,.2f}"


def breakdown_table(doc: dict[str, Any]) -> Table:
    per = "per GPU" if doc.get("hardware_kind") != "cpu" else "on the CPU"
    t = Table(title=f"memory {per} (GiB)", title_justify="left")
    t.add_column("component")
    t.add_column("GiB", justify="right")
    t.add_column("basis")
    for p in doc["breakdown"]:
        if p["key"] == "framework_reserve":
            continue
        t.add_row(escape(p["label"]), _gib(p["bytes"]), escape(p["basis"]))
    fit = {True: "fits", False: "does NOT fit", None: "no memory size"}[doc["fits"]]
    usable = doc.get("usable_memory_bytes")
    t.add_row("[bold]peak[/]", f"[bold]{_gib(doc['peak_mem_bytes'])}[/]",
              "states + max(activations + logits + workspace, optimizer step)")
    reserve = next((p for p in doc["breakdown"] if p["key"] == "framework_reserve"), None)
    if usable is not None:
        t.add_row("usable", _gib(usable), escape(f"{fit}; " + (
            f"{_gib(reserve['bytes'])} GiB of {_gib(doc['memory_bytes'])} reserved (CUDA context, fragmentation)"
            if reserve else "the CPU's memory")))
    return t


def print_finetune_prediction(console: Console, doc: dict[str, Any]) -> None:
    gpus = doc["gpus"]
    fit = {True: "[green]fits[/]", False: "[red]does NOT fit[/]", None: "no memory size"}[doc["fits"]]
    console.print(f"[bold]{escape(doc['model_name'])}[/] fine-tuning on [bold]{escape(doc['hardware_name'])}[/]"
                  + (f" x {gpus}" if gpus > 1 else "") + f": {fit} [dim](predicted, not measured)[/]")
    console.print(f"  {escape(doc['description'])}")
    p = doc["params"]
    console.print(f"  trainable: {p['trainable']:,} of {p['total']:,} parameters ({p['trainable_pct']:.3g}%)")
    console.print(breakdown_table(doc))
    if doc.get("cpu_ram_bytes"):
        console.print(f"  CPU memory needed: {_gib(doc['cpu_ram_bytes'])} GiB [dim]({escape(doc['cpu_ram_basis'])})[/]")
    ds = doc.get("deepspeed_estimate")
    if ds:
        console.print(f"  DeepSpeed's estimator: {_gib(ds['gpu_bytes'])} GiB per GPU, {_gib(ds['cpu_bytes'])} GiB CPU "
                      "[dim](model states only: fp32 gradients counted, activations not)[/]")
    cfg = doc["config"]
    if doc.get("largest_micro_batch") is not None:
        mb, sl = doc["largest_micro_batch"], doc["largest_seq_len"]
        console.print(f"  largest micro-batch at {cfg['seq_len']:,} tokens: "
                      + (f"{mb:,}" if mb else "none fits")
                      + f"; longest sequence at micro-batch {cfg['micro_batch']}: "
                      + (f"{sl:,} tokens" if sl else "none fits"))
    iv = doc.get("interval")
    rng = f" (likely {iv['low']:,.2f}-{iv['high']:,.2f} samples/s)" if iv else ""
    lower = "" if doc.get("step_time_complete", True) else " [yellow](lower bound)[/]"
    would = "if it fit, " if doc["fits"] is False else ""
    console.print(f"  step: {would}{format_duration(doc['step_time_s'])}{lower} per optimizer step of "
                  f"{cfg['micro_batch'] * cfg['grad_accum'] * gpus} sample(s): {doc['samples_per_s']:,.2f} samples/s, "
                  f"{doc['tokens_per_s']:,.0f} tokens/s{rng}")
    t = doc["time"]
    extra = [f"{k} {format_duration(v)}" for k, v in (("collectives", t["collectives_s"]), ("offload", t["offload_s"]),
                                                     ("CPU optimizer", t["cpu_optimizer_s"])) if v]
    b = t["bound"]
    console.print(f"  time: GPU work {format_duration(t['compute_s'])} (compute {b['compute']:.0%}, memory "
                  f"{b['memory']:.0%}, overhead {b['overhead']:.0%}; {t['flops_per_step'] / 1e12:,.2f} TFLOP)"
                  if doc["hardware_kind"] != "cpu" else
                  f"  time: {format_duration(t['compute_s'])} of CPU work ({t['flops_per_step'] / 1e12:,.2f} TFLOP)")
    if extra:
        console.print("        + " + ", ".join(extra))
    job = doc.get("job")
    if job:
        console.print(f"  job: {format_duration(job['time_s'])} [dim]({escape(job['basis'])})[/]")
    for r in doc.get("reasons") or []:
        console.print(f"  [red]•[/] {escape(r)}")
    sug = doc.get("suggestions") or []
    if sug:
        console.print("  what would fit:" if any(s["fits"] for s in sug) else "  nothing tried fits; tried:")
        for s in sug:
            speed = "" if s["samples_per_s"] is None else f", {s['samples_per_s']:,.2f} samples/s"
            console.print(f"  • {escape(s['change'])}: {_gib(s['peak_mem_bytes'])} GiB"
                          f" ({'fits' if s['fits'] else 'does not fit'}){speed}")
    if doc.get("note"):
        console.print(f"  [yellow]{escape(doc['note'])}[/]")
    basis = doc["basis"]
    console.print(f"[dim]time: {escape(basis['time'])}[/]")
    if doc["gpus"] > 1:
        console.print(f"[dim]collectives: {escape(basis['collectives'])}[/]")
    if cfg["offload"] != "none":
        console.print(f"[dim]{escape(basis['offload'])}[/]")
    acts = ("activations traced on fake tensors with the method applied" if doc.get("activations_source") == "traced"
            else "activations from re-derived formulas (not traced: "
            + str((doc.get("activations_trace") or {}).get("reason") or "see --json") + ")")
    console.print(f"[dim]memory: sourced per-parameter bytes, {escape(acts)} (finetune.memory); `--json` has every "
                  "figure with its basis[/]")


def print_finetune_advice(console: Console, doc: dict[str, Any], top: int = 15) -> None:
    console.print(f"[bold]dlgpu advise[/] {escape(doc['model_name'])} fine-tuning: {escape(doc['job']['description'])}")
    console.print(f"[bold]{escape(doc['verdict'])}[/]")
    here = doc["this_machine"]
    console.print(f"  This machine ({escape(str(here.get('device')))}):")
    bases: list[str] = []
    for m in here["methods"]:
        state = ("fits" if m["fits"] else "does not fit") if m.get("fits") is not None else "unknown fit"
        time = "-" if m.get("time_s") is None else format_duration(m["time_s"])
        meets = {True: ", meets the deadline", False: ", misses the deadline", None: ""}[m.get("meets")]
        console.print(f"  • {m['method']}: {state} in {_gib(m['peak_mem_bytes'])} GiB, {time} ({m['source']}){meets}")
        if m["basis"] not in bases:
            bases.append(m["basis"])
    for b in bases:
        console.print(f"    [dim]{escape(b)}[/]")
    t = Table(title="per method: the cheapest that fits and meets the deadline", title_justify="left")
    for col, just in (("method", "left"), ("buy", "left"), ("rent", "left"), ("fastest", "left")):
        t.add_column(col, justify=just)  # type: ignore[arg-type]

    def cell(c: dict[str, Any] | None, rent: bool = False) -> str:
        if not c:
            return "none"
        cost = c["job_cost_usd"] if rent else c["price_usd"]
        money = "" if cost is None else f", ${cost:,.0f}" + (" for the job" if rent else "")
        return escape(f"{c['name']} ({format_duration(c['time_s'])}{money})")

    for m, pm in doc["per_method"].items():
        t.add_row(m, cell(pm["cheapest_buy"]), cell(pm["cheapest_rent"], True), cell(pm["fastest"]))
    console.print(t)
    c = Table(title=f"candidates that fit, fastest first (top {top})", title_justify="left")
    for col, just in (("candidate", "left"), ("how", "left"), ("method", "left"), ("setup", "left"),
                      ("GiB/GPU", "right"), ("tokens/s", "right"), ("job time", "right"), ("cost", "right"),
                      ("meets", "left")):
        c.add_column(col, justify=just)  # type: ignore[arg-type]
    shown = [x for x in doc["candidates"] if x["fits"]][:top]
    for x in shown:
        cost = x["job_cost_usd"] if x["how"] == "rent" else x["price_usd"]
        c.add_row(escape(x["name"]), x["how"], x["method"], escape(x["setup"]),
                  f"{_gib(x['peak_mem_bytes'])}/{_gib(x['usable_bytes'])}", f"{x['tokens_per_s']:,.0f}ᵖ",
                  format_duration(x["time_s"]) + "ᵖ", "-" if cost is None else f"${cost:,.0f}",
                  "yes" if x["meets"] else "[red]no[/]")
    console.print(c)
    console.print(f"[dim]{escape(doc['basis'])}[/]")
    console.print("[dim]ᵖ predicted; cost: the launch price (buy) or the rent for the job's time (rent)[/]")
