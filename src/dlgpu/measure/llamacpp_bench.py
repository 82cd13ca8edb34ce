"""``dlgpu bench --runtime llama.cpp``: the catalog LLM workloads measured with llama.cpp on this machine's CPU.

Per workload and GGUF weight type (f16, q8_0, q4_0: the result's precision) a synthetic GGUF of the workload's
architecture is written to a temporary folder (``llamacpp.write_synthetic_gguf``: random weights, nothing
downloaded), measured for each task, and deleted. Per task, llama.cpp loads it (``llamacpp.GgufSession``: the C API,
no layer offloaded, ``llamacpp.default_threads()`` threads, as ``llama-bench -t``) and the same ``Timer`` the
PyTorch harness uses times each ``llama_decode`` call with ``time.perf_counter`` (the step), after an untimed
warm-up, until its budget's stop rule says stop. So the result has real per-step samples, their median, spread and
interval, contention (``contention``: measured again once, on fewer threads, when others took the CPUs) and the
telemetry window, as every other result. The tasks are the PyTorch LLM workloads' (``workloads.llm``), with the
same ``--set`` keys and defaults, on one sequence:

- ``decode``: ``context_len`` random tokens are decoded into the KV cache first (untimed); each step is one
  one-token ``llama_decode`` at position ``context_len``, and the position is dropped from the cache before the
  next (``Timer``'s untimed ``prepare``), so every step attends to the same context, as the PyTorch decode crops
  its cache. Batch 1: one token per step, samples/s = tokens/s.
- ``infer``: the prefill: each step is one ``llama_decode`` of a ``prompt_len``-token prompt into an empty cache
  (emptied before each step, untimed), the time to first token without sampling. As in the PyTorch prefill, the
  batch counts the prompt's tokens (``prompt_len``, one sequence), so that samples/s is tokens/s.

llama.cpp's own counters over the timed steps (``llama_perf_context``) are kept in ``settings["llama_perf"]`` as a
cross-check. Peak memory is the process's peak RSS over loading and timing minus its RSS before loading (kind
``process-peak-rss-delta``: the GGUF's pages mapped in, the KV cache and llama.cpp's compute buffers, not the
interpreter, PyTorch or the GGUF writer's buffers). Without the ``dlgpu[llamacpp]`` extra every configuration is
``skipped`` with how to install it. Each result is handed to the bench loop as it finishes (``suite._Run.add``:
saved at once), so Ctrl-C or a failing configuration loses nothing already measured."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dlgpu.errors import BadInput
from dlgpu.results import GGUF_PRECISIONS, USABLE_MEMORY_FRACTION, BenchConfig, BenchResult, StepStats
from dlgpu.units import format_bytes
from dlgpu.workloads.llm import FAMILY, LLM_TASKS, check_context
from dlgpu.workloads.registry import WorkloadSpec, list_workloads
from dlgpu.workloads.select import overrides_for, resolve_workloads

from . import llamacpp
from .contention import MAX_REMEASURE, REMEASURE_PAUSE_S, ContentionProbe
from .memory import CpuPeakRss
from .plan import Plan
from .timer import Budget, Timer

if TYPE_CHECKING:
    from dlgpu.llm.architectures import LlmArch

    from .harness import TelemetrySetup
    from .suite import Suite, _Run

RUNTIME = "llama.cpp"
PEAK_KIND = "process-peak-rss-delta"
INSTALL = "pip install 'dlgpu[llamacpp]'"
NO_MFU = ("no MFU: a llama.cpp step has no operator profile (dlgpu's profiles trace the PyTorch model); see "
          "settings.weight_read_bytes_per_s for decode")


def llm_workloads() -> list[WorkloadSpec]:
    """The workloads llama.cpp measures: the catalog LLMs (family ``llm``), tiny test ones left out."""
    return [s for s in list_workloads(include_tiny=False) if s.family == FAMILY]


def _valid_workloads() -> str:
    return ", ".join(s.name for s in llm_workloads())


def plan_llamacpp(workloads: Sequence[str] | None, devices: Sequence[str] | None, precisions: Sequence[str] | None,
                  tasks: Sequence[str] | None, *, quick: bool, batch_size: int | None, overrides: Mapping[str, str],
                  timing: Budget | None, custom_specs: Sequence[WorkloadSpec], include_hostname: bool,
                  telemetry: bool, telemetry_period_s: float) -> Suite:
    """``suite.plan_suite`` for the llama.cpp runtime: every input checked first (``BadInput`` naming what is
    valid), then one ``Plan`` per workload and task on the CPU with the GGUF weight types as its precisions."""
    from dlgpu.devices import detect
    from dlgpu.devices.machine import machine_info

    from .suite import Suite
    from .timer import QUICK, STANDARD

    if custom_specs:
        raise BadInput(f"llama.cpp measures the catalog LLM workloads only, not your own model (valid: "
                       f"{_valid_workloads()})", param="model")
    if not workloads:
        raise BadInput(f"name the LLM workloads llama.cpp measures, e.g. -w llama-3.2-1b (valid: {_valid_workloads()}, "
                       "all)", param="workloads")
    specs = llm_workloads() if "all" in workloads else resolve_workloads(workloads)
    others = [s.name for s in specs if s.family != FAMILY]
    if others:
        raise BadInput(f"{', '.join(others)}: llama.cpp measures LLM workloads only (valid: {_valid_workloads()}, all)",
                       param="workloads")
    for d in devices or ():
        if d.strip().lower() != "cpu":
            raise BadInput(f"{d}: llama.cpp is measured on the CPU only (llama.cpp's CPU build: no layer is "
                           "offloaded); valid: cpu", param="devices")
    for p in precisions or ():
        if p != "all" and p not in GGUF_PRECISIONS:
            raise BadInput(f"{p}: with --runtime llama.cpp the precision is the GGUF weight type (valid: "
                           f"{', '.join(GGUF_PRECISIONS)}, all)", param="precisions")
    precs = (GGUF_PRECISIONS if not precisions or "all" in precisions
             else tuple(p for p in GGUF_PRECISIONS if p in precisions))
    named = [x for t in tasks or () for x in (LLM_TASKS if t == "all" else ("train", "infer") if t == "both" else (t,))]
    for t in named:
        if t not in LLM_TASKS:
            raise BadInput(f"{t}: llama.cpp measures inference: infer (the prefill of prompt_len tokens) and decode "
                           "(valid: infer, decode, all)", param="tasks")
    task_list = tuple(t for t in LLM_TASKS if t in named) or LLM_TASKS
    if batch_size is not None and batch_size != 1:
        raise BadInput(f"{batch_size}: llama.cpp is measured on one sequence (batch 1; its batched decode is not "
                       "measured here)", param="batch_size")
    per_overrides = overrides_for(specs, overrides)
    params = {s.name: s.resolve(per_overrides[s.name]) for s in specs}
    for s in specs:
        check_context(s.extra["shape"], params[s.name])
        llamacpp.synthetic_tensors(arch_of(s), "q8_0", layers=1)  # BadInput where no GGUF can be written for it
    present, _absent = detect()
    cpu = present[0]
    budget = timing or (QUICK if quick else STANDARD)
    config = BenchConfig(
        workloads=tuple(s.name for s in specs), devices=(cpu.id,), precisions=precs, tasks=task_list, quick=quick,
        batch_size=batch_size, overrides=dict(overrides), budget_s=budget.budget_s,
        warmup_steps=budget.warmup_steps, min_steps=budget.min_steps, max_steps=budget.max_steps,
        ci_rel=budget.ci_rel, telemetry=telemetry, telemetry_period_s=telemetry_period_s if telemetry else None,
        runtime=RUNTIME)
    plans = [Plan(s, params[s.name], dict(per_overrides[s.name]), t, cpu, precs,
                  1 if t == "decode" else int(params[s.name]["prompt_len"]))
             for s in specs for t in task_list]
    return Suite(tuple(specs), params, tuple(plans), config, cpu, machine_info(present, include_hostname), budget)


def arch_of(spec: WorkloadSpec) -> LlmArch:
    """The ``LlmArch`` of an LLM workload: its catalog row, or (the tiny test model) one built from its shape."""
    from dlgpu.llm.architectures import arch_from_hf_config, load_architectures

    shape = spec.extra["shape"]
    catalog = load_architectures()
    if shape.id in catalog:
        return catalog[shape.id]
    return arch_from_hf_config({
        "model_type": shape.architecture, "num_hidden_layers": shape.layers, "hidden_size": shape.hidden,
        "intermediate_size": shape.intermediate, "num_attention_heads": shape.heads,
        "num_key_value_heads": shape.kv_heads, "head_dim": shape.head_dim, "vocab_size": shape.vocab,
        "max_position_embeddings": shape.max_context, "tie_word_embeddings": shape.tied,
        "sliding_window": shape.sliding_window}, shape.id)


def _tokens(plan: Plan) -> int:
    """Tokens the KV cache must hold for ``plan``'s task."""
    return int(plan.params["context_len"]) + 1 if plan.task == "decode" else int(plan.params["prompt_len"])


