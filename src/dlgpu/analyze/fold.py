"""Per-image work traced once: torchvision's detection models loop over a batch's images in Python.

Detection models do part of their work one image at a time (resizing, box matching, box encoding,
post-processing with its per-class NMS loop), so a fake-tensor trace at batch 448 would dispatch tens of
thousands of small operators, each costing the full Python overhead of FakeTensorMode. On fake tensors
every image of a synthetic batch has the same shapes, so every image does the same work: while an
``OpRecorder`` is active, the functions below are traced for the first image and their records are
counted once per image. The op records are the same as an unfolded trace's (tests/test_trace_detection.py
checks this), with one exception noted below.

- **Memoized** (grad-free functions of one image's tensors, called once per image): the first call with
  given argument shapes is traced; later calls with the same shapes count the same records again and get
  the same (fake) outputs. ``box_iou``, the matchers, ``BoxCoder.encode_single``/``decode_single``, the
  transform's ``normalize``/``resize``/``resize_boxes``, Mask R-CNN's ``paste_mask_in_image`` (and SSD's
  default-box grid, built once per call of the anchor generator).
- **Anchor generators** (one grid for the batch, then a copy per image): traced for one and for two
  images; the difference is the per-image work, counted once per further image.
- **SSD post-processing** (per image, 80 classes x score threshold, top-k and NMS): traced on the first
  image and counted once per image. Its first operator, a softmax over the whole batch, is then counted
  as one softmax per image: the same FLOPs and bytes, with B - 1 more kernel launches than a real step
  (0.1% of SSD300's inference kernels at batch 32).

A function is only folded where every tensor argument is a fake tensor that does not require grad, so
real runs and autograd-tracked work are untouched; in SSD's loss, the per-image loop still runs image by
image, but its operators on the (identical) target, anchor and match tensors are answered once
(``Reuse``). Shared outputs are saved for backward once where a real step saves one per image: the
activation bytes of a folded trace miss the per-image box-regression targets (448 bytes per image for
SSD300, against about 240 MB of activations per image at fp32)."""

from __future__ import annotations

import contextlib
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import torch
from torch._subclasses.fake_tensor import FakeTensor
from torch.utils._pytree import tree_flatten


class Recorder(Protocol):
    """What folding needs of ``trace.OpRecorder``."""

    recording: bool
    phase: str

    def capture(self) -> contextlib.AbstractContextManager[Counter[Any]]: ...

    def replay(self, records: Counter[Any], times: int = 1) -> None: ...

    def fact(self, t: torch.Tensor) -> Any: ...


_MEMOIZED = (
    ("torchvision.ops.boxes", "box_iou"),
    ("torchvision.models.detection._utils", "Matcher.__call__"),
    ("torchvision.models.detection._utils", "SSDMatcher.__call__"),
    ("torchvision.models.detection._utils", "BoxCoder.encode_single"),
    ("torchvision.models.detection._utils", "BoxCoder.decode_single"),
    ("torchvision.models.detection.transform", "GeneralizedRCNNTransform.normalize"),
    ("torchvision.models.detection.transform", "GeneralizedRCNNTransform.resize"),
    ("torchvision.models.detection.transform", "resize_boxes"),
    ("torchvision.models.detection.roi_heads", "paste_mask_in_image"),
    ("torchvision.models.detection.anchor_utils", "DefaultBoxGenerator._grid_default_boxes"),
)
_ANCHORS = (
    ("torchvision.models.detection.anchor_utils", "DefaultBoxGenerator.forward"),
    ("torchvision.models.detection.anchor_utils", "AnchorGenerator.forward"),
)
_PER_IMAGE = (("torchvision.models.detection.ssd", "SSD.postprocess_detections"),)
_REUSING = (("torchvision.models.detection.ssd", "SSD.compute_loss"),)
_LEAF_TYPES = (bool, int, float, str, torch.dtype, torch.device, torch.layout, torch.memory_format)


