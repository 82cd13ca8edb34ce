"""The faults of issue 12, each on real computation: a batch of 0 is refused by ``predict`` as by ``bench``;
``advise`` reads stored measurements at the asked precision and batch only, as the median over stored runs with
contended results left out; a GPU's memory counts less the runtime's reserve in ``predict``, ``advise`` and the
largest-batch search; and times and costs computed from a prediction are marked as such when printed."""

from __future__ import annotations

import datetime as dt
import json
import statistics
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from conftest import TINY_BUDGET
from dlgpu import api
from dlgpu.advise.inputs import JobSize, Limits
from dlgpu.cli.main import main
from dlgpu.errors import BadInput
from dlgpu.measure import plan
from dlgpu.report.terminal_advise import COLUMNS, print_advice
from dlgpu.results import USABLE_MEMORY_FRACTION, StepStats, memory_need, result_from_dict, usable_memory_bytes
from dlgpu.units import format_bytes

TINY = {"image_size": "16"}
SIZE = JobSize(dataset_size=2000, epochs=2)
GIB = 2**30


def _cand(doc: dict[str, Any], cid: str) -> dict[str, Any]:
    return next(c for c in doc["candidates"] if c["id"] == cid)


def _fig(c: dict[str, Any], name: str) -> dict[str, Any]:
    return dict(c["figures"][name])


