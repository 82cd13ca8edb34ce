"""The frozen data model every layer exchanges. No torch here: stored results can be read, priced and
rendered without a GPU stack.

Raw samples are kept (``step_times_s``); statistics are properties derived from them, never stored
instead of them (the habit of ``torch.utils.benchmark.Measurement``)."""

from __future__ import annotations

import random
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from .vocab import BENCH_SCHEMA

NOISY_IQR_OVER_MEDIAN = 0.10
"""A run is flagged noisy when IQR/median exceeds this (the threshold torch.utils.benchmark warns at)."""

CI_CONFIDENCE = 0.95
CI_RESAMPLES = 1000
"""The median's confidence interval: a percentile bootstrap over the kept per-step samples, this many resamples,
seeded (the same samples always give the same interval)."""

Status = Literal["ok", "skipped", "failed"]


def median_ci(samples: list[float] | tuple[float, ...], confidence: float = CI_CONFIDENCE,
              resamples: int = CI_RESAMPLES, seed: int = 0) -> tuple[float, float] | None:
    """(low, high) of a percentile-bootstrap ``confidence`` interval of the median of ``samples``; None for fewer
    than 3 samples (no interval worth the name)."""
    n = len(samples)
    if n < 3:
        return None
    rng = random.Random(seed)
    xs = list(samples)
    meds = sorted(statistics.median(rng.choices(xs, k=n)) for _ in range(resamples))
    tail = (1 - confidence) / 2
    lo = meds[int(tail * (resamples - 1))]
    hi = meds[round((1 - tail) * (resamples - 1))]
    return lo, hi


def quartiles(samples: list[float] | tuple[float, ...]) -> tuple[float, float, float]:
    """(q1, median, q3) with the 'inclusive' method, so that one or two samples still work."""
    if not samples:
        raise ValueError("no samples")
    if len(samples) == 1:
        v = float(samples[0])
        return v, v, v
    q1, q2, q3 = statistics.quantiles(samples, n=4, method="inclusive")
    return q1, q2, q3


@dataclass(frozen=True)
class StepStats:
    """Per-step wall times of the timed (post-warm-up) steps, in seconds, in the order they ran."""

    samples_s: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.samples_s)

    @property
    def median(self) -> float:
        return quartiles(self.samples_s)[1]

    @property
    def iqr(self) -> float:
        q1, _, q3 = quartiles(self.samples_s)
        return q3 - q1

    @property
    def noisy(self) -> bool:
        return self.iqr / self.median > NOISY_IQR_OVER_MEDIAN if self.median > 0 else True

    @property
    def ci95(self) -> tuple[float, float] | None:
        """The median's 95% bootstrap confidence interval (``median_ci``); None under 3 samples."""
        return median_ci(self.samples_s)

    @property
    def ci_rel(self) -> float | None:
        """Half the interval's width over the median: the median is known to +-this share."""
        ci = self.ci95
        return None if ci is None or self.median <= 0 else (ci[1] - ci[0]) / 2 / self.median

    def to_dict(self) -> dict[str, Any]:
        ci = self.ci95
        return {"median": self.median, "iqr": self.iqr, "n": self.n,
                "ci95": None if ci is None else list(ci), "ci_rel": self.ci_rel, "samples": list(self.samples_s)}


