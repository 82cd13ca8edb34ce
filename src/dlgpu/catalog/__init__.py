"""Hardware facts with provenance: GPUs, CPUs and cloud instances from the package's data files (a
``source_url`` per row) and the user's own files. Layer 1: no torch, so stored results can be priced
and compared without a GPU stack."""

from .columns import CatalogError
from .loader import Catalog, load_catalog, user_catalog_dir
from .local import describe_local_cpu, match_cpu, normalize_cpu_name, this_cpu
from .match import DeviceFacts, device_facts, estimate_cpu_tdp, match_gpu
from .specs import (
    HARDWARE_ENTRY_SCHEMA,
    HARDWARE_SCHEMA,
    KINDS,
    PRECISION_FIELDS,
    CloudInstance,
    CpuSpec,
    GpuSpec,
    HardwareEntry,
    HardwareListing,
    LocalCpu,
    is_consumer,
)

__all__ = [
    "HARDWARE_ENTRY_SCHEMA",
    "HARDWARE_SCHEMA",
    "KINDS",
    "PRECISION_FIELDS",
    "Catalog",
    "CatalogError",
    "CloudInstance",
    "CpuSpec",
    "DeviceFacts",
    "GpuSpec",
    "HardwareEntry",
    "HardwareListing",
    "LocalCpu",
    "describe_local_cpu",
    "device_facts",
    "estimate_cpu_tdp",
    "is_consumer",
    "load_catalog",
    "match_cpu",
    "match_gpu",
    "normalize_cpu_name",
    "this_cpu",
    "user_catalog_dir",
]
