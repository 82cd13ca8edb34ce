"""The bench loop: validate a request, plan it (``plan``), and measure every plan on this machine, keeping
every result as it comes (``store.sink``) so that a failing workload, an out-of-memory, a missing sensor or
Ctrl-C never loses what was already measured.

Per plan: precisions the workload or device cannot run are skipped with the reason; those that cannot fit
the device's memory are skipped with both figures; the rest are built once and measured at each precision
(in a child process where an out-of-memory would be the kernel's SIGKILL), with telemetry (``energy``) and
MFU (``mfu``). The report orders results by plan and precision and derives speedups over this CPU's fp32
and real-task projections from what was measured. With ``runtime`` llama.cpp the plans and the loop over them are
``llamacpp_bench``'s (LLM workloads on the CPU, GGUF weight types), the results kept the same way."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from dlgpu.errors import BadInput
from dlgpu.home import utc_now
from dlgpu.results import (
    DEFAULT_TASKS,
    BenchConfig,
    BenchReport,
    BenchResult,
    DeviceInfo,
    MachineInfo,
    TaskProjection,
)
from dlgpu.results.vocab import (
    BENCH_PRECISIONS,
    BENCH_TASKS,
    FINETUNE_TASK,
    GGUF_PRECISIONS,
    RESULT_PRECISIONS,
    RUNTIME_ALIASES,
    RUNTIMES,
    WEIGHT_PRECISIONS,
)
from dlgpu.workloads.registry import WorkloadSpec, check_task, list_workloads, supporting, task_unsupported_reason
from dlgpu.workloads.select import overrides_for, resolve_choice, resolve_workloads
from dlgpu.workloads.tabular import FAMILY as TABULAR

from .energy import IDLE_BASELINE_S, DeviceEnergy
from .finetune import finetunable, finetune_plans, finetune_request, finetune_unsupported
from .mfu import CeilingFn, MfuCounter, ProfileFn
from .plan import MemoryCheck, MemoryFit, Plan, make_plans, workload_precisions
from .speed import SpeedCheck, StoredProbeFn
from .timer import QUICK, STANDARD, Budget


class BenchObserver(Protocol):
    """Progress callbacks (the CLI draws a progress bar with them)."""

    def planned(self, total: int) -> None: ...

    def started(self, label: str) -> None: ...

    def finished(self, result: BenchResult) -> None: ...


class BenchSink(Protocol):
    """Where a running bench keeps its results (``store.sink.BenchSink``: the results store and a JSON file):
    ``begin`` before the first result, ``save`` after each (``status``: ``complete`` or ``interrupted`` at the
    end), ``close`` last. A sink that fails must not raise: a measurement is never lost to it."""

    run_id: str | None

    def begin(self, report: BenchReport) -> None: ...

    def save(self, report: BenchReport, status: str | None = None) -> None: ...

    def close(self) -> None: ...


class NullObserver:
    def planned(self, total: int) -> None:
        pass

    def started(self, label: str) -> None:
        pass

    def finished(self, result: BenchResult) -> None:
        pass


def project(result: BenchResult, spec: WorkloadSpec, params: Mapping[str, Any]) -> BenchResult:
    """``result`` with the time its workload's real task would take at the measured throughput."""
    sps = result.samples_per_s
    if sps is None:
        return result
    task = spec.task_samples(result.task, params)
    if task is None:
        return result
    samples, description = task
    return replace(result, projection=TaskProjection(description, samples, samples / sps))


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


@dataclass(frozen=True)
class Suite:
    """A validated, planned bench run."""

    specs: tuple[WorkloadSpec, ...]
    params: dict[str, dict[str, Any]]
    plans: tuple[Plan, ...]
    config: BenchConfig
    cpu: DeviceInfo
    machine: MachineInfo
    timing: Budget


def resolve_runtime(runtime: str | None) -> str:
    """``pytorch`` (the default) or ``llama.cpp`` (``llamacpp`` accepted)."""
    name = (runtime or RUNTIMES[0]).strip().lower()
    name = RUNTIME_ALIASES.get(name, name)
    if name not in RUNTIMES:
        raise BadInput(f"{runtime}: not one of {', '.join(RUNTIMES)} (llamacpp: llama.cpp)", param="runtime")
    return name


