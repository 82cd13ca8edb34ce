"""Gradient-boosted trees and classical machine learning (family ``tabular``): XGBoost, LightGBM and the scikit-learn
estimators people use, each fitted and asked to predict on synthetic tabular data generated here (nothing is
downloaded), shaped by ``--set rows=N features=N trees=N depth=N``.

Declared here, torch-free and without importing XGBoost, LightGBM or scikit-learn (listing workloads imports none of
them); the library code is ``workloads.models.tabular``, and ``measure.tabular`` measures it (``dlgpu bench``).

Tasks (a sample is one row, so samples/s = rows/s):

- ``train``: one ``fit(X, y)`` on ``rows`` rows x ``features`` float32 columns held in host memory, as a user calls
  it: the library's own data preparation (XGBoost's quantile sketch and histogram index, LightGBM's binning,
  scikit-learn's input checks) and, on a GPU, the copy to the device are part of the fit;
- ``infer``: one ``predict(X)`` of the fitted model on the same ``rows`` rows (k-nearest neighbours: on ``queries``
  held-out rows, since its cost is rows x queries).

The data: a seeded binary classification problem (``models.tabular.make_data``): eight Gaussian clusters whose
class is half their label, plus a linear term over every feature and noise, so that every estimator learns it
above chance (the held-out accuracy is recorded with each result) and k-means has clusters to find. Precision is
not a setting of these libraries: the data is float32 and results say fp32.

Each workload cites the real data set whose size it stands for (``TaskFacts``): GBM-perf's airline data for the
boosted trees (the settings GBM-perf times: 100 trees, depth 10, learning rate 0.1) and UCI's HIGGS for the
scikit-learn estimators. No fit's time is projected from them: a fit's time is not linear in rows for most of these
estimators (the prediction half, ``dlgpu.tabular``, models it); the boosted trees' prediction of GBM-perf's test set
is (linear in the rows predicted)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dlgpu.errors import BadInput

from .registry import Param, TaskFacts, WorkloadSpec, register_workload

FAMILY = "tabular"
TASKS = ("train", "infer")
MAX_DEPTH = 64
"""``depth`` is taken from 1 to 64: a depth-64 tree could have 2^64 leaves, far past any data set's rows."""
MIN_ROWS = 100
"""The fewest rows: both classes present, and the warm-up and held-out checks have data."""
SVM_MAX_ROWS = 100_000
"""SVC's fit (libsvm's SMO) grows between rows^2 and rows^3: 100,000 rows already takes hours on a CPU core."""
LIGHTGBM_MAX_LEAVES = 131_072
"""LightGBM's largest ``num_leaves`` (its parameter docs: 1 < num_leaves <= 131072)."""
LEARNING_RATE = 0.1
HOLDOUT_ROWS = 10_000
"""Held-out rows (another seed of the same generator) scored after the timed steps, untimed."""

AIRLINE = TaskFacts(
    dataset="airline on-time data (GBM-perf: departure delayed by more than 15 min, 8 input columns)",
    source="https://github.com/szilard/GBM-perf (training sets of 0.1M, 1M and 10M rows, a 100K-row test set; "
           "100 trees, depth 10, learning rate 0.1; XGBoost tree_method hist)",
    train_samples=10_000_000,
    eval_samples=100_000,
    eval_dataset="GBM-perf's airline test set",
    notes=("rows stand for the training set's size (GBM-perf times 0.1M, 1M and 10M); the 8 columns are the airline "
           "data's inputs (month, day of month, day of week, departure time, carrier, origin, destination, "
           "distance), numeric here where GBM-perf one-hot encodes the categorical ones. A fit's time is not "
           "projected from rows/s (the prediction half models time against rows); predicting the test set is, "
           "a tree ensemble's prediction being linear in the rows predicted."),
)
HIGGS = TaskFacts(
    dataset="HIGGS (UCI: 11,000,000 simulated collision events x 28 features, signal or background)",
    source="https://archive.ics.uci.edu/dataset/280/higgs (Baldi, Sadowski and Whiteson, Nature Communications 5, "
           "4308, 2014; the last 500,000 rows are the test set)",
    train_samples=10_500_000,
    notes=("rows and features stand for HIGGS's shape (28 dense float features; 10,500,000 training rows, 500,000 "
           "test rows); the default rows are a subsample a CPU fits in seconds to minutes. No time is projected from "
           "rows/s: these fits are not linear in rows, nor are k-NN's and SVC's predictions in the rows predicted "
           "alone."),
)


def _rows(default: int, maximum: int | None = None) -> Param:
    why = f"rows of synthetic training data (at least {MIN_ROWS})"
    if maximum is not None:
        why = f"rows of synthetic training data; at most {maximum:,}: SVC's fit grows between rows^2 and rows^3"
    return Param("rows", default, why, minimum=MIN_ROWS, maximum=maximum)


