"""The torch side of the generative workloads (``dlgpu.workloads.generative`` declares them): the DCGAN
tutorial's networks and the two-optimizer GAN workload."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..base import StepContext, WorkloadInstance
from ..generative import _stages


def _weights_init(m: nn.Module) -> None:
    """The tutorial's ``weights_init``: conv weights N(0, 0.02), batch-norm scale N(1, 0.02), shift 0."""
    if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


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
