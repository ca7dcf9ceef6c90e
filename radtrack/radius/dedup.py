"""The duplicate-detection cache of RFC 5080 §2.2.2.

Keyed by (source address, source port, Identifier, Request Authenticator). A duplicate of a
packet still being written is dropped (the reply will follow the commit); a duplicate of an
answered one gets the same reply again without touching the store. Bounded in size; entries live
``ttl`` seconds after they were answered.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final

Key = tuple[str, int, int, bytes]


class _InFlight:
    def __repr__(self) -> str:
        return "IN_FLIGHT"


IN_FLIGHT: Final = _InFlight()


class ResponseCache:
    def __init__(self, ttl: float = 30.0, capacity: int = 200_000) -> None:
        self.ttl = ttl
        self.capacity = capacity
        # key -> (expiry, reply or IN_FLIGHT); insertion order is expiry order
        self._entries: OrderedDict[Key, tuple[float, bytes | _InFlight]] = OrderedDict()
        self._writes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, key: Key, now: float) -> bytes | _InFlight | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expiry, value = entry
        if value is not IN_FLIGHT and expiry < now:
            del self._entries[key]
            return None
        return value

    def begin(self, key: Key, now: float) -> None:
        """The packet is accepted and being written."""
        self._entries[key] = (now + self.ttl, IN_FLIGHT)
        self._entries.move_to_end(key)
        self._maybe_evict(now)

    def answer(self, key: Key, reply: bytes, now: float) -> None:
        """The packet is committed and answered: replay ``reply`` to its duplicates."""
        self._entries[key] = (now + self.ttl, reply)
        self._entries.move_to_end(key)
        self._maybe_evict(now)

    def forget(self, key: Key) -> None:
        """The write failed: a retransmission must be processed again."""
        self._entries.pop(key, None)

    def _maybe_evict(self, now: float) -> None:
        # expired entries go in sweeps every 64 writes (lookup ignores them meanwhile); the
        # capacity bound holds on every write
        self._writes += 1
        if len(self._entries) > self.capacity or not self._writes & 63:
            self._evict(now)

    def _evict(self, now: float) -> None:
        entries = self._entries
        while entries:
            key, (expiry, value) = next(iter(entries.items()))
            if len(entries) > self.capacity or (expiry < now and value is not IN_FLIGHT):
                entries.popitem(last=False)
            else:
                break
