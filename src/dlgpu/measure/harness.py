"""Run one workload on one device at one precision for one task, and keep what was measured.

The hot path (``_time``) is: build, warm up, then ``Timer`` with device synchronization around each step.
Precision lives here, not in workloads: ``HarnessContext`` applies autocast and the fp16 gradient scaler,
and ``precision_settings`` sets (and afterwards restores) PyTorch's TF32 switches. For LLM workloads
(``devices.precision.WEIGHT_FORMAT_FAMILIES``) precision is the format the weights are stored in instead: the
instance is rebuilt in that format (``weight_format``: bf16/fp16/fp32 weights and KV cache, torchao int8/int4
weight-only) and runs without autocast.

With a ``TelemetrySetup``, a telemetry window (``measure.telemetry``) opens after the warm-up and closes after
the last timed step; where the timed steps are shorter than the sensor's ``min_window_s`` the Timer keeps
stepping until they are not. The window's raw samples and the figures derived from them (power, energy per
step and per sample, net of the idle baseline the caller measured; samples/s per watt; utilization;
throttling) go into the ``BenchResult``, labelled with their source and basis."""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from typing import Any

import torch

from dlgpu.devices.precision import WEIGHT_FORMAT_FAMILIES
from dlgpu.results import BenchResult, DeviceInfo, StepStats
from dlgpu.results.vocab import FINETUNE_TASK
from dlgpu.workloads.base import WorkloadInstance
from dlgpu.workloads.registry import WorkloadSpec

from .contention import MAX_REMEASURE, REMEASURE_PAUSE_S, Contention, ContentionProbe
from .finetune import finetune_settings, samples_per_step
from .memory import AllocatorPeak, CpuPeakRss, MpsDriverMemory, PeakMemory
from .telemetry import DEFAULT_PERIOD_S, Telemetry, TelemetryBackend, TelemetryResult, telemetry_backend
from .timer import Budget, Timer

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class HarnessContext:
    """The ``StepContext`` workloads see: autocast for bf16/fp16, a gradient scaler for fp16 training."""

    def __init__(self, device_type: str, precision: str, train: bool, autocast: bool = True) -> None:
        self.device_type = device_type
        self.dtype = AUTOCAST_DTYPES.get(precision) if autocast else None
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
def precision_settings(precision: str, autocast: bool = True) -> Iterator[dict[str, Any]]:
    """Set the TF32 switches for ``precision`` and restore the caller's afterwards.

    fp32 = PyTorch's defaults (cuDNN TF32 on, cuBLAS TF32 off); tf32 = both on. Yields what was set
    (``autocast=False``: the weights are stored in the precision's format, no autocast)."""
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
            "autocast_dtype": {"bf16": "bfloat16", "fp16": "float16"}.get(precision) if autocast else None,
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


MAX_WINDOW_S = 30.0
"""The longest a run is extended to reach a sensor's minimum window; a sensor needing more (none known does)
leaves the window flagged ``too_short`` instead."""


@dataclass(frozen=True)
class TelemetrySetup:
    """How ``measure`` samples power, energy and utilization beside the timed steps.

    ``backend`` is an open backend the caller owns and closes (``api.bench`` opens one per device per run); None
    = ``telemetry_backend(device, tdp_w=, tdp_source=)``, built per ``measure`` call and closed by it (what the
    isolated child process does: a backend holds library handles that do not cross processes, the rest of
    this does). ``idle`` is the idle baseline measured with the same sensor; energy figures are net of it."""

    period_s: float = DEFAULT_PERIOD_S
    tdp_w: float | None = None
    tdp_source: str | None = None
    idle: TelemetryResult | None = None
    backend: TelemetryBackend | None = None

    def portable(self) -> TelemetrySetup:
        """This setup without the open backend, to send to another process."""
        return TelemetrySetup(self.period_s, self.tdp_w, self.tdp_source, self.idle)

    def open(self, device: DeviceInfo) -> tuple[TelemetryBackend, bool]:
        """(backend, whether the caller of ``open`` must close it)."""
        if self.backend is not None:
            return self.backend, False
        return telemetry_backend(device, tdp_w=self.tdp_w, tdp_source=self.tdp_source), True


