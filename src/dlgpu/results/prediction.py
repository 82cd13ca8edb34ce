"""The data model of a prediction (``dlgpu.predict/1``): one workload's step on one device dlgpu does not have
(or on this CPU), predicted by the performance model, with the basis of every figure."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .profile import usable_memory_bytes as _usable
from .vocab import PREDICT_SCHEMA


@dataclass(frozen=True)
class Prediction:
    created_at: str
    dlgpu: str
    workload: str
    task: str
    hardware: str  # the catalog id
    hardware_name: str
    hardware_kind: str  # cpu | gpu
    precision: str
    batch_size: int
    overrides: dict[str, str]
    samples_per_s: float
    step_time_s: float
    peak_mem_bytes: int
    peak_mem_basis: str
    memory_bytes: int | None  # the device's memory, where known
    device_basis: str
    bound: dict[str, float]  # share of the step time bound by compute, memory, overhead
    tensor_core_flops_share: float
    flops: float
    bytes: float
    kernels: int
    interval: dict[str, Any] | None  # {"low", "high", "basis"}: samples/s, from the held-out errors
    task_projection: dict[str, Any] | None  # {"description", "samples", "time_s"}: the real task at this speed
    peaks_flops_per_s: dict[str, float]
    bandwidth_bytes_per_s: float | None
    price_usd: float | None
    tdp_w: float | None
    ops: tuple[dict[str, Any], ...]  # the most time-consuming operators, for the roofline chart
    provenance: str
    run_id: str | None = None
    schema: str = PREDICT_SCHEMA
    extra: dict[str, Any] = field(default_factory=dict)  # fields of a stored document this version does not know

    @property
    def usable_memory_bytes(self) -> int | None:
        """What the step may use of the device's memory: on a GPU, its memory less the runtime's reserve
        (``profile.USABLE_MEMORY_FRACTION``); on a CPU, all of it."""
        if self.memory_bytes is None or self.hardware_kind == "cpu":
            return self.memory_bytes
        return _usable(self.memory_bytes)

    @property
    def fits(self) -> bool | None:
        usable = self.usable_memory_bytes
        return None if usable is None else self.peak_mem_bytes <= usable

    @property
    def task_time_s(self) -> float | None:
        return None if self.task_projection is None else float(self.task_projection["time_s"])

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "schema": self.schema, "created_at": self.created_at, "dlgpu": self.dlgpu,
            "workload": self.workload, "task": self.task, "hardware": self.hardware,
            "hardware_name": self.hardware_name, "hardware_kind": self.hardware_kind, "precision": self.precision,
            "batch_size": self.batch_size, "overrides": dict(self.overrides),
            "samples_per_s": self.samples_per_s, "step_time_s": self.step_time_s,
            "peak_mem_bytes": self.peak_mem_bytes, "peak_mem_basis": self.peak_mem_basis,
            "memory_bytes": self.memory_bytes, "fits": self.fits, "device_basis": self.device_basis,
            "bound": dict(self.bound), "tensor_core_flops_share": self.tensor_core_flops_share,
            "flops": self.flops, "bytes": self.bytes, "kernels": self.kernels, "interval": self.interval,
            "task_time_s": self.task_time_s, "task_projection": self.task_projection,
            "peaks_flops_per_s": dict(self.peaks_flops_per_s), "bandwidth_bytes_per_s": self.bandwidth_bytes_per_s,
            "price_usd": self.price_usd, "tdp_w": self.tdp_w, "ops": [dict(o) for o in self.ops],
            "provenance": self.provenance, **self.extra,
        }
        if self.run_id is not None:
            doc["run_id"] = self.run_id
        return doc


_DERIVED = frozenset({"fits", "task_time_s"})


def prediction_from_dict(d: dict[str, Any]) -> Prediction:
    """The inverse of ``Prediction.to_dict`` (for stored and imported documents)."""
    known = set(Prediction.__dataclass_fields__) - {"extra"}
    args = {k: v for k, v in d.items() if k in known}
    args["ops"] = tuple(d.get("ops") or ())
    for k in ("bandwidth_bytes_per_s", "price_usd", "tdp_w", "memory_bytes", "interval", "task_projection",
              "run_id"):
        args.setdefault(k, None)
    extra = {k: v for k, v in d.items() if k not in known and k not in _DERIVED}
    return Prediction(**args, extra=extra)
