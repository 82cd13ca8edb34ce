"""Validation of the documents dlgpu exchanges (``dlgpu.bench/1``, ``dlgpu.predict/1``, ``dlgpu.advise/1``,
``dlgpu.probe/1``, ``dlgpu.export/1``), for ``dlgpu import``: a file from elsewhere is data, never code. Everything
is checked before anything is written: types, ranges, lengths, finite numbers, known fields only (an unknown field is an
error, so that a typo or a tampered file does not pass as a valid run), and the figures a document states
against the ones they derive from (a median that is not the median of its samples is rejected; an advised
time that is not the job's samples over the candidate's throughput, too).

Fields added to a schema after its first release are optional, so older documents still import."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from dlgpu.errors import BadInput
from dlgpu.results import (
    ADVISE_SCHEMA,
    BENCH_PRECISIONS,
    BENCH_SCHEMA,
    BENCH_TASKS,
    EXPORT_SCHEMA,
    GGUF_PRECISIONS,
    NOISY_IQR_OVER_MEDIAN,
    PRECISIONS,
    PREDICT_SCHEMA,
    RUNTIMES,
    TASKS,
)
from dlgpu.results.vocab import PROBE_SCHEMA, RESULT_RUNTIMES

MAX_FILE_BYTES = 256 * 1024 * 1024
MAX_DEPTH = 32
MAX_SAMPLES = 1_000_000

Str = Annotated[str, Field(max_length=4000)]
Name = Annotated[str, Field(min_length=1, max_length=200)]
NonNeg = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Pos = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Num = Annotated[float, Field(allow_inf_nan=False)]
Count = Annotated[int, Field(ge=0, le=10**12)]
Batch = Annotated[int, Field(ge=1, le=10**9)]
Precision = Literal["fp32", "tf32", "bf16", "fp16", "int8", "int4"]  # int8/int4: LLM weight formats (bench)
BenchPrecision = Literal["fp32", "tf32", "bf16", "fp16", "int8", "int4", "f16", "q8_0", "q4_0"]
"""A bench result's precision: ``Precision``, or a GGUF weight type (``--runtime llama.cpp``)."""
Runtime = Literal["pytorch", "llama.cpp"]
ResultRuntime = Literal["pytorch", "llama.cpp", "xgboost", "lightgbm", "scikit-learn", "cuml"]
"""What ran a bench result: ``Runtime``, or the library of a tabular workload (``vocab.TABULAR_RUNTIMES``)."""
Task = Literal["train", "infer", "decode"]
BenchTask = Literal["train", "infer", "decode", "finetune"]
"""A bench run's task: ``Task``, or ``finetune`` (``dlgpu bench --task finetune``)."""
assert set(BENCH_PRECISIONS) == {"fp32", "tf32", "bf16", "fp16", "int8", "int4"} and set(TASKS) == {
    "train", "infer", "decode"} and set(BENCH_TASKS) == {"train", "infer", "decode", "finetune"}
assert set(GGUF_PRECISIONS) == {"f16", "q8_0", "q4_0"} and set(RUNTIMES) == {"pytorch", "llama.cpp"}
assert set(RESULT_RUNTIMES) == {"pytorch", "llama.cpp", "xgboost", "lightgbm", "scikit-learn", "cuml"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, str_max_length=100_000)


def _close(a: float, b: float, rel: float = 1e-6) -> bool:
    return abs(a - b) <= rel * max(abs(a), abs(b), 1e-300)


class StepTime(_Strict):
    median: Pos
    iqr: NonNeg
    n: Count
    ci95: list[Pos] | None = Field(default=None, min_length=2, max_length=2)
    ci_rel: NonNeg | None = None
    samples: list[Pos] = Field(min_length=1, max_length=MAX_SAMPLES)

    @model_validator(mode="after")
    def _consistent(self) -> StepTime:
        if self.n != len(self.samples):
            raise ValueError(f"n is {self.n} but there are {len(self.samples)} samples")
        if len(self.samples) == 1:
            q1 = med = q3 = self.samples[0]
        else:
            q1, med, q3 = statistics.quantiles(self.samples, n=4, method="inclusive")
        if not _close(med, self.median) or (not _close(q3 - q1, self.iqr, 1e-6) and abs(q3 - q1 - self.iqr) > 1e-12):
            raise ValueError(f"median {self.median:g} / IQR {self.iqr:g} are not those of the samples "
                             f"({med:g} / {q3 - q1:g})")
        if self.ci95 is not None and not min(self.samples) <= self.ci95[0] <= self.ci95[1] <= max(self.samples):
            raise ValueError(f"ci95 {self.ci95} is not an interval within the samples")
        return self


