"""The LLM inference model fitted to published measurements: samples from ``published`` rows (llama.cpp's
per-sequence decode and prefill today), the shipped fit (``data/llm_calibration.json``, written by
``calibrate_llm``) and its leave-one-device-out errors per phase. No torch here."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dlgpu.catalog import Catalog, load_catalog
from dlgpu.errors import BadInput
from dlgpu.home import write_json_atomic

from .memory import largest_concurrency
from .perf import LlmCalibration, LlmSample, errors_pct, fit_llm, held_out
from .published import LlmRow, load_published_llm
from .serving import ServeSample, fit_serving, serving_held_out
from .workload import llm_work, resolve_published_model

LLM_CALIBRATION_FILE = Path(__file__).parent / "data" / "llm_calibration.json"
LLM_CALIBRATION_SCHEMA = "dlgpu.llm-calibration/1"

RUNTIMES = {"llama.cpp": "llama.cpp"}
"""Runtime families the per-sequence model is fitted for (``LlmRow.runtime_family`` -> the name predictions state)."""

SERVING_RUNTIMES = {"tensorrt-llm": "tensorrt-llm"}
"""Runtime families the serving model (``serving``) is fitted for: TensorRT-LLM's max-throughput tables (prompt and
output lengths stated; FP8 and FP16). vLLM rows state no prompt length: not used, with that reason."""


def llm_samples(rows: Sequence[LlmRow], catalog: Catalog) -> tuple[list[LlmSample], list[dict[str, Any]]]:
    """(samples, [{row, reason}] for rows not used)."""
    samples: list[LlmSample] = []
    skipped: list[dict[str, Any]] = []
    for r in rows:
        why = None
        if r.runtime_family not in RUNTIMES:
            why = f"{r.runtime}: aggregate serving throughput at an engine-chosen concurrency, not modelled yet"
        elif r.status != "ok" or not r.value:
            why = f"status {r.status}: a memory result, not a speed"
        elif r.metric_scope != "per_sequence" or r.phase not in ("decode", "prefill"):
            why = f"{r.metric} {r.metric_scope}: not a per-sequence decode or prefill figure"
        if why is None:
            try:
                gpu = catalog.gpu(r.catalog_id)
                arch = resolve_published_model(r.model)
                work = llm_work(arch, r.quant)
            except BadInput as exc:
                why = str(exc)
        if why is not None:
            skipped.append({"row": r.index, "reason": why})
            continue
        tokens = (r.output_len if r.phase == "decode" else r.input_len) or r.context_len or 0
        samples.append(LlmSample(
            label=f"{r.model} {r.quant} {r.phase} {int(tokens)} {r.catalog_id} x{r.num_gpus}",
            runtime=RUNTIMES[r.runtime_family], gpu=gpu, work=work, phase=r.phase, tokens=int(tokens),
            measured_tok_s=float(r.value or 0.0), gpus=r.num_gpus))
    return samples, skipped


def serve_samples(rows: Sequence[LlmRow], catalog: Catalog) -> tuple[list[ServeSample], list[dict[str, Any]]]:
    """Serving rows (aggregate output tokens/s) the serving model can be fitted on: (samples, [{row, reason}])."""
    from dlgpu.results import usable_memory_bytes

    samples: list[ServeSample] = []
    skipped: list[dict[str, Any]] = []
    for r in rows:
        if r.phase != "serve" or r.runtime_family in RUNTIMES:
            continue
        why = None
        fmt = r.quant.lower()
        if r.runtime_family not in SERVING_RUNTIMES:
            why = f"{r.runtime}: its rows state no prompt length, which the serving model needs"
        elif r.status != "ok" or not r.value:
            why = f"status {r.status}"
        elif fmt not in ("fp8", "fp16"):
            why = f"{r.quant}: no tensor peak for it in the catalog"
        elif not r.input_len or not r.output_len:
            why = "no prompt or output length"
        if why is None:
            try:
                gpu = catalog.gpu(r.catalog_id)
                arch = resolve_published_model(r.model)
                kv = "fp8" if fmt == "fp8" else "fp16"
                work = llm_work(arch, fmt, kv)
                usable = usable_memory_bytes(gpu.memory_bytes or 0) * r.num_gpus
                fit_n = largest_concurrency(arch, fmt, kv, usable, int(r.input_len or 0) + int(r.output_len or 0))
            except BadInput as exc:
                why = str(exc)
        if why is not None:
            skipped.append({"row": r.index, "reason": why})
            continue
        conc = int(r.concurrency) if r.concurrency.isdigit() else None
        samples.append(ServeSample(f"{r.model} {fmt} {r.catalog_id} {r.input_len}/{int(r.output_len or 0)}",
                                   SERVING_RUNTIMES[r.runtime_family], gpu, r.num_gpus, work, fmt,
                                   int(r.input_len or 0), int(r.output_len or 0), fit_n, conc, float(r.value or 0)))
    return samples, skipped


def calibrate_llm(output: Path | None = None, data_files: Sequence[Path] = ()) -> dict[str, Any]:
    """Fit on the shipped published rows (and any extra files in their columns), report in-sample and
    leave-one-device-out errors per phase, write the parameters with them."""
    catalog = load_catalog()
    rows = load_published_llm()
    for f in data_files:
        rows += load_published_llm(f)
    samples, skipped = llm_samples(rows, catalog)
    if len(samples) < 10:
        raise BadInput(f"only {len(samples)} usable LLM rows; need at least 10")
    cal = fit_llm(samples)
    lodo = held_out(samples, lambda s: s.gpu.id)
    served, serve_skipped = serve_samples(rows, catalog)
    serving = fit_serving(served) if len(served) >= 10 else {}
    serve_rows = {r.index for r in rows if r.phase == "serve" and r.runtime_family not in RUNTIMES}
    skipped = [x for x in skipped if x["row"] not in serve_rows] + serve_skipped  # the serving model's reasons
    doc = {"schema": LLM_CALIBRATION_SCHEMA, "values": {**cal.values, **serving}, "rows_used": len(samples),
           "rows_skipped": skipped, "in_sample": _summary(errors_pct(cal, samples)),
           "leave_one_device_out": lodo,
           "serving": {"rows_used": len(served), "leave_one_device_out": serving_held_out(served) if serving else None,
                       "devices": sorted({s.gpu.id for s in served})},
           "devices": sorted({s.gpu.id for s in samples}),
           "sources": sorted({r.source_url for r in rows})}
    write_json_atomic(output or LLM_CALIBRATION_FILE, doc)
    return doc


def _summary(errs: Sequence[float]) -> dict[str, float]:
    from .perf import _summary as s

    return s(errs)


_LOADED: dict[tuple[str, float], LlmCalibration] = {}


def load_llm_calibration(path: Path | None = None) -> LlmCalibration:
    p = path or LLM_CALIBRATION_FILE
    try:
        key = (str(p), p.stat().st_mtime)
        if key not in _LOADED:
            doc = json.loads(p.read_text())
            _LOADED[key] = LlmCalibration(doc["values"], doc)
    except (OSError, ValueError, KeyError) as exc:
        raise BadInput(f"{p}: no usable LLM calibration ({exc}); run `dlgpu calibrate --llm`") from None
    return _LOADED[key]
