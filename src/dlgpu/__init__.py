"""dlgpu: does this deep-learning workload need a GPU, and which one? Answered by measurement.

The public surface is below: the api's functions (``bench``, ``predict``, ``advise``, ...) and the data model they
return. Importing ``dlgpu`` imports no torch and nothing heavy: the api and the data model are loaded on first
use (PEP 562). ``dlgpu.cli`` is for the command line only."""

from __future__ import annotations

from typing import Any

from dlgpu.errors import BadInput, DlgpuError
from dlgpu.home import dlgpu_version

__version__ = dlgpu_version()

_API = ("advise", "analysis", "analyze", "bench", "calibrate", "compare", "custom_workload", "export_runs",
        "hardware_list", "hardware_show", "import_files", "list_runs", "predict", "save_advice", "save_prediction",
        "show_run", "validate")
_RESULTS = ("Advice", "BenchReport", "BenchResult", "Candidate", "DeviceInfo", "OpProfile", "Prediction", "StepStats",
            "Verdict")

__all__ = [
    "Advice",
    "BadInput",
    "BenchReport",
    "BenchResult",
    "Candidate",
    "DeviceInfo",
    "DlgpuError",
    "OpProfile",
    "Prediction",
    "StepStats",
    "Verdict",
    "__version__",
    "advise",
    "analysis",
    "analyze",
    "bench",
    "calibrate",
    "compare",
    "custom_workload",
    "export_runs",
    "hardware_list",
    "hardware_show",
    "import_files",
    "list_runs",
    "predict",
    "save_advice",
    "save_prediction",
    "show_run",
    "validate",
]


def __getattr__(name: str) -> Any:
    if name in _API:
        from dlgpu import api

        return getattr(api, name)
    if name in _RESULTS:
        from dlgpu import results

        return getattr(results, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
