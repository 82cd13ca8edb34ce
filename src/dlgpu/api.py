"""The public API: a typed facade of one short function per capability. It wires the torch-side services
(``analyze.profiles`` as the ``ProfileSource``, ``measure``, ``devices``) into the torch-free packages that
own each capability (``predict``, ``advise``, ``store``, ``report``); every pipeline lives in its package:

- measuring on this machine: ``measure.suite`` (plan, loop, sensors, MFU) with ``store.sink``;
- operator profiles and their cache: ``analyze.profiles``;
- prediction, calibration, validation: ``predict.forecast``, ``predict.calibration``, ``predict.validate``;
- advice: ``advise.advice`` (inputs, candidates, verdict);
- history, export and import: ``store.history``; comparison tables: ``report.compare``.

Errors are ``BadInput`` in the library's terms (``param`` names the parameter); nothing here imports torch
at import time."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dlgpu import home
from dlgpu.advise.inputs import (
    DEFAULT_CARBON_G_PER_KWH,
    DEFAULT_DEADLINE_S,
    DEFAULT_ELECTRICITY_USD_PER_KWH,
    DEFAULT_HOURS_PER_DAY,
    DEFAULT_LIFETIME_YEARS,
    JobSize,
    Limits,
)
from dlgpu.catalog import KINDS as HARDWARE_KINDS
from dlgpu.errors import BadInput
from dlgpu.results import Advice, Analysis, BenchReport, OpProfile, Prediction
from dlgpu.workloads.registry import WorkloadSpec, get_workload
from dlgpu.workloads.select import find_workloads, parse_overrides, resolve_workloads, workload_summary

if TYPE_CHECKING:
    from dlgpu.catalog import HardwareEntry, HardwareListing
    from dlgpu.finetune.config import FinetuneConfig
    from dlgpu.finetune.model import FtModel
    from dlgpu.finetune.perf import StepProfiles
    from dlgpu.measure.suite import BenchObserver
    from dlgpu.measure.timer import Budget
    from dlgpu.report.model import Comparison
    from dlgpu.results.probe import ProbeReport
    from dlgpu.store import RunRow, StoredRun

__all__ = [
    "DEFAULT_CARBON_G_PER_KWH", "DEFAULT_DEADLINE_S", "DEFAULT_ELECTRICITY_USD_PER_KWH", "DEFAULT_HOURS_PER_DAY",
    "DEFAULT_LIFETIME_YEARS", "HARDWARE_KINDS", "Analysis", "BadInput", "JobSize", "Limits", "advise", "analysis",
    "analyze", "bench", "calibrate", "compare", "custom_workload",
    "default_db_path", "export_runs", "find_workloads", "hardware_list", "hardware_show", "import_files",
    "largest_batch", "list_runs", "local_ceilings", "parse_overrides", "predict", "probe", "resolve_workloads",
    "save_advice",
    "save_prediction", "show_run", "validate", "workload_details", "workload_summary",
]


def default_db_path() -> Path:
    """The results database used when none is named (``home.default_db_path``)."""
    return home.default_db_path()


# --- measuring here ----------------------------------------------------------------------------------------


def bench(workloads: Sequence[str] | None = None, devices: Sequence[str] | None = None,
          precisions: Sequence[str] | None = None, tasks: Sequence[str] | None = None, quick: bool = False,
          batch_size: int | None = None, overrides: Mapping[str, str] | None = None, timing: Budget | None = None,
          budget_s: float | None = None, observer: BenchObserver | None = None, save_to: Path | None = None,
          custom_specs: Sequence[WorkloadSpec] = (), include_hostname: bool = False,
          on_step: Callable[[int, float], None] | None = None, telemetry: bool = True,
          telemetry_period_s: float | None = None, db: Path | None = None,
          runtime: str | None = None, method: str | None = None) -> BenchReport:
    """Measure workloads on this machine's devices (``measure.suite``): every input is validated before anything
    runs; each result is saved in ``db`` (and ``save_to``, a JSON file) as it finishes.

    ``timing``: the adaptive timer's budget per configuration (default: quick or standard); ``budget_s`` changes
    only its seconds. ``telemetry``: sample power, energy and utilization beside every measured region.
    ``runtime``: ``pytorch`` (default) or ``llama.cpp`` (the catalog LLMs on the CPU, precisions the GGUF weight
    types f16, q8_0, q4_0; ``measure.llamacpp_bench``). ``method``: task finetune's method (full, freeze, lora,
    qlora; default lora), its settings among ``overrides`` (``finetune.config.SETTINGS``; ``measure.finetune``)."""
    from dlgpu.analyze.profiles import profile, register_custom
    from dlgpu.measure.suite import plan_suite, run_suite
    from dlgpu.measure.telemetry import DEFAULT_PERIOD_S
    from dlgpu.measure.timer import QUICK, STANDARD
    from dlgpu.store.sink import BenchSink

    if budget_s is not None:
        if not budget_s > 0:
            raise BadInput(f"{budget_s}: must be a positive number of seconds", param="budget_s")
        timing = replace(timing or (QUICK if quick else STANDARD), budget_s=budget_s)
    suite = plan_suite(workloads, devices, precisions, tasks, quick=quick, batch_size=batch_size,
                       overrides=dict(overrides or {}), timing=timing, custom_specs=custom_specs,
                       include_hostname=include_hostname, telemetry=telemetry,
                       telemetry_period_s=DEFAULT_PERIOD_S if telemetry_period_s is None else telemetry_period_s,
                       runtime=runtime, method=method)
    for spec in custom_specs:
        register_custom(spec)
    return run_suite(suite, BenchSink(db, save_to), profile, observer, on_step, _gemm_ceilings(db),
                     _stored_probe(db))


def _stored_probe(db: Path | None) -> Callable[[str], tuple[Any, str]]:
    """device id -> (this machine's newest uncontended ``dlgpu probe`` document there, or None; why none): the basis
    of bench's machine-speed check (``measure.speed``)."""
    def stored(device: str) -> tuple[Any, str]:
        from dlgpu.devices.machine import current_machine
        from dlgpu.store.history import newest_probe

        try:
            got = newest_probe(db, current_machine().to_dict(), device)
        except BadInput as exc:  # a database this version cannot read: nothing probed to compare with
            return None, str(exc)
        return got.document, got.why_none
    return stored


def _gemm_ceilings(db: Path | None) -> Callable[[str, str], tuple[float, str] | None]:
    """(device id, precision) -> this machine's measured GEMM ceiling there and its source, from the newest
    uncontended ``dlgpu probe`` of each device (read once per device, when MFU first asks)."""
    found: dict[str, Any] = {}

    def ceiling(device: str, precision: str) -> tuple[float, str] | None:
        if device not in found:
            found[device] = local_ceilings(db, device)[0]
        got = found[device]
        value = None if got is None else got.gemm_flops_per_s.get(precision)
        if not value:
            return None
        return value, f"{got.source}, n={got.gemm_sizes.get(precision)}"
    return ceiling


def custom_workload(model: str, inputs: str, batch_size: int | None = None) -> WorkloadSpec:
    """A user's model (``pkg.module:factory``) with its inputs (``3x224x224``, ``128:int64:30522``), as a workload."""
    from dlgpu.workloads.custom import custom_spec

    return custom_spec(model, inputs, batch_size or 8)


# --- workloads and hardware --------------------------------------------------------------------------------


def workload_details(name: str) -> tuple[WorkloadSpec, int | None]:
    """The spec and its parameter count, counted on the meta device (no memory, no compute); None for a tabular
    workload (trees and classical ML: no PyTorch model, nothing built until it is fitted)."""
    from dlgpu.workloads.tabular import is_tabular

    spec = get_workload(name)
    if is_tabular(spec):
        return spec, None
    from dlgpu.analyze.memory_model import memory_floor

    return spec, memory_floor(spec, spec.resolve({}), "infer").parameters


def hardware_list(kind: str = "all", catalog_files: Sequence[Path] = ()) -> HardwareListing:
    """The catalog's GPUs, CPUs or cloud instances (or all), with the user's catalog files merged in."""
    from dlgpu.catalog import KINDS, HardwareListing, load_catalog

    if kind not in KINDS:
        raise BadInput(f"{kind}: not one of {', '.join(KINDS)}", param="kind")
    cat = load_catalog(catalog_files)
    return HardwareListing(kind, cat.gpus, cat.cpus, cat.cloud, cat.user_files)


def hardware_show(hardware_id: str, catalog_files: Sequence[Path] = ()) -> HardwareEntry:
    """One catalog entry by id (a GPU with the cloud instances that carry it), or ``local``: this machine's CPU."""
    from dlgpu.catalog import GpuSpec, HardwareEntry, load_catalog, this_cpu

    cat = load_catalog(catalog_files)
    if hardware_id.strip().lower() == "local":
        model_name, described = this_cpu(cat)
        return HardwareEntry("local", described, local_model_name=model_name)
    spec = cat.get(hardware_id)
    if isinstance(spec, GpuSpec):
        return HardwareEntry("gpu", spec, cat.instances_for(spec.id))
    return HardwareEntry("cpu", spec)


# --- operator profiles and prediction ----------------------------------------------------------------------


def analyze(workload: str, task: str = "train", precision: str = "fp32", batch_size: int | None = None,
            overrides: Mapping[str, str] | None = None, optimizer_step: bool = True, target: str = "gpu") -> OpProfile:
    """The operator profile of one full-size step, traced on fake tensors (``analyze.profiles.profile``)."""
    from dlgpu.analyze.profiles import profile

    return profile(workload, task, precision, batch_size, overrides, optimizer_step, target)


def largest_batch(workload: str, task: str, precision: str, memory_bytes: int,
                  overrides: Mapping[str, str] | None = None, target: str = "gpu") -> int:
    """The largest batch whose memory need fits ``memory_bytes`` (0 if not even batch 1 does)."""
    from dlgpu.analyze.profiles import largest_batch as search

    return search(workload, task, precision, memory_bytes, overrides, target)


def analysis(workload: str, task: str = "train", precision: str = "fp32", batch_size: int | None = None,
             overrides: Mapping[str, str] | None = None, memory_bytes: int | None = None,
             hardware: str | None = None) -> Analysis:
    """The profile with operator units and memory need; with ``memory_bytes`` or ``hardware`` (a catalog id or
    ``local``), also the largest batch that fits that memory: on a GPU, its memory less the runtime's reserve
    (``results.usable_memory_bytes``, as ``predict`` and ``advise`` count it)."""
    from dlgpu.catalog import load_catalog
    from dlgpu.predict.roofline import op_unit
    from dlgpu.predict.targets import prediction_device
    from dlgpu.results import usable_memory_bytes

    fit, target = None, "gpu"
    if memory_bytes is not None or hardware is not None:
        size, of = memory_bytes, "given"
        if memory_bytes is None:
            dev, size, _ = prediction_device(str(hardware), load_catalog())
            if size is None:
                raise BadInput(f"{hardware}: the catalog gives no memory size for it; give a memory size",
                               param="hardware")
            of, target = dev.id, "cpu" if dev.kind == "cpu" else "gpu"
        assert size is not None
        usable = size if target == "cpu" else usable_memory_bytes(size)
        fit = {"memory_bytes": size, "memory_of": of, "target": target, "usable_memory_bytes": usable,
               "batch_size": largest_batch(workload, task, precision, usable, overrides, target=target)}
    prof = analyze(workload, task, precision, batch_size, overrides, target=target)
    return Analysis(prof, tuple(op_unit(o.kind, o.dtype, precision) for o in prof.ops), fit)


def predict(workload: str, hardware: str, precision: str = "fp32", task: str = "train",
            batch_size: int | None = None, overrides: Mapping[str, str] | None = None,
            catalog_files: Sequence[Path] = (), db: Path | None = None) -> Prediction:
    """Predicted step time, throughput and memory on a catalog GPU or CPU, or ``local`` (``predict.forecast``): this
    machine's CPU with the ceilings of its newest uncontended ``dlgpu probe`` in ``db`` where one is stored
    (``local_ceilings``), and the prediction's basis says which."""
    from dlgpu.analyze.profiles import profile
    from dlgpu.catalog import load_catalog
    from dlgpu.predict.calibration import load_calibration
    from dlgpu.predict.forecast import predict as forecast

    get_workload(workload)
    return forecast(profile, load_catalog(catalog_files), load_calibration(), workload, hardware, precision, task,
                    batch_size, overrides, _ceilings_for(hardware, db))


def _ceilings_for(hardware: str, db: Path | None) -> Any:
    """This machine's probed CPU ceilings where ``hardware`` is this machine (``local``), else None."""
    from dlgpu.predict.targets import LOCAL_IDS

    return local_ceilings(db)[0] if hardware.strip().lower() in LOCAL_IDS else None


def predict_llm(model: str, hardware: str, weight_format: str, task: str = "decode", batch_size: int | None = None,
                overrides: Mapping[str, str] | None = None, catalog_files: Sequence[Path] = ()) -> dict[str, Any]:
    """``dlgpu.llm-predict/1``: an LLM's decode or prefill on a catalog GPU as a named runtime serves it, with its
    memory and the command that verifies it (``llm.predict``)."""
    from dlgpu.catalog import load_catalog
    from dlgpu.llm.predict import predict_llm as run

    local = local_llm_cpu() if hardware == "local" else None
    return run(load_catalog(catalog_files), model, hardware, weight_format, task, batch_size, overrides or {}, local)


def predict_finetune(model: str, hardware: str, method: str | None, overrides: Mapping[str, str] | None = None,
                     batch_size: int | None = None, catalog_files: Sequence[Path] = (),
                     db: Path | None = None, trace: bool = True) -> dict[str, Any]:
    """``dlgpu.finetune-predict/1``: a fine-tuning job (``--method``, ``--set`` keys of ``finetune.config``, ``-b`` the
    micro-batch) on a catalog GPU (``--set gpus=N`` of them), a catalog CPU or ``local``: memory per GPU by component,
    the fit, the largest micro-batch and sequence, the step time through the calibrated roofline (``finetune``).
    ``trace``: the activations and the step's operators traced on fake tensors with the method applied
    (``finetune_traces``, ``finetune_step_profiles``), else the formula's and the written-out profile."""
    import contextlib

    from dlgpu.catalog import load_catalog
    from dlgpu.finetune.config import parse_finetune
    from dlgpu.finetune.model import resolve_finetune_model
    from dlgpu.finetune.predict import JOB_KEYS
    from dlgpu.finetune.predict import predict_finetune as run
    from dlgpu.predict.calibration import load_calibration

    traces = None
    if method is not None:
        with contextlib.suppress(BadInput):  # bad input: the prediction says it, in its own order of checks
            resolve_finetune_model(model)
            traces = finetune_traces(model, [parse_finetune(method, overrides or {}, batch_size,
                                                            workload_keys=JOB_KEYS)], trace)
    return run(load_catalog(catalog_files), load_calibration(), model, hardware, method, overrides or {}, batch_size,
               _ceilings_for(hardware, db), traces, finetune_step_profiles(model, trace))


def advise_finetune(model: str, methods: Sequence[str] | None = None, samples: float | None = None,
                    seq_len: int | None = None, epochs: float | None = None, deadline_s: float | None = None,
                    overrides: Mapping[str, str] | None = None, batch_size: int | None = None,
                    sources: Sequence[str] = ("buy", "rent"), hardware: Sequence[str] = (),
                    budget_usd: float | None = None, catalog_files: Sequence[Path] = (),
                    db: Path | None = None, trace: bool = True) -> dict[str, Any]:
    """``dlgpu.finetune-advise/1``: can this machine fine-tune the model in time, and the cheapest GPU to buy or
    instance to rent that fits and meets the deadline, per method (``advise.finetune``); this machine's CPU predicted
    from its peak, or measured where a stored ``dlgpu bench --task finetune`` result of the same job exists.
    ``trace``: each method's activations and each setup's step traced on fake tensors (``finetune_traces``,
    ``finetune_step_profiles``), else the formula's and the written-out profile."""
    import contextlib

    from dlgpu.advise.finetune import advise_finetune as run
    from dlgpu.advise.finetune import method_config
    from dlgpu.catalog import load_catalog
    from dlgpu.finetune.config import METHODS
    from dlgpu.finetune.model import resolve_finetune_model
    from dlgpu.predict.calibration import load_calibration
    from dlgpu.predict.targets import prediction_device

    catalog = load_catalog(catalog_files)
    ov = dict(overrides or {})
    here = prediction_device("local", catalog, local_ceilings(db)[0])
    stored = _stored_finetune(model, methods or METHODS, {**ov, **({"seq_len": str(seq_len)} if seq_len else {})}, db)
    traces = None
    with contextlib.suppress(BadInput):  # bad input: the advice says it, in its own order of checks
        resolve_finetune_model(model)
        job_ov = {**ov, **({"seq_len": str(seq_len)} if seq_len is not None else {})}
        traces = finetune_traces(model, [method_config(m.strip().lower(), job_ov, batch_size)
                                         for m in (methods or METHODS)], trace)
    return run(catalog, load_calibration(), model, methods, samples, seq_len, epochs, deadline_s, ov, batch_size,
               sources, hardware, budget_usd, here, stored, traces, finetune_step_profiles(model, trace))


def finetune_traces(model: str, jobs: Sequence[Any], trace: bool = True) -> dict[str, Any]:
    """Each job's activations traced on fake tensors with its method applied, by ``finetune.memory.trace_key``, or
    the reason they are not (``analyze.profiles.finetune_activations``: cached, so a warm cache imports no torch);
    handed down to ``finetune`` as plain values. ``trace`` False: every job's reason is that it was not asked."""
    from dlgpu.finetune.memory import trace_key

    out: dict[str, Any] = {}
    for cfg in jobs:
        key = trace_key(cfg)
        if key in out:
            continue
        if not trace:
            out[key] = "not asked (--no-trace)"
            continue
        from dlgpu.analyze.profiles import finetune_activations

        out[key] = finetune_activations(model, cfg)
    return out


def finetune_step_profiles(model: str, trace: bool = True) -> StepProfiles:
    """The ``finetune.perf.StepProfiles`` source for ``model``: each job's step traced on fake tensors with its
    method applied, composed to the full model (``analyze.profiles.finetune_step_profile``: cached in memory and on
    disk, so a warm cache imports no torch), or the reason it is not. ``trace`` False: the reason is that it was not
    asked."""

    def not_asked(ft: FtModel, cfg: FinetuneConfig, target: str) -> OpProfile | str:
        return "not asked (--no-trace)"

    if not trace:
        return not_asked
    memo: dict[tuple[str, str, str], OpProfile | str] = {}

    def traced(ft: FtModel, cfg: FinetuneConfig, target: str) -> OpProfile | str:
        key = (ft.id, repr(cfg), target)
        if key not in memo:
            from dlgpu.analyze.profiles import finetune_step_profile

            memo[key] = finetune_step_profile(model, ft, cfg, target)
        return memo[key]

    return traced


def _stored_finetune(model: str, methods: Sequence[str], overrides: Mapping[str, str],
                     db: Path | None) -> dict[str, dict[str, Any]]:
    """This machine's stored ``dlgpu bench --task finetune`` record of the job on its CPU, per method: the store's
    median per configuration (``store.history.local_measurements``) where the record's method is the one asked."""
    from dlgpu.devices.machine import current_machine
    from dlgpu.llm.workload import WORKLOAD_ALIASES
    from dlgpu.store.history import local_measurements

    out: dict[str, dict[str, Any]] = {}
    names = dict.fromkeys((model, WORKLOAD_ALIASES.get(model, model)))
    machine = current_machine().to_dict()
    for name in names:
        try:
            got = local_measurements(name, "finetune", dict(overrides), db, machine, None, None)
        except Exception:  # no store yet, or a store this version cannot read: nothing measured
            continue
        rec = got.by_device.get("cpu")
        if rec and rec.get("method") in methods and rec["method"] not in out:
            out[str(rec["method"])] = rec
    return out


def local_llm_cpu(db: Path | None = None) -> Any:
    """This machine's CPU with the llama.cpp measurements made on it (``llm.cpu.LocalCpuRuns``): the shipped ones
    where this is the machine they were made on (``llm.cpu.shipped_runs_for``). No torch here."""
    import os

    import psutil

    from dlgpu.catalog.local import this_cpu
    from dlgpu.devices.machine import current_machine
    from dlgpu.llm.cpu import LocalCpuRuns, shipped_runs_for
    from dlgpu.store.history import runtime_results

    name, _ = this_cpu()
    try:
        threads = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        threads = os.cpu_count() or 1
    ram = int(psutil.virtual_memory().total)
    stored = runs_from_results(runtime_results("llama.cpp", db, current_machine().to_dict()))
    if stored:
        ids = sorted({r[1] for r in stored})
        return LocalCpuRuns(name, threads, ram, tuple(r[0] for r in stored),
                            f"{len(stored)} stored `dlgpu bench --runtime llama.cpp` results of this machine "
                            f"(run{'s' if len(ids) > 1 else ''} {', '.join(ids[:3])}{', ...' if len(ids) > 3 else ''})")
    runs = shipped_runs_for(name, threads)
    return LocalCpuRuns(name, threads, ram, runs,
                        "dlgpu's shipped measurements on this machine (llm/data/measured)" if runs else "none")


def runs_from_results(results: Sequence[Mapping[str, Any]]) -> list[tuple[Any, str]]:
    """Stored llama.cpp bench results as ``llm.cpu.CpuRun`` (with their run ids): decode at ``context_len``
    (every timed step attends to that many tokens), prefill of ``prompt_len`` tokens."""
    from dlgpu.llm.cpu import RATE_TYPES, CpuRun

    out: list[tuple[Any, str]] = []
    for r in results:
        params = (r.get("settings") or {}).get("params") or {}
        if r.get("precision") not in RATE_TYPES or not r.get("samples_per_s"):
            continue
        if r.get("task") == "decode" and params.get("context_len"):
            run = CpuRun(str(r["workload"]), str(r["precision"]), "decode", int(params["context_len"]), 0,
                         float(r["samples_per_s"]) / int(r.get("batch_size") or 1))
        elif r.get("task") == "infer" and params.get("prompt_len"):
            run = CpuRun(str(r["workload"]), str(r["precision"]), "prefill", int(params["prompt_len"]), 0,
                         float(r["samples_per_s"]))
        else:
            continue
        out.append((run, str(r.get("_run_id", ""))))
    return out


def advise_llm(model: str, task: str, users: int = 1, tokens_per_s: float | None = None, context: int = 4096,
               tokens: int | None = None, deadline_s: float | None = None, formats: Sequence[str] = (),
               kv_format: str = "fp16", sources: Sequence[str] = ("buy", "rent"), hardware: Sequence[str] = (),
               budget_usd: float | None = None, catalog_files: Sequence[Path] = (),
               db: Path | None = None, output_tokens: int = 256) -> dict[str, Any]:
    """``dlgpu.llm-advise/1``: can this LLM be served or a text generated at the rate asked, on what, in which
    weight format (``advise.llm``); this machine judged by its stored `dlgpu bench` decode of the model."""
    from dlgpu.advise.llm import advise_llm as run
    from dlgpu.catalog import load_catalog
    from dlgpu.devices.machine import current_machine
    from dlgpu.llm.workload import resolve_model
    from dlgpu.store.history import local_measurements

    arch = resolve_model(model)
    stored = local_measurements(arch.id, "decode", {}, db, current_machine().to_dict(), None, None)
    return run(load_catalog(catalog_files), model, task, users, tokens_per_s, context, tokens, deadline_s, formats,
               kv_format, sources, hardware, budget_usd, stored.by_device.get("cpu"), output_tokens,
               local_llm_cpu(db))


def llm_catalog() -> list[dict[str, Any]]:
    """Every LLM architecture of the catalog with its computed parameters (total and active per token), layers,
    context, fp16 KV bytes per token (at full attention on every layer, the first token's), source, and whether a
    workload of that id is registered for measuring here."""
    from dlgpu.llm.architectures import load_architectures
    from dlgpu.workloads.registry import list_workloads

    here = {w.name for w in list_workloads() if w.family == "llm"}
    out = []
    for a in load_architectures().values():
        total, active = a.param_counts()
        out.append({"id": a.id, "name": a.name, "family": a.family, "hf_repo": a.hf_repo, "total_params": total,
                    "active_params": active, "layers": a.layers, "max_context": a.max_context,
                    "experts": a.experts, "experts_per_token": a.experts_per_token,
                    "kv_bytes_per_token_fp16": 2 * a.kv_cache_elements(1, 1), "measurable_here": a.id in here,
                    "source": a.source})
    return out


def calibrate_llm(output: Path | None = None, data_files: Sequence[Path] = ()) -> dict[str, Any]:
    """``dlgpu.llm-calibration/1``: refit the LLM inference model on published rows (``llm.calibration``)."""
    from dlgpu.llm.calibration import calibrate_llm as run

    return run(output, data_files)


def validate(path: Path, catalog_files: Sequence[Path] = ()) -> dict[str, Any]:
    """``dlgpu.validate/1``: every row of a file in the calibration file's columns predicted, with its error; a file
    in ``published_llm.csv``'s columns is predicted by the LLM model instead (``llm.validate``)."""
    from dlgpu.llm.validate import is_llm_file, validate_llm

    if is_llm_file(path):
        return validate_llm(path, catalog_files)
    from dlgpu.analyze.profiles import profile
    from dlgpu.predict.validate import validate as check

    return check(path, profile, catalog_files)


def calibrate(data_files: Sequence[Path] = (), output: Path | None = None,
              bench_files: Sequence[Path] | None = None) -> dict[str, Any]:
    """``dlgpu.calibration/1``: refit the performance model and write it (``predict.calibration``)."""
    from dlgpu.analyze.profiles import profile
    from dlgpu.predict.calibration import calibrate as fit

    return fit(profile, data_files, output, bench_files)


# --- this machine's ceilings (dlgpu probe) -----------------------------------------------------------------


def probe(devices: Sequence[str] | None = None, quick: bool = False, save: bool = True, db: Path | None = None,
          settings: Any = None, on_figure: Callable[[Any], None] | None = None,
          on_device: Callable[[Any], None] | None = None, seams: Any = None) -> ProbeReport:
    """Measure this machine's real ceilings on each device (``probe``: GEMM per precision, memory bandwidth,
    host-device transfers, dispatch and launch overhead), each next to its datasheet or estimated peak; saved in
    ``db`` as a ``probe`` run unless ``save`` is False. ``devices``: cpu, cuda, cuda:N, mps, xpu or all (default: all
    present). ``settings``: a ``probe.ProbeSettings`` (default: ``probe.QUICK`` or ``probe.FULL``); ``seams``: the
    timer's clock and synchronizer (``probe.Seams``; tests)."""
    from dlgpu.catalog import load_catalog
    from dlgpu.devices.detect import detect, select
    from dlgpu.devices.machine import current_machine
    from dlgpu.home import dlgpu_version, utc_now
    from dlgpu.probe import FULL, QUICK, probe_devices
    from dlgpu.results.probe import ProbeReport

    machine = current_machine()
    _present, absent = detect()
    chosen = select(list(machine.devices), list(devices or ["all"]))
    created = utc_now()
    figures, skipped, notes, interrupted = probe_devices(chosen, settings or (QUICK if quick else FULL), load_catalog(),
                                                         seams, on_figure, on_device,
                                                         threads=machine.devices[0].threads_used)
    report = ProbeReport(created_at=created, dlgpu=dlgpu_version(), machine=machine, devices=tuple(chosen),
                         quick=bool(quick if settings is None else settings.quick), figures=tuple(figures),
                         skipped=tuple(skipped), absent=dict(absent), notes=tuple(notes), interrupted=interrupted)
    if save and figures:
        from dlgpu.store.history import save_probe

        report = replace(report, run_id=save_probe(report.to_dict(), db))
    return report


def local_ceilings(db: Path | None = None, device: str = "cpu") -> tuple[Any, str]:
    """(this machine's measured ceilings on ``device``, a ``results.probe.MeasuredCeilings``, or None; why none):
    from the newest uncontended ``dlgpu probe`` of this machine (same fingerprint) stored in ``db``
    (``store.history.newest_probe``). No torch here."""
    from dlgpu.devices.machine import current_machine
    from dlgpu.results.probe import ceilings_from_doc
    from dlgpu.store.history import newest_probe

    try:
        got = newest_probe(db, current_machine().to_dict(), device)
    except BadInput as exc:  # a database this version cannot read: nothing probed to use
        return None, str(exc)
    if got.document is None:
        return None, got.why_none
    return ceilings_from_doc(got.document, device), ""


# --- the results store -------------------------------------------------------------------------------------


def list_runs(db: Path | None = None, workload: str | None = None, device: str | None = None,
              kind: str | None = None, since: str | None = None, until: str | None = None,
              limit: int | None = None) -> list[RunRow]:
    from dlgpu.store.history import list_runs as runs

    if workload is not None and not workload.startswith("custom:"):
        get_workload(workload)
    return runs(db, workload, device, kind, since, until, limit)


def show_run(ref: str, db: Path | None = None) -> StoredRun:
    from dlgpu.store.history import show_run as show

    return show(ref, db)


def export_runs(refs: Sequence[str], db: Path | None = None) -> dict[str, Any]:
    from dlgpu.store.history import export_runs as export

    return export(refs, db)


def import_files(paths: Sequence[Path], db: Path | None = None) -> dict[str, Any]:
    from dlgpu.store.history import import_files as load

    return load(paths, db)


def _fingerprint() -> dict[str, Any]:
    from dlgpu.devices.machine import current_machine

    return current_machine().to_dict()


def save_prediction(prediction: Prediction, db: Path | None = None) -> Prediction:
    """Store a prediction with this machine's fingerprint; the prediction with its run id."""
    from dlgpu.store.history import save_prediction as save

    return replace(prediction, run_id=save(prediction, _fingerprint(), db))


def save_advice(advice: Advice, db: Path | None = None) -> Advice:
    """Store an advise run with this machine's fingerprint; the advice with its run id."""
    from dlgpu.store.history import save_advice as save

    return replace(advice, run_id=save(advice, _fingerprint(), db))


def compare(refs: Sequence[str] = (), db: Path | None = None, workloads: Sequence[str] = (),
            catalog_files: Sequence[Path] = ()) -> Comparison:
    """The comparison tables and charts over stored runs: the ones named, else every run in the store."""
    from dlgpu.catalog import load_catalog
    from dlgpu.report.compare import build_comparison
    from dlgpu.store.history import stored_documents

    for w in workloads:
        get_workload(w)
    docs = stored_documents(refs, db)
    return build_comparison(docs, load_catalog(catalog_files), workloads, _tabular_curves_for(docs, db))


def _tabular_curves_for(docs: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]],
                        db: Path | None) -> list[dict[str, Any]]:
    """The predicted time-against-rows lines (this CPU and a few GPUs, with each GPU's crossover) of every tabular
    workload the runs trained, at the shape (features, trees, depth) they trained it: what the report draws beside
    the measured points. A workload dlgpu does not predict gets none."""
    from dlgpu.workloads.tabular import is_tabular

    shapes: dict[str, dict[str, str]] = {}
    for _, doc in docs:
        for r in doc.get("results") or []:
            name = r.get("workload")
            if r.get("task") != "train" or not name or name in shapes:
                continue
            try:
                spec = get_workload(str(name))
            except BadInput:
                continue
            if is_tabular(spec):
                params = (r.get("settings") or {}).get("params") or {}
                shapes[str(name)] = {k: str(v) for k, v in params.items() if k in ("features", "trees", "depth")}
    curves: list[dict[str, Any]] = []
    for name, ov in shapes.items():
        try:
            curves += tabular_curves(name, ov, db=db)
        except BadInput:
            continue
    return curves


