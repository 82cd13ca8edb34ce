"""The public API: the only module that wires layers together. Typed arguments in, ``results`` out.

``bench`` validates everything first (bad input raises ``BadInput`` before anything runs), plans every
(workload, task, device, precision) combination, lists the ones that cannot run as skipped with the
reason, measures the rest, and derives speedups and real-task projections from what was measured."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from dlgpu.errors import BadInput
from dlgpu.results import (
    BENCH_SCHEMA,
    DEFAULT_TASKS,
    PRECISIONS,
    TASKS,
    BenchConfig,
    BenchReport,
    BenchResult,
    DeviceInfo,
    TaskProjection,
)
from dlgpu.store import write_json_atomic
from dlgpu.workloads.registry import (
    DECODE_BATCH,
    DEFAULT_SUITE,
    WorkloadSpec,
    check_task,
    get_workload,
    list_workloads,
    supporting,
    task_unsupported_reason,
)

if TYPE_CHECKING:
    from dlgpu.measure.timer import Budget

USABLE_MEMORY_FRACTION = 0.9
"""Share of a device's free memory a run may plan to use: the rest is headroom for activations' spikes,
the allocator's fragmentation and (on the CPU) everything else running."""


class BenchObserver(Protocol):
    """Progress callbacks (the CLI draws a progress bar with them)."""

    def planned(self, total: int) -> None: ...

    def started(self, label: str) -> None: ...

    def finished(self, result: BenchResult) -> None: ...


class _NullObserver:
    def planned(self, total: int) -> None:
        pass

    def started(self, label: str) -> None:
        pass

    def finished(self, result: BenchResult) -> None:
        pass


@dataclass(frozen=True)
class _Plan:
    spec: WorkloadSpec
    params: dict[str, Any]
    overrides: dict[str, Any]
    task: str
    device: DeviceInfo
    precisions: tuple[str, ...]
    batch_size: int


def resolve_workloads(names: Sequence[str] | None) -> list[WorkloadSpec]:
    if not names:
        return [get_workload(n) for n in DEFAULT_SUITE]
    if "all" in names:
        return list_workloads(include_tiny=False)
    out: list[WorkloadSpec] = []
    for n in names:
        spec = get_workload(n)
        if spec not in out:
            out.append(spec)
    return out


def resolve_choice(values: Sequence[str] | None, valid: Sequence[str], flag: str,
                   default: Sequence[str]) -> tuple[str, ...]:
    if not values:
        return tuple(default)
    if "all" in values:
        return tuple(valid)
    for v in values:
        if v not in valid:
            raise BadInput(f"{flag} {v}: not one of {', '.join((*valid, 'all'))}")
    return tuple(v for v in valid if v in values)


