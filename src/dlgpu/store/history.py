"""Run history: what the results store holds, listed, shown, saved, exported and imported; and this machine's
stored measurements of a workload, the median over its runs (what ``advise`` ranks this machine by).

Imports are validated whole first (``schema``) and written in one transaction, or not at all."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlgpu.errors import BadInput
from dlgpu.home import dlgpu_version, utc_now
from dlgpu.results import EXPORT_SCHEMA, IMPORT_SCHEMA, Advice, Prediction
from dlgpu.units import parse_duration

from .schema import dump, kind_of, read_import_file
from .sqlite import RunRow, Store, StoredRun, canonical, fingerprint, new_run_id


def parse_when(text: str, param: str) -> str:
    """An ISO date or time (UTC when no zone is given), or an age such as ``7d``, ``12h`` or ``30m`` ago
    (``units.parse_duration``), as the ISO text the store compares with."""
    t = text.strip()
    if re.fullmatch(r"\d+(?:\.\d+)?\s*[a-zA-Z]+", t):
        try:
            seconds = parse_duration(t)
        except ValueError:
            pass
        else:
            return (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds)).isoformat(timespec="seconds")
    try:
        parsed = dt.datetime.fromisoformat(t)
    except ValueError:
        raise BadInput(f"{text!r}: give a date (2026-11-01), a time (2026-11-01T12:00) or an age (7d, 12h, 30m)",
                       param=param) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC).isoformat(timespec="seconds")


def list_runs(db: Path | None = None, workload: str | None = None, device: str | None = None,
              kind: str | None = None, since: str | None = None, until: str | None = None,
              limit: int | None = None) -> list[RunRow]:
    """The stored runs, newest first, filtered (``since``/``until``: a date, a time or an age)."""
    if limit is not None and limit <= 0:
        raise BadInput(f"{limit}: must be a positive integer", param="limit")
    with Store(db) as store:
        return store.runs(workload=workload, device=device, kind=kind,
                          since=None if since is None else parse_when(since, "since"),
                          until=None if until is None else parse_when(until, "until"), limit=limit)


def show_run(ref: str, db: Path | None = None) -> StoredRun:
    with Store(db) as store:
        return store.get(ref)


def stored_documents(refs: Sequence[str], db: Path | None = None) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(row, document) of the runs named (ids or prefixes), else of every stored run."""
    with Store(db) as store:
        ids = [store.resolve(r) for r in refs] if refs else store.all_ids()
        if not ids:
            raise BadInput(f"nothing to compare: the database {store.path} has no runs (run `dlgpu bench`, "
                           "`dlgpu predict`, or `dlgpu import` a file)")
        return [(got.row.to_dict(), got.document) for got in (store.get(i) for i in dict.fromkeys(ids))]


def save_prediction(prediction: Prediction, machine: Mapping[str, Any], db: Path | None = None) -> str:
    """Store a prediction with the fingerprint of the machine it was made on; returns its run id."""
    run_id = new_run_id()
    with Store(db) as store:
        store.save_predict(run_id, {**prediction.to_dict(), "run_id": run_id}, machine)
    return run_id


def save_advice(advice: Advice, machine: Mapping[str, Any], db: Path | None = None) -> str:
    """Store an advise run with the fingerprint of the machine it was made on; returns its run id."""
    run_id = new_run_id()
    with Store(db) as store:
        store.save_advise(run_id, {**advice.to_dict(), "run_id": run_id}, machine)
    return run_id


def save_probe(doc: Mapping[str, Any], db: Path | None = None) -> str:
    """Store a ``dlgpu.probe/1`` document (under the machine it records); returns its run id."""
    run_id = new_run_id()
    with Store(db) as store:
        store.save_probe(run_id, {**doc, "run_id": run_id})
    return run_id


@dataclass(frozen=True)
class StoredProbe:
    """The probe ``newest_probe`` found (its document, with ``run_id``), or None and why none."""

    document: dict[str, Any] | None
    why_none: str = ""
    contended_left_out: int = 0


