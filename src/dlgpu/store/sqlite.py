"""The results store: every ``bench``, ``predict``, ``advise`` and ``probe`` run in one SQLite database.

- Where: ``--db PATH``, else ``$DLGPU_DB``, else ``$DLGPU_HOME/results.sqlite``, else the user data dir
  (``platformdirs``: ``~/.local/share/dlgpu/results.sqlite`` on Linux).
- WAL journal, a 30 s busy timeout and one short ``BEGIN IMMEDIATE`` transaction per write: two ``dlgpu
  bench`` processes writing at once both keep everything. Opening (the switch to WAL, creating or migrating
  the schema) is safe when several processes open a new file at once: the schema is created in one
  ``BEGIN IMMEDIATE`` transaction that checks the version again inside it, and a step that SQLite refuses at
  once with "database is locked" (it does so for the WAL switch, without waiting) is retried until the busy
  timeout has passed. A database still locked then raises ``DatabaseLocked``, saying how long it waited.
- A bench run is written as it goes: its row at the start (status ``running``, with this process's pid and
  boot id), then its results after each one finishes, then ``complete`` or ``interrupted``. A process killed
  midway leaves a consistent database with every finished result; its run then reads ``incomplete``.
- Each run keeps its whole document (raw per-step samples, telemetry samples) beside indexed columns for
  filtering, and the fingerprint of the machine it ran on (CPU, GPUs, driver, CUDA, torch and dlgpu
  versions; the hostname only where the user allowed it).
- ``schema_version`` records the layout; ``MIGRATIONS`` bring an older database forward, in order, each in
  a transaction. A database from a newer dlgpu is refused, not rewritten."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from dlgpu.errors import BadInput
from dlgpu.home import default_db_path, utc_now

BUSY_TIMEOUT_S = 30.0
"""How long opening or writing waits for another connection's lock before ``DatabaseLocked`` (``Store``'s
``busy_timeout_s`` sets it per store)."""

T = TypeVar("T")

MIGRATIONS: tuple[str, ...] = (
    # 1: runs, their results and the machines they ran on
    """
    CREATE TABLE machines (
        id INTEGER PRIMARY KEY,
        fingerprint TEXT NOT NULL UNIQUE,
        label TEXT NOT NULL,
        doc TEXT NOT NULL
    );
    CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        schema TEXT NOT NULL,
        created_at TEXT NOT NULL,
        finished_at TEXT,
        status TEXT NOT NULL,
        origin TEXT NOT NULL,
        machine_id INTEGER REFERENCES machines(id),
        pid INTEGER,
        boot_id TEXT,
        summary TEXT NOT NULL DEFAULT '',
        doc TEXT NOT NULL
    );
    CREATE INDEX runs_created ON runs(created_at);
    CREATE TABLE results (
        run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        workload TEXT NOT NULL,
        task TEXT NOT NULL,
        device TEXT NOT NULL,
        device_name TEXT NOT NULL,
        precision TEXT NOT NULL,
        batch_size INTEGER,
        status TEXT NOT NULL,
        samples_per_s REAL,
        doc TEXT,
        PRIMARY KEY (run_id, seq)
    );
    CREATE INDEX results_workload ON results(workload, task, precision);
    CREATE INDEX results_device ON results(device_name);
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


class DatabaseLocked(BadInput):
    """Another connection held the database locked for longer than the store's busy timeout."""


