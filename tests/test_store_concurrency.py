"""Creating the results database under concurrency: several real processes opening one new file at the same
moment all get the schema and keep their runs; a database another connection holds locked raises the
"locked" error with the time waited (not "not a dlgpu results database"), after the configured wait."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dlgpu.cli.main import main
from dlgpu.store import SCHEMA_VERSION, Store
from dlgpu.store import sqlite as store_sqlite
from dlgpu.store.sqlite import DatabaseLocked

PROCESSES = 4
ROUNDS = 20

WORKER = r"""
import sys, time
from pathlib import Path
from dlgpu.store import Store
folder, tag, rounds, processes = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
failures = []
for k in range(rounds):
    # a barrier: each process says it is ready and waits for the others; all then start at the same
    # moment, 50 ms after the last one was ready (the newest file time, which every process reads alike)
    (folder / f"ready-{k}-{tag}").touch()
    t = time.monotonic()
    while len(ready := list(folder.glob(f"ready-{k}-*"))) < processes and time.monotonic() - t < 20:
        time.sleep(0.001)
    go = max(f.stat().st_mtime for f in ready) + 0.05
    while time.time() < go:
        time.sleep(max(0.0, min(go - time.time() - 0.002, 0.01)))
    run = f"{tag}{k:04d}".ljust(32, "0")
    doc = {"schema": "dlgpu.bench/1", "created_at": "2026-01-01T00:00:00+00:00", "machine": {"devices": []},
           "results": []}
    try:
        with Store(folder / f"round{k}.sqlite") as s:
            s.begin_bench(run, doc)
            doc["results"].append({"workload": f"w-{tag}", "task": "train", "device": "cpu", "precision": "fp32",
                                   "batch_size": 1, "status": "ok", "samples_per_s": float(k + 1)})
            s.save_bench_results(run, doc, "complete")
    except Exception as exc:
        failures.append(f"round {k}: {type(exc).__name__}: {exc}")
sys.stderr.write("\n".join(failures))
sys.exit(1 if failures else 0)
"""


def test_processes_creating_one_new_database_at_once_lose_nothing(tmp_path: Path) -> None:
    tags = [chr(ord("a") + i) for i in range(PROCESSES)]  # hex digits: run ids are hex
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path), tag, str(ROUNDS), str(PROCESSES)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for tag in tags]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert err == ""
    for k in range(ROUNDS):
        db = tmp_path / f"round{k}.sqlite"
        con = sqlite3.connect(db)
        try:
            # the schema was created once: one version row, at this version
            assert con.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
        finally:
            con.close()
        with Store(db) as s:
            runs = {r.id: r for r in s.runs()}
            assert sorted(runs) == sorted(f"{tag}{k:04d}".ljust(32, "0") for tag in tags)
            assert all(r.status == "complete" for r in runs.values())
            for tag in tags:
                results = s.get(f"{tag}{k:04d}".ljust(32, "0")).document["results"]
                assert [(r["workload"], r["samples_per_s"]) for r in results] == [(f"w-{tag}", float(k + 1))]
            assert s.integrity() == "ok"


def _hold(db: Path) -> sqlite3.Connection:
    """Another connection with an open ``BEGIN EXCLUSIVE`` transaction on ``db``."""
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("BEGIN EXCLUSIVE")
    return con


def test_a_new_file_held_locked_raises_locked_with_the_wait(tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite"
    holder = _hold(db)  # a new file, locked before any dlgpu schema exists (rollback-journal mode)
    try:
        t = time.monotonic()
        with pytest.raises(DatabaseLocked) as info:
            Store(db, busy_timeout_s=0.4)
        waited = time.monotonic() - t
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    message = str(info.value)
    assert "locked" in message and "waited 0.4 s" in message and "busy timeout is 0.4 s" in message
    assert "not a dlgpu results database" not in message
    assert info.value.param == "db" and str(db) in message
    assert 0.4 <= waited < 3.0
    with Store(db) as s:  # released: the same file opens and gets the schema
        assert s.version() == SCHEMA_VERSION
        assert s.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_write_to_a_database_held_locked_raises_locked_and_writes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite"
    Store(db).close()
    doc = {"schema": "dlgpu.bench/1", "created_at": "2026-01-01T00:00:00+00:00", "results": []}
    holder = _hold(db)
    try:
        with Store(db, busy_timeout_s=0.3) as s:  # WAL: reading (opening at this version) does not wait
            assert s.runs() == []
            t = time.monotonic()
            with pytest.raises(DatabaseLocked, match=r"locked .*waited 0\.3 s"):
                s.begin_bench("ab" * 16, doc)
            assert 0.3 <= time.monotonic() - t < 3.0
            assert not s.db.in_transaction
            holder.execute("ROLLBACK")
            s.begin_bench("ab" * 16, doc)  # released: the same store writes
            assert [r.id for r in s.runs()] == ["ab" * 16]
    finally:
        if holder.in_transaction:
            holder.execute("ROLLBACK")
        holder.close()


def test_cli_says_locked_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(store_sqlite, "BUSY_TIMEOUT_S", 0.3)
    db = tmp_path / "r.sqlite"
    holder = _hold(db)
    try:
        assert main(["runs", "--db", str(db)]) == 2
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1
    assert err.startswith(f"dlgpu: error: --db {db}: the database is locked") and "waited 0.3 s" in err
