"""``dlgpu predict MODEL --task decode|prefill --precision FORMAT``: an LLM served by a named runtime on a catalog
device, predicted (``perf``, calibrated by ``calibration``), with its memory (``memory``) and the command that
would verify it. No torch here."""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from typing import Any

from dlgpu.catalog import Catalog, GpuSpec
from dlgpu.errors import BadInput
from dlgpu.home import dlgpu_version, utc_now
from dlgpu.results import usable_memory_bytes

from .calibration import load_llm_calibration
from .cpu import LocalCpuRuns, fit_cpu, leave_one_model_out
from .formats import WEIGHT_FORMATS, get_format, get_kv_format
from .memory import largest_concurrency, largest_context, llm_memory, unified_memory_share
from .perf import backend, decode_step_s, prefill_s
from .workload import llm_work, resolve_model

LLM_PREDICT_SCHEMA = "dlgpu.llm-predict/1"
RUNTIME = "llama.cpp"
"""The runtime predictions are for: the one the shipped calibration fits (published llama.cpp rows)."""

SERVE_RUNTIME = "tensorrt-llm"
"""The serving engine ``--task serve`` is predicted for: the one whose published max-throughput tables the serving
model is fitted on (``serving``)."""

SETTINGS = {"prompt": 512, "output": 128, "kv": "fp16"}
"""``--set`` keys of an LLM prediction and their defaults: llama-bench's pp512 and tg128, an fp16 KV cache."""


def is_llm_request(workload: str, precision: str, task: str) -> bool:
    """Whether ``dlgpu predict`` is asked about an LLM served by a runtime: a weight format only LLMs have, the
    prefill phase, or a model that is not a registered workload (a catalog LLM or a config.json)."""
    from dlgpu.workloads.registry import list_workloads

    if precision.lower() in WEIGHT_FORMATS and precision.lower() not in ("fp32", "bf16", "fp16"):
        return True
    families = {w.name: w.family for w in list_workloads()}
    # a catalog LLM registered for measuring here (family llm) is predicted as a runtime serves it
    return task in ("prefill", "serve") or (task == "decode" and families.get(workload, "llm") == "llm")


