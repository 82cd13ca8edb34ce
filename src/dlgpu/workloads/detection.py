"""Object detection workloads: SSD300 (NVIDIA's ResNet-50 variant) and Mask R-CNN on synthetic COCO data.

Both are built from torchvision's own detection classes (``SSD``, ``MaskRCNN``) so that the parts that cost
time besides the convolutions (box matching, hard negative mining, RPN proposals and NMS, RoIAlign, the
mask head) are the real ones. Weights are random: nothing is downloaded.

Detection models take a *list* of images and build their batch tensor themselves (their transform
normalizes, resizes and pads), so the input's memory format never reaches the network: these workloads
run NCHW (``channels_last=False``), as torchvision's and NVIDIA's detection references do."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .registry import Param, TaskFacts, register_workload

if TYPE_CHECKING:
    from .models.detection import DetectionWorkload


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


@register_workload(
    name="ssd300",
    family="detection",
    description="SSD300 v1.1 with a ResNet-50 backbone (NVIDIA), COCO detection at 300x300",
    # NVIDIA's SSD main.py: --batch-size 32 per GPU by default, the batch its lr rule is written for.
    batch_size=32,
    quick_batch_size=2,
    facts=SSD300_FACTS,
    sample_unit="image",
    params=(Param("num_classes", 81, "classes including background (COCO: 80 + 1)", minimum=2), _OBJECTS,
            Param("detections", True, "inference decodes boxes and runs non-maximum suppression (false: the "
                  "network's raw outputs only, as NVIDIA's benchmark-inference mode times it)", minimum=None)),
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
    from .models.detection import DetectionWorkload, _sgd, build_ssd300

    model = build_ssd300(p["num_classes"])
    # NVIDIA: SGD momentum 0.9, lr 2.6e-3 at 32 images per GPU, weight decay 5e-4.
    return DetectionWorkload(model, _sgd(model, lr=2.6e-3, weight_decay=5e-4), 300, p["num_classes"],
                             p["objects_per_image"], with_masks=False, detections=p["detections"])


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
        Param("detections", True, "inference decodes boxes and runs NMS (false: raw outputs only)", minimum=None),
    ),
    channels_last=False,
    tiny=True,
    notes="Like ssd300, trains at batch 2 or more (BatchNorm on a 1x1 map).",
    architecture_source="torchvision.models.detection.SSD with a toy backbone",
)
def test_ssd(p: Mapping[str, Any]) -> DetectionWorkload:
    from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
    from torchvision.models.detection.ssd import SSD, SSDHead

    from .models.detection import DetectionWorkload, _sgd, _TinySSDBackbone

    channels = (16, 16, 16, 16)
    anchors = DefaultBoxGenerator([[2], [2, 3], [2], [2]])
    head = SSDHead(list(channels), anchors.num_anchors_per_location(), p["num_classes"])
    size = (p["image_size"], p["image_size"])
    model = SSD(_TinySSDBackbone(channels), anchors, size, p["num_classes"], head=head)
    return DetectionWorkload(model, _sgd(model, lr=1e-2, weight_decay=5e-4), p["image_size"],
                             p["num_classes"], p["objects_per_image"], with_masks=False,
                             detections=p["detections"])


# --- Mask R-CNN -----------------------------------------------------------------------------------------

# ImageNet normalization, applied by the detection models' transform to [0, 1] images.
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


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
    from .models.detection import DetectionWorkload, _sgd, build_maskrcnn

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
    from torch import nn
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.mask_rcnn import MaskRCNN, MaskRCNNHeads, MaskRCNNPredictor
    from torchvision.ops import MultiScaleRoIAlign

    from .models.detection import DetectionWorkload, _sgd

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
