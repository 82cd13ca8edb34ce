"""``dlgpu advise MODEL --task finetune [--method M] --samples N --seq-len S --epochs E --deadline 12h``: can this
machine fine-tune the model in time, and if not, the cheapest GPU to buy or instance to rent that fits and meets the
deadline, per method (all four without ``--method``). Every figure is predicted by ``finetune`` (memory per GPU by
component, with each method's activations traced on fake tensors where the api hands the traces down, else the
formula: ``per_method``'s ``activations_source``; the step through the calibrated roofline, its operators traced on
fake tensors per method, micro-batch and checkpointing where the api hands a ``StepProfiles`` source down, else
written out: each candidate's ``profile_source``); this machine's CPU is predicted the same way from its peak, or
measured where a stored ``dlgpu bench --task finetune`` result of the same job exists. No torch here.

Each candidate runs the job in the setup that fits and is fastest: on one GPU as asked, else with gradient
checkpointing; on a rented instance of several GPUs data parallel (DDP), else ZeRO-2, else ZeRO-3 (each without and
with checkpointing), unless ``--set sharding`` says which. The micro-batch is ``-b`` where given, else the largest
power of two up to ``MAX_MICRO_BATCH`` that fits. A GPU without bf16 runs fp16 weights (unless ``--set
weights_dtype`` says otherwise)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from dlgpu.catalog import Catalog, GpuSpec
from dlgpu.errors import BadInput
from dlgpu.finetune.config import METHODS, FinetuneConfig, parse_finetune
from dlgpu.finetune.memory import Traces, finetune_memory, largest_micro_batch, trace_key
from dlgpu.finetune.model import FtModel, resolve_finetune_model
from dlgpu.finetune.perf import StepProfiles, StepTime, step_time, traced_profile
from dlgpu.finetune.predict import usable_of
from dlgpu.home import dlgpu_version, utc_now
from dlgpu.predict.roofline import Calibration, precision_reason
from dlgpu.units import format_duration

FINETUNE_ADVISE_SCHEMA = "dlgpu.finetune-advise/1"
MAX_MICRO_BATCH = 16
"""The largest micro-batch advise tries (sequences per GPU per forward): larger ones barely speed a step up."""
_ADAPTER_KEYS = ("lora_rank", "lora_alpha", "lora_targets", "double_quant")


@dataclass(frozen=True)
class Run:
    cfg: FinetuneConfig
    peak: int
    usable: int
    fits: bool
    step: StepTime | None

    @property
    def samples_per_s(self) -> float:
        return 0.0 if self.step is None else self.cfg.samples_per_step / self.step.step_time_s


def method_config(method: str, overrides: Mapping[str, str], micro_batch: int | None) -> FinetuneConfig:
    """The job for ``method`` from the user's ``--set`` keys, leaving out the keys another method owns (so that
    one ``--set lora_rank=16`` can be compared across all four methods)."""
    keep = {k: v for k, v in overrides.items()
            if not ((k in _ADAPTER_KEYS and method not in ("lora", "qlora"))
                    or (k == "freeze_layers" and method != "freeze"))}
    if method == "qlora" and keep.get("weights_dtype") == "fp32":
        keep.pop("weights_dtype")
    return parse_finetune(method, keep, micro_batch)


def _variants(cfg: FinetuneConfig, gpus: int, sharding_given: bool) -> list[FinetuneConfig]:
    if gpus == 1:
        base = [replace(cfg, gpus=1, sharding="none", offload="none")]
    elif sharding_given:
        base = [replace(cfg, gpus=gpus)]
    else:
        base = [replace(cfg, gpus=gpus, sharding=s) for s in ("ddp", "zero2", "zero3")]
    out = []
    for c in base:
        out.append(c)
        if not c.checkpointing:
            out.append(replace(c, checkpointing=True))
    return out


def best_run(model: FtModel, cfg: FinetuneConfig, gpu: GpuSpec, gpus: int, memory_bytes: int | None,
             cal: Calibration, catalog: Catalog, micro_batch_given: bool, sharding_given: bool,
             dtype_given: bool, traces: Traces | None = None, profiles: StepProfiles | None = None) -> Run | None:
    """The fastest setup that fits (module docstring); the first tried (the plainest) where none fits; None where
    the device cannot run the job's precision."""
    usable = usable_of(gpu, memory_bytes)
    if usable is None:
        return None
    if not dtype_given and cfg.weights_dtype == "bf16" and precision_reason(gpu, "bf16"):
        cfg = replace(cfg, weights_dtype="fp16")
    if precision_reason(gpu, "fp16" if cfg.weights_dtype == "fp16" else "bf16"):
        return None
    best: Run | None = None
    first: Run | None = None
    for v in _variants(cfg, gpus, sharding_given):
        if not micro_batch_given:
            most = largest_micro_batch(model, replace(v, micro_batch=1), usable, traces)
            if most < 1:
                if first is None:
                    first = Run(v, finetune_memory(model, replace(v, micro_batch=1), traces).peak_bytes, usable,
                                False, None)
                continue
            v = replace(v, micro_batch=1 << (min(most, MAX_MICRO_BATCH).bit_length() - 1))
        peak = finetune_memory(model, v, traces).peak_bytes
        if peak > usable:
            if first is None:
                first = Run(v, peak, usable, False, None)
            continue
        try:
            st = step_time(model, v, gpu, cal, catalog, traced_profile(profiles, model, v, gpu))
        except BadInput:
            continue
        run = Run(v, peak, usable, True, st)
        if best is None or run.samples_per_s > best.samples_per_s:
            best = run
    return best or first