def _features(default: int) -> Param:
    return Param("features", default, "float32 feature columns")


def _trees(default: int) -> Param:
    return Param("trees", default, "trees (boosting rounds; a random forest's estimators)")


def _depth(default: int) -> Param:
    return Param("depth", default, f"the trees' maximum depth (1 to {MAX_DEPTH})", minimum=1, maximum=MAX_DEPTH)


ESTIMATORS: dict[str, dict[str, str]] = {
    # name -> what it is on the CPU, and on a CUDA GPU
    "xgboost": {"cpu": "xgboost.XGBClassifier(tree_method='hist', device='cpu')",
                "cuda": "xgboost.XGBClassifier(tree_method='hist', device='cuda:N')"},
    "lightgbm": {"cpu": "lightgbm.LGBMClassifier(device_type='cpu')",
                 "cuda": "lightgbm.LGBMClassifier(device_type='cuda') (a LightGBM built with CUDA only)"},
    "random_forest": {"cpu": "sklearn.ensemble.RandomForestClassifier",
                      "cuda": "cuml.ensemble.RandomForestClassifier (where cuML is installed)"},
    "logistic_regression": {"cpu": "sklearn.linear_model.LogisticRegression(solver='lbfgs')",
                            "cuda": "cuml.linear_model.LogisticRegression (where cuML is installed)"},
    "knn": {"cpu": "sklearn.neighbors.KNeighborsClassifier",
            "cuda": "cuml.neighbors.KNeighborsClassifier (where cuML is installed)"},
    "svm": {"cpu": "sklearn.svm.SVC(kernel='rbf')", "cuda": "cuml.svm.SVC(kernel='rbf') (where cuML is installed)"},
    "kmeans": {"cpu": "sklearn.cluster.KMeans(n_init=1)", "cuda": "cuml.cluster.KMeans(n_init=1) (where cuML is "
                                                                  "installed)"},
}


def check_params(estimator: str, p: Mapping[str, Any]) -> None:
    """BadInput (one line) where the parameters cannot make a fit: more neighbours or clusters than rows."""
    rows = int(p["rows"])
    if estimator == "knn" and int(p["neighbors"]) > rows:
        raise BadInput(f"neighbors={p['neighbors']}: more neighbours than rows ({rows})", param="overrides")
    if estimator == "kmeans" and int(p["clusters"]) > rows:
        raise BadInput(f"clusters={p['clusters']}: more clusters than rows ({rows})", param="overrides")


def samples_per_step(spec: WorkloadSpec, task: str, params: Mapping[str, Any]) -> int:
    """Rows one step processes: the training rows for a fit; the rows predicted for ``infer`` (k-nearest neighbours:
    its ``queries``)."""
    if task == "infer" and "queries" in params:
        return int(params["queries"])
    return int(params["rows"])


def is_tabular(spec: WorkloadSpec) -> bool:
    return spec.family == FAMILY


def _factory(name: str) -> Any:
    def build(p: Mapping[str, Any]) -> Any:
        raise BadInput(f"{name} is a tabular workload ({ESTIMATORS[name]['cpu'].split('(')[0]}): it has no PyTorch "
                       "model to build or trace; `dlgpu bench -w " + name + "` measures it", param="workload")

    return build


def _register(name: str, *, estimator: str, description: str, facts: TaskFacts, rows: int, quick_rows: int,
              params: tuple[Param, ...], tiny: bool = False, notes: str = "") -> None:
    register_workload(
        name=name, family=FAMILY, description=description, batch_size=rows, quick_batch_size=quick_rows,
        facts=facts, sample_unit="row", params=(_rows(rows, SVM_MAX_ROWS if estimator == "svm" else None), *params),
        optimizer="none", tiny=tiny, tasks=TASKS,
        architecture_source=f"{ESTIMATORS[estimator]['cpu']}; on CUDA: {ESTIMATORS[estimator]['cuda']}",
        notes=notes, extra={"estimator": estimator},
    )(_factory(name))


_GBM = ("the settings GBM-perf times: 100 trees of depth 10, learning rate 0.1")
_register("xgboost", estimator="xgboost", facts=AIRLINE, rows=1_000_000, quick_rows=100_000,
          description="XGBoost gradient-boosted trees (hist), GBM-perf's airline setting, synthetic data",
          params=(_features(8), _trees(100), _depth(10)),
          notes=f"{_GBM}; XGBClassifier(tree_method='hist', learning_rate=0.1, max_depth=depth, n_estimators=trees), "
                "n_jobs = the usable cores")
