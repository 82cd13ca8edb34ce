"""The data model of ``dlgpu probe`` (``dlgpu.probe/1``): this machine's real ceilings, measured, each next to the
figure it is a fraction of (the catalog's datasheet figure, or for an unmatched CPU the estimated peak), and the
ceilings a prediction for this machine takes from it (``MeasuredCeilings``).

Every figure keeps its raw per-step times (``StepStats``); its value is derived from them, never stored instead
of them: a rate is the work of one timed step (FLOPs, bytes read plus written, bytes moved) over the median step
time; an overhead is the median step time over the calls in one step. SI units: FLOP/s, bytes/s, seconds."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .bench import DeviceInfo, MachineInfo, StepStats, machine_from_dict, quartiles
from .vocab import PROBE_SCHEMA

PROBE_KINDS: tuple[str, ...] = ("gemm", "copy", "triad", "optimizer", "h2d", "d2h", "dispatch", "launch")
"""What a probe figure measures: ``gemm`` (square matrix multiply, 2 m n k FLOPs), ``copy`` (b = a: bytes read +
written = 2 x the array) and ``triad`` (a = b + s c: 3 x the array), STREAM-style; ``optimizer`` (one
``torch.optim.AdamW`` step over one large tensor: parameters updated per second, per dtype); ``h2d``/``d2h`` (host
to device and back, pinned or pageable host memory: the bytes moved once); ``dispatch`` (one eager op on
1-element tensors, per call) and ``launch`` (one empty GPU kernel, per call)."""

RATE_UNITS: dict[str, str] = {"gemm": "FLOP/s", "copy": "B/s", "triad": "B/s", "optimizer": "param/s",
                              "h2d": "B/s", "d2h": "B/s", "dispatch": "s", "launch": "s"}
"""The unit of each kind's value: a rate, or seconds per call for the overheads. int8 GEMMs count integer
operations the same way (2 m n k)."""

GEMM_PRECISIONS: tuple[str, ...] = ("fp32", "tf32", "bf16", "fp16", "int8")
"""The matrix-multiply precisions a probe tries, in the order it lists them."""


def is_rate(what: str) -> bool:
    return RATE_UNITS[what] != "s"


@dataclass(frozen=True)
class ProbeFigure:
    """One measured ceiling at one setting (a GEMM size, an array size, a transfer size), with its raw samples.

    ``work_per_step``: FLOPs, bytes (read + written for copy and triad; moved once for transfers) or calls in one
    timed step (``reps_per_step`` kernels, enough that a step outlasts the clock's and the synchronization's
    overhead). ``peak``/``peak_basis``: the figure it is compared with, in the same unit, and where it comes from
    (``peak_short``: the same in a few words, for a table)."""

    device: str
    what: str
    precision: str | None
    size: int | None
    work_per_step: float
    reps_per_step: int
    step_time: StepStats
    warmup_steps: int = 0
    stop_reason: str | None = None
    pinned: bool | None = None
    contended: bool | None = None
    contention: dict[str, Any] | None = None
    peak: float | None = None
    peak_basis: str = ""
    peak_short: str = ""
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def unit(self) -> str:
        return RATE_UNITS[self.what]

    @property
    def value(self) -> float:
        """The rate (work over the median step time), or for an overhead the seconds per call."""
        med = self.step_time.median
        return self.work_per_step / med if is_rate(self.what) else med / self.work_per_step

    @property
    def spread(self) -> tuple[float, float]:
        """(low, high) of the value over the middle half of the steps (from the step times' quartiles)."""
        q1, _, q3 = quartiles(self.step_time.samples_s)
        if is_rate(self.what):
            return self.work_per_step / q3, self.work_per_step / q1
        return q1 / self.work_per_step, q3 / self.work_per_step

    @property
    def fraction_of_peak(self) -> float | None:
        return self.value / self.peak if self.peak and is_rate(self.what) else None

    @property
    def label(self) -> str:
        """``fp32 GEMM``, ``copy``, ``h2d pinned``, ``dispatch``."""
        if self.what == "gemm":
            return f"{self.precision} GEMM"
        if self.what == "optimizer":
            return f"{self.precision} AdamW"
        if self.what in ("h2d", "d2h"):
            return f"{self.what} {'pinned' if self.pinned else 'pageable'}"
        return self.what

    def to_dict(self) -> dict[str, Any]:
        low, high = self.spread
        return {"device": self.device, "what": self.what, "precision": self.precision, "size": self.size,
                "pinned": self.pinned, "work_per_step": self.work_per_step, "reps_per_step": self.reps_per_step,
                "unit": self.unit, "value": self.value, "low": low, "high": high,
                "step_time_s": self.step_time.to_dict(), "warmup_steps": self.warmup_steps,
                "stop_reason": self.stop_reason, "contended": self.contended, "contention": self.contention,
                "peak": self.peak, "peak_basis": self.peak_basis, "peak_short": self.peak_short,
                "fraction_of_peak": self.fraction_of_peak, "settings": dict(self.settings)}


def figure_from_dict(d: Mapping[str, Any]) -> ProbeFigure:
    """The inverse of ``ProbeFigure.to_dict`` (derived fields are recomputed from the samples)."""
    return ProbeFigure(device=d["device"], what=d["what"], precision=d.get("precision"), size=d.get("size"),
                       work_per_step=float(d["work_per_step"]), reps_per_step=int(d.get("reps_per_step") or 1),
                       step_time=StepStats(tuple(float(s) for s in d["step_time_s"]["samples"])),
                       warmup_steps=int(d.get("warmup_steps") or 0), stop_reason=d.get("stop_reason"),
                       pinned=d.get("pinned"), contended=d.get("contended"), contention=d.get("contention"),
                       peak=d.get("peak"), peak_basis=d.get("peak_basis") or "", peak_short=d.get("peak_short") or "",
                       settings=dict(d.get("settings") or {}))


@dataclass(frozen=True)
class Skipped:
    """A figure not measured on a device, and why (a precision the device has no fast path for, no GPU here)."""

    device: str
    what: str
    precision: str | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"device": self.device, "what": self.what, "precision": self.precision, "reason": self.reason}


