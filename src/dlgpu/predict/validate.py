"""How good the model is on a file of measurements (``validate``: every row predicted, errors per row and in
sum), and the memory model against the peaks ``dlgpu bench`` measured (``memory_model_check``)."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dlgpu.catalog import load_catalog
from dlgpu.results import VALIDATE_SCHEMA, ProfileSource

from .calibration import calibration_rows, calibration_samples, load_calibration
from .roofline import predict_step


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


def validate(path: Path, profiles: ProfileSource, catalog_files: Sequence[Path] = ()) -> dict[str, Any]:
    """Predict every row of a file in the calibration file's columns; per-row and summary errors."""
    rows = calibration_rows(path)
    catalog = load_catalog(catalog_files)
    cal = load_calibration()
    samples, skipped = calibration_samples(rows, catalog, profiles)
    why = dict(skipped)
    it = iter(samples)
    out_rows, errs = [], []
    for i, row in enumerate(rows):
        rec: dict[str, Any] = {**row, "predicted_samples_per_s": None, "error_pct": None}
        if i in why:
            rec.update(status="unsupported", reason=why[i])
        else:
            smp = next(it)
            pred = predict_step(smp.profile, smp.gpu, smp.precision, cal, smp.framework, smp.stack)
            sps = smp.profile.batch_size / pred.step_time_s
            err = 100.0 * (sps - smp.measured_samples_per_s) / smp.measured_samples_per_s
            errs.append(abs(err))
            rec.update(predicted_samples_per_s=sps, error_pct=err, status="ok", reason=None)
        out_rows.append(rec)
    return {
        "schema": VALIDATE_SCHEMA, "file": str(path), "rows": out_rows,
        "median_abs_error_pct": statistics.median(errs) if errs else None,
        "mean_abs_error_pct": statistics.fmean(errs) if errs else None,
        "predicted": len(errs), "unsupported": len(rows) - len(errs),
    }
