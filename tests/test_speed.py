"""``dlgpu bench``'s machine-speed check (``measure.speed``): a reference GEMM timed with the probe's machinery before
and after a run, against this machine's stored probe. The arithmetic through the probe's seams (a fake clock), the
threshold, what is recorded where nothing can be checked, and a real tiny bench run with a stored probe: its results
carry ``machine_speed``, a slowed run is flagged on the table, on stderr and in ``dlgpu compare``. Mechanisms, never a
timing of this machine: a stored probe far above or below any CPU decides the verdict."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from conftest import TINY_BUDGET
from dlgpu import api
from dlgpu.catalog import load_catalog
from dlgpu.cli.main import main
from dlgpu.devices.machine import current_machine
from dlgpu.measure.speed import (
    SLOWED_RATIO,
    Reference,
    SpeedCheck,
    is_slowed,
    measure_reference,
    references_in,
    speed_ratio,
)
from dlgpu.measure.timer import Budget
from dlgpu.probe import Seams
from dlgpu.report.compare import build_comparison
from dlgpu.results import DeviceInfo, StepStats
from dlgpu.results.probe import ProbeFigure, ProbeReport
from dlgpu.store.history import save_probe
from dlgpu.store.schema import validate_document
from dlgpu.store.sqlite import Store

CPU = current_machine().devices[0]
N = 1024
FLOPS = 2.0 * N**3
FAKE = Budget(warmup_steps=1, min_steps=3, max_steps=4, budget_s=10.0, ci_rel=0.05)


def fake_clock(dt: float) -> Callable[[], float]:
    """Every timed step lasts exactly ``dt`` (the Timer reads the clock at each step's start and end)."""
    now = [0.0]

    def clock() -> float:
        now[0] += dt
        return now[0]
    return clock


def _cpu(native_bf16: bool) -> DeviceInfo:
    from dataclasses import replace

    return replace(CPU, details={**CPU.details, "native_bf16": native_bf16})


def _probe_doc(fp32: float | None = 300e9, bf16: float | None = 1.5e12, size: int = N,
               contended: bool = False) -> dict[str, Any]:
    """A ``dlgpu.probe/1`` document of this machine with GEMM figures of known rates (one step each)."""
    machine = current_machine()
    figures = []
    for prec, rate in (("fp32", fp32), ("bf16", bf16)):
        if rate is None:
            continue
        work = 2.0 * size**3
        figures.append(ProbeFigure(device="cpu", what="gemm", precision=prec, size=size, work_per_step=work,
                                   reps_per_step=1, step_time=StepStats((work / rate,) * 3), contended=contended,
                                   settings={"threads": 2}))
    rep = ProbeReport(created_at="2026-12-06T00:00:00+00:00", dlgpu="test", machine=machine,
                      devices=(machine.devices[0],), quick=False, figures=tuple(figures))
    return {**rep.to_dict(), "run_id": "a" * 32}


def _stored(doc: Mapping[str, Any] | None, why: str = "") -> Callable[[str], tuple[Any, str]]:
    return lambda device: (doc, why)


def _check(doc: Mapping[str, Any], dt: float, native_bf16: bool = False) -> SpeedCheck:
    """A check whose every timed step lasts ``dt`` (one call per step: a tiny min_step_s)."""
    return SpeedCheck.for_run(_cpu(native_bf16), [CPU], _stored(doc), seams=Seams(clock=fake_clock(dt), remeasure=0),
                              budget=FAKE, min_step_s=1e-9)


# --- the arithmetic, through the probe's seams ------------------------------------------------------------------------

def test_the_ratio_is_the_rate_now_over_the_probed_rate() -> None:
    assert speed_ratio(150.0, 300.0) == 0.5 and speed_ratio(None, 300.0) is None
    ref = Reference("cpu", "fp32", N, 300e9, 290e9, 310e9, 2)
    value, contended = measure_reference(ref, CPU, Seams(clock=fake_clock(FLOPS / 240e9), remeasure=0), FAKE, 1e-9)
    assert value == pytest.approx(240e9) and contended in (True, False)
    check = _check(_probe_doc(), FLOPS / 240e9)  # 240 GFLOP/s now against 300 probed
    check.before()
    check.after()
    s = check.summary()
    assert s["checked"] and s["probe_run"] == "a" * 32 and s["probed_value"] == pytest.approx(300e9)
    assert s["measured_before"] == pytest.approx(240e9) and s["measured_after"] == pytest.approx(240e9)
    assert s["ratio_before"] == pytest.approx(0.8) and s["ratio_after"] == pytest.approx(0.8)
    assert s["slowed"] and s["threshold"] == SLOWED_RATIO
    assert s["reference"].startswith("fp32 GEMM n=1024 (torch.matmul, 2 threads)") and "aaaaaaaa" in s["reference"]
    assert [m["precision"] for m in s["references"]] == ["fp32"]  # no native bf16: fp32 only


def test_slowed_at_and_beyond_the_threshold() -> None:
    assert not is_slowed(SLOWED_RATIO) and not is_slowed(1.2) and not is_slowed(None)
    assert is_slowed(SLOWED_RATIO - 1e-6) and is_slowed(0.5)
    at_speed = _check(_probe_doc(), FLOPS / 300e9)
    at_speed.before()
    assert at_speed.summary()["ratio_before"] == pytest.approx(1.0) and not at_speed.summary()["slowed"]
    # after the run only (interrupted before the second reference: ratio_after None, judged on what ran)
    assert at_speed.summary()["ratio_after"] is None


def test_bf16_is_checked_where_the_cpu_has_it_and_the_slowest_reference_is_reported() -> None:
    # every step lasts the same: fp32 at 300/300 = 1.0, bf16 at 300/1500 = 0.2: the bf16 reference is the slowed one
    check = _check(_probe_doc(), FLOPS / 300e9, native_bf16=True)
    check.before()
    s = check.summary()
    assert [m["precision"] for m in s["references"]] == ["fp32", "bf16"]
    assert s["slowed"] and s["reference"].startswith("bf16 GEMM") and s["ratio_before"] == pytest.approx(0.2)
    assert s["references"][0]["ratio_before"] == pytest.approx(1.0) and not s["references"][0]["slowed"]


# --- nothing to check against -----------------------------------------------------------------------------------------

def test_no_stored_probe_is_not_checked_and_says_why() -> None:
    check = SpeedCheck.for_run(CPU, [CPU], _stored(None, "no `dlgpu probe` of this machine's cpu is stored in x"))
    assert not check.active
    check.before()  # times nothing
    s = check.settings_for("cpu")
    assert s["checked"] is False and "dlgpu probe" in s["why"] and "\n" not in s["why"]
    assert check.settings_for("cuda:0")["checked"] is False and "CPU only" in check.settings_for("cuda:0")["why"]
    none = SpeedCheck.for_run(CPU, [CPU], None)
    assert none.settings_for("cpu")["checked"] is False and "dlgpu probe" in none.settings_for("cpu")["why"]


def test_a_probe_without_the_figure_is_not_checked() -> None:
    for doc in (_probe_doc(fp32=None), _probe_doc(size=512), _probe_doc(contended=True)):
        refs, why = references_in(doc, CPU)
        assert refs == [] and "fp32 GEMM n=1024" in why and "run `dlgpu probe`" in why
        s = SpeedCheck.for_run(CPU, [CPU], _stored(doc)).summary()
        assert s == {"checked": False, "why": f"not checked: {why}"}


def test_a_run_without_a_cpu_result_times_nothing() -> None:
    gpu = DeviceInfo(id="cuda:0", kind="cuda", name="x", memory_bytes=None, backend="cuda")
    check = SpeedCheck.for_run(CPU, [gpu], _stored(_probe_doc()))
    assert not check.active and "CPU only" in check.settings_for("cuda:0")["why"]


# --- a real tiny bench run --------------------------------------------------------------------------------------------

def _store_probe(db: Path, fp32: float) -> str:
    doc = _probe_doc(fp32=fp32, bf16=None)
    doc.pop("run_id")
    return save_probe(doc, db)


def _bench_argv(db: Path) -> list[str]:
    return ["bench", "-w", "test_resnet", "-d", "cpu", "-p", "fp32", "-t", "infer", "--set", "image_size=32",
            "--budget", "0.05", "--no-telemetry", "--db", str(db)]


def test_a_bench_run_records_its_speed_and_a_slowed_one_is_flagged(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "r.sqlite"
    probe_run = _store_probe(db, fp32=1e18)  # no CPU runs at an exaFLOP/s: this run is slowed
    assert main(_bench_argv(db)) == 0
    out, err = capsys.readouterr()
    assert "slowed" in out and "machine speed (reference GEMMs now / `dlgpu probe`" in out
    warning = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "not comparable with runs at full speed" in warning[0]
    with Store(db) as store:
        (row,) = store.runs(kind="bench")
        doc = store.get(row.id).document
    validate_document(doc, "test")  # the store's schema accepts the new setting
    (result,) = doc["results"]
    speed = result["settings"]["machine_speed"]
    assert speed["checked"] and speed["slowed"] and speed["probe_run"] == probe_run
    assert speed["ratio_before"] < 1e-3 and speed["ratio_after"] < 1e-3
    assert speed["measured_before"] > 0 and speed["measured_after"] > 0
    # dlgpu compare flags it
    comp = build_comparison([({"id": row.id, "kind": "bench", "created_at": row.created_at, "machine": "vm"}, doc)],
                            load_catalog())
    flags = [c.flag for t in comp.tables for r in t.rows for c in r if c.unit == "samples/s" and c.flag]
    assert any("slowed" in f for f in flags) and any("Slowed:" in n for n in comp.notes)


def test_a_bench_run_at_full_speed_is_not_flagged(tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite"
    _store_probe(db, fp32=1.0)  # every CPU is faster than 1 FLOP/s
    rep = api.bench(["test_resnet"], ["cpu"], ["fp32"], ["infer"], overrides={"image_size": "32"},
                    timing=TINY_BUDGET, db=db, telemetry=False)
    speed = rep.results[0].settings["machine_speed"]
    assert speed["checked"] and not speed["slowed"] and speed["ratio_before"] > 1


def test_a_bench_run_without_a_probe_records_why(tmp_path: Path) -> None:
    rep = api.bench(["test_resnet"], ["cpu"], ["fp32"], ["infer"], overrides={"image_size": "32"},
                    timing=TINY_BUDGET, db=tmp_path / "r.sqlite", telemetry=False)
    speed = rep.results[0].settings["machine_speed"]
    assert speed["checked"] is False and "dlgpu probe" in speed["why"]
