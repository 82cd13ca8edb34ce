"""Image classification workloads (torchvision models, random weights, synthetic ImageNet-shaped batches)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .registry import Param, TaskFacts, register_workload

if TYPE_CHECKING:
    from .models.vision import ClassifierWorkload, InceptionV3Workload

IMAGENET_1K = TaskFacts(
    dataset="ImageNet-1k (ILSVRC2012)",
    # 1,281,167 training and 50,000 validation images: Russakovsky et al., "ImageNet Large Scale Visual
    # Recognition Challenge", IJCV 2015, Table 2. Training archive ILSVRC2012_img_train.tar:
    # 147,897,477,120 bytes (its size as listed with the official download; torchvision's ImageNet
    # dataset docs point to the same archive).
    train_samples=1_281_167,
    eval_samples=50_000,
    eval_dataset="the ImageNet-1k validation set",
    dataset_bytes=147_897_477_120,
    epochs=90,
    target_quality="76.13% top-1 (torchvision ResNet50_Weights.IMAGENET1K_V1)",
    source=(
        "https://arxiv.org/abs/1409.0575 ; "
        "https://github.com/pytorch/vision/tree/main/references/classification (90-epoch recipe) ; "
        "https://pytorch.org/vision/stable/models/generated/torchvision.models.resnet50.html"
    ),
)


_IMAGE_SIZE = Param("image_size", 224, "input height and width in pixels", minimum=32)
_NUM_CLASSES = Param("num_classes", 1000, "classifier outputs")


@register_workload(
    name="resnet50",
    family="vision",
    description="ResNet-50 v1.5 (torchvision), ImageNet-1k classification at 224x224",
    batch_size=256,
    quick_batch_size=8,
    facts=IMAGENET_1K,
    params=(_IMAGE_SIZE, _NUM_CLASSES),
    channels_last=True,
    architecture_source="He et al. 2016 (arXiv:1512.03385); v1.5 = stride 2 in the 3x3 conv, as torchvision",
)
def resnet50(p: Mapping[str, Any]) -> ClassifierWorkload:
    import torchvision

    from .models.vision import ClassifierWorkload

    model = torchvision.models.resnet50(weights=None, num_classes=p["num_classes"])
    return ClassifierWorkload(model, p["image_size"], p["num_classes"])


@register_workload(
    name="test_resnet",
    family="vision",
    description="tiny ResNet (one BasicBlock per stage, 32x32 inputs) for tests",
    batch_size=4,
    quick_batch_size=4,
    facts=IMAGENET_1K,
    params=(
        Param("image_size", 32, "input height and width", minimum=8),
        Param("num_classes", 10, "outputs"),
    ),
    channels_last=True,
    tiny=True,
    architecture_source="torchvision.models.resnet.ResNet(BasicBlock, [1, 1, 1, 1])",
)
def test_resnet(p: Mapping[str, Any]) -> ClassifierWorkload:
    import torchvision

    from .models.vision import ClassifierWorkload

    model = torchvision.models.resnet.ResNet(
        torchvision.models.resnet.BasicBlock, [1, 1, 1, 1], num_classes=p["num_classes"]
    )
    return ClassifierWorkload(model, p["image_size"], p["num_classes"])


# --- More ImageNet classifiers -------------------------------------------------------------------------
#
# Every quality target below is torchvision's published acc@1 of the model's IMAGENET1K_V1 weights, read
# from the weights' metadata (``torchvision.models.<Model>_Weights.IMAGENET1K_V1.meta["_metrics"]``, also on
# https://pytorch.org/vision/stable/models.html), and the epochs are those of the recipe that produced
# those weights (the ``recipe`` link in the same metadata). The dataset counts are ImageNet-1k's, shared
# with resnet50 above.
#
# Batch sizes: torchvision's classification reference trains with ``--batch-size 32`` per GPU on 8 GPUs
# (references/classification/train.py default and README), the recipe behind the ResNet-152 and VGG-16
# weights; Inception-v3's paper used 32 per replica too (Szegedy et al. 2016, section 8). We use that
# per-GPU batch for all four so that their numbers compare with each other.

_TV_CLASSIFICATION = "https://github.com/pytorch/vision/tree/main/references/classification"
_TV_MODELS = "https://pytorch.org/vision/stable/models.html"

RESNET152_FACTS = replace(
    IMAGENET_1K,
    # Recipe of ResNet152_Weights.IMAGENET1K_V1: the torchvision reference's ResNet recipe, 90 epochs
    # (train.py default --epochs 90, lr 0.1 stepped every 30 epochs).
    epochs=90,
    target_quality="78.312% top-1 (torchvision ResNet152_Weights.IMAGENET1K_V1)",
    source=(
        "https://arxiv.org/abs/1409.0575 (ImageNet counts) ; "
        f"{_TV_CLASSIFICATION}#resnet (90-epoch recipe) ; {_TV_MODELS} (acc@1 78.312)"
    ),
)

VGG16_FACTS = replace(
    IMAGENET_1K,
    # VGG16_Weights.IMAGENET1K_V1 were "trained from scratch by using a simplified training recipe" in
    # torchvision (its meta ``_docs``): the reference's AlexNet/VGG recipe, i.e. the default 90 epochs with
    # --lr 1e-2. The VGG paper (Simonyan & Zisserman, arXiv:1409.1556, section 3.1) stopped after 370K
    # iterations at batch 256 = 74 epochs, but those are not the weights whose accuracy we quote.
    epochs=90,
    target_quality="71.592% top-1 (torchvision VGG16_Weights.IMAGENET1K_V1)",
    source=(
        "https://arxiv.org/abs/1409.0575 (ImageNet counts) ; "
        f"{_TV_CLASSIFICATION}#alexnet-and-vgg (recipe: default 90 epochs, lr 1e-2) ; "
        f"{_TV_MODELS} (acc@1 71.592) ; https://arxiv.org/abs/1409.1556 (paper: 74 epochs)"
    ),
    notes="The VGG paper trained 74 epochs (370K iterations at batch 256); torchvision's weights, whose "
    "accuracy is the target here, came from its own 90-epoch recipe.",
)

INCEPTION_V3_FACTS = replace(
    IMAGENET_1K,
    # Inception_V3_Weights.IMAGENET1K_V1 are "ported from the original paper" (meta ``_docs``). Szegedy et
    # al., "Rethinking the Inception Architecture for Computer Vision", arXiv:1512.00567, section 8:
    # "50 replicas ... batch size 32 for 100 epochs", RMSProp (decay 0.9, eps 1.0), lr 0.045.
    epochs=100,
    target_quality="77.294% top-1 (torchvision Inception_V3_Weights.IMAGENET1K_V1, ported from the paper)",
    source=(
        "https://arxiv.org/abs/1409.0575 (ImageNet counts) ; "
        "https://arxiv.org/abs/1512.00567 section 8 (100 epochs, batch 32 per replica) ; "
        f"{_TV_MODELS} (acc@1 77.294)"
    ),
    notes="The paper trained with RMSProp; this workload uses SGD with momentum, which costs the same "
    "per step up to one extra optimizer state per parameter.",
)

EFFICIENTNET_B0_FACTS = replace(
    IMAGENET_1K,
    # EfficientNet_B0_Weights.IMAGENET1K_V1 are "ported from the original paper" (meta ``_docs``). Tan & Le,
    # "EfficientNet", arXiv:1905.11946, section 5.2 gives the optimizer (RMSProp, lr 0.256 decayed 0.97
    # every 2.4 epochs) but, as far as we could check offline, no number of epochs: left unknown.
    epochs=None,
    target_quality="77.692% top-1 (torchvision EfficientNet_B0_Weights.IMAGENET1K_V1, ported from the paper)",
    source=(
        "https://arxiv.org/abs/1409.0575 (ImageNet counts) ; "
        f"{_TV_CLASSIFICATION}#efficientnet-v1 ; {_TV_MODELS} (acc@1 77.692) ; "
        "https://arxiv.org/abs/1905.11946 section 5.2 (recipe, no epoch count)"
    ),
    notes="epochs unknown: the EfficientNet paper's training setup (section 5.2), whose weights torchvision "
    "ports, gives no epoch count that we could cite, so no training-time estimate is given. The paper "
    "trained with RMSProp; this workload uses SGD with momentum.",
)


@register_workload(
    name="resnet152",
    family="vision",
    description="ResNet-152 v1.5 (torchvision), ImageNet-1k classification at 224x224",
    batch_size=32,  # torchvision classification reference: --batch-size 32 per GPU (x8 GPUs)
    quick_batch_size=4,
    facts=RESNET152_FACTS,
    params=(_IMAGE_SIZE, _NUM_CLASSES),
    channels_last=True,
    architecture_source="He et al. 2016 (arXiv:1512.03385), [3, 8, 36, 3] Bottleneck blocks; torchvision",
)
def resnet152(p: Mapping[str, Any]) -> ClassifierWorkload:
    import torchvision

    from .models.vision import ClassifierWorkload

    model = torchvision.models.resnet152(weights=None, num_classes=p["num_classes"])
    return ClassifierWorkload(model, p["image_size"], p["num_classes"])


@register_workload(
    name="vgg16",
    family="vision",
    description="VGG-16 without batch norm (torchvision), ImageNet-1k classification at 224x224",
    batch_size=32,  # torchvision classification reference: --batch-size 32 per GPU (x8 GPUs)
    quick_batch_size=4,
    facts=VGG16_FACTS,
    params=(_IMAGE_SIZE, _NUM_CLASSES),
    channels_last=True,
    architecture_source="Simonyan & Zisserman 2015 (arXiv:1409.1556), configuration D; torchvision vgg16",
)
def vgg16(p: Mapping[str, Any]) -> ClassifierWorkload:
    import torchvision

    from .models.vision import ClassifierWorkload

    model = torchvision.models.vgg16(weights=None, num_classes=p["num_classes"])
    # torchvision's AlexNet/VGG recipe uses --lr 1e-2: its README says the default 0.1 "is too high" for
    # these models without batch norm.
    return ClassifierWorkload(model, p["image_size"], p["num_classes"], lr=0.01)


@register_workload(
    name="inception_v3",
    family="vision",
    description="Inception-v3 with its auxiliary classifier (torchvision), ImageNet-1k at 299x299",
    batch_size=32,  # Szegedy et al. 2016, section 8: batch size 32 on each of 50 replicas
    quick_batch_size=4,
    facts=INCEPTION_V3_FACTS,
    params=(
        # The auxiliary head needs Mixed_6e's 17x17 map (a 5x5 pool with stride 3, then a 5x5 conv): any
        # input below 299x299 fails in training.
        Param("image_size", 299, "input height and width in pixels (training needs at least 299)",
              minimum=299),
        _NUM_CLASSES,
    ),
    channels_last=True,
    architecture_source="Szegedy et al. 2016 (arXiv:1512.00567); torchvision inception_v3(aux_logits=True)",
)
def inception_v3(p: Mapping[str, Any]) -> InceptionV3Workload:
    import torchvision

    from .models.vision import InceptionV3Workload

    model = torchvision.models.inception_v3(
        weights=None, num_classes=p["num_classes"], aux_logits=True, init_weights=True
    )
    return InceptionV3Workload(model, p["image_size"], p["num_classes"])


@register_workload(
    name="efficientnet_b0",
    family="vision",
    description="EfficientNet-B0 (torchvision), ImageNet-1k classification at 224x224",
    # No per-GPU batch is citable for the paper's TPU training; torchvision's reference default of 32 per
    # GPU keeps it comparable with the other classifiers here.
    batch_size=32,
    quick_batch_size=8,
    facts=EFFICIENTNET_B0_FACTS,
    params=(_IMAGE_SIZE, _NUM_CLASSES),
    channels_last=True,
    architecture_source="Tan & Le 2019 (arXiv:1905.11946), B0; torchvision efficientnet_b0",
)
def efficientnet_b0(p: Mapping[str, Any]) -> ClassifierWorkload:
    import torchvision

    from .models.vision import ClassifierWorkload

    model = torchvision.models.efficientnet_b0(weights=None, num_classes=p["num_classes"])
    return ClassifierWorkload(model, p["image_size"], p["num_classes"])
