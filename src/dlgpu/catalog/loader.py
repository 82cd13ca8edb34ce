"""Loading and validating the catalog: the package's own data files, then the user's.

The builtin files ship inside the package (``catalog/data/*.csv``, copied from the project's shared data
with a ``source_url`` per row) and are parsed once per process. User files — every ``*.csv`` in
``user_catalog_dir()`` and every ``--catalog FILE`` — are read on each ``load_catalog`` call, in that
order; an entry whose id (for cloud rows: provider + instance) is already known replaces the earlier one
whole, and a new id adds an entry. Every row of every file is validated before anything is used, and a
malformed file raises one ``CatalogError`` line naming the file, the row and the field."""

from __future__ import annotations

import csv
import difflib
import functools
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from dlgpu.errors import BadInput
from dlgpu.home import user_catalog_dir

from .columns import FILE_KINDS, CatalogError, kind_of_header, parse_cell
from .specs import CloudInstance, CpuSpec, GpuSpec

BUILTIN_FILES = ("gpus.csv", "cpus.csv", "cloud.csv")
SPEC_TYPES: dict[str, type[Any]] = {"GPU": GpuSpec, "CPU": CpuSpec, "cloud": CloudInstance}


@dataclass(frozen=True)
class _Row:
    where: str  # "file row N", for messages that come after parsing (cloud gpu_id, cross-kind ids)
    spec: Any


@dataclass(frozen=True)
class _File:
    kind: str  # GPU | CPU | cloud
    rows: tuple[_Row, ...]


def parse_csv(text: str, name: str, origin: str) -> _File:
    """Parse and validate one CSV document. ``name`` is how messages call the file."""
    reader = csv.reader(io.StringIO(text))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise CatalogError(f"{name} row 1: the file is empty (expected a header row)") from None
    except csv.Error as exc:
        raise CatalogError(f"{name} row 1: not readable as CSV ({exc})") from None
    kind = kind_of_header(header, name)
    columns = {c.name: c for c in FILE_KINDS[kind]}
    rows: list[_Row] = []
    seen: dict[object, int] = {}
    number = 1
    try:
        for cells in reader:
            number += 1
            if not any(c.strip() for c in cells):
                continue  # a blank line
            where = f"{name} row {number}"
            if len(cells) > len(header):
                raise CatalogError(f"{where}: {len(cells)} cells but the header has {len(header)} columns")
            values = dict(zip(header, cells, strict=False))
            kwargs: dict[str, Any] = {}
            for col in columns.values():
                if col.name in values or col.required:
                    kwargs[col.target] = parse_cell(col, values.get(col.name), where)
            if kind == "GPU" and kwargs.get("kind") is None:
                kwargs["kind"] = "gpu"
            for col in columns.values():
                kwargs.setdefault(col.target, None)
            spec = SPEC_TYPES[kind](**kwargs, origin=origin)
            key = spec.key if kind == "cloud" else spec.id
            if key in seen:
                what = "provider + instance" if kind == "cloud" else "id"
                field_name = "instance" if kind == "cloud" else "id"
                raise CatalogError(f"{where}, field {field_name}: duplicate {what} {_show(key)} "
                                   f"(also row {seen[key]})")
            seen[key] = number
            rows.append(_Row(where, spec))
    except csv.Error as exc:
        raise CatalogError(f"{name} row {number}: not readable as CSV ({exc})") from None
    return _File(kind, tuple(rows))


def _show(key: object) -> str:
    return " / ".join(repr(k) for k in key) if isinstance(key, tuple) else repr(key)


@functools.cache
def _builtin() -> tuple[_File, ...]:
    """The package's own files, parsed once: they do not change while the process runs."""
    data = resources.files("dlgpu.catalog") / "data"
    return tuple(parse_csv((data / f).read_text(encoding="utf-8"), f"{f} (builtin)", "builtin")
                 for f in BUILTIN_FILES)


