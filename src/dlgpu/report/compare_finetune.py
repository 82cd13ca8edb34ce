"""The fine-tuning figures of a comparison (``dlgpu bench --task finetune --method ...``, ``measure.finetune``):
for each measured configuration (model, method with its LoRA rank and targets, weights dtype, optimizer,
checkpointing, seq_len, micro-batch x accumulation, device) its step time, tokens/s, samples/s, peak memory,
trainable and total parameters and the bytes of its tensors by kind; and, where several methods of the same model
were measured on one device at the same seq_len and batch, each against one baseline (full fine-tuning where it was
measured).

Every figure is what a result stores: a step is ``grad_accum`` micro-batches (forward, loss, backward) and one
optimizer step; the result's batch is micro-batch x grad_accum sequences, so

- step time = the median step time (± the IQR of the timed steps); samples/s = batch / step time;
- tokens/s = samples/s x tokens per sequence (``settings["tokens_per_step"] / settings["samples_per_step"]``, the
  seq_len), as the result's ``settings["tokens_per_s"]``;
- peak memory = ``peak_mem_bytes``: the process's peak resident set on a CPU (``peak_mem_kind`` process-peak-rss:
  the interpreter and PyTorch included), the allocator's peak on a GPU;
- frozen weights, trainable weights, gradients, optimizer state: the tensors' bytes after the first step
  (``settings``: ``base_weights_bytes``, ``trainable_weights_bytes``, ``gradients_bytes``, ``optimizer_state_bytes``).

A result is a fine-tuning result where its task is ``finetune`` (``results.vocab.FINETUNE_TASK``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from dlgpu.finetune.config import METHODS, SETTINGS, FinetuneConfig
from dlgpu.results.vocab import FINETUNE_TASK

from .model import FINETUNE_SECTION, Cell, Column, Table

if TYPE_CHECKING:
    from .compare import Entry

JOB_KEYS = frozenset({*SETTINGS, "method"})
"""``--set`` keys (and ``--method``) that are the fine-tuning job: shown in their own columns, not beside the model."""
TENSOR_KEYS = ("base_weights_bytes", "trainable_weights_bytes", "gradients_bytes", "optimizer_state_bytes")
MEMORY_KINDS: dict[str, str] = {"allocator-peak": "allocator peak", "process-peak-rss": "process peak RSS",
                                "process-peak-rss-delta": "process RSS increase"}
"""How a result's ``peak_mem_kind`` reads beside its peak memory."""
BASELINE_JOB = {"weights_dtype": "bf16", "optimizer": "adamw", "checkpointing": False}
"""Among several measured configurations of the baseline method, the one nearest these (the job's defaults) is it."""


def _int(value: Any) -> int | None:
    try:
        return None if value is None or isinstance(value, bool) else int(value)
    except (TypeError, ValueError):
        return None


def _bool(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).strip().lower() in ("true", "1", "yes", "on")


def finetune_fields(r: Mapping[str, Any]) -> dict[str, Any]:
    """The fine-tuning fields of a comparison entry from a stored bench result (a dict): the job as measured
    (``settings["finetune"]``, else what its overrides and settings say) and the figures its settings hold; nothing
    where the result is not a fine-tuning one."""
    if r.get("task") != FINETUNE_TASK:
        return {}
    settings: Mapping[str, Any] = r.get("settings") or {}
    got = settings.get("finetune")
    job: dict[str, Any] = {**FinetuneConfig().to_dict(), **(r.get("overrides") or {}),
                           **(got if isinstance(got, Mapping) else {})}
    job.pop("extra", None)
    for key in ("method", "weights_dtype", "optimizer"):
        if settings.get(key) is not None:
            job[key] = settings[key]
    for key in ("seq_len", "micro_batch", "grad_accum"):
        if _int(settings.get(key)) is not None:
            job[key] = _int(settings[key])
    if isinstance(job.get("lora_targets"), str):
        job["lora_targets"] = [t for t in str(job["lora_targets"]).split(",") if t]
    memory = settings.get("memory")
    tokens, samples = _int(settings.get("tokens_per_step")), _int(settings.get("samples_per_step"))
    return {"finetune": {
        "job": job,
        "tokens_per_sample": tokens / samples if tokens and samples else _int(job.get("seq_len")),
        "autocast_dtype": settings.get("autocast_dtype"),
        "trainable_parameters": _int(settings.get("trainable_parameters")),
        "total_parameters": _int(settings.get("total_parameters")),
        **{k: _int(settings.get(k)) for k in TENSOR_KEYS},
        "rss_before_build_bytes": _int(memory.get("rss_before_build_bytes")) if isinstance(memory, Mapping) else None,
        "peak_mem_kind": r.get("peak_mem_kind"),
    }}


