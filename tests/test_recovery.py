"""Start-up recovery: sessions written with the writer's statements come back from SQLite with
every column identical, value and type (the writer persists Session.row() again later), the
right closed ones are kept, and the process's garbage collector is left as it was, with the
recovered sessions in its oldest generation."""

from __future__ import annotations

import gc
import itertools
import sqlite3
from pathlib import Path

import pytest

from radtrack.accounting import Accountant
from radtrack.model import SESSION_COLUMNS, Session
from radtrack.store import recovery
from radtrack.store.index import SessionIndex, UserDirectory
from radtrack.store.recovery import load_sessions
from radtrack.store.schema import migrate, upsert_sessions


def write(path: Path, sessions: list[Session]) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        migrate(conn)
        rows = [s.row() for s in sessions]
        conn.execute(upsert_sessions(len(rows)), list(itertools.chain.from_iterable(rows)))
    finally:
        conn.close()


def full(n: int, **changes: object) -> Session:
    """A session with every column set, to distinct values of the column's own type."""
    session = Session(
        f"{n:024x}",
        f"edge/198.51.100.{n % 3}",
        f"edge-{n % 3}",
        f"198.51.100.{n % 3}",
        f"ACCT-{n}",
        1_760_000_000.25 + n,
        1_760_000_300.5 + n,
        class_hex=f"c1a5{n:04x}",
        user_name=f"user{n % 4}",
        user_id=100 + n % 4,
        nas_port_id=f"port{n % 5}",
        nas_port_type="Virtual",
        calling_station_id=f"02:00:00:00:00:{n % 6:02x}",
        called_station_id="vpn.example.net",
        framed_ip=f"10.0.{n // 256}.{n % 256}",
        connect_info_start=f"WireGuard ünïcode 🔒 \x00\x01\\ '\"[{n % 2}]",
        input_octets=2**40 + n,
        output_octets=2**33 + n,
        input_packets=10_000 + n,
        output_packets=20_000 + n,
        session_time=300 + n,
        interim_interval=300,
        start_seen=n % 2 == 0,
    )
    for name, value in changes.items():
        setattr(session, name, value)
    return session


def typed(row: tuple[object, ...]) -> list[tuple[type, object]]:
    return [(type(value), value) for value in row]


def test_every_column_comes_back_identical(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    online = [full(n) for n in range(40)]
    online += [
        # sparse: what an Interim without a Start knows
        Session("f" * 24, "edge/x", "edge", "203.0.113.9", "lone", 5.0, 5.0),
        # the first update equals the start (no Interim yet)
        full(90, last_update=1_760_000_090.25),
        full(91, user_id=None, user_name=None, class_hex=None, interim_interval=None),
        full(92, input_octets=0, session_time=0, start_seen=False, nas_port_id=""),
    ]
    closed = [
        full(
            60 + n,
            stop_time=1_760_001_000.75 + n,
            terminate_cause="User-Request",
            close_reason="stop",
        )
        for n in range(5)
    ]
    closed.append(full(70, stop_time=1_760_000_370.5, close_reason="stale"))  # = last_update
    write(db, online + closed)

    loaded = list(load_sessions(db, closed_limit=4))
    got = [typed(s.row()) for s in loaded]
    by_stop = sorted(closed, key=lambda s: s.stop_time or 0)
    expected_online = sorted(online, key=lambda s: s.id)  # the table's order
    assert got[: len(online)] == [typed(s.row()) for s in expected_online]
    assert got[len(online) :] == [typed(s.row()) for s in by_stop[-4:]]  # newest 4, oldest first
    for session in loaded:
        assert session.last_seen == session.last_update
        assert not session.disconnecting
        assert session.online == (session.stop_time is None)
        assert len(session.row()) == len(SESSION_COLUMNS)


def test_recovered_state_answers_like_the_original(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    original = Accountant(SessionIndex(), UserDirectory())
    sessions = [full(n) for n in range(12)]
    for session in sessions:
        original.restore(session)
    write(db, sessions)
    restored = Accountant(SessionIndex(), UserDirectory())
    for session in load_sessions(db, closed_limit=0):
        restored.restore(session, now=1_800_000_000.0)
    assert len(restored.index) == 12
    for user_id in (100, 101, 102, 103, 104):
        assert [s.row() for s in restored.index.for_user(user_id)] == [
            s.row() for s in original.index.for_user(user_id)
        ]
        assert restored.index.count_for_user(user_id) == original.index.count_for_user(user_id)
    assert restored.index.per_nas == original.index.per_nas
    assert all(s.last_seen == 1_800_000_000.0 for s in restored.index)


def test_without_sqlite_json_functions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # an SQLite built without them (before 3.38) recovers the same sessions, column by column
    db = tmp_path / "r.db"
    sessions = [full(n) for n in range(6)]
    sessions[5].stop_time = sessions[5].last_update
    write(db, sessions)
    with_json = [typed(s.row()) for s in load_sessions(db, closed_limit=1)]
    monkeypatch.setattr(recovery, "_has_json", lambda conn: False)
    assert [typed(s.row()) for s in load_sessions(db, closed_limit=1)] == with_json
    assert len(with_json) == 6


@pytest.mark.parametrize("stop_early", [False, True])
def test_garbage_collector_left_as_found(tmp_path: Path, stop_early: bool) -> None:
    db = tmp_path / "r.db"
    write(db, [full(n) for n in range(5)])
    assert gc.isenabled()
    sessions = load_sessions(db, closed_limit=0)
    next(sessions)
    if stop_early:
        sessions.close()
    else:
        assert len(list(sessions)) == 4
    assert gc.isenabled()
    gc.disable()
    try:
        assert len(list(load_sessions(db, closed_limit=0))) == 5
        assert not gc.isenabled()  # a caller that paused it keeps it paused
    finally:
        gc.enable()


def test_recovered_sessions_are_not_walked_by_the_next_young_collections(tmp_path: Path) -> None:
    # a million sessions left in the youngest generation cost the first collection after
    # start-up ~1 s; recovery hands them to the oldest one
    db = tmp_path / "r.db"
    write(db, [full(n) for n in range(5)])
    sessions = list(load_sessions(db, closed_limit=0))
    oldest = {id(o) for o in gc.get_objects(generation=2)}
    assert all(id(session) in oldest for session in sessions)
    assert gc.get_count()[0] < 5
