"""``dlgpu compare`` and ``dlgpu report`` over real stored runs: a bench run measured here, a second run
from another machine imported from its JSON file, and predictions for GPUs and for this CPU."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from conftest import TINY_BUDGET
from dlgpu import api
from dlgpu.api import bench
from dlgpu.cli.main import main
from dlgpu.report.model import Comparison

GPUS = ("a100-sxm4-80gb", "rtx-3090", "t4")
OVR = {"image_size": "16"}


def _table(comp: Comparison, table_id: str) -> list[dict[str, Any]]:
    t = next(t for t in comp.tables if t.id == table_id)
    return [{c.key: cell.value for c, cell in zip(t.columns, row, strict=True)} for row in t.rows]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Runs in a fresh database: one bench here; one 'from elsewhere' (a real run here, its machine renamed
    the way another host's export would read, written to a file and imported); predictions for three GPUs at
    two batch sizes and for this CPU at the bench's batch."""
    tmp = tmp_path_factory.mktemp("compare")
    db = tmp / "r.sqlite"
    # On this CPU only, whatever else the machine has: the tables below are about a CPU and catalog GPUs.
    here = bench(workloads=["test_resnet"], devices=["cpu"], precisions=["fp32", "bf16"], quick=True,
                 timing=TINY_BUDGET, overrides=OVR, telemetry=True, telemetry_period_s=0.02, db=db)
    other = bench(workloads=["test_resnet"], devices=["cpu"], precisions=["fp32"], quick=True, timing=TINY_BUDGET,
                  overrides=OVR, telemetry=False, db=None).to_dict()
    other["machine"]["hostname"] = "lab-server"
    other["machine"]["devices"][0]["threads_used"] = 1
    f = tmp / "elsewhere.json"
    f.write_text(json.dumps(other))
    imported = api.import_files([f], db)["added"]
    batch = here.results[0].batch_size
    preds = []
    for gpu in GPUS:
        for b in (8, 32):
            doc = api.save_prediction(api.predict("test_resnet", gpu, "fp16", "train", b, OVR), db).to_dict()
            preds.append(doc)
    local = api.save_prediction(api.predict("test_resnet", "local", "fp32", "train", batch, OVR), db).to_dict()
    return {"db": db, "here": here, "other": other, "imported": imported, "preds": preds, "local": local,
            "tmp": tmp}


def test_compare_puts_measured_imported_and_predicted_together(store: dict[str, Any]) -> None:
    comp = api.compare(db=store["db"])
    assert len(comp.runs) == 1 + 1 + 2 * len(GPUS) + 1
    rows = _table(comp, "train_time")
    devices = {r["device"] for r in rows}
    assert any("@ lab-server" in d for d in devices)  # the imported machine is its own device
    # Per device its fastest precision, one row each: the three GPUs (predicted), this machine's CPU (measured;
    # its local prediction is a second, predicted row) and the imported machine's CPU (measured).
    gpu_rows = [r for r in rows if r["device"] in ("A100 80GB SXM4", "GeForce RTX 3090", "Tesla T4")]
    assert sorted(r["device"] for r in gpu_rows) == ["A100 80GB SXM4", "GeForce RTX 3090", "Tesla T4"]
    assert all(r["source"] == "predicted" and r["precision"] == "fp16" for r in gpu_rows)
    cpu_rows = [r for r in rows if r not in gpu_rows]
    assert sorted(r["source"] for r in cpu_rows) == ["measured", "measured", "predicted"]
    assert len(devices) == len(rows) - 1 == 5  # this CPU appears twice: measured and predicted
    here_fp32 = next(r for r in store["here"].results if r.task == "train" and r.precision == "fp32")
    other_fp32 = next(r for r in store["other"]["results"] if r["task"] == "train" and r["precision"] == "fp32")
    other_row = next(r for r in rows if "@ lab-server" in r["device"])
    assert other_row["precision"] == "fp32" and other_row["source"] == "measured"
    assert other_row["sps"] == pytest.approx(other_fp32["samples_per_s"])
    # The documented rule (report.compare._cpu_baseline): speedup = this row's samples/s / the fastest measured
    # CPU fp32 samples/s of the same workload and task, here or on the imported machine, among those measured
    # without contention (all of them where each was contended).
    measured = [(here_fp32.samples_per_s, bool(here_fp32.contended)),
                (other_fp32["samples_per_s"], bool(other_fp32.get("contended")))]
    base = max(sps for sps, contended in measured if not contended or all(c for _, c in measured))
    for r in rows:
        assert r["speedup"] == pytest.approx(r["sps"] / base, rel=1e-12), r["device"]
    a100 = next(r for r in rows if r["device"].startswith("A100"))
    pred = max((p for p in store["preds"] if p["hardware"] == "a100-sxm4-80gb"), key=lambda p: p["samples_per_s"])
    assert a100["sps"] == pytest.approx(pred["samples_per_s"])
    assert a100["speedup"] == pytest.approx(pred["samples_per_s"] / base)
    assert a100["time"] == pytest.approx(pred["task_time_s"])