# --- an entry's configuration -----------------------------------------------------------------------------------


def job(e: Entry) -> dict[str, Any]:
    return dict((e.finetune or {}).get("job") or {})


def method(e: Entry) -> str:
    return str(job(e).get("method") or "")


def method_text(e: Entry) -> str:
    """'full', 'freeze (top 2 layers)', 'LoRA r=8 q_proj,v_proj', 'QLoRA r=8 q_proj,v_proj (NF4 + double quant)'."""
    j = job(e)
    m = method(e)
    adapters = f"r={j.get('lora_rank')} {','.join(str(t) for t in j.get('lora_targets') or ())}"
    if m == "lora":
        return f"LoRA {adapters}"
    if m == "qlora":
        return f"QLoRA {adapters} (NF4{' + double quant' if _bool(j.get('double_quant')) else ''})"
    if m == "freeze":
        return f"freeze (top {j.get('freeze_layers')} layers)"
    return m or "?"


def weights_text(e: Entry) -> str:
    """The weights' dtype: 'bf16' (bf16-true), 'fp32 + bf16 autocast' (mixed precision)."""
    dtype = str(job(e).get("weights_dtype") or e.precision)
    auto = {"bfloat16": "bf16", "float16": "fp16"}.get(str((e.finetune or {}).get("autocast_dtype")))
    return f"{dtype} + {auto} autocast" if auto else dtype


def seq_len(e: Entry) -> int | None:
    return _int(job(e).get("seq_len"))


def micro_batch(e: Entry) -> int:
    return _int(job(e).get("micro_batch")) or e.batch


def grad_accum(e: Entry) -> int:
    return _int(job(e).get("grad_accum")) or 1


def batch_text(e: Entry) -> str:
    """'2 x 4': micro-batch x accumulation (their product: sequences per optimizer step)."""
    return f"{micro_batch(e)} x {grad_accum(e)}"


def model_name(e: Entry) -> str:
    """The workload with the overrides it ran with, but the job's (they have their own columns)."""
    rest = ",".join(part for part in e.overrides.split(",") if part and part.split("=", 1)[0] not in JOB_KEYS)
    return e.workload + (f" ({rest})" if rest else "")


def describe(e: Entry) -> str:
    """A configuration in one line: method, weights, optimizer, checkpointing ('LoRA r=8 q_proj,v_proj, bf16,
    adamw')."""
    j = job(e)
    return (f"{method_text(e)}, {weights_text(e)}, {j.get('optimizer')}"
            + (", checkpointing" if _bool(j.get("checkpointing")) else ""))


def _job_key(e: Entry) -> tuple[Any, ...]:
    """The job's settings that change what is measured (a method's own options only for that method)."""
    j, m = job(e), method(e)
    key: list[Any] = [m, j.get("weights_dtype"), j.get("optimizer"), _bool(j.get("checkpointing")),
                      _int(j.get("seq_len")), _int(j.get("micro_batch")), _int(j.get("grad_accum")),
                      _int(j.get("gpus")), j.get("sharding"), j.get("offload")]
    if m in ("lora", "qlora"):
        key += [_int(j.get("lora_rank")), _int(j.get("lora_alpha")), tuple(str(t) for t in j.get("lora_targets") or ())]
    if m == "qlora":
        key.append(_bool(j.get("double_quant")))
    if m == "freeze":
        key.append(_int(j.get("freeze_layers")))
    return tuple(key)


