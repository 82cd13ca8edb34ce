"""Object detection workloads: SSD300 (NVIDIA's ResNet-50 variant) and Mask R-CNN on synthetic COCO data.

Both are built from torchvision's own detection classes (``SSD``, ``MaskRCNN``) so that the parts that cost
time besides the convolutions (box matching, hard negative mining, RPN proposals and NMS, RoIAlign, the
mask head) are the real ones. Weights are random: nothing is downloaded.

Detection models take a *list* of images and build their batch tensor themselves (their transform
normalizes, resizes and pads), so the input's memory format never reaches the network: these workloads
run NCHW (``channels_last=False``), as torchvision's and NVIDIA's detection references do."""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import torch
import torchvision
from torch import nn
from torch._subclasses.fake_tensor import FakeTensor
from torchvision.models.detection.anchor_utils import AnchorGenerator, DefaultBoxGenerator
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNN, MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.ssd import SSD, SSDHead
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.misc import FrozenBatchNorm2d

from .base import SupervisedWorkload
from .registry import Param, TaskFacts, register_workload

# --- Facts ----------------------------------------------------------------------------------------------

_COCO_SOURCE = (
    "https://cocodataset.org/#download (train2017 118,287 / val2017 5,000 images, the image counts of "
    "instances_train2017.json and instances_val2017.json) ; https://arxiv.org/abs/1405.0312 (COCO)"
)
_COCO_NOTES = (
    "dataset_bytes unknown: the COCO download page gives train2017.zip only as '18GB'. torchvision's "
    "detection reference drops training images without annotations (coco_utils."
    "_coco_remove_images_without_annotations), so its epochs are slightly shorter than 118,287 images."
)

SSD300_FACTS = TaskFacts(
    dataset="COCO 2017 (train2017)",
    train_samples=118_287,
    eval_samples=5_000,
    eval_dataset="COCO val2017",
    # NVIDIA DeepLearningExamples, SSD300 v1.1 for PyTorch (README "Default configuration", main.py
    # defaults): 65 epochs, SGD momentum 0.9, lr 2.6e-3 scaled by GPUs x batch / 32, lr x0.1 at epochs 43
    # and 54, weight decay 5e-4.
    epochs=65,
    target_quality=None,
    source=(
        "https://github.com/NVIDIA/DeepLearningExamples/tree/master/PyTorch/Detection/SSD (65 epochs) ; "
        + _COCO_SOURCE
    ),
    notes=(
        "target_quality unknown: NVIDIA's README publishes the COCO box mAP of this 65-epoch schedule in "
        "its training-accuracy tables, but the figure could not be checked offline when this was written, "
        "so it is left out rather than quoted from memory. " + _COCO_NOTES
    ),
)

MASKRCNN_FACTS = TaskFacts(
    dataset="COCO 2017 (train2017)",
    train_samples=118_287,
    eval_samples=5_000,
    eval_dataset="COCO val2017",
    # torchvision references/detection README, Mask R-CNN: "--epochs 26 --lr-steps 16 22
    # --aspect-ratio-group-factor 3 --weights-backbone ResNet50_Weights.IMAGENET1K_V1" on 8 GPUs x 2 images.
    epochs=26,
    # MaskRCNN_ResNet50_FPN_Weights.COCO_V1.meta["_metrics"]["COCO-val2017"]: box_map 37.9, mask_map 34.6.
    target_quality=(
        "37.9 box AP / 34.6 mask AP on COCO val2017 (torchvision MaskRCNN_ResNet50_FPN_Weights.COCO_V1)"
    ),
    source=(
        "https://github.com/pytorch/vision/tree/main/references/detection#mask-r-cnn (26 epochs) ; "
        "https://pytorch.org/vision/stable/models/generated/torchvision.models.detection.maskrcnn_resnet50_fpn.html"
        " (box AP 37.9, mask AP 34.6) ; " + _COCO_SOURCE
    ),
    notes=_COCO_NOTES,
)

TINY_FACTS = TaskFacts(
    dataset="synthetic (tests only)",
    source="none: a tiny model for tests, standing for no real task",
    notes="No real task: epochs and quality are not defined for test variants.",
)

# COCO averages 7.7 object instances per image (Lin et al. 2014, arXiv:1405.0312, section 5).
_OBJECTS = Param("objects_per_image", 7, "ground-truth objects in each synthetic image (COCO averages 7.7)")


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
                 objects_per_image: int, with_masks: bool) -> None:
        super().__init__(model, optimizer, "sgd-momentum")
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
        """Detections (a list of dicts of boxes, labels, scores and, for Mask R-CNN, masks) in eval mode."""
        return self.model(batch[0])


def _sgd(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """SGD with momentum 0.9 over the trainable parameters only (frozen ones get no gradient), as both
    torchvision's detection reference and NVIDIA's SSD do."""
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)