def setup_text(cfg: FinetuneConfig) -> str:
    parts = [f"micro-batch {cfg.micro_batch}"]
    if cfg.grad_accum > 1:
        parts.append(f"x {cfg.grad_accum} accumulation")
    if cfg.checkpointing:
        parts.append("checkpointing")
    if cfg.weights_dtype != "bf16":
        parts.append(f"{cfg.weights_dtype} weights")
    if cfg.gpus > 1:
        parts.append(f"{cfg.gpus} GPUs {cfg.sharding}" + (f" + {cfg.offload} offload" if cfg.offload != "none" else ""))
    return ", ".join(parts)


def advise_finetune(catalog: Catalog, cal: Calibration, model_name: str, methods: Sequence[str] | None,
                    samples: float | None, seq_len: int | None, epochs: float | None, deadline_s: float | None,
                    overrides: Mapping[str, str], micro_batch: int | None = None,
                    sources: Sequence[str] = ("buy", "rent"), hardware: Sequence[str] = (),
                    budget_usd: float | None = None, this_machine: tuple[GpuSpec, int | None, str] | None = None,
                    stored: Mapping[str, Mapping[str, Any]] | None = None,
                    traces: Traces | None = None, profiles: StepProfiles | None = None) -> dict[str, Any]:
    """A ``dlgpu.finetune-advise/1`` document (module docstring). ``this_machine``: this machine's CPU as
    ``predict.targets.prediction_device("local")`` gives it; ``stored``: per method, this machine's stored
    ``dlgpu bench --task finetune`` record of the same job (``samples_per_s`` in sequences/s), if any; ``traces``:
    the activations traced on fake tensors by ``finetune.memory.trace_key`` (from the api), else the formula's;
    ``profiles``: each setup's step traced on fake tensors (``finetune.perf.StepProfiles``: one trace per method,
    micro-batch and checkpointing, cached), else the written-out profile."""
    if samples is None:
        raise BadInput("--task finetune needs --samples N (training sequences per epoch)", param="samples")
    if not samples > 0:
        raise BadInput(f"{samples:g}: must be a positive number of samples", param="samples")
    if epochs is not None and not epochs > 0:
        raise BadInput(f"{epochs:g}: must be a positive number of epochs", param="epochs")
    if seq_len is not None and seq_len <= 0:
        raise BadInput(f"--seq-len {seq_len}: must be a positive integer", param="overrides")
    if deadline_s is not None and not deadline_s > 0:
        raise BadInput(f"{deadline_s:g}: must be a positive duration", param="deadline_s")
    wanted = list(methods or METHODS)
    for m in wanted:
        if m.strip().lower() not in METHODS:
            raise BadInput(f"--method {m}: valid: {', '.join(METHODS)}", param="method")
    wanted = [m.strip().lower() for m in wanted]
    ov = dict(overrides)
    if seq_len is not None:
        ov["seq_len"] = str(seq_len)
    model = resolve_finetune_model(model_name)
    cfgs = {m: method_config(m, ov, micro_batch) for m in wanted}
    for c in cfgs.values():
        if c.seq_len > model.max_positions:
            raise BadInput(f"--seq-len {c.seq_len}: {model.id} takes at most {model.max_positions} tokens",
                           param="overrides")
    total_samples = samples * (epochs or 1.0)
    seq = next(iter(cfgs.values())).seq_len
    devices: list[tuple[str, str, GpuSpec, int, float | None, str, float | None]] = []
    if "buy" in sources:
        for g in catalog.gpus:
            devices.append((g.name, "buy", g, 1, g.launch_price_usd,
                            "launch price (catalog)" if g.launch_price_usd else "no price in the catalog", None))
    if "rent" in sources:
        for inst in catalog.cloud:
            try:
                g = catalog.gpu(inst.gpu_id)
            except (BadInput, KeyError):
                continue
            devices.append((f"{inst.provider} {inst.instance} ({inst.gpu_count}x {g.name})", "rent", g,
                            inst.gpu_count, None,
                            f"${inst.price_usd_per_hour:,.2f}/h on demand, {inst.price_date} (catalog)",
                            inst.price_usd_per_hour))
    want_hw = {h.lower() for h in hardware}
    if want_hw:
        devices = [d for d in devices if d[2].id.lower() in want_hw]
    cands: list[dict[str, Any]] = []
    for name, how, g, count, price, cost_basis, hourly in devices:
        if g.kind == "cpu" or not g.memory_bytes or not g.memory_bandwidth_bytes_per_s or not g.fp32_flops_per_s:
            continue
        for m, cfg in cfgs.items():
            run = best_run(model, cfg, g, count, g.memory_bytes, cal, catalog, micro_batch is not None,
                           "sharding" in ov, "weights_dtype" in ov, traces, profiles)
            if run is None:
                continue
            time_s = None if run.step is None else total_samples / run.samples_per_s
            job_cost = None if hourly is None or time_s is None else hourly * time_s / 3600
            meets = run.fits and time_s is not None and (deadline_s is None or time_s <= deadline_s)
            if budget_usd is not None and meets:
                spend = price if how == "buy" else job_cost
                meets = spend is not None and spend <= budget_usd
            cands.append({
                "name": name, "how": how, "hardware": g.id, "gpus": count, "method": m, "setup": setup_text(run.cfg),
                "config": run.cfg.to_dict(), "fits": run.fits, "peak_mem_bytes": run.peak, "usable_bytes": run.usable,
                "samples_per_s": run.samples_per_s if run.step else None,
                "tokens_per_s": run.samples_per_s * run.cfg.seq_len if run.step else None,
                "step_time_s": None if run.step is None else run.step.step_time_s,
                "step_time_complete": None if run.step is None else run.step.complete,
                "profile_source": None if run.step is None else run.step.profile_source,
                "time_s": time_s, "meets": meets, "price_usd": price, "price_usd_per_hour": hourly,
                "job_cost_usd": job_cost, "cost_basis": cost_basis})
    per_method: dict[str, dict[str, Any]] = {}
    for m in wanted:
        ok = [c for c in cands if c["method"] == m and c["meets"]]
        buy = [c for c in ok if c["how"] == "buy" and c["price_usd"] is not None]
        rent = [c for c in ok if c["how"] == "rent" and c["job_cost_usd"] is not None]
        per_method[m] = {
            "cheapest_buy": min(buy, key=lambda c: (c["price_usd"], c["time_s"]), default=None),
            "cheapest_rent": min(rent, key=lambda c: (c["job_cost_usd"], c["time_s"]), default=None),
            "fastest": min(ok, key=lambda c: c["time_s"], default=None),
            "fits_anywhere": any(c["fits"] for c in cands if c["method"] == m),
            **_activations(model, cfgs[m], traces)}
    here = _this_machine(model, cfgs, this_machine, stored or {}, total_samples, deadline_s, cal, catalog, traces,
                         profiles)
    job = (f"{samples:,.0f} samples x {epochs or 1:g} epoch(s) of {seq} tokens"
           + (f" within {format_duration(deadline_s)}" if deadline_s else ""))
    verdict = _verdict(model, per_method, here, deadline_s)
    return {
        "schema": FINETUNE_ADVISE_SCHEMA, "created_at": utc_now(), "dlgpu": dlgpu_version(), "task": "finetune",
        "model": model.id, "model_name": model.name, "methods": wanted,
        "job": {"samples": samples, "epochs": epochs or 1.0, "seq_len": seq, "deadline_s": deadline_s,
                "budget_usd": budget_usd, "description": job},
        "verdict": verdict, "per_method": per_method, "this_machine": here,
        "basis": ("every figure predicted by dlgpu.finetune: memory per GPU by component (sourced bytes per "
                  "parameter; activations traced on fake tensors with the method applied, else re-derived: "
                  "per_method's activations_source), the step through the calibrated roofline (its operators traced "
                  "on fake tensors, else written out: each candidate's profile_source); each device runs "
                  "the fastest setup that fits (checkpointing, DDP/ZeRO-2/ZeRO-3 over an instance's GPUs, the largest "
                  f"power-of-two micro-batch up to {MAX_MICRO_BATCH}); bought: one card at its launch price; rented: "
                  "the instance's hourly price x the job's time"),
        "candidates": sorted(cands, key=lambda c: (not c["fits"], not c["meets"], c["time_s"] or float("inf"))),
    }