def config_key(e: Entry) -> tuple[Any, ...]:
    """What makes two fine-tuning results the same configuration (``compare.reconcile`` groups by it with the task,
    precision, batch, device and runtime): the model with its other overrides and the job as measured, whether its
    settings were spelled out or left at their defaults."""
    return (model_name(e), _job_key(e))


# --- an entry's figures -----------------------------------------------------------------------------------------


def _ok(x: float | None) -> bool:
    return x is not None and x > 0


def tokens_per_s(e: Entry) -> float | None:
    """samples/s x tokens per sequence."""
    per = (e.finetune or {}).get("tokens_per_sample")
    return e.sps * float(per) if _ok(e.sps) and per else None


def figure(e: Entry, key: str) -> int | None:
    return _int((e.finetune or {}).get(key))


def tensor_bytes(e: Entry) -> int | None:
    """Frozen + trainable weights + gradients + optimizer state (None where one is missing)."""
    parts = [figure(e, k) for k in TENSOR_KEYS]
    return None if any(p is None for p in parts) else sum(p for p in parts if p is not None)


def memory_kind(e: Entry) -> str | None:
    kind = (e.finetune or {}).get("peak_mem_kind") or e.peak_mem_kind
    return MEMORY_KINDS.get(str(kind), str(kind)) if kind else None


def peak_above_start(e: Entry) -> float | None:
    """A CPU's peak resident set minus the process's before the model was built (the interpreter and PyTorch)."""
    start = figure(e, "rss_before_build_bytes")
    kind = (e.finetune or {}).get("peak_mem_kind") or e.peak_mem_kind
    if kind != "process-peak-rss" or e.peak_mem_bytes is None or not start:
        return None
    return float(e.peak_mem_bytes) - start


def flags(e: Entry) -> str | None:
    out = [f for f, on in (("contended", e.contended), ("slowed", e.slowed), ("noisy", e.noisy),
                           ("throttled", e.throttled)) if on]
    per = (e.finetune or {}).get("tokens_per_sample") or 1
    if e.runs > 1 and e.runs_low is not None and e.runs_high is not None:
        out.append(f"median of {e.runs} runs, {e.runs_low * per:.3g}-{e.runs_high * per:.3g} tokens/s")
    if e.contended_left_out:
        out.append(f"{e.contended_left_out} contended run{'s' if e.contended_left_out > 1 else ''} left out")
    return ", ".join(out) or None


def _order(e: Entry) -> tuple[Any, ...]:
    m = method(e)
    return (model_name(e), e.label, seq_len(e) or 0, e.batch, micro_batch(e),
            METHODS.index(m) if m in METHODS else len(METHODS), describe(e), e.run_id)


def finetune_entries(entries: Sequence[Entry]) -> list[Entry]:
    """The measured fine-tuning entries, by model, device, seq_len, batch and method."""
    return sorted((e for e in entries if e.finetune is not None and e.source == "measured"), key=_order)


# --- tables -----------------------------------------------------------------------------------------------------


def _t(text: str | None) -> Cell:
    return Cell(text, "text")


def _m(value: float | None, unit: str, **kw: Any) -> Cell:
    return Cell(value, unit, "measured" if value is not None else None, **kw)


def _c(value: float | None, unit: str) -> Cell:
    return Cell(value, unit, "computed" if value is not None else None)


CAPTION = ("One row per measured fine-tuning configuration. A sample is one sequence of seq_len tokens; a step is "
           "grad_accum micro-batches (forward, loss, backward) and one optimizer step: micro-batch x accumulation "
           "sequences. Step time = the median of the timed steps (± IQR); samples/s = sequences per step / step "
           "time; tokens/s = samples/s x seq_len. Peak memory: the process's peak resident set on a CPU (the "
           "interpreter and PyTorch included), the allocator's peak on a GPU.")


