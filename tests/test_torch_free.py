"""What must work without torch (ARCHITECTURE.md): the torch-free modules import, and ``dlgpu --help``,
``hardware``, ``workloads``, ``runs``, ``show``, ``export``/``import``, ``compare``, ``report`` and a warm-cache
``advise`` and ``predict`` run, in a fresh process where ``import torch`` (torchvision, transformers) raises
ImportError. The documents they read are made here first, with torch, by real tiny runs."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import TINY_BUDGET

HEAVY = ("torch", "torchvision", "transformers")
PRELUDE = f"import sys\nfor _m in {HEAVY!r}:\n    sys.modules[_m] = None  # `import torch` raises ImportError\n"
MARK = "@@dlgpu-torch-free "
TINY = ["--set", "image_size=16"]

MODULES = (
    "dlgpu", "dlgpu.units", "dlgpu.errors", "dlgpu.results", "dlgpu.home", "dlgpu.catalog", "dlgpu.predict",
    "dlgpu.advise", "dlgpu.store", "dlgpu.report.terminal", "dlgpu.report.html", "dlgpu.report.markdown",
    "dlgpu.report.compare", "dlgpu.cli.main", "dlgpu.workloads.registry", "dlgpu.api",
    "dlgpu.finetune.predict", "dlgpu.advise.finetune", "dlgpu.report.terminal_finetune",
    "dlgpu.tabular.predict", "dlgpu.advise.tabular", "dlgpu.report.terminal_tabular",
)

# Each module in a fresh interpreter state would cost a process each; one process imports them in turn (a
# failed import leaves nothing behind in sys.modules) and says, for each, what failed and through which lines.
IMPORTS = PRELUDE + """
import json, traceback
out = {}
for name in sys.argv[1:]:
    try:
        __import__(name)
        out[name] = None
    except BaseException as exc:
        frames = [f"{f.filename.split('/src/')[-1]}:{f.lineno}" for f in traceback.extract_tb(exc.__traceback__)
                  if "/dlgpu/" in f.filename]
        out[name] = f"{type(exc).__name__}: {exc} (via {' -> '.join(frames)})"
print(json.dumps(out))
"""

# One command through dlgpu.cli.main.main in this process; its exit code and the heavy modules really loaded
# (a blocked one sits in sys.modules as None) go to stderr as the last line, after the command's own output.
CLI = PRELUDE + """
import json
from dlgpu.cli.main import main
try:
    code = main(json.loads(sys.argv[1]))
except SystemExit as exc:  # argparse's --help and --version
    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
