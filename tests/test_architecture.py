"""The layering rules of ARCHITECTURE.md, checked by walking the imports of every module in the package.

Two kinds of import are told apart:

- import-time imports: module-level ``import``/``from`` statements, those inside module-level ``if``/``try``/
  ``with``/``for`` blocks and class bodies included, but not those under ``if TYPE_CHECKING:``. These run when
  the module is imported, and so do the ``__init__`` of every package above an imported module (Python imports
  parent packages first): together they make the module's *import-time closure*;
- lazy imports: inside a function or method body; they run only when called.

Rules:

- A (layers): no import, lazy or at import time (or under ``TYPE_CHECKING``), goes to a higher layer; a package
  ``__init__`` belongs to its package's layer. ``dlgpu/__init__.py`` is layer 0 for its import-time imports, and
  may re-export the api lazily (PEP 562 ``__getattr__``). Within layer 2, ``predict`` imports neither ``analyze``
  nor ``measure``, and ``analyze`` does not import ``measure``;
- B (torch at import time): the import-time closure of the torch-free modules never reaches torch, torchvision
  or transformers; the failure shows the chain;
- C (torch in code): torch is imported (lazily or not) only by the packages that own torch-side code;
- every module of the package has a layer.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

_SPEC = importlib.util.find_spec("dlgpu")  # found, not imported: the walker needs only the files
assert _SPEC is not None and _SPEC.origin is not None
PKG = Path(_SPEC.origin).parent
HEAVY = ("torch", "torchvision", "transformers")

LAYER: dict[str, int] = {
    "units": 0, "errors": 0, "results": 0, "home": 0,
    "catalog": 1, "devices": 1, "workloads": 1,
    "analyze": 2, "measure": 2, "predict": 2, "llm": 2, "finetune": 2, "doctor": 2, "probe": 2, "tabular": 2,
    "advise": 3, "store": 3, "report": 3,
    "api": 4,
    "cli": 5, "__main__": 5,
}
ROOT = "__init__"  # the key of dlgpu/__init__.py itself
ROOT_LAYER = 0  # for its import-time imports; its lazy (PEP 562) re-exports may reach any layer
NOT_IMPORTED_BY: dict[str, set[str]] = {"predict": {"analyze", "measure"}, "analyze": {"measure"},
                                        "llm": {"analyze", "measure"}, "finetune": {"measure"},
                                        "tabular": {"analyze", "measure"}}
# rule C: who may write `import torch` at all (lazily or not)
TORCH_ALLOWED = {"devices", "workloads", "measure", "analyze", "probe"}
# rule B: whose import-time closure must not reach torch (workloads: all but the model code, see below)
TORCH_FREE_AT_IMPORT = {ROOT, "__main__", "units", "errors", "results", "home", "catalog", "workloads", "predict",
                        "llm", "finetune", "doctor", "advise", "store", "report", "api", "cli", "probe",
                        "tabular"}
TORCH_AT_IMPORT_EXEMPT = ("workloads/models/", "workloads/custom.py")


@dataclass(frozen=True)
class Import:
    target: str  # an absolute module name: "dlgpu.store.sqlite", "torch.nn"
    line: int
    at_import_time: bool
    type_checking: bool


@dataclass
class Module:
    name: str  # "dlgpu.store.sqlite"; "dlgpu.store" for dlgpu/store/__init__.py; "dlgpu" for the root
    rel: str  # its file relative to the package dir: "store/sqlite.py", "__init__.py"
    imports: list[Import] = field(default_factory=list)

    @property
    def key(self) -> str:
        parts = self.name.split(".")
        return parts[1] if len(parts) > 1 else ROOT


@dataclass
class Findings:
    unlayered: list[str] = field(default_factory=list)
    layers: list[str] = field(default_factory=list)
    torch_at_import: list[str] = field(default_factory=list)
    torch_in_code: list[str] = field(default_factory=list)

    def all(self) -> list[str]:
        return [*self.unlayered, *self.layers, *self.torch_at_import, *self.torch_in_code]


def _key(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else ROOT


def _layer(name: str) -> int | None:
    key = _key(name)
    return ROOT_LAYER if key == ROOT else LAYER.get(key)


def _parents(name: str) -> list[str]:
    """The packages Python imports before ``name``: dlgpu.store.sqlite -> [dlgpu, dlgpu.store]."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _targets(node: ast.Import | ast.ImportFrom, package: list[str], known: set[str]) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if node.level:
        base = package[: len(package) - node.level + 1]
        mod = ".".join([*base, node.module] if node.module else base)
    else:
        mod = node.module or ""
    # `from dlgpu import api` imports the module dlgpu.api, not only the package dlgpu
    return [mod, *(f"{mod}.{a.name}" for a in node.names if f"{mod}.{a.name}" in known)]


