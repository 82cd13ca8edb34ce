"""Persistence of results: the SQLite results store (``sqlite``), the validation of imported documents
(``schema``), the run history (``history``: list, show, save, export, import) and a bench run saved as it
goes (``sink``)."""

from .sqlite import (
    SCHEMA_VERSION,
    RunRow,
    Store,
    StoredRun,
    bench_summary,
    fingerprint,
    machine_label,
    new_run_id,
    predict_summary,
)

__all__ = ["SCHEMA_VERSION", "RunRow", "Store", "StoredRun", "bench_summary", "fingerprint", "machine_label",
           "new_run_id", "predict_summary"]
