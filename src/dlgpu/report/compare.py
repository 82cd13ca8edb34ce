"""``dlgpu compare``: the classic comparison tables and charts over stored runs from any number of machines.

Every run is flattened into entries (one per measured result or prediction: a workload, task, precision
and batch on a device, measured or predicted). Devices are identified across runs: a measured GPU by the
catalog row it matches (else its name), a measured CPU by the machine it ran on, a prediction by its
catalog id (``local`` predictions by the machine they were made on), so that a measurement and a
prediction of the same thing sit side by side with the prediction's error."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from dlgpu.catalog import Catalog, CpuSpec, GpuSpec, match_cpu, match_gpu
from dlgpu.home import utc_now
from dlgpu.results import ADVISE_SCHEMA, BENCH_SCHEMA, PREDICT_SCHEMA

from .compare_advice import advice_table, advise_panel, time_cost_chart
from .compare_finetune import config_key as finetune_config_key
from .compare_finetune import finetune_entries, finetune_fields, finetune_section
from .compare_llm import llm_fields, llm_section
from .compare_tabular import TabularCurve, tabular_fields, tabular_section
from .model import (
    Bar,
    BarChart,
    Cell,
    Chart,
    Column,
    Comparison,
    LineChart,
    Roof,
    RooflineChart,
    RoofPoint,
    RunRef,
    ScatterChart,
    ScatterPoint,
    Series,
    Table,
)

REDUCED = ("tf32", "bf16", "fp16")
ROOF_OPS_PER_RUN = 60


@dataclass(frozen=True)
class Entry:
    workload: str
    task: str
    precision: str
    batch: int
    key: str  # the device's identity across runs
    label: str
    kind: str  # cpu | gpu
    source: str  # measured | predicted
    sps: float
    step_s: float
    run_id: str
    spread_s: float | None = None  # IQR of a measured step time
    noisy: bool = False
    low: float | None = None  # a prediction's samples/s interval
    high: float | None = None
    task_time_s: float | None = None
    task_desc: str | None = None
    peak_mem_bytes: float | None = None
    fits: bool | None = None
    memory_bytes: float | None = None
    power_w: float | None = None
    power_source: str | None = None  # measured | estimated
    utilization_pct: float | None = None
    j_per_sample: float | None = None
    sps_per_w: float | None = None
    mfu: float | None = None
    flops: float | None = None  # per step
    bytes: float | None = None
    throttled: bool = False
    price_usd: float | None = None
    tdp_w: float | None = None
    rent_usd_per_hour: float | None = None  # the catalog's cheapest on-demand price per GPU-hour
    rent_basis: str | None = None
    overrides: str = ""
    memory_source: str = "measured"
    contended: bool = False  # measured while other processes took more than their share of the CPUs
    slowed: bool = False  # measured while this machine ran slower than its probe (settings.machine_speed)
    runs: int = 1  # measured runs this figure reconciles (``reconcile``)
    runs_low: float | None = None  # their samples/s, lowest and highest
    runs_high: float | None = None
    contended_left_out: int = 0  # contended runs of the same configuration not counted in the median
    runtime: str = "pytorch"  # what ran it: pytorch, or an LLM runtime such as llama.cpp
    # LLM results (``report.compare_llm``): the weight format, the lengths that shape the step, the telemetry label
    llm: bool = False
    weight_format: str | None = None
    context_len: int | None = None
    prompt_len: int | None = None
    energy_source: str | None = None  # the result's label: measured-nvml | measured-rapl | estimated | ...
    peak_mem_kind: str | None = None
    # tabular results (``report.compare_tabular``): params (rows, features, trees, depth), threads, accuracy
    tabular: dict[str, Any] | None = field(default=None, compare=False)
    # fine-tuning results (``report.compare_finetune``): the job as measured, parameters, bytes by kind
    finetune: dict[str, Any] | None = field(default=None, compare=False)


def _over(d: Mapping[str, Any] | None) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted((d or {}).items()))


def _measured_device(dev: Mapping[str, Any], run: Mapping[str, Any], doc: Mapping[str, Any],
                     catalog: Catalog) -> tuple[str, str, str, GpuSpec | CpuSpec | None]:
    """(key, label, kind, catalog row) of a measured device."""
    name = str(dev.get("name") or dev.get("id"))
    host = (doc.get("machine") or {}).get("hostname")
    at = f" @ {host}" if host else ""
    if dev.get("kind") == "cpu":
        cores = dev.get("threads_used") or dev.get("physical_cores")
        row = match_cpu(name, catalog)
        label = f"{name}, {cores} core{'s' if cores != 1 else ''}{at}" if cores else f"{name}{at}"
        return f"cpu@{run.get('machine')}", label, "cpu", row
    row_gpu, _why = match_gpu(name, dev.get("memory_bytes"), catalog)
    key = row_gpu.id if row_gpu is not None else f"gpu:{name}"
    return key, f"{name}{at}", "gpu", row_gpu


def _power(r: Mapping[str, Any]) -> str | None:
    src = r.get("energy_source") or ""
    if r.get("power_w") is None:
        return None
    return "measured" if src.startswith("measured") else "estimated"


def bench_entries(run: Mapping[str, Any], doc: Mapping[str, Any], catalog: Catalog) -> list[Entry]:
    devices = {d["id"]: d for d in (doc.get("machine") or {}).get("devices") or []}
    out = []
    for r in doc.get("results") or []:
        if r.get("status") != "ok" or not r.get("samples_per_s"):
            continue
        dev = devices.get(r["device"], {"id": r["device"], "name": r["device"], "kind": "cpu"})
        key, label, kind, row = _measured_device(dev, run, doc, catalog)
        st = r.get("step_time_s") or {}
        proj = r.get("task_projection") or {}
        out.append(Entry(
            workload=r["workload"], task=r["task"], precision=r["precision"], batch=int(r["batch_size"]), key=key,
            label=label, kind=kind, source="measured", sps=float(r["samples_per_s"]), step_s=float(st["median"]),
            run_id=run["id"], spread_s=st.get("iqr"), noisy=bool(r.get("noisy")), task_time_s=r.get("task_time_s"),
            task_desc=proj.get("description"), peak_mem_bytes=r.get("peak_mem_bytes"),
            memory_bytes=dev.get("memory_bytes"), power_w=r.get("power_w"), power_source=_power(r),
            utilization_pct=r.get("utilization_pct"), j_per_sample=r.get("energy_j_per_sample"),
            sps_per_w=r.get("samples_per_s_per_w"), mfu=r.get("mfu"), flops=r.get("flops_per_step"),
            bytes=r.get("bytes_per_step"), throttled=bool(r.get("throttled")), contended=bool(r.get("contended")),
            slowed=bool(((r.get("settings") or {}).get("machine_speed") or {}).get("slowed")),
            price_usd=getattr(row, "launch_price_usd", None), tdp_w=getattr(row, "tdp_w", None),
            overrides=_over(r.get("overrides")), **_rent(catalog, row), **llm_fields(r, r["workload"]),
            **tabular_fields(r, r["workload"]), **finetune_fields(r)))
    return out


def predict_entry(run: Mapping[str, Any], doc: Mapping[str, Any], catalog: Catalog) -> Entry:
    hw = str(doc["hardware"])
    if hw == "local":
        key, label = f"cpu@{run.get('machine')}", str(doc.get("hardware_name") or "this CPU")
    else:
        key, label = hw, str(doc.get("hardware_name") or hw)
    kind = doc.get("hardware_kind") or ("cpu" if hw == "local" or isinstance(_row(catalog, hw), CpuSpec) else "gpu")
    iv = doc.get("interval") or {}
    proj = doc.get("task_projection") or {}
    row = _row(catalog, hw)
    return Entry(
        workload=doc["workload"], task=doc["task"], precision=doc["precision"], batch=int(doc["batch_size"]),
        key=key, label=label, kind=kind, source="predicted", sps=float(doc["samples_per_s"]),
        step_s=float(doc["step_time_s"]), run_id=run["id"], low=iv.get("low"), high=iv.get("high"),
        task_time_s=doc.get("task_time_s"), task_desc=proj.get("description"), peak_mem_bytes=doc.get("peak_mem_bytes"),
        fits=doc.get("fits"), memory_bytes=doc.get("memory_bytes"), flops=doc.get("flops"), bytes=doc.get("bytes"),
        price_usd=doc.get("price_usd") or getattr(row, "launch_price_usd", None),
        tdp_w=doc.get("tdp_w") or getattr(row, "tdp_w", None), overrides=_over(doc.get("overrides")),
        memory_source="measured" if hw == "local" else "catalog", **_rent(catalog, row),
        **llm_fields(doc, doc["workload"]), **tabular_fields(doc, doc["workload"]))


def _row(catalog: Catalog, hw: str) -> GpuSpec | CpuSpec | None:
    return catalog.get(hw) if hw in catalog else None


def _rent(catalog: Catalog, row: GpuSpec | CpuSpec | None) -> dict[str, Any]:
    """The cheapest catalog cloud price per GPU-hour for a GPU, with its provider and date."""
    if not isinstance(row, GpuSpec):
        return {}
    offers = catalog.instances_for(row.id)
    if not offers:
        return {}
    best = min(offers, key=lambda i: i.price_usd_per_gpu_hour)
    return {"rent_usd_per_hour": best.price_usd_per_gpu_hour,
            "rent_basis": f"{best.provider} {best.instance}, {best.price_date} ({len(offers)} offers in the catalog)"}


# --- cells ---------------------------------------------------------------------------------------------------


def _t(text: str | None) -> Cell:
    return Cell(text, "text")


RECONCILE_RULE = ("several measurements of one configuration on one machine are shown as one figure: the median "
                  "samples/s of the runs measured without contention (of all of them, marked contended, where every "
                  "run was), with the lowest and highest beside it")


def reconcile(entries: Sequence[Entry]) -> list[Entry]:
    """Measured entries of the same configuration (workload and parameters, task, precision, batch, device key,
    runtime; a fine-tuning job as measured, ``compare_finetune.config_key``) from several runs become one:
    ``RECONCILE_RULE``. The entry nearest the median lends its other figures."""
    groups: dict[tuple[Any, ...], list[Entry]] = {}
    out: list[Entry] = []
    for e in entries:
        if e.source != "measured":
            out.append(e)
            continue
        what = finetune_config_key(e) if e.finetune is not None else _what(e)
        groups.setdefault((what, e.task, e.precision, e.batch, e.key, e.runtime), []).append(e)
    for group in groups.values():
        if len(group) == 1:
            out.append(group[0])
            continue
        calm = [e for e in group if not e.contended] or group
        med = statistics.median(e.sps for e in calm)
        near = min(calm, key=lambda e: abs(e.sps - med))
        out.append(replace(near, sps=med, step_s=near.batch / med, runs=len(calm),
                           runs_low=min(e.sps for e in calm), runs_high=max(e.sps for e in calm),
                           task_time_s=None if not near.task_time_s else near.task_time_s * near.sps / med,
                           noisy=any(e.noisy for e in calm), contended=all(e.contended for e in calm),
                           slowed=any(e.slowed for e in calm),
                           contended_left_out=len(group) - len(calm)))
    return out


def _flag(e: Entry) -> str | None:
    flags = [f for f, on in (("contended", e.contended), ("slowed", e.slowed), ("noisy", e.noisy)) if on]
    if e.runs > 1:
        flags.append(f"median of {e.runs} runs, {e.runs_low:.3g}-{e.runs_high:.3g}")
    if e.contended_left_out:
        flags.append(f"{e.contended_left_out} contended run{'s' if e.contended_left_out > 1 else ''} left out")
    return ", ".join(flags) or None


def _sps(e: Entry) -> Cell:
    return Cell(e.sps, "samples/s", e.source, low=e.low, high=e.high, flag=_flag(e))


def _step(e: Entry) -> Cell:
    return Cell(e.step_s, "s", e.source, spread=e.spread_s)


def _what(e: Entry) -> str:
    return e.workload + (f" ({e.overrides})" if e.overrides else "")


def _best(entries: Iterable[Entry]) -> dict[tuple[str, str, str, str, str], Entry]:
    """The fastest entry per (workload+overrides, task, device, source, batch-agnostic); a contended measurement
    only where no uncontended one exists."""
    best: dict[tuple[str, str, str, str, str], Entry] = {}
    for e in entries:
        k = (_what(e), e.task, e.key, e.source, "")
        if k not in best or (best[k].contended, -best[k].sps) > (e.contended, -e.sps):
            best[k] = e
    return best


def _cpu_baseline(entries: Sequence[Entry], what: str, task: str) -> Entry | None:
    """Measured CPU fp32 (the fastest such measured without contention, else the fastest), else predicted."""
    for source, calm in (("measured", True), ("measured", False), ("predicted", False)):
        cands = [e for e in entries if _what(e) == what and e.task == task and e.kind == "cpu"
                 and e.precision == "fp32" and e.source == source and not (calm and e.contended)]
        if cands:
            return max(cands, key=lambda e: e.sps)
    return None


def _order(entries: Iterable[Entry]) -> list[Entry]:
    return sorted(entries, key=lambda e: (_what(e), e.task, -e.sps))


# --- tables ---------------------------------------------------------------------------------------------------


def time_table(entries: Sequence[Entry], task: str) -> tuple[Table, list[Bar], list[Bar]]:
    rows, speed_bars, time_bars = [], [], []
    for e in _order(_best(x for x in entries if x.task == task).values()):
        base = _cpu_baseline(entries, _what(e), task)
        speed = None if base is None else e.sps / base.sps
        flag = "does not fit" if e.fits is False else None
        rows.append((_t(_what(e)), _t(e.label), _t(e.source), _t(e.precision), Cell(e.batch, ""),
                     _sps(e), Cell(e.task_time_s, "s", e.source if e.task_time_s else None, flag=flag),
                     Cell(speed, "x", "computed" if speed else None), _t(e.task_desc)))
        if speed is not None:
            speed_bars.append(Bar(_what(e), f"{e.label} ({e.precision})", speed, e.source))
        if e.task_time_s:
            time_bars.append(Bar(_what(e), f"{e.label} ({e.precision})", e.task_time_s, e.source))
    title = {"train": "Training time, CPU vs GPU", "infer": "Inference time for the real task",
             "decode": "Decoding"}[task]
    table = Table(
        id=f"{task}_time", title=title,
        caption=("Per workload and device, its fastest precision: throughput and the time of the workload's real "
                 "task (dataset size x epochs / throughput), with the speedup over the fastest CPU at fp32 (measured "
                 "where a CPU was measured, else predicted)."),
        columns=(Column("workload", "workload"), Column("device", "device"), Column("source", "source"),
                 Column("precision", "precision"), Column("batch", "batch", ""),
                 Column("sps", "samples/s", "samples/s"), Column("time", "real task", "s"),
                 Column("speedup", "vs CPU fp32", "x"), Column("task", "real task is")),
        rows=tuple(rows))
    return table, speed_bars, time_bars


def inference_table(entries: Sequence[Entry]) -> Table:
    rows = []
    for e in _order(x for x in entries if x.task in ("infer", "decode")):
        unit = "tokens/s" if e.task == "decode" or e.llm else "samples/s"
        sps = replace(_sps(e), unit="tokens/s") if unit == "tokens/s" else _sps(e)  # an LLM's samples are tokens
        rows.append((_t(_what(e)), _t(e.task), _t(e.label), _t(e.source), _t(e.precision), Cell(e.batch, ""),
                     _step(e), sps, _t(unit)))
    return Table(
        id="inference", title="Inference latency and throughput",
        caption=("Latency is the time of one batch (median ± IQR of the measured steps; a prediction shows its "
                 "10th-90th percentile interval on throughput). Throughput = batch / latency."),
        columns=(Column("workload", "workload"), Column("task", "task"), Column("device", "device"),
                 Column("source", "source"), Column("precision", "precision"), Column("batch", "batch", ""),
                 Column("latency", "latency per batch", "s"), Column("sps", "throughput", "samples/s"),
                 Column("unit", "unit")),
        rows=tuple(rows))


def precision_table(entries: Sequence[Entry]) -> Table:
    groups: dict[tuple[str, str, str, str, int], dict[str, Entry]] = {}
    labels: dict[str, str] = {}
    for e in entries:
        if e.finetune is not None:  # a fine-tuning precision is the weights' dtype: the fine-tuning section has it
            continue
        groups.setdefault((_what(e), e.task, e.key, e.source, e.batch), {})[e.precision] = e
        labels[e.key] = e.label
    rows = []
    for (what, task, key, source, batch), by in sorted(groups.items()):
        base = by.get("fp32")
        if base is None or len(by) < 2:
            continue
        cells = [_t(what), _t(task), _t(labels[key]), _t(source), Cell(batch, ""), _sps(base)]
        for p in REDUCED:
            other = by.get(p)
            cells.append(Cell(None if other is None else other.sps / base.sps, "x",
                              None if other is None else "computed"))
        rows.append(tuple(cells))
    return Table(
        id="mixed_precision", title="Mixed precision: speedup over fp32",
        caption=("Throughput at each precision over fp32 on the same device, workload and batch: TF32 and "
                 "fp16/bf16 autocast run dense operators on tensor cores (GPUs) or AMX / AVX512-BF16 (CPUs)."),
        columns=(Column("workload", "workload"), Column("task", "task"), Column("device", "device"),
                 Column("source", "source"), Column("batch", "batch", ""), Column("fp32", "fp32 samples/s",
                                                                                  "samples/s"),
                 *(Column(p, f"{p} vs fp32", "x") for p in REDUCED)),
        rows=tuple(rows))


def power_table(entries: Sequence[Entry]) -> Table:
    rows = []
    for e in _order(x for x in entries if x.source == "measured"):
        ps = e.power_source
        rows.append((_t(e.label), _t(_what(e)), _t(e.task), _t(e.precision),
                     Cell(e.utilization_pct, "%", "measured" if e.utilization_pct is not None else None),
                     Cell(e.power_w, "W", ps, flag="throttled" if e.throttled else None),
                     Cell(e.j_per_sample, "J", ps), Cell(e.sps_per_w, "samples/s/W", ps),
                     Cell(None if e.mfu is None else 100 * e.mfu, "%", "computed" if e.mfu is not None else None)))
    return Table(
        id="power", title="Utilization and power per task",
        caption=("Measured runs only. Power is measured (NVML, RAPL, amdsmi) or, where the device has no sensor, "
                 "estimated as TDP x measured utilization; energy per sample is gross (all the power drawn, idle "
                 "included; --json has the net figure). MFU = FLOPs per step (operator profile) / step time / the "
                 "device's peak at that precision."),
        columns=(Column("device", "device"), Column("workload", "workload"), Column("task", "task"),
                 Column("precision", "precision"), Column("util", "utilization", "%"), Column("power", "power", "W"),
                 Column("j", "energy / sample", "J"), Column("spw", "samples/s per W", "samples/s/W"),
                 Column("mfu", "MFU", "%")),
        rows=tuple(rows))


def _watts(e: Entry) -> tuple[float | None, str | None]:
    if e.power_w:
        return e.power_w, e.power_source
    return (e.tdp_w, "catalog") if e.tdp_w else (None, None)


def value_table(entries: Sequence[Entry]) -> tuple[Table, list[ScatterPoint], list[ScatterPoint]]:
    rows, buy, rent = [], [], []
    for e in _order(_best(entries).values()):
        watts, wsrc = _watts(e)
        per_usd = e.sps / e.price_usd if e.price_usd else None
        per_rented = 3600 * e.sps / e.rent_usd_per_hour if e.rent_usd_per_hour else None
        per_w = e.sps / watts if watts else None
        rows.append((_t(e.label), _t(_what(e)), _t(e.task), _t(e.source), _t(e.precision),
                     Cell(e.memory_bytes, "bytes", e.memory_source), Cell(e.price_usd, "usd", "catalog" if e.price_usd
                                                                         else None),
                     Cell(e.rent_usd_per_hour, "usd", "catalog" if e.rent_usd_per_hour else None), _sps(e),
                     Cell(per_usd, "samples/s/usd", "computed" if per_usd else None),
                     Cell(per_rented, "samples/usd", "computed" if per_rented else None),
                     Cell(watts, "W", wsrc), Cell(per_w, "samples/s/W", "computed" if per_w else None)))
        label, group = f"{e.label} ({e.precision})", f"{_what(e)} {e.task}"
        if per_usd and per_w:
            buy.append(ScatterPoint(label, group, per_usd, per_w, e.source))
        if per_rented and per_w:
            rent.append(ScatterPoint(label, group, per_rented, per_w, e.source))
    table = Table(
        id="value", title="Price, memory and performance per dollar and per watt",
        caption=("Per device and workload at its fastest precision. Price: the catalog's launch price; rent: the "
                 "catalog's cheapest on-demand price per GPU-hour (each row cited in `dlgpu hardware show`). "
                 "Samples per rented dollar = samples/s x 3600 / rent. Watts are the power measured or estimated "
                 "where the device was measured, else its catalog TDP."),
        columns=(Column("device", "device"), Column("workload", "workload"), Column("task", "task"),
                 Column("source", "source"), Column("precision", "precision"), Column("memory", "memory", "bytes"),
                 Column("price", "price", "usd"), Column("rent", "rent per GPU-hour", "usd"),
                 Column("sps", "samples/s", "samples/s"),
                 Column("per_usd", "samples/s per $ of price", "samples/s/usd"),
                 Column("per_rented", "samples per rented $", "samples/usd"), Column("watts", "power", "W"),
                 Column("per_w", "samples/s per W", "samples/s/W")),
        rows=tuple(rows),
        notes=tuple(f"rent of {label}: {basis}" for label, basis in
                    sorted({e.label: e.rent_basis for e in entries if e.rent_basis}.items())))
    return table, buy, rent


def accuracy_table(entries: Sequence[Entry]) -> tuple[Table, list[float]]:
    measured: dict[tuple[str, str, str, int, str], list[Entry]] = {}
    for e in entries:
        if e.source == "measured":
            measured.setdefault((_what(e), e.task, e.precision, e.batch, e.key), []).append(e)
    rows, errors = [], []
    for p in _order(x for x in entries if x.source == "predicted"):
        for m in measured.get((_what(p), p.task, p.precision, p.batch, p.key), []):
            err = (p.sps - m.sps) / m.sps
            errors.append(err)
            inside = p.low is not None and p.high is not None and p.low <= m.sps <= p.high
            rows.append((_t(_what(p)), _t(p.task), _t(m.label), _t(p.precision), Cell(p.batch, ""), _sps(m), _sps(p),
                         Cell(100 * err, "%", "computed"),
                         _t(None if p.low is None else ("yes" if inside else "no"))))
    notes: tuple[str, ...] = ()
    if errors:
        notes = (f"median |error| {100 * statistics.median(abs(x) for x in errors):.1f}% over {len(errors)} "
                 "measured/predicted pairs",)
    table = Table(
        id="measured_vs_predicted", title="Measured and predicted, side by side",
        caption=("Where a measurement and a prediction exist for the same workload, task, precision, batch and "
                 "device. Error = (predicted - measured) / measured."),
        columns=(Column("workload", "workload"), Column("task", "task"), Column("device", "device"),
                 Column("precision", "precision"), Column("batch", "batch", ""),
                 Column("measured", "measured samples/s", "samples/s"),
                 Column("predicted", "predicted samples/s", "samples/s"), Column("error", "error", "%"),
                 Column("inside", "inside the interval")),
        rows=tuple(rows), notes=notes)
    return table, errors


# --- charts ---------------------------------------------------------------------------------------------------


def _roofs(entries: Sequence[Entry], docs: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]],
           catalog: Catalog) -> tuple[list[Roof], dict[str, str]]:
    """One roof per device with a known bandwidth and peaks: predicted devices from their documents, measured
    ones from the catalog row they match. Returns the roofs and entry key -> roof label."""
    roofs: dict[str, Roof] = {}
    for run, doc in docs:
        if doc.get("schema") == PREDICT_SCHEMA and doc.get("bandwidth_bytes_per_s") and doc.get("peaks_flops_per_s"):
            e = predict_entry(run, doc, catalog)
            roofs.setdefault(e.key, Roof(e.label, float(doc["bandwidth_bytes_per_s"]),
                                         dict(doc["peaks_flops_per_s"]), "catalog"))
    for e in entries:
        if e.key in roofs or e.source != "measured":
            continue
        row = _row(catalog, e.key)
        if row is None and e.kind == "cpu":
            row = match_cpu(e.label.split(",")[0], catalog)
        if row is not None and row.memory_bandwidth_bytes_per_s and row.fp32_flops_per_s:
            peaks = {"fp32": float(row.fp32_flops_per_s)}
            for name, attr in (("bf16", "bf16_flops_per_s"), ("fp16 tensor (fp32 acc.)", "fp16_fp32acc_flops_per_s")):
                v = getattr(row, attr, None)
                if v:
                    peaks[name] = float(v)
            roofs[e.key] = Roof(e.label, float(row.memory_bandwidth_bytes_per_s), peaks, "catalog")
    return list(roofs.values()), {k: r.label for k, r in roofs.items()}


def roofline(entries: Sequence[Entry], docs: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]],
             catalog: Catalog) -> RooflineChart:
    roofs, label_of = _roofs(entries, docs, catalog)
    points: list[RoofPoint] = []
    for run, doc in docs:
        if doc.get("schema") != PREDICT_SCHEMA or not doc.get("ops"):
            continue
        e = predict_entry(run, doc, catalog)
        if e.key not in label_of:
            continue
        name = f"{e.workload} {e.task} {e.precision} b{e.batch}"
        ops = sorted(doc["ops"], key=lambda o: -o["time_s"] * o["count"])[:ROOF_OPS_PER_RUN]
        for o in ops:
            if o["flops"] > 0 and o["bytes"] > 0 and o["time_s"] > 0:
                points.append(RoofPoint(label_of[e.key], name, o["kind"], o["flops"] / o["bytes"],
                                        o["flops"] / o["time_s"], "predicted"))
        if e.flops and e.bytes:
            points.append(RoofPoint(label_of[e.key], name, "step", e.flops / e.bytes, e.flops / e.step_s, "predicted"))
    for e in entries:
        if e.source == "measured" and e.flops and e.bytes and e.key in label_of:
            points.append(RoofPoint(label_of[e.key], f"{e.workload} {e.task} {e.precision} b{e.batch}", "step",
                                    e.flops / e.bytes, e.flops / e.step_s, "measured"))
    return RooflineChart("roofline", "Roofline: each workload's operators (predicted) and whole steps", tuple(roofs),
                         tuple(points))


def batch_chart(entries: Sequence[Entry]) -> LineChart:
    series: dict[tuple[str, str, str, str, str], dict[int, float]] = {}
    labels: dict[str, str] = {}
    for e in entries:
        if e.tabular is not None:  # a tabular batch is its rows: drawn against rows in the tabular section
            continue
        series.setdefault((_what(e), e.task, e.precision, e.key, e.source), {})[e.batch] = e.sps
        labels[e.key] = e.label
    built = [Series(f"{w} {t} {p} on {labels[k]} ({s})", s, tuple(sorted((float(b), v) for b, v in pts.items())))
             for (w, t, p, k, s), pts in sorted(series.items()) if len(pts) >= 2]
    return LineChart("batch_throughput", "Throughput vs batch size", "batch size", "samples/s", "", "samples/s",
                     True, True, tuple(built))


# --- the whole comparison ---------------------------------------------------------------------------------------


def build_comparison(runs: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]], catalog: Catalog,
                     workloads: Sequence[str] = (),
                     tabular_curves: Sequence[TabularCurve | Mapping[str, Any]] = ()) -> Comparison:
    """``runs``: (run row as ``RunRow.to_dict()``, its document) each. ``tabular_curves``: predicted time-against-rows
    lines and crossovers of tabular workloads (``compare_tabular.TabularCurve``, or its plain-data form)."""
    entries: list[Entry] = []
    refs = []
    advised: list[tuple[Mapping[str, Any], Mapping[str, Any]]] = []
    for run, doc in runs:
        if doc.get("schema") == BENCH_SCHEMA:
            entries += bench_entries(run, doc, catalog)
        elif doc.get("schema") == PREDICT_SCHEMA:
            entries.append(predict_entry(run, doc, catalog))
        elif doc.get("schema") == ADVISE_SCHEMA and (not workloads or doc.get("workload") in workloads):
            advised.append((run, doc))
        refs.append(RunRef(run["id"], run["kind"], run["created_at"], run.get("machine") or "", run.get("summary", "")))
    if workloads:
        entries = [e for e in entries if e.workload in workloads]
    # One name per device: a measured device's (it says how many cores it ran on) wins over a prediction's.
    names: dict[str, str] = {}
    for e in sorted(entries, key=lambda e: e.source != "measured"):
        names.setdefault(e.key, e.label)
    per_run = [replace(e, label=names[e.key]) for e in entries]
    entries = reconcile(per_run)
    train, speed_bars, time_bars = time_table(entries, "train")
    infer_time, _, _ = time_table(entries, "infer")
    value, buy_points, rent_points = value_table(entries)
    accuracy, errors = accuracy_table(entries)
    llm_tables, llm_charts = llm_section(entries, per_run)  # none without LLM results
    tab_tables, tab_charts = tabular_section(entries, tabular_curves)  # none without tabular results
    ft_tables = finetune_section(entries)  # none without fine-tuning results
    tables: tuple[Table, ...] = (train, inference_table(entries), infer_time, precision_table(entries),
                                 power_table(entries), value, accuracy, *llm_tables, *tab_tables, *ft_tables)
    charts: tuple[Chart, ...] = (
        BarChart("speedup", "Training speedup over the CPU at fp32", "x", True, tuple(speed_bars)),
        BarChart("train_time", "Time to train (the workload's real task)", "s", True, tuple(time_bars)),
        roofline(entries, runs, catalog),
        batch_chart(entries),
        ScatterChart("value", "Performance per dollar of hardware vs performance per watt",
                     "samples/s per $ of launch price", "samples/s per W", "samples/s/usd", "samples/s/W", True, True,
                     tuple(buy_points)),
        ScatterChart("value_rent", "Samples per rented dollar vs performance per watt",
                     "samples per $ of cloud rent", "samples/s per W", "samples/usd", "samples/s/W", True, True,
                     tuple(rent_points)),
        *llm_charts,
        *tab_charts,
    )
    notes = [f"{len(entries)} figures from {len(refs)} runs: "
             f"{sum(e.source == 'measured' for e in entries)} measured, "
             f"{sum(e.source == 'predicted' for e in entries)} predicted."]
    if any(e.runs > 1 for e in entries):
        notes.append(f"Repeated runs: {RECONCILE_RULE}.")
    if any(e.contended or e.contended_left_out for e in entries):
        notes.append("Contended: measured while other processes took more than their share of the CPUs (each "
                     "result's contention in --json); such a figure is used only where no other exists.")
    if any(e.slowed for e in entries):
        notes.append("Slowed: measured while this machine ran slower than its stored `dlgpu probe` (a reference GEMM "
                     "timed before and after the run, each result's settings.machine_speed in --json): not "
                     "comparable with runs at full speed.")
    if ft_tables:
        n = len(finetune_entries(entries))
        notes.append(f"{n} fine-tuning figure{'s' if n != 1 else ''}: the 'Fine-tuning' tables (the training-time and "
                     "mixed-precision tables leave them out).")
    if not any(math.isfinite(x) for x in errors):
        notes.append("No measurement and prediction share a workload, task, precision, batch and device, so there "
                     "is no prediction error to show (predict with the same -b as the bench run).")
    panels: tuple[dict[str, Any], ...] = ()
    if advised:  # the advise sections appear only where there is advice
        docs = [doc for _, doc in advised]
        tables += (advice_table(docs),)
        charts += (time_cost_chart(docs),)
        panels = tuple(advise_panel(run, doc) for run, doc in advised)
        notes.append(f"{len(advised)} advise run{'s' if len(advised) != 1 else ''}: the verdicts, the 'Advice' table "
                     "and the time vs cost chart.")
    return Comparison(utc_now(), tuple(refs), tables, charts,
                      panels=panels, notes=tuple(notes))
