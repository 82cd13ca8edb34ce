"""What a tabular request names: an estimator (a registered ``tabular`` workload such as ``xgboost``, or a library the
published rows time but dlgpu does not measure: ``catboost``, ``h2o``, ``h2o_xgboost``) and its ``--set`` job (rows,
features, trees, depth), validated as the workload validates it. No torch here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dlgpu.errors import BadInput

from .model import Job
from .published import parse_rows

PREDICTED: dict[str, str] = {"xgboost": "xgboost", "lightgbm": "lightgbm", "catboost": "catboost", "h2o": "h2o",
                             "h2o_xgboost": "h2o_xgboost"}
"""Estimator -> the model's family: the libraries with published training times (``published_tabular.csv``)."""

UNMEASURED = ("catboost", "h2o", "h2o_xgboost")
"""Families the published rows time that no dlgpu workload measures: their job's defaults are GBM-perf's."""

GBM_PERF_DEFAULTS: dict[str, int] = {"rows": 1_000_000, "features": 8, "trees": 100, "depth": 10}
GBM_PERF_BASIS = ("GBM-perf's airline setting (published_tabular.csv: 100 trees, depth 10; 8 values per row, "
                  "tabular/data/datasets.csv; rows: its middle size, 1M), as the xgboost workload's defaults")
JOB_KEYS = ("rows", "features", "trees", "depth")


@dataclass(frozen=True)
class TabularJob:
    """A request resolved: the estimator, its family (None: not predicted, with why), the job, where its settings
    come from, and the ``--set`` line that reproduces it."""

    workload: str
    estimator: str
    family: str | None
    job: Job | None
    params: dict[str, Any]
    basis: str
    not_predicted: str | None = None

    def set_args(self) -> str:
        """``--set rows=... --set features=...`` for the job's settings (the verify command's)."""
        return " ".join(f"--set {k}={self.params[k]}" for k in JOB_KEYS if k in self.params)


def _tabular_spec(name: str) -> Any:
    """The registered workload of family ``tabular`` by that name, or None."""
    from dlgpu.workloads.registry import list_workloads

    for spec in list_workloads(include_tiny=True):
        if spec.name == name and spec.family == "tabular":
            return spec
    return None


def is_tabular(name: str | None) -> bool:
    """Whether ``dlgpu predict``/``advise`` should treat ``name`` as a tabular estimator."""
    if not name:
        return False
    return name.lower() in PREDICTED or _tabular_spec(name) is not None


def _normalized(overrides: Mapping[str, str]) -> dict[str, str]:
    """``rows`` may be written 100K, 1M, 1e8: normalized to an integer; a bad one is one line."""
    out = dict(overrides)
    if "rows" in out:
        try:
            out["rows"] = str(parse_rows(out["rows"]))
        except ValueError:
            raise BadInput(f"--set rows={out['rows']}: a whole number of rows, e.g. 100000, 100K, 1M or 1e8",
                           param="overrides") from None
        if int(out["rows"]) <= 0:
            raise BadInput(f"--set rows={overrides['rows']}: must be a positive number of rows", param="overrides")
    return out


def _unregistered(name: str, overrides: Mapping[str, str]) -> dict[str, Any]:
    """A published library that no workload measures: GBM-perf's defaults, validated like the workloads'."""
    from dlgpu.workloads.tabular import MAX_DEPTH

    values: dict[str, Any] = dict(GBM_PERF_DEFAULTS)
    for key, raw in overrides.items():
        if key not in GBM_PERF_DEFAULTS:
            raise BadInput(f"{key}: {name} has no parameter {key!r} (valid: {', '.join(JOB_KEYS)})",
                           param="overrides")
        try:
            v = int(raw)
        except ValueError:
            raise BadInput(f"{key}={raw}: {name}'s {key} must be int", param="overrides") from None
        if v < 1:
            raise BadInput(f"{key}={raw}: must be at least 1", param="overrides")
        if key == "depth" and v > MAX_DEPTH:
            raise BadInput(f"depth={raw}: must be at most {MAX_DEPTH} for {name}", param="overrides")
        values[key] = v
    return values


def resolve_job(workload: str, overrides: Mapping[str, str] | None = None) -> TabularJob:
    """The estimator and job a request names; ``BadInput`` (one line) for a bad ``--set`` or an unknown name."""
    ov = _normalized(overrides or {})
    spec = _tabular_spec(workload)
    if spec is not None:
        estimator = str(spec.extra.get("estimator", spec.name))
        params = dict(spec.resolve(ov))
        given = sorted(k for k in ov if k in params)
        basis = (f"the {spec.name} workload's settings" + (f", {', '.join(given)} given" if given else "")
                 + f" (`dlgpu workloads show {spec.name}`)")
    elif workload.lower() in PREDICTED:
        estimator = workload.lower()
        params = _unregistered(estimator, ov)
        given = sorted(ov)
        basis = GBM_PERF_BASIS + (f"; {', '.join(given)} given" if given else "")
    else:
        raise BadInput(f"{workload!r} is not a tabular estimator (predicted: {', '.join(PREDICTED)}; see "
                       "`dlgpu workloads`)", param="workload")
    family = PREDICTED.get(estimator)
    if family is None:
        return TabularJob(workload, estimator, None, None, params, basis,
                          not_predicted=f"not predicted: no published timings of {estimator} "
                                        f"(published_tabular.csv times {', '.join(sorted(set(PREDICTED.values())))}); "
                                        f"measure it here with `dlgpu bench -w {workload}`")
    job = Job(family=family, rows=int(params["rows"]), features=int(params["features"]), trees=int(params["trees"]),
              depth=int(params["depth"]))
    return TabularJob(workload, estimator, family, job, params, basis)
