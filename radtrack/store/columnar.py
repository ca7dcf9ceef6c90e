"""The snapshot's payload (store/snapshot.py): sessions and users as column lists in marshal.

The values sessions share (ports, callers, Class, start times, and through them equal last
update and stop times) are interned here as recovery.py interns them from the table, and marshal
writes an object that repeats as a reference to the first: they come back shared, with no
lookups. The columns that hold one value per session go without references (marshal version 2:
no table of every object written, faster both ways). The grouped columns (recovery._GROUPED) are
a table of their distinct combinations and an index into it per session. Every column is checked
to hold only the types the table gives back, so a snapshot start equals a table start.
"""

from __future__ import annotations

import marshal
from collections.abc import Sequence
from typing import Any

from radtrack.model import Session, User
from radtrack.store import recovery


class Unencodable(ValueError):
    """A value the table would not give back as it is (a type no column holds)."""


# Columns as Session holds them, each checked to hold only the types the table gives back
_TEXT = frozenset({str, type(None)})
_INTEGER = frozenset({int, type(None)})
_REAL = frozenset({float, type(None)})
_APART = {
    "id": _TEXT,
    "session_id": _TEXT,
    "class_hex": _TEXT,
    "user_name": _TEXT,
    "user_id": _INTEGER,
    "nas_port_id": _TEXT,
    "calling_station_id": _TEXT,
    "framed_ip": _TEXT,
    "start_time": _REAL,
    "last_update": _REAL,
    "stop_time": _REAL,
    "input_octets": _INTEGER,
    "output_octets": _INTEGER,
    "input_packets": _INTEGER,
    "output_packets": _INTEGER,
    "session_time": _INTEGER,
}
# one object per distinct value: as recovery.py shares them, and the user names and ids, which
# SessionIndex.add_online shares between a user's sessions anyway (decoded apart, the copies it
# drops would be holes, ~40 bytes a session, among the sessions that live on)
_SHARED = ("class_hex", "nas_port_id", "calling_station_id", "user_name", "user_id")
_REFERENCED = frozenset({*_SHARED, "start_time", "last_update", "stop_time"})


def _plain(value: Any) -> Any:
    """A value of a grouped column as the table gives it back (a StrEnum: its str)."""
    if value is None or type(value) in (str, int):
        return value
    if isinstance(value, str):
        return str.__str__(value)
    raise Unencodable(f"a grouped column holds a {type(value).__name__}")


_GROUPED = ("nas_key", "nas_port_type", "called_station_id", "interim_interval", "ending", "origin")
_CHUNK = 4096  # sessions per pass: one walk over each, while they are in the CPU cache


def _fields(s: Session) -> tuple[Any, ...]:
    """The values of _APART, then _GROUPED, of one session. Python code that names each slot:
    Python 3.11 specializes a slot's load in a function (operator.attrgetter: twice the time)."""
    return (
        s.id,
        s.session_id,
        s.class_hex,
        s.user_name,
        s.user_id,
        s.nas_port_id,
        s.calling_station_id,
        s.framed_ip,
        s.start_time,
        s.last_update,
        s.stop_time,
        s.input_octets,
        s.output_octets,
        s.input_packets,
        s.output_packets,
        s.session_time,
        s.nas_key,
        s.nas_port_type,
        s.called_station_id,
        s.interim_interval,
        s.ending,
        s.origin,
    )


def _columns(sessions: Sequence[Session]) -> dict[str, list[Any]]:
    """Every column of _APART and _GROUPED, in one walk over the sessions (a walk per column
    takes each session out of the CPU's cache once per column: twice the time)."""
    names = (*_APART, *_GROUPED)
    columns: list[list[Any]] = [[] for _ in names]
    for at in range(0, len(sessions), _CHUNK):
        chunk = zip(*map(_fields, sessions[at : at + _CHUNK]), strict=True)
        for column, values in zip(columns, chunk, strict=True):
            column.extend(values)
    found = dict(zip(names, columns, strict=True))
    for name, allowed in _APART.items():
        types = set(map(type, found[name]))
        if types <= allowed:
            continue
        if allowed is _REAL and types <= {int, float, type(None)}:  # REAL affinity: floats
            found[name] = [None if v is None else float(v) for v in found[name]]
        else:
            raise Unencodable(f"column {name} holds {sorted(t.__name__ for t in types)}")
    return found