def _collect(nodes: list[ast.AST], package: list[str], known: set[str], at_import_time: bool, type_checking: bool,
             out: list[Import]) -> None:
    for node in nodes:
        if isinstance(node, ast.Import | ast.ImportFrom):
            out += [Import(t, node.lineno, at_import_time, type_checking) for t in _targets(node, package, known)]
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            # decorators and defaults run at import time but hold no import statement; the body is lazy
            _collect(list(ast.iter_child_nodes(node)), package, known, False, type_checking, out)
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            _collect(list(node.body), package, known, False, True, out)
            _collect(list(node.orelse), package, known, at_import_time, type_checking, out)
        else:  # module-level if/try/with/for/while, class bodies: they run at import time
            _collect(list(ast.iter_child_nodes(node)), package, known, at_import_time, type_checking, out)


def modules(pkg: Path) -> dict[str, Module]:
    """Every module of the package at ``pkg`` with its imports, by absolute name."""
    files: dict[str, tuple[Path, list[str]]] = {}
    for f in sorted(pkg.rglob("*.py")):
        if "__pycache__" in f.parts:
            continue
        parts = list(f.relative_to(pkg.parent).with_suffix("").parts)
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        files[name] = (f, parts[:-1])  # parts[:-1]: the package relative imports resolve against
    known = set(files)
    out = {}
    for name, (f, package) in files.items():
        m = Module(name, f.relative_to(pkg).as_posix())
        _collect([ast.parse(f.read_text(), str(f))], package, known, True, False, m.imports)
        out[name] = m
    return out


def _import_time_deps(m: Module, mods: dict[str, Module]) -> list[str]:
    """What importing ``m`` runs directly: its parent packages, then its import-time imports (and their parents)."""
    deps = [p for p in _parents(m.name) if p in mods]
    for imp in m.imports:
        if not imp.at_import_time:
            continue
        top = imp.target.split(".")[0]
        if top == "dlgpu":
            deps += [n for n in (*_parents(imp.target), imp.target) if n in mods]
        else:
            deps.append(top)
    return list(dict.fromkeys(deps))


def heavy_chain(start: str, mods: dict[str, Module]) -> list[str] | None:
    """The shortest chain of import-time imports from ``start`` to torch/torchvision/transformers, or None."""
    came_from: dict[str, str | None] = {start: None}
    queue = deque([start])
    while queue:
        cur = queue.popleft()
        if cur in HEAVY:
            chain = [cur]
            prev = came_from[cur]
            while prev is not None:
                chain.append(prev)
                prev = came_from[prev]
            return [mods[n].rel if n in mods else n for n in reversed(chain)]
        if cur not in mods:
            continue  # another third-party module: not walked
        for dep in _import_time_deps(mods[cur], mods):
            if dep not in came_from:
                came_from[dep] = cur
                queue.append(dep)
    return None


