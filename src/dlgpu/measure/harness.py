"""Run one workload on one device at one precision for one task, and keep what was measured.

The hot path (``_time``) is: build, warm up, then ``Timer`` with device synchronization around each step.
Precision lives here, not in workloads: ``HarnessContext`` applies autocast and the fp16 gradient scaler,
and ``precision_settings`` sets (and afterwards restores) PyTorch's TF32 switches."""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import torch

from dlgpu.results import BenchResult, DeviceInfo, StepStats
from dlgpu.workloads.base import WorkloadInstance
from dlgpu.workloads.registry import WorkloadSpec

from .memory import AllocatorPeak, CpuPeakRss, MpsDriverMemory, PeakMemory
from .timer import Budget, Timer

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class HarnessContext:
    """The ``StepContext`` workloads see: autocast for bf16/fp16, a gradient scaler for fp16 training."""

    def __init__(self, device_type: str, precision: str, train: bool) -> None:
        self.device_type = device_type
        self.dtype = AUTOCAST_DTYPES.get(precision)
        self.scaler = (
            torch.amp.GradScaler(device_type) if precision == "fp16" and train else None
        )

    def autocast(self) -> AbstractContextManager[Any]:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def backward_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(optimizer)

    def end_step(self) -> None:
        """Once per training iteration, after every optimizer stepped (GradScaler's contract)."""
        if self.scaler is not None:
            self.scaler.update()


@contextlib.contextmanager
def precision_settings(precision: str) -> Iterator[dict[str, Any]]:
    """Set the TF32 switches for ``precision`` and restore the caller's afterwards.

    fp32 = PyTorch's defaults (cuDNN TF32 on, cuBLAS TF32 off); tf32 = both on. Yields what was set."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
             torch.get_float32_matmul_precision())
    tf32 = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = True
    torch.set_float32_matmul_precision("high" if tf32 else "highest")
    try:
        yield {
            "cuda_matmul_allow_tf32": tf32,
            "cudnn_allow_tf32": True,
            "float32_matmul_precision": "high" if tf32 else "highest",
            "autocast_dtype": {"bf16": "bfloat16", "fp16": "float16"}.get(precision),
        }
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[:2]
        torch.set_float32_matmul_precision(saved[2])


def synchronizer(device: DeviceInfo) -> Callable[[], None]:
    if device.kind == "cuda":
        index = int(device.id.split(":")[1])
        return lambda: torch.cuda.synchronize(index)
    if device.kind == "mps":
        return torch.mps.synchronize
    if device.kind == "xpu":
        index = int(device.id.split(":")[1])
        return lambda: torch.xpu.synchronize(index)
    return lambda: None


def peak_tracker(device: DeviceInfo) -> PeakMemory:
    if device.kind == "cuda":
        return AllocatorPeak(torch.cuda, int(device.id.split(":")[1]))
    if device.kind == "xpu":
        return AllocatorPeak(torch.xpu, int(device.id.split(":")[1]))
    if device.kind == "mps":
        return MpsDriverMemory(torch.mps)
    return CpuPeakRss()


def is_oom(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def _free(device: DeviceInfo) -> None:
    gc.collect()
    if device.kind == "cuda":
        torch.cuda.empty_cache()
    elif device.kind == "mps":
        torch.mps.empty_cache()
    elif device.kind == "xpu":
        torch.xpu.empty_cache()


@dataclass
class Built:
    """A workload instance on a device, reused across precisions of one (workload, task, device)."""

    spec: WorkloadSpec
    params: Mapping[str, Any]
    instance: WorkloadInstance
    device: DeviceInfo


def build(spec: WorkloadSpec, params: Mapping[str, Any], device: DeviceInfo, seed: int = 0) -> Built:
    torch.manual_seed(seed)
    with torch.device(device.id):
        inst = spec.build(params)
    if spec.channels_last:
        for m in inst.modules.values():
            m.to(memory_format=torch.channels_last)
    return Built(spec, params, inst, device)


def _time(built: Built, task: str, precision: str, batch_size: int, budget: Budget,
          on_step: Callable[[int, float], None] | None) -> tuple[list[float], int, int | None, str]:
    """Warm up and time one configuration. Returns (samples, warmup steps, peak bytes, memory kind)."""
    dev = torch.device(built.device.id)
    inst = built.instance
    channels_last = built.spec.channels_last
    ctx = HarnessContext(dev.type, precision, train=task == "train")
    if task == "decode":
        # The prefill that fills the KV cache runs here, before the timer: only the one-token steps are
        # timed, each against the same context_len-token cache (decode_step crops back what it appended).
        inst.train(False)
        with torch.inference_mode():
            batch = inst.make_decode_batch(batch_size, dev, ctx)

        def step() -> None:
            with torch.inference_mode():
                inst.decode_step(batch, ctx)
    elif task == "train":
        batch = inst.make_batch(batch_size, dev, channels_last)
        inst.train(True)

        def step() -> None:
            inst.train_step(batch, ctx)
            ctx.end_step()
    else:
        batch = inst.make_batch(batch_size, dev, channels_last)
        inst.train(False)

        def step() -> None:
            with torch.inference_mode():
                inst.infer_step(batch, ctx)

    tracker = peak_tracker(built.device)
    tracker.reset()
    try:
        timing = Timer(step, synchronizer(built.device)).run(budget, on_step)
        peak = tracker.peak_bytes()
    finally:
        tracker.close()
    return timing.samples_s, len(timing.warmup_s), peak, tracker.kind


def measure(
    built: Built,
    task: str,
    precision: str,
    batch_size: int,
    budget: Budget,
    overrides: Mapping[str, Any] | None = None,
    settings: Mapping[str, Any] | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> BenchResult:
    """Measure one configuration; halve the batch on out-of-memory. Never raises for a workload's failure
    (KeyboardInterrupt does propagate, so the caller can keep what was already measured)."""
    started = time.perf_counter()
    bs = batch_size
    base: dict[str, Any] = {
        "workload": built.spec.name, "task": task, "device": built.device.id, "precision": precision,
        "overrides": dict(overrides or {}), "requested_batch_size": batch_size}
    notes: list[str] = []
    while True:
        oom = False
        try:
            with precision_settings(precision) as prec:
                samples, warm, peak, kind = _time(built, task, precision, bs, budget, on_step)
            return BenchResult(
                **base, batch_size=bs, status="ok",
                reason="; ".join(notes) or None,
                step_time=StepStats(tuple(samples)), warmup_steps=warm,
                peak_mem_bytes=peak, peak_mem_kind=kind,
                settings={**(settings or {}), **prec, "params": dict(built.params),
                          "channels_last": built.spec.channels_last,
                          "grad_scaler": precision == "fp16" and task == "train"},
                wall_time_s=time.perf_counter() - started,
            )
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            if not is_oom(exc):
                msg = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
                return BenchResult(**base, batch_size=bs, status="failed", reason=msg[:500],
                                   wall_time_s=time.perf_counter() - started)
            oom = True
        if oom:
            # Outside the except block: the traceback no longer pins the step's tensors.
            _free(built.device)
            if bs == 1:
                return BenchResult(**base, batch_size=bs, status="failed",
                                   reason="out of memory at batch size 1",
                                   wall_time_s=time.perf_counter() - started)
            notes.append(f"out of memory at batch {bs}, retried at {bs // 2}")
            bs //= 2
