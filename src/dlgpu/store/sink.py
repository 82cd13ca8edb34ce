"""A bench run saved in the results store as it goes: its row first, then every result as it finishes, then
``complete`` or ``interrupted``; and, where asked, a JSON file rewritten atomically after every result."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from dlgpu.home import write_json_atomic
from dlgpu.results import BenchReport

from .sqlite import Store, bench_summary, new_run_id


class BenchSink:
    """Where a running bench writes. A store that fails (disk full, a locked file past the busy timeout) never
    costs a measurement: the run goes on, a warning says what was not saved."""

    def __init__(self, db: Path | None, json_path: Path | None = None) -> None:
        self.store: Store | None = None
        self.run_id: str | None = None
        self.json_path = json_path
        if db is not None:
            self.store = Store(db)
            self.run_id = new_run_id()

    def _warn(self, exc: Exception) -> None:
        path = self.store.path if self.store is not None else "?"
        sys.stderr.write(f"dlgpu: warning: could not save to the results store {path}: {exc}\n")
        self.store = None

    def _write(self, action: Any, report: BenchReport, *args: Any) -> None:
        if self.store is None or self.run_id is None:
            return
        doc = report.to_dict()
        try:
            action(self.run_id, doc, *args, bench_summary(doc))
        except Exception as exc:
            self._warn(exc)

    def begin(self, report: BenchReport) -> None:
        if self.store is not None:
            self._write(self.store.begin_bench, report)

    def save(self, report: BenchReport, status: str | None = None) -> None:
        """Every result so far (``status``: None while running, then ``complete`` or ``interrupted``)."""
        if self.store is not None:
            self._write(self.store.save_bench_results, report, status)
        if self.json_path is not None:
            write_json_atomic(self.json_path, report.to_dict())

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
