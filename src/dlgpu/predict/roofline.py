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

from dlgpu.catalog import CpuSpec, GpuSpec, LocalCpu
from dlgpu.catalog.local import estimated_bf16_peak
from dlgpu.devices.precision import PrecisionFacts, precision_unsupported
from dlgpu.errors import BadInput
from dlgpu.results import OpProfile, OpRecord
from dlgpu.results.probe import MeasuredCeilings

DENSE = ("matmul", "conv", "attention")


@dataclass(frozen=True)
class ProbedCpu(GpuSpec):
    """This machine's CPU with the ceilings a stored ``dlgpu probe`` measured on it (``measured``): its memory
    bandwidth is the probed one, and ``predict_step`` applies it by ``PROBED_MEMORY_RULE``. The compute peaks stay
    those the calibration's efficiencies were fitted against (the catalog's, or the estimate); the measured GEMM
    ceilings are reported beside them, not used in their place."""

    measured: MeasuredCeilings | None = None


PROBED_MEMORY_KINDS = (*DENSE, "copy")
"""The operators a probed bandwidth bounds: matrix products, convolutions and attention (weights and the KV cache
streamed in decode) and copies (dtype casts, layout changes: pure data movement, whose FLOP-based calibrated time
says nothing about large tensors)."""

PROBED_MEMORY_RULE = (
    "the probed bandwidth bounds matrix products, convolutions, attention and copies (weights, KV cache and casts "
    "streamed in decode) at 100% of the probed figure, which is already an achieved rate; the other operators keep "
    "their calibrated efficiency, fitted on CPUs with no bandwidth, so their memory time is inside it (a memory term "
    "for them too would count it twice: README, `dlgpu probe`); compute peaks stay the ones the efficiencies were "
    "fitted against")
"""How ``predict_step`` combines a probed bandwidth with the calibrated CPU efficiencies (the evidence: the shipped
CPU bench rows of ``predict/data/bench`` and a measured decode, predicted with and without it; README,
``dlgpu probe``)."""


def cpu_as_device(cpu: CpuSpec | LocalCpu, ceilings: MeasuredCeilings | None = None) -> GpuSpec:
    """A CPU in the roofline's terms (kind ``cpu``): its FP32 vector peak, its bf16 matrix peak where the
    catalog gives one (AMX), its memory bandwidth where known. A ``LocalCpu`` carries an estimated peak
    (and, where its flags show AMX, an estimated bf16 one: ``catalog.estimated_bf16_peak``, the peak MFU uses)
    and no bandwidth: its operators are then timed by compute alone (see ``predict_step``).

    ``ceilings``: this machine's probed ceilings (``dlgpu probe``), for this machine's CPU only: a ``ProbedCpu``
    whose memory bandwidth is the probed one (where the probe measured one), applied by ``PROBED_MEMORY_RULE``."""
    if isinstance(cpu, LocalCpu):
        amx = estimated_bf16_peak(cpu)
        dev = GpuSpec(id="local", name=cpu.model_name, vendor="cpu", kind="cpu", arch=cpu.simd,
                      compute_capability=None, release_year=None, memory_bytes=None,
                      memory_bandwidth_bytes_per_s=None, fp32_flops_per_s=cpu.fp32_flops_per_s,
                      tf32_flops_per_s=None, fp16_flops_per_s=None, fp16_fp32acc_flops_per_s=None,
                      bf16_flops_per_s=None if amx is None else amx[0], int8_ops_per_s=None, sm_count=cpu.cores,
                      boost_clock_hz=cpu.clock_hz,
                      l2_cache_bytes=None, tdp_w=None, interconnect=None, interconnect_bytes_per_s=None,
                      launch_price_usd=None, source=cpu.basis)
    else:
        dev = GpuSpec(id=cpu.id, name=cpu.name, vendor="cpu", kind="cpu", arch=cpu.arch, compute_capability=None,
                      release_year=cpu.release_year, memory_bytes=None,
                      memory_bandwidth_bytes_per_s=cpu.memory_bandwidth_bytes_per_s,
                      fp32_flops_per_s=cpu.fp32_flops_per_s, tf32_flops_per_s=None, fp16_flops_per_s=None,
                      fp16_fp32acc_flops_per_s=None, bf16_flops_per_s=cpu.bf16_flops_per_s, int8_ops_per_s=None,
                      sm_count=cpu.cores, boost_clock_hz=cpu.all_core_turbo_hz or cpu.base_clock_hz,
                      l2_cache_bytes=None, tdp_w=None, interconnect=None, interconnect_bytes_per_s=None,
                      launch_price_usd=cpu.launch_price_usd, source=cpu.source)
    if ceilings is None or not ceilings.memory_bandwidth_bytes_per_s:
        return dev
    fields = {k: getattr(dev, k) for k in GpuSpec.__dataclass_fields__}
    fields["memory_bandwidth_bytes_per_s"] = ceilings.memory_bandwidth_bytes_per_s
    return ProbedCpu(**fields, measured=ceilings)


