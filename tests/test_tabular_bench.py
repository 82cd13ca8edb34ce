"""Trees and classical ML measured here (``workloads.tabular``, ``measure.tabular``): real tiny fits on the CPU with
XGBoost, LightGBM and scikit-learn, their results stored, read back and reported, and bad input refused in one
line. Every fit is real (a few thousand rows: the file runs in well under a minute)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from dlgpu import api
from dlgpu.cli.main import main
from dlgpu.measure.timer import Budget
from dlgpu.results import BenchReport, BenchResult, report_from_dict
from dlgpu.workloads import get_workload, list_workloads
from dlgpu.workloads.models.tabular import build_model, make_data, unavailable

BUDGET = Budget(warmup_steps=0, min_steps=2, max_steps=4, budget_s=0.2)
TINY = ("test_xgboost", "test_lightgbm", "test_random_forest", "test_logistic_regression", "test_knn", "test_svm",
        "test_kmeans")


def _bench(tmp_path, workloads, **kw) -> BenchReport:
    kw.setdefault("tasks", ["train", "infer"])
    return api.bench(workloads=workloads, devices=["cpu"], quick=True, timing=BUDGET, telemetry=False,
                     db=tmp_path / "runs.db", **kw)


def _one(report: BenchReport, workload: str, task: str) -> BenchResult:
    (r,) = [r for r in report.results if r.workload == workload and r.task == task]
    return r


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[BenchReport, object]:
    tmp = tmp_path_factory.mktemp("tabular")
    return _bench(tmp, list(TINY)), tmp / "runs.db"


def test_registered_with_facts_and_listing_imports_no_library() -> None:
    names = {s.name for s in list_workloads() if s.family == "tabular"}
    assert {"xgboost", "lightgbm", "random_forest", "logistic_regression", "knn", "svm", "kmeans", *TINY} <= names
    xgb = get_workload("xgboost")
    assert xgb.defaults() == {"rows": 1_000_000, "features": 8, "trees": 100, "depth": 10}
    assert "GBM-perf" in xgb.facts.source and xgb.sample_unit == "row" and xgb.tasks == ("train", "infer")
    assert "archive.ics.uci.edu/dataset/280/higgs" in get_workload("random_forest").facts.source
    code = ("import sys; from dlgpu.workloads import list_workloads; list_workloads(); "
            "from dlgpu.cli.main import main; main(['workloads', '--all']); "
            "bad = [m for m in ('xgboost', 'lightgbm', 'sklearn', 'torch') if m in sys.modules]; "
            "sys.exit(f'imported {bad}' if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-500:]
    assert "test_xgboost" in done.stdout


def test_synthetic_data_is_seeded_float32_and_learnable() -> None:
    x, y = make_data(3000, 8)
    x2, y2 = make_data(3000, 8)
    assert x.dtype.name == "float32" and x.shape == (3000, 8) and x.flags["C_CONTIGUOUS"] and y.dtype.name == "int32"
    assert (x == x2).all() and (y == y2).all()  # built the same way every time
    assert 0.3 < y.mean() < 0.7 and x.std() > 1  # both classes; clusters spread the data
    held_out, _ = make_data(3000, 8, seed=1)
    assert not (held_out == x).all()


@pytest.mark.parametrize(("estimator", "params"), [
    ("xgboost", {"rows": 2000, "features": 8, "trees": 7, "depth": 3}),
    ("lightgbm", {"rows": 2000, "features": 8, "trees": 7, "depth": 3}),
    ("random_forest", {"rows": 2000, "features": 8, "trees": 7, "depth": 3}),
])
def test_trees_and_depth_are_honoured(estimator: str, params: dict) -> None:
    model = build_model(estimator, params, "cpu", None, threads=2)
    x, y = make_data(params["rows"], params["features"])
    model.fit(x, y)
    facts = model.facts()
    assert facts["trees"] == 7
    assert facts["max_depth"] == 3  # deep enough data: every tree reaches its maximum depth and no further
    assert model.holdout(params["features"])["holdout_accuracy"] > 0.7


def test_tiny_bench_measures_every_estimator_on_the_cpu(tiny_run) -> None:
    report, _db = tiny_run
    cpu = report.machine.devices[0]
    assert report.config.precisions == ("fp32",)
    for name in TINY:
        spec = get_workload(name)
        for task in ("train", "infer"):
            r = _one(report, name, task)
            assert r.status == "ok", (name, task, r.reason)
            assert r.precision == "fp32" and r.device == "cpu"
            assert r.runtime == {"test_xgboost": "xgboost", "test_lightgbm": "lightgbm"}.get(name, "scikit-learn")
            assert r.step_time is not None and r.step_time.n >= 2 and min(r.step_time.samples_s) > 0
            rows = 500 if (name == "test_knn" and task == "infer") else spec.defaults()["rows"]
            assert r.batch_size == rows and r.samples_per_s == pytest.approx(rows / r.step_time.median)
            s = r.settings
            # every usable core; fewer where measured again after others took some (contention["attempts"])
            assert s["threads_available"] == cpu.threads_used and 1 <= s["threads"] <= cpu.threads_used
            assert s["threads"] == cpu.threads_used or len(r.contention["attempts"]) == 2
            assert s["params"] == spec.defaults() and s["dtype"] == "float32"
            assert s["library_version"] and s["versions"]["numpy"]
            assert r.peak_mem_kind == "process-peak-rss" and r.peak_mem_bytes and r.peak_mem_bytes > s["data"]["bytes"]
            assert r.contention is not None and r.stop_reason in ("ci", "budget", "max_steps")
            assert r.warmup_steps == 1 and r.mfu is None and r.mfu_basis
            if name != "test_kmeans":  # the model learnt the data: well above the majority class on held-out rows
                assert s["holdout_accuracy"] > s["majority_class_share"] + 0.1, (name, s["holdout_accuracy"])
    xgb = _one(report, "test_xgboost", "train").settings
    assert xgb["model"]["trees"] == 10 and xgb["model"]["max_depth"] <= 4
    assert xgb["estimator_params"]["tree_method"] == "hist" and xgb["estimator_params"]["n_jobs"] == xgb["threads"]
    assert xgb["thread_setting"] == f"XGBClassifier(n_jobs={xgb['threads']}): XGBoost's OpenMP threads"
    assert _one(report, "test_lightgbm", "train").settings["estimator_params"]["num_leaves"] == 16
    km = _one(report, "test_kmeans", "train").settings["model"]
    assert km["clusters"] == 8 and km["iterations"] >= 1 and km["inertia"] > 0
    assert _one(report, "test_xgboost", "infer").settings["fit_s"] is None  # the train plan's model was reused


def test_stored_validated_and_reported(tiny_run, tmp_path) -> None:
    report, db = tiny_run
    stored = api.show_run(report.run_id, db)
    back = report_from_dict(stored.document)
    assert {(r.workload, r.task, r.status, r.runtime) for r in back.results} == {
        (r.workload, r.task, r.status, r.runtime) for r in report.results}
    from dlgpu.store.schema import validate_document

    validate_document(json.loads(json.dumps(stored.document)), "stored run")  # what `dlgpu import` accepts
    from dlgpu.report.html import render_html
    from dlgpu.report.markdown import render_markdown

    comp = api.compare(db=db)
    html = render_html(comp)
    assert 'data-section="tabular"' in html and 'data-table="tabular"' in html
    assert 'data-chart="tabular_train_time"' in html and 'data-chart="tabular_infer_time"' in html
    assert "Tabular: trees and classical ML" in render_markdown(comp)
    table = next(t for t in comp.tables if t.id == "tabular")
    assert len(table.rows) == 2 * len(TINY)


def test_time_against_rows_lines_and_crossovers() -> None:
    from dlgpu.report.compare_tabular import TabularCurve, crossing
    from dlgpu.report.model import Crossover, LineChart, Series
    from dlgpu.report.svg import line_chart

    hit = crossing({1e4: 0.1, 1e6: 10.0}, {1e4: 1.0, 1e6: 1.0})  # b (a GPU) slower at 10K rows, faster at 1M
    assert hit is not None and hit[1] and hit[0] == pytest.approx(1e5)
    assert crossing({1e4: 0.1, 1e6: 1.0}, {1e4: 1.0, 1e6: 2.0}) is None
    curve = TabularCurve.from_dict({"workload": "xgboost", "task": "train", "device": "H100",
                                    "points": [[1e4, 0.5], [1e7, 3.0]], "crossover_rows": 2e5})
    chart = LineChart("t", "fit time", "rows", "time", "rows", "s", True, True,
                      (Series("xgboost on cpu", "measured", ((1e4, 0.1), (1e6, 8.0))),
                       Series("xgboost on H100", "predicted", curve.points)),
                      (Crossover(2e5, "GPU faster above ~200K rows", "predicted"),), section="tabular")
    svg = line_chart(chart)
    assert svg.count('data-mark="crossover"') == 1 and svg.count('data-mark="line"') == 2
    assert chart.to_dict()["crossovers"][0]["x"] == 2e5


def test_set_shapes_the_run_and_quick_cuts_default_rows(tmp_path) -> None:
    report = _bench(tmp_path, ["test_xgboost"], tasks=["train"],
                    overrides={"rows": "3000", "trees": "5", "depth": "2", "features": "4"})
    r = _one(report, "test_xgboost", "train")
    assert r.status == "ok" and r.batch_size == 3000 and r.overrides == {"rows": "3000", "trees": "5", "depth": "2",
                                                                         "features": "4"}
    assert r.settings["model"]["trees"] == 5 and r.settings["model"]["max_depth"] == 2
    assert r.settings["data"]["features"] == 4
    from dlgpu.measure.tabular import plan_params

    spec = get_workload("xgboost")
    cut = plan_params([spec], {"xgboost": spec.defaults()}, {"xgboost": {}}, True, None)
    assert cut["xgboost"]["rows"] == 100_000  # GBM-perf's smallest training set
    kept = plan_params([spec], {"xgboost": {**spec.defaults(), "rows": 5000}}, {"xgboost": {"rows": "5000"}}, True,
                       None)
    assert kept["xgboost"]["rows"] == 5000


def test_cli_json_document(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", "-w", "test_xgboost", "--quick", "--no-save", "--json", "--no-telemetry", "--budget", "0.2"])
    out, err = capsys.readouterr()
    assert code == 0
    doc = json.loads(out)  # one JSON document, nothing else on stdout
    assert doc["schema"] == "dlgpu.bench/1"
    ok = [r for r in doc["results"] if r["device"] == "cpu"]
    assert {r["task"] for r in ok} == {"train", "infer"} and all(r["status"] == "ok" for r in ok)
    assert all(r["runtime"] == "xgboost" and r["settings"]["params"]["rows"] == 2000 for r in ok)
    assert "fit 2K rows x 8 features" in err and "rows/s" in err  # the headline on stderr


def test_gpu_plans_say_why_they_cannot_run_here() -> None:
    """No GPU here: a CUDA device is described (the seam the device probes use), and the scikit-learn estimators,
    which run there through cuML only, are skipped with the reason where cuML is not installed."""
    from dlgpu.measure.plan import Plan
    from dlgpu.measure.tabular import measure_tabular
    from dlgpu.results import DeviceInfo

    assert "no mps backend" in (unavailable("xgboost", "mps") or "")
    why = unavailable("random_forest", "cuda")
    if why is None:
        pytest.skip("cuML is installed here")
    gpu = DeviceInfo(id="cuda:0", kind="cuda", name="NVIDIA H100 80GB HBM3", memory_bytes=80 * 2**30, backend="cuda")
    spec = get_workload("test_random_forest")
    r = measure_tabular(Plan(spec, spec.defaults(), {}, "train", gpu, ("fp32",), 2000), BUDGET, threads=2)
    assert r.status == "skipped" and r.runtime == "cuml" and "cuml is not installed" in (r.reason or "")


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["bench", "-w", "test_xgboost", "--set", "rows=0"], "--set rows=0: must be at least 100"),
        (["bench", "-w", "xgboost", "--set", "depth=0"], "--set depth=0: must be at least 1"),
        (["bench", "-w", "xgboost", "--set", "depth=65"], "--set depth=65: must be at most 64"),
        (["bench", "-w", "svm", "--set", "rows=500000"], "must be at most 100000 for svm"),
        (["bench", "-w", "random_forrest"], "unknown workload 'random_forrest'"),
        (["bench", "-w", "logistic_regression", "--set", "trees=5"], "no selected workload has a parameter 'trees'"),
        (["bench", "-w", "test_knn", "--set", "neighbors=5000"], "more neighbours than rows"),
        (["bench", "-w", "test_xgboost", "-b", "64"], "tabular workload, shaped by --set rows=N"),
        (["bench", "-w", "test_xgboost", "-p", "bf16"], "--precision bf16: not one of the precisions of the selected "
                                                        "workloads (fp32, all): tabular workloads run at fp32"),
        (["bench", "-w", "test_xgboost", "-t", "decode"], "does not support --task decode"),
    ],
)
def test_bad_input_one_line_exit_2(argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*argv, "--no-save"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1, err
    assert needle in err, err
