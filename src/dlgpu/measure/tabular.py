"""``dlgpu bench`` for the tabular workloads (``workloads.tabular``: XGBoost, LightGBM, scikit-learn, cuML on CUDA):
one fit or one predict timed on every device present, by the same ``Timer``, contention probe, telemetry window and
peak-memory trackers as the neural workloads.

Per plan (workload, task, device), ``suite._Run.run_plan`` hands over to ``run_tabular_plan``:

- the data (``models.tabular.make_data``: ``rows`` x ``features`` float32, seeded) is generated once per workload and
  parameters and kept for the next plan (train then infer, each device), untimed;
- the estimator is built for the device (``models.tabular.build_model``): the CPU with every usable core (the
  library's own thread setting, ``n_jobs``, and the BLAS and OpenMP pools limited to the same count through
  threadpoolctl; stated in ``settings``), XGBoost's ``device='cuda:N'``, a CUDA build of LightGBM and cuML on NVIDIA
  GPUs; where the library or its GPU build is missing the result is ``skipped`` with the reason;
- warm-up: one untimed fit on the first ``WARMUP_ROWS`` rows (libraries loaded, thread pools and any CUDA context
  started); for ``infer`` the model is first fitted once on all rows, untimed (or the one the train plan just
  fitted on the same device is reused), then one untimed predict of ``WARMUP_ROWS`` rows;
- the step: one ``fit(X, y)`` (a new estimator each time) or one ``predict(X)``, timed until the median's interval
  or the budget says stop, with at least ``MIN_STEPS`` (``QUICK_MIN_STEPS`` with ``--quick``) steps; every step
  is kept as a raw sample; a contended result is measured again once on the cores others left free (as
  ``harness.measure``), the uncontended or faster attempt kept;
- peak memory: the process's peak RSS on the CPU (``process-peak-rss``: the data, the model, the interpreter and
  the libraries), NVML's used memory on a GPU sampled during the steps (``nvml-device-used-peak``: the whole
  device, the CUDA context included);
- after the steps, untimed: what the fitted model is (trees, their depth, iterations) and its accuracy on held-out
  rows of the same problem.

Precision is fp32 (the data's dtype; none of these libraries has a precision setting): other precisions named are
skipped with that reason. The result's ``runtime`` is the library that ran it (``vocab.TABULAR_RUNTIMES``); its
batch is the rows of one step, so samples/s are rows/s."""

from __future__ import annotations

import contextlib
import functools
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from dlgpu.errors import BadInput
from dlgpu.results import USABLE_MEMORY_FRACTION, BenchResult, DeviceInfo, StepStats
from dlgpu.units import format_bytes
from dlgpu.workloads.registry import WorkloadSpec
from dlgpu.workloads.tabular import FAMILY, check_params, samples_per_step

from .contention import MAX_REMEASURE, REMEASURE_PAUSE_S, ContentionProbe
from .memory import CpuPeakRss, PeakMemory
from .timer import Budget, Timer

if TYPE_CHECKING:
    import numpy as np

    from dlgpu.workloads.models.tabular import TabularModel

    from .harness import TelemetrySetup
    from .plan import Plan
    from .suite import _Run

PRECISION = "fp32"
MIN_STEPS = 3
QUICK_MIN_STEPS = 2
GPU_PEAK_KIND = "nvml-device-used-peak"
MEMORY_FACTOR = 3
"""A run needs about this many times its float32 data: the data, the copy or binned matrix the library makes of it
and its working memory (SVC's libsvm copies to float64). A floor: a run that cannot fit it is skipped."""
NO_MFU = ("no MFU: a tabular step is a library's tree building or linear algebra, not a PyTorch step with an operator "
          "profile")
PRECISION_REASON = ("tabular workloads run at fp32: the data is float32 and XGBoost, LightGBM and scikit-learn have "
                    "no precision setting")


