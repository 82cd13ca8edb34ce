"""``dlgpu advise xgboost --set rows=N``: is a CPU enough for this tabular job, or does a GPU pay, and which cheap one.

The job's training time on this machine's CPU (measured here, or the published CPU fit at its threads: ``tabular``)
is set against every NVIDIA GPU of the catalog, bought (its launch price) or rented (a cloud instance, its hourly
price; XGBoost and LightGBM train on one of its GPUs). A GPU *pays* when it finishes sooner than this CPU once its
fixed overhead is counted: the time it takes to get the job onto a GPU one does not have in hand (start the instance
or session, move the data), a default of one minute that the document labels an assumption (``--gpu-overhead``).
Below the crossover, the rows where this CPU's time equals the GPU's time plus that overhead, "a CPU is enough";
above it, the cheapest GPU that pays: rented, by its price per hour x the job's time (an L4 or A10 often beats an
H100 on price); bought, by its launch price. Both times are linear in rows (``tabular.model``), so the crossover is
solved exactly. A deadline (``--deadline``) and a budget (``--budget``) are judged where given. No torch here."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from dlgpu.catalog import Catalog, GpuSpec
from dlgpu.errors import BadInput
from dlgpu.home import dlgpu_version, utc_now
from dlgpu.tabular.calibration import published_calibration
from dlgpu.tabular.jobs import TabularJob, resolve_job
from dlgpu.tabular.local import LocalCpu, LocalFit, fit_local
from dlgpu.tabular.model import Device, crossover_rows
from dlgpu.tabular.predict import GPU_VENDORS, gpu_device, memory_fit, predicted_time
from dlgpu.units import format_duration

__all__ = ["DEFAULT_GPU_OVERHEAD_S", "TABULAR_ADVISE_SCHEMA", "TabularCandidate", "advise_tabular", "crossover_rows"]

TABULAR_ADVISE_SCHEMA = "dlgpu.tabular-advise/1"
DEFAULT_GPU_OVERHEAD_S = 60.0
GPU_OVERHEAD_BASIS = ("default, an assumption: the minute it takes to get a job onto a GPU not in hand (start the "
                      "instance or session, move the data there); set --gpu-overhead")


@dataclass(frozen=True)
class TabularCandidate:
    """One GPU bought or rented, for this job."""

    name: str
    how: str  # buy | rent
    hardware: str
    gpus: int  # the instance's GPUs (training uses one)
    train_s: float
    time_s: float  # training + the GPU's fixed overhead
    saves_s: float  # this CPU's time - time_s (negative: slower than this CPU)
    fits: bool | None
    meets: bool  # the deadline and the budget, where given
    pays: bool  # fits, meets, and saves time
    cost_usd: float | None  # rent: the job's rent; buy: the launch price
    price_usd_per_hour: float | None
    cost_basis: str
    crossover_rows: float | None  # where it starts to pay against this CPU (inf: never; 0: at any size)
    interval: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if self.crossover_rows is not None and math.isinf(self.crossover_rows):
            d["crossover_rows"] = None
            d["crossover"] = "never: this CPU's time per row is not above the GPU's"
        return d


def _linear(fixed_s: float, hist_s: float, rows: int) -> tuple[float, float]:
    """(seconds at zero rows, seconds per row) of a time that is fixed + hist x rows / rows_now."""
    return fixed_s, hist_s / rows


Offer = tuple[str, str, GpuSpec, int, float | None, float | None, str]
"""(name, how, gpu, count, launch price, price per hour, basis)"""


def _gpus(catalog: Catalog, sources: Sequence[str], hardware: Sequence[str]) -> list[Offer]:
    """(name, how, gpu, count, launch price, price per hour, basis) of every NVIDIA GPU to buy and instance to
    rent, limited to ``hardware`` ids where given."""
    wanted = {h.lower() for h in hardware}
    out: list[Offer] = []
    if "buy" in sources:
        for g in catalog.gpus:
            out.append((g.name, "buy", g, 1, g.launch_price_usd, None,
                        "launch price (catalog)" if g.launch_price_usd else "no launch price in the catalog"))
    if "rent" in sources:
        for c in catalog.cloud:
            try:
                g = catalog.gpu(c.gpu_id)
            except BadInput:
                continue
            more = f", training on 1 of its {c.gpu_count} GPUs" if c.gpu_count > 1 else ""
            named = g.id.split("-")[0] in c.instance.lower() or g.name in c.instance
            out.append((f"{c.provider} {c.instance}" + ("" if named else f" ({g.name})"), "rent",
                        g, c.gpu_count, None, c.price_usd_per_hour,
                        f"${c.price_usd_per_hour:,.2f}/h on demand, {c.price_date} (catalog){more}"))
    return [x for x in out if x[2].vendor.lower() in GPU_VENDORS and x[2].memory_bandwidth_bytes_per_s
            and (not wanted or x[2].id.lower() in wanted)]


def advise_tabular(catalog: Catalog, workload: str, overrides: Mapping[str, str] | None, local_cpu: LocalCpu,
                   deadline_s: float | None = None, gpu_overhead_s: float | None = None,
                   sources: Sequence[str] = ("buy", "rent"), hardware: Sequence[str] = (),
                   budget_usd: float | None = None) -> dict[str, Any]:
    """The ``dlgpu.tabular-advise/1`` document: verdict, reasons, this machine, the crossover, and the candidates
    ranked by cost (see the module docstring)."""
    if deadline_s is not None and not deadline_s > 0:
        raise BadInput(f"{deadline_s:g}: must be a positive duration", param="deadline_s")
    if gpu_overhead_s is not None and (not math.isfinite(gpu_overhead_s) or gpu_overhead_s < 0):
        raise BadInput(f"--gpu-overhead {gpu_overhead_s:g}: must be a non-negative duration")
    if budget_usd is not None and budget_usd < 0:
        raise BadInput(f"{budget_usd:g}: must be a non-negative number", param="budget_usd")
    tj = resolve_job(workload, overrides)
    overhead = DEFAULT_GPU_OVERHEAD_S if gpu_overhead_s is None else gpu_overhead_s
    overhead_basis = GPU_OVERHEAD_BASIS if gpu_overhead_s is None else "given (--gpu-overhead)"
    head: dict[str, Any] = {
        "schema": TABULAR_ADVISE_SCHEMA, "created_at": utc_now(), "dlgpu": dlgpu_version(), "workload": tj.workload,
        "estimator": tj.estimator, "family": tj.family, "task": "train", "job": tj.params, "job_basis": tj.basis,
        "deadline_s": deadline_s, "budget_usd": budget_usd, "gpu_overhead_s": overhead,
        "gpu_overhead_basis": overhead_basis}
    if tj.job is None or tj.family is None:
        return {**head, "answer": "not-predicted", "verdict": f"{tj.estimator}: {tj.not_predicted}",
                "reasons": [], "this_machine": None, "crossover": None, "cheapest": {"rent": None, "buy": None},
                "fastest": None, "candidates": []}
    job = tj.job
    cal = published_calibration()
    local = fit_local(local_cpu, cal.fit)
    here_dev = local_cpu.device()
    here = _this_machine(tj, here_dev, local, local_cpu, deadline_s)
    cpu_line = _linear(here["fixed_s"], here["histogram_s"], job.rows)
    cands: list[TabularCandidate] = []
    gpu_fits = cal.fit.has(tj.family, "gpu")
    for name, how, g, count, price, per_hour, basis in (_gpus(catalog, sources, hardware) if gpu_fits else []):
        dev = gpu_device(g)
        t = predicted_time(tj, dev)
        mem = memory_fit(job, dev, g.memory_bytes)
        time_s = t["train_s"] + overhead
        cost = price if how == "buy" else (per_hour or 0.0) * time_s / 3600
        meets = (deadline_s is None or time_s <= deadline_s) and (
            budget_usd is None or (cost is not None and cost <= budget_usd))
        saves = here["train_s"] - time_s
        cross = crossover_rows(cpu_line, _linear(t["fixed_s"], t["histogram_s"], job.rows), overhead)
        cands.append(TabularCandidate(
            name=name, how=how, hardware=g.id, gpus=count, train_s=t["train_s"], time_s=time_s, saves_s=saves,
            fits=mem["fits"], meets=meets, pays=bool(mem["fits"] is not False and meets and saves > 0),
            cost_usd=cost, price_usd_per_hour=per_hour,
            cost_basis=(basis if how == "buy" else f"{basis} x (training + overhead)"), crossover_rows=cross,
            interval=t["interval"]))
    ranked = sorted(cands, key=_rank)
    paying = [c for c in ranked if c.pays]
    cheapest = {how: next((c for c in paying if c.how == how and c.cost_usd is not None), None)
                for how in ("rent", "buy")}
    fastest = min((c for c in cands if c.fits is not False), key=lambda c: c.train_s, default=None)
    best_value = _best_value(ranked)
    crossover = _crossover(best_value, ranked, job.rows, overhead)
    answer, verdict = _verdict(tj, here, cheapest, fastest, best_value, crossover, overhead, deadline_s, paying,
                               gpu_fits)
    reasons = _reasons(tj, here, best_value, crossover, overhead, overhead_basis, deadline_s, budget_usd, cal, gpu_fits)
    return {**head, "answer": answer, "verdict": verdict, "reasons": reasons, "this_machine": here,
            "crossover": crossover, "cheapest": {k: None if c is None else c.to_dict() for k, c in cheapest.items()},
            "fastest": None if fastest is None else fastest.to_dict(),
            "basis": ("every GPU time predicted by the published GPU fit (GBM-perf's V100 rows) scaled by the catalog "
                      "bandwidth; rent = price per hour x (training + the GPU's fixed overhead); buy = launch price; "
                      "NVIDIA GPUs only (CUDA)"),
            "candidates": [c.to_dict() for c in ranked]}


def _rank(c: TabularCandidate) -> tuple[Any, ...]:
    """Rented first, then bought; those that pay first; cheapest first (unpriced last)."""
    return (c.how != "rent", not c.pays, c.fits is False, c.cost_usd is None, c.cost_usd or 0.0, c.train_s)


def _best_value(ranked: Sequence[TabularCandidate]) -> TabularCandidate | None:
    """The rented GPU with the lowest rent for this job among those that hold the data (else the cheapest to buy)."""
    rent = [c for c in ranked if c.how == "rent" and c.fits is not False and c.cost_usd is not None]
    if rent:
        return min(rent, key=lambda c: (c.cost_usd or 0.0, c.train_s))
    buy = [c for c in ranked if c.how == "buy" and c.fits is not False and c.cost_usd is not None]
    return min(buy, key=lambda c: (c.cost_usd or 0.0, c.train_s), default=None)


def _crossover(best: TabularCandidate | None, ranked: Sequence[TabularCandidate], rows: int,
               overhead: float) -> dict[str, Any] | None:
    if best is None:
        return None
    per_gpu: dict[str, float | None] = {}
    for c in ranked:
        if c.hardware not in per_gpu and c.crossover_rows is not None:
            per_gpu[c.hardware] = None if math.isinf(c.crossover_rows) else c.crossover_rows
    x = best.crossover_rows
    return {"rows": None if x is None or math.isinf(x) else x, "versus": best.name, "versus_hardware": best.hardware,
            "job_rows": rows, "gpu_overhead_s": overhead, "per_gpu": per_gpu,
            "basis": "the rows where this CPU's predicted time equals the GPU's plus its fixed overhead (both times "
                     "are linear in rows at this job's features, trees and depth)"}


def _rows(x: float | None) -> str:
    if x is None or math.isinf(x):
        return "never"
    if x >= 1e6:
        return f"{x / 1e6:,.3g}M rows"
    if x >= 1e3:
        return f"{x / 1e3:,.3g}K rows"
    return f"{x:,.0f} rows"


def _job_text(tj: TabularJob) -> str:
    p = tj.params
    return (f"{tj.estimator} on {int(p['rows']):,} rows x {p['features']} features ({p['trees']} trees, depth "
            f"{p['depth']})")


def _cost(c: TabularCandidate) -> str:
    if c.cost_usd is None:
        return "no price in the catalog"
    return f"${c.cost_usd:,.4g} for the job" if c.how == "rent" else f"${c.cost_usd:,.0f}"


def _verdict(tj: TabularJob, here: Mapping[str, Any], cheapest: Mapping[str, TabularCandidate | None],
             fastest: TabularCandidate | None, best: TabularCandidate | None, crossover: Mapping[str, Any] | None,
             overhead: float, deadline_s: float | None, paying: Sequence[TabularCandidate],
             gpu_fits: bool) -> tuple[str, str]:
    cpu_s = float(here["train_s"])
    src = here["source"]
    cross = "" if crossover is None else (
        f" A GPU starts to pay above {_rows(crossover['rows'])} for this job on this CPU (vs {crossover['versus']})."
        if crossover["rows"] is not None else f" On this CPU a GPU never pays for this job (vs {crossover['versus']}).")
    cpu_ok = here["fits"] is not False and here["meets"] is not False
    if not paying and cpu_ok:
        if not gpu_fits:
            return "cpu-enough", (f"A CPU is enough: this machine trains {_job_text(tj)} in "
                                  f"{format_duration(cpu_s)} ({src}); no published row times {tj.estimator} on a "
                                  "GPU, so no GPU is predicted.")
        if best is not None:
            saved = cpu_s - best.train_s
            gpu = (f"the best-value GPU ({best.name}) would save {format_duration(saved)} of training at "
                   f"{_cost(best)}, less than the {format_duration(overhead)} it takes to use one"
                   if saved > 0 else f"no GPU would even train it faster (the best-value GPU, {best.name}: "
                                     f"{format_duration(best.train_s)})")
        else:
            gpu = "no GPU candidate holds the data"
        return "cpu-enough", (f"A CPU is enough: this machine trains {_job_text(tj)} in {format_duration(cpu_s)} "
                              f"({src}); {gpu}.{cross}")
    if paying:
        lead = (f"A GPU pays: this machine would take {format_duration(cpu_s)} ({src}) to train {_job_text(tj)}"
                + ("" if cpu_ok else (" and does not meet the deadline" if here["fits"] is not False
                                      else ", but the data does not fit in its memory")) + ".")
        parts = []
        r, b = cheapest.get("rent"), cheapest.get("buy")
        if r is not None:
            parts.append(f"cheapest to rent: {r.name}, {format_duration(r.train_s)} for {_cost(r)}")
        if b is not None:
            parts.append(f"cheapest to buy: {b.name}, {format_duration(b.train_s)} (${b.cost_usd:,.0f})")
        if fastest is not None and fastest.pays and fastest not in (r, b):
            parts.append(f"fastest: {fastest.name}, {format_duration(fastest.train_s)}")
        return "gpu-pays", lead + " " + "; ".join(parts) + "." + cross
    why = ("does not fit this machine's memory" if here["fits"] is False else
           f"misses the deadline ({format_duration(cpu_s)} > {format_duration(deadline_s or 0)})")
    return "nothing-meets", (f"Nothing meets it: {_job_text(tj)} {why} on this CPU, and no GPU candidate that holds "
                             "the data meets the deadline and the budget.")


def _reasons(tj: TabularJob, here: Mapping[str, Any], best: TabularCandidate | None,
             crossover: Mapping[str, Any] | None, overhead: float, overhead_basis: str, deadline_s: float | None,
             budget_usd: float | None, cal: Any, gpu_fits: bool) -> list[str]:
    out = [f"This machine ({here['name']}, {here['threads']} threads): {format_duration(here['train_s'])} "
           f"({here['source']}; {here['basis']})."]
    if here.get("interval"):
        iv = here["interval"]
        out.append(f"This machine's time lies in {format_duration(iv['low_s'])} to {format_duration(iv['high_s'])} if "
                   f"the prediction errs as {iv['basis']}.")
    if crossover is not None and best is not None:
        per = ", ".join(f"{g} {_rows(x)}" for g, x in list(crossover["per_gpu"].items())[:8])
        out.append(f"Crossover for this job on this CPU: {_rows(crossover['rows'])} against {best.name} "
                   f"({format_duration(best.train_s)} to train here, {_cost(best)}); per GPU: {per}.")
    if gpu_fits:
        out.append(f"A GPU's fixed overhead: {format_duration(overhead)} ({overhead_basis}); below the crossover it "
                   "costs more time than the GPU saves.")
        out.append(f"GPU times: {cal.fit.describe(tj.family, 'gpu')}, fitted on GBM-perf's V100 rows; the V100 is the "
                   "only GPU there, so their held-out error is leave-one-size-out.")
    out.append("Ranked by cost: rented GPUs by their price per hour x (training + overhead), bought GPUs by their "
               "launch price (catalog); an L4, A10 or T4 often costs less per job than an H100.")
    if deadline_s is not None:
        out.append(f"Deadline {format_duration(deadline_s)}: this machine "
                   + ("meets it." if here["meets"] else "misses it."))
    if budget_usd is not None:
        out.append(f"Budget ${budget_usd:,.2f}: candidates above it do not meet the job.")
    if here["fits"] is False:
        out.append(f"The data ({here['memory']['need_bytes'] / 2**30:,.1f} GiB) does not fit this machine's memory "
                   f"({(here['memory']['usable_bytes'] or 0) / 2**30:,.1f} GiB).")
    return out


def _this_machine(tj: TabularJob, dev: Device, local: LocalFit, cpu: LocalCpu,
                  deadline_s: float | None) -> dict[str, Any]:
    assert tj.job is not None
    t = predicted_time(tj, dev, local)
    mem = memory_fit(tj.job, dev, cpu.ram_bytes)
    return {"name": cpu.name, "threads": cpu.threads, "catalog_id": cpu.catalog_id, **t, "memory": mem,
            "fits": mem["fits"], "meets": None if deadline_s is None else t["train_s"] <= deadline_s,
            "measured_runs": len(cpu.runs), "runs_source": cpu.source,
            "verify": f"dlgpu bench -w {tj.workload} {tj.set_args()}"}
