"""Timing helpers shared by the bench scripts (imported as a sibling module:
`python bench/bench_x.py` puts bench/ first on sys.path)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def timed(fn: Callable[[], Any], repeats: int) -> list[float]:
    """Wall seconds of `repeats` calls of `fn`, one per call."""
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def ms(xs: list[float]) -> str:
    """Median of seconds `xs` in ms, with the spread."""
    return f"{statistics.median(xs) * 1e3:9.2f} ms (min {min(xs) * 1e3:.2f}, max {max(xs) * 1e3:.2f})"
