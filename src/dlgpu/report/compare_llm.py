"""The LLM figures of a comparison: for each measured (or predicted) LLM result, time per output token (TPOT),
time to first token (TTFT), tokens/s per sequence and in total, and energy per token; the chart of decode tokens/s
per weight format; and, where two runs measured the same LLM configuration, the ratio of their figures.

Every figure is arithmetic on what the result stores: an LLM workload (family ``llm``, ``workloads/llm.py``)
counts its samples in tokens, so

- ``decode`` (one new token per sequence per step against a KV cache of ``context_len`` tokens; the batch counts
  sequences): TPOT = the median step time; tokens/s per sequence = 1 / TPOT; tokens/s in total = batch / TPOT;
- ``infer`` (the prefill of prompts of ``prompt_len`` tokens; the batch counts tokens, a multiple of
  ``prompt_len``): TTFT = the median step time (every prompt of the batch gets its first token at the end of that
  one step; one prompt at the default batch); tokens/s = batch / TTFT;
- energy per token = the result's ``energy_j_per_sample`` (gross: idle draw included), labelled by its
  ``energy_source``; no figure where telemetry had none.

A result is an LLM result where its workload is of family ``llm``, where it states its stored weight format
(``settings["weights"]``) or where it ran on a runtime other than PyTorch (``runtime``, e.g. llama.cpp)."""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from dlgpu.results.vocab import TABULAR_RUNTIMES

from .model import LLM_SECTION, Bar, BarChart, Cell, Column, Table

if TYPE_CHECKING:
    from .compare import Entry

LLM_TASKS = ("decode", "infer")
DEFAULT_RUNTIME = "pytorch"
LENGTHS = ("context_len", "prompt_len")
MEMORY_KINDS: dict[str, str | None] = {"allocator-peak": None, "process-peak-rss": "process RSS",
                                       "process-peak-rss-delta": "process RSS increase"}
"""How a result's ``peak_mem_kind`` reads beside its peak memory (the allocator's peak, the default, says nothing)."""
LOG_SPAN = 30.0
"""The decode chart uses a log scale where its largest bar is more than this many times its smallest."""


@functools.lru_cache(maxsize=256)
def is_llm_workload(name: str) -> bool:
    """Whether ``name`` is a registered workload of family ``llm`` (False for names this dlgpu does not know)."""
    from dlgpu.errors import BadInput
    from dlgpu.workloads import get_workload
    from dlgpu.workloads.llm import FAMILY

    try:
        return get_workload(name).family == FAMILY
    except BadInput:
        return False


def _length(r: Mapping[str, Any], key: str) -> int | None:
    """``context_len``/``prompt_len`` of a result: its overrides, else the parameters it ran with, else its settings."""
    settings = r.get("settings") or {}
    for where in (r.get("overrides"), settings.get("params"), settings):
        if isinstance(where, Mapping) and where.get(key) is not None:
            try:
                return int(where[key])
            except (TypeError, ValueError):
                return None
    return None


def llm_fields(r: Mapping[str, Any], workload: str) -> dict[str, Any]:
    """The LLM fields of a comparison entry from a stored result or prediction (a dict): its runtime always, the
    rest where it is an LLM result."""
    settings = r.get("settings") or {}
    runtime = str(r.get("runtime") or settings.get("runtime") or DEFAULT_RUNTIME)
    got = settings.get("weights")
    weights: Mapping[str, Any] = got if isinstance(got, Mapping) else {}
    if runtime in TABULAR_RUNTIMES or (runtime == DEFAULT_RUNTIME and not weights and not is_llm_workload(workload)):
        return {"runtime": runtime}
    return {"runtime": runtime, "llm": True, "weight_format": str(weights.get("format") or r.get("precision")),
            "context_len": _length(r, "context_len"), "prompt_len": _length(r, "prompt_len"),
            "energy_source": r.get("energy_source"), "peak_mem_kind": r.get("peak_mem_kind")}


# --- the figures of one entry ------------------------------------------------------------------------------------