def why_not(arch: LlmArch, weight_type: str, plans: Sequence[Plan], folder: Path) -> str | None:
    """Why the GGUF of ``arch`` at ``weight_type`` cannot be written and run here (memory, disk); None if it can."""
    from dlgpu.devices import available_memory
    from dlgpu.llm.formats import get_format, weight_bytes

    weights = weight_bytes(arch, get_format(weight_type))
    kv = 2 * arch.kv_cache_elements(max(_tokens(p) for p in plans))  # llama.cpp's default KV cache: f16
    need = weights + kv
    free = available_memory(plans[0].device)
    if free is not None and need > int(free * USABLE_MEMORY_FRACTION):
        return (f"does not fit: needs about {format_bytes(need)} ({format_bytes(weights)} of {weight_type} weights "
                f"(llm.formats), {format_bytes(kv)} of f16 KV cache); the CPU has {format_bytes(free)} free, "
                f"{format_bytes(int(free * USABLE_MEMORY_FRACTION))} usable")
    disk = shutil.disk_usage(folder).free
    if weights * 1.1 > disk:
        return (f"no room for the synthetic GGUF: about {format_bytes(weights)} to write, {format_bytes(disk)} free in "
                f"{folder.parent} (set TMPDIR to a larger folder)")
    return None


def _base(plan: Plan, precision: str) -> dict[str, Any]:
    return {"workload": plan.spec.name, "task": plan.task, "device": plan.device.id, "precision": precision,
            "overrides": dict(plan.overrides), "batch_size": plan.batch_size,
            "requested_batch_size": plan.batch_size, "runtime": RUNTIME}


