"""The acknowledgement journal (store/journal.py): commits append snapshots to it, a second
thread folds them into ``sessions``; readers and start-up see the two as one store."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from radtrack.model import SESSION_COLUMNS, ChangeKind, Session, SessionChange
from radtrack.store import journal
from radtrack.store.writer import Writer


def session(sid: str, *, octets: int = 0, stop: float | None = None, user: int = 7) -> Session:
    return Session(
        f"id-{sid}",
        "nas/192.0.2.1",
        "nas",
        "192.0.2.1",
        sid,
        1_700_000_000.0,
        1_700_000_000.0 + octets,
        user_id=user,
        input_octets=octets,
        stop_time=stop,
    )


def change(s: Session, kind: ChangeKind = ChangeKind.UPDATED) -> SessionChange:
    return SessionChange(kind, s, counters_only=kind is ChangeKind.UPDATED)


async def commit(writer: Writer, changes: list[SessionChange]) -> bool:
    done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
    writer.submit(changes, done.set_result)
    return await done


def table(db: Path, name: str = "sessions") -> dict[str, tuple[object, ...]]:
    conn = journal.open_current(db) if name == "current_sessions" else sqlite3.connect(db)
    try:
        return {
            r[0]: r[1:]
            for r in conn.execute(f"SELECT session_id, input_octets, stop_time FROM {name}")
        }
    finally:
        conn.close()


@pytest.mark.asyncio
async def test_acknowledged_rows_are_in_the_journal_and_folded_later(tmp_path: Path) -> None:
    db = tmp_path / "j.db"
    writer = Writer(db, fold_interval=3600)  # no timed fold during the test
    await writer.open()
    try:
        a = session("a")
        assert await commit(writer, [change(a, ChangeKind.STARTED)])
        a.input_octets = 500
        assert await commit(writer, [change(a)])
        b = session("b")
        assert await commit(writer, [change(b, ChangeKind.STARTED)])
        b.stop_time = 1_700_000_100.0
        assert await commit(writer, [SessionChange(ChangeKind.STOPPED, b)])
        # acknowledged but not folded: sessions lags, the current view does not
        assert table(db) == {}
        assert table(db, "current_sessions") == {
            "a": (500, None),
            "b": (0, 1_700_000_100.0),
        }
        await writer.sync()
        assert table(db) == {"a": (500, None), "b": (0, 1_700_000_100.0)}
        assert writer.stats.folded_rows == 4
        # a counters-only change of a folded session takes the UPDATE path
        a.input_octets = 900
        assert await commit(writer, [change(a)])
        await writer.sync()
        assert table(db)["a"] == (900, None)
        assert table(db, "current_sessions")["a"] == (900, None)
    finally:
        await writer.close()


CRASHING_WRITER = """
import asyncio, os, sys
from pathlib import Path
from radtrack.model import SESSION_COLUMNS, ChangeKind, Session, SessionChange
from radtrack.store.writer import Writer

async def main():
    writer = Writer(Path(sys.argv[1]), fold_interval=3600)
    await writer.open()
    s = Session("id-a", "nas/192.0.2.1", "nas", "192.0.2.1", "a", 1.7e9, 1.7e9, input_octets=10)
    for kind, octets in ((ChangeKind.STARTED, 10), (ChangeKind.UPDATED, 20)):
        s.input_octets = octets
        done = asyncio.get_running_loop().create_future()
        writer.submit([SessionChange(kind, s, kind is ChangeKind.UPDATED)], done.set_result)
        assert await done
    os._exit(0)  # dies like SIGKILL would: no fold, no close