def plan_params(specs: Sequence[WorkloadSpec], params: Mapping[str, dict[str, Any]],
                overrides: Mapping[str, Mapping[str, str]], quick: bool,
                batch_size: int | None) -> dict[str, dict[str, Any]]:
    """``params`` with the tabular workloads' checked and, with ``--quick``, their default rows cut to the quick rows
    (``spec.quick_batch_size``) where ``rows`` was not set. BadInput (one line) for ``-b`` with a tabular workload,
    and for parameters that cannot make a fit (``workloads.tabular.check_params``)."""
    tabular = [s for s in specs if s.family == FAMILY]
    if tabular and batch_size is not None:
        raise BadInput(f"{batch_size}: {tabular[0].name} is a tabular workload, shaped by --set rows=N (not -b)",
                       param="batch_size")
    out = {k: dict(v) for k, v in params.items()}
    for s in tabular:
        p = out[s.name]
        if quick and "rows" not in overrides.get(s.name, {}):
            p["rows"] = min(int(p["rows"]), s.quick_batch_size)
        check_params(str(s.extra["estimator"]), p)
    return out


def memory_need(params: Mapping[str, Any]) -> tuple[int, int]:
    """(bytes the run needs, bytes of its float32 data and int32 labels)."""
    rows, features = int(params["rows"]), int(params["features"])
    data = rows * features * 4 + rows * 4 + int(params.get("queries", 0)) * features * 4
    return MEMORY_FACTOR * data, data


# --- per-run state: the data and the last fitted model, kept between plans -------------------------------------


@dataclass
class _Cache:
    data_key: tuple[Any, ...] | None = None
    data: tuple[Any, Any] | None = None
    generated_s: float = 0.0
    model_key: tuple[Any, ...] | None = None
    model: TabularModel | None = None
    extra: dict[tuple[Any, ...], Any] = field(default_factory=dict)

    def xy(self, rows: int, features: int) -> tuple[np.ndarray, np.ndarray, float]:
        from dlgpu.workloads.models.tabular import make_data

        key = (rows, features)
        if key != self.data_key or self.data is None:
            self.data = None  # the previous data (and the model fitted on it) go before the next is made
            self.model, self.model_key = None, None
            self.extra.clear()
            t0 = time.perf_counter()
            self.data = make_data(rows, features)
            self.generated_s = time.perf_counter() - t0
            self.data_key = key
        return self.data[0], self.data[1], self.generated_s

    def queries(self, rows: int, features: int) -> np.ndarray:
        """Held-out rows to predict (k-nearest neighbours' queries)."""
        from dlgpu.workloads.models.tabular import make_data

        key = ("queries", rows, features)
        if key not in self.extra:
            self.extra[key] = make_data(rows, features, seed=2)[0]
        x: np.ndarray = self.extra[key]
        return x


_CACHES: weakref.WeakKeyDictionary[Any, _Cache] = weakref.WeakKeyDictionary()


def _cache(run: Any) -> _Cache:
    if run not in _CACHES:
        _CACHES[run] = _Cache()
    return _CACHES[run]


# --- GPU memory ---------------------------------------------------------------------------------------------------


