"""``dlgpu validate FILE`` for files in ``published_llm.csv``'s columns: every row predicted in its own metric and
scope where the LLM model covers it (llama.cpp per-sequence decode and prefill), in ``predicted_value``; a row
it does not cover, or whose model or device cannot be resolved, gets that as its status, never an error of the
file. No torch here."""

from __future__ import annotations

import csv
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dlgpu.catalog import load_catalog
from dlgpu.errors import BadInput
from dlgpu.results import VALIDATE_SCHEMA

from .calibration import RUNTIMES, load_llm_calibration
from .perf import LlmSample, predicted_tok_s
from .published import REQUIRED, LlmRow, load_published_llm
from .workload import llm_work, resolve_published_model


def is_llm_file(path: Path) -> bool:
    """Whether a CSV has ``published_llm.csv``'s columns (its header names a metric and its scope)."""
    try:
        with open(path, newline="") as f:
            header = next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError):
        return False
    return all(c in header for c in REQUIRED)


def _row(r: LlmRow, values: dict[str, float], catalog: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {"row": r.index, "model": r.model, "device": r.device, "hardware": r.catalog_id,
                           "runtime": r.runtime, "quant": r.quant, "metric": r.metric, "scope": r.metric_scope,
                           "value": r.value, "predicted_value": None, "error_pct": None, "status": "ok",
                           "reason": None}
    why, status = None, "unsupported"
    if r.status != "ok" or r.value is None:
        why = f"status {r.status}: a memory result, not a speed (see `dlgpu predict ... --json` memory.fits)"
    elif r.runtime_family not in RUNTIMES:
        why = f"{r.runtime}: not modelled yet (dlgpu predicts {', '.join(RUNTIMES)})"
    elif r.metric_scope != "per_sequence" or r.phase not in ("decode", "prefill"):
        why = f"{r.metric} {r.metric_scope}: not a per-sequence decode or prefill figure"
    if why is None:
        try:
            gpu = catalog.gpu(r.catalog_id)
            work = llm_work(resolve_published_model(r.model), r.quant)
        except BadInput as exc:
            why, status = str(exc), "error"
    if why is not None:
        rec.update(status=status, reason=why)
        return rec
    tokens = int((r.output_len if r.phase == "decode" else r.input_len) or r.context_len or 0)
    sample = LlmSample(r.model, RUNTIMES[r.runtime_family], gpu, work, r.phase, tokens, float(r.value or 0),
                       r.num_gpus)
    pred = predicted_tok_s(sample, values)
    rec.update(predicted_value=pred, error_pct=100.0 * (pred - sample.measured_tok_s) / sample.measured_tok_s)
    return rec


def validate_llm(path: Path, catalog_files: Sequence[Path] = ()) -> dict[str, Any]:
    rows = load_published_llm(path)
    catalog = load_catalog(catalog_files)
    values = load_llm_calibration().values
    out = [_row(r, values, catalog) for r in rows]
    errs = [abs(r["error_pct"]) for r in out if r["status"] == "ok"]
    by_reason: dict[tuple[str, str], list[int]] = {}
    for r in out:
        if r["status"] != "ok":
            by_reason.setdefault((r["status"], r["reason"]), []).append(r["row"])
    return {
        "schema": VALIDATE_SCHEMA, "file": str(path), "kind": "llm", "rows": out,
        "median_abs_error_pct": statistics.median(errs) if errs else None,
        "mean_abs_error_pct": statistics.fmean(errs) if errs else None,
        "predicted": len(errs), "unsupported": sum(r["status"] == "unsupported" for r in out),
        "errors": sum(r["status"] == "error" for r in out), "left_out": len(out) - len(errs),
        "left_out_by_reason": [{"status": s, "reason": w, "rows": n} for (s, w), n in by_reason.items()],
        "basis": f"each row predicted in its own metric and scope (tokens/s per sequence) by the LLM model "
                 f"(`dlgpu calibrate --llm`); errors over the {len(errs)} rows predicted",
    }
