"""How advise decides, in one place: the inputs (``inputs``: the job and its constraints), the candidates
(``candidates``: this machine's devices, catalog GPUs to buy, cloud instances to rent), ranked by time, and
the verdict over them (``verdict.decide``), as one ``results.Advice``.

This machine's figures come in as ``LocalMeasurements`` (stored ``dlgpu bench`` results, or a fresh quick
bench, or none: then its CPU is predicted and the advice says so)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dlgpu.catalog import Catalog
from dlgpu.errors import BadInput
from dlgpu.home import dlgpu_version, utc_now
from dlgpu.predict.roofline import Calibration
from dlgpu.predict.targets import LOCAL_IDS
from dlgpu.results import PRECISIONS, SOURCES, Advice, Candidate, DeviceInfo, ProfileSource
from dlgpu.workloads.registry import DECODE_BATCH, WorkloadSpec, check_task
from dlgpu.workloads.select import overrides_for, resolve_choice

from . import candidates, inputs
from .verdict import decide, judge


@dataclass(frozen=True)
class LocalMeasurements:
    """This machine's measured results for the job's workload and task at the asked precisions and batch: the
    fastest per device (a bench result's dict, with ``_run_id``, ``_created_at`` and ``_fp32_sps`` added; from the
    store also ``_runs``, ``_min_sps``, ``_max_sps``, ``_run_ids``, ``_contended``: the median over stored runs,
    ``store.history.local_measurements``), the newest run and how it was had; ``elsewhere``: per device stored
    only at other settings, those settings."""

    by_device: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    run_id: str | None = None
    fresh: bool = False  # measured now (a quick bench), not read from the store
    elsewhere: Mapping[str, Sequence[str]] = field(default_factory=dict)
    ceilings: Any = None  # this machine's probed ceilings (``results.probe.MeasuredCeilings``), for a predicted CPU


@dataclass(frozen=True)
class Request:
    """What to advise on: a workload (or a user's model) and task, the job's size, the limits, which candidates
    (``sources``: own, buy, rent; ``hardware``: only these catalog ids, ``local`` for this machine), the user's
    prices by catalog id, the precisions to consider, the batch and the workload's parameters."""

    spec: WorkloadSpec
    task: str = "train"
    size: inputs.JobSize = field(default_factory=inputs.JobSize)
    limits: inputs.Limits = field(default_factory=inputs.Limits)
    sources: tuple[str, ...] = ()
    hardware: tuple[str, ...] = ()
    prices_usd: Mapping[str, float] = field(default_factory=dict)
    precisions: tuple[str, ...] | None = None
    batch_size: int | None = None
    overrides: Mapping[str, str] = field(default_factory=dict)


def validate(req: Request) -> None:
    """Everything about the request that can be checked before anything is predicted."""
    inputs.validate(req.task, req.size, req.limits, req.sources, req.batch_size)
    check_task(req.spec, req.task)
    for hid, price in req.prices_usd.items():
        if not price >= 0:
            raise BadInput(f"{hid}={price}: a price is a non-negative number of dollars", param="prices_usd")


def _context(req: Request, catalog: Catalog, cal: Calibration, profiles: ProfileSource) -> candidates.Context:
    ovr = dict(req.overrides)
    params = req.spec.resolve(overrides_for([req.spec], ovr)[req.spec.name])
    decode = req.task == "decode"
    return candidates.Context(
        spec=req.spec, task=req.task, batch_size=req.batch_size or (DECODE_BATCH if decode else req.spec.batch_size),
        precisions=resolve_choice(req.precisions, PRECISIONS, "precisions", PRECISIONS), overrides=ovr,
        job=inputs.job(req.spec, params, req.task, req.size), constraints=inputs.constraints(req.limits),
        calibration=cal, profiles=profiles, prices_usd={catalog.get(h).id: p for h, p in req.prices_usd.items()},
        cpu_batch_size=req.batch_size or (DECODE_BATCH if decode else req.spec.quick_batch_size))


def _candidates(req: Request, ctx: candidates.Context, catalog: Catalog, present: Sequence[DeviceInfo],
                local: LocalMeasurements) -> list[Candidate]:
    use = set(req.sources or SOURCES)
    only = {catalog.get(h).id for h in req.hardware if h.strip().lower() not in LOCAL_IDS}
    local_asked = any(h.strip().lower() in LOCAL_IDS for h in req.hardware)
    found: list[Candidate] = []
    if "own" in use and (not only or local_asked):
        found += candidates.own(ctx, present, local.by_device, catalog, local.ceilings)
    if "buy" in use:
        found += candidates.to_buy(ctx, catalog, only)
    if "rent" in use:
        found += candidates.to_rent(ctx, catalog, only)
    if not found:
        raise BadInput("no candidates: the sources and hardware asked for left nothing to compare", param="sources")
    return sorted(found, key=lambda c: (c.excluded is not None, c.time_s))


def _local_basis(local: LocalMeasurements) -> str:
    if not local.by_device:
        if local.elsewhere:
            return "predicted (stored results are at other settings: " + "; ".join(
                f"{dev}: {', '.join(s)}" for dev, s in local.elsewhere.items()) + ")"
        return "predicted (nothing stored)"
    if local.fresh:
        return "measured now (--measure, quick budgets)"
    return "stored dlgpu bench results for this machine: " + "; ".join(
        f"{dev} {r['precision']} batch {r['batch_size']}: {candidates.stored_basis(r)}"
        for dev, r in local.by_device.items())


def _local_notes(req: Request, local: LocalMeasurements) -> list[str]:
    """Why this machine's CPU is predicted, where it is."""
    if "cpu" in local.by_device:
        return []
    other = local.elsewhere.get("cpu")
    if other:
        asked = ", ".join(x for x in (
            None if req.precisions is None else "precision " + "/".join(req.precisions),
            None if req.batch_size is None else f"batch {req.batch_size}") if x)
        return [f"A stored measurement of {req.spec.name} {req.task} on this machine's CPU exists, but at other "
                f"settings ({', '.join(other)}), not at the asked {asked or 'settings'}: its CPU is predicted, not "
                "measured. Run with --measure (or `dlgpu bench` at these settings) to measure it."]
    if not local.by_device:
        probed = ([f"Its prediction uses this machine's probed ceilings: {local.ceilings.bandwidth_basis}."]
                  if local.ceilings is not None else [])
        return [f"Nothing is stored for {req.spec.name} {req.task} on this machine, so its CPU is predicted, "
                "not measured: run with --measure (or `dlgpu bench`) to measure it.", *probed]
    return []


def advise(req: Request, local: LocalMeasurements, present: Sequence[DeviceInfo], catalog: Catalog,
           cal: Calibration, profiles: ProfileSource) -> Advice:
    """``dlgpu.advise/1``: the ranked candidates for the job and the verdict over them."""
    validate(req)
    ctx = _context(req, catalog, cal, profiles)
    use = set(req.sources or SOURCES)
    notes = _local_notes(req, local) if "own" in use else []
    cands = judge(_candidates(req, ctx, catalog, present, local), ctx.constraints)
    return Advice(
        created_at=utc_now(), dlgpu=dlgpu_version(), workload=req.spec.name, task=req.task, overrides=ctx.overrides,
        job=ctx.job, batch_size=ctx.batch_size, precisions=ctx.precisions, sources=tuple(sorted(use)),
        constraints=ctx.constraints,
        local={"measured": bool(local.by_device), "run_id": local.run_id, "basis": _local_basis(local)},
        verdict=decide(cands, ctx.constraints), notes=tuple(notes), candidates=tuple(cands))