# --- SSD300 (NVIDIA SSD300 v1.1: ResNet-50 backbone) ----------------------------------------------------

# NVIDIA SSD300 v1.1 (DeepLearningExamples/PyTorch/Detection/SSD/ssd/model.py): output channels of the six
# feature maps, the bottleneck width of each extra block, and default boxes per location.
SSD300_CHANNELS = (1024, 512, 512, 256, 256, 256)
SSD300_EXTRA_MID = (256, 256, 128, 128, 128)
# Aspect ratios per feature map; with the two square boxes each map gets 4, 6, 6, 6, 4, 4 default boxes.
SSD300_ASPECT_RATIOS = [[2], [2, 3], [2, 3], [2, 3], [2], [2]]
# Default-box scales and steps of NVIDIA's dboxes300_coco() (scales 21, 45, 99, 153, 207, 261, 315 pixels
# of 300; steps 8, 16, 32, 64, 100, 300), identical to torchvision's ssd300_vgg16.
SSD300_SCALES = [0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05]
SSD300_STEPS = [8, 16, 32, 64, 100, 300]
SSD300_NUM_ANCHORS = 8732  # 38²·4 + 19²·6 + 10²·6 + 5²·6 + 3²·4 + 1²·4 (Liu et al. 2016, arXiv:1512.02325)


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


@register_workload(
    name="ssd300",
    family="detection",
    description="SSD300 v1.1 with a ResNet-50 backbone (NVIDIA), COCO detection at 300x300",
    # NVIDIA's SSD main.py: --batch-size 32 per GPU by default, the batch its lr rule is written for.
    batch_size=32,
    quick_batch_size=2,
    facts=SSD300_FACTS,
    sample_unit="image",
    params=(Param("num_classes", 81, "classes including background (COCO: 80 + 1)", minimum=2), _OBJECTS),
    channels_last=False,  # list input: see the module docstring
    notes="Training needs at least 2 images per batch: the last extra block's BatchNorm sees a 1x1 map, "
    "so at batch 1 it has one value per channel and PyTorch refuses to train it (as in NVIDIA's model).",
    architecture_source=(
        "Liu et al. 2016 (arXiv:1512.02325) with NVIDIA's ResNet-50 backbone: "
        "https://github.com/NVIDIA/DeepLearningExamples/tree/master/PyTorch/Detection/SSD ; "
        "torchvision.models.detection.SSD for loss and box coding"
    ),
)
def ssd300(p: Mapping[str, Any]) -> DetectionWorkload:
    model = build_ssd300(p["num_classes"])
    # NVIDIA: SGD momentum 0.9, lr 2.6e-3 at 32 images per GPU, weight decay 5e-4.
    return DetectionWorkload(model, _sgd(model, lr=2.6e-3, weight_decay=5e-4), 300, p["num_classes"],
                             p["objects_per_image"], with_masks=False)


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


@register_workload(
    name="test_ssd",
    family="detection",
    description="tiny SSD (torchvision SSD class, 4-level toy backbone, 64x64) for tests",
    batch_size=2,
    quick_batch_size=2,
    facts=TINY_FACTS,
    sample_unit="image",
    params=(
        Param("image_size", 64, "input height and width", minimum=16),
        Param("num_classes", 5, "classes including background", minimum=2),
        Param("objects_per_image", 3, "ground-truth objects per image"),
    ),
    channels_last=False,
    tiny=True,
    notes="Like ssd300, trains at batch 2 or more (BatchNorm on a 1x1 map).",
    architecture_source="torchvision.models.detection.SSD with a toy backbone",
)
def test_ssd(p: Mapping[str, Any]) -> DetectionWorkload:
    channels = (16, 16, 16, 16)
    anchors = DefaultBoxGenerator([[2], [2, 3], [2], [2]])
    head = SSDHead(list(channels), anchors.num_anchors_per_location(), p["num_classes"])
    size = (p["image_size"], p["image_size"])
    model = SSD(_TinySSDBackbone(channels), anchors, size, p["num_classes"], head=head)
    return DetectionWorkload(model, _sgd(model, lr=1e-2, weight_decay=5e-4), p["image_size"],
                             p["num_classes"], p["objects_per_image"], with_masks=False)


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


# ImageNet normalization, applied by the detection models' transform to [0, 1] images.
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


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


# Inference keeps every detection up to the cap of 100 per image (box_detections_per_img, COCO's maxDets),
# instead of torchvision's score threshold 0.05. Random weights score every class near 1/91 < 0.05, so at
# 0.05 inference would return no detection and skip the mask head and mask pasting altogether, work that
# a trained model does for up to 100 detections on a COCO image. The threshold only acts at inference; it
# makes inference an upper bound (more candidates reach NMS than with a trained model) rather than
# leaving out a whole stage.
INFER_SCORE_THRESH = 0.0


