"""Data-dependent sizes on fake tensors: what a trace assumes where a real step would read values.

Fake tensors have shapes but no values, so an operator whose output *size* depends on values (``nonzero``
and ``torch.where(mask)``, boolean-mask indexing, ``masked_select``, ``unique``, torchvision's ``nms``)
cannot run, and neither can Python code that reads a value (``.item()``, ``if mask.any():``). The trace
answers both from the rules below instead of failing. Everything whose size follows from shapes (every
convolution and matmul of the backbone and heads, the top-k caps, ``keep[:detections_per_img]``) is
traced exactly as it runs; the rules only size the selections in between, and through them the work
downstream of a selection (e.g. how many RoIs Mask R-CNN's mask head sees in training).

**Selections** (in this order; the first that applies decides):

1. *Masks built from indices* hold as many True values as were written into them: a ``zeros_like`` mask
   filled by ``mask[idx] = 1`` holds ``len(idx)``; ``cat`` adds, ``|`` adds (up to the size). This is
   exact: it sizes torchvision's sampled anchors/RoIs (``BalancedPositiveNegativeSampler``'s masks) and
   the boxes kept by per-class NMS.
2. *Category masks*: an integer tensor built from constants (``full``, ``full_like``, ``arange``, then
   ``cat``, views, copies and indexing) has a known set of possible values. ``unique`` of it returns every
   value in the set, and ``x == c`` selects an even share, ``numel / len(set)``. This sizes the per-class
   loop of ``batched_nms`` (80 classes for SSD, 90 + 1 for Mask R-CNN: the set is an upper bound).
3. *Matching* (torchvision detection, synthetic COCO-like targets): matching depends only on the targets
   and the anchors, not on the network, so it is sized from the objects per image ``G`` (read from the
   ``targets`` the model was called with) and counts measured with real matching on the synthetic
   targets of ``dlgpu.workloads.detection`` (random boxes, 7 per image; 64 images for SSD, 16 for RPN):

   - SSD300 ``compute_loss``: ``SSD_POSITIVES_PER_OBJECT`` default boxes per object are positive (27.7
     per image measured, for 7 objects), hard negatives are ``neg_to_pos_ratio`` (3) times as many.
   - R-CNN RPN: ``RPN_POSITIVES_PER_OBJECT`` anchors per object (the low-quality matches tie across many
     anchors of small boxes: 25.5 measured); ``set_low_quality_matches_`` finds as many (anchor, object)
     pairs.
   - R-CNN RoI heads: ``ROI_POSITIVES_PER_OBJECT`` proposal per object is positive, the ground-truth box
     torchvision appends to the proposals: with random weights the RPN's proposals miss the objects
     (measured: exactly 7 of 2007 for 7 objects). The sampler takes ``min(positives, 128)`` of them, so
     Mask R-CNN's mask head trains on ``G`` RoIs per image, as the benchmarked step does; a trained RPN
     gives more, up to the sampler's 128.
   - FPN RoI pooling (``MultiScaleRoIAlign``): RoIs are split evenly across the levels (RoIAlign's cost
     per RoI does not depend on the level, so the total is what matters).
4. *Everything else keeps everything*: a mask selects all of its elements, NMS suppresses nothing,
   ``unique`` of an unknown tensor returns every element. Detection post-processing is then bounded by
   the model's own caps, as with a model whose scores all pass: SSD300 keeps ``topk_candidates`` 400
   boxes per class for 80 classes, 32,000 candidates into NMS and its 200 ``detections_per_img``;
   Mask R-CNN keeps ``post_nms_top_n`` proposals (2000 train / 1000 test) and 100 detections. This is an
   upper bound on post-processing work: a trained SSD passes far fewer boxes through its 0.01 score
   threshold, and even the random-weight benchmark does about half this work (measured on SSD300: 188
   boxes per class pass, NMS keeps 60% of them). The dense parts do not depend on it, except Mask
   R-CNN's inference mask head, which runs on the 100 detections it also runs on in a real step at
   score threshold 0 (see ``INFER_SCORE_THRESH`` in ``dlgpu.workloads.detection``).

**Values read in Python** (``.item()``, ``bool(t)``, ``int(t)``): a value FakeTensorMode knows (a constant)
is used; in torchvision's code a data-dependent value is 0 / False (target boxes are never degenerate,
``torch_choice`` picks the first of the training sizes, pasted masks lie inside the image; a pasted mask
is then resized to 1 x 1 and copies no pixels, while the full-image mask written per detection is
counted); elsewhere it is 1 / True (``OpRecorder``: synthetic batches are full, masks all ones).

Known differences from a GPU step, all in small operators: Mask R-CNN's RPN NMS takes torchvision's
per-level loop on the CPU device the trace runs on (more than 4,000 box coordinates) where CUDA uses one
NMS call (below 100,000); copies into pasted masks are not counted."""