class Reuse:
    """Answers to operator calls already made on the same tensor objects, within one folded function.

    With every image the same (``DetectionWorkload.make_batch`` on fake tensors), SSD's loss loop calls
    the same operators on the same target, anchor and match tensors once per image; the first answer
    stands for the rest and its record is counted again. Calls involving a tensor that requires grad are
    always made (their autograd graph is per image)."""

    def __init__(self, state: Callable[[], tuple[Any, ...]]) -> None:
        self.state = state
        self.entries: dict[Any, tuple[Any, Any, list[Any]]] = {}

    def _key(self, func: Any, args: Any, kwargs: Any) -> tuple[Any, list[Any]] | None:
        if func.is_view:  # autograd makes each view's output a view of its own: it cannot be shared
            return None
        leaves, spec = tree_flatten((args, kwargs))
        parts: list[Any] = []
        for a in leaves:
            if isinstance(a, torch.Tensor):
                if not isinstance(a, FakeTensor) or a.requires_grad:
                    return None
                parts.append((id(a), tuple(a.shape), a.stride()))
            elif a is None or isinstance(a, _LEAF_TYPES):
                parts.append((type(a), a))
            else:
                return None
        return (func, spec, tuple(parts), self.state()), leaves

    def get(self, func: Any, args: Any, kwargs: Any) -> tuple[Any, Any] | None:
        k = self._key(func, args, kwargs)
        e = self.entries.get(k[0]) if k is not None else None
        return None if e is None else (e[0], e[1])

    def put(self, func: Any, args: Any, kwargs: Any, out: Any, record: Any) -> None:
        k = self._key(func, args, kwargs)
        if k is not None and not any(t.requires_grad for t in _tensors(out)):
            self.entries[k[0]] = (out, record, k[1])  # the leaves keep the tensors' ids theirs


class _Unfoldable(Exception):
    """Arguments the fold cannot key on: call the function as it is."""


