"""Power, energy, utilization and MFU on every bench result: a real tiny bench on this CPU (the labelled
estimate where no sensor exists), the harness with NVML, amdsmi and RAPL behind fakes at their seams, the
window extension, the catalog facts (GPU matching, the CPU TDP estimate) and the CLI."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import TINY_BUDGET
from dlgpu import api
from dlgpu.catalog import device_facts, estimate_cpu_tdp, load_catalog, match_gpu
from dlgpu.cli.main import main
from dlgpu.devices import detect
from dlgpu.errors import BadInput
from dlgpu.measure.harness import NET_MIN_SHARE, TelemetrySetup, build, idle_baseline, measure
from dlgpu.measure.telemetry import (
    CpuSensors,
    RaplBackend,
    RaplUnavailable,
    TelemetryBackend,
    Unavailable,
    amdsmi_backend,
    nvml_backend,
)
from dlgpu.measure.timer import Budget, Timer
from dlgpu.results import BenchResult, DeviceInfo
from test_harness import mlp_spec
from test_telemetry import FakeAmdGpu, FakeAmdSmi, FakeCpuTimes, FakeGpu, FakeNvml, _fake_powercap, _set

CPU = detect()[0][0]
GIB = 1024**3

FIELDS = ("power_w", "peak_power_w", "idle_power_w", "energy_j_per_step", "energy_j_per_sample",
          "samples_per_s_per_w", "utilization_pct", "mfu", "mfu_basis", "energy_source", "energy_basis",
          "throttled", "telemetry", "flops_per_step", "achieved_flops_per_s")


def _rapl_readable() -> bool:
    try:
        RaplBackend().close()
    except RaplUnavailable:
        return False
    return True


# --- a real bench on this CPU ----------------------------------------------------------------------------

def test_a_real_tiny_bench_has_every_figure_labelled() -> None:
    rep = api.bench(["test_resnet"], devices=["cpu"], precisions=["fp32", "bf16"], tasks=["train"], quick=True,
                    timing=TINY_BUDGET)
    r, bf = rep.results
    assert r.status == "ok" and r.precision == "fp32", r.reason
    d = r.to_dict()
    assert all(k in d for k in FIELDS)
    for k in ("power_w", "peak_power_w", "energy_j_per_step", "energy_j_per_sample", "samples_per_s_per_w",
              "utilization_pct", "mfu", "flops_per_step"):
        assert isinstance(d[k], float) and d[k] > 0, (k, d[k])
    if _rapl_readable():
        assert r.energy_source == "measured-rapl"
    else:  # this machine: no sensor, so the labelled estimate from the catalog TDP and CPU utilization
        assert r.energy_source == "estimated"
        assert "estimated, not measured" in (r.energy_basis or "")
        assert "TDP" in (r.energy_basis or "") and "utilization" in (r.energy_basis or "")
    tel = r.telemetry
    assert tel is not None and tel["source"] == r.energy_source and len(tel["samples"]) >= 2
    assert all("timestamp_s" in s and "utilization_pct" in s for s in tel["samples"])
    # Power is the window's gross energy over its length; energy per sample and per step and samples/s per watt
    # follow from that power and the reported throughput (gross), so that they agree with each other; the net
    # figures subtract the idle baseline, and exist exactly where the run drew enough more than idle.
    assert r.step_time is not None and tel["steps"] == r.step_time.n
    assert tel["samples_processed"] == r.step_time.n * 4
    assert tel["energy_j_used"] == pytest.approx(tel["energy_j"])
    assert r.power_w == pytest.approx(tel["energy_j"] / tel["duration_s"])
    assert r.samples_per_s is not None
    assert r.energy_j_per_sample == pytest.approx(r.power_w / r.samples_per_s, rel=1e-9)
    assert r.energy_j_per_step == pytest.approx(4 * r.energy_j_per_sample, rel=1e-9)
    assert r.samples_per_s_per_w == pytest.approx(r.samples_per_s / r.power_w, rel=1e-9)
    net_power = (tel["energy_j"] - tel["idle_power_w"] * tel["duration_s"]) / tel["duration_s"]
    assert tel["net_of_idle"] is (net_power >= NET_MIN_SHARE * r.power_w)
    assert r.net_energy_j_per_sample == (pytest.approx(net_power / r.samples_per_s) if tel["net_of_idle"] else None)
    assert r.utilization_pct is not None and 0 < r.utilization_pct <= 100
    # MFU: the operator profile's FLOPs over the median step, over the CPU's FP32 peak.
    assert r.mfu is not None and 0 < r.mfu <= 1
    assert r.achieved_flops_per_s == pytest.approx(r.flops_per_step / r.step_time.median)  # type: ignore[operator]
    assert "GFLOP per step" in (r.mfu_basis or "") and "FP32 peak" in (r.mfu_basis or "")
    # The idle baseline is measured once per device and kept, raw samples included, with the device's facts.
    info = rep.telemetry["cpu"]
    assert info["idle_baseline"]["samples"] and info["source"] == r.energy_source
    assert r.idle_power_w == pytest.approx(info["idle_baseline"]["avg_power_w"])
    assert bf.idle_power_w == r.idle_power_w  # one baseline per device per run
    # The bf16 step reuses the fp32 step's FLOP count (same operators, other dtypes) and says so.
    assert bf.status == "ok" and bf.flops_per_step == r.flops_per_step and bf.mfu is not None
    assert "counted on the fp32 step" in (bf.mfu_basis or "") and bf.energy_source == r.energy_source
    assert info["facts"]["peaks"]["fp32"]["flops_per_s"] > 0
    doc = rep.to_dict()
    assert doc["schema"] == "dlgpu.bench/1" and doc["config"]["telemetry_period_s"] == 0.1
    json.dumps(doc)  # everything serializes


def test_no_telemetry_says_so_and_bad_periods_are_bad_input() -> None:
    rep = api.bench(["test_resnet"], devices=["cpu"], precisions=["fp32"], tasks=["infer"], timing=TINY_BUDGET,
                    telemetry=False)
    (r,) = rep.results
    assert r.status == "ok" and r.power_w is None and r.telemetry is None
    assert r.energy_source == "unavailable" and "--no-telemetry" in (r.energy_basis or "")
    assert rep.telemetry == {} and rep.config.telemetry is False
    for bad in (0.0, -1.0, 60.0):
        with pytest.raises(BadInput, match="telemetry_period_s"):
            api.bench(["test_resnet"], devices=["cpu"], telemetry_period_s=bad)


def test_a_custom_model_gets_energy_but_no_mfu() -> None:
    from dlgpu.workloads.custom import custom_spec

    spec = custom_spec("custom_models:tiny_mlp", "16", 4)
    rep = api.bench(devices=["cpu"], precisions=["fp32"], tasks=["infer"], timing=TINY_BUDGET, custom_specs=[spec])
    (r,) = rep.results
    assert r.status == "ok" and r.energy_source in ("estimated", "measured-rapl") and r.power_w
    assert r.mfu is None and "custom --model" in (r.mfu_basis or "")


# --- the harness with each sensor behind a fake ----------------------------------------------------------

def _built() -> Any:
    """A real two-layer MLP: steps well under a millisecond, so a 1 s sensor window needs many more."""
    return build(mlp_spec(), {}, CPU)


class _Watts:
    """Advances a fake energy counter by ``watts`` x each timed step's duration (through ``on_step``)."""

    def __init__(self, advance: Callable[[float], None], watts: float) -> None:
        self.advance, self.watts = advance, watts

    def __call__(self, n: int, dt: float) -> None:
        self.advance(self.watts * dt)


