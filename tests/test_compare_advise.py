"""Advise runs in ``dlgpu compare`` / ``dlgpu report``: real ``dlgpu.advise/1`` documents (``api.advise`` over the
whole catalog) stored as advise runs add a verdict panel each, the time vs cost chart and the ranked 'advice'
table, and render escaped."""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import pytest

from advise_docs import real_doc
from dlgpu import api
from dlgpu.report.compare_advice import ADVICE_ROWS
from dlgpu.report.html import render_html
from dlgpu.report.markdown import render_markdown
from dlgpu.report.model import Comparison, ScatterChart
from dlgpu.store import Store, new_run_id
from dlgpu.store.schema import dump, validate_document

COST = {"buy": "upfront_usd", "rent": "rent_usd", "own": "job_cost_usd"}
CLASSIC = {"speedup", "train_time", "roofline", "batch_throughput", "value", "value_rent"}


def _store(db: Path, *docs: dict[str, Any]) -> list[str]:
    """Each document validated the way ``dlgpu import`` does, then stored as an advise run."""
    runs = []
    for doc in docs:
        run_id = new_run_id()
        runs.append((run_id, "advise", "complete", {**dump(validate_document(doc, "test")), "run_id": run_id},
                     "test"))
    with Store(db) as store:
        return store.import_runs(runs)


