"""Operator profiles on demand: traced once per key, kept in memory and on disk (``home.cache_dir()``), so that
``predict`` and ``advise`` with every profile cached import no torch. ``profile`` is the ``ProfileSource``
the prediction engine is handed.

A cached profile is keyed by what was traced (workload, task, precision, batch, parameters, optimizer step,
target) and by ``trace_version()``: the installed torch and the source of dlgpu's tracing and workload code.
A cache that cannot be read or written is no cache: the trace runs again.

A fine-tuning job's traced activations (``finetune_activations``, traced by ``finetune_trace``) are cached the same
way, keyed by the workload, ``finetune.memory.trace_key`` (method, rank, targets, the weights' width), the dtype
traced and the versions of torch, transformers and peft, so that ``predict``/``advise --task finetune`` with them
cached import no torch; where torch cannot be imported and nothing is cached, the reason is returned instead. So is a
fine-tuning job's traced step (``finetune_step_parts``, traced by ``finetune_profile``), keyed by everything that
changes its operators (``finetune_profile.step_key``) and composed per job without torch (``finetune_step_profile``)."""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dlgpu.errors import BadInput
from dlgpu.home import cache_dir, write_json_atomic
from dlgpu.results import PRECISIONS, TASKS, OpProfile, memory_need, profile_from_dict
from dlgpu.workloads.registry import DECODE_BATCH, WorkloadSpec, check_task, get_workload

if TYPE_CHECKING:
    from dlgpu.finetune.config import FinetuneConfig
    from dlgpu.finetune.memory import TracedActivations
    from dlgpu.finetune.model import FtModel

    from .finetune_profile import StepParts

_MEMORY: dict[tuple[Any, ...], OpProfile] = {}
_CUSTOM: dict[str, WorkloadSpec] = {}
"""User models (``--model``) that may be traced in this process, by name (never cached on disk)."""
_VERSION: list[str] = []

MAX_BATCH_SEARCHED = 1 << 16


def register_custom(spec: WorkloadSpec) -> None:
    """Let ``profile`` trace a user's model (``--model``) by its name in this process."""
    _CUSTOM[spec.name] = spec


def trace_version() -> str:
    """What a cached profile depends on besides its key: torch's version (read from the installed distribution,
    without importing it) and the source of dlgpu's tracing (``analyze/``) and workload code (``workloads/``)."""
    from importlib import metadata

    try:
        torch_version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        torch_version = "none"
    h = hashlib.sha256(torch_version.encode())
    here = Path(__file__).parent
    for root in (here, here.parent / "workloads"):
        for f in sorted(root.rglob("*")):
            if f.suffix in (".py", ".toml"):
                h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _disk_path(key: tuple[Any, ...]) -> Path:
    if not _VERSION:
        _VERSION.append(trace_version())
    name = hashlib.sha256(repr((key, _VERSION[0])).encode()).hexdigest()[:32]
    return cache_dir() / "profiles" / f"{name}.json"


def _read_disk(key: tuple[Any, ...]) -> OpProfile | None:
    path = _disk_path(key)
    try:
        return profile_from_dict(json.loads(path.read_text())) if path.exists() else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_disk(key: tuple[Any, ...], prof: OpProfile) -> None:
    with contextlib.suppress(OSError, ValueError, TypeError):
        write_json_atomic(_disk_path(key), prof.to_dict())


def _trace(spec: WorkloadSpec, params: Mapping[str, Any], task: str, precision: str, batch_size: int,
           optimizer_step: bool, target: str) -> OpProfile:
    from .memory_model import memory_floor
    from .trace import profile as trace_profile

    try:
        prof = trace_profile(spec, params, task, precision, batch_size, target=target)
    except (ValueError, RuntimeError, IndexError, TypeError) as e:
        # the model itself refuses these settings (a BatchNorm given one value per channel, a shape mismatch)
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise BadInput(f"{spec.name} cannot run a {task} step at batch {batch_size} with these settings: {reason}",
                       param="workload") from e
    if not optimizer_step:
        prof = prof.without_phase("optimizer")
    return replace(prof, state_bytes=memory_floor(spec, params, task).total_bytes)


