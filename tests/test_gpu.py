"""On a CUDA GPU, what a CPU-only machine cannot show: the harness times a step to the end of its kernels, reads
the allocator's peak, sets and restores the TF32 switches, measures energy through NVML, and trains fp16 through a
gradient scaler. Every test is marked ``gpu``; the conftest skips them, with the reason, where
``torch.cuda.is_available()`` is False."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from dlgpu import api
from dlgpu.devices import detect
from dlgpu.measure.harness import HarnessContext, build, measure, precision_settings
from dlgpu.measure.timer import Budget, Timer
from dlgpu.results import DeviceInfo
from dlgpu.workloads import StepContext, SupervisedWorkload, TaskFacts, WorkloadSpec
from dlgpu.workloads.base import adamw

pytestmark = pytest.mark.gpu

WIDTH = 4096
BATCH = 4096
BUDGET = Budget(warmup_steps=2, min_steps=5, max_steps=10, budget_s=2.0)


class WideMlp(SupervisedWorkload):
    """Four 4096-wide hidden layers trained with AdamW: at batch 4096 a step is ~1.6 TFLOP in a few dozen kernels,
    so its GPU time dwarfs the host's time to launch it. It records what the harness had set when each step ran."""

    def __init__(self) -> None:
        layers: list[nn.Module] = []
        for _ in range(4):
            layers += [nn.Linear(WIDTH, WIDTH), nn.ReLU()]
        model = nn.Sequential(*layers, nn.Linear(WIDTH, 10))
        super().__init__(model, adamw(model), "adamw")
        self.seen: list[dict[str, Any]] = []
        self.ctx: StepContext | None = None
        self.steps_with_ctx = 0

    def make_batch(self, batch_size: int, device: torch.device, channels_last: bool = False) -> Any:
        return torch.randn(batch_size, WIDTH, device=device), torch.randint(0, 10, (batch_size,), device=device)

    def loss(self, batch: Any) -> torch.Tensor:
        x, y = batch
        out = self.model(x)
        self.seen.append({"matmul_tf32": torch.backends.cuda.matmul.allow_tf32,
                          "cudnn_tf32": torch.backends.cudnn.allow_tf32,
                          "matmul_precision": torch.get_float32_matmul_precision(), "dtype": out.dtype})
        return nn.functional.cross_entropy(out, y)

    def forward(self, batch: Any) -> Any:
        return self.model(batch[0])

    def train_step(self, batch: Any, ctx: StepContext) -> None:
        if ctx is not self.ctx:
            self.ctx, self.steps_with_ctx = ctx, 0
        self.steps_with_ctx += 1
        super().train_step(batch, ctx)


def wide_spec() -> WorkloadSpec:
    return WorkloadSpec(name="wide_mlp", family="test", description="a wide MLP", factory=lambda _p: WideMlp(),
                        batch_size=BATCH, quick_batch_size=BATCH, facts=TaskFacts(dataset="none", source="test"),
                        optimizer="adamw", tiny=True)


@pytest.fixture(scope="module")
def gpu() -> DeviceInfo:
    devices, absent = detect()
    found = [d for d in devices if d.kind == "cuda"]
    assert found, absent.get("cuda")
    return found[0]


def _index(gpu: DeviceInfo) -> int:
    return int(gpu.id.split(":")[1])


def test_a_cuda_step_is_timed_to_the_end_of_its_kernels(gpu: DeviceInfo) -> None:
    built = build(wide_spec(), {}, gpu)
    inst = built.instance
    assert isinstance(inst, WideMlp)
    r = measure(built, "train", "fp32", BATCH, BUDGET)
    assert r.status == "ok", r.reason
    assert r.step_time is not None
    # The same step timed by CUDA events, on the GPU's own clock: the kernels' time.
    ctx = HarnessContext("cuda", "fp32", train=True)
    batch = inst.make_batch(BATCH, torch.device(gpu.id))
    kernel_s = []
    with precision_settings("fp32"):
        for _ in range(5):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize(_index(gpu))
            start.record()
            inst.train_step(batch, ctx)
            ctx.end_step()
            end.record()
            end.synchronize()
            kernel_s.append(start.elapsed_time(end) / 1e3)
        kernels = statistics.median(kernel_s)
        assert kernels > 2e-3  # heavy enough to tell a synchronized timer from one that is not
        # the harness's timer (synchronized before and after each step) sees at least the kernels' time
        assert r.step_time.median >= 0.9 * kernels, (r.step_time.median, kernels)

        # Without a synchronizer the host returns as soon as the kernels are queued: the same Timer then times
        # the launches alone, far less than the kernels take. This is what the synchronizer prevents.
        def step() -> None:
            inst.train_step(batch, ctx)
            ctx.end_step()

        unsynced = Timer(step).run(Budget(warmup_steps=1, min_steps=3, max_steps=3, budget_s=60.0))
        torch.cuda.synchronize(_index(gpu))
    assert statistics.median(unsynced.samples_s) < 0.5 * kernels, (unsynced.samples_s, kernels)


