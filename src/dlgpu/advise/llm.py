"""``dlgpu advise MODEL --task serve|generate``: can this LLM be served (or a text generated) at the rate asked,
on what, in which weight format, and at what cost. The candidates are catalog GPUs to buy (one card) and cloud
instances to rent (their GPUs as a llama.cpp layer split: the memory adds up, a token still passes the layers one
GPU after the other); each is predicted by ``llm.perf`` for the runtime the calibration covers (llama.cpp) with its
memory from ``llm.memory``. This machine's CPU is not predicted (no published CPU row calibrates it): the verdict
says so and gives the command that measures it. No torch here."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from dlgpu.catalog import Catalog, GpuSpec
from dlgpu.errors import BadInput
from dlgpu.home import dlgpu_version, utc_now
from dlgpu.llm.calibration import load_llm_calibration
from dlgpu.llm.cpu import LocalCpuRuns, fit_cpu
from dlgpu.llm.formats import WeightFormat, get_format, get_kv_format
from dlgpu.llm.memory import llm_memory, unified_memory_share
from dlgpu.llm.perf import backend, decode_step_s
from dlgpu.llm.predict import RUNTIME, SERVE_RUNTIME
from dlgpu.llm.workload import llm_work, resolve_model
from dlgpu.results import usable_memory_bytes

LLM_ADVISE_SCHEMA = "dlgpu.llm-advise/1"
DEFAULT_FORMATS = ("fp16", "q8_0", "q4_k_m")
"""Weight formats considered by default: what llama.cpp users download (GGUF F16, Q8_0, Q4_K_M)."""


@dataclass(frozen=True)
class LlmCandidate:
    name: str
    how: str  # buy | rent
    hardware: str
    gpus: int
    weight_format: str
    fits: bool
    need_bytes: int
    usable_bytes: int
    tokens_per_s_per_user: float
    tokens_per_s_total: float
    meets: bool
    cost_usd: float | None  # buy: the launch price of the cards; rent: per hour
    cost_basis: str
    extrapolated: bool  # no published row of the runtime on this backend: assumed efficiencies
    runtime: str = RUNTIME

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


RUNTIME_BACKENDS = ("cuda", "metal", "rocm")
"""The backends llama.cpp runs on among the catalog's devices (others, e.g. Gaudi or TPUs, are not candidates)."""


def usable_llm_memory(gpu: GpuSpec, count: int = 1) -> int:
    """What a model may use: a GPU's memory less the runtime's reserve; on Apple, the share of unified memory the GPU
    may wire (``llm.memory.unified_memory_share``)."""
    one = gpu.memory_bytes or 0
    return count * (unified_memory_share(one)[0] if backend(gpu) == "metal" else usable_memory_bytes(one))


