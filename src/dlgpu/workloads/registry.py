"""The workload registry: named, parametrized workloads with the facts of the real task they stand for.

Modelled on timm's registry: ``@register_workload`` on a factory, ``list_workloads("resnet*")``,
``get_workload(name)``; every family has a tiny ``test_*`` variant for CI."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import Any

from dlgpu.errors import BadInput

from .spec import (
    DECODE_BATCH,
    Factory,
    Param,
    ParamValue,
    TaskFacts,
    WorkloadSpec,
    check_task,
    task_unsupported_reason,
)

__all__ = [
    "DECODE_BATCH",
    "DEFAULT_SUITE",
    "Factory",
    "Param",
    "ParamValue",
    "TaskFacts",
    "WorkloadSpec",
    "check_task",
    "get_workload",
    "list_workloads",
    "register",
    "register_workload",
    "supporting",
    "task_unsupported_reason",
]


def supporting(task: str) -> str:
    """The registered workloads that can run ``task``, comma-separated (for messages)."""
    return ", ".join(s.name for s in list_workloads() if s.supports(task)) or "none"


_REGISTRY: dict[str, WorkloadSpec] = {}

DEFAULT_SUITE: tuple[str, ...] = ("resnet50", "inception_v3", "ssd300", "bert_base", "lstm_lm", "dcgan")


def register(spec: WorkloadSpec) -> WorkloadSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"workload {spec.name!r} registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def register_workload(**kwargs: Any) -> Callable[[Factory], Factory]:
    """Decorator: ``@register_workload(name=..., family=..., ...)`` on a factory ``(params) -> instance``."""

    def wrap(factory: Factory) -> Factory:
        register(WorkloadSpec(factory=factory, **kwargs))
        return factory

    return wrap


def _load_builtin() -> None:
    # Importing the family modules registers their workloads.
    from . import detection, generative, language, llm, rnn, tabular, vision  # noqa: F401


def list_workloads(pattern: str = "*", include_tiny: bool = True) -> list[WorkloadSpec]:
    _load_builtin()
    return [
        s
        for name, s in sorted(_REGISTRY.items())
        if fnmatch.fnmatch(name, pattern) and (include_tiny or not s.tiny)
    ]


def get_workload(name: str) -> WorkloadSpec:
    _load_builtin()
    try:
        return _REGISTRY[name]
    except KeyError:
        valid = ", ".join(s.name for s in list_workloads(include_tiny=False))
        raise BadInput(f"unknown workload {name!r} (valid: {valid}, or a test_* variant; "
                       "see `dlgpu workloads`)") from None
