"""Tracing the detection workloads on fake tensors: data-dependent sizes (dlgpu.analyze.data_dependent) and
per-image folding (dlgpu.analyze.fold).

The dense work (convolutions and matmuls) must be exactly what a real step does: it is checked against
``FlopCounterMode`` on real steps of the tiny variants, and on the full-size networks' backbone and heads
run on the meta device. (Real full-size CPU steps agree exactly too: 240.964 GFLOP for an SSD300 training
step at batch 2, 735.995 GFLOP for Mask R-CNN at batch 1, measured with torch 2.14 / torchvision 0.29,
but take too long for the test suite.)"""

from __future__ import annotations

import contextlib
from collections import Counter
from typing import Any

import pytest
import torch
from torch._subclasses.fake_tensor import DynamicOutputShapeException
from torch.utils.flop_counter import FlopCounterMode

from dlgpu.analyze import fold, trace
from dlgpu.analyze.profiles import profile
from dlgpu.predict.calibration import PUBLISHED_FILE, calibration_rows, calibration_samples
from dlgpu.results import OpProfile
from dlgpu.workloads import PlainContext, get_workload

DENSE = ("conv", "matmul", "attention")


def _profile(name: str, task: str, batch: int, precision: str = "fp32") -> OpProfile:
    spec = get_workload(name)
    return trace.profile(spec, spec.defaults(), task, precision, batch)


def _dense(p: OpProfile) -> float:
    return sum(o.flops * o.count for o in p.ops if o.kind in DENSE)


def _flops(p: OpProfile) -> float:
    return sum(o.flops * o.count for o in p.ops)


def _records(p: OpProfile) -> Counter[Any]:
    return Counter({(o.op, o.kind, o.phase, o.dtype, o.flops, o.bytes_read, o.bytes_written): o.count for o in p.ops})


def _real_dense_flops(name: str, task: str, batch: int) -> float:
    """Convolution and matmul FLOPs of one real CPU step, counted by PyTorch's FlopCounterMode."""
    torch.manual_seed(0)
    spec = get_workload(name)
    inst = spec.build(spec.defaults())
    batch_data = inst.make_batch(batch, torch.device("cpu"))
    counter = FlopCounterMode(display=False)
    with counter:
        if task == "train":
            inst.train(True)
            inst.train_step(batch_data, PlainContext())
        else:
            inst.train(False)
            with torch.no_grad():
                inst.infer_step(batch_data, PlainContext())
    return float(counter.get_total_flops())


# --- SSD300 ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_ssd300_traces_train_and_infer(precision: str) -> None:
    for task in ("train", "infer"):
        p = _profile("ssd300", task, 2, precision)
        assert p.workload == "ssd300" and p.batch_size == 2
        kinds = {o.kind for o in p.ops}
        assert "conv" in kinds and "norm" in kinds
        assert ("backward" in {o.phase for o in p.ops}) == (task == "train")
        if task == "train":
            assert p.activation_bytes and p.activation_bytes > 0


def test_ssd300_flops_scale_linearly_with_batch() -> None:
    for task in ("train", "infer"):
        p2, p6 = _profile("ssd300", task, 2), _profile("ssd300", task, 6)
        assert _dense(p6) == pytest.approx(3 * _dense(p2), rel=1e-9)  # convolutions: exactly per image
        assert _flops(p6) == pytest.approx(3 * _flops(p2), rel=0.01)  # the rest: per image, plus a little fixed
        assert sum(o.count for o in p6.ops) > sum(o.count for o in p2.ops)  # per-image loops count per image


def _ssd300_on_meta(batch: int, train: bool) -> float:
    """FLOPs of SSD300's backbone and heads (all of its convolutions) run on the meta device."""
    spec = get_workload("ssd300")
    with torch.device("meta"):
        model: Any = spec.build(spec.defaults()).modules["model"]
        model.train(train)
        x = torch.zeros(batch, 3, 300, 300)
        counter = FlopCounterMode(display=False)
        with counter:
            out = model.head(list(model.backbone(x).values()))
            if train:
                sum(v.sum() for v in out.values()).backward()
    return float(counter.get_total_flops())


@pytest.mark.parametrize("task", ["train", "infer"])
def test_ssd300_dense_flops_are_the_networks(task: str) -> None:
    """Every convolution FLOP of the traced step is the network's: backbone and heads at the full batch,
    forward (and backward in training). Tolerance: none (the same formulas on the same shapes)."""
    p = _profile("ssd300", task, 3)
    assert _dense(p) == _ssd300_on_meta(3, task == "train")
    assert _dense(p) > 0.99 * _flops(p)  # SSD300's FLOPs are its convolutions: the approximated rest is small