def _activations(model: FtModel, cfg: FinetuneConfig, traces: Traces | None) -> dict[str, Any]:
    """Where a method's activations come from: ``activations_source`` (traced or formula) and its basis."""
    mem = finetune_memory(model, cfg, traces)
    return {"activations_source": mem.activations_source, "activations_basis": next(
        p.basis for p in mem.parts if p.key == "activations"), "trace_key": trace_key(cfg)}


def _this_machine(model: FtModel, cfgs: Mapping[str, FinetuneConfig], device: tuple[GpuSpec, int | None, str] | None,
                  stored: Mapping[str, Mapping[str, Any]], total_samples: float, deadline_s: float | None,
                  cal: Calibration, catalog: Catalog, traces: Traces | None = None,
                  profiles: StepProfiles | None = None) -> dict[str, Any]:
    """Each method on this machine: measured (a stored bench of the same job) or predicted from the CPU's peak
    through the roofline's CPU calibration; whether it fits its memory and meets the deadline."""
    if device is None:
        return {"device": None, "methods": [], "basis": "this machine not judged"}
    dev, memory_bytes, basis = device
    rows: list[dict[str, Any]] = []
    for m, cfg in cfgs.items():
        mem = finetune_memory(model, cfg, traces, cpu=dev.kind == "cpu")
        usable = usable_of(dev, memory_bytes)
        fits = None if usable is None else mem.peak_bytes <= usable
        rec = stored.get(m)
        if rec and rec.get("samples_per_s"):
            sps = float(rec["samples_per_s"])
            src, how = "measured", (f"median of {rec.get('_runs') or 1} stored `dlgpu bench --task finetune` run(s) "
                                    f"at micro-batch {rec.get('batch_size')}")
        else:
            try:
                st = step_time(model, cfg, dev, cal, catalog, traced_profile(profiles, model, cfg, dev))
            except BadInput as exc:
                rows.append({"method": m, "fits": fits, "peak_mem_bytes": mem.peak_bytes, "time_s": None,
                             "meets": None, "source": "not predicted", "basis": exc.message})
                continue
            sps = cfg.samples_per_step / st.step_time_s
            src, how = "predicted", ("from the CPU's peak through the roofline's CPU efficiencies (fitted to "
                                     f"`dlgpu bench` on CPUs); {st.profile_basis}; {basis}")
        time_s = total_samples / sps
        meets = bool(fits is not False and (deadline_s is None or time_s <= deadline_s))
        rows.append({"method": m, "fits": fits, "peak_mem_bytes": mem.peak_bytes, "usable_bytes": usable,
                     "samples_per_s": sps, "time_s": time_s, "meets": meets, "source": src, "basis": how})
    return {"device": dev.name, "memory_bytes": memory_bytes, "methods": rows,
            "basis": "this machine's CPU (no GPU here): " + basis}