# --- advice ------------------------------------------------------------------------------------------------


def advise(workload: str | WorkloadSpec, task: str = "train", *, size: JobSize | None = None,
           limits: Limits | None = None, sources: Sequence[str] = (), hardware: Sequence[str] = (),
           prices_usd: Mapping[str, float] | None = None, precisions: Sequence[str] | None = None,
           batch_size: int | None = None, overrides: Mapping[str, str] | None = None, measure: bool = False,
           db: Path | None = None, catalog_files: Sequence[Path] = ()) -> Advice:
    """Does this job need a GPU, which one, at what cost (``advise.advice``): this machine as stored ``dlgpu bench``
    results (or measured now with ``measure``, or predicted), catalog GPUs to buy and cloud instances to rent.
    ``workload``: a registered name, or a user's model (``custom_workload``)."""
    from dlgpu.advise.advice import Request
    from dlgpu.advise.advice import advise as decide
    from dlgpu.advise.advice import validate as check
    from dlgpu.analyze.profiles import profile, register_custom
    from dlgpu.catalog import load_catalog
    from dlgpu.devices.machine import current_machine
    from dlgpu.predict.calibration import load_calibration

    spec = workload if isinstance(workload, WorkloadSpec) else get_workload(workload)
    if spec.family == "custom":
        register_custom(spec)
    req = Request(spec, task, size or JobSize(), limits or Limits(), tuple(sources), tuple(hardware),
                  dict(prices_usd or {}), None if precisions is None else tuple(precisions), batch_size,
                  dict(overrides or {}))
    check(req)
    catalog = load_catalog(catalog_files)
    machine = current_machine()
    local = _local(req, db, machine.to_dict(), measure) if "own" in (sources or ("own",)) else None
    return decide(req, local or _no_local(), machine.devices, catalog, load_calibration(), profile)


