"""The package's layering (DESIGN.md "Shape of the code"): no import circles,
the contract in pyproject.toml holds, and breaking it fails `lint-imports`."""

from __future__ import annotations

import ast
import os
import pathlib
import shutil
import subprocess
import sys

import grimp
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
PACKAGE = SRC / "taskleak"
LINT = pathlib.Path(sys.executable).with_name("lint-imports")


def _graph() -> "grimp.ImportGraph":
    sys.path.insert(0, str(SRC))
    try:
        return grimp.build_graph("taskleak", cache_dir=None, exclude_type_checking_imports=True)
    finally:
        sys.path.remove(str(SRC))


def _strongly_connected(nodes, edges):
    """Tarjan's algorithm; returns the components with more than one module."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges(v):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


def test_no_import_circle_in_the_package():
    g = _graph()
    modules = {m for m in g.modules if m.startswith("taskleak")}
    assert "taskleak.tracking.installer" in modules and "taskleak.report.text" in modules

    # The package root is the public facade on top of everything; inside the
    # package it is only the path to `_core` (see test below), so edges into
    # it are not part of the layering.
    def edges(m):
        return sorted(d for d in g.find_modules_directly_imported_by(m) if d in modules and d != "taskleak")

    assert _strongly_connected(modules, edges) == []


def _is_submodule(name: str) -> bool:
    return (PACKAGE / name / "__init__.py").exists() or (PACKAGE / f"{name}.py").exists()


def test_modules_take_only_the_core_from_the_package_root():
    """`from .. import _core` is how modules reach the C++ layer (and `from ..
    import tracking` a sibling package); a name defined in the root
    `__init__` would be an upward import to the public facade."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(SRC).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        if parts == ("taskleak",):
            continue
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                base = parts[: len(parts) - node.level] if rel.name != "__init__" else parts[: len(parts) - node.level + 1]
                target = ".".join(base + ((node.module,) if node.module else ()))
            else:
                target = node.module or ""
            if target == "taskleak":
                bad = [a.name for a in node.names if a.name != "_core" and not _is_submodule(a.name)]
                if bad:
                    offenders.append(f"{rel}:{node.lineno} takes {bad} from the package root")
    assert offenders == []


def _lint(src: pathlib.Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(src))
    return subprocess.run([str(LINT), "--no-cache", "--config", str(ROOT / "pyproject.toml")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_the_layers_contract_holds():
    r = _lint(SRC)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 kept, 0 broken" in r.stdout


@pytest.mark.parametrize("module, bad_import, message", [
    ("tracking/scopes.py", "from ..report import text", "taskleak.tracking is not allowed to import taskleak.report"),
    ("task_info.py", "from .diagnosis import why", "taskleak.task_info is not allowed to import taskleak.diagnosis"),
    ("cli/run.py", "from ..testing import check", "taskleak.cli is not allowed to import taskleak.testing"),
])
def test_an_upward_import_breaks_the_contract(tmp_path, module, bad_import, message):
    copy = tmp_path / "src"
    shutil.copytree(PACKAGE, copy / "taskleak", ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / "taskleak" / module
    target.write_text(target.read_text() + f"\n{bad_import}  # deliberately wrong\n")
    r = _lint(copy)
    assert r.returncode != 0
    assert message in r.stdout, r.stdout
