"""The torch side of the detection workloads (``dlgpu.workloads.detection`` declares them and documents
their synthetic data): synthetic COCO-like batches, the workload class, and the SSD300 and Mask R-CNN
networks built from torchvision's detection classes."""

from __future__ import annotations

import itertools
from collections import OrderedDict
from typing import Any

import torch
import torchvision
from torch import nn
from torch._subclasses.fake_tensor import FakeTensor
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.models.detection.mask_rcnn import MaskRCNN
from torchvision.models.detection.ssd import SSD, SSDHead
from torchvision.ops.misc import FrozenBatchNorm2d

from ..base import SupervisedWorkload
from ..detection import (
    _IMAGENET_MEAN,
    _IMAGENET_STD,
    SSD300_ASPECT_RATIOS,
    SSD300_CHANNELS,
    SSD300_EXTRA_MID,
    SSD300_SCALES,
    SSD300_STEPS,
)

# --- Synthetic COCO-like batches ------------------------------------------------------------------------


def random_boxes(n: int, height: int, width: int, device: torch.device,
                 min_size: float = 4.0) -> torch.Tensor:
    """``n`` valid (x1, y1, x2, y2) boxes inside a ``height`` x ``width`` image, each at least ``min_size``
    pixels wide and tall (smaller images get proportionally smaller boxes)."""
    min_size = min(min_size, height / 4, width / 4)
    size = torch.tensor([width, height], dtype=torch.float32, device=device)
    xy1 = torch.rand(n, 2, device=device) * (size - min_size)
    wh = min_size + torch.rand(n, 2, device=device) * (size - min_size - xy1)
    return torch.cat([xy1, xy1 + wh], dim=1)


