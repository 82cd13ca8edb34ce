"""``dlgpu bench --task finetune --method full|freeze|lora|qlora``: fine-tuning measured here.

The request (``--method``, the fine-tuning ``--set`` keys of ``dlgpu.finetune.config.SETTINGS``, ``-b`` as the
micro-batch) is parsed by ``finetune.config.parse_finetune`` and checked before anything runs
(``finetune_request``); each (workload, device) plan carries its job as a plain dict (``Plan.finetune``) to the
torch side, ``workloads.models.finetune.FinetuneWorkload`` (the model built as the workload builds it, with the
method applied), built by ``harness.build`` and stepped by ``finetune_step``.

Precision: for ``finetune`` the bench precision is the dtype the weights are stored in, fp32, bf16 (the default) or
fp16 (``--precision``, or ``--set weights_dtype``; both given must agree). bf16 and fp16 are "true" half precision:
weights, adapters, gradients and optimizer states in that dtype, no autocast, no gradient scaler. fp32 is mixed
precision as ``finetune.config.SETTINGS`` defines it: fp32 weights (gradients, optimizer states) with the forward
and backward under bf16 autocast (fp16 autocast with a gradient scaler on a device without bf16). QLoRA's base is
4-bit NF4 with bf16 or fp16 compute (fp32 is bad input).

A step is ``grad_accum`` micro-batches (forward, loss, backward) and one optimizer step: the result's ``batch_size``
is the samples of one step, micro-batch x grad_accum (so samples/s = micro-batch x grad_accum / step time), and a
sample is one sequence of ``seq_len`` tokens (tokens/s in the settings).

Peak memory is what the harness measures for every task: on the CPU the process's peak resident set (VmHWM, reset
after the model is built and before the first step, so the warm-up step that allocates the optimizer state counts;
``peak_mem_kind`` ``process-peak-rss``: the interpreter, PyTorch and the libraries included); on accelerators the
allocator's peak. The settings add the tensor-level breakdown measured after the first step (base weights,
trainable weights, gradients, optimizer state, in bytes as stored) and the process RSS before the model was built
and before the steps, so that a prediction of the training state can be compared with it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cache
from typing import TYPE_CHECKING, Any

from dlgpu.errors import BadInput
from dlgpu.finetune.config import SETTINGS, WEIGHT_DTYPES, FinetuneConfig, parse_finetune
from dlgpu.results import DeviceInfo
from dlgpu.results.vocab import FINETUNE_TASK
from dlgpu.units import format_bytes
from dlgpu.workloads.finetune import ENCODER, default_seq_len, encoder_targets, finetune_kind, max_seq_len
from dlgpu.workloads.registry import WorkloadSpec, list_workloads

if TYPE_CHECKING:
    from collections.abc import Callable

    from .harness import Built
    from .plan import Plan

DEFAULT_PRECISION = "bf16"
PRECISIONS = WEIGHT_DTYPES  # fp32, bf16, fp16: the dtypes the weights are stored in
ONE_DEVICE = ("gpus", "sharding", "offload")
"""``--set`` keys of a fine-tuning job that only a prediction can take: bench measures one device here."""
DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
OPTIMIZER_STATE_BYTES = {"adamw": 2.0, "adamw8bit": 0.5, "adafactor": 0.0, "sgd": 1.0}
"""Optimizer state per trainable parameter, in units of the weights' element size (AdamW8bit: 2 bytes whatever the
dtype, so 0.5 x 4 at fp32 and 1 x 2 at half: taken as 0.5 units, a floor); Adafactor's factored moments are ~0."""


def finetunable() -> str:
    """The workloads that can be fine-tuned, comma-separated (for messages)."""
    return ", ".join(s.name for s in list_workloads() if finetune_kind(s) is not None)


