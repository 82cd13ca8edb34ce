"""DCGAN: the tiny variant really trains both networks on CPU; the full size is counted on meta."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import pytest
import torch

from dlgpu.errors import BadInput
from dlgpu.workloads import PlainContext, get_workload
from dlgpu.workloads.models.generative import DCGANWorkload

CPU = torch.device("cpu")


def _build(name: str, **overrides: str) -> DCGANWorkload:
    torch.manual_seed(0)
    spec = get_workload(name)
    w = spec.build(spec.resolve(overrides))
    assert isinstance(w, DCGANWorkload)
    return w


def test_tiny_train_step_updates_both_networks() -> None:
    w = _build("test_dcgan")
    assert set(w.modules) == set(w.optimizers) == {"generator", "discriminator"}
    batch = w.make_batch(4, CPU, channels_last=True)
    before = {k: [p.detach().clone() for p in m.parameters()] for k, m in w.modules.items()}
    w.train(True)
    w.train_step(batch, PlainContext())
    for key, module in w.modules.items():
        changed = [not torch.equal(a, b.detach()) for a, b in zip(before[key], module.parameters(), strict=True)]
        assert all(changed), f"{key}: {sum(not c for c in changed)} parameter tensors did not change"


def test_batch_and_generated_images() -> None:
    w = _build("test_dcgan")
    real, noise = w.make_batch(3, CPU, channels_last=True)
    assert real.shape == (3, 3, 16, 16) and real.is_contiguous(memory_format=torch.channels_last)
    assert float(real.min()) >= -1 and float(real.max()) <= 1
    assert noise.shape == (3, 16, 1, 1)
    w.train(False)
    with torch.inference_mode():
        images = w.infer_step((real, noise), PlainContext())
    assert images.shape == (3, 3, 16, 16)
    assert float(images.abs().max()) <= 1  # tanh output, like the real images


def test_full_size_on_meta() -> None:
    with torch.device("meta"):
        w = _build("dcgan")
        # Shapes of the tutorial's 64x64 networks, checked without computing anything.
        real, noise = w.make_batch(2, torch.device("meta"))
        fake = w.generator(noise)
        logits = w.discriminator(real)
    assert fake.shape == (2, 3, 64, 64) and logits.shape == (2,)
    # Generator: ConvT 100->512 (4x4) + 512->256 + 256->128 + 128->64 + 64->3, BN on all but the last.
    g = 100 * 512 * 16 + 512 * 256 * 16 + 256 * 128 * 16 + 128 * 64 * 16 + 64 * 3 * 16 + 2 * (512 + 256 + 128 + 64)
    # Discriminator: Conv 3->64 + 64->128 + 128->256 + 256->512 + 512->1 (4x4), BN on the middle three.
    d = 3 * 64 * 16 + 64 * 128 * 16 + 128 * 256 * 16 + 256 * 512 * 16 + 512 * 16 + 2 * (128 + 256 + 512)
    assert sum(p.numel() for p in w.generator.parameters()) == g == 3_576_704
    assert sum(p.numel() for p in w.discriminator.parameters()) == d == 2_765_568
    assert w.num_parameters() == 6_342_272


def test_spec_facts() -> None:
    spec = get_workload("dcgan")
    assert spec.family == "generative" and spec.sample_unit == "image" and spec.channels_last
    assert spec.batch_size == 128
    assert spec.task_samples("train", spec.defaults()) == (5 * 202_599, "5 epochs of CelebA (img_align_celeba) "
                                                           "(202,599 images)")
    assert spec.facts.target_quality is None  # none is published


def test_image_size_must_be_a_power_of_two() -> None:
    with pytest.raises(BadInput, match="power of two"):
        _build("test_dcgan", image_size="24")
    assert _build("test_dcgan", image_size="32").make_batch(1, CPU)[0].shape == (1, 3, 32, 32)


class _BF16Context(PlainContext):
    """What the harness does at bf16, on CPU: the losses must be autocast-safe (BCE with logits)."""

    def autocast(self) -> AbstractContextManager[Any]:
        return torch.autocast("cpu", dtype=torch.bfloat16)


def test_train_step_under_bf16_autocast() -> None:
    w = _build("test_dcgan")
    batch = w.make_batch(4, CPU)
    w.train(True)
    w.train_step(batch, _BF16Context())
    assert all(torch.isfinite(p).all() for p in w.parameters())
    w.train(False)
    with torch.inference_mode():
        assert w.infer_step(batch, _BF16Context()).dtype == torch.bfloat16
