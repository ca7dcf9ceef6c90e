"""The snapshot a clean stop writes (radtrack/store/snapshot.py), with the real daemon: real UDP
accounting, real SQLite in a temp dir. A start from it gives memory equal, slot by slot, to a
start from the table of the same database; anything that changed the store since (a CLI write,
an sqlite3 shell, a damaged file, a crash, another closed_cache) means the table is read."""

from __future__ import annotations

import logging
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from pyrad.dictionary import Dictionary

from radtrack import cli
from radtrack.daemon import Daemon
from radtrack.model import Session, User
from radtrack.store import snapshot
from tests.conftest import acct_packet, make_settings, send_pyrad, udp_port

SKIPPED = frozenset({"last_seen", "next_of_user"})  # the start-up time; the chains apart


def slots(session: Session) -> tuple[tuple[str, type, Any], ...]:
    return tuple(
        (name, type(value), value)
        for name in Session.__slots__
        if name not in SKIPPED
        for value in [getattr(session, name)]
    )


def memory(daemon: Daemon) -> dict[str, Any]:
    """Everything start-up rebuilds, in order: sessions slot by slot (types too), the users'
    chains, per-NAS counts, incarnations, the users directory, the NAS reboots remembered."""
    index = daemon.index
    chains = {}
    for user_id, head in index._by_user.items():
        chain: list[str] = []
        session: Session | None = head
        while session is not None:
            chain.append(session.id)
            session = session.next_of_user
        chains[user_id] = chain
    users = daemon.users
    return {
        "online": [slots(s) for s in index._online.values()],
        "closed": [slots(s) for s in index._closed.values()],
        "chains": chains,
        "per_nas": list(index.per_nas.items()),
        "lineages": {k: [s.id for s in v] for k, v in index.lineages.items()},
        "users": [
            (u.user_id, u.username, u.reseller_id, u.max_sessions) for u in users._by_id.values()
        ],
        "names": list(users._by_name),
        "reboots": dict(daemon.accountant._reboots),
    }


async def send(daemon: Daemon, dictionary: Dictionary, status: str, sid: str, **attrs: Any) -> None:
    packet = acct_packet(
        dictionary,
        Acct_Status_Type=status,
        Acct_Session_Id=sid,
        NAS_IP_Address="127.0.0.1",
        **attrs,
    )
    reply = await send_pyrad(udp_port(daemon), packet, dictionary=dictionary)
    assert reply is not None, f"{status} of {sid} not answered"


async def traffic(daemon: Daemon, dictionary: Dictionary, tag: str = "s") -> None:
    """Sessions of a few users: Starts with many attributes, Interims, Stops (closed, kept),
    a reused Acct-Session-Id (two incarnations), and users written through the API's path."""
    now = int(time.time()) - 100
    for n in range(8):
        await send(
            daemon,
            dictionary,
            "Start",
            f"{tag}{n}",
            User_Name=str(500 + n % 3) if n % 4 else f"name{n}",
            Event_Timestamp=now + n,
            NAS_Port_Id=f"wg{n % 2}",
            Calling_Station_Id=f"02:00:00:00:00:{n:02x}",
            Called_Station_Id="vpn.example.net",
            Framed_IP_Address=f"10.1.0.{n + 1}",
            Acct_Interim_Interval=300,
            Class=f"class-{n % 2}".encode(),
        )
    for n in range(0, 8, 2):
        await send(
            daemon,
            dictionary,
            "Interim-Update",
            f"{tag}{n}",
            Event_Timestamp=now + 50,
            Acct_Session_Time=50,
            Acct_Input_Octets=1000 * n,
            Class=f"class-{n % 2}".encode(),
        )
    for n in (1, 5):
        await send(
            daemon,
            dictionary,
            "Stop",
            f"{tag}{n}",
            Event_Timestamp=now + 60 + n,
            Acct_Session_Time=60,
            Acct_Terminate_Cause="User-Request",
            Class=f"class-{n % 2}".encode(),
        )
    await send(
        daemon,
        dictionary,
        "Start",
        f"{tag}1",
        Event_Timestamp=now + 90,
        User_Name="501",
        Class=b"class-1",
    )  # a new incarnation of a closed session
    await daemon.upsert_users([User(900, "name0", 1, 3), User(901, "name4", 2, None)])


