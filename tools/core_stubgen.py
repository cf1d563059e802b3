"""Print nanobind stubgen's draft of taskleak._core, to compare with src/taskleak/_core.pyi.

    .venv/py3.11/bin/python tools/core_stubgen.py > /tmp/_core.pyi   # after `make install`
    diff /tmp/_core.pyi src/taskleak/_core.pyi

The committed stub is the draft improved by hand (row shapes, callbacks,
one-line docs), so it is never overwritten by this; tests/test_core_stub.py
checks its names and parameter lists against the built module.

stubgen (nanobind 2.x) stops on FastCreateTask: that type's ``__doc__`` is a
descriptor (each instance forwards the doc of the method it stands in for),
so the class has no doc string of its own. Such docs are skipped here.
"""

import sys
import tempfile
from pathlib import Path

from nanobind import stubgen


def main() -> None:
    put_docstr = stubgen.StubGen.put_docstr

    def put_text_docstr(self: stubgen.StubGen, docstr: object) -> None:
        if isinstance(docstr, str):
            put_docstr(self, docstr)

    stubgen.StubGen.put_docstr = put_text_docstr  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "_core.pyi"
        sys.argv = ["stubgen", "-q", "-m", "taskleak._core", "-o", str(out)]
        stubgen.main()
        sys.stdout.write(out.read_text())


if __name__ == "__main__":
    main()