def profile(workload: str, task: str = "train", precision: str = "fp32", batch_size: int | None = None,
            overrides: Mapping[str, str] | None = None, optimizer_step: bool = True, target: str = "gpu") -> OpProfile:
    """The operator profile of one full-size step, traced on fake tensors (no memory, no compute), as eager
    PyTorch dispatches it on a GPU (``target="gpu"``) or on a CPU (``"cpu"``; see ``gpu_semantics``).

    ``decode`` is one generated token per sequence against a KV cache of ``context_len`` tokens (decoder-only
    language models); its default batch is one sequence (``DECODE_BATCH``)."""
    if task not in TASKS:
        raise BadInput(f"{task}: not one of {', '.join(TASKS)}", param="task")
    if precision not in PRECISIONS:
        raise BadInput(f"{precision}: not one of {', '.join(PRECISIONS)}", param="precision")
    spec = _CUSTOM[workload] if workload in _CUSTOM else get_workload(workload)
    check_task(spec, task)
    params = spec.resolve(dict(overrides or {}))
    if batch_size is not None and batch_size <= 0:
        raise BadInput(f"{batch_size}: must be a positive integer (or leave it out for the workload's own batch)",
                       param="batch_size")
    bs = batch_size or (DECODE_BATCH if task == "decode" else spec.batch_size)
    if bs <= 0:
        raise BadInput(f"{bs}: must be a positive integer", param="batch_size")
    key = (spec.name, task, precision, bs, repr(sorted(params.items())), optimizer_step, target)
    if key in _MEMORY:
        return _MEMORY[key]
    custom = spec.family == "custom"
    prof = None if custom else _read_disk(key)
    if prof is None:
        prof = _trace(spec, params, task, precision, bs, optimizer_step, target)
        if not custom:
            _write_disk(key, prof)
    _MEMORY[key] = prof
    return prof