def architecture(gpu: GpuSpec) -> str:
    """The architecture a device's calibration would come from, finer than ``generation``: NVIDIA by compute
    capability major (sm8 holds Ampere and Ada, sm9 Hopper, sm10/sm12 Blackwell), AMD by its gfx target, others
    by vendor and architecture name. A device whose architecture no calibration row has is *extrapolated*."""
    if gpu.kind == "cpu":
        return "cpu"
    cc = gpu.cuda_cc
    if cc is not None:
        return f"nvidia-sm{cc[0]}"
    target = (gpu.compute_capability or "").strip().lower()
    return f"{gpu.vendor.lower()}-{target or (gpu.arch or gpu.name).lower()}"


def generation(gpu: GpuSpec) -> str:
    """A coarse architecture generation: efficiencies are fitted per generation, not per GPU."""
    if gpu.kind == "cpu":
        return "cpu"
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
    """None when catalog device ``gpu`` can run ``precision`` as dlgpu means it; else a one-line reason (the
    rule of ``devices.precision``, with the catalog's figures as the facts)."""
    if gpu.kind == "cpu":
        return precision_unsupported(precision, PrecisionFacts("cpu", gpu.id))
    facts = PrecisionFacts("gpu", gpu.id, gpu.cuda_cc, tf32=bool(gpu.tf32_flops_per_s),
                           bf16=bool(gpu.bf16_flops_per_s))
    return precision_unsupported(precision, facts)


def efficiency_terms(unit: str, group: str, gen: str, phase: str = "forward") -> tuple[str, ...]:
    """The fitted log-efficiency of an operator is the sum of these terms: a base per unit and operator
    group, and an offset per architecture generation. (An offset per generation and unit as well was
    tried and gave a worse leave-one-device-out error: too few rows per generation.) On CPUs, one per
    phase too: oneDNN's backward kernels reach a lower share of peak than its forward ones (ResNet-50
    trains 4.3x, BERT 5.6x slower than it infers on the development machine, for 3x the FLOPs)."""
    if gen == "cpu":  # forward is the reference: the base is a forward kernel's share of peak
        return (f"{unit}:{group}",) if phase == "forward" else (f"{unit}:{group}", f"cpu:phase:{phase}")
    return (f"{unit}:{group}", f"gen:{gen}")


EFFICIENCY_CEILING = 2.0
"""The most an efficiency base may reach as a share of the unit's counted peak: profiles count the FLOPs of eager,
unfused operators, and a fused kernel (cuDNN's convolution with its bias and activation) does up to about that
much less than counted; more would not be physical, so the fit is bounded there (``fit.bounds``)."""

PHASE_RANGE = 8.0
"""A CPU phase's kernels reach between 1/8 and 8 times the forward kernels' share of peak (bounds of the fit): oneDNN's
backward kernels are slower than its forward ones (ResNet-50 trains 4.3x slower than it infers here, for 3x the
FLOPs), but not by orders of magnitude."""