from __future__ import annotations

import math
import os
import sys
import weakref
from collections.abc import Callable
from types import FrameType
from typing import Any

import torch

aten = torch.ops.aten

# Measured with torchvision's own matchers on dlgpu.workloads.detection's synthetic targets (module docstring).
SSD_POSITIVES_PER_OBJECT = 4
RPN_POSITIVES_PER_OBJECT = 25
ROI_POSITIVES_PER_OBJECT = 1

MASK_DTYPES = (torch.bool, torch.uint8)
MAX_TRACKED_VALUES = 65_536  # arange sets larger than this are not tracked (not categories)

# Frames in these directories are not model code: torch itself and this package (the recorder).
_NOT_MODEL = (os.path.dirname(torch.__file__) + os.sep, os.path.dirname(os.path.abspath(__file__)) + os.sep)


# --- What is known about a tensor's values -------------------------------------------------------------


class _Facts:
    """Facts about tensors, keyed by identity and dropped with the tensor. Plain ``weakref`` dicts would
    compare colliding keys with ``Tensor.__eq__``, which reads values."""

    def __init__(self) -> None:
        self._d: dict[int, tuple[weakref.ref[torch.Tensor], tuple[str, Any]]] = {}

    def __len__(self) -> int:
        return len(self._d)

    def get(self, t: Any) -> tuple[str, Any] | None:
        e = self._d.get(id(t))
        return e[1] if e is not None and e[0]() is t else None

    def set(self, t: torch.Tensor, fact: tuple[str, Any] | None) -> None:
        key = id(t)
        if fact is None:
            self._d.pop(key, None)
            return
        d = self._d

        def drop(ref: weakref.ref[torch.Tensor]) -> None:
            e = d.get(key)
            if e is not None and e[0] is ref:
                del d[key]

        d[key] = (weakref.ref(t, drop), fact)


def _count(f: tuple[str, Any] | None) -> int | None:
    return f[1] if f is not None and f[0] == "count" else None


def _values(f: tuple[str, Any] | None) -> frozenset[int] | None:
    return f[1] if f is not None and f[0] == "values" else None


def _is_int(t: torch.Tensor) -> bool:
    return not t.is_floating_point() and not t.is_complex() and t.dtype is not torch.bool


# --- Where in the model a selection happens ------------------------------------------------------------


def _model_frames(limit: int = 12) -> list[FrameType]:
    """The innermost Python frames outside torch and dlgpu.analyze: the model code that asked."""
    out: list[FrameType] = []
    f: FrameType | None = sys._getframe(1)
    while f is not None and len(out) < limit:
        if not f.f_code.co_filename.startswith(_NOT_MODEL):
            out.append(f)
        f = f.f_back
    return out


def _where(f: FrameType) -> tuple[str, str]:
    """(``package/file.py`` for torchvision frames, else "", function name)."""
    path = f.f_code.co_filename.replace(os.sep, "/")
    if "/torchvision/" not in path:
        return "", f.f_code.co_name
    return "/".join(path.rsplit("/", 2)[-2:]), f.f_code.co_name


def _objects(frames: list[FrameType]) -> list[int] | None:
    """Ground-truth objects per image: from the ``targets`` (list of dicts with ``boxes``) the detection
    model was called with, found in the nearest frame that has them."""
    for f in frames:
        targets = f.f_locals.get("targets")
        if isinstance(targets, list | tuple) and targets and all(
            isinstance(t, dict) and isinstance(t.get("boxes"), torch.Tensor) for t in targets
        ):
            return [int(t["boxes"].shape[0]) for t in targets]
    return None