class Projection(_Strict):
    description: Str
    samples: Pos
    time_s: Pos


class Device(_Strict):
    id: Name
    kind: Literal["cpu", "cuda", "mps", "xpu"]
    name: Str
    memory_bytes: Count | None
    backend: Name
    compute_capability: Str | None = None
    physical_cores: Count | None = None
    threads_used: Count | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class Machine(_Strict):
    hostname: Str | None
    platform: Str
    python: Str
    torch: Str
    torchvision: Str | None
    transformers: Str | None
    torch_cuda: Str | None
    torch_hip: Str | None
    cudnn: int | None
    dlgpu: Str
    cpu_flags: list[Name] = Field(max_length=1000)
    devices: list[Device] = Field(min_length=1, max_length=1000)
    gpu_driver: Str | None = None


class Config(_Strict):
    workloads: list[Name]
    devices: list[Name]
    precisions: list[BenchPrecision]
    tasks: list[BenchTask]
    quick: bool
    batch_size: Batch | None
    overrides: dict[Name, Any]
    budget_s: Pos
    warmup_steps: Count
    min_steps: Count
    max_steps: Count
    telemetry: bool = True
    telemetry_period_s: Pos | None = None
    ci_rel: Pos | None = None
    runtime: Runtime = "pytorch"
    method: Literal["full", "freeze", "lora", "qlora"] | None = None


class Result(_Strict):
    workload: Name
    task: BenchTask
    device: Name
    precision: BenchPrecision
    runtime: ResultRuntime = "pytorch"
    batch_size: Batch | None
    requested_batch_size: Batch | None = None
    overrides: dict[Name, Any]
    status: Literal["ok", "skipped", "failed"]
    reason: Str | None = None
    samples_per_s: Pos | None = None
    step_time_s: StepTime | None = None
    warmup_steps: Count = 0
    peak_mem_bytes: Count | None = None
    peak_mem_kind: Str | None = None
    speedup_vs_cpu_fp32: Pos | None = None
    task_time_s: Pos | None = None
    task_projection: Projection | None = None
    noisy: bool | None = None
    settings: dict[Name, Any] = Field(default_factory=dict)
    wall_time_s: NonNeg | None = None
    power_w: NonNeg | None = None
    peak_power_w: NonNeg | None = None
    idle_power_w: NonNeg | None = None
    energy_j_per_step: NonNeg | None = None
    energy_j_per_sample: NonNeg | None = None
    samples_per_s_per_w: NonNeg | None = None
    net_energy_j_per_step: NonNeg | None = None
    net_energy_j_per_sample: NonNeg | None = None
    utilization_pct: Annotated[float, Field(ge=0, le=100.0001, allow_inf_nan=False)] | None = None
    energy_source: Literal["measured-nvml", "measured-rapl", "measured-amdsmi", "estimated",
                           "unavailable"] | None = None
    energy_basis: Str | None = None
    throttled: bool | None = None
    telemetry: dict[str, Any] | None = None
    flops_per_step: NonNeg | None = None
    bytes_per_step: NonNeg | None = None
    achieved_flops_per_s: NonNeg | None = None
    mfu: NonNeg | None = None
    mfu_basis: Str | None = None
    stop_reason: Literal["ci", "budget", "max_steps", "stable"] | None = None
    contended: bool | None = None
    contention: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Result:
        if (self.precision in GGUF_PRECISIONS) != (self.runtime == "llama.cpp"):
            raise ValueError(f"precision {self.precision!r} with runtime {self.runtime!r}: GGUF weight types "
                             f"({', '.join(GGUF_PRECISIONS)}) go with runtime 'llama.cpp' and only they do")
        if self.status == "ok":
            if self.step_time_s is None or self.batch_size is None:
                raise ValueError("an 'ok' result needs step_time_s and batch_size")
            sps = self.batch_size / self.step_time_s.median
            if self.samples_per_s is None or not _close(sps, self.samples_per_s):
                raise ValueError(f"samples_per_s {self.samples_per_s} is not batch_size / median step time "
                                 f"({sps:g})")
            noisy = self.step_time_s.iqr / self.step_time_s.median > NOISY_IQR_OVER_MEDIAN
            if self.noisy is not None and self.noisy != noisy:
                raise ValueError("noisy does not match IQR/median of the samples")
        elif self.samples_per_s is not None or self.step_time_s is not None:
            raise ValueError(f"a {self.status!r} result carries no step time")
        if self.task_projection is not None and self.task_time_s is not None \
                and not _close(self.task_projection.time_s, self.task_time_s):
            raise ValueError("task_time_s differs from task_projection.time_s")
        return self