def read_user_file(path: Path) -> _File:
    try:
        text = path.read_text(encoding="utf-8-sig")  # a spreadsheet's byte-order mark is not a column
    except FileNotFoundError:
        raise CatalogError(f"{path}: no such catalog file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogError(f"{path}: cannot read it ({exc})") from None
    return parse_csv(text, str(path), str(path))


def _user_paths(extra: Sequence[Path], include_user_dir: bool) -> list[Path]:
    paths: list[Path] = []
    if include_user_dir:
        d = user_catalog_dir()
        if d.is_dir():
            paths += sorted(d.glob("*.csv"))
    for p in extra:
        p = Path(p)
        paths += sorted(p.glob("*.csv")) if p.is_dir() else [p]
    return paths


def load_catalog(extra: Sequence[Path] = (), include_user_dir: bool = True) -> Catalog:
    """The builtin catalog plus the user's files (see the module docstring), validated as one."""
    paths = _user_paths(extra, include_user_dir)
    return merge([*_builtin(), *(read_user_file(p) for p in paths)], user_files=tuple(str(p) for p in paths))


def merge(files: Iterable[_File], user_files: tuple[str, ...] = ()) -> Catalog:
    """Later files override earlier ones by id; then cross-file rules: an id is a GPU or a CPU, not both,
    and every cloud row's ``gpu_id`` names a GPU of the merged catalog."""
    files = list(files)
    by_kind: dict[str, dict[object, _Row]] = {"GPU": {}, "CPU": {}, "cloud": {}}
    for f in files:
        for row in f.rows:
            key = row.spec.key if f.kind == "cloud" else row.spec.id
            by_kind[f.kind].pop(key, None)  # re-insert: an override takes the overriding file's place
            by_kind[f.kind][key] = row
    for key in by_kind["GPU"].keys() & by_kind["CPU"].keys():
        gpu, cpu = by_kind["GPU"][key], by_kind["CPU"][key]
        late, early, early_kind = (gpu, cpu, "CPU") if cpu.spec.origin == "builtin" else (cpu, gpu, "GPU")
        raise CatalogError(f"{late.where}, field id: {key!r} is already a {early_kind} ({early.where}); "
                           f"GPUs and CPUs share one set of ids")
    for row in by_kind["cloud"].values():
        if row.spec.gpu_id not in by_kind["GPU"]:
            raise CatalogError(f"{row.where}, field gpu_id: {row.spec.gpu_id!r} is not a GPU in the catalog "
                               f"({_suggestions(row.spec.gpu_id, [str(k) for k in by_kind['GPU']], [])})")
    return Catalog(
        gpus=tuple(r.spec for r in by_kind["GPU"].values()),
        cpus=tuple(r.spec for r in by_kind["CPU"].values()),
        cloud=tuple(r.spec for r in by_kind["cloud"].values()),
        user_files=user_files,
    )


def _suggestions(query: str, ids: list[str], names: list[str]) -> str:
    """'did you mean a, b, c? see `dlgpu hardware list`': the ids or names that contain the query, else
    the closest spellings (difflib); at most five."""
    q = query.strip().lower()
    near = [i for i, n in zip(ids, names or ids, strict=True) if q and (q in i or q in n.lower())]
    if not near:
        near = difflib.get_close_matches(q, ids, n=5, cutoff=0.6)
    hint = "see `dlgpu hardware list`"
    if not near:
        return hint
    more = ", ..." if len(near) > 5 else ""
    return f"did you mean {', '.join(near[:5])}{more}? {hint}"


@dataclass(frozen=True)
class Catalog:
    """Every known GPU, CPU and cloud instance. Ids are looked up case-insensitively."""

    gpus: tuple[GpuSpec, ...]
    cpus: tuple[CpuSpec, ...]
    cloud: tuple[CloudInstance, ...]
    user_files: tuple[str, ...] = ()  # the user files merged in, in order
    _index: dict[str, GpuSpec | CpuSpec] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index: dict[str, GpuSpec | CpuSpec] = {s.id.lower(): s for s in self.gpus}
        index.update({s.id.lower(): s for s in self.cpus})
        object.__setattr__(self, "_index", index)

    def _unknown(self, hardware_id: str, what: str = "hardware") -> BadInput:
        specs = list(self._index.values())
        hint = _suggestions(hardware_id, [s.id for s in specs], [s.name for s in specs])
        return BadInput(f"unknown {what} {hardware_id!r} ({hint})")

    def get(self, hardware_id: str) -> GpuSpec | CpuSpec:
        """A GPU or a CPU by id; ``BadInput`` naming the id and the closest ids if there is none."""
        spec = self._index.get(hardware_id.strip().lower())
        if spec is None:
            raise self._unknown(hardware_id)
        return spec

    def gpu(self, gpu_id: str) -> GpuSpec:
        spec = self.get(gpu_id)
        if not isinstance(spec, GpuSpec):
            raise BadInput(f"{gpu_id!r} is a CPU, not a GPU (see `dlgpu hardware list --kind gpu`)")
        return spec

    def cpu(self, cpu_id: str) -> CpuSpec:
        spec = self.get(cpu_id)
        if not isinstance(spec, CpuSpec):
            raise BadInput(f"{cpu_id!r} is a GPU, not a CPU (see `dlgpu hardware list --kind cpu`)")
        return spec

    def instances_for(self, gpu_id: str) -> tuple[CloudInstance, ...]:
        """The cloud instances that carry this GPU, cheapest per GPU-hour first."""
        gid = self.gpu(gpu_id).id
        return tuple(sorted((c for c in self.cloud if c.gpu_id == gid), key=lambda c: c.price_usd_per_gpu_hour))

    def __contains__(self, hardware_id: object) -> bool:
        return isinstance(hardware_id, str) and hardware_id.strip().lower() in self._index
