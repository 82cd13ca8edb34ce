"""Generative workloads: DCGAN on CelebA faces, as in the PyTorch DCGAN tutorial.

A GAN step is two optimizer updates on two networks (discriminator, then generator), so this workload
implements ``train_step`` itself instead of subclassing ``SupervisedWorkload``."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dlgpu.errors import BadInput

from .base import StepContext, WorkloadInstance
from .registry import Param, TaskFacts, register_workload


def _weights_init(m: nn.Module) -> None:
    """The tutorial's ``weights_init``: conv weights N(0, 0.02), batch-norm scale N(1, 0.02), shift 0."""
    if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def _stages(image_size: int) -> int:
    """Stride-2 stages between the 4x4 core and the image: 4 at 64x64 (the tutorial's network)."""
    n = int(math.log2(image_size)) - 2
    if image_size < 8 or 2 ** (n + 2) != image_size:
        raise BadInput(f"--set image_size={image_size}: DCGAN needs a power of two, at least 8")
    return n


class Generator(nn.Module):
    """The tutorial's generator: z (nz x 1 x 1) -> 4x4 -> ... -> image, transposed convs + BN + ReLU, tanh.

    At 64x64 the feature maps are ngf*8, ngf*4, ngf*2, ngf channels; other sizes add or drop stages."""

    def __init__(self, nz: int, ngf: int, nc: int, image_size: int) -> None:
        super().__init__()
        n = _stages(image_size)
        ch = ngf * 2 ** (n - 1)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(nz, ch, 4, 1, 0, bias=False), nn.BatchNorm2d(ch), nn.ReLU(True),
        ]
        for _ in range(n - 1):
            layers += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch // 2),
                       nn.ReLU(True)]
            ch //= 2
        layers += [nn.ConvTranspose2d(ch, nc, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.main(z)
        return out


class Discriminator(nn.Module):
    """The tutorial's discriminator (strided convs + BN + LeakyReLU 0.2) returning one logit per image.

    The tutorial ends with ``nn.Sigmoid`` and trains with ``nn.BCELoss``. Autocast refuses BCELoss on
    fp16/bf16 inputs (unsafe), so the Sigmoid is removed and the loss is ``BCEWithLogitsLoss`` -- the
    same function, computed stably, and valid under every precision the harness applies."""

    def __init__(self, ndf: int, nc: int, image_size: int) -> None:
        super().__init__()
        n = _stages(image_size)
        ch = ndf
        layers: list[nn.Module] = [nn.Conv2d(nc, ch, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True)]
        for _ in range(n - 1):
            layers += [nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch * 2),
                       nn.LeakyReLU(0.2, inplace=True)]
            ch *= 2
        layers.append(nn.Conv2d(ch, 1, 4, 1, 0, bias=False))  # 4x4 -> 1x1 logit (no Sigmoid, see above)
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.main(x)
        return logits.view(-1)


class DCGANWorkload(WorkloadInstance):
    """One training step = the tutorial's iteration: a discriminator update, then a generator update.

    Discriminator: BCE on real images labelled 1 plus generated images (detached) labelled 0. Generator:
    BCE of the *updated* discriminator on the same generated images labelled 1. Each update runs through
    the harness's autocast and ``backward_step`` with its own Adam optimizer."""

    def __init__(self, generator: Generator, discriminator: Discriminator, nz: int, nc: int,
                 image_size: int) -> None:
        self.generator = generator
        self.discriminator = discriminator
        self.modules = {"generator": generator, "discriminator": discriminator}
        # Tutorial: Adam, lr 0.0002, beta1 0.5 for both networks (Radford et al. 2015, Sec. 4).
        self.optimizers = {
            "generator": torch.optim.Adam(generator.parameters(), lr=2e-4, betas=(0.5, 0.999)),
            "discriminator": torch.optim.Adam(discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999)),
        }
        self.optimizer_kind = "adam"
        self.nz = nz
        self.nc = nc
        self.image_size = image_size

    def make_batch(self, batch_size: int, device: torch.device,
                   channels_last: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Real images in [-1, 1] (the tutorial normalizes to that range) and the latent noise.

        The tutorial draws fresh noise every iteration; drawing it here keeps steps deterministic and
        costs the step nothing it would really spend (one randn)."""
        s = self.image_size
        real = torch.rand(batch_size, self.nc, s, s, device=device) * 2 - 1
        if channels_last:
            real = real.contiguous(memory_format=torch.channels_last)
        noise = torch.randn(batch_size, self.nz, 1, 1, device=device)
        return real, noise

    def train_step(self, batch: tuple[torch.Tensor, torch.Tensor], ctx: StepContext) -> None:
        real, noise = batch
        d, g = self.discriminator, self.generator
        with ctx.autocast():
            fake = g(noise)
            real_logits = d(real)
            fake_logits = d(fake.detach())
            d_loss = (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
                      + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))
        ctx.backward_step(d_loss, self.optimizers["discriminator"])
        with ctx.autocast():
            logits = d(fake)
            g_loss = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
        # Gradients also reach the discriminator here; the tutorial lets them and so do we: its next
        # update zeroes them first.
        ctx.backward_step(g_loss, self.optimizers["generator"])

    def infer_step(self, batch: tuple[torch.Tensor, torch.Tensor], ctx: StepContext) -> torch.Tensor:
        """Generate images from noise: what a trained GAN is used for."""
        with ctx.autocast():
            images: torch.Tensor = self.generator(batch[1])
            return images


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