def test_measured_vs_predicted_error(store: dict[str, Any]) -> None:
    comp = api.compare(db=store["db"])
    (row,) = _table(comp, "measured_vs_predicted")
    measured = next(r for r in store["here"].results if r.task == "train" and r.precision == "fp32")
    assert row["measured"] == pytest.approx(measured.samples_per_s)
    assert row["predicted"] == pytest.approx(store["local"]["samples_per_s"])
    assert row["error"] == pytest.approx(100 * (row["predicted"] - row["measured"]) / row["measured"])


def test_precision_power_and_value_tables(store: dict[str, Any]) -> None:
    comp = api.compare(db=store["db"])
    mp = [r for r in _table(comp, "mixed_precision") if r["source"] == "measured" and r["bf16"] is not None]
    assert mp
    for r in mp:
        bf16 = next(x for x in store["here"].results if x.task == r["task"] and x.precision == "bf16")
        fp32 = next(x for x in store["here"].results if x.task == r["task"] and x.precision == "fp32")
        assert r["bf16"] == pytest.approx(bf16.samples_per_s / fp32.samples_per_s)
    power = _table(comp, "power")
    assert len(power) == sum(r.status == "ok" for r in store["here"].results) + 2  # + the imported run's
    assert any(r["power"] for r in power)  # estimated here (TDP x utilization), labelled so
    t = next(t for t in comp.tables if t.id == "power")
    assert {c.source for row in t.rows for c in row if c.unit == "W" and c.value} == {"estimated"}
    from dlgpu.catalog import load_catalog

    cat = load_catalog()
    value = _table(comp, "value")
    priced = rented = 0
    for gpu_id in GPUS:
        g = cat.gpu(gpu_id)
        (r,) = [r for r in value if r["device"] == g.name]  # one row per device: its fastest precision
        pred = max((p for p in store["preds"] if p["hardware"] == gpu_id), key=lambda p: p["samples_per_s"])
        assert r["sps"] == pytest.approx(pred["samples_per_s"])
        assert r["price"] == g.launch_price_usd and r["watts"] == g.tdp_w  # predicted: its catalog TDP
        assert r["per_w"] == pytest.approx(r["sps"] / g.tdp_w)
        # per $ of price and per rented $ exist exactly where the catalog has a price, and follow the formula
        price = g.launch_price_usd
        assert r["per_usd"] == (None if not price else pytest.approx(r["sps"] / price))
        offers = cat.instances_for(gpu_id)
        cheapest = min((i.price_usd_per_gpu_hour for i in offers), default=None)
        assert r["rent"] == cheapest
        assert r["per_rented"] == (None if cheapest is None else pytest.approx(3600 * r["sps"] / cheapest))
        priced += bool(price)
        rented += cheapest is not None
    assert priced >= 1 and rented >= 1  # both formulas were exercised (the RTX 3090 has a price, the T4 offers)


def test_charts_carry_the_data(store: dict[str, Any]) -> None:
    comp = api.compare(db=store["db"])
    charts = {c.id: c for c in comp.charts}
    assert set(charts) == {"speedup", "train_time", "roofline", "batch_throughput", "value", "value_rent"}
    assert len(charts["speedup"].bars) >= 4 and all(b.value > 0 for b in charts["speedup"].bars)  # type: ignore[union-attr]
    roof = charts["roofline"]
    assert {r.label for r in roof.roofs} >= {"A100 80GB SXM4"}  # type: ignore[union-attr]
    points = roof.points  # type: ignore[union-attr]
    assert any(p.kind == "conv" and p.source == "predicted" for p in points)
    assert all(p.intensity_flops_per_byte > 0 and p.flops_per_s > 0 for p in points)
    series = charts["batch_throughput"].series  # type: ignore[union-attr]
    assert len(series) == len(GPUS) and all([b for b, _ in s.points] == [8.0, 32.0] for s in series)


