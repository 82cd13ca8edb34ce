"""Telemetry: pure energy arithmetic, the RAPL reader on a fake powercap tree, NVML and amdsmi through fakes at
their module seams, and the real sampling thread on this machine's CPU with the labelled estimate."""

from __future__ import annotations

import ast
import itertools
import math
import os
import subprocess
import sys
import threading
import time
import types
from collections import namedtuple
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dlgpu.measure import telemetry
from dlgpu.measure.mfu import mfu
from dlgpu.measure.telemetry import (
    ESTIMATE_IDLE_SHARE,
    MIN_WINDOW_UPDATES,
    AmdSmiBackend,
    CpuSensors,
    EstimatedBackend,
    NvmlBackend,
    RaplBackend,
    RaplReader,
    RaplUnavailable,
    Sample,
    Telemetry,
    TelemetryResult,
    Unavailable,
    amdsmi_backend,
    clock_event_reasons,
    counter_delta,
    counter_total,
    efficiency,
    nvml_backend,
    nvml_index_for_cuda,
    rapl_zones,
    telemetry_backend,
    trapezoid_energy_j,
    visible_nvml_indices,
)
from dlgpu.results import DeviceInfo

GIB = 1024**3
CPU = DeviceInfo(id="cpu", kind="cpu", name="test CPU", memory_bytes=None, backend="cpu")


