"""Calibration: the performance model's efficiencies, fitted (``fit``) to published measurements and to what
``dlgpu bench`` measured on CPUs, and the shipped fit (``data/calibration.json``) read back.

Rows and bench results become ``fit.Sample``s through a ``ProfileSource`` (the operator profile of each row's
step); rows that cannot be used are kept with the reason."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dlgpu.catalog import Catalog, load_catalog
from dlgpu.errors import BadInput
from dlgpu.home import write_json_atomic
from dlgpu.results import BENCH_SCHEMA, CALIBRATION_SCHEMA, ProfileSource
from dlgpu.workloads.registry import get_workload
from dlgpu.workloads.select import parse_overrides

from .fit import (
    INNER_FOLDS,
    Sample,
    accuracy_report,
    errors_pct,
    fit,
    leave_one_architecture_out,
    leave_one_device_out,
    leave_one_workload_out,
    select_ridge,
    summary,
    unfitted_terms,
)
from .roofline import Calibration, architecture
from .targets import bench_cpu

DATA = Path(__file__).parent / "data"
CALIBRATION_FILE = DATA / "calibration.json"
PUBLISHED_FILE = DATA / "published_calibration.csv"
BENCH_DIR = DATA / "bench"
"""``dlgpu bench --json`` documents measured on the machine dlgpu was developed on: the CPU rows the
shipped calibration fits CPU efficiencies on."""


def calibration_rows(path: Path) -> list[dict[str, str]]:
    required = {"workload", "task", "hardware", "precision", "batch_size", "samples_per_s"}
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            missing = required - set(reader.fieldnames or [])
            if missing:
                raise BadInput(f"{path}: missing columns {', '.join(sorted(missing))}")
            return [dict(r) for r in reader]
    except OSError as exc:
        raise BadInput(f"{path}: cannot read ({exc.strerror})") from None


NGC_SOURCES = ("github.com/NVIDIA/DeepLearningExamples", "github.com/lambdal/deeplearning-benchmark")
"""Benchmarks run in NVIDIA's NGC PyTorch containers, where fp32 matmuls use TF32 on Ampere and newer
(the containers enable it; so did PyTorch itself before 1.12)."""


def measured_precision(row: Mapping[str, str], gpu: Any) -> tuple[str, str]:
    """(the precision a row's "fp32" really ran at, why): what fp32 means depends on the framework, its version and
    the GPU generation.

    - PyTorch in NVIDIA's NGC containers (``NGC_SOURCES``), and PyTorch before 1.12: TF32 for matmuls and
      convolutions on GPUs with TF32 tensor cores (Ampere and newer): calibrated as ``tf32``.
    - TensorFlow from 2.4 (and NVIDIA's TF1 containers from 20.06): TF32 by default for both, on the same GPUs
      (``tf.config.experimental.enable_tensor_float_32_execution``, on by default): ``tf32``. Every TensorFlow row
      on such a GPU is from a TF32-era release (the GPUs need CUDA 11).
    - PyTorch 1.12 and later elsewhere: fp32 matmuls in full fp32, convolutions on TF32 (cuDNN's default, which
      ``roofline.unit_peak`` applies): ``fp32``.
    fp16 needs no mapping: autocast's casts are traced, and fp16 with fp32 accumulation on GeForce cards is
    ``roofline.unit_peak``'s rule."""
    if row["precision"] != "fp32" or not getattr(gpu, "tf32_flops_per_s", None):
        return row["precision"], "as published"
    if (row.get("framework") or "pytorch") == "tensorflow":
        return "tf32", "TensorFlow runs fp32 matmuls and convolutions on TF32 by default from 2.4"
    if any(src in (row.get("source_url") or "") for src in NGC_SOURCES):
        return "tf32", "NVIDIA's NGC PyTorch containers enable TF32 for fp32 matmuls"
    return "fp32", "PyTorch >= 1.12: fp32 matmuls in fp32, convolutions on TF32 (cuDNN's default)"


SOURCE_SETTINGS: tuple[tuple[str, str, str, dict[str, str]], ...] = (
    ("github.com/NVIDIA/DeepLearningExamples", "ssd300", "infer", {"detections": "false"}),
)
"""What a source's benchmark timed where it differs from the workload's default, as (source, workload, task,
settings): NVIDIA's SSD inference benchmark times ``model(img)`` on a normalized batch, the network's raw box and
class outputs, without decoding or non-maximum suppression (``benchmark_inference_loop`` in
DeepLearningExamples/PyTorch/Detection/SSD/ssd/train.py), which dlgpu's ssd300 inference includes by default."""


def source_settings(row: Mapping[str, str]) -> dict[str, str]:
    """The workload settings a row's source measured with (``SOURCE_SETTINGS``); the row's own overrides win."""
    url = row.get("source_url") or ""
    out: dict[str, str] = {}
    for source, workload, task, settings in SOURCE_SETTINGS:
        if source in url and row.get("workload") == workload and row.get("task") == task:
            out.update(settings)
    return out


def source_stack(row: Mapping[str, str]) -> str:
    """The software stack a row was measured with: the benchmark suite (``owner/repo`` of a GitHub source, else
    the host) and, where the source pins one, its version (``@`` and the first 7 characters of the commit the
    table was read at: Lambda's 2022 and 2023 tables are two versions of one repository, run in different NGC
    containers). Rows of one stack share its speed relative to the others, which is fitted (see
    ``roofline.scale_terms``)."""
    url = row.get("source_url") or ""
    m = re.match(r"https?://(?:www\.)?github\.com/([^/]+/[^/#?]+)(?:/(?:blob|tree)/([0-9a-f]{40}))?", url)
    if m:
        return m.group(1) + (f"@{m.group(2)[:7]}" if m.group(2) else "")
    m = re.match(r"https?://(?:www\.)?([^/]+)", url)
    return m.group(1) if m else ""


def _split_overrides(text: str) -> tuple[dict[str, str], bool]:
    pairs = [p for p in (text or "").split(";") if p.strip()]
    kv = parse_overrides(pairs)
    optimizer_step = kv.pop("optimizer_step", "true").lower() not in ("false", "0", "no")
    return kv, optimizer_step


def calibration_samples(rows: Sequence[dict[str, str]], catalog: Catalog,
                        profiles: ProfileSource) -> tuple[list[Sample], list[tuple[int, str]]]:
    """(samples, [(row index, why not usable)])."""
    samples, skipped = [], []
    for i, row in enumerate(rows):
        try:
            if row.get("framework", "pytorch") == "llama.cpp":
                raise BadInput("llama.cpp rows measure a different runtime than the PyTorch steps dlgpu traces")
            gpu = catalog.gpu(row["hardware"])
            kv, opt = _split_overrides(row.get("overrides", ""))
            kv = {**source_settings(row), **kv}
            precision = measured_precision(row, gpu)[0]
            prof = profiles(row["workload"], row["task"], precision, int(row["batch_size"]), kv, opt)
            samples.append(Sample(
                label=f"{row['workload']} {row['task']} {row['hardware']} {row['precision']} bs{row['batch_size']}"
                      f"{' ' + row['overrides'] if row.get('overrides') else ''}",
                family=get_workload(row["workload"]).family, profile=prof, gpu=gpu,
                precision=precision, framework=row.get("framework") or "pytorch", stack=source_stack(row),
                measured_samples_per_s=float(row["samples_per_s"])))
        except BadInput as exc:
            skipped.append((i, str(exc)))
        except Exception as exc:  # a model that cannot be traced on fake tensors (data-dependent shapes)
            skipped.append((i, f"cannot trace {row['workload']} on fake tensors: {type(exc).__name__}: {exc}"[:300]))
    return samples, skipped


_CALIBRATIONS: dict[tuple[str, float], Any] = {}


def load_calibration(path: Path | None = None) -> Calibration:
    """The fitted parameters shipped with dlgpu (regenerated by ``dlgpu calibrate``); read once per file
    version (keyed by modification time)."""
    p = path or CALIBRATION_FILE
    try:
        key = (str(p), p.stat().st_mtime)
        if key not in _CALIBRATIONS:
            doc = json.loads(p.read_text())
            _CALIBRATIONS[key] = Calibration(doc["values"], doc)
    except (OSError, ValueError, KeyError) as exc:
        raise BadInput(f"{p}: no usable calibration ({exc}); run `dlgpu calibrate`") from None
    return _CALIBRATIONS[key]


def bench_documents(paths: Sequence[Path]) -> list[dict[str, Any]]:
    docs = []
    for p in paths:
        try:
            doc = json.loads(Path(p).read_text())
        except (OSError, ValueError) as exc:
            raise BadInput(f"{p}: not a readable dlgpu bench document ({exc})") from None
        if not isinstance(doc, dict) or doc.get("schema") != BENCH_SCHEMA:
            raise BadInput(f"{p}: schema is {doc.get('schema') if isinstance(doc, dict) else None!r}, "
                           f"expected {BENCH_SCHEMA!r} (a `dlgpu bench --json` document)")
        docs.append(doc)
    return docs


def bench_samples(docs: Sequence[Mapping[str, Any]], catalog: Catalog,
                  profiles: ProfileSource) -> tuple[list[Sample], list[str]]:
    """Calibration samples from what ``dlgpu bench`` measured on CPUs: (samples, reasons rows were not used)."""
    samples, skipped = [], []
    for doc in docs:
        try:
            cpu = bench_cpu(doc, catalog)
        except (StopIteration, KeyError, TypeError, ValueError) as exc:
            skipped.append(f"bench document of {doc.get('created_at')}: no CPU description ({exc})")
            continue
        if not cpu.fp32_flops_per_s:
            skipped.append(f"bench document of {doc.get('created_at')}: its CPU has no FP32 peak ({cpu.source})")
            continue
        for r in doc.get("results", []):
            if r.get("device") != "cpu" or r.get("status") != "ok" or not r.get("samples_per_s"):
                continue
            label = f"{r['workload']} {r['task']} cpu:{cpu.name} {r['precision']} bs{r['batch_size']}"
            try:
                prof = profiles(r["workload"], r["task"], r["precision"], int(r["batch_size"]),
                               {k: str(v) for k, v in (r.get("overrides") or {}).items()}, target="cpu")
            except Exception as exc:  # an unknown (custom) workload or an untraceable one
                skipped.append(f"{label}: {type(exc).__name__}: {exc}"[:300])
                continue
            samples.append(Sample(label=label, family=get_workload(r["workload"]).family, profile=prof, gpu=cpu,
                                  precision=r["precision"], framework="pytorch",
                                  measured_samples_per_s=float(r["samples_per_s"]), stack="dlgpu-bench"))
    return samples, skipped


def source_disagreement(samples: Sequence[Sample]) -> dict[str, Any]:
    """How far the published figures of one configuration (workload, task, GPU, precision as run, shape parameters)
    differ between
    benchmark suites, each at its own batch: a floor under any prediction made for one stated stack, which cannot
    be within less than sqrt(max / min) - 1 of both. The reason a user's prediction misses more than a row with its
    own suite's correction does."""
    import math
    import statistics

    groups: dict[tuple[str, str, str, str, str], dict[str, float]] = {}
    for smp in samples:
        suite = smp.stack.split("@", 1)[0]
        shape = " ".join(f"{k}={v}" for k, v in sorted(smp.profile.params.items()))  # e.g. the sequence length
        key = (smp.profile.workload, smp.profile.task, smp.gpu.id, smp.precision, shape)
        best = groups.setdefault(key, {})
        best[suite] = max(best.get(suite, 0.0), smp.measured_samples_per_s)  # a suite's best batch
    pairs = {f"{w} {t} {g} {p} {shape}".strip(): max(v.values()) / min(v.values())
             for (w, t, g, p, shape), v in sorted(groups.items()) if len(v) >= 2}
    floors = [100 * (math.sqrt(r) - 1) for r in pairs.values()]
    return {"configurations": pairs, "median_ratio": statistics.median(pairs.values()) if pairs else None,
            "median_floor_pct": statistics.median(floors) if floors else None,
            "basis": "configurations two or more suites published (each suite's fastest batch): max / min of their "
                     "figures; a prediction for one stack is at least sqrt(max / min) - 1 off one of them"}


def extrapolation_report(samples: Sequence[Sample], cpu_samples: Sequence[Sample]) -> dict[str, Any]:
    """The architectures the calibration rows cover, and the leave-one-architecture-out errors: the interval of
    a prediction on an architecture with no row (``forecast.interval``)."""
    return {"calibrated_architectures": sorted({architecture(s.gpu) for s in samples}),
            "leave_one_architecture_out": leave_one_architecture_out(samples, extra=cpu_samples)}


def calibrate(profiles: ProfileSource, data_files: Sequence[Path] = (), output: Path | None = None,
              bench_files: Sequence[Path] | None = None) -> dict[str, Any]:
    """Fit the performance model on the published calibration data (and any extra files in its columns)
    and on CPU results of ``dlgpu bench`` documents (default: the ones shipped in ``BENCH_DIR``), report
    in-sample, leave-one-device-out (GPUs) and leave-one-workload-out (CPUs) errors and the memory model's
    error against measured peaks, and write the parameters with them."""
    from .validate import memory_model_check

    catalog = load_catalog()
    rows: list[dict[str, str]] = []
    for f in (PUBLISHED_FILE, *data_files):
        rows += calibration_rows(f)
    samples, skipped = calibration_samples(rows, catalog, profiles)
    if len(samples) < 10:
        raise BadInput(f"only {len(samples)} usable calibration rows; need at least 10")
    benches = sorted(BENCH_DIR.glob("*.json")) if bench_files is None else list(bench_files)
    docs = bench_documents(benches)
    cpu_samples, cpu_skipped = bench_samples(docs, catalog, profiles)
    everything = samples + cpu_samples
    # the ridge is chosen on an inner split of the devices, never on the held-out errors reported below
    ridge, ridge_scores = select_ridge(samples, cpu_samples)
    cal = fit(everything, ridge=ridge)
    lowo = leave_one_workload_out(samples, extra=cpu_samples, nested=True)
    doc = {
        "schema": CALIBRATION_SCHEMA,
        "values": cal.values,
        "ridge": {"chosen": ridge, "inner_median_abs_error_pct": {str(k): v for k, v in ridge_scores.items()},
                  "basis": f"median |error| of held-out devices over {INNER_FOLDS} device groups, as a user's "
                           "prediction is made; the reported held-out errors choose their ridge the same way on "
                           "their own training rows (nested)"},
        "rows_used": len(samples),
        "rows_skipped": [{"row": i + 2, "reason": r} for i, r in skipped],
        "in_sample": summary(errors_pct(cal, samples)),
        "leave_one_device_out": (lodo := leave_one_device_out(samples, extra=cpu_samples, nested=True)),
        "accuracy": accuracy_report(lodo["rows"]),
        "leave_one_workload_out": {**lowo, "accuracy": accuracy_report(lowo["rows"])},
        "source_disagreement": source_disagreement(samples),
        "unfitted_terms": unfitted_terms(everything, cal),
        **extrapolation_report(samples, cpu_samples),
        "cpu": {
            "rows_used": len(cpu_samples), "rows_skipped": cpu_skipped,
            "in_sample": summary(errors_pct(cal, cpu_samples)) if cpu_samples else None,
            "leave_one_workload_out": leave_one_workload_out(cpu_samples, extra=samples) if cpu_samples else None,
            "devices": sorted({s.gpu.name for s in cpu_samples}),
        },
        "memory_model": memory_model_check(docs, profiles),
        "sources": [str(PUBLISHED_FILE.name), *(str(f) for f in data_files),
                    *(f"bench/{Path(b).name}" if Path(b).parent == BENCH_DIR else str(b) for b in benches)],
    }
    write_json_atomic(output or CALIBRATION_FILE, doc)
    return doc
