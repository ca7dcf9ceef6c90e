"""Values that many sessions hold alike, kept as one object for them all (memory: a million
sessions live in memory, docs/performance.md; bench/memory_fields.py counts the bytes).

Origin and Ending are parts of a Session (model.py) that are equal across most sessions and that
no Interim-Update reads; SharedValues is the accounting core's table of strings and times.
"""

from __future__ import annotations

from typing import Generic, NamedTuple, TypeVar

_T = TypeVar("_T")
_new_tuple = tuple.__new__  # a NamedTuple from a tuple in C (its own __new__ is Python code)


class SharedValues(Generic[_T]):
    """Equal values that many sessions hold (Called-Station-Id, NAS-Port-Id, start times...)
    kept as one object: a direct-mapped table of the values seen last, ``slots`` of them (a
    power of 2). Bounded, with no bookkeeping: a value whose slot another one took is simply
    not shared."""

    def __init__(self, slots: int) -> None:
        self._table: list[_T | None] = [None] * slots
        self._mask = slots - 1

    def share(self, value: _T) -> _T:
        slot = hash(value) & self._mask
        known = self._table[slot]
        if known == value:
            return known
        self._table[slot] = value
        return value


class Origin(NamedTuple):
    """How a session began: the name and address of its NAS, the Connect-Info of its Start and
    whether that Start arrived. Most sessions of a NAS have the same, so they share one object
    (origin_of) instead of four slots each. Where Connect-Info differs per session, each has an
    Origin of its own, 48 bytes more than the four slots were."""

    nas_name: str
    nas_ip: str
    connect_info_start: str | None
    start_seen: bool


_ORIGINS: dict[tuple[object, ...], Origin] = {}


def origin_of(
    nas_name: str, nas_ip: str, connect_info_start: str | None, start_seen: bool
) -> Origin:
    """The Origin of these values that sessions share (a new one, the first time)."""
    fields = (nas_name, nas_ip, connect_info_start, start_seen)
    shared = _ORIGINS.get(fields)  # a tuple equals the Origin of the same fields
    if shared is None:
        shared = _new_tuple(Origin, fields)
        if len(_ORIGINS) < 65_536:  # a Connect-Info per session: never grow without bound
            _ORIGINS[fields] = shared
    return shared


class Ending(NamedTuple):
    """How a session ends: why radtrack closed it (close_reason), the NAS's
    Acct-Terminate-Cause, and whether a Disconnect-Request for it was acknowledged (its Stop is
    awaited). None, None and False while most sessions are online, and few values after, so
    sessions share one object (ending_of) instead of three slots each.

    With both, a Session has 24 slots instead of 29: 224 bytes with its GC header instead of
    272 (bench/memory_fields.py)."""

    close_reason: str | None
    terminate_cause: str | None
    disconnecting: bool


_ENDINGS: dict[tuple[object, ...], Ending] = {}


def ending_of(close_reason: str | None, terminate_cause: str | None, disconnecting: bool) -> Ending:
    """The Ending of these values that sessions share (a new one, the first time)."""
    fields = (close_reason, terminate_cause, disconnecting)
    shared = _ENDINGS.get(fields)  # a tuple equals the Ending of the same fields
    if shared is None:
        shared = _new_tuple(Ending, fields)
        if len(_ENDINGS) < 4_096:  # a NAS sending made-up causes: never grow without bound
            _ENDINGS[fields] = shared
    return shared


NOT_ENDED = ending_of(None, None, False)  # a session online, no Disconnect-Request acknowledged