def _best(figures: list[ProbeFigure]) -> ProbeFigure:
    """The ceiling among figures of one kind: the highest rate, or the lowest overhead."""
    return max(figures, key=lambda f: f.value) if is_rate(figures[0].what) else min(figures, key=lambda f: f.value)


@dataclass(frozen=True)
class ProbeReport:
    """One ``dlgpu probe`` run: the machine (its fingerprint), the devices probed and every figure measured on
    them, what was skipped and why, and why absent backends are absent."""

    created_at: str
    dlgpu: str
    machine: MachineInfo
    devices: tuple[DeviceInfo, ...]
    quick: bool
    figures: tuple[ProbeFigure, ...]
    skipped: tuple[Skipped, ...] = ()
    absent: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    interrupted: bool = False
    run_id: str | None = None
    schema: str = PROBE_SCHEMA

    @property
    def contended(self) -> bool:
        """Whether any figure was measured while other processes took their share of the CPUs."""
        return any(f.contended for f in self.figures)

    def of(self, device: str) -> list[ProbeFigure]:
        return [f for f in self.figures if f.device == device]

    def ceilings(self, device: str) -> dict[str, ProbeFigure]:
        """The device's ceiling per figure kind: ``gemm:fp32`` (the best size), ``copy``, ``triad``,
        ``h2d:pinned``, ``dispatch``, ... (the best of each kind's settings)."""
        groups: dict[str, list[ProbeFigure]] = {}
        for f in self.of(device):
            key = (f"{f.what}:{f.precision}" if f.what in ("gemm", "optimizer") else
                   f"{f.what}:{'pinned' if f.pinned else 'pageable'}" if f.what in ("h2d", "d2h") else f.what)
            groups.setdefault(key, []).append(f)
        return {k: _best(v) for k, v in groups.items()}

    def to_dict(self) -> dict[str, Any]:
        ceilings = {}
        for dev in self.devices:
            ceilings[dev.id] = {k: {"value": f.value, "unit": f.unit, "size": f.size, "peak": f.peak,
                                    "fraction_of_peak": f.fraction_of_peak, "peak_short": f.peak_short,
                                    "contended": f.contended}
                                for k, f in self.ceilings(dev.id).items()}
        return {"schema": self.schema, **({"run_id": self.run_id} if self.run_id else {}),
                "created_at": self.created_at, "dlgpu": self.dlgpu, "interrupted": self.interrupted,
                "quick": self.quick, "contended": self.contended, "machine": self.machine.to_dict(),
                "devices": [d.id for d in self.devices], "figures": [f.to_dict() for f in self.figures],
                "ceilings": ceilings, "skipped": [s.to_dict() for s in self.skipped], "absent": dict(self.absent),
                "notes": list(self.notes)}


