"""llama.cpp on a CPU, predicted from llama.cpp measured on that same CPU.

No published table in ``published_llm.csv`` times llama.cpp on a CPU, so a CPU has no calibration from published
rows. What calibrates one is dlgpu's own llama.cpp measurements on it (``dlgpu bench --runtime llama.cpp``): a
few small catalog models in two or three GGUF types are enough to fit the three terms below, and the fit then
predicts any other model, format and prompt on the same CPU. A CPU that was never measured gets no figure: the
answer says how to measure it.

    decode step (one sequence, c tokens of context) = layers x floor
                                                      + max(bytes read / bandwidth, FLOPs / decode rate[type])
    prefill of P tokens                             = layers x floor + FLOPs(P) / prefill rate[type]

``bandwidth`` is the effective weight-read bandwidth llama.cpp reaches on this CPU with all its threads (every decode
step reads the active weights and the KV cache once); ``decode rate[type]`` the rate of its one-token dot products
for the weights' ggml type (on a CPU with few cores, dequantizing q8_0 and q4_0 blocks is slower than reading
them: a q4_0 model then decodes barely faster than q8_0, which a bandwidth-only formula gets wrong); ``floor`` the
per-layer cost of a step that neither explains (graph build, thread synchronisation: it dominates tiny models);
``prefill rate[type]`` the prompt matmul rate per type. A format not measured takes the rates of the measured type
nearest in bits per weight, said so.

Least squares on log seconds (each phase's figure weighs the same); the error a user can expect is the
leave-one-model-out error (refit without each model, predict it), reported beside every prediction. No torch
here."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np

from dlgpu.errors import BadInput

from .formats import WeightFormat, get_format
from .perf import LlmWork
from .workload import llm_work, resolve_model

MEASURED_FILE = "llamacpp-dev-vm-xeon-2core-20261206.json"
"""dlgpu's llama.cpp measurements on its development VM (``benchmarks/llamacpp_cpu.py``): the example and test
data of this module, and this CPU's calibration on that machine."""

RATE_TYPES = ("f16", "q8_0", "q4_0")
"""The ggml types llama.cpp can be measured in here (``measure.llamacpp.WEIGHT_TYPES``)."""


@dataclass(frozen=True)
class CpuRun:
    """One llama.cpp measurement on a CPU: a phase's tokens/s of a model in a GGUF type."""

    model: str
    weight_type: str  # a ggml type of RATE_TYPES
    phase: str  # decode | prefill
    prompt: int  # the prompt's tokens (decode: the context before the first generated token)
    output: int  # decode: tokens generated (the figure is their average); prefill: 0
    tokens_per_s: float

    @property
    def context(self) -> float:
        """The average context of the timed steps: a decode of N tokens after a prompt of P sees P + N / 2."""
        return self.prompt + self.output / 2 if self.phase == "decode" else 0.0


def _rate_type(fmt: WeightFormat, measured: Iterable[str]) -> str:
    """The measured ggml type whose prompt rate ``fmt`` takes: itself if measured, else the nearest in bits."""
    have = sorted(set(measured))
    name = "f16" if fmt.name in ("fp16", "bf16") else fmt.name
    if name in have:
        return name
    if not have:
        raise ValueError("no measured weight type")
    return min(have, key=lambda t: abs(get_format(t).bits_per_weight - fmt.bits_per_weight))


def _work(model: str, weight_type: str) -> LlmWork:
    return llm_work(resolve_model(model), weight_type)


def step_s(values: Mapping[str, float], work: LlmWork, rate_type: str, phase: str, prompt: int,
           context: float) -> float:
    """Seconds of a decode step at ``context`` or of a prefill of ``prompt`` tokens (see the module's formulas)."""
    floor = work.layers * math.exp(values["layer_s"])
    if phase == "decode":
        read = (work.decode_bytes + work.kv_bytes_per_token * context) / math.exp(values["bandwidth"])
        flops = work.flops_per_token + work.attention_flops_per_context_token * context
        return floor + max(read, flops / math.exp(values[f"decode:{rate_type}"]))
    flops = prompt * work.flops_per_token + work.attention_flops_per_context_token * prompt * prompt / 2
    return floor + flops / math.exp(values[f"prefill:{rate_type}"])