def check(pkg: Path) -> Findings:
    mods = modules(pkg)
    found = Findings()
    for m in mods.values():
        if m.key != ROOT and m.key not in LAYER:
            found.unlayered.append(f"{m.rel}: module {m.key!r} has no layer (add it to ARCHITECTURE.md and LAYER)")
            continue
        own = ROOT_LAYER if m.key == ROOT else LAYER[m.key]
        for imp in m.imports:
            how = "at import time" if imp.at_import_time else "under TYPE_CHECKING" if imp.type_checking else "lazily"
            top = imp.target.split(".")[0]
            if top in HEAVY and m.key not in TORCH_ALLOWED and not imp.type_checking:
                found.torch_in_code.append(f"{m.rel}:{imp.line} imports {imp.target} {how} (torch is imported "
                                           f"only in {sorted(TORCH_ALLOWED)})")
            if top != "dlgpu" or imp.target == "dlgpu":
                continue
            if m.key == ROOT and not imp.at_import_time and not imp.type_checking:
                continue  # the lazy re-exports of the public surface
            layer = _layer(imp.target)
            if layer is None:
                found.layers.append(f"{m.rel}:{imp.line} imports {imp.target}, which has no layer")
            elif layer > own:
                found.layers.append(f"{m.rel}:{imp.line} (layer {own}) imports {imp.target} (layer {layer}) {how}")
            elif _key(imp.target) in NOT_IMPORTED_BY.get(m.key, set()):
                found.layers.append(f"{m.rel}:{imp.line} imports {imp.target} {how}: {m.key} imports none of "
                                    f"{sorted(NOT_IMPORTED_BY[m.key])}")
        if m.key in TORCH_FREE_AT_IMPORT and not m.rel.startswith(TORCH_AT_IMPORT_EXEMPT):
            chain = heavy_chain(m.name, mods)
            if chain:
                found.torch_at_import.append(f"torch at import time: {' -> '.join(chain)}")
    return found


# --- the package ------------------------------------------------------------------------------------------------


def test_every_module_has_a_layer() -> None:
    bad = check(PKG).unlayered
    assert not bad, "\n".join(bad)


def test_layers_only_import_downwards() -> None:
    bad = check(PKG).layers
    assert not bad, "\n".join(bad)


def test_torch_is_imported_only_where_allowed() -> None:
    bad = check(PKG).torch_in_code
    assert not bad, "\n".join(bad)


def test_torch_free_modules_do_not_reach_torch_at_import_time() -> None:
    bad = check(PKG).torch_at_import
    assert not bad, f"{len(bad)} module(s) reach torch when imported:\n" + "\n".join(sorted(bad))


def test_the_documented_layers_are_the_checked_ones() -> None:
    """docs/ARCHITECTURE.md's layer table and LAYER above say the same: a package added to one is added to both."""
    doc = (Path(__file__).parents[1] / "docs" / "ARCHITECTURE.md").read_text()
    documented: dict[str, int] = {}
    for row in re.findall(r"^\| (\d) \| ([^|]+) \|", doc, flags=re.M):
        for name in re.findall(r"`([\w.]+)`", row[1]):
            documented[name] = int(row[0])
    assert documented == LAYER


def test_public_surface() -> None:
    import dlgpu

    assert sorted(dlgpu.__all__) == dlgpu.__all__
    for name in dlgpu.__all__:
        assert getattr(dlgpu, name) is not None, name
    need = {"bench", "predict", "advise", "BenchReport", "Prediction", "Advice", "BadInput", "__version__"}
    assert need <= set(dlgpu.__all__), f"missing from dlgpu.__all__: {sorted(need - set(dlgpu.__all__))}"


# --- the walker itself ------------------------------------------------------------------------------------------