sys.stdout.flush()
heavy = sorted(m for m, v in sys.modules.items() if v is not None and m.split(".")[0] in HEAVY)
sys.stderr.write("\\n" + MARK + json.dumps({"code": code, "heavy": heavy}) + "\\n")
""".replace("HEAVY", repr(HEAVY)).replace("MARK", repr(MARK))


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DLGPU_DB", "DLGPU_CACHE_DIR")}
    return env | {"DLGPU_HOME": str(home), "COLUMNS": "200"}


def run_blocked(code: str, args: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code, *args], env=_env(home), capture_output=True, text=True,
                          timeout=300, check=False)


def dlgpu_blocked(argv: list[str], home: Path, code: int = 0) -> str:
    """``dlgpu ARGV`` with torch blocked: asserts the exit code and that no heavy module was loaded; its stdout."""
    proc = run_blocked(CLI, [json.dumps(argv)], home)
    tail = proc.stderr.rstrip().splitlines()[-1:] or [""]
    if not tail[0].startswith(MARK):
        raise AssertionError(f"dlgpu {' '.join(argv)} crashed without torch (exit {proc.returncode}):\n"
                             f"{proc.stderr[-4000:]}")
    got = json.loads(tail[0].removeprefix(MARK))
    assert got["code"] == code, f"dlgpu {' '.join(argv)} exited {got['code']} without torch:\n{proc.stderr[-4000:]}"
    assert got["heavy"] == [], f"dlgpu {' '.join(argv)} loaded {got['heavy']}"
    return proc.stdout


def dlgpu_here(argv: list[str]) -> str:
    """``dlgpu ARGV`` in this process, torch present: asserts exit 0; its stdout."""
    from dlgpu.cli.main import main  # here, not at the top: the import tests run even when the CLI is broken

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(argv)
    assert code == 0, f"dlgpu {' '.join(argv)} exited {code}"
    return out.getvalue()


# --- imports ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str | None]:
    proc = run_blocked(IMPORTS, list(MODULES), tmp_path_factory.mktemp("home"))
    assert proc.returncode == 0, proc.stderr[-4000:]
    out: dict[str, str | None] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


@pytest.mark.parametrize("module", MODULES)
def test_imports_without_torch(module: str, imported: dict[str, str | None]) -> None:
    assert imported[module] is None, f"import {module} without torch: {imported[module]}"


# --- commands over the catalog, the registry and an empty store ---------------------------------------------------


def _is_json(schema_prefix: str, **expect: Any) -> Any:
    def check(out: str) -> None:
        doc = json.loads(out)
        if schema_prefix:
            assert str(doc.get("schema", "")).startswith(schema_prefix), doc.get("schema")
        for k, v in expect.items():
            assert doc[k] == v, (k, doc[k])
    return check


def _has(*needles: str) -> Any:
    def check(out: str) -> None:
        for n in needles:
            assert n in out, f"{n!r} not in:\n{out[-2000:]}"
    return check


SIMPLE = [
    (["--help"], _has("usage: dlgpu", "advise", "hardware")),
    (["--version"], _has("dlgpu ")),
    (["hardware", "list"], _has("A100", "a100-sxm4-80gb")),
    (["hardware", "show", "a100-sxm4-80gb"], _has("A100")),
    (["workloads"], _has("resnet50", "bert_base")),
    (["workloads", "--all"], _has("resnet50", "test_resnet")),
    (["workloads", "list", "--all"], _has("resnet50", "test_resnet")),
    # not `workloads show`: its parameter count and memory floor are computed on the meta device, with torch
    (["runs"], _has("no runs")),
    (["runs", "--json"], _is_json("dlgpu.runs/", runs=[])),
    # fine-tuning: memory, time and advice are computed, never traced
    (["predict", "llama3_8b", "--task", "finetune", "--method", "lora", "-H", "a100-sxm4-80gb", "--json"],
     _is_json("dlgpu.finetune-predict/", fits=True, method="lora")),
    (["predict", "llama3_8b", "--task", "finetune", "--method", "qlora", "-H", "rtx-4090"],
     _has("base weights", "tokens/s")),
    (["advise", "llama3_8b", "--task", "finetune", "--method", "qlora", "--samples", "50000", "--deadline", "12h",
      "--json"], _is_json("dlgpu.finetune-advise/", methods=["qlora"])),
    # tabular: boosted trees' training time predicted, the CPU/GPU crossover (no profile, no model)
    (["predict", "xgboost", "--set", "rows=1000000", "-H", "v100-sxm2-16gb", "--json"],
     _is_json("dlgpu.tabular-predict/", predicted=True, hardware="v100-sxm2-16gb")),
    (["predict", "lightgbm", "--set", "rows=1M", "-H", "local"], _has("to train", "Verify")),
    (["advise", "xgboost", "--set", "rows=100000", "--json"], _is_json("dlgpu.tabular-advise/", answer="cpu-enough")),
    (["advise", "xgboost", "--set", "rows=100000000"], _has("Crossover", "GPUs, rented then bought")),
]


@pytest.mark.parametrize(("argv", "check"), SIMPLE, ids=[" ".join(a) for a, _ in SIMPLE])
def test_command_without_torch(argv: list[str], check: Any, tmp_path: Path) -> None:
    check(dlgpu_blocked(argv, tmp_path / "home"))


# --- the store: documents made with torch, read without it -------------------------------------------------------


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A store with a real bench run (the tiny ResNet on this CPU) and a prediction, made here with torch;
    exported to a file, and that file imported into a second store."""
    from dlgpu import api

    tmp = tmp_path_factory.mktemp("torch-free-store")
    db, imported = tmp / "made.sqlite", tmp / "imported.sqlite"
    api.bench(workloads=["test_resnet"], devices=["cpu"], precisions=["fp32"], tasks=["infer"], quick=True,
              timing=TINY_BUDGET, overrides={"image_size": "16"}, telemetry=False, db=db)
    dlgpu_here(["predict", "test_resnet", "-H", "a100-sxm4-80gb", "-t", "infer", *TINY, "--db", str(db)])
    bundle = tmp / "runs.json"
    dlgpu_here(["export", "--db", str(db), "-o", str(bundle)])
    assert len(json.loads(bundle.read_text())["runs"]) == 2
    dlgpu_here(["import", str(bundle), "--db", str(imported), "--json"])
    return {"db": db, "bundle": bundle, "imported": imported, "tmp": tmp}