# --- 1. a batch of 0 is not "the default" ---------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["0", "-3"])
def test_predict_refuses_a_batch_that_is_not_positive(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", "resnet50", "--hardware", "rtx-4090", "--batch-size", bad]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1, err
    assert f"--batch-size {bad}: must be a positive integer" in err
    with pytest.raises(BadInput) as exc:
        api.predict("resnet50", "rtx-4090", batch_size=int(bad))
    assert exc.value.param == "batch_size"
    # bench says the same of the same batch
    assert main(["bench", "-w", "test_resnet", "--device", "cpu", "--batch-size", bad, "--no-save"]) == 2
    assert f"--batch-size {bad}: must be a positive integer" in capsys.readouterr().err


def test_predict_keeps_a_positive_batch_and_defaults_only_when_none() -> None:
    assert api.predict("test_resnet", "t4", batch_size=2, overrides=TINY).batch_size == 2
    assert api.predict("test_resnet", "t4", overrides=TINY).batch_size == 4  # the workload's own batch


# --- 2. stored measurements: the asked settings, the median over runs, contended results left out ------------


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One real bench of the tiny ResNet on this CPU at fp32 (batch 4), as its document (on a busy machine it may
    say it was contended: the tests that need it not to be take ``_variant(real_run, 0)``)."""
    db = tmp_path_factory.mktemp("faults-src") / "r.sqlite"
    rep = api.bench(workloads=["test_resnet"], devices=["cpu"], precisions=["fp32"], tasks=["train"], quick=True,
                    timing=TINY_BUDGET, overrides=TINY, telemetry=False, db=db)
    doc = rep.to_dict()
    ok = [r for r in doc["results"] if r["status"] == "ok"]
    assert len(ok) == 1 and ok[0]["batch_size"] == 4 and ok[0]["precision"] == "fp32"
    return doc


def _variant(doc: dict[str, Any], minutes: int, times: float = 1.0, precision: str | None = None,
             batch: int | None = None, contended: bool = False) -> dict[str, Any]:
    """Another run of the real document, ``minutes`` later: its CPU result at ``times`` its throughput, at
    another precision or batch, or measured under contention; its derived figures recomputed by the data model."""
    r = result_from_dict(next(r for r in doc["results"] if r["status"] == "ok"))
    assert r.step_time is not None and r.batch_size is not None
    b = batch or r.batch_size
    steps = tuple(s * b / r.batch_size / times for s in r.step_time.samples_s)  # samples/s x times at batch b
    new = replace(r, precision=precision or r.precision, batch_size=b, requested_batch_size=b,
                  step_time=StepStats(steps), contended=contended or None,
                  contention={"cpu_share": 0.6, "basis": "another process took 60% of the CPU"} if contended else None)
    created = dt.datetime.fromisoformat(doc["created_at"]) + dt.timedelta(minutes=minutes)
    return {**doc, "run_id": uuid.uuid4().hex, "created_at": created.isoformat(), "results": [new.to_dict()]}


def _store(tmp_path: Path, name: str, docs: list[dict[str, Any]]) -> Path:
    """A results store holding ``docs``, imported through ``dlgpu import`` (validated like any file)."""
    db = tmp_path / f"{name}.sqlite"
    files = []
    for i, d in enumerate(docs):
        f = tmp_path / f"{name}-{i}.json"
        f.write_text(json.dumps(d))
        files.append(f)
    assert len(api.import_files(files, db)["added"]) == len(docs)
    return db


def _sps(doc: dict[str, Any]) -> float:
    return float(next(r for r in doc["results"] if r["status"] == "ok")["samples_per_s"])


def _advise(db: Path, **kw: Any) -> dict[str, Any]:
    return api.advise("test_resnet", size=SIZE, overrides=TINY, db=db, sources=["own"], **kw).to_dict()


def test_the_median_of_stored_runs_with_contended_results_left_out(real_run: dict[str, Any],
                                                                   tmp_path: Path) -> None:
    here = _variant(real_run, 0)  # the real run as it is, not contended (whatever this busy machine said of it)
    runs = [here, _variant(real_run, 1, 0.8), _variant(real_run, 2, 1.3),
            _variant(real_run, 3, 3.0, contended=True)]  # the newest, and by far the fastest: contended
    db = _store(tmp_path, "median", runs)
    doc = _advise(db)
    cpu = _cand(doc, "own:cpu")
    sps = _fig(cpu, "samples_per_s")
    clean = [_sps(d) for d in runs[:3]]
    assert sps["source"] == "measured"
    # the median of the three uncontended runs: not the newest run (1.3x), not the mean, not the contended one
    assert sps["value"] == pytest.approx(statistics.median(clean)) == pytest.approx(_sps(real_run))
    assert _sps(here) == pytest.approx(_sps(real_run))
    assert sps["value"] != pytest.approx(statistics.median([*clean, _sps(runs[3])]))
    assert _fig(cpu, "time_s")["value"] == pytest.approx(4000 / sps["value"])
    lo, hi = min(clean), max(clean)
    assert f"median of 3 stored runs on this machine ({lo:,.4g}-{hi:,.4g} samples/s" in sps["basis"]
    assert "1 result(s) measured under contention left out" in sps["basis"]
    for d in runs[:3]:
        assert d["run_id"][:8] in sps["basis"]
    assert runs[3]["run_id"][:8] not in sps["basis"]
    assert doc["local"]["measured"] and "median of 3 stored runs" in doc["local"]["basis"]
    assert doc["local"]["run_id"] == runs[2]["run_id"]  # the newest run the figure rests on
    assert "(measured)" in doc["verdict"]["headline"]


def test_contended_results_count_only_when_nothing_else_is_stored(real_run: dict[str, Any],
                                                                   tmp_path: Path) -> None:
    runs = [_variant(real_run, 1, 0.5, contended=True), _variant(real_run, 2, 0.7, contended=True)]
    doc = _advise(_store(tmp_path, "contended", runs))
    sps = _fig(_cand(doc, "own:cpu"), "samples_per_s")
    assert sps["source"] == "measured"
    assert sps["value"] == pytest.approx(statistics.median([_sps(d) for d in runs]))
    assert sps["basis"].startswith("measured under contention")
    assert "median of 2 stored runs" in sps["basis"]


def test_stored_results_count_only_at_the_asked_precision_and_batch(real_run: dict[str, Any],
                                                                    tmp_path: Path) -> None:
    bf16_b8 = _variant(real_run, 1, 2.0, precision="bf16", batch=8)
    db = _store(tmp_path, "settings", [bf16_b8])
    # nothing asked: the stored bf16 result at batch 8 is this machine's measurement
    cpu = _cand(_advise(db), "own:cpu")
    assert _fig(cpu, "samples_per_s")["source"] == "measured" and cpu["precision"] == "bf16"
    assert cpu["batch_size"] == 8 and _fig(cpu, "samples_per_s")["value"] == pytest.approx(_sps(bf16_b8))
    # -p fp32, or -b 4: not measured at those settings, so predicted, and the advice says why
    for asked in ({"precisions": ["fp32"]}, {"batch_size": 4}):
        doc = _advise(db, **asked)
        cpu = _cand(doc, "own:cpu")
        assert _fig(cpu, "samples_per_s")["source"] == "predicted", asked
        assert not doc["local"]["measured"] and "other settings" in doc["local"]["basis"]
        assert "bf16 at batch 8" in doc["local"]["basis"]
        note = next(n for n in doc["notes"] if "stored measurement" in n)
        assert "exists, but at other settings (bf16 at batch 8)" in note
        assert ("precision fp32" if "precisions" in asked else "batch 4") in note
        assert "(predicted)" in doc["verdict"]["headline"] or "predicted" in doc["verdict"]["headline"]
    assert _cand(_advise(db, batch_size=4), "own:cpu")["batch_size"] == 4
    # with the real fp32 run at batch 4 stored too, each setting finds its own
    db2 = _store(tmp_path, "both", [_variant(real_run, 0), bf16_b8])
    fp32 = _cand(_advise(db2, precisions=["fp32"]), "own:cpu")
    assert fp32["precision"] == "fp32" and fp32["batch_size"] == 4
    assert _fig(fp32, "samples_per_s")["value"] == pytest.approx(_sps(real_run))
    assert _fig(fp32, "samples_per_s")["source"] == "measured"
    b4 = _cand(_advise(db2, batch_size=4), "own:cpu")
    assert (b4["precision"], b4["batch_size"]) == ("fp32", 4)
    fastest = _cand(_advise(db2), "own:cpu")  # nothing asked: the faster of the two
    assert (fastest["precision"], fastest["batch_size"]) == ("bf16", 8)
    assert _fig(fastest, "fp32_samples_per_s")["value"] is None  # no fp32 at batch 8 is stored
    none = _advise(db2, precisions=["fp32"], batch_size=8)
    assert _fig(_cand(none, "own:cpu"), "samples_per_s")["source"] == "predicted"
    assert "bf16 at batch 8, fp32 at batch 4" in none["local"]["basis"]


# --- 3. a GPU's memory less the runtime's reserve -------------------------------------------------------------


def test_the_reserve_is_the_one_bench_plans_with() -> None:
    assert plan.USABLE_MEMORY_FRACTION is USABLE_MEMORY_FRACTION
    assert usable_memory_bytes(80 * GIB) == int(80 * GIB * USABLE_MEMORY_FRACTION) < 80 * GIB


@pytest.fixture(scope="module")
def tight_gpu(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A user's GPU whose memory is the tiny ResNet's traced need at batch 64 / 0.95: the need lies between
    90% and 100% of it."""
    need = memory_need(api.analyze("test_resnet", "train", "fp32", 64, TINY, target="gpu"))
    memory_gb = need / 0.95 / GIB
    f = tmp_path_factory.mktemp("faults-cat") / "gpus.csv"
    f.write_text("id,name,vendor,memory_gb,memory_bandwidth_gbs,fp32_tflops,source_url\n"
                 f"tight-gpu,Tight GPU,Acme,{memory_gb:.12f},1000,20,https://example.org/tight\n")
    return {"need": need, "file": f}


def test_a_need_between_90_and_100_percent_does_not_fit(tight_gpu: dict[str, Any], tmp_path: Path) -> None:
    pred = api.predict("test_resnet", "tight-gpu", "fp32", batch_size=64, overrides=TINY,
                       catalog_files=[tight_gpu["file"]])
    assert pred.memory_bytes is not None and pred.peak_mem_bytes == tight_gpu["need"]
    assert 0.9 < pred.peak_mem_bytes / pred.memory_bytes < 1.0
    assert pred.usable_memory_bytes == usable_memory_bytes(pred.memory_bytes)
    assert pred.fits is False and pred.to_dict()["fits"] is False
    # advise runs it at a smaller batch, judged against the same usable memory, and says so
    doc = api.advise("test_resnet", size=SIZE, overrides=TINY, db=tmp_path / "r.sqlite", sources=["buy"],
                     hardware=["tight-gpu"], precisions=["fp32"], batch_size=64,
                     catalog_files=[tight_gpu["file"]]).to_dict()
    c = _cand(doc, "buy:tight-gpu")
    usable = usable_memory_bytes(pred.memory_bytes)
    b, largest = c["batch_size"], _fig(c, "largest_batch")["value"]
    assert b < 64 and b & (b - 1) == 0 and b <= largest < min(2 * b, 64)  # the largest power of two that fits
    assert c["fits"] is True and _fig(c, "peak_mem_bytes")["value"] <= usable
    assert _fig(c, "usable_memory_bytes")["value"] == usable
    assert _fig(c, "memory_bytes")["value"] == pred.memory_bytes
    assert any(f"batch {b}: 64 does not fit in {usable / GIB:.1f} GiB usable" in n for n in c["notes"])
    reason = next(r for r in doc["verdict"]["reasons"] if r.startswith("Memory:"))
    assert (f"of {format_bytes(usable)} usable ({format_bytes(pred.memory_bytes - usable)} reserved for the "
            "runtime) on Tight GPU: fits") in reason
    # the largest-batch search counts the same usable memory
    got = api.analysis("test_resnet", "train", "fp32", 4, TINY, memory_bytes=pred.memory_bytes)
    assert got.largest_batch is not None
    assert got.largest_batch["usable_memory_bytes"] == usable
    b = got.largest_batch["batch_size"]
    assert b < 64
    assert memory_need(api.analyze("test_resnet", "train", "fp32", b, TINY, target="gpu")) <= usable
    assert memory_need(api.analyze("test_resnet", "train", "fp32", b + 1, TINY, target="gpu")) > usable


# --- 4. figures computed from a prediction carry its mark -----------------------------------------------------


def _rows(text: str) -> dict[str, list[str]]:
    """The candidates table's rows by candidate name (first cell after the rank)."""
    out = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.split("│")]
        if len(cells) == len(COLUMNS) + 2 and cells[1].isdigit():
            out[cells[2]] = cells[1:-1]
    return out


