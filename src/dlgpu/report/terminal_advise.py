"""Advice on a console: the verdict with its reasons, the ranked candidates, the constraints it was judged
under. Renders only: whether a candidate meets the deadline is the verdict's judgment, recorded on it."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dlgpu.report.format import format_value
from dlgpu.report.terminal import sig
from dlgpu.results import Advice, Candidate
from dlgpu.units import format_duration

ADVICE_MARKS = {"measured": "ᵐ", "predicted": "ᵖ", "catalog": "ᶜ", "estimated": "ᵉ", "computed": "",
                "assumed": "ˢ", "given": "ᵍ"}
ANSWER_STYLE = {"cpu-enough": "bold green", "gpu-needed": "bold yellow", "nothing-meets": "bold red"}
COLUMNS = (("#", "right"), ("candidate", "left"), ("how", "left"), ("precision", "left"), ("batch", "right"),
           ("time to finish", "right"), ("samples/s", "right"), ("costs", "right"), ("per job", "right"),
           ("energy", "right"), ("power", "right"), ("samples/$", "right"), ("samples/s/W", "right"))
COST_FIGURE = {"buy": "upfront_usd", "rent": "rent_usd"}
"""What a candidate's 'costs' column shows: the purchase, the rent, or (own) the job's electricity."""
RESTS_ON_THROUGHPUT = frozenset({"time_s", "job_cost_usd", "rent_usd", "amortized_usd", "electricity_usd",
                                 "energy_kwh", "carbon_kg", "samples_per_usd", "samples_per_s_per_w"})
"""The figures computed from a candidate's throughput (the job's time and all that follows from it): where the
throughput is predicted, they are computed from a prediction and carry its mark."""


def _mark(c: Candidate, name: str, source: str) -> str:
    """The mark of a figure's source; a figure computed from a predicted throughput carries the prediction's."""
    if source == "computed" and name in RESTS_ON_THROUGHPUT:
        sps = c.figures.get("samples_per_s")
        if sps is not None and sps.source == "predicted":
            return ADVICE_MARKS["predicted"]
    return ADVICE_MARKS.get(source, "")


def _fig(c: Candidate, name: str, unit: str = "") -> str:
    """A candidate's figure in ``unit`` with the mark of its source, or '-'."""
    f = c.figures.get(name)
    if f is None or f.value is None:
        return "-"
    v = float(f.value)
    if unit == "s":
        text = format_duration(v)
    elif unit in ("usd", "kWh"):
        text = format_value(v, unit)
    else:
        text = sig(v, unit)
    return escape(text) + _mark(c, name, f.source)


def _batch(c: Candidate) -> str:
    batch = str(c.batch_size or "-")
    largest = c.value("largest_batch")
    if c.fits is False or (largest and c.batch_size and largest < c.batch_size):
        batch += " [yellow](reduced)[/]"
    return batch


def advice_table(advice: Advice, top: int) -> Table:
    t = Table(title=f"candidates, fastest first (top {top})", title_justify="left")
    for col, justify in COLUMNS:
        t.add_column(col, justify=justify)  # type: ignore[arg-type]
    v = advice.verdict
    picks = {cid: label for cid, label in ((v.best_value, "best value"), (v.fastest, "fastest"),
                                           (v.cheapest, "cheapest")) if cid}
    shown = [c for c in advice.candidates if not c.excluded][:top]
    for i, c in enumerate(shown, 1):
        time_text = _fig(c, "time_s", "s")
        if c.meets_deadline is False:
            time_text = f"[red]{time_text}[/]"
        name = escape(c.name) + (f" [green]<- {picks[c.id]}[/]" if c.id in picks else "")
        t.add_row(str(i), name, c.origin, c.precision, _batch(c), time_text, _fig(c, "samples_per_s"),
                  _fig(c, COST_FIGURE.get(c.origin, "job_cost_usd"), "usd"), _fig(c, "job_cost_usd", "usd"),
                  _fig(c, "energy_kwh", "kWh"), _fig(c, "power_w", "W"), _fig(c, "samples_per_usd"),
                  _fig(c, "samples_per_s_per_w"))
    return t


