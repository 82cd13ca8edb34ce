"""The library code of the tabular workloads (``workloads.tabular``): the synthetic data, and each estimator built for
a device (XGBoost, LightGBM, scikit-learn on the CPU; XGBoost's CUDA device, a CUDA build of LightGBM and cuML on
NVIDIA GPUs). XGBoost, LightGBM, scikit-learn, cuML and CuPy are imported here, when a model is built, never when
workloads are listed; no torch.

``make_data`` is the one generator (seeded, float32, filled in chunks so that ten million rows never hold a float64
copy): a row belongs to one of ``CLUSTERS`` Gaussian clusters (unit variance around centres drawn once per seed); its
class is 1 where ``CLUSTER_WEIGHT x (+1 for odd clusters, -1 for even) + a linear term over every feature + noise``
is positive. So the classes overlap (no estimator reaches 100%), every estimator learns them well above chance,
and k-means has clusters to find."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dlgpu.workloads.tabular import HOLDOUT_ROWS, LEARNING_RATE, LIGHTGBM_MAX_LEAVES

CLUSTERS = 8
CENTRE_SCALE = 1.5
CLUSTER_WEIGHT = 1.0
LINEAR_WEIGHT = 0.75
NOISE = 0.75
CHUNK_ROWS = 1 << 18
SEED = 0
HOLDOUT_SEED = 1
WARMUP_ROWS = 2_000
GENERATOR = (f"dlgpu.workloads.models.tabular.make_data: {CLUSTERS} Gaussian clusters (centres N(0, {CENTRE_SCALE}^2) "
             f"per feature, unit variance), class = [{CLUSTER_WEIGHT:g} x (+1 odd cluster, -1 even) + "
             f"{LINEAR_WEIGHT:g} x w.x / sqrt(features) + N(0, {NOISE:g}^2) > 0], numpy PCG64, float32 in chunks of "
             f"{CHUNK_ROWS:,} rows")


class NotAvailable(Exception):
    """This estimator cannot run on this device here (the library or its GPU build is missing): the reason."""


def make_data(rows: int, features: int, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """(X: rows x features float32, C-contiguous; y: rows int32 in {0, 1}). The centres and weights depend on the
    number of features only (not on ``seed``), so a held-out set (another seed) is the same problem."""
    shape_rng = np.random.default_rng([features, 7919])
    centres = (shape_rng.standard_normal((CLUSTERS, features)) * CENTRE_SCALE).astype(np.float32)
    w = (shape_rng.standard_normal(features) * (LINEAR_WEIGHT / math.sqrt(features))).astype(np.float32)
    rng = np.random.default_rng([seed, rows, features])
    x = np.empty((rows, features), dtype=np.float32)
    y = np.empty(rows, dtype=np.int32)
    for start in range(0, rows, CHUNK_ROWS):
        n = min(CHUNK_ROWS, rows - start)
        c = rng.integers(0, CLUSTERS, n)
        block = x[start:start + n]
        rng.standard_normal(dtype=np.float32, out=block)
        block += centres[c]
        score = np.where(c % 2 == 1, CLUSTER_WEIGHT, -CLUSTER_WEIGHT).astype(np.float32)
        score += block @ w
        score += rng.standard_normal(n, dtype=np.float32) * NOISE
        y[start:start + n] = score > 0
    return x, y


def versions() -> dict[str, str]:
    """The versions of the libraries installed (those importable), without importing them twice."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("numpy", "xgboost", "lightgbm", "scikit-learn", "threadpoolctl", "cuml", "cupy"):
        with contextlib.suppress(PackageNotFoundError):
            out[dist] = version(dist)
    for dist in ("cuml-cu12", "cuml-cu13", "cupy-cuda12x", "cupy-cuda13x"):
        with contextlib.suppress(PackageNotFoundError):
            out[dist.split("-")[0]] = version(dist)
    return out