_register("lightgbm", estimator="lightgbm", facts=AIRLINE, rows=1_000_000, quick_rows=100_000,
          description="LightGBM gradient-boosted trees, GBM-perf's airline setting, synthetic data",
          params=(_features(8), _trees(100), _depth(10)),
          notes=f"{_GBM}; LGBMClassifier(max_depth=depth, num_leaves=min(2^depth, {LIGHTGBM_MAX_LEAVES}): as many "
                "leaves as a full tree of that depth, learning_rate=0.1, n_estimators=trees), n_jobs = the usable "
                "cores")
_register("random_forest", estimator="random_forest", facts=HIGGS, rows=100_000, quick_rows=10_000,
          description="scikit-learn random forest, HIGGS-shaped synthetic data",
          params=(_features(28), _trees(100), _depth(10)),
          notes="RandomForestClassifier(n_estimators=trees, max_depth=depth, max_features='sqrt'), n_jobs = the "
                "usable cores")
_register("logistic_regression", estimator="logistic_regression", facts=HIGGS, rows=1_000_000, quick_rows=100_000,
          description="scikit-learn logistic regression (lbfgs), HIGGS-shaped synthetic data",
          params=(_features(28),),
          notes="LogisticRegression(solver='lbfgs', max_iter=100); its threads are the BLAS and OpenMP pools, "
                "limited to the usable cores (threadpoolctl)")
_register("knn", estimator="knn", facts=HIGGS, rows=100_000, quick_rows=10_000,
          description="scikit-learn k-nearest neighbours (brute force), HIGGS-shaped synthetic data",
          params=(_features(28), Param("neighbors", 5, "k, the neighbours that vote"),
                  Param("queries", 10_000, "held-out rows one predict (task infer) classifies")),
          notes="KNeighborsClassifier(n_neighbors=neighbors): fit stores the rows (brute force above 15 features, "
                "scikit-learn's rule), predict computes the distances of queries x rows; n_jobs = the usable cores")
_register("svm", estimator="svm", facts=HIGGS, rows=10_000, quick_rows=2_000,
          description="scikit-learn support vector machine (RBF-kernel SVC), HIGGS-shaped synthetic data",
          params=(_features(28),),
          notes=f"SVC(kernel='rbf', C=1, gamma='scale'): libsvm's SMO, single-threaded, its fit between rows^2 and "
                f"rows^3 (rows are capped at {SVM_MAX_ROWS:,})")
_register("kmeans", estimator="kmeans", facts=HIGGS, rows=1_000_000, quick_rows=100_000,
          description="scikit-learn k-means (Lloyd), HIGGS-shaped synthetic data (labels unused)",
          params=(_features(28), Param("clusters", 8, "k, the clusters to find", minimum=2)),
          notes="KMeans(n_clusters=clusters, n_init=1, init='k-means++', max_iter=300, tol=1e-4): its iterations "
                "until convergence are recorded; OpenMP threads limited to the usable cores")

# Tiny variants for tests: a few thousand rows, seconds at most.
_TINY = "tiny {} for tests"
_register("test_xgboost", estimator="xgboost", facts=AIRLINE, rows=2_000, quick_rows=2_000, tiny=True,
          description=_TINY.format("XGBoost (2,000 rows, 10 trees of depth 4)"),
          params=(_features(8), _trees(10), _depth(4)))
_register("test_lightgbm", estimator="lightgbm", facts=AIRLINE, rows=2_000, quick_rows=2_000, tiny=True,
          description=_TINY.format("LightGBM (2,000 rows, 10 trees of depth 4)"),
          params=(_features(8), _trees(10), _depth(4)))
_register("test_random_forest", estimator="random_forest", facts=HIGGS, rows=2_000, quick_rows=2_000, tiny=True,
          description=_TINY.format("random forest (2,000 rows, 10 trees of depth 4)"),
          params=(_features(8), _trees(10), _depth(4)))
_register("test_logistic_regression", estimator="logistic_regression", facts=HIGGS, rows=2_000, quick_rows=2_000,
          tiny=True, description=_TINY.format("logistic regression (2,000 rows)"), params=(_features(8),))
_register("test_knn", estimator="knn", facts=HIGGS, rows=2_000, quick_rows=2_000, tiny=True,
          description=_TINY.format("k-nearest neighbours (2,000 rows, 500 queries)"),
          params=(_features(8), Param("neighbors", 5, "k, the neighbours that vote"),
                  Param("queries", 500, "held-out rows one predict (task infer) classifies")))
_register("test_svm", estimator="svm", facts=HIGGS, rows=1_000, quick_rows=1_000, tiny=True,
          description=_TINY.format("RBF SVC (1,000 rows)"), params=(_features(8),))
_register("test_kmeans", estimator="kmeans", facts=HIGGS, rows=2_000, quick_rows=2_000, tiny=True,
          description=_TINY.format("k-means (2,000 rows, 8 clusters)"),
          params=(_features(8), Param("clusters", 8, "k, the clusters to find", minimum=2)))
