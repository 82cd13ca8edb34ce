"""What ``dlgpu compare`` builds and every renderer (terminal, markdown, HTML) draws: tables of cells that
carry their value, its unit and where it came from, and the data of the charts. SI units throughout;
formatting happens in the renderers.

``source`` of a cell or a point is one of:
- ``measured``: measured by ``dlgpu bench`` (here or on the machine the run was imported from);
- ``estimated``: derived from a measurement with a stated model (power from TDP x measured utilization);
- ``predicted``: dlgpu's performance model (``dlgpu predict``);
- ``catalog``: a cited figure from the hardware catalog (price, memory, TDP, peaks);
- ``computed``: arithmetic on the figures above (a speedup, a ratio, an error), labelled by its inputs in
  the table's notes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from dlgpu.results import COMPARE_SCHEMA

Source = Literal["measured", "estimated", "predicted", "catalog", "computed"]
SOURCES: tuple[str, ...] = ("measured", "estimated", "predicted", "catalog", "computed")
Unit = Literal["", "text", "s", "bytes", "samples/s", "x", "%", "W", "J", "kWh", "usd", "samples/s/W",
               "samples/s/usd", "samples/usd", "flop/s", "ratio", "tokens/s", "J/token", "rows", "rows/s"]

LLM_SECTION = "llm"
"""``section`` of the LLM tables and chart (``report.compare_llm``): the HTML and Markdown draw them together under
``SECTION_TITLES[LLM_SECTION]``; a table or chart with no section sits in the usual flow."""
TABULAR_SECTION = "tabular"
"""``section`` of the tabular tables and charts (``report.compare_tabular``: trees and classical ML)."""
FINETUNE_SECTION = "finetune"
"""``section`` of the fine-tuning tables (``report.compare_finetune``: measured ``--task finetune`` results)."""
SECTION_TITLES: dict[str, str] = {LLM_SECTION: "LLM inference", TABULAR_SECTION: "Tabular: trees and classical ML",
                                  FINETUNE_SECTION: "Fine-tuning"}


def section_of(item: object) -> str:
    """The section a table or chart belongs to ('' for the usual flow; roofline and scatter charts have none)."""
    return str(getattr(item, "section", "") or "")


@dataclass(frozen=True)
class Cell:
    """One table cell. ``value`` is a number in ``unit`` (SI) or a string for ``unit == "text"``; None = no figure.
    ``spread`` is the IQR of a measured median (same unit), ``low``/``high`` a prediction's interval."""

    value: float | str | None
    unit: str = "text"
    source: str | None = None
    spread: float | None = None
    low: float | None = None
    high: float | None = None
    flag: str | None = None  # "noisy", "throttled", "does not fit", ... shown beside the value

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"value": self.value, "unit": self.unit, "source": self.source}
        for k in ("spread", "low", "high", "flag"):
            if getattr(self, k) is not None:
                d[k] = getattr(self, k)
        return d


@dataclass(frozen=True)
class Column:
    key: str
    title: str
    unit: str = "text"

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "title": self.title, "unit": self.unit}


@dataclass(frozen=True)
class Table:
    id: str  # stable, e.g. "train_time"
    title: str
    caption: str  # one or two sentences: what is compared, and the basis of every derived figure
    columns: tuple[Column, ...]
    rows: tuple[tuple[Cell, ...], ...]
    notes: tuple[str, ...] = ()
    section: str = ""  # "" or a section key: LLM_SECTION, TABULAR_SECTION, FINETUNE_SECTION

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "caption": self.caption,
                "columns": [c.to_dict() for c in self.columns],
                "rows": [[c.to_dict() for c in row] for row in self.rows], "notes": list(self.notes),
                **({"section": self.section} if self.section else {})}


@dataclass(frozen=True)
class Bar:
    """One bar of a grouped bar chart: ``group`` (a workload) x ``label`` (a device)."""

    group: str
    label: str
    value: float
    source: str

    def to_dict(self) -> dict[str, Any]:
        return {"group": self.group, "label": self.label, "value": self.value, "source": self.source}


@dataclass(frozen=True)
class BarChart:
    id: str  # "speedup" | "train_time" | "llm_decode_tokens"
    title: str
    unit: str  # "x" | "s" | "tokens/s"
    log_scale: bool
    bars: tuple[Bar, ...]
    section: str = ""  # "" or LLM_SECTION

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "bars", "id": self.id, "title": self.title, "unit": self.unit, "log_scale": self.log_scale,
                "bars": [b.to_dict() for b in self.bars], **({"section": self.section} if self.section else {})}


@dataclass(frozen=True)
class Roof:
    """A device's roofline: ``peaks`` maps a unit name ('fp32', 'tensor fp16', ...) to FLOP/s."""

    label: str
    bandwidth_bytes_per_s: float
    peaks: dict[str, float]
    source: str  # catalog | estimated

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "bandwidth_bytes_per_s": self.bandwidth_bytes_per_s, "peaks": dict(self.peaks),
                "source": self.source}


