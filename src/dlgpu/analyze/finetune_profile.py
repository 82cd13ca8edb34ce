"""A fine-tuning job's step as an operator profile traced on fake tensors: the bench's model with the method applied
(``workloads.models.finetune``: peft's LoRA adapters, full, freeze), one micro-batch's forward, loss and backward
recorded operator by operator (``trace.OpRecorder``), composed to the full model and timed by ``finetune.perf``
through the calibrated roofline in place of its written-out profile.

How (``trace_step``): the reduced models of ``finetune_trace._reduced`` (1 and 2 blocks; under method freeze also 2
blocks with the top one trained) are built under ``FakeTensorMode`` in the job's weights dtype (fp16's traced as
bf16's, the same operators: ``step_key``), with the job's gradient checkpointing (transformers', non-reentrant, as
the bench enables it), and one micro-batch at the job's micro-batch and sequence length (fake tensors cost the same
at any size) runs forward and loss (under bf16 autocast for fp32 weights, as the bench runs them) and backward.
Nothing is written out by hand: a frozen weight gets no weight-gradient GEMM because autograd computes none, the
adapters' GEMMs are peft's, the recomputation under checkpointing is the one ``torch.utils.checkpoint`` runs during
the backward (recorded as forward operators: it runs forward kernels; ``recompute`` in the parts; its early stop
leaves out a block's last products whose outputs nothing saved), and the lowest trained block's input needing no
gradient is what the model makes of it. The optimizer step is not traced: ``finetune.perf.optimizer_records`` adds it
(so ZeRO/FSDP's share of it and this CPU's probed AdamW rate apply as to the written-out profile).

``target`` says whose dispatch to follow, as ``trace.profile``: ``gpu`` (``gpu_semantics``: each
``scaled_dot_product_attention`` one fused kernel in the autocast dtype; dropout as CUDA's ``native_dropout``) or
``cpu`` (as the CPU runs it). Either way transformers' mask checks read the batch's values as on a real device
(``finetune_trace._masks_as_on_a_device``).

Composition (``compose``), by operator signature (name, kind, phase, dtype, FLOPs, bytes, GEMM shape) counted:
``trained`` = T(2 blocks) - T(1 block) (one trained block), ``rest`` = T(1 block) - trained (embedding, final norm,
head, loss, and the correction for the lowest trained block, whose input needs no gradient: negative counts), and
under method freeze ``frozen`` = T(2 blocks, the top one trained) - T(1 block): a frozen block below the trained ones,
forward only, unless checkpointing makes the embeddings' output require a gradient (transformers'
``enable_input_require_grads``), when the backward runs through the frozen blocks too (activation gradients and
their recomputation, no weight gradients). The step is ``grad_accum`` x (rest + trained x k + frozen x (layers - k))
(k: the trained blocks, every block except under freeze), plus, for each micro-batch after the first, the
``accumulate_*`` parts (each trainable gradient added into the one accumulated: traced as a second micro-batch with
the gradients present, less the first), plus the optimizer's records.

Not traced (the reason is returned and ``finetune.perf`` keeps its written-out profile): QLoRA (bitsandbytes' 4-bit
kernels do not run on fake tensors), mixture-of-experts models (which experts a token reaches depends on the values),
a model no registered workload builds, and a trace that fails (its error).

Imports no torch until a trace runs: ``analyze.profiles.finetune_step_profile`` caches the parts and composes them
without it."""

from __future__ import annotations

import contextlib
import functools
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from dlgpu.finetune.config import FinetuneConfig
from dlgpu.finetune.perf import compute_precision, optimizer_records
from dlgpu.results import OpProfile, OpRecord
from dlgpu.workloads.registry import WorkloadSpec

from .finetune_trace import NEEDS_TORCH, job_config, untraced_reason, versions

if TYPE_CHECKING:
    from dlgpu.finetune.model import FtModel

TARGETS = ("gpu", "cpu")
RECOMPUTE = "recompute"
"""The phase the parts give the forward that checkpointing runs again during the backward (``forward`` in a profile)."""

Signature = tuple[str, str, str, str, float, float, float, tuple[int, ...] | None]