NET_MIN_SHARE = 0.1
"""Energy figures are given net of the idle baseline only where the run drew at least this share more than
idle (net energy >= this share of the gross): a smaller difference is within the baseline's own noise (or the
"idle" window was busy with other work), and per-sample figures from it would be meaningless."""


def telemetry_fields(res: TelemetryResult, steps: int, batch_size: int, samples_per_s: float | None,
                     extended_steps: int = 0) -> dict[str, Any]:
    """The ``BenchResult`` fields of one telemetry window over ``steps`` timed steps of ``batch_size`` samples.

    ``power_w`` and ``peak_power_w`` are what the device drew (idle included). Energy per step and per sample
    and samples/s per watt are derived from that power and the reported throughput, so that they agree with
    each other: ``energy_j_per_sample = power_w / samples_per_s`` (gross, as MLPerf Power and Lambda's tables
    count it). ``net_energy_j_per_step``/``_per_sample`` subtract the idle baseline, where one was measured and
    the run drew more than it by at least ``NET_MIN_SHARE`` (what the work itself cost); else they are None and
    ``energy_basis`` says why."""
    power, idle, sps = res.avg_power_w, res.idle_power_w, samples_per_s
    net_power = res.net_avg_power_w
    net = (power is not None and power > 0 and net_power is not None and idle is not None
           and net_power >= NET_MIN_SHARE * power)
    if idle is None:
        how = f"no net figures (no idle baseline: {res.idle_basis or 'none measured'})"
    elif net:
        how = f"net_energy_* subtract the idle baseline, {idle:.4g} W ({res.idle_basis})"
    else:
        how = (f"no net figures: the run's average power ({power or 0:.4g} W) exceeded the idle baseline "
               f"({idle:.4g} W, {res.idle_basis}) by less than {NET_MIN_SHARE:.0%}, within the baseline's noise "
               f"(or the idle window was busy with other work on the machine)")
    have = power is not None and power > 0 and sps is not None and sps > 0
    per_sample = power / sps if have else None  # type: ignore[operator]
    net_per_sample = net_power / sps if have and net else None  # type: ignore[operator]
    too_short = (f"; window {res.duration_s:.3g} s is shorter than the {res.min_window_s:.3g} s this sensor needs "
                 f"(figures are coarse)" if res.too_short else "")
    basis = (f"{res.basis}; energy per step, per sample and samples/s/W are from the power drawn (gross: "
             f"power_w / samples_per_s); {how}{too_short}")
    if res.source == "unavailable":
        basis = res.basis
    return {
        "power_w": power, "peak_power_w": res.peak_power_w, "idle_power_w": idle,
        "energy_j_per_step": None if per_sample is None else per_sample * batch_size,
        "energy_j_per_sample": per_sample,
        "samples_per_s_per_w": sps / power if have else None,  # type: ignore[operator]
        "net_energy_j_per_step": None if net_per_sample is None else net_per_sample * batch_size,
        "net_energy_j_per_sample": net_per_sample,
        "utilization_pct": res.mean_utilization_pct,
        "energy_source": res.source, "energy_basis": basis, "throttled": res.throttled,
        "telemetry": {**res.to_dict(), "steps": steps, "samples_processed": steps * batch_size,
                      "extended_steps": extended_steps, "net_of_idle": net, "energy_j_used": res.energy_j},
    }