class BenchDoc(_Strict):
    schema_: Literal["dlgpu.bench/1"] = Field(alias="schema")
    run_id: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")] | None = None
    created_at: Annotated[str, Field(max_length=40)]
    interrupted: bool = False
    machine: Machine
    config: Config
    telemetry: dict[Name, Any] = Field(default_factory=dict)
    results: list[Result] = Field(max_length=100_000)

    @field_validator("created_at")
    @classmethod
    def _iso(cls, v: str) -> str:
        return _check_iso(v)


class Interval(_Strict):
    low: Pos
    high: Pos
    basis: Str


class RoofOp(_Strict):
    kind: Name
    phase: Name
    dtype: Name
    unit: Name
    flops: NonNeg
    bytes: NonNeg
    count: Count
    time_s: NonNeg


class PredictDoc(_Strict):
    schema_: Literal["dlgpu.predict/1"] = Field(alias="schema")
    run_id: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")] | None = None
    created_at: Annotated[str, Field(max_length=40)] | None = None
    dlgpu: Str | None = None
    workload: Name
    task: Task
    hardware: Name
    hardware_name: Str | None = None
    hardware_kind: Literal["gpu", "cpu"] | None = None
    precision: Precision
    batch_size: Batch
    overrides: dict[Name, Any]
    samples_per_s: Pos
    step_time_s: Pos
    peak_mem_bytes: Count
    peak_mem_basis: Str
    memory_bytes: Count | None
    fits: bool | None
    device_basis: Str
    bound: dict[Literal["compute", "memory", "overhead"], NonNeg]
    tensor_core_flops_share: Annotated[float, Field(ge=0, le=1.0000001)]
    flops: NonNeg
    bytes: NonNeg
    kernels: Count
    interval: Interval | None
    provenance: Str
    task_time_s: Pos | None = None
    task_projection: Projection | None = None
    peaks_flops_per_s: dict[Name, Pos] | None = None
    bandwidth_bytes_per_s: Pos | None = None
    price_usd: Pos | None = None
    tdp_w: Pos | None = None
    ops: list[RoofOp] | None = Field(default=None, max_length=100_000)

    @model_validator(mode="after")
    def _consistent(self) -> PredictDoc:
        if not _close(self.samples_per_s, self.batch_size / self.step_time_s):
            raise ValueError("samples_per_s is not batch_size / step_time_s")
        if self.fits is not None and self.memory_bytes is not None and self.fits != (self.peak_mem_bytes
                                                                                      <= self.memory_bytes):
            raise ValueError("fits does not match peak_mem_bytes <= memory_bytes")
        return self

    @field_validator("created_at")
    @classmethod
    def _iso(cls, v: str | None) -> str | None:
        return None if v is None else _check_iso(v)


FigureSource = Literal["measured", "predicted", "catalog", "estimated", "assumed", "computed", "given",
                       "unavailable"]
RunId = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
MAX_CANDIDATES = 10_000
MAX_LINES = 1000


class AdviseFigure(_Strict):
    """A number with its provenance (``advise.cost.Figure``); ``value`` is None where there is no figure."""

    value: Num | None
    source: FigureSource
    basis: Str


class AdviseJob(_Strict):
    samples: Pos
    description: Str
    basis: Str
    unit: Name


class AdviseConstraints(_Strict):
    deadline_s: Pos
    deadline_basis: Str
    budget_usd: NonNeg | None
    max_power_w: Pos | None
    electricity_usd_per_kwh: AdviseFigure
    carbon_g_per_kwh: AdviseFigure
    pue: Annotated[float, Field(ge=1, le=100, allow_inf_nan=False)]
    hours_per_day: Annotated[float, Field(gt=0, le=24, allow_inf_nan=False)]
    lifetime_years: Pos
    power_factor: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]


