"""Operator profiles: what one step of a workload does, operator by operator (``analyze`` traces them on fake
tensors; ``predict`` turns them into time), and what the prediction engine is handed to get them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from .vocab import ANALYZE_SCHEMA


@dataclass(frozen=True)
class OpRecord:
    """One distinct operator call shape, with how often it ran in the step."""

    op: str
    # kind: matmul | conv | attention | norm | softmax | reduction | embedding | elementwise | optimizer | copy | other
    kind: str
    phase: str  # forward | backward | optimizer
    dtype: str  # the dtype of the op's main output
    flops: float  # per call
    bytes_read: float  # per call
    bytes_written: float  # per call
    count: int
    launches: int = 1  # GPU kernels per call (a multi-tensor ``_foreach_`` op launches several)
    gemm: tuple[int, ...] | None = None  # (batch, M, N, K) of a matrix product, convolution or attention

    @property
    def bytes(self) -> float:
        return self.bytes_read + self.bytes_written

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class OpProfile:
    workload: str
    task: str
    precision: str
    batch_size: int
    params: dict[str, Any]
    parameters: int
    ops: tuple[OpRecord, ...]
    activation_bytes: int | None = None
    state_bytes: int | None = None  # weights (+ gradients and optimizer state when training)
    cache_bytes: int | None = None  # decode: the KV cache of context_len tokens the step attends to

    @property
    def flops(self) -> float:
        return sum(o.flops * o.count for o in self.ops)

    @property
    def bytes(self) -> float:
        return sum(o.bytes * o.count for o in self.ops)

    @property
    def kernels(self) -> int:
        return sum(o.count * o.launches for o in self.ops)

    def by_kind(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for o in self.ops:
            d = out.setdefault(o.kind, {"flops": 0.0, "bytes": 0.0, "kernels": 0})
            d["flops"] += o.flops * o.count
            d["bytes"] += o.bytes * o.count
            d["kernels"] += o.count * o.launches
        return out

    def without_phase(self, phase: str) -> OpProfile:
        """The same step without one phase (published figures that timed forward+backward only)."""
        from dataclasses import replace

        return replace(self, ops=tuple(o for o in self.ops if o.phase != phase))

    def to_dict(self) -> dict[str, Any]:
        return {
            "workload": self.workload, "task": self.task, "precision": self.precision,
            "batch_size": self.batch_size, "params": dict(self.params), "parameters": self.parameters,
            "flops": self.flops, "bytes": self.bytes, "kernels": self.kernels,
            "activation_bytes": self.activation_bytes, "state_bytes": self.state_bytes,
            "cache_bytes": self.cache_bytes,
            "by_kind": self.by_kind(), "ops": [o.to_dict() for o in self.ops],
        }


def profile_from_dict(d: dict[str, Any]) -> OpProfile:
    """The inverse of ``OpProfile.to_dict`` (the derived totals are recomputed from the operators)."""
    def record(o: dict[str, Any]) -> OpRecord:
        fields: dict[str, Any] = {k: o[k] for k in OpRecord.__dataclass_fields__ if k in o}
        if fields.get("gemm") is not None:  # JSON keeps a tuple as a list
            fields["gemm"] = tuple(fields["gemm"])
        return OpRecord(**fields)

    ops = tuple(record(o) for o in d["ops"])
    return OpProfile(workload=d["workload"], task=d["task"], precision=d["precision"], batch_size=d["batch_size"],
                     params=dict(d["params"]), parameters=d["parameters"], ops=ops,
                     activation_bytes=d.get("activation_bytes"), state_bytes=d.get("state_bytes"),
                     cache_bytes=d.get("cache_bytes"))


USABLE_MEMORY_FRACTION = 0.9
"""Share of a device's memory a job may count on; the rest is the runtime's reserve: on a GPU the CUDA context
and the caching allocator's fragmentation (and spikes above the traced need), on the CPU everything else running.
dlgpu's own planning rule, not a published figure: ``dlgpu bench`` plans its runs with it (``measure.plan``),
and ``predict``'s fit, ``advise`` and the largest-batch search count a GPU's memory with it
(``usable_memory_bytes``), so that what advise recommends is what bench would run."""

RESERVE_BASIS = (f"{1 - USABLE_MEMORY_FRACTION:.0%} of the device's memory kept for the CUDA context and the "
                 "allocator's fragmentation: the share `dlgpu bench` plans with")
"""Where a GPU's reserve comes from, in words, for the figures and reasons that state it."""


def usable_memory_bytes(memory_bytes: int) -> int:
    """What a job may use of a GPU's ``memory_bytes``: its memory minus the runtime's reserve."""
    return int(memory_bytes * USABLE_MEMORY_FRACTION)


def memory_need(prof: OpProfile) -> int:
    """Bytes a step needs at its peak: weights, gradients and optimizer state, activations kept for backward,
    the KV cache (decode), and the largest single operator output alive on top of them (workspace)."""
    workspace = max((o.bytes_written for o in prof.ops), default=0.0)
    return int((prof.state_bytes or 0) + (prof.activation_bytes or 0) + (prof.cache_bytes or 0) + workspace)


class ProfileSource(Protocol):
    """Where operator profiles come from (``analyze.profiles.profile``: traced once, then cached): the seam
    through which ``predict`` gets them without importing ``analyze``."""

    def __call__(self, workload: str, task: str = "train", precision: str = "fp32", batch_size: int | None = None,
                 overrides: Mapping[str, str] | None = None, optimizer_step: bool = True,
                 target: str = "gpu") -> OpProfile: ...


@dataclass(frozen=True)
class Analysis:
    """``dlgpu.analyze/1``: an operator profile with the unit each operator runs on (``op_units``, in the order of
    ``profile.ops``) and the memory it needs, and the largest batch that fits a memory size where one was asked
    for (``{"memory_of", "memory_bytes", "batch_size"}``)."""

    profile: OpProfile
    op_units: tuple[str, ...]
    largest_batch: dict[str, Any] | None = None

    @property
    def memory_need_bytes(self) -> int:
        return memory_need(self.profile)

    @property
    def tensor_core_flops_share(self) -> float:
        tc = sum(o.flops * o.count for o, u in zip(self.profile.ops, self.op_units, strict=True) if u != "vector")
        return tc / (self.profile.flops or 1)

    def to_dict(self) -> dict[str, Any]:
        doc = {"schema": ANALYZE_SCHEMA, **self.profile.to_dict(), "memory_need_bytes": self.memory_need_bytes,
               "largest_batch": self.largest_batch}
        for op, unit in zip(doc["ops"], self.op_units, strict=True):
            op["unit"] = unit
        return doc