def idle_baseline(backend: TelemetryBackend, device: DeviceInfo, period_s: float = DEFAULT_PERIOD_S,
                  duration_s: float = 1.0) -> TelemetryResult:
    """Sample ``device`` doing nothing for ``duration_s`` (at least the sensor's minimum window, at most
    ``MAX_WINDOW_S``): the baseline later windows' net energy subtracts. Call it before the device runs work."""
    tel = Telemetry(backend, period_s=period_s, device=device.id)
    return tel.measure_idle(max(duration_s, min(tel.min_window_s, MAX_WINDOW_S)))


@dataclass
class Built:
    """A workload instance on a device, reused across precisions of one (workload, task, device)."""

    spec: WorkloadSpec
    params: Mapping[str, Any]
    instance: WorkloadInstance
    device: DeviceInfo
    seed: int = 0


def build(spec: WorkloadSpec, params: Mapping[str, Any], device: DeviceInfo, seed: int = 0,
          finetune: Mapping[str, Any] | None = None) -> Built:
    """``spec`` built on ``device`` from ``seed``; with ``finetune`` (a job, ``FinetuneConfig.to_dict()``) its model
    with the job's method applied (``workloads.models.finetune``), for task finetune."""
    torch.manual_seed(seed)
    if finetune is not None:
        from dlgpu.workloads.models.finetune import FinetuneWorkload

        from .finetune import rss_bytes

        # the libraries the job needs are loaded first: their code is the process's, not the job's memory
        if finetune.get("method") in ("lora", "qlora") or finetune.get("optimizer") == "adamw8bit":
            import contextlib

            from dlgpu.workloads.models import finetune as ft_models

            with contextlib.suppress(Exception):  # unavailable: the build says why
                ft_models._import_peft()
        before = rss_bytes()
        with torch.device(device.id):
            inst: WorkloadInstance = FinetuneWorkload(spec, params, finetune)
        inst.rss_before_build = before  # type: ignore[attr-defined]
        return Built(spec, params, inst, device, seed)
    with torch.device(device.id):
        inst = spec.build(params)
    if spec.channels_last:
        for m in inst.modules.values():
            m.to(memory_format=torch.channels_last)
    return Built(spec, params, inst, device, seed)


def stores_weights(spec: WorkloadSpec) -> bool:
    """Whether ``spec``'s precision is the format its weights are stored in (LLM workloads), not autocast."""
    return spec.family in WEIGHT_FORMAT_FAMILIES


def weight_format(built: Built, precision: str) -> dict[str, Any] | None:
    """For an LLM workload, its instance with the weights in ``precision``'s format (rebuilt from the same seed
    where they are in another, the previous model dropped first) and what the weights are: format, dtype, bytes as
    stored, quantized layers. None for other workloads (their precision is autocast)."""
    if not stores_weights(built.spec):
        return None
    convert = getattr(built.instance, "set_weight_format", None)
    if convert is None:
        raise TypeError(f"{built.spec.name}: an LLM workload instance must have set_weight_format")
    info: dict[str, Any] = convert(precision, torch.device(built.device.id), built.seed)
    return info


@dataclass
class _Timed:
    samples_s: list[float]
    warmup_steps: int
    peak_bytes: int | None
    memory_kind: str
    telemetry: TelemetryResult | None = None
    extended_steps: int = 0
    stop_reason: str | None = None
    contention: Contention | None = None


def make_step(built: Built, task: str, precision: str, batch_size: int) -> Callable[[], None]:
    """The step ``measure`` times, ready to call: one training iteration, one inference batch, or one decoded
    token (after the prefill that fills the KV cache, which runs here). Call it inside ``precision_settings``.
    The benchmarks time this same callable with PyTorch's own timer. Task finetune: ``measure.finetune``."""
    if task == FINETUNE_TASK:
        from .finetune import finetune_step

        return finetune_step(built, precision, batch_size)
    dev = torch.device(built.device.id)
    stored = weight_format(built, precision) is not None
    inst = built.instance
    channels_last = built.spec.channels_last
    ctx = HarnessContext(dev.type, precision, train=task == "train", autocast=not stored)
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
    return step