@dataclass
class TabularModel:
    """One estimator on one device: ``fit`` and ``predict`` as a user calls them, inside the thread limits, and
    what the fitted model is (``facts``)."""

    estimator: str  # a key of workloads.tabular.ESTIMATORS
    runtime: str  # xgboost | lightgbm | scikit-learn | cuml
    library_version: str
    cls: str  # "xgboost.XGBClassifier"
    settings: dict[str, Any]  # what was passed to the estimator
    thread_setting: str
    make: Callable[[], Any]
    threads: int
    device_index: int | None = None
    model: Any = None
    sync: Callable[[], None] = field(default=lambda: None)

    @contextlib.contextmanager
    def limits(self) -> Iterator[None]:
        """The BLAS and OpenMP pools limited to ``threads`` (threadpoolctl), on the model's GPU where it has one: what
        ``fit`` and ``predict`` run in (entered once around the timed steps, so that no step pays for it)."""
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=self.threads), self._device():
            yield

    def _device(self) -> contextlib.AbstractContextManager[Any]:
        if self.runtime == "cuml" and self.device_index is not None:
            import cupy

            return cupy.cuda.Device(self.device_index)
        return contextlib.nullcontext()

    def fit(self, x: np.ndarray, y: np.ndarray) -> None:
        """A new estimator fitted on ``x``, ``y`` (k-means ignores ``y``). Call it inside ``limits()``."""
        model = self.make()
        if self.estimator == "kmeans":
            model.fit(x)
        else:
            model.fit(x, y)
        self.sync()
        self.model = model

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The fitted model's predictions for ``x``. Call it inside ``limits()``."""
        out = self.model.predict(x)
        self.sync()
        return np.asarray(out)

    def facts(self) -> dict[str, Any]:
        """What the fitted model is: trees and their depth, iterations, support vectors, inertia."""
        m = self.model
        if m is None:
            return {}
        try:
            return _facts(self.estimator, self.runtime, m)
        except Exception as exc:  # facts are a record, never a failure of the measurement
            return {"error": f"{type(exc).__name__}: {exc}"[:200]}

    def holdout(self, features: int, rows: int = HOLDOUT_ROWS) -> dict[str, Any]:
        """The fitted model scored on ``rows`` held-out rows of the same problem (another seed), untimed: the data is
        learnable and the model learnt it. k-means: its inertia on the training rows instead (in ``facts``)."""
        if self.estimator == "kmeans" or self.model is None:
            return {}
        x, y = make_data(rows, features, seed=HOLDOUT_SEED)
        pred = self.predict(x).astype(np.int64).ravel()
        majority = max(float(y.mean()), 1 - float(y.mean()))
        return {"holdout_accuracy": float((pred == y).mean()), "holdout_rows": rows,
                "majority_class_share": majority}


def _tree_depth_xgb(dump: str) -> int:
    """The depth of one tree of ``Booster.get_dump()``: its deepest leaf's count of leading tabs."""
    return max((len(line) - len(line.lstrip("\t")) for line in dump.splitlines() if "leaf=" in line), default=0)


def _tree_depth_lgb(node: Mapping[str, Any]) -> int:
    stack, deepest = [(node, 0)], 0
    while stack:
        n, d = stack.pop()
        if "left_child" in n:
            stack += [(n["left_child"], d + 1), (n["right_child"], d + 1)]
        else:
            deepest = max(deepest, d)
    return deepest


def _facts(estimator: str, runtime: str, m: Any) -> dict[str, Any]:
    if estimator == "xgboost":
        booster = m.get_booster()
        dumps = booster.get_dump()
        depths = [_tree_depth_xgb(t) for t in dumps]
        return {"trees": booster.num_boosted_rounds(), "tree_dumps": len(dumps), "max_depth": max(depths, default=0),
                "leaves": sum(t.count("leaf=") for t in dumps)}
    if estimator == "lightgbm":
        info = m.booster_.dump_model()["tree_info"]
        return {"trees": m.booster_.num_trees(), "max_depth": max((_tree_depth_lgb(t["tree_structure"]) for t in info),
                                                                  default=0),
                "leaves": sum(int(t["num_leaves"]) for t in info)}
    if estimator == "random_forest":
        if runtime == "cuml":
            return {"trees": int(m.n_estimators)}
        return {"trees": len(m.estimators_), "max_depth": int(max(e.get_depth() for e in m.estimators_)),
                "leaves": int(sum(e.get_n_leaves() for e in m.estimators_))}
    if estimator == "logistic_regression":
        n_iter = getattr(m, "n_iter_", None)
        return {"iterations": None if n_iter is None else int(np.max(np.asarray(n_iter)))}
    if estimator == "svm":
        n = getattr(m, "n_support_", None)
        return {"support_vectors": None if n is None else int(np.sum(np.asarray(n)))}
    if estimator == "kmeans":
        return {"iterations": int(getattr(m, "n_iter_", 0)) or None, "inertia": float(m.inertia_),
                "clusters": int(m.n_clusters)}
    return {}