def overhead_terms(gen: str) -> tuple[str, tuple[str, ...]]:
    """(fixed device cost per kernel, the terms of the host's dispatch time per operator, none on a CPU): on a
    CPU, dispatch is not overlapped with the work, so it is one per-operator cost added to the step. On GPUs the
    host's time per operator has a common base and an offset per generation: the hosts a generation shipped in and
    the framework versions of its day differ (ResNet-50 inference at batch 1 takes about 10 ms on a V100 or a T4
    in NVIDIA's 2020-21 tables, the host's dispatch of ~200 operators, while SSD300 at batch 1 on an A100 takes
    6 ms for twice the operators)."""
    if gen == "cpu":
        return "cpu:op_s", ()
    return "kernel_s", ("launch_s", f"launch:{gen}")


def memory_terms(gen: str, kind: str, in_l2: bool = False) -> tuple[str, ...]:
    """Achieved share of memory bandwidth: a common base, an offset per operator kind (a norm's two
    passes and a strided copy stream less well than an elementwise op) and one per generation; on a GPU, one more
    for an operator whose tensors fit in the L2 cache (``fits_l2``): written by one kernel and read by the next,
    they need not go to DRAM."""
    l2 = ("l2:hit",) if in_l2 and gen != "cpu" else ()
    if kind in DENSE:  # GEMMs, convolutions and attention stream at the common efficiency (GEMV in decode)
        return ("cpu:mem",) if gen == "cpu" else ("mem", f"mem:{gen}", *l2)
    if gen == "cpu":
        return ("cpu:mem", f"cpu:mem-kind:{kind}")
    return ("mem", f"mem:{gen}", f"mem-kind:{kind}", *l2)


def fits_l2(op: OpRecord, gpu: GpuSpec) -> bool:
    """Whether an operator's tensors (read and written) fit in the device's L2 cache (False where the catalog has
    no L2 size)."""
    return bool(gpu.l2_cache_bytes) and gpu.kind != "cpu" and op.bytes <= float(gpu.l2_cache_bytes or 0)


TILES: dict[str, tuple[tuple[int, int], ...]] = {
    "tensor": ((256, 128), (128, 128), (128, 64), (64, 64)),
    "tensor-tf32": ((256, 128), (128, 128), (128, 64), (64, 64)),
    "vector": ((128, 128), (128, 64), (64, 64), (32, 32)),
}
"""Output tiles (rows x columns of C) a GEMM library picks from, largest first, per unit: CUTLASS's default
threadblock shapes for tensor-core GEMMs (256x128, 128x128, 128x64, 64x64) and its SIMT ones for fp32 on the
vector units. The largest tile that still gives every SM a tile is taken, as cuBLAS's heuristics prefer."""


def gemm_utilization(gemm: tuple[int, ...] | None, unit: str, sms: int | None) -> float:
    """Share of the SMs' tile slots a GEMM (batch, M, N, K) keeps busy: its tiles (padded to tile multiples)
    run in waves of one tile per SM, and the last wave is partly idle (wave and tile quantization, as NeuSight and
    Habitat model it). 1.0 where the shape or the SM count is unknown, or on a CPU. The predictor raises it to a
    fitted power (``shape:alpha``): how much of the idle share really costs time is the data's to say."""
    tiles_of = TILES.get(unit)
    if not gemm or len(gemm) != 4 or not sms or tiles_of is None:
        return 1.0
    b, m, n, _k = (max(1, int(x)) for x in gemm)
    for tm, tn in tiles_of:
        tiles = b * math.ceil(m / tm) * math.ceil(n / tn)
        if tiles >= sms:
            break
    waves = math.ceil(tiles / sms)
    return min(1.0, (b * m * n) / (waves * sms * tm * tn))


def scale_terms(framework: str, stack: str) -> tuple[str, ...]:
    """Step-time factors of the software that measured: the framework (TensorFlow's graph runtime vs eager
    PyTorch) and the stack, i.e. the benchmark suite (NVIDIA's tuned container scripts, a plain Hugging
    Face loop) with an offset per version of it where the source pins one (``suite@version``: another container,
    another framework release). Unknown ones get factor 1: the average of the stacks calibrated on."""
    suite = stack.split("@", 1)[0]
    return tuple(t for t in (f"framework:{framework}" if framework != "pytorch" else "",
                             f"stack:{suite}" if suite else "",
                             f"stack:{stack}" if "@" in stack else "") if t)


