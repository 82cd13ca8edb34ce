"""``dlgpu advise``: verdicts on cases whose answer is known by construction, the cost arithmetic, the
provenance of every figure, and bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from conftest import TINY_BUDGET
from dlgpu import api
from dlgpu.advise import cost, inputs
from dlgpu.advise.inputs import JobSize, Limits
from dlgpu.catalog import load_catalog
from dlgpu.cli.main import main
from dlgpu.errors import BadInput
from dlgpu.units import parse_duration

TINY = {"image_size": "16"}


def _cand(doc: dict[str, Any], cid: str) -> dict[str, Any]:
    return next(c for c in doc["candidates"] if c["id"] == cid)


def _v(c: dict[str, Any], name: str) -> Any:
    return c["figures"][name]["value"]


def _src(c: dict[str, Any], name: str) -> str:
    return str(c["figures"][name]["source"])


# --- the arithmetic -------------------------------------------------------------------------------------------


def test_cost_arithmetic() -> None:
    assert cost.allreduce_s(1e9, 1, 1e10) == 0
    assert cost.allreduce_s(1e9, 8, 1e11) == pytest.approx(2 * 7 / 8 * 1e9 / 1e11)
    assert cost.data_parallel_samples_per_s(0.1, 32, 4, 0.02) == pytest.approx(4 * 32 / 0.12)
    assert cost.energy_kwh(1000, 3600, 1.5) == pytest.approx(1.5)
    # a $3,650 GPU used 10 h a day for 1 year: 3650 h of life, so a 2 h job uses 2/3650 of it
    assert cost.amortized_usd(3650, 7200, 10, 1) == pytest.approx(2.0)
    assert cost.rent_usd(2.5, 5400) == pytest.approx(3.75)
    assert parse_duration("12h") == 43200 and parse_duration("90m") == 5400
    assert parse_duration("2d") == 172800 and parse_duration("1w") == 604800
    assert parse_duration("3") == 10800  # a bare number is hours
    for bad in ("soon", "-3h", "0h", "nan h"):
        with pytest.raises(ValueError):
            parse_duration(bad)


# --- known answers --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results store with a real measurement of the tiny ResNet on this CPU."""
    db = tmp_path_factory.mktemp("advise") / "r.sqlite"
    api.bench(workloads=["test_resnet"], devices=["cpu"], precisions=["fp32", "bf16"], tasks=["train"], quick=True,
              timing=TINY_BUDGET, overrides=TINY, telemetry=True, telemetry_period_s=0.02, db=db)
    return db


def test_a_tiny_model_on_a_small_dataset_needs_no_gpu(tiny_db: Path) -> None:
    doc = api.advise("test_resnet", size=JobSize(dataset_size=2000, epochs=2), limits=Limits(deadline_s=3600),
                     overrides=TINY, db=tiny_db, hardware=["local", "a100-sxm4-80gb", "rtx-3090", "t4"]).to_dict()
    v = doc["verdict"]
    assert v["answer"] == "cpu-enough" and v["cheapest"] == "own:cpu"
    assert v["headline"].startswith("A CPU is enough") and "measured" in v["headline"]
    cpu = _cand(doc, "own:cpu")
    assert _src(cpu, "samples_per_s") == "measured"  # from the store, not measured again
    assert _v(cpu, "time_s") == pytest.approx(4000 / _v(cpu, "samples_per_s"))
    assert _v(cpu, "time_s") < 3600
    assert doc["local"]["measured"] and doc["job"]["samples"] == 4000
    assert doc["job"]["basis"].startswith("given")
    # electricity for the CPU comes from its (estimated) power over the job
    kwh = _v(cpu, "power_w") * _v(cpu, "time_s") / 3.6e6
    assert _v(cpu, "energy_kwh") == pytest.approx(kwh)
    assert _v(cpu, "electricity_usd") == pytest.approx(kwh * inputs.DEFAULT_ELECTRICITY_USD_PER_KWH)
    assert doc["constraints"]["electricity_usd_per_kwh"]["source"] == "assumed"