def run_llamacpp(run: _Run, plans: Sequence[Plan]) -> None:
    """Measure ``plans`` with llama.cpp, each result handed to ``run.add`` as it finishes. Per workload and weight
    type: write the GGUF, measure every task on it, delete it (the folder goes at the end, Ctrl-C included)."""
    why = llamacpp.available()
    if why:
        reason = f"llama.cpp is not available: {why}" + ("" if INSTALL in why else f"; install it: {INSTALL}")
        for plan in plans:
            for prec in plan.precisions:
                run.add(BenchResult(**_base(plan, prec), status="skipped", reason=reason))
        return
    run.observer.started("llama.cpp: checking its repacked CPU weights (once, in a child process)")
    extra = llamacpp.extra_buffers_work()
    threads = llamacpp.default_threads()
    by_workload: dict[str, list[Plan]] = {}
    for plan in plans:
        by_workload.setdefault(plan.spec.name, []).append(plan)
    with tempfile.TemporaryDirectory(prefix="dlgpu-gguf-") as tmp:
        for name, mine in by_workload.items():
            arch = arch_of(mine[0].spec)
            for prec in mine[0].precisions:
                path = Path(tmp) / f"{name}-{prec}.gguf"
                why = why_not(arch, prec, mine, Path(tmp))
                if why:
                    for plan in mine:
                        run.add(BenchResult(**_base(plan, prec), status="skipped", reason=why))
                    continue
                run.observer.started(f"{name}: writing a synthetic {prec} GGUF (random weights)")
                t0 = time.perf_counter()
                try:
                    llamacpp.write_synthetic_gguf(arch, path, prec)
                except Exception as exc:
                    for plan in mine:
                        run.add(BenchResult(**_base(plan, prec), status="failed",
                                            reason=f"writing the synthetic GGUF failed: {type(exc).__name__}: "
                                                   f"{exc}"[:500]))
                    path.unlink(missing_ok=True)
                    continue
                written_s = time.perf_counter() - t0
                try:
                    for plan in mine:
                        if run.energy.needs_idle(plan.device):
                            run.observer.started(f"{plan.device.id}: measuring idle power (the baseline, once per "
                                                 "device)")
                        setup = run.energy.setup(plan.device)
                        run.observer.started(f"{plan.label} with llama.cpp at {prec}")
                        result = measure_gguf(path, plan, prec, run.suite.timing, threads, extra, setup,
                                              run.on_step, written_s=written_s,
                                              physical_cores=run.suite.cpu.physical_cores)
                        if result.status == "ok" and not run.suite.config.telemetry:
                            result = replace(result, energy_source="unavailable",
                                             energy_basis="telemetry off (--no-telemetry)")
                        run.add(result)
                finally:
                    path.unlink(missing_ok=True)