def _no_local() -> Any:
    from dlgpu.advise.advice import LocalMeasurements

    return LocalMeasurements()


def _local(req: Any, db: Path | None, machine: Mapping[str, Any], measure: bool) -> Any:
    """This machine's figures for the request: a quick bench now (``measure``), else the stored ones."""
    from dlgpu.advise.advice import LocalMeasurements
    from dlgpu.results import PRECISIONS
    from dlgpu.store.history import local_measurements
    from dlgpu.workloads.select import resolve_choice

    spec = req.spec
    if not measure:
        asked = None if not req.precisions else resolve_choice(req.precisions, PRECISIONS, "precisions", PRECISIONS)
        got = local_measurements(spec.name, req.task, dict(req.overrides), db, machine, asked, req.batch_size)
        return LocalMeasurements(got.by_device, got.run_id, elsewhere=got.elsewhere, ceilings=local_ceilings(db)[0])
    custom = spec.family == "custom"
    rep = bench(workloads=None if custom else [spec.name], tasks=[req.task], quick=True, batch_size=req.batch_size,
                overrides=dict(req.overrides), db=db or default_db_path(), precisions=req.precisions,
                custom_specs=[spec] if custom else ())
    ok = [r for r in rep.results if r.status == "ok"]
    fp32 = {r.device: r.samples_per_s for r in ok if r.precision == "fp32"}
    best: dict[str, dict[str, Any]] = {}
    for r in sorted(ok, key=lambda r: r.samples_per_s or 0):
        best[r.device] = {**r.to_dict(), "_run_id": rep.run_id, "_created_at": rep.created_at,
                          "_fp32_sps": fp32.get(r.device)}
    return LocalMeasurements(best, rep.run_id, fresh=True)


