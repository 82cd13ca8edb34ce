"""The tabular figures (``workloads.tabular``: XGBoost, LightGBM, scikit-learn, cuML) of a comparison and of a bench
run's console output: fit and predict times per workload, library, device and shape, and the charts of time
against rows, one line per device and library, with where two lines cross marked.

Every figure is what a result stores: a tabular step is one ``fit`` (task train) or one ``predict`` (task infer) of
``batch`` rows, so the time is the median step time (± the IQR of the raw samples) and rows/s = batch / time. The
shape (rows, features, trees, depth, ...) is the result's ``settings["params"]``.

Crossovers: where a CPU line and a GPU line of the same workload, task and shape were both measured at two or more
of the same row counts and which is faster changes between two of them, the crossing is interpolated on the
log-log lines (``computed``). The prediction half (``dlgpu.tabular``) hands in its predicted lines and crossover
as plain data (``TabularCurve``), drawn dashed and marked ``predicted``."""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dlgpu.results.vocab import TABULAR_RUNTIMES

from .model import TABULAR_SECTION, Cell, Column, Crossover, LineChart, Series, Table

if TYPE_CHECKING:
    from dlgpu.results import BenchResult

    from .compare import Entry

TABULAR_TASKS = ("train", "infer")
STEP_WORDS = {"train": "fit", "infer": "predict"}
SHAPE_ORDER = ("rows", "features", "trees", "depth")


@functools.lru_cache(maxsize=256)
def is_tabular_workload(name: str) -> bool:
    """Whether ``name`` is a registered workload of family ``tabular`` (False for names this dlgpu does not know)."""
    from dlgpu.errors import BadInput
    from dlgpu.workloads import get_workload
    from dlgpu.workloads.tabular import FAMILY

    try:
        return get_workload(name).family == FAMILY
    except BadInput:
        return False


def tabular_fields(r: Mapping[str, Any], workload: str) -> dict[str, Any]:
    """The tabular fields of a comparison entry from a stored result or prediction (a dict): its shape (the
    parameters it ran with), threads, held-out accuracy and library version; nothing where it is not tabular."""
    if r.get("runtime") not in TABULAR_RUNTIMES and not is_tabular_workload(workload):
        return {}
    settings = r.get("settings") or {}
    params = settings.get("params") or r.get("params") or {}
    return {"tabular": {"params": dict(params) if isinstance(params, Mapping) else {},
                        "threads": settings.get("threads"), "accuracy": settings.get("holdout_accuracy"),
                        "library_version": settings.get("library_version")}}


# --- an entry's figures ------------------------------------------------------------------------------------------


def params_of(e: Entry) -> dict[str, Any]:
    return dict((e.tabular or {}).get("params") or {})


def rows_of(e: Entry) -> float:
    """Rows of the data: the ``rows`` parameter, else the step's batch."""
    rows = params_of(e).get("rows")
    return float(rows) if isinstance(rows, int | float) and rows > 0 else float(e.batch)


def shape_text(params: Mapping[str, Any], without: Iterable[str] = ("rows",)) -> str:
    """'features=8, trees=100, depth=10' (rows, features, trees, depth first, then the rest by name)."""
    skip = set(without)
    keys = [k for k in SHAPE_ORDER if k in params] + sorted(k for k in params if k not in SHAPE_ORDER)
    return ", ".join(f"{k}={params[k]}" for k in keys if k not in skip)


def compact_rows(n: float) -> str:
    """1000000 -> '1M', 100000 -> '100K', 2500 -> '2,500'."""
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= size and (n / size) * 10 == round((n / size) * 10):
            return f"{n / size:g}{suffix}"
    return f"{n:,.0f}"


def tabular_entries(entries: Sequence[Entry]) -> list[Entry]:
    out = [e for e in entries if e.tabular is not None and e.task in TABULAR_TASKS]
    return sorted(out, key=lambda e: (e.workload, TABULAR_TASKS.index(e.task), shape_text(params_of(e)), e.runtime,
                                      e.kind, e.label, rows_of(e), e.source))


def _t(text: str | None) -> Cell:
    return Cell(text, "text")


def _flags(e: Entry) -> str | None:
    out = [f for f, on in (("contended", e.contended), ("slowed", e.slowed), ("noisy", e.noisy),
                           ("throttled", e.throttled)) if on]
    if e.runs > 1 and e.runs_low is not None and e.runs_high is not None:
        out.append(f"median of {e.runs} runs, {e.runs_low:.3g}-{e.runs_high:.3g} rows/s")
    if e.contended_left_out:
        out.append(f"{e.contended_left_out} contended run{'s' if e.contended_left_out > 1 else ''} left out")
    return ", ".join(out) or None


CAPTION = ("A sample is a row. train: one fit(X, y) of a new estimator on float32 rows in host memory (the library's "
           "data preparation and, on a GPU, the copy to it included); infer: one predict of the fitted model. Time = "
           "the median of the timed steps (± IQR); rows/s = rows per step / time. Threads: the library's n_jobs and "
           "the BLAS/OpenMP pools on the CPU. Held-out accuracy: the fitted model on 10,000 rows it never saw.")