FAKE = {
    # the root: a layer-0 import and an upward one at import time; the lazy re-export of the api is allowed
    "__init__.py": "from dlgpu.errors import BadInput\nfrom dlgpu.store import sqlite\n\n\n"
                   "def __getattr__(name):\n    from dlgpu import api\n    return getattr(api, name)\n",
    "errors.py": "class BadInput(Exception):\n    pass\n",
    "results.py": "def f():\n    from dlgpu.api import bench  # lazy, but upward\n    return bench\n",
    "api.py": "from dlgpu.results import f\n",
    "extras.py": "",
    # torch through two modules and a parent __init__: terminal -> model -> (registry's package) workloads
    "report/__init__.py": "",
    "report/terminal.py": "from .model import get\n",
    "report/model.py": "from dlgpu.workloads.registry import get\n",
    "report/html.py": "from .. import api\n",
    "workloads/__init__.py": "from .models import vision\n",
    "workloads/registry.py": "def get():\n    return 1\n",
    "workloads/models/__init__.py": "",
    "workloads/models/vision.py": "import torch\n",
    # torch only lazily and under TYPE_CHECKING: not at import time
    "store/__init__.py": "",
    "store/sqlite.py": "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from dlgpu.devices import detect\n"
                       "else:\n    import json\n\n\ndef run():\n    from dlgpu.measure import timer\n"
                       "    import torch\n    return timer, torch\n",
    "devices/__init__.py": "",
    "devices/detect.py": "import torch\n",
    "measure/__init__.py": "",
    "measure/timer.py": "import torch\n",
    # a module-level `if` and `try` run at import time
    "catalog/__init__.py": "",
    "catalog/specs.py": "try:\n    import tomllib\nexcept ImportError:\n    tomllib = None\nif True:\n"
                        "    import torchvision\n",
    "predict/__init__.py": "from dlgpu.analyze import trace\n",
    "analyze/__init__.py": "",
    "analyze/trace.py": "",
}


def test_the_walker_catches_violations(tmp_path: Path) -> None:
    pkg = tmp_path / "dlgpu"
    for rel, text in FAKE.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(text)
    found = check(pkg)
    everything = "\n".join(found.all())

    assert found.unlayered == ["extras.py: module 'extras' has no layer (add it to ARCHITECTURE.md and LAYER)"]
    # rule A: upward, lazily and at import time; the root is layer 0 at import time, free when lazy
    assert "results.py:2 (layer 0) imports dlgpu.api (layer 4) lazily" in found.layers
    assert "report/html.py:1 (layer 3) imports dlgpu.api (layer 4) at import time" in found.layers
    assert "__init__.py:2 (layer 0) imports dlgpu.store.sqlite (layer 3) at import time" in found.layers
    assert not any(b.startswith("__init__.py:6") for b in found.layers), everything
    assert any(b.startswith("predict/__init__.py:1 imports dlgpu.analyze.trace") for b in found.layers)
    assert not any(b.startswith("store/sqlite.py") for b in found.layers), everything  # downward, lazy or not
    # rule B: the chain, through two modules and the registry's parent package
    assert ("torch at import time: report/terminal.py -> report/model.py -> workloads/__init__.py -> "
            "workloads/models/vision.py -> torch") in found.torch_at_import
    assert ("torch at import time: workloads/registry.py -> workloads/__init__.py -> workloads/models/vision.py "
            "-> torch") in found.torch_at_import
    assert "torch at import time: catalog/specs.py -> torchvision" in found.torch_at_import
    # ... not through a lazy import, nor one under TYPE_CHECKING; the model code and engines are exempt
    assert not any(" store/" in b or "html.py" in b or "results.py" in b or "timer.py:" in b
                   for b in found.torch_at_import), everything
    assert not any(b.startswith(("torch at import time: workloads/models/", "torch at import time: devices/",
                                 "torch at import time: measure/")) for b in found.torch_at_import), everything
    # rule C: a direct `import torch`, even lazy, outside the torch-side packages
    assert any(b.startswith("store/sqlite.py:11 imports torch lazily") for b in found.torch_in_code), everything
    assert any(b.startswith("catalog/specs.py:6 imports torchvision at import time") for b in found.torch_in_code)
    assert not any(b.startswith(("devices/", "measure/", "workloads/")) for b in found.torch_in_code), everything
    assert len(found.torch_in_code) == 2, everything