@dataclass(frozen=True)
class CpuFit:
    """The fitted terms (log) of one CPU, what they rest on, and the held-out errors."""

    values: dict[str, float]
    runs: tuple[CpuRun, ...]
    held_out: dict[str, Any] = field(default_factory=dict)

    @property
    def bandwidth_bytes_per_s(self) -> float:
        return math.exp(self.values["bandwidth"])

    @property
    def layer_floor_s(self) -> float:
        return math.exp(self.values["layer_s"])

    def rates(self, phase: str = "decode") -> dict[str, float]:
        """FLOP/s per measured ggml type of a phase."""
        return {k.split(":", 1)[1]: math.exp(v) for k, v in self.values.items() if k.startswith(f"{phase}:")}

    def tokens_per_s(self, model: str, weight_format: str, phase: str, prompt: int, output: int = 0,
                     kv_format: str = "fp16") -> float:
        """Predicted tokens/s of a phase: decode averaged over ``output`` tokens after ``prompt``; prefill of
        ``prompt`` tokens."""
        fmt = get_format(weight_format)
        work = llm_work(resolve_model(model), fmt.name, kv_format)
        rate = _rate_type(fmt, self.rates(phase))
        if phase == "decode":
            return 1.0 / step_s(self.values, work, rate, phase, prompt, prompt + output / 2)
        return prompt / step_s(self.values, work, rate, phase, prompt, 0.0)

    def reading_binds(self) -> bool:
        """Whether reading the weights bound any measured decode (else the bandwidth is only a lower bound)."""
        for r in self.runs:
            if r.phase != "decode":
                continue
            w = _work(r.model, r.weight_type)
            read = (w.decode_bytes + w.kv_bytes_per_token * r.context) / self.bandwidth_bytes_per_s
            flops = w.flops_per_token + w.attention_flops_per_context_token * r.context
            if read >= flops / self.rates("decode")[r.weight_type]:
                return True
        return False

    def basis(self, weight_format: str | None = None) -> str:
        models = sorted({r.model for r in self.runs})
        types = sorted({r.weight_type for r in self.runs})
        bound = "" if self.reading_binds() else (
            " (a lower bound: no measured decode here was bound by reading its weights, all by the dot products)")
        text = (f"llama.cpp fitted on {len(self.runs)} llama.cpp measurements on this CPU ({', '.join(models)}; "
                f"{', '.join(types)}): {self.bandwidth_bytes_per_s / 1e9:.1f} GB/s effective weight-read "
                f"bandwidth{bound}, decode dot products at "
                + ", ".join(f"{t} {r / 1e9:.0f}" for t, r in self.rates("decode").items())
                + " GFLOP/s, prompts at " + ", ".join(f"{t} {r / 1e9:.0f}" for t, r in self.rates("prefill").items())
                + f" GFLOP/s, {self.layer_floor_s * 1e6:.0f} us per layer per step")
        if weight_format is not None:
            fmt = get_format(weight_format)
            rate = _rate_type(fmt, types)
            own = "f16" if fmt.name in ("fp16", "bf16") else fmt.name
            if rate != own:
                text += f"; {fmt.name} at the measured {rate} rates (nearest in bits per weight)"
        return text


def fit_cpu(runs: Sequence[CpuRun]) -> CpuFit:
    """Least squares on log seconds per token over every run (see the module's docstring)."""
    from scipy.optimize import least_squares

    if not any(r.phase == "decode" for r in runs):
        raise BadInput("no llama.cpp decode measurement on this CPU to fit", param="runs")
    dec = sorted({r.weight_type for r in runs if r.phase == "decode"})
    pre = sorted({r.weight_type for r in runs if r.phase == "prefill"})
    names = ["bandwidth", "layer_s", *(f"decode:{t}" for t in dec), *(f"prefill:{t}" for t in pre)]
    works = [_work(r.model, r.weight_type) for r in runs]
    measured = np.log([1.0 / r.tokens_per_s for r in runs])  # seconds per token

    def per_token(theta: np.ndarray) -> np.ndarray:
        values = dict(zip(names, theta, strict=True))
        out = []
        for r, w in zip(runs, works, strict=True):
            s = step_s(values, w, r.weight_type, r.phase, r.prompt, r.context)
            out.append(s if r.phase == "decode" else s / r.prompt)
        return np.log(out)

    rates = len(dec) + len(pre)
    lo = np.array([math.log(1e8), math.log(1e-8), *(math.log(1e8) for _ in range(rates))])
    hi = np.array([math.log(1e13), math.log(1e-1), *(math.log(1e15) for _ in range(rates))])
    best = None
    # two starts: decode bound by the dot products, and by reading (the max() gives a bound term no gradient)
    for bw, rate in ((3e10, 2e10), (1e10, 2e11)):
        theta0 = np.array([math.log(bw), math.log(2e-5), *(math.log(rate) for _ in range(rates))])
        sol = least_squares(lambda t: per_token(t) - measured, theta0, bounds=(lo, hi), max_nfev=2000)
        if best is None or sol.cost < best.cost:
            best = sol
    assert best is not None
    return CpuFit(dict(zip(names, (float(v) for v in best.x), strict=True)), tuple(runs))