def parse_overrides(pairs: Sequence[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise BadInput(f"--set {pair}: expected key=value, e.g. --set image_size=64")
        out[key.strip()] = value.strip()
    return out


def _overrides_for(specs: list[WorkloadSpec], overrides: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """Apply each ``--set`` key to the workloads that have it; a key no selected workload has is an error."""
    per: dict[str, dict[str, str]] = {s.name: {} for s in specs}
    for key, value in overrides.items():
        takers = [s for s in specs if any(p.name == key for p in s.params)]
        if not takers:
            valid = sorted({p.name for s in specs for p in s.params})
            raise BadInput(f"--set {key}: no selected workload has a parameter {key!r} "
                           f"(valid: {', '.join(valid) or 'none'})")
        for s in takers:
            per[s.name][key] = value
    return per


ISOLATE_ABOVE_FRACTION = 0.25
"""CPU runs whose memory floor exceeds this share of usable memory run in a child process: on the CPU an
out-of-memory is the kernel's SIGKILL, and it must not take what was already measured with it."""


@dataclass(frozen=True)
class _Fit:
    reason: str | None  # why it cannot fit, or None
    floor_bytes: int
    usable_bytes: int | None
    note: str  # "needs at least X for ...; Y free"


def _fit(spec: WorkloadSpec, params: Mapping[str, Any], task: str, device: DeviceInfo, batch_size: int,
         precision: str, cache: dict[tuple[Any, ...], Any]) -> _Fit:
    """Whether the run can fit: weights, gradients and optimizer state (counted on the meta device) plus,
    for training, the activations kept for backward (traced on fake tensors at this batch and precision)."""
    from dlgpu.analyze import activation_bytes, memory_floor
    from dlgpu.devices import available_memory
    from dlgpu.units import format_bytes

    pkey = repr(sorted(params.items()))
    if (spec.name, pkey, task) not in cache:
        cache[(spec.name, pkey, task)] = memory_floor(spec, params, task)
    floor = cache[(spec.name, pkey, task)]
    what = ("weights, gradients and " + floor.optimizer + " state") if task == "train" else "weights"
    need = floor.total_bytes
    note = f"{format_bytes(floor.total_bytes)} for {what} of {floor.parameters / 1e9:.2f}B parameters"
    if task == "train":
        akey = (spec.name, pkey, batch_size, precision)
        if akey not in cache:
            try:
                cache[akey] = activation_bytes(spec, params, batch_size, precision)
            except Exception:  # not traceable on fake tensors: judge by the floor alone
                cache[akey] = None
        acts = cache[akey]
        if acts is None:
            note += " (activations not counted: the model cannot be traced on fake tensors)"
        else:
            need += acts
            note += f" + {format_bytes(acts)} of activations kept for backward at batch {batch_size}"
    if task == "decode":
        from dlgpu.analyze import kv_cache_bytes

        kv = kv_cache_bytes(spec, params, batch_size, precision)
        need += kv
        note += f" + {format_bytes(kv)} of KV cache ({params['context_len']} tokens x batch {batch_size})"
    note = f"needs about {format_bytes(need)}: {note}"
    available = available_memory(device)
    if available is None:
        return _Fit(None, need, None, note)
    usable = int(available * USABLE_MEMORY_FRACTION)
    note += f"; {device.id} has {format_bytes(available)} free, {format_bytes(usable)} usable"
    return _Fit(f"does not fit: {note}" if need > usable else None, need, usable, note)


def _project(result: BenchResult, spec: WorkloadSpec, params: Mapping[str, Any]) -> BenchResult:
    sps = result.samples_per_s
    if sps is None:
        return result
    task = spec.task_samples(result.task, params)
    if task is None:
        return result
    samples, description = task
    return replace(result, projection=TaskProjection(description, samples, samples / sps))


def default_batch(spec: WorkloadSpec, device: DeviceInfo, quick: bool) -> int:
    """The workload's published per-GPU batch on accelerators; its small batch with --quick and on the CPU.

    A CPU's throughput saturates at small batches, while a published GPU batch (256 images for ResNet-50)
    makes one CPU step take minutes; ``--batch-size`` overrides either."""
    return spec.quick_batch_size if quick or device.kind == "cpu" else spec.batch_size


def with_speedups(results: Sequence[BenchResult]) -> list[BenchResult]:
    """Speedup in samples/s over this machine's CPU at fp32 for the same workload and task."""
    base = {(r.workload, r.task): r.samples_per_s for r in results
            if r.device == "cpu" and r.precision == "fp32" and r.status == "ok"}
    out = []
    for r in results:
        cpu = base.get((r.workload, r.task))
        sps = r.samples_per_s
        out.append(replace(r, speedup_vs_cpu_fp32=None if (cpu is None or sps is None) else sps / cpu))
    return out


IDLE_BASELINE_S = {True: 1.0, False: 3.0}
"""Seconds of idle baseline per device per ``bench`` run (quick, standard), or the per-configuration budget if
shorter (an idle window as long as the windows it is subtracted from; at least the sensor's minimum window):
measured once, before the first configuration on the device, and subtracted from every window's energy there."""


class _DeviceEnergy:
    """Per ``bench`` run: each device's catalog facts (TDP, peaks), one open sensor backend and its idle
    baseline, both made when the device is first measured and closed at the end."""

    def __init__(self, enabled: bool, period_s: float, idle_s: float) -> None:
        self.enabled, self.period_s, self.idle_s = enabled, period_s, idle_s
        self._catalog: Any = None
        self._facts: dict[str, Any] = {}
        self._setups: dict[str, Any] = {}
        self.summary: dict[str, dict[str, Any]] = {}

    def facts(self, device: DeviceInfo) -> Any:
        from dlgpu.catalog import device_facts, load_catalog

        if device.id not in self._facts:
            if self._catalog is None:
                self._catalog = load_catalog()
            self._facts[device.id] = device_facts(device, self._catalog)
        return self._facts[device.id]

    def setup(self, device: DeviceInfo) -> Any:
        """The ``TelemetrySetup`` for ``device`` (opening its backend and measuring idle the first time)."""
        from dlgpu.measure.harness import TelemetrySetup, idle_baseline
        from dlgpu.measure.telemetry import telemetry_backend

        if not self.enabled:
            return None
        if device.id not in self._setups:
            facts = self.facts(device)
            tdp_source = facts.tdp_basis if facts.tdp_w else None
            backend = telemetry_backend(device, tdp_w=facts.tdp_w, tdp_source=tdp_source)
            try:
                idle = idle_baseline(backend, device, self.period_s, self.idle_s)
            except BaseException:  # Ctrl-C while idling: nothing holds the backend yet
                backend.close()
                raise
            self._setups[device.id] = TelemetrySetup(self.period_s, facts.tdp_w, tdp_source, idle, backend)
            self.summary[device.id] = {"source": backend.source, "basis": backend.basis, "reason": backend.reason,
                                       "facts": facts.to_dict(), "idle_baseline": idle.to_dict()}
        return self._setups[device.id]

    def close(self) -> None:
        for setup in self._setups.values():
            setup.backend.close()


def _flops_note(flops: float, target: str, batch: int) -> str:
    return (f"{flops / 1e9:,.4g} GFLOP per step (dlgpu's operator profile of this step at batch {batch}, traced on "
            f"fake tensors as eager PyTorch runs it on a {target.upper()})")


class _BenchSink:
    """Saves a bench run in the results store as it goes. A store that fails (disk full, a locked file past
    the busy timeout) never costs a measurement: the run goes on, a warning says what was not saved."""

    def __init__(self, db: Path | None) -> None:
        self.store: Any = None
        self.run_id: str | None = None
        if db is not None:
            from dlgpu.store import Store, new_run_id

            self.store = Store(db)
            self.run_id = new_run_id()

    def _warn(self, exc: Exception) -> None:
        import sys

        sys.stderr.write(f"dlgpu: warning: could not save to the results store {self.store.path}: {exc}\n")
        self.store = None

    def begin(self, report: BenchReport) -> None:
        if self.store is None or self.run_id is None:
            return
        from dlgpu.store import bench_summary

        doc = report.to_dict()
        try:
            self.store.begin_bench(self.run_id, doc, bench_summary(doc))
        except Exception as exc:
            self._warn(exc)

    def save(self, report: BenchReport, status: str | None = None) -> None:
        if self.store is None or self.run_id is None:
            return
        from dlgpu.store import bench_summary

        doc = report.to_dict()
        try:
            self.store.save_bench_results(self.run_id, doc, status, bench_summary(doc))
        except Exception as exc:
            self._warn(exc)

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


def bench(
    workloads: Sequence[str] | None = None,
    devices: Sequence[str] | None = None,
    precisions: Sequence[str] | None = None,
    tasks: Sequence[str] | None = None,
    quick: bool = False,
    batch_size: int | None = None,
    overrides: Mapping[str, str] | None = None,
    budget: Budget | None = None,
    observer: BenchObserver | None = None,
    save_to: Path | None = None,
    custom_specs: Sequence[WorkloadSpec] = (),
    include_hostname: bool = False,
    on_step: Callable[[int, float], None] | None = None,
    telemetry: bool = True,
    telemetry_period_s: float | None = None,
    db: Path | None = None,
) -> BenchReport:
    """Measure workloads on this machine's devices. See the module docstring.

    ``telemetry``: sample power, energy and utilization beside every measured region (every
    ``telemetry_period_s``, default ``DEFAULT_PERIOD_S``), net of an idle baseline measured once per device;
    each result also gets its model FLOPs utilization from the operator profile (``analyze``).

    ``db``: the results store to save the run in as it goes (its row first, then every result as it finishes,
    then ``complete`` or ``interrupted``); None saves nothing there."""
    from dlgpu.devices import detect, select, unsupported_reason, use_threads
    from dlgpu.devices.machine import machine_info
    from dlgpu.measure.harness import build, measure
    from dlgpu.measure.isolated import measure_isolated
    from dlgpu.measure.telemetry import DEFAULT_PERIOD_S
    from dlgpu.measure.timer import QUICK, STANDARD

    # --- validate everything before anything runs -------------------------------------------------
    if batch_size is not None and batch_size <= 0:
        raise BadInput(f"--batch-size {batch_size}: must be a positive integer")
    period_s = DEFAULT_PERIOD_S if telemetry_period_s is None else telemetry_period_s
    if not 0 < period_s <= 10:
        raise BadInput(f"--telemetry-period {telemetry_period_s}: must be a number of seconds in (0, 10]")
    specs = list(custom_specs) if custom_specs and not workloads else resolve_workloads(workloads)
    specs += [s for s in custom_specs if s not in specs]
    precs = resolve_choice(precisions, PRECISIONS, "--precision", PRECISIONS)
    named = [x for t in tasks or () for x in (DEFAULT_TASKS if t == "both" else (t,))]
    task_list = resolve_choice(named, TASKS, "--task", DEFAULT_TASKS)
    # A task named explicitly is planned for every workload (skipped, with the reason, where unsupported);
    # through "all", only for the workloads that support it. Nothing able to run it at all is bad input.
    for t in task_list:
        if t in named and not any(s.supports(t) for s in specs):
            if len(specs) == 1:
                check_task(specs[0], t)
            raise BadInput(f"--task {t}: none of the selected workloads supports it (workloads that do: "
                           f"{supporting(t)})")
    present, _absent = detect()
    chosen = select(present, list(devices or []))
    per_overrides = _overrides_for(specs, overrides or {})
    params = {s.name: s.resolve(per_overrides[s.name]) for s in specs}
    run_budget: Budget = budget or (QUICK if quick else STANDARD)

    cpu = present[0]
    use_threads(cpu.threads_used or 1)
    config = BenchConfig(
        workloads=tuple(s.name for s in specs), devices=tuple(d.id for d in chosen), precisions=precs,
        tasks=task_list, quick=quick, batch_size=batch_size, overrides=dict(overrides or {}),
        budget_s=run_budget.budget_s, warmup_steps=run_budget.warmup_steps,
        min_steps=run_budget.min_steps, max_steps=run_budget.max_steps,
        telemetry=telemetry, telemetry_period_s=period_s if telemetry else None,
    )
    machine = machine_info(present, include_hostname)
    created = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    obs = observer or _NullObserver()
    sink = _BenchSink(db)

    plans = [
        _Plan(s, params[s.name], per_overrides[s.name], t, d, precs,
              batch_size or (DECODE_BATCH if t == "decode" else default_batch(s, d, quick)))
        for s in specs for t in task_list if t in named or s.supports(t) for d in chosen
    ]
    obs.planned(sum(len(p.precisions) for p in plans))
    results: list[BenchResult] = []
    floors: dict[tuple[Any, ...], Any] = {}

    def report(interrupted: bool) -> BenchReport:
        groups: dict[tuple[str, str, str], int] = {}
        for r in results:
            groups.setdefault((r.workload, r.task, r.device), len(groups))
        ordered = sorted(results, key=lambda r: (groups[(r.workload, r.task, r.device)],
                                                 PRECISIONS.index(r.precision)))
        final = with_speedups([_project(r, get_spec(r.workload), params[r.workload]) for r in ordered])
        return BenchReport(created, machine, config, tuple(final), interrupted, telemetry=dict(energy.summary),
                           run_id=sink.run_id)

    by_name = {s.name: s for s in specs}

    def get_spec(name: str) -> WorkloadSpec:
        return by_name[name]

    def add(result: BenchResult) -> None:
        results.append(result)
        obs.finished(result)
        current = report(interrupted=True)
        sink.save(current)
        if save_to is not None:
            write_json_atomic(save_to, current.to_dict())

    energy = _DeviceEnergy(telemetry, period_s, min(IDLE_BASELINE_S[quick], run_budget.budget_s))
    step_flops: dict[tuple[Any, ...], tuple[float, float, str] | str] = {}  # (FLOPs, bytes, precision) or why none

    def finish(result: BenchResult, plan: _Plan) -> BenchResult:
        """A measured result with its model FLOPs utilization (and the telemetry-off label)."""
        stats, batch = result.step_time, result.batch_size
        if result.status != "ok" or stats is None or not batch:
            return result
        if not telemetry:
            result = replace(result, energy_source="unavailable", energy_basis="telemetry off (--no-telemetry)")
        if plan.spec.family == "custom":
            return replace(result, mfu_basis="no MFU: a custom --model workload has no operator profile")
        target = "cpu" if plan.device.kind == "cpu" else "gpu"
        # One trace per workload, task, batch and target (seconds for a full-size model): autocast changes the
        # dtypes of the same operators, not their FLOPs, so the other precisions reuse it and say so.
        key = (plan.spec.name, plan.task, batch, target, repr(sorted(plan.overrides.items())))
        if key not in step_flops:
            obs.started(f"{plan.spec.name} {plan.task}: counting FLOPs (operator profile)")
            try:
                prof = analyze(plan.spec.name, plan.task, result.precision, batch, plan.overrides, target=target)
                step_flops[key] = (float(prof.flops), float(prof.bytes), result.precision)
            except Exception as exc:  # a model that cannot be traced on fake tensors (data-dependent shapes)
                step_flops[key] = f"no MFU: the step cannot be traced on fake tensors ({type(exc).__name__}: {exc})"
        counted = step_flops[key]
        if isinstance(counted, str):
            return replace(result, mfu_basis=counted[:400])
        flops, traffic, at = counted
        result = replace(result, bytes_per_step=traffic or None)
        note = _flops_note(flops, target, batch) + ("" if at == result.precision else
                                                    f", counted on the {at} step: autocast changes the dtypes of the "
                                                    "same operators, not their FLOPs")
        peak, peak_basis = energy.facts(plan.device).peak(result.precision)
        if flops <= 0 or not peak:
            why = "the profile counts no FLOPs" if flops <= 0 else f"no peak FLOP/s: {peak_basis}"
            return replace(result, flops_per_step=flops or None, mfu_basis=f"no MFU: {why}; {note}")
        achieved = flops / stats.median
        return replace(result, flops_per_step=flops, mfu=achieved / peak, mfu_basis=(
            f"{note} / median step time {stats.median:.4g} s = {achieved / 1e9:,.4g} GFLOP/s achieved, "
            f"over the peak {peak / 1e9:,.4g} GFLOP/s ({peak_basis})"))

    sink.begin(report(interrupted=True))
    cpu_settings = {"threads": cpu.threads_used, "physical_cores": cpu.physical_cores,
                    "cpu_native_bf16": cpu.details.get("native_bf16")}
    try:
        for plan in plans:
            base: dict[str, Any] = {"workload": plan.spec.name, "task": plan.task, "device": plan.device.id,
                    "overrides": plan.overrides, "batch_size": plan.batch_size,
                    "requested_batch_size": plan.batch_size}
            runnable = []
            for prec in plan.precisions:
                why = task_unsupported_reason(plan.spec, plan.task) or unsupported_reason(plan.device, prec)
                if why:
                    add(BenchResult(**base, precision=prec, status="skipped", reason=why))
                else:
                    runnable.append(prec)
            if not runnable:
                continue
            label = f"{plan.spec.name} {plan.task} on {plan.device.id}"
            obs.started(f"{label}: checking memory")
            fits: dict[str, _Fit] = {}
            floor_error: str | None = None
            try:
                for prec in runnable:
                    fits[prec] = _fit(plan.spec, plan.params, plan.task, plan.device, plan.batch_size, prec, floors)
            except Exception as exc:  # a workload that cannot even be built on meta
                floor_error = f"{type(exc).__name__}: {exc}"
            for prec, f in fits.items():
                if f.reason:
                    add(BenchResult(**base, precision=prec, status="skipped", reason=f.reason))
            runnable = [p for p in runnable if not (p in fits and fits[p].reason)]
            if not runnable:
                continue
            fit = fits.get(runnable[0])
            settings = cpu_settings if plan.device.kind == "cpu" else {}
            if telemetry and plan.device.id not in energy.summary:
                obs.started(f"{plan.device.id}: measuring idle power (the baseline, once per device)")
            tel_setup = energy.setup(plan.device)
            if (fit is not None and fit.usable_bytes and plan.device.kind == "cpu"
                    and fit.floor_bytes > ISOLATE_ABOVE_FRACTION * fit.usable_bytes
                    and plan.spec.family != "custom"):
                obs.started(f"{label}: measuring in a child process (large for this machine's memory)")
                for result in measure_isolated(
                        plan.spec.name, plan.params, plan.device, plan.task, runnable, plan.batch_size,
                        run_budget, plan.overrides, settings, cpu.threads_used or 1, fit.note,
                        telemetry=tel_setup):
                    add(finish(result, plan))
                continue
            obs.started(f"{label}: building")
            try:
                built = build(plan.spec, plan.params, plan.device)
            except Exception as exc:
                msg = floor_error or f"build failed: {type(exc).__name__}: {exc}"
                for prec in runnable:
                    add(BenchResult(**base, precision=prec, status="failed", reason=msg[:500]))
                continue
            for prec in runnable:
                obs.started(f"{label} at {prec}, batch {plan.batch_size}")
                add(finish(measure(built, plan.task, prec, plan.batch_size, run_budget, overrides=plan.overrides,
                                   settings=settings, on_step=on_step, telemetry=tel_setup), plan))
            del built
    except KeyboardInterrupt:
        final = report(interrupted=True)
        sink.save(final, "interrupted")
        sink.close()
        if save_to is not None:
            write_json_atomic(save_to, final.to_dict())
        return final
    finally:
        energy.close()
    final = report(interrupted=False)
    sink.save(final, "complete")
    sink.close()
    if save_to is not None:
        write_json_atomic(save_to, final.to_dict())
    return final


def workloads(pattern: str = "*", include_tiny: bool = False) -> list[WorkloadSpec]:
    from dlgpu.errors import BadInput as _BadInput

    found = list_workloads(pattern, include_tiny=include_tiny)
    if not found:
        names = ", ".join(s.name for s in list_workloads(include_tiny=include_tiny))
        raise _BadInput(f"no workload matches {pattern!r} (valid: {names})")
    return found


def workload_summary(spec: WorkloadSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "family": spec.family,
        "description": spec.description,
        "batch_size": spec.batch_size,
        "quick_batch_size": spec.quick_batch_size,
        "sample_unit": spec.sample_unit,
        "optimizer": spec.optimizer,
        "channels_last": spec.channels_last,
        "tiny": spec.tiny,
        "architecture_source": spec.architecture_source,
        "params": [{"name": p.name, "default": p.default, "type": p.type_name, "help": p.help,
                    "choices": None if p.choices is None else list(p.choices)} for p in spec.params],
        "facts": spec.facts.to_dict(),
    }


def workload_details(name: str) -> tuple[WorkloadSpec, int]:
    """The spec and its parameter count, counted on the meta device (no memory, no compute)."""
    from dlgpu.analyze import memory_floor

    spec = get_workload(name)
    return spec, memory_floor(spec, spec.resolve({}), "infer").parameters


# --- the hardware catalog -------------------------------------------------------------------------

if TYPE_CHECKING:
    from dlgpu.catalog import HardwareEntry, HardwareListing


def hardware_list(kind: str = "all", catalog_files: Sequence[Path] = ()) -> HardwareListing:
    """The catalog's GPUs, CPUs or cloud instances (or all), with the user's catalog files merged in.

    ``catalog_files`` are the ``--catalog`` files; the user's config dir is always read too."""
    from dlgpu.catalog import KINDS, HardwareListing, load_catalog

    if kind not in KINDS:
        raise BadInput(f"--kind {kind}: not one of {', '.join(KINDS)}")
    cat = load_catalog(catalog_files)
    return HardwareListing(kind, cat.gpus, cat.cpus, cat.cloud, cat.user_files)


def hardware_show(hardware_id: str, catalog_files: Sequence[Path] = ()) -> HardwareEntry:
    """One catalog entry by id (a GPU comes with the cloud instances that carry it), or ``local``: this
    machine's CPU, as the catalog row its model name matches or else an estimate that says so."""
    from dlgpu.catalog import GpuSpec, HardwareEntry, load_catalog, this_cpu

    cat = load_catalog(catalog_files)
    if hardware_id.strip().lower() == "local":
        model_name, described = this_cpu(cat)
        return HardwareEntry("local", described, local_model_name=model_name)
    spec = cat.get(hardware_id)
    if isinstance(spec, GpuSpec):
        return HardwareEntry("gpu", spec, cat.instances_for(spec.id))
    return HardwareEntry("cpu", spec)


# --- prediction (issue #3) ------------------------------------------------------------------------------

_PROFILE_CACHE: dict[tuple[Any, ...], Any] = {}


def analyze(workload: str, task: str = "train", precision: str = "fp32", batch_size: int | None = None,
            overrides: Mapping[str, str] | None = None, optimizer_step: bool = True, target: str = "gpu") -> Any:
    """The operator profile of one full-size step, traced on fake tensors (no memory, no compute), as eager
    PyTorch dispatches it on a GPU (``target="gpu"``) or on a CPU (``"cpu"``; see ``analyze.gpu_semantics``).

    ``decode`` is one generated token per sequence against a KV cache of ``context_len`` tokens (decoder-only
    language models); its default batch is one sequence (``DECODE_BATCH``)."""
    from dataclasses import replace as _replace

    from dlgpu.analyze import memory_floor
    from dlgpu.analyze.trace import profile

    if task not in TASKS:
        raise BadInput(f"--task {task}: not one of {', '.join(TASKS)}")
    if precision not in PRECISIONS:
        raise BadInput(f"--precision {precision}: not one of {', '.join(PRECISIONS)}")
    spec = _CUSTOM[workload] if workload in _CUSTOM else get_workload(workload)
    check_task(spec, task)
    params = spec.resolve(dict(overrides or {}))
    bs = batch_size or (DECODE_BATCH if task == "decode" else spec.batch_size)
    if bs <= 0:
        raise BadInput(f"--batch-size {bs}: must be a positive integer")
    key = (spec.name, task, precision, bs, repr(sorted(params.items())), optimizer_step, target)
    if key not in _PROFILE_CACHE:
        cached = None if spec.family == "custom" else _disk_profile(key)
        if cached is not None:
            _PROFILE_CACHE[key] = cached
            return cached
        prof = profile(spec, params, task, precision, bs, target=target)
        if not optimizer_step:
            prof = prof.without_phase("optimizer")
        _PROFILE_CACHE[key] = _replace(prof, state_bytes=memory_floor(spec, params, task).total_bytes)
        if spec.family != "custom":
            _disk_profile(key, _PROFILE_CACHE[key])
    return _PROFILE_CACHE[key]


_CUSTOM: dict[str, WorkloadSpec] = {}
"""User models (``--model``) that ``analyze`` may trace in this process, by name."""


def profile_cache_dir() -> Path:
    """Where traced profiles are kept between runs: ``$DLGPU_CACHE_DIR``, else ``$DLGPU_HOME/cache``, else
    the user cache dir (``~/.cache/dlgpu`` on Linux)."""
    import os

    if os.environ.get("DLGPU_CACHE_DIR"):
        return Path(os.environ["DLGPU_CACHE_DIR"])
    if os.environ.get("DLGPU_HOME"):
        return Path(os.environ["DLGPU_HOME"]) / "cache"
    import platformdirs

    return Path(platformdirs.user_cache_dir("dlgpu", appauthor=False))


_TRACE_VERSION: list[str] = []


def _disk_profile(key: tuple[Any, ...], prof: Any = None) -> Any:
    """Read (``prof`` None) or write a traced profile in the cache dir. A cache that cannot be read or
    written is no cache: the trace runs again."""
    import hashlib
    import json

    from dlgpu.results import profile_from_dict

    if not _TRACE_VERSION:
        from dlgpu.analyze.trace import trace_version

        _TRACE_VERSION.append(trace_version())
    name = hashlib.sha256(repr((key, _TRACE_VERSION[0])).encode()).hexdigest()[:32]
    path = profile_cache_dir() / "profiles" / f"{name}.json"
    try:
        if prof is None:
            return profile_from_dict(json.loads(path.read_text())) if path.exists() else None
        write_json_atomic(path, prof.to_dict())
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return None


def memory_need(prof: Any) -> int:
    """Bytes a step needs at its peak: weights, gradients and optimizer state, activations kept for backward,
    the KV cache (decode), and the largest single operator output alive on top of them (workspace)."""
    workspace = max((o.bytes_written for o in prof.ops), default=0.0)
    return int((prof.state_bytes or 0) + (prof.activation_bytes or 0) + (prof.cache_bytes or 0) + workspace)


MAX_BATCH_SEARCHED = 1 << 16


def largest_batch(workload: str, task: str, precision: str, memory_bytes: int,
                  overrides: Mapping[str, str] | None = None, target: str = "gpu") -> int:
    """The largest batch whose ``memory_need`` fits ``memory_bytes`` (0 if not even batch 1 does). Memory is
    nearly affine in the batch: secant steps from batches 1 and 8 find the crossing in a few traces, and
    unit steps settle it exactly."""
    def need(b: int) -> int:
        return memory_need(analyze(workload, task, precision, b, overrides, target=target))

    if need(1) > memory_bytes:
        return 0
    x0, x1 = 1, 8
    if need(x1) <= need(x0):
        return MAX_BATCH_SEARCHED  # memory does not grow with the batch
    for _ in range(6):
        n0, n1 = need(x0), need(x1)
        if n1 == n0:
            break
        x2 = min(MAX_BATCH_SEARCHED, max(1, round(x1 + (memory_bytes - n1) * (x1 - x0) / (n1 - n0))))
        if x2 == x1:
            break
        x0, x1 = x1, x2
    b = x1
    while b > 1 and need(b) > memory_bytes:
        b -= max(1, b // 200)
    while b < MAX_BATCH_SEARCHED and need(b + 1) <= memory_bytes:
        b += 1
    return b


def op_unit(kind: str, dtype: str, precision: str) -> str:
    """Which unit an operator runs on, as eager PyTorch dispatches it on an NVIDIA GPU: ``tensor`` (fp16/bf16
    dense ops), ``tensor-tf32`` (fp32 convolutions, and matmuls at ``tf32``, from Ampere on), ``vector``."""
    from dlgpu.predict.roofline import DENSE

    if kind in DENSE and dtype in ("float16", "bfloat16"):
        return "tensor"
    if kind in DENSE and dtype == "float32" and (kind == "conv" or precision == "tf32"):
        return "tensor-tf32"
    return "vector"


def fit_memory(workload: str, task: str, precision: str, overrides: Mapping[str, str] | None,
               memory: str | None, hardware: str | None) -> dict[str, Any] | None:
    """The largest batch that fits ``memory`` (a size such as ``80GB``) or ``hardware``'s memory; None when
    neither is given."""
    from dlgpu.catalog import load_catalog
    from dlgpu.units import parse_bytes

    if memory is None and hardware is None:
        return None
    target = "gpu"
    if memory is not None:
        try:
            size, of = parse_bytes(memory), f"--memory {memory}"
        except ValueError as exc:
            raise BadInput(f"--memory {memory}: {exc}") from None
    else:
        dev, mem, _ = prediction_device(str(hardware), load_catalog())
        if mem is None:
            raise BadInput(f"--hardware {hardware}: the catalog gives no memory size for it; use --memory SIZE")
        size, of, target = mem, dev.id, "cpu" if dev.kind == "cpu" else "gpu"
    return {"memory_bytes": size, "memory_of": of, "target": target,
            "batch_size": largest_batch(workload, task, precision, size, overrides, target=target)}


def calibration_rows(path: Path) -> list[dict[str, str]]:
    import csv

    required = {"workload", "task", "hardware", "precision", "batch_size", "samples_per_s"}
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            missing = required - set(reader.fieldnames or [])
            if missing:
                raise BadInput(f"{path}: missing columns {', '.join(sorted(missing))}")
            return [dict(r) for r in reader]
    except OSError as exc:
        raise BadInput(f"{path}: cannot read ({exc.strerror})") from None


NGC_SOURCES = ("github.com/NVIDIA/DeepLearningExamples", "github.com/lambdal/deeplearning-benchmark")
"""Benchmarks run in NVIDIA's NGC PyTorch containers, where fp32 matmuls use TF32 on Ampere and newer
(the containers enable it; so did PyTorch itself before 1.12). Their "fp32" rows on such GPUs are
calibrated as tf32; everywhere else fp32 means PyTorch's current default (TF32 convolutions only)."""


def source_stack(row: Mapping[str, str]) -> str:
    """The benchmark suite a row comes from (``owner/repo`` of a GitHub source, else the host): rows from
    one suite share its software stack, whose speed relative to the others is fitted (see
    ``roofline.scale_terms``)."""
    import re

    url = row.get("source_url") or ""
    m = re.match(r"https?://(?:www\.)?github\.com/([^/]+/[^/#?]+)", url)
    if m:
        return m.group(1)
    m = re.match(r"https?://(?:www\.)?([^/]+)", url)
    return m.group(1) if m else ""


def _row_precision(row: Mapping[str, str], gpu: Any) -> str:
    ngc = any(s in (row.get("source_url") or "") for s in NGC_SOURCES)
    if row["precision"] == "fp32" and ngc and gpu.tf32_flops_per_s:
        return "tf32"
    return row["precision"]


def _split_overrides(text: str) -> tuple[dict[str, str], bool]:
    pairs = [p for p in (text or "").split(";") if p.strip()]
    kv = parse_overrides(pairs)
    optimizer_step = kv.pop("optimizer_step", "true").lower() not in ("false", "0", "no")
    return kv, optimizer_step


def calibration_samples(rows: Sequence[dict[str, str]], catalog: Any) -> tuple[list[Any], list[tuple[int, str]]]:
    """(samples, [(row index, why not usable)])."""
    from dlgpu.predict.calibrate import Sample

    samples, skipped = [], []
    for i, row in enumerate(rows):
        try:
            if row.get("framework", "pytorch") == "llama.cpp":
                raise BadInput("llama.cpp rows measure a different runtime than the PyTorch steps dlgpu traces")
            gpu = catalog.gpu(row["hardware"])
            kv, opt = _split_overrides(row.get("overrides", ""))
            precision = _row_precision(row, gpu)
            prof = analyze(row["workload"], row["task"], precision, int(row["batch_size"]), kv, opt)
            samples.append(Sample(
                label=f"{row['workload']} {row['task']} {row['hardware']} {row['precision']} bs{row['batch_size']}"
                      f"{' ' + row['overrides'] if row.get('overrides') else ''}",
                family=get_workload(row["workload"]).family, profile=prof, gpu=gpu,
                precision=precision, framework=row.get("framework") or "pytorch", stack=source_stack(row),
                measured_samples_per_s=float(row["samples_per_s"])))
        except BadInput as exc:
            skipped.append((i, str(exc)))
        except Exception as exc:  # a model that cannot be traced on fake tensors (data-dependent shapes)
            skipped.append((i, f"cannot trace {row['workload']} on fake tensors: {type(exc).__name__}: {exc}"[:300]))
    return samples, skipped


CALIBRATION_FILE = Path(__file__).parent / "predict" / "data" / "calibration.json"
PUBLISHED_FILE = Path(__file__).parent / "predict" / "data" / "published_calibration.csv"


_CALIBRATIONS: dict[tuple[str, float], Any] = {}


def load_calibration(path: Path | None = None) -> Any:
    """The fitted parameters shipped with dlgpu (regenerated by ``dlgpu calibrate``); read once per file
    version (keyed by modification time)."""
    import json

    from dlgpu.predict import Calibration

    p = path or CALIBRATION_FILE
    try:
        key = (str(p), p.stat().st_mtime)
        if key not in _CALIBRATIONS:
            doc = json.loads(p.read_text())
            _CALIBRATIONS[key] = Calibration(doc["values"], doc)
    except (OSError, ValueError, KeyError) as exc:
        raise BadInput(f"{p}: no usable calibration ({exc}); run `dlgpu calibrate`") from None
    return _CALIBRATIONS[key]


def _interval(cal: Any, sps: float, cpu: bool = False) -> dict[str, Any] | None:
    """A low-high range for a prediction from the held-out errors (10th-90th percentile): leave-one-device-out
    for GPUs, leave-one-workload-out on CPUs."""
    import statistics

    held = ((cal.fit.get("cpu") or {}).get("leave_one_workload_out") if cpu
            else cal.fit.get("leave_one_device_out")) or {}
    rows = held.get("rows") or []
    errs = sorted(r["error_pct"] / 100.0 for r in rows)
    if len(errs) < 10:
        return None
    q = statistics.quantiles(errs, n=10, method="inclusive")
    lo, hi = q[0], q[-1]  # predicted = measured x (1 + e)  =>  measured = predicted / (1 + e)
    how = "leave-one-workload-out errors on CPU bench results" if cpu else \
        "leave-one-device-out errors on the calibration data"
    return {"low": sps / (1.0 + hi), "high": sps / (1.0 + lo), "basis": f"10th-90th percentile of {how}"}


def predict(workload: str, hardware: str, precision: str = "fp32", task: str = "train",
            batch_size: int | None = None, overrides: Mapping[str, str] | None = None,
            catalog_files: Sequence[Path] = ()) -> dict[str, Any]:
    """Predicted step time, throughput and memory of a workload on a catalog GPU (dlgpu.predict/1)."""
    from dlgpu.catalog import load_catalog
    from dlgpu.predict import precision_reason, predict_step

    catalog = load_catalog(catalog_files)
    gpu, memory_bytes, device_basis = prediction_device(hardware, catalog)
    why = precision_reason(gpu, precision) if precision in PRECISIONS else None
    if why:
        raise BadInput(f"--precision {precision}: {why}")
    prof = analyze(workload, task, precision, batch_size, overrides, target="cpu" if gpu.kind == "cpu" else "gpu")
    cal = load_calibration()
    pred = predict_step(prof, gpu, precision, cal)
    sps = prof.batch_size / pred.step_time_s
    peak = memory_need(prof)
    basis = ("weights, gradients and optimizer state + activations kept for backward (traced on fake tensors)"
             if task != "decode" else f"weights + the KV cache of {prof.params.get('context_len')} tokens x batch "
             f"{prof.batch_size} (traced on fake tensors)") + " + the largest operator output (workspace)"

    spec = resolve_workloads([workload])[0]
    real = spec.task_samples(task, spec.resolve(dict(overrides or {})))
    projection = None if real is None else {"description": real[1], "samples": real[0], "time_s": real[0] / sps}
    return {
        "schema": "dlgpu.predict/1",
        "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"), "dlgpu": dlgpu_version(),
        "workload": workload, "task": task, "hardware": gpu.id, "hardware_name": gpu.name,
        "hardware_kind": "cpu" if gpu.kind == "cpu" else "gpu", "precision": precision,
        "batch_size": prof.batch_size, "overrides": dict(overrides or {}),
        "samples_per_s": sps, "step_time_s": pred.step_time_s,
        "peak_mem_bytes": peak, "peak_mem_basis": f"{basis}; the framework's own memory not included",
        "memory_bytes": memory_bytes,
        "fits": None if memory_bytes is None else peak <= memory_bytes,
        "device_basis": device_basis,
        "bound": pred.bound, "tensor_core_flops_share": pred.tensor_core_share,
        "flops": prof.flops, "bytes": prof.bytes, "kernels": prof.kernels,
        "interval": _interval(cal, sps, cpu=gpu.kind == "cpu"),
        "task_time_s": None if projection is None else projection["time_s"], "task_projection": projection,
        "peaks_flops_per_s": roof_peaks(gpu), "bandwidth_bytes_per_s": gpu.memory_bandwidth_bytes_per_s,
        "price_usd": getattr(gpu, "launch_price_usd", None) or None, "tdp_w": gpu.tdp_w or None,
        "ops": _roof_ops(prof, pred),
        "provenance": ("predicted: per-operator roofline with efficiencies fitted to published measurements"
                       if gpu.kind != "cpu" else "predicted: per-operator roofline with CPU efficiencies fitted to "
                       "what `dlgpu bench` measured on CPUs (see `dlgpu calibrate`)"),
    }


def dlgpu_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("dlgpu")
    except metadata.PackageNotFoundError:
        return "0.0.0+unknown"


ROOF_OPS = 200
"""Operators kept in a prediction document for the roofline chart: the most time-consuming ones."""


def roof_peaks(gpu: Any) -> dict[str, float]:
    """A device's compute roofs (FLOP/s) by unit, as the catalog gives them."""
    names: tuple[tuple[str, str], ...] = (("fp32", "fp32_flops_per_s"), ("tf32 tensor", "tf32_flops_per_s"),
             ("fp16 tensor (fp32 acc.)", "fp16_fp32acc_flops_per_s"), ("bf16 tensor", "bf16_flops_per_s"))
    if gpu.kind == "cpu":
        names = (("fp32", "fp32_flops_per_s"), ("bf16 matrix", "bf16_flops_per_s"))
    return {label: float(v) for label, attr in names if (v := getattr(gpu, attr, None))}


def _roof_ops(prof: Any, pred: Any) -> list[dict[str, Any]]:
    rows = [{"kind": op.kind, "phase": op.phase, "dtype": op.dtype, "unit": unit, "flops": op.flops,
             "bytes": op.bytes, "count": op.count, "time_s": t}
            for op, t, unit in zip(prof.ops, pred.op_seconds, pred.op_units, strict=True)]
    rows.sort(key=lambda r: -r["time_s"] * r["count"])
    return rows[:ROOF_OPS]


def save_prediction(doc: dict[str, Any], db: Path | None = None) -> str:
    """Store a prediction (``dlgpu.predict/1``) with this machine's fingerprint; returns its run id."""
    from dlgpu.devices import detect
    from dlgpu.devices.machine import machine_info
    from dlgpu.store import Store, new_run_id

    present, _ = detect()
    machine = machine_info(present).to_dict()
    run_id = new_run_id()
    doc["run_id"] = run_id
    with Store(db) as store:
        store.save_predict(run_id, doc, machine)
    return run_id


LOCAL_IDS = ("local", "this", "cpu")


def prediction_device(hardware: str, catalog: Any) -> tuple[Any, int | None, str]:
    """(device in the roofline's terms, its memory in bytes or None, where its figures come from) for a
    catalog GPU or CPU id, or ``local`` for this machine's CPU."""
    from dlgpu.catalog import CpuSpec, this_cpu
    from dlgpu.devices.detect import probe_cpu
    from dlgpu.predict import cpu_as_device

    if hardware.strip().lower() in LOCAL_IDS:
        _, cpu = this_cpu(catalog)
        dev = cpu_as_device(cpu)
        basis = cpu.source if isinstance(cpu, CpuSpec) else cpu.basis
        if not dev.fp32_flops_per_s:
            raise BadInput(f"--hardware {hardware}: this CPU has no FP32 peak to predict from ({basis})")
        return dev, probe_cpu().memory_bytes, f"this machine's CPU: {basis}"
    spec = catalog.get(hardware)
    if isinstance(spec, CpuSpec):
        return cpu_as_device(spec), None, f"catalog CPU (source: {spec.source})"
    return spec, spec.memory_bytes, f"catalog (source: {spec.source})"


def bench_documents(paths: Sequence[Path]) -> list[dict[str, Any]]:
    import json

    docs = []
    for p in paths:
        try:
            doc = json.loads(Path(p).read_text())
        except (OSError, ValueError) as exc:
            raise BadInput(f"{p}: not a readable dlgpu bench document ({exc})") from None
        if not isinstance(doc, dict) or doc.get("schema") != BENCH_SCHEMA:
            raise BadInput(f"{p}: schema is {doc.get('schema') if isinstance(doc, dict) else None!r}, "
                           f"expected {BENCH_SCHEMA!r} (a `dlgpu bench --json` document)")
        docs.append(doc)
    return docs


def bench_cpu(doc: Mapping[str, Any], catalog: Any) -> Any:
    """The CPU a bench document was measured on, described as ``prediction_device`` would describe it."""
    from dlgpu.catalog import describe_local_cpu
    from dlgpu.predict import cpu_as_device

    dev = next(d for d in doc["machine"]["devices"] if d["kind"] == "cpu")
    det = dev.get("details") or {}
    cpu = describe_local_cpu(dev["name"], int(dev.get("physical_cores") or 0), det.get("flags") or [],
                             det.get("max_clock_hz"), catalog=catalog, clock_source="maximum clock at bench time",
                             current_clock_hz=det.get("current_clock_hz"))
    return cpu_as_device(cpu)


def bench_samples(docs: Sequence[Mapping[str, Any]], catalog: Any) -> tuple[list[Any], list[str]]:
    """Calibration samples from what ``dlgpu bench`` measured on CPUs: (samples, reasons rows were not used)."""
    from dlgpu.predict.calibrate import Sample

    samples, skipped = [], []
    for doc in docs:
        try:
            cpu = bench_cpu(doc, catalog)
        except (StopIteration, KeyError, TypeError, ValueError) as exc:
            skipped.append(f"bench document of {doc.get('created_at')}: no CPU description ({exc})")
            continue
        if not cpu.fp32_flops_per_s:
            skipped.append(f"bench document of {doc.get('created_at')}: its CPU has no FP32 peak ({cpu.source})")
            continue
        for r in doc.get("results", []):
            if r.get("device") != "cpu" or r.get("status") != "ok" or not r.get("samples_per_s"):
                continue
            label = f"{r['workload']} {r['task']} cpu:{cpu.name} {r['precision']} bs{r['batch_size']}"
            try:
                prof = analyze(r["workload"], r["task"], r["precision"], int(r["batch_size"]),
                               {k: str(v) for k, v in (r.get("overrides") or {}).items()}, target="cpu")
            except Exception as exc:  # an unknown (custom) workload or an untraceable one
                skipped.append(f"{label}: {type(exc).__name__}: {exc}"[:300])
                continue
            samples.append(Sample(label=label, family=get_workload(r["workload"]).family, profile=prof, gpu=cpu,
                                  precision=r["precision"], framework="pytorch",
                                  measured_samples_per_s=float(r["samples_per_s"]), stack="dlgpu-bench"))
    return samples, skipped


def memory_model_check(docs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The memory model (weights, gradients, optimizer state + traced activations) against the peaks
    ``dlgpu bench`` measured. A process's peak RSS also holds PyTorch itself, its allocator caches and
    the batch: reported as the median difference, and the error is given with it added back."""
    import statistics

    rows = []
    for doc in docs:
        for r in doc.get("results", []):
            if r.get("status") != "ok" or not r.get("peak_mem_bytes") or r.get("task") not in ("train", "infer"):
                continue
            try:
                prof = analyze(r["workload"], r["task"], r["precision"], int(r["batch_size"]),
                               {k: str(v) for k, v in (r.get("overrides") or {}).items()},
                               target="cpu" if r.get("device") == "cpu" else "gpu")
            except Exception:
                continue
            model = (prof.state_bytes or 0) + (prof.activation_bytes or 0)
            rows.append({"label": f"{r['workload']} {r['task']} {r['device']} {r['precision']} bs{r['batch_size']}",
                         "measured_bytes": int(r["peak_mem_bytes"]), "measured_kind": r.get("peak_mem_kind"),
                         "model_bytes": int(model)})
    if not rows:
        return {"n": 0}
    base = statistics.median(x["measured_bytes"] - x["model_bytes"] for x in rows)
    for x in rows:
        x["error_pct"] = 100.0 * (x["model_bytes"] + base - x["measured_bytes"]) / x["measured_bytes"]
    errs = [abs(x["error_pct"]) for x in rows]
    return {"n": len(rows), "runtime_bytes": base, "median_abs_error_pct": statistics.median(errs),
            "mean_abs_error_pct": statistics.fmean(errs), "rows": rows,
            "basis": "model = weights + gradients + optimizer state + activations kept for backward; "
                     "runtime_bytes = median of (measured peak - model), added to every row"}


def validate(path: Path, catalog_files: Sequence[Path] = ()) -> dict[str, Any]:
    """Predict every row of a file in the calibration file's columns; per-row and summary errors."""
    import statistics

    from dlgpu.catalog import load_catalog
    from dlgpu.predict import predict_step

    rows = calibration_rows(path)
    catalog = load_catalog(catalog_files)
    cal = load_calibration()
    samples, skipped = calibration_samples(rows, catalog)
    why = dict(skipped)
    it = iter(samples)
    out_rows, errs = [], []
    for i, row in enumerate(rows):
        rec: dict[str, Any] = {**row, "predicted_samples_per_s": None, "error_pct": None}
        if i in why:
            rec.update(status="unsupported", reason=why[i])
        else:
            smp = next(it)
            pred = predict_step(smp.profile, smp.gpu, smp.precision, cal, smp.framework, smp.stack)
            sps = smp.profile.batch_size / pred.step_time_s
            err = 100.0 * (sps - smp.measured_samples_per_s) / smp.measured_samples_per_s
            errs.append(abs(err))
            rec.update(predicted_samples_per_s=sps, error_pct=err, status="ok", reason=None)
        out_rows.append(rec)
    return {
        "schema": "dlgpu.validate/1", "file": str(path), "rows": out_rows,
        "median_abs_error_pct": statistics.median(errs) if errs else None,
        "mean_abs_error_pct": statistics.fmean(errs) if errs else None,
        "predicted": len(errs), "unsupported": len(rows) - len(errs),
    }


BENCH_DIR = Path(__file__).parent / "predict" / "data" / "bench"
"""``dlgpu bench --json`` documents measured on the machine dlgpu was developed on: the CPU rows the
shipped calibration fits CPU efficiencies on."""


def calibrate(data_files: Sequence[Path] = (), output: Path | None = None,
              bench_files: Sequence[Path] | None = None) -> dict[str, Any]:
    """Fit the performance model on the published calibration data (and any extra files in its columns)
    and on CPU results of ``dlgpu bench`` documents (default: the ones shipped in ``BENCH_DIR``), report
    in-sample, leave-one-device-out (GPUs) and leave-one-workload-out (CPUs) errors and the memory model's
    error against measured peaks, and write the parameters with them."""
    from dlgpu.catalog import load_catalog
    from dlgpu.predict.calibrate import errors_pct, fit, leave_one_device_out, leave_one_workload_out, summary

    catalog = load_catalog()
    rows: list[dict[str, str]] = []
    for f in (PUBLISHED_FILE, *data_files):
        rows += calibration_rows(f)
    samples, skipped = calibration_samples(rows, catalog)
    if len(samples) < 10:
        raise BadInput(f"only {len(samples)} usable calibration rows; need at least 10")
    benches = sorted(BENCH_DIR.glob("*.json")) if bench_files is None else list(bench_files)
    docs = bench_documents(benches)
    cpu_samples, cpu_skipped = bench_samples(docs, catalog)
    everything = samples + cpu_samples
    cal = fit(everything)
    doc = {
        "schema": "dlgpu.calibration/1",
        "values": cal.values,
        "rows_used": len(samples),
        "rows_skipped": [{"row": i + 2, "reason": r} for i, r in skipped],
        "in_sample": summary(errors_pct(cal, samples)),
        "leave_one_device_out": leave_one_device_out(samples, extra=cpu_samples),
        "cpu": {
            "rows_used": len(cpu_samples), "rows_skipped": cpu_skipped,
            "in_sample": summary(errors_pct(cal, cpu_samples)) if cpu_samples else None,
            "leave_one_workload_out": leave_one_workload_out(cpu_samples, extra=samples) if cpu_samples else None,
            "devices": sorted({s.gpu.name for s in cpu_samples}),
        },
        "memory_model": memory_model_check(docs),
        "sources": [str(PUBLISHED_FILE.name), *(str(f) for f in data_files),
                    *(f"bench/{Path(b).name}" if Path(b).parent == BENCH_DIR else str(b) for b in benches)],
    }
    write_json_atomic(output or CALIBRATION_FILE, doc)
    return doc


# --- the results store: history, sharing, comparison ------------------------------------------------------


def parse_when(text: str, flag: str) -> str:
    """An ISO date or time (UTC when no zone is given), or an age such as ``7d``, ``12h`` or ``30m``, as the
    ISO text the store compares with."""
    import re

    t = text.strip()
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([dhm])", t)
    if m:
        seconds = float(m.group(1)) * {"d": 86400, "h": 3600, "m": 60}[m.group(2)]
        when = _dt.datetime.now(_dt.UTC) - _dt.timedelta(seconds=seconds)
        return when.isoformat(timespec="seconds")
    try:
        parsed = _dt.datetime.fromisoformat(t)
    except ValueError:
        raise BadInput(f"{flag} {text!r}: give a date (2026-11-01), a time (2026-11-01T12:00) or an age "
                       "(7d, 12h, 30m)") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=_dt.UTC)
    return parsed.astimezone(_dt.UTC).isoformat(timespec="seconds")


def list_runs(db: Path | None = None, workload: str | None = None, device: str | None = None,
              kind: str | None = None, since: str | None = None, until: str | None = None,
              limit: int | None = None) -> list[Any]:
    from dlgpu.store import Store

    if workload is not None:
        resolve_workloads([workload]) if not workload.startswith("custom:") else None
    if limit is not None and limit <= 0:
        raise BadInput(f"--limit {limit}: must be a positive integer")
    with Store(db) as store:
        return store.runs(workload=workload, device=device, kind=kind,
                          since=None if since is None else parse_when(since, "--since"),
                          until=None if until is None else parse_when(until, "--until"), limit=limit)


def show_run(ref: str, db: Path | None = None) -> Any:
    from dlgpu.store import Store

    with Store(db) as store:
        return store.get(ref)


EXPORT_SCHEMA = "dlgpu.export/1"


def export_runs(refs: Sequence[str], db: Path | None = None) -> dict[str, Any]:
    """``dlgpu.export/1``: the runs' documents, whole (raw samples included), with their ids and status."""
    from dlgpu.store import Store

    with Store(db) as store:
        ids = [store.resolve(r) for r in refs] if refs else store.all_ids()
        if not ids:
            raise BadInput(f"nothing to export: the database {store.path} has no runs")
        runs = []
        for run_id in dict.fromkeys(ids):
            got = store.get(run_id)
            runs.append({"id": got.row.id, "kind": got.row.kind, "status": got.row.status,
                         "origin": got.row.origin, "created_at": got.row.created_at, "document": got.document})
    return {"schema": EXPORT_SCHEMA, "exported_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "dlgpu": dlgpu_version(), "runs": runs}


def import_files(paths: Sequence[Path], db: Path | None = None) -> dict[str, Any]:
    """Validate every run of every file first; then write them all in one transaction (or nothing)."""
    import hashlib

    from dlgpu.store import Store
    from dlgpu.store.schema import dump, kind_of, read_import_file
    from dlgpu.store.sqlite import canonical

    if not paths:
        raise BadInput("import: give at least one file (a `dlgpu export` bundle or a bench/predict --json document)")
    staged: list[tuple[str, str, str, dict[str, Any], str]] = []
    for path in paths:
        for exported, parsed in read_import_file(path):
            doc = dump(parsed)
            kind = kind_of(parsed)
            run_id = (exported.id if exported else doc.get("run_id")) or \
                hashlib.sha256(canonical(doc).encode()).hexdigest()[:32]
            doc["run_id"] = run_id
            status = exported.status if exported else ("interrupted" if doc.get("interrupted") else "complete")
            if status == "running":
                status = "incomplete"  # its process was on another machine: nothing is running it here
            staged.append((run_id, kind, status, doc, str(path)))
    with Store(db) as store:
        added = store.import_runs([(*s[:4], f"imported from {s[4]}") for s in staged])
    return {"schema": "dlgpu.import/1", "files": [str(p) for p in paths], "runs": [s[0] for s in staged],
            "added": added, "already_present": [s[0] for s in staged if s[0] not in added]}


def compare(refs: Sequence[str] = (), db: Path | None = None, workloads: Sequence[str] = (),
            catalog_files: Sequence[Path] = ()) -> Any:
    """The comparison tables and charts (``report.model.Comparison``) over stored runs: the ones named, else
    every run in the store."""
    from dlgpu.catalog import load_catalog
    from dlgpu.report.compare import build_comparison
    from dlgpu.store import Store

    for w in workloads:
        resolve_workloads([w])
    with Store(db) as store:
        ids = [store.resolve(r) for r in refs] if refs else store.all_ids()
        if not ids:
            raise BadInput(f"nothing to compare: the database {store.path} has no runs (run `dlgpu bench`, "
                           "`dlgpu predict`, or `dlgpu import` a file)")
        runs = [(got.row.to_dict(), got.document) for got in (store.get(i) for i in dict.fromkeys(ids))]
    return build_comparison(runs, load_catalog(catalog_files), workloads)


# --- advise: does this workload need a GPU, which one, and what will it cost? -----------------------------------

DEFAULT_DEADLINE_S = 24 * 3600.0
DEFAULT_ELECTRICITY_USD_PER_KWH = 0.15
DEFAULT_HOURS_PER_DAY = 8.0
DEFAULT_LIFETIME_YEARS = 3.0
DEFAULT_CARBON_G_PER_KWH = 475.0
CARBON_BASIS = "default: the world-average intensity CodeCarbon falls back to (see MEASUREMENT.md §3)"
SOURCES = ("own", "buy", "rent")


@dataclass(frozen=True)
class _DevicePrediction:
    precision: str
    batch: int
    sps: float
    step_s: float
    low: float | None
    high: float | None
    basis: str
    bound: dict[str, float]
    need_bytes: int
    fits: bool | None
    largest_batch: int | None
    largest_basis: str
    fp32_sps: float | None
    parameters: int


def _job(spec: WorkloadSpec, params: Mapping[str, Any], task: str, dataset_size: float | None,
         epochs: float | None, samples: float | None) -> tuple[float, str, str]:
    """(samples the job processes, what it is, where that comes from)."""
    f = spec.facts
    if task == "train" and (dataset_size is not None or epochs is not None):
        n = dataset_size if dataset_size is not None else f.train_samples
        e = epochs if epochs is not None else f.epochs
        if n is None or e is None:
            raise BadInput(f"{spec.name}: give both --dataset-size and --epochs (its real task does not say "
                           f"{'the dataset size' if n is None else 'the epochs'})")
        given = "--dataset-size and --epochs" if dataset_size is not None and epochs is not None else \
            ("--dataset-size" if dataset_size is not None else "--epochs") + " with the rest from the real task"
        return n * e, f"{e:g} epochs of {n:,.0f} {spec.sample_unit}s", f"given ({given})"
    if task != "train" and samples is not None:
        return samples, f"{samples:,.0f} {'tokens' if task == 'decode' else spec.sample_unit + 's'}", \
            "given (--samples)"
    real = spec.task_samples(task, params)
    if real is None:
        flags = "--dataset-size and --epochs" if task == "train" else "--samples"
        raise BadInput(f"{spec.name} {task}: no real task is recorded for it; give {flags}")
    return real[0], real[1], f"the workload's real task (sources: `dlgpu workloads show {spec.name}`)"


MIXED_FIRST = ("bf16", "fp16", "tf32", "fp32")
"""The order precisions are tried in: once a mixed precision fits at the requested batch, fp32 and TF32 are
not retraced at a smaller batch (they would be slower still)."""


def _predict_device(spec: WorkloadSpec, task: str, device: Any, memory_bytes: int | None, batch: int,
                    precisions: Sequence[str], overrides: Mapping[str, str], cal: Any) -> _DevicePrediction | str:
    """The fastest precision that fits on a catalog device (GPU or CPU), at ``batch`` or else at the largest
    power-of-two batch that fits; a string says why none does.

    Memory at another batch is affine in the batch: the state (weights, gradients, optimizer state) plus
    the rest of the traced need (activations, KV cache, the largest operator output) scaled by the batch.
    One trace per precision and batch, shared by every device (``analyze`` caches them): TF32 reuses the
    fp32 trace (it changes the unit, not the operators)."""
    from dlgpu.analyze.rescale import rescale
    from dlgpu.predict import precision_reason, predict_step

    target = "cpu" if device.kind == "cpu" else "gpu"
    if not device.fp32_flops_per_s or (device.kind != "cpu" and not device.memory_bandwidth_bytes_per_s):
        return "the catalog has no FP32 peak or memory bandwidth for it: cannot predict it"
    best: _DevicePrediction | None = None
    fp32 = None
    why = "no precision this device supports was asked for"
    for prec in sorted(precisions, key=MIXED_FIRST.index):
        if precision_reason(device, prec):
            continue
        trace_prec = "fp32" if prec == "tf32" else prec
        b, largest, how = batch, None, "no memory size for this device"
        prof = analyze(spec.name, task, trace_prec, b, overrides, target=target)
        need = memory_need(prof)
        if memory_bytes is not None:
            state = prof.state_bytes or 0
            per_sample = max(need - state, 1) / b
            largest = int((memory_bytes - state) // per_sample)
            how = (f"(memory - state {state / 2**30:.2f} GiB) / {per_sample / 2**20:.1f} MiB per sample, traced at "
                   f"batch {b}: memory is affine in the batch")
        if memory_bytes is not None and largest is not None and need > memory_bytes:
            how += "; the step is predicted at the largest power of two that fits"
            if largest < 1 or (best is not None and prec in ("tf32", "fp32")):
                why = (f"does not fit: {need / 2**30:.1f} GiB at batch {b}" +
                       (f", and the state alone is {state / 2**30:.1f} GiB" if largest < 1 else ""))
                continue
            b = 1 << (min(largest, batch).bit_length() - 1)
            prof = rescale(prof, b)
            need = memory_need(prof)
            how += f"; its profile is the traced one rescaled to batch {b} (analyze.rescale)"
        pred = predict_step(prof, device, prec, cal)
        sps = b / pred.step_time_s
        iv = _interval(cal, sps, cpu=device.kind == "cpu") or {}
        if prec == "fp32" and b == batch:
            fp32 = sps
        cand = _DevicePrediction(prec, b, sps, pred.step_time_s, iv.get("low"), iv.get("high"),
                                 iv.get("basis", "no interval"), pred.bound, need,
                                 None if memory_bytes is None else need <= memory_bytes, largest, how, None,
                                 prof.parameters)
        if best is None or cand.sps > best.sps:
            best = cand
    if best is None:
        return why
    return replace(best, fp32_sps=fp32)


def _local_measurements(spec: WorkloadSpec, task: str, overrides: Mapping[str, str], db: Path | None,
                        machine: Mapping[str, Any]) -> tuple[dict[str, dict[str, Any]], str | None]:
    """This machine's newest measured result per device (the fastest precision of the newest run that has
    one), from the results store; and the run id they come from."""
    from dlgpu.store import Store, fingerprint

    want = fingerprint(machine)
    ignore = ("gpu_driver",)  # older documents did not record it
    key = {k: v for k, v in want.items() if k not in ignore}
    with Store(db) as store:
        for row in store.runs(kind="bench", workload=spec.name):
            doc = store.get(row.id).document
            fp = {k: v for k, v in fingerprint(doc.get("machine") or {}).items() if k not in ignore}
            if {**fp, "hostname": None} != {**key, "hostname": None}:
                continue
            best: dict[str, dict[str, Any]] = {}
            for r in doc.get("results") or []:
                if (r["workload"], r["task"], r["status"]) != (spec.name, task, "ok"):
                    continue
                if {k: str(v) for k, v in (r.get("overrides") or {}).items()} != dict(overrides):
                    continue
                if r["device"] not in best or r["samples_per_s"] > best[r["device"]]["samples_per_s"]:
                    best[r["device"]] = r
            if best:
                for dev, r in best.items():
                    fp32 = [x for x in doc["results"] if (x["workload"], x["task"], x["device"], x["precision"],
                                                         x["status"]) == (spec.name, task, dev, "fp32", "ok")]
                    r["_fp32_sps"] = fp32[0]["samples_per_s"] if fp32 else None
                    r["_run_id"] = row.id
                    r["_created_at"] = row.created_at
                return best, row.id
    return {}, None


def advise(workload: str, task: str = "train", *, dataset_size: float | None = None, epochs: float | None = None,
           samples: float | None = None, deadline: str | None = None, budget: float | None = None,
           max_power: float | None = None, electricity: float | None = None, hours_per_day: float | None = None,
           lifetime_years: float | None = None, carbon: float | None = None, pue: float = 1.0,
           power_factor: float = 1.0, sources: Sequence[str] = (), hardware: Sequence[str] = (),
           prices: Sequence[str] = (), precisions: Sequence[str] | None = None, batch_size: int | None = None,
           overrides: Mapping[str, str] | None = None, measure: bool = False, db: Path | None = None,
           catalog_files: Sequence[Path] = (), custom: WorkloadSpec | None = None) -> dict[str, Any]:
    """``dlgpu.advise/1``: a ranked table of ways to run a job (this machine's devices, catalog GPUs to buy,
    cloud instances to rent) and the verdict over them. See ``advise.verdict``."""
    from dlgpu.advise import Candidate, Constraints, Figure, cost, decide
    from dlgpu.catalog import device_facts, load_catalog, match_gpu
    from dlgpu.devices import detect
    from dlgpu.devices.machine import machine_info

    # --- validate everything first -------------------------------------------------------------------------
    def positive(value: float | None, flag: str, zero_ok: bool = False) -> None:
        import math as _m

        if value is not None and (not _m.isfinite(value) or value < 0 or (value == 0 and not zero_ok)):
            raise BadInput(f"{flag} {value:g}: must be a {'non-negative' if zero_ok else 'positive'} number")

    if task not in TASKS:
        raise BadInput(f"--task {task}: not one of {', '.join(TASKS)}")
    positive(budget, "--budget", zero_ok=True)
    positive(max_power, "--max-power")
    positive(electricity, "--electricity", zero_ok=True)
    positive(carbon, "--carbon-intensity", zero_ok=True)
    positive(lifetime_years, "--lifetime-years")
    positive(dataset_size, "--dataset-size")
    positive(epochs, "--epochs")
    positive(samples, "--samples")
    if hours_per_day is not None and not 0 < hours_per_day <= 24:
        raise BadInput(f"--hours-per-day {hours_per_day:g}: must be in (0, 24]")
    if not pue >= 1:
        raise BadInput(f"--pue {pue:g}: a power usage effectiveness is 1 or more")
    if not 0 < power_factor <= 1:
        raise BadInput(f"--power-factor {power_factor:g}: must be in (0, 1] (the share of TDP drawn)")
    if batch_size is not None and batch_size <= 0:
        raise BadInput(f"--batch-size {batch_size}: must be a positive integer")
    try:
        deadline_s = DEFAULT_DEADLINE_S if deadline is None else cost.parse_duration(deadline)
    except ValueError as exc:
        raise BadInput(f"--deadline {exc}") from None
    bad = [s for s in sources if s not in SOURCES]
    if bad:
        raise BadInput(f"--{bad[0]}: not a candidate source (valid: {', '.join(SOURCES)})")
    use = set(sources or SOURCES)
    catalog = load_catalog(catalog_files)
    restrict = {catalog.get(h).id for h in hardware if h.strip().lower() not in LOCAL_IDS}
    local_asked = any(h.strip().lower() in LOCAL_IDS for h in hardware)
    given_price: dict[str, float] = {}
    for item in prices:
        hid, sep, val = item.partition("=")
        try:
            price = float(val)
        except ValueError:
            price = -1.0
        if not sep or price < 0:
            raise BadInput(f"--price {item!r}: give ID=USD, e.g. --price rtx-4090=1599")
        given_price[catalog.get(hid.strip()).id] = price
    if custom is not None:
        _CUSTOM[custom.name] = custom
        spec = custom
    else:
        spec = resolve_workloads([workload])[0]
    check_task(spec, task)
    ovr = dict(overrides or {})
    params = spec.resolve(_overrides_for([spec], ovr)[spec.name])
    precs = resolve_choice(precisions, PRECISIONS, "--precision", PRECISIONS)
    job_samples, job_what, job_basis = _job(spec, params, task, dataset_size, epochs, samples)
    batch = batch_size or (DECODE_BATCH if task == "decode" else spec.batch_size)
    k = Constraints(
        deadline_s=deadline_s, deadline_basis=f"--deadline {deadline}" if deadline else "default: 24 h",
        budget_usd=budget, max_power_w=max_power,
        electricity_usd_per_kwh=Figure(DEFAULT_ELECTRICITY_USD_PER_KWH if electricity is None else electricity,
                                       "assumed" if electricity is None else "given",
                                       "default, an assumption: set --electricity" if electricity is None
                                       else "--electricity"),
        carbon_g_per_kwh=Figure(DEFAULT_CARBON_G_PER_KWH if carbon is None else carbon,
                                "assumed" if carbon is None else "given",
                                CARBON_BASIS if carbon is None else "--carbon-intensity"),
        pue=pue, hours_per_day=hours_per_day or DEFAULT_HOURS_PER_DAY,
        lifetime_years=lifetime_years or DEFAULT_LIFETIME_YEARS, power_factor=power_factor)
    cal = load_calibration()
    present, _ = detect()
    machine = machine_info(present).to_dict()

    # --- this machine: stored measurements, or a fresh one, or a prediction ----------------------------------
    notes: list[str] = []
    measured, run_id = ({}, None)
    if "own" in use:
        if measure:
            rep = bench(workloads=None if custom else [spec.name], tasks=[task], quick=True, overrides=ovr, db=db,
                        precisions=precs, custom_specs=[custom] if custom else ())
            measured = {r.device: {**r.to_dict(), "_run_id": rep.run_id, "_created_at": rep.created_at,
                                   "_fp32_sps": next((x.samples_per_s for x in rep.results if x.device == r.device
                                                      and x.precision == "fp32" and x.status == "ok"), None)}
                        for r in sorted((r for r in rep.results if r.status == "ok"),
                                        key=lambda r: r.samples_per_s or 0)}
            run_id = rep.run_id
        else:
            measured, run_id = _local_measurements(spec, task, ovr, db, machine)
        if not measured:
            notes.append(f"Nothing is stored for {spec.name} {task} on this machine, so its CPU is predicted, not "
                         "measured: run with --measure (or `dlgpu bench`) to measure it.")

    def figures_for(sps: Figure, power: Figure, extra: dict[str, Figure], origin: str, price: float | None,
                    rent_per_h: float | None, price_source: str = "catalog") -> dict[str, Figure]:
        t = cost.job_time_s(job_samples, sps.value or 0.0)
        tf = Figure(t, "computed", f"{job_samples:,.0f} samples / {sps.source} throughput")
        kwh = cost.energy_kwh(power.value, t, k.pue) if power.value else None
        figs = {"samples_per_s": sps, "time_s": tf, "power_w": power, **extra}
        figs["energy_kwh"] = Figure(kwh, "computed" if power.source in ("measured", "catalog") else "estimated",
                                    f"power ({power.source}) x time x PUE {k.pue:g}")
        elec = None if kwh is None or origin == "rent" else kwh * (k.electricity_usd_per_kwh.value or 0.0)
        figs["electricity_usd"] = Figure(elec, "computed", "energy x electricity price" if origin != "rent" else
                                         "included in the rent")
        figs["carbon_kg"] = Figure(None if kwh is None else kwh * (k.carbon_g_per_kwh.value or 0.0) / 1000,
                                   "computed", "energy x carbon intensity")
        job_cost = None
        if origin == "rent" and rent_per_h is not None:
            job_cost = cost.rent_usd(rent_per_h, t)
            figs["rent_usd"] = Figure(job_cost, "computed", "hours x hourly price (billed per second)")
        elif origin == "buy":
            figs["upfront_usd"] = Figure(None, "unavailable", "no launch price in the catalog: give --price ID=USD")
            figs["amortized_usd"] = Figure(None, "unavailable", "no price")
            if price is not None:
                figs["upfront_usd"] = Figure(price, price_source,
                                             "--price" if price_source == "given" else "the catalog's launch price")
                am = cost.amortized_usd(price, t, k.hours_per_day, k.lifetime_years)
                figs["amortized_usd"] = Figure(am, "computed", f"price x job hours / ({k.hours_per_day:g} h/day x "
                                               f"365 x {k.lifetime_years:g} years)")
                job_cost = am + (elec or 0.0)
        else:
            job_cost = elec
        figs["job_cost_usd"] = Figure(job_cost, "computed", {"own": "electricity", "buy": "amortized purchase + "
                                      "electricity", "rent": "rent"}[origin])
        figs["samples_per_usd"] = Figure(job_samples / job_cost if job_cost else None, "computed",
                                         "samples / job cost")
        figs["samples_per_s_per_w"] = Figure((sps.value or 0) / power.value if power.value else None, "computed",
                                             "throughput / power")
        return figs

    cands: list[Candidate] = []

    def predicted_candidate(cid: str, origin: str, name: str, dev: Any, mem: int | None, n_gpus: int = 1,
                            price: float | None = None, rent_per_h: float | None = None,
                            tdp: float | None = None, tdp_basis: str = "", consumer: bool = False,
                            cache: dict[str, Any] | None = None, batch: int = batch) -> None:
        key = dev.id
        if cache is not None and key in cache:
            p = cache[key]
        else:
            p = _predict_device(spec, task, dev, mem, batch, precs, ovr, cal)
            if cache is not None:
                cache[key] = p
        if isinstance(p, str):
            cands.append(Candidate(cid, origin, name, dev.id, dev.kind if dev.kind == "cpu" else "gpu", n_gpus,
                                   "-", batch, {}, fits=False, excluded=p))
            return
        sps, basis = p.sps, f"predicted per-operator roofline ({p.basis})"
        step = p.step_s
        extra: dict[str, Figure] = {}
        if n_gpus > 1:
            link = getattr(dev, "interconnect_bytes_per_s", None)
            if task == "train" and link:
                ar = cost.allreduce_s(4.0 * p.parameters, n_gpus, link)
                sps = cost.data_parallel_samples_per_s(step, p.batch, n_gpus, ar)
                basis += (f"; x{n_gpus} data parallel with a ring all-reduce of {4 * p.parameters / 1e6:,.0f} MB of "
                          f"fp32 gradients over {getattr(dev, 'interconnect', None) or 'the interconnect'} "
                          f"({link / 1e9:,.0f} GB/s), not overlapped: {ar * 1e3:.3g} ms per step")
                extra["allreduce_s"] = Figure(ar, "computed", "2 (n-1)/n x gradient bytes / link bandwidth")
            else:
                sps = n_gpus * sps
                basis += (f"; x{n_gpus} replicas" + ("" if task != "train" else
                          ", perfect scaling assumed: the catalog has no interconnect bandwidth for it"))
        low = p.low * sps / p.sps if p.low else None
        high = p.high * sps / p.sps if p.high else None
        power = Figure(tdp * n_gpus * k.power_factor if tdp else None, "estimated" if tdp else "unavailable",
                       f"TDP x {n_gpus} x power factor {k.power_factor:g} ({tdp_basis})" if tdp else
                       f"no TDP for {name}")
        extra |= {"samples_per_s_low": Figure(low, "predicted", p.basis),
                  "samples_per_s_high": Figure(high, "predicted", p.basis),
                  "fp32_samples_per_s": Figure(p.fp32_sps * sps / p.sps if p.fp32_sps else None, "predicted", ""),
                  "step_time_s": Figure(step, "predicted", "one step of one device"),
                  "peak_mem_bytes": Figure(p.need_bytes, "predicted", "traced on fake tensors: weights, gradients, "
                                           "optimizer state, activations, largest operator output"),
                  "memory_bytes": Figure(mem, "catalog" if dev.kind != "cpu" or origin != "own" else "measured",
                                         "device memory"),
                  "largest_batch": Figure(p.largest_batch, "predicted", p.largest_basis) if p.largest_batch
                  else Figure(None, "predicted", p.largest_basis)}
        figs = figures_for(Figure(sps, "predicted", basis), power, extra, origin, price, rent_per_h,
                           "given" if dev.id in given_price else "catalog")
        notes_c = []
        if p.batch != batch:
            notes_c.append(f"batch {p.batch}: {batch} does not fit in {mem / 2**30:.0f} GiB" if mem else "")
        if consumer and getattr(dev, "fp16_fp32acc_flops_per_s", None) and getattr(dev, "fp16_flops_per_s", None):
            ratio = dev.fp16_fp32acc_flops_per_s / dev.fp16_flops_per_s
            if ratio < 0.99:
                notes_c.append(f"fp16 with fp32 accumulate (what autocast uses) runs at {ratio:.0%} of its fp16 rate "
                               "on this GeForce card (catalog)")
        over = max_power is not None and power.value is not None and power.value > max_power
        cands.append(Candidate(cid, origin, name, dev.id, "cpu" if dev.kind == "cpu" else "gpu", n_gpus, p.precision,
                               p.batch, figs, fits=p.fits, bound=p.bound, consumer=consumer,
                               notes=tuple(n for n in notes_c if n),
                               excluded=f"draws {power.value:,.0f} W, over --max-power {max_power:g} W" if over
                               else None))

    # own devices
    if "own" in use and (not restrict or local_asked):
        cpu_dev = present[0]
        r = measured.get("cpu")
        if r is not None:
            sps = Figure(r["samples_per_s"], "measured", f"dlgpu bench run {r['_run_id'][:8]} on this machine, "
                         f"{r['_created_at']}, batch {r['batch_size']}, {r['precision']}")
            src = r.get("energy_source") or ""
            power = Figure(r.get("power_w"), "measured" if src.startswith("measured") else "estimated",
                           r.get("energy_basis") or "no power figure") if r.get("power_w") else \
                Figure(None, "unavailable", "bench recorded no power")
            extra = {"fp32_samples_per_s": Figure(r.get("_fp32_sps"), "measured", "the same run at fp32"),
                     "step_time_s": Figure(r["step_time_s"]["median"], "measured", "median of the timed steps"),
                     "peak_mem_bytes": Figure(r.get("peak_mem_bytes"), "measured", r.get("peak_mem_kind") or ""),
                     "memory_bytes": Figure(cpu_dev.memory_bytes, "measured", "this machine's memory")}
            figs = figures_for(sps, power, extra, "own", None, None)
            cands.append(Candidate("own:cpu", "own", f"this CPU ({cpu_dev.name}, {cpu_dev.threads_used} cores)",
                                   "local", "cpu", 0, r["precision"], r["batch_size"], figs, fits=True))
        else:
            dev, mem, _basis = prediction_device("local", catalog)
            facts = device_facts(cpu_dev, catalog)
            predicted_candidate("own:cpu", "own", f"this CPU ({cpu_dev.name}, {cpu_dev.threads_used} cores)", dev,
                                mem, 1, tdp=facts.tdp_w, tdp_basis=facts.tdp_basis,
                                batch=batch_size or (DECODE_BATCH if task == "decode" else spec.quick_batch_size))
        for g in present[1:]:
            row, _why = match_gpu(g.name, g.memory_bytes, catalog)
            r = measured.get(g.id)
            if r is not None:
                sps = Figure(r["samples_per_s"], "measured", f"dlgpu bench run {r['_run_id'][:8]}, {r['precision']}")
                src = r.get("energy_source") or ""
                power = Figure(r.get("power_w"), "measured" if src.startswith("measured") else "estimated",
                               r.get("energy_basis") or "")
                figs = figures_for(sps, power, {"memory_bytes": Figure(g.memory_bytes, "measured", "")}, "own",
                                   None, None)
                cands.append(Candidate(f"own:{g.id}", "own", f"this machine's {g.name}", g.id, "gpu", 1,
                                       r["precision"], r["batch_size"], figs, fits=True))
            elif row is not None:
                predicted_candidate(f"own:{g.id}", "own", f"this machine's {g.name}", row, g.memory_bytes,
                                    tdp=row.tdp_w, tdp_basis="catalog TDP")

    # catalog GPUs to buy, cloud instances to rent
    cache: dict[str, Any] = {}
    if "buy" in use:
        for spec_g in catalog.gpus:
            if restrict and spec_g.id not in restrict:
                continue
            predicted_candidate(f"buy:{spec_g.id}", "buy", spec_g.name, spec_g, spec_g.memory_bytes, 1,
                                price=given_price.get(spec_g.id, spec_g.launch_price_usd), tdp=spec_g.tdp_w,
                                tdp_basis="catalog TDP", consumer=_consumer(spec_g), cache=cache)
    if "rent" in use:
        for inst in catalog.cloud:
            if restrict and inst.gpu_id not in restrict:
                continue
            rg = catalog.gpu(inst.gpu_id)
            name = f"{inst.provider} {inst.instance}" + (f" ({inst.gpu_count}x {rg.name})" if inst.gpu_count > 1
                                                         else f" ({rg.name})")
            predicted_candidate(f"rent:{inst.provider}:{inst.instance}", "rent", name, rg, rg.memory_bytes,
                                inst.gpu_count, rent_per_h=inst.price_usd_per_hour, tdp=rg.tdp_w,
                                tdp_basis="catalog TDP", consumer=_consumer(rg), cache=cache)
    if not cands:
        raise BadInput("no candidates: --own/--buy/--rent and --hardware left nothing to compare")
    cands.sort(key=lambda c: (c.excluded is not None, c.time_s))
    verdict = decide(cands, k)
    return {
        "schema": "dlgpu.advise/1", "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "dlgpu": dlgpu_version(), "workload": spec.name, "task": task, "overrides": ovr,
        "job": {"samples": job_samples, "description": job_what, "basis": job_basis,
                "unit": "tokens" if task == "decode" else f"{spec.sample_unit}s"},
        "batch_size": batch, "precisions": list(precs), "sources": sorted(use), "constraints": k.to_dict(),
        "local": {"measured": bool(measured), "run_id": run_id,
                  "basis": "stored dlgpu bench results for this machine" if measured and not measure else
                  ("measured now (--measure, quick budgets)" if measured else "predicted (nothing stored)")},
        "verdict": verdict.to_dict(), "notes": notes, "candidates": [c.to_dict() for c in cands],
    }


def save_advice(doc: dict[str, Any], db: Path | None = None) -> str:
    """Store an advise run (``dlgpu.advise/1``) with this machine's fingerprint; returns its run id."""
    from dlgpu.devices import detect
    from dlgpu.devices.machine import machine_info
    from dlgpu.store import Store, new_run_id

    present, _ = detect()
    run_id = new_run_id()
    doc["run_id"] = run_id
    with Store(db) as store:
        store.save_advise(run_id, doc, machine_info(present).to_dict())
    return run_id


def _consumer(g: Any) -> bool:
    name = f"{g.name} {g.id}".lower()
    return any(w in name for w in ("geforce", "rtx-", "gtx", "radeon rx", "titan")) and not any(
        w in name for w in ("rtx a", "rtx-a", "quadro", "rtx 6000 ada", "l40", "a10"))
