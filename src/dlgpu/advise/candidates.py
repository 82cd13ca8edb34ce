"""The ways to run a job, each a ``results.Candidate`` whose every figure carries its source: this machine's
devices (``own``: measured by ``dlgpu bench`` where it stored results, else predicted), catalog GPUs to buy and
cloud instances to rent (predicted). Per candidate: the fastest precision that fits, at the requested batch or
the largest power of two that fits (``predict.forecast.predict_device``); then time, energy, carbon and money
for the whole job (``cost``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from dlgpu.catalog import Catalog, GpuSpec, device_facts, is_consumer, match_gpu
from dlgpu.predict.forecast import DevicePrediction, predict_device
from dlgpu.predict.roofline import Calibration
from dlgpu.predict.targets import prediction_device
from dlgpu.results import RESERVE_BASIS, Candidate, Constraints, DeviceInfo, Figure, Job, ProfileSource
from dlgpu.workloads.registry import WorkloadSpec

from . import cost


@dataclass
class Context:
    """What every candidate of one advise run shares."""

    spec: WorkloadSpec
    task: str
    batch_size: int
    precisions: tuple[str, ...]
    overrides: dict[str, str]
    job: Job
    constraints: Constraints
    calibration: Calibration
    profiles: ProfileSource
    prices_usd: dict[str, float]  # the user's prices by catalog id
    cpu_batch_size: int  # this CPU's batch where it is predicted: the one asked for, else the workload's small one
    predictions: dict[str, DevicePrediction | str] = field(default_factory=dict)  # by catalog id, shared


def _energy_figures(ctx: Context, power: Figure, time_s: float, origin: str) -> dict[str, Figure]:
    k = ctx.constraints
    kwh = cost.energy_kwh(power.value, time_s, k.pue) if power.value else None
    elec = None if kwh is None or origin == "rent" else kwh * (k.electricity_usd_per_kwh.value or 0.0)
    return {
        "energy_kwh": Figure(kwh, "computed" if power.source in ("measured", "catalog") else "estimated",
                             f"power ({power.source}) x time x PUE {k.pue:g}"),
        "electricity_usd": Figure(elec, "computed", "energy x electricity price" if origin != "rent" else
                                  "included in the rent"),
        "carbon_kg": Figure(None if kwh is None else kwh * (k.carbon_g_per_kwh.value or 0.0) / 1000, "computed",
                            "energy x carbon intensity"),
    }


def _money_figures(ctx: Context, time_s: float, origin: str, elec: float | None, price: float | None,
                   rent_per_h: float | None, price_source: str) -> tuple[dict[str, Figure], float | None]:
    k = ctx.constraints
    figs: dict[str, Figure] = {}
    if origin == "rent":
        if rent_per_h is None:
            return figs, None
        job_cost = cost.rent_usd(rent_per_h, time_s)
        figs["rent_usd"] = Figure(job_cost, "computed", "hours x hourly price (billed per second)")
        return figs, job_cost
    if origin != "buy":
        return figs, elec
    figs["upfront_usd"] = Figure(None, "unavailable", "no launch price in the catalog: give a price for it")
    figs["amortized_usd"] = Figure(None, "unavailable", "no price")
    if price is None:
        return figs, None
    figs["upfront_usd"] = Figure(price, price_source, "given" if price_source == "given" else
                                 "the catalog's launch price")
    am = cost.amortized_usd(price, time_s, k.hours_per_day, k.lifetime_years)
    figs["amortized_usd"] = Figure(am, "computed", f"price x job hours / ({k.hours_per_day:g} h/day x "
                                   f"365 x {k.lifetime_years:g} years)")
    return figs, am + (elec or 0.0)


def job_figures(ctx: Context, sps: Figure, power: Figure, extra: Mapping[str, Figure], origin: str,
                price: float | None = None, rent_per_h: float | None = None,
                price_source: str = "catalog") -> dict[str, Figure]:
    """Time, energy, carbon and money for the whole job on a candidate of throughput ``sps``."""
    samples = ctx.job.samples
    t = cost.job_time_s(samples, sps.value or 0.0)
    figs = {"samples_per_s": sps, "time_s": Figure(t, "computed", f"{samples:,.0f} samples / {sps.source} throughput"),
            "power_w": power, **extra}
    figs |= _energy_figures(ctx, power, t, origin)
    money, job_cost = _money_figures(ctx, t, origin, figs["electricity_usd"].value, price, rent_per_h, price_source)
    figs |= money
    figs["job_cost_usd"] = Figure(job_cost, "computed", {"own": "electricity", "buy": "amortized purchase + "
                                  "electricity", "rent": "rent"}[origin])
    figs["samples_per_usd"] = Figure(samples / job_cost if job_cost else None, "computed", "samples / job cost")
    figs["samples_per_s_per_w"] = Figure((sps.value or 0) / power.value if power.value else None, "computed",
                                         "throughput / power")
    return figs


@dataclass(frozen=True)
class Offer:
    """One way to get a catalog device: its candidate id, origin and name, how many, and its prices."""

    id: str
    origin: str  # own | buy | rent
    name: str
    device: GpuSpec
    memory_bytes: int | None
    gpus: int = 1
    price_usd: float | None = None
    rent_usd_per_hour: float | None = None
    tdp_w: float | None = None
    tdp_basis: str = ""
    consumer: bool = False
    batch_size: int | None = None  # None: the job's


def _scale_out(ctx: Context, p: DevicePrediction, offer: Offer) -> tuple[float, str, dict[str, Figure]]:
    """Throughput of ``offer.gpus`` devices: data parallel with a ring all-reduce of fp32 gradients over the
    catalog interconnect (training), or independent replicas."""
    sps, basis, n = p.sps, f"predicted per-operator roofline ({p.basis})", offer.gpus
    if n <= 1:
        return sps, basis, {}
    dev = offer.device
    link = getattr(dev, "interconnect_bytes_per_s", None)
    if ctx.task == "train" and link:
        ar = cost.allreduce_s(4.0 * p.parameters, n, link)
        sps = cost.data_parallel_samples_per_s(p.step_s, p.batch, n, ar)
        basis += (f"; x{n} data parallel with a ring all-reduce of {4 * p.parameters / 1e6:,.0f} MB of "
                  f"fp32 gradients over {getattr(dev, 'interconnect', None) or 'the interconnect'} "
                  f"({link / 1e9:,.0f} GB/s), not overlapped: {ar * 1e3:.3g} ms per step")
        return sps, basis, {"allreduce_s": Figure(ar, "computed", "2 (n-1)/n x gradient bytes / link bandwidth")}
    basis += f"; x{n} replicas" + ("" if ctx.task != "train" else
                                   ", perfect scaling assumed: the catalog has no interconnect bandwidth for it")
    return n * sps, basis, {}


def _prediction_figures(p: DevicePrediction, sps: float, offer: Offer) -> dict[str, Figure]:
    scale = sps / p.sps
    mem_source = "catalog" if offer.device.kind != "cpu" or offer.origin != "own" else "measured"
    return {"samples_per_s_low": Figure(p.low * scale if p.low else None, "predicted", p.basis),
            "samples_per_s_high": Figure(p.high * scale if p.high else None, "predicted", p.basis),
            "fp32_samples_per_s": Figure(p.fp32_sps * scale if p.fp32_sps else None, "predicted", ""),
            "step_time_s": Figure(p.step_s, "predicted", "one step of one device"),
            "peak_mem_bytes": Figure(p.need_bytes, "predicted", "traced on fake tensors: weights, gradients, "
                                     "optimizer state, activations, largest operator output"),
            "memory_bytes": Figure(offer.memory_bytes, mem_source, "device memory"),
            "usable_memory_bytes": Figure(p.usable_bytes, "computed" if p.usable_bytes != offer.memory_bytes
                                          else mem_source, f"device memory less {RESERVE_BASIS}"
                                          if p.usable_bytes != offer.memory_bytes else "device memory, whole"),
            "largest_batch": Figure(p.largest_batch or None, "predicted", p.largest_basis)}


def _notes(p: DevicePrediction, offer: Offer, batch: int) -> tuple[str, ...]:
    out = []
    dev, mem, usable = offer.device, offer.memory_bytes, p.usable_bytes
    if p.batch != batch and mem and usable:
        out.append(f"batch {p.batch}: {batch} does not fit in {usable / 2**30:.1f} GiB usable of {mem / 2**30:.0f} GiB"
                   if usable != mem else f"batch {p.batch}: {batch} does not fit in {mem / 2**30:.0f} GiB")
    acc32, fp16 = dev.fp16_fp32acc_flops_per_s, dev.fp16_flops_per_s
    if offer.consumer and acc32 and fp16:
        ratio = acc32 / fp16
        if ratio < 0.99:
            out.append(f"fp16 with fp32 accumulate (what autocast uses) runs at {ratio:.0%} of its fp16 rate "
                       "on this GeForce card (catalog)")
    return tuple(out)


def predicted(ctx: Context, offer: Offer) -> Candidate:
    """A candidate whose throughput is predicted (the prediction per device is shared across offers of it)."""
    dev, batch = offer.device, offer.batch_size or ctx.batch_size
    kind = "cpu" if dev.kind == "cpu" else "gpu"
    key = f"{dev.id}@{batch}@{offer.memory_bytes}"
    if key not in ctx.predictions:
        ctx.predictions[key] = predict_device(ctx.profiles, ctx.spec, ctx.task, dev, offer.memory_bytes, batch,
                                              ctx.precisions, ctx.overrides, ctx.calibration)
    p = ctx.predictions[key]
    if isinstance(p, str):
        return Candidate(offer.id, offer.origin, offer.name, dev.id, kind, offer.gpus, "-", batch, {}, fits=False,
                         excluded=p)
    sps, basis, extra = _scale_out(ctx, p, offer)
    tdp, n, k = offer.tdp_w, offer.gpus, ctx.constraints
    power = Figure(tdp * n * k.power_factor if tdp else None, "estimated" if tdp else "unavailable",
                   f"TDP x {n} x power factor {k.power_factor:g} ({offer.tdp_basis})" if tdp else
                   f"no TDP for {offer.name}")
    figs = job_figures(ctx, Figure(sps, "predicted", basis), power, extra | _prediction_figures(p, sps, offer),
                       offer.origin, offer.price_usd, offer.rent_usd_per_hour,
                       "given" if dev.id in ctx.prices_usd else "catalog")
    limit = k.max_power_w
    over = limit is not None and power.value is not None and power.value > limit
    return Candidate(offer.id, offer.origin, offer.name, dev.id, kind, n, p.precision, p.batch, figs, fits=p.fits,
                     bound=p.bound, consumer=offer.consumer, notes=_notes(p, offer, batch),
                     excluded=f"draws {power.value:,.0f} W, over the power limit of {limit:g} W" if over else None)


def _measured_power(r: Mapping[str, Any], missing: str) -> Figure:
    if not r.get("power_w"):
        return Figure(None, "unavailable", missing)
    src = r.get("energy_source") or ""
    return Figure(r["power_w"], "measured" if src.startswith("measured") else "estimated",
                  r.get("energy_basis") or "no power figure")


def stored_basis(r: Mapping[str, Any]) -> str:
    """How a stored measurement was had: one run, or the median of several (with their range), and whether it was
    measured under contention."""
    runs = int(r.get("_runs") or 1)
    if runs > 1:
        text = (f"median of {runs} stored runs on this machine ({r['_min_sps']:,.4g}-{r['_max_sps']:,.4g} "
                f"samples/s; runs {', '.join(i[:8] for i in r.get('_run_ids') or ())})")
    else:
        text = f"dlgpu bench run {str(r['_run_id'])[:8]} on this machine, {r['_created_at']}"
    if r.get("_contended"):
        text = f"measured under contention (no uncontended run is stored): {text}"
    elif r.get("_contended_left_out"):
        text += f"; {r['_contended_left_out']} result(s) measured under contention left out"
    return text


def measured_cpu(ctx: Context, cpu: DeviceInfo, r: Mapping[str, Any]) -> Candidate:
    """This machine's CPU as ``dlgpu bench`` measured it (``r``: its stored result)."""
    sps = Figure(r["samples_per_s"], "measured", f"{stored_basis(r)}, batch {r['batch_size']}, {r['precision']}")
    runs = int(r.get("_runs") or 1)
    step = (Figure(r["batch_size"] / r["samples_per_s"], "computed", f"batch / the median throughput of {runs} runs")
            if runs > 1 else Figure(r["step_time_s"]["median"], "measured", "median of the timed steps"))
    extra = {"fp32_samples_per_s": Figure(r.get("_fp32_sps"), "measured", "the same run at fp32" if "_runs" not in r
                                          else "the same batch at fp32, over the stored runs by the same rule"),
             "step_time_s": step,
             "peak_mem_bytes": Figure(r.get("peak_mem_bytes"), "measured", r.get("peak_mem_kind") or ""),
             "memory_bytes": Figure(cpu.memory_bytes, "measured", "this machine's memory")}
    figs = job_figures(ctx, sps, _measured_power(r, "bench recorded no power"), extra, "own")
    return Candidate("own:cpu", "own", f"this CPU ({cpu.name}, {cpu.threads_used} cores)", "local", "cpu", 0,
                     r["precision"], r["batch_size"], figs, fits=True)


