"""The package's layering (docs/internals.md): no import circles (type-checking
imports included), the contract in pyproject.toml holds, breaking it fails
`lint-imports`, and no module takes a private name from another subpackage."""

from __future__ import annotations

import ast
import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
PACKAGE = SRC / "taskleak"
LINT = pathlib.Path(sys.executable).with_name("lint-imports")


_CIRCLES = """
import json, sys
import grimp
sys.path.insert(0, sys.argv[1])
# Type-checking imports count: a circle that only annotations close is still a
# circle a reader has to untangle (and mypy has to resolve).
g = grimp.build_graph("taskleak", cache_dir=None, exclude_type_checking_imports=False)
modules = sorted(m for m in g.modules if m.startswith("taskleak"))
# The package root is the public facade on top of everything; inside the
# package it is only the path to `_core` (see the test below), so edges into
# it are not part of the layering.
edges = {m: sorted(d for d in g.find_modules_directly_imported_by(m) if d in modules and d != "taskleak")
         for m in modules}
print(json.dumps({"modules": modules, "edges": edges}))
"""


def _circles(src: pathlib.Path = SRC) -> tuple:
    """(modules, import circles) of the package under `src`, read in a fresh
    interpreter: in this one `taskleak` is already imported (the pytest
    plugin), and grimp would read that copy instead."""
    r = subprocess.run(
        [sys.executable, "-c", _CIRCLES, str(src)],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, PYTHONPATH=""),
    )
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    return data["modules"], _strongly_connected(data["modules"], lambda m: data["edges"][m])


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
    modules, circles = _circles()
    assert "taskleak.tracking.installer" in modules and "taskleak.model.text" in modules
    assert circles == []


def test_a_type_checking_import_closes_a_circle(tmp_path):
    copy = tmp_path / "src"
    shutil.copytree(PACKAGE, copy / "taskleak", ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / "taskleak" / "monitor" / "metrics.py"
    target.write_text(
        target.read_text()
        + "\n\nfrom typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from .monitor import Monitor\n"
    )
    _, circles = _circles(copy)
    assert len(circles) == 1 and {"taskleak.monitor.metrics", "taskleak.monitor.monitor"} <= set(circles[0])


def _is_submodule(name: str) -> bool:
    return (PACKAGE / name / "__init__.py").exists() or (PACKAGE / f"{name}.py").exists()


def test_modules_take_only_the_core_from_the_package_root():
    """Modules reach the C++ layer as `import taskleak._core as _core` (and
    `from .. import tracking` is a sibling package); a name defined in the
    root `__init__` would be an upward import to the public facade."""
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
                base = (
                    parts[: len(parts) - node.level] if rel.name != "__init__" else parts[: len(parts) - node.level + 1]
                )
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
    return subprocess.run(
        [str(LINT), "--no-cache", "--config", str(ROOT / "pyproject.toml")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_layers_contract_holds():
    r = _lint(SRC)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 kept, 0 broken" in r.stdout


@pytest.mark.parametrize(
    "module, bad_import, message",
    [
        (
            "tracking/scopes.py",
            "from ..report import text",
            "taskleak.tracking is not allowed to import taskleak.report",
        ),
        (
            "model/task_info.py",
            "from ..diagnosis import why",
            "taskleak.model is not allowed to import taskleak.diagnosis",
        ),
        (
            "blocking/watchdog.py",
            "from ..live import serve",
            "taskleak.blocking is not allowed to import taskleak.live",
        ),
        ("cli/run.py", "from ..testing import check", "taskleak.cli is not allowed to import taskleak.testing"),
    ],
)
def test_an_upward_import_breaks_the_contract(tmp_path, module, bad_import, message):
    copy = tmp_path / "src"
    shutil.copytree(PACKAGE, copy / "taskleak", ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / "taskleak" / module
    target.write_text(target.read_text() + f"\n{bad_import}  # deliberately wrong\n")
    r = _lint(copy)
    assert r.returncode != 0
    assert message in r.stdout, r.stdout


# --- private names stay in their subpackage ----------------------------------
# A subpackage ("room") is a folder of src/taskleak; each top-level module is a
# room of its own. A name with a leading underscore is the room's business:
# another room that needs it needs a public door instead.

# CPython's own private attributes that taskleak reads and that happen to share
# a name with something defined in taskleak (threading._active).
_FOREIGN_PRIVATE = {"_active"}


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _module_of(path: pathlib.Path, package: pathlib.Path) -> str:
    rel = path.relative_to(package.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__") and name != "_core"


def private_crossings(package: pathlib.Path) -> list:
    """Every place a module of `package` takes a private name of another room:
    ``from ..x import _name``, ``alias._name`` on a module imported from
    another room, or ``obj._name`` where only other rooms define ``_name``."""
    trees = {}
    defined: dict = {}
    for path in sorted(package.rglob("*.py")):
        module = _module_of(path, package)
        tree = ast.parse(path.read_text(), str(path))
        trees[path] = (module, tree)
        for node in ast.walk(tree):
            names = []
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names = [node.name]
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names = [
                    t.id if isinstance(t, ast.Name) else t.attr
                    for t in targets
                    if isinstance(t, (ast.Name, ast.Attribute))
                ]
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names = [node.id]
            for n in names:
                if _is_private(n):
                    defined.setdefault(n, set()).add(_room(module))
    out = []
    for path, (module, tree) in trees.items():
        room = _room(module)
        where = f"{path.relative_to(package.parent)}"
        aliases = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                target = _resolve(module, path.name == "__init__.py", node)
                for a in node.names:
                    aliases[a.asname or a.name] = f"{target}.{a.name}"
                    if _is_private(a.name) and target.startswith("taskleak") and _room(target) != room:
                        out.append(f"{where}:{node.lineno}: from {target} import {a.name}")
            elif isinstance(node, ast.Import):
                for a in node.names:
                    aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Attribute) and _is_private(node.attr)):
                continue
            owner = aliases.get(node.value.id) if isinstance(node.value, ast.Name) else None
            if owner is not None and owner.startswith("taskleak.") and _room(owner) != room:
                out.append(f"{where}:{node.lineno}: {node.value.id}.{node.attr} of {owner}")
            elif node.attr in defined and room not in defined[node.attr] and node.attr not in _FOREIGN_PRIVATE:
                out.append(f"{where}:{node.lineno}: .{node.attr}, private to {sorted(defined[node.attr])}")
    return out


def test_no_module_takes_a_private_name_from_another_subpackage():
    assert private_crossings(PACKAGE) == []


@pytest.mark.parametrize(
    "module, line, expected",
    [
        ("monitor/monitor.py", "from ..model.snapshot import _Shared", "from taskleak.model.snapshot import _Shared"),
        (
            "live/task_groups.py",
            "from ..tracking import installer as inst\nX = inst._adopted_loops",
            "inst._adopted_loops of taskleak.tracking.installer",
        ),
        ("report/dump.py", "def f(snap):\n    return snap._index_groups()", "._index_groups, private to ['model']"),
    ],
)
def test_a_private_crossing_is_found(tmp_path, module, line, expected):
    copy = tmp_path / "taskleak"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    if "_index_groups" in line:  # a private method of the model, as renderers once used
        snap = copy / "model" / "snapshot.py"
        snap.write_text(snap.read_text() + "\n\ndef _index_groups():\n    pass\n")
    target = copy / module
    target.write_text(target.read_text() + "\n" + line + "\n")
    found = private_crossings(copy)
    assert len(found) == 1 and expected in found[0], found
