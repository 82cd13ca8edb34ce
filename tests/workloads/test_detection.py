"""Detection workloads: real training and inference steps on the tiny variants, architecture facts of the
full-size ones on the meta device (no compute), and full-size CPU steps marked slow."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import nn
from torchvision.models.detection.image_list import ImageList
from torchvision.ops.misc import FrozenBatchNorm2d

from dlgpu.workloads import PlainContext, WorkloadInstance, get_workload
from dlgpu.workloads.detection import SSD300_CHANNELS, SSD300_NUM_ANCHORS
from dlgpu.workloads.models.detection import DetectionWorkload, box_masks, calibrate_frozen_bn, random_boxes

CPU = torch.device("cpu")


def _losses(inst: WorkloadInstance, batch: Any) -> dict[str, torch.Tensor]:
    assert isinstance(inst, DetectionWorkload)
    return inst.losses(batch)


def _snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in module.named_parameters() if p.requires_grad}


def _changed(module: nn.Module, before: dict[str, torch.Tensor]) -> set[str]:
    return {n for n, p in module.named_parameters() if n in before and not torch.equal(before[n], p)}


def _trained(name: str) -> tuple[set[str], list[dict[str, torch.Tensor]]]:
    """Build a tiny workload, run one training step and one inference step on CPU: the names of the
    parameters the step changed, and the detections."""
    torch.manual_seed(0)
    spec = get_workload(name)
    inst = spec.build(spec.defaults())
    model: Any = inst.modules["model"]
    batch = inst.make_batch(spec.batch_size, CPU, channels_last=spec.channels_last)
    before = _snapshot(model)
    inst.train(True)
    inst.train_step(batch, PlainContext())
    changed = _changed(model, before)
    inst.train(False)
    with torch.inference_mode():
        out = inst.infer_step(batch, PlainContext())
    return changed, out


def _targets(name: str, batch_size: int) -> Iterator[tuple[torch.Tensor, dict[str, torch.Tensor]]]:
    spec = get_workload(name)
    inst = spec.build(spec.defaults())
    images, targets = inst.make_batch(batch_size, CPU)
    assert len(images) == len(targets) == batch_size
    yield from zip(images, targets, strict=True)


@pytest.mark.parametrize("name", ["test_ssd", "test_maskrcnn"])
def test_synthetic_targets_are_valid(name: str) -> None:
    spec = get_workload(name)
    p: dict[str, Any] = spec.defaults()
    for image, t in _targets(name, 3):
        assert image.shape == (3, p["image_size"], p["image_size"])
        b = t["boxes"]
        assert b.shape == (p["objects_per_image"], 4)
        assert (b[:, 0] < b[:, 2]).all() and (b[:, 1] < b[:, 3]).all()
        assert (b >= 0).all() and (b <= p["image_size"]).all()
        assert t["labels"].dtype == torch.int64
        assert (t["labels"] >= 1).all() and (t["labels"] < p["num_classes"]).all()
        if name == "test_maskrcnn":
            m = t["masks"]
            assert m.dtype == torch.uint8 and m.shape == (len(b), p["image_size"], p["image_size"])
            assert (m.flatten(1).sum(1) > 0).all()


def test_box_masks_fill_their_boxes() -> None:
    boxes = torch.tensor([[2.0, 1.0, 5.0, 3.0]])
    m = box_masks(boxes, 6, 8)
    assert m.sum() == 3 * 2 and m[0, 1:3, 2:5].all()


def test_random_boxes_stay_inside_small_images() -> None:
    torch.manual_seed(0)
    b = random_boxes(50, 8, 12, CPU)
    assert (b[:, 2] <= 12).all() and (b[:, 3] <= 8).all() and (b[:, :2] >= 0).all()
    assert (b[:, 2:] > b[:, :2]).all()


def test_tiny_ssd_trains_and_infers() -> None:
    changed, out = _trained("test_ssd")
    # The backbone, the box regression head and the classification head all learned.
    assert any(n.startswith("backbone.") for n in changed)
    assert any(n.startswith("head.regression_head.") for n in changed)
    assert any(n.startswith("head.classification_head.") for n in changed)
    assert len(out) == 2
    for det in out:
        assert set(det) == {"boxes", "scores", "labels"}
        assert det["boxes"].shape[1:] == (4,) and det["scores"].shape == det["labels"].shape


def test_tiny_ssd_loss_is_torchvisions_two_terms() -> None:
    torch.manual_seed(0)
    spec = get_workload("test_ssd")
    inst = spec.build(spec.defaults())
    inst.train(True)
    losses = _losses(inst, inst.make_batch(2, CPU))
    assert set(losses) == {"bbox_regression", "classification"}
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())


def test_tiny_maskrcnn_trains_and_infers() -> None:
    changed, out = _trained("test_maskrcnn")
    for part in ("backbone.", "rpn.head.", "roi_heads.box_predictor.", "roi_heads.mask_predictor.",
                 "roi_heads.mask_head."):
        assert any(n.startswith(part) for n in changed), part
    assert len(out) == 2
    size = get_workload("test_maskrcnn").defaults()["image_size"]
    for det in out:
        assert set(det) == {"boxes", "labels", "scores", "masks"}
        k = det["boxes"].shape[0]
        assert k == 20  # box_detections_per_img: with score threshold 0 the mask head always runs
        assert det["boxes"].shape == (k, 4) and det["masks"].shape == (k, 1, size, size)


def test_tiny_maskrcnn_loss_has_all_five_terms() -> None:
    torch.manual_seed(0)
    spec = get_workload("test_maskrcnn")
    inst = spec.build(spec.defaults())
    inst.train(True)
    losses = _losses(inst, inst.make_batch(1, CPU))
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness",
                           "loss_rpn_box_reg"}
    assert all(torch.isfinite(v) for v in losses.values())


# --- Full size, on meta ---------------------------------------------------------------------------------


def test_ssd300_feature_maps_and_8732_default_boxes_on_meta() -> None:
    spec = get_workload("ssd300")
    with torch.device("meta"):
        inst = spec.build(spec.defaults())
        model: Any = inst.modules["model"]
        model.eval()
        x = torch.zeros(1, 3, 300, 300)
        feats = list(model.backbone(x).values())
    # Outside the meta context, as in real steps: torchvision builds default boxes on the CPU, then moves
    # them to the feature maps' device.
    anchors = model.anchor_generator(ImageList(x, [(300, 300)]), feats)
    # NVIDIA SSD300 v1.1: conv4 at 38x38x1024 (layer3's first block at stride 1), then 19, 10, 5, 3, 1.
    assert [tuple(f.shape[1:]) for f in feats] == [
        (c, s, s) for c, s in zip(SSD300_CHANNELS, (38, 19, 10, 5, 3, 1), strict=True)
    ]
    assert model.anchor_generator.num_anchors_per_location() == [4, 6, 6, 6, 4, 4]
    assert SSD300_NUM_ANCHORS == 8732
    assert anchors[0].shape == (8732, 4)


def test_ssd300_parameter_count_on_meta() -> None:
    """No parameter count is published for NVIDIA's SSD300; this one is derived from the architecture
    (ResNet-50 to layer3, NVIDIA's extra blocks, 3x3 heads for 81 classes), independently of the code."""
    import torchvision

    resnet = torchvision.models.resnet50()
    to_layer3 = sum(p.numel() for n, p in resnet.named_parameters() if not n.startswith(("layer4", "fc")))
    ch, mid, nd = SSD300_CHANNELS, (256, 256, 128, 128, 128), (4, 6, 6, 6, 4, 4)
    extras = sum(ci * m + 2 * m + m * co * 9 + 2 * co for ci, co, m in zip(ch[:-1], ch[1:], mid, strict=True))
    heads = sum(c * 9 * n * (4 + 81) + n * (4 + 81) for c, n in zip(ch, nd, strict=True))
    assert to_layer3 + extras + heads == 22_894_902
    spec = get_workload("ssd300")
    with torch.device("meta"):
        inst = spec.build(spec.defaults())
    assert inst.num_parameters() == 22_894_902


def test_maskrcnn_matches_the_published_model_on_meta() -> None:
    """44,401,393 parameters: MaskRCNN_ResNet50_FPN_Weights.COCO_V1.meta["num_params"]. That count has
    FrozenBatchNorm2d (no BN parameters), as the reference's pretrained-backbone training does; conv1 and
    layer1 are frozen (trainable_backbone_layers=3), so 222,400 parameters take no gradient."""
    spec = get_workload("maskrcnn")
    with torch.device("meta"):
        inst = spec.build(spec.defaults())
    model: Any = inst.modules["model"]
    assert inst.num_parameters() == 44_401_393
    trainable = sum(p.numel() for p in inst.parameters() if p.requires_grad)
    assert trainable == 44_401_393 - 222_400
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert sum(isinstance(m, FrozenBatchNorm2d) for m in model.modules()) == 53
    opt_params = sum(p.numel() for g in inst.optimizers["model"].param_groups for p in g["params"])
    assert opt_params == trainable


def test_calibrated_frozen_batchnorm_normalizes() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3), FrozenBatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3),
                        FrozenBatchNorm2d(8))
    with torch.no_grad():
        net[0].weight.mul_(10)  # type: ignore[operator]  # badly scaled on purpose
    x = torch.randn(4, 3, 16, 16)
    calibrate_frozen_bn(net, x)
    with torch.no_grad():
        y = net(x)
    assert torch.allclose(y.mean(dim=(0, 2, 3)), torch.zeros(8), atol=1e-4)
    assert torch.allclose(y.var(dim=(0, 2, 3), unbiased=False), torch.ones(8), atol=1e-3)


