"""Published CPU and GPU training times of gradient-boosted trees (``data/published_tabular.csv``, a verbatim copy of
the project's ``published_tabular.csv``: GBM-perf's airline benchmark, each row with its source), read into typed rows,
and the devices they ran on described as the model needs them (``model.Device``).

Every row of the file becomes a ``PublishedRow``, the one that crashed (CatBoost out of GPU memory at 100M rows) too:
"does not fit" is a published result, it is only not a time to fit on. Devices:

- a GPU row names its catalog id (``catalog_id``); the 100M rows leave it empty ("Tesla V100 16GB", variant not
  stated): they take the id of the other rows whose device name holds every word of theirs (the main runs' V100 SXM2
  16GB) and say so; every 16 GB V100 in the catalog has the same bandwidth, which is what the model reads;
- a CPU row is matched to ``cpus.csv`` by name where a row exists (none of the three published CPUs has one today),
  else described from the row: the threads it ran (``cpu_cores_used``, else the count its device text states, e.g.
  "48 cores = vCPUs") and an unknown memory bandwidth.

The data set's width is not a column of the file: it is ``data/datasets.csv`` (the airline data: 8 values per row),
with its own source. No torch here."""

from __future__ import annotations

import csv
import functools
import math
import re
from dataclasses import dataclass
from pathlib import Path

from dlgpu.catalog import Catalog, match_cpu
from dlgpu.errors import BadInput

from .model import Device

DATA = Path(__file__).parent / "data"
PUBLISHED_FILE = DATA / "published_tabular.csv"
DATASETS_FILE = DATA / "datasets.csv"
PUBLISHED_DATASET = "airline"
"""The data set every published row was timed on (GBM-perf)."""

REQUIRED = ("library", "device_kind", "device", "catalog_id", "cpu_cores_used", "rows", "trees", "depth", "time_s",
            "status", "source_url")

FAMILIES: dict[str, tuple[str, str]] = {
    "xgboost": ("xgboost", ""),
    "lightgbm": ("lightgbm", ""),
    "lightgbm (one-hot encoded)": ("lightgbm", "one-hot"),
    "catboost": ("catboost", ""),
    "h2o": ("h2o", ""),
    "h2o xgboost": ("h2o_xgboost", ""),
}
"""A published library as written -> (the family the model fits it in, its encoding). LightGBM on one-hot columns
is LightGBM: the values per row are the same (one non-zero per categorical), so the histograms cost the same; H2O's
XGBoost is its own family (its wrapper's cost is its own: 6.4 s where XGBoost takes 0.7 s on the same V100)."""

_SUFFIX = {"k": 1e3, "m": 1e6, "g": 1e9, "b": 1e9}


def parse_rows(text: str) -> int:
    """ "100K" -> 100000, "10M" -> 10000000, "1e8" -> 100000000, "2500" -> 2500; ``ValueError`` otherwise."""
    s = text.strip().lower().replace(",", "").replace("_", "")
    m = re.fullmatch(r"(\d+(?:\.\d+)?(?:e\d+)?)\s*([kmgb]?)", s)
    if not m:
        raise ValueError(f"{text!r} is not a row count (e.g. 100000, 100K, 1M, 1e8)")
    value = float(m.group(1)) * _SUFFIX.get(m.group(2), 1.0)
    if not math.isfinite(value) or value != int(value):
        raise ValueError(f"{text!r} is not a whole number of rows")
    return int(value)