def tabular_table(entries: Sequence[Entry]) -> Table:
    rows = []
    for e in tabular_entries(entries):
        tab = e.tabular or {}
        acc = tab.get("accuracy")
        rows.append((
            _t(e.workload), _t(STEP_WORDS[e.task]), _t(e.runtime + (f" {tab['library_version']}"
                                                                     if tab.get("library_version") else "")),
            _t(e.label), _t(e.source), Cell(rows_of(e), ""), Cell(e.batch, ""), _t(shape_text(params_of(e)) or None),
            Cell(e.step_s, "s", e.source, spread=e.spread_s),
            Cell(e.sps, "rows/s", e.source, low=e.low, high=e.high),
            Cell(tab.get("threads"), ""),
            Cell(e.peak_mem_bytes, "bytes", e.source if e.peak_mem_bytes is not None else None),
            Cell(None if acc is None else 100 * float(acc), "%", "measured" if acc is not None else None),
            _t(_flags(e))))
    return Table(
        id="tabular", title="Trees and classical ML: fit and predict time", caption=CAPTION,
        columns=(Column("workload", "workload"), Column("step", "step"), Column("library", "library"),
                 Column("device", "device"), Column("source", "source"), Column("rows", "rows", ""),
                 Column("step_rows", "rows per step", ""), Column("shape", "shape"),
                 Column("time", "time per step", "s"), Column("rows_s", "rows/s", "rows/s"),
                 Column("threads", "threads", ""), Column("peak_mem", "peak memory", "bytes"),
                 Column("accuracy", "held-out accuracy", "%"), Column("flags", "flags")),
        rows=tuple(rows),
        notes=("peak memory: on a CPU the process's peak resident set during the timed steps (the data, the model, the "
               "interpreter and the libraries); on a GPU NVML's used memory of the whole device.",),
        section=TABULAR_SECTION)


# --- the charts: time against rows --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TabularCurve:
    """A line from elsewhere on a time-against-rows chart: the prediction half's predicted times (``points``: (rows,
    seconds)) for one workload, task and device, and, where it found one, the rows at which it predicts the GPU and
    the CPU take the same time (``crossover_rows``)."""

    workload: str
    task: str
    device: str  # how the line is labelled: a catalog GPU's name, 'this CPU'
    points: tuple[tuple[float, float], ...]
    runtime: str = ""
    crossover_rows: float | None = None
    crossover_label: str = ""
    source: str = "predicted"

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TabularCurve:
        """From plain data: workload, task, device, points [[rows, seconds], ...], and optionally runtime,
        crossover_rows, crossover_label, source."""
        return cls(str(d["workload"]), str(d.get("task", "train")), str(d["device"]),
                   tuple((float(x), float(y)) for x, y in d.get("points") or ()), str(d.get("runtime") or ""),
                   None if d.get("crossover_rows") is None else float(d["crossover_rows"]),
                   str(d.get("crossover_label") or ""), str(d.get("source") or "predicted"))


def crossing(a: Mapping[float, float], b: Mapping[float, float]) -> tuple[float, bool] | None:
    """Where line ``b`` crosses line ``a`` (time against rows, both measured at the same row counts): (rows, whether
    ``b`` is faster above them), interpolated on log-log; None where one stays faster over the common rows."""
    common = sorted(r for r in a if r in b and a[r] > 0 and b[r] > 0)
    diffs = [(math.log(a[r]) - math.log(b[r]), r) for r in common]  # > 0: b faster
    for (d0, r0), (d1, r1) in itertools.pairwise(diffs):
        if d0 != 0 and d1 != 0 and (d0 > 0) != (d1 > 0):
            t = d0 / (d0 - d1)
            return math.exp(math.log(r0) + t * (math.log(r1) - math.log(r0))), d1 > 0
    return None


def _series_key(e: Entry) -> tuple[str, str, str, str, str]:
    return (e.workload, shape_text(params_of(e)), e.runtime, e.key, e.source)