def _verdict(console: Console, advice: Advice) -> None:
    v, job = advice.verdict, advice.job
    console.print(f"[bold]dlgpu advise[/] {escape(advice.workload)} {advice.task}: {escape(job.description)} "
                  f"[dim]({escape(job.basis)})[/]")
    console.print(f"[{ANSWER_STYLE[v.answer]}]{escape(v.headline)}[/]")
    for r in v.reasons:
        console.print(f"  • {escape(r)}")
    if v.what_would:
        console.print("  What would meet it:")
        for w in v.what_would:
            console.print(f"  • {escape(w)}")
    for n in advice.notes:
        console.print(f"[yellow]{escape(n)}[/]")


def _footer(console: Console, advice: Advice) -> None:
    excluded = [c for c in advice.candidates if c.excluded]
    if excluded:
        console.print(f"[dim]{len(excluded)} candidate(s) left out: " + "; ".join(
            escape(f"{c.name}: {c.excluded}") for c in excluded[:5]) + (" ..." if len(excluded) > 5 else "")
            + "[/]")
    k = advice.constraints
    e, c = k.electricity_usd_per_kwh, k.carbon_g_per_kwh
    budget = "none" if k.budget_usd is None else f"${k.budget_usd:,.0f}"
    console.print(
        f"[dim]deadline {format_duration(k.deadline_s)} ({escape(k.deadline_basis)}); budget {budget}; "
        f"electricity ${e.value:g}/kWh ({escape(e.basis)}); carbon {c.value:g} g/kWh ({escape(c.basis)}); "
        f"purchases amortized over {k.lifetime_years:g} years at {k.hours_per_day:g} h/day; PUE {k.pue:g}.[/]")
    console.print("[dim]ᵐ measured here  ᵖ predicted  ᶜ catalog  ᵉ estimated  ˢ assumed default  ᵍ given; unmarked: "
                  "computed from those (a time, cost or energy computed from a predicted throughput carries ᵖ). "
                  "costs = the purchase (buy), the rent (rent) or the electricity (own); per job = amortized "
                  "purchase + electricity, the rent, or the electricity. `--json` has every figure with its basis.[/]")


def print_advice(console: Console, advice: Advice, top: int = 15) -> None:
    """The verdict and its reasons, the ranked candidates (``top`` rows), and what it was judged under."""
    _verdict(console, advice)
    console.print(advice_table(advice, top))
    _footer(console, advice)


def print_llm_advice(console: Console, doc: dict[str, Any], top: int = 15) -> None:
    """``dlgpu.llm-advise/1``: the verdict, the smallest device per format, and the ranked candidates."""
    console.print(escape(doc["verdict"]))
    console.print(f"  • This machine: {escape(doc['this_machine']['basis'])}")
    for fmt, s in doc["smallest_that_fits"].items():
        console.print(f"  • Smallest GPU that holds it in {fmt}: "
                      + (f"{escape(s['name'])} (needs {s['need_bytes'] / 2**30:.1f} of {s['usable_bytes'] / 2**30:.1f} "
                         "GiB usable)" if s else "none in the catalog"))
    console.print(f"  • Basis: {escape(doc['basis'])}")
    table = Table(title=f"candidates, those that fit and meet the rate first (top {top})", title_justify="left")
    columns = (("candidate", "left"), ("how", "left"), ("runtime", "left"), ("format", "left"),
               ("tokens/s per user", "right"), ("tokens/s total", "right"), ("memory GiB", "right"), ("fits", "left"),
               ("meets", "left"), ("cost", "right"))
    for col, just in columns:
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for c in doc["candidates"][:top]:
        cost = "-" if c["cost_usd"] is None else f"${c['cost_usd']:,.2f}" + ("/h" if c["how"] == "rent" else "")
        mark = "ˣ" if c["extrapolated"] else "ᵖ"
        table.add_row(escape(c["name"]), c["how"], c.get("runtime", ""), c["weight_format"],
                      f"{c['tokens_per_s_per_user']:,.1f}{mark}",
                      f"{c['tokens_per_s_total']:,.1f}{mark}",
                      f"{c['need_bytes'] / 2**30:.1f}/{c['usable_bytes'] / 2**30:.1f}",
                      "yes" if c["fits"] else "no", "yes" if c["meets"] else "no", cost)
    console.print(table)
    console.print("ᵖ predicted (llama.cpp efficiencies fitted to published rows); ˣ extrapolated (no published row on "
                  "that backend: assumed efficiencies)")