def _verdict(model: FtModel, per_method: Mapping[str, Mapping[str, Any]], here: Mapping[str, Any],
             deadline_s: float | None) -> str:
    ok_here = [r for r in here.get("methods", []) if r.get("meets")]
    if ok_here:
        r = min(ok_here, key=lambda r: r["time_s"])
        return (f"This machine is enough: its CPU fine-tunes {model.name} with {r['method']} in "
                f"{format_duration(r['time_s'])} ({r['source']}), within the deadline.")
    lines = []
    rows = here.get("methods", [])
    if rows:
        fastest = min((r for r in rows if r.get("time_s")), key=lambda r: r["time_s"], default=None)
        if fastest is not None:
            lines.append(f"A GPU is needed: this machine's CPU ({here.get('device')}) would take "
                         f"{format_duration(fastest['time_s'])} with {fastest['method']} ({fastest['source']}"
                         + ("" if fastest.get("fits") is not False else "; and it does not fit its memory")
                         + ")" + (f", past the {format_duration(deadline_s)} deadline." if deadline_s else "."))
    for m, pm in per_method.items():
        buy, rent = pm["cheapest_buy"], pm["cheapest_rent"]
        if buy is None and rent is None:
            why = "nothing fits" if not pm["fits_anywhere"] else "nothing that fits meets the deadline"
            lines.append(f"{m}: {why}.")
            continue
        parts = []
        if buy:
            parts.append(f"buy {buy['name']} (${buy['price_usd']:,.0f}, {format_duration(buy['time_s'])})")
        if rent:
            parts.append(f"rent {rent['name']} (${rent['job_cost_usd']:,.0f} for the job, "
                         f"{format_duration(rent['time_s'])})")
        lines.append(f"{m}: cheapest that fits and meets it: " + "; ".join(parts) + ".")
    return " ".join(lines)