@register_workload(
    name="maskrcnn",
    family="detection",
    description="Mask R-CNN ResNet-50-FPN (torchvision), COCO instance segmentation, shorter side 800",
    # torchvision references/detection/train.py: -b 2 images per GPU (lr 0.02 for 8 GPUs x 2).
    batch_size=2,
    quick_batch_size=1,
    facts=MASKRCNN_FACTS,
    sample_unit="image",
    params=(
        # Square synthetic images, and the side the model's transform resizes to (torchvision's min_size,
        # 800 in the reference, longer side capped at 1333).
        Param("image_size", 800, "image height and width the model runs at (reference: 800)", minimum=64),
        Param("num_classes", 91, "classes including background (torchvision's COCO ids: 91)", minimum=2),
        _OBJECTS,
    ),
    channels_last=False,  # list input: see the module docstring
    notes="Random weights stand in for the reference's ImageNet backbone: FrozenBatchNorm statistics are "
    "calibrated on random data, SGD runs at the reference's warmup-start lr 2e-5 so repeated steps stay "
    "finite, and inference keeps 100 detections per image (score threshold 0) so the mask head runs.",
    architecture_source=(
        "He et al. 2017 (arXiv:1703.06870); torchvision MaskRCNN + resnet_fpn_backbone('resnet50', "
        "FrozenBatchNorm2d, trainable_layers=3), as maskrcnn_resnet50_fpn with an ImageNet backbone"
    ),
)
def maskrcnn(p: Mapping[str, Any]) -> DetectionWorkload:
    model = build_maskrcnn(p["num_classes"], min_size=p["image_size"], max_size=max(1333, p["image_size"]),
                           box_score_thresh=INFER_SCORE_THRESH)
    # torchvision reference: SGD momentum 0.9, weight decay 1e-4, lr 0.02 (8 GPUs x 2 images) reached by a
    # linear warmup from 0.02 / 1000 over the first 1000 iterations (references/detection/engine.py).
    # Timed steps repeat one random batch from random weights with no warmup, where a constant 0.02 overflows
    # to NaN within ~10 steps (measured), so we use the warmup's first value. lr does not change step cost.
    return DetectionWorkload(model, _sgd(model, lr=2e-5, weight_decay=1e-4), p["image_size"],
                             p["num_classes"], p["objects_per_image"], with_masks=True)


@register_workload(
    name="test_maskrcnn",
    family="detection",
    description="tiny Mask R-CNN (torchvision MaskRCNN, toy backbone and heads, 64x64) for tests",
    batch_size=2,
    quick_batch_size=1,
    facts=TINY_FACTS,
    sample_unit="image",
    params=(
        Param("image_size", 64, "input height and width", minimum=32),
        Param("num_classes", 5, "classes including background", minimum=2),
        Param("objects_per_image", 3, "ground-truth objects per image"),
    ),
    channels_last=False,
    tiny=True,
    architecture_source="torchvision.models.detection.MaskRCNN with a toy backbone and heads",
)
def test_maskrcnn(p: Mapping[str, Any]) -> DetectionWorkload:
    c = 16
    backbone = nn.Sequential(
        nn.Conv2d(3, c, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
        nn.Conv2d(c, c, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
    )
    backbone.out_channels = c  # type: ignore[assignment]  # read by torchvision's RPN and RoI heads
    n = p["num_classes"]
    size = p["image_size"]
    model = MaskRCNN(
        backbone,
        num_classes=None,  # given by the predictors below
        min_size=size,
        max_size=size,
        rpn_anchor_generator=AnchorGenerator(sizes=((8, 16, 32),), aspect_ratios=((0.5, 1.0, 2.0),)),
        rpn_pre_nms_top_n_train=200,
        rpn_post_nms_top_n_train=100,
        rpn_pre_nms_top_n_test=100,
        rpn_post_nms_top_n_test=50,
        rpn_batch_size_per_image=64,
        box_roi_pool=MultiScaleRoIAlign(["0"], output_size=7, sampling_ratio=2),
        box_head=TwoMLPHead(c * 7 * 7, 32),
        box_predictor=FastRCNNPredictor(32, n),
        box_batch_size_per_image=32,
        box_detections_per_img=20,
        box_score_thresh=INFER_SCORE_THRESH,  # as maskrcnn: inference runs the mask head
        mask_roi_pool=MultiScaleRoIAlign(["0"], output_size=14, sampling_ratio=2),
        mask_head=MaskRCNNHeads(c, [c, c], 1),
        mask_predictor=MaskRCNNPredictor(c, c, n),
    )
    return DetectionWorkload(model, _sgd(model, lr=1e-2, weight_decay=1e-4), size, n,
                             p["objects_per_image"], with_masks=True)
