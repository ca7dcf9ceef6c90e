"""The cyclic garbage collector in a process that holds up to millions of long-lived sessions.

Sessions are made all day long by ingest, and the collector tracks each of them: every full
collection scans them all again while holding the GIL, which stops ingest and the API alike
(1,000,000 sessions: ~0.4 s a full collection, measured with the model's Session objects).
Start-up froze only what recovery loaded. So each maintenance round (``Daemon``, every 5 s)
calls ``settle``: a collection of what is not frozen yet, which is what was made since the
last round (a few ms), and then a freeze of what survived it. Long-lived objects leave the
collector's sight within seconds; young garbage is still collected as before.

The price: an object frozen here that later becomes garbage in a reference *cycle* is never
freed. Sessions do not form cycles (reference counting frees them); a connection's objects
may. ``radtrack_gc_frozen_objects`` shows the frozen count, which follows the sessions online:
a steady climb beside a flat session count would be such a leak.
"""

from __future__ import annotations

import gc


def settle() -> None:
    """Collect everything not frozen, then freeze the survivors."""
    gc.collect()
    gc.freeze()


def frozen() -> int:
    return gc.get_freeze_count()
