"""The torch side of the image classification workloads (``dlgpu.workloads.vision`` declares them)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..base import SupervisedWorkload, sgd_momentum


class ClassifierWorkload(SupervisedWorkload):
    """A classifier on random images with random labels; cross-entropy; SGD with momentum."""

    def __init__(self, model: nn.Module, image_size: int, num_classes: int, lr: float = 0.1,
                 weight_decay: float = 1e-4) -> None:
        # lr / weight_decay change the optimizer's constants, not its cost; they follow each model's
        # recipe (torchvision trains VGG at 1e-2, see vgg16 in dlgpu.workloads.vision).
        super().__init__(model, sgd_momentum(model, lr=lr, weight_decay=weight_decay), "sgd-momentum")
        self.image_size = image_size
        self.num_classes = num_classes

    def make_batch(self, batch_size: int, device: torch.device, channels_last: bool = False) -> Any:
        x = torch.randn(batch_size, 3, self.image_size, self.image_size, device=device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, self.num_classes, (batch_size,), device=device)
        return x, y

    def loss(self, batch: Any) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self.model(x), y)

    def forward(self, batch: Any) -> Any:
        return self.model(batch[0])


class InceptionV3Workload(ClassifierWorkload):
    """Inception-v3 trains on the main and the auxiliary classifier: both heads are part of the cost.

    torchvision's model returns ``InceptionOutputs(logits, aux_logits)`` in training mode and plain logits
    in eval mode; the loss weights the auxiliary head by 0.4 as torchvision's classification reference does
    (references/classification/train.py: ``loss1 + 0.4 * loss2`` for inception_v3 / googlenet)."""

    def loss(self, batch: Any) -> torch.Tensor:
        x, y = batch
        out = self.model(x)
        return F.cross_entropy(out.logits, y) + 0.4 * F.cross_entropy(out.aux_logits, y)
