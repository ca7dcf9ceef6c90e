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

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def paused(*, long_lived: bool) -> Iterator[None]:
    """The collector paused while a block makes millions of containers (recovery, the
    snapshot): each pass would only walk the growing heap again, seconds for a million
    sessions. ``long_lived``: what the block made lives on, so at its end every tracked object
    goes straight to the oldest generation (freeze, then unfreeze), and the next young
    collection does not walk them all once more (~1 s for a million); the daemon freezes them
    there after start-up."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if long_lived:
            gc.freeze()  # every tracked object to the permanent generation, none collected...
            gc.unfreeze()  # ...then all of them to the oldest one
        if collecting:
            gc.enable()


def settle() -> None:
    """Collect the young and middle generations, then freeze everything."""
    gc.collect(1)
    gc.freeze()


def frozen() -> int:
    return gc.get_freeze_count()
