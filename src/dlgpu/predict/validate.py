"""How good the model is on a file of measurements (``validate``: every row predicted where it can be, with
its status and error, and the errors in sum), and the memory model against the peaks ``dlgpu bench`` measured
(``memory_model_check``)."""

from __future__ import annotations

import csv
import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dlgpu.catalog import Catalog, load_catalog
from dlgpu.errors import BadInput
from dlgpu.results import VALIDATE_SCHEMA, ProfileSource

from .calibration import calibration_rows, calibration_samples, load_calibration
from .roofline import Calibration, precision_reason, predict_step

OTHER_RUNTIMES = ("llama.cpp",)
"""Frameworks whose rows measure a runtime other than the PyTorch steps dlgpu traces (``calibration_samples``
refuses them): such a row is ``unsupported``, not an ``error``."""


def memory_model_check(docs: Sequence[Mapping[str, Any]], profiles: ProfileSource) -> dict[str, Any]:
    """The memory model (weights, gradients, optimizer state + traced activations) against the peaks
    ``dlgpu bench`` measured. A process's peak RSS also holds PyTorch itself, its allocator caches and
    the batch: reported as the median difference, and the error is given with it added back."""
    rows = []
    for doc in docs:
        for r in doc.get("results", []):
            if r.get("status") != "ok" or not r.get("peak_mem_bytes") or r.get("task") not in ("train", "infer"):
                continue
            try:
                prof = profiles(r["workload"], r["task"], r["precision"], int(r["batch_size"]),
                               {k: str(v) for k, v in (r.get("overrides") or {}).items()},
                               target="cpu" if r.get("device") == "cpu" else "gpu")
            except Exception:
                continue
            model = (prof.state_bytes or 0) + (prof.activation_bytes or 0)
            rows.append({"label": f"{r['workload']} {r['task']} {r['device']} {r['precision']} bs{r['batch_size']}",
                         "measured_bytes": int(r["peak_mem_bytes"]), "measured_kind": r.get("peak_mem_kind"),
                         "model_bytes": int(model)})
    if not rows:
        return {"n": 0}
    base = statistics.median(x["measured_bytes"] - x["model_bytes"] for x in rows)
    for x in rows:
        x["error_pct"] = 100.0 * (x["model_bytes"] + base - x["measured_bytes"]) / x["measured_bytes"]
    errs = [abs(x["error_pct"]) for x in rows]
    return {"n": len(rows), "runtime_bytes": base, "median_abs_error_pct": statistics.median(errs),
            "mean_abs_error_pct": statistics.fmean(errs), "rows": rows,
            "basis": "model = weights + gradients + optimizer state + activations kept for backward; "
                     "runtime_bytes = median of (measured peak - model), added to every row"}


def _one_line(text: str, limit: int = 300) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[:limit - 3] + "..."


def _read_rows(path: Path) -> list[dict[str, str]]:
    """The file's rows; ``BadInput`` only where the file itself cannot be read or lacks columns."""
    try:
        return calibration_rows(path)
    except UnicodeDecodeError:
        raise BadInput(f"{path}: cannot read (not a UTF-8 text file)") from None
    except csv.Error as exc:
        raise BadInput(f"{path}: not readable as CSV ({exc})") from None


def _field_problem(row: Mapping[Any, Any]) -> str | None:
    """Why a row's own cells cannot be predicted or compared (a missing or non-numeric cell), else None."""
    extra = row.get(None)
    if extra:
        return f"{len(extra)} more cell(s) than the header"
    for col in ("workload", "task", "hardware", "precision", "batch_size", "samples_per_s"):
        if not (row.get(col) or "").strip():
            return f"{col}: empty"
    try:
        batch = int(row["batch_size"])
    except ValueError:
        batch = 0
    if batch <= 0:
        return f"batch_size {row['batch_size']!r}: not a positive whole number"
    try:
        measured = float(row["samples_per_s"])
    except ValueError:
        measured = math.nan
    if not (math.isfinite(measured) and measured > 0):
        return f"samples_per_s {row['samples_per_s']!r}: not a positive number"
    return None


