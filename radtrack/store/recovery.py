"""Start-up recovery: the live state rebuilt from SQLite (DESIGN.md invariant 3).

A million sessions are rebuilt here, so the per-row work is one straight loop (no per-column
Python loop), and values that repeat across sessions (NAS names and addresses, port ids, user
names and ids, Calling-Station-Ids, equal timestamps...) become one object each instead of one
per row, which is most of the memory a recovered session takes (docs/performance.md).
"""

from __future__ import annotations

import gc
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from radtrack.model import SESSION_COLUMNS, Session, User

_SELECT = f"SELECT {', '.join(SESSION_COLUMNS)} FROM sessions"


def load_sessions(path: Path, closed_limit: int) -> Iterator[Session]:
    """Every open session, then the ``closed_limit`` most recently closed ones (oldest first),
    which the accounting core keeps so late packets do not reopen them. Blocking.

    The cyclic garbage collector is paused until the last session is out (or the caller stops
    early): every session is a new container that lives on, so each pass would only walk the
    growing heap again (seconds for a million sessions). The daemon freezes them afterwards.
    """
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    shared = _Shared()
    collecting = gc.isenabled()
    gc.disable()
    try:
        conn.execute("BEGIN")  # one snapshot for both queries
        # a sequential scan beats a partial-index walk plus a B-tree lookup per row here
        yield from shared.sessions(conn.execute(f"{_SELECT} NOT INDEXED WHERE stop_time IS NULL"))
        if closed_limit:
            recent = conn.execute(
                f"SELECT * FROM ({_SELECT} WHERE stop_time IS NOT NULL "
                "ORDER BY stop_time DESC LIMIT ?) ORDER BY stop_time",
                (closed_limit,),
            )
            yield from shared.sessions(recent)
        conn.execute("COMMIT")
    finally:
        if collecting:
            gc.enable()
        conn.close()


class _Shared:
    """One object per distinct value of the columns that repeat, for one recovery.

    A table per kind of value, so that the small, hot one (the NAS's values, port types...)
    is not spread over the large one of user names, and a float never stands in for an equal
    int (1.0 == 1). Timestamps are not looked up (hashing floats costs more than it saves):
    last_update and stop_time take start_time's or last_update's object when equal.
    """

    def __init__(self) -> None:
        self.nas: dict[Any, Any] = {}
        self.ports: dict[Any, Any] = {}
        self.names: dict[Any, Any] = {}
        self.callers: dict[Any, Any] = {}
        self.numbers: dict[Any, Any] = {}

    def sessions(self, rows: Iterable[Any]) -> Iterator[Session]:
        """Sessions from ``sessions`` rows in SESSION_COLUMNS order (as Session.from_row)."""
        new = Session.__new__
        nas = self.nas.setdefault
        port = self.ports.setdefault
        name = self.names.setdefault
        caller = self.callers.setdefault
        number = self.numbers.setdefault
        for (
            id_,
            nas_key,
            nas_name,
            nas_ip,
            session_id,
            class_hex,
            user_name,
            user_id,
            nas_port_id,
            nas_port_type,
            calling_station_id,
            called_station_id,
            framed_ip,
            connect_info_start,
            start_time,
            last_update,
            stop_time,
            terminate_cause,
            close_reason,
            input_octets,
            output_octets,
            input_packets,
            output_packets,
            session_time,
            interim_interval,
            start_seen,
        ) in rows:
            session = new(Session)
            # unique per session, kept as they come: id, session_id, framed_ip, the counters
            session.id = id_
            session.nas_key = nas(nas_key, nas_key)
            session.nas_name = nas(nas_name, nas_name)
            session.nas_ip = nas(nas_ip, nas_ip)
            session.session_id = session_id
            session.class_hex = name(class_hex, class_hex)
            session.user_name = name(user_name, user_name)
            session.user_id = number(user_id, user_id)
            session.nas_port_id = port(nas_port_id, nas_port_id)
            session.nas_port_type = nas(nas_port_type, nas_port_type)
            session.calling_station_id = caller(calling_station_id, calling_station_id)
            session.called_station_id = nas(called_station_id, called_station_id)
            session.framed_ip = framed_ip
            session.connect_info_start = nas(connect_info_start, connect_info_start)
            session.start_time = start_time
            if last_update == start_time:
                last_update = start_time
            session.last_update = last_update
            if stop_time == last_update:
                stop_time = last_update
            session.stop_time = stop_time
            session.terminate_cause = nas(terminate_cause, terminate_cause)
            session.close_reason = nas(close_reason, close_reason)
            session.input_octets = input_octets
            session.output_octets = output_octets
            session.input_packets = input_packets
            session.output_packets = output_packets
            session.session_time = session_time
            session.interim_interval = number(interim_interval, interim_interval)
            session.start_seen = True if start_seen else False
            session.disconnecting = False
            session.last_seen = last_update  # Accountant.restore sets the start-up time
            session.next_of_user = None
            yield session


def load_users(path: Path) -> list[User]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    try:
        rows = conn.execute("SELECT user_id, username, reseller_id, max_sessions FROM users")
        return [User(*row) for row in rows]
    finally:
        conn.close()