def _per_image(frames: list[FrameType]) -> float | None:
    g = _objects(frames)
    return sum(g) / len(g) if g else None


def _sampler_cap(frames: list[FrameType]) -> int | None:
    """Positives the RoI heads' sampler keeps at most per image (512 x 0.25 = 128 in torchvision)."""
    for f in frames:
        sampler = getattr(f.f_locals.get("self"), "fg_bg_sampler", None)
        if sampler is not None:
            return int(sampler.batch_size_per_image * sampler.positive_fraction)
    return None


def _detection_count(mask: torch.Tensor, cmp: str | None, frames: list[FrameType]) -> int | None:
    """Rule 3 of the module docstring: matching-driven selections in torchvision's detection models."""
    if not frames:
        return None
    f0 = frames[0]
    site = _where(f0)
    n = mask.numel()
    positive = cmp in ("gt", "ge")
    if site == ("detection/ssd.py", "compute_loss"):
        g = _per_image(frames)
        if g is None:
            return None
        p = min(mask.shape[-1], round(SSD_POSITIVES_PER_OBJECT * g))
        if mask.dim() == 1:  # matched_idxs >= 0, one image
            return p
        rows = n // mask.shape[-1]
        if positive:  # cls_targets > 0
            return rows * p
        ratio = getattr(f0.f_locals.get("self"), "neg_to_pos_ratio", 3)
        return rows * min(ratio * p, mask.shape[-1] - p)  # hard negatives: rank < ratio x positives
    if site == ("detection/_utils.py", "set_low_quality_matches_") and mask.dim() == 2:
        return RPN_POSITIVES_PER_OBJECT * mask.shape[0]  # (objects, anchors) pairs at each object's best IoU
    if site == ("detection/_utils.py", "__call__") and len(frames) > 1:  # BalancedPositiveNegativeSampler
        caller = _where(frames[1])[0]
        per = {"detection/rpn.py": RPN_POSITIVES_PER_OBJECT, "detection/roi_heads.py": ROI_POSITIVES_PER_OBJECT}
        g = _per_image(frames)
        if caller not in per or g is None:
            return None
        p = min(n, round(per[caller] * g))
        return p if positive else n - p  # matched >= 1 / matched == 0
    if site in (("detection/roi_heads.py", "fastrcnn_loss"), ("detection/roi_heads.py", "forward")):
        objects = _objects(frames)  # labels > 0 among the sampled RoIs: the sampled positives
        if objects is None or not positive:
            return None
        cap = _sampler_cap(frames) or n
        per_image = [min(cap, round(ROI_POSITIVES_PER_OBJECT * g)) for g in objects]
        return sum(per_image) if site[1] == "fastrcnn_loss" else round(sum(per_image) / len(per_image))
    if site == ("ops/poolers.py", "_multiscale_roi_align"):
        levels, level = f0.f_locals.get("num_levels"), f0.f_locals.get("level")
        if isinstance(levels, int) and isinstance(level, int) and levels > 0:
            return n // levels + (1 if level < n % levels else 0)
    return None


# --- The rules, as the recorder uses them --------------------------------------------------------------

_COMPARISONS = {aten.eq: "eq", aten.ne: "ne", aten.gt: "gt", aten.ge: "ge", aten.lt: "lt", aten.le: "le"}
_CARRY_VALUES = {aten.view, aten._unsafe_view, aten.reshape, aten.expand, aten.slice, aten.select, aten.unsqueeze,
                 aten.squeeze, aten.t, aten.permute, aten.transpose, aten.clone, aten._to_copy, aten.contiguous,
                 aten.alias, aten.detach, aten.index, aten.index_select, aten.gather, aten.flatten, aten.lift_fresh}
_CARRY_COUNT = {aten.view, aten._unsafe_view, aten.reshape, aten.clone, aten._to_copy, aten.contiguous, aten.alias,
                aten.detach, aten.flatten, aten.unsqueeze, aten.squeeze, aten.lift_fresh}