def llama_bench_line(path: Path, plan: Plan, threads: int, extra: bool, steps: int) -> str:
    """The ``llama-bench`` command that runs the same test on the same file (as near as it has one)."""
    if plan.task == "decode":
        line = f"llama-bench -m {path} -p 0 -n {steps} -d {plan.params['context_len']} -t {threads} -ngl 0"
        note = " (llama-bench's -n grows the context from -d; dlgpu's steps all attend to context_len tokens)"
    else:
        line = f"llama-bench -m {path} -p {plan.params['prompt_len']} -n 0 -t {threads} -ngl 0"
        note = ""
    if not extra:
        note += " (measured with use_extra_bufts=false: no repacked weights)"
    return line + note


def measure_gguf(path: Path, plan: Plan, precision: str, budget: Budget, threads: int, extra_buffers: bool,
                 telemetry: TelemetrySetup | None = None, on_step: Callable[[int, float], None] | None = None,
                 remeasure: int = MAX_REMEASURE, written_s: float | None = None,
                 physical_cores: int | None = None) -> BenchResult:
    """Measure ``plan``'s task on the GGUF at ``path`` (weight type ``precision``) with llama.cpp on ``threads``
    threads. Never raises for a failure of llama.cpp's (KeyboardInterrupt does propagate): a ``failed`` result.

    Measured again at most ``remeasure`` times, after a short pause and on the threads others left free, where other
    processes took more than their share of the CPUs (as ``harness.measure``); the kept attempt is an uncontended
    one if any, else the fastest, with every attempt's figures in ``contention["attempts"]``."""
    from .harness import _keep_least_disturbed

    started = time.perf_counter()
    base = _base(plan, precision)
    tracker = CpuPeakRss()
    try:
        tracker.reset()
        rss0 = tracker.peak_bytes()
        with llamacpp.GgufSession(path, n_ctx=_tokens(plan), n_batch=_tokens(plan), n_threads=threads,
                                  extra_buffers=extra_buffers) as session:
            attempts = [(_timed(session, plan, budget, base, telemetry, on_step), threads)]
            while attempts[-1][0].contended and len(attempts) <= remeasure:
                time.sleep(REMEASURE_PAUSE_S)
                c = attempts[-1][0].contention or {}
                others = float(c.get("others_cpu_s", 0.0)) / max(float(c.get("window_s", 1.0)), 1e-9)
                n = max(1, threads - max(1, round(others)))
                session.set_threads(n)
                try:
                    attempts.append((_timed(session, plan, budget, base, telemetry, on_step), n))
                except Exception:  # the first attempt stands
                    break
            peak = tracker.peak_bytes()
            params = dict(session.params)
        kept = _keep_least_disturbed(attempts) if len(attempts) > 1 else attempts[0][0]
        kept_threads = int(kept.settings.get("threads", threads))
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return BenchResult(**base, status="failed", reason=f"{type(exc).__name__}: {first}"[:500],
                           wall_time_s=time.perf_counter() - started)
    finally:
        tracker.close()
    file_bytes = path.stat().st_size
    settings: dict[str, Any] = {
        **kept.settings, "runtime": RUNTIME, "llama_cpp_python": llamacpp.version(), "threads": kept_threads,
        "n_threads": kept_threads, "n_threads_available": threads, "physical_cores": physical_cores,
        "extra_buffers": extra_buffers, "params": dict(plan.params), "context": params,
        "gguf": {"file": path.name, "file_bytes": file_bytes, "weight_type": precision,
                 "written_s": None if written_s is None else round(written_s, 2),
                 "contents": (f"synthetic {plan.spec.name} with random weights: every matrix {precision}, 1-D "
                              "tensors f32 (llama.cpp's --pure; dlgpu.measure.llamacpp); deleted after the run")},
        "llama_bench": llama_bench_line(path, plan, kept_threads, extra_buffers,
                                        kept.step_time.n if kept.step_time else 0),
        "peak_mem": ("process peak RSS (VmHWM) over loading and timing minus the RSS before loading: the GGUF's "
                     "mapped pages, the KV cache and llama.cpp's compute buffers"),
    }
    sps = kept.samples_per_s
    if plan.task == "decode" and sps:
        settings["weight_read_bytes_per_s"] = file_bytes * sps  # every weight is read once per decoded token
    return replace(kept, settings=settings, wall_time_s=time.perf_counter() - started,
                   peak_mem_bytes=None if peak is None or rss0 is None else max(0, peak - rss0),
                   peak_mem_kind=PEAK_KIND)