@pytest.fixture(scope="module")
def advised(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    db = tmp_path_factory.mktemp("advise") / "r.sqlite"
    docs = {"dcgan": real_doc("dcgan"), "resnet50": real_doc("resnet50")}
    ids = dict(zip(docs, _store(db, *docs.values()), strict=True))
    return {"db": db, "docs": docs, "ids": ids, "comp": api.compare(db=db)}


def _value(c: dict[str, Any], name: str) -> float | None:
    v = (c["figures"].get(name) or {}).get("value")
    return v if isinstance(v, int | float) and math.isfinite(v) else None


def _chooseable(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in doc["candidates"] if c["excluded"] is None]


def _table(comp: Comparison, table_id: str) -> list[dict[str, Any]]:
    t = next(t for t in comp.tables if t.id == table_id)
    return [{c.key: cell for c, cell in zip(t.columns, row, strict=True)} for row in t.rows]


def _chart(comp: Comparison) -> ScatterChart:
    chart = next(c for c in comp.charts if c.id == "time_cost")
    assert isinstance(chart, ScatterChart)
    return chart


def test_each_advise_run_has_a_verdict_panel(advised: dict[str, Any]) -> None:
    comp: Comparison = advised["comp"]
    assert [r.kind for r in comp.runs] == ["advise", "advise"]
    panels = {p["run"]: p for p in comp.panels}
    assert set(panels) == set(advised["ids"].values())
    for name, doc in advised["docs"].items():
        p = panels[advised["ids"][name]]
        assert set(p) == {"title", "verdict", "reasons", "what_would", "constraints", "run"}
        assert p["title"] == f"{name} train: {doc['job']['description']}"
        assert p["verdict"] == doc["verdict"]["headline"] and p["verdict"].startswith("A ")
        assert p["reasons"] == doc["verdict"]["reasons"] and p["reasons"]
        assert p["what_would"] == doc["verdict"]["what_would"]
    assert panels[advised["ids"]["dcgan"]]["constraints"].startswith("deadline 12 h (--deadline 12h); budget none; ")
    resnet = panels[advised["ids"]["resnet50"]]
    assert resnet["constraints"] == ("deadline 24 h (default: 24 h); budget none; electricity $0.15/kWh (assumed); "
                                     "carbon 475 g CO2e/kWh (assumed); purchases amortized over 3 years at 8 h/day")
    assert resnet["verdict"].startswith("A GPU is needed")


def test_time_cost_chart_has_a_point_per_candidate_with_a_time_and_a_cost(advised: dict[str, Any]) -> None:
    comp: Comparison = advised["comp"]
    assert {c.id for c in comp.charts} == CLASSIC | {"time_cost"}
    chart = _chart(comp)
    assert (chart.x_unit, chart.y_unit, chart.log_x, chart.log_y) == ("usd", "s", True, True)
    assert chart.title == "Time to finish vs cost (advise)"
    for name, doc in advised["docs"].items():
        want = {}
        for c in _chooseable(doc):
            cost, t = _value(c, COST[c["origin"]]), _value(c, "time_s")
            if cost and t:
                src = c["figures"]["samples_per_s"]["source"]
                want[f"{c['name']} ({c['precision']})", c["origin"]] = (cost, t, src)
        mine = [p for p in chart.points if p.group.startswith(f"{name} train: ")]
        assert len(mine) == len(want) > 20  # every bought GPU with a price, every instance, this CPU
        got = {(p.label, p.group.removeprefix(f"{name} train: ")): (p.x, p.y, p.source) for p in mine}
        assert set(got) == set(want)
        for key, (x, y, src) in got.items():
            assert x == pytest.approx(want[key][0], rel=1e-12) and y == pytest.approx(want[key][1], rel=1e-12)
            assert src == want[key][2]
        assert {p.group for p in mine} == {f"{name} train: {o}" for o in ("own", "buy", "rent")}
        # the verdict's picks come first, so that they are the points a crowded chart labels
        v = doc["verdict"]
        picks = [c for c in _chooseable(doc) if c["id"] in {v["fastest"], v["cheapest"], v["best_value"]}]
        assert {p.label for p in mine[:len(picks)]} == {f"{c['name']} ({c['precision']})" for c in picks}
    assert len(chart.points) == sum(len([p for p in chart.points if p.group.startswith(f"{n} train: ")])
                                    for n in advised["docs"])


def test_advice_table_ranks_the_fastest_candidates_of_each_run(advised: dict[str, Any]) -> None:
    rows = _table(advised["comp"], "advice")
    for name, doc in advised["docs"].items():
        mine = [r for r in rows if r["workload"].value == name]
        ranked = sorted(_chooseable(doc), key=lambda c: _value(c, "time_s") or math.inf)
        v = doc["verdict"]
        named = {v["fastest"], v["cheapest"], v["best_value"]} - {c["id"] for c in ranked[:ADVICE_ROWS]} - {None}
        assert len(mine) == ADVICE_ROWS + len(named)
        times = [r["time"].value for r in mine]
        assert times == sorted(times) and times[0] == pytest.approx(_value(ranked[0], "time_s"))
        top = ranked[0]
        first = mine[0]
        assert first["candidate"].value == top["name"] and first["origin"].value == top["origin"]
        assert first["precision"].value == top["precision"] and first["batch"].value == top["batch_size"]
        assert first["time"].source == "computed" and first["time"].unit == "s"
        assert first["sps"].value == pytest.approx(_value(top, "samples_per_s"))
        assert first["sps"].source == top["figures"]["samples_per_s"]["source"]
        assert first["sps"].low == pytest.approx(_value(top, "samples_per_s_low"))
        assert first["cost"].value == pytest.approx(_value(top, COST[top["origin"]]))
        assert first["energy"].value == pytest.approx(_value(top, "energy_kwh")) and first["energy"].unit == "kWh"
        assert first["energy"].source == top["figures"]["energy_kwh"]["source"]
        assert first["fits"].value == "yes" and first["meets"].value == "yes"
        flagged = {r["candidate"].value: r["candidate"].flag for r in mine if r["candidate"].flag}
        by_id = {c["id"]: c["name"] for c in doc["candidates"]}
        assert "fastest" in (flagged[by_id[v["fastest"]]] or "")
        assert "cheapest" in (flagged[by_id[v["cheapest"]]] or "")
    cpu = next(r for r in rows if r["workload"].value == "dcgan" and r["origin"].value == "own")
    if advised["docs"]["dcgan"]["verdict"]["answer"] == "cpu-enough":
        assert cpu["candidate"].flag == "fastest, cheapest, best value"


def test_report_renders_the_verdicts_escaped(advised: dict[str, Any]) -> None:
    comp: Comparison = advised["comp"]
    page = render_html(comp)
    for doc in advised["docs"].values():
        headline = doc["verdict"]["headline"]
        assert "'" in headline  # "this machine's CPU": the apostrophe is escaped in the page
        assert html.escape(headline) in page and headline not in page
    panels = page[page.index('<section id="panels">'):]
    assert panels.count('<div class="panel" data-panel="">') == 2
    assert "<dt>Constraints</dt>" in panels and "<dt>Run</dt>" in panels
    assert "What would change the verdict" not in panels  # both verdicts are met: nothing to say
    assert 'data-chart="time_cost"' in page and 'data-table="advice"' in page
    md = render_markdown(comp)
    assert "## Advice: the ranked candidates" in md and "## Verdicts" in md
    assert "- Constraints: deadline 24 h (default: 24 h); budget none;" in md


def test_hostile_text_in_an_advise_run_is_escaped(tmp_path: Path) -> None:
    doc = real_doc("dcgan-1s")
    evil = "<script>alert(1)</script>"
    doc["verdict"]["headline"] = f"{evil} Nothing | meets"
    doc["verdict"]["what_would"][0] = f"<img src=x onerror=alert(2)> {doc['verdict']['what_would'][0]}"
    fastest = next(c for c in doc["candidates"] if c["id"] == doc["verdict"]["fastest"])
    fastest["name"] = "<b>GPU</b>"
    db = tmp_path / "r.sqlite"
    run_id, = _store(db, doc)
    comp = api.compare(db=db)
    [panel] = comp.panels
    assert panel["run"] == run_id and panel["verdict"].startswith(evil)
    assert panel["what_would"] == doc["verdict"]["what_would"] and len(panel["what_would"]) >= 2
    page = render_html(comp)
    for raw in (evil, "<img src=x", "<b>GPU</b>"):
        assert raw not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Nothing | meets" in page
    assert "&lt;b&gt;GPU&lt;/b&gt;" in page
    assert "<dt>What would change the verdict</dt>" in page
    md = render_markdown(comp)
    assert evil not in md and "<img" not in md and "&lt;script&gt;" in md and "Nothing \\| meets" in md
    assert "- What would change the verdict:\n  - &lt;img src=x onerror=alert(2)&gt;" in md


def test_workload_filter_and_a_run_without_advice(advised: dict[str, Any], tmp_path: Path) -> None:
    only = api.compare(db=advised["db"], workloads=["dcgan"])
    assert [p["run"] for p in only.panels] == [advised["ids"]["dcgan"]]
    # one workload: the groups are the origins alone, and the labels dcgan's candidates
    dcgan = {f"{c['name']} ({c['precision']})" for c in _chooseable(advised["docs"]["dcgan"])}
    assert {p.group for p in _chart(only).points} == {"own", "buy", "rent"}
    assert {p.label for p in _chart(only).points} <= dcgan
    assert {r["workload"].value for r in _table(only, "advice")} == {"dcgan"}
    # a comparison with no advise run has neither the advice table nor the time vs cost chart
    none = api.compare(db=advised["db"], workloads=["bert_base"])
    assert none.panels == () and len(none.runs) == 2
    assert "advice" not in {t.id for t in none.tables} and {c.id for c in none.charts} == CLASSIC