def box_masks(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """uint8 instance masks (N x H x W) filling each box: masks consistent with their boxes, as COCO's are."""
    ys = torch.arange(height, device=boxes.device, dtype=boxes.dtype).view(1, -1, 1)
    xs = torch.arange(width, device=boxes.device, dtype=boxes.dtype).view(1, 1, -1)
    x1, y1, x2, y2 = (boxes[:, i].view(-1, 1, 1) for i in range(4))
    return ((xs >= x1) & (xs < x2) & (ys >= y1) & (ys < y2)).to(torch.uint8)


class DetectionWorkload(SupervisedWorkload):
    """A torchvision detection model on synthetic images with random boxes; the loss is the sum of the
    model's loss dict, as in torchvision's detection reference (``losses = sum(loss_dict.values())``)."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, image_size: int, num_classes: int,
                 objects_per_image: int, with_masks: bool, detections: bool = True) -> None:
        super().__init__(model, optimizer, "sgd-momentum")
        self.detections = detections  # False: inference stops at the network's raw outputs (see forward)
        self.image_size = image_size
        self.num_classes = num_classes  # including background (label 0)
        self.objects_per_image = objects_per_image
        self.with_masks = with_masks

    def make_batch(self, batch_size: int, device: torch.device, channels_last: bool = False) -> Any:
        # channels_last is ignored: the model's transform stacks the list into a fresh NCHW tensor.
        s = self.image_size
        images: list[torch.Tensor] = []
        targets: list[dict[str, torch.Tensor]] = []
        for _ in range(batch_size):
            images.append(torch.rand(3, s, s, device=device))  # [0, 1] pixels, as torchvision expects
            boxes = random_boxes(self.objects_per_image, s, s, device)
            target = {
                "boxes": boxes,
                "labels": torch.randint(1, self.num_classes, (self.objects_per_image,), device=device),
            }
            if self.with_masks:
                target["masks"] = box_masks(boxes, s, s)
            targets.append(target)
            if isinstance(boxes, FakeTensor):
                # Traced on fake tensors (dlgpu analyze), where there are no values: every image and target
                # is the first one, so that the trace folds the per-image work (dlgpu.analyze.fold).
                images *= batch_size
                targets += [dict(target) for _ in range(batch_size - 1)]
                break
        return images, targets

    def losses(self, batch: Any) -> dict[str, torch.Tensor]:
        """The model's named losses (training mode)."""
        images, targets = batch
        out: dict[str, torch.Tensor] = self.model(images, targets)
        return out

    def loss(self, batch: Any) -> torch.Tensor:
        total: torch.Tensor = sum(self.losses(batch).values())  # type: ignore[assignment]
        return total

    def forward(self, batch: Any) -> Any:
        """Detections (a list of dicts of boxes, labels, scores and, for Mask R-CNN, masks) in eval mode; with
        ``detections`` off (SSD), the network's raw outputs only: backbone and head on the stacked, already
        normalized batch, no box decoding or non-maximum suppression (what NVIDIA's SSD benchmark times)."""
        if self.detections or not isinstance(self.model, SSD):
            return self.model(batch[0])
        features = self.model.backbone(torch.stack(batch[0]))
        return self.model.head(list(features.values()))


def _sgd(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """SGD with momentum 0.9 over the trainable parameters only (frozen ones get no gradient), as both
    torchvision's detection reference and NVIDIA's SSD do."""
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)


# --- SSD300 (NVIDIA SSD300 v1.1: ResNet-50 backbone) ----------------------------------------------------


class SSD300ResNet50Backbone(nn.Module):
    """NVIDIA's SSD300 v1.1 feature extractor: ResNet-50 up to layer3 ("conv4") with layer3's first block
    at stride 1, so a 300x300 input gives a 38x38x1024 map, then five extra blocks giving 19, 10, 5, 3 and
    1. Returns the six maps as an OrderedDict, which torchvision's ``SSD`` takes as its feature list."""

    def __init__(self) -> None:
        super().__init__()
        resnet = torchvision.models.resnet50(weights=None)
        # conv1, bn1, relu, maxpool, layer1, layer2, layer3: NVIDIA's `list(backbone.children())[:7]`.
        self.feature_extractor = nn.Sequential(*list(resnet.children())[:7])
        conv4_block1 = resnet.layer3[0]
        conv4_block1.conv1.stride = (1, 1)
        conv4_block1.conv2.stride = (1, 1)
        conv4_block1.downsample[0].stride = (1, 1)
        blocks = []
        for i, (cin, cout, mid) in enumerate(
            zip(SSD300_CHANNELS[:-1], SSD300_CHANNELS[1:], SSD300_EXTRA_MID, strict=True)
        ):
            # The first three halve the map (stride 2, padding 1); the last two are unpadded 3x3 convs
            # (5 -> 3 -> 1), as in NVIDIA's _build_additional_features.
            last = (
                nn.Conv2d(mid, cout, kernel_size=3, padding=1, stride=2, bias=False)
                if i < 3
                else nn.Conv2d(mid, cout, kernel_size=3, bias=False)
            )
            blocks.append(nn.Sequential(
                nn.Conv2d(cin, mid, kernel_size=1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
                last, nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            ))
        self.additional_blocks = nn.ModuleList(blocks)
        # NVIDIA's _init_weights: Xavier-uniform for the extra layers (the heads get it from SSDHead).
        for p in self.additional_blocks.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        feats = [self.feature_extractor(x)]
        for block in self.additional_blocks:
            feats.append(block(feats[-1]))
        return OrderedDict((str(i), f) for i, f in enumerate(feats))


def build_ssd300(num_classes: int = 81) -> SSD:
    """torchvision's SSD (matching, hard negative mining 3:1, smooth-L1 + cross-entropy, box coding with
    weights 10, 10, 5, 5 = NVIDIA's scale_xy 0.1 / scale_wh 0.2) around NVIDIA's ResNet-50 SSD300 network."""
    anchors = DefaultBoxGenerator(SSD300_ASPECT_RATIOS, scales=SSD300_SCALES, steps=SSD300_STEPS)
    head = SSDHead(list(SSD300_CHANNELS), anchors.num_anchors_per_location(), num_classes)
    return SSD(SSD300ResNet50Backbone(), anchors, (300, 300), num_classes, head=head)


class _TinySSDBackbone(nn.Module):
    """Four conv blocks giving maps at 1/8, 1/16, 1/32 and 1/64 of the input: SSD's shape, at toy size."""

    def __init__(self, channels: tuple[int, ...] = (16, 16, 16, 16)) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False),
                                 nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

        self.stem = nn.Sequential(block(3, 8), block(8, 8), block(8, channels[0]))
        self.extra = nn.ModuleList(block(a, b) for a, b in itertools.pairwise(channels))

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        feats = [self.stem(x)]
        for b in self.extra:
            feats.append(b(feats[-1]))
        return OrderedDict((str(i), f) for i, f in enumerate(feats))


# --- Mask R-CNN -----------------------------------------------------------------------------------------


@torch.no_grad()
def calibrate_frozen_bn(module: nn.Module, x: torch.Tensor) -> None:
    """Set every FrozenBatchNorm2d's statistics to those of its input on ``x``, as one training-mode
    BatchNorm pass would.

    A FrozenBatchNorm2d network is meant to hold pretrained statistics; with random weights and the default
    mean 0 / variance 1 it normalizes nothing, activations grow through the 16 residual blocks and the first
    SGD step overflows to NaN. NaN boxes then change the data-dependent work (proposals, sampling, NMS), so
    the timed steps would stop being the real task's. Each hook fires before its layer normalizes, so later
    layers see already-normalized inputs, exactly as in a training-mode forward. On the meta device this
    is shape-only and free."""

    def set_stats(bn: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        (inp,) = args
        getattr(bn, "running_mean").copy_(inp.mean(dim=(0, 2, 3)))  # noqa: B009  (buffers: typed Any)
        getattr(bn, "running_var").copy_(inp.var(dim=(0, 2, 3), unbiased=False))  # noqa: B009

    handles = [m.register_forward_pre_hook(set_stats) for m in module.modules()
               if isinstance(m, FrozenBatchNorm2d)]
    try:
        module(x)
    finally:
        for h in handles:
            h.remove()


def build_maskrcnn(num_classes: int = 91, min_size: int = 800, max_size: int = 1333,
                   box_score_thresh: float = 0.05) -> MaskRCNN:
    """Mask R-CNN R50-FPN as torchvision's reference trains it.

    The reference starts from an ImageNet backbone (``--weights-backbone ResNet50_Weights.IMAGENET1K_V1``),
    and ``maskrcnn_resnet50_fpn`` then uses FrozenBatchNorm2d and trains only layer2-layer4
    (trainable_backbone_layers=3). We build exactly that with random weights: calling the builder with
    ``weights_backbone=None`` instead would give trainable BatchNorm and a trainable stem and layer1, a
    costlier backward than the real task's (and 53,120 more parameters than the published 44,401,393).
    The frozen statistics are calibrated on one random batch (see ``calibrate_frozen_bn``), standing in for
    the pretrained ones."""
    backbone = resnet_fpn_backbone(
        backbone_name="resnet50", weights=None, norm_layer=FrozenBatchNorm2d, trainable_layers=3
    )
    mean = torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1)
    calibrate_frozen_bn(backbone.body, (torch.rand(2, 3, 224, 224) - mean) / std)
    return MaskRCNN(backbone, num_classes=num_classes, min_size=min_size, max_size=max_size,
                    box_score_thresh=box_score_thresh)