def _ok(x: float | None) -> bool:
    return x is not None and math.isfinite(x) and x > 0


def sequences(e: Entry) -> int | None:
    """Sequences per step: the batch for decode; prompts (batch / prompt_len) for the prefill."""
    if e.task == "decode":
        return e.batch
    if e.prompt_len and e.batch % e.prompt_len == 0:
        return e.batch // e.prompt_len
    return None


def tpot_s(e: Entry) -> float | None:
    """Time per output token, s: the median decode step (each sequence gets one token per step)."""
    return e.step_s if e.task == "decode" and _ok(e.step_s) else None


def ttft_s(e: Entry) -> float | None:
    """Time to first token, s: the median prefill step (all the batch's prompts at once)."""
    return e.step_s if e.task == "infer" and _ok(e.step_s) else None


def tokens_per_s(e: Entry) -> float | None:
    """Tokens/s in total: batch (tokens per step) / median step time."""
    return e.batch / e.step_s if _ok(e.step_s) else None


def tokens_per_s_per_sequence(e: Entry) -> float | None:
    """Decode tokens/s of one sequence: 1 / TPOT. None for the prefill."""
    t = tpot_s(e)
    return None if t is None else 1.0 / t


def energy_source(e: Entry) -> str | None:
    """``measured`` or ``estimated`` where the result has an energy figure from telemetry, else None."""
    src = (e.energy_source or "").lower()
    if src.startswith("measured"):
        return "measured"
    if src.startswith("estimated"):
        return "estimated"
    return None


def j_per_token(e: Entry) -> float | None:
    """Energy per token, J: the result's energy per sample (a sample is a token) where telemetry measured or
    estimated it; None (no figure, never zero) elsewhere."""
    v = e.j_per_sample
    if energy_source(e) is None or v is None or not math.isfinite(v):
        return None
    return float(v)


# --- tables and chart -------------------------------------------------------------------------------------------


def _t(text: str | None) -> Cell:
    return Cell(text, "text")


def model_name(e: Entry) -> str:
    """The workload with the overrides it ran with, but the lengths (they have their own columns)."""
    rest = ",".join(part for part in e.overrides.split(",") if part and part.split("=", 1)[0] not in LENGTHS)
    return e.workload + (f" ({rest})" if rest else "")


def length(e: Entry) -> int | None:
    """The length that shapes the step: context_len for decode, prompt_len for the prefill."""
    return e.context_len if e.task == "decode" else e.prompt_len


def _format(e: Entry) -> str:
    return e.weight_format or e.precision


def task_name(e: Entry) -> str:
    return "decode" if e.task == "decode" else "infer (prefill)"


def flags(e: Entry) -> str | None:
    out = [f for f, on in (("does not fit", e.fits is False), ("contended", e.contended), ("slowed", e.slowed),
                           ("noisy", e.noisy), ("throttled", e.throttled)) if on]
    if e.runs > 1 and e.runs_low is not None and e.runs_high is not None:
        out.append(f"median of {e.runs} runs, {e.runs_low:.3g}-{e.runs_high:.3g} tokens/s")
    if e.contended_left_out:
        out.append(f"{e.contended_left_out} contended run{'s' if e.contended_left_out > 1 else ''} left out")
    return ", ".join(out) or None


def _src(value: float | None, source: str | None) -> str | None:
    return source if value is not None else None


def _order(e: Entry) -> tuple[Any, ...]:
    return (model_name(e), e.runtime, LLM_TASKS.index(e.task), e.label, _format(e), e.batch, e.source)


def llm_entries(entries: Sequence[Entry]) -> list[Entry]:
    return sorted((e for e in entries if e.llm and e.task in LLM_TASKS), key=_order)