RIDGED = ("gen:", "mem:", "stack:", "mem-kind:", "cpu:mem-kind:", "launch:", "l2:")
"""Offsets penalised towards 0 in the fit (see calibrate.RIDGE): with few rows they stay near the common value."""


@dataclass(frozen=True)
class Calibration:
    """Fitted parameters (natural-log space for positivity) and the error they were fitted with."""

    values: dict[str, float]
    fit: dict[str, Any] = field(default_factory=dict)

    def _sum(self, terms: tuple[str, ...]) -> float:
        return sum(self.values.get(t, math.log(0.5) if i == 0 else 0.0) for i, t in enumerate(terms))

    def efficiency(self, unit: str, kind: str, gen: str, phase: str = "forward", utilization: float = 1.0) -> float:
        """Achieved share of a unit's peak on an operator kind in a generation, times the operator's
        ``gemm_utilization`` raised to the fitted ``shape:alpha``.

        Not capped at 1: profiles count FLOPs and bytes of eager, unfused operators, and fused kernels
        (cuDNN's conv+bias+ReLU, Adam's multi-tensor apply) do less than that."""
        alpha = math.exp(self.values["shape:alpha"]) if "shape:alpha" in self.values else 0.0
        return math.exp(self._sum(efficiency_terms(unit, kind, gen, phase))) * utilization ** alpha

    def seconds_per_flop(self, unit: str, peak: float, tdp_w: float | None) -> float:
        """1 / peak, plus a power limit: sustained FLOP/s cannot exceed what the board's power budget feeds
        (fitted FLOP per joule per unit), so a 70 W T4 or a 250 W PCIe A100 reaches less of its
        datasheet peak than a 400 W SXM A100. Harmonic, so it bites only where the budget is tight."""
        j = self.values.get(f"power:{unit}")
        if j is None or not tdp_w:
            return 1.0 / peak
        return 1.0 / peak + 1.0 / (tdp_w * math.exp(j))

    def memory_efficiency(self, gen: str, kind: str, in_l2: bool = False) -> float:
        return math.exp(self._sum(memory_terms(gen, kind, in_l2)))

    def scale(self, framework: str, stack: str) -> float:
        return math.exp(sum(self.values.get(t, 0.0) for t in scale_terms(framework, stack)))

    def scale_of(self, terms: tuple[str, ...]) -> float:
        """exp of the sum of offsets (0 for a term the fit never saw)."""
        return math.exp(sum(self.values.get(t, 0.0) for t in terms))

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
    op_seconds: tuple[float, ...] = ()  # per call of each of the profile's operators, in its order (scaled)
    op_units: tuple[str, ...] = ()  # the unit each operator ran on (tensor, tensor-tf32, vector, cpu-*)

    @property
    def bound(self) -> dict[str, float]:
        total = self.step_time_s or 1.0
        return {"compute": self.compute_s / total, "memory": self.memory_s / total,
                "overhead": self.overhead_s / total}


def op_unit(kind: str, dtype: str, precision: str) -> str:
    """Which unit an operator runs on, as eager PyTorch dispatches it on an NVIDIA GPU: ``tensor`` (fp16/bf16
    dense ops), ``tensor-tf32`` (fp32 convolutions, and matmuls at ``tf32``, from Ampere on), ``vector``."""
    if kind in DENSE and dtype in ("float16", "bfloat16"):
        return "tensor"
    if kind in DENSE and dtype == "float32" and (kind == "conv" or precision == "tf32"):
        return "tensor-tf32"
    return "vector"


def op_group(op: OpRecord) -> str:
    """Efficiency groups: convolutions, matrix products (attention's are matmuls too), and the rest."""
    if op.kind == "conv":
        return "conv"
    return "matmul" if op.kind in DENSE else "other"