def test_cli_compare_json_markdown_and_report(store: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    db = str(store["db"])
    assert main(["compare", "--db", db, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "dlgpu.compare/1" and len(doc["tables"]) == 7
    assert main(["compare", "--db", db, "--markdown"]) == 0
    md = capsys.readouterr().out
    assert "| workload |" in md and "Training time, CPU vs GPU" in md
    assert main(["compare", "--db", db]) == 0
    assert "Measured and predicted, side by side" in capsys.readouterr().out
    html = store["tmp"] / "report.html"
    assert main(["report", "--db", db, "--html", str(html), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["files"]["html"] == str(html)
    text = html.read_text()
    assert text.count("<table") >= 7 and "<svg" in text
    assert "http://" not in text.replace("http://www.w3.org/2000/svg", "") and "https://" not in text


def test_compare_only_named_runs_and_workloads(store: dict[str, Any]) -> None:
    first = store["imported"][0]
    comp = api.compare([first[:8]], db=store["db"])
    assert [r.id for r in comp.runs] == [first]
    assert all("lab-server" in r["device"] for r in _table(comp, "train_time"))
    with pytest.raises(api.BadInput, match="unknown workload"):
        api.compare(db=store["db"], workloads=["nosuch"])


def test_compare_an_empty_store_is_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["compare", "--db", str(tmp_path / "empty.sqlite")])
    assert code == 2 and "has no runs" in capsys.readouterr().err
    code = main(["report", "--db", str(tmp_path / "empty.sqlite")])
    assert code == 2 and "--html FILE" in capsys.readouterr().err


def test_hostile_names_are_escaped_in_every_rendering(store: dict[str, Any], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    doc = copy.deepcopy(store["here"].to_dict())
    doc.pop("run_id")
    evil = '<img src=x onerror=alert(1)>[bold]|'
    doc["machine"]["hostname"] = evil
    f = tmp_path / "evil.json"
    f.write_text(json.dumps(doc))
    db = tmp_path / "r.sqlite"
    api.import_files([f], db)
    html = tmp_path / "r.html"
    assert main(["report", "--db", str(db), "--html", str(html)]) == 0
    text = html.read_text()
    assert "<img src=x" not in text and "&lt;img src=x onerror=alert(1)&gt;" in text
    assert main(["compare", "--db", str(db)]) == 0
    assert "<img src=x onerror=alert(1)>[bold]|" in capsys.readouterr().out  # rich printed it as text


@pytest.mark.slow
def test_report_of_real_runs_renders_offline_in_chromium(store: dict[str, Any]) -> None:
    """The issue's 'done': this machine's bench run, one imported from a file, and predictions for three GPUs,
    in one HTML report that headless Chromium renders with the network off."""
    from test_report_browser import ARGS, CHROMIUM, _sync_playwright

    sync_playwright = _sync_playwright()
    html = store["tmp"] / "real.html"
    assert main(["report", "--db", str(store["db"]), "--html", str(html)]) == 0
    comp = api.compare(db=store["db"])
    requests: list[str] = []
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            context = browser.new_context(offline=True, viewport={"width": 1280, "height": 900})
            context.route("**/*", lambda r: (requests.append(r.request.url), r.continue_() if
                                             r.request.url.startswith("file://") else r.abort()))
            page = context.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(html.as_uri(), wait_until="load")
            for t in comp.tables:
                table = page.locator(f'table[data-table="{t.id}"]')
                assert table.count() == 1 and table.locator("tbody tr").count() == len(t.rows), t.id
            assert page.locator("table[data-runs] tbody tr").count() == len(comp.runs)
            body = page.locator("body").inner_text()
            assert "lab-server" in body and "A100 80GB SXM4" in body and "Tesla T4" in body
            drawn = 0
            for chart in comp.charts:
                d = chart.to_dict()
                if not (d.get("bars") or d.get("points") or d.get("series")):
                    # test_resnet has no real task, so no time to train: the chart says so instead
                    assert page.locator(f'[data-chart-empty="{chart.id}"]').inner_text().startswith("no data")
                    continue
                drawn += 1
                svg = page.locator(f'svg[data-chart="{chart.id}"]')
                assert svg.count() == 1 and svg.is_visible(), chart.id
                box = svg.bounding_box()
                assert box is not None and box["width"] > 300 and box["height"] > 150
                assert svg.locator("[data-mark]").count() > 0, chart.id
            assert drawn >= 4
            page.screenshot(path=str(store["tmp"] / "real.png"), full_page=True)
        finally:
            browser.close()
    assert [u for u in requests if not u.startswith("file://")] == []
    assert errors == []
    assert (store["tmp"] / "real.png").stat().st_size > 50_000