async def started(tmp_path: Path, db: Path, **sections: Any) -> Daemon:
    store = {"path": str(db), **sections.pop("store", {})}
    daemon = Daemon(make_settings(tmp_path, store=store, **sections))
    try:
        await daemon.start()
    except BaseException:
        await daemon.stop()
        raise
    return daemon


async def stopped_with_traffic(tmp_path: Path, dictionary: Dictionary, db: Path) -> dict[str, Any]:
    """A daemon that took traffic, stopped cleanly: its memory at the stop."""
    daemon = await started(tmp_path, db)
    try:
        await traffic(daemon, dictionary)
        before = memory(daemon)
    finally:
        await daemon.stop()
    return before


async def memory_of_a_start(
    tmp_path: Path, db: Path, **sections: Any
) -> tuple[dict[str, Any], str]:
    daemon = await started(tmp_path, db, **sections)
    try:
        source = "snapshot" if daemon.store.stats.recovered_from_snapshot else "table"
        assert not snapshot.path_of(db).exists()  # read or not, gone while the daemon runs
        return memory(daemon), source
    finally:
        await daemon.stop()


def copy_store(db: Path, folder: Path) -> Path:
    """The database and its journal (not the snapshot) in ``folder``: a table start's copy."""
    folder.mkdir()
    for path in (db, db.with_name(db.name + ".journal")):
        shutil.copy2(path, folder / path.name)
    return folder / db.name


