"""Persistence of results: the SQLite results store (``sqlite``), the validation of imported documents
(``schema``) and atomic JSON files (``jsonfile``)."""

from .jsonfile import write_json_atomic, write_text_atomic
from .sqlite import (
    SCHEMA_VERSION,
    RunRow,
    Store,
    StoredRun,
    bench_summary,
    default_db_path,
    fingerprint,
    machine_label,
    new_run_id,
    predict_summary,
)

__all__ = ["SCHEMA_VERSION", "RunRow", "Store", "StoredRun", "bench_summary", "default_db_path",
           "fingerprint", "machine_label", "new_run_id", "predict_summary", "write_json_atomic",
           "write_text_atomic"]
