"""``dlgpu predict xgboost --set rows=N -H DEVICE``: the seconds to train a tabular job on a catalog GPU, a catalog CPU
or this machine's CPU (``local``), as a ``dlgpu.tabular-predict/1`` document: the figure, its basis, an interval from
the held-out errors, the memory it needs, and the command that would measure it. An estimator with no published
timings (random forest, k-means, ...) is answered "not predicted", not an error. No torch here."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dlgpu.catalog import Catalog, CpuSpec, GpuSpec
from dlgpu.errors import BadInput
from dlgpu.home import dlgpu_version, utc_now
from dlgpu.results import usable_memory_bytes

from .calibration import published_calibration
from .jobs import TabularJob, resolve_job
from .local import LocalCpu, LocalFit, fit_local
from .model import REF_THREADS, Device, Job, terms_s

TABULAR_PREDICT_SCHEMA = "dlgpu.tabular-predict/1"
GPU_VENDORS = ("nvidia",)
"""GPU training of XGBoost, LightGBM and CatBoost is CUDA (notes section 8: ``device="cuda"``, ``device_type`` cuda):
NVIDIA GPUs only."""


def catalog_cpu_device(cpu: CpuSpec) -> Device:
    """A catalog CPU with one thread per physical core (LightGBM's docs: set the threads to the real cores; the
    published rows ran one per core, but for the 8175M's vCPUs) and its bandwidth as a ceiling."""
    bw = "" if cpu.memory_bandwidth_bytes_per_s is None else (
        f", {cpu.memory_bandwidth_bytes_per_s / 1e9:.0f} GB/s memory bandwidth as a ceiling")
    return Device(key=cpu.id, name=cpu.name, kind="cpu", threads=cpu.cores,
                  bandwidth_bytes_per_s=cpu.memory_bandwidth_bytes_per_s,
                  basis=f"catalog CPU {cpu.id}: {cpu.cores} threads, one per physical core{bw}")


def gpu_device(gpu: GpuSpec) -> Device:
    bw = gpu.memory_bandwidth_bytes_per_s
    return Device(key=gpu.id, name=gpu.name, kind="gpu", threads=None, bandwidth_bytes_per_s=bw,
                  basis=f"catalog GPU {gpu.id}: " + ("no memory bandwidth in the catalog" if not bw else
                                                     f"{bw / 1e9:,.0f} GB/s memory bandwidth"))


def cpu_basis(family: str, device: Device) -> str:
    f = published_calibration().fit
    cpu = [s for s in f.samples if s.device.kind == "cpu"]
    threads = " and ".join(str(t) for t in sorted({s.device.threads or 0 for s in cpu}))
    return (f"the published CPU fit ({len(cpu)} CPU rows of GBM-perf at {threads} threads) at {device.threads} "
            f"threads: {f.describe(family, 'cpu').split(': ', 1)[1]}; "
            f"the published CPUs differ from this one in generation and clock, which threads alone do not capture")


def predicted_time(tj: TabularJob, device: Device, local: LocalFit | None = None) -> dict[str, Any]:
    """Seconds to train on ``device`` with their terms, interval, source and basis; ``local``: this CPU's fit (for
    ``device.key == "local"``). Raises ``BadInput`` where the family has no published row of the device's kind."""
    cal = published_calibration()
    job = tj.job
    assert job is not None and tj.family is not None
    family = tj.family
    if device.key == "local" and local is not None and local.has(family):
        seconds = local.predict(job)
        fixed, hist = local.terms(job)
        sizes = sorted(r.job.rows for r in local.cpu.runs if r.job.family == family)
        measured = any(r.job == job for r in local.cpu.runs)
        reach = "" if sizes[0] <= job.rows <= sizes[-1] else (
            f"; extrapolated: {job.rows:,} rows is outside the {sizes[0]:,} to {sizes[-1]:,} measured")
        return {"train_s": seconds, "fixed_s": fixed, "histogram_s": hist,
                "source": "fitted to this CPU's measurements" + (", this job among them" if measured else ""),
                "interval": local.interval(family, seconds),
                "basis": f"{local.how[family]}; the job's levels and bytes per row scale it{reach}"}
    if not cal.fit.has(family, device.kind):
        kinds = [k for k in ("cpu", "gpu") if cal.fit.has(family, k)]
        raise BadInput(f"{tj.estimator} on a {device.kind.upper()}: no published row times it (published for "
                       f"{tj.estimator}: {', '.join(k.upper() for k in kinds) or 'none'})", param="hardware")
    values = cal.fit.values
    fixed, hist = terms_s(values, job, device)
    seconds = fixed + hist
    if device.kind == "gpu":
        basis = (f"the published GPU fit (GBM-perf's V100 rows): {cal.fit.describe(family, 'gpu').split(': ', 1)[1]}"
                 f", here x {(device.bandwidth_bytes_per_s or 0) / 1e9:,.0f} GB/s")
    else:
        basis = cpu_basis(family, device)
    if device.key == "local" and family in ("xgboost", "lightgbm"):
        basis += f"; not measured here: `dlgpu bench -w {tj.workload} {tj.set_args()}` measures it"
    return {"train_s": seconds, "fixed_s": fixed, "histogram_s": hist, "source": "predicted",
            "interval": cal.interval(family, device.kind, seconds), "basis": basis}


def memory_fit(job: Job, device: Device, memory_bytes: int | None) -> dict[str, Any]:
    """The data held while training against what the device offers (a GPU less the runtime's reserve)."""
    need = job.memory_bytes
    usable = None if memory_bytes is None else (
        usable_memory_bytes(memory_bytes) if device.kind == "gpu" else memory_bytes)
    return {"need_bytes": need, "usable_bytes": usable, "fits": None if usable is None else need <= usable,
            "basis": "rows x (features x (4 bytes float32 + 1 byte bin) + 8 bytes gradient pair + 4 bytes row index); "
                     "GBM-perf's XGBoost on the V100 used 6 GB at 100M rows of 8 values (published_tabular.csv), "
                     "this gives 5.2 GB"}


def _not_predicted(tj: TabularJob, hardware: str, why: str) -> dict[str, Any]:
    return {"schema": TABULAR_PREDICT_SCHEMA, "created_at": utc_now(), "dlgpu": dlgpu_version(),
            "workload": tj.workload, "estimator": tj.estimator, "hardware": hardware, "predicted": False,
            "reason": why, "job": tj.params, "job_basis": tj.basis}


def resolve_device(catalog: Catalog, hardware: str, local_cpu: LocalCpu | None) -> tuple[Device, int | None]:
    """(the device, its memory in bytes or None) for ``-H``: ``local``, a catalog GPU or a catalog CPU."""
    h = hardware.strip().lower()
    if h in ("local", "cpu", "this"):
        if local_cpu is None:
            raise BadInput("local: this machine's CPU could not be described", param="hardware")
        return local_cpu.device(), local_cpu.ram_bytes
    spec = catalog.get(hardware)
    if isinstance(spec, GpuSpec):
        if spec.vendor.lower() not in GPU_VENDORS:
            raise BadInput(f"{spec.id}: tabular GPU training (XGBoost, LightGBM, CatBoost) runs on CUDA, NVIDIA GPUs "
                           "only", param="hardware")
        return gpu_device(spec), spec.memory_bytes
    return catalog_cpu_device(spec), None


def predict_tabular(catalog: Catalog, workload: str, hardware: str, overrides: Mapping[str, str] | None = None,
                    local_cpu: LocalCpu | None = None) -> dict[str, Any]:
    """A ``dlgpu.tabular-predict/1`` document (see the module docstring)."""
    tj = resolve_job(workload, overrides)
    if tj.job is None or tj.family is None:
        return _not_predicted(tj, hardware, tj.not_predicted or "not predicted")
    device, memory = resolve_device(catalog, hardware, local_cpu)
    local = fit_local(local_cpu, published_calibration().fit) if (device.key == "local" and local_cpu) else None
    t = predicted_time(tj, device, local)
    cal = published_calibration()
    verify = f"dlgpu bench -w {tj.workload} {tj.set_args()}" + (" -d cuda" if device.kind == "gpu" else "")
    if tj.estimator not in ("xgboost", "lightgbm") and tj.family in ("catboost", "h2o", "h2o_xgboost"):
        verify = f"no dlgpu workload measures {tj.estimator}: time its fit on {device.name} yourself"
    held = {"in_sample": cal.in_sample["summary"].get(f"{device.kind}:{tj.family}"),
            "leave_one_device_out": cal.leave_one_device_out["summary"].get(f"{device.kind}:{tj.family}"),
            "leave_one_size_out": cal.leave_one_size_out["summary"].get(f"{device.kind}:{tj.family}"),
            "devices_alone": sorted({r["fold"] for r in cal.leave_one_device_out["not_estimable"]
                                     if "only" in r["reason"]})}
    return {
        "schema": TABULAR_PREDICT_SCHEMA, "created_at": utc_now(), "dlgpu": dlgpu_version(), "predicted": True,
        "workload": tj.workload, "estimator": tj.estimator, "family": tj.family, "task": "train",
        "job": tj.params, "job_basis": tj.basis, "levels": tj.job.levels,
        "hardware": device.key, "hardware_name": device.name, "kind": device.kind, "threads": device.threads,
        "device_basis": device.basis, **t, "memory": memory_fit(tj.job, device, memory),
        "errors": held, "reference_threads": REF_THREADS, "verify": verify,
    }


CURVE_ROWS = (10_000, 30_000, 100_000, 300_000, 1_000_000, 3_000_000, 10_000_000, 30_000_000, 100_000_000)
CURVE_GPUS = ("t4", "l4", "a10", "a100-sxm4-80gb", "h100-sxm5-80gb")


def predicted_curves(catalog: Catalog, workload: str, overrides: Mapping[str, str] | None = None,
                     local_cpu: LocalCpu | None = None, gpus: tuple[str, ...] = CURVE_GPUS,
                     rows: tuple[int, ...] = CURVE_ROWS) -> list[dict[str, Any]]:
    """Predicted training time against rows for this CPU and a few GPUs, as plain data in the shape
    ``report.compare_tabular.TabularCurve.from_dict`` reads (workload, task, device, points [[rows, seconds]],
    crossover_rows, crossover_label, source): each GPU line with the rows above which it is predicted faster than this
    CPU. Empty for an estimator that is not predicted; a GPU line only where its family has published GPU rows."""
    from .model import crossover_rows

    ov = {k: v for k, v in (overrides or {}).items() if k != "rows"}
    tj = resolve_job(workload, ov)
    if tj.job is None or tj.family is None:
        return []
    cal = published_calibration()
    jobs = [resolve_job(workload, {**ov, "rows": str(n)}) for n in rows]
    out: list[dict[str, Any]] = []
    cpu_line = None
    if local_cpu is not None and cal.fit.has(tj.family, "cpu"):
        local = fit_local(local_cpu, cal.fit)
        dev = local_cpu.device()
        times = [predicted_time(j, dev, local) for j in jobs]
        # a line, not the measured points: predicted, fitted to this CPU's measurements where it has them
        src = "predicted"
        out.append({"workload": workload, "task": "train", "runtime": tj.family,
                    "device": "this CPU (fitted to its measurements)" if local.has(tj.family) else "this CPU",
                    "points": [[n, t["train_s"]] for n, t in zip(rows, times, strict=True)], "source": src})
        cpu_line = (times[0]["fixed_s"], times[0]["histogram_s"] / rows[0])
    if not cal.fit.has(tj.family, "gpu"):
        return out
    for gid in gpus:
        if gid not in catalog:
            continue
        dev = gpu_device(catalog.gpu(gid))
        times = [predicted_time(j, dev) for j in jobs]
        curve: dict[str, Any] = {"workload": workload, "task": "train", "device": dev.name, "runtime": tj.family,
                                 "points": [[n, t["train_s"]] for n, t in zip(rows, times, strict=True)],
                                 "source": "predicted"}
        if cpu_line is not None:
            x = crossover_rows(cpu_line, (times[0]["fixed_s"], times[0]["histogram_s"] / rows[0]), 0.0)
            if x != float("inf"):
                curve["crossover_rows"] = x
                curve["crossover_label"] = f"{workload}: {dev.name} predicted faster than this CPU above ~{x:,.0f} rows"
        out.append(curve)
    return out