def largest_batch(workload: str, task: str, precision: str, memory_bytes: int,
                  overrides: Mapping[str, str] | None = None, target: str = "gpu") -> int:
    """The largest batch whose ``memory_need`` fits ``memory_bytes`` (0 if not even the smallest does). Memory is
    nearly affine in the batch: secant steps from the smallest batch and 7 more find the crossing in a few
    traces, and unit steps settle it exactly. The smallest batch is 1, or 2 where the model cannot train on
    one sample (BatchNorm over a 1x1 feature map)."""
    def need(b: int) -> int:
        return memory_need(profile(workload, task, precision, b, overrides, target=target))

    lo = 1
    try:
        first = need(1)
    except BadInput:
        lo = 2
        first = need(2)  # a model that runs at no batch says why
    if first > memory_bytes:
        return 0
    x0, x1 = lo, lo + 7
    if need(x1) <= need(x0):
        return MAX_BATCH_SEARCHED  # memory does not grow with the batch
    for _ in range(6):
        n0, n1 = need(x0), need(x1)
        if n1 == n0:
            break
        x2 = min(MAX_BATCH_SEARCHED, max(lo, round(x1 + (memory_bytes - n1) * (x1 - x0) / (n1 - n0))))
        if x2 == x1:
            break
        x0, x1 = x1, x2
    b = x1
    while b > lo and need(b) > memory_bytes:
        b -= max(1, b // 200)
    while b < MAX_BATCH_SEARCHED and need(b + 1) <= memory_bytes:
        b += 1
    return b


_FINETUNE: dict[tuple[str, ...], TracedActivations | str] = {}


def finetune_activations(workload: str, job: FinetuneConfig | Mapping[str, Any]) -> TracedActivations | str:
    """A fine-tuning job's activations traced on fake tensors with its method applied (``finetune_trace``), cached
    in memory and on disk; or the reason they are not traced (QLoRA, MoE, no workload builds it, torch missing, the
    trace failed: the formula stays). No torch where the figures are cached or cannot be traced."""
    from dlgpu.finetune.memory import TracedActivations, trace_key

    from .finetune_trace import NEEDS_TORCH, job_config, trace_activations, untraced_reason, versions

    cfg = job_config(job)
    spec, why = untraced_reason(workload, cfg)
    if spec is None:
        return why or "not traced"
    key = ("finetune-activations", spec.name, trace_key(cfg), cfg.weights_dtype, versions())
    if key in _FINETUNE:
        return _FINETUNE[key]
    path = _disk_path(key)
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        if path.exists():
            got = json.loads(path.read_text())
            out: TracedActivations | str = (TracedActivations.from_dict(got["traced"]) if got.get("traced")
                                            else str(got["reason"]))
            _FINETUNE[key] = out
            return out
    out = trace_activations(spec.name, cfg)
    if isinstance(out, str) and out.startswith(NEEDS_TORCH):
        return out  # not cached: installing torch makes it traceable
    _FINETUNE[key] = out
    with contextlib.suppress(OSError, ValueError, TypeError):
        write_json_atomic(path, {"traced": out.to_dict()} if isinstance(out, TracedActivations) else {"reason": out})
    return out


_STEPS: dict[tuple[str, ...], StepParts | str] = {}


def finetune_step_parts(workload: str, job: FinetuneConfig | Mapping[str, Any],
                        target: str = "gpu") -> StepParts | str:
    """A fine-tuning job's micro-batch traced on fake tensors in parts (``finetune_profile.StepParts``), cached in
    memory and on disk by the workload, ``finetune_profile.step_key`` (method, adapters, weights' width, micro-batch,
    sequence, checkpointing, accumulation, target), the versions of peft, transformers and torch and dlgpu's tracing
    code (``trace_version``); or the reason it is not traced (QLoRA, MoE, no workload builds it, torch missing, the
    trace failed). No torch where the parts are cached or cannot be traced."""
    from .finetune_profile import StepParts, step_key, trace_step, untraced_step_reason
    from .finetune_trace import NEEDS_TORCH, job_config, versions

    cfg = job_config(job)
    spec, why = untraced_step_reason(workload, cfg)
    if spec is None:
        return why or "not traced"
    key = ("finetune-step", spec.name, step_key(cfg, target), versions())
    if key in _STEPS:
        return _STEPS[key]
    path = _disk_path(key)
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        if path.exists():
            got = json.loads(path.read_text())
            out: StepParts | str = StepParts.from_dict(got["parts"]) if got.get("parts") else str(got["reason"])
            _STEPS[key] = out
            return out
    out = trace_step(spec.name, cfg, target)
    if isinstance(out, str) and out.startswith(NEEDS_TORCH):
        return out  # not cached: installing torch makes it traceable
    _STEPS[key] = out
    with contextlib.suppress(OSError, ValueError, TypeError):
        write_json_atomic(path, {"parts": out.to_dict()} if isinstance(out, StepParts) else {"reason": out})
    return out


def finetune_step_profile(workload: str, model: FtModel, job: FinetuneConfig | Mapping[str, Any],
                          target: str = "gpu") -> OpProfile | str:
    """The step of a fine-tuning job on ``model`` (``finetune.model.FtModel``) as an operator profile traced on fake
    tensors (``finetune_step_parts``, composed by ``finetune_profile.compose`` with the optimizer's records), or the
    reason it is not: the ``finetune.perf.StepProfiles`` seam. No torch where the parts are cached."""
    from .finetune_profile import StepParts, compose
    from .finetune_trace import job_config

    cfg = job_config(job)
    parts = finetune_step_parts(workload, cfg, target)
    if not isinstance(parts, StepParts):
        return str(parts)
    try:
        return compose(parts, model, cfg)
    except ValueError as exc:
        return str(exc)