def _validate_row(number: int, row: Mapping[Any, Any], catalog: Catalog, profiles: ProfileSource,
                  cal: Calibration) -> dict[str, Any]:
    """One row of the file, predicted: its ``status`` (``ok``; ``unsupported``: outside what the model
    covers, e.g. another runtime or a precision the hardware lacks; ``error``: it cannot be predicted, e.g.
    an unknown hardware id, a catalog entry without the figures the model needs, a workload that cannot be
    traced, a bad cell) and, where not ok, the one-line ``reason``."""
    rec: dict[str, Any] = {"row": number, **{k: v for k, v in row.items() if k not in (None, "row")},
                           "predicted_samples_per_s": None, "error_pct": None, "status": "ok", "reason": None}

    def left_out(status: str, why: str) -> dict[str, Any]:
        rec.update(status=status, reason=_one_line(why))
        return rec

    why = _field_problem(row)
    if why:
        return left_out("error", why)
    try:
        gpu = catalog.gpu(row["hardware"])
    except BadInput as exc:
        return left_out("error", str(exc))
    why = precision_reason(gpu, row["precision"])  # before tracing: a precision the hardware lacks
    if why:
        return left_out("unsupported", why)
    clean = {k: v for k, v in row.items() if isinstance(k, str) and v is not None}
    samples, skipped = calibration_samples([clean], catalog, profiles)
    if skipped:
        status = "unsupported" if clean.get("framework") in OTHER_RUNTIMES else "error"
        return left_out(status, skipped[0][1])
    smp = samples[0]
    try:
        pred = predict_step(smp.profile, smp.gpu, smp.precision, cal, smp.framework, smp.stack)
        sps = smp.profile.batch_size / pred.step_time_s
    except BadInput as exc:
        return left_out("error", str(exc))
    except Exception as exc:  # a profile the model cannot handle: this row, not the whole file
        return left_out("error", f"cannot predict: {type(exc).__name__}: {exc}")
    err = 100.0 * (sps - smp.measured_samples_per_s) / smp.measured_samples_per_s
    rec.update(predicted_samples_per_s=sps, error_pct=err)
    return rec


def validate(path: Path, profiles: ProfileSource, catalog_files: Sequence[Path] = ()) -> dict[str, Any]:
    """Predict every row of a file in the calibration file's columns; per-row and summary errors.

    Each row gets its own ``status`` and ``reason`` (see ``_validate_row``): a row that cannot be predicted
    is kept, with why, and left out of the error statistics; the summary counts the rows left out and groups
    them by reason. ``BadInput`` only when the file cannot be read or lacks a required column (or a
    ``catalog_files`` file is malformed)."""
    rows = _read_rows(path)
    catalog = load_catalog(catalog_files)
    cal = load_calibration()
    out_rows = [_validate_row(i + 2, row, catalog, profiles, cal)  # the header is row 1
                for i, row in enumerate(rows)]
    errs = [abs(r["error_pct"]) for r in out_rows if r["status"] == "ok"]
    by_reason: dict[tuple[str, str], list[int]] = {}
    for r in out_rows:
        if r["status"] != "ok":
            by_reason.setdefault((r["status"], r["reason"]), []).append(r["row"])
    left = len(out_rows) - len(errs)
    return {
        "schema": VALIDATE_SCHEMA, "file": str(path), "rows": out_rows,
        "median_abs_error_pct": statistics.median(errs) if errs else None,
        "mean_abs_error_pct": statistics.fmean(errs) if errs else None,
        "predicted": len(errs),
        "unsupported": sum(r["status"] == "unsupported" for r in out_rows),
        "errors": sum(r["status"] == "error" for r in out_rows),
        "left_out": left,
        "left_out_by_reason": [{"status": s, "reason": why, "rows": nums} for (s, why), nums in by_reason.items()],
        "basis": f"errors over the {len(errs)} rows predicted; {left} row(s) left out of them "
                 "(status unsupported: outside what the model covers; error: cannot be predicted)",
    }