def _timed(session: llamacpp.GgufSession, plan: Plan, budget: Budget, base: Mapping[str, Any],
           telemetry: TelemetrySetup | None, on_step: Callable[[int, float], None] | None) -> BenchResult:
    """One attempt: the task's step timed by ``Timer`` (warm-up first, at least one), with the contention probe,
    the telemetry window and llama.cpp's counters over the timed steps."""
    from .harness import MAX_WINDOW_S, telemetry_fields
    from .telemetry import Telemetry

    if plan.task == "decode":
        context = int(plan.params["context_len"])
        session.clear()
        session.decode(session.tokens(context))  # the context, untimed: every step attends to it
        session.synchronize()
        token = session.tokens(1)

        def prepare() -> None:
            session.keep(context)  # drop the token the previous step appended

        def step() -> None:
            session.decode(token)
    else:
        prompt = session.tokens(int(plan.params["prompt_len"]))

        def prepare() -> None:
            session.clear()  # each prefill starts from an empty cache

        def step() -> None:
            session.decode(prompt)

    backend, owned = (None, False) if telemetry is None else telemetry.open(plan.device)
    tel = None
    if backend is not None:
        assert telemetry is not None
        tel = Telemetry(backend, period_s=telemetry.period_s, idle=telemetry.idle, device=plan.device.id)
    probe = ContentionProbe()

    def timed_start() -> None:
        session.perf_reset()
        probe.start()
        if tel is not None:
            tel.start()

    try:
        timer = Timer(step, session.synchronize, prepare=prepare)
        timing = timer.run(replace(budget, warmup_steps=max(1, budget.warmup_steps)), on_step,
                           min_time_s=0.0 if tel is None else min(tel.min_window_s, MAX_WINDOW_S),
                           on_timed_start=timed_start)
        contention = probe.stop()
        window = None if tel is None else tel.stop()
        perf = session.perf()
    finally:
        if tel is not None and tel.running:
            tel.stop()
        if owned and backend is not None:
            backend.close()
    stats = StepStats(tuple(timing.samples_s))
    batch = int(base["batch_size"])
    sps = batch / stats.median if stats.median > 0 else None
    counters: dict[str, Any] = dict(perf)
    decode = plan.task == "decode"
    n, t_ms = (perf["n_eval"], perf["t_eval_ms"]) if decode else (perf["n_p_eval"], perf["t_p_eval_ms"])
    counters["tokens_per_s"] = n / (t_ms / 1000) if t_ms > 0 else None
    total = sum(stats.samples_s)
    counters["timed_tokens_per_s"] = batch * stats.n / total if total > 0 else None
    counters["basis"] = (f"llama.cpp's llama_perf_context over the timed steps, by its own clock "
                         f"({'one-token decodes: n_eval / t_eval' if decode else 'prompt batches: n_p_eval / t_p_eval'}"
                         "); timed_tokens_per_s: the same steps by dlgpu's clock (tokens / summed step times; "
                         "samples_per_s uses the median step)")
    tel_fields: dict[str, Any] = {}
    if window is not None:
        tel_fields = telemetry_fields(window, stats.n, batch, sps, timing.extended_steps)
    return BenchResult(
        **base, status="ok", step_time=stats, warmup_steps=len(timing.warmup_s),
        settings={"threads": session.n_threads, "llama_perf": counters},
        stop_reason=timing.stop_reason, contended=contention.contended, contention=contention.to_dict(),
        mfu_basis=NO_MFU, **tel_fields)