@pytest.fixture(scope="module")
def resnet_day(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """ResNet-50 on ImageNet (90 epochs) in a day, nothing stored for this machine: the whole catalog."""
    db = tmp_path_factory.mktemp("advise-r50") / "r.sqlite"
    return api.advise("resnet50", limits=Limits(deadline_s=24 * 3600, electricity_usd_per_kwh=0.2), db=db,
                      prices_usd={"rtx-4090": 1700}).to_dict()


def test_resnet50_on_imagenet_in_a_day_needs_a_gpu(resnet_day: dict[str, Any]) -> None:
    doc = resnet_day
    v = doc["verdict"]
    assert v["answer"] == "gpu-needed" and v["headline"].startswith("A GPU is needed")
    cpu = _cand(doc, "own:cpu")
    assert _src(cpu, "samples_per_s") == "predicted" and _v(cpu, "time_s") > 30 * 86400
    assert any("--measure" in n for n in doc["notes"])  # nothing stored: says so, suggests measuring
    for role in ("cheapest", "fastest", "best_value"):
        c = _cand(doc, v[role])
        assert _v(c, "time_s") <= 86400 and c["excluded"] is None
    fastest = _cand(doc, v["fastest"])
    assert all(_v(c, "time_s") >= _v(fastest, "time_s") for c in doc["candidates"] if not c["excluded"]
               and c["figures"].get("time_s", {}).get("value") is not None
               and _v(c, "time_s") <= 86400)
    cheapest = _cand(doc, v["cheapest"])
    key = "upfront_usd" if cheapest["origin"] == "buy" else "job_cost_usd"
    meeting = [c for c in doc["candidates"] if not c["excluded"] and c["figures"].get("time_s")
               and _v(c, "time_s") <= 86400]
    assert all((_v(c, "upfront_usd" if c["origin"] == "buy" else "job_cost_usd") or math.inf) >= _v(cheapest, key)
               for c in meeting)
    assert any("bounds the step" in r for r in v["reasons"]) and any("Uncertainty" in r for r in v["reasons"])
    assert any("Mixed precision" in r for r in v["reasons"])
    assert any("Consumer GPUs" in r for r in v["reasons"])


def test_every_candidate_figure_has_its_provenance(resnet_day: dict[str, Any]) -> None:
    cat = load_catalog()
    doc = resnet_day
    origins = {c["origin"] for c in doc["candidates"]}
    assert origins == {"own", "buy", "rent"}
    ranked = [c for c in doc["candidates"] if not c["excluded"]]
    assert len(ranked) > 50  # no limit but the deadline: the catalog's candidates are ranked, not excluded
    for c in doc["candidates"]:
        for name, f in c["figures"].items():
            assert f["source"] in {"measured", "predicted", "catalog", "estimated", "assumed", "computed", "given",
                                   "unavailable"}, (c["id"], name)
    for c in ranked:
        for name in ("samples_per_s", "time_s", "power_w", "energy_kwh", "job_cost_usd", "samples_per_s_per_w",
                     "peak_mem_bytes", "memory_bytes", "largest_batch", "carbon_kg"):
            assert name in c["figures"], (c["id"], name)
        assert c["precision"] in ("fp32", "tf32", "bf16", "fp16") and c["batch_size"] >= 1
        assert c["fits"] is True  # a candidate that does not fit at any batch is excluded, not ranked
    a100 = _cand(doc, "buy:a100-sxm4-80gb")
    assert _src(a100, "samples_per_s") == "predicted" and _src(a100, "memory_bytes") == "catalog"
    assert _src(a100, "power_w") == "estimated"
    assert _v(a100, "power_w") == pytest.approx(cat.gpu("a100-sxm4-80gb").tdp_w)
    r4090 = _cand(doc, "buy:rtx-4090")
    assert _v(r4090, "upfront_usd") == 1700 and _src(r4090, "upfront_usd") == "given"
    hours = _v(r4090, "time_s") / 3600
    amort = 1700 * hours / (inputs.DEFAULT_HOURS_PER_DAY * 365 * inputs.DEFAULT_LIFETIME_YEARS)
    assert _v(r4090, "amortized_usd") == pytest.approx(amort)
    elec = _v(r4090, "energy_kwh") * 0.2
    assert _v(r4090, "electricity_usd") == pytest.approx(elec)
    assert _v(r4090, "job_cost_usd") == pytest.approx(amort + elec)
    assert _v(r4090, "samples_per_usd") == pytest.approx(doc["job"]["samples"] / (amort + elec))
    assert r4090["consumer"] and any("accumulate" in n for n in r4090["notes"])
    # every GPU bought at its catalog launch price says so; one without a price says it has none
    priced = [g for g in cat.gpus if g.launch_price_usd and g.id != "rtx-4090"]
    unpriced = [g for g in cat.gpus if not g.launch_price_usd]
    assert priced and unpriced
    for g in priced:
        c = _cand(doc, f"buy:{g.id}")
        assert _src(c, "upfront_usd") == "catalog" and _v(c, "upfront_usd") == g.launch_price_usd, g.id
    for g in unpriced:
        c = _cand(doc, f"buy:{g.id}")
        assert _src(c, "upfront_usd") == "unavailable" and _v(c, "upfront_usd") is None, g.id


def test_rent_and_data_parallel_arithmetic(resnet_day: dict[str, Any]) -> None:
    cat = load_catalog()
    doc = resnet_day
    _, params = api.workload_details("resnet50")  # fp32 gradients: 4 bytes per parameter
    multi = [c for c in doc["candidates"] if c["origin"] == "rent" and c["gpus"] > 1 and not c["excluded"]]
    linked = 0
    for c in multi:
        inst = next(i for i in cat.cloud if f"rent:{i.provider}:{i.instance}" == c["id"])
        assert _v(c, "rent_usd") == pytest.approx(inst.price_usd_per_hour * _v(c, "time_s") / 3600)
        single = _cand(doc, f"buy:{inst.gpu_id}")
        step, batch = _v(single, "step_time_s"), single["batch_size"]
        link = cat.gpu(inst.gpu_id).interconnect_bytes_per_s
        if link:  # data parallel with a ring all-reduce of fp32 gradients over the catalog's interconnect
            linked += 1
            ar = _v(c, "allreduce_s")
            assert ar == pytest.approx(cost.allreduce_s(4.0 * params, c["gpus"], link))
            assert _v(c, "samples_per_s") == pytest.approx(c["gpus"] * batch / (step + ar))
            assert _v(c, "samples_per_s") < c["gpus"] * _v(single, "samples_per_s")  # the all-reduce costs
        else:  # no interconnect in the catalog: perfect scaling assumed, and said so
            assert "allreduce_s" not in c["figures"]
            assert _v(c, "samples_per_s") == pytest.approx(c["gpus"] * _v(single, "samples_per_s"))
            assert "perfect scaling assumed" in c["figures"]["samples_per_s"]["basis"]
        assert _v(c, "electricity_usd") is None  # included in the rent
    assert linked >= 3  # the catalog's 8-GPU H100 and A100 instances have NVLink figures: the formula ran


def test_nothing_meets_an_impossible_deadline_and_says_what_would(tmp_path: Path) -> None:
    doc = api.advise("resnet50", limits=Limits(deadline_s=300), db=tmp_path / "r.sqlite",
                     hardware=["t4", "a100-sxm4-80gb"]).to_dict()
    v = doc["verdict"]
    assert v["answer"] == "nothing-meets" and v["cheapest"] is None
    assert any(w.startswith("A longer deadline") for w in v["what_would"])
    assert any("More GPUs" in w for w in v["what_would"])


def test_budget_and_power_limits(tmp_path: Path) -> None:
    doc = api.advise("resnet50", limits=Limits(deadline_s=3 * 86400, budget_usd=30, max_power_w=500),
                     db=tmp_path / "r.sqlite", sources=["rent", "buy"],
                     hardware=["t4", "a100-sxm4-80gb", "h100-sxm5-80gb"]).to_dict()
    assert all(c["origin"] != "own" for c in doc["candidates"])
    # every candidate has a power figure; those over 500 W (the H100s, 700 W each) are excluded, the rest not
    over = [c for c in doc["candidates"] if _v(c, "power_w") > 500]
    assert over and {c["hardware"] for c in over} == {"h100-sxm5-80gb"}
    for c in doc["candidates"]:
        assert (c["excluded"] is not None) == (c in over), c["id"]
        if c in over:
            assert f"draws {_v(c, 'power_w'):,.0f} W, over the power limit of 500 W" == c["excluded"]

    def total(c: dict[str, Any]) -> float:
        """What the choice costs for this job (advise.verdict's rule): the purchase, or the rent."""
        v = _v(c, "upfront_usd") if c["origin"] == "buy" else _v(c, "job_cost_usd")
        return math.inf if v is None else v

    # The verdict's rule, recomputed: nothing is both in time (3 days, not excluded) and within $30. The A100s
    # are in time but cost more (a bought one has no catalog price); the T4s are too slow; the H100 that would
    # fit the budget is excluded by the power limit.
    in_time = [c for c in doc["candidates"] if not c["excluded"] and _v(c, "time_s") <= 3 * 86400]
    assert in_time and all(c["meets_deadline"] for c in in_time)
    assert not [c for c in in_time if total(c) <= 30]
    v = doc["verdict"]
    assert v["answer"] == "nothing-meets" and v["cheapest"] is None and v["best_value"] is None
    cheapest_in_time = min(in_time, key=total)
    assert any(w.startswith(f"A larger budget: ${total(cheapest_in_time):,.2f} gets rent {cheapest_in_time['name']}")
               for w in v["what_would"]), v["what_would"]
    # Without the power limit the cheapest affordable candidate in time is chosen, within the budget.
    free = api.advise("resnet50", limits=Limits(deadline_s=3 * 86400, budget_usd=30), db=tmp_path / "r.sqlite",
                      sources=["rent", "buy"], hardware=["t4", "a100-sxm4-80gb", "h100-sxm5-80gb"]).to_dict()
    fv = free["verdict"]
    assert fv["answer"] == "gpu-needed"
    ok = [c for c in free["candidates"] if not c["excluded"] and _v(c, "time_s") <= 3 * 86400 and total(c) <= 30]
    assert ok and fv["cheapest"] == min(ok, key=lambda c: (total(c), _v(c, "time_s")))["id"]
    assert _cand(free, fv["cheapest"])["hardware"] == "h100-sxm5-80gb" and total(_cand(free, fv["cheapest"])) <= 30


# --- the command ------------------------------------------------------------------------------------------------


def test_cli_json_saved_and_listed(tiny_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["advise", "test_resnet", "--dataset-size", "500", "--epochs", "1", "--set", "image_size=16",
            "--db", str(tiny_db), "-H", "local", "t4", "--json"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert doc["schema"] == "dlgpu.advise/1" and doc["run_id"]
    assert "A CPU is enough" in err  # the human answer went to stderr
    assert main(["runs", "--kind", "advise", "--db", str(tiny_db), "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)["runs"]
    assert [r["id"] for r in runs] == [doc["run_id"]]
    assert main(["show", doc["run_id"][:8], "--db", str(tiny_db)]) == 0
    assert "A CPU is enough" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["advise", "resnet50", "-H", "nosuch-gpu"], "nosuch-gpu"),
        (["advise", "resnet50", "--budget", "-5"], "--budget -5: must be a non-negative number"),
        (["advise", "resnet50", "--deadline", "soon"], "--deadline 'soon' is not a duration"),
        (["advise", "resnet50", "--hours-per-day", "30"], "--hours-per-day 30: must be in (0, 24]"),
        (["advise", "resnet50", "--price", "t4"], "--price 't4': give ID=USD"),
        (["advise", "nosuch"], "unknown workload 'nosuch'"),
        (["advise", "test_resnet"], "give --dataset-size and --epochs"),
        (["advise", "resnet50", "-t", "infer", "--samples", "0"], "--samples 0: must be a positive number"),
        (["advise"], "name a workload"),
    ],
)
def test_bad_input_one_line_exit_2(argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1, err
    assert needle in err


def test_measure_runs_bench_on_this_machine(tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite"
    with pytest.raises(BadInput):  # validation happens before anything is measured
        api.advise("test_resnet", size=JobSize(dataset_size=100, epochs=1), limits=Limits(budget_usd=-1),
                   measure=True, db=db, overrides=TINY)
    assert not db.exists()
    doc = api.advise("test_resnet", size=JobSize(dataset_size=100, epochs=1), measure=True, db=db, overrides=TINY,
                     precisions=["fp32"], hardware=["local"]).to_dict()
    cpu = _cand(doc, "own:cpu")
    assert _src(cpu, "samples_per_s") == "measured" and doc["local"]["basis"].startswith("measured now")
    assert cpu["precision"] == "fp32"


def test_your_own_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    pkg = tmp_path / "mynets.py"
    pkg.write_text("import torch.nn as nn\n\ndef make():\n"
                   "    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 64), nn.ReLU(), nn.Linear(64, 10))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    argv = ["advise", "--model", "mynets:make", "--input", "3x8x8", "--dataset-size", "10000", "--epochs", "2",
            "-H", "local", "t4", "--db", str(tmp_path / "r.sqlite"), "--json", "--no-save"]
    assert main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["workload"] == "custom:mynets:make" and doc["job"]["samples"] == 20000
    t4 = _cand(doc, "buy:t4")
    assert _src(t4, "samples_per_s") == "predicted" and _v(t4, "time_s") == pytest.approx(
        20000 / _v(t4, "samples_per_s"))
    assert main(["advise", "--model", "mynets:make", "--input", "3x8x8", "--db", str(tmp_path / "r.sqlite")]) == 2
    assert "give --dataset-size and --epochs" in capsys.readouterr().err