def finetune_table(entries: Sequence[Entry]) -> Table:
    rows = []
    for e in finetune_entries(entries):
        j = job(e)
        rows.append((
            _t(model_name(e)), _t(method_text(e)), _t(weights_text(e)), _t(str(j.get("optimizer") or "")),
            _t("yes" if _bool(j.get("checkpointing")) else "no"), Cell(seq_len(e), ""), _t(batch_text(e)),
            _t(e.label),
            _m(e.step_s, "s", spread=e.spread_s), _m(tokens_per_s(e), "tokens/s"), _m(e.sps, "samples/s"),
            _m(e.peak_mem_bytes, "bytes", flag=memory_kind(e)),
            _m(figure(e, "trainable_parameters"), ""), _m(figure(e, "total_parameters"), ""),
            _t(flags(e))))
    return Table(
        id="finetune", title="Fine-tuning: step time, tokens/s and peak memory", caption=CAPTION,
        columns=(Column("model", "model"), Column("method", "method"), Column("weights", "weights"),
                 Column("optimizer", "optimizer"), Column("checkpointing", "checkpointing"),
                 Column("seq_len", "seq_len", ""), Column("batch", "micro-batch x accumulation"),
                 Column("device", "device"),
                 Column("step", "step time", "s"), Column("tps", "tokens/s", "tokens/s"),
                 Column("sps", "samples/s", "samples/s"), Column("peak_mem", "peak memory", "bytes"),
                 Column("trainable", "trainable parameters", ""), Column("total", "total parameters", ""),
                 Column("flags", "flags")),
        rows=tuple(rows),
        notes=("step time: median ± IQR of the timed steps; tokens/s and samples/s from that median (the median of "
               "several runs' samples/s where one configuration was measured more than once).",),
        section=FINETUNE_SECTION)


MEMORY_CAPTION = ("The same configurations: the bytes of the tensors after the first step, as the run measured them "
                  "(frozen weights, trainable weights, their gradients, the optimizer's state; tensors = their sum), "
                  "beside the peak. On a CPU the peak is the process's resident set: 'peak above start' subtracts the "
                  "process before the model was built (the interpreter and PyTorch), leaving the model, the "
                  "activations and what the allocator keeps.")


def memory_table(entries: Sequence[Entry]) -> Table:
    rows = []
    for e in finetune_entries(entries):
        rows.append((
            _t(model_name(e)), _t(f"{describe(e)}, seq_len {seq_len(e)}, {batch_text(e)}"), _t(e.label),
            _m(e.peak_mem_bytes, "bytes", flag=memory_kind(e)), _c(peak_above_start(e), "bytes"),
            *(_m(figure(e, k), "bytes") for k in TENSOR_KEYS), _c(tensor_bytes(e), "bytes")))
    return Table(
        id="finetune_memory", title="Fine-tuning: what the memory holds", caption=MEMORY_CAPTION,
        columns=(Column("model", "model"), Column("configuration", "configuration"), Column("device", "device"),
                 Column("peak_mem", "peak memory", "bytes"), Column("peak_above_start", "peak above start", "bytes"),
                 Column("frozen_weights", "frozen weights", "bytes"),
                 Column("trainable_weights", "trainable weights", "bytes"),
                 Column("gradients", "gradients", "bytes"), Column("optimizer_state", "optimizer state", "bytes"),
                 Column("tensors", "tensors", "bytes")),
        rows=tuple(rows), section=FINETUNE_SECTION)


def _group_key(e: Entry) -> tuple[Any, ...]:
    return (model_name(e), e.key, seq_len(e), micro_batch(e), grad_accum(e))