def unit_peak(op: OpRecord, gpu: GpuSpec, precision: str) -> tuple[str, float | None]:
    """(unit, its peak FLOP/s) for an operator: ``tensor`` (fp16/bf16 tensor cores), ``tensor-tf32`` (TF32
    tensor cores reach a different share of their peak than fp16 ones: a separate efficiency), ``vector``."""
    if gpu.kind == "cpu":  # bf16 GEMMs and convolutions on AMX / AVX-512 BF16 where the CPU has them
        if op.kind in DENSE and op.dtype == "bfloat16":
            return "cpu-matrix", gpu.bf16_flops_per_s or gpu.fp32_flops_per_s
        return "cpu-vector", gpu.fp32_flops_per_s
    if op.kind in DENSE:
        if op.dtype in ("float16", "bfloat16"):
            # autocast fp16 accumulates in fp32: GeForce cards run that at half their fp16-accumulate rate.
            peak = ((gpu.fp16_fp32acc_flops_per_s or gpu.fp16_flops_per_s) if op.dtype == "float16"
                    else gpu.bf16_flops_per_s)
            if peak:
                return "tensor", peak
        ampere = gpu.cuda_cc is not None and gpu.cuda_cc >= (8, 0)
        if op.dtype == "float32" and gpu.tf32_flops_per_s and (precision == "tf32" or (ampere and op.kind == "conv")):
            return "tensor-tf32", gpu.tf32_flops_per_s
    return "vector", gpu.fp32_flops_per_s


def predict_step(profile: OpProfile, gpu: GpuSpec, precision: str, cal: Calibration,
                 framework: str = "pytorch", stack: str = "") -> StepPrediction:
    """Step time of ``profile`` on ``gpu``. Raises BadInput where the catalog lacks the figures needed."""
    why = precision_reason(gpu, precision)
    if why:
        raise BadInput(why)
    bw = gpu.memory_bandwidth_bytes_per_s
    if not gpu.fp32_flops_per_s or (not bw and gpu.kind != "cpu"):
        raise BadInput(f"{gpu.id}: the catalog has no memory bandwidth or FP32 peak for it; cannot predict")
    gen = generation(gpu)
    kernel_term, launch_terms = overhead_terms(gen)
    per_kernel = cal.positive(kernel_term, 3e-6)
    compute = memory = tensor_flops = 0.0
    per_op: list[float] = []
    units: list[str] = []
    probed = isinstance(gpu, ProbedCpu)
    for op in profile.ops:
        unit, peak = unit_peak(op, gpu, precision)
        u = gemm_utilization(op.gemm, unit, gpu.sm_count if gpu.kind != "cpu" else None)
        e = cal.efficiency(unit, op_group(op), gen, op.phase, u)
        t_c = op.flops * cal.seconds_per_flop(unit, peak, gpu.tdp_w) / e if peak else 0.0
        if probed:  # PROBED_MEMORY_RULE
            t_m = op.bytes / bw if bw and op.kind in PROBED_MEMORY_KINDS else 0.0
        else:
            t_m = op.bytes / (bw * cal.memory_efficiency(gen, op.kind, fits_l2(op, gpu))) if bw else 0.0
        if t_c >= t_m:
            compute += t_c * op.count
        else:
            memory += t_m * op.count
        per_op.append(max(t_c, t_m))
        units.append(unit)
        if unit in ("tensor", "tensor-tf32", "cpu-matrix"):
            tensor_flops += op.flops * op.count
    overhead = per_kernel * profile.kernels
    if launch_terms:
        # Eager PyTorch launches GPU kernels from one host thread: when kernels are tiny (batch 1), the
        # host's dispatch time per operator bounds the step instead of the device.
        host = cal.positive(launch_terms[0], 1e-5) * cal.scale_of(launch_terms[1:]) * profile.kernels
        if host > compute + memory + overhead:
            overhead = host - compute - memory
    scale = cal.scale(framework, stack)
    total = (compute + memory + overhead) * scale
    flops = profile.flops or 1.0
    return StepPrediction(total, compute * scale, memory * scale, overhead * scale, tensor_flops / flops,
                          tuple(t * scale for t in per_op), tuple(units))