def test_peak_memory_is_the_allocators_peak(gpu: DeviceInfo) -> None:
    built = build(wide_spec(), {}, gpu)
    weights = sum(p.numel() * p.element_size() for p in built.instance.parameters())
    assert weights > 250 * 2**20
    r = measure(built, "train", "fp32", BATCH, BUDGET)
    assert r.status == "ok", r.reason
    assert r.peak_mem_kind == "allocator-peak" and r.peak_mem_bytes is not None
    # AdamW training holds the weights, their gradients and two moment buffers at once
    assert r.peak_mem_bytes >= 4 * weights
    # all of which are still allocated: the peak of the window is at least what is allocated now
    assert r.peak_mem_bytes >= torch.cuda.memory_allocated(_index(gpu))
    assert r.peak_mem_bytes <= torch.cuda.get_device_properties(_index(gpu)).total_memory


def test_tf32_switches_are_set_for_the_run_and_restored(gpu: DeviceInfo) -> None:
    built = build(wide_spec(), {}, gpu)
    inst = built.instance
    assert isinstance(inst, WideMlp)
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
             torch.get_float32_matmul_precision())
    try:
        # Start from the opposite of what each run sets, so that "restored" cannot pass by coincidence.
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = True, False
        torch.set_float32_matmul_precision("medium")
        r = measure(built, "train", "fp32", 256, BUDGET)
        assert r.status == "ok", r.reason
        assert inst.seen and all(s["matmul_tf32"] is False and s["cudnn_tf32"] is True
                                 and s["matmul_precision"] == "highest" for s in inst.seen)
        assert r.settings["cuda_matmul_allow_tf32"] is False and r.settings["float32_matmul_precision"] == "highest"
        assert torch.backends.cuda.matmul.allow_tf32 is True and torch.backends.cudnn.allow_tf32 is False
        assert torch.get_float32_matmul_precision() == "medium"

        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = False, False
        torch.set_float32_matmul_precision("highest")
        inst.seen.clear()
        t = measure(built, "train", "tf32", 256, BUDGET)
        assert t.status == "ok", t.reason
        assert inst.seen and all(s["matmul_tf32"] is True and s["cudnn_tf32"] is True
                                 and s["matmul_precision"] == "high" for s in inst.seen)
        assert t.settings["cuda_matmul_allow_tf32"] is True and t.settings["float32_matmul_precision"] == "high"
        assert torch.backends.cuda.matmul.allow_tf32 is False and torch.backends.cudnn.allow_tf32 is False
        assert torch.get_float32_matmul_precision() == "highest"
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[:2]
        torch.set_float32_matmul_precision(saved[2])


def test_tf32_takes_effect_on_matmuls(gpu: DeviceInfo) -> None:
    """On an NVIDIA GPU of compute capability 8.0 or later, an fp32 matmul under ``tf32`` rounds its inputs to 10
    mantissa bits (errors ~1e-3 relative), under ``fp32`` it does not (~1e-6)."""
    major, minor = torch.cuda.get_device_capability(_index(gpu))
    if gpu.backend != "cuda" or major < 8:
        pytest.skip(f"TF32 needs an NVIDIA GPU of compute capability 8.0 or later; {gpu.name} is {gpu.backend} "
                    f"{major}.{minor}")
    g = torch.Generator(device=gpu.id).manual_seed(0)
    a = torch.randn(1024, 1024, device=gpu.id, generator=g)
    b = torch.randn(1024, 1024, device=gpu.id, generator=g)
    exact = a.double() @ b.double()

    def rel_error(precision: str) -> float:
        with precision_settings(precision):
            return float(((a @ b).double() - exact).abs().max() / exact.abs().max())

    fp32, tf32 = rel_error("fp32"), rel_error("tf32")
    assert fp32 < 1e-5 and tf32 > 10 * fp32, (tf32, fp32)


