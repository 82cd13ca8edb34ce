"""A roofline per operator, with efficiencies and a per-kernel cost fitted to measurements.

For each operator of a step (from ``analyze``), time = max(FLOPs / (unit peak x compute efficiency),
bytes / (memory bandwidth x memory efficiency)) + a fixed per-kernel cost; the step is the sum. The unit
follows what PyTorch does on the device: fp16/bf16 matmuls and convolutions on tensor cores where the
catalog gives a tensor peak; fp32 convolutions on TF32 tensor cores from compute capability 8.0 (cuDNN's
default, what ``fp32`` means), fp32 matmuls on TF32 only at ``tf32``; everything else on the vector
units. Efficiencies depend on the operator kind, the unit and the architecture generation (the
``Calibration``), never one number per GPU. No torch here: profiles are plain data."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from dlgpu.catalog import GpuSpec
from dlgpu.errors import BadInput
from dlgpu.results import OpProfile, OpRecord

DENSE = ("matmul", "conv", "attention")


def generation(gpu: GpuSpec) -> str:
    """A coarse architecture generation: efficiencies are fitted per generation, not per GPU."""
    cc = gpu.cuda_cc
    if cc is not None:
        if cc < (7, 0):
            return "pre-volta"
        if cc < (8, 0):
            return "volta-turing"
        if cc < (9, 0):
            return "ampere-ada"
        return "hopper+"
    return gpu.vendor.lower()


def precision_reason(gpu: GpuSpec, precision: str) -> str | None:
    """None when ``gpu`` can run ``precision`` as dlgpu means it; else a one-line reason."""
    cc = gpu.cuda_cc
    if precision == "tf32" and not gpu.tf32_flops_per_s:
        return f"{gpu.id} has no TF32 tensor cores (TF32 needs NVIDIA compute capability 8.0 or newer)"
    if precision == "bf16" and cc is not None and cc < (8, 0):
        return f"{gpu.id} (compute capability {gpu.compute_capability}) has no bf16 support; bf16 needs 8.0+"
    if precision == "bf16" and cc is None and not gpu.bf16_flops_per_s:
        return f"{gpu.id} has no bf16 figure in the catalog"
    return None


@dataclass(frozen=True)
class Calibration:
    """Fitted parameters (natural-log space for positivity) and the error they were fitted with."""

    values: dict[str, float]
    fit: dict[str, Any] = field(default_factory=dict)

    def efficiency(self, unit: str, kind: str, gen: str) -> float:
        """Achieved share of a unit's peak on an operator kind in a generation: exp(base + generation).

        Not capped at 1: profiles count FLOPs and bytes of eager, unfused operators, and fused kernels
        (cuDNN's conv+bias+ReLU, Adam's multi-tensor apply) do less than that."""
        return math.exp(self.values.get(f"{unit}:{kind}", math.log(0.5)) + self.values.get(f"gen:{gen}", 0.0))

    def seconds_per_flop(self, unit: str, peak: float, tdp_w: float | None) -> float:
        """1 / peak, plus a power limit: sustained FLOP/s cannot exceed what the board's power budget feeds
        (fitted FLOP per joule per unit), so a 70 W T4 or a 250 W PCIe A100 reaches less of its
        datasheet peak than a 400 W SXM A100. Harmonic, so it bites only where the budget is tight."""
        j = self.values.get(f"power:{unit}")
        if j is None or not tdp_w:
            return 1.0 / peak
        return 1.0 / peak + 1.0 / (tdp_w * math.exp(j))

    def memory_efficiency(self, gen: str) -> float:
        return math.exp(self.values.get("mem", math.log(0.5)) + self.values.get("mem:common", 0.0))

    def positive(self, name: str, default: float) -> float:
        v = self.values.get(name)
        return default if v is None else math.exp(v)


@dataclass(frozen=True)
class StepPrediction:
    step_time_s: float
    compute_s: float  # time of operators bound by compute
    memory_s: float  # time of operators bound by memory traffic
    overhead_s: float  # fixed per-kernel GPU cost, plus host-side launch time where that bounds the step
    tensor_core_share: float  # share of FLOPs on tensor cores

    @property
    def bound(self) -> dict[str, float]:
        total = self.step_time_s or 1.0
        return {"compute": self.compute_s / total, "memory": self.memory_s / total,
                "overhead": self.overhead_s / total}


def op_group(op: OpRecord) -> str:
    """Efficiency groups: convolutions, matrix products (attention's are matmuls too), and the rest."""
    if op.kind == "conv":
        return "conv"
    return "matmul" if op.kind in DENSE else "other"


def unit_peak(op: OpRecord, gpu: GpuSpec, precision: str) -> tuple[str, float | None]:
    if op.kind in DENSE:
        if op.dtype in ("float16", "bfloat16"):
            # autocast fp16 accumulates in fp32: GeForce cards run that at half their fp16-accumulate rate.
            peak = ((gpu.fp16_fp32acc_flops_per_s or gpu.fp16_flops_per_s) if op.dtype == "float16"
                    else gpu.bf16_flops_per_s)
            if peak:
                return "tensor", peak
        ampere = gpu.cuda_cc is not None and gpu.cuda_cc >= (8, 0)
        if op.dtype == "float32" and gpu.tf32_flops_per_s and (precision == "tf32" or (ampere and op.kind == "conv")):
            return "tensor", gpu.tf32_flops_per_s
    return "vector", gpu.fp32_flops_per_s


def predict_step(profile: OpProfile, gpu: GpuSpec, precision: str, cal: Calibration,
                 framework: str = "pytorch") -> StepPrediction:
    """Step time of ``profile`` on ``gpu``. Raises BadInput where the catalog lacks the figures needed."""
    why = precision_reason(gpu, precision)
    if why:
        raise BadInput(why)
    bw = gpu.memory_bandwidth_bytes_per_s
    if not bw or not gpu.fp32_flops_per_s:
        raise BadInput(f"{gpu.id}: the catalog has no memory bandwidth or FP32 peak for it; cannot predict")
    gen = generation(gpu)
    e_mem = cal.memory_efficiency(gen)
    per_kernel = cal.positive("kernel_s", 3e-6)
    launch = cal.positive("launch_s", 1e-5)
    compute = memory = tensor_flops = 0.0
    for op in profile.ops:
        unit, peak = unit_peak(op, gpu, precision)
        e = cal.efficiency(unit, op_group(op), gen)
        t_c = op.flops * cal.seconds_per_flop(unit, peak, gpu.tdp_w) / e if peak else 0.0
        t_m = op.bytes / (bw * e_mem)
        if t_c >= t_m:
            compute += t_c * op.count
        else:
            memory += t_m * op.count
        if unit == "tensor":
            tensor_flops += op.flops * op.count
    overhead = per_kernel * profile.kernels
    # Eager PyTorch launches kernels from one host thread: when kernels are tiny (batch 1), the host's
    # dispatch time per operator bounds the step instead of the device.
    host = launch * profile.kernels
    if host > compute + memory + overhead:
        overhead = host - compute - memory
    scale = cal.positive(f"framework:{framework}", 1.0) if framework != "pytorch" else 1.0
    total = (compute + memory + overhead) * scale
    flops = profile.flops or 1.0
    return StepPrediction(total, compute * scale, memory * scale, overhead * scale, tensor_flops / flops)
