"""dlgpu: does this deep-learning workload need a GPU, and which one? Answered by measurement.

The public surface is the API below; ``dlgpu.cli`` is for the command line only."""

from importlib import metadata as _metadata

from dlgpu.api import bench
from dlgpu.errors import BadInput, DlgpuError
from dlgpu.results import BenchReport, BenchResult, DeviceInfo, StepStats

try:
    __version__ = _metadata.version("dlgpu")
except _metadata.PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0+unknown"

__all__ = [
    "BadInput",
    "BenchReport",
    "BenchResult",
    "DeviceInfo",
    "DlgpuError",
    "StepStats",
    "__version__",
    "bench",
]