def _is_locked(exc: sqlite3.Error) -> bool:
    """SQLITE_BUSY or SQLITE_LOCKED (any extended code), by code where Python gives it, else by message."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(exc) or "busy" in str(exc)


def new_run_id() -> str:
    return uuid.uuid4().hex


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def canonical(doc: Any) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False)


def fingerprint(machine: Mapping[str, Any]) -> dict[str, Any]:
    """What identifies the machine a bench run measured: its devices and the software stack that decides
    its throughput. The hostname only where the run recorded it (``--hostname``)."""
    devices = []
    for d in machine.get("devices") or []:
        dev = {k: d.get(k) for k in ("kind", "name", "memory_bytes", "backend", "compute_capability",
                                     "physical_cores", "threads_used")}
        devices.append(dev)
    return {
        "hostname": machine.get("hostname"),
        "platform": machine.get("platform"),
        "devices": devices,
        "gpu_driver": machine.get("gpu_driver"),
        "torch": machine.get("torch"), "torch_cuda": machine.get("torch_cuda"),
        "torch_hip": machine.get("torch_hip"), "cudnn": machine.get("cudnn"),
        "python": machine.get("python"), "dlgpu": machine.get("dlgpu"),
    }


def machine_label(fp: Mapping[str, Any]) -> str:
    """'Intel(R) Xeon(R) Processor (2 cores)' or 'NVIDIA A100-SXM4-80GB x8 + AMD EPYC 7763 (64 cores)'."""
    devs = fp.get("devices") or []
    cpu = next((d for d in devs if d.get("kind") == "cpu"), None)
    gpus: dict[str, int] = {}
    for d in devs:
        if d.get("kind") != "cpu":
            gpus[str(d.get("name"))] = gpus.get(str(d.get("name")), 0) + 1
    parts = [f"{n} x{c}" if c > 1 else n for n, c in gpus.items()]
    if cpu:
        cores = cpu.get("threads_used") or cpu.get("physical_cores")
        parts.append(f"{cpu.get('name')}" + (f" ({cores} core{'s' if cores != 1 else ''})" if cores else ""))
    label = " + ".join(parts) or "unknown machine"
    return f"{fp['hostname']}: {label}" if fp.get("hostname") else label


@dataclass(frozen=True)
class RunRow:
    id: str
    kind: str
    schema: str
    created_at: str
    finished_at: str | None
    status: str  # running | complete | interrupted | incomplete (killed: its process is gone)
    origin: str  # "local" or "imported from FILE"
    machine: str
    summary: str

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "schema": self.schema, "created_at": self.created_at,
                "finished_at": self.finished_at, "status": self.status, "origin": self.origin,
                "machine": self.machine, "summary": self.summary}


@dataclass(frozen=True)
class StoredRun:
    row: RunRow
    document: dict[str, Any]  # the bench/predict document, results included, as it was saved


class Store:
    """One connection to the results database. Use as a context manager or call ``close``."""

    def __init__(self, path: Path | None = None, busy_timeout_s: float | None = None) -> None:
        self.path = Path(path) if path is not None else default_db_path()
        self.busy_timeout_s = BUSY_TIMEOUT_S if busy_timeout_s is None else max(0.0, float(busy_timeout_s))
        self._waiting_since: float | None = None  # set while a step is retried (see ``_retrying``)
        if self.path.exists() and self.path.is_dir():
            raise BadInput(f"{self.path}: is a directory; give a database file path", param="db")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise BadInput(f"{self.path}: cannot open ({exc})", param="db") from None
        try:
            self._retrying(self._open)
        except DatabaseLocked:
            self.db.close()
            raise
        except sqlite3.DatabaseError as exc:
            self.db.close()
            raise BadInput(f"{self.path}: not a dlgpu results database ({exc})", param="db") from None
        except BaseException:
            self.db.close()
            raise

    def _open(self) -> None:
        """WAL mode, the connection's settings, the schema at this version. Safe to run again after a busy
        error: every step is idempotent, and the schema is written in one transaction."""
        mode = self.db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise BadInput(f"{self.path}: SQLite could not switch it to WAL mode (got {mode})", param="db")
        self.db.execute("PRAGMA synchronous = NORMAL")
        self.db.execute("PRAGMA foreign_keys = ON")
        self._migrate()

    def _set_busy_timeout(self, seconds: float) -> None:
        self.db.execute(f"PRAGMA busy_timeout = {max(1, int(seconds * 1000))}")

    def _retrying(self, step: Callable[[], T]) -> T:
        """``step()``, again after a short random pause each time SQLite says the database is busy or locked,
        until ``busy_timeout_s`` has passed in all (SQLite's own busy handler waits inside a step, but some
        steps, such as switching to WAL while another connection creates the file, fail at once);
        then ``DatabaseLocked``. A step retried inside another (opening writes the schema) shares its wait."""
        outermost = self._waiting_since is None
        start = time.monotonic() if self._waiting_since is None else self._waiting_since
        self._waiting_since = start
        pause = 0.002
        try:
            while True:
                left = self.busy_timeout_s - (time.monotonic() - start)
                self._set_busy_timeout(max(left, 0.0))
                try:
                    return step()
                except sqlite3.OperationalError as exc:
                    if not _is_locked(exc):
                        raise
                    waited = time.monotonic() - start
                    if waited >= self.busy_timeout_s:
                        raise DatabaseLocked(
                            f"{self.path}: the database is locked by another connection (a dlgpu process or "
                            f"another program writing to it); waited {waited:.1f} s for it (the busy timeout is "
                            f"{self.busy_timeout_s:g} s)", param="db") from None
                time.sleep(min(pause * (0.5 + random.random()), max(self.busy_timeout_s - waited, 0.0)))
                pause = min(pause * 2, 0.1)
        finally:
            if outermost:
                self._waiting_since = None
                self._set_busy_timeout(self.busy_timeout_s)

    # --- plumbing -------------------------------------------------------------------------------------
    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One short write transaction, taken up front (``IMMEDIATE``) so that concurrent writers queue
        on the busy timeout instead of failing halfway with a lock upgrade error; ``DatabaseLocked`` when
        another connection holds the lock past it."""
        self._retrying(lambda: self.db.execute("BEGIN IMMEDIATE"))
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        try:
            self.db.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise

    def version(self) -> int:
        """The schema version; 0 for a database without dlgpu's tables (a new file)."""
        if not self.db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
                               ).fetchone():
            return 0
        row = self.db.execute("SELECT version FROM schema_version").fetchone()
        return int(row[0]) if row else 0

    def _newer(self, have: int) -> BadInput:
        return BadInput(f"{self.path}: written by a newer dlgpu (schema version {have}; this one knows up to "
                        f"{SCHEMA_VERSION}); upgrade dlgpu or use another --db", param="db")

    def _migrate(self) -> None:
        """Bring the schema to ``SCHEMA_VERSION``: read first (no lock; the usual case is nothing to do), then
        in one ``BEGIN IMMEDIATE`` transaction that reads the version again: of several processes opening a
        new file at once, one creates the schema and the others find it there."""
        have = self.version()
        if have == SCHEMA_VERSION:
            return
        if have > SCHEMA_VERSION:
            raise self._newer(have)
        with self._write() as db:
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            have = self.version()  # again, inside the lock: another process may have migrated meanwhile
            if have > SCHEMA_VERSION:
                raise self._newer(have)
            for version in range(have + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[version - 1].split(";"):
                    if statement.strip():
                        db.execute(statement)
            db.execute("DELETE FROM schema_version")
            db.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))

    def _machine_id(self, db: sqlite3.Connection, machine: Mapping[str, Any] | None) -> int | None:
        if not machine:
            return None
        fp = fingerprint(machine)
        key = hashlib.sha256(canonical(fp).encode()).hexdigest()
        row = db.execute("SELECT id FROM machines WHERE fingerprint = ?", (key,)).fetchone()
        if row:
            return int(row[0])
        cur = db.execute("INSERT INTO machines (fingerprint, label, doc) VALUES (?, ?, ?)",
                         (key, machine_label(fp), canonical(fp)))
        return int(cur.lastrowid or 0)

    # --- writing ----------------------------------------------------------------------------------------
    def begin_bench(self, run_id: str, doc: Mapping[str, Any], summary: str = "") -> None:
        """The run's row, before its first result: status ``running``."""
        header = {k: v for k, v in doc.items() if k != "results"}
        with self._write() as db:
            mid = self._machine_id(db, doc.get("machine"))
            db.execute("INSERT INTO runs (id, kind, schema, created_at, status, origin, machine_id, pid, boot_id, "
                       "summary, doc) VALUES (?, 'bench', ?, ?, 'running', 'local', ?, ?, ?, ?, ?)",
                       (run_id, doc["schema"], doc["created_at"], mid, os.getpid(), _boot_id(), summary,
                        canonical(header)))

    def save_bench_results(self, run_id: str, doc: Mapping[str, Any], status: str | None = None,
                           summary: str | None = None) -> None:
        """Replace the run's results with ``doc``'s (projections and speedups change as results arrive),
        and its status when given (``complete``/``interrupted``): one transaction, all or nothing."""
        header = {k: v for k, v in doc.items() if k != "results"}
        with self._write() as db:
            db.execute("DELETE FROM results WHERE run_id = ?", (run_id,))
            self._insert_results(db, run_id, doc)
            sets, args = ["doc = ?"], [canonical(header)]
            if status is not None:
                sets += ["status = ?", "finished_at = ?"]
                args += [status, utc_now()]
            if summary is not None:
                sets.append("summary = ?")
                args.append(summary)
            db.execute(f"UPDATE runs SET {', '.join(sets)} WHERE id = ?", (*args, run_id))

    @staticmethod
    def _insert_results(db: sqlite3.Connection, run_id: str, doc: Mapping[str, Any]) -> None:
        names = {d["id"]: d.get("name", d["id"]) for d in (doc.get("machine") or {}).get("devices", [])}
        db.executemany(
            "INSERT INTO results (run_id, seq, workload, task, device, device_name, precision, batch_size, status, "
            "samples_per_s, doc) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(run_id, i, r["workload"], r["task"], r["device"], names.get(r["device"], r["device"]), r["precision"],
              r.get("batch_size"), r["status"], r.get("samples_per_s"), canonical(r))
             for i, r in enumerate(doc.get("results") or [])])

    def save_predict(self, run_id: str, doc: Mapping[str, Any], machine: Mapping[str, Any] | None = None,
                     origin: str = "local", status: str = "complete") -> None:
        with self._write() as db:
            self._insert_predict(db, run_id, doc, status, origin, self._machine_id(db, machine))

    def save_advise(self, run_id: str, doc: Mapping[str, Any], machine: Mapping[str, Any] | None = None,
                    origin: str = "local", status: str = "complete") -> None:
        """An advise run: its document whole, indexed by workload and the candidate it ranks first."""
        with self._write() as db:
            self._insert_advise(db, run_id, doc, status, origin, self._machine_id(db, machine))

    @staticmethod
    def _insert_advise(db: sqlite3.Connection, run_id: str, doc: Mapping[str, Any], status: str, origin: str,
                       machine_id: int | None) -> None:
        created = doc.get("created_at") or utc_now()
        db.execute("INSERT INTO runs (id, kind, schema, created_at, finished_at, status, origin, machine_id, "
                   "summary, doc) VALUES (?, 'advise', ?, ?, ?, ?, ?, ?, ?, ?)",
                   (run_id, doc["schema"], created, created, status, origin, machine_id, advise_summary(doc),
                    canonical(doc)))
        db.executemany(
            "INSERT INTO results (run_id, seq, workload, task, device, device_name, precision, batch_size, status, "
            "samples_per_s, doc) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'ok', ?, NULL)",
            [(run_id, i, doc["workload"], doc["task"], c["hardware"], c["name"], c["precision"], c.get("batch_size"),
              (c["figures"].get("samples_per_s") or {}).get("value")) for i, c in enumerate(doc["candidates"])])

    @staticmethod
    def _insert_predict(db: sqlite3.Connection, run_id: str, doc: Mapping[str, Any], status: str, origin: str,
                        machine_id: int | None) -> None:
        """A prediction: the run row carries the whole document; one results row indexes it."""
        created = doc.get("created_at") or utc_now()
        db.execute("INSERT INTO runs (id, kind, schema, created_at, finished_at, status, origin, machine_id, "
                   "summary, doc) VALUES (?, 'predict', ?, ?, ?, ?, ?, ?, ?, ?)",
                   (run_id, doc["schema"], created, created, status, origin, machine_id, predict_summary(doc),
                    canonical(doc)))
        db.execute("INSERT INTO results (run_id, seq, workload, task, device, device_name, precision, batch_size, "
                   "status, samples_per_s, doc) VALUES (?, 0, ?, ?, ?, ?, ?, ?, 'ok', ?, NULL)",
                   (run_id, doc["workload"], doc["task"], doc["hardware"], doc.get("hardware_name") or doc["hardware"],
                    doc["precision"], doc["batch_size"], doc["samples_per_s"]))

    def save_probe(self, run_id: str, doc: Mapping[str, Any], origin: str = "local") -> None:
        """A probe run (``dlgpu probe``): its document whole, under the machine its document records, indexed by
        the devices it probed."""
        with self._write() as db:
            self._insert_probe(db, run_id, doc, origin)

    def _insert_probe(self, db: sqlite3.Connection, run_id: str, doc: Mapping[str, Any], origin: str) -> None:
        created = doc.get("created_at") or utc_now()
        status = "interrupted" if doc.get("interrupted") else "complete"
        db.execute("INSERT INTO runs (id, kind, schema, created_at, finished_at, status, origin, machine_id, "
                   "summary, doc) VALUES (?, 'probe', ?, ?, ?, ?, ?, ?, ?, ?)",
                   (run_id, doc["schema"], created, created, status, origin, self._machine_id(db, doc.get("machine")),
                    probe_summary(doc), canonical(doc)))
        names = {d["id"]: d.get("name", d["id"]) for d in (doc.get("machine") or {}).get("devices", [])}
        db.executemany(
            "INSERT INTO results (run_id, seq, workload, task, device, device_name, precision, batch_size, status, "
            "samples_per_s, doc) VALUES (?, ?, 'probe', 'probe', ?, ?, '-', NULL, 'ok', NULL, NULL)",
            [(run_id, i, dev, names.get(dev, dev)) for i, dev in enumerate(doc.get("devices") or [])])

    def import_runs(self, runs: Sequence[tuple[str, str, str, dict[str, Any], str]]) -> list[str]:
        """(id, kind, status, document, origin) each; all in one transaction. Returns the ids newly added (a
        run already present, by id, is left as it is)."""
        added = []
        with self._write() as db:
            for run_id, kind, status, doc, origin in runs:
                if db.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone():
                    continue
                if kind == "bench":
                    header = {k: v for k, v in doc.items() if k != "results"}
                    mid = self._machine_id(db, doc.get("machine"))
                    db.execute("INSERT INTO runs (id, kind, schema, created_at, finished_at, status, origin, "
                               "machine_id, summary, doc) VALUES (?, 'bench', ?, ?, ?, ?, ?, ?, ?, ?)",
                               (run_id, doc["schema"], doc["created_at"], doc["created_at"], status, origin, mid,
                                bench_summary(doc), canonical(header)))
                    self._insert_results(db, run_id, doc)
                elif kind == "advise":
                    self._insert_advise(db, run_id, doc, status, origin, None)
                elif kind == "probe":
                    self._insert_probe(db, run_id, doc, origin)
                else:  # the machine a prediction was made on is not in its document: none is recorded
                    self._insert_predict(db, run_id, doc, status, origin, None)
                added.append(run_id)
        return added

    # --- reading ----------------------------------------------------------------------------------------
    def _status(self, status: str, pid: int | None, boot: str | None) -> str:
        if status != "running":
            return status
        if pid is not None and boot is not None and boot == _boot_id() and _alive(pid):
            return "running"
        return "incomplete"

    def runs(self, workload: str | None = None, device: str | None = None, kind: str | None = None,
             since: str | None = None, until: str | None = None, limit: int | None = None) -> list[RunRow]:
        """Runs, newest first. ``workload``/``device`` match any of a run's results (device: its id such as
        ``cuda:0``, a catalog id, or a substring of its name, case-insensitive); ``since``/``until`` are ISO
        dates or times (UTC)."""
        where, args = [], []
        if kind:
            where.append("r.kind = ?")
            args.append(kind)
        if since:
            where.append("r.created_at >= ?")
            args.append(since)
        if until:
            where.append("r.created_at < ?")
            args.append(until)
        if workload or device:
            sub, sargs = ["x.run_id = r.id"], []
            if workload:
                sub.append("x.workload = ?")
                sargs.append(workload)
            if device:
                sub.append("(x.device = ? OR lower(x.device_name) LIKE ?)")
                sargs += [device, f"%{device.lower()}%"]
            where.append(f"EXISTS (SELECT 1 FROM results x WHERE {' AND '.join(sub)})")
            args += sargs
        sql = ("SELECT r.id, r.kind, r.schema, r.created_at, r.finished_at, r.status, r.origin, m.label, r.summary, "
               "r.pid, r.boot_id FROM runs r LEFT JOIN machines m ON m.id = r.machine_id"
               + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY r.created_at DESC, r.rowid DESC")
        if limit:
            sql += f" LIMIT {int(limit)}"
        out = []
        for row in self.db.execute(sql, args):
            rid, kind_, schema, created, finished, status, origin, label, summary, pid, boot = row
            out.append(RunRow(rid, kind_, schema, created, finished, self._status(status, pid, boot), origin,
                              label or ("(not recorded)" if kind_ != "bench" else "unknown"), summary))
        return out

    def resolve(self, ref: str) -> str:
        """A run id from an id, a unique prefix of one (at least 4 characters), or ``latest``."""
        ref = ref.strip().lower()
        if ref in ("latest", "last"):
            row = self.db.execute("SELECT id FROM runs ORDER BY created_at DESC, rowid DESC LIMIT 1").fetchone()
            if not row:
                raise BadInput(f"{ref}: the database {self.path} has no runs yet")
            return str(row[0])
        if len(ref) < 4 or any(c not in "0123456789abcdef" for c in ref):
            raise BadInput(f"run {ref!r}: give a run id or a prefix of at least 4 hex digits (see `dlgpu runs`), "
                           "or 'latest'")
        rows = self.db.execute("SELECT id FROM runs WHERE id LIKE ? LIMIT 2", (ref + "%",)).fetchall()
        if not rows:
            raise BadInput(f"run {ref}: no such run in {self.path} (see `dlgpu runs`)")
        if len(rows) > 1:
            raise BadInput(f"run {ref}: more than one run starts with it; give more of the id")
        return str(rows[0][0])

    def get(self, ref: str) -> StoredRun:
        run_id = self.resolve(ref)
        row = self.db.execute(
            "SELECT r.id, r.kind, r.schema, r.created_at, r.finished_at, r.status, r.origin, m.label, r.summary, "
            "r.pid, r.boot_id, r.doc FROM runs r LEFT JOIN machines m ON m.id = r.machine_id WHERE r.id = ?",
            (run_id,)).fetchone()
        rid, kind, schema, created, finished, status, origin, label, summary, pid, boot, doc_text = row
        doc = json.loads(doc_text)
        if kind == "bench":
            doc["results"] = [json.loads(t) for (t,) in self.db.execute(
                "SELECT doc FROM results WHERE run_id = ? ORDER BY seq", (rid,))]
        status = self._status(status, pid, boot)
        if kind == "bench" and status in ("incomplete", "running"):
            doc["interrupted"] = True
        doc["run_id"] = rid
        return StoredRun(RunRow(rid, kind, schema, created, finished, status, origin,
                                label or ("(not recorded)" if kind != "bench" else "unknown"), summary), doc)

    def all_ids(self) -> list[str]:
        return [str(r[0]) for r in self.db.execute("SELECT id FROM runs ORDER BY created_at, rowid")]

    def integrity(self) -> str:
        return str(self.db.execute("PRAGMA integrity_check").fetchone()[0])


def bench_summary(doc: Mapping[str, Any]) -> str:
    results = doc.get("results") or []
    ok = [r for r in results if r.get("status") == "ok"]
    workloads = sorted({r["workload"] for r in results})
    devices = sorted({r["device"] for r in results})
    shown = ", ".join(workloads[:4]) + (f" +{len(workloads) - 4}" if len(workloads) > 4 else "")
    return f"{len(ok)} measured of {len(results)}: {shown} on {', '.join(devices)}" if results else "no results yet"


def predict_summary(doc: Mapping[str, Any]) -> str:
    sps = doc["samples_per_s"]
    return (f"{doc['workload']} {doc['task']} {doc['precision']} b{doc['batch_size']} on {doc['hardware']}: "
            f"{f'{sps:,.0f}' if sps >= 100 else f'{sps:.3g}'} samples/s predicted")


def probe_summary(doc: Mapping[str, Any]) -> str:
    """``cpu: fp32 GEMM 351 GFLOP/s, bf16 GEMM 1.97 TFLOP/s, triad 28.4 GB/s`` (each device's ceilings)."""
    parts = []
    for dev, ceilings in (doc.get("ceilings") or {}).items():
        shown = []
        for key in ("gemm:fp32", "gemm:tf32", "gemm:bf16", "gemm:fp16", "gemm:int8", "triad"):
            c = ceilings.get(key)
            if c and c.get("value"):
                unit = "B/s" if key == "triad" else ("OP/s" if key == "gemm:int8" else "FLOP/s")
                shown.append(f"{key.removeprefix('gemm:')} {c['value'] / 1e9:,.4g} G{unit}")
        parts.append(f"{dev}: {', '.join(shown) or 'no figures'}")
    flag = " (contended)" if doc.get("contended") else ""
    return ("; ".join(parts) or "nothing probed") + flag


def advise_summary(doc: Mapping[str, Any]) -> str:
    v = doc.get("verdict") or {}
    return f"{doc['workload']} {doc['task']}: {v.get('answer', '?')} ({len(doc.get('candidates') or [])} candidates)"