class Clock:
    """A settable clock for the sampler: the thread never fires within a test's microseconds at period 1 s."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# --- pure arithmetic -------------------------------------------------------------------------------------

def test_trapezoid_is_exact_for_constant_power_and_for_a_ramp() -> None:
    assert trapezoid_energy_j([0.0, 0.5, 1.0, 2.0], [50.0] * 4) == pytest.approx(100.0)
    # P(t) = 10 + 20 t over [0, 4] s: 10*4 + 10*16 = 200 J, exact on any grid (P is linear).
    ts = [0.0, 0.3, 1.0, 2.5, 4.0]
    assert trapezoid_energy_j(ts, [10 + 20 * t for t in ts]) == pytest.approx(200.0, abs=1e-12)
    assert trapezoid_energy_j([1.0], [80.0]) == 0.0
    with pytest.raises(ValueError):
        trapezoid_energy_j([0.0, 1.0], [1.0])
    with pytest.raises(ValueError):
        trapezoid_energy_j([0.0, 1.0, 0.5], [1.0, 1.0, 1.0])


def test_counter_delta_handles_wraparound() -> None:
    assert counter_delta(100, 250) == 150
    top = 262_143_328_850
    assert counter_delta(top - 100, 50, top) == 150
    assert counter_total([top - 300, top - 100, 200, 900], top) == 200 + 300 + 700
    with pytest.raises(ValueError):
        counter_delta(250, 100)  # went backwards with no known range


def _counter_result(energy_j: tuple[float, ...], times: tuple[float, ...], source: Any = "measured-nvml",
                    powers: tuple[float | None, ...] | None = None) -> TelemetryResult:
    powers = powers or (None,) * len(times)
    return TelemetryResult(
        source=source, basis="test", energy_method="counter",
        samples=tuple(Sample(t, power_w=p, energy_j=e) for t, e, p in zip(times, energy_j, powers, strict=True)),
        window_start_s=times[0], window_end_s=times[-1], period_s=0.1, min_window_s=1.0)


def test_idle_baseline_is_subtracted() -> None:
    idle = _counter_result((1000.0, 1080.0), (0.0, 4.0))  # 80 J over 4 s = 20 W
    run = _counter_result((5000.0, 5050.0, 5100.0), (10.0, 11.0, 12.0), powers=(None, 60.0, 40.0))
    assert run.energy_j == 100.0 and run.avg_power_w == 50.0 and run.peak_power_w == 60.0
    assert run.net_energy_j is None
    net = run.with_idle(idle)
    assert net.idle_power_w == 20.0
    assert net.idle_energy_j == 40.0
    assert net.net_energy_j == 60.0
    assert net.net_avg_power_w == 30.0
    assert "4 s idle window" in (net.idle_basis or "")
    with pytest.raises(ValueError):
        run.with_idle(_counter_result((0.0, 8.0), (0.0, 4.0), source="measured-rapl"))


def test_efficiency_figures() -> None:
    res = _counter_result((0.0, 100.0), (0.0, 2.0))  # 100 J in 2 s = 50 W
    eff = efficiency(res, steps=10, samples=320, flops=4e12, peak_flops_per_s=1e13)
    assert eff.energy_j_per_step == 10.0
    assert eff.energy_j_per_sample == pytest.approx(0.3125)
    assert eff.samples_per_s_per_w == pytest.approx(160 / 50)
    assert eff.achieved_flops_per_s == 2e12
    assert eff.mfu == pytest.approx(0.2)
    net = efficiency(res.with_idle(_counter_result((0.0, 40.0), (0.0, 2.0))), steps=10, samples=320,
                     samples_per_s=150.0, net=True)
    assert net.energy_j == 60.0 and net.energy_j_per_step == 6.0
    assert net.samples_per_s_per_w == pytest.approx(150 / 30)
    assert net.mfu is None
    assert mfu(3e14, 1e15) == pytest.approx(0.3)


def test_too_short_window_reports_the_minimum() -> None:
    res = _counter_result((0.0, 1.0), (0.0, 0.4))
    assert res.too_short and res.min_window_s == 1.0
    assert not _counter_result((0.0, 1.0), (0.0, 1.5)).too_short


# --- RAPL on a fake powercap tree ------------------------------------------------------------------------

MAX_UJ = 262_143_328_850


def _zone(root: Path, dirname: str, name: str, energy_uj: int) -> Path:
    z = root / dirname
    z.mkdir(parents=True)
    (z / "name").write_text(name + "\n")
    (z / "energy_uj").write_text(f"{energy_uj}\n")
    (z / "max_energy_range_uj").write_text(f"{MAX_UJ}\n")
    return z


def _fake_powercap(root: Path) -> dict[str, Path]:
    zones = {
        "pkg0": _zone(root, "intel-rapl:0", "package-0", MAX_UJ - 1_000_000),
        "core0": _zone(root, "intel-rapl:0:0", "core", 7_000_000),  # inside package 0: must not be added
        "pkg1": _zone(root, "intel-rapl:1", "package-1", 5_000_000),
        "psys": _zone(root, "intel-rapl:2", "psys", 9_000_000),  # whole platform: not a package
        "mmio": _zone(root, "intel-rapl-mmio:0", "package-0", 3_000_000),  # repeats package 0
    }
    (root / "intel-rapl:3").symlink_to(root / "intel-rapl:1")  # the same zone twice
    return zones


def _set(zone: Path, energy_uj: int) -> None:
    (zone / "energy_uj").write_text(f"{energy_uj}\n")


CpuTimes = namedtuple("CpuTimes", "user nice system idle iowait irq softirq steal guest guest_nice")


class FakeCpuTimes:
    def __init__(self) -> None:
        self.busy = 0.0
        self.idle = 0.0

    def add(self, busy: float, idle: float) -> None:
        self.busy += busy
        self.idle += idle

    def __call__(self) -> CpuTimes:
        return CpuTimes(self.busy, 0.0, 0.0, self.idle, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


def test_rapl_sums_packages_only_dedupes_and_survives_wraparound(tmp_path: Path) -> None:
    zones = _fake_powercap(tmp_path)
    assert [z.name for z in rapl_zones(tmp_path)] == ["package-0", "package-1"]
    cpu = FakeCpuTimes()
    backend = RaplBackend(tmp_path, sensors=CpuSensors(cpu_times=cpu, memory_used=lambda: 3 * GIB))
    clock = Clock(100.0)
    tel = Telemetry(backend, period_s=1.0, clock=clock)
    tel.start()
    _set(zones["pkg0"], 2_000_000)  # wrapped: advanced 1_000_000 + 2_000_000
    _set(zones["pkg1"], 9_000_000)  # advanced 4_000_000
    _set(zones["core0"], 99_000_000)
    _set(zones["psys"], 99_000_000)
    _set(zones["mmio"], 99_000_000)
    cpu.add(busy=3.0, idle=1.0)
    clock.now = 102.0
    res = tel.stop()
    assert res.source == "measured-rapl" and res.measured
    assert res.energy_method == "counter"
    assert res.energy_j == pytest.approx(7.0)
    assert res.avg_power_w == pytest.approx(3.5)
    assert res.samples[-1].power_w == pytest.approx(3.5)
    assert res.mean_utilization_pct == pytest.approx(75.0)
    assert res.samples[-1].memory_used_bytes == 3 * GIB
    assert "package-0, package-1" in res.basis and "wraparound" in res.basis
    assert res.throttled is None  # RAPL has no throttle reasons


def test_rapl_reader_accumulates_across_several_wraps(tmp_path: Path) -> None:
    z = _zone(tmp_path, "intel-rapl:0", "package-0", MAX_UJ - 10)
    reader = RaplReader(tmp_path)
    for value, total in ((5, 15), (MAX_UJ - 5, MAX_UJ + 5), (20, MAX_UJ + 30)):
        _set(z, value)
        assert reader.advance() == total


def test_rapl_counter_unreadable_mid_window_gives_no_energy_rather_than_a_wrong_one(tmp_path: Path) -> None:
    z = _zone(tmp_path, "intel-rapl:0", "package-0", 1_000_000)
    backend = RaplBackend(tmp_path, sensors=CpuSensors(cpu_times=FakeCpuTimes(), memory_used=lambda: None))
    clock = Clock(0.0)
    tel = Telemetry(backend, period_s=1.0, clock=clock)
    tel.start()
    (z / "energy_uj").unlink()
    clock.now = 2.0
    res = tel.stop()
    assert res.samples[-1].energy_j is None and res.energy_j is None
    _set(z, 5_000_000)  # readable again: the next window starts from the current reading
    tel.start()
    _set(z, 6_000_000)
    clock.now = 3.0
    assert tel.stop().energy_j == pytest.approx(1.0)


def test_rapl_missing_tree_or_no_package_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(RaplUnavailable, match="no powercap tree"):
        rapl_zones(tmp_path / "absent")
    _zone(tmp_path, "intel-rapl:0:0", "core", 1)
    with pytest.raises(RaplUnavailable, match="no RAPL package zone"):
        rapl_zones(tmp_path)


def test_rapl_unreadable_file_is_unavailable_with_the_reason(tmp_path: Path) -> None:
    zones = _fake_powercap(tmp_path)
    (zones["pkg1"] / "energy_uj").unlink()
    (zones["pkg1"] / "energy_uj").mkdir()  # unreadable even for root
    backend = telemetry_backend(CPU, powercap_root=tmp_path)
    assert isinstance(backend, Unavailable)
    assert "cannot read" in (backend.reason or "") and "intel-rapl:1/energy_uj" in (backend.reason or "")
    assert "no TDP given" in (backend.reason or "")


def test_rapl_permission_denied_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_powercap(tmp_path)
    real = Path.read_text

    def read_text(self: Path, *args: Any, **kwargs: Any) -> str:
        if self.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", read_text)
    backend = telemetry_backend(CPU, powercap_root=tmp_path)
    assert isinstance(backend, Unavailable)
    assert "permission denied" in (backend.reason or "") and "Linux 5.10" in (backend.reason or "")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads a chmod-000 file anyway")
def test_rapl_chmod_000_is_unavailable_then_estimated_with_tdp(tmp_path: Path) -> None:
    zones = _fake_powercap(tmp_path)
    (zones["pkg0"] / "energy_uj").chmod(0)
    try:
        backend = telemetry_backend(CPU, powercap_root=tmp_path)
        assert isinstance(backend, Unavailable) and "permission denied" in (backend.reason or "")
        est = telemetry_backend(CPU, powercap_root=tmp_path, tdp_w=95.0, tdp_source="catalog row X")
        assert isinstance(est, EstimatedBackend) and "permission denied" in est.basis
    finally:
        (zones["pkg0"] / "energy_uj").chmod(0o644)


# --- NVML through a fake module --------------------------------------------------------------------------

class FakeNVMLError(Exception):
    def __init__(self, value: int) -> None:
        super().__init__(f"NVML error {value}")
        self.value = value


NOT_SUPPORTED = 3


@dataclass
class FakeGpu:
    uuid: str
    arch: int = 9  # NVML_DEVICE_ARCH_HOPPER
    energy_mj: int = 0
    power_mw: int = 0
    instant_power: bool = True
    power_supported: bool = True
    util_gpu: int = 0
    mem_used: int = 0
    sm_mhz: int = 0
    mem_mhz: int = 0
    temp_c: int = 0
    reasons: int = 0


class FakeNvml:
    """The subset of pynvml the backend calls; energy in mJ, power in mW, clocks in MHz, as NVML gives them."""

    NVML_CLOCK_SM = 1
    NVML_CLOCK_MEM = 2
    NVML_TEMPERATURE_GPU = 0
    NVML_DEVICE_ARCH_VOLTA = 5

    def __init__(self, gpus: list[FakeGpu], init_error: Exception | None = None, bytes_uuid: bool = False) -> None:
        self.gpus = gpus
        self.init_error = init_error
        self.bytes_uuid = bytes_uuid
        self.inits = 0
        self.shutdowns = 0

    def nvmlInit(self) -> None:
        if self.init_error:
            raise self.init_error
        self.inits += 1

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> FakeGpu:
        return self.gpus[i]

    def nvmlDeviceGetUUID(self, h: FakeGpu) -> str | bytes:
        return h.uuid.encode() if self.bytes_uuid else h.uuid

    def nvmlDeviceGetArchitecture(self, h: FakeGpu) -> int:
        return h.arch

    def nvmlDeviceGetTotalEnergyConsumption(self, h: FakeGpu) -> int:
        if h.arch < 5:
            raise FakeNVMLError(NOT_SUPPORTED)
        return h.energy_mj

    def nvmlDeviceGetFieldValues(self, h: FakeGpu, ids: list[Any]) -> list[Any]:
        if not (h.instant_power and h.power_supported):
            raise FakeNVMLError(NOT_SUPPORTED)
        assert ids == [(186, 0)]  # NVML_FI_DEV_POWER_INSTANT, NVML_POWER_SCOPE_GPU
        return [types.SimpleNamespace(nvmlReturn=0, valueType=1, value=types.SimpleNamespace(uiVal=h.power_mw))]

    def nvmlDeviceGetPowerUsage(self, h: FakeGpu) -> int:
        if not h.power_supported:
            raise FakeNVMLError(NOT_SUPPORTED)
        return h.power_mw

    def nvmlDeviceGetUtilizationRates(self, h: FakeGpu) -> Any:
        return types.SimpleNamespace(gpu=h.util_gpu, memory=0)

    def nvmlDeviceGetMemoryInfo(self, h: FakeGpu) -> Any:
        return types.SimpleNamespace(used=h.mem_used, total=80 * GIB, free=80 * GIB - h.mem_used)

    def nvmlDeviceGetClockInfo(self, h: FakeGpu, kind: int) -> int:
        return h.sm_mhz if kind == self.NVML_CLOCK_SM else h.mem_mhz

    def nvmlDeviceGetTemperature(self, h: FakeGpu, sensor: int) -> int:
        return h.temp_c

    def nvmlDeviceGetCurrentClocksEventReasons(self, h: FakeGpu) -> int:
        return h.reasons


def test_clock_event_reason_names() -> None:
    assert clock_event_reasons(0) == ()
    assert clock_event_reasons(0x4 | 0x40 | 0x200) == ("sw_power_cap", "hw_thermal_slowdown", "unknown_0x200")


def test_nvml_energy_counter_power_clocks_and_throttling() -> None:
    gpu = FakeGpu("GPU-aaaa0000-1111", energy_mj=5_000_000, power_mw=250_000, util_gpu=97, mem_used=12 * GIB,
                  sm_mhz=1980, mem_mhz=2619, temp_c=71, reasons=0x4 | 0x1)
    fake = FakeNvml([gpu])
    backend = nvml_backend(0, nvml=fake, environ={})
    assert isinstance(backend, NvmlBackend)
    assert backend.energy_method == "counter" and backend.power_kind == "instant"
    clock = Clock(10.0)
    tel = Telemetry(backend, period_s=1.0, clock=clock, device="cuda:0")
    tel.start()
    gpu.energy_mj += 600_000  # 600 J
    gpu.power_mw, gpu.reasons, gpu.util_gpu = 310_000, 0x40, 99
    clock.now = 12.0
    res = tel.stop()
    assert res.source == "measured-nvml" and res.measured and res.device == "cuda:0"
    assert res.energy_j == pytest.approx(600.0)
    assert res.avg_power_w == pytest.approx(300.0)
    assert res.peak_power_w == pytest.approx(310.0)
    first = res.samples[0]
    assert first.power_w == 250.0 and first.energy_j == 5000.0 and first.utilization_pct == 97.0
    assert first.memory_used_bytes == 12 * GIB
    assert first.core_clock_hz == 1.98e9 and first.mem_clock_hz == 2.619e9 and first.temperature_c == 71.0
    assert first.throttle_reasons == ("gpu_idle", "sw_power_cap")
    assert res.throttled is True
    assert res.throttle_reasons == ("gpu_idle", "hw_thermal_slowdown", "sw_power_cap")
    assert res.mean_utilization_pct == 99.0  # the first sample closes no interval
    assert res.min_window_s == pytest.approx(1.0) and not res.too_short
    assert "energy counter" in res.basis
    backend.close()
    backend.close()
    assert fake.shutdowns == 1


def test_nvml_pre_volta_integrates_average_power_and_needs_long_windows() -> None:
    gpu = FakeGpu("GPU-aaaa0000-1111", arch=4, power_mw=100_000, instant_power=False, reasons=0x1)
    backend = nvml_backend(0, nvml=FakeNvml([gpu]), environ={})
    assert isinstance(backend, NvmlBackend)
    assert backend.energy_method == "trapezoid" and backend.power_kind == "average"
    assert "before Volta" in (backend.reason or "")
    clock = Clock(0.0)
    tel = Telemetry(backend, period_s=1.0, clock=clock)
    tel.start()
    gpu.power_mw = 200_000
    clock.now = 2.0
    res = tel.stop()
    assert res.energy_j == pytest.approx(300.0)  # 100 -> 200 W linearly over 2 s
    assert res.throttled is False  # gpu_idle is not throttling
    assert res.min_window_s == pytest.approx(10.0) and res.too_short
    assert "1 s average" in res.basis


def test_gpu_without_power_is_estimated_from_nvml_utilization_with_a_tdp() -> None:
    gpu = FakeGpu("GPU-aaaa0000-1111", arch=4, power_supported=False, util_gpu=50)
    dev = DeviceInfo(id="cuda:0", kind="cuda", name="fake", memory_bytes=None, backend="cuda")
    assert isinstance(telemetry_backend(dev, nvml=FakeNvml([gpu]), environ={}), Unavailable)
    backend = telemetry_backend(dev, nvml=FakeNvml([gpu]), environ={}, tdp_w=300.0, tdp_source="catalog gpus.csv")
    assert isinstance(backend, EstimatedBackend) and backend.source == "estimated"
    backend.start(0.0)
    s = backend.read(2.0)
    assert s.utilization_pct == 50.0
    assert s.power_w == pytest.approx(0.1 * 300 + 0.5 * 0.9 * 300)
    assert s.energy_j == pytest.approx(2 * s.power_w)
    assert "estimated, not measured" in backend.basis and "300 W (catalog gpus.csv)" in backend.basis
    assert "reports no power" in backend.basis


UUIDS = ["GPU-aaaa0000-1111", "GPU-bbbb0000-2222", "GPU-bbbc0000-3333"]


@pytest.mark.parametrize(("visible", "order"), [
    (None, [0, 1, 2]),
    ("2,0", [2, 0]),
    (" 1 , 2 ", [1, 2]),
    ("0,-1,2", [0]),  # parsing stops at the first invalid entry
    ("0,7,1", [0]),  # ... and at an index out of range
    ("1,1", []),  # a repeated device hides all
    ("", []),
    ("GPU-bbbc,GPU-aaaa", [2, 0]),  # unique UUID prefixes
    ("GPU-aaaa0000-1111,GPU-zzzz,GPU-bbbc", [0]),
    ("GPU-bbb", []),  # ambiguous prefix
])
def test_cuda_visible_devices_parsing(visible: str | None, order: list[int]) -> None:
    assert visible_nvml_indices(visible, UUIDS) == order


def test_cuda_index_to_nvml_by_visible_devices_and_by_uuid() -> None:
    assert nvml_index_for_cuda(0, UUIDS, "2,0") == 2
    assert nvml_index_for_cuda(1, UUIDS, "2,0") == 0
    assert nvml_index_for_cuda(1, UUIDS, "GPU-bbbc,GPU-aaaa") == 0
    with pytest.raises(LookupError, match="not among the 2"):
        nvml_index_for_cuda(2, UUIDS, "2,0")
    # torch's properties give the UUID without "GPU-": it wins over CUDA_VISIBLE_DEVICES
    assert nvml_index_for_cuda(0, UUIDS, "2,0", cuda_uuid="bbbb0000-2222") == 1
    assert nvml_index_for_cuda(0, UUIDS, None, cuda_uuid="GPU-BBBC0000-3333") == 2
    with pytest.raises(LookupError, match="no NVML device"):
        nvml_index_for_cuda(0, UUIDS, None, cuda_uuid="cccc")
    with pytest.raises(LookupError, match="MIG"):
        nvml_index_for_cuda(0, UUIDS, "MIG-0c2a6d3a-1111")


def test_nvml_backend_maps_through_the_environment() -> None:
    gpus = [FakeGpu(u, energy_mj=1000 * (i + 1), power_mw=100_000) for i, u in enumerate(UUIDS)]
    b = nvml_backend(0, nvml=FakeNvml(gpus, bytes_uuid=True), environ={"CUDA_VISIBLE_DEVICES": "2,0"})
    assert isinstance(b, NvmlBackend) and b.handle is gpus[2] and "NVML 2" in b.label
    b = nvml_backend(0, nvml=FakeNvml(gpus), environ={"CUDA_VISIBLE_DEVICES": "GPU-bbbb"})
    assert isinstance(b, NvmlBackend) and b.handle is gpus[1]
    dev = DeviceInfo(id="cuda:1", kind="cuda", name="fake", memory_bytes=None, backend="cuda",
                     details={"uuid": "aaaa0000-1111"})
    b2 = telemetry_backend(dev, nvml=FakeNvml(gpus), environ={"CUDA_VISIBLE_DEVICES": "1,2"})
    assert isinstance(b2, NvmlBackend) and b2.handle is gpus[0]
    fake = FakeNvml(gpus)
    gone = nvml_backend(3, nvml=fake, environ={})
    assert isinstance(gone, Unavailable) and "not among the 3" in (gone.reason or "")
    assert fake.shutdowns == 1
    mig = nvml_backend(0, nvml=FakeNvml(gpus), environ={"CUDA_VISIBLE_DEVICES": "MIG-0c2a6d3a"})
    assert isinstance(mig, Unavailable) and "MIG" in (mig.reason or "")


def test_nvml_missing_library_or_driver_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    b = nvml_backend(0, environ={})
    assert isinstance(b, Unavailable) and "nvidia-ml-py" in (b.reason or "")
    b = nvml_backend(0, nvml=FakeNvml([], init_error=FakeNVMLError(9)), environ={})
    assert isinstance(b, Unavailable) and "nvmlInit failed" in (b.reason or "")
    tel = Telemetry(b, clock=Clock(5.0))
    with tel:
        pass
    res = tel.result
    assert res.source == "unavailable" and not res.measured
    assert res.samples == () and res.energy_j is None and res.avg_power_w is None and res.throttled is None
    assert not res.too_short and res.min_window_s == 0.0
    assert "nvmlInit failed" in (res.reason or "")


def test_vendor_libraries_are_imported_lazily_and_their_absence_is_no_error() -> None:
    pkg = Path(telemetry.__file__).parent
    for f in pkg.glob("*.py"):
        for node in ast.parse(f.read_text()).body:  # module level only: imports inside functions are lazy
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.split(".")[0] in ("pynvml", "amdsmi") for n in names), f"{f.name} imports {names}"
    code = ("import sys; sys.modules['pynvml'] = None; sys.modules['amdsmi'] = None\n"
            "import dlgpu.measure.telemetry as t\n"
            "assert isinstance(t.nvml_backend(0), t.Unavailable)\n"
            "assert isinstance(t.amdsmi_backend(0), t.Unavailable)\n")
    subprocess.run([sys.executable, "-c", code], check=True)


# --- amdsmi through a fake module ------------------------------------------------------------------------

@dataclass
class FakeAmdGpu:
    hip_id: int
    uuid: str
    accumulator: int = 0
    current_power: Any = "N/A"
    average_power: Any = 400


class FakeAmdSmi:
    AmdSmiClkType = types.SimpleNamespace(GFX=0, MEM=4)
    AmdSmiTemperatureType = types.SimpleNamespace(HOTSPOT=1)
    AmdSmiTemperatureMetric = types.SimpleNamespace(CURRENT=0)
    RESOLUTION_UJ = 15.3

    def __init__(self, gpus: list[FakeAmdGpu]) -> None:
        self.gpus = gpus
        self.shutdowns = 0

    def amdsmi_init(self) -> None:
        pass

    def amdsmi_shut_down(self) -> None:
        self.shutdowns += 1

    def amdsmi_get_processor_handles(self) -> list[FakeAmdGpu]:
        return self.gpus

    def amdsmi_get_gpu_enumeration_info(self, h: FakeAmdGpu) -> dict[str, Any]:
        return {"drm_card": h.hip_id, "hip_id": h.hip_id, "hip_uuid": h.uuid}

    def amdsmi_get_gpu_device_uuid(self, h: FakeAmdGpu) -> str:
        return h.uuid

    def amdsmi_get_energy_count(self, h: FakeAmdGpu) -> dict[str, Any]:
        return {"energy_accumulator": h.accumulator, "counter_resolution": self.RESOLUTION_UJ, "timestamp": 0}

    def amdsmi_get_power_info(self, h: FakeAmdGpu) -> dict[str, Any]:
        return {"current_socket_power": h.current_power, "average_socket_power": h.average_power,
                "socket_power": h.average_power, "power_limit": 750}

    def amdsmi_get_gpu_activity(self, h: FakeAmdGpu) -> dict[str, Any]:
        return {"gfx_activity": 88, "umc_activity": 40, "mm_activity": "N/A"}

    def amdsmi_get_gpu_vram_usage(self, h: FakeAmdGpu) -> dict[str, Any]:
        return {"vram_total": 196_592, "vram_used": 1024}

    def amdsmi_get_clock_info(self, h: FakeAmdGpu, kind: int) -> dict[str, Any]:
        return {"clk": 2100 if kind == self.AmdSmiClkType.GFX else 1300}

    def amdsmi_get_temp_metric(self, h: FakeAmdGpu, sensor: int, metric: int) -> int:
        assert (sensor, metric) == (1, 0)
        return 65


def test_amdsmi_energy_accumulator_power_and_mapping() -> None:
    gpus = [FakeAmdGpu(0, "u-zero", accumulator=1_000_000), FakeAmdGpu(1, "u-one", accumulator=1_000_000)]
    fake = FakeAmdSmi(gpus)
    backend = amdsmi_backend(0, amdsmi=fake, environ={"HIP_VISIBLE_DEVICES": "1"})
    assert isinstance(backend, AmdSmiBackend) and backend.handle is gpus[1]
    assert backend.energy_method == "counter"
    clock = Clock(0.0)
    tel = Telemetry(backend, period_s=1.0, clock=clock)
    tel.start()
    gpus[1].accumulator += 2_000_000  # x 15.3 µJ = 30.6 J
    gpus[1].current_power = 450
    clock.now = 1.0
    res = tel.stop()
    assert res.source == "measured-amdsmi" and res.measured
    assert res.energy_j == pytest.approx(30.6)
    assert res.samples[0].power_w == 400.0  # current_socket_power was "N/A": the average is used
    assert res.samples[-1].power_w == 450.0
    s = res.samples[0]
    assert s.utilization_pct == 88.0 and s.memory_used_bytes == 1024 * 1024**2
    assert s.core_clock_hz == 2.1e9 and s.mem_clock_hz == 1.3e9 and s.temperature_c == 65.0
    assert res.throttled is None
    backend.close()
    assert fake.shutdowns == 1
    dev = DeviceInfo(id="cuda:0", kind="cuda", name="fake", memory_bytes=None, backend="rocm",
                     details={"uuid": "u-zero"})
    by_uuid = telemetry_backend(dev, amdsmi=FakeAmdSmi(gpus), environ={"HIP_VISIBLE_DEVICES": "1"})
    assert isinstance(by_uuid, AmdSmiBackend) and by_uuid.handle is gpus[0]
    out = amdsmi_backend(2, amdsmi=FakeAmdSmi(gpus), environ={})
    assert isinstance(out, Unavailable) and "beyond the 2" in (out.reason or "")


def test_amdsmi_missing_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "amdsmi", None)
    b = amdsmi_backend(0, environ={})
    assert isinstance(b, Unavailable) and "amdsmi is not importable" in (b.reason or "")


# --- the estimate and the real sampling thread -----------------------------------------------------------

def test_estimate_formula_and_model_integral() -> None:
    cpu = FakeCpuTimes()
    est = EstimatedBackend(CpuSensors(cpu_times=cpu, memory_used=lambda: None), tdp_w=100.0,
                           tdp_source="catalog cpus.csv row")
    assert est.power_w(0.0) == pytest.approx(100 * ESTIMATE_IDLE_SHARE)
    assert est.power_w(100.0) == pytest.approx(100.0)
    assert est.power_w(50.0) == pytest.approx(10 + 0.5 * 90)
    samples = [est.start(0.0)]
    cpu.add(busy=1.0, idle=1.0)  # 50% -> 55 W for 1 s
    samples.append(est.read(1.0))
    cpu.add(busy=4.0, idle=0.0)  # 100% -> 100 W for 2 s
    samples.append(est.read(3.0))
    res = TelemetryResult(source=est.source, basis=est.basis, energy_method=est.energy_method,
                          samples=tuple(samples), window_start_s=0.0, window_end_s=3.0, period_s=1.0,
                          min_window_s=0.1)
    assert res.energy_j == pytest.approx(55.0 + 200.0)
    assert res.peak_power_w == pytest.approx(100.0)
    assert res.mean_utilization_pct == pytest.approx((50 * 1 + 100 * 2) / 3)
    assert not res.measured and res.source == "estimated"
    with pytest.raises(ValueError):
        EstimatedBackend(CpuSensors(), tdp_w=0.0, tdp_source="x")
    with pytest.raises(ValueError):
        EstimatedBackend(CpuSensors(), tdp_w=65.0, tdp_source="")
    with pytest.raises(ValueError):
        telemetry_backend(CPU, tdp_w=65.0)


class Recorded:
    """The real backend, recording each call: which method, from which thread, at which clock time. ``enough``
    is set once the sampler's own thread has made ``reads`` periodic reads since the last ``expect``."""

    def __init__(self, inner: EstimatedBackend) -> None:
        self.inner = inner
        self.source, self.basis, self.energy_method = inner.source, inner.basis, inner.energy_method
        self.update_interval_s, self.reason, self.label = inner.update_interval_s, inner.reason, inner.label
        self.calls: list[tuple[str, str, float]] = []
        self.enough = threading.Event()
        self._reads = 0
        self._periodic = 0

    def expect(self, reads: int) -> None:
        self.calls, self._reads, self._periodic = [], reads, 0
        self.enough.clear()

    def _note(self, what: str, t: float) -> None:
        name = threading.current_thread().name
        self.calls.append((what, name, t))
        if name == "dlgpu-telemetry":
            self._periodic += 1
            if self._periodic >= self._reads:
                self.enough.set()

    def start(self, timestamp_s: float) -> Sample:
        self._note("start", timestamp_s)
        return self.inner.start(timestamp_s)

    def read(self, timestamp_s: float) -> Sample:
        self._note("read", timestamp_s)
        return self.inner.read(timestamp_s)

    def close(self) -> None:
        self.inner.close()


