"""Image classification workloads: exact parameter counts on the meta device, and real steps on tiny ones."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from dlgpu.workloads import PlainContext, get_workload, list_workloads

# Published parameter counts: torchvision's weights metadata (``<Model>_Weights.IMAGENET1K_V1.meta
# ["num_params"]``, https://pytorch.org/vision/stable/models.html), checked against torchvision itself.
PUBLISHED_PARAMS = {
    "resnet50": 25_557_032,
    "resnet152": 60_192_808,
    "vgg16": 138_357_544,
    "inception_v3": 27_161_264,  # includes the auxiliary classifier
    "efficientnet_b0": 5_288_548,
}


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_full_size_parameter_count_on_meta(name: str) -> None:
    spec = get_workload(name)
    with torch.device("meta"):
        inst = spec.build(spec.defaults())
    assert all(p.device.type == "meta" for p in inst.parameters())
    assert inst.num_parameters() == PUBLISHED_PARAMS[name]


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_full_size_train_and_infer_shapes_on_meta(name: str) -> None:
    """A whole training step at the default image size runs shape-only on meta: catches size mismatches
    (Inception's auxiliary head needs 299x299) without any compute."""
    spec = get_workload(name)
    p = spec.defaults()
    with torch.device("meta"):
        inst = spec.build(p)
        batch = inst.make_batch(2, torch.device("meta"), channels_last=spec.channels_last)
        inst.train(True)
        inst.train_step(batch, PlainContext())
        inst.train(False)
        with torch.inference_mode():
            out = inst.infer_step(batch, PlainContext())
    assert tuple(out.shape) == (2, p["num_classes"])


def test_registered_facts_have_sources() -> None:
    for name in PUBLISHED_PARAMS:
        spec = get_workload(name)
        assert spec.family == "vision" and spec.channels_last and spec.optimizer == "sgd-momentum"
        assert spec.facts.source and spec.facts.train_samples == 1_281_167
        assert spec.facts.target_quality and "top-1" in spec.facts.target_quality
        if spec.facts.epochs is None:
            assert "epochs unknown" in spec.facts.notes
        assert 1 <= spec.quick_batch_size <= 8 < spec.batch_size
    assert {s.name for s in list_workloads("*", include_tiny=False)} >= set(PUBLISHED_PARAMS)


def test_inception_rejects_images_its_aux_head_cannot_take() -> None:
    from dlgpu.errors import BadInput

    spec = get_workload("inception_v3")
    assert spec.resolve({"image_size": "320"})["image_size"] == 320
    with pytest.raises(BadInput):
        spec.resolve({"image_size": "224"})


def test_inception_loss_includes_the_auxiliary_head_on_meta() -> None:
    """The auxiliary classifier gets a gradient in training (it is part of the loss), and inference
    returns plain logits. Shape-only on meta: a gradient exists only if the aux head is in the graph."""
    spec = get_workload("inception_v3")
    with torch.device("meta"):
        inst = spec.build(spec.defaults())
        model: Any = inst.modules["model"]
        batch = inst.make_batch(2, torch.device("meta"))
        inst.train(True)
        inst.train_step(batch, PlainContext())
        assert model.AuxLogits.fc.weight.grad is not None
        assert model.fc.weight.grad is not None
        inst.train(False)
        with torch.inference_mode():
            out = inst.infer_step(batch, PlainContext())
    assert isinstance(out, torch.Tensor) and out.shape == (2, 1000)


@pytest.mark.slow
def test_inception_real_step_updates_the_auxiliary_head() -> None:
    torch.manual_seed(0)
    spec = get_workload("inception_v3")
    inst = spec.build({"image_size": 299, "num_classes": 10})
    model: Any = inst.modules["model"]
    aux = model.AuxLogits
    before = aux.fc.weight.detach().clone()
    batch = inst.make_batch(2, torch.device("cpu"), channels_last=True)
    inst.train(True)
    inst.train_step(batch, PlainContext())
    assert not torch.equal(before, aux.fc.weight)
    inst.train(False)
    with torch.inference_mode():
        out = inst.infer_step(batch, PlainContext())
    assert isinstance(out, torch.Tensor) and out.shape == (2, 10)


def test_tiny_resnet_trains_and_infers() -> None:
    torch.manual_seed(0)
    spec = get_workload("test_resnet")
    inst = spec.build(spec.defaults())
    before = [p.detach().clone() for p in inst.parameters()]
    batch = inst.make_batch(spec.quick_batch_size, torch.device("cpu"), channels_last=True)
    inst.train(True)
    inst.train_step(batch, PlainContext())
    changed = [not torch.equal(b, p) for b, p in zip(before, inst.parameters(), strict=True)]
    assert all(changed)
    inst.train(False)
    with torch.inference_mode():
        out = inst.infer_step(batch, PlainContext())
    assert out.shape == (spec.quick_batch_size, spec.defaults()["num_classes"])
    assert torch.isfinite(out).all()