def _time(built: Built, task: str, precision: str, batch_size: int, budget: Budget,
          on_step: Callable[[int, float], None] | None,
          backend: TelemetryBackend | None = None, setup: TelemetrySetup | None = None) -> _Timed:
    """Warm up and time one configuration, with a telemetry window around the timed steps if ``backend``."""
    step = make_step(built, task, precision, batch_size)
    tel = None
    if backend is not None:
        assert setup is not None
        tel = Telemetry(backend, period_s=setup.period_s, idle=setup.idle, device=built.device.id)
    tracker = peak_tracker(built.device)
    tracker.reset()
    probe = ContentionProbe()

    def timed_start() -> None:
        probe.start()
        if tel is not None:
            tel.start()

    try:
        timing = Timer(step, synchronizer(built.device)).run(
            budget, on_step, min_time_s=0.0 if tel is None else min(tel.min_window_s, MAX_WINDOW_S),
            on_timed_start=timed_start)
        contention = probe.stop()
        window = None if tel is None else tel.stop()
        peak = tracker.peak_bytes()
    finally:
        if tel is not None and tel.running:
            tel.stop()
        tracker.close()
    return _Timed(timing.samples_s, len(timing.warmup_s), peak, tracker.kind, window, timing.extended_steps,
                  timing.stop_reason, contention)


def measure(
    built: Built,
    task: str,
    precision: str,
    batch_size: int,
    budget: Budget,
    overrides: Mapping[str, Any] | None = None,
    settings: Mapping[str, Any] | None = None,
    on_step: Callable[[int, float], None] | None = None,
    telemetry: TelemetrySetup | None = None,
    remeasure: int = MAX_REMEASURE,
) -> BenchResult:
    """Measure one configuration; halve the batch on out-of-memory. Never raises for a workload's failure
    (KeyboardInterrupt does propagate, so the caller can keep what was already measured).

    ``telemetry``: sample power, energy and utilization beside the timed steps (None: no telemetry fields).

    A result measured while other processes took more than their share of the CPUs (``measure.contention``) is
    measured again, at most ``remeasure`` times after a short pause. On a CPU the next attempt runs on the cores
    the others left free (threads = ours - the CPUs they used, at least 1): OpenMP's spinning threads, when one
    of them shares a core with another process, slow a step 3-12x (docs/MEASUREMENT-NOISE.md), while on the free
    cores the slowdown is about the share of the machine taken. The kept attempt is an uncontended one if any,
    else the fastest (the least disturbed); ``contention["attempts"]`` lists every attempt's figures."""
    result = _measure_once(built, task, precision, batch_size, budget, overrides, settings, on_step, telemetry)
    attempts = [(result, torch.get_num_threads())]
    threads = torch.get_num_threads()
    try:
        while result.contended and len(attempts) <= remeasure:
            time.sleep(REMEASURE_PAUSE_S)
            if built.device.kind == "cpu":
                c = result.contention or {}
                others_cpus = float(c.get("others_cpu_s", 0.0)) / max(float(c.get("window_s", 1.0)), 1e-9)
                torch.set_num_threads(max(1, threads - max(1, round(others_cpus))))
            again = _measure_once(built, task, precision, batch_size, budget, overrides, settings, on_step,
                                  telemetry)
            attempts.append((again, torch.get_num_threads()))
            if again.status != "ok":
                break
            result = again
    finally:
        torch.set_num_threads(threads)
    return _keep_least_disturbed(attempts) if len(attempts) > 1 else result


def _share(r: BenchResult) -> float:
    return float((r.contention or {}).get("others_share", 0.0))


def _keep_least_disturbed(attempts: list[tuple[BenchResult, int]]) -> BenchResult:
    ok = [(r, n) for r, n in attempts if r.status == "ok"]
    calm = [(r, n) for r, n in ok if not r.contended]
    kept, kept_threads = max(calm or ok, key=lambda rn: rn[0].samples_per_s or 0.0) if ok else attempts[-1]
    listing = [{"others_share": _share(r), "contended": r.contended, "samples_per_s": r.samples_per_s,
                "threads": n, "kept": r is kept} for r, n in attempts]
    settings = {**kept.settings, "threads": kept_threads}
    return replace(kept, settings=settings, contention={**(kept.contention or {}), "attempts": listing})