class NvmlUsedPeak:
    """The device's used memory (NVML: every process, the CUDA context included), sampled every ``period_s`` from
    ``reset`` to ``peak_bytes``: XGBoost, LightGBM and cuML allocate outside PyTorch's allocator."""

    kind = GPU_PEAK_KIND

    def __init__(self, device: DeviceInfo, period_s: float = 0.005) -> None:
        self.device, self.period = device, period_s
        self._peak: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._read: Callable[[], int] | None = None

    def _reader(self) -> Callable[[], int] | None:
        from .telemetry.nvml import load_nvml, normalize_uuid

        nvml, _why = load_nvml()
        if nvml is None:
            return None
        try:
            nvml.nvmlInit()
            uuid = str(self.device.details.get("uuid") or "")
            handle = None
            if uuid:
                for i in range(nvml.nvmlDeviceGetCount()):
                    h = nvml.nvmlDeviceGetHandleByIndex(i)
                    u = nvml.nvmlDeviceGetUUID(h)
                    if normalize_uuid(u.decode() if isinstance(u, bytes) else str(u)) == normalize_uuid(uuid):
                        handle = h
            if handle is None:
                handle = nvml.nvmlDeviceGetHandleByIndex(int(self.device.id.split(":")[1]))
        except Exception:
            return None
        return lambda: int(nvml.nvmlDeviceGetMemoryInfo(handle).used)

    def reset(self) -> None:
        self.close()
        self._read = self._read or self._reader()
        if self._read is None:
            return
        read = self._read
        self._peak = read()
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(self.period):
                try:
                    self._peak = max(self._peak or 0, read())
                except Exception:
                    return

        self._thread = threading.Thread(target=loop, name="dlgpu-nvml-mem", daemon=True)
        self._thread.start()

    def peak_bytes(self) -> int | None:
        if self._read is not None and self._peak is not None:
            self._peak = max(self._peak, self._read())
        return self._peak

    def close(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None


def peak_tracker(device: DeviceInfo) -> PeakMemory:
    return NvmlUsedPeak(device) if device.kind == "cuda" else CpuPeakRss()


# --- one plan ------------------------------------------------------------------------------------------------------


def _base(plan: Plan, precision: str, runtime: str) -> dict[str, Any]:
    n = samples_per_step(plan.spec, plan.task, plan.params)
    return {"workload": plan.spec.name, "task": plan.task, "device": plan.device.id, "precision": precision,
            "overrides": dict(plan.overrides), "batch_size": n, "requested_batch_size": n, "runtime": runtime}


def run_tabular_plan(run: _Run, plan: Plan) -> None:
    """Measure one tabular plan, handing each result to ``run.add`` (saved at once)."""
    from dlgpu.devices import available_memory
    from dlgpu.workloads.models.tabular import runtime_of, unavailable

    estimator = str(plan.spec.extra["estimator"])
    runtime = runtime_of(estimator, plan.device.kind)
    for prec in plan.precisions:
        if prec != PRECISION:
            run.add(BenchResult(**_base(plan, prec, runtime), status="skipped", reason=PRECISION_REASON))
    if PRECISION not in plan.precisions:
        return
    base = _base(plan, PRECISION, runtime)
    run.observer.started(f"{plan.label}: checking {runtime}")
    why = unavailable(estimator, plan.device.kind)
    if plan.device.backend == "rocm":
        why = (f"{runtime}'s GPU path here is NVIDIA CUDA (XGBoost's CUDA build, LightGBM's CUDA build, cuML); "
               f"{plan.device.id} is a ROCm device")
    if why:
        run.add(BenchResult(**base, status="skipped", reason=why))
        return
    need, data = memory_need(plan.params)
    free = available_memory(plan.device)
    if free is not None and need > int(free * USABLE_MEMORY_FRACTION):
        run.add(BenchResult(**base, status="skipped", reason=(
            f"does not fit: needs about {format_bytes(need)} ({MEMORY_FACTOR} x the {format_bytes(data)} of float32 "
            f"data: the data, the library's copy of it and its working memory); {plan.device.id} has "
            f"{format_bytes(free)} free, {format_bytes(int(free * USABLE_MEMORY_FRACTION))} usable")))
        return
    if run.energy.needs_idle(plan.device):
        run.observer.started(f"{plan.device.id}: measuring idle power (the baseline, once per device)")
    setup = run.energy.setup(plan.device)
    quick = run.suite.config.quick
    budget = replace(run.suite.timing, warmup_steps=0, min_steps=QUICK_MIN_STEPS if quick else MIN_STEPS,
                     max_steps=max(run.suite.timing.max_steps, MIN_STEPS))
    result = measure_tabular(plan, budget, run.suite.cpu.threads_used or 1, setup, run.on_step, _cache(run),
                             observer=run.observer.started, physical_cores=run.suite.cpu.physical_cores)
    if result.status == "ok" and not run.suite.config.telemetry:
        result = replace(result, energy_source="unavailable", energy_basis="telemetry off (--no-telemetry)")
    run.add(result)


def _device_index(device: DeviceInfo) -> int | None:
    return int(device.id.split(":")[1]) if ":" in device.id else None


def measure_tabular(plan: Plan, budget: Budget, threads: int, telemetry: TelemetrySetup | None = None,
                    on_step: Callable[[int, float], None] | None = None, cache: _Cache | None = None,
                    observer: Callable[[str], None] | None = None, remeasure: int = MAX_REMEASURE,
                    physical_cores: int | None = None) -> BenchResult:
    """One tabular configuration measured (module docstring). Never raises for a library's failure
    (KeyboardInterrupt does propagate): a ``failed`` result, or ``skipped`` where the library cannot run here."""
    from dlgpu.workloads.models.tabular import (
        GENERATOR,
        WARMUP_ROWS,
        NotAvailable,
        build_model,
        runtime_of,
        versions,
    )

    from .harness import _keep_least_disturbed

    say = observer or (lambda _label: None)
    cache = cache or _Cache()
    started = time.perf_counter()
    p = plan.params
    estimator = str(plan.spec.extra["estimator"])
    base = _base(plan, PRECISION, runtime_of(estimator, plan.device.kind))
    rows, features = int(p["rows"]), int(p["features"])
    infer = plan.task == "infer"
    index = _device_index(plan.device)
    key = (plan.spec.name, tuple(sorted(p.items())), plan.device.id)
    warm = min(rows, max(WARMUP_ROWS, 2 * int(p.get("clusters", 0)), 2 * int(p.get("neighbors", 0))))
    try:
        with contextlib.ExitStack() as stack:  # the thread limits of each model built, left at the end
            say(f"{plan.label}: generating {rows:,} x {features} float32 rows (seeded, untimed)")
            x, y, generated_s = cache.xy(rows, features)
            model = build_model(estimator, p, plan.device.kind, index, threads)
            stack.enter_context(model.limits())
            fit_s: float | None = None
            xq = x
            if infer:
                if cache.model_key == key and cache.model is not None:
                    model.model = cache.model.model  # the train plan's last fit, on this device
                else:
                    say(f"{plan.label}: fitting once on {rows:,} rows (untimed: infer times predict)")
                    t0 = time.perf_counter()
                    model.fit(x, y)
                    fit_s = time.perf_counter() - t0
                xq = cache.queries(int(p["queries"]), features) if "queries" in p else x
                model.predict(xq[:warm])  # warm-up
            else:
                say(f"{plan.label}: warm-up fit on {warm:,} rows (untimed)")
                model.fit(x[:warm], y[:warm])
            attempts: list[tuple[BenchResult, int]] = []
            used = threads
            while True:
                say(f"{plan.label}: timing {'predict' if infer else 'fit'} on {base['batch_size']:,} rows "
                    f"({used} thread{'s' if used != 1 else ''})")
                step = functools.partial(model.predict, xq) if infer else functools.partial(model.fit, x, y)
                attempt = _timed(step, plan, budget, base, telemetry, on_step)
                attempts.append((replace(attempt, settings={"thread_setting": model.thread_setting}), used))
                if not attempt.contended or len(attempts) > remeasure:
                    break
                time.sleep(REMEASURE_PAUSE_S)
                if plan.device.kind == "cpu":  # again on the cores others left free, as harness.measure
                    c = attempt.contention or {}
                    others = float(c.get("others_cpu_s", 0.0)) / max(float(c.get("window_s", 1.0)), 1e-9)
                    used = max(1, threads - max(1, round(others)))
                    previous = model.model
                    model = build_model(estimator, p, plan.device.kind, index, used)
                    stack.enter_context(model.limits())
                    model.model = previous
            kept = _keep_least_disturbed(attempts) if len(attempts) > 1 else attempts[0][0]
            kept_threads = int(kept.settings.get("threads", attempts[0][1]))
            say(f"{plan.label}: what the model is, and its held-out accuracy (untimed)")
            facts = model.facts()
            holdout = model.holdout(features)
            cache.model_key, cache.model = key, model
    except KeyboardInterrupt:
        raise
    except NotAvailable as exc:
        return BenchResult(**base, status="skipped", reason=str(exc)[:500])
    except MemoryError:
        return BenchResult(**base, status="failed", reason="out of memory (MemoryError)",
                           wall_time_s=time.perf_counter() - started)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return BenchResult(**base, status="failed", reason=f"{type(exc).__name__}: {first}"[:500],
                           wall_time_s=time.perf_counter() - started)
    gpu = plan.device.kind == "cuda"
    n = int(base["batch_size"])
    settings: dict[str, Any] = {
        **kept.settings, "threads": kept_threads, "threads_available": threads, "physical_cores": physical_cores,
        "library": model.runtime, "library_version": model.library_version, "versions": versions(),
        "estimator": model.cls, "estimator_params": dict(model.settings), "params": dict(p), "dtype": "float32",
        "data": {"rows": rows, "features": features, "bytes": int(x.nbytes + y.nbytes), "generator": GENERATOR,
                 "seed": 0, "generated_s": round(generated_s, 3), "rows_per_step": n,
                 "predicted_rows": ("held-out queries" if "queries" in p else "the training rows") if infer else None},
        "step": (f"one {model.cls}.predict(X) of {n:,} rows with the model fitted once before timing"
                 if infer else
                 f"one {model.cls}.fit(X, y) on {rows:,} x {features} float32 rows in host memory (a new estimator "
                 "each step; the library's data preparation" + (" and the copy to the GPU" if gpu else "")
                 + " included)"),
        "warmup": (f"the untimed fit, then one untimed predict of {warm:,} rows" if infer else
                   f"one untimed fit on the first {warm:,} rows (libraries loaded, thread pools"
                   + (" and the CUDA context" if gpu else "") + " started)"),
        "fit_s": None if fit_s is None else round(fit_s, 4),
        "model": facts, **holdout,
        "peak_mem": ("NVML's used memory of the whole device during the timed steps (the CUDA context included)"
                     if gpu else "the process's peak RSS during the timed steps: the data "
                     f"({format_bytes(int(x.nbytes + y.nbytes))}), the model, the interpreter and the libraries"),
    }
    return replace(kept, settings=settings, wall_time_s=time.perf_counter() - started, mfu_basis=NO_MFU)


def _timed(step: Callable[[], object], plan: Plan, budget: Budget, base: Mapping[str, Any],
           telemetry: TelemetrySetup | None, on_step: Callable[[int, float], None] | None) -> BenchResult:
    """One attempt: ``step`` timed by ``Timer`` with the contention probe, the telemetry window and the peak
    memory tracker around the timed steps."""
    from .harness import MAX_WINDOW_S, telemetry_fields
    from .telemetry import Telemetry

    backend, owned = (None, False) if telemetry is None else telemetry.open(plan.device)
    tel = None
    if backend is not None:
        assert telemetry is not None
        tel = Telemetry(backend, period_s=telemetry.period_s, idle=telemetry.idle, device=plan.device.id)
    tracker = peak_tracker(plan.device)
    probe = ContentionProbe()

    def timed_start() -> None:
        tracker.reset()
        probe.start()
        if tel is not None:
            tel.start()

    try:
        timing = Timer(step).run(budget, on_step, min_time_s=0.0 if tel is None else min(tel.min_window_s,
                                                                                          MAX_WINDOW_S),
                                 on_timed_start=timed_start)
        contention = probe.stop()
        window = None if tel is None else tel.stop()
        peak = tracker.peak_bytes()
    finally:
        if tel is not None and tel.running:
            tel.stop()
        tracker.close()
        if owned and backend is not None:
            backend.close()
    stats = StepStats(tuple(timing.samples_s))
    batch = int(base["batch_size"])
    sps = batch / stats.median if stats.median > 0 else None
    tel_fields: dict[str, Any] = {}
    if window is not None:
        tel_fields = telemetry_fields(window, stats.n, batch, sps, timing.extended_steps)
    return BenchResult(**base, status="ok", step_time=stats, warmup_steps=1, peak_mem_bytes=peak,
                       peak_mem_kind=tracker.kind, stop_reason=timing.stop_reason, contended=contention.contended,
                       contention=contention.to_dict(), **tel_fields)