@pytest.mark.parametrize(("name", "task", "batch"), [("test_ssd", "train", 3), ("test_ssd", "infer", 3),
                                                      ("test_maskrcnn", "infer", 2)])
def test_dense_flops_match_a_real_step(name: str, task: str, batch: int) -> None:
    """Fake trace vs FlopCounterMode on a real CPU step of the same model: equal (tolerance 1e-9)."""
    assert _dense(_profile(name, task, batch)) == pytest.approx(_real_dense_flops(name, task, batch), rel=1e-9)


@pytest.mark.parametrize(("name", "batch"), [("test_ssd", 4), ("test_maskrcnn", 3)])
def test_folding_gives_the_unfolded_records(name: str, batch: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Per-image work traced once and counted per image gives the same records as tracing every image
    (all of them, but for SSD inference's batched softmax, counted per image: see ``fold``). The tiny
    variants run the same torchvision code as SSD300 and Mask R-CNN."""
    _profile(name, "train", batch)  # the optimizer's first step creates its momentum: not compared here
    folded = {task: _records(_profile(name, task, batch)) for task in ("train", "infer")}
    monkeypatch.setattr(fold.Folding, "installed", lambda self: contextlib.nullcontext())
    unfolded = {task: _records(_profile(name, task, batch)) for task in ("train", "infer")}
    assert folded["train"] == unfolded["train"]
    f, u = folded["infer"], unfolded["infer"]
    assert {k[0] for k in (f - u) + (u - f)} <= {"_softmax"}

    def softmax(c: Counter[Any]) -> tuple[float, float]:
        return (sum(k[4] * n for k, n in c.items() if k[0] == "_softmax"),
                sum((k[5] + k[6]) * n for k, n in c.items() if k[0] == "_softmax"))

    assert softmax(f) == softmax(u)  # the same FLOPs and bytes, in one launch per image instead of one


def test_ssd300_calibration_rows_are_usable() -> None:
    from dlgpu.catalog import load_catalog

    rows = [r for r in calibration_rows(PUBLISHED_FILE) if r["workload"] == "ssd300"]
    assert rows
    smallest = sorted(rows, key=lambda r: (r["task"], int(r["batch_size"])))
    some = [next(r for r in smallest if r["task"] == t) for t in ("infer", "train")]
    samples, skipped = calibration_samples(some, load_catalog(), profile)
    assert not skipped and len(samples) == 2


# --- Mask R-CNN -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_maskrcnn_infer_traces(precision: str) -> None:
    p = _profile("maskrcnn", "infer", 1, precision)
    mm = sum(o.flops * o.count for o in p.ops if o.kind == "matmul")
    # The box head runs on the RPN's 1000 post-NMS proposals (post_nms_top_n at test time): TwoMLPHead
    # (256*7*7 -> 1024 -> 1024) and the predictor (1024 -> 91 classes + 364 box coordinates).
    assert mm == 2 * 1000 * (256 * 7 * 7 * 1024 + 1024 * 1024 + 1024 * (91 + 364))
    # The mask head pastes its 100 detections (box_detections_per_img) into full-image masks, one by one.
    assert sum(o.count for o in p.ops if o.op == "upsample_bilinear2d") >= 100


def test_maskrcnn_train_traces() -> None:
    p = _profile("maskrcnn", "train", 1, "fp16")
    assert {"forward", "backward", "optimizer"} <= {o.phase for o in p.ops}
    assert _dense(p) > 0


# --- The rules ------------------------------------------------------------------------------------------


def test_data_dependent_rules_on_fake_tensors() -> None:
    with trace._fake_mode():
        x = torch.rand(10)
        mask = x > 0.5
        assert x[mask].shape == (10,)  # nothing known: a selection keeps everything
        assert torch.nonzero(mask).shape == (10, 1)
        sampled = torch.zeros(10, dtype=torch.uint8)
        sampled[torch.randperm(10)[:3]] = 1  # a mask built from indices holds what was written
        assert torch.where(sampled)[0].shape == (3,)
        labels = torch.cat([torch.full((4,), c) for c in range(1, 6)])  # categories built from constants
        assert torch.unique(labels).shape == (5,)
        assert torch.where(labels == labels[0])[0].shape == (4,)
        assert torch.tensor(0.25).log2().item() == -2.0  # a constant FakeTensorMode knows
        assert x.sum().item() == 1.0 and bool(mask.any())  # unknown: the recorder's default


def test_other_dynamic_shapes() -> None:
    with trace._fake_mode():
        assert torch.rand(6).masked_select(torch.rand(6) > 0).shape == (6,)
        assert torch.unique(torch.randint(0, 3, (6, 2)), dim=0).shape == (6, 2)
        with pytest.raises(DynamicOutputShapeException):  # no rule: fails as before
            torch.rand(6).repeat_interleave(torch.randint(0, 3, (6,)))
