"""The cyclic garbage collector in a process that holds up to millions of long-lived sessions.

Sessions are made all day long by ingest, and the collector tracks each of them: every full
collection scans them all again while holding the GIL, which stops ingest and the API alike
(1,000,000 sessions: ~0.4 s a full collection, measured with the model's Session objects).
Start-up froze only what recovery loaded. So each maintenance round (``Daemon``, every 5 s)
calls ``settle``: a collection of the young and middle generations (what is at most a few
collections old: a few ms), then a freeze of everything. Long-lived objects leave the
collector's sight within seconds, and no collection ever scans all the sessions again.

Measured at 5,000 packets/s beside 200 queries/s (bench/ab_query.py, a box loaded by other
jobs, thread CPU time): the young and middle collection 0.4-16 ms a round; a full collection
in its place would have scanned the ~25,000-65,000 sessions made since the last round,
23-89 ms, and found no garbage (439 objects once, in the first round after start-up).

The price: an object frozen here that later becomes garbage in a reference *cycle* is never
freed; so would one that was already such garbage, older than two young collections, when
frozen (the measurement above found none). Sessions do not form cycles (reference counting
frees them); a long-lived connection's objects may. ``radtrack_gc_frozen_objects`` shows the
frozen count, which follows the sessions online: a steady climb beside a flat session count
would be such a leak.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import Iterator

# The collector's passes on the ingest loop's thread, checked this often (see pace)
PACE_TICK = 0.025
_pausing = 0  # paused() blocks running now: pace() leaves the collector alone meanwhile


@contextlib.contextmanager
def paused(*, long_lived: bool) -> Iterator[None]:
    """The collector paused while a block makes millions of containers (recovery, the
    snapshot): each pass would only walk the growing heap again, seconds for a million
    sessions. ``long_lived``: what the block made lives on, so at its end every tracked object
    goes straight to the oldest generation (freeze, then unfreeze), and the next young
    collection does not walk them all once more (~1 s for a million); the daemon freezes them
    there after start-up."""
    global _pausing
    collecting = gc.isenabled()
    gc.disable()
    _pausing += 1
    try:
        yield
    finally:
        if long_lived:
            gc.freeze()  # every tracked object to the permanent generation, none collected...
            gc.unfreeze()  # ...then all of them to the oldest one
        _pausing -= 1
        if collecting:
            gc.enable()


def settle() -> None:
    """Collect the young and middle generations, then freeze everything."""
    gc.collect(1)
    gc.freeze()


def frozen() -> int:
    return gc.get_freeze_count()


def due() -> int | None:
    """The generation CPython's automatic collection would collect now, by gc's own counts and
    thresholds (None: none yet): the young one once more containers were made than its
    threshold, the middle one instead once it has seen more young passes than its own. The
    oldest is left to settle() (it holds what a freeze has not taken yet)."""
    young_count, middle_count, _ = gc.get_count()
    young, middle, _ = gc.get_threshold()
    if young_count <= young:
        return None
    return 1 if middle_count > middle else 0


async def pace(tick: float = PACE_TICK) -> None:
    """Run the collector's passes here, on the calling (ingest) loop's thread, and nowhere else:
    automatic collection is off while this runs, and every ``tick`` seconds the pass that is
    due() runs. With automatic collection, a pass runs in whichever thread allocates past the
    threshold, and the API's thread allocates ~200 containers a query: at 5,000 packets/s
    beside 200 queries/s, 51 of 260 young passes (1.3-1.5 ms each) and 14 of 91 middle ones
    (3-9 ms) ran inside a query, and 25 of the 40 queries that took over 3 ms had one
    (docs/performance.md). Here a query waits for a pass only when the two overlap."""
    collecting = gc.isenabled()  # as the process had it (two daemons in one: the first's)
    gc.disable()
    try:
        while True:
            await asyncio.sleep(tick)
            generation = due()
            if generation is not None and not _pausing:
                gc.collect(generation)
    finally:
        if collecting:
            gc.enable()