def plan_suite(workloads: Sequence[str] | None, devices: Sequence[str] | None, precisions: Sequence[str] | None,
               tasks: Sequence[str] | None, *, quick: bool, batch_size: int | None, overrides: Mapping[str, str],
               timing: Budget | None, custom_specs: Sequence[WorkloadSpec], include_hostname: bool,
               telemetry: bool, telemetry_period_s: float, runtime: str | None = None,
               method: str | None = None) -> Suite:
    """Validate everything before anything runs (``BadInput`` names the parameter and what is valid), then plan.
    ``runtime`` llama.cpp: the catalog LLMs on the CPU at GGUF weight types (``llamacpp_bench.plan_llamacpp``).
    ``method``: the fine-tuning method of task finetune (``measure.finetune``; default lora); the fine-tuning
    ``--set`` keys in ``overrides`` are the job's."""
    from dlgpu.devices import detect, select, use_threads
    from dlgpu.devices.machine import machine_info

    if batch_size is not None and batch_size <= 0:
        raise BadInput(f"{batch_size}: must be a positive integer", param="batch_size")
    if not 0 < telemetry_period_s <= 10:
        raise BadInput(f"{telemetry_period_s}: must be a number of seconds in (0, 10]", param="telemetry_period_s")
    if resolve_runtime(runtime) != "pytorch":
        from .llamacpp_bench import plan_llamacpp

        if method is not None or FINETUNE_TASK in (tasks or ()):
            raise BadInput("--task finetune runs with the PyTorch runtime (not llama.cpp)", param="runtime")
        return plan_llamacpp(workloads, devices, precisions, tasks, quick=quick, batch_size=batch_size,
                             overrides=overrides, timing=timing, custom_specs=custom_specs,
                             include_hostname=include_hostname, telemetry=telemetry,
                             telemetry_period_s=telemetry_period_s)
    gguf = [p for p in precisions or () if p in GGUF_PRECISIONS]
    if gguf:
        raise BadInput(f"{gguf[0]}: a GGUF weight type, measured with --runtime llama.cpp only (PyTorch's: "
                       f"{', '.join(BENCH_PRECISIONS)}, all)", param="precisions")
    specs = list(custom_specs) if custom_specs and not workloads else resolve_workloads(workloads)
    specs += [s for s in custom_specs if s not in specs]
    # None (no precision named, or all): each workload's own (LLM workloads add the int8/int4 weight formats)
    every = {p for s in specs for p in workload_precisions(s)}
    own = tuple(p for p in BENCH_PRECISIONS if p in every)
    for p in precisions or ():  # a weight format named explicitly that no selected workload has is bad input
        if p in BENCH_PRECISIONS and p not in every:
            if p not in WEIGHT_PRECISIONS:  # an autocast precision: only tabular workloads have none
                raise BadInput(f"{p}: not one of the precisions of the selected workloads ({', '.join(own)}, all): "
                               "tabular workloads run at fp32, their data's dtype", param="precisions")
            llms = ", ".join(s.name for s in list_workloads(include_tiny=False) if p in workload_precisions(s))
            raise BadInput(f"{p}: not one of the precisions of the selected workloads ({', '.join(own)}, all): "
                           f"{p} is an LLM weight format, offered only to LLM workloads ({llms})", param="precisions")
    asked = None if not precisions or "all" in precisions else resolve_choice(precisions, own, "precisions", own)
    precs = asked or own
    named = [x for t in tasks or () for x in (DEFAULT_TASKS if t == "both" else (t,))]
    # all = train, infer and decode: finetune only when named
    task_list = tuple(t for t in resolve_choice(named, BENCH_TASKS, "tasks", DEFAULT_TASKS)
                      if t != FINETUNE_TASK or t in named)
    if FINETUNE_TASK in task_list and not workloads and not custom_specs:
        raise BadInput(f"{FINETUNE_TASK}: name the workloads to fine-tune with --workload (fine-tunable: "
                       f"{finetunable()})", param="tasks")
    for t in task_list:  # a task named explicitly that nothing selected can run is bad input
        if t in named and not any(s.supports(t) for s in specs):
            if len(specs) == 1:
                check_task(specs[0], t)
            raise BadInput(f"{t}: none of the selected workloads supports it (workloads that do: {supporting(t)})",
                           param="tasks")
    request, left = finetune_request(method, overrides, task_list, precisions, batch_size, specs)
    if request is not None and set(task_list) == {FINETUNE_TASK}:
        precs = request.precisions
    present, _absent = detect()
    chosen = select(present, list(devices or []))
    per_overrides = overrides_for(specs, left)
    params = {s.name: s.resolve(per_overrides[s.name]) for s in specs}
    if any(s.family == TABULAR for s in specs):
        from .tabular import plan_params

        params = plan_params(specs, params, per_overrides, quick, batch_size)
    budget = timing or (QUICK if quick else STANDARD)
    config = BenchConfig(
        workloads=tuple(s.name for s in specs), devices=tuple(d.id for d in chosen), precisions=precs,
        tasks=task_list, quick=quick, batch_size=batch_size, overrides=dict(overrides),
        budget_s=budget.budget_s, warmup_steps=budget.warmup_steps,
        min_steps=budget.min_steps, max_steps=budget.max_steps, ci_rel=budget.ci_rel,
        telemetry=telemetry, telemetry_period_s=telemetry_period_s if telemetry else None,
        method=None if request is None else request.config.method,
    )
    plans = finetune_plans(make_plans(specs, task_list, named, chosen, asked, params, per_overrides, batch_size, quick),
                           request)
    cpu = present[0]
    use_threads(cpu.threads_used or 1)
    return Suite(tuple(specs), params, tuple(plans), config, cpu, machine_info(present, include_hostname), budget)