def test_export_import_show_without_torch(stored: dict[str, Path], tmp_path: Path) -> None:
    home = tmp_path / "home"
    bundle = json.loads(dlgpu_blocked(["export", "--db", str(stored["db"])], home))
    assert bundle["schema"] == "dlgpu.export/1" and len(bundle["runs"]) == 2
    f = tmp_path / "runs.json"
    f.write_text(json.dumps(bundle))
    db = tmp_path / "new.sqlite"
    added = json.loads(dlgpu_blocked(["import", str(f), "--db", str(db), "--json"], home))["added"]
    assert sorted(added) == sorted(r["id"] for r in bundle["runs"])
    runs = json.loads(dlgpu_blocked(["runs", "--db", str(db), "--json"], home))["runs"]
    assert sorted(r["id"] for r in runs) == sorted(added)
    latest = json.loads(dlgpu_blocked(["show", "latest", "--db", str(db), "--json"], home))
    assert str(latest["schema"]).startswith(("dlgpu.bench/", "dlgpu.predict/"))
    assert "test_resnet" in dlgpu_blocked(["show", "latest", "--db", str(db)], home)


def test_compare_without_torch(stored: dict[str, Path], tmp_path: Path) -> None:
    doc = json.loads(dlgpu_blocked(["compare", "--db", str(stored["imported"]), "--json"], tmp_path / "home"))
    assert doc["schema"] == "dlgpu.compare/1" and doc["tables"]
    assert "test_resnet" in json.dumps(doc)


def test_report_html_without_torch(stored: dict[str, Path], tmp_path: Path) -> None:
    html = tmp_path / "report.html"
    dlgpu_blocked(["report", "--db", str(stored["imported"]), "--html", str(html)], tmp_path / "home")
    text = html.read_text()
    assert "<table" in text and "test_resnet" in text


# --- advise and predict with the profile cache warm ------------------------------------------------------------


ADVISE = ["advise", "test_resnet", "--samples", "1000", "-t", "infer", *TINY, "--json"]
PREDICT = ["predict", "test_resnet", "-H", "a100-sxm4-80gb", "-t", "infer", *TINY, "--json"]


# Warmed in a fresh process (torch present), as a user's earlier run would: in this one, a profile already
# traced by another test is served from memory and never written to this test's cache.
WARM = """
import contextlib, io, json, sys
from dlgpu.cli.main import main
outs = []
for argv in json.loads(sys.argv[1]):
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(argv)
    if code != 0:
        sys.exit(f"dlgpu {' '.join(argv)} exited {code}")
    outs.append(json.loads(buf.getvalue()))
print(json.dumps(outs))
"""


def test_warm_cache_advise_and_predict_without_torch(tmp_path: Path) -> None:
    home = tmp_path / "home"
    proc = subprocess.run([sys.executable, "-c", WARM, json.dumps([ADVISE, PREDICT])], env=_env(home),
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    first, pred = json.loads(proc.stdout.strip().splitlines()[-1])  # traced, and cached on disk
    cached = sorted(p.name for p in home.rglob("*.json"))
    assert cached, f"nothing cached under {home}"

    again = json.loads(dlgpu_blocked(ADVISE, home))
    assert again["verdict"]["answer"] == first["verdict"]["answer"]
    assert len(again["candidates"]) == len(first["candidates"])
    assert [c["id"] for c in again["candidates"]] == [c["id"] for c in first["candidates"]]
    blocked_pred = json.loads(dlgpu_blocked(PREDICT, home))
    same = ("schema", "workload", "task", "hardware", "precision", "batch_size", "flops", "step_time_s")
    assert {k: blocked_pred.get(k) for k in same} == {k: pred.get(k) for k in same}
    assert sorted(p.name for p in home.rglob("*.json")) == cached  # nothing traced again
