"""The harness on real tiny workloads on the CPU."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from conftest import TINY_BUDGET
from dlgpu.devices import detect
from dlgpu.measure.harness import HarnessContext, build, measure, precision_settings
from dlgpu.measure.memory import CpuPeakRss
from dlgpu.workloads import SupervisedWorkload, TaskFacts, WorkloadSpec, get_workload
from dlgpu.workloads.base import adamw

CPU = detect()[0][0]


class Mlp(SupervisedWorkload):
    """A real two-layer MLP whose step can be made to fail like an out-of-memory or a bug."""

    fail_above_batch: int | None = None
    error: type[BaseException] = torch.OutOfMemoryError

    def __init__(self) -> None:
        model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
        super().__init__(model, adamw(model), "adamw")

    def make_batch(self, batch_size: int, device: torch.device, channels_last: bool = False) -> Any:
        return torch.randn(batch_size, 16, device=device), torch.randint(0, 4, (batch_size,), device=device)

    def loss(self, batch: Any) -> torch.Tensor:
        x, y = batch
        if self.fail_above_batch is not None and x.shape[0] > self.fail_above_batch:
            raise self.error("CUDA out of memory. Tried to allocate 2.00 GiB")
        return nn.functional.cross_entropy(self.model(x), y)

    def forward(self, batch: Any) -> Any:
        return self.model(batch[0])


def mlp_spec(**attrs: Any) -> WorkloadSpec:
    def factory(_p: Any) -> Mlp:
        w = Mlp()
        for k, v in attrs.items():
            setattr(w, k, v)
        return w

    return WorkloadSpec(name="mlp", family="test", description="mlp", factory=factory, batch_size=8,
                        quick_batch_size=8, facts=TaskFacts(dataset="none", source="test"), tiny=True)


def test_real_tiny_resnet_training_is_measured() -> None:
    spec = get_workload("test_resnet")
    built = build(spec, spec.resolve({}), CPU)
    before = [p.detach().clone() for p in built.instance.parameters()]
    r = measure(built, "train", "fp32", 4, TINY_BUDGET)
    assert r.status == "ok", r.reason
    assert r.step_time is not None and 2 <= r.step_time.n <= 3
    assert all(t > 0 for t in r.step_time.samples_s)
    assert r.samples_per_s == pytest.approx(4 / r.step_time.median)
    assert r.peak_mem_bytes is not None and r.peak_mem_bytes > 50 * 2**20  # PyTorch itself is resident
    assert r.peak_mem_kind == "process-peak-rss"
    assert r.settings["channels_last"] is True
    # The steps really trained the model.
    assert any(not torch.equal(a, b) for a, b in zip(before, built.instance.parameters(), strict=True))


def test_inference_runs_in_eval_and_inference_mode() -> None:
    spec = get_workload("test_resnet")
    built = build(spec, spec.resolve({}), CPU)
    r = measure(built, "infer", "bf16", 4, TINY_BUDGET)
    assert r.status == "ok", r.reason
    assert r.settings["autocast_dtype"] == "bfloat16"
    assert not built.instance.modules["model"].training


def test_out_of_memory_halves_the_batch_and_reports_the_batch_that_ran() -> None:
    spec = mlp_spec(fail_above_batch=2)
    built = build(spec, {}, CPU)
    r = measure(built, "train", "fp32", 8, TINY_BUDGET)
    assert r.status == "ok"
    assert r.batch_size == 2 and r.requested_batch_size == 8
    assert "out of memory at batch 8" in (r.reason or "") and "retried at 2" in (r.reason or "")


def test_out_of_memory_at_batch_one_fails_cleanly() -> None:
    built = build(mlp_spec(fail_above_batch=0), {}, CPU)
    r = measure(built, "train", "fp32", 4, TINY_BUDGET)
    assert r.status == "failed" and r.reason == "out of memory at batch size 1"


def test_a_failing_workload_is_reported_not_raised() -> None:
    built = build(mlp_spec(fail_above_batch=0, error=ValueError), {}, CPU)
    r = measure(built, "train", "fp32", 4, TINY_BUDGET)
    assert r.status == "failed"
    assert r.reason is not None and r.reason.startswith("ValueError")


def test_keyboard_interrupt_propagates() -> None:
    built = build(mlp_spec(fail_above_batch=0, error=KeyboardInterrupt), {}, CPU)
    with pytest.raises(KeyboardInterrupt):
        measure(built, "train", "fp32", 4, TINY_BUDGET)


def test_precision_settings_follow_the_definitions_and_restore() -> None:
    torch.backends.cuda.matmul.allow_tf32 = False
    with precision_settings("tf32") as s:
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        assert s["cuda_matmul_allow_tf32"] is True
    assert torch.backends.cuda.matmul.allow_tf32 is False
    with precision_settings("fp32") as s:
        # PyTorch's defaults: cuDNN convolutions may use TF32, matmuls may not.
        assert not torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        assert s["autocast_dtype"] is None


def test_autocast_context_really_changes_dtypes() -> None:
    lin = nn.Linear(8, 8)
    x = torch.randn(2, 8)
    with HarnessContext("cpu", "bf16", train=False).autocast():
        assert lin(x).dtype == torch.bfloat16
    with HarnessContext("cpu", "fp32", train=False).autocast():
        assert lin(x).dtype == torch.float32


def test_fp16_training_uses_a_gradient_scaler() -> None:
    ctx = HarnessContext("cpu", "fp16", train=True)
    assert ctx.scaler is not None
    assert HarnessContext("cpu", "fp16", train=False).scaler is None
    assert HarnessContext("cpu", "bf16", train=True).scaler is None


def test_cpu_peak_rss_sees_a_large_allocation() -> None:
    tracker = CpuPeakRss()
    tracker.reset()
    start = tracker.peak_bytes()
    assert start is not None
    x = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
    peak = tracker.peak_bytes()
    del x
    assert peak is not None and peak - start >= 60 * 2**20


def test_cpu_peak_rss_falls_back_to_sampling(tmp_path: Any) -> None:
    tracker = CpuPeakRss(proc=tmp_path / "no-proc", sample_period_s=0.001)
    tracker.reset()
    try:
        x = torch.ones(32 * 2**20 // 4)
        peak = tracker.peak_bytes()
        assert peak is not None and peak > 32 * 2**20
        del x
    finally:
        tracker.close()