def encode(sessions: Sequence[Session], users: Sequence[User]) -> bytes:
    """The payload: column lists, equal values as one object where recovery shares them."""
    columns = _columns(sessions)
    for name in _SHARED:
        seen: dict[Any, Any] = {None: None}
        columns[name] = list(map(seen.setdefault, columns[name], columns[name]))
    starts: dict[float, float] = {}
    start = columns["start_time"] = list(map(starts.setdefault, *[columns["start_time"]] * 2))
    last = columns["last_update"] = [
        s if u == s else u for s, u in zip(start, columns["last_update"], strict=True)
    ]
    columns["stop_time"] = [
        u if t is not None and t == u else t
        for u, t in zip(last, columns["stop_time"], strict=True)
    ]
    # the grouped columns (recovery._GROUPED): a table of their distinct combinations and
    # an index into it per session
    keys = list(zip(*map(columns.pop, _GROUPED), strict=True))
    index = dict.fromkeys(keys, 0)
    for at, key in enumerate(index):
        index[key] = at
    group = list(map(index.__getitem__, keys))
    del keys
    groups = []
    for nas_key, port_type, called, interval, ending, origin in index:
        fields = (nas_key, port_type, called, interval, ending.close_reason)
        fields += (ending.terminate_cause, *origin[:3])  # disconnecting: not stored
        groups.append((*map(_plain, fields), bool(origin.start_seen)))
    rows = [(u.user_id, u.username, u.reseller_id, u.max_sessions) for u in users]
    # the columns that share objects with references (marshal version 4), the others without
    # (version 2: no table of every object written, a third faster both ways)
    shared = [columns[name] for name in _APART if name in _REFERENCED]
    apart = [columns[name] for name in _APART if name not in _REFERENCED]
    try:
        parts = [marshal.dumps((shared, groups, rows), 4), marshal.dumps((apart, group), 2)]
    except ValueError as exc:  # a subclass of a type marshal takes (a value no row holds)
        raise Unencodable(f"cannot encode: {exc}") from None
    return len(parts[0]).to_bytes(8, "little") + parts[0] + parts[1]


def decode(payload: bytes | memoryview) -> tuple[list[Session], list[User]]:
    """Sessions and users from a payload of ``encode``."""
    split = 8 + int.from_bytes(payload[:8], "little")
    shared, groups, rows = marshal.loads(payload[8:split])
    apart, group = marshal.loads(payload[split:])
    if len(shared) != len(_REFERENCED) or len(shared) + len(apart) != len(_APART):
        raise ValueError("not the columns of this layout")
    shared_columns, apart_columns = iter(shared), iter(apart)
    columns = [next(shared_columns if n in _REFERENCED else apart_columns) for n in _APART]
    values: dict[Any, Any] = {}
    table = [recovery.grouped(fields, values.setdefault) for fields in groups]
    # the slots set as recovery._Shared.sessions sets them (tests/test_snapshot*.py compare a
    # snapshot start with a table start slot by slot)
    new = Session.__new__
    sessions: list[Session] = []
    append = sessions.append
    for (
        at,
        id_,
        session_id,
        class_hex,
        user_name,
        user_id,
        nas_port_id,
        calling_station_id,
        framed_ip,
        start_time,
        last_update,
        stop_time,
        input_octets,
        output_octets,
        input_packets,
        output_packets,
        session_time,
    ) in zip(group, *columns, strict=True):
        session = new(Session)
        (
            session.nas_key,
            session.nas_port_type,
            session.called_station_id,
            session.interim_interval,
            session.ending,
            session.origin,
        ) = table[at]
        session.id = id_
        session.session_id = session_id
        session.class_hex = class_hex
        session.user_name = user_name
        session.user_id = user_id
        session.nas_port_id = nas_port_id
        session.calling_station_id = calling_station_id
        session.framed_ip = framed_ip
        session.start_time = start_time
        session.last_update = last_update
        session.stop_time = stop_time
        session.input_octets = input_octets
        session.output_octets = output_octets
        session.input_packets = input_packets
        session.output_packets = output_packets
        session.session_time = session_time
        session.last_seen = last_update  # Accountant.restore sets the start-up time
        session.next_of_user = None
        append(session)
    return sessions, [User(*row) for row in rows]