def step_key(cfg: FinetuneConfig, target: str) -> str:
    """What a traced step depends on besides the workload and the libraries: the method, the adapters (rank,
    targets), the weights' width (bf16 and fp16 weights run the same operators on values of the same width: one
    trace, in bf16, serves both, ``compose`` naming fp16's dtype; fp32 weights run under autocast), the micro-batch
    and sequence, checkpointing, whether gradients accumulate and the target's dispatch. Not the optimizer,
    sharding, offload, GPUs, ``freeze_layers`` or ``grad_accum``'s value: they are composed (``compose``)."""
    lora = f"/r{cfg.lora_rank}/{','.join(sorted(cfg.lora_targets))}" if cfg.trains_adapters else ""
    width = "fp32-autocast" if cfg.weights_dtype == "fp32" else "16-bit"
    return (f"{cfg.method}/{width}{lora}/b{cfg.micro_batch}/s{cfg.seq_len}"
            + ("/checkpointing" if cfg.checkpointing else "") + ("/accumulate" if cfg.grad_accum > 1 else "")
            + f"/{target}")


@dataclass(frozen=True)
class StepParts:
    """A job's traced micro-batch in parts (module docstring), plain data: ``pieces`` by name (``rest``, ``trained``,
    ``frozen``, and ``accumulate_`` + each where gradients accumulate), their records' counts per micro-batch (``rest``
    may hold negative ones); ``traces``: (blocks, trained blocks, operator calls recorded) of each trace;
    ``versions``: peft's, transformers' and torch's; ``seconds``: the traces' own time (importing the libraries not
    counted)."""

    workload: str
    key: str
    pieces: Mapping[str, tuple[OpRecord, ...]]
    traces: tuple[tuple[int, int, int], ...]
    versions: str
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"workload": self.workload, "key": self.key, "traces": [list(t) for t in self.traces],
                "versions": self.versions, "seconds": self.seconds,
                "pieces": {k: [r.to_dict() for r in v] for k, v in self.pieces.items()}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StepParts:
        def record(o: Mapping[str, Any]) -> OpRecord:
            fields = {k: o[k] for k in OpRecord.__dataclass_fields__ if k in o}
            if fields.get("gemm") is not None:
                fields["gemm"] = tuple(int(x) for x in fields["gemm"])
            return OpRecord(**fields)

        return cls(str(d["workload"]), str(d["key"]),
                   {str(k): tuple(record(o) for o in v) for k, v in d["pieces"].items()},
                   tuple((int(a), int(b), int(c)) for a, b, c in d["traces"]), str(d["versions"]),
                   float(d["seconds"]))


def untraced_step_reason(name: str, cfg: FinetuneConfig) -> tuple[WorkloadSpec | None, str | None]:
    """(the workload to trace, None) or (None, why this job's step cannot be traced). No torch."""
    if cfg.method == "qlora":
        return None, "QLoRA: bitsandbytes' 4-bit NF4 kernels do not run on fake tensors"
    return untraced_reason(name, cfg)


def trace_step(name: str, job: FinetuneConfig | Mapping[str, Any], target: str = "gpu") -> StepParts | str:
    """``name``'s step under ``job`` traced in parts (module docstring), or the reason it is not. Not cached
    (``analyze.profiles.finetune_step_profile`` caches)."""
    if target not in TARGETS:
        raise ValueError(f"target {target!r}: one of {', '.join(TARGETS)}")
    cfg = job_config(job)
    spec, why = untraced_step_reason(name, cfg)
    if spec is None:
        return why or "not traced"
    if cfg.weights_dtype == "fp16":  # traced in bf16 (``step_key``)
        cfg = replace(cfg, weights_dtype="bf16")
    try:
        return _trace_parts(spec, cfg, target)
    except ImportError as exc:
        return f"{NEEDS_TORCH} ({exc}); nothing cached"
    except Exception as exc:  # the model or a library refuses these settings on fake tensors: the formula stays
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        return f"the trace failed ({type(exc).__name__}: {first})"


