"""``dlgpu probe``: the arithmetic of each figure through the Timer's seams (a fake clock), a real tiny probe of this
CPU stored and read back, its ceilings used by ``predict -H local`` and MFU (and said so), and contention flagged.
Mechanisms, never a timing: no assertion here depends on how fast this machine is."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from dlgpu import api
from dlgpu.catalog import CpuSpec, load_catalog, this_cpu
from dlgpu.catalog.local import estimated_bf16_peak
from dlgpu.cli.main import main
from dlgpu.devices.machine import current_machine
from dlgpu.measure.mfu import MfuCounter
from dlgpu.measure.timer import Budget
from dlgpu.predict import Calibration, cpu_as_device, predict_step
from dlgpu.predict.roofline import ProbedCpu
from dlgpu.probe import ProbeSettings, Seams
from dlgpu.probe.peaks import cpu_peaks
from dlgpu.probe.run import (
    cache_note,
    gemm_flops,
    gemm_sweep,
    optimizer_figures,
    overhead_figures,
    stream_array_bytes,
    stream_bytes,
    stream_figures,
)
from dlgpu.results import BenchResult, OpProfile, OpRecord, StepStats
from dlgpu.results.probe import MeasuredCeilings, ProbeFigure, ProbeReport, ceilings_from_doc, probe_from_dict
from dlgpu.store.history import newest_probe, save_probe
from dlgpu.store.schema import validate_document
from dlgpu.workloads.registry import get_workload

CPU = current_machine().devices[0]
CAT = load_catalog()
MiB = 2**20
FAKE_BUDGET = Budget(warmup_steps=1, min_steps=3, max_steps=5, budget_s=10.0, ci_rel=0.05)
TINY = ProbeSettings(gemm_sizes_cpu=(64, 128), stream_bytes_cpu=4 * MiB, dispatch_calls=50, min_step_s_cpu=0.0005,
                     budget=Budget(warmup_steps=1, min_steps=3, max_steps=8, budget_s=0.2, ci_rel=0.05), quick=True)


def fake_clock(dt: float) -> Callable[[], float]:
    """A clock that moves ``dt`` seconds at every read: the Timer reads it at the start and the end of each step, so
    every timed step lasts exactly ``dt``."""
    now = [0.0]

    def clock() -> float:
        now[0] += dt
        return now[0]
    return clock


def no_figure(_f: ProbeFigure) -> None:
    return None


# --- the arithmetic, through the Timer's seams ------------------------------------------------------------------------

def test_gemm_rate_is_2mnk_per_call_over_the_faked_step_time() -> None:
    assert gemm_flops(3, 5, 7) == 2 * 3 * 5 * 7
    synced: list[int] = []
    seams = Seams(clock=fake_clock(0.25), sync=lambda: synced.append(1), remeasure=0)
    settings = replace(TINY, budget=FAKE_BUDGET)
    peak = cpu_peaks(CAT)["gemm:fp32"]
    figs, skipped = gemm_sweep(torch, CPU, "fp32", (64, 96), settings, peak, seams, lambda: None, no_figure)
    assert not skipped and [f.size for f in figs] == [64, 96]
    for f in figs:
        n = f.size or 0
        assert f.step_time.samples_s == (0.25,) * f.step_time.n  # every step lasted what the fake clock said
        assert f.work_per_step == f.reps_per_step * 2 * n**3
        assert f.value == pytest.approx(f.reps_per_step * 2 * n**3 / 0.25)
        assert f.spread == (pytest.approx(f.value), pytest.approx(f.value))
        if peak.value:
            assert f.fraction_of_peak == pytest.approx(f.value / peak.value)
        assert f.settings["inputs"] == "torch.randn" and f.warmup_steps == 1
    # the seam's synchronizer was called around every timed region (before and after each step, warm-up included)
    assert len(synced) == 2 * sum(f.step_time.n + f.warmup_steps for f in figs)


def test_bandwidth_counts_bytes_read_plus_written_over_the_faked_time() -> None:
    assert stream_bytes("copy", 100) == 200 and stream_bytes("triad", 100) == 300
    seams = Seams(clock=fake_clock(0.5), remeasure=0)
    settings = replace(TINY, budget=FAKE_BUDGET)
    figs = stream_figures(torch, CPU, 2 * MiB, "2 MiB (test)", 4 * MiB, settings, cpu_peaks(CAT)["bandwidth"], seams,
                          lambda: None, no_figure)
    by = {f.what: f for f in figs}
    assert set(by) == {"copy", "triad"}
    assert by["copy"].value == pytest.approx(by["copy"].reps_per_step * 2 * 2 * MiB / 0.5)
    assert by["triad"].value == pytest.approx(by["triad"].reps_per_step * 3 * 2 * MiB / 0.5)
    assert by["copy"].settings["array_bytes"] == 2 * MiB and by["copy"].size == 2 * MiB // 4
    # arrays under 4x the cache are flagged
    assert "under 4x" in by["copy"].settings["note"] and cache_note(64 * MiB, 4 * MiB) is None


def test_overheads_are_seconds_per_call() -> None:
    seams = Seams(clock=fake_clock(0.01), remeasure=0)
    figs, skipped = overhead_figures(torch, CPU, replace(TINY, dispatch_calls=200, budget=FAKE_BUDGET), seams,
                                     lambda: None, no_figure)
    (dispatch,) = figs
    assert dispatch.what == "dispatch" and dispatch.unit == "s"
    assert dispatch.value == pytest.approx(0.01 / 200) and dispatch.fraction_of_peak is None
    assert not skipped  # the CPU has no kernel launch to probe, and it is not listed as missing


def test_optimizer_rate_is_parameters_per_faked_step_and_the_step_really_updates() -> None:
    seams = Seams(clock=fake_clock(0.2), remeasure=0)
    settings = replace(TINY, optimizer_budget=FAKE_BUDGET)
    figs, skipped = optimizer_figures(torch, CPU, 4 * MiB, 1 * MiB, settings, seams, lambda: None, no_figure)
    by = {f.precision: f for f in figs}
    assert not skipped and set(by) == {"bf16", "fp32"}
    # four tensors (parameter, gradient, two moments) in 4 MiB: 1 MiB each
    assert by["fp32"].size == MiB // 4 and by["bf16"].size == MiB // 2
    for f in figs:
        assert f.what == "optimizer" and f.unit == "param/s" and f.label == f"{f.precision} AdamW"
        assert f.value == pytest.approx(f.size / 0.2) and f.settings["working_set_bytes"] == 4 * MiB
        assert "single-tensor" in f.settings["implementation"]
    c = ceilings_from_doc(ProbeReport("2026-12-06T00:00:00+00:00", "t", current_machine(), (CPU,), True,
                                      tuple(figs)).to_dict())
    assert c is not None and c.optimizer_params_per_s == {"bf16": pytest.approx(MiB / 2 / 0.2),
                                                          "fp32": pytest.approx(MiB / 4 / 0.2)}
    assert "torch AdamW step probed" in c.optimizer_basis


def test_a_probed_optimizer_rate_times_the_fine_tuning_optimizer_step() -> None:
    from dlgpu.finetune.config import parse_finetune
    from dlgpu.finetune.memory import split
    from dlgpu.finetune.model import resolve_finetune_model
    from dlgpu.finetune.perf import step_time
    from dlgpu.predict.calibration import load_calibration

    _, cpu = this_cpu(CAT)
    base = dict(device="cpu", run_id="f" * 32, created_at="2026-12-06", quick=False,
                memory_bandwidth_bytes_per_s=20e9, bandwidth_kind="triad", bandwidth_detail="test")
    plain = cpu_as_device(cpu, MeasuredCeilings(**base))  # type: ignore[arg-type]
    probed = cpu_as_device(cpu, MeasuredCeilings(**base, optimizer_params_per_s={"bf16": 2e8, "fp32": 4e8}))  # type: ignore[arg-type]
    model, cal = resolve_finetune_model("qwen3-0.6b"), load_calibration()
    full = parse_finetune("full", {"seq_len": "32"}, 1)
    n = sum(w.elements for w in split(model, full)[0])
    a, b = step_time(model, full, plain, cal, CAT), step_time(model, full, probed, cal, CAT)
    # bf16-true full fine-tuning: the states are bf16, at 5 ns per parameter
    assert "ns (bf16 torch AdamW step probed" in b.basis and "AdamW step probed" not in a.basis
    calibrated = a.step_time_s - b.step_time_s + n / 2e8
    assert 0 < calibrated < a.step_time_s
    # SGD: the same probed rate, scaled by its bytes per parameter against AdamW's (6 against 21 state values)
    sgd = step_time(model, replace(full, optimizer="sgd"), probed, cal, CAT)
    assert "sgd's bytes per parameter" in sgd.basis
    assert b.step_time_s - sgd.step_time_s == pytest.approx(n / 2e8 * (1 - 6 / 21), rel=1e-6)
    # LoRA's adapters are fp32: the fp32 rate
    lora = step_time(model, parse_finetune("lora", {"seq_len": "32"}, 1), probed, cal, CAT)
    assert "ns (fp32 torch AdamW step probed" in lora.basis


def test_stream_arrays_are_sized_from_the_cache_and_the_memory() -> None:
    size, why = stream_array_bytes(480 * MiB, 64 * 2**30)
    assert size == 4 * 480 * MiB and "4x the 480 MiB" in why
    size, why = stream_array_bytes(None, 64 * 2**30)
    assert size == 256 * MiB
    size, why = stream_array_bytes(1024 * MiB, 8 * 2**30)  # 1/8 of 8 GiB available: capped
    assert size == 1024 * MiB and "capped" in why


# --- a real tiny probe of this CPU, stored and read back --------------------------------------------------------------

@pytest.fixture(scope="module")
def probed(tmp_path_factory: pytest.TempPathFactory) -> tuple[ProbeReport, Path]:
    db = tmp_path_factory.mktemp("probe") / "r.sqlite"
    rep = api.probe(["cpu"], settings=TINY, db=db)
    return rep, db


def test_a_real_tiny_probe_gives_positive_figures_as_fractions_of_this_cpus_peak(
        probed: tuple[ProbeReport, Path]) -> None:
    rep, _db = probed
    kinds = {(f.what, f.precision) for f in rep.figures}
    assert {("gemm", "fp32"), ("gemm", "bf16"), ("copy", "fp32"), ("triad", "fp32"), ("dispatch", None)} <= kinds
    assert all(f.value > 0 and f.step_time.n >= 3 for f in rep.figures)
    assert all(f.device == "cpu" and f.settings.get("threads") == CPU.threads_used for f in rep.figures)
    _, cpu = this_cpu(CAT)
    fp32_peak = cpu.fp32_flops_per_s
    bf16_peak = (cpu.bf16_flops_per_s if isinstance(cpu, CpuSpec) else
                 (estimated_bf16_peak(cpu) or (None, ""))[0])
    for f in rep.figures:
        if f.what == "gemm" and f.precision == "fp32":
            assert f.peak == fp32_peak and f.fraction_of_peak == pytest.approx(f.value / fp32_peak)
        if f.what == "gemm" and f.precision == "bf16" and bf16_peak:
            assert f.fraction_of_peak == pytest.approx(f.value / bf16_peak)
    skipped = {(s.what, s.precision): s.reason for s in rep.skipped}
    assert "tf32" in skipped[("gemm", "tf32")] and "GPUs" in skipped[("h2d", None)]
    assert "cuda" in rep.absent  # no GPU here, and why
    # the JSON document carries every figure with its raw samples, and validates as an import would
    doc = rep.to_dict()
    assert doc["schema"] == "dlgpu.probe/1" and doc["run_id"] == rep.run_id
    assert all(len(f["step_time_s"]["samples"]) == f["step_time_s"]["n"] for f in doc["figures"])
    assert doc["ceilings"]["cpu"]["gemm:fp32"]["value"] == max(f.value for f in rep.figures
                                                               if f.what == "gemm" and f.precision == "fp32")
    validate_document(json.loads(json.dumps(doc)), "test")
    tampered = json.loads(json.dumps(doc))
    tampered["figures"][0]["value"] *= 2
    with pytest.raises(Exception, match="not what its samples give"):
        validate_document(tampered, "test")


def test_the_probe_is_stored_listed_shown_and_read_back(probed: tuple[ProbeReport, Path],
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    rep, db = probed
    assert rep.run_id
    (row,) = api.list_runs(db, kind="probe")
    assert row.id == rep.run_id and row.kind == "probe" and "fp32" in row.summary
    assert api.list_runs(db, device="cpu")[0].id == rep.run_id
    back = probe_from_dict(api.show_run(rep.run_id[:8], db).document)
    assert [f.value for f in back.figures] == [f.value for f in rep.figures]
    assert back.ceilings("cpu").keys() == rep.ceilings("cpu").keys()
    assert main(["show", rep.run_id[:8], "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "fp32 GEMM" in out and "of peak" in out and "triad" in out
    # export and import into another store: the same run
    bundle = api.export_runs([rep.run_id], db)
    f = db.parent / "bundle.json"
    f.write_text(json.dumps(bundle))
    other = db.parent / "other.sqlite"
    assert api.import_files([f], other)["added"] == [rep.run_id]
    assert api.list_runs(other, kind="probe")[0].kind == "probe"


def test_cli_quick_probe_json_has_every_figure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["probe", "--quick", "-d", "cpu", "--json", "--no-save", "--db", str(tmp_path / "r.sqlite")]) == 0
    doc = json.loads(capsys.readouterr().out)
    whats = {f["what"] for f in doc["figures"]}
    assert {"gemm", "copy", "triad", "dispatch"} <= whats
    assert {f["precision"] for f in doc["figures"] if f["what"] == "gemm"} >= {"fp32", "bf16"}
    assert "run_id" not in doc and not (tmp_path / "r.sqlite").exists()  # --no-save
    fp32 = [f for f in doc["figures"] if f["what"] == "gemm" and f["precision"] == "fp32"]
    assert all(f["fraction_of_peak"] is None or f["fraction_of_peak"] == pytest.approx(f["value"] / f["peak"])
               for f in fp32)


# --- what predict, advise and MFU take from it ------------------------------------------------------------------------

def _stored_probe(db: Path, triad_bytes_per_s: float = 20e9, contended: bool = False) -> str:
    """A probe of this machine with known figures (one step each), saved in ``db``."""
    machine = current_machine()

    def fig(what: str, work: float, seconds: float, precision: str | None = "fp32", size: int = 1024) -> ProbeFigure:
        return ProbeFigure(device="cpu", what=what, precision=precision, size=size, work_per_step=work,
                           reps_per_step=1, step_time=StepStats((seconds, seconds, seconds)), contended=contended,
                           settings={"threads": 2, "array_bytes": 256 * MiB})
    figures = (fig("gemm", 2 * 1024**3, 2 * 1024**3 / 300e9), fig("gemm", 2 * 1024**3, 2 * 1024**3 / 1.5e12, "bf16"),
               fig("copy", 2.0 * 256 * MiB, 2 * 256 * MiB / 18e9),
               fig("triad", 3.0 * 256 * MiB, 3 * 256 * MiB / triad_bytes_per_s))
    rep = ProbeReport(created_at="2026-12-06T00:00:00+00:00", dlgpu="test", machine=machine,
                      devices=(machine.devices[0],), quick=False, figures=figures)
    return save_probe(rep.to_dict(), db)


def _decode_ops() -> OpProfile:
    """One decode step as the roofline sees it: a GEMV streaming 1 GB of fp32 weights, an elementwise op, and a cast
    of 100M weights to bf16 (autocast)."""
    gemv = OpRecord(op="mm", kind="matmul", phase="forward", dtype="float32", flops=2 * 2.5e8, bytes_read=1e9,
                    bytes_written=4e3, count=1, gemm=(1, 1, 1000, 250_000))
    add = OpRecord(op="add", kind="elementwise", phase="forward", dtype="float32", flops=1e3, bytes_read=8e3,
                   bytes_written=4e3, count=1)
    cast = OpRecord(op="_to_copy", kind="copy", phase="forward", dtype="bfloat16", flops=0.0, bytes_read=4e8,
                    bytes_written=2e8, count=1)
    return OpProfile(workload="x", task="decode", precision="fp32", batch_size=1, params={}, parameters=250_000_000,
                     ops=(gemv, add, cast))


def test_a_probed_bandwidth_bounds_dense_operators_and_copies_only() -> None:
    _, cpu = this_cpu(CAT)
    ceilings = MeasuredCeilings(device="cpu", run_id="f" * 32, created_at="2026-12-06", quick=False,
                                memory_bandwidth_bytes_per_s=20e9, bandwidth_kind="triad", bandwidth_detail="test",
                                gemm_flops_per_s={"fp32": 300e9}, gemm_sizes={"fp32": 1024})
    plain, probed = cpu_as_device(cpu), cpu_as_device(cpu, ceilings)
    assert isinstance(probed, ProbedCpu) and probed.memory_bandwidth_bytes_per_s == 20e9
    assert probed.fp32_flops_per_s == plain.fp32_flops_per_s  # the calibrated peak stays
    cal = Calibration({})
    prof = _decode_ops()
    without, with_bw = predict_step(prof, plain, "fp32", cal), predict_step(prof, probed, "fp32", cal)
    if plain.memory_bandwidth_bytes_per_s is None:  # an estimated local CPU: no memory term without a probe
        assert without.memory_s == 0.0
    # the GEMV and the cast stream at 100% of the probed triad; the elementwise op keeps its calibrated time
    assert with_bw.memory_s == pytest.approx((prof.ops[0].bytes + prof.ops[2].bytes) / 20e9)
    assert with_bw.op_seconds[1] == pytest.approx(without.op_seconds[1])


def test_predict_local_uses_the_stored_probe_and_says_so(tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite"
    before = api.predict("test_gpt", "local", task="decode", db=db)  # no database yet: not created
    assert not db.exists()
    assert "memory bandwidth: none" in before.device_basis and "compute alone" in before.provenance
    assert before.bound["memory"] == 0.0 and before.bandwidth_bytes_per_s is None
    run = _stored_probe(db, triad_bytes_per_s=20e9)
    after = api.predict("test_gpt", "local", task="decode", db=db)
    assert "probed 20.0 GB/s STREAM triad" in after.device_basis and run[:8] in after.device_basis
    assert "probed" in after.provenance and after.bandwidth_bytes_per_s == pytest.approx(20e9)
    assert after.bound["memory"] > 0.0 and after.step_time_s >= before.step_time_s
    assert after.peaks_flops_per_s["fp32 GEMM (probed)"] == pytest.approx(300e9)
    # a catalog device is not this machine: no probe applies
    other = api.predict("test_gpt", "t4", task="decode", db=db)
    assert "probed" not in other.device_basis


def test_a_contended_probe_is_not_used(tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite"
    _stored_probe(db, contended=True)
    got = newest_probe(db, current_machine().to_dict())
    assert got.document is None and got.contended_left_out == 1 and "contention" in got.why_none
    assert api.local_ceilings(db)[0] is None
    pred = api.predict("test_gpt", "local", task="decode", db=db)
    assert "memory bandwidth: none" in pred.device_basis
    # a newer uncontended one is
    run = _stored_probe(db, triad_bytes_per_s=25e9)
    ceil, why = api.local_ceilings(db)
    assert ceil is not None and not why and ceil.run_id == run
    assert ceil.memory_bandwidth_bytes_per_s == pytest.approx(25e9) and ceil.bandwidth_kind == "triad"


def test_finetune_and_advise_on_local_take_the_probe(tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite"
    _stored_probe(db)
    doc = api.predict_finetune("bert_base", "local", "lora", db=db)
    assert "probed 20.0 GB/s" in doc["basis"]["device"]
    adv = api.advise("test_gpt", "decode", size=api.JobSize(samples=1000), sources=["own"], db=db)
    own = next(c for c in adv.candidates if c.id == "own:cpu")
    assert any("probed 20.0 GB/s" in n for n in own.notes)


def test_mfu_basis_adds_the_measured_ceiling() -> None:
    spec = get_workload("test_resnet")
    plan: Any = SimpleNamespace(spec=spec, task="infer", overrides={}, device=CPU, finetune=None)
    r = BenchResult(workload=spec.name, task="infer", device="cpu", precision="fp32", batch_size=4, overrides={},
                    status="ok", step_time=StepStats((0.01, 0.01, 0.01)))

    def profile(*_a: Any, **_k: Any) -> Any:
        return SimpleNamespace(flops=1e9, bytes=1e6)
    got = MfuCounter(profile, lambda _d, _p: (1e12, "the peak (test)"),
                     ceiling=lambda d, p: (2e11, "`dlgpu probe` run abcd (test)") if (d, p) == ("cpu", "fp32")
                     else None).add(r, plan)
    assert got.mfu == pytest.approx(0.1)  # MFU stays over the peak
    assert "50.0% of this machine's measured fp32 GEMM ceiling 200 GFLOP/s" in (got.mfu_basis or "")
    assert "run abcd" in (got.mfu_basis or "")


def test_stored_ceilings_read_from_a_document() -> None:
    machine = current_machine()
    st = StepStats((0.5,))
    figs = (ProbeFigure("cpu", "copy", "fp32", 10, 2e9, 1, st), ProbeFigure("cpu", "gemm", "fp32", 64, 1e9, 1, st),
            ProbeFigure("cpu", "gemm", "fp32", 128, 3e9, 1, st))
    doc = ProbeReport("2026-12-06T00:00:00+00:00", "t", machine, (machine.devices[0],), True, figs).to_dict()
    c = ceilings_from_doc(doc)
    assert c is not None and c.bandwidth_kind == "copy" and c.memory_bandwidth_bytes_per_s == pytest.approx(4e9)
    assert c.gemm_flops_per_s == {"fp32": pytest.approx(6e9)} and c.gemm_sizes == {"fp32": 128}
    assert ceilings_from_doc(doc, "cuda:0") is None


# --- contention -------------------------------------------------------------------------------------------------------

class _Busy:
    """A busy child process (``while True: pass``) per half the CPUs, spinning before it is handed back."""

    def __init__(self) -> None:
        import psutil

        n = max(1, (os.cpu_count() or 2) // 2)
        self.procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
        handles = [psutil.Process(p.pid) for p in self.procs]
        end = time.perf_counter() + 10.0
        while time.perf_counter() < end and not all(sum(h.cpu_times()[:2]) >= 0.1 for h in handles):
            time.sleep(0.02)

    def kill(self) -> None:
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.wait()


def test_a_busy_child_process_flags_the_probe_contended() -> None:
    # windows of about a second: CPU time is counted in 10 ms ticks, so a short window cannot be judged
    # (steps of about 50 ms; the interval rule is made unreachable so that the time budget ends each attempt)
    slow = replace(TINY, min_step_s_cpu=0.05,
                   budget=Budget(warmup_steps=1, min_steps=5, max_steps=1000, budget_s=1.0, ci_rel=1e-9))
    busy = _Busy()
    try:
        figs, _ = gemm_sweep(torch, CPU, "fp32", (256,), slow, cpu_peaks(CAT)["gemm:fp32"], Seams(remeasure=1),
                             lambda: None, no_figure)
    finally:
        busy.kill()
    (f,) = figs
    assert f.contended is True and f.contention is not None
    assert "other processes used" in f.contention["basis"] and len(f.contention["attempts"]) == 2
    machine = current_machine()
    rep = ProbeReport("2026-12-06T00:00:00+00:00", "t", machine, (machine.devices[0],), True, (f,))
    assert rep.contended and rep.to_dict()["contended"] is True