def measured_gpu(ctx: Context, gpu: DeviceInfo, r: Mapping[str, Any]) -> Candidate:
    sps = Figure(r["samples_per_s"], "measured", f"{stored_basis(r)}, batch {r['batch_size']}, {r['precision']}")
    figs = job_figures(ctx, sps, _measured_power(r, ""), {"memory_bytes": Figure(gpu.memory_bytes, "measured", "")},
                       "own")
    return Candidate(f"own:{gpu.id}", "own", f"this machine's {gpu.name}", gpu.id, "gpu", 1, r["precision"],
                     r["batch_size"], figs, fits=True)


def own(ctx: Context, present: Sequence[DeviceInfo], measured: Mapping[str, Mapping[str, Any]],
        catalog: Catalog, ceilings: Any = None) -> list[Candidate]:
    """This machine's devices: measured where ``dlgpu bench`` stored results, else predicted (the CPU with this
    machine's probed ceilings where ``ceilings`` is given: ``predict.targets.prediction_device``)."""
    cpu = present[0]
    out = []
    if "cpu" in measured:
        out.append(measured_cpu(ctx, cpu, measured["cpu"]))
    else:
        dev, mem, _basis = prediction_device("local", catalog, ceilings)
        facts = device_facts(cpu, catalog)
        here = predicted(ctx, Offer("own:cpu", "own", f"this CPU ({cpu.name}, {cpu.threads_used} cores)", dev,
                                    mem, tdp_w=facts.tdp_w, tdp_basis=facts.tdp_basis,
                                    batch_size=ctx.cpu_batch_size))
        if ceilings is not None:  # say what the prediction took from this machine's probe
            here = replace(here, notes=(*here.notes, f"predicted with this machine's probed ceilings: "
                                                     f"{ceilings.bandwidth_basis}"))
        out.append(here)
    for g in present[1:]:
        row, _why = match_gpu(g.name, g.memory_bytes, catalog)
        if g.id in measured:
            out.append(measured_gpu(ctx, g, measured[g.id]))
        elif row is not None:
            out.append(predicted(ctx, Offer(f"own:{g.id}", "own", f"this machine's {g.name}", row, g.memory_bytes,
                                            tdp_w=row.tdp_w, tdp_basis="catalog TDP")))
    return out


