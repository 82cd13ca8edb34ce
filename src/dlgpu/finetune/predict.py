"""``dlgpu predict MODEL --task finetune --method M [--set k=v ...] -b MICRO -H GPU``: a fine-tuning job on a catalog
GPU (or several), or on a CPU, predicted: its memory on each GPU by component (``memory``), whether it fits, the
largest micro-batch and sequence that do, what to change where it does not, and the step time (``perf``), tokens/s
and the job's time. No torch here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from dlgpu.catalog import Catalog, GpuSpec
from dlgpu.errors import BadInput
from dlgpu.home import dlgpu_version, utc_now
from dlgpu.predict.roofline import Calibration
from dlgpu.results import RESERVE_BASIS, usable_memory_bytes

from .config import FinetuneConfig, parse_finetune
from .memory import Memory, Traces, finetune_memory, largest_micro_batch, largest_seq_len
from .model import FtModel, resolve_finetune_model
from .perf import StepProfiles, StepTime, step_time, traced_profile

FINETUNE_PREDICT_SCHEMA = "dlgpu.finetune-predict/1"
JOB_KEYS = ("samples", "epochs")
"""``--set`` keys of ``dlgpu predict --task finetune`` besides the job's settings: the job's size, for its time."""


def resolve_device(catalog: Catalog, hardware: str, ceilings: Any = None) -> tuple[GpuSpec, int | None, str]:
    """(device in the roofline's terms, its memory, basis): a catalog GPU or CPU, or ``local`` (this CPU, with this
    machine's probed ceilings where ``ceilings``, a ``results.probe.MeasuredCeilings``, is given)."""
    from dlgpu.predict.targets import prediction_device

    try:
        return prediction_device(hardware, catalog, ceilings)
    except KeyError:
        raise BadInput(f"unknown hardware {hardware!r} (see `dlgpu hardware list`)", param="hardware") from None


def usable_of(device: GpuSpec, memory_bytes: int | None) -> int | None:
    """A GPU's memory less the runtime's reserve; a CPU's memory whole."""
    if memory_bytes is None:
        return None
    return memory_bytes if device.kind == "cpu" else usable_memory_bytes(memory_bytes)


def job_size(cfg: FinetuneConfig) -> tuple[float | None, float]:
    """(samples, epochs) from ``--set samples=N epochs=E`` (kept in ``cfg.extra``)."""
    def number(key: str) -> float | None:
        if key not in cfg.extra:
            return None
        try:
            v = float(cfg.extra[key])
        except ValueError:
            raise BadInput(f"--set {key}={cfg.extra[key]}: must be a positive number", param="overrides") from None
        if not v > 0:
            raise BadInput(f"--set {key}={cfg.extra[key]}: must be a positive number", param="overrides")
        return v

    return number("samples"), number("epochs") or 1.0


def check_job(model: FtModel, cfg: FinetuneConfig, device: GpuSpec) -> None:
    if cfg.seq_len > model.max_positions:
        raise BadInput(f"--set seq_len={cfg.seq_len}: {model.id} takes at most {model.max_positions} tokens",
                       param="overrides")
    if device.kind == "cpu" and cfg.gpus > 1:
        raise BadInput(f"--set gpus={cfg.gpus}: a CPU is predicted as one device", param="overrides")


def evaluate(model: FtModel, cfg: FinetuneConfig, device: GpuSpec, cal: Calibration,
             catalog: Catalog, traces: Traces | None = None,
             profiles: StepProfiles | None = None) -> tuple[Memory, StepTime]:
    return (finetune_memory(model, cfg, traces, cpu=device.kind == "cpu"),
            step_time(model, cfg, device, cal, catalog, traced_profile(profiles, model, cfg, device)))


SUGGESTION_GPUS = (2, 4, 8)


def suggestions(model: FtModel, cfg: FinetuneConfig, device: GpuSpec, usable: int, cal: Calibration,
                catalog: Catalog, traces: Traces | None = None,
                profiles: StepProfiles | None = None) -> list[dict[str, Any]]:
    """What would make the job fit ``usable`` bytes per device: each change alone, and with checkpointing where
    alone it does not; each with its peak, whether it fits and its step time (from its own traced profile where
    ``profiles`` gives one: a few traces of a second or less each, cached)."""
    tries: list[tuple[str, FinetuneConfig]] = []
    if not cfg.checkpointing:
        tries.append(("--set checkpointing=true", replace(cfg, checkpointing=True)))
    if cfg.micro_batch > 1:
        tries.append((f"-b 1 --set grad_accum={cfg.grad_accum * cfg.micro_batch} (same samples per step)",
                      replace(cfg, micro_batch=1, grad_accum=cfg.grad_accum * cfg.micro_batch)))
    if cfg.optimizer == "adamw" and cfg.method in ("full", "freeze"):
        tries.append(("--set optimizer=adamw8bit", replace(cfg, optimizer="adamw8bit")))
    if cfg.trains_adapters and cfg.lora_rank > 1:
        r = max(1, cfg.lora_rank // 2)
        tries.append((f"--set lora_rank={r}", replace(cfg, lora_rank=r)))
    if cfg.method in ("full", "freeze"):
        tries.append(("--method lora", replace(cfg, method="lora", freeze_layers=2)))
    if cfg.method != "qlora":
        tries.append(("--method qlora", replace(cfg, method="qlora", freeze_layers=2,
                                                weights_dtype="bf16" if cfg.weights_dtype == "fp32" else
                                                cfg.weights_dtype)))
    if device.kind != "cpu" and cfg.gpus == 1:
        for n in SUGGESTION_GPUS:
            tries.append((f"--set gpus={n} --set sharding=zero3", replace(cfg, gpus=n, sharding="zero3")))
        tries.append((f"--set gpus={SUGGESTION_GPUS[-1]} --set sharding=zero3 --set offload=optimizer",
                      replace(cfg, gpus=SUGGESTION_GPUS[-1], sharding="zero3", offload="optimizer")))
    out: list[dict[str, Any]] = []
    for change, new in tries:
        mem = finetune_memory(model, new, traces, cpu=device.kind == "cpu")
        fits = mem.peak_bytes <= usable
        if not fits and not new.checkpointing:
            new = replace(new, checkpointing=True)
            change += " --set checkpointing=true"
            mem = finetune_memory(model, new, traces, cpu=device.kind == "cpu")
            fits = mem.peak_bytes <= usable
        try:
            st: StepTime | None = step_time(model, new, device, cal, catalog,
                                            traced_profile(profiles, model, new, device))
        except BadInput:
            st = None
        out.append({"change": change, "peak_mem_bytes": mem.peak_bytes, "fits": fits,
                    "step_time_s": None if st is None else st.step_time_s,
                    "samples_per_s": None if st is None else new.samples_per_step / st.step_time_s,
                    "profile_source": None if st is None else st.profile_source})
    fitting = [s for s in out if s["fits"]]
    if fitting:  # the changes that fit, fastest first; of the GPU counts only the fewest that fits (tried in order)
        gpus = [s for s in fitting if "--set gpus=" in s["change"]][:1]
        return sorted([s for s in fitting if "--set gpus=" not in s["change"]] + gpus,
                      key=lambda s: -(s["samples_per_s"] or 0))
    return out


def predict_finetune(catalog: Catalog, cal: Calibration, model_name: str, hardware: str, method: str | None,
                     overrides: Mapping[str, str], micro_batch: int | None = None,
                     ceilings: Any = None, traces: Traces | None = None,
                     profiles: StepProfiles | None = None) -> dict[str, Any]:
    """A ``dlgpu.finetune-predict/1`` document (module docstring). ``ceilings``: this machine's probed ceilings, for
    ``local`` (``resolve_device``); ``traces``: the activations traced on fake tensors (``memory.Traces``, from the
    api), else the formula's; ``profiles``: the step's operator profile traced on fake tensors (``perf.StepProfiles``,
    from the api), else the written-out one."""
    if method is None:
        raise BadInput("--task finetune needs --method full, freeze, lora or qlora", param="method")
    cfg = parse_finetune(method, overrides, micro_batch, workload_keys=JOB_KEYS)
    model = resolve_finetune_model(model_name)
    device, memory_bytes, device_basis = resolve_device(catalog, hardware, ceilings)
    check_job(model, cfg, device)
    mem, st = evaluate(model, cfg, device, cal, catalog, traces, profiles)
    return document(model, cfg, device, memory_bytes, device_basis, mem, st, cal, catalog, traces=traces,
                    profiles=profiles)


def document(model: FtModel, cfg: FinetuneConfig, device: GpuSpec, memory_bytes: int | None, device_basis: str,
             mem: Memory, st: StepTime, cal: Calibration, catalog: Catalog, with_suggestions: bool = True,
             search: bool = True, traces: Traces | None = None,
             profiles: StepProfiles | None = None) -> dict[str, Any]:
    from dlgpu.predict.forecast import interval

    usable = usable_of(device, memory_bytes)
    fits = None if usable is None else mem.peak_bytes <= usable
    sps = cfg.samples_per_step / st.step_time_s
    samples, epochs = job_size(cfg)
    parts = [p.to_dict() for p in mem.parts]
    if usable is not None and memory_bytes is not None and device.kind != "cpu":
        parts.append({"key": "framework_reserve", "label": "CUDA context, allocator (reserve)",
                      "bytes": memory_bytes - usable, "basis": RESERVE_BASIS})
    iv = interval(cal, sps, cpu=device.kind == "cpu", device=device)
    doc: dict[str, Any] = {
        "schema": FINETUNE_PREDICT_SCHEMA, "created_at": utc_now(), "dlgpu": dlgpu_version(), "source": "predicted",
        "task": "finetune", "model": model.id, "model_name": model.name, "hardware": device.id,
        "hardware_name": device.name, "hardware_kind": "cpu" if device.kind == "cpu" else "gpu",
        "method": cfg.method, "config": cfg.to_dict(), "description": cfg.describe(), "gpus": cfg.gpus,
        "batch_size": cfg.micro_batch,
        "peak_mem_bytes": mem.peak_bytes, "fits": fits, "memory_bytes": memory_bytes, "usable_memory_bytes": usable,
        "activations_source": mem.activations_source, "activations_trace": mem.activations_trace,
        "samples_per_s": sps, "step_time_s": st.step_time_s, "tokens_per_s": sps * cfg.seq_len,
        "step_time_complete": st.complete,
        "interval": iv,
        "params": {"total": mem.total_params, "trainable": mem.trainable_params, "frozen": mem.frozen_params,
                   "trainable_pct": 100.0 * mem.trainable_params / mem.total_params},
        "breakdown": parts,
        "cpu_ram_bytes": mem.cpu_bytes, "cpu_ram_basis": mem.cpu_basis or None,
        "deepspeed_estimate": mem.deepspeed,
        "time": {"compute_s": st.compute_s, "collectives_s": st.collectives_s, "offload_s": st.offload_s,
                 "cpu_optimizer_s": st.cpu_optimizer_s, "bound": st.bound, "flops_per_step": st.flops,
                 "tensor_core_flops_share": st.tensor_core_share, "profile_source": st.profile_source,
                 "profile_basis": st.profile_basis},
        "basis": {"memory": mem.peak_basis, "time": st.basis, "collectives": st.collectives_basis,
                  "offload": st.offload_basis, "device": device_basis,
                  "interval": None if iv is None else iv["basis"] + " (traced workloads: the fine-tuning step's own "
                                                                    "errors are not measured)"},
    }
    if samples is not None:
        total = samples * epochs
        doc["job"] = {"samples": samples, "epochs": epochs, "time_s": total / sps,
                      "basis": f"{samples:,.0f} samples x {epochs:g} epochs at {sps:,.2f} samples/s"}
    if usable is not None and search:
        doc["largest_micro_batch"] = largest_micro_batch(model, cfg, usable, traces, cpu=device.kind == "cpu")
        doc["largest_seq_len"] = largest_seq_len(model, cfg, usable, traces, cpu=device.kind == "cpu")
    else:
        doc["largest_micro_batch"] = doc["largest_seq_len"] = None
    doc["reasons"] = []
    doc["suggestions"] = []
    if fits is False and usable is not None:
        big = sorted((p for p in parts if p["key"] != "framework_reserve"), key=lambda p: -p["bytes"])[:3]
        doc["reasons"] = [f"needs {mem.peak_bytes / 2**30:.1f} GiB per {'device' if device.kind == 'cpu' else 'GPU'}, "
                          f"has {usable / 2**30:.1f} GiB usable",
                          "largest parts: " + ", ".join(f"{p['label']} {p['bytes'] / 2**30:.1f} GiB" for p in big)]
        if with_suggestions:
            doc["suggestions"] = suggestions(model, cfg, device, usable, cal, catalog, traces, profiles)
    if not st.complete:
        doc["note"] = ("the step time is a lower bound: "
                       + "; ".join(b for b in (st.collectives_basis, st.offload_basis) if "not" in b or "no " in b))
    return doc