LENGTH_TITLE = "context (decode) / prompt (prefill), tokens"
LLM_CAPTION = ("Samples are tokens. decode: one new token per sequence per step against a KV cache of 'context' "
               "tokens, batch = sequences; TPOT (time per output token) = the median decode step time; tokens/s per "
               "sequence = 1 / TPOT; tokens/s total = batch / TPOT. infer (prefill): one forward pass over 'prompt'-"
               "token prompts, batch = tokens (sequences = batch / prompt); TTFT (time to first token) = the median "
               "prefill step time, every prompt of the batch at once; tokens/s = batch / TTFT. Energy per token = "
               "the run's gross energy per sample (idle draw included), measured by a sensor or estimated as TDP x "
               "utilization (energy source); – where telemetry had no figure.")


def llm_table(entries: Sequence[Entry]) -> Table:
    rows = []
    for e in llm_entries(entries):
        tpot, ttft, tps, per_seq = tpot_s(e), ttft_s(e), tokens_per_s(e), tokens_per_s_per_sequence(e)
        jpt = j_per_token(e)
        esrc = energy_source(e)
        mem_flag = MEMORY_KINDS.get(e.peak_mem_kind or "", e.peak_mem_kind)
        rows.append((
            _t(model_name(e)), _t(e.runtime), _t(_format(e)), _t(e.label), _t(e.source), _t(task_name(e)),
            Cell(e.batch, ""), Cell(sequences(e), ""),
            Cell(length(e), ""),
            Cell(tpot, "s", _src(tpot, e.source), spread=e.spread_s if tpot is not None else None),
            Cell(ttft, "s", _src(ttft, e.source), spread=e.spread_s if ttft is not None else None),
            Cell(per_seq, "tokens/s", _src(per_seq, e.source)),
            Cell(tps, "tokens/s", _src(tps, e.source), low=e.low, high=e.high),
            Cell(jpt, "J/token", _src(jpt, esrc)), _t(e.energy_source if e.source == "measured" else None),
            Cell(e.peak_mem_bytes, "bytes", _src(e.peak_mem_bytes, e.source), flag=mem_flag),
            _t(flags(e))))
    return Table(
        id="llm", title="LLM inference: TTFT, TPOT, tokens/s and energy per token", caption=LLM_CAPTION,
        columns=(Column("model", "model"), Column("runtime", "runtime"), Column("weights", "weight format"),
                 Column("device", "device"), Column("source", "source"), Column("task", "task"),
                 Column("batch", "batch", ""), Column("sequences", "sequences", ""),
                 Column("length", LENGTH_TITLE, ""),
                 Column("tpot", "TPOT (time per output token)", "s"), Column("ttft", "TTFT (time to first token)", "s"),
                 Column("tps_seq", "tokens/s per sequence", "tokens/s"), Column("tps", "tokens/s total", "tokens/s"),
                 Column("j_token", "energy per token (J/token)", "J/token"), Column("energy_source", "energy source"),
                 Column("peak_mem", "peak memory", "bytes"), Column("flags", "flags")),
        rows=tuple(rows),
        notes=("TPOT and TTFT: median ± IQR of the timed steps (a prediction: its step time); tokens/s: from that "
               "median and the batch, as above.",
               "peak memory: the allocator's peak on a GPU; on a CPU the process's peak resident set (process RSS), or "
               "for llama.cpp how much it grew while the model loaded and ran (process RSS increase)."),
        section=LLM_SECTION)


def decode_chart(entries: Sequence[Entry]) -> BarChart:
    """Decode tokens/s (total over the batch) per weight format: one group per model, batch and context; one bar per
    weight format (and runtime where not PyTorch), with the device beside it where the chart has several."""
    decode = [e for e in llm_entries(entries) if e.task == "decode" and tokens_per_s(e) is not None]
    several = len({e.label for e in decode}) > 1
    bars = []
    for e in decode:
        group = f"{model_name(e)} b{e.batch}" + (f" ctx {e.context_len}" if e.context_len else "")
        label = _format(e) + ("" if e.runtime == DEFAULT_RUNTIME else f" ({e.runtime})")
        bars.append(Bar(group, f"{label} · {e.label}" if several else label, tokens_per_s(e) or 0.0, e.source))
    values = [b.value for b in bars]
    log = bool(values) and max(values) > LOG_SPAN * min(values)
    return BarChart("llm_decode_tokens", "Decode tokens/s per weight format (total over the batch's sequences)",
                    "tokens/s", log, tuple(bars), section=LLM_SECTION)


