"""Start-up recovery: the live state rebuilt from SQLite (DESIGN.md invariant 3).

A million sessions are rebuilt here (docs/performance.md), so the per-row work is one straight
loop, SQLite hands the columns that repeat across sessions over as one value, and repeated
values (the NAS's, port ids, Calling-Station-Ids, equal timestamps...) become one object each
instead of one per session: most of the memory a session takes is in those objects.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, cast

from radtrack import gcpolicy
from radtrack.model import SESSION_COLUMNS, Session, User
from radtrack.shared import ending_of, origin_of

# Columns that take few distinct values across sessions (the NAS's own, the port type, the
# interval...): SQLite hands them over as one JSON array per row (text, integers and nulls, which
# JSON carries exactly), decoded once per distinct array. Fewer columns to convert per row, and
# one lookup instead of ten. Then two become a Session's ending, the last four its origin.
_GROUPED = (
    "nas_key",
    "nas_port_type",
    "called_station_id",
    "interim_interval",
    "close_reason",
    "terminate_cause",
    "nas_name",
    "nas_ip",
    "connect_info_start",
    "start_seen",
)
# the other columns, in the order _Shared.sessions unpacks them
_APART = (
    "id",
    "session_id",
    "class",
    "user_name",
    "user_id",
    "nas_port_id",
    "calling_station_id",
    "framed_ip",
    "start_time",
    "last_update",
    "stop_time",
    "input_octets",
    "output_octets",
    "input_packets",
    "output_packets",
    "session_time",
)
assert sorted(_APART + _GROUPED) == sorted(SESSION_COLUMNS)
_SELECT = f"SELECT {', '.join(_APART)}, json_array({', '.join(_GROUPED)}) AS grouped FROM sessions"
# without SQLite's JSON functions (built without them, before 3.38): every column as it is
_SELECT_PLAIN = f"SELECT {', '.join(SESSION_COLUMNS)} FROM sessions"


def load_sessions(path: Path, closed_limit: int) -> Iterator[Session]:
    """Every open session, then the ``closed_limit`` most recently closed ones (oldest first),
    which the accounting core keeps so late packets do not reopen them. Blocking.

    The cyclic garbage collector is paused until the last session is out (or the caller stops
    early), then the sessions go straight to its oldest generation (gcpolicy.paused).
    """
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    shared = _Shared()
    try:
        with gcpolicy.paused(long_lived=True):
            conn.execute("BEGIN")  # one snapshot for both queries
            select, build = _SELECT, shared.sessions
            if not _has_json(conn):
                select, build = _SELECT_PLAIN, _one_by_one
            # a sequential scan beats a partial-index walk plus a B-tree lookup per row here
            yield from build(conn.execute(f"{select} NOT INDEXED WHERE stop_time IS NULL"))
            yield from _closed(conn, select, build, closed_limit)
            conn.execute("COMMIT")
    finally:
        conn.close()


def _closed(
    conn: sqlite3.Connection,
    select: str,
    build: Callable[[Iterable[Any]], Iterator[Session]],
    closed_limit: int,
) -> Iterator[Session]:
    if not closed_limit:
        return iter(())
    recent = conn.execute(
        f"SELECT * FROM ({select} WHERE stop_time IS NOT NULL "
        "ORDER BY stop_time DESC LIMIT ?) ORDER BY stop_time",
        (closed_limit,),
    )
    return build(recent)


def load_closed(conn: sqlite3.Connection, closed_limit: int) -> list[Session]:
    """The closed sessions ``load_sessions`` gives after the open ones, read on ``conn`` (the
    snapshot's, inside its transaction: store/snapshot.py)."""
    if _has_json(conn):
        return list(_closed(conn, _SELECT, _Shared().sessions, closed_limit))
    return list(_closed(conn, _SELECT_PLAIN, _one_by_one, closed_limit))


def grouped(values: Sequence[Any], share: Callable[[Any, Any], Any]) -> tuple[Any, ...]:
    """The values of _GROUPED in one row (start_seen last, as stored) as a Session holds them:
    the first four, an Ending and an Origin; each value but start_seen through ``share`` (a
    dict's setdefault: one object per distinct value). The snapshot's groups take it too."""
    one = [share(value, value) for value in values[:-1]]
    origin = origin_of(one[6], one[7], one[8], bool(values[-1]))
    return (*one[:4], ending_of(one[4], one[5], False), origin)


def _has_json(conn: sqlite3.Connection) -> bool:
    try:
        conn.execute("SELECT json_array()")
    except sqlite3.OperationalError:
        return False
    return True


def _one_by_one(rows: Iterable[Any]) -> Iterator[Session]:
    return map(Session.from_row, rows)


class _Shared:
    """One object per distinct value of the columns that repeat, for one recovery.

    A table per kind of value, so that a small, hot one is not spread over a large one. Not
    looked up, as that costs more time than the bytes it saves: user names and ids (a user has
    few sessions: SessionIndex.add_online shares them) and the timestamps other than the start
    time; but last_update and stop_time take the object of an equal start_time or last_update.
    """

    def __init__(self) -> None:
        self.groups: dict[str, tuple[Any, ...]] = {}  # JSON text of _GROUPED -> their values
        self.values: dict[Any, Any] = {}  # the values in those groups (text, int or None)
        # None (a NULL column) maps to itself; as a key that is not a str it also makes these
        # dicts keep each entry's hash beside its key, so that a lookup skips the entries it
        # probes by hash instead of reading their keys (tens of thousands of callers are out
        # of cache): the build loop alone ~5 % faster, not measurable in a whole recovery
        self.ports: dict[Any, Any] = {None: None}
        self.callers: dict[Any, Any] = {None: None}
        self.classes: dict[Any, Any] = {None: None}
        # whole seconds (Event-Timestamp) that sessions started in: 86,400 over 1,000,000
        # sessions in bench/memory.py, 29 bytes a session less
        self.start_times: dict[float, float] = {}

    def group(self, text: str) -> tuple[Any, ...]:
        """The values of _GROUPED in one row, from their JSON array (new to this recovery),
        as a Session holds them: the first four, an Ending and an Origin."""
        values = cast(list[Any], json.loads(text))
        self.groups[text] = found = grouped(values, self.values.setdefault)
        return found

    def sessions(self, rows: Iterable[Any]) -> Iterator[Session]:
        """Sessions from rows of _SELECT (as Session.from_row from the table's rows)."""
        new = Session.__new__
        groups = self.groups.get
        port = self.ports.setdefault
        caller = self.callers.setdefault
        cls = self.classes.setdefault
        start = self.start_times.setdefault
        for (
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
            grouped,
        ) in rows:
            session = new(Session)
            (
                session.nas_key,
                session.nas_port_type,
                session.called_station_id,
                session.interim_interval,
                session.ending,
                session.origin,
            ) = groups(grouped) or self.group(grouped)
            session.id = id_
            session.session_id = session_id
            session.class_hex = class_hex if class_hex is None else cls(class_hex, class_hex)
            session.user_name = user_name
            session.user_id = user_id
            session.nas_port_id = port(nas_port_id, nas_port_id)
            session.calling_station_id = caller(calling_station_id, calling_station_id)
            session.framed_ip = framed_ip
            session.start_time = start_time = start(start_time, start_time)
            if last_update == start_time:
                last_update = start_time
            session.last_update = last_update
            if stop_time is not None and stop_time == last_update:
                stop_time = last_update
            session.stop_time = stop_time
            session.input_octets = input_octets
            session.output_octets = output_octets
            session.input_packets = input_packets
            session.output_packets = output_packets
            session.session_time = session_time
            session.last_seen = last_update  # Accountant.restore sets the start-up time
            session.next_of_user = None
            yield session


def load_users(path: Path) -> list[User]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    try:
        return users_of(conn)
    finally:
        conn.close()


def users_of(conn: sqlite3.Connection) -> list[User]:
    rows = conn.execute("SELECT user_id, username, reseller_id, max_sessions FROM main.users")
    return [User(*row) for row in rows]
