"""Which precisions a device can run, and why not when it cannot.

``fp32`` is PyTorch's default behaviour (on Ampere+ cuDNN convolutions use TF32, matmuls do not);
``tf32`` enables TF32 for both; ``bf16``/``fp16`` are autocast mixed precision (fp16 trains with a
gradient scaler)."""

from __future__ import annotations

from dlgpu.results import DeviceInfo


def _cc(device: DeviceInfo) -> tuple[int, int] | None:
    if device.compute_capability is None:
        return None
    major, minor = device.compute_capability.split(".")[:2]
    return int(major), int(minor)


def unsupported_reason(device: DeviceInfo, precision: str) -> str | None:
    """None when ``device`` can run ``precision``; else a one-line reason."""
    if precision == "fp32":
        return None
    kind = device.kind
    if kind == "cpu":
        if precision == "bf16":
            return None
        if precision == "tf32":
            return "tf32 is a mode of NVIDIA Ampere (compute capability 8.0) and newer GPUs; CPUs have none"
        return "fp16 autocast is a GPU precision (no fp16 matrix units on CPUs); use bf16 on the CPU"
    if kind == "cuda":
        cc = _cc(device)
        if device.backend == "rocm":
            if precision == "tf32":
                return "tf32 is an NVIDIA mode; this is a ROCm device"
            return None
        if precision in ("tf32", "bf16") and cc is not None and cc < (8, 0):
            return (f"{precision} needs compute capability 8.0 (Ampere) or newer; "
                    f"{device.name} is {device.compute_capability}")
        if precision == "fp16" and cc is not None and cc < (5, 3):
            return (f"fp16 arithmetic needs compute capability 5.3 or newer; "
                    f"{device.name} is {device.compute_capability}")
        return None
    if kind == "mps":
        if precision == "tf32":
            return "tf32 is an NVIDIA mode; Apple MPS has none"
        if precision == "bf16" and device.details.get("bf16") is False:
            return "bf16 on MPS needs macOS 14 or newer"
        return None
    if kind == "xpu":
        if precision == "tf32":
            return "tf32 is an NVIDIA mode; not run on Intel XPU"
        return None
    return f"unknown device kind {kind}"
