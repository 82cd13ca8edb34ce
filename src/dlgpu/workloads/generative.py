"""Generative workloads: DCGAN on CelebA faces, as in the PyTorch DCGAN tutorial.

A GAN step is two optimizer updates on two networks (discriminator, then generator), so this workload
implements ``train_step`` itself instead of subclassing ``SupervisedWorkload``."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dlgpu.errors import BadInput

from .registry import Param, TaskFacts, register_workload

if TYPE_CHECKING:
    from .models.generative import DCGANWorkload


def _stages(image_size: int) -> int:
    """Stride-2 stages between the 4x4 core and the image: 4 at 64x64 (the tutorial's network)."""
    n = int(math.log2(image_size)) - 2
    if image_size < 8 or 2 ** (n + 2) != image_size:
        raise BadInput(f"image_size={image_size}: DCGAN needs a power of two, at least 8", param="overrides")
    return n


# CelebA: 202,599 face images (Liu et al., "Deep Learning Face Attributes in the Wild", ICCV 2015; the
# dataset page). PyTorch DCGAN tutorial: img_align_celeba at 64x64, batch 128, 5 epochs, nz 100, ngf/ndf 64,
# Adam lr 2e-4 beta1 0.5.
CELEBA = TaskFacts(
    dataset="CelebA (img_align_celeba)",
    source=(
        "https://pytorch.org/tutorials/beginner/dcgan_faces_tutorial.html ; "
        "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html ; https://arxiv.org/abs/1411.7766 ; "
        "https://arxiv.org/abs/1511.06434 (DCGAN)"
    ),
    train_samples=202_599,
    epochs=5,
    notes=(
        "No target quality: the tutorial judges its samples by eye and publishes no FID or other metric. "
        "A training sample is one real image (plus one generated image for each network's update)."
    ),
)


def _params(image_size: int, nz: int, ngf: int, ndf: int) -> tuple[Param, ...]:
    return (
        Param("image_size", image_size, "image height and width (a power of two)", minimum=8),
        Param("nz", nz, "latent vector size"),
        Param("ngf", ngf, "generator feature maps in its last hidden layer"),
        Param("ndf", ndf, "discriminator feature maps in its first layer"),
    )


def _dcgan(p: Mapping[str, Any]) -> DCGANWorkload:
    from .models.generative import DCGANWorkload, Discriminator, Generator, _weights_init

    size, nz, nc = int(p["image_size"]), int(p["nz"]), 3
    generator = Generator(nz, int(p["ngf"]), nc, size)
    discriminator = Discriminator(int(p["ndf"]), nc, size)
    generator.apply(_weights_init)
    discriminator.apply(_weights_init)
    return DCGANWorkload(generator, discriminator, nz, nc, size)


@register_workload(
    name="dcgan",
    family="generative",
    description="DCGAN 64x64 face generation on CelebA (PyTorch DCGAN tutorial)",
    batch_size=128,  # tutorial batch_size
    quick_batch_size=16,
    facts=CELEBA,
    sample_unit="image",
    params=_params(64, 100, 64, 64),
    channels_last=True,
    optimizer="adam",
    architecture_source="Radford et al. 2015 (arXiv:1511.06434) as the PyTorch DCGAN tutorial's Generator "
    "and Discriminator (final Sigmoid folded into BCEWithLogitsLoss)",
)
def dcgan(p: Mapping[str, Any]) -> DCGANWorkload:
    return _dcgan(p)


@register_workload(
    name="test_dcgan",
    family="generative",
    description="tiny DCGAN (ngf=ndf=8, 16x16 images) for tests",
    batch_size=4,
    quick_batch_size=4,
    facts=CELEBA,
    sample_unit="image",
    params=_params(16, 16, 8, 8),
    channels_last=True,
    optimizer="adam",
    tiny=True,
    architecture_source="the DCGAN tutorial's networks with two stride-2 stages",
)
def test_dcgan(p: Mapping[str, Any]) -> DCGANWorkload:
    return _dcgan(p)
