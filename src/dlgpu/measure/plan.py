"""What a ``bench`` run will do, decided before anything runs: one ``Plan`` per (workload, task, device) with
its precisions and batch, and for each precision whether the run can fit the device's memory.

The memory check counts weights, gradients and optimizer state on the meta device and, for training, the
activations kept for backward traced on fake tensors: a run that cannot fit is skipped with both figures,
not attempted."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dlgpu.devices.precision import WEIGHT_FORMAT_FAMILIES
from dlgpu.results import PRECISIONS, USABLE_MEMORY_FRACTION, DeviceInfo
from dlgpu.results.vocab import BENCH_PRECISIONS, WEIGHT_PRECISIONS
from dlgpu.units import format_bytes
from dlgpu.workloads.llm import prefill_batch
from dlgpu.workloads.registry import DECODE_BATCH, WorkloadSpec
from dlgpu.workloads.tabular import FAMILY as TABULAR
from dlgpu.workloads.tabular import samples_per_step

ISOLATE_ABOVE_FRACTION = 0.25
"""CPU runs whose memory floor exceeds this share of usable memory run in a child process: on the CPU an
out-of-memory is the kernel's SIGKILL, and it must not take what was already measured with it."""


@dataclass(frozen=True)
class Plan:
    """One (workload, task, device) of a bench run, with the precisions to try and the batch."""

    spec: WorkloadSpec
    params: dict[str, Any]
    overrides: dict[str, Any]
    task: str
    device: DeviceInfo
    precisions: tuple[str, ...]
    batch_size: int
    finetune: dict[str, Any] | None = None
    """Task finetune: the job (``FinetuneConfig.to_dict()``, ``measure.finetune``); batch_size is its micro-batch."""

    @property
    def label(self) -> str:
        return f"{self.spec.name} {self.task} on {self.device.id}"


@dataclass(frozen=True)
class MemoryFit:
    """Whether a run fits: ``why_not`` says why it cannot (None when it can, or when the device's free memory
    is unknown); ``note`` gives the figures either way."""

    why_not: str | None
    need_bytes: int
    usable_bytes: int | None
    note: str

    @property
    def isolate_on_cpu(self) -> bool:
        """Large enough for this machine's memory that a CPU run goes to a child process."""
        return bool(self.usable_bytes) and self.need_bytes > ISOLATE_ABOVE_FRACTION * (self.usable_bytes or 0)


def default_batch(spec: WorkloadSpec, device: DeviceInfo, quick: bool) -> int:
    """The workload's published per-GPU batch on accelerators; its small batch with --quick and on the CPU.

    A CPU's throughput saturates at small batches, while a published GPU batch (256 images for ResNet-50)
    makes one CPU step take minutes; ``--batch-size`` overrides either."""
    return spec.quick_batch_size if quick or device.kind == "cpu" else spec.batch_size


def workload_precisions(spec: WorkloadSpec) -> tuple[str, ...]:
    """The precisions ``spec`` is measured at when none are named (or ``all``): every autocast precision, and for
    LLM workloads the int8/int4 weight formats too (no other workload is offered those); tabular workloads fp32 only
    (their data's dtype: ``measure.tabular``)."""
    if spec.family == TABULAR:
        return ("fp32",)
    return BENCH_PRECISIONS if spec.family in WEIGHT_FORMAT_FAMILIES else PRECISIONS


def _batch(spec: WorkloadSpec, task: str, device: DeviceInfo, params: Mapping[str, Any], quick: bool) -> int:
    if spec.family == TABULAR:  # the rows one fit or predict processes
        return samples_per_step(spec, task, params)
    if task == "decode":
        return DECODE_BATCH
    if task == "infer":
        prefill = prefill_batch(spec, params)  # an LLM's prefill batch counts tokens: one prompt
        if prefill is not None:
            return prefill
    return default_batch(spec, device, quick)


def make_plans(specs: Sequence[WorkloadSpec], tasks: Sequence[str], named_tasks: Sequence[str],
               devices: Sequence[DeviceInfo], precisions: tuple[str, ...] | None,
               params: Mapping[str, dict[str, Any]], overrides: Mapping[str, dict[str, str]], batch_size: int | None,
               quick: bool) -> list[Plan]:
    """Every (workload, task, device): a task named explicitly is planned for every workload (skipped later,
    with the reason, where unsupported); through ``all``, only for the workloads that support it. ``precisions``
    None: each workload's own (``workload_precisions``)."""
    return [
        Plan(s, params[s.name], dict(overrides[s.name]), t, d, precisions or workload_precisions(s),
             batch_size or _batch(s, t, d, params[s.name], quick))
        for s in specs for t in tasks if t in named_tasks or s.supports(t) for d in devices
    ]