# --- tabular: training time of boosted trees predicted anywhere, the CPU/GPU crossover -----------------------------


def local_tabular_cpu(db: Path | None = None) -> Any:
    """This machine's CPU for the tabular model (``tabular.local.LocalCpu``) with the training times measured on it:
    the stored ``dlgpu bench`` results of the tabular workloads made on this CPU model with this many threads, else
    dlgpu's shipped measurements where they were made on this CPU (``tabular.local.shipped_runs_for``). No torch."""
    import psutil

    from dlgpu.catalog import CpuSpec
    from dlgpu.catalog.local import this_cpu
    from dlgpu.devices.cpu import usable_cores
    from dlgpu.tabular.local import LocalCpu, runs_from_results, shipped_runs_for

    name, spec = this_cpu()
    threads = usable_cores()[0]
    bandwidth = spec.memory_bandwidth_bytes_per_s if isinstance(spec, CpuSpec) else None
    catalog_id = spec.id if isinstance(spec, CpuSpec) else None
    ram = int(psutil.virtual_memory().total)
    stored = _stored_tabular_results(db, name, threads)
    runs = runs_from_results(stored, threads)
    if runs:
        ids = sorted({i for r in runs for i in r.source.split(", ")})
        source = (f"{len(runs)} stored `dlgpu bench` result(s) of this machine (run{'s' if len(ids) > 1 else ''} "
                  f"{', '.join(ids[:3])}{', ...' if len(ids) > 3 else ''})")
        return LocalCpu(name, threads, bandwidth, ram, catalog_id, tuple(runs), source)
    shipped, file = shipped_runs_for(name, threads)
    source = f"dlgpu's shipped measurements on this machine (tabular/data/measured/{file})" if shipped else "none"
    return LocalCpu(name, threads, bandwidth, ram, catalog_id, shipped, source)


