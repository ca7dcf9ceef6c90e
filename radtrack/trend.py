"""The last hour of the live state, for the dashboard's plots (issue #17): sessions online, in
total and per NAS, and how many came online and went offline, sampled on a timer.

A sample is taken every ``interval`` seconds on the ingest loop (``run``), from what the live
state counts anyway (``len(index)``, ``index.per_nas``, the accountant's ``sessions_opened`` and
``sessions_closed``): nothing is added to the packet path. Samples go into a ring of an hour's
worth (``deque(maxlen=...)``), each holding at most ``top`` NASes, the ones with the most
sessions then, and the rest as one "other" count: the memory is bounded whatever the number of
NASes (a few hundred bytes per sample, 360 samples at the default 10 s).

The API reads it from its own thread (radtrack/api/thread.py): ``read`` copies the ring
(``list(deque)`` runs in C, under the GIL: atomic) and adds a sample of the moment, so that a
page sees a Start that arrived a second ago. Samples are immutable.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from radtrack.store.index import SessionIndex

SPAN = 3600.0  # seconds of samples kept
TOP_NASES = 8  # NASes kept by name per sample; the others are summed
# points per series that ``series`` gives at most: a shorter interval than the default 10 s
# merges samples instead of making each read cost more (~6 ms of the API thread at 360)
MAX_POINTS = 361


class Counts(Protocol):
    """What the accountant counts (radtrack.accounting.Accountant)."""

    @property
    def sessions_opened(self) -> int: ...
    @property
    def sessions_closed(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Sample:
    at: float  # POSIX seconds
    online: int
    opened: int  # sessions that came online since the sample before
    closed: int  # sessions that went offline since the sample before
    opened_total: int  # the accountant's counts when it was taken
    closed_total: int
    by_nas: tuple[tuple[str, int], ...]  # the NASes with most sessions online, most first
    other: int  # sessions online on the NASes not in by_nas


class SessionTrend:
    """The ring of samples; ``sample`` and ``run`` on the ingest loop, ``read`` anywhere."""

    def __init__(
        self,
        index: SessionIndex,
        counts: Counts,
        interval: float = 10.0,
        *,
        span: float = SPAN,
        top: int = TOP_NASES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.index = index
        self.counts = counts
        self.interval = interval
        self.top = top
        self.clock = clock
        self.samples: deque[Sample] = deque(maxlen=max(1, round(span / interval)))

    def take(self, now: float) -> Sample:
        """A sample of the live state at ``now``, against the last one kept (not kept)."""
        samples = self.samples
        last = samples[-1] if samples else None
        opened, closed = self.counts.sessions_opened, self.counts.sessions_closed
        per_nas = dict(self.index.per_nas)  # a copy in C: atomic from another thread
        online = sum(per_nas.values())
        top = sorted(per_nas.items(), key=_most_first)[: self.top]
        return Sample(
            at=now,
            online=online,
            opened=opened - last.opened_total if last else opened,
            closed=closed - last.closed_total if last else closed,
            opened_total=opened,
            closed_total=closed,
            by_nas=tuple(top),
            other=online - sum(count for _, count in top),
        )

    def sample(self, now: float | None = None) -> Sample:
        """Take a sample and keep it (the ingest loop: the counts change there)."""
        taken = self.take(self.clock() if now is None else now)
        self.samples.append(taken)
        return taken

    async def run(self) -> None:
        """A sample now, then one every ``interval`` seconds, until cancelled."""
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            self.sample()
            due += self.interval
            await asyncio.sleep(max(0.0, due - loop.time()))

    def read(self, now: float | None = None) -> list[Sample]:
        """The samples kept, oldest first, and one of ``now`` (from any thread)."""
        kept = list(self.samples)
        return [*kept, self.take(self.clock() if now is None else now)]


def _most_first(item: tuple[str, int]) -> tuple[int, str]:
    return (-item[1], item[0])


def merged(samples: Sequence[Sample], max_points: int = MAX_POINTS) -> Sequence[Sample]:
    """At most ``max_points`` samples: runs of consecutive ones, counted back from the last,
    merged into their last one, with the sessions opened and closed in the run summed."""
    if len(samples) <= max_points:
        return samples
    run = -(-len(samples) // max_points)
    out = []
    for end in range(len(samples), 0, -run):
        group = samples[max(0, end - run) : end]
        opened = sum(sample.opened for sample in group)
        closed = sum(sample.closed for sample in group)
        out.append(replace(group[-1], opened=opened, closed=closed))
    out.reverse()
    return out


def series(
    samples: Sequence[Sample],
    interval: float,
    top: int = TOP_NASES,
    max_points: int = MAX_POINTS,
) -> dict[str, Any]:
    """The samples as columns, the way plots take them: one list per value, and one per NAS
    among the ``top`` of the last sample (None where that NAS was among the others then and its
    count is not known); ``other`` is the rest of each sample's sessions; at most
    ``max_points`` of each (``merged``). Keys in snake_case, for the GraphQL ``SessionTrend``
    type."""
    samples = merged(samples, max_points)
    names = [name for name, _ in samples[-1].by_nas[:top]] if samples else []
    by_nas: dict[str, list[int | None]] = {name: [] for name in names}
    other: list[int] = []
    for sample in samples:
        counts = dict(sample.by_nas)
        shown = 0
        for name in names:
            count = counts.get(name)
            if count is None and not sample.other:
                count = 0  # every NAS of the sample is named: this one had no session
            by_nas[name].append(count)
            shown += count or 0
        other.append(sample.online - shown)
    return {
        "interval": interval,
        "times": [sample.at for sample in samples],
        "online": [sample.online for sample in samples],
        "opened": [sample.opened for sample in samples],
        "closed": [sample.closed for sample in samples],
        "by_nas": [{"nas_name": name, "online": by_nas[name]} for name in names],
        "other": other,
    }