class _Run:
    """One bench run in progress: its results so far, where they are saved, and its sensor session."""

    def __init__(self, suite: Suite, observer: BenchObserver, sink: BenchSink, profile: ProfileFn,
                 on_step: Callable[[int, float], None] | None, ceiling: CeilingFn | None = None,
                 speed: SpeedCheck | None = None) -> None:
        self.suite, self.observer, self.sink, self.on_step = suite, observer, sink, on_step
        self.speed = speed or SpeedCheck(None, why_not="not checked")
        self.created = utc_now()
        self.results: list[BenchResult] = []
        cfg = suite.config
        self.energy = DeviceEnergy(cfg.telemetry, cfg.telemetry_period_s or 0.0,
                                   min(IDLE_BASELINE_S[cfg.quick], suite.timing.budget_s))
        self.mfu = MfuCounter(profile, lambda device, prec: self.energy.facts(device).peak(prec), observer.started,
                              ceiling)
        self.memory = MemoryCheck()
        self.by_name = {s.name: s for s in suite.specs}
        cpu = suite.cpu
        self.cpu_settings = {"threads": cpu.threads_used, "physical_cores": cpu.physical_cores,
                             "cpu_native_bf16": cpu.details.get("native_bf16")}

    def report(self, interrupted: bool) -> BenchReport:
        groups: dict[tuple[str, str, str], int] = {}
        for r in self.results:
            groups.setdefault((r.workload, r.task, r.device), len(groups))
        ordered = sorted(self.results, key=lambda r: (groups[(r.workload, r.task, r.device)],
                                                      RESULT_PRECISIONS.index(r.precision)))
        final = with_speedups([project(self.with_speed(r), self.by_name[r.workload],
                                       self.suite.params[r.workload]) for r in ordered])
        return BenchReport(self.created, self.suite.machine, self.suite.config, tuple(final), interrupted,
                           telemetry=dict(self.energy.summary), run_id=self.sink.run_id)

    def with_speed(self, result: BenchResult) -> BenchResult:
        """``result`` with this run's machine-speed check (``measure.speed``) in its settings."""
        return replace(result, settings={**result.settings, "machine_speed": self.speed.settings_for(result.device)})

    def add(self, result: BenchResult) -> None:
        self.results.append(result)
        self.observer.finished(result)
        self.sink.save(self.report(interrupted=True))

    def finish(self, result: BenchResult, plan: Plan) -> BenchResult:
        """A measured result with its MFU (and the telemetry-off label)."""
        if result.status == "ok" and not self.suite.config.telemetry:
            result = replace(result, energy_source="unavailable", energy_basis="telemetry off (--no-telemetry)")
        return self.mfu.add(result, plan)

    def runnable(self, plan: Plan, base: Mapping[str, Any]) -> tuple[list[str], dict[str, MemoryFit], str | None]:
        """The precisions of ``plan`` to measure (the others are added as skipped, with the reason), their memory
        fits, and why the workload could not even be built on the meta device (None if it could)."""
        from dlgpu.devices import unsupported_reason

        runnable = []
        for prec in plan.precisions:
            why = (task_unsupported_reason(plan.spec, plan.task)
                   or (unsupported_reason(plan.device, prec, plan.spec.family) if plan.finetune is None
                       else finetune_unsupported(plan, prec)))
            if why:
                self.add(BenchResult(**base, precision=prec, status="skipped", reason=why))
            else:
                runnable.append(prec)
        if not runnable:
            return [], {}, None
        self.observer.started(f"{plan.label}: checking memory")
        fits: dict[str, MemoryFit] = {}
        floor_error = None
        try:
            for prec in runnable:
                fits[prec] = self.memory.fit(plan, prec)
        except Exception as exc:  # a workload that cannot even be built on meta
            floor_error = f"{type(exc).__name__}: {exc}"
        for prec, f in fits.items():
            if f.why_not:
                self.add(BenchResult(**base, precision=prec, status="skipped", reason=f.why_not))
        return [p for p in runnable if not (p in fits and fits[p].why_not)], fits, floor_error

    def run_plan(self, plan: Plan) -> None:
        if plan.spec.family == TABULAR:  # XGBoost, LightGBM, scikit-learn: measure.tabular
            from .tabular import run_tabular_plan

            run_tabular_plan(self, plan)
            return
        # finetune: a step is grad_accum micro-batches of plan.batch_size
        step_batch = plan.batch_size * int((plan.finetune or {}).get("grad_accum", 1))
        base: dict[str, Any] = {"workload": plan.spec.name, "task": plan.task, "device": plan.device.id,
                                "overrides": plan.overrides, "batch_size": step_batch,
                                "requested_batch_size": step_batch}
        runnable, fits, floor_error = self.runnable(plan, base)
        if not runnable:
            return
        fit = fits.get(runnable[0])
        settings = self.cpu_settings if plan.device.kind == "cpu" else {}
        if self.energy.needs_idle(plan.device):
            self.observer.started(f"{plan.device.id}: measuring idle power (the baseline, once per device)")
        tel_setup = self.energy.setup(plan.device)
        if (fit is not None and plan.device.kind == "cpu" and fit.isolate_on_cpu
                and plan.spec.family != "custom"):
            self.run_isolated(plan, runnable, settings, tel_setup, fit)
        else:
            self.run_here(plan, runnable, settings, tel_setup, base, floor_error)

    def run_isolated(self, plan: Plan, runnable: list[str], settings: Mapping[str, Any], tel_setup: Any,
                     fit: MemoryFit) -> None:
        from .isolated import measure_isolated

        self.observer.started(f"{plan.label}: measuring in a child process (large for this machine's memory)")
        for result in measure_isolated(
                plan.spec.name, plan.params, plan.device, plan.task, runnable, plan.batch_size,
                self.suite.timing, plan.overrides, settings, self.suite.cpu.threads_used or 1, fit.note,
                telemetry=tel_setup, finetune=_job(plan, runnable)):
            self.add(self.finish(result, plan))

    def run_here(self, plan: Plan, runnable: list[str], settings: Mapping[str, Any], tel_setup: Any,
                 base: Mapping[str, Any], floor_error: str | None) -> None:
        from .harness import build, measure

        self.observer.started(f"{plan.label}: building")
        try:
            built = build(plan.spec, plan.params, plan.device, finetune=_job(plan, runnable))
        except Exception as exc:
            msg = floor_error or f"build failed: {type(exc).__name__}: {exc}"
            for prec in runnable:
                self.add(BenchResult(**base, precision=prec, status="failed", reason=msg[:500]))
            return
        for prec in runnable:
            self.observer.started(f"{plan.label} at {prec}, batch {plan.batch_size}")
            self.add(self.finish(measure(built, plan.task, prec, plan.batch_size, self.suite.timing,
                                         overrides=plan.overrides, settings=settings, on_step=self.on_step,
                                         telemetry=tel_setup), plan))
        del built