@dataclass(frozen=True)
class FinetuneRequest:
    """A checked ``--task finetune`` request: the job (seq_len and micro-batch still the defaults where not
    given), the ``--set`` keys that were the job's, and the weights dtypes to measure."""

    config: FinetuneConfig
    keys: dict[str, str]
    precisions: tuple[str, ...]

    def job(self, spec: WorkloadSpec, params: Mapping[str, Any], micro_batch: int) -> FinetuneConfig:
        """The job for ``spec``: its sequence length (the workload's own, else the job's default within the model's
        context) and the plan's micro-batch; BadInput where seq_len exceeds the model's positions."""
        seq_len = (self.config.seq_len if "seq_len" in self.keys
                   else default_seq_len(spec, params, FinetuneConfig.seq_len))
        bound = max_seq_len(spec)
        if bound is not None and seq_len > bound:
            raise BadInput(f"--set seq_len={seq_len}: {spec.name} takes at most {bound} tokens", param="overrides")
        return replace(self.config, seq_len=seq_len, micro_batch=micro_batch, weights_dtype=self.precisions[0])

    def overrides(self) -> dict[str, str]:
        """What a result records in ``overrides`` besides the workload's: the method and the job's ``--set`` keys
        (so that stored results of different jobs are never taken for one configuration)."""
        return {"method": self.config.method, **self.keys}


def finetune_request(method: str | None, overrides: Mapping[str, str], tasks: Sequence[str],
                     precisions: Sequence[str] | None, batch_size: int | None,
                     specs: Sequence[WorkloadSpec]) -> tuple[FinetuneRequest | None, dict[str, str]]:
    """(the fine-tuning request or None, the ``--set`` keys left for the workloads). Bad input, one line each:
    ``--method`` or a fine-tuning key without ``--task finetune``, an unknown method or setting, a setting only a
    prediction takes (several GPUs, sharding, offload), a precision that is not a weights dtype, and a selected
    workload that cannot be fine-tuned."""
    if FINETUNE_TASK not in tasks:
        if method is not None:
            raise BadInput(f"--method {method}: the fine-tuning method is for --task finetune", param="method")
        only = sorted(k for k in overrides if k in SETTINGS and not any(p.name == k for s in specs for p in s.params))
        if only:
            raise BadInput(f"--set {only[0]}: a fine-tuning setting, for --task finetune", param="overrides")
        return None, dict(overrides)
    cannot = [s.name for s in specs if finetune_kind(s) is None]
    if cannot:
        raise BadInput(f"{FINETUNE_TASK}: {', '.join(cannot)} cannot be fine-tuned here (fine-tunable: "
                       f"{finetunable()})", param="tasks")
    keys = {k: v for k, v in overrides.items() if k in SETTINGS}
    for k in ONE_DEVICE:
        if k in keys:
            raise BadInput(f"--set {k}: bench measures fine-tuning on one device here; several GPUs, sharding and "
                           "offload are predicted (dlgpu predict --task finetune)", param="overrides")
    config = parse_finetune(method, keys, batch_size)
    # A workload's own seq_len (BERT) follows the job's; every other --set key is the workloads'.
    shared = any(p.name == "seq_len" for s in specs for p in s.params)
    left = {k: v for k, v in overrides.items() if k not in SETTINGS or (k == "seq_len" and shared)}
    if config.trains_adapters:
        _check_targets(config, specs)
    return FinetuneRequest(config, keys, _precisions(config, keys, precisions)), left


def _check_targets(config: FinetuneConfig, specs: Sequence[WorkloadSpec]) -> None:
    for s in specs:
        if finetune_kind(s) == ENCODER and all(p is None for p in encoder_targets(config.lora_targets).values()):
            raise BadInput(f"--set lora_targets={','.join(config.lora_targets)}: {s.name} (BERT) has no such layer "
                           "(its equivalents of q_proj, k_proj, v_proj, o_proj, up_proj, down_proj)",
                           param="overrides")