def advise_llm(catalog: Catalog, model: str, task: str, users: int = 1, tokens_per_s: float | None = None,
               context: int = 4096, tokens: int | None = None, deadline_s: float | None = None,
               formats: Sequence[str] = (), kv_format: str = "fp16", sources: Sequence[str] = ("buy", "rent"),
               hardware: Sequence[str] = (), budget_usd: float | None = None,
               local: Mapping[str, Any] | None = None, output_tokens: int = 256,
               local_cpu: LocalCpuRuns | None = None) -> dict[str, Any]:
    """The verdict, the candidates that fit and meet the rate (cheapest, fastest), the smallest device that fits
    each format, and every candidate with its basis, as a ``dlgpu.llm-advise/1`` document. ``local``: this
    machine's stored ``dlgpu bench`` decode of the model on its CPU (``store.history.local_measurements``'s record),
    or None: then this machine is not judged, and the verdict says how to measure it. ``local_cpu``: this machine's
    CPU with its llama.cpp measurements (``llm.cpu``): where the stored decode does not meet the job, llama.cpp on
    this CPU is predicted from them in each format that fits its memory."""
    if task not in ("serve", "generate"):
        raise BadInput(f"--task {task}: an LLM job is serve (--users, --tokens-per-s) or generate (--tokens)",
                       param="task")
    if users <= 0:
        raise BadInput(f"--users {users}: must be a positive integer", param="users")
    if tokens_per_s is not None and tokens_per_s <= 0:
        raise BadInput(f"--tokens-per-s {tokens_per_s:g}: must be positive", param="tokens_per_s")
    if tokens is not None and tokens <= 0:
        raise BadInput(f"--tokens {tokens}: must be a positive integer", param="tokens")
    if task == "generate" and tokens is None:
        raise BadInput("--task generate needs --tokens N (the tokens to generate)", param="tokens")
    arch = resolve_model(model)
    if context <= 0 or context > arch.max_context:
        raise BadInput(f"--context {context}: {arch.id} takes 1 to {arch.max_context} tokens", param="context")
    fmts = [get_format(f) for f in (formats or DEFAULT_FORMATS)]
    kv = get_kv_format(kv_format)
    cal = load_llm_calibration()
    wanted = {h.lower() for h in hardware}
    devices: list[tuple[str, str, GpuSpec, int, float | None, str]] = []
    if "buy" in sources:
        for g in catalog.gpus:
            price = g.launch_price_usd
            basis = "launch price (catalog)" if price else "no price in the catalog"
            devices.append((g.name, "buy", g, 1, price, basis))
    if "rent" in sources:
        for c in catalog.cloud:
            try:
                g = catalog.gpu(c.gpu_id)
            except BadInput:
                continue
            devices.append((f"{c.provider} {c.instance} ({c.gpu_count}x {g.name})", "rent", g, c.gpu_count,
                            c.price_usd_per_hour, f"per hour on demand, {c.price_date} (catalog)"))
    if wanted:
        devices = [d for d in devices if d[2].id.lower() in wanted]
    cands: list[LlmCandidate] = []
    for name, how, g, count, cost, cost_basis in devices:
        if (backend(g) not in RUNTIME_BACKENDS or not g.memory_bandwidth_bytes_per_s or not g.memory_bytes
                or not (g.fp16_flops_per_s or g.fp32_flops_per_s)):
            continue
        e_mem, floor_s, e_pf, fitted = cal.get(RUNTIME, backend(g))
        for f in fmts:
            work = llm_work(arch, f.name, kv.name)
            mem = llm_memory(arch, f, kv, context, users)
            usable = usable_llm_memory(g, count)
            rate = 1.0 / decode_step_s(work, g, e_mem, floor_s, e_pf, users, context)
            fits = mem.total_bytes <= usable
            if task == "serve":
                meets = fits and (tokens_per_s is None or rate >= tokens_per_s)
            else:
                meets = fits and (deadline_s is None or (tokens or 0) / rate <= deadline_s)
            if budget_usd is not None and how == "buy" and (cost is None or cost > budget_usd):
                meets = False
            cands.append(LlmCandidate(name, how, g.id, count, f.name, fits, mem.total_bytes, usable, rate,
                                      rate * users, meets, cost, cost_basis, not fitted))
        if task == "serve" and backend(g) == "cuda":
            cands += _served(arch, g, name, how, count, cost, cost_basis, users, tokens_per_s, context,
                             output_tokens, budget_usd, cal.values)
    ok = [c for c in cands if c.meets]
    priced = [c for c in ok if c.cost_usd is not None]
    cheapest = {how: min((c for c in priced if c.how == how),
                         key=lambda c: (c.cost_usd or 0.0, -c.tokens_per_s_per_user), default=None)
                for how in ("buy", "rent")}
    fastest = max(ok, key=lambda c: c.tokens_per_s_per_user, default=None)
    smallest = {}
    for f in fmts:
        fitting = [c for c in cands if c.how == "buy" and c.weight_format == f.name and c.fits]
        best = min(fitting, key=lambda c: (c.usable_bytes, c.cost_usd or 0.0), default=None)
        smallest[f.name] = None if best is None else {"hardware": best.hardware, "name": best.name,
                                                      "need_bytes": best.need_bytes, "usable_bytes": best.usable_bytes}
    here = _this_machine(arch.id, local, task, users, tokens_per_s, tokens, deadline_s)
    if local_cpu is not None and not here.get("meets"):
        predicted = _this_cpu_llamacpp(arch, fmts, kv.name, context, local_cpu, task, users, tokens_per_s, tokens,
                                       deadline_s)
        if predicted is not None and (predicted["meets"] or here.get("source") != "measured"):
            here = predicted
    job = (f"serve {users} user{'s' if users > 1 else ''} at {context} tokens of context"
           + (f", {tokens_per_s:g} tokens/s each" if tokens_per_s else "") if task == "serve" else
           f"generate {tokens} tokens" + (f" within {deadline_s:g} s" if deadline_s else ""))
    if here.get("meets"):
        verdict = (f"A CPU is enough: this machine's CPU decodes {arch.name} at {here['tokens_per_s_per_user']:,.2f} "
                   f"tokens/s per user ({here['source']}, {here['precision']}"
                   + (f" with {here['runtime']}" if here.get("runtime") else "")
                   + f"; {here['basis']}), which meets the job.")
    elif ok:
        parts = [f"{'buy' if k == 'buy' else 'rent'} {c.name} ({c.weight_format}, {c.tokens_per_s_per_user:,.1f} "
                 f"tokens/s per user with {c.runtime}, ${c.cost_usd:,.2f}{'/h' if k == 'rent' else ''}"
                 f"{'; extrapolated: no published llama.cpp row on its backend' if c.extrapolated else ''})"
                 for k, c in cheapest.items() if c is not None]
        lead = (f"A GPU is needed to {job} with {arch.name}: this machine's CPU decodes "
                f"{here['tokens_per_s_per_user']:,.2f} tokens/s per user ({here['source']}"
                + (f", {here['precision']} with {here['runtime']}" if here.get("runtime") else "") + "), too slow."
                if here.get("source") in ("measured", "predicted") else
                f"A GPU is needed to {job} with {arch.name} unless this machine's CPU is measured to meet it "
                f"(`dlgpu bench -w {arch.id} --task decode -p bf16 -p int8`).")
        verdict = (lead + " Cheapest that fits and meets it: " + ("; ".join(parts) if parts else "none with a price")
                   + ".")
    else:
        names = ", ".join(f.name for f in fmts)
        verdict = f"No candidate fits and meets the rate to {job} with {arch.name} in {names}."
    return {
        "schema": LLM_ADVISE_SCHEMA, "created_at": utc_now(), "dlgpu": dlgpu_version(), "model": arch.id,
        "model_name": arch.name, "task": task, "users": users, "tokens_per_s": tokens_per_s, "context": context,
        "tokens": tokens, "deadline_s": deadline_s, "runtime": RUNTIME, "kv_format": kv.name,
        "formats": [f.name for f in fmts], "verdict": verdict,
        "cheapest": {k: None if c is None else c.to_dict() for k, c in cheapest.items()},
        "fastest": None if fastest is None else fastest.to_dict(),
        "smallest_that_fits": smallest,
        "this_machine": here,
        "basis": (f"every speed predicted: {RUNTIME} decoding {users} sequence(s) at {context} tokens of context, "
                  f"and on NVIDIA GPUs {SERVE_RUNTIME} serving {users} request(s) in flight of "
                  f"{max(1, context - output_tokens)} + {output_tokens} tokens, their prefills included "
                  "(leave-one-device-out errors in `dlgpu calibrate --llm`); memory = weights + KV cache "
                  f"({kv.name}; fp8 with FP8 weights) for every user + one prefill chunk's activations; a rented "
                  f"instance's GPUs as a layer split for {RUNTIME} (memory adds up, speed is one GPU's) and tensor "
                  f"parallel for {SERVE_RUNTIME}; Apple GPUs with the share of unified memory macOS lets them wire; "
                  "candidates marked extrapolated (AMD: no published llama.cpp ROCm row) use assumed efficiencies"),
        "candidates": [c.to_dict() for c in sorted(cands, key=lambda c: (not c.meets, -c.tokens_per_s_per_user))],
    }


