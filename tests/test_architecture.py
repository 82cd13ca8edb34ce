"""The layering rules of ARCHITECTURE.md, checked by walking every import in the package."""

from __future__ import annotations

import ast
from pathlib import Path

import dlgpu

PKG = Path(dlgpu.__file__).parent

LAYER = {
    "units": 0, "errors": 0, "results": 0,
    "catalog": 1, "devices": 1, "workloads": 1,
    "measure": 2, "analyze": 2, "predict": 2, "distributed": 2,
    "advise": 3, "store": 3, "report": 3,
    "api": 4,
    "cli": 5, "__main__": 5, "__init__": 5,
}
TORCH_ALLOWED = {"devices", "workloads", "measure", "analyze", "distributed"}


def _top(module: str) -> str:
    return module.split(".")[1] if module.startswith("dlgpu.") else module


def _imports(path: Path, pkg: Path) -> list[str]:
    """Absolute module names this file imports (relative imports resolved against its package)."""
    tree = ast.parse(path.read_text())
    package = list(path.relative_to(pkg.parent).with_suffix("").parts[:-1])
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                out.append(".".join([*base, node.module] if node.module else base))
            elif node.module:
                out.append(node.module)
    return out


def violations(pkg: Path) -> list[str]:
    bad = []
    for f in sorted(pkg.rglob("*.py")):
        own = f.relative_to(pkg).parts[0].removesuffix(".py")
        if own not in LAYER:
            bad.append(f"{f}: module {own!r} has no layer in ARCHITECTURE.md")
            continue
        for mod in _imports(f, pkg):
            if mod.split(".")[0] in ("torch", "torchvision", "transformers") and own not in TORCH_ALLOWED:
                bad.append(f"{f.relative_to(pkg)} imports {mod} (torch is allowed only in {sorted(TORCH_ALLOWED)})")
            if not mod.startswith("dlgpu."):
                continue
            target = _top(mod)
            if target in LAYER and LAYER[target] > LAYER[own] and own not in ("__init__", "__main__"):
                bad.append(f"{f.relative_to(pkg)} (layer {LAYER[own]}) imports {mod} (layer {LAYER[target]})")
    return bad


def test_layers_only_import_downwards_and_torch_only_where_allowed() -> None:
    bad = violations(PKG)
    assert not bad, "\n".join(bad)


def test_the_walker_catches_violations(tmp_path: Path) -> None:
    pkg = tmp_path / "dlgpu"
    (pkg / "report").mkdir(parents=True)
    (pkg / "results.py").write_text("from dlgpu.api import bench\n")
    (pkg / "report" / "html.py").write_text("import torch\nfrom ..api import bench\n")
    (pkg / "api.py").write_text("from dlgpu.results import BenchReport\n")
    bad = violations(pkg)
    assert len(bad) == 3, bad
    assert any("results.py (layer 0) imports dlgpu.api" in b for b in bad)
    assert any("imports torch" in b for b in bad)
    assert any("report/html.py (layer 3) imports dlgpu.api" in b for b in bad)


def test_public_surface() -> None:
    assert sorted(dlgpu.__all__) == dlgpu.__all__
    for name in dlgpu.__all__:
        assert hasattr(dlgpu, name)