def leave_one_model_out(runs: Sequence[CpuRun]) -> dict[str, Any]:
    """Refit without each model's runs and predict them: the error of a model never measured here, per phase."""
    rows: list[dict[str, Any]] = []
    for model in sorted({r.model for r in runs}):
        train = [r for r in runs if r.model != model]
        if not any(r.phase == "decode" for r in train):
            continue
        fit = fit_cpu(train)
        for r in runs:
            if r.model != model or r.weight_type not in fit.rates(r.phase):
                continue
            pred = fit.tokens_per_s(r.model, r.weight_type, r.phase, r.prompt, r.output)
            rows.append({"model": r.model, "weight_type": r.weight_type, "phase": r.phase, "measured": r.tokens_per_s,
                         "predicted": pred, "error_pct": 100.0 * (pred - r.tokens_per_s) / r.tokens_per_s})
    by_phase: dict[str, Any] = {}
    for phase in ("decode", "prefill"):
        errs = sorted(abs(x["error_pct"]) for x in rows if x["phase"] == phase)
        if errs:
            by_phase[phase] = {"n": len(errs), "median_abs_error_pct": statistics.median(errs),
                               "max_abs_error_pct": errs[-1]}
    return {"by_phase": by_phase, "rows": rows}


def runs_from_measured(doc: Mapping[str, Any]) -> list[CpuRun]:
    """The runs of a ``benchmarks/llamacpp_cpu.py --json`` document (``MEASURED_FILE``'s ``rows``)."""
    out: list[CpuRun] = []
    for r in doc.get("rows") or []:
        wtype = str(r["weight_type"])
        p, n = int(r["prompt_tokens"]), int(r["output_tokens"])
        if r.get("decode_tokens_per_s"):
            out.append(CpuRun(str(r["model"]), wtype, "decode", p, n, float(r["decode_tokens_per_s"])))
        if r.get("prefill_tokens_per_s"):
            out.append(CpuRun(str(r["model"]), wtype, "prefill", p, 0, float(r["prefill_tokens_per_s"])))
    return out


def load_measured(name: str = MEASURED_FILE) -> dict[str, Any]:
    """A shipped measurement document (``llm/data/measured/``)."""
    text = resources.files("dlgpu.llm").joinpath("data", "measured", name).read_text(encoding="utf-8")
    doc: dict[str, Any] = json.loads(text)
    return doc


@dataclass(frozen=True)
class LocalCpuRuns:
    """This machine's CPU and the llama.cpp measurements on it that a prediction for it rests on."""

    cpu: str  # the CPU's model name
    threads: int  # the threads llama.cpp ran with (every CPU this process may use)
    ram_bytes: int | None  # what CPU inference may hold: the machine's memory
    runs: tuple[CpuRun, ...]
    source: str  # where the runs come from, in words


def shipped_runs_for(cpu: str, threads: int) -> tuple[CpuRun, ...]:
    """The shipped measurements (``MEASURED_FILE``) if they were made on this CPU model with this many threads
    (dlgpu's development VM), else none: another machine's figures never stand for this one."""
    doc = load_measured()
    machine = doc.get("machine") or {}
    if machine.get("cpu") != cpu or int(machine.get("threads") or 0) != threads:
        return ()
    return tuple(runs_from_measured(doc))