def _this_machine(model: str, local: Mapping[str, Any] | None, task: str, users: int, tokens_per_s: float | None,
                  tokens: int | None, deadline_s: float | None) -> dict[str, Any]:
    """This machine's CPU for the job, from its stored decode measurement (batch 1: with several users, each gets
    its share of that rate, no gain from batching assumed); without one, how to measure it."""
    if not local or not local.get("samples_per_s"):
        return {"source": "not measured", "meets": None,
                "basis": f"no stored `dlgpu bench` decode of {model} on this machine's CPU, and no published "
                         f"{RUNTIME} CPU row calibrates a CPU: measure it with `dlgpu bench -w {model} --task decode "
                         "-p bf16 -p int8` (the catalog models that build here)"}
    batch = int(local.get("batch_size") or 1)
    per_user = float(local["samples_per_s"]) * min(batch, users) / users
    meets = (tokens_per_s is None or per_user >= tokens_per_s) if task == "serve" else (
        deadline_s is None or (tokens or 0) / per_user <= deadline_s)
    runs = local.get("_runs") or 1
    return {"source": "measured", "meets": meets, "tokens_per_s_per_user": per_user,
            "precision": local.get("precision"), "run_id": local.get("_run_id"),
            "basis": f"median of {runs} stored run(s) at batch {batch}"
                     + ("" if users <= batch else f", shared by {users} users (no gain from batching assumed)")}