def _measure_once(built: Built, task: str, precision: str, batch_size: int, budget: Budget,
                  overrides: Mapping[str, Any] | None, settings: Mapping[str, Any] | None,
                  on_step: Callable[[int, float], None] | None, telemetry: TelemetrySetup | None) -> BenchResult:
    if telemetry is None:
        return _measure(built, task, precision, batch_size, budget, overrides, settings, on_step, None, None)
    backend, owned = telemetry.open(built.device)
    try:
        return _measure(built, task, precision, batch_size, budget, overrides, settings, on_step, backend, telemetry)
    finally:
        if owned:
            backend.close()


def _measure(
    built: Built,
    task: str,
    precision: str,
    batch_size: int,
    budget: Budget,
    overrides: Mapping[str, Any] | None,
    settings: Mapping[str, Any] | None,
    on_step: Callable[[int, float], None] | None,
    backend: TelemetryBackend | None,
    setup: TelemetrySetup | None,
) -> BenchResult:
    started = time.perf_counter()
    bs = batch_size
    fine = task == FINETUNE_TASK  # a step is grad_accum micro-batches of bs: samples per step = bs x grad_accum
    per_step = (lambda micro: samples_per_step(built, task, micro)) if fine else (lambda micro: micro)
    base: dict[str, Any] = {
        "workload": built.spec.name, "task": task, "device": built.device.id, "precision": precision,
        "overrides": dict(overrides or {}), "requested_batch_size": per_step(batch_size)}
    notes: list[str] = []
    while True:
        oom = False
        try:
            with precision_settings(precision, autocast=not (fine or stores_weights(built.spec))) as prec:
                timed = _time(built, task, precision, bs, budget, on_step, backend, setup)
            # what the timed steps ran on (already in that format)
            weights = None if fine else weight_format(built, precision)
            stats = StepStats(tuple(timed.samples_s))
            n = per_step(bs)
            tel: dict[str, Any] = {}
            if timed.telemetry is not None:
                tel = telemetry_fields(timed.telemetry, stats.n, n, n / stats.median if stats.median > 0 else None,
                                       timed.extended_steps)
            tuned = finetune_settings(built, precision, bs, stats.median) if fine else {}
            c = timed.contention
            return BenchResult(
                **base, batch_size=n, status="ok",
                reason="; ".join(notes) or None,
                step_time=stats, warmup_steps=timed.warmup_steps,
                peak_mem_bytes=timed.peak_bytes, peak_mem_kind=timed.memory_kind,
                settings={**(settings or {}), **prec, "params": dict(built.params),
                          "channels_last": built.spec.channels_last,
                          "grad_scaler": precision == "fp16" and task == "train",
                          **({} if weights is None else {"weights": weights}), **tuned},
                wall_time_s=time.perf_counter() - started,
                stop_reason=timed.stop_reason,
                contended=None if c is None else c.contended,
                contention=None if c is None else c.to_dict(),
                **tel,
            )
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            if not is_oom(exc):
                msg = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
                return BenchResult(**base, batch_size=per_step(bs), status="failed", reason=msg[:500],
                                   wall_time_s=time.perf_counter() - started)
            oom = True
        if oom:
            # Outside the except block: the traceback no longer pins the step's tensors.
            _free(built.device)
            if bs == 1:
                return BenchResult(**base, batch_size=per_step(bs), status="failed",
                                   reason="out of memory at batch size 1",
                                   wall_time_s=time.perf_counter() - started)
            notes.append(f"out of memory at batch {bs}, retried at {bs // 2}")
            bs //= 2
