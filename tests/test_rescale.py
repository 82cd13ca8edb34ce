"""``predict.rescale``: a profile moved to a smaller batch without tracing again stays close to a real trace."""

from __future__ import annotations

import pytest

from dlgpu import api
from dlgpu.predict.rescale import rescale
from dlgpu.results import memory_need


@pytest.mark.parametrize(("workload", "precision", "traced", "smaller"),
                         [("resnet50", "bf16", 256, 128), ("bert_base", "fp16", 32, 8)])
def test_rescaled_profile_matches_a_real_trace(workload: str, precision: str, traced: int, smaller: int) -> None:
    full = api.analyze(workload, "train", precision, traced)
    real = api.analyze(workload, "train", precision, smaller)
    derived = rescale(full, smaller)
    assert derived.batch_size == smaller and derived.state_bytes == full.state_bytes
    assert derived.flops == pytest.approx(real.flops, rel=1e-3)  # FLOPs are linear in the batch
    assert derived.bytes == pytest.approx(real.bytes, rel=0.10)  # weight reads do not shrink with it
    assert memory_need(derived) == pytest.approx(memory_need(real), rel=0.05)
    opt = [o for o in derived.ops if o.phase == "optimizer"]
    assert opt and opt == [o for o in full.ops if o.phase == "optimizer"]  # parameters only: unchanged
    assert rescale(full, traced) is full


def test_published_large_batches_fit_and_rescale_like_a_real_trace() -> None:
    """Published ResNet-50 results on 80 GB GPUs train at batch 768-1536 (Lambda: 1280 on an A100 80GB). The trace
    at 1536 fits the A100's usable memory, and a profile rescaled up from batch 256 agrees with it in FLOPs, memory,
    GEMM shapes (the M of each convolution carries the batch) and predicted step time."""
    from dlgpu.catalog import load_catalog
    from dlgpu.predict.calibration import load_calibration
    from dlgpu.predict.roofline import predict_step
    from dlgpu.results import usable_memory_bytes

    a100 = load_catalog().gpu("a100-sxm4-80gb")
    real = api.analyze("resnet50", "train", "fp16", 1536)
    up = rescale(api.analyze("resnet50", "train", "fp16", 256), 1536)
    assert memory_need(real) < usable_memory_bytes(a100.memory_bytes or 0)
    assert up.flops == pytest.approx(real.flops, rel=1e-3)
    assert memory_need(up) == pytest.approx(memory_need(real), rel=0.05)
    fwd = lambda p: sorted(o.gemm for o in p.ops if o.kind == "conv" and o.phase == "forward")  # noqa: E731
    assert fwd(up) == fwd(real)
    cal = load_calibration()
    t_real, t_up = predict_step(real, a100, "fp16", cal), predict_step(up, a100, "fp16", cal)
    assert t_up.step_time_s == pytest.approx(t_real.step_time_s, rel=0.03)


def test_detection_profiles_follow_the_image_size_the_source_used() -> None:
    """Mask R-CNN is published at other image sizes than its default 800 (``--set image_size``): the convolutions
    over the image (backbone, FPN, RPN) grow with its pixels, (1024 / 800)^2, while the RoI heads, which run on
    a fixed number of 7x7 and 14x14 regions, do not change at all."""
    from collections import Counter

    def convs(size: int) -> Counter[tuple[object, ...]]:
        p = api.analyze("maskrcnn", "infer", "fp32", 1, {"image_size": str(size)})
        return Counter({(o.gemm, o.flops): o.count for o in p.ops if o.kind == "conv"})

    small, large = convs(800), convs(1024)
    heads = small & large  # the same shapes, as often: the RoI heads
    assert heads and sum(k[1] * n for k, n in heads.items()) > 0  # type: ignore[operator]
    image = lambda c: sum(k[1] * n for k, n in (c - heads).items())  # type: ignore[operator]  # noqa: E731
    assert image(large) / image(small) == pytest.approx((1024 / 800) ** 2, rel=0.02)
