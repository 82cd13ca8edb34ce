"""Operator profiles: every aten operator of a training or inference step, traced on fake tensors.

The step runs under ``FakeTensorMode`` (shapes and dtypes propagate, nothing is allocated or computed), so
a full-size model at its real batch is profiled in seconds on a laptop CPU. Autocast works on fake CPU
tensors, so bf16/fp16 steps carry the dtypes autocast really chooses.

FLOPs come from PyTorch's own ``torch.utils.flop_counter`` formulas (matmul, convolution, SDPA), plus
formulas for what it misses (pytorch/pytorch#165570): elementwise ops (1 FLOP per output element),
norms, softmax and reductions (per element counts below), and the CPU SDPA kernel that is missing from
its registry (pytorch/pytorch#195460). A multiply-add counts as 2 FLOPs. Bytes are the sum of each op's
tensor inputs and outputs (views skipped): an eager, unfused upper bound on memory traffic (see
MEASUREMENT.md section 5).

Sizes that depend on values (``nonzero``, boolean masks, ``unique``, NMS: object detection's box matching,
sampling and post-processing) cannot come from fake tensors; they follow the documented rules of
``data_dependent`` instead, so those small operators are approximate while everything sized by shapes
(backbones, heads, at the sizes the rules give them) is exact: for SSD300 and Mask R-CNN the traced
convolution and matmul FLOPs equal a real CPU step's, counted by ``FlopCounterMode``. Per-image Python
loops of torchvision's detection models are traced once and counted per image (``fold``)."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

import torch
import torch.utils.flop_counter as fc
from torch._subclasses.fake_tensor import DataDependentOutputException, DynamicOutputShapeException
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from dlgpu.results import OpProfile, OpRecord
from dlgpu.workloads.registry import WorkloadSpec

from .data_dependent import DataDependence
from .fold import Folding
from .gpu_semantics import foreach_launches, gpu_semantics

aten = torch.ops.aten

MATMUL = {aten.mm, aten.addmm, aten.bmm, aten.baddbmm, aten._scaled_mm}
CONV = {aten.convolution, aten._convolution, aten.convolution_backward, aten.cudnn_convolution,
        aten._slow_conv2d_forward, aten.convolution_overrideable, aten.mkldnn_convolution}
CPU_SDPA = aten._scaled_dot_product_flash_attention_for_cpu
CPU_SDPA_BWD = aten._scaled_dot_product_flash_attention_for_cpu_backward
ATTENTION = {CPU_SDPA, CPU_SDPA_BWD, aten._scaled_dot_product_efficient_attention,
             aten._scaled_dot_product_flash_attention, aten._scaled_dot_product_cudnn_attention,
             aten._scaled_dot_product_efficient_attention_backward,
             aten._scaled_dot_product_flash_attention_backward,
             aten._scaled_dot_product_cudnn_attention_backward}
# FLOPs per element for ops the counter misses (counts of arithmetic in the usual formulas: a norm takes a
# mean, a variance, a subtract, a divide and an affine multiply-add; softmax an exp, a sum and a divide).
NORMS = {aten.native_batch_norm: 5, aten._native_batch_norm_legit: 5, aten._native_batch_norm_legit_no_training: 5,
         aten._native_batch_norm_legit_functional: 5, aten.native_layer_norm: 5, aten.native_group_norm: 5,
         aten.native_batch_norm_backward: 8, aten.native_layer_norm_backward: 8,
         aten.native_group_norm_backward: 8, aten._fused_rms_norm: 4, aten._fused_rms_norm_backward: 6}
SOFTMAX = {aten._softmax: 5, aten._log_softmax: 5, aten._softmax_backward_data: 4,
           aten._log_softmax_backward_data: 4}
REDUCTIONS = {aten.sum, aten.mean, aten.amax, aten.amin, aten.max, aten.min, aten.var_mean, aten.var,
              aten.norm, aten.linalg_vector_norm, aten.nll_loss_forward, aten.nll_loss_backward,
              aten.nll_loss2d_forward, aten.nll_loss2d_backward}
EMBEDDING = {aten.embedding, aten.embedding_dense_backward}
# Metadata queries and allocation-only ops: no kernel worth counting.
IGNORED = {aten.detach, aten.empty, aten.empty_like, aten.empty_strided, aten.zeros_like, aten.lift_fresh,
           aten.sym_size, aten.sym_stride, aten.sym_numel, aten.is_same_size, aten.set_,
           aten._local_scalar_dense, aten.is_nonzero, aten.resize_, aten.new_empty, aten.new_empty_strided,
           aten._unsafe_view}  # _unsafe_view reshapes without a copy


def _tensors(tree: Any) -> list[torch.Tensor]:
    return [t for t in tree_flatten(tree)[0] if isinstance(t, torch.Tensor)]


def _nbytes(ts: list[torch.Tensor]) -> float:
    return float(sum(t.numel() * t.element_size() for t in ts))


def _kind(packet: Any, func: Any) -> str:
    if packet in MATMUL:
        return "matmul"
    if packet in CONV:
        return "conv"
    if packet in ATTENTION:
        return "attention"
    if packet in NORMS:
        return "norm"
    if packet in SOFTMAX:
        return "softmax"
    if packet in REDUCTIONS:
        return "reduction"
    if packet in EMBEDDING:
        return "embedding"
    name = packet.__name__
    if name.startswith("_foreach_") or name.startswith("_fused_adam"):
        return "optimizer"
    if torch.Tag.pointwise in func.tags:
        return "elementwise"
    if name in ("copy_", "_to_copy", "clone", "cat", "stack", "index", "index_put_", "gather", "scatter",
                "constant_pad_nd", "slice_scatter", "select_backward", "slice_backward", "index_select",
                "_unsafe_view", "contiguous", "masked_fill", "where", "fill_", "zero_", "new_zeros", "zeros"):
        return "copy"
    return "other"


def _flops(packet: Any, func: Any, kind: str, args: Any, kwargs: Any, out: Any) -> float:
    if packet in fc.flop_registry:
        return float(fc.flop_registry[packet](*args, **kwargs, out_val=out))
    if packet is CPU_SDPA:
        q, k, v = args[:3]
        return float(fc.sdpa_flop_count(q.shape, k.shape, v.shape))
    if packet is CPU_SDPA_BWD:
        g, q, k, v = args[:4]
        return float(fc.sdpa_backward_flop_count(g.shape, q.shape, k.shape, v.shape))
    outs = _tensors(out)
    ins = _tensors(args)
    if kind == "norm":
        return float(NORMS[packet] * (ins[0].numel() if ins else 0))
    if kind == "softmax":
        return float(SOFTMAX[packet] * (outs[0].numel() if outs else 0))
    if kind == "reduction":
        return float(ins[0].numel() if ins else 0)
    if kind in ("elementwise", "optimizer"):
        # Foreach ops update lists of tensors in place (outputs may be None): count the largest list.
        return float(max(sum(t.numel() for t in outs), sum(t.numel() for t in _tensors(args[0] if args else ()))))
    return 0.0


def _gemm(packet: Any, args: Any, out: Any) -> tuple[int, int, int, int] | None:
    """The GEMM an operator is, as (batch, M, N, K), for the predictor's tile and wave model: matrix products
    as written; a convolution as the implicit GEMM cuDNN runs (M = output pixels of the batch, N = output
    channels, K = input channels x kernel area, per group); its backward by the forward's shape (the two
    gradient GEMMs have the same FLOPs). None for everything else."""
    try:
        if packet in (aten.mm, aten._scaled_mm):
            (m, k), n = args[0].shape, args[1].shape[-1]
            return 1, int(m), int(n), int(k)
        if packet is aten.addmm:
            (m, k), n = args[1].shape, args[2].shape[-1]
            return 1, int(m), int(n), int(k)
        if packet in (aten.bmm, aten.baddbmm):
            a, b = (args[0], args[1]) if packet is aten.bmm else (args[1], args[2])
            return int(a.shape[0]), int(a.shape[1]), int(b.shape[-1]), int(a.shape[2])
        if packet in CONV:
            backward = packet is aten.convolution_backward
            weight = args[2] if backward else args[1]
            o = args[0] if backward else _tensors(out)[0]  # grad_output has the forward output's shape
            g = args[9] if backward else (args[8] if len(args) > 8 else 1)
            groups = int(g) if isinstance(g, int) and g > 0 else 1
            if weight.dim() < 3 or o.dim() < 3:
                return None
            pixels = int(o.shape[0]) * int(torch.Size(o.shape[2:]).numel())
            area = int(torch.Size(weight.shape[2:]).numel())
            return groups, pixels, int(weight.shape[0]) // groups, int(weight.shape[1]) * area
    except (AttributeError, IndexError, TypeError, ValueError):
        return None
    return None


class OpRecorder(TorchDispatchMode):
    """Records every aten call while ``recording``; sizes what depends on values by ``data_dependent``.

    Data-dependent scalars have no value on fake tensors. Where FakeTensorMode knows one (a constant) it
    is used; otherwise synthetic batches are full (attention masks all ones), so the answer that keeps the
    trace on the real path is "true"/1 (0/False in torchvision's detection code: see ``data_dependent``).
    Ops with value-dependent output sizes (``nonzero``, boolean indexing, ``unique``, NMS) get the sizes
    of ``data_dependent``'s rules instead of failing."""

    def __init__(self) -> None:
        super().__init__()
        self.recording = False
        self.phase = "forward"
        self.calls: Counter[tuple[str, str, str, str, float, float, float, tuple[int, ...] | None]] = Counter()
        self.data = DataDependence()
        self._captures: list[Counter[Any]] = []
        self._folding = Folding(self)
        self._folded: list[contextlib.AbstractContextManager[None]] = []

    def __enter__(self) -> OpRecorder:
        # Per-image work of torchvision's detection models is traced once per batch (see ``fold``).
        folded = self._folding.installed()
        folded.__enter__()
        self._folded.append(folded)
        try:
            super().__enter__()
        except BaseException:
            self._folded.pop().__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            super().__exit__(*exc)
        finally:
            self._folded.pop().__exit__(None, None, None)

    def _sink(self) -> Counter[Any]:
        return self._captures[-1] if self._captures else self.calls

    @contextlib.contextmanager
    def capture(self) -> Iterator[Counter[Any]]:
        """Within this block, records go to the yielded counter instead of ``calls`` (for ``fold``)."""
        records: Counter[Any] = Counter()
        self._captures.append(records)
        try:
            yield records
        finally:
            self._captures.pop()

    def replay(self, records: Counter[Any], times: int = 1) -> None:
        """Count ``records`` (a capture) ``times`` more times."""
        sink = self._sink()
        for key, n in records.items():
            sink[key] += n * times

    def fact(self, t: torch.Tensor) -> Any:
        """What ``data_dependent`` knows of ``t``'s values (hashable; None if nothing)."""
        return self.data.facts.get(t)

    def record(self, name: str, kind: str, dtype: str, flops: float, read: float, written: float,
               gemm: tuple[int, int, int, int] | None = None) -> None:
        """Record a call that is not an aten op of its own (a fused kernel standing for several)."""
        if self.recording:
            self._sink()[(name, kind, self.phase, dtype, flops, read, written, gemm)] += 1

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func is torch.ops.prim.device.default:  # a metadata query, and a frequent one
            return func(*args, **kwargs)
        packet = func.overloadpacket
        if packet is aten._local_scalar_dense:
            try:
                return func(*args, **kwargs)  # a constant FakeTensorMode knows
            except DataDependentOutputException:
                return self.data.scalar(args[0])
        reuse = self._folding.reuse
        if reuse is not None:  # inside a folded function: the same call on the same tensors has one answer
            hit = reuse.get(func, args, kwargs)
            if hit is not None:
                if hit[1] is not None:
                    self._sink()[hit[1]] += 1
                return hit[0]
        try:
            out = self.data.run(func, args, kwargs) if self.data.is_dynamic(packet) else func(*args, **kwargs)
        except DynamicOutputShapeException:
            try:
                out = self.data.run(func, args, kwargs)
            except NotImplementedError:
                raise DynamicOutputShapeException(func) from None
        self.data.learn(func, args, kwargs, out)
        key = self._record_key(func, packet, args, kwargs, out)
        if key is not None:
            self._sink()[key] += 1
        if reuse is not None:
            reuse.put(func, args, kwargs, out, key)
        return out

    def _record_key(self, func: Any, packet: Any, args: Any, kwargs: Any, out: Any) -> tuple[Any, ...] | None:
        if not self.recording or func.is_view or packet in IGNORED or func is torch.ops.prim.device.default:
            return None
        kind = _kind(packet, func)
        outs = _tensors(out)
        if kind == "optimizer" or (packet.__name__.endswith("_") and not outs):
            written = _nbytes(_tensors(args[0] if args else ()))  # in-place: the first argument is written
        else:
            written = _nbytes(outs)
        read = _nbytes(_tensors((args, kwargs)))
        if packet is aten.embedding and len(args) >= 2 and outs:
            read = _nbytes(outs) + _nbytes([args[1]])  # a lookup reads the rows it gathers, not the table
        dtype = str(outs[0].dtype if outs else (_tensors(args) or [torch.empty(0)])[0].dtype).replace("torch.", "")
        flops = _flops(packet, func, kind, args, kwargs, out)
        gemm = _gemm(packet, args, out) if kind in ("matmul", "conv") else None
        return (packet.__name__, kind, self.phase, dtype, flops, read, written, gemm)


class _TraceContext:
    """The StepContext used while tracing: autocast as the harness would, phases marked for the record."""

    def __init__(self, recorder: OpRecorder, precision: str) -> None:
        self.recorder = recorder
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast("cpu", dtype=self.dtype)

    def backward_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        self.recorder.phase = "backward"
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.recorder.phase = "optimizer"
        optimizer.step()
        self.recorder.phase = "forward"


@contextlib.contextmanager
def _fake_mode() -> Iterator[OpRecorder]:
    from torch._subclasses.fake_tensor import FakeTensorMode

    recorder = OpRecorder()
    with FakeTensorMode(allow_non_fake_inputs=True), recorder:
        yield recorder


_INIT_FUNCTIONS = ("uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_", "dirac_",
                   "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_",
                   "sparse_")


@contextlib.contextmanager
def _no_init() -> Iterator[None]:
    """Skip ``torch.nn.init`` while building on fake tensors: values do not exist there, and some inits
    (Inception-v3's truncated normal) cost minutes of per-element work for nothing."""
    saved = {name: getattr(torch.nn.init, name) for name in _INIT_FUNCTIONS if hasattr(torch.nn.init, name)}
    try:
        for name in saved:
            setattr(torch.nn.init, name, lambda tensor, *a, **k: tensor)
        yield
    finally:
        for name, fn in saved.items():
            setattr(torch.nn.init, name, fn)


_BUILT: dict[tuple[str, str], tuple[Any, OpRecorder, Any]] = {}
_BUILT_MAX = 4


def _built(spec: WorkloadSpec, params: Mapping[str, Any]) -> tuple[Any, OpRecorder, Any]:
    """A fake instance of the workload, reused across traces (building dominates the cost of a trace)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    key = (spec.name, repr(sorted(params.items())))
    if key not in _BUILT:
        if len(_BUILT) >= _BUILT_MAX:
            _BUILT.pop(next(iter(_BUILT)))
        mode, rec = FakeTensorMode(allow_non_fake_inputs=True), OpRecorder()
        torch.manual_seed(0)
        with mode, rec, _no_init():
            inst = spec.build(params)
        _BUILT[key] = (mode, rec, inst)
    return _BUILT[key]


def profile(spec: WorkloadSpec, params: Mapping[str, Any], task: str, precision: str,
            batch_size: int, target: str = "gpu") -> OpProfile:
    """Trace one step (``task`` = train, infer or decode) of ``spec`` at full size on fake tensors.

    ``target`` says whose dispatch to follow: ``gpu`` (fused attention, multi-tensor optimizers, as eager
    PyTorch runs on CUDA; see ``gpu_semantics``) or ``cpu`` (as it runs on this CPU).

    For training, the bytes of the tensors autograd saves for backward (parameters excluded) are recorded
    in the same pass: the activation memory of this model at this batch and precision. For decode, the KV
    cache of ``context_len`` tokens is built under the fake mode by a prefill that is not recorded; only the
    one-token step is, and the cache's bytes are kept as ``cache_bytes``."""
    mode, rec, inst = _built(spec, params)
    param_ids = {id(p) for p in inst.parameters()}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if id(t) not in param_ids and rec.phase == "forward":
            saved[id(t)] = t.numel() * t.element_size()
        return t

    rec.calls.clear()
    rec.phase = "forward"
    cache_bytes: int | None = None
    with mode, rec:
        ctx = _TraceContext(rec, precision)
        if task == "decode":
            inst.train(False)
            batch = inst.make_decode_batch(batch_size, torch.device("cpu"), ctx)  # the prefill: not recorded
        else:
            batch = inst.make_batch(batch_size, torch.device("cpu"), False)
        rec.recording = True
        semantics = (gpu_semantics(inst, rec, ctx.dtype) if target == "gpu" else contextlib.nullcontext())
        try:
            with semantics:
                if task == "train":
                    inst.train(True)
                    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                        inst.train_step(batch, ctx)
                elif task == "decode":
                    with torch.no_grad():
                        inst.decode_step(batch, ctx)
                    cache_bytes = _cache_bytes(batch)
                else:
                    inst.train(False)
                    with torch.no_grad():
                        inst.infer_step(batch, ctx)
        finally:
            rec.recording = False
            rec.phase = "forward"
    tensors = sum(1 for p in inst.parameters() if p.requires_grad)
    ops = tuple(
        OpRecord(op=k[0], kind=k[1], phase=k[2], dtype=k[3], flops=k[4], bytes_read=k[5], bytes_written=k[6],
                 count=n, gemm=k[7], launches=_launches(k[0], k[3], k[6], tensors) if target == "gpu" else 1)
        for k, n in rec.calls.items()
    )
    return OpProfile(spec.name, task, precision, batch_size, dict(params), inst.num_parameters(), ops,
                     activation_bytes=sum(saved.values()) if task == "train" else None, cache_bytes=cache_bytes)


def _launches(name: str, dtype: str, written: float, tensors: int) -> int:
    """CUDA kernels per call: several for a multi-tensor optimizer op over all parameters, else one."""
    if not name.startswith("_foreach_"):
        return 1
    size = torch.empty(0, dtype=getattr(torch, dtype, torch.float32)).element_size()
    return foreach_launches(tensors, int(written // size))


def _cache_bytes(batch: Any) -> int | None:
    """Bytes of a decode batch's KV cache (keys and values of every layer) as the step left it, or None."""
    cache = getattr(batch, "cache", None)
    layers = getattr(cache, "layers", None)
    if layers is not None:  # transformers 5: one object per layer
        tensors = [t for layer in layers for t in (getattr(layer, "keys", None), getattr(layer, "values", None))]
    else:  # transformers 4: parallel lists
        tensors = [*getattr(cache, "key_cache", ()), *getattr(cache, "value_cache", ())]
    found = [t for t in tensors if isinstance(t, torch.Tensor)]
    return int(_nbytes(found)) if found else None
