"""One workload on one device it does not run on: ``predict`` (a ``results.Prediction``: step time, throughput,
memory, the bound, an interval from the held-out errors, the real task's time) and ``predict_device`` (the
fastest precision that fits, at the requested batch or the largest power of two that fits: what ``advise``
ranks). Profiles come from the ``ProfileSource`` the caller hands in; nothing here traces."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from dlgpu.catalog import Catalog, GpuSpec
from dlgpu.errors import BadInput
from dlgpu.home import dlgpu_version, utc_now
from dlgpu.results import PRECISIONS, OpProfile, Prediction, ProfileSource, memory_need, usable_memory_bytes
from dlgpu.results.probe import MeasuredCeilings
from dlgpu.workloads.registry import WorkloadSpec, get_workload

from .rescale import rescale
from .roofline import Calibration, ProbedCpu, StepPrediction, architecture, precision_reason, predict_step
from .targets import prediction_device, roof_peaks


def interval(cal: Calibration, sps: float, cpu: bool = False, device: GpuSpec | None = None) -> dict[str, Any] | None:
    """A low-high range for a prediction from the held-out errors (10th-90th percentile): leave-one-device-out
    for GPUs, leave-one-workload-out on CPUs. A GPU whose architecture (``roofline.architecture``) no
    calibration row covers is *extrapolated*: its range comes from the leave-one-architecture-out errors (how
    far the model missed on architectures it had never seen), and says so."""
    arch = None if device is None or cpu else architecture(device)
    covered = cal.fit.get("calibrated_architectures")
    extrapolated = bool(arch and covered is not None and arch not in covered)
    if cpu:
        held, how = (cal.fit.get("cpu") or {}).get("leave_one_workload_out"), \
            "leave-one-workload-out errors on CPU bench results"
    elif extrapolated:
        held, how = cal.fit.get("leave_one_architecture_out"), (
            f"leave-one-architecture-out errors: extrapolated, no calibration row is from the {arch} architecture")
    else:
        held, how = cal.fit.get("leave_one_device_out"), "leave-one-device-out errors on the calibration data"
    rows = (held or {}).get("rows") or []
    # as a user's prediction is made (no benchmark suite's correction) where the calibration recorded it
    errs = sorted(r.get("user_error_pct", r["error_pct"]) / 100.0 for r in rows)
    if len(errs) < 10:
        return None
    q = statistics.quantiles(errs, n=10, method="inclusive")
    lo, hi = q[0], q[-1]  # predicted = measured x (1 + e)  =>  measured = predicted / (1 + e)
    return {"low": sps / (1.0 + hi), "high": sps / (1.0 + lo), "basis": f"10th-90th percentile of {how}"}


ROOF_OPS = 200
"""Operators kept in a prediction document for the roofline chart: the most time-consuming ones."""


def roof_ops(prof: OpProfile, pred: StepPrediction) -> list[dict[str, Any]]:
    ranked = sorted(zip(prof.ops, pred.op_seconds, pred.op_units, strict=True), key=lambda x: -x[1] * x[0].count)
    return [{"kind": op.kind, "phase": op.phase, "dtype": op.dtype, "unit": unit, "flops": op.flops,
             "bytes": op.bytes, "count": op.count, "time_s": t} for op, t, unit in ranked[:ROOF_OPS]]


def _memory_basis(prof: OpProfile) -> str:
    held = ("weights, gradients and optimizer state + activations kept for backward (traced on fake tensors)"
            if prof.task != "decode" else f"weights + the KV cache of {prof.params.get('context_len')} tokens x batch "
            f"{prof.batch_size} (traced on fake tensors)")
    return f"{held} + the largest operator output (workspace); the framework's own memory not included"


def _projection(spec: WorkloadSpec, task: str, overrides: Mapping[str, str], sps: float) -> dict[str, Any] | None:
    real = spec.task_samples(task, spec.resolve(dict(overrides)))
    return None if real is None else {"description": real[1], "samples": real[0], "time_s": real[0] / sps}


def predict(profiles: ProfileSource, catalog: Catalog, cal: Calibration, workload: str, hardware: str,
            precision: str = "fp32", task: str = "train", batch_size: int | None = None,
            overrides: Mapping[str, str] | None = None, ceilings: MeasuredCeilings | None = None) -> Prediction:
    """Predicted step time, throughput and memory of a workload on a catalog GPU or CPU, or this machine's CPU.
    ``batch_size``: None for the workload's own; else a positive integer (0 is not "the default"). ``ceilings``:
    this machine's probed ceilings, for ``local`` (``targets.prediction_device``)."""
    if batch_size is not None and batch_size <= 0:
        raise BadInput(f"{batch_size}: must be a positive integer (or leave it out for the workload's own batch)",
                       param="batch_size")
    gpu, memory_bytes, device_basis = prediction_device(hardware, catalog, ceilings)
    why = precision_reason(gpu, precision) if precision in PRECISIONS else None
    if why:
        raise BadInput(f"{precision}: {why}", param="precision")
    cpu = gpu.kind == "cpu"
    prof = profiles(workload, task, precision, batch_size, overrides, target="cpu" if cpu else "gpu")
    pred = predict_step(prof, gpu, precision, cal)
    sps = prof.batch_size / pred.step_time_s
    return Prediction(
        created_at=utc_now(), dlgpu=dlgpu_version(), workload=workload, task=task, hardware=gpu.id,
        hardware_name=gpu.name, hardware_kind="cpu" if cpu else "gpu", precision=precision,
        batch_size=prof.batch_size, overrides=dict(overrides or {}), samples_per_s=sps,
        step_time_s=pred.step_time_s, peak_mem_bytes=memory_need(prof), peak_mem_basis=_memory_basis(prof),
        memory_bytes=memory_bytes, device_basis=device_basis, bound=pred.bound,
        tensor_core_flops_share=pred.tensor_core_share, flops=prof.flops, bytes=prof.bytes, kernels=prof.kernels,
        interval=interval(cal, sps, cpu=cpu, device=gpu),
        task_projection=_projection(get_workload(workload), task, overrides or {}, sps),
        peaks_flops_per_s=roof_peaks(gpu), bandwidth_bytes_per_s=gpu.memory_bandwidth_bytes_per_s,
        price_usd=getattr(gpu, "launch_price_usd", None) or None, tdp_w=gpu.tdp_w or None,
        ops=tuple(roof_ops(prof, pred)),
        provenance=_provenance(cal, gpu))