def compose(parts: StepParts, model: FtModel, cfg: FinetuneConfig) -> OpProfile:
    """The step of ``cfg`` on ``model`` (its layers) from the traced parts (module docstring), with the optimizer's
    records of ``finetune.perf``. Raises ValueError where the parts do not fit the job (a negative count)."""
    layers = model.layers
    k = min(cfg.freeze_layers, layers) if cfg.method == "freeze" else layers
    ga = cfg.grad_accum
    times = {"rest": ga, "trained": k * ga, "frozen": (layers - k) * ga, "accumulate_rest": ga - 1,
             "accumulate_trained": k * (ga - 1), "accumulate_frozen": (layers - k) * (ga - 1)}
    missing = [p for p, n in times.items() if n and p not in parts.pieces]
    if missing:
        raise ValueError(f"the traced parts ({parts.key}) have no {', '.join(missing)}")
    half = "float16" if cfg.weights_dtype == "fp16" else "bfloat16"  # fp16 weights: the bf16 trace (``step_key``)
    counts: dict[Signature, int] = defaultdict(int)
    for piece, n in times.items():
        for r in parts.pieces.get(piece, ()) if n else ():
            phase = "forward" if r.phase == RECOMPUTE else r.phase
            dtype = half if r.dtype == "bfloat16" else r.dtype
            counts[(r.op, r.kind, phase, dtype, r.flops, r.bytes_read, r.bytes_written, r.gemm)] += r.count * n
    negative = [s for s, c in counts.items() if c < 0]
    if negative:
        raise ValueError(f"the traced parts ({parts.key}) compose to {len(negative)} operators run a negative number "
                         f"of times at {layers} blocks (first: {negative[0][0]})")
    ops = (*(OpRecord(op=s[0], kind=s[1], phase=s[2], dtype=s[3], flops=s[4], bytes_read=s[5], bytes_written=s[6],
                      count=c, gemm=s[7]) for s, c in counts.items() if c), *optimizer_records(model, cfg))
    return OpProfile(workload=f"{model.id} finetune {cfg.method}", task="train", precision=compute_precision(cfg),
                     batch_size=cfg.micro_batch,
                     params={"seq_len": cfg.seq_len, "grad_accum": cfg.grad_accum, "method": cfg.method,
                             "traced": parts.key, "traced_basis": describe(parts, sum(o.count for o in ops))},
                     parameters=model.params, ops=ops)


def describe(parts: StepParts, operators: int) -> str:
    """How a composed profile of ``operators`` operator calls was made, for the prediction's basis."""
    blocks = sorted({t[0] for t in parts.traces})
    return (f"traced on fake tensors (the bench's model with the method applied at {' and '.join(map(str, blocks))} "
            f"blocks, a micro-batch's forward, loss and backward composed to the full model; {operators:,} operators "
            f"per step; {parts.versions})")


# --------------------------------------------------------------------------------------------------------
# The torch side
# --------------------------------------------------------------------------------------------------------


def trace_counts(spec: WorkloadSpec, cfg: FinetuneConfig, target: str, blocks: int,
                 trained: int | None = None) -> tuple[Counter[Signature], Counter[Signature] | None]:
    """One reduced model's micro-batch (``blocks`` blocks, the top ``trained`` of them trained under method freeze)
    recorded: (the first micro-batch, a later one with the gradients present, or None where they do not
    accumulate)."""
    import torch
    import transformers.masking_utils  # noqa: F401  (imported before a fake mode is entered)
    from torch._subclasses.fake_tensor import FakeTensorMode

    from dlgpu.workloads.models import finetune as models

    from .finetune_trace import _converted_in_place, _copies_keep_the_fake_mode, _reduced
    from .trace import OpRecorder, _no_init

    if cfg.trains_adapters:
        models._import_peft()
    params = spec.resolve({})
    mode, rec = FakeTensorMode(allow_non_fake_inputs=True), OpRecorder()
    with mode, rec, _no_init(), _converted_in_place(), _copies_keep_the_fake_mode(), warnings.catch_warnings():
        # peft deep-copies a trained task head (BERT's), which asks a fake tensor for its data pointer
        warnings.filterwarnings("ignore", message=".*data pointer of FakeTensor.*")
        torch.manual_seed(0)
        wl = _reduced(spec, params, cfg, blocks, cfg.seq_len, trained, cfg.checkpointing)
    _recomputation_marked(wl.model, rec)
    with mode, rec:
        first = _micro_batch(wl, rec, cfg, target)
        later = _micro_batch(wl, rec, cfg, target) if cfg.grad_accum > 1 else None
    return first, later