def _model_energy(samples: tuple[Sample, ...], idle_w: float) -> float:
    """The estimate's energy over a window, from its samples: each interval's power held over it (the previous
    interval's, or idle before any, where an interval had no utilization)."""
    energy, last_p = 0.0, None
    for a, b in itertools.pairwise(samples):
        held = b.power_w if b.power_w is not None else (last_p if last_p is not None else idle_w)
        energy += held * (b.timestamp_s - a.timestamp_s)
        last_p = b.power_w if b.power_w is not None else last_p
    return energy


def test_sampler_thread_reads_on_its_schedule_with_the_labelled_estimate(tmp_path: Path) -> None:
    """The mechanism, not elapsed time: the window's first and last samples are read by the caller at start and
    stop, every one between by the sampler's own thread, never ahead of its period schedule; stop joins the
    thread (nothing is read after it); and the figures are the estimate's arithmetic over those samples."""
    backend = telemetry_backend(CPU, tdp_w=65.0, tdp_source="test: a TDP the caller passes",
                                powercap_root=tmp_path / "no-powercap")
    assert isinstance(backend, EstimatedBackend)
    rec = Recorded(backend)
    period = 0.02
    tel = Telemetry(rec, period_s=period)
    me = threading.current_thread().name

    def wait_for_reads(_seconds: float) -> None:  # measure_idle's sleep seam: until 3 periodic reads happened
        assert rec.enough.wait(60), "the sampler thread made no periodic reads"

    rec.expect(3)
    idle = tel.measure_idle(0.1, sleep=wait_for_reads)
    assert idle.source == "estimated" and idle.avg_power_w is not None and len(idle.samples) >= 5

    reads = math.ceil(tel.min_window_s / period) + 1  # enough for a window the sensor resolves
    rec.expect(reads)
    with tel:
        x = 0
        while not rec.enough.is_set():  # keep a core busy until the thread has read that many times
            x += 1
    res = tel.result
    calls = list(rec.calls)
    # who read: the caller at start and stop, the sampler thread in between (at least the 5 waited for)
    assert calls[0][:2] == ("start", me) and calls[-1][:2] == ("read", me)
    assert len(calls) >= reads + 2 and all(c[:2] == ("read", "dlgpu-telemetry") for c in calls[1:-1])
    # the samples are those reads, stamped by the clock seam, in order
    assert [s.timestamp_s for s in res.samples] == [c[2] for c in calls]
    assert res.window_start_s == calls[0][2] and res.window_end_s == calls[-1][2]
    assert res.duration_s == res.window_end_s - res.window_start_s
    # the k-th periodic read is never ahead of its schedule: k periods after the window opened
    for k, s in enumerate(res.samples[1:-1], start=1):
        assert s.timestamp_s - res.window_start_s >= k * period - 1e-6, k
    assert res.min_window_s == pytest.approx(max(period, MIN_WINDOW_UPDATES * backend.update_interval_s))
    assert not res.too_short  # follows from the schedule: the last periodic read is >= reads x period in
    # stop joined the thread: it is gone and reads nothing more
    assert "dlgpu-telemetry" not in {t.name for t in threading.enumerate()}
    time.sleep(5 * period)
    assert rec.calls == calls
    # the labelled estimate, and its arithmetic over exactly these samples
    assert res.source == "estimated" and not res.measured and res.energy_method == "model"
    assert "estimated, not measured" in res.basis and "TDP = 65 W (test: a TDP the caller passes)" in res.basis
    assert "psutil" in res.basis and "RAPL unavailable: no powercap tree" in res.basis
    utils = [s for s in res.samples if s.utilization_pct is not None]
    assert utils and all(s.power_w == pytest.approx(backend.power_w(s.utilization_pct)) for s in utils)
    assert all(6.5 - 1e-9 <= s.power_w <= 65.0 + 1e-9 for s in utils)
    assert res.energy_j == pytest.approx(_model_energy(res.samples, backend.idle_w))
    assert res.mean_utilization_pct is not None and res.mean_utilization_pct > 0  # a core was kept busy
    assert res.samples[0].memory_used_bytes and res.samples[0].memory_used_bytes > 0
    assert res.idle_power_w == idle.avg_power_w
    assert res.net_energy_j == pytest.approx(res.energy_j - idle.avg_power_w * res.duration_s)
    assert tel.latest is res.samples[-1]
    d = res.to_dict()
    assert d["source"] == "estimated" and d["measured"] is False and len(d["samples"]) == len(res.samples)
    backend.close()