@dataclass(frozen=True)
class DeviceInfo:
    """One device present on this machine. ``id`` is what ``--device`` accepts (``cpu``, ``cuda:0``)."""

    id: str
    kind: Literal["cpu", "cuda", "mps", "xpu"]
    name: str
    memory_bytes: int | None
    backend: str  # cpu | cuda | rocm | mps | xpu
    compute_capability: str | None = None
    physical_cores: int | None = None
    threads_used: int | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TaskProjection:
    """What a measured throughput means for the real task: ``samples / samples_per_s``."""

    description: str  # e.g. "90 epochs of ImageNet-1k (1,281,167 images)"
    samples: float  # total samples the real task processes
    time_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class BenchResult:
    workload: str
    task: str
    device: str
    precision: str
    batch_size: int | None
    overrides: dict[str, Any]
    status: Status
    reason: str | None = None
    requested_batch_size: int | None = None
    step_time: StepStats | None = None
    warmup_steps: int = 0
    peak_mem_bytes: int | None = None
    peak_mem_kind: str | None = None  # "allocator-peak" | "process-peak-rss" | "process-peak-rss-delta" (llama.cpp)
    settings: dict[str, Any] = field(default_factory=dict)
    speedup_vs_cpu_fp32: float | None = None
    projection: TaskProjection | None = None
    wall_time_s: float | None = None
    # Telemetry over the timed steps (measure.telemetry), each figure labelled by energy_source + energy_basis.
    # The raw samples are in ``telemetry``; the figures below are derived from them.
    power_w: float | None = None  # average over the window, idle draw included
    peak_power_w: float | None = None
    idle_power_w: float | None = None  # the idle baseline measured before the run
    # Gross, from the power the device drew: energy_j_per_sample x samples_per_s = power_w, as MLPerf Power and
    # Lambda's tables count it. The net_ figures subtract the idle baseline, where the run drew clearly more.
    energy_j_per_step: float | None = None
    energy_j_per_sample: float | None = None
    samples_per_s_per_w: float | None = None
    net_energy_j_per_step: float | None = None
    net_energy_j_per_sample: float | None = None
    utilization_pct: float | None = None
    energy_source: str | None = None  # measured-nvml | measured-rapl | measured-amdsmi | estimated | unavailable
    energy_basis: str | None = None
    throttled: bool | None = None
    telemetry: dict[str, Any] | None = None  # the window: raw samples, source, basis, idle baseline, extension
    # Model FLOPs utilization: FLOPs of one step (dlgpu's operator profile) / median step time / peak FLOP/s.
    flops_per_step: float | None = None
    bytes_per_step: float | None = None  # memory traffic of one step, from the same operator profile
    mfu: float | None = None
    mfu_basis: str | None = None
    # Why timing stopped: "ci" (the median's interval reached the budget's target width), "budget" (the time
    # ceiling came first), "max_steps"; and what other processes took meanwhile (``measure.contention``).
    stop_reason: str | None = None
    contended: bool | None = None
    contention: dict[str, Any] | None = None
    # What ran the workload (``vocab.RUNTIMES``): PyTorch, or llama.cpp on a synthetic GGUF (``measure.llamacpp``,
    # whose precision is the GGUF weight type). Documents from before the field read as pytorch.
    runtime: str = "pytorch"

    @property
    def samples_per_s(self) -> float | None:
        if self.step_time is None or self.batch_size is None or self.step_time.median <= 0:
            return None
        return self.batch_size / self.step_time.median

    @property
    def achieved_flops_per_s(self) -> float | None:
        if self.flops_per_step is None or self.step_time is None or self.step_time.median <= 0:
            return None
        return self.flops_per_step / self.step_time.median

    @property
    def noisy(self) -> bool | None:
        return None if self.step_time is None else self.step_time.noisy

    def key(self) -> tuple[str, str, str, str]:
        return (self.workload, self.task, self.device, self.precision)

    def to_dict(self) -> dict[str, Any]:
        return {
            "workload": self.workload,
            "task": self.task,
            "device": self.device,
            "precision": self.precision,
            "runtime": self.runtime,
            "batch_size": self.batch_size,
            "requested_batch_size": self.requested_batch_size,
            "overrides": dict(self.overrides),
            "status": self.status,
            "reason": self.reason,
            "samples_per_s": self.samples_per_s,
            "step_time_s": None if self.step_time is None else self.step_time.to_dict(),
            "warmup_steps": self.warmup_steps,
            "peak_mem_bytes": self.peak_mem_bytes,
            "peak_mem_kind": self.peak_mem_kind,
            "speedup_vs_cpu_fp32": self.speedup_vs_cpu_fp32,
            "task_time_s": None if self.projection is None else self.projection.time_s,
            "task_projection": None if self.projection is None else self.projection.to_dict(),
            "noisy": self.noisy,
            "settings": dict(self.settings),
            "wall_time_s": self.wall_time_s,
            "power_w": self.power_w,
            "peak_power_w": self.peak_power_w,
            "idle_power_w": self.idle_power_w,
            "energy_j_per_step": self.energy_j_per_step,
            "energy_j_per_sample": self.energy_j_per_sample,
            "samples_per_s_per_w": self.samples_per_s_per_w,
            "net_energy_j_per_step": self.net_energy_j_per_step,
            "net_energy_j_per_sample": self.net_energy_j_per_sample,
            "utilization_pct": self.utilization_pct,
            "energy_source": self.energy_source,
            "energy_basis": self.energy_basis,
            "throttled": self.throttled,
            "flops_per_step": self.flops_per_step,
            "bytes_per_step": self.bytes_per_step,
            "achieved_flops_per_s": self.achieved_flops_per_s,
            "mfu": self.mfu,
            "mfu_basis": self.mfu_basis,
            "stop_reason": self.stop_reason,
            "contended": self.contended,
            "contention": self.contention,
            "telemetry": self.telemetry,
        }