def _idle(backend: TelemetryBackend, advance: Callable[[float], None], watts: float) -> Any:
    """An idle baseline at ``watts``: the counter advances by the idle window's length x watts."""
    import time

    clock = [time.perf_counter()]

    def sleep(s: float) -> None:
        time.sleep(s)
        now = time.perf_counter()
        advance(watts * (now - clock[0]))

    from dlgpu.measure.telemetry import Telemetry

    tel = Telemetry(backend, period_s=0.1, device="fake")
    clock[0] = time.perf_counter()
    return tel.measure_idle(0.2, sleep=sleep)


def test_harness_with_nvml_measures_flags_throttling_and_extends_the_window() -> None:
    gpu = FakeGpu("GPU-aaaa0000-1111", energy_mj=1_000_000, power_mw=300_000, util_gpu=95, mem_used=GIB,
                  sm_mhz=1500, reasons=0x4)  # SW power cap: throttled

    def advance(j: float) -> None:
        gpu.energy_mj += round(1000 * j)

    backend = nvml_backend(0, nvml=FakeNvml([gpu]), environ={})
    try:
        idle = _idle(backend, advance, 60.0)
        assert idle.source == "measured-nvml" and idle.avg_power_w == pytest.approx(60.0, rel=0.2)
        r = measure(_built(), "train", "fp32", 2, TINY_BUDGET, on_step=_Watts(advance, 300.0),
                    telemetry=TelemetrySetup(backend=backend, idle=idle))
    finally:
        backend.close()
    assert r.status == "ok", r.reason
    assert r.energy_source == "measured-nvml" and "energy counter" in (r.energy_basis or "")
    assert r.throttled is True and r.telemetry is not None
    assert "sw_power_cap" in r.telemetry["throttle_reasons"]
    assert r.utilization_pct == pytest.approx(95.0) and r.peak_power_w == pytest.approx(300.0)
    # NVML's counter needs a 1 s window: the tiny run was extended to it, every extra step kept and timed.
    tel = r.telemetry
    assert tel["min_window_s"] == pytest.approx(1.0) and not tel["too_short"] and tel["duration_s"] >= 1.0
    assert r.step_time is not None and r.step_time.n > TINY_BUDGET.max_steps
    assert tel["extended_steps"] > 0 and r.step_time.n - tel["extended_steps"] in (2, 3)  # TINY_BUDGET's own stop
    # The counter advanced 300 W x the timed steps; idle is ~60 W, so the net figures exist.
    assert tel["net_of_idle"] and "net_energy_* subtract the idle baseline" in (r.energy_basis or "")
    steps_energy = 300.0 * sum(r.step_time.samples_s)
    assert tel["energy_j"] == pytest.approx(steps_energy, rel=0.02)
    assert r.power_w is not None and 240 < r.power_w <= 300.5
    assert r.power_w == pytest.approx(tel["energy_j"] / tel["duration_s"])
    assert r.samples_per_s is not None and r.energy_j_per_sample == pytest.approx(r.power_w / r.samples_per_s)
    assert r.net_energy_j_per_sample == pytest.approx(tel["net_energy_j"] / tel["duration_s"] / r.samples_per_s)