# --- which library runs an estimator where -----------------------------------------------------------------------


def runtime_of(estimator: str, device_kind: str) -> str:
    """What runs ``estimator`` on a device of ``device_kind``: xgboost, lightgbm, scikit-learn (CPU) or cuml (CUDA)."""
    if estimator in ("xgboost", "lightgbm"):
        return estimator
    return "cuml" if device_kind == "cuda" else "scikit-learn"


_PROBED: dict[tuple[str, str], str | None] = {}


def unavailable(estimator: str, device_kind: str) -> str | None:
    """Why ``estimator`` cannot run on a device of ``device_kind`` here; None where it can."""
    key = (estimator, device_kind)
    if key not in _PROBED:
        _PROBED[key] = _unavailable(estimator, device_kind)
    return _PROBED[key]


def _missing(module: str, install: str) -> str | None:
    if importlib.util.find_spec(module) is None:
        return f"{module} is not installed ({install})"
    try:
        importlib.import_module(module)
    except Exception as exc:
        return f"{module} does not import: {type(exc).__name__}: {exc}"[:300]
    return None


def _unavailable(estimator: str, kind: str) -> str | None:
    runtime = runtime_of(estimator, kind)
    if kind not in ("cpu", "cuda"):
        return f"{runtime} has no {kind} backend: tabular workloads run on the CPU and on CUDA GPUs"
    if runtime == "xgboost":
        why = _missing("xgboost", "pip install xgboost")
        if why or kind == "cpu":
            return why
        import xgboost

        if not xgboost.build_info().get("USE_CUDA"):
            return ("this XGBoost build has no CUDA (xgboost.build_info()['USE_CUDA'] is False); pip's "
                    "manylinux x86_64 and aarch64 wheels of xgboost have it")
        return None
    if runtime == "lightgbm":
        why = _missing("lightgbm", "pip install lightgbm")
        if why or kind == "cpu":
            return why
        return _lightgbm_cuda()
    if runtime == "scikit-learn":
        return _missing("sklearn", "pip install scikit-learn")
    return (_missing("cuml", "RAPIDS cuML: pip install cuml-cu12 from pypi.nvidia.com; scikit-learn runs on the CPU "
                             "only") or _missing("cupy", "pip install cupy-cuda12x"))


def _lightgbm_cuda() -> str | None:
    """None where this LightGBM trains with ``device_type='cuda'`` (one round on 200 rows); else why not."""
    import lightgbm

    x, y = make_data(200, 4)
    try:
        lightgbm.train({"device_type": "cuda", "objective": "binary", "verbose": -1, "num_iterations": 1},
                       lightgbm.Dataset(x, y))
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return (f"this LightGBM was not built with CUDA ({first[:160]}); pip's wheel is CPU-only: build it with "
                "cmake -DUSE_CUDA=ON (pip install lightgbm --config-settings=cmake.define.USE_CUDA=ON)")
    return None


# --- the estimators ------------------------------------------------------------------------------------------------


def build_model(estimator: str, params: Mapping[str, Any], device_kind: str, device_index: int | None,
                threads: int) -> TabularModel:
    """``estimator`` with ``params`` (the workload's, resolved) for one device, run on ``threads`` CPU threads
    (``NotAvailable`` where it cannot run there). Nothing is fitted yet."""
    why = unavailable(estimator, device_kind)
    if why:
        raise NotAvailable(why)
    runtime = runtime_of(estimator, device_kind)
    cuda = device_kind == "cuda"
    trees = int(params.get("trees", 0))
    depth = int(params.get("depth", 0))
    if runtime == "xgboost":
        import xgboost

        kw: dict[str, Any] = {"n_estimators": trees, "max_depth": depth, "learning_rate": LEARNING_RATE,
                              "tree_method": "hist", "device": f"cuda:{device_index or 0}" if cuda else "cpu",
                              "n_jobs": threads, "random_state": 0, "verbosity": 0}
        return TabularModel(estimator, runtime, xgboost.__version__, "xgboost.XGBClassifier", kw,
                            f"XGBClassifier(n_jobs={threads}): XGBoost's OpenMP threads",
                            lambda: xgboost.XGBClassifier(**kw), threads, device_index)
    if runtime == "lightgbm":
        import lightgbm

        kw = {"n_estimators": trees, "max_depth": depth, "num_leaves": min(2 ** depth, LIGHTGBM_MAX_LEAVES),
              "learning_rate": LEARNING_RATE, "n_jobs": threads, "random_state": 0, "verbose": -1,
              "device_type": "cuda" if cuda else "cpu"}
        if cuda:
            kw["gpu_device_id"] = device_index or 0
        return TabularModel(estimator, runtime, lightgbm.__version__, "lightgbm.LGBMClassifier", kw,
                            f"LGBMClassifier(n_jobs={threads}): LightGBM's OpenMP threads",
                            lambda: lightgbm.LGBMClassifier(**kw), threads, device_index)
    if runtime == "cuml":
        return _cuml(estimator, params, trees, depth, threads, device_index or 0)
    return _sklearn(estimator, params, trees, depth, threads)


