"""Tasks lost to the collector or with their exception never retrieved,
watched per creation site: a leak by definition, whatever the load.

A pending task destroyed by the garbage collector ("Task was destroyed but it
is pending!") or a failed task nobody awaited ("Task exception was never
retrieved") is not a matter of degree, so this is no statistical detector: a
site that loses ``min_lost`` tasks within ``window`` samples opens an episode
(one alert); the episode closes once the site has lost none for a whole
window. The time constants are in samples, like every detector's. Tasks
cancelled at loop shutdown are left out: they are reported at exit, and a
service that stops is not paged for it.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..frame import site_frame
from ..tracking.loss_events import LossEvent

__all__ = ["LostTasks", "LostSite", "RUNNING_LOSSES"]

#: The loss kinds of a running service (tracking's names).
RUNNING_LOSSES = ("destroyed-pending", "never-retrieved")


@dataclass
class LostSite:
    """One creation site's recent losses."""

    site: str
    coro: str
    per_sample: collections.deque[int]
    example: LossEvent
    in_episode: bool = False
    kinds: dict[str, int] = field(default_factory=dict)

    @property
    def recent(self) -> int:
        return sum(self.per_sample)


def site_of(event: LossEvent) -> str:
    """``file:line in function`` of the event's creation site, as the
    monitor names a group's site."""
    frames = event.created_at
    if not frames:
        return "creation site unknown"
    return site_frame(frames).short()


class LostTasks:
    """Feeds on each sample's new loss events; returns the sites whose
    episode opens at this sample."""

    def __init__(self, window: int, min_lost: int = 3, max_sites: int = 1000) -> None:
        self.window = window
        self.min_lost = min_lost
        self.max_sites = max_sites
        self.sites: dict[str, LostSite] = {}

    @property
    def in_episode(self) -> bool:
        return any(s.in_episode for s in self.sites.values())

    def update(self, events: Iterable[LossEvent]) -> list[LostSite]:
        new: dict[str, list[LossEvent]] = {}
        for e in events:
            if e.kind in RUNNING_LOSSES:
                new.setdefault(f"{site_of(e)} ({e.coro})", []).append(e)
        opened: list[LostSite] = []
        for key, evs in new.items():
            s = self.sites.get(key)
            if s is None:
                if len(self.sites) >= self.max_sites:
                    self._forget_quiet()
                s = self.sites[key] = LostSite(
                    site_of(evs[0]), evs[0].coro, collections.deque([0] * self.window, maxlen=self.window), evs[-1]
                )
            s.example = evs[-1]
            for e in evs:
                s.kinds[e.kind] = s.kinds.get(e.kind, 0) + 1
        for key, s in list(self.sites.items()):
            s.per_sample.append(len(new.get(key, ())))
            if not s.in_episode and s.recent >= self.min_lost:
                s.in_episode = True
                opened.append(s)
            elif s.in_episode and s.recent == 0:
                s.in_episode = False
            elif not s.in_episode and s.recent == 0 and key not in new:
                del self.sites[key]  # quiet for a whole window: forgotten
        return opened

    def _forget_quiet(self) -> None:
        quiet = [k for k, s in self.sites.items() if not s.in_episode]
        for k in quiet[: max(1, len(quiet) // 2)]:
            del self.sites[k]

    def first_open(self) -> LostSite | None:
        return next((s for s in self.sites.values() if s.in_episode), None)