def stack_statement(cal: Calibration) -> str:
    """The software stack a GPU prediction is for, in words: eager PyTorch at the average speed of the benchmark
    suites (and versions) the calibration fitted a factor for (``roofline.scale_terms``), with their range."""

    stacks = {k.split(":", 1)[1] for k in cal.values if k.startswith("stack:") and k != "stack:dlgpu-bench"}
    versioned = {s.split("@", 1)[0] for s in stacks if "@" in s}
    factors = {s: cal.scale("pytorch", s) for s in stacks if s not in versioned}
    if not factors:
        return "for eager PyTorch"
    lo, hi = min(factors, key=factors.__getitem__), max(factors, key=factors.__getitem__)
    return (f"for eager PyTorch at the average speed of the {len(factors)} calibrated software stacks (factor 1; "
            f"fitted from {factors[lo]:.2f}x, {lo}, to {factors[hi]:.2f}x, {hi})")


def _provenance(cal: Calibration, gpu: GpuSpec) -> str:
    if gpu.kind != "cpu":
        return ("predicted: per-operator roofline with efficiencies fitted to published measurements, "
                + stack_statement(cal))
    text = ("predicted: per-operator roofline with CPU efficiencies fitted to what `dlgpu bench` measured on CPUs "
            "(see `dlgpu calibrate`)")
    if isinstance(gpu, ProbedCpu) and gpu.measured is not None:
        text += f"; {gpu.measured.bandwidth_basis} (how it is applied: the device basis)"
    elif not gpu.memory_bandwidth_bytes_per_s:
        text += ("; memory bandwidth: none for this CPU (`dlgpu probe` measures this machine's): memory-bound "
                 "operators are timed by compute alone")
    elif "cpu:mem" in (cal.fit.get("unfitted_terms") or []):
        text += ("; its memory-bound operators use an assumed 50% of the catalog bandwidth: no CPU measured for the "
                 "calibration has a bandwidth figure, so that efficiency is not fitted")
    return text


@dataclass(frozen=True)
class DevicePrediction:
    precision: str
    batch: int
    sps: float
    step_s: float
    low: float | None
    high: float | None
    basis: str
    bound: dict[str, float]
    need_bytes: int
    fits: bool | None
    largest_batch: int | None
    largest_basis: str
    fp32_sps: float | None
    parameters: int
    usable_bytes: int | None = None  # the memory the fit is judged against (a GPU's less the runtime's reserve)