def newest_probe(db: Path | None, machine: Mapping[str, Any], device: str = "cpu") -> StoredProbe:
    """This machine's newest stored probe (same fingerprint, as ``local_measurements`` matches bench runs) that
    measured ``device`` with no figure contended; a full probe is preferred over a ``--quick`` one. A database that
    does not exist yet is not created: nothing is stored there."""
    from dlgpu.home import default_db_path

    path = Path(db) if db is not None else default_db_path()
    if not path.exists():
        return StoredProbe(None, f"no results database at {path}: run `dlgpu probe`")
    ignore = ("gpu_driver", "hostname")
    want = {k: v for k, v in fingerprint(machine).items() if k not in ignore}
    found: list[dict[str, Any]] = []
    contended = 0
    with Store(path) as store:
        for row in store.runs(kind="probe"):  # newest first
            doc = store.get(row.id).document
            fp = {k: v for k, v in fingerprint(doc.get("machine") or {}).items() if k not in ignore}
            if fp != want or device not in (doc.get("devices") or []):
                continue
            if doc.get("contended"):
                contended += 1
                continue
            found.append(doc)
    if not found:
        why = (f"{contended} probe(s) of this machine were measured under contention and are not used: run "
               "`dlgpu probe` again on a quiet machine" if contended else
               f"no `dlgpu probe` of this machine's {device} is stored in {path}")
        return StoredProbe(None, why, contended)
    full = [d for d in found if not d.get("quick")]
    return StoredProbe((full or found)[0], "", contended)


def export_runs(refs: Sequence[str], db: Path | None = None) -> dict[str, Any]:
    """``dlgpu.export/1``: the runs' documents, whole (raw samples included), with their ids and status."""
    with Store(db) as store:
        ids = [store.resolve(r) for r in refs] if refs else store.all_ids()
        if not ids:
            raise BadInput(f"nothing to export: the database {store.path} has no runs")
        runs = []
        for run_id in dict.fromkeys(ids):
            got = store.get(run_id)
            runs.append({"id": got.row.id, "kind": got.row.kind, "status": got.row.status,
                         "origin": got.row.origin, "created_at": got.row.created_at, "document": got.document})
    return {"schema": EXPORT_SCHEMA, "exported_at": utc_now(),
            "dlgpu": dlgpu_version(), "runs": runs}


def import_files(paths: Sequence[Path], db: Path | None = None) -> dict[str, Any]:
    """Validate every run of every file first; then write them all in one transaction (or nothing)."""
    if not paths:
        raise BadInput("give at least one file (a `dlgpu export` bundle or a bench/predict/advise/probe --json "
                       "document)", param="files")
    staged: list[tuple[str, str, str, dict[str, Any], str]] = []
    for path in paths:
        for exported, parsed in read_import_file(path):
            doc = dump(parsed)
            kind = kind_of(parsed)
            run_id = (exported.id if exported else doc.get("run_id")) or \
                hashlib.sha256(canonical(doc).encode()).hexdigest()[:32]
            doc["run_id"] = run_id
            status = exported.status if exported else ("interrupted" if doc.get("interrupted") else "complete")
            if status == "running":
                status = "incomplete"  # its process was on another machine: nothing is running it here
            staged.append((run_id, kind, status, doc, str(path)))
    with Store(db) as store:
        added = store.import_runs([(*s[:4], f"imported from {s[4]}") for s in staged])
    return {"schema": IMPORT_SCHEMA, "files": [str(p) for p in paths], "runs": [s[0] for s in staged],
            "added": added, "already_present": [s[0] for s in staged if s[0] not in added]}


@dataclass(frozen=True)
class StoredMeasurements:
    """What ``local_measurements`` found: a record per device measured at the asked settings, the newest run they
    rest on, and per device stored only at other settings, those settings (e.g. ``("bf16 at batch 8",)``)."""

    by_device: dict[str, dict[str, Any]] = field(default_factory=dict)
    run_id: str | None = None
    elsewhere: dict[str, tuple[str, ...]] = field(default_factory=dict)


