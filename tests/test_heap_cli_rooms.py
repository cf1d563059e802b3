"""heap/ and cli/ share only public names: no module there takes a private
(``_x``) name from another module of the package, sibling or not. The one
door that is private by name is ``from .. import _core``, the C++ layer."""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "src" / "taskleak"


def _private_imports(path: pathlib.Path) -> list:
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.ImportFrom):
            continue
        inside = node.level > 0 or (node.module or "").split(".")[0] == "taskleak"
        if not inside:
            continue  # the standard library's privates are not the package's doors
        module = "." * node.level + (node.module or "")
        if any(part.startswith("_") for part in (node.module or "").split(".") if part):
            out.append(f"{path.name}:{node.lineno} from {module}")
        out += [
            f"{path.name}:{node.lineno} {a.name} from {module}"
            for a in node.names
            if a.name.startswith("_") and a.name != "_core"
        ]
    return out


@pytest.mark.parametrize("room", ["heap", "cli"])
def test_no_private_name_crosses_a_module_boundary(room):
    files = sorted((PACKAGE / room).glob("*.py"))
    assert len(files) > 3
    assert [hit for f in files for hit in _private_imports(f)] == []


def test_the_scan_sees_a_private_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from .index import _rank, HeapIndex\nfrom .. import _core\nfrom os import _exit\n")
    assert _private_imports(bad) == ["bad.py:1 _rank from .index"]