_DERIVED = frozenset({"samples_per_s", "noisy", "task_time_s", "achieved_flops_per_s", "step_time_s",
                      "task_projection"})


def result_from_dict(d: dict[str, Any]) -> BenchResult:
    """The inverse of ``BenchResult.to_dict`` (derived figures are recomputed from the raw samples)."""
    fields = set(BenchResult.__dataclass_fields__)
    kw = {k: v for k, v in d.items() if k in fields and k not in _DERIVED}
    st = d.get("step_time_s")
    tp = d.get("task_projection")
    return BenchResult(**kw, step_time=None if st is None else StepStats(tuple(st["samples"])),
                       projection=None if tp is None else TaskProjection(**tp))


def report_from_dict(d: dict[str, Any]) -> BenchReport:
    """The inverse of ``BenchReport.to_dict``, for documents read back from the store or a file."""
    c = dict(d["config"])
    for k in ("workloads", "devices", "precisions", "tasks"):
        c[k] = tuple(c[k])
    return BenchReport(created_at=d["created_at"], machine=machine_from_dict(d["machine"]), config=BenchConfig(**c),
                       results=tuple(result_from_dict(r) for r in d.get("results") or ()),
                       interrupted=bool(d.get("interrupted")), schema=d.get("schema", BENCH_SCHEMA),
                       run_id=d.get("run_id"), telemetry=dict(d.get("telemetry") or {}))


@dataclass(frozen=True)
class MachineInfo:
    hostname: str | None
    platform: str
    python: str
    torch: str
    torchvision: str | None
    transformers: str | None
    torch_cuda: str | None
    torch_hip: str | None
    cudnn: int | None
    dlgpu: str
    cpu_flags: tuple[str, ...]
    devices: tuple[DeviceInfo, ...]
    gpu_driver: str | None = None  # NVIDIA or AMD kernel driver version, where a GPU is present

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["cpu_flags"] = list(self.cpu_flags)
        d["devices"] = [dev.to_dict() for dev in self.devices]
        return d


def machine_from_dict(d: dict[str, Any]) -> MachineInfo:
    """The inverse of ``MachineInfo.to_dict``."""
    m = dict(d)
    m["cpu_flags"] = tuple(m.get("cpu_flags") or ())
    m["devices"] = tuple(DeviceInfo(**dev) for dev in m.get("devices") or ())
    return MachineInfo(**{k: v for k, v in m.items() if k in MachineInfo.__dataclass_fields__})


@dataclass(frozen=True)
class BenchConfig:
    workloads: tuple[str, ...]
    devices: tuple[str, ...]
    precisions: tuple[str, ...]
    tasks: tuple[str, ...]
    quick: bool
    batch_size: int | None
    overrides: dict[str, Any]
    budget_s: float
    warmup_steps: int
    min_steps: int
    max_steps: int
    telemetry: bool = True  # power/energy/utilization sampled beside the timed steps
    telemetry_period_s: float | None = None
    ci_rel: float | None = None  # timing stops once the median's 95% interval is within +-this share of it
    runtime: str = "pytorch"  # what ran the workloads (``vocab.RUNTIMES``)
    method: str | None = None  # --task finetune: the fine-tuning method asked (full | freeze | lora | qlora)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("workloads", "devices", "precisions", "tasks"):
            d[k] = list(d[k])
        return d


@dataclass(frozen=True)
class BenchReport:
    created_at: str  # ISO 8601, UTC
    machine: MachineInfo
    config: BenchConfig
    results: tuple[BenchResult, ...]
    interrupted: bool = False
    schema: str = BENCH_SCHEMA
    run_id: str | None = None  # its id in the results store, where it was saved there
    # Per device id: its catalog facts (TDP, peaks, each with a basis), the sensor used and the idle baseline
    # window (raw samples) that the results' energy figures are net of.
    telemetry: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            **({"run_id": self.run_id} if self.run_id else {}),
            "created_at": self.created_at,
            "interrupted": self.interrupted,
            "machine": self.machine.to_dict(),
            "config": self.config.to_dict(),
            "telemetry": dict(self.telemetry),
            "results": [r.to_dict() for r in self.results],
        }