def _precisions(config: FinetuneConfig, keys: Mapping[str, str], asked: Sequence[str] | None) -> tuple[str, ...]:
    valid = tuple(p for p in PRECISIONS if not (config.method == "qlora" and p == "fp32"))
    named = [p for p in asked or () if p != "all"]
    for p in named:
        if p not in PRECISIONS:
            raise BadInput(f"{p}: with --task finetune the precision is the dtype the weights are stored in: "
                           f"{', '.join(valid)} or all (fp32: mixed precision under bf16 autocast)", param="precisions")
    if config.method == "qlora" and "fp32" in named:
        raise BadInput("fp32: --method qlora keeps the base in 4-bit NF4 with bf16 or fp16 compute (use bf16 or "
                       "fp16)", param="precisions")
    if "weights_dtype" in keys:
        if named and named != [config.weights_dtype]:
            raise BadInput(f"{','.join(named)}: --set weights_dtype={config.weights_dtype} already says the weights' "
                           "dtype (the precision of --task finetune); give one of them", param="precisions")
        return (config.weights_dtype,)
    if asked and "all" in asked:
        return valid
    return tuple(p for p in PRECISIONS if p in named) or (DEFAULT_PRECISION,)


def finetune_plans(plans: Sequence[Plan], request: FinetuneRequest | None) -> list[Plan]:
    """``plans`` with each finetune plan given its job (``Plan.finetune``), weights dtypes and overrides; BERT's
    ``seq_len`` parameter set to the job's."""
    out = []
    for plan in plans:
        if plan.task != FINETUNE_TASK or request is None:
            out.append(plan)
            continue
        job = request.job(plan.spec, plan.params, plan.batch_size)
        params = dict(plan.params)
        if "seq_len" in params:
            params["seq_len"] = job.seq_len
        out.append(replace(plan, params=params, precisions=request.precisions, finetune=job.to_dict(),
                           overrides={**plan.overrides, **request.overrides()}))
    return out


# --------------------------------------------------------------------------------------------------------
# Before running: what cannot run here, and what the run needs
# --------------------------------------------------------------------------------------------------------


def mixed_precision(device: DeviceInfo, precision: str) -> str | None:
    """The autocast precision of fp32 weights (bf16, or fp16 where the device runs no bf16); None for bf16/fp16
    weights (no autocast)."""
    from dlgpu.devices import unsupported_reason

    if precision != "fp32":
        return None
    return "bf16" if unsupported_reason(device, "bf16") is None else "fp16"


def finetune_unsupported(plan: Plan, precision: str) -> str | None:
    """Why ``plan`` cannot fine-tune at ``precision`` (weights dtype) on its device; None when it can. bitsandbytes
    (QLoRA's NF4 layers, AdamW8bit) is tried on a tiny layer on the device, once per configuration."""
    from dlgpu.devices import unsupported_reason

    if precision not in PRECISIONS:
        return f"{precision}: fine-tuning stores its weights in {', '.join(PRECISIONS)}"
    why = unsupported_reason(plan.device, precision)
    if why and plan.device.kind == "cpu" and precision == "fp16":
        return ("fp16 weights: CPUs have no fp16 matrix units; dlgpu fine-tunes on CPUs with bf16 weights and fp32 "
                "(mixed precision under bf16 autocast)")
    if why:
        return why
    job = plan.finetune or {}
    if job.get("method") == "qlora":
        why = _bitsandbytes(plan.device.id, "nf4", precision)
        if why:
            return f"QLoRA: {why}; predicted instead (dlgpu predict --task finetune --method qlora)"
    if job.get("optimizer") == "adamw8bit":
        why = _bitsandbytes(plan.device.id, "adamw8bit", precision)
        if why:
            return f"--set optimizer=adamw8bit: {why}"
    return None


@cache
def _bitsandbytes(device_id: str, what: str, precision: str) -> str | None:
    import torch

    from dlgpu.workloads.models.finetune import DTYPES, bitsandbytes_unavailable

    return bitsandbytes_unavailable(torch.device(device_id), what, DTYPES[precision])