def local_measurements(workload: str, task: str, overrides: Mapping[str, str], db: Path | None,
                       machine: Mapping[str, Any], precisions: Sequence[str] | None = None,
                       batch_size: int | None = None) -> StoredMeasurements:
    """This machine's stored measurements of a workload, per device: the bench results of every stored run on
    this machine (same fingerprint) at the asked ``precisions`` and ``batch_size`` (None: any), grouped by
    (device, precision, batch); each group's figure is the MEDIAN samples/s over its runs, of the results not
    measured under contention (``contended``; absent in older documents: not contended), or of the contended
    ones where nothing else is stored. Per device the fastest group counts, preferring uncontended groups.

    Each device's record is the newest of its group's bench results (a bench result's dict) with
    ``samples_per_s`` replaced by the median and ``_runs`` (how many results it rests on), ``_min_sps``,
    ``_max_sps``, ``_run_ids`` (newest first), ``_contended`` (the figure rests on contended results),
    ``_contended_left_out``, ``_run_id``/``_created_at`` (the newest run) and ``_fp32_sps`` (the median at fp32 at
    the same batch, by the same rule) added."""
    want = fingerprint(machine)
    ignore = ("gpu_driver",)  # older documents did not record it
    key = {k: v for k, v in want.items() if k not in ignore}
    every: dict[tuple[str, str, int], list[tuple[RunRow, dict[str, Any]]]] = {}
    with Store(db) as store:
        for row in store.runs(kind="bench", workload=workload):  # newest first
            doc = store.get(row.id).document
            fp = {k: v for k, v in fingerprint(doc.get("machine") or {}).items() if k not in ignore}
            if {**fp, "hostname": None} != {**key, "hostname": None}:
                continue
            for r in doc.get("results") or []:
                if (r.get("workload"), r.get("task"), r.get("status")) != (workload, task, "ok"):
                    continue
                if {k: str(v) for k, v in (r.get("overrides") or {}).items()} != dict(overrides):
                    continue
                if not r.get("samples_per_s") or not r.get("batch_size"):
                    continue
                every.setdefault((r["device"], r["precision"], int(r["batch_size"])), []).append((row, r))
    asked = {k: v for k, v in every.items()
             if (precisions is None or k[1] in precisions) and (batch_size is None or k[2] == batch_size)}
    by_device: dict[str, dict[str, Any]] = {}
    for dev in dict.fromkeys(k[0] for k in asked):
        groups = [_median_record(v) for k, v in asked.items() if k[0] == dev]
        clean = [g for g in groups if not g["_contended"]]
        best = max(clean or groups, key=lambda g: g["samples_per_s"])
        fp32 = every.get((dev, "fp32", best["batch_size"]))
        best["_fp32_sps"] = None if not fp32 else _median_record(fp32)["samples_per_s"]
        by_device[dev] = best
    elsewhere = {dev: tuple(sorted(f"{p} at batch {b}" for d, p, b in every if d == dev))
                 for dev in dict.fromkeys(k[0] for k in every) if dev not in by_device}
    newest = max(by_device.values(), key=lambda r: r["_created_at"], default=None)
    return StoredMeasurements(by_device, None if newest is None else newest["_run_id"], elsewhere)


def _median_record(entries: Sequence[tuple[RunRow, dict[str, Any]]]) -> dict[str, Any]:
    """One (device, precision, batch) over stored runs (newest first): the median samples/s of the uncontended
    results (of the contended ones where there are no others), on the newest result's dict."""
    clean = [e for e in entries if e[1].get("contended") is not True]
    used = clean or list(entries)
    values = [float(r["samples_per_s"]) for _, r in used]
    row, newest = used[0]
    return {**newest, "samples_per_s": statistics.median(values), "_runs": len(used), "_min_sps": min(values),
            "_max_sps": max(values), "_run_ids": [row.id for row, _ in used], "_contended": not clean,
            "_contended_left_out": len(entries) - len(used), "_run_id": row.id, "_created_at": row.created_at}


def runtime_results(runtime: str, db: Path | None, machine: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every ok bench result of ``runtime`` (e.g. ``llama.cpp``) stored for this machine (same fingerprint), newest
    run first, each with ``_run_id``; results measured under contention are left out where any uncontended one of
    the same (workload, task, precision, params) exists."""
    want = {k: v for k, v in fingerprint(machine).items() if k not in ("gpu_driver", "hostname")}
    out: list[dict[str, Any]] = []
    with Store(db) as store:
        for row in store.runs(kind="bench"):
            doc = store.get(row.id).document
            fp = {k: v for k, v in fingerprint(doc.get("machine") or {}).items() if k not in ("gpu_driver", "hostname")}
            if fp != want:
                continue
            for r in doc.get("results") or []:
                if r.get("runtime") == runtime and r.get("status") == "ok" and r.get("samples_per_s"):
                    out.append({**r, "_run_id": row.id})

    def key(r: Mapping[str, Any]) -> tuple[Any, ...]:
        params = (r.get("settings") or {}).get("params") or {}
        return (r.get("workload"), r.get("task"), r.get("precision"), tuple(sorted(params.items())))

    clean = {key(r) for r in out if not r.get("contended")}
    return [r for r in out if not r.get("contended") or key(r) not in clean]
