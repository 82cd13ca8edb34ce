"""Tabular training on a console: a predicted training time (``dlgpu.tabular-predict/1``) and the CPU/GPU advice for
a tabular job (``dlgpu.tabular-advise/1``: the verdict, its reasons, the crossover, the candidates ranked by cost).
Renders only: whether a GPU pays is the advice's judgment, recorded on each candidate."""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dlgpu.units import format_duration

ANSWER_STYLE = {"cpu-enough": "bold green", "gpu-pays": "bold yellow", "nothing-meets": "bold red",
                "not-predicted": "bold"}
GIB = 2**30


def _job(doc: dict[str, Any]) -> str:
    j = doc.get("job") or {}
    if "rows" not in j:
        return ""
    return (f"{int(j['rows']):,} rows x {j.get('features')} features, {j.get('trees')} trees of depth "
            f"{j.get('depth')}")


def _rows(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isinf(x)):
        return "never"
    if x >= 1e6:
        return f"{x / 1e6:,.3g}M"
    if x >= 1e3:
        return f"{x / 1e3:,.3g}K"
    return f"{x:,.0f}"


def print_tabular_prediction(console: Console, doc: dict[str, Any]) -> None:
    """``dlgpu.tabular-predict/1``: the figure, its interval and basis, the memory, the errors, the verify command."""
    head = f"[bold]dlgpu predict[/] {escape(doc['workload'])} train: {escape(_job(doc))}"
    console.print(head)
    if not doc.get("predicted"):
        console.print(f"[bold]{escape(doc['reason'])}[/]")
        console.print(f"  • Job: {escape(doc.get('job_basis', ''))}")
        return
    console.print(f"[bold]{escape(doc['hardware_name'])}[/] ({escape(doc['hardware'])}, {doc['kind'].upper()}"
                  + (f", {doc['threads']} threads" if doc.get("threads") else "") + f"): "
                  f"[bold]{escape(format_duration(doc['train_s']))}[/] to train ({escape(doc['source'])})")
    iv = doc.get("interval")
    if iv:
        console.print(f"  • Likely {escape(format_duration(iv['low_s']))} to {escape(format_duration(iv['high_s']))}: "
                      f"{escape(iv['basis'])}")
    else:
        console.print("  • No interval: no held-out error for this estimator and device kind")
    console.print(f"  • Terms: {escape(format_duration(doc['fixed_s']))} fixed ({doc['levels']:,} tree levels), "
                  f"{escape(format_duration(doc['histogram_s']))} building histograms")
    console.print(f"  • Basis: {escape(doc['basis'])}")
    console.print(f"  • Device: {escape(doc['device_basis'])}")
    m = doc["memory"]
    fit = {True: "fits", False: "does NOT fit", None: "no memory size known"}[m["fits"]]
    console.print(f"  • Memory: {m['need_bytes'] / GIB:,.2f} GiB of data while training"
                  + ("" if m["usable_bytes"] is None else f" of {m['usable_bytes'] / GIB:,.1f} GiB usable")
                  + f": {fit}")
    e = doc.get("errors") or {}
    parts = []
    for name, label in (("in_sample", "in-sample"), ("leave_one_device_out", "leave-one-device-out"),
                        ("leave_one_size_out", "leave-one-size-out")):
        s = e.get(name)
        if s:
            parts.append(f"{label} median {s['median_abs_error_pct']:.0f}%, max {s['max_abs_error_pct']:.0f}% "
                         f"(n={s['n']})")
        elif name == "leave_one_device_out" and doc["kind"] == "gpu":
            parts.append("leave-one-device-out impossible (the V100 is the only published GPU)")
    if parts:
        console.print(f"  • Published-fit errors for {escape(doc['family'])} on a {doc['kind'].upper()}: "
                      + escape("; ".join(parts)))
    console.print(f"  • Job: {escape(doc['job_basis'])}")
    console.print(f"  • Verify: {escape(doc['verify'])}")


def print_tabular_advice(console: Console, doc: dict[str, Any], top: int = 15) -> None:
    """``dlgpu.tabular-advise/1``: the verdict and its reasons, then the candidates ranked by cost."""
    console.print(f"[bold]dlgpu advise[/] {escape(doc['workload'])} train: {escape(_job(doc))} "
                  f"[dim]({escape(doc.get('job_basis', ''))})[/]")
    console.print(f"[{ANSWER_STYLE.get(doc['answer'], 'bold')}]{escape(doc['verdict'])}[/]")
    for r in doc.get("reasons") or []:
        console.print(f"  • {escape(r)}")
    here = doc.get("this_machine")
    if here:
        console.print(f"  • Verify here: {escape(here['verify'])}")
    cands = doc.get("candidates") or []
    if not cands:
        return
    t = Table(title=f"GPUs, rented then bought, those that pay first, cheapest first (top {top} of each)",
              title_justify="left")
    for col, just in (("candidate", "left"), ("how", "left"), ("GPU", "left"), ("train", "right"),
                      ("+ overhead", "right"), ("vs this CPU", "right"), ("fits", "left"), ("pays", "left"),
                      ("cost", "right"), ("crossover rows", "right")):
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    shown = [c for c in cands if c["how"] == "rent"][:top] + [c for c in cands if c["how"] == "buy"][:top]
    for c in shown:
        if c["cost_usd"] is None:
            cost = "-"
        elif c["how"] == "rent":
            cost = f"${c['cost_usd']:,.4g} (${c['price_usd_per_hour']:,.2f}/h)"
        else:
            cost = f"${c['cost_usd']:,.0f}"
        saves = c["saves_s"]
        vs = (f"saves {format_duration(saves)}" if saves > 0 else f"[red]{format_duration(-saves)} slower[/]")
        t.add_row(escape(c["name"]), c["how"], escape(c["hardware"]), escape(format_duration(c["train_s"])),
                  escape(format_duration(c["time_s"])), vs,
                  {True: "yes", False: "[red]no[/]", None: "?"}[c["fits"]], "[green]yes[/]" if c["pays"] else "no",
                  escape(cost), _rows(c.get("crossover_rows")))
    console.print(t)
    console.print(f"[dim]Every GPU time predicted (published V100 fit x catalog bandwidth); + overhead: "
                  f"{escape(format_duration(doc['gpu_overhead_s']))} ({escape(doc['gpu_overhead_basis'])}); rent cost "
                  "= price per hour x (train + overhead); crossover rows: where this CPU's time equals the GPU's "
                  "plus the overhead, for this job's features, trees and depth. `--json` has every figure with its "
                  "basis.[/]")