def _render(advice: Any) -> str:
    console = Console(record=True, width=400, color_system=None)
    print_advice(console, advice)
    return console.export_text()


def test_times_and_costs_from_a_prediction_carry_its_mark(tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite"
    hw = ["local", "a100-sxm4-80gb"]
    first = api.advise("test_resnet", size=SIZE, overrides=TINY, db=db, hardware=hw)
    cpu_t = next(c for c in first.candidates if c.id == "own:cpu").time_s
    gpu_t = next(c for c in first.candidates if c.id == "buy:a100-sxm4-80gb").time_s
    assert gpu_t < cpu_t  # predicted both: the A100 is the faster
    advice = api.advise("test_resnet", size=SIZE, overrides=TINY, db=db, hardware=hw,
                        limits=Limits(deadline_s=(cpu_t * gpu_t) ** 0.5), prices_usd={"a100-sxm4-80gb": 15000})
    assert advice.verdict.answer == "gpu-needed"
    headline = advice.verdict.headline
    assert "this machine's CPU would take" in headline
    cpu_part, gpu_part = headline.split("Cheapest", 1)
    assert "(predicted)" in cpu_part and gpu_part.count("(predicted)") >= 2  # cheapest and fastest
    rows = _rows(_render(advice))
    time_col = [c for c, _ in COLUMNS].index("time to finish")
    job_col = [c for c, _ in COLUMNS].index("per job")
    a100 = next(v for k, v in rows.items() if k.startswith("A100"))
    assert a100[time_col].endswith("ᵖ") and a100[job_col].endswith("ᵖ"), a100
    cpu = next(v for k, v in rows.items() if k.startswith("this CPU"))
    assert cpu[time_col].endswith("ᵖ"), cpu
    assert "computed from a predicted throughput carries ᵖ" in _render(advice).replace("\n", " ")


def test_times_from_a_measurement_are_not_marked_predicted(real_run: dict[str, Any], tmp_path: Path) -> None:
    advice = api.advise("test_resnet", size=SIZE, overrides=TINY, db=_store(tmp_path, "m", [real_run]),
                        sources=["own"])
    assert advice.verdict.answer == "cpu-enough" and "(measured)" in advice.verdict.headline
    cpu = next(v for k, v in _rows(_render(advice)).items() if k.startswith("this CPU"))
    time_col = [c for c, _ in COLUMNS].index("time to finish")
    samples_col = [c for c, _ in COLUMNS].index("samples/s")
    assert cpu[samples_col].endswith("ᵐ") and not cpu[time_col].endswith("ᵖ"), cpu