class AdviseLocal(_Strict):
    measured: bool
    run_id: RunId | None
    basis: Str


class AdviseVerdict(_Strict):
    answer: Literal["cpu-enough", "gpu-needed", "nothing-meets"]
    headline: Annotated[str, Field(min_length=1, max_length=4000)]
    cheapest: Name | None
    fastest: Name | None
    best_value: Name | None
    what_would: list[Str] = Field(max_length=MAX_LINES)
    reasons: list[Str] = Field(max_length=MAX_LINES)


class AdviseCandidate(_Strict):
    id: Name
    origin: Literal["own", "buy", "rent"]
    name: Name
    hardware: Name
    kind: Literal["cpu", "gpu"]
    gpus: Annotated[int, Field(ge=0, le=1_000_000)]
    precision: Precision | Literal["-"]
    batch_size: Batch | None
    fits: bool | None
    bound: dict[Literal["compute", "memory", "overhead"], NonNeg] | None
    consumer: bool
    excluded: Str | None
    notes: list[Str] = Field(max_length=MAX_LINES)
    meets_deadline: bool | None = None  # absent from documents older than the verdict's own judgments
    affordable: bool | None = None
    figures: dict[Name, AdviseFigure] = Field(max_length=1000)

    @model_validator(mode="after")
    def _consistent(self) -> AdviseCandidate:
        if self.precision == "-" and self.excluded is None:
            raise ValueError(f"candidate {self.id!r} has no precision but is not excluded")
        for name in ("samples_per_s", "time_s"):
            f = self.figures.get(name)
            if f is not None and f.value is not None and f.value <= 0:
                raise ValueError(f"candidate {self.id!r}: figures.{name} must be positive, not {f.value:g}")
        return self


class AdviseDoc(_Strict):
    """``dlgpu.advise/1``: the candidates for a job (own devices, GPUs to buy, instances to rent), their
    figures with provenance, and the verdict over them."""

    schema_: Literal["dlgpu.advise/1"] = Field(alias="schema")
    run_id: RunId | None = None
    created_at: Annotated[str, Field(max_length=40)]
    dlgpu: Str
    workload: Name
    task: Task
    overrides: dict[Name, Any]
    job: AdviseJob
    batch_size: Batch
    precisions: list[Precision] = Field(min_length=1, max_length=len(PRECISIONS))
    sources: list[Literal["own", "buy", "rent"]] = Field(min_length=1, max_length=3)
    constraints: AdviseConstraints
    local: AdviseLocal
    verdict: AdviseVerdict
    notes: list[Str] = Field(max_length=MAX_LINES)
    candidates: list[AdviseCandidate] = Field(min_length=1, max_length=MAX_CANDIDATES)

    @field_validator("created_at")
    @classmethod
    def _iso(cls, v: str) -> str:
        return _check_iso(v)

    @model_validator(mode="after")
    def _consistent(self) -> AdviseDoc:
        by_id: dict[str, AdviseCandidate] = {}
        for i, c in enumerate(self.candidates):
            if c.id in by_id:
                raise ValueError(f"candidates.{i}: id {c.id!r} appears twice")
            by_id[c.id] = c
        for role in ("cheapest", "fastest", "best_value"):
            ref = getattr(self.verdict, role)
            if ref is None:
                continue
            if ref not in by_id:
                raise ValueError(f"verdict.{role}: {ref[:80]!r} is not the id of a candidate")
            if by_id[ref].excluded is not None:
                raise ValueError(f"verdict.{role}: candidate {ref[:80]!r} is excluded ({by_id[ref].excluded})")
        for i, c in enumerate(self.candidates):
            sps, t = c.figures.get("samples_per_s"), c.figures.get("time_s")
            if sps is None or t is None or sps.value is None or t.value is None:
                continue
            want = self.job.samples / sps.value
            if not _close(t.value, want):
                raise ValueError(f"candidates.{i}.figures.time_s: {t.value:g} s is not job.samples / samples_per_s "
                                 f"({self.job.samples:g} / {sps.value:g} = {want:g} s)")
        return self