class MemoryCheck:
    """Memory fit per plan and precision; the state floor and traced activations are computed once each."""

    def __init__(self) -> None:
        self._floors: dict[tuple[Any, ...], Any] = {}
        self._activations: dict[tuple[Any, ...], int | None] = {}

    def _floor(self, spec: WorkloadSpec, params: Mapping[str, Any], task: str) -> Any:
        from dlgpu.analyze import memory_floor

        key = (spec.name, repr(sorted(params.items())), task)
        if key not in self._floors:
            self._floors[key] = memory_floor(spec, params, task)
        return self._floors[key]

    def _activation_bytes(self, spec: WorkloadSpec, params: Mapping[str, Any], batch_size: int,
                          precision: str) -> int | None:
        from dlgpu.analyze import activation_bytes

        key = (spec.name, repr(sorted(params.items())), batch_size, precision)
        if key not in self._activations:
            try:
                self._activations[key] = activation_bytes(spec, params, batch_size, precision)
            except Exception:  # not traceable on fake tensors: judged by the floor alone
                self._activations[key] = None
        return self._activations[key]

    def need(self, plan: Plan, precision: str) -> tuple[int, str]:
        """(bytes the run needs, what they are): weights, gradients and optimizer state (counted on the meta
        device) plus, for training, the activations kept for backward (traced on fake tensors at this batch
        and precision) and, for decode, the KV cache."""
        from dlgpu.analyze import kv_cache_bytes

        spec, params, task, batch = plan.spec, plan.params, plan.task, plan.batch_size
        if plan.finetune is not None:
            from .finetune import finetune_need

            return finetune_need(self._floor(spec, params, "infer").parameters, plan, precision)
        floor = self._floor(spec, params, task)
        what = ("weights, gradients and " + floor.optimizer + " state") if task == "train" else "weights"
        need = floor.total_bytes
        kv_precision = precision
        if spec.family in WEIGHT_FORMAT_FAMILIES:
            # LLM workloads are built in bf16 (the floor's weights) and rebuilt in the precision's format: fp32
            # doubles them; int8/int4 are quantized from the bf16 model, which must fit first. KV cache: the
            # weights' dtype (bf16 activations for int8/int4).
            if precision in ("fp32", "tf32"):
                need += floor.weights_bytes
                what = "fp32 weights"
            else:
                what = ("bf16 weights (int8/int4 are quantized from them)" if precision in WEIGHT_PRECISIONS
                        else f"{precision} weights")
                kv_precision = "bf16" if precision in WEIGHT_PRECISIONS else precision
        note = f"{format_bytes(need)} for {what} of {floor.parameters / 1e9:.2f}B parameters"
        if task == "train":
            acts = self._activation_bytes(spec, params, batch, precision)
            if acts is None:
                note += " (activations not counted: the model cannot be traced on fake tensors)"
            else:
                need += acts
                note += f" + {format_bytes(acts)} of activations kept for backward at batch {batch}"
        if task == "decode":
            kv = kv_cache_bytes(spec, params, batch, kv_precision)
            need += kv
            note += f" + {format_bytes(kv)} of KV cache ({params['context_len']} tokens x batch {batch})"
        return need, f"needs about {format_bytes(need)}: {note}"

    def fit(self, plan: Plan, precision: str) -> MemoryFit:
        """Whether ``plan`` at ``precision`` fits the device's free memory (``USABLE_MEMORY_FRACTION`` of it)."""
        from dlgpu.devices import available_memory

        need, note = self.need(plan, precision)
        available = available_memory(plan.device)
        if available is None:
            return MemoryFit(None, need, None, note)
        usable = int(available * USABLE_MEMORY_FRACTION)
        note += f"; {plan.device.id} has {format_bytes(available)} free, {format_bytes(usable)} usable"
        return MemoryFit(f"does not fit: {note}" if need > usable else None, need, usable, note)