SKLEARN = {"random_forest": "sklearn.ensemble:RandomForestClassifier",
           "logistic_regression": "sklearn.linear_model:LogisticRegression",
           "knn": "sklearn.neighbors:KNeighborsClassifier", "svm": "sklearn.svm:SVC",
           "kmeans": "sklearn.cluster:KMeans"}
CUML = {"random_forest": "cuml.ensemble:RandomForestClassifier",
        "logistic_regression": "cuml.linear_model:LogisticRegression",
        "knn": "cuml.neighbors:KNeighborsClassifier", "svm": "cuml.svm:SVC", "kmeans": "cuml.cluster:KMeans"}


def _class(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def _estimator_kw(estimator: str, params: Mapping[str, Any], trees: int, depth: int, threads: int,
                  gpu: bool) -> dict[str, Any]:
    """The estimator's settings: the workload's parameters, and n_jobs where scikit-learn takes it."""
    jobs = {} if gpu else {"n_jobs": threads}
    if estimator == "random_forest":
        return {"n_estimators": trees, "max_depth": depth, "random_state": 0, **jobs}
    if estimator == "logistic_regression":
        return {"max_iter": 100} if gpu else {"solver": "lbfgs", "max_iter": 100}
    if estimator == "knn":
        return {"n_neighbors": int(params["neighbors"]), **jobs}
    if estimator == "svm":
        return {"kernel": "rbf", "C": 1.0, "gamma": "scale", **({} if gpu else {"cache_size": 1000})}
    if estimator == "kmeans":
        return {"n_clusters": int(params["clusters"]), "n_init": 1, "init": "k-means++" if not gpu else "k-means||",
                "max_iter": 300, "tol": 1e-4, "random_state": 0}
    raise ValueError(f"unknown estimator {estimator!r}")


def _sklearn(estimator: str, params: Mapping[str, Any], trees: int, depth: int, threads: int) -> TabularModel:
    import sklearn

    cls = _class(SKLEARN[estimator])
    kw = _estimator_kw(estimator, params, trees, depth, threads, gpu=False)
    pools = f"BLAS and OpenMP pools limited to {threads} (threadpoolctl)"
    how = {"random_forest": f"RandomForestClassifier(n_jobs={threads}): trees built on {threads} joblib threads; "
                            f"{pools}",
           "logistic_regression": f"lbfgs: {pools}",
           "knn": f"KNeighborsClassifier(n_jobs={threads}); {pools}",
           "svm": "libsvm's SMO is single-threaded: one core whatever the threads",
           "kmeans": f"Lloyd's iterations: {pools}"}[estimator]
    return TabularModel(estimator, "scikit-learn", sklearn.__version__, SKLEARN[estimator].replace(":", "."), kw, how,
                        lambda: cls(**kw), threads)


def _cuml(estimator: str, params: Mapping[str, Any], trees: int, depth: int, threads: int,
          index: int) -> TabularModel:
    import cuml
    import cupy

    cls = _class(CUML[estimator])
    kw = _estimator_kw(estimator, params, trees, depth, threads, gpu=True)

    def sync() -> None:
        cupy.cuda.runtime.deviceSynchronize()

    return TabularModel(estimator, "cuml", cuml.__version__, CUML[estimator].replace(":", "."), kw,
                        "cuML on the GPU (host threads only feed it)", lambda: cls(**kw), threads, index, sync=sync)