class ProbeFigureModel(_Strict):
    """One ``dlgpu probe`` figure (``results.probe.ProbeFigure``): its value and fraction of peak must be those its
    samples and work give."""

    device: Name
    what: Literal["gemm", "copy", "triad", "optimizer", "h2d", "d2h", "dispatch", "launch"]
    precision: Literal["fp32", "tf32", "bf16", "fp16", "int8"] | None
    size: Count | None
    pinned: bool | None
    work_per_step: Pos
    reps_per_step: Batch
    unit: Literal["FLOP/s", "B/s", "param/s", "s"]
    value: Pos
    low: Pos
    high: Pos
    step_time_s: StepTime
    warmup_steps: Count = 0
    stop_reason: Literal["ci", "budget", "max_steps"] | None = None
    contended: bool | None = None
    contention: dict[str, Any] | None = None
    peak: Pos | None = None
    peak_basis: Str = ""
    peak_short: Str = ""
    fraction_of_peak: NonNeg | None = None
    settings: dict[Name, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> ProbeFigureModel:
        from dlgpu.results.probe import RATE_UNITS

        if self.unit != RATE_UNITS[self.what]:
            raise ValueError(f"a {self.what} figure is in {RATE_UNITS[self.what]}, not {self.unit}")
        med = self.step_time_s.median
        want = self.work_per_step / med if self.unit != "s" else med / self.work_per_step
        if not _close(want, self.value):
            raise ValueError(f"value {self.value:g} is not what its samples give ({want:g})")
        frac = self.value / self.peak if self.peak and self.unit != "s" else None
        if (frac is None) != (self.fraction_of_peak is None) or (
                frac is not None and self.fraction_of_peak is not None and not _close(frac, self.fraction_of_peak)):
            raise ValueError(f"fraction_of_peak {self.fraction_of_peak} is not value / peak ({frac})")
        return self


class ProbeSkipped(_Strict):
    device: Name
    what: Literal["gemm", "copy", "triad", "optimizer", "h2d", "d2h", "dispatch", "launch"]
    precision: Literal["fp32", "tf32", "bf16", "fp16", "int8"] | None
    reason: Str


class ProbeDoc(_Strict):
    """``dlgpu.probe/1``: this machine's measured ceilings per device, each with its raw samples and its peak."""

    schema_: Literal["dlgpu.probe/1"] = Field(alias="schema")
    run_id: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")] | None = None
    created_at: Annotated[str, Field(max_length=40)]
    dlgpu: Str
    interrupted: bool = False
    quick: bool
    contended: bool
    machine: Machine
    devices: list[Name] = Field(max_length=1000)
    figures: list[ProbeFigureModel] = Field(max_length=100_000)
    ceilings: dict[Name, dict[Name, dict[str, Any]]] = Field(default_factory=dict)
    skipped: list[ProbeSkipped] = Field(default_factory=list, max_length=100_000)
    absent: dict[Name, Str] = Field(default_factory=dict)
    notes: list[Str] = Field(default_factory=list, max_length=MAX_LINES)

    @field_validator("created_at")
    @classmethod
    def _iso(cls, v: str) -> str:
        return _check_iso(v)

    @model_validator(mode="after")
    def _consistent(self) -> ProbeDoc:
        present = {d.id for d in self.machine.devices}
        for dev in self.devices:
            if dev not in present:
                raise ValueError(f"devices: {dev!r} is not a device of the machine")
        for i, f in enumerate(self.figures):
            if f.device not in self.devices:
                raise ValueError(f"figures.{i}: device {f.device!r} is not among the probed devices")
        if self.contended != any(f.contended for f in self.figures):
            raise ValueError("contended does not match the figures' contended flags")
        return self


Document = BenchDoc | PredictDoc | AdviseDoc | ProbeDoc


class ExportedRun(_Strict):
    id: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
    kind: Literal["bench", "predict", "advise", "probe"]
    status: Literal["running", "complete", "interrupted", "incomplete"]
    origin: Annotated[str, Field(max_length=200)]
    created_at: Annotated[str, Field(max_length=40)]
    document: dict[str, Any]


class ExportDoc(_Strict):
    schema_: Literal["dlgpu.export/1"] = Field(alias="schema")
    exported_at: Annotated[str, Field(max_length=40)]
    dlgpu: Str
    runs: list[ExportedRun] = Field(max_length=100_000)


def _check_iso(v: str) -> str:
    import datetime as dt

    try:
        dt.datetime.fromisoformat(v)
    except ValueError:
        raise ValueError(f"not an ISO 8601 time: {v[:60]!r}") from None
    return v


def _depth(obj: Any, limit: int = MAX_DEPTH) -> int:
    stack = [(obj, 1)]
    deepest = 0
    while stack:
        o, d = stack.pop()
        deepest = max(deepest, d)
        if d > limit:
            return d
        if isinstance(o, dict):
            stack += [(v, d + 1) for v in o.values()]
        elif isinstance(o, list):
            stack += [(v, d + 1) for v in o]
    return deepest


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ())) or "document"
    more = f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    return f"{where}: {msg}{more}"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def parse_json_text(text: str | bytes, where: str) -> Any:
    """Plain JSON (no NaN/Infinity, bounded nesting); a BadInput naming the problem otherwise."""
    if len(text) > MAX_FILE_BYTES:
        raise BadInput(f"{where}: {len(text):,} bytes is more than the {MAX_FILE_BYTES:,} an import accepts")
    try:
        doc = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise BadInput(f"{where}: not valid JSON (nested too deeply)") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadInput(f"{where}: not valid JSON ({exc})") from None
    if _depth(doc) > MAX_DEPTH:
        raise BadInput(f"{where}: nested more than {MAX_DEPTH} levels deep; not a dlgpu document")
    return doc


