"""The duplicate-detection cache of RFC 5080 §2.2.2.

Keyed by (source address, source port, Identifier, Request Authenticator). A duplicate of a
packet still being written is dropped (the reply will follow the commit); a duplicate of an
answered one gets the same reply again without touching the store. Bounded in size; entries live
``ttl`` seconds after they were answered.

Every packet costs a lookup, a begin and an answer here, so the structure is plain: one dict from
key to IN_FLIGHT or (expiry, reply), and two deques of expiries and keys in the order replies
were answered (which is expiry order: the ttl is the same for all) to drop them from the front
(two deques rather than one of (expiry, key) tuples: no tuple per answer for the GC to track).
"""

from __future__ import annotations

from collections import deque
from typing import Final

Key = tuple[str, int, int, bytes]


class _InFlight:
    def __repr__(self) -> str:
        return "IN_FLIGHT"


IN_FLIGHT: Final = _InFlight()
SWEEP_EVERY = 64  # answers between two sweeps of expired entries


class ResponseCache:
    def __init__(self, ttl: float = 30.0, capacity: int = 200_000) -> None:
        self.ttl = ttl
        self.capacity = capacity
        self._entries: dict[Key, tuple[float, bytes] | _InFlight] = {}
        # the expiry and key of each answer, oldest first; an entry replaced or forgotten since
        # leaves a record here that the sweep skips (its expiry no longer matches)
        self._expiries: deque[float] = deque()
        self._keys: deque[Key] = deque()
        self._answers = 0

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, key: Key, now: float) -> bytes | _InFlight | None:
        entry = self._entries.get(key)
        if entry is None or entry is IN_FLIGHT:
            return entry
        expiry, reply = entry  # type: ignore[misc]
        if expiry < now:
            del self._entries[key]
            return None
        return reply

    def begin(self, key: Key, now: float) -> None:
        """The packet is accepted and being written."""
        entries = self._entries
        entries[key] = IN_FLIGHT
        if len(entries) > self.capacity:
            self._evict(now)

    def answer(self, key: Key, reply: bytes, now: float) -> None:
        """The packet is committed and answered: replay ``reply`` to its duplicates."""
        expiry = now + self.ttl
        entries = self._entries
        entries[key] = (expiry, reply)
        self._expiries.append(expiry)
        self._keys.append(key)
        self._answers += 1
        if len(entries) > self.capacity or not self._answers % SWEEP_EVERY:
            self._evict(now)

    def forget(self, key: Key) -> None:
        """The write failed: a retransmission must be processed again."""
        self._entries.pop(key, None)

    def _evict(self, now: float) -> None:
        """Drop expired answers (lookup ignores them meanwhile), then the oldest answers while
        over capacity. Packets in flight stay: the writer's queue bounds them."""
        entries = self._entries
        expiries = self._expiries
        keys = self._keys
        while expiries:
            expiry = expiries[0]
            if expiry >= now and len(entries) <= self.capacity:
                break
            expiries.popleft()
            key = keys.popleft()
            entry = entries.get(key)
            if entry is not None and entry is not IN_FLIGHT and entry[0] == expiry:  # type: ignore[index]
                del entries[key]