def test_harness_with_amdsmi_is_measured_amdsmi() -> None:
    gpus = [FakeAmdGpu(0, "u-zero", accumulator=1_000, current_power=250)]
    fake = FakeAmdSmi(gpus)

    def advance(j: float) -> None:
        gpus[0].accumulator += round(j * 1e6 / fake.RESOLUTION_UJ)

    backend = amdsmi_backend(0, amdsmi=fake, environ={})
    try:
        r = measure(_built(), "infer", "fp32", 2, TINY_BUDGET, on_step=_Watts(advance, 250.0),
                    telemetry=TelemetrySetup(backend=backend))
    finally:
        backend.close()
    assert r.status == "ok" and r.energy_source == "measured-amdsmi"
    assert r.telemetry is not None and r.telemetry["energy_j"] > 0 and not r.telemetry["too_short"]
    assert r.utilization_pct == pytest.approx(88.0)  # gfx_activity
    assert not r.telemetry["net_of_idle"] and "no idle baseline" in (r.energy_basis or "")
    assert r.power_w == pytest.approx(r.telemetry["energy_j"] / r.telemetry["duration_s"])
    assert r.samples_per_s is not None and r.energy_j_per_sample == pytest.approx(r.power_w / r.samples_per_s)
    assert r.net_energy_j_per_sample is None  # no baseline, no net figure