asyncio.run(main())
"""


def test_start_up_folds_what_a_crash_left_in_the_journal(tmp_path: Path) -> None:
    db = tmp_path / "j.db"
    subprocess.run([sys.executable, "-c", CRASHING_WRITER, str(db)], check=True, timeout=60)
    assert table(db) == {}
    assert table(db, "current_sessions") == {"a": (20, None)}
    # the next start-up folds the journal into sessions before anything is loaded
    assert journal.settle(db) == 2
    assert table(db) == {"a": (20, None)}
    conn = sqlite3.connect(journal.journal_path(db))
    try:
        assert conn.execute("SELECT count(*) FROM log").fetchone() == (0,)
    finally:
        conn.close()
    assert journal.settle(db) == 0  # idempotent


@pytest.mark.asyncio
async def test_a_lost_journal_file_never_reuses_folded_sequence_numbers(tmp_path: Path) -> None:
    db = tmp_path / "j.db"
    writer = Writer(db, fold_interval=3600)
    await writer.open()
    a = session("a", octets=1)
    assert await commit(writer, [change(a, ChangeKind.STARTED)])
    await writer.close()  # a clean stop folds everything
    assert table(db) == {"a": (1, None)}
    for suffix in ("", "-wal", "-shm"):
        Path(f"{journal.journal_path(db)}{suffix}").unlink(missing_ok=True)
    writer = Writer(db, fold_interval=3600)
    await writer.open()
    try:
        a.input_octets = 2
        assert await commit(writer, [change(a)])
        # new journal rows start above the mark, so they are not mistaken for folded ones
        assert table(db, "current_sessions") == {"a": (2, None)}
        await writer.sync()
        assert table(db) == {"a": (2, None)}
    finally:
        await writer.close()


def journal_rows(db: Path) -> int:
    conn = sqlite3.connect(journal.journal_path(db))
    try:
        (count,) = conn.execute("SELECT count(*) FROM log").fetchone()
        return int(count)
    finally:
        conn.close()


@pytest.mark.asyncio
async def test_folded_rows_leave_the_journal_only_once_a_checkpoint_synced_them(
    tmp_path: Path,
) -> None:
    db = tmp_path / "j.db"
    writer = Writer(db, fold_interval=3600)
    await writer.open()
    try:
        sessions = [session(f"s{i}") for i in range(50)]
        assert await commit(writer, [change(s, ChangeKind.STARTED) for s in sessions])
        await writer.sync()
        # folded, but the fold did not fsync: until a checkpoint has copied it into the
        # database file and synced that, the journal keeps its rows (a power loss could lose it)
        assert await commit(writer, [change(sessions[0])])
        assert journal_rows(db) == 51
        # a reader with an old snapshot of the database holds the checkpoint back
        reader = sqlite3.connect(db, isolation_level=None)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM sessions").fetchone()
        for s in sessions:
            s.input_octets = 1
        assert await commit(writer, [change(s) for s in sessions])
        await writer.sync()
        assert await writer.checkpoint() is False
        assert await writer.checkpoint() is False
        assert await commit(writer, [change(sessions[0])])
        assert journal_rows(db) == 102
        reader.close()
        # two completed checkpoints: the rows folded before the first one may go (one
        # checkpoint of lag, for readers that read the mark and the journal a moment apart)
        assert await writer.checkpoint() is True
        assert await commit(writer, [change(sessions[0])])
        assert journal_rows(db) == 103
        await writer.sync()
        assert await writer.checkpoint() is True
        assert await commit(writer, [change(sessions[0])])
        assert journal_rows(db) == 3  # 102 and 103 wait for the next checkpoint
        assert table(db, "current_sessions")["s0"] == (1, None)
    finally:
        await writer.close()


def test_append_writes_every_row_in_order_at_any_batch_size(tmp_path: Path) -> None:
    conn = journal.open_journal(tmp_path / "x.journal", 1.0)
    try:
        total = 0
        for count in (0, 1, 2, 3, 255, 1024, 1025, 5000):
            rows = [journal.whole_row(session(f"{total + n}")) for n in range(count)]
            journal.append(conn, rows, True)
            total += count
        got = [r[0] for r in conn.execute("SELECT session_id FROM log ORDER BY seq")]
        assert got == [str(n) for n in range(total)]
        assert conn.execute("SELECT count(*) FROM log WHERE full = 1").fetchone() == (total,)
    finally:
        conn.close()


def current(db: Path, sid: str) -> dict[str, object]:
    conn = journal.open_current(db)
    conn.row_factory = sqlite3.Row
    try:
        row = conn.execute("SELECT * FROM current_sessions WHERE session_id = ?", (sid,)).fetchone()
        return dict(row)
    finally:
        conn.close()


@pytest.mark.asyncio
async def test_interim_rows_carry_only_counters_and_keep_every_other_column(
    tmp_path: Path,
) -> None:
    db = tmp_path / "j.db"
    writer = Writer(db, fold_interval=3600)
    await writer.open()
    try:
        a = session("a", user=42)
        a.nas_port_id = "wg0/1"
        assert await commit(writer, [change(a, ChangeKind.STARTED)])
        a.input_octets, a.framed_ip = 500, "10.0.0.9"
        assert await commit(writer, [change(a)])
        conn = sqlite3.connect(journal.journal_path(db))
        try:
            # the Interim's row holds the id and the counters, not the session's other columns
            assert conn.execute(
                "SELECT full, user_id, nas_ip, input_octets FROM log ORDER BY seq"
            ).fetchall() == [(1, 42, "192.0.2.1", 0), (0, None, None, 500)]
        finally:
            conn.close()
        # readers see the whole row with the newer counters on top, before and after the fold
        for folded in (False, True):
            row = current(db, "a")
            assert (row["user_id"], row["nas_ip"], row["nas_port_id"]) == (42, "192.0.2.1", "wg0/1")
            assert (row["input_octets"], row["framed_ip"]) == (500, "10.0.0.9")
            if not folded:
                await writer.sync()
        # counters over a folded session, then a whole row (the Stop) newer than them
        a.input_octets = 700
        assert await commit(writer, [change(a)])
        assert current(db, "a")["input_octets"] == 700
        assert current(db, "a")["user_id"] == 42
        a.input_octets, a.stop_time = 800, 1_700_000_100.0
        assert await commit(writer, [SessionChange(ChangeKind.STOPPED, a)])
        a.input_octets = 900  # a late Interim after the Stop still wins by order
        assert await commit(writer, [change(a)])
        assert (current(db, "a")["input_octets"], current(db, "a")["stop_time"]) == (
            900,
            1_700_000_100.0,
        )
        await writer.sync()
        assert table(db)["a"] == (900, 1_700_000_100.0)
    finally:
        await writer.close()


@pytest.mark.asyncio
async def test_a_failed_whole_row_is_retried_with_the_newer_counters_on_top(
    tmp_path: Path,
) -> None:
    db = tmp_path / "j.db"
    writer = Writer(db, fold_interval=3600, busy_timeout=0.05, retry_delay=0.05)
    await writer.open()
    lock = sqlite3.connect(journal.journal_path(db), isolation_level=None)
    try:
        lock.execute("BEGIN EXCLUSIVE")
        a = session("a", user=42)
        results: list[bool] = []
        writer.submit([change(a, ChangeKind.STARTED)], results.append)
        while not results:  # the commit fails on the lock: no acknowledgement
            await asyncio.sleep(0.01)
        assert results[0] is False
        a.input_octets = 300  # an Interim arrives while the disk fails
        second: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        writer.submit([change(a)], second.set_result)
        lock.execute("ROLLBACK")
        assert await second
        row = current(db, "a")
        assert (row["user_id"], row["nas_ip"], row["input_octets"]) == (42, "192.0.2.1", 300)
    finally:
        lock.close()
        await writer.close()


def test_merge_puts_newer_counters_on_a_whole_row() -> None:
    a = session("a", user=42)
    whole = journal.whole_row(a)
    a.input_octets, a.framed_ip, a.nas_port_id = 5, "10.0.0.1", "wg0/7"
    a.user_id = 99  # not a counter: a counters row cannot carry it
    merged = dict(zip(SESSION_COLUMNS, journal.merge(whole, journal.counters_row(a)), strict=True))
    assert (merged["input_octets"], merged["framed_ip"], merged["nas_port_id"]) == (
        5,
        "10.0.0.1",
        "wg0/7",
    )
    assert (merged["user_id"], merged["session_id"]) == (42, "a")


@pytest.mark.asyncio
async def test_after_a_small_commit_the_next_one_gathers_for_commit_delay(tmp_path: Path) -> None:
    """Packets arriving one by one while the commit thread waits after a small commit are
    stored by one commit, not one each (without a delay, each is a commit of its own, but for
    an fsync slower than their spacing), and the first packet after an idle spell is committed
    at once, not after the delay."""

    async def trickle(delay: float) -> int:
        writer = Writer(tmp_path / f"{delay}.db", fold_interval=3600, commit_delay=delay)
        await writer.open()
        try:
            assert await commit(writer, [change(session("first"), ChangeKind.STARTED)])
            before = writer.stats.commits
            loop = asyncio.get_running_loop()
            acked: list[asyncio.Future[bool]] = []
            for n in range(5):
                acked.append(loop.create_future())
                writer.submit([change(session(f"s{n}"), ChangeKind.STARTED)], acked[-1].set_result)
                await asyncio.sleep(0.05)
            assert all(await asyncio.gather(*acked))
            commits = writer.stats.commits - before
            await asyncio.sleep(delay + 0.1)  # idle: the wait after the last commit is over
            began = loop.time()
            assert await commit(writer, [change(session("after"), ChangeKind.STARTED)])
            if delay:
                assert loop.time() - began < delay / 2
            assert table(tmp_path / f"{delay}.db", "current_sessions").keys() == {
                "first",
                "after",
                *(f"s{n}" for n in range(5)),
            }
            return commits
        finally:
            await writer.close()

    assert await trickle(1.0) == 1
    assert await trickle(0.0) >= 3
