"""The columns of the three catalog CSV files, and how one cell becomes one typed, SI-unit field.

The column sets are also how a file says what it holds: a user file with the GPU columns is read as
GPUs, with the CPU columns as CPUs, with the cloud columns as cloud instances. Optional columns may be
left out; required ones must be in the header and filled in every row (a figure without a ``source_url``
is not a fact this tool may use)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from dlgpu.errors import BadInput
from dlgpu.units import GB, GIB, MIB

MHZ = 1e6
GHZ = 1e9
GFLOPS = 1e9
TFLOPS = 1e12

Parse = Literal["id", "text", "int", "number", "bytes", "yesno", "date", "kind"]


class CatalogError(BadInput):
    """A catalog file is malformed. One line: the file, the row (the header is row 1, as a spreadsheet
    numbers it), the field, and what is wrong with it."""


@dataclass(frozen=True)
class Column:
    name: str  # the CSV header
    parse: Parse
    field: str | None = None  # the dataclass field it fills; None: same as ``name``
    scale: float = 1.0  # multiplies the number into SI units
    required: bool = False

    @property
    def target(self) -> str:
        return self.field or self.name


GPU_COLUMNS: tuple[Column, ...] = (
    Column("id", "id", required=True),
    Column("name", "text", required=True),
    Column("vendor", "text", required=True),
    Column("kind", "kind"),
    Column("arch", "text"),
    Column("compute_capability", "text"),
    Column("release_year", "int"),
    Column("memory_gb", "bytes", "memory_bytes", GIB, required=True),
    Column("memory_bandwidth_gbs", "number", "memory_bandwidth_bytes_per_s", GB),
    Column("fp32_tflops", "number", "fp32_flops_per_s", TFLOPS, required=True),
    Column("tf32_tflops_dense", "number", "tf32_flops_per_s", TFLOPS),
    Column("fp16_tensor_tflops_dense", "number", "fp16_flops_per_s", TFLOPS),
    Column("fp16_tensor_tflops_dense_fp32acc", "number", "fp16_fp32acc_flops_per_s", TFLOPS),
    Column("bf16_tensor_tflops_dense", "number", "bf16_flops_per_s", TFLOPS),
    Column("int8_tensor_tops_dense", "number", "int8_ops_per_s", TFLOPS),
    Column("sm_count", "int"),
    Column("boost_clock_mhz", "number", "boost_clock_hz", MHZ),
    Column("l2_cache_mb", "bytes", "l2_cache_bytes", MIB),
    Column("tdp_w", "number"),
    Column("interconnect", "text"),
    Column("interconnect_gbs", "number", "interconnect_bytes_per_s", GB),
    Column("launch_price_usd", "number"),
    Column("source_url", "text", "source", required=True),
    Column("notes", "text"),
)

CPU_COLUMNS: tuple[Column, ...] = (
    Column("id", "id", required=True),
    Column("name", "text", required=True),
    Column("vendor", "text", required=True),
    Column("arch", "text"),
    Column("release_year", "int"),
    Column("cores", "int", required=True),
    Column("threads", "int"),
    Column("base_clock_ghz", "number", "base_clock_hz", GHZ),
    Column("all_core_turbo_ghz", "number", "all_core_turbo_hz", GHZ),
    Column("simd", "text"),
    Column("fp32_flops_per_cycle_per_core", "int"),
    Column("fp32_peak_gflops", "number", "fp32_flops_per_s", GFLOPS),
    Column("bf16_peak_gflops", "number", "bf16_flops_per_s", GFLOPS),
    Column("amx", "yesno"),
    Column("memory_channels", "int"),
    Column("memory_type", "text"),
    Column("memory_bandwidth_gbs", "number", "memory_bandwidth_bytes_per_s", GB),
    Column("tdp_w", "number"),
    Column("launch_price_usd", "number"),
    Column("source_url", "text", "source", required=True),
    Column("notes", "text"),
)

CLOUD_COLUMNS: tuple[Column, ...] = (
    Column("provider", "text", required=True),
    Column("instance", "text", required=True),
    Column("gpu_id", "text", required=True),
    Column("gpu_count", "int", required=True),
    Column("vcpus", "int"),
    Column("memory_gb", "bytes", "memory_bytes", GIB),
    Column("price_usd_per_hour", "number", required=True),
    Column("region", "text"),
    Column("price_date", "date", required=True),
    Column("source_url", "text", "source", required=True),
    Column("notes", "text"),
)

FILE_KINDS: dict[str, tuple[Column, ...]] = {"GPU": GPU_COLUMNS, "CPU": CPU_COLUMNS, "cloud": CLOUD_COLUMNS}

ID_RE = re.compile(r"[a-z0-9][a-z0-9._+-]*")
DATE_RE = re.compile(r"\d{4}-\d{2}(-\d{2})?")
RESERVED_IDS = frozenset({"local", "all"})  # `dlgpu hardware show local` means this machine
GPU_KINDS = ("gpu", "accelerator")


def kind_of_header(header: list[str], where: str) -> str:
    """Which of GPU / CPU / cloud a file holds, judged by its header (row 1); a CatalogError if none fits."""
    seen: set[str] = set()
    for col in header:
        if col in seen:
            raise CatalogError(f"{where} row 1, field {col}: the column appears twice")
        seen.add(col)

    def overlap(kind: str) -> int:
        return len(seen & {c.name for c in FILE_KINDS[kind]})

    best = max(FILE_KINDS, key=overlap)
    if overlap(best) == 0:
        raise CatalogError(f"{where} row 1: not a catalog file (a GPU file has columns id, name, vendor, "
                           f"memory_gb, fp32_tflops, source_url; see the package's catalog/data/*.csv)")
    columns = FILE_KINDS[best]
    known = {c.name for c in columns}
    for col in header:
        if col not in known:
            raise CatalogError(f"{where} row 1, field {col}: unknown column for a {best} file "
                               f"(known: {', '.join(c.name for c in columns)})")
    missing = [c.name for c in columns if c.required and c.name not in seen]
    if missing:
        raise CatalogError(f"{where} row 1, field {missing[0]}: a {best} file needs the column(s) "
                           f"{', '.join(missing)}")
    return best


def parse_cell(col: Column, raw: str | None, where: str) -> object:
    """One cell -> its typed SI value, or None when empty. ``where`` is "file row N" for the message."""
    text = (raw or "").strip()

    def bad(problem: str) -> CatalogError:
        return CatalogError(f"{where}, field {col.name}: {problem}")

    if not text:
        if col.required:
            raise bad("missing (this column is required)")
        return None
    if col.parse == "id":
        if not ID_RE.fullmatch(text):
            raise bad(f"{text!r} is not a valid id (lower-case letters, digits and . _ + -)")
        if text in RESERVED_IDS:
            raise bad(f"{text!r} is reserved")
        return text
    if col.parse == "text":
        return text
    if col.parse == "kind":
        if text not in GPU_KINDS:
            raise bad(f"{text!r} is not one of {', '.join(GPU_KINDS)}")
        return text
    if col.parse == "yesno":
        if text.lower() not in ("yes", "no"):
            raise bad(f"{text!r} is not yes or no")
        return text.lower() == "yes"
    if col.parse == "date":
        if not DATE_RE.fullmatch(text):
            raise bad(f"{text!r} is not a date (YYYY-MM or YYYY-MM-DD)")
        return text
    if col.parse == "int":
        if not text.isdigit():
            raise bad(f"{text!r} is not a whole number" + (" (must be positive)" if text.startswith("-") else ""))
        value = int(text)
        if value <= 0:
            raise bad(f"{text!r} must be positive")
        return value
    try:
        number = float(text)
    except ValueError:
        raise bad(f"{text!r} is not a number") from None
    if not math.isfinite(number):
        raise bad(f"{text!r} is not a finite number")
    if number <= 0:
        raise bad(f"{text!r} must be positive")
    scaled = number * col.scale
    return round(scaled) if col.parse == "bytes" else scaled