class Folding:
    """The patches for one recorder; ``installed()`` applies them for the duration of a block."""

    def __init__(self, recorder: Recorder) -> None:
        self.rec = recorder
        self.memo: dict[Any, tuple[Counter[Any], Any]] = {}
        self.unfoldable: set[Any] = set()
        self.reuse: Reuse | None = None

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        self.memo.clear()
        self.unfoldable.clear()
        saved: list[tuple[Any, str, Any]] = []
        try:
            for group, make in ((_MEMOIZED, self._memoized), (_ANCHORS, self._anchors),
                                (_PER_IMAGE, self._per_image), (_REUSING, self._reusing)):
                for module_name, path in group:
                    target = _resolve(module_name, path)
                    if target is None:
                        continue
                    owner, name, fn = target
                    saved.append((owner, name, fn))
                    setattr(owner, name, make(fn))
            yield
        finally:
            for owner, name, fn in reversed(saved):
                setattr(owner, name, fn)

    # Keys: what a fake function's result depends on.

    def _key(self, x: Any) -> Any:
        if isinstance(x, torch.Tensor):
            if not isinstance(x, FakeTensor) or x.requires_grad or x.constant is not None:
                raise _Unfoldable
            return ("T", tuple(x.shape), x.stride(), x.dtype, x.device, self.rec.fact(x))
        if x is None or isinstance(x, bool | int | float | str | torch.dtype | torch.device):
            return x
        if isinstance(x, list | tuple):
            return (type(x).__name__, *(self._key(v) for v in x))
        if isinstance(x, torch.Size):
            return tuple(x)
        if isinstance(x, dict):
            return ("dict", *((k, self._key(v)) for k, v in x.items()))
        if isinstance(x, torch.nn.Module) or type(x).__module__.startswith("torchvision."):
            return ("obj", id(x), getattr(x, "training", None))
        raise _Unfoldable

    def _state(self) -> tuple[Any, ...]:
        return (self.rec.recording, self.rec.phase, torch.is_grad_enabled(), torch.is_autocast_enabled("cpu"),
                torch.get_autocast_dtype("cpu"))

    def _memoized(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def folded(*args: Any, **kwargs: Any) -> Any:
            try:
                key = (fn, self._state(), self._key(args), self._key(kwargs))
            except _Unfoldable:
                return fn(*args, **kwargs)
            hit = self.memo.get(key)
            if hit is not None:
                self.rec.replay(hit[0])
                return hit[1]
            if key in self.unfoldable:
                return fn(*args, **kwargs)
            with self.rec.capture() as records:
                out = fn(*args, **kwargs)
            self.rec.replay(records)
            if any(t.requires_grad for t in _tensors(out)):
                self.unfoldable.add(key)
            else:
                self.memo[key] = (records, out)
            return out

        return folded

    def _anchors(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def folded(generator: Any, image_list: Any, feature_maps: list[torch.Tensor]) -> Any:
            sizes = list(image_list.image_sizes)
            n = len(sizes)
            try:  # the feature maps (which require grad in training) are only read for their shapes
                self._key((image_list.tensors, [f.detach() for f in feature_maps]))
            except _Unfoldable:
                return fn(generator, image_list, feature_maps)
            if n < 3 or any(s != sizes[0] for s in sizes):
                return fn(generator, image_list, feature_maps)
            cls = type(image_list)
            with self.rec.capture() as one:
                fn(generator, cls(image_list.tensors[:1], sizes[:1]), feature_maps)
            with self.rec.capture() as two:
                out = fn(generator, cls(image_list.tensors[:2], sizes[:2]), feature_maps)
            per_image = two.copy()
            per_image.subtract(one)
            if any(v < 0 for v in per_image.values()) or len(out) != 2:  # not one grid + a copy per image
                return fn(generator, image_list, feature_maps)
            self.rec.replay(one)
            self.rec.replay(+per_image, n - 1)
            return [out[0]] * n

        return folded

    def _per_image(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def folded(model: Any, head_outputs: dict[str, torch.Tensor], image_anchors: list[torch.Tensor],
                   image_shapes: list[tuple[int, int]]) -> Any:
            n = len(image_anchors)
            try:
                self._key((head_outputs, image_anchors))
            except _Unfoldable:
                return fn(model, head_outputs, image_anchors, image_shapes)
            same = all(tuple(a.shape) == tuple(image_anchors[0].shape) for a in image_anchors)
            if n < 2 or not same or any(s != image_shapes[0] for s in image_shapes):
                return fn(model, head_outputs, image_anchors, image_shapes)
            first = {k: v[:1] for k, v in head_outputs.items()}
            with self.rec.capture() as records:
                out = fn(model, first, image_anchors[:1], image_shapes[:1])
            self.rec.replay(records, n)
            return [dict(out[0]) for _ in range(n)]

        return folded


    def _reusing(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def folded(*args: Any, **kwargs: Any) -> Any:
            if self.reuse is not None:
                return fn(*args, **kwargs)
            self.reuse = Reuse(self._state)
            try:
                return fn(*args, **kwargs)
            finally:
                self.reuse = None

        return folded


def _tensors(x: Any) -> list[torch.Tensor]:
    return [t for t in tree_flatten(x)[0] if isinstance(t, torch.Tensor)]


def _resolve(module_name: str, path: str) -> tuple[Any, str, Any] | None:
    """(owner, attribute, current value) for ``module.path``; None where torchvision lacks it."""
    owner: Any = sys.modules.get(module_name)  # never import torchvision for a model that does not use it
    if owner is None:
        return None
    *outer, name = path.split(".")
    for part in outer:
        owner = owner.__dict__.get(part) if isinstance(owner, type) else getattr(owner, part, None)
        if owner is None:
            return None
    fn = owner.__dict__.get(name) if isinstance(owner, type) else getattr(owner, name, None)
    return None if fn is None else (owner, name, fn)