@dataclass(frozen=True)
class RoofPoint:
    """An operator (``kind`` = its kind) or a whole step (``kind == "step"``) at its arithmetic intensity."""

    device: str  # a Roof label
    workload: str  # "resnet50 train fp16 b256"
    kind: str
    intensity_flops_per_byte: float
    flops_per_s: float
    source: str  # predicted | measured

    def to_dict(self) -> dict[str, Any]:
        return {"device": self.device, "workload": self.workload, "kind": self.kind,
                "intensity_flops_per_byte": self.intensity_flops_per_byte, "flops_per_s": self.flops_per_s,
                "source": self.source}


@dataclass(frozen=True)
class RooflineChart:
    id: str
    title: str
    roofs: tuple[Roof, ...]
    points: tuple[RoofPoint, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "roofline", "id": self.id, "title": self.title, "roofs": [r.to_dict() for r in self.roofs],
                "points": [p.to_dict() for p in self.points]}


@dataclass(frozen=True)
class Series:
    label: str  # "resnet50 train fp32 on Xeon (cpu)"
    source: str
    points: tuple[tuple[float, float], ...]  # (x, y)

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "source": self.source, "points": [list(p) for p in self.points]}


@dataclass(frozen=True)
class Crossover:
    """A marked x on a line chart, drawn as a vertical line with its label: where two series cross, say the rows above
    which a GPU fits faster than the CPU. ``source``: ``predicted`` (a model's crossover, handed in by the prediction
    half) or ``computed`` (where two measured lines cross)."""

    x: float
    label: str
    source: str = "predicted"

    def to_dict(self) -> dict[str, Any]:
        return {"x": self.x, "label": self.label, "source": self.source}


@dataclass(frozen=True)
class LineChart:
    id: str  # "batch_throughput", "tabular_train_time"
    title: str
    x_title: str
    y_title: str
    x_unit: str
    y_unit: str
    log_x: bool
    log_y: bool
    series: tuple[Series, ...]  # a predicted line is a series with source "predicted" (drawn dashed)
    crossovers: tuple[Crossover, ...] = ()
    section: str = ""  # "" or TABULAR_SECTION

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "lines", "id": self.id, "title": self.title, "x_title": self.x_title, "y_title": self.y_title,
                "x_unit": self.x_unit, "y_unit": self.y_unit, "log_x": self.log_x, "log_y": self.log_y,
                "series": [s.to_dict() for s in self.series],
                **({"crossovers": [c.to_dict() for c in self.crossovers]} if self.crossovers else {}),
                **({"section": self.section} if self.section else {})}


@dataclass(frozen=True)
class ScatterPoint:
    label: str
    group: str
    x: float
    y: float
    source: str

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "group": self.group, "x": self.x, "y": self.y, "source": self.source}


@dataclass(frozen=True)
class ScatterChart:
    id: str  # "value" (perf per dollar vs perf per watt), "time_cost" (advise)
    title: str
    x_title: str
    y_title: str
    x_unit: str
    y_unit: str
    log_x: bool
    log_y: bool
    points: tuple[ScatterPoint, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "scatter", "id": self.id, "title": self.title, "x_title": self.x_title,
                "y_title": self.y_title, "x_unit": self.x_unit, "y_unit": self.y_unit, "log_x": self.log_x,
                "log_y": self.log_y, "points": [p.to_dict() for p in self.points]}


Chart = BarChart | RooflineChart | LineChart | ScatterChart


PANEL_LABELS: dict[str, str] = {"what_would": "What would change the verdict", "constraints": "Constraints",
                                "run": "Run"}
"""How the keys of a panel (an advise verdict: title, verdict, reasons, what_would, constraints, run) read in
a rendering; a key not here reads as itself. ``title``, ``verdict`` and ``reasons`` are drawn on their own."""


@dataclass(frozen=True)
class RunRef:
    """A run the comparison drew on."""

    id: str
    kind: str  # bench | predict | advise
    created_at: str
    machine: str  # a short description of the machine it ran on (or was predicted from)
    summary: str

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "created_at": self.created_at, "machine": self.machine,
                "summary": self.summary}


@dataclass(frozen=True)
class Comparison:
    created_at: str
    runs: tuple[RunRef, ...]
    tables: tuple[Table, ...]
    charts: tuple[Chart, ...]
    panels: tuple[dict[str, Any], ...] = field(default_factory=tuple)  # advise verdicts (issue #6)
    notes: tuple[str, ...] = ()
    schema: str = COMPARE_SCHEMA

    def to_dict(self) -> dict[str, Any]:
        return {"schema": self.schema, "created_at": self.created_at, "runs": [r.to_dict() for r in self.runs],
                "tables": [t.to_dict() for t in self.tables], "charts": [c.to_dict() for c in self.charts],
                "panels": list(self.panels), "notes": list(self.notes)}
