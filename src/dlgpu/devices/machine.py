"""Machine and software facts recorded with every run (versions decide throughput as much as silicon)."""

from __future__ import annotations

import platform
import socket
import sys
from importlib import metadata

from dlgpu.results import DeviceInfo, MachineInfo

from .cpu import cpu_flags


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def gpu_driver(devices: list[DeviceInfo]) -> str | None:
    """The GPU kernel driver's version: NVML's for NVIDIA, amdsmi's for AMD; None where neither answers."""
    backends = {d.backend for d in devices}
    if "cuda" in backends:
        try:
            import pynvml

            pynvml.nvmlInit()
            try:
                v = pynvml.nvmlSystemGetDriverVersion()
                return f"nvidia {v.decode() if isinstance(v, bytes) else v}"
            finally:
                pynvml.nvmlShutdown()
        except Exception:
            return None
    if "rocm" in backends:
        try:
            import amdsmi

            amdsmi.amdsmi_init()
            try:
                handle = amdsmi.amdsmi_get_processor_handles()[0]
                return f"amdgpu {amdsmi.amdsmi_get_gpu_driver_info(handle).get('driver_version')}"
            finally:
                amdsmi.amdsmi_shut_down()
        except Exception:
            return None
    return None


def machine_info(devices: list[DeviceInfo], include_hostname: bool = False) -> MachineInfo:
    import torch

    try:
        cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    except Exception:
        cudnn = None
    return MachineInfo(
        hostname=socket.gethostname() if include_hostname else None,
        platform=platform.platform(),
        python=sys.version.split()[0],
        torch=torch.__version__,
        torchvision=_version("torchvision"),
        transformers=_version("transformers"),
        torch_cuda=torch.version.cuda,
        torch_hip=getattr(torch.version, "hip", None),
        cudnn=cudnn,
        dlgpu=_version("dlgpu") or "unknown",
        cpu_flags=cpu_flags(),
        devices=tuple(devices),
        gpu_driver=gpu_driver(devices),
    )
