"""Run history: what the results store holds, listed, shown, saved, exported and imported; and this machine's
newest measurements of a workload (what ``advise`` ranks this machine by).

Imports are validated whole first (``schema``) and written in one transaction, or not at all."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Mapping, Sequence
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
        raise BadInput("give at least one file (a `dlgpu export` bundle or a bench/predict/advise --json document)",
                       param="files")
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


def local_measurements(workload: str, task: str, overrides: Mapping[str, str], db: Path | None,
                       machine: Mapping[str, Any]) -> tuple[dict[str, dict[str, Any]], str | None]:
    """This machine's newest measured result per device (the fastest precision of the newest run that has
    one), from the results store; and the run id they come from."""
    want = fingerprint(machine)
    ignore = ("gpu_driver",)  # older documents did not record it
    key = {k: v for k, v in want.items() if k not in ignore}
    with Store(db) as store:
        for row in store.runs(kind="bench", workload=workload):
            doc = store.get(row.id).document
            fp = {k: v for k, v in fingerprint(doc.get("machine") or {}).items() if k not in ignore}
            if {**fp, "hostname": None} != {**key, "hostname": None}:
                continue
            best: dict[str, dict[str, Any]] = {}
            for r in doc.get("results") or []:
                if (r["workload"], r["task"], r["status"]) != (workload, task, "ok"):
                    continue
                if {k: str(v) for k, v in (r.get("overrides") or {}).items()} != dict(overrides):
                    continue
                if r["device"] not in best or r["samples_per_s"] > best[r["device"]]["samples_per_s"]:
                    best[r["device"]] = r
            if best:
                for dev, r in best.items():
                    fp32 = [x for x in doc["results"] if (x["workload"], x["task"], x["device"], x["precision"],
                                                         x["status"]) == (workload, task, dev, "fp32", "ok")]
                    r["_fp32_sps"] = fp32[0]["samples_per_s"] if fp32 else None
                    r["_run_id"] = row.id
                    r["_created_at"] = row.created_at
                return best, row.id
    return {}, None
