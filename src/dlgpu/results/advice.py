"""The data model of advice: figures with their provenance, the constraints of a job, the candidates (ways to
run it), the verdict over them and the whole ``Advice`` (``dlgpu.advise/1``). ``advise`` computes them;
``report`` renders them; nothing here judges."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .vocab import ADVISE_SCHEMA


@dataclass(frozen=True)
class Figure:
    """A number with where it came from: measured | predicted | catalog | estimated | assumed | computed |
    given (by the user)."""

    value: float | None
    source: str
    basis: str = ""

    def to_dict(self) -> dict[str, object]:
        return {"value": self.value, "source": self.source, "basis": self.basis}


@dataclass(frozen=True)
class Constraints:
    deadline_s: float
    deadline_basis: str  # "--deadline 12h" or "default: 24 h"
    budget_usd: float | None
    max_power_w: float | None
    electricity_usd_per_kwh: Figure
    carbon_g_per_kwh: Figure
    pue: float
    hours_per_day: float
    lifetime_years: float
    power_factor: float  # share of TDP drawn where power was not measured

    def to_dict(self) -> dict[str, Any]:
        return {"deadline_s": self.deadline_s, "deadline_basis": self.deadline_basis, "budget_usd": self.budget_usd,
                "max_power_w": self.max_power_w, "electricity_usd_per_kwh": self.electricity_usd_per_kwh.to_dict(),
                "carbon_g_per_kwh": self.carbon_g_per_kwh.to_dict(), "pue": self.pue,
                "hours_per_day": self.hours_per_day, "lifetime_years": self.lifetime_years,
                "power_factor": self.power_factor}


@dataclass(frozen=True)
class Candidate:
    id: str  # "own:cpu", "buy:a100-sxm4-80gb", "rent:AWS:p4d.24xlarge"
    origin: str  # own | buy | rent
    name: str
    hardware: str  # a catalog id, or "local"
    kind: str  # cpu | gpu
    gpus: int
    precision: str
    batch_size: int | None
    figures: dict[str, Figure]
    fits: bool | None = None
    bound: dict[str, float] | None = None
    consumer: bool = False  # a GeForce/Radeon part: see the reasons
    notes: tuple[str, ...] = ()
    excluded: str | None = None  # why it cannot be a choice at all (does not fit, over the power limit)
    meets_deadline: bool | None = None  # judged by ``advise.verdict`` (the one judge), None before it judged
    affordable: bool | None = None  # within the budget (True when there is none); judged by ``advise.verdict``

    def value(self, name: str) -> float | None:
        f = self.figures.get(name)
        return None if f is None else f.value

    @property
    def time_s(self) -> float:
        v = self.value("time_s")
        return math.inf if v is None else v

    @property
    def total_usd(self) -> float | None:
        """What this choice costs to make for this job: the purchase (bought), the rent (rented), or the
        electricity (owned; the device is already paid for)."""
        return self.value("upfront_usd") if self.origin == "buy" else self.value("job_cost_usd")

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "origin": self.origin, "name": self.name, "hardware": self.hardware, "kind": self.kind,
                "gpus": self.gpus, "precision": self.precision, "batch_size": self.batch_size, "fits": self.fits,
                "bound": self.bound, "consumer": self.consumer, "excluded": self.excluded,
                "notes": list(self.notes), "meets_deadline": self.meets_deadline, "affordable": self.affordable,
                "figures": {k: f.to_dict() for k, f in self.figures.items()}}


@dataclass(frozen=True)
class Verdict:
    answer: str  # cpu-enough | gpu-needed | nothing-meets
    headline: str
    cheapest: str | None = None  # candidate ids
    fastest: str | None = None
    best_value: str | None = None
    what_would: tuple[str, ...] = ()
    reasons: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {"answer": self.answer, "headline": self.headline, "cheapest": self.cheapest, "fastest": self.fastest,
                "best_value": self.best_value, "what_would": list(self.what_would), "reasons": list(self.reasons)}


@dataclass(frozen=True)
class Job:
    """What the job processes: ``samples`` (tokens for decode) in ``unit``s, what that is, and where from."""

    samples: float
    description: str
    basis: str
    unit: str

    def to_dict(self) -> dict[str, Any]:
        return {"samples": self.samples, "description": self.description, "basis": self.basis, "unit": self.unit}


@dataclass(frozen=True)
class Advice:
    """``dlgpu.advise/1``: a ranked table of ways to run a job and the verdict over them."""

    created_at: str
    dlgpu: str
    workload: str
    task: str
    overrides: dict[str, str]
    job: Job
    batch_size: int
    precisions: tuple[str, ...]
    sources: tuple[str, ...]
    constraints: Constraints
    local: dict[str, Any]  # whether this machine was measured, the run the figures come from, and how
    verdict: Verdict
    notes: tuple[str, ...]
    candidates: tuple[Candidate, ...]
    run_id: str | None = None
    schema: str = ADVISE_SCHEMA

    def to_dict(self) -> dict[str, Any]:
        doc = {
            "schema": self.schema, "created_at": self.created_at, "dlgpu": self.dlgpu, "workload": self.workload,
            "task": self.task, "overrides": dict(self.overrides), "job": self.job.to_dict(),
            "batch_size": self.batch_size, "precisions": list(self.precisions), "sources": list(self.sources),
            "constraints": self.constraints.to_dict(), "local": dict(self.local), "verdict": self.verdict.to_dict(),
            "notes": list(self.notes), "candidates": [c.to_dict() for c in self.candidates],
        }
        if self.run_id is not None:
            doc["run_id"] = self.run_id
        return doc


def _figure(d: dict[str, Any]) -> Figure:
    return Figure(d.get("value"), d.get("source", ""), d.get("basis", ""))


def candidate_from_dict(d: dict[str, Any]) -> Candidate:
    bound = d.get("bound")
    return Candidate(d["id"], d["origin"], d["name"], d["hardware"], d["kind"], d["gpus"], d["precision"],
                     d.get("batch_size"), {k: _figure(f) for k, f in (d.get("figures") or {}).items()},
                     fits=d.get("fits"), bound=None if bound is None else dict(bound), consumer=bool(d.get("consumer")),
                     notes=tuple(d.get("notes") or ()), excluded=d.get("excluded"),
                     meets_deadline=d.get("meets_deadline"), affordable=d.get("affordable"))


def advice_from_dict(d: dict[str, Any]) -> Advice:
    """The inverse of ``Advice.to_dict`` (for stored and imported documents; older ones lack the judgments
    ``meets_deadline`` and ``affordable``, which stay None)."""
    k, v, j = d["constraints"], d["verdict"], d["job"]
    constraints = Constraints(
        deadline_s=k["deadline_s"], deadline_basis=k["deadline_basis"], budget_usd=k.get("budget_usd"),
        max_power_w=k.get("max_power_w"), electricity_usd_per_kwh=_figure(k["electricity_usd_per_kwh"]),
        carbon_g_per_kwh=_figure(k["carbon_g_per_kwh"]), pue=k["pue"], hours_per_day=k["hours_per_day"],
        lifetime_years=k["lifetime_years"], power_factor=k["power_factor"])
    verdict = Verdict(v["answer"], v["headline"], v.get("cheapest"), v.get("fastest"), v.get("best_value"),
                      tuple(v.get("what_would") or ()), tuple(v.get("reasons") or ()))
    return Advice(created_at=d["created_at"], dlgpu=d["dlgpu"], workload=d["workload"], task=d["task"],
                  overrides=dict(d.get("overrides") or {}),
                  job=Job(j["samples"], j["description"], j["basis"], j["unit"]), batch_size=d["batch_size"],
                  precisions=tuple(d["precisions"]), sources=tuple(d["sources"]), constraints=constraints,
                  local=dict(d["local"]), verdict=verdict, notes=tuple(d.get("notes") or ()),
                  candidates=tuple(candidate_from_dict(c) for c in d["candidates"]), run_id=d.get("run_id"),
                  schema=d.get("schema", ADVISE_SCHEMA))
