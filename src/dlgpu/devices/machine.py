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
    )