def _num(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


@dataclass(frozen=True)
class PublishedRow:
    """One row of the file (see the module docstring)."""

    index: int  # its line in the file (the header is line 1)
    library: str  # as written
    family: str  # FAMILIES
    encoding: str  # "" or "one-hot"
    kind: str  # cpu | gpu
    device: str
    instance: str
    catalog_id: str
    threads: int | None  # CPU rows: the threads it ran (cores used; vCPUs where the row says so)
    threads_basis: str
    rows: int
    trees: int
    depth: int
    time_s: float | None
    status: str
    memory_note: str
    date: str
    source_url: str
    notes: str

    @property
    def usable(self) -> bool:
        """A training time to fit on: status ok and a time."""
        return self.status == "ok" and bool(self.time_s)


def _threads(r: dict[str, str]) -> tuple[int | None, str]:
    used = _num(r.get("cpu_cores_used"))
    if used:
        return int(used), "cpu_cores_used"
    m = re.search(r"(\d+)\s+(?:physical\s+)?cores", r.get("device", ""))
    if m:
        return int(m.group(1)), f"from the device text {r['device']!r}"
    return None, "not stated"


def load_published(path: Path | None = None) -> list[PublishedRow]:
    """Every row of a file in ``published_tabular.csv``'s columns (default: the shipped copy)."""
    p = path or PUBLISHED_FILE
    try:
        with open(p, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
            if missing:
                raise BadInput(f"{p}: missing columns {', '.join(missing)} (the columns of published_tabular.csv)")
            raw = list(reader)
    except OSError as exc:
        raise BadInput(f"{p}: cannot read ({exc.strerror})") from None
    out = []
    for i, r in enumerate(raw):
        where = f"{p.name} line {i + 2}"
        lib = r["library"].strip()
        if lib not in FAMILIES:
            raise BadInput(f"{where}: library {lib!r} is not one the model knows ({', '.join(FAMILIES)})")
        family, encoding = FAMILIES[lib]
        kind = r["device_kind"].strip().lower()
        if kind not in ("cpu", "gpu"):
            raise BadInput(f"{where}: device_kind {kind!r} (cpu or gpu)")
        try:
            rows = parse_rows(r["rows"])
            trees, depth = int(r["trees"]), int(r["depth"])
        except ValueError as exc:
            raise BadInput(f"{where}: {exc}") from None
        threads, basis = _threads(r) if kind == "cpu" else (None, "")
        out.append(PublishedRow(
            index=i + 2, library=lib, family=family, encoding=encoding, kind=kind, device=r["device"].strip(),
            instance=r.get("instance", "").strip(), catalog_id=r["catalog_id"].strip(), threads=threads,
            threads_basis=basis, rows=rows, trees=trees, depth=depth, time_s=_num(r["time_s"]),
            status=r["status"].strip(), memory_note=r.get("memory_note", "").strip(), date=r.get("date", "").strip(),
            source_url=r["source_url"].strip(), notes=r.get("notes", "").strip()))
    return out


@dataclass(frozen=True)
class Dataset:
    name: str
    features: int
    values_per_row: int
    source: str
    notes: str


@functools.cache
def datasets() -> dict[str, Dataset]:
    """``data/datasets.csv``: the data sets published rows were timed on, with their width and its source."""
    with open(DATASETS_FILE, newline="", encoding="utf-8") as f:
        return {r["dataset"]: Dataset(r["dataset"], int(r["features"]), int(r["values_per_row"]), r["source_url"],
                                      r["notes"]) for r in csv.DictReader(f)}


def published_values_per_row() -> int:
    """Values per row of the published rows' data set (the airline data)."""
    return datasets()[PUBLISHED_DATASET].values_per_row


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def published_device(row: PublishedRow, rows: list[PublishedRow], catalog: Catalog) -> Device:
    """The device a published row ran on, as the model reads it (see the module docstring)."""
    if row.kind == "gpu":
        gid, basis = row.catalog_id, "catalog_id of the row"
        if not gid:
            mine = _words(row.device)
            named = sorted({r.catalog_id for r in rows
                            if r.kind == "gpu" and r.catalog_id and mine <= _words(r.device)})
            if len(named) != 1:
                raise BadInput(f"published row {row.index}: no catalog id and no other row names its GPU "
                               f"({row.device!r})")
            gid = named[0]
            basis = (f"the row leaves catalog_id empty ({row.device!r}, variant not stated): taken as {gid}, the GPU "
                     "of the other rows whose device name holds every word of it")
        gpu = catalog.gpu(gid)
        if row.catalog_id == "":
            same = {g.memory_bandwidth_bytes_per_s for g in catalog.gpus
                    if _words(row.device) - {"tesla"} <= _words(g.name) | _words(g.id)}
            if len(same) == 1:
                basis += "; every such catalog GPU has the same memory bandwidth"
        return Device(key=gpu.id, name=gpu.name, kind="gpu", threads=None,
                      bandwidth_bytes_per_s=gpu.memory_bandwidth_bytes_per_s, basis=basis)
    spec = match_cpu(row.device, catalog)
    if spec is not None:
        return Device(key=spec.id, name=spec.name, kind="cpu", threads=row.threads or spec.cores,
                      bandwidth_bytes_per_s=spec.memory_bandwidth_bytes_per_s,
                      basis=f"catalog CPU {spec.id}; {row.threads} threads ({row.threads_basis})")
    if row.threads is None:
        raise BadInput(f"published row {row.index}: a CPU row with no thread count ({row.device!r})")
    return Device(key=_cpu_key(row), name=row.device, kind="cpu", threads=row.threads, bandwidth_bytes_per_s=None,
                  basis=f"not in the catalog: {row.threads} threads ({row.threads_basis}), memory bandwidth unknown")


def _cpu_key(row: PublishedRow) -> str:
    """A short stable key for a CPU not in the catalog: its instance (``r4.8xlarge``), else its name."""
    return row.instance or re.sub(r"[^a-z0-9]+", "-", row.device.lower()).strip("-")
