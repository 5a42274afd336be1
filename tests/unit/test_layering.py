"""The package layering rule, checked on the source (no import side effects).

Ground packages (OCI model, layers, registry client, Dockerfile front end, filesystem helpers,
cache entries and stores) never import the engine or the command-line layer: data flows one
way, engine -> ground. And no module grows much past 500 lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "executor"
GROUND = ("oci", "layers", "registry", "dockerfile", "fs", "cache")
UPPER = ("executor.engine", "executor.cli", "executor.outputs", "executor.warm")
MAX_LINES = 560


def _imports(path: Path, top: Path = PKG.parent) -> set[str]:
    """Absolute module names ``path`` imports (relative imports resolved against ``top``)."""
    mod = ".".join(path.relative_to(top).with_suffix("").parts)
    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.add(name)
            out.update(f"{name}.{a.name}" for a in node.names)
    return out


@pytest.mark.parametrize("package", GROUND)
def test_ground_packages_never_import_the_engine(package):
    bad = {}
    for path in sorted((PKG / package).rglob("*.py")):
        hits = sorted(i for i in _imports(path) if i.startswith(UPPER))
        if hits:
            bad[str(path.relative_to(PKG.parent))] = hits
    assert not bad, f"ground package {package} imports the engine/CLI layer: {bad}"


def test_the_rule_sees_relative_and_absolute_imports(tmp_path):
    """The checker itself: engine imports written either way are found."""
    mod = tmp_path / "executor" / "fs" / "probe.py"
    mod.parent.mkdir(parents=True)
    mod.write_text("from ..engine.stage import StageBuilder\nimport executor.cli\nfrom . import paths\n")
    found = _imports(mod, tmp_path)
    assert {"executor.engine.stage", "executor.cli", "executor.fs.paths"} <= found
    assert any(i.startswith(UPPER) for i in found)


def test_no_module_grows_much_past_500_lines():
    big = {str(p.relative_to(PKG.parent)): n for p in PKG.rglob("*.py")
           if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not big, f"split these modules by concept: {big}"