MODELS: dict[str, type[Document]] = {BENCH_SCHEMA: BenchDoc, PREDICT_SCHEMA: PredictDoc, ADVISE_SCHEMA: AdviseDoc,
                                     PROBE_SCHEMA: ProbeDoc}
KINDS: dict[type[Document], str] = {BenchDoc: "bench", PredictDoc: "predict", AdviseDoc: "advise", ProbeDoc: "probe"}


def kind_of(doc: Document) -> str:
    """The store's kind of run for a validated document: bench | predict | advise | probe."""
    return KINDS[type(doc)]


def validate_document(doc: Any, where: str) -> Document:
    """A bench, predict or advise document, checked; BadInput with the first problem otherwise."""
    if not isinstance(doc, dict):
        raise BadInput(f"{where}: expected a JSON object, got {type(doc).__name__}")
    schema = doc.get("schema")
    model = MODELS.get(schema) if isinstance(schema, str) else None
    if model is None:
        raise BadInput(f"{where}: schema is {str(schema)[:80]!r}; dlgpu imports {BENCH_SCHEMA}, {PREDICT_SCHEMA}, "
                       f"{ADVISE_SCHEMA}, {PROBE_SCHEMA} and {EXPORT_SCHEMA} documents")
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        raise BadInput(f"{where}: {_first_error(exc)}") from None


def validate_any(doc: Any, where: str) -> list[tuple[ExportedRun | None, Document]]:
    """Every run in a file: an export bundle, or one bench/predict/advise document."""
    if isinstance(doc, dict) and doc.get("schema") == EXPORT_SCHEMA:
        try:
            bundle = ExportDoc.model_validate(doc)
        except ValidationError as exc:
            raise BadInput(f"{where}: {_first_error(exc)}") from None
        out: list[tuple[ExportedRun | None, Document]] = []
        for i, run in enumerate(bundle.runs):
            parsed = validate_document(run.document, f"{where}: runs.{i}.document")
            want = kind_of(parsed)
            if run.kind != want:
                article = "an" if want == "advise" else "a"
                raise BadInput(f"{where}: runs.{i}: kind {run.kind!r} but its document is {article} {want} document")
            out.append((run, parsed))
        return out
    return [(None, validate_document(doc, where))]


def read_import_file(path: Path) -> list[tuple[ExportedRun | None, Document]]:
    where = str(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise BadInput(f"{where}: {size:,} bytes is more than the {MAX_FILE_BYTES:,} an import accepts")
        data = path.read_bytes()
    except OSError as exc:
        raise BadInput(f"{where}: cannot read ({exc.strerror or exc})") from None
    return validate_any(parse_json_text(data, where), where)


def dump(doc: Document) -> dict[str, Any]:
    """The validated document as plain JSON values (only known fields)."""
    out: dict[str, Any] = doc.model_dump(mode="json", by_alias=True)
    return out


def finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)