def test_harness_with_rapl_is_measured_rapl(tmp_path: Path) -> None:
    zones = _fake_powercap(tmp_path)
    pkg0 = [int((zones["pkg0"] / "energy_uj").read_text())]

    def advance(j: float) -> None:
        pkg0[0] += round(j * 1e6)
        _set(zones["pkg0"], pkg0[0])

    cpu_times = FakeCpuTimes()
    backend = RaplBackend(tmp_path, sensors=CpuSensors(cpu_times=cpu_times, memory_used=lambda: None))
    r = measure(_built(), "infer", "fp32", 2, TINY_BUDGET, on_step=_Watts(advance, 40.0),
                telemetry=TelemetrySetup(backend=backend))
    assert r.status == "ok" and r.energy_source == "measured-rapl"
    assert r.telemetry is not None and r.telemetry["duration_s"] >= r.telemetry["min_window_s"]
    assert r.telemetry["energy_j"] == pytest.approx(40.0 * sum(r.step_time.samples_s), rel=0.05)  # type: ignore[union-attr]
    assert r.samples_per_s_per_w == pytest.approx(r.samples_per_s / r.power_w)  # type: ignore[operator]


def test_no_sensor_and_no_tdp_is_unavailable_with_the_reason() -> None:
    r = measure(_built(), "infer", "fp32", 2, TINY_BUDGET,
                telemetry=TelemetrySetup(backend=Unavailable("no sensor in this test")))
    assert r.status == "ok" and r.energy_source == "unavailable"
    assert r.power_w is None and r.energy_j_per_sample is None and r.samples_per_s_per_w is None
    assert "no sensor in this test" in (r.energy_basis or "")
    assert r.step_time is not None and r.step_time.n <= TINY_BUDGET.max_steps  # nothing to extend for


def test_a_portable_setup_builds_its_own_backend_and_idle_baseline_is_measured() -> None:
    from dlgpu.catalog import device_facts as facts_of

    f = facts_of(CPU, load_catalog())
    setup = TelemetrySetup(tdp_w=f.tdp_w, tdp_source=f.tdp_basis if f.tdp_w else None)
    backend, owned = setup.open(CPU)
    assert owned
    try:
        idle = idle_baseline(backend, CPU, duration_s=0.15)
    finally:
        backend.close()
    assert idle.duration_s >= 0.15 and idle.samples
    assert TelemetrySetup(backend=backend, idle=idle).portable().backend is None


def test_the_isolated_child_samples_with_its_own_backend() -> None:
    from dlgpu.measure.isolated import measure_isolated

    setup = TelemetrySetup(period_s=0.05, tdp_w=10.0, tdp_source="a test TDP", backend=Unavailable("not sent"))
    (r,) = list(measure_isolated("test_resnet", {"image_size": 16, "num_classes": 10}, CPU, "infer", ["fp32"], 2,
                                 TINY_BUDGET, {}, {}, 1, "note", telemetry=setup))
    assert r.status == "ok" and r.settings["isolated_process"]
    assert r.energy_source == ("measured-rapl" if _rapl_readable() else "estimated")
    assert r.telemetry is not None and r.telemetry["samples"] and r.telemetry["period_s"] == 0.05
    # the estimate, where there is no sensor, is made from the TDP the parent sent
    assert ("TDP = 10 W (a test TDP)" in (r.energy_basis or "")) == (r.energy_source == "estimated")


