"""``taskleak.Detector``: the pure leak detector (a thin wrapper over the C++
``WindowDetector``, ``src/core/monitor/window_detector.cpp``).

Feed it one value per sample; it answers ``None`` or, when an episode
starts, an :class:`Anomaly`. The rules are in docs/monitoring.md ("How the
detector decides").
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import taskleak._core as _core

__all__ = ["Anomaly", "Detector"]


@dataclass(frozen=True)
class Anomaly:
    """Why a detector fired.

    ``kind`` is ``"spike"`` (above ``mean + sigma * stddev`` of the trailing
    window for ``consecutive`` samples) or ``"trend"`` (a significant rise
    of the low-water mark across windows). ``threshold`` is the level the
    value had to clear; ``samples`` how many samples the verdict rests on.
    """

    kind: str
    value: float
    mean: float
    stddev: float
    threshold: float
    slope_per_sample: float
    samples: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "value": self.value,
            "mean": self.mean,
            "stddev": self.stddev,
            "threshold": self.threshold,
            "slope_per_sample": self.slope_per_sample,
            "samples": self.samples,
        }


def _int(name: str, v: Any, lo: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ValueError(f"{name} must be an int >= {lo}, got {v!r}")
    return v


def _num(name: str, v: Any, positive: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0 or (positive and v == 0):
        raise ValueError(f"{name} must be a {'positive' if positive else 'non-negative'} number, got {v!r}")
    return float(v)


class Detector:
    """Sliding-window leak detector for one series (task counts, RSS...).

    ``window`` samples form the spike baseline and one trend block;
    ``sigma`` and ``consecutive`` are the seed's rule. ``min_stddev`` floors
    the baseline's stddev, ``min_rise`` / ``min_rise_ratio`` are the least
    absolute / relative rise over the baseline that can alert (so 50 -> 51
    on a flat line is quiet). ``trend_z`` is the Mann-Kendall z the trend
    test needs over at least ``trend_blocks`` windows; ``horizon`` samples
    of history are remembered (a day at 10 s by default), so a cycle shorter
    than the horizon is learned after its first period. ``warmup`` baseline
    samples are needed before the spike rule runs.

    One alert per episode: after an alert nothing fires until the series is
    level again, and then the new level is the baseline. Bad arguments raise
    ValueError; ``update()`` ignores NaN and infinities.
    """

    def __init__(
        self,
        window: int = 30,
        sigma: float = 2.0,
        consecutive: int = 3,
        *,
        min_stddev: float = 1.0,
        min_rise: float = 5.0,
        min_rise_ratio: float = 0.05,
        trend_z: float = 2.5,
        trend_blocks: int = 6,
        horizon: int = 8640,
        warmup: int | None = None,
    ) -> None:
        window = _int("window", window, 3)
        consecutive = _int("consecutive", consecutive, 1)
        if consecutive > window:
            raise ValueError(f"consecutive ({consecutive}) must not exceed window ({window})")
        trend_blocks = _int("trend_blocks", trend_blocks, 3)
        horizon = _int("horizon", horizon, 1)
        if horizon < window * trend_blocks:
            raise ValueError(
                f"horizon ({horizon}) must hold at least trend_blocks * window = {window * trend_blocks} samples"
            )
        if warmup is None:
            warmup = window
        warmup = _int("warmup", warmup, 2)
        if warmup > window:
            raise ValueError(f"warmup ({warmup}) must not exceed window ({window})")
        self.window, self.consecutive, self.horizon = window, consecutive, horizon
        self.sigma = _num("sigma", sigma, positive=True)
        self._core = _core.WindowDetector(
            window=window,
            sigma=self.sigma,
            consecutive=consecutive,
            min_stddev=_num("min_stddev", min_stddev),
            min_rise=_num("min_rise", min_rise),
            min_rise_ratio=_num("min_rise_ratio", min_rise_ratio),
            trend_z=_num("trend_z", trend_z, positive=True),
            trend_blocks=trend_blocks,
            horizon=horizon,
            warmup=warmup,
        )

    def update(self, value: float) -> Anomaly | None:
        """Add one sample; an :class:`Anomaly` if an episode starts here."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"Detector.update() takes a number, got {type(value).__name__}")
        r = self._core.update(float(value))
        return None if r is None else Anomaly(*r)

    def feed(self, values: Iterable[float]) -> list[tuple[int, Anomaly]]:
        """Feed a whole series; ``(index, anomaly)`` for every alert."""
        return [(i, Anomaly(*a)) for i, a in self._core.update_many([float(v) for v in values])]

    @property
    def in_episode(self) -> bool:
        """True from an alert until the series is level again."""
        return self._core.in_episode

    @property
    def episode_kind(self) -> str | None:
        return self._core.episode_kind

    @property
    def alerts(self) -> int:
        return self._core.alerts

    @property
    def count(self) -> int:
        """Samples fed so far."""
        return self._core.count

    def reset(self) -> None:
        self._core.reset()

    def __repr__(self) -> str:
        return (
            f"Detector(window={self.window}, sigma={self.sigma}, consecutive={self.consecutive}, "
            f"samples={self.count}, alerts={self.alerts}, in_episode={self.in_episode})"
        )
