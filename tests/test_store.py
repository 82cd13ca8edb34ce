"""The results store: schema and migrations, runs written as they go, history filters, export/import with
validation, and the real-process cases (two writers at once, Ctrl-C, a kill)."""

from __future__ import annotations

import copy
import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import TINY_BUDGET
from dlgpu import api
from dlgpu.api import bench
from dlgpu.cli.main import main
from dlgpu.errors import BadInput
from dlgpu.store import SCHEMA_VERSION, Store
from dlgpu.store import sqlite as store_sqlite
from dlgpu.store.schema import validate_document


@pytest.fixture(scope="module")
def bench_doc(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A real bench document: test_resnet on this CPU, fp32 and bf16, train and infer."""
    db = tmp_path_factory.mktemp("bench") / "r.sqlite"
    report = bench(workloads=["test_resnet"], devices=["cpu"], precisions=["fp32", "bf16"], quick=True,
                   timing=TINY_BUDGET, overrides={"image_size": "16"}, telemetry=False, db=db)
    doc = report.to_dict()
    assert doc["run_id"] and len(doc["results"]) == 4 and {r["device"] for r in doc["results"]} == {"cpu"}
    return doc


def _count(db: Path) -> tuple[int, int]:
    con = sqlite3.connect(db)
    try:
        return (con.execute("SELECT count(*) FROM runs").fetchone()[0],
                con.execute("SELECT count(*) FROM results").fetchone()[0])
    finally:
        con.close()


# --- the database ---------------------------------------------------------------------------------------------


def test_fresh_database_is_wal_at_the_current_version(tmp_path: Path) -> None:
    db = tmp_path / "a" / "r.sqlite"
    with Store(db) as s:
        assert s.version() == SCHEMA_VERSION
        assert s.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert s.integrity() == "ok"
    with Store(db) as s:  # opening again migrates nothing and keeps the version
        assert s.version() == SCHEMA_VERSION


def test_default_path_honours_env(tmp_path: Path) -> None:
    assert store_sqlite.default_db_path({"DLGPU_DB": str(tmp_path / "x.db")}) == tmp_path / "x.db"
    assert store_sqlite.default_db_path({"DLGPU_HOME": str(tmp_path)}) == tmp_path / "results.sqlite"
    assert store_sqlite.default_db_path({}).name == "results.sqlite"


def test_a_newer_database_is_refused_not_rewritten(tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite"
    Store(db).close()
    con = sqlite3.connect(db)
    con.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    con.commit()
    con.close()
    with pytest.raises(BadInput, match="newer dlgpu"):
        Store(db)
    con = sqlite3.connect(db)
    assert con.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION + 1
    con.close()


def test_forward_migration_keeps_the_data(tmp_path: Path, bench_doc: dict[str, Any],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "r.sqlite"
    with Store(db) as s:
        s.import_runs([(bench_doc["run_id"], "bench", "complete", bench_doc, "test")])
    monkeypatch.setattr(store_sqlite, "MIGRATIONS", (*store_sqlite.MIGRATIONS,
                                                     "ALTER TABLE runs ADD COLUMN note TEXT DEFAULT 'v2'"))
    monkeypatch.setattr(store_sqlite, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with Store(db) as s:
        assert s.version() == SCHEMA_VERSION + 1
        assert s.db.execute("SELECT note FROM runs").fetchone()[0] == "v2"
        assert len(s.get(bench_doc["run_id"]).document["results"]) == 4


def test_not_a_database(tmp_path: Path) -> None:
    bad = tmp_path / "r.sqlite"
    bad.write_text("this is not sqlite " * 100)
    with pytest.raises(BadInput, match="not a dlgpu results database"):
        Store(bad)
    with pytest.raises(BadInput, match="is a directory"):
        Store(tmp_path)


# --- bench and predict write to it -----------------------------------------------------------------------------


def test_bench_run_is_stored_whole(tmp_path: Path, bench_doc: dict[str, Any]) -> None:
    db = tmp_path / "r.sqlite"
    report = bench(workloads=["test_resnet"], devices=["cpu"], precisions=["fp32"], tasks=["infer"], quick=True,
                   timing=TINY_BUDGET, overrides={"image_size": "16"}, telemetry=False, db=db)
    with Store(db) as s:
        runs = s.runs()
        assert [r.id for r in runs] == [report.run_id] and runs[0].status == "complete"
        assert "Xeon" in runs[0].machine or "cores" in runs[0].machine
        got = s.get(report.run_id[:6])
    doc = got.document
    assert doc["results"] == report.to_dict()["results"]  # raw per-step samples included
    assert doc["results"][0]["step_time_s"]["samples"] == list(report.results[0].step_time.samples_s)
    assert doc["machine"]["torch"] and doc["interrupted"] is False
    validate_document(doc, "stored")  # what the store gives back is a valid document


def test_prediction_is_stored_with_this_machine(tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite"
    saved = api.save_prediction(api.predict("resnet50", "a100-sxm4-80gb", "bf16"), db)
    run_id, doc = saved.run_id, saved.to_dict()
    with Store(db) as s:
        got = s.get(run_id)
        assert got.row.kind == "predict" and got.row.status == "complete"
        assert got.document["samples_per_s"] == doc["samples_per_s"]
        assert s.runs(device="a100")[0].id == run_id and s.runs(device="A100 80GB")[0].id == run_id
    assert doc["task_projection"]["time_s"] == pytest.approx(doc["task_projection"]["samples"] / doc["samples_per_s"])
    assert doc["ops"] and all(o["time_s"] >= 0 for o in doc["ops"])
    assert sum(o["time_s"] * o["count"] for o in doc["ops"]) <= doc["step_time_s"]
    validate_document(doc, "prediction")


def test_runs_filters_and_references(tmp_path: Path, bench_doc: dict[str, Any]) -> None:
    db = tmp_path / "r.sqlite"
    other = copy.deepcopy(bench_doc)
    other["created_at"] = "2025-01-02T03:04:05+00:00"
    for r in other["results"]:
        r["workload"] = "test_bert"
    with Store(db) as s:
        s.import_runs([(bench_doc["run_id"], "bench", "complete", bench_doc, "a"),
                       ("0" * 31 + "1", "bench", "complete", other, "b")])
        assert len(s.runs()) == 2
        assert [r.id for r in s.runs(workload="test_bert")] == ["0" * 31 + "1"]
        assert [r.id for r in s.runs(since="2026-01-01")] == [bench_doc["run_id"]]
        assert [r.id for r in s.runs(until="2026-01-01")] == ["0" * 31 + "1"]
        assert s.runs(device="cpu") and not s.runs(device="h100")
        assert s.runs(kind="predict") == []
        assert s.resolve("latest") == bench_doc["run_id"]
        with pytest.raises(BadInput, match="no such run"):
            s.resolve("abcdef")
        with pytest.raises(BadInput, match="at least 4 hex digits"):
            s.resolve("xy")
    with pytest.raises(BadInput, match="since 'yesterday'"):
        api.list_runs(db, since="yesterday")
    assert [r.id for r in api.list_runs(db, since="3650d")] == [bench_doc["run_id"], "0" * 31 + "1"]


# --- export and import --------------------------------------------------------------------------------------------


def test_export_import_round_trip(tmp_path: Path, bench_doc: dict[str, Any],
                                  capsys: pytest.CaptureFixture[str]) -> None:
    a, b = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    with Store(a) as s:
        s.import_runs([(bench_doc["run_id"], "bench", "complete", bench_doc, "local")])
    pred = api.predict("test_resnet", "rtx-3090", "fp16", "infer", 4, {"image_size": "16"})
    api.save_prediction(pred, a)
    assert main(["export", "--db", str(a)]) == 0
    bundle = capsys.readouterr().out
    doc = json.loads(bundle)
    assert doc["schema"] == "dlgpu.export/1" and len(doc["runs"]) == 2
    f = tmp_path / "runs.json"
    f.write_text(bundle)
    assert main(["import", str(f), "--db", str(b), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert sorted(result["added"]) == sorted(r["id"] for r in doc["runs"])
    with Store(a) as sa, Store(b) as sb:
        for run in doc["runs"]:
            assert sb.get(run["id"]).document == sa.get(run["id"]).document
            assert sb.get(run["id"]).row.origin.startswith("imported from")
    assert main(["import", str(f), "--db", str(b), "--json"]) == 0  # again: nothing new, nothing doubled
    again = json.loads(capsys.readouterr().out)
    assert again["added"] == [] and len(again["already_present"]) == 2
    assert _count(b) == (2, 5)


def test_import_a_plain_bench_document(tmp_path: Path, bench_doc: dict[str, Any]) -> None:
    f = tmp_path / "bench.json"
    plain = {k: v for k, v in bench_doc.items() if k != "run_id"}
    f.write_text(json.dumps(plain))
    out = api.import_files([f], tmp_path / "r.sqlite")
    assert len(out["added"]) == 1
    assert api.import_files([f], tmp_path / "r.sqlite")["added"] == []  # the same content gets the same id


def _hostile(bench_doc: dict[str, Any]) -> list[tuple[str, Any, str]]:
    def edit(fn: Any) -> dict[str, Any]:
        d = copy.deepcopy(bench_doc)
        fn(d)
        return d

    ok = next(i for i, r in enumerate(bench_doc["results"]) if r["status"] == "ok")
    deep: Any = {}
    cur = deep
    for _ in range(200):
        cur["x"] = {}
        cur = cur["x"]
    return [
        ("not json", "{'schema': 'dlgpu.bench/1'", "not valid JSON"),
        ("nan", json.dumps(bench_doc).replace('"warmup_steps": 1', '"warmup_steps": NaN', 1), "not a number JSON"),
        ("array", [bench_doc], "expected a JSON object"),
        ("schema", edit(lambda d: d.update(schema="dlgpu.bench/9")), "schema is 'dlgpu.bench/9'"),
        ("unknown field", edit(lambda d: d["results"][0].update(exec="import os")), "results.0.exec"),
        ("lying throughput", edit(lambda d: d["results"][ok].update(samples_per_s=1e9)), "samples_per_s"),
        ("lying median", edit(lambda d: d["results"][ok]["step_time_s"].update(median=1e-9)), "not those of the"),
        ("negative", edit(lambda d: d["results"][ok].update(peak_mem_bytes=-5)), "peak_mem_bytes"),
        ("precision", edit(lambda d: d["results"][0].update(precision="int1")), "precision"),
        ("type", edit(lambda d: d["results"][0].update(batch_size="8")), "batch_size"),
        ("date", edit(lambda d: d.update(created_at="yesterday")), "not an ISO 8601 time"),
        ("deep", edit(lambda d: d["telemetry"].update(deep=deep)), "nested"),
        ("export kind", {"schema": "dlgpu.export/1", "exported_at": "2026-01-01T00:00:00+00:00", "dlgpu": "0",
                         "runs": [{"id": "a" * 32, "kind": "predict", "status": "complete", "origin": "x",
                                   "created_at": "2026-01-01T00:00:00+00:00", "document": bench_doc}]},
         "kind 'predict' but its document is a bench document"),
    ]


def test_hostile_files_are_refused_with_one_line_and_nothing_written(
        tmp_path: Path, bench_doc: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "r.sqlite"
    good = tmp_path / "good.json"
    good.write_text(json.dumps(bench_doc))
    for name, content, needle in _hostile(bench_doc):
        f = tmp_path / f"{name.replace(' ', '_')}.json"
        f.write_text(content if isinstance(content, str) else json.dumps(content))
        # the bad file after a good one: nothing of either is written
        code = main(["import", str(good), str(f), "--db", str(db)])
        out, err = capsys.readouterr()
        assert code == 2, name
        assert out == "" and len(err.strip().splitlines()) == 1, (name, err)
        assert needle in err, (name, err)
        assert str(f) in err
        assert not db.exists(), name  # not even an empty database


def test_oversized_file_is_refused_before_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dlgpu.store import schema

    monkeypatch.setattr(schema, "MAX_FILE_BYTES", 100)
    f = tmp_path / "big.json"
    f.write_text(" " * 200 + "{}")
    with pytest.raises(BadInput, match="more than the 100"):
        api.import_files([f], tmp_path / "r.sqlite")


def test_hostile_strings_are_kept_as_data(tmp_path: Path, bench_doc: dict[str, Any]) -> None:
    """A workload name full of markup imports as text (the report escapes it; see test_report_*)."""
    d = copy.deepcopy(bench_doc)
    for r in d["results"]:
        r["workload"] = "<script>alert(1)</script>[bold]x"
    d.pop("run_id")
    f = tmp_path / "x.json"
    f.write_text(json.dumps(d))
    db = tmp_path / "r.sqlite"
    added = api.import_files([f], db)["added"]
    assert api.show_run(added[0], db).document["results"][0]["workload"] == "<script>alert(1)</script>[bold]x"
    assert main(["show", added[0], "--db", str(db)]) == 0


# --- real processes ---------------------------------------------------------------------------------------------

WRITER = """
import sys, time
from dlgpu.store import Store
db, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
doc = {"schema": "dlgpu.bench/1", "created_at": "2026-01-01T00:00:00+00:00", "machine": {"devices": []},
       "results": []}
with Store(db) as s:
    run = tag * 32
    s.begin_bench(run, doc)
    for i in range(n):
        doc["results"].append({"workload": f"w{i}", "task": "train", "device": "cpu", "precision": "fp32",
                               "batch_size": 1, "status": "ok", "samples_per_s": float(i + 1)})
        s.save_bench_results(run, doc)
    s.save_bench_results(run, doc, "complete")
"""


def test_two_writers_at_once_lose_nothing(tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite"
    n = 150
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(db), tag, str(n)], stderr=subprocess.PIPE,
                              text=True) for tag in ("a", "b")]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    with Store(db) as s:
        for tag in ("a", "b"):
            got = s.get(tag * 32)
            assert got.row.status == "complete"
            assert [r["workload"] for r in got.document["results"]] == [f"w{i}" for i in range(n)]
        assert s.integrity() == "ok"


def _bench_cmd(db: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "dlgpu", "bench", "--db", str(db), "-d", "cpu", "--no-telemetry", "--quick",
            "--set", "image_size=16", *extra]


@pytest.mark.slow
def test_two_bench_processes_share_one_database(tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite"
    cmd = _bench_cmd(db, "-w", "test_resnet", "test_dcgan", "-p", "fp32", "bf16", "--budget", "0.2", "--json")
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    docs = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
        docs.append(json.loads(out))
    with Store(db) as s:
        runs = s.runs()
        assert sorted(r.id for r in runs) == sorted(d["run_id"] for d in docs)
        assert all(r.status == "complete" for r in runs)
        for d in docs:
            assert s.get(d["run_id"]).document["results"] == d["results"]


def _wait_for_results(db: Path, proc: subprocess.Popen[str], timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        if db.exists():
            try:
                with Store(db) as s:
                    runs = s.runs()
                    if runs and any(r["status"] == "ok" for r in s.get(runs[0].id).document["results"]):
                        return
            except BadInput:
                pass
        time.sleep(0.2)
    raise AssertionError("no result was stored in time")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_interrupted_or_killed_run_keeps_what_it_finished(tmp_path: Path, sig: signal.Signals) -> None:
    db = tmp_path / "r.sqlite"
    proc = subprocess.Popen(_bench_cmd(db, "-w", "test_resnet", "test_bert", "test_dcgan", "-p", "fp32", "bf16",
                                       "--budget", "2"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_results(db, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == (130 if sig == signal.SIGINT else -signal.SIGKILL), err
    with Store(db) as s:
        assert s.integrity() == "ok"
        (run,) = s.runs()
        assert run.status == ("interrupted" if sig == signal.SIGINT else "incomplete")
        doc = s.get(run.id).document
    assert doc["interrupted"] is True
    ok = [r for r in doc["results"] if r["status"] == "ok"]
    assert ok and len(doc["results"]) < 12  # stopped midway, kept what it had finished
    assert all(r["step_time_s"]["samples"] for r in ok)
    validate_document(doc, "after the signal")