def test_timer_extends_to_min_time_and_counts_the_extra_steps() -> None:
    now = [0.0]

    def step() -> None:
        now[0] += 1 / 64  # exact in binary: the sums below are exact

    started: list[float] = []
    b = Budget(warmup_steps=2, min_steps=2, max_steps=3, budget_s=1e9)
    t = Timer(step, clock=lambda: now[0]).run(b, min_time_s=8 / 64, on_timed_start=lambda: started.append(now[0]))
    assert started == [2 / 64]  # after the warm-up
    # Identical steps: the median's interval has zero width at 3 samples (the first with one), so the budget's own
    # stop is "ci" after 3; 5 more steps reach the 8/64 s window.
    assert len(t.samples_s) == 8 and t.extended_steps == 5 and t.stop_reason == "ci"
    plain = Timer(step, clock=lambda: now[0]).run(b)
    assert len(plain.samples_s) == 3 and plain.extended_steps == 0 and plain.stop_reason == "ci"


# --- catalog facts ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "gib", "gpu_id"), [
    ("NVIDIA H100 80GB HBM3", 79.1, "h100-sxm5-80gb"),
    ("NVIDIA H100 PCIe", 79.6, "h100-pcie-80gb"),
    ("NVIDIA A100-SXM4-40GB", 39.4, "a100-sxm4-40gb"),
    ("NVIDIA A100 80GB PCIe", 79.1, "a100-pcie-80gb"),
    ("Tesla V100-SXM2-16GB", 15.8, "v100-sxm2-16gb"),
    ("NVIDIA GeForce RTX 4090", 23.6, "rtx-4090"),
    ("NVIDIA A10G", 22.3, "a10g"),
    ("NVIDIA L4", 22.0, "l4"),
    ("NVIDIA TITAN RTX", 23.6, "titan-rtx"),
    ("AMD Instinct MI300X", 191.5, "mi300x"),
    ("NVIDIA H100 NVL", 93.6, None),  # another variant: its memory matches no H100 row
    ("NVIDIA A100-SXM4-80GB MIG 1g.10gb", 9.5, None),  # a partition
    ("AMD Instinct MI250X/MI250", 64.0, None),  # ambiguous
    ("Some Future GPU 9000", 32.0, None),
])
def test_gpu_names_match_catalog_rows(name: str, gib: float, gpu_id: str | None) -> None:
    row, why = match_gpu(name, int(gib * GIB), load_catalog())
    assert (row.id if row else None) == gpu_id, why


def test_a_matched_gpu_gives_its_tdp_and_peaks_and_an_unmatched_one_none() -> None:
    cat = load_catalog()
    dev = DeviceInfo(id="cuda:0", kind="cuda", name="NVIDIA A100-SXM4-40GB", memory_bytes=int(39.4 * GIB),
                     backend="cuda")
    f = device_facts(dev, cat)
    a100 = cat.gpu("a100-sxm4-40gb")
    assert f.matched_id == "a100-sxm4-40gb" and f.tdp_w == a100.tdp_w and a100.source in f.tdp_basis
    assert f.peak("bf16")[0] == a100.bf16_flops_per_s and f.peak("fp16")[0] == a100.fp16_fp32acc_flops_per_s
    unknown = device_facts(DeviceInfo(id="cuda:0", kind="cuda", name="Mystery GPU X1", memory_bytes=GIB,
                                      backend="cuda"), cat)
    assert unknown.tdp_w is None and unknown.peak("fp32")[0] is None and "no TDP" in unknown.tdp_basis


