"""The snapshot and what a clean stop is not: a SIGKILL (radtrack serve as a child process)
writes none and leaves no stale one usable; a database another connection wrote while the
daemon ran, or journal rows left to fold at start, mean the table; the payload keeps every
column's value and type as the table gives them back."""

from __future__ import annotations

import shutil
import signal
import sqlite3
import time
from pathlib import Path

import pytest
from pyrad.dictionary import Dictionary

from radtrack.model import Session
from radtrack.store import columnar, journal, recovery, snapshot
from tests.conftest import acct_packet, send_pyrad
from tests.test_crash import SECRET, free_udp_port, write_config
from tests.test_crash import Daemon as Child
from tests.test_recovery import full, write
from tests.test_snapshot import (
    assert_table_start,
    memory_of_a_start,
    started,
    stopped_with_traffic,
    traffic,
)


async def starts(port: int, dictionary: Dictionary, tag: str, count: int) -> None:
    now = int(time.time()) - 50
    for n in range(count):
        packet = acct_packet(
            dictionary,
            SECRET,
            Acct_Status_Type="Start",
            Acct_Session_Id=f"{tag}{n}",
            NAS_IP_Address="127.0.0.1",
            User_Name=str(700 + n),
            Event_Timestamp=now + n,
        )
        reply = await send_pyrad(port, packet, dictionary=dictionary, secret=SECRET)
        assert reply is not None


@pytest.mark.asyncio
async def test_a_sigkill_writes_no_snapshot(tmp_path: Path, dictionary: Dictionary) -> None:
    port = free_udp_port()
    child = Child(write_config(tmp_path, port))
    await child.start()
    await starts(port, dictionary, "k", 5)
    assert await child.kill(signal.SIGKILL) == -signal.SIGKILL
    db = tmp_path / "crash.db"
    assert not snapshot.path_of(db).exists()
    found, source = await memory_of_a_start(tmp_path, db)
    assert source == "table"
    assert sorted(s[3][2] for s in found["online"]) == [f"k{n}" for n in range(5)]


@pytest.mark.asyncio
async def test_a_stale_snapshot_put_back_after_a_sigkill_is_not_used(
    tmp_path: Path, dictionary: Dictionary
) -> None:
    db = tmp_path / "crash.db"
    await stopped_with_traffic(tmp_path, dictionary, db)
    stale = tmp_path / "stale.snapshot"
    shutil.copy2(snapshot.path_of(db), stale)
    port = free_udp_port()
    child = Child(write_config(tmp_path, port))
    await child.start()  # reads the snapshot, breaks the seal, removes the file
    assert not snapshot.path_of(db).exists()
    await starts(port, dictionary, "after", 3)
    assert await child.kill(signal.SIGKILL) == -signal.SIGKILL
    shutil.copy2(stale, snapshot.path_of(db))  # as a crash between rename and unlink could
    found, source = await memory_of_a_start(tmp_path, db)
    assert source == "table"
    ids = {s[3][2] for s in found["online"]}
    assert {"after0", "after1", "after2"} <= ids  # committed after the snapshot: not lost


@pytest.mark.asyncio
async def test_a_sigterm_to_radtrack_serve_writes_one(
    tmp_path: Path, dictionary: Dictionary
) -> None:
    port = free_udp_port()
    child = Child(write_config(tmp_path, port))
    await child.start()
    await starts(port, dictionary, "t", 4)
    assert await child.kill(signal.SIGTERM) == 0
    db = tmp_path / "crash.db"
    assert snapshot.path_of(db).exists()
    found, source = await memory_of_a_start(tmp_path, db)
    assert source == "snapshot"
    assert sorted(s[3][2] for s in found["online"]) == [f"t{n}" for n in range(4)]


@pytest.mark.asyncio
async def test_a_write_by_another_connection_while_running_means_no_snapshot(
    tmp_path: Path, dictionary: Dictionary
) -> None:
    db = tmp_path / "radtrack.db"
    daemon = await started(tmp_path, db)
    try:
        await traffic(daemon, dictionary)
        await daemon.store.flush()
        conn = sqlite3.connect(db, isolation_level=None, timeout=5)
        try:  # memory no longer holds what the table does: only a table start repairs it
            conn.execute("UPDATE sessions SET framed_ip = '192.0.2.99' WHERE session_id = 's2'")
        finally:
            conn.close()
    finally:
        await daemon.stop()
    assert not snapshot.path_of(db).exists()
    found, source = await memory_of_a_start(tmp_path, db)
    assert source == "table"
    assert [s[11][2] for s in found["online"] if s[3][2] == "s2"] == ["192.0.2.99"]


@pytest.mark.asyncio
async def test_journal_rows_left_to_fold_mean_the_table(
    tmp_path: Path, dictionary: Dictionary
) -> None:
    db = tmp_path / "radtrack.db"
    await stopped_with_traffic(tmp_path, dictionary, db)
    conn = sqlite3.connect(db)
    try:
        (row,) = [r for r in conn.execute("SELECT * FROM sessions WHERE session_id = 's4'")]
    finally:
        conn.close()
    session = Session.from_row(row)
    session.input_octets = 777_777
    jconn = journal.open_journal(journal.journal_path(db), 5.0)
    try:  # as a crash after a commit and before its fold leaves it
        with journal.transaction(jconn):
            journal.append(jconn, [session.row()], True)
    finally:
        jconn.close()
    await assert_table_start(tmp_path, db, "journal")
    found, _ = await memory_of_a_start(tmp_path, db)
    assert [s[16][2] for s in found["online"] if s[3][2] == "s4"] == [777_777]


def test_the_payload_gives_back_what_the_table_gives(tmp_path: Path) -> None:
    """Every column of sessions with every column set, closed ones too: decoded from the
    payload, value and type, as recovery.load_sessions reads them from the table."""
    db = tmp_path / "radtrack.db"
    sessions = [full(n) for n in range(40)]
    for n, session in enumerate(sessions[30:]):
        session.stop_time = session.last_update + n
        session.ending = session.ending._replace(
            close_reason="stop", terminate_cause="Idle-Timeout"
        )
    write(db, sessions)
    from_table = list(recovery.load_sessions(db, 5))
    decoded, _ = columnar.decode(columnar.encode(from_table, []))
    typed = [[(type(v), v) for v in s.row()] for s in from_table]
    assert [[(type(v), v) for v in s.row()] for s in decoded] == typed
    assert [(s.origin, s.ending) for s in decoded] == [(s.origin, s.ending) for s in from_table]


def test_the_payload_shares_what_recovery_shares(tmp_path: Path) -> None:
    db = tmp_path / "radtrack.db"
    write(db, [full(n) for n in range(60)])
    decoded, _ = columnar.decode(columnar.encode(list(recovery.load_sessions(db, 0)), []))
    for name in ("nas_port_id", "calling_station_id", "class_hex", "origin", "nas_key"):
        distinct = {getattr(s, name) for s in decoded}
        assert len({id(getattr(s, name)) for s in decoded}) == len(distinct), name
    assert all(s.last_update is s.start_time for s in decoded if s.last_update == s.start_time)


def test_a_value_the_table_would_change_is_not_encoded() -> None:
    session = full(1)
    session.user_id = True  # type: ignore[assignment]  # a bool: the table gives back 1
    with pytest.raises(columnar.Unencodable):
        columnar.encode([session], [])
    session = full(2)
    session.start_time = 1_760_000_000  # an int in a REAL column comes back a float
    (decoded,), _ = columnar.decode(columnar.encode([session], []))
    assert type(decoded.start_time) is float and decoded.start_time == 1_760_000_000
