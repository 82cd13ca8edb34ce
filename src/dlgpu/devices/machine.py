"""Machine and software facts recorded with every run (versions decide throughput as much as silicon)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import socket
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from dlgpu.home import cache_dir, write_json_atomic
from dlgpu.results import DeviceInfo, MachineInfo, machine_from_dict

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


PROBE_FILE = "machine.json"


def _probe_key() -> dict[str, Any]:
    """What a cached probe of this machine is valid for: this boot, and the software stack and device visibility
    that decide what ``detect`` would find."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = None
    return {"boot_id": boot, "platform": platform.platform(), "python": sys.version.split()[0],
            "dists": {d: _version(d) for d in ("dlgpu", "torch", "torchvision", "transformers", "nvidia-ml-py")},
            "env": {k: os.environ.get(k) for k in ("CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES",
                                                   "ROCR_VISIBLE_DEVICES", "ZE_AFFINITY_MASK")}}


def current_machine(include_hostname: bool = False) -> MachineInfo:
    """This machine as a run records it (its devices and software stack), probed once per boot and stack and
    kept in the cache dir, so that commands needing only its fingerprint (``predict``, ``advise``) import no
    torch once it was probed. Without torch installed: the CPU alone, and the torch fields say so."""
    key = _probe_key()
    path = cache_dir() / PROBE_FILE
    machine = None
    try:
        doc = json.loads(path.read_text())
        if doc.get("key") == key:
            machine = machine_from_dict(doc["machine"])
    except (OSError, ValueError, KeyError, TypeError):
        machine = None
    if machine is None:
        machine = _probe()
        with contextlib.suppress(OSError, ValueError, TypeError):
            write_json_atomic(path, {"key": key, "machine": machine.to_dict()})
    return dataclasses.replace(machine, hostname=socket.gethostname() if include_hostname else None)


def _probe() -> MachineInfo:
    from .detect import detect, probe_cpu

    try:
        present, _absent = detect()
    except ImportError:  # no torch here: the CPU is all dlgpu can describe
        cpu = probe_cpu()
        return MachineInfo(hostname=None, platform=platform.platform(), python=sys.version.split()[0],
                           torch="not installed", torchvision=None, transformers=None, torch_cuda=None,
                           torch_hip=None, cudnn=None, dlgpu=_version("dlgpu") or "unknown", cpu_flags=cpu_flags(),
                           devices=(cpu,))
    return machine_info(present)
