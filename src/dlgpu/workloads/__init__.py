"""The workload registry and the workloads dlgpu knows: what to measure."""

from .base import PlainContext, StepContext, SupervisedWorkload, WorkloadInstance
from .registry import (
    DEFAULT_SUITE,
    Param,
    TaskFacts,
    WorkloadSpec,
    get_workload,
    list_workloads,
    register,
    register_workload,
)

__all__ = [
    "DEFAULT_SUITE",
    "Param",
    "PlainContext",
    "StepContext",
    "SupervisedWorkload",
    "TaskFacts",
    "WorkloadInstance",
    "WorkloadSpec",
    "get_workload",
    "list_workloads",
    "register",
    "register_workload",
]