def to_buy(ctx: Context, catalog: Catalog, only: set[str]) -> list[Candidate]:
    """Every catalog GPU (or those in ``only``) at the user's price, else its launch price."""
    return [predicted(ctx, Offer(f"buy:{g.id}", "buy", g.name, g, g.memory_bytes,
                                 price_usd=ctx.prices_usd.get(g.id, g.launch_price_usd), tdp_w=g.tdp_w,
                                 tdp_basis="catalog TDP", consumer=is_consumer(g)))
            for g in catalog.gpus if not only or g.id in only]


def to_rent(ctx: Context, catalog: Catalog, only: set[str]) -> list[Candidate]:
    """Every cloud instance in the catalog (or those carrying a GPU in ``only``), at its hourly price."""
    out = []
    for inst in catalog.cloud:
        if only and inst.gpu_id not in only:
            continue
        g = catalog.gpu(inst.gpu_id)
        name = f"{inst.provider} {inst.instance}" + (f" ({inst.gpu_count}x {g.name})" if inst.gpu_count > 1
                                                     else f" ({g.name})")
        out.append(predicted(ctx, Offer(f"rent:{inst.provider}:{inst.instance}", "rent", name, g, g.memory_bytes,
                                        inst.gpu_count, rent_usd_per_hour=inst.price_usd_per_hour, tdp_w=g.tdp_w,
                                        tdp_basis="catalog TDP", consumer=is_consumer(g))))
    return out
