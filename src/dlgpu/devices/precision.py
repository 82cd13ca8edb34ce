"""Which precisions a device can run, and why not when it cannot: the one rule, for devices present here
(``unsupported_reason``, from a ``DeviceInfo``) and for catalog devices predicted elsewhere (``predict``
describes a catalog entry as ``PrecisionFacts`` and asks ``precision_unsupported``).

``fp32`` is PyTorch's default behaviour (on Ampere+ cuDNN convolutions use TF32, matmuls do not);
``tf32`` enables TF32 for both; ``bf16``/``fp16`` are autocast mixed precision (fp16 trains with a
gradient scaler).

LLM workloads (``WEIGHT_FORMAT_FAMILIES``) store their weights in the format instead: bf16/fp16 weights and KV
cache with no autocast, and the weight formats ``int8``/``int4`` (``results.vocab.WEIGHT_PRECISIONS``: torchao
weight-only quantization computing in bf16), which no other workload is offered (``unsupported_reason`` with the
workload's family)."""

from __future__ import annotations

from dataclasses import dataclass

from dlgpu.results import PRECISIONS, DeviceInfo
from dlgpu.results.vocab import WEIGHT_PRECISIONS

WEIGHT_FORMAT_FAMILIES: tuple[str, ...] = ("llm",)
"""Workload families whose precision is the format their weights are stored in (and that run int8/int4)."""


@dataclass(frozen=True)
class PrecisionFacts:
    """What decides the precisions a device runs: its kind (cpu | cuda | rocm | mps | xpu present here; ``gpu``
    for a catalog GPU, judged by its catalog figures and compute capability), its name, its
    NVIDIA compute capability where known, and where the catalog or the driver says so, whether it has
    TF32 tensor cores and bf16 support (None: not known, judge by the compute capability)."""

    kind: str
    name: str
    compute_capability: tuple[int, int] | None = None
    tf32: bool | None = None
    bf16: bool | None = None


def parse_cc(text: str | None) -> tuple[int, int] | None:
    """ "8.6" -> (8, 6); anything else (a gfx target, None) -> None."""
    major, sep, minor = (text or "").strip().partition(".")
    if not sep or not major.isdigit() or not minor[:1].isdigit():
        return None
    return int(major), int(minor.split(".")[0])


def _cc_text(cc: tuple[int, int]) -> str:
    return f"{cc[0]}.{cc[1]}"


def _gpu(precision: str, f: PrecisionFacts) -> str | None:
    cc = f.compute_capability
    if precision == "tf32" and (f.tf32 is False or (cc is not None and cc < (8, 0))):
        return (f"tf32 needs TF32 tensor cores, NVIDIA compute capability 8.0 (Ampere) or newer; {f.name}"
                + (f" is {_cc_text(cc)}" if cc else " has none"))
    if precision == "bf16" and cc is not None and cc < (8, 0):
        return f"bf16 needs compute capability 8.0 (Ampere) or newer; {f.name} is {_cc_text(cc)}"
    if precision == "bf16" and cc is None and f.bf16 is False:
        return f"{f.name} has no bf16 figure in the catalog"
    if precision == "fp16" and cc is not None and cc < (5, 3):
        return f"fp16 arithmetic needs compute capability 5.3 or newer; {f.name} is {_cc_text(cc)}"
    return None


def precision_unsupported(precision: str, f: PrecisionFacts) -> str | None:
    """None when a device with facts ``f`` can run ``precision`` as dlgpu means it; else a one-line reason."""
    if precision == "fp32":
        return None
    if f.kind == "cpu":
        if precision == "bf16":
            return None
        if precision == "tf32":
            return ("tf32 is a mode of NVIDIA Ampere (compute capability 8.0) and newer GPUs; "
                    "dlgpu runs CPUs at fp32 and bf16")
        return ("fp16 autocast is a GPU precision (no fp16 matrix units on CPUs); "
                "dlgpu runs CPUs at fp32 and bf16")
    if precision == "tf32" and f.kind in ("rocm", "mps", "xpu"):
        return {"rocm": "tf32 is an NVIDIA mode; this is a ROCm device",
                "mps": "tf32 is an NVIDIA mode; Apple MPS has none",
                "xpu": "tf32 is an NVIDIA mode; not run on Intel XPU"}[f.kind]
    if f.kind in ("cuda", "gpu"):
        return _gpu(precision, f)
    if f.kind == "mps" and precision == "bf16" and f.bf16 is False:
        return "bf16 on MPS needs macOS 14 or newer"
    if f.kind in ("rocm", "mps", "xpu"):
        return None
    return f"unknown device kind {f.kind}"


def _weight_format(precision: str, f: PrecisionFacts, family: str | None) -> str | None:
    """Why an ``int8``/``int4`` weight format cannot run (None when it can): LLM workloads only; the activations
    are bf16, so the device must run bf16; int4 needs a torchao kernel for the device in the installed torchao."""
    if family not in WEIGHT_FORMAT_FAMILIES:
        return (f"{precision} is an LLM weight format (torchao weight-only quantization of the linear layers), "
                f"offered only to LLM workloads (family llm); {family or 'this'} workloads run at "
                f"{', '.join(PRECISIONS)}")
    why = precision_unsupported("bf16", f)
    if why:
        return f"{precision} weights compute in bf16, and {why}"
    if precision == "int4":
        from dlgpu.workloads.models.llm import int4_unavailable  # torchao, imported only when int4 is asked for

        return int4_unavailable(f.kind)
    return None


def unsupported_reason(device: DeviceInfo, precision: str, family: str | None = None) -> str | None:
    """None when ``device`` (present on this machine) can run ``precision`` for a workload of ``family`` (None: any
    workload that is not an LLM); else a one-line reason."""
    kind = "rocm" if device.kind == "cuda" and device.backend == "rocm" else device.kind
    bf16 = device.details.get("bf16") if device.kind == "mps" else None
    facts = PrecisionFacts(kind, device.name, parse_cc(device.compute_capability), bf16=bf16)
    if precision in WEIGHT_PRECISIONS:
        return _weight_format(precision, facts, family)
    why = precision_unsupported(precision, facts)
    if why and family in WEIGHT_FORMAT_FAMILIES and kind == "cpu" and precision == "fp16":
        return ("fp16 weights: CPUs have no fp16 matrix units; dlgpu runs LLMs on CPUs with fp32 and bf16 weights "
                "and the int8/int4 weight formats")
    return why