def usable_memory(device: GpuSpec, memory_bytes: int | None) -> int | None:
    """What a step may use of a device's memory: a GPU's memory less the runtime's reserve
    (``results.USABLE_MEMORY_FRACTION``, the share ``dlgpu bench`` plans with); a CPU's memory whole."""
    if memory_bytes is None or device.kind == "cpu":
        return memory_bytes
    return usable_memory_bytes(memory_bytes)


def _largest_below(prof: OpProfile, usable: int, batch: int) -> int:
    """The largest batch under ``batch`` (the traced one, which does not fit) whose profile rescaled to it needs
    at most ``usable`` bytes; 0 if not even batch 1 does. The need is monotone in the batch: bisection."""
    lo, hi = 0, batch - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if memory_need(rescale(prof, mid)) <= usable:
            lo = mid
        else:
            hi = mid - 1
    return lo


MIXED_FIRST = ("bf16", "fp16", "tf32", "fp32")
"""The order precisions are tried in: once a mixed precision fits at the requested batch, fp32 and TF32 are
not retraced at a smaller batch (they would be slower still)."""


def predict_device(profiles: ProfileSource, spec: WorkloadSpec, task: str, device: GpuSpec, memory_bytes: int | None,
                   batch: int, precisions: Sequence[str], overrides: Mapping[str, str],
                   cal: Calibration) -> DevicePrediction | str:
    """The fastest precision that fits on a catalog device (GPU or CPU), at ``batch`` or else at the largest
    power-of-two batch that fits; a string says why none does.

    Memory at another batch is affine in the batch: the state (weights, gradients, optimizer state) plus
    the rest of the traced need (activations, KV cache, the largest operator output) scaled by the batch. A GPU's
    memory counts less the runtime's reserve (``usable_memory``).
    One trace per precision and batch, shared by every device (the profile source caches them): TF32 reuses the
    fp32 trace (it changes the unit, not the operators)."""
    target = "cpu" if device.kind == "cpu" else "gpu"
    if not device.fp32_flops_per_s or (device.kind != "cpu" and not device.memory_bandwidth_bytes_per_s):
        return "the catalog has no FP32 peak or memory bandwidth for it: cannot predict it"
    best: DevicePrediction | None = None
    fp32 = None
    usable = usable_memory(device, memory_bytes)
    why = "no precision this device supports was asked for"
    for prec in sorted(precisions, key=MIXED_FIRST.index):
        if precision_reason(device, prec):
            continue
        trace_prec = "fp32" if prec == "tf32" else prec
        b, largest, how = batch, None, "no memory size for this device"
        prof = profiles(spec.name, task, trace_prec, b, overrides, target=target)
        need = memory_need(prof)
        if usable is not None:
            state = prof.state_bytes or 0
            per_sample = max(need - state, 1) / b
            largest = int((usable - state) // per_sample)
            what = "memory" if usable == memory_bytes else "usable memory"
            how = (f"({what} {usable / 2**30:.2f} GiB - state {state / 2**30:.2f} GiB) / {per_sample / 2**20:.1f} "
                   f"MiB per sample, traced at batch {b}: memory is affine in the batch")
        if usable is not None and largest is not None and need > usable:
            largest = _largest_below(prof, usable, b)
            how += ("; below the traced batch, the largest whose rescaled profile (predict.rescale) fits: "
                    "batch-independent memory such as an optimizer's workspace is not per sample; the step is "
                    "predicted at the largest power of two that fits")
            if largest < 1 or (best is not None and prec in ("tf32", "fp32")):
                why = (f"does not fit: {need / 2**30:.1f} GiB at batch {b}, of {usable / 2**30:.1f} GiB usable" +
                       (f", and not even batch 1 fits (the state alone is {state / 2**30:.1f} GiB)"
                        if largest < 1 else ""))
                continue
            b = 1 << (min(largest, batch).bit_length() - 1)
            prof = rescale(prof, b)
            need = memory_need(prof)
            how += f"; its profile is the traced one rescaled to batch {b} (predict.rescale)"
        pred = predict_step(prof, device, prec, cal)
        sps = b / pred.step_time_s
        iv = interval(cal, sps, cpu=device.kind == "cpu", device=device) or {}
        if prec == "fp32" and b == batch:
            fp32 = sps
        cand = DevicePrediction(prec, b, sps, pred.step_time_s, iv.get("low"), iv.get("high"),
                                 iv.get("basis", "no interval"), pred.bound, need,
                                 None if usable is None else need <= usable, largest, how, None,
                                 prof.parameters, usable)
        if best is None or cand.sps > best.sps:
            best = cand
    if best is None:
        return why
    return replace(best, fp32_sps=fp32)