def probe_from_dict(d: Mapping[str, Any]) -> ProbeReport:
    """The inverse of ``ProbeReport.to_dict`` (ceilings and fractions are recomputed from the figures)."""
    machine = machine_from_dict(dict(d["machine"]))
    probed = list(d.get("devices") or ())
    devices = tuple(dev for dev in machine.devices if dev.id in probed)
    return ProbeReport(created_at=d["created_at"], dlgpu=d.get("dlgpu") or "unknown", machine=machine,
                       devices=devices, quick=bool(d.get("quick")),
                       figures=tuple(figure_from_dict(f) for f in d.get("figures") or ()),
                       skipped=tuple(Skipped(s["device"], s["what"], s.get("precision"), s["reason"])
                                     for s in d.get("skipped") or ()),
                       absent=dict(d.get("absent") or {}), notes=tuple(d.get("notes") or ()),
                       interrupted=bool(d.get("interrupted")), run_id=d.get("run_id"))


# --- what a prediction for this machine takes from a probe --------------------------------------------------------

@dataclass(frozen=True)
class MeasuredCeilings:
    """A device's ceilings from a stored probe, as ``predict`` uses them: the memory bandwidth (the STREAM triad,
    bytes read + written; the copy where no triad was measured) and the best GEMM rate per precision, with the run
    they come from. ``basis`` says all of it in words, for the prediction's basis."""

    device: str
    run_id: str | None
    created_at: str
    quick: bool
    memory_bandwidth_bytes_per_s: float | None
    bandwidth_kind: str | None  # "triad" | "copy"
    bandwidth_detail: str
    gemm_flops_per_s: dict[str, float] = field(default_factory=dict)
    gemm_sizes: dict[str, int] = field(default_factory=dict)
    optimizer_params_per_s: dict[str, float] = field(default_factory=dict)
    """torch AdamW's update rate per dtype (``optimizer`` figures): parameters per second."""

    @property
    def optimizer_basis(self) -> str:
        if not self.optimizer_params_per_s:
            return "optimizer update rate: not probed"
        parts = [f"{p} {1e9 / v:.2f} ns per parameter" for p, v in self.optimizer_params_per_s.items()]
        return f"torch AdamW step probed ({self.source}): {', '.join(parts)}"

    @property
    def source(self) -> str:
        run = f"run {self.run_id[:8]}" if self.run_id else "an unsaved run"
        return f"`dlgpu probe` {run} of {self.created_at[:10]}{' (--quick)' if self.quick else ''}"

    @property
    def bandwidth_basis(self) -> str:
        if not self.memory_bandwidth_bytes_per_s:
            return f"memory bandwidth: not probed ({self.source} measured no copy or triad)"
        return (f"memory bandwidth: probed {self.memory_bandwidth_bytes_per_s / 1e9:.1f} GB/s STREAM "
                f"{self.bandwidth_kind} ({self.bandwidth_detail}), {self.source}")

    @property
    def gemm_basis(self) -> str:
        if not self.gemm_flops_per_s:
            return "measured GEMM ceilings: none probed"
        parts = [f"{p} {v / 1e9:,.0f} G{'OP' if p == 'int8' else 'FLOP'}/s (n={self.gemm_sizes.get(p)})"
                 for p, v in self.gemm_flops_per_s.items()]
        return f"measured GEMM ceilings ({self.source}): {', '.join(parts)}"


def ceilings_from_doc(doc: Mapping[str, Any], device: str = "cpu") -> MeasuredCeilings | None:
    """The ceilings of ``device`` in a stored ``dlgpu.probe/1`` document; None where it probed nothing there."""
    rep = probe_from_dict(doc)
    best = rep.ceilings(device)
    if not best:
        return None
    bw = best.get("triad") or best.get("copy")
    detail = ""
    if bw is not None:
        threads = bw.settings.get("threads")
        array = bw.settings.get("array_bytes")
        detail = "bytes read + written" + (f", {threads} threads" if threads else "") + (
            f", arrays of {array / 2**20:,.0f} MiB" if array else "")
    gemm = {k.split(":", 1)[1]: f for k, f in best.items() if k.startswith("gemm:")}
    return MeasuredCeilings(device=device, run_id=rep.run_id, created_at=rep.created_at, quick=rep.quick,
                            memory_bandwidth_bytes_per_s=None if bw is None else bw.value,
                            bandwidth_kind=None if bw is None else bw.what, bandwidth_detail=detail,
                            gemm_flops_per_s={p: f.value for p, f in gemm.items()},
                            gemm_sizes={p: int(f.size or 0) for p, f in gemm.items()},
                            optimizer_params_per_s={k.split(":", 1)[1]: f.value for k, f in best.items()
                                                    if k.startswith("optimizer:")})