def _stored_tabular_results(db: Path | None, cpu_name: str, threads: int) -> list[dict[str, Any]]:
    """Every stored bench result of a tabular workload measured on a CPU of this model with this many threads (the
    CPU and its threads are what decide a tabular fit's time; the torch stack in the fingerprint does not), each with
    ``_run_id``; results measured under contention are left out where an uncontended one of the same job exists."""
    from dlgpu.store.sqlite import Store
    from dlgpu.workloads.registry import list_workloads

    names = {w.name for w in list_workloads() if w.family == "tabular"}
    out: list[dict[str, Any]] = []
    try:
        with Store(db) as store:
            for row in store.runs(kind="bench"):
                doc = store.get(row.id).document
                cpus = [d for d in (doc.get("machine") or {}).get("devices") or [] if d.get("kind") == "cpu"]
                if not cpus or cpus[0].get("name") != cpu_name or int(cpus[0].get("threads_used") or 0) != threads:
                    continue
                out += [{**r, "_run_id": row.id} for r in doc.get("results") or [] if r.get("workload") in names]
    except Exception:  # no store yet, or one this version cannot read: nothing measured
        return []

    def key(r: Mapping[str, Any]) -> tuple[Any, ...]:
        params = (r.get("settings") or {}).get("params") or r.get("overrides") or {}
        return (r.get("workload"), r.get("task"), tuple(sorted((str(k), str(v)) for k, v in params.items())))

    clean = {key(r) for r in out if not r.get("contended")}
    return [r for r in out if not r.get("contended") or key(r) not in clean]


