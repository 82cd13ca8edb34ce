"""Candidates for a job and the plain verdict over them: is a CPU enough, and if not, which GPU.

A candidate is one way to run the job: a device this machine has (``own``), a catalog GPU bought at its
launch price (``buy``), or a cloud instance rented by the hour (``rent``). Each of its figures carries its
provenance (``results.Figure``). The verdict only ranks what the candidates say; every reason it gives names
the figures it rests on."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

from dlgpu.results import Candidate, Constraints, Figure, Verdict
from dlgpu.units import format_bytes
from dlgpu.units import format_duration as span


def usd(x: float | None) -> str:
    return "-" if x is None else (f"${x:,.0f}" if x >= 100 else f"${x:,.2f}")


def meets(c: Candidate, k: Constraints) -> bool:
    return c.excluded is None and c.time_s <= k.deadline_s


def affordable(c: Candidate, k: Constraints) -> bool:
    cost = c.total_usd
    return k.budget_usd is None or (cost is not None and cost <= k.budget_usd)


def judge(cands: Sequence[Candidate], k: Constraints) -> list[Candidate]:
    """The candidates with the verdict's judgments recorded on each (whether it meets the deadline and is within
    the budget), so that nothing downstream judges again."""
    return [replace(c, meets_deadline=meets(c, k), affordable=affordable(c, k)) for c in cands]


def _source(c: Candidate) -> str:
    """Whether a candidate's throughput, and so its time, is measured or predicted."""
    return (c.figures.get("samples_per_s") or Figure(None, "?")).source


def _time(c: Candidate) -> str:
    """A candidate's time for the job, with where it comes from: '3.2 h (predicted)'."""
    return f"{span(c.time_s)} ({_source(c)})"


def _label(c: Candidate) -> str:
    how = {"own": "this machine's", "buy": "buy a", "rent": "rent"}[c.origin]
    return f"{how} {c.name} ({c.precision})"


def _reasons(best: Candidate, cands: Sequence[Candidate], cpu: Candidate | None, k: Constraints) -> list[str]:
    out = []
    if best.bound:
        res, share = max(best.bound.items(), key=lambda kv: kv[1])
        what = {"compute": "compute (its arithmetic units)", "memory": "memory bandwidth",
                "overhead": "per-kernel launch overhead (small kernels)"}[res]
        out.append(f"On {best.name}, {what} bounds the step: {share:.0%} of the predicted step time.")
    need, have = best.value("peak_mem_bytes"), best.value("memory_bytes")
    usable = best.value("usable_memory_bytes") or have
    if need and have and usable:
        of = (f"{format_bytes(usable)} usable ({format_bytes(have - usable)} reserved for the runtime)"
              if usable < have else format_bytes(have))
        out.append(f"Memory: at batch {best.batch_size} the job needs about {format_bytes(need)} of {of} on "
                   f"{best.name}: {'fits' if need <= usable else 'does NOT fit'}.")
    fp32 = best.value("fp32_samples_per_s")
    sps = best.value("samples_per_s")
    if fp32 and sps and best.precision != "fp32":
        out.append(f"Mixed precision ({best.precision}) on {'tensor cores' if best.kind == 'gpu' else 'AMX/AVX512'} "
                   f"buys {sps / fp32:.2f}x over fp32 on {best.name}.")
    consumers = [c for c in cands if c.consumer and c.excluded is None]
    if consumers:
        c = min(consumers, key=lambda c: c.time_s)
        note = next((n for n in c.notes if "accumulate" in n), "")
        out.append(f"Consumer GPUs: the fastest, {c.name}, takes {_time(c)}"
                   + (f"; {note}" if note else "") + ".")
    f = best.figures.get("samples_per_s")
    low, high = best.value("samples_per_s_low"), best.value("samples_per_s_high")
    if f is not None and f.source == "predicted" and low and high and sps:
        why = best.figures["samples_per_s_low"].basis
        out.append(f"Uncertainty: {best.name}'s throughput is predicted: likely {low:,.0f}-{high:,.0f} samples/s "
                   f"({why}), so {span(best.time_s * sps / high)} to {span(best.time_s * sps / low)}.")
    elif f is not None:
        out.append(f"{best.name}'s throughput is {f.source} ({f.basis}).")
    if cpu is not None and cpu is not best:
        out.append(f"This machine's CPU would take {_time(cpu)}.")
    return out