def config_key(e: Entry) -> tuple[Any, ...]:
    """What makes two LLM results the same configuration: model and its other overrides, runtime, weight format,
    task, batch and the length that shapes the step."""
    return (model_name(e), e.runtime, _format(e), e.task, e.batch, length(e))


RATIO_CAPTION = ("Where two runs (or two devices) measured the same LLM configuration (model, runtime, weight format, "
                 "task, batch and context or prompt length): each against the first run listed that has it (A). "
                 "tokens/s B/A above 1 and TPOT/TTFT B/A below 1 mean B is faster. Each run's own figures, before "
                 "repeated runs are reconciled.")


def ratio_table(entries: Sequence[Entry]) -> Table:
    """``entries`` in run order, measured ones as each run stored them (not reconciled)."""
    groups: dict[tuple[Any, ...], list[Entry]] = {}
    for e in entries:
        if e.llm and e.task in LLM_TASKS and e.source == "measured" and tokens_per_s(e) is not None:
            groups.setdefault(config_key(e), []).append(e)
    rows = []
    for key in sorted(groups, key=lambda k: tuple(str(x) for x in k)):
        a, *others = groups[key]
        for b in others:
            if (b.run_id, b.key) == (a.run_id, a.key):
                continue
            ta, tb = tokens_per_s(a), tokens_per_s(b)
            la, lb = a.step_s, b.step_s
            rows.append((
                _t(model_name(a)), _t(a.runtime), _t(_format(a)), _t(task_name(a)), Cell(a.batch, ""),
                Cell(length(a), ""), _t(f"{a.label} · run {a.run_id}"), _t(f"{b.label} · run {b.run_id}"),
                Cell(ta, "tokens/s", "measured"), Cell(tb, "tokens/s", "measured"),
                Cell(None if not ta or not tb else tb / ta, "x", "computed"),
                Cell(la, "s", "measured", spread=a.spread_s), Cell(lb, "s", "measured", spread=b.spread_s),
                Cell(lb / la if _ok(la) and _ok(lb) else None, "x", "computed"),
                _t(", ".join(f for f in (flags(a) and f"A: {flags(a)}", flags(b) and f"B: {flags(b)}") if f) or None)))
    return Table(
        id="llm_ratio", title="LLM runs compared: same configuration, B over A", caption=RATIO_CAPTION,
        columns=(Column("model", "model"), Column("runtime", "runtime"), Column("weights", "weight format"),
                 Column("task", "task"), Column("batch", "batch", ""),
                 Column("length", LENGTH_TITLE, ""),
                 Column("a", "A (device · run)"), Column("b", "B (device · run)"),
                 Column("tps_a", "tokens/s A", "tokens/s"), Column("tps_b", "tokens/s B", "tokens/s"),
                 Column("tps_ratio", "tokens/s B/A", "x"),
                 Column("lat_a", "TPOT / TTFT A", "s"), Column("lat_b", "TPOT / TTFT B", "s"),
                 Column("lat_ratio", "TPOT / TTFT B/A", "x"), Column("flags", "flags")),
        rows=tuple(rows), section=LLM_SECTION)


def llm_section(entries: Sequence[Entry], per_run: Sequence[Entry]) -> tuple[tuple[Table, ...], tuple[BarChart, ...]]:
    """The LLM tables and chart; nothing where no entry is an LLM result (the comparison is then as it was).
    ``entries`` reconciled, ``per_run`` as each run stored them, in run order."""
    if not llm_entries(entries):
        return (), ()
    tables: tuple[Table, ...] = (llm_table(entries),)
    ratios = ratio_table(per_run)
    if ratios.rows:
        tables += (ratios,)
    chart = decode_chart(entries)
    return tables, ((chart,) if chart.bars else ())