def predict_tabular(workload: str, hardware: str, overrides: Mapping[str, str] | None = None,
                    catalog_files: Sequence[Path] = (), db: Path | None = None) -> dict[str, Any]:
    """``dlgpu.tabular-predict/1``: seconds to train a boosted-trees job (``--set rows features trees depth``) on a
    catalog GPU, a catalog CPU or ``local`` (this CPU, calibrated by its measurements where there are some), with
    its interval from the held-out errors (``tabular.predict``); an estimator without published timings is answered
    "not predicted"."""
    from dlgpu.catalog import load_catalog
    from dlgpu.tabular.predict import predict_tabular as run

    local = local_tabular_cpu(db) if hardware.strip().lower() in ("local", "cpu", "this") else None
    return run(load_catalog(catalog_files), workload, hardware, overrides or {}, local)


def advise_tabular(workload: str, overrides: Mapping[str, str] | None = None, deadline_s: float | None = None,
                   gpu_overhead_s: float | None = None, sources: Sequence[str] = ("buy", "rent"),
                   hardware: Sequence[str] = (), budget_usd: float | None = None,
                   catalog_files: Sequence[Path] = (), db: Path | None = None) -> dict[str, Any]:
    """``dlgpu.tabular-advise/1``: is this machine's CPU enough for the tabular job, or does a GPU pay, and which cheap
    one to rent or buy; the crossover rows for this job on this CPU (``advise.tabular``)."""
    from dlgpu.advise.tabular import advise_tabular as run
    from dlgpu.catalog import load_catalog

    return run(load_catalog(catalog_files), workload, overrides or {}, local_tabular_cpu(db), deadline_s,
               gpu_overhead_s, sources, hardware, budget_usd)


def tabular_curves(workload: str, overrides: Mapping[str, str] | None = None, catalog_files: Sequence[Path] = (),
                   db: Path | None = None) -> list[dict[str, Any]]:
    """Predicted training time against rows of a tabular workload on this CPU and a few GPUs, with the rows where each
    GPU is predicted to overtake this CPU (``tabular.predict.predicted_curves``), as the plain data
    ``report.compare.build_comparison(..., tabular_curves=...)`` draws."""
    from dlgpu.catalog import load_catalog
    from dlgpu.tabular.predict import predicted_curves

    return predicted_curves(load_catalog(catalog_files), workload, overrides or {}, local_tabular_cpu(db))