def test_an_unmatched_cpu_tdp_is_the_median_per_core_of_similar_catalog_rows() -> None:
    cat = load_catalog()
    xeons = [c for c in cat.cpus if c.name.startswith("Intel Xeon") and c.tdp_w]
    tdp, basis = estimate_cpu_tdp("Intel(R) Xeon(R) Processor", 2, ["avx512f"], cat)
    import statistics

    assert tdp == pytest.approx(2 * statistics.median(c.tdp_w / c.cores for c in xeons))  # type: ignore[operator]
    assert f"{len(xeons)} catalog CPUs whose names begin 'intel xeon'" in basis
    assert all(c.id in basis for c in xeons)
    # No name in common: the rows with the same SIMD level.
    _, basis = estimate_cpu_tdp("Weird CPU", 4, ["avx2", "fma"], cat)
    assert "same SIMD level" in basis
    assert estimate_cpu_tdp("Intel Xeon", 0, [], cat)[0] is None
    # A CPU the catalog has keeps its own TDP.
    row = cat.cpu("epyc-7763")
    f = device_facts(DeviceInfo(id="cpu", kind="cpu", name="AMD EPYC 7763 64-Core Processor", memory_bytes=None,
                                backend="cpu", physical_cores=64, details={"flags": ["avx2", "fma"]}), cat)
    assert f.matched_id == "epyc-7763" and f.tdp_w == row.tdp_w and "TDP of catalog CPU epyc-7763" in f.tdp_basis


def test_an_unknown_amx_cpu_gets_an_amx_bf16_peak_and_others_fall_back_to_fp32() -> None:
    """MFU at bf16 on an AMX CPU no catalog row names is taken against its AMX peak (cores x clock x 1024, the
    figure cpus.csv's AMX rows are computed with), not against its FP32 peak (which gave MFU over 100%)."""
    cat = load_catalog()
    details = {"flags": ["avx512f", "avx512_bf16", "amx_bf16", "amx_tile"], "max_clock_hz": 2.6e9}
    f = device_facts(DeviceInfo(id="cpu", kind="cpu", name="Intel(R) Xeon(R) Processor", memory_bytes=None,
                                backend="cpu", physical_cores=2, details=details), cat)
    bf16, basis = f.peak("bf16")
    assert bf16 == pytest.approx(2 * 2.6e9 * 1024) and "AMX" in basis
    assert f.peak("fp32")[0] == pytest.approx(2 * 2.6e9 * 64)
    no_amx = device_facts(DeviceInfo(id="cpu", kind="cpu", name="Intel(R) Xeon(R) Processor", memory_bytes=None,
                                     backend="cpu", physical_cores=2,
                                     details={"flags": ["avx512f", "avx512_bf16"], "max_clock_hz": 2.6e9}), cat)
    assert no_amx.peak("bf16")[0] == no_amx.peak("fp32")[0] and "FP32 peak is used" in no_amx.peak("bf16")[1]


# --- the CLI ----------------------------------------------------------------------------------------------

def test_cli_bench_json_has_every_field_and_the_table_marks_estimates(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", "--workload", "test_resnet", "--device", "cpu", "--quick", "--json", "--precision", "fp32",
                 "--task", "train", "--budget", "0.05", "--telemetry-period", "0.05"])
    assert code == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    (r,) = doc["results"]
    assert all(k in r for k in FIELDS)
    assert r["energy_source"] in ("estimated", "measured-rapl")
    assert r["telemetry"]["samples"] and r["telemetry"]["period_s"] == 0.05
    assert doc["config"]["telemetry_period_s"] == 0.05
    for col in ("power", "J/sample", "samples/s/W", "util", "MFU"):
        assert col in captured.err
    # the table's footnote marks an estimate, and only an estimate
    assert ("estimated from TDP x utilization" in captured.err) == (r["energy_source"] == "estimated")


def test_bench_result_defaults_keep_old_documents_readable() -> None:
    r = BenchResult(workload="w", task="train", device="cpu", precision="fp32", batch_size=1, overrides={},
                    status="skipped")
    d = r.to_dict()
    assert d["energy_source"] is None and d["mfu"] is None and d["telemetry"] is None