def baseline(group: Sequence[Entry]) -> Entry:
    """The first method measured in the order full, freeze, lora, qlora; of its configurations the one nearest the
    job's defaults (``BASELINE_JOB``), then the first listed."""
    def rank(i_e: tuple[int, Entry]) -> tuple[int, int, int]:
        i, e = i_e
        m, j = method(e), job(e)
        near = sum(_bool(j.get(k)) == v if isinstance(v, bool) else j.get(k) == v for k, v in BASELINE_JOB.items())
        return (METHODS.index(m) if m in METHODS else len(METHODS), -near, i)
    return min(enumerate(group), key=rank)[1]


def _ratio(b: float | None, a: float | None) -> float | None:
    return b / a if _ok(a) and _ok(b) and a is not None and b is not None else None


RATIO_CAPTION = (
    "Where several configurations of one model were measured on one device at the same seq_len and micro-batch x "
    "accumulation: each (B) against one baseline (A), full fine-tuning where it was measured (at bf16 weights with "
    "adamw and no checkpointing where several were), else the first method measured in the order freeze, lora, qlora. "
    "Step time B/A below 1 and tokens/s B/A above 1 mean B is faster; memory B/A below 1 means B needs less. Tensors = "
    "frozen + trainable weights + gradients + optimizer state; on a CPU the peak is the process's resident set, the "
    "interpreter and PyTorch included, so the tensors' ratio is the one that shows what the method saves.")


def ratio_table(entries: Sequence[Entry]) -> Table:
    """``entries`` reconciled: one per configuration."""
    groups: dict[tuple[Any, ...], list[Entry]] = {}
    for e in finetune_entries(entries):
        groups.setdefault(_group_key(e), []).append(e)
    rows = []
    for group in groups.values():
        if len(group) < 2:
            continue
        a = baseline(group)
        for b in group:
            if b is a:
                continue
            fl = ", ".join(f for f in (flags(a) and f"A: {flags(a)}", flags(b) and f"B: {flags(b)}") if f)
            rows.append((
                _t(model_name(a)), _t(a.label), Cell(seq_len(a), ""), _t(batch_text(a)),
                _t(describe(a)), _t(describe(b)),
                _m(a.step_s, "s", spread=a.spread_s), _m(b.step_s, "s", spread=b.spread_s),
                _c(_ratio(b.step_s, a.step_s), "x"), _c(_ratio(tokens_per_s(b), tokens_per_s(a)), "x"),
                _c(_ratio(b.peak_mem_bytes, a.peak_mem_bytes), "x"), _c(_ratio(tensor_bytes(b), tensor_bytes(a)), "x"),
                _c(_ratio(figure(b, "trainable_parameters"), figure(a, "trainable_parameters")), "x"),
                _t(fl or None)))
    return Table(
        id="finetune_ratio", title="Fine-tuning methods compared: B over A (the baseline)", caption=RATIO_CAPTION,
        columns=(Column("model", "model"), Column("device", "device"), Column("seq_len", "seq_len", ""),
                 Column("batch", "micro-batch x accumulation"),
                 Column("a", "A (baseline)"), Column("b", "B"),
                 Column("step_a", "step time A", "s"), Column("step_b", "step time B", "s"),
                 Column("step_ratio", "step time B/A", "x"), Column("tps_ratio", "tokens/s B/A", "x"),
                 Column("peak_ratio", "peak memory B/A", "x"), Column("tensors_ratio", "tensors B/A", "x"),
                 Column("trainable_ratio", "trainable parameters B/A", "x"), Column("flags", "flags")),
        rows=tuple(rows), section=FINETUNE_SECTION)


def finetune_section(entries: Sequence[Entry]) -> tuple[Table, ...]:
    """The fine-tuning tables; nothing where no entry is a measured fine-tuning result (the comparison is then as it
    was). ``entries`` reconciled."""
    if not finetune_entries(entries):
        return ()
    ratios = ratio_table(entries)
    return (finetune_table(entries), memory_table(entries), *((ratios,) if ratios.rows else ()))