def _nvml_power_limit_w(index: int) -> tuple[float | None, str | None]:
    """(the GPU's enforced power limit in watts, None) where NVML reads this GPU's power; else (None, why not)."""
    try:
        import pynvml
    except ImportError as exc:
        return None, f"pynvml (nvidia-ml-py) is not importable: {exc}"
    try:
        pynvml.nvmlInit()
    except Exception as exc:
        return None, f"nvmlInit failed: {exc}"
    try:
        uuid = str(torch.cuda.get_device_properties(index).uuid)
        handle = pynvml.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith("GPU-") else f"GPU-{uuid}")
        pynvml.nvmlDeviceGetPowerUsage(handle)
        return pynvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000.0, None
    except Exception as exc:
        return None, f"NVML cannot read this GPU's power: {exc}"
    finally:
        pynvml.nvmlShutdown()


def test_nvml_measures_the_gpus_energy(gpu: DeviceInfo, tmp_path: Path) -> None:
    limit_w, why = _nvml_power_limit_w(_index(gpu))
    if limit_w is None:
        pytest.skip(why or "NVML gave no power limit")
    rep = api.bench(["test_resnet"], devices=[gpu.id], precisions=["fp32"], tasks=["train"], quick=True,
                    timing=Budget(warmup_steps=2, min_steps=3, max_steps=5, budget_s=1.0), telemetry=True,
                    db=tmp_path / "r.sqlite")
    (r,) = rep.results
    assert r.status == "ok" and r.device == gpu.id, r.reason
    assert r.energy_source == "measured-nvml" and "NVML" in (r.energy_basis or "")
    tel = r.telemetry
    assert tel is not None and tel["source"] == "measured-nvml" and len(tel["samples"]) >= 2
    # NVML's counter needs a long enough window: the run was extended to it
    assert tel["duration_s"] >= tel["min_window_s"] > 0 and not tel["too_short"]
    assert r.power_w is not None and r.power_w == pytest.approx(tel["energy_j"] / tel["duration_s"])
    assert 0 < r.power_w <= 1.1 * limit_w  # an average over the window, within the board's power limit
    assert r.samples_per_s and r.energy_j_per_sample == pytest.approx(r.power_w / r.samples_per_s)
    info = rep.telemetry[gpu.id]
    assert info["source"] == "measured-nvml" and info["idle_baseline"]["samples"]


def test_fp16_training_goes_through_a_gradient_scaler(gpu: DeviceInfo) -> None:
    built = build(wide_spec(), {}, gpu)
    inst = built.instance
    assert isinstance(inst, WideMlp)
    before = [p.detach().clone() for p in inst.parameters()]
    r = measure(built, "train", "fp16", 256, BUDGET)
    assert r.status == "ok", r.reason
    assert r.settings["grad_scaler"] is True and r.settings["autocast_dtype"] == "float16"
    assert inst.seen and all(s["dtype"] == torch.float16 for s in inst.seen)  # the forward ran under autocast
    scaler = getattr(inst.ctx, "scaler", None)
    assert isinstance(scaler, torch.amp.GradScaler) and scaler.is_enabled()
    # Every step went through scale() and update(): the scale started at 2**16 and was halved once per step whose
    # gradients overflowed (none grows it before 2000 clean steps); the growth tracker counts the clean steps since.
    state = scaler.state_dict()
    overflows = round(math.log2(65536.0 / state["scale"]))
    assert state["scale"] == 65536.0 * 0.5**overflows and 0 <= overflows < inst.steps_with_ctx
    assert 1 <= state["_growth_tracker"] <= inst.steps_with_ctx - overflows
    # fp32 master weights, updated and finite
    assert all(p.dtype == torch.float32 and bool(torch.isfinite(p).all()) for p in inst.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, inst.parameters(), strict=True))
    # bf16 needs no scaler
    inst.seen.clear()
    b = measure(built, "train", "bf16", 256, BUDGET)
    assert b.status == "ok", b.reason
    assert b.settings["grad_scaler"] is False and getattr(inst.ctx, "scaler", "missing") is None
    assert inst.seen and all(s["dtype"] == torch.bfloat16 for s in inst.seen)