def time_chart(entries: Sequence[Entry], task: str, curves: Sequence[TabularCurve] = ()) -> LineChart:
    """Time per fit (train) or predict (infer) against rows: one line per workload, shape, library and device (log-log),
    the measured crossings and the curves handed in (dashed, with their crossover)."""
    points: dict[tuple[str, str, str, str, str], dict[float, float]] = {}
    meta: dict[tuple[str, str, str, str, str], Entry] = {}
    for e in tabular_entries(entries):
        if e.task == task and e.step_s > 0:
            k = _series_key(e)
            points.setdefault(k, {})[rows_of(e)] = e.step_s
            meta.setdefault(k, e)
    shapes: dict[str, set[str]] = {}
    for w, shape, *_ in points:
        shapes.setdefault(w, set()).add(shape)
    series = []
    for k, pts in sorted(points.items()):
        e = meta[k]
        lib = "" if e.runtime == e.workload else f" ({e.runtime})"
        shape = f" [{k[1]}]" if len(shapes[e.workload]) > 1 and k[1] else ""
        series.append(Series(f"{e.workload}{lib}{shape} on {e.label}", e.source, tuple(sorted(pts.items()))))
    crossovers = []
    measured = [k for k in points if k[4] == "measured"]
    for k_cpu in (k for k in measured if meta[k].kind == "cpu"):
        for k_gpu in (k for k in measured if meta[k].kind != "cpu" and k[:2] == k_cpu[:2]):
            hit = crossing(points[k_cpu], points[k_gpu])
            if hit is not None:
                rows, gpu_faster = hit
                who = meta[k_gpu].label if gpu_faster else meta[k_cpu].label
                crossovers.append(Crossover(rows, f"{k_cpu[0]}: {who} faster above ~{compact_rows(rows)} rows",
                                            "computed"))
    for c in curves:
        if c.task != task:
            continue
        if c.points:
            lib = f" ({c.runtime})" if c.runtime and c.runtime != c.workload else ""
            series.append(Series(f"{c.workload}{lib} on {c.device}", c.source, tuple(sorted(c.points))))
        if c.crossover_rows:
            crossovers.append(Crossover(c.crossover_rows, c.crossover_label or f"{c.workload}: crossover at "
                                        f"~{compact_rows(c.crossover_rows)} rows", c.source))
    step = STEP_WORDS[task]
    return LineChart(f"tabular_{task}_time", f"{step.capitalize()} time against rows, per device and library", "rows",
                     f"time per {step}", "rows", "s", True, True, tuple(series), tuple(crossovers),
                     section=TABULAR_SECTION)


def tabular_section(entries: Sequence[Entry], curves: Sequence[TabularCurve | Mapping[str, Any]] = ()
                    ) -> tuple[tuple[Table, ...], tuple[LineChart, ...]]:
    """The tabular table and the time-against-rows charts (train, then infer, each where it has a line); nothing
    where no entry is a tabular result and no curve is handed in."""
    given = [c if isinstance(c, TabularCurve) else TabularCurve.from_dict(c) for c in curves]
    tab = tabular_entries(entries)
    if not tab and not given:
        return (), ()
    charts = tuple(ch for ch in (time_chart(entries, t, given) for t in TABULAR_TASKS) if ch.series)
    return ((tabular_table(entries),) if tab else ()), charts


# --- a bench run on the console ------------------------------------------------------------------------------------


def headline(r: BenchResult) -> str | None:
    """'xgboost (xgboost 3.2.0, 2 threads) on cpu: fit 1M rows x 8 features (trees=100, depth=10) in 4.21 s (median
    of 3 fits, 238K rows/s); held-out accuracy 87%'. None for a result that is not a measured tabular one."""
    if r.runtime not in TABULAR_RUNTIMES or r.status != "ok" or r.step_time is None:
        return None
    s = r.settings
    params = s.get("params") or {}
    step = STEP_WORDS.get(r.task, r.task)
    n = int(r.batch_size or 0)
    what = f"{compact_rows(n)} rows"
    if r.task == "train":
        rest = shape_text(params, without=("rows", "features"))
        what += f" x {params.get('features', '?')} features" + (f" ({rest})" if rest else "")
    version = s.get("library_version")
    lib = f"{r.runtime}{f' {version}' if version else ''}, {s.get('threads', '?')} threads"
    sps = r.samples_per_s
    line = (f"{r.workload} ({lib}) on {r.device}: {step} {what} in {_secs(r.step_time.median)} (median of "
            f"{r.step_time.n} {step}s" + ("" if sps is None else f", {compact_rows(round(sps))} rows/s") + ")")
    acc = s.get("holdout_accuracy")
    if acc is not None:
        line += f"; held-out accuracy {100 * float(acc):.1f}%"
    return line


def _secs(t: float) -> str:
    from dlgpu.units import format_duration

    return format_duration(t)


def bench_notes(results: Sequence[BenchResult]) -> list[str]:
    """How the tabular rows of a bench run were measured, in a line (none without tabular results)."""
    ok = [r for r in results if r.runtime in TABULAR_RUNTIMES and r.status == "ok"]
    if not ok:
        return []
    libs = sorted({f"{r.runtime} {r.settings.get('library_version', '?')}" for r in ok})
    return [f"tabular ({', '.join(libs)}): a sample is a row, samples/s are rows/s; a step is one fit (train: a new "
            "estimator on float32 rows in host memory, the library's data preparation included) or one predict "
            "(infer, the model fitted once before timing); warm-up: one untimed fit on the first 2,000 rows; "
            "precision fp32 (the data's dtype); CPU threads: the library's n_jobs and the BLAS/OpenMP pools set to the "
            "usable cores; peak mem: the process's peak RSS with the data on a CPU, NVML's device memory used on a "
            "GPU. Estimator settings, versions, the fitted model and its held-out accuracy: settings in --json."]