def test_detection_specs() -> None:
    for name in ("ssd300", "maskrcnn", "test_ssd", "test_maskrcnn"):
        spec = get_workload(name)
        assert spec.family == "detection" and spec.sample_unit == "image" and not spec.channels_last
    for name in ("ssd300", "maskrcnn"):
        f = get_workload(name).facts
        assert f.train_samples == 118_287 and f.eval_samples == 5_000 and f.source
    assert get_workload("ssd300").facts.epochs == 65
    assert get_workload("maskrcnn").facts.epochs == 26
    assert get_workload("maskrcnn").batch_size == 2 and get_workload("maskrcnn").quick_batch_size == 1


# --- Full size, real CPU steps (slow) -------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(("name", "batch_size"), [("ssd300", 2), ("maskrcnn", 1)])
def test_full_size_training_step_on_cpu(name: str, batch_size: int) -> None:
    # ssd300 trains at batch >= 2: its last extra block's BatchNorm sees a 1x1 map, one value per channel.
    torch.manual_seed(0)
    spec = get_workload(name)
    inst = spec.build(spec.defaults())
    model: Any = inst.modules["model"]
    batch = inst.make_batch(batch_size, CPU)
    before = _snapshot(model)
    inst.train(True)
    losses = _losses(inst, batch)
    assert all(torch.isfinite(v) for v in losses.values())
    inst.train_step(batch, PlainContext())
    assert len(_changed(model, before)) == len(before)
    inst.train(False)
    with torch.inference_mode():
        out = inst.infer_step(batch, PlainContext())
    assert len(out) == batch_size and {"boxes", "labels", "scores"} <= set(out[0])