def finetune_need(parameters: int, plan: Plan, precision: str) -> tuple[int, str]:
    """(bytes the run needs at least, what they are): the weights in their dtype (QLoRA's are quantized from them,
    so they must fit first), and for full and freeze the gradients and optimizer state of what trains (a share of
    the layers for freeze). Adapters and activations are not counted: a floor, to skip what cannot fit."""
    job = plan.finetune or {}
    size = DTYPE_BYTES[precision]
    weights = parameters * size
    method = job.get("method", "lora")
    layers = _layers(plan.spec)
    share = 1.0 if method == "full" else (min(int(job.get("freeze_layers", 2)), layers) / layers
                                          if method == "freeze" and layers else 0.0)
    trained = int(parameters * share)
    state = int(trained * size * (1 + OPTIMIZER_STATE_BYTES.get(str(job.get("optimizer")), 2.0)))
    need = weights + state
    what = f"{format_bytes(weights)} of {precision} weights of {parameters / 1e9:.2f}B parameters"
    if state:
        what += f" + {format_bytes(state)} of gradients and {job.get('optimizer')} state ({share:.0%} trained)"
    return need, f"needs about {format_bytes(need)}: {what} (activations and adapters not counted)"


def _layers(spec: WorkloadSpec) -> int:
    shape = spec.extra.get("shape")
    return int(shape.layers) if shape is not None else int(spec.extra.get("layers", 0))


# --------------------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------------------


def samples_per_step(built: Built, task: str, micro_batch: int) -> int:
    """Samples one timed step processes: for finetune micro-batch x grad_accum, else the batch."""
    if task != FINETUNE_TASK:
        return micro_batch
    return micro_batch * int(getattr(built.instance, "grad_accum", 1))


def rss_bytes() -> int | None:
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except Exception:
        return None


def finetune_step(built: Built, precision: str, micro_batch: int) -> Callable[[], None]:
    """The step ``measure`` times for task finetune, ready to call (the model rebuilt in ``precision`` first if it
    is in another dtype): ``grad_accum`` micro-batches of ``micro_batch`` sequences and one optimizer step."""
    import torch

    from .harness import HarnessContext

    dev = torch.device(built.device.id)
    inst: Any = built.instance
    inst.set_weight_format(precision, dev, built.seed)
    mixed = mixed_precision(built.device, precision)
    ctx = (HarnessContext(dev.type, mixed, train=True) if mixed is not None
           else HarnessContext(dev.type, precision, train=False, autocast=False))
    batch = inst.make_batch(micro_batch, dev)
    inst.train(True)
    inst.rss_before_steps = rss_bytes()

    def step() -> None:
        inst.train_step(batch, ctx)
        ctx.end_step()

    return step


def finetune_settings(built: Built, precision: str, micro_batch: int, median_s: float | None) -> dict[str, Any]:
    """What the result's settings record for task finetune: the method, the job (``FinetuneConfig.to_dict``, as
    measured), parameters, bytes by kind after the first step, tokens/s, how precision was applied, RSS figures,
    library versions."""
    inst: Any = built.instance
    info = inst.describe()
    job = {**inst.job, "weights_dtype": precision, "micro_batch": micro_batch}
    step_samples = micro_batch * int(job["grad_accum"])
    mixed = mixed_precision(built.device, precision)
    sps = step_samples / median_s if median_s else None
    return {
        "method": job["method"],
        "finetune": job,
        **info,
        "micro_batch": micro_batch, "grad_accum": int(job["grad_accum"]), "seq_len": int(job["seq_len"]),
        "samples_per_step": step_samples, "tokens_per_step": step_samples * int(job["seq_len"]),
        "tokens_per_s": None if sps is None else sps * int(job["seq_len"]),
        "autocast_dtype": {"bf16": "bfloat16", "fp16": "float16"}.get(mixed or ""),
        "grad_scaler": mixed == "fp16",
        "precision_means": ("fp32 weights, gradients and optimizer state; forward and backward under "
                            f"{mixed} autocast (mixed precision)" if mixed else
                            f"{precision} weights, gradients and optimizer state, no autocast ({precision}-true)"),
        "memory": {"rss_before_build_bytes": getattr(inst, "rss_before_build", None),
                   "rss_before_steps_bytes": getattr(inst, "rss_before_steps", None),
                   "peak_is": "the process's peak RSS (CPU) or the allocator's peak (GPU) over warm-up and timed "
                              "steps; the *_bytes figures above it are tensors measured after the first step"},
    }