def _trace_parts(spec: WorkloadSpec, cfg: FinetuneConfig, target: str) -> StepParts:
    start = time.perf_counter()
    runs = [(1, 1), (2, 2)] + ([(2, 1)] if cfg.method == "freeze" else [])
    got = {run: trace_counts(spec, cfg, target, *run) for run in runs}
    (t1, t1_later), (t2, t2_later) = got[(1, 1)], got[(2, 2)]
    pieces: dict[str, tuple[OpRecord, ...]] = {}

    def split(first: Counter[Signature], two: Counter[Signature], prefix: str = "",
              frozen: Counter[Signature] | None = None) -> None:
        trained = _minus(two, first)
        pieces[prefix + "trained"] = _records(trained)
        pieces[prefix + "rest"] = _records(_minus(first, trained))
        if frozen is not None:
            pieces[prefix + "frozen"] = _records(_minus(frozen, first))

    split(t1, t2, frozen=got[(2, 1)][0] if (2, 1) in got else None)
    if t1_later is not None and t2_later is not None:
        f_later = got[(2, 1)][1] if (2, 1) in got else None
        split(_minus(t1_later, t1), _minus(t2_later, t2), "accumulate_",
              None if f_later is None else _minus(f_later, got[(2, 1)][0]))
    traces = tuple((b, t, sum(c[0].values())) for (b, t), c in got.items())
    return StepParts(spec.name, step_key(cfg, target), pieces, traces, versions(), time.perf_counter() - start)


def _minus(a: Counter[Signature], b: Counter[Signature]) -> Counter[Signature]:
    """a - b by signature, negative counts kept (``Counter.subtract``, not ``-``, which drops them)."""
    out = Counter(a)
    out.subtract(b)
    return Counter({k: v for k, v in out.items() if v})


def _records(counts: Counter[Signature]) -> tuple[OpRecord, ...]:
    return tuple(OpRecord(op=k[0], kind=k[1], phase=k[2], dtype=k[3], flops=k[4], bytes_read=k[5],
                          bytes_written=k[6], count=n, gemm=k[7]) for k, n in counts.items())


def _recomputation_marked(model: Any, rec: Any) -> None:
    """Under checkpointing, the forward that ``torch.utils.checkpoint`` runs again during the backward is recorded
    in phase ``recompute``: each checkpointed module's function gets a ``context_fn`` whose recomputation context
    sets the recorder's phase (non-reentrant checkpointing's own hook for it)."""

    @contextlib.contextmanager
    def recomputing() -> Iterator[None]:
        was = rec.phase
        rec.phase = RECOMPUTE
        try:
            yield
        finally:
            rec.phase = was

    def context() -> tuple[contextlib.AbstractContextManager[None], contextlib.AbstractContextManager[None]]:
        return contextlib.nullcontext(), recomputing()

    for module in model.modules():
        fn = getattr(module, "_gradient_checkpointing_func", None)
        if fn is not None:
            module._gradient_checkpointing_func = functools.partial(fn, context_fn=context)


def _micro_batch(wl: Any, rec: Any, cfg: FinetuneConfig, target: str) -> Counter[Signature]:
    """One micro-batch's forward, loss and backward as the bench's ``train_step`` runs it (the loss divided by
    ``grad_accum`` where it accumulates), recorded."""
    import torch

    from .finetune_trace import _cuda_dropout, _masks_as_on_a_device
    from .gpu_semantics import gpu_semantics

    autocast_dtype = torch.bfloat16 if cfg.weights_dtype == "fp32" else None
    wl.seq_len = cfg.seq_len
    if getattr(wl, "_encoder", None) is not None:
        wl._encoder.seq_len = cfg.seq_len
    batch = wl.make_batch(cfg.micro_batch, torch.device("cpu"))
    wl.model.train(True)
    semantics: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    dropout: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    if target == "gpu":
        semantics, dropout = gpu_semantics(wl, rec, autocast_dtype), _cuda_dropout()
    autocast = (torch.autocast("cpu", dtype=autocast_dtype) if autocast_dtype is not None
                else contextlib.nullcontext())
    rec.calls.clear()
    rec.phase = "forward"
    rec.recording = True
    try:
        with semantics, dropout, _masks_as_on_a_device():
            with autocast:
                loss = wl.loss(batch)
            if cfg.grad_accum > 1:
                loss = loss / cfg.grad_accum
            rec.phase = "backward"
            loss.backward()
    finally:
        rec.recording = False
        rec.phase = "forward"
    out: Counter[Signature] = Counter(rec.calls)
    rec.calls.clear()
    return out