@pytest.mark.asyncio
async def test_a_start_from_the_snapshot_equals_a_start_from_the_table(
    tmp_path: Path, dictionary: Dictionary, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    db = tmp_path / "radtrack.db"
    at_stop = await stopped_with_traffic(tmp_path, dictionary, db)
    assert snapshot.path_of(db).exists()
    table_db = copy_store(db, tmp_path / "copy")
    from_snapshot, source = await memory_of_a_start(tmp_path, db)
    assert source == "snapshot"
    assert any("source=snapshot" in r.getMessage() for r in caplog.records)
    from_table, table_source = await memory_of_a_start(tmp_path, table_db)
    assert table_source == "table"
    assert from_snapshot == from_table
    assert len(from_snapshot["online"]) == 7 and len(from_snapshot["closed"]) == 2
    assert from_snapshot["lineages"] and len(from_snapshot["users"]) == 2
    # and it is what memory held at the stop (except what no row holds)
    assert from_snapshot["online"] == sorted(at_stop["online"], key=lambda s: s[0][2])


@pytest.mark.asyncio
async def test_the_start_removes_the_snapshot_and_its_seal(
    tmp_path: Path, dictionary: Dictionary
) -> None:
    db = tmp_path / "radtrack.db"
    await stopped_with_traffic(tmp_path, dictionary, db)
    daemon = await started(tmp_path, db)
    try:
        assert daemon.store.stats.recovered_from_snapshot
        assert not snapshot.path_of(db).exists()
        conn = sqlite3.connect(db)
        try:
            assert snapshot.sealed_token(conn) is None
            triggers = conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
            assert triggers.fetchall() == []
        finally:
            conn.close()
    finally:
        await daemon.stop()
    # a second clean stop writes a new one, which the next start reads
    _, source = await memory_of_a_start(tmp_path, db)
    assert source == "snapshot"


@pytest.mark.asyncio
async def test_store_snapshot_false_writes_none(tmp_path: Path, dictionary: Dictionary) -> None:
    """``[store] snapshot = false`` (a host without the memory to spare at a stop): a clean
    stop writes no snapshot and leaves no seal, and the next start reads the table."""
    db = tmp_path / "radtrack.db"
    off = {"snapshot": False}
    daemon = await started(tmp_path, db, store=off)
    try:
        await traffic(daemon, dictionary)
        before = memory(daemon)
    finally:
        await daemon.stop()
    assert not snapshot.path_of(db).exists()
    conn = sqlite3.connect(db)
    try:
        assert snapshot.sealed_token(conn) is None
    finally:
        conn.close()
    after, source = await memory_of_a_start(tmp_path, db, store=off)
    assert source == "table"
    assert len(after["online"]) == 7
    assert after["online"] == sorted(before["online"], key=lambda s: s[0][2])
    assert not snapshot.path_of(db).exists()  # nor did that stop write one


@pytest.mark.asyncio
async def test_a_snapshot_that_cannot_be_written_leaves_a_clean_stop(
    tmp_path: Path, dictionary: Dictionary, caplog: pytest.LogCaptureFixture
) -> None:
    """The disk refuses the file (here: its temporary name is taken by a directory): the stop
    still ends cleanly with a warning, and the next start reads the table, seal or not."""
    db = tmp_path / "radtrack.db"
    blocker = snapshot.path_of(db).with_name(snapshot.path_of(db).name + ".tmp")
    blocker.mkdir()
    caplog.set_level(logging.INFO)
    before = await stopped_with_traffic(tmp_path, dictionary, db)
    assert any("event=snapshot_failed" in r.getMessage() for r in caplog.records)
    assert not snapshot.path_of(db).exists()
    blocker.rmdir()
    after, source = await memory_of_a_start(tmp_path, db)
    assert source == "table"
    assert after["online"] == sorted(before["online"], key=lambda s: s[0][2])


async def assert_table_start(tmp_path: Path, db: Path, reason: str, **sections: Any) -> None:
    """The next start reads the table, equal to a table start of a copy of the database."""
    table_db = copy_store(db, tmp_path / f"copy-{reason}")
    found, source = await memory_of_a_start(tmp_path, db, **sections)
    assert source == "table", reason
    expected, _ = await memory_of_a_start(tmp_path, table_db, **sections)
    assert found == expected


@pytest.mark.asyncio
async def test_a_cli_users_import_between_stop_and_start(
    tmp_path: Path, dictionary: Dictionary
) -> None:
    db = tmp_path / "radtrack.db"
    await stopped_with_traffic(tmp_path, dictionary, db)
    kept = snapshot.path_of(db).read_bytes()
    config = tmp_path / "cli.toml"
    config.write_text(f'[radius]\nlisten = ["127.0.0.1:0"]\n[store]\npath = "{db}"\n')
    users = tmp_path / "users.csv"
    users.write_text("user_id,username,reseller_id,max_sessions\n902,name8,1,\n")
    assert cli.main(["users", "import", str(users), "--config", str(config)]) == 0
    assert not snapshot.path_of(db).exists()  # the CLI discards it
    snapshot.path_of(db).write_bytes(kept)  # and were it back, the seal is broken
    await assert_table_start(tmp_path, db, "cli")


@pytest.mark.asyncio
async def test_an_sqlite3_shell_write_between_stop_and_start(
    tmp_path: Path, dictionary: Dictionary
) -> None:
    db = tmp_path / "radtrack.db"
    await stopped_with_traffic(tmp_path, dictionary, db)
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("UPDATE sessions SET input_octets = 4242 WHERE session_id = 's0'")
    finally:
        conn.close()
    await assert_table_start(tmp_path, db, "shell")
    daemon = await started(tmp_path, db)
    try:
        assert [s.input_octets for s in daemon.index if s.session_id == "s0"] == [4242]
    finally:
        await daemon.stop()


@pytest.mark.asyncio
@pytest.mark.parametrize("damage", ["truncated", "flipped", "format", "empty"])
async def test_a_damaged_snapshot_is_ignored_with_a_warning(
    tmp_path: Path, dictionary: Dictionary, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    db = tmp_path / "radtrack.db"
    await stopped_with_traffic(tmp_path, dictionary, db)
    path = snapshot.path_of(db)
    data = bytearray(path.read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "flipped":
        data[-10] ^= 0xFF
    elif damage == "format":
        data = data.replace(b"format", b"formaT", 1)  # the header's key: an old layout
    else:
        data = bytearray()
    path.write_bytes(bytes(data))
    # the same mtime and size as the stop left the database: only the file is damaged
    caplog.set_level(logging.WARNING)
    await assert_table_start(tmp_path, db, damage)
    assert any("event=snapshot_ignored" in r.getMessage() for r in caplog.records)


@pytest.mark.asyncio
async def test_another_closed_cache_setting(tmp_path: Path, dictionary: Dictionary) -> None:
    db = tmp_path / "radtrack.db"
    await stopped_with_traffic(tmp_path, dictionary, db)
    await assert_table_start(tmp_path, db, "closed_cache", sessions={"closed_cache": 1})


@pytest.mark.asyncio
async def test_a_database_file_put_back_from_a_copy(tmp_path: Path, dictionary: Dictionary) -> None:
    db = tmp_path / "radtrack.db"
    await stopped_with_traffic(tmp_path, dictionary, db)
    copy = tmp_path / "backup.db"
    shutil.copy(db, copy)
    copy.replace(db)  # same content and seal, but not the file the stop left
    await assert_table_start(tmp_path, db, "restored")