class DataDependence:
    """The rules of the module docstring, with the facts they learn from the ops of one trace."""

    def __init__(self) -> None:
        self.facts = _Facts()
        self._learners: dict[Any, Callable[[Any, tuple[Any, ...], dict[str, Any], Any], None]] = {
            aten.full: self._full, aten.full_like: self._full, aten.zeros_like: self._zeros,
            aten.zeros: self._zeros, aten.new_zeros: self._zeros, aten.arange: self._arange,
            aten.cat: self._cat, aten.stack: self._cat, aten.index_put_: self._index_put,
            aten.index_put: self._index_put, aten.bitwise_or: self._or, aten.logical_or: self._or,
            aten.unbind: self._unbind, aten.split: self._unbind, aten.split_with_sizes: self._unbind,
            **dict.fromkeys(_COMPARISONS, self._compare),
            **dict.fromkeys(_CARRY_VALUES, self._carry),
        }

    # Learning, for every op the recorder sees.

    def learn(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
        packet = func.overloadpacket
        learner = self._learners.get(packet)
        if learner is not None:
            learner(packet, args, kwargs, out)
        elif len(self.facts) and packet.__name__.endswith("_") and args and isinstance(args[0], torch.Tensor):
            self.facts.set(args[0], None)  # written in place by an op we do not follow: forget it

    def _full(self, packet: Any, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
        fill = kwargs.get("fill_value", args[1] if len(args) > 1 else None)
        if not isinstance(out, torch.Tensor) or not isinstance(fill, int | float | bool):
            return
        if out.dtype in MASK_DTYPES:
            self.facts.set(out, ("count", out.numel() if fill else 0))
        elif _is_int(out):
            self.facts.set(out, ("values", frozenset((int(fill),))))

    def _zeros(self, packet: Any, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
        if isinstance(out, torch.Tensor) and out.dtype in MASK_DTYPES:
            self.facts.set(out, ("count", 0))

    def _arange(self, packet: Any, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
        nums = [a for a in args if isinstance(a, int | float) and not isinstance(a, bool)]
        if not isinstance(out, torch.Tensor) or not _is_int(out) or not 1 <= len(nums) <= 3:
            return
        start, end, step = (0, nums[0], 1) if len(nums) == 1 else (*nums, 1)[:3]
        if out.numel() <= MAX_TRACKED_VALUES and step:
            self.facts.set(out, ("values", frozenset(range(int(start), math.ceil(end), int(step)))))

    def _cat(self, packet: Any, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
        facts = [self.facts.get(t) for t in args[0]] if args else []
        if not isinstance(out, torch.Tensor) or not facts:
            return
        counts = [_count(f) for f in facts]
        sets = [_values(f) for f in facts]
        if all(c is not None for c in counts):
            self.facts.set(out, ("count", sum(c for c in counts if c is not None)))
        elif all(s is not None for s in sets):
            self.facts.set(out, ("values", frozenset().union(*(s for s in sets if s is not None))))

    def _index_put(self, packet: Any, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
        target, indices = args[0], args[1]
        before = _count(self.facts.get(target))
        integer = [i for i in indices if i is not None]
        result = out if isinstance(out, torch.Tensor) else target
        if before is None or not integer or not all(_is_int(i) for i in integer):
            self.facts.set(result, None)
            if packet is aten.index_put_:
                self.facts.set(target, None)
            return
        written = max(i.numel() for i in integer)
        self.facts.set(result, ("count", min(target.numel(), before + written)))

    def _or(self, packet: Any, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
        if len(args) > 1 and isinstance(out, torch.Tensor):
            a, b = _count(self.facts.get(args[0])), _count(self.facts.get(args[1]))
            if a is not None and b is not None:
                self.facts.set(out, ("count", min(out.numel(), a + b)))

    def _unbind(self, packet: Any, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
        values = _values(self.facts.get(args[0])) if args else None
        if values is not None and isinstance(out, list | tuple):
            for t in out:
                self.facts.set(t, ("values", values))

    def _compare(self, packet: Any, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
        if not isinstance(out, torch.Tensor) or out.dtype is not torch.bool or len(args) < 2:
            return
        values = _values(self.facts.get(args[0]))
        other = args[1]
        scalar = not isinstance(other, torch.Tensor) or other.dim() == 0
        if packet is aten.eq and values and scalar:  # x == c: an even share of the categories
            self.facts.set(out, ("count", out.numel() // len(values)))
        else:
            self.facts.set(out, ("cmp", _COMPARISONS[packet]))

    def _carry(self, packet: Any, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
        fact = self.facts.get(args[0]) if args else None
        if fact is None or not isinstance(out, torch.Tensor):
            return
        same_elements = packet in _CARRY_COUNT and (fact[0] == "cmp" or out.numel() == args[0].numel())
        if fact[0] == "values" or same_elements:  # values survive any copy or selection; counts, a reshape
            self.facts.set(out, fact)

    # Answers.

    def selected(self, mask: torch.Tensor) -> int:
        """How many elements of a boolean (or 0/1 uint8) mask are True (rules 1-4)."""
        n = mask.numel()
        fact = self.facts.get(mask)
        known = _count(fact)
        if known is not None:
            return min(n, known)
        cmp = fact[1] if fact is not None and fact[0] == "cmp" else None
        k = _detection_count(mask, cmp, _model_frames())
        return n if k is None else max(0, min(n, int(k)))

    def scalar(self, t: torch.Tensor) -> bool | int | float:
        """A value read in Python that FakeTensorMode does not know."""
        frames = _model_frames(1)
        zero = bool(frames) and _where(frames[0])[0] != ""  # torchvision
        if t.dtype is torch.bool:
            return not zero
        if t.is_floating_point():
            return 0.0 if zero else 1.0
        return 0 if zero else 1

    @staticmethod
    def is_dynamic(packet: Any) -> bool:
        """Ops sized by the rules without asking FakeTensorMode first (torchvision's fake NMS would warn
        about a deprecated API before failing)."""
        return packet.__name__ == "nms" and getattr(packet, "_qualified_op_name", "") == "torchvision::nms"

    def run(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """The output of an op whose output size depends on values; raises ``NotImplementedError`` for an
        op it has no rule for."""
        packet = func.overloadpacket
        if packet is aten.nonzero:
            mask = args[0]
            return torch.empty((self.selected(mask), mask.dim()), dtype=torch.long, device=mask.device)
        if packet is aten.index:
            src, indices = args[0], args[1]
            new: list[Any] = []
            for i in indices:
                if i is not None and i.dtype in MASK_DTYPES:
                    n = self.selected(i)
                    new.extend(torch.empty(n, dtype=torch.long, device=i.device) for _ in range(i.dim()))
                else:
                    new.append(i)
            return func(src, new)
        if packet is aten.masked_select:
            src, mask = args[0], args[1]
            size = torch.broadcast_shapes(src.shape, mask.shape).numel()
            n = self.selected(mask) * (size // max(1, mask.numel()))
            return torch.empty(n, dtype=src.dtype, device=src.device)
        if packet in (aten._unique2, aten.unique_consecutive):
            x = args[0]
            values = _values(self.facts.get(x))
            k = min(x.numel(), len(values)) if values is not None else x.numel()
            first = 2 if packet is aten._unique2 else 1  # _unique2(x, sorted, inverse, counts)
            inverse = kwargs.get("return_inverse", args[first] if len(args) > first else False)
            counts = kwargs.get("return_counts", args[first + 1] if len(args) > first + 1 else False)
            out = (torch.empty(k, dtype=x.dtype, device=x.device),
                   torch.empty(x.shape if inverse else (0,), dtype=torch.long, device=x.device),
                   torch.empty(k if counts else 0, dtype=torch.long, device=x.device))
            if values is not None:
                self.facts.set(out[0], ("values", values))
            return out
        if packet is aten.unique_dim:  # unique rows (or slices): every one of them, in the input's shape
            x, dim = args[0], args[1]
            inverse = kwargs.get("return_inverse", args[3] if len(args) > 3 else False)
            counts = kwargs.get("return_counts", args[4] if len(args) > 4 else False)
            k = x.shape[dim]
            return (torch.empty_like(x), torch.empty(k if inverse else 0, dtype=torch.long, device=x.device),
                    torch.empty(k if counts else 0, dtype=torch.long, device=x.device))
        if self.is_dynamic(packet):
            return torch.empty(args[0].shape[0], dtype=torch.long, device=args[0].device)  # suppresses nothing
        raise NotImplementedError(func)