def test_a_window_shorter_than_the_period_has_no_periodic_read_and_stop_does_not_wait_it_out() -> None:
    rec = Recorded(EstimatedBackend(CpuSensors(), tdp_w=65.0, tdp_source="test"))
    tel = Telemetry(rec, period_s=3600.0)
    rec.expect(1)
    tel.start()
    stopper = threading.Thread(target=tel.stop)
    stopper.start()
    stopper.join(60)  # stop wakes the sampler thread: it does not sleep out its hour
    assert not stopper.is_alive()
    assert [c[0] for c in rec.calls] == ["start", "read"]
    assert all(c[1] != "dlgpu-telemetry" for c in rec.calls) and not rec.enough.is_set()
    assert len(tel.result.samples) == 2


def test_sampler_rejects_misuse() -> None:
    tel = Telemetry(Unavailable("none"))
    with pytest.raises(RuntimeError):
        _ = tel.result
    with pytest.raises(RuntimeError):
        tel.stop()
    tel.start()
    with pytest.raises(RuntimeError):
        tel.start()
    tel.stop()
    with pytest.raises(ValueError):
        Telemetry(Unavailable("none"), period_s=0)


def test_other_device_kinds_are_unavailable() -> None:
    mps = DeviceInfo(id="mps", kind="mps", name="Apple MPS", memory_bytes=None, backend="mps")
    b = telemetry_backend(mps, tdp_w=30.0, tdp_source="x")
    assert isinstance(b, Unavailable) and "mps" in (b.reason or "")
