# The C++ extension (src/core/, built by CMake). Its functions take and
# return plain Python objects whose shapes are documented at their bindings;
# at this boundary they are Any, and the Python modules above it carry the
# types users see (mypy --strict checks those).
from typing import Any

def __getattr__(name: str) -> Any: ...