def _job(plan: Plan, runnable: Sequence[str]) -> dict[str, Any] | None:
    """A finetune plan's job, built first in the weights dtype measured first."""
    return None if plan.finetune is None else {**plan.finetune, "weights_dtype": runnable[0]}


def run_suite(suite: Suite, sink: BenchSink, profile: ProfileFn, observer: BenchObserver | None = None,
              on_step: Callable[[int, float], None] | None = None, ceiling: CeilingFn | None = None,
              stored_probe: StoredProbeFn | None = None, speed_seams: Any = None) -> BenchReport:
    """Measure every plan of ``suite``; Ctrl-C stops, and what was measured is saved and returned (interrupted).
    ``ceiling``: this machine's measured GEMM ceilings (``dlgpu probe``), which MFU's basis also compares with.
    ``stored_probe``: this machine's newest uncontended probe per device, the basis of the machine-speed check
    (``measure.speed``: a reference GEMM timed before the first plan and after the last; ``speed_seams``: its
    ``probe.Seams``, for tests)."""
    speed = SpeedCheck.for_run(suite.cpu, [p.device for p in suite.plans], stored_probe, seams=speed_seams)
    run = _Run(suite, observer or NullObserver(), sink, profile, on_step, ceiling, speed)
    run.observer.planned(sum(len(p.precisions) for p in suite.plans))
    run.sink.begin(run.report(interrupted=True))
    status = "complete"
    try:
        try:
            if speed.active:
                run.observer.started(f"machine speed: {speed.describe()}")
                speed.before()
            if suite.config.runtime == "llama.cpp":
                from .llamacpp_bench import run_llamacpp

                run_llamacpp(run, suite.plans)
            else:
                for plan in suite.plans:
                    run.run_plan(plan)
            if speed.active:
                run.observer.started("machine speed: the reference again, after the run")
                speed.after()
        finally:
            run.energy.close()
    except KeyboardInterrupt:
        status = "interrupted"
    final = run.report(interrupted=status == "interrupted")
    run.sink.save(final, status)
    run.sink.close()
    return final