def _this_cpu_llamacpp(arch: Any, fmts: Sequence[WeightFormat], kv: str, context: int, local: LocalCpuRuns,
                       task: str, users: int, tokens_per_s: float | None, tokens: int | None,
                       deadline_s: float | None) -> dict[str, Any] | None:
    """llama.cpp on this CPU, predicted from its llama.cpp measurements, in the fastest format that fits its memory
    (one sequence at a time: ``users`` share it)."""
    if not any(r.phase == "decode" for r in local.runs):
        return None
    fit = fit_cpu(local.runs)
    best: tuple[float, WeightFormat] | None = None
    for f in fmts:
        need = llm_memory(arch, f, get_kv_format(kv), context, 1).total_bytes
        if local.ram_bytes is not None and need > local.ram_bytes:
            continue
        rate = fit.tokens_per_s(arch.id, f.name, "decode", max(context - 1, 0), 1, kv) / users
        if best is None or rate > best[0]:
            best = (rate, f)
    if best is None:
        return {"source": "predicted", "meets": False, "tokens_per_s_per_user": 0.0, "runtime": RUNTIME,
                "precision": None,
                "basis": f"no format of {', '.join(f.name for f in fmts)} fits this machine's memory"}
    rate, f = best
    meets = (tokens_per_s is None or rate >= tokens_per_s) if task == "serve" else (
        deadline_s is None or (tokens or 0) / rate <= deadline_s)
    return {"source": "predicted", "meets": meets, "tokens_per_s_per_user": rate, "precision": f.name,
            "runtime": RUNTIME, "basis": fit.basis(f.name) + f"; runs from {local.source}"
            + ("" if users == 1 else f"; one sequence at a time, shared by {users} users"),
            "verify": f"llama-bench -m {arch.id}-{f.name}.gguf -p {context} -n 128 -t {local.threads} -ngl 0"}


def _served(arch: Any, g: GpuSpec, name: str, how: str, count: int, cost: float | None, cost_basis: str, users: int,
            tokens_per_s: float | None, context: int, output_tokens: int, budget_usd: float | None,
            values: Mapping[str, float]) -> list[LlmCandidate]:
    """The same device serving with TensorRT-LLM (in-flight batching, tensor parallel over an instance's GPUs) in
    FP8 (where the GPU has an 8-bit tensor rate: Ada and newer) and FP16: ``users`` requests in flight, each a
    prompt of ``context - output_tokens`` tokens and ``output_tokens`` generated (``llm.serving``)."""
    from dlgpu.llm.serving import ServeSample, serve_peak, serve_tok_s

    out = []
    cc = g.cuda_cc
    for fmt in ("fp8", "fp16"):
        if fmt == "fp8" and (cc is None or cc < (8, 9) or not g.int8_ops_per_s):
            continue
        if not serve_peak(g, fmt) or not g.fp16_flops_per_s:  # no tensor cores: not a TensorRT-LLM target
            continue
        kv = "fp8" if fmt == "fp8" else "fp16"
        prompt = max(1, context - output_tokens)
        sample = ServeSample(arch.id, SERVE_RUNTIME, g, count, llm_work(arch, fmt, kv), fmt, prompt,
                             min(output_tokens, context), 0, users)
        total, _ = serve_tok_s(sample, dict(values))
        rate = total / users
        mem = llm_memory(arch, fmt, kv, context, users)
        usable = usable_llm_memory(g, count)
        fits = mem.total_bytes <= usable
        meets = fits and (tokens_per_s is None or rate >= tokens_per_s)
        if budget_usd is not None and how == "buy" and (cost is None or cost > budget_usd):
            meets = False
        fitted = any(k.startswith(f"{SERVE_RUNTIME}:serve:") for k in values)
        out.append(LlmCandidate(name, how, g.id, count, fmt, fits, mem.total_bytes, usable, rate, total, meets, cost,
                                cost_basis, not fitted, SERVE_RUNTIME))
    return out