def _settings(overrides: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = dict(SETTINGS)
    for k, v in overrides.items():
        if k not in SETTINGS:
            raise BadInput(f"--set {k}: an LLM prediction takes {', '.join(SETTINGS)}", param="overrides")
        if k == "kv":
            get_kv_format(v)
            out[k] = v.lower()
            continue
        try:
            n = int(v)
        except ValueError:
            raise BadInput(f"--set {k}={v}: must be a positive integer", param="overrides") from None
        if n <= 0:
            raise BadInput(f"--set {k}={v}: must be a positive integer", param="overrides")
        out[k] = n
    return out


def _interval(cal_fit: Mapping[str, Any], phase: str, tok_s: float) -> dict[str, Any] | None:
    held = (cal_fit.get("serving") or {}) if phase == "serve" else cal_fit
    rows = [r["error_pct"] / 100 for r in (held.get("leave_one_device_out") or {}).get("rows", [])
            if r["phase"] == phase]
    if len(rows) < 10:
        return None
    q = statistics.quantiles(sorted(rows), n=10, method="inclusive")
    return {"low": tok_s / (1 + q[-1]), "high": tok_s / (1 + q[0]),
            "basis": f"10th-90th percentile of the leave-one-device-out {phase} errors on published "
                     f"{SERVE_RUNTIME if phase == 'serve' else RUNTIME} rows"}


def predict_llm(catalog: Catalog, model: str, hardware: str, weight_format: str, task: str,
                batch_size: int | None, overrides: Mapping[str, str],
                local_cpu: LocalCpuRuns | None = None) -> dict[str, Any]:
    """An LLM's decode or prefill on a catalog GPU, as ``RUNTIME`` runs it, as a ``dlgpu.llm-predict/1`` document.
    ``hardware`` ``local``: this machine's CPU, from ``local_cpu`` (its llama.cpp measurements; ``llm.cpu``)."""
    if task not in ("decode", "prefill", "serve"):
        raise BadInput(f"--task {task}: an LLM with a weight format is predicted for decode, prefill or serve",
                       param="task")
    if task == "serve":
        return _serve(catalog, model, hardware, weight_format, batch_size, overrides)
    arch = resolve_model(model)
    fmt = get_format(weight_format)
    s = _settings(overrides)
    batch = batch_size or 1
    if batch <= 0:
        raise BadInput(f"{batch_size}: the batch (concurrent sequences) must be a positive integer",
                       param="batch_size")
    context = s["prompt"] + s["output"]
    if context > arch.max_context:
        raise BadInput(f"--set prompt + output = {context} tokens: {arch.id} takes at most {arch.max_context}",
                       param="overrides")
    if hardware == "local" or (hardware.lower() in {c.id.lower() for c in catalog.cpus}):
        return _cpu(catalog, arch, fmt, task, batch, s, hardware, local_cpu)
    try:
        gpu: GpuSpec = catalog.gpu(hardware)
    except (BadInput, KeyError):
        raise BadInput(f"unknown hardware {hardware!r} (see `dlgpu hardware list`; LLMs are predicted on GPUs, and on "
                       "this machine's CPU as `local`)", param="hardware") from None
    work = llm_work(arch, fmt.name, s["kv"])
    cal = load_llm_calibration()
    e_mem, floor_s, e_pf, fitted = cal.get(RUNTIME, backend(gpu))
    mem = llm_memory(arch, fmt, get_kv_format(s["kv"]), context, batch)
    usable = None if gpu.memory_bytes is None else (
        unified_memory_share(gpu.memory_bytes)[0] if backend(gpu) == "metal" else usable_memory_bytes(gpu.memory_bytes))
    fits = None if usable is None else mem.total_bytes <= usable
    out: dict[str, Any] = {
        "schema": LLM_PREDICT_SCHEMA, "created_at": utc_now(), "dlgpu": dlgpu_version(),
        "model": arch.id, "model_name": arch.name, "hardware": gpu.id, "hardware_name": gpu.name,
        "runtime": RUNTIME, "backend": backend(gpu), "weight_format": fmt.name, "kv_format": s["kv"],
        "task": task, "batch_size": batch, "prompt_tokens": s["prompt"], "output_tokens": s["output"],
        "source": "predicted",
        "memory": {"weights_bytes": mem.weights_bytes, "kv_cache_bytes": mem.kv_cache_bytes,
                   "activation_bytes": mem.activation_bytes, "total_bytes": mem.total_bytes,
                   "usable_bytes": usable, "fits": fits, "basis": mem.basis,
                   # what the device holds at most: the context for this many sequences, the sequences at this context
                   "largest_context": None if usable is None else largest_context(
                       arch, fmt, get_kv_format(s["kv"]), usable, batch),
                   "largest_concurrency": None if usable is None else largest_concurrency(
                       arch, fmt, get_kv_format(s["kv"]), usable, context)},
    }
    if task == "decode":
        step = decode_step_s(work, gpu, e_mem, floor_s, e_pf, batch, s["prompt"] + s["output"] / 2)
        per_seq = 1.0 / step
        out.update({"tpot_ms": 1e3 * step, "tokens_per_s_per_sequence": per_seq,
                    "tokens_per_s_total": batch * per_seq, "interval": _interval(cal.fit, "decode", per_seq)})
    else:
        t = prefill_s(work, gpu, e_mem, floor_s, e_pf, s["prompt"])
        out.update({"ttft_ms": 1e3 * t, "tokens_per_s_per_sequence": s["prompt"] / t,
                    "tokens_per_s_total": s["prompt"] / t,
                    "interval": _interval(cal.fit, "prefill", s["prompt"] / t)})
    out["basis"] = (f"predicted for {RUNTIME} on {backend(gpu)}: decode = {arch.layers} layers x "
                    f"{floor_s * 1e6:.1f} us + bytes read / ({e_mem:.0%} of the catalog bandwidth); prefill = "
                    f"FLOPs / ({e_pf:.0%} of the fp16 peak); "
                    + ("efficiencies fitted to published llama.cpp rows" if fitted else
                       f"no published {RUNTIME} row on {backend(gpu)}: assumed efficiencies (not fitted)"))
    out["verify"] = (f"llama-bench -m {arch.id}-{fmt.name}.gguf -p {s['prompt']} -n {s['output']} -ngl 99"
                     + (f" -ctk {s['kv']} -ctv {s['kv']} -fa 1" if s["kv"] not in ("fp16", "f16") else ""))
    if fits is False:
        out["note"] = (f"does not fit: needs {mem.total_bytes / 2**30:.1f} GiB, has {usable / 2**30:.1f} GiB usable"
                       if usable else "does not fit")
    return out


CPU_MEASURE = ("dlgpu bench --runtime llama.cpp -w qwen3-0.6b llama-3.2-1b -p q8_0 q4_0 f16 --task decode infer "
               "(needs `pip install 'dlgpu[llamacpp]'`)")
"""How a CPU gets a llama.cpp calibration: measure two small catalog models in three GGUF types on it."""


def _cpu(catalog: Catalog, arch: Any, fmt: Any, task: str, batch: int, s: Mapping[str, Any], hardware: str,
         local: LocalCpuRuns | None) -> dict[str, Any]:
    """llama.cpp on this machine's CPU, from its own llama.cpp measurements (``llm.cpu``); another CPU, or this
    one unmeasured, gets no figure and the command that would measure it."""
    if batch != 1:
        raise BadInput(f"-b {batch}: llama.cpp on a CPU is predicted for one sequence", param="batch_size")
    context = s["prompt"] + s["output"]
    mem = llm_memory(arch, fmt, get_kv_format(s["kv"]), context, 1)
    here = local is not None and hardware == "local"
    usable = local.ram_bytes if here and local is not None else None
    out: dict[str, Any] = {
        "schema": LLM_PREDICT_SCHEMA, "created_at": utc_now(), "dlgpu": dlgpu_version(),
        "model": arch.id, "model_name": arch.name, "hardware": hardware,
        "hardware_name": local.cpu if here and local is not None else next(
            (c.name for c in catalog.cpus if c.id.lower() == hardware.lower()), hardware),
        "runtime": RUNTIME, "backend": "cpu",
        "weight_format": fmt.name, "kv_format": s["kv"], "task": task, "batch_size": 1,
        "prompt_tokens": s["prompt"], "output_tokens": s["output"],
        "memory": {"weights_bytes": mem.weights_bytes, "kv_cache_bytes": mem.kv_cache_bytes,
                   "activation_bytes": mem.activation_bytes, "total_bytes": mem.total_bytes, "usable_bytes": usable,
                   "fits": None if usable is None else mem.total_bytes <= usable, "basis": mem.basis
                   + ("; usable: this machine's memory (CPU inference holds the weights in RAM)" if usable else ""),
                   "largest_context": None if usable is None else largest_context(
                       arch, fmt, get_kv_format(s["kv"]), usable, 1),
                   "largest_concurrency": None if usable is None else largest_concurrency(
                       arch, fmt, get_kv_format(s["kv"]), usable, context)},
    }
    if not here or local is None or not any(r.phase == "decode" for r in local.runs):
        why = ("no published llama.cpp row times a CPU, so a CPU is predicted only from llama.cpp measured on it"
               + ("" if here else f"; {hardware} is not this machine: predict this machine with -H local"))
        out.update({"source": "not predicted", "tokens_per_s_per_sequence": None, "tokens_per_s_total": None,
                    "basis": why, "verify": CPU_MEASURE, "interval": None})
        return out
    fit = fit_cpu(local.runs)
    held = leave_one_model_out(local.runs)
    phase = "decode" if task == "decode" else "prefill"
    tok_s = fit.tokens_per_s(arch.id, fmt.name, phase, s["prompt"], s["output"], s["kv"])
    errs = sorted(r["error_pct"] / 100 for r in held["rows"] if r["phase"] == phase)
    out["source"] = "predicted"
    if phase == "decode":
        out.update({"tpot_ms": 1e3 / tok_s, "tokens_per_s_per_sequence": tok_s, "tokens_per_s_total": tok_s})
    else:
        out.update({"ttft_ms": 1e3 * s["prompt"] / tok_s, "tokens_per_s_per_sequence": tok_s,
                    "tokens_per_s_total": tok_s})
    if len(errs) >= 5:
        q = statistics.quantiles(errs, n=10, method="inclusive")
        out["interval"] = {"low": tok_s / (1 + q[-1]), "high": tok_s / (1 + q[0]),
                           "basis": f"10th-90th percentile of the leave-one-model-out {phase} errors on this CPU's "
                                    f"{len(errs)} measurements"}
    else:
        out["interval"] = None
    out["basis"] = (f"predicted for {RUNTIME} on this CPU ({local.cpu}, {local.threads} threads): "
                    f"{fit.basis(fmt.name)}; runs from {local.source}")
    out["held_out"] = held["by_phase"]
    out["verify"] = (f"llama-bench -m {arch.id}-{fmt.name}.gguf -p {s['prompt']} -n {s['output']} "
                     f"-t {local.threads} -ngl 0")
    if out["memory"]["fits"] is False and usable:
        out["note"] = (f"does not fit: needs {mem.total_bytes / 2**30:.1f} GiB, has {usable / 2**30:.1f} GiB "
                       "of memory")
    return out


def _serve(catalog: Catalog, model: str, hardware: str, weight_format: str, batch_size: int | None,
           overrides: Mapping[str, str]) -> dict[str, Any]:
    """Output tokens/s of a serving engine answering requests of ``prompt`` + ``output`` tokens (``serving``)."""
    from .serving import ServeSample, serve_tok_s

    fmt = weight_format.lower()
    if fmt not in ("fp8", "fp16"):
        raise BadInput(f"--precision {weight_format}: serving is predicted for fp8 and fp16 (the formats of the "
                       f"{SERVE_RUNTIME} tables it is fitted on)", param="precision")
    arch = resolve_model(model)
    s = _settings(overrides)
    if batch_size is not None and batch_size <= 0:
        raise BadInput(f"{batch_size}: the concurrency must be a positive integer", param="batch_size")
    context = s["prompt"] + s["output"]
    if context > arch.max_context:
        raise BadInput(f"--set prompt + output = {context} tokens: {arch.id} takes at most {arch.max_context}",
                       param="overrides")
    try:
        gpu: GpuSpec = catalog.gpu(hardware)
    except (BadInput, KeyError):
        raise BadInput(f"unknown hardware {hardware!r} (see `dlgpu hardware list`)", param="hardware") from None
    if backend(gpu) != "cuda":
        raise BadInput(f"{gpu.id}: {SERVE_RUNTIME} runs on NVIDIA GPUs", param="hardware")
    kv = "fp8" if fmt == "fp8" else "fp16"
    usable = usable_memory_bytes(gpu.memory_bytes or 0)
    most = largest_concurrency(arch, fmt, kv, usable, context)
    cal = load_llm_calibration()
    sample = ServeSample(arch.id, SERVE_RUNTIME, gpu, 1, llm_work(arch, fmt, kv), fmt, s["prompt"], s["output"],
                         most, batch_size)
    total, batch = serve_tok_s(sample, cal.values)
    mem = llm_memory(arch, fmt, kv, context, max(1, int(batch)))
    fitted = any(k.startswith(f"{SERVE_RUNTIME}:serve:") for k in cal.values)
    return {
        "schema": LLM_PREDICT_SCHEMA, "created_at": utc_now(), "dlgpu": dlgpu_version(),
        "model": arch.id, "model_name": arch.name, "hardware": gpu.id, "hardware_name": gpu.name,
        "runtime": SERVE_RUNTIME, "backend": backend(gpu), "weight_format": fmt, "kv_format": kv, "task": "serve",
        "batch_size": int(batch), "prompt_tokens": s["prompt"], "output_tokens": s["output"], "source": "predicted",
        "tokens_per_s_total": total, "tokens_per_s_per_sequence": total / batch,
        "interval": _interval(cal.fit, "serve", total),
        "memory": {"weights_bytes": mem.weights_bytes, "kv_cache_bytes": mem.kv_cache_bytes,
                   "activation_bytes": mem.activation_bytes, "total_bytes": mem.total_bytes, "usable_bytes": usable,
                   "fits": most >= 1 and (batch_size is None or batch_size <= most), "basis": mem.basis,
                   "largest_context": largest_context(arch, fmt, kv, usable, max(1, int(batch))),
                   "largest_concurrency": most},
        "basis": (f"predicted for {SERVE_RUNTIME} with in-flight batching: {int(batch)} requests in flight ("
                  + ("asked" if batch_size else "as many as fit, up to the engine's fitted cap") + f") of "
                  f"{s['prompt']} + {s['output']} tokens; each round = their prefills + {s['output']} decode "
                  "steps; " + ("fitted to its published max-throughput tables" if fitted else
                               "assumed efficiencies (not fitted)")),
        "verify": (f"trtllm-bench --model {arch.hf_repo} throughput --dataset <{s['prompt']}/{s['output']} "
                   "synthetic>"
                   " (TensorRT-LLM's max-throughput benchmark)"),
    }