def decide(cands: Sequence[Candidate], k: Constraints) -> Verdict:
    cpu = next((c for c in cands if c.origin == "own" and c.kind == "cpu"), None)
    deadline = span(k.deadline_s)
    if cpu is not None and meets(cpu, k):
        headline = (f"A CPU is enough: this machine's CPU finishes in {_time(cpu)}, within the "
                    f"{deadline} deadline ({k.deadline_basis}).")
        return Verdict("cpu-enough", headline, cpu.id, cpu.id, cpu.id, (), tuple(_reasons(cpu, cands, None, k)))
    ok = [c for c in cands if meets(c, k) and affordable(c, k)]
    usable = [c for c in cands if c.excluded is None and math.isfinite(c.time_s)]
    fastest_any = min(usable, key=lambda c: c.time_s, default=None)
    if ok:
        cheapest = min(ok, key=lambda c: (c.total_usd if c.total_usd is not None else math.inf, c.time_s))
        fastest = min(ok, key=lambda c: c.time_s)
        priced = [c for c in ok if c.value("job_cost_usd")]
        best = max(priced, key=lambda c: 1.0 / (c.value("job_cost_usd") or math.inf), default=cheapest)
        cpu_part = f"this machine's CPU would take {_time(cpu)}" if cpu else "no CPU was measured"
        headline = (f"A GPU is needed: {cpu_part}, past the {deadline} deadline ({k.deadline_basis}). Cheapest that "
                    f"meets it: {_label(cheapest)}, {_time(cheapest)} for {usd(cheapest.total_usd)}; "
                    f"fastest: {_label(fastest)}, {_time(fastest)}; best value: {_label(best)}, "
                    f"{usd(best.value('job_cost_usd'))} per job.")
        return Verdict("gpu-needed", headline, cheapest.id, fastest.id, best.id, (),
                       tuple(_reasons(fastest, cands, cpu, k) + _extrapolated((cheapest, fastest, best))))
    would = _what_would(cands, k, fastest_any)
    headline = (f"Nothing meets the {deadline} deadline ({k.deadline_basis})"
                + (f" within the ${k.budget_usd:,.0f} budget" if k.budget_usd is not None else "") + ".")
    return Verdict("nothing-meets", headline, None, None if fastest_any is None else fastest_any.id, None,
                   tuple(would), tuple(_reasons(fastest_any, cands, cpu, k)) if fastest_any else ())


def _is_extrapolated(c: Candidate) -> bool:
    f = c.figures.get("samples_per_s_low")
    return f is not None and "extrapolated" in f.basis


def _extrapolated(picks: Sequence[Candidate]) -> list[str]:
    """A reason naming the picks whose throughput is extrapolated: no calibration row is from their architecture."""
    names = list(dict.fromkeys(c.name for c in picks if _is_extrapolated(c)))
    if not names:
        return []
    return [f"Extrapolated: {', '.join(names)} {'is' if len(names) == 1 else 'are'} of an architecture no "
            "calibration row covers; the predicted throughput and its range come from how far the model missed on "
            "architectures it had never seen (leave-one-architecture-out), so treat "
            f"{'it' if len(names) == 1 else 'them'} as a rougher estimate."]


def _what_would(cands: Sequence[Candidate], k: Constraints, fastest: Candidate | None) -> list[str]:
    out = []
    if fastest is not None:
        out.append(f"A longer deadline: {_time(fastest)} is the fastest ({_label(fastest)}).")
    in_time = [c for c in cands if meets(c, k)]
    if in_time and k.budget_usd is not None:
        c = min(in_time, key=lambda c: c.total_usd if c.total_usd is not None else math.inf)
        out.append(f"A larger budget: {usd(c.total_usd)} gets {_label(c)}, {_time(c)}.")
    fp32_only = [c for c in cands if c.precision == "fp32" and c.kind == "gpu" and c.excluded is None]
    if fp32_only:
        out.append("Mixed precision (bf16/fp16 autocast) where a candidate ran at fp32.")
    unfit = [c for c in cands if c.fits is False]
    if unfit:
        out.append(f"A smaller batch: the job does not fit in memory at batch {unfit[0].batch_size} on "
                   f"{len(unfit)} candidate(s).")
    multi = [c for c in cands if c.origin == "rent" and c.gpus > 1 and c.excluded is None]
    if multi:
        c = min(multi, key=lambda c: c.time_s)
        out.append(f"More GPUs: {c.name} ({c.gpus} GPUs, data parallel) takes {_time(c)}.")
    elif fastest is not None:
        out.append("More GPUs in data parallel (no multi-GPU instance in the catalog for these devices).")
    return out
