"""The advise runs of a comparison (``dlgpu.advise/1`` documents): their panels (verdict and constraints), the
ranked-candidates table and the time vs cost chart. Renders what the advice says; judges nothing (whether a
candidate meets the deadline is the verdict's judgment, recorded on each candidate)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from dlgpu.units import format_duration

from .model import Cell, Column, ScatterChart, ScatterPoint, Table


def _t(text: str | None) -> Cell:
    return Cell(text, "text")


ADVICE_ROWS = 15
COST_FIGURE = {"buy": "upfront_usd", "rent": "rent_usd", "own": "job_cost_usd"}
"""What choosing a candidate costs: the purchase (buy), the rent for the job (rent), the electricity (own)."""
ROLES = (("fastest", "fastest"), ("cheapest", "cheapest"), ("best_value", "best value"))


def _figure(c: Mapping[str, Any], name: str) -> tuple[float | None, str | None]:
    """A candidate's figure as (value, source); (None, None) where it has no finite value."""
    f = (c.get("figures") or {}).get(name) or {}
    v = f.get("value")
    if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
        return float(v), f.get("source")
    return None, None


def _candidates(doc: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The candidates that can be chosen (not excluded), fastest first."""
    usable = [c for c in doc.get("candidates") or [] if c.get("excluded") is None]
    return sorted(usable, key=lambda c: (_figure(c, "time_s")[0] or math.inf, str(c.get("id"))))


def _money(x: float | None) -> str:
    return "none" if x is None else (f"${x:,.0f}" if x >= 100 else f"${x:,.2f}")


def _num(x: Any) -> str:
    return f"{x:g}" if isinstance(x, int | float) and not isinstance(x, bool) else "?"


def constraints_text(k: Mapping[str, Any]) -> str:
    """The constraints of an advise run in one line: deadline, budget, power, prices and amortization."""
    parts = []
    if isinstance(k.get("deadline_s"), int | float):
        basis = f" ({k['deadline_basis']})" if k.get("deadline_basis") else ""
        parts.append(f"deadline {format_duration(float(k['deadline_s']))}{basis}")
    parts.append(f"budget {_money(k.get('budget_usd'))}")
    if k.get("max_power_w") is not None:
        parts.append(f"at most {_num(k['max_power_w'])} W")
    elec, carbon = k.get("electricity_usd_per_kwh") or {}, k.get("carbon_g_per_kwh") or {}
    if elec.get("value") is not None:
        parts.append(f"electricity ${_num(elec['value'])}/kWh ({elec.get('source', '?')})")
    if carbon.get("value") is not None:
        parts.append(f"carbon {_num(carbon['value'])} g CO2e/kWh ({carbon.get('source', '?')})")
    if k.get("pue") not in (None, 1, 1.0):
        parts.append(f"PUE {_num(k['pue'])}")
    if k.get("power_factor") not in (None, 1, 1.0):
        parts.append(f"power {_num(k['power_factor'])} x TDP where not measured")
    if k.get("lifetime_years") is not None and k.get("hours_per_day") is not None:
        parts.append(f"purchases amortized over {_num(k['lifetime_years'])} years at {_num(k['hours_per_day'])} h/day")
    return "; ".join(parts)


def _job_title(doc: Mapping[str, Any]) -> str:
    what = (doc.get("job") or {}).get("description")
    return f"{doc.get('workload')} {doc.get('task')}" + (f": {what}" if what else "")


def advise_panel(run: Mapping[str, Any], doc: Mapping[str, Any]) -> dict[str, Any]:
    """The verdict of an advise run, as a panel: the job, the headline, the reasons and what would change it."""
    v = doc.get("verdict") or {}
    return {"title": _job_title(doc), "verdict": str(v.get("headline") or v.get("answer") or "no verdict"),
            "reasons": [str(r) for r in v.get("reasons") or []],
            "what_would": [str(r) for r in v.get("what_would") or []],
            "constraints": constraints_text(doc.get("constraints") or {}), "run": str(run["id"])}


def _label(c: Mapping[str, Any]) -> str:
    return f"{c.get('name')} ({c.get('precision')})"


def time_cost_points(doc: Mapping[str, Any], prefix: str = "") -> list[ScatterPoint]:
    """One point per candidate that can be chosen and has a time and a cost: x the cost of choosing it (its
    purchase, its rent for the job, or the electricity of an own device), y its time to finish the job.

    Ordered so that a chart labels the interesting ones first: the verdict's picks, then the candidates no
    other is both cheaper and faster than (the trade-off frontier), then the rest, fastest first."""
    v = doc.get("verdict") or {}
    picks = [str(v[key]) for key, _ in ROLES if v.get(key)]
    found = []
    for c in _candidates(doc):
        cost, _ = _figure(c, COST_FIGURE.get(str(c.get("origin")), "job_cost_usd"))
        t, _ = _figure(c, "time_s")
        _, src = _figure(c, "samples_per_s")
        if cost is not None and t is not None and cost > 0 and t > 0:
            found.append((str(c.get("id")), ScatterPoint(_label(c), f"{prefix}{c.get('origin')}", cost, t,
                                                         src or "predicted")))

    def rank(item: tuple[str, ScatterPoint]) -> tuple[int, float]:
        cid, p = item
        if cid in picks:
            return 0, picks.index(cid)
        frontier = not any(q.x <= p.x and q.y <= p.y and (q.x, q.y) != (p.x, p.y) for _, q in found)
        return (1 if frontier else 2), p.y

    return [p for _, p in sorted(found, key=rank)]


def advice_rows(doc: Mapping[str, Any], top: int = ADVICE_ROWS) -> list[tuple[Cell, ...]]:
    """The ``top`` fastest candidates of an advise run (and those its verdict names), fastest first."""
    ranked = _candidates(doc)
    v = doc.get("verdict") or {}
    roles: dict[str, list[str]] = {}
    for key, word in ROLES:
        if v.get(key):
            roles.setdefault(str(v[key]), []).append(word)
    shown = [c for i, c in enumerate(ranked) if i < top or str(c.get("id")) in roles]
    rows: list[tuple[Cell, ...]] = []
    for c in shown:
        t, t_src = _figure(c, "time_s")
        sps, sps_src = _figure(c, "samples_per_s")
        low, _ = _figure(c, "samples_per_s_low")
        high, _ = _figure(c, "samples_per_s_high")
        cost, cost_src = _figure(c, COST_FIGURE.get(str(c.get("origin")), "job_cost_usd"))
        kwh, kwh_src = _figure(c, "energy_kwh")
        judged = c.get("meets_deadline")  # the verdict's judgment (advise.verdict); older documents lack it
        meets = None if judged is None else ("yes" if judged else "no")
        fits = c.get("fits")
        rows.append((_t(str(doc.get("workload"))), Cell(str(c.get("name")), "text",
                                                          flag=", ".join(roles.get(str(c.get("id")), [])) or None),
                     _t(str(c.get("origin"))), _t(str(c.get("precision"))), Cell(c.get("batch_size"), ""),
                     Cell(t, "s", t_src), Cell(sps, "samples/s", sps_src, low=low, high=high),
                     Cell(cost, "usd", cost_src), Cell(kwh, "kWh", kwh_src), _t(meets),
                     _t(None if fits is None else ("yes" if fits else "no"))))
    return rows


def advice_table(docs: Sequence[Mapping[str, Any]]) -> Table:
    rows = [row for doc in docs for row in advice_rows(doc)]
    return Table(
        id="advice", title="Advice: the ranked candidates",
        caption=(f"Per advise run, its {ADVICE_ROWS} fastest candidates that can be chosen (and any its verdict "
                 "names): time = the job's samples / throughput; cost = the launch price of a GPU to buy, the rent "
                 "for the job of an instance, the electricity of this machine's devices; energy = power x time x "
                 "PUE."),
        columns=(Column("workload", "workload"), Column("candidate", "candidate"), Column("origin", "origin"),
                 Column("precision", "precision"), Column("batch", "batch", ""), Column("time", "time", "s"),
                 Column("sps", "samples/s", "samples/s"), Column("cost", "cost", "usd"),
                 Column("energy", "energy", "kWh"), Column("meets", "meets the deadline"), Column("fits", "fits")),
        rows=tuple(rows),
        notes=tuple(f"{_job_title(d)}: {len(d.get('candidates') or [])} candidates, "
                    f"{len(_candidates(d))} that can be chosen; verdict {(d.get('verdict') or {}).get('answer')}"
                    for d in docs))


def time_cost_chart(docs: Sequence[Mapping[str, Any]]) -> ScatterChart:
    several = len({(d.get("workload"), d.get("task")) for d in docs}) > 1
    points = [p for d in docs for p in time_cost_points(d, f"{d.get('workload')} {d.get('task')}: " if several
                                                         else "")]
    return ScatterChart("time_cost", "Time to finish vs cost (advise)",
                        "cost: purchase, rent for the job, or electricity", "time to finish the job", "usd", "s",
                        True, True, tuple(points))


