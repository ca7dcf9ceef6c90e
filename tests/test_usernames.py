"""A username belongs to one user id: upsertUsers and `radtrack users import` never take one
from a user silently (issue #17: upserting userId 400 with "alice" while user 100 had "alice"
cleared user 100's name and moved alice's sessions to another reseller).

A real daemon (SQLite, and PostgreSQL), real RADIUS packets, GraphQL over HTTP, the CLI run in
this process on the same database.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from pyrad.dictionary import Dictionary

from radtrack import cli
from radtrack.daemon import Daemon
from tests.conftest import (
    ADMIN_TOKEN,
    RESELLER_TOKEN,
    SECRET,
    acct_packet,
    make_settings,
    send_pyrad,
    udp_port,
)
from tests.httpclient import Reply, graphql

UPSERT = "mutation($u: [UserInput!]!) { upsertUsers(users: $u) { upserted } }"
ONLINE = "query($id: Int!) { getOnlineSessions(userId: $id) { sessionId } }"


async def upsert(daemon: Daemon, *users: dict[str, Any]) -> Reply:
    assert daemon.http_address is not None
    return await graphql(daemon.http_address[1], UPSERT, ADMIN_TOKEN, u=list(users))


def ok(reply: Reply) -> bool:
    return reply.status == 200 and "errors" not in reply.json()


async def online(daemon: Daemon, user_id: int, token: str = ADMIN_TOKEN) -> list[str]:
    assert daemon.http_address is not None
    reply = await graphql(daemon.http_address[1], ONLINE, token, id=user_id)
    return [s["sessionId"] for s in reply.json()["data"]["getOnlineSessions"] or []]


async def start(daemon: Daemon, dictionary: Dictionary, user_name: str, sid: str) -> None:
    packet = acct_packet(
        dictionary,
        User_Name=user_name,
        Acct_Status_Type="Start",
        Acct_Session_Id=sid,
        NAS_IP_Address="192.0.2.1",
    )
    assert await send_pyrad(udp_port(daemon), packet, dictionary=dictionary) is not None


def import_csv(tmp_path: Path, config: Path, text: str, capsys: Any) -> tuple[int, str]:
    """`radtrack users import` on ``text``: (exit status, what it printed)."""
    path = tmp_path / "users.csv"
    path.write_text(text)
    status = cli.main(["users", "import", str(path), "--config", str(config)])
    out = capsys.readouterr()
    return status, out.out + out.err


def sqlite_users(db: Path) -> list[tuple[int, str | None, int | None]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(
            "SELECT user_id, username, reseller_id FROM users ORDER BY 1"
        ).fetchall()
    finally:
        conn.close()


@pytest.mark.asyncio
async def test_upsert_users_refuses_to_take_a_username_from_another_user(
    daemon: Daemon, dictionary: Dictionary, tmp_path: Path
) -> None:
    assert ok(await upsert(daemon, {"userId": 100, "username": "alice", "resellerId": 1}))
    await start(daemon, dictionary, "alice", "alice-1")
    assert await online(daemon, 100, RESELLER_TOKEN) == ["alice-1"]

    refused = await upsert(daemon, {"userId": 400, "username": "alice", "resellerId": 2})
    assert refused.codes == ["USERNAME_TAKEN"]
    assert refused.json()["data"] is None
    assert refused.json()["errors"][0]["message"] == (
        "users[0]: username 'alice' belongs to userId 100; to move it to userId 400, give "
        "userId 100 another username (or none) in the same call. Nothing was written."
    )
    # nothing moved: not the name, not the session, not its reseller's view
    assert await online(daemon, 100, RESELLER_TOKEN) == ["alice-1"]
    assert await online(daemon, 400) == []
    assert sqlite_users(tmp_path / "radtrack.db") == [(100, "alice", 1)]

    # asking for the move: the holder is in the same call, with another username (or none)
    moved = await upsert(
        daemon,
        {"userId": 400, "username": "alice", "resellerId": 2},
        {"userId": 100, "username": "alice-old", "resellerId": 1},
    )
    assert moved.json() == {"data": {"upsertUsers": {"upserted": 2}}}
    assert await online(daemon, 400) == ["alice-1"]
    assert await online(daemon, 100) == []
    assert sqlite_users(tmp_path / "radtrack.db") == [(100, "alice-old", 1), (400, "alice", 2)]
    # two users may swap their names in one call
    swapped = await upsert(
        daemon, {"userId": 100, "username": "alice"}, {"userId": 400, "username": "alice-old"}
    )
    assert swapped.json() == {"data": {"upsertUsers": {"upserted": 2}}}
    assert await online(daemon, 100) == ["alice-1"]


@pytest.mark.asyncio
async def test_what_another_writer_stored_counts_not_only_what_the_daemon_loaded(
    daemon: Daemon, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`radtrack users import` gave "bob" to user 200 and the daemon was not reloaded: the
    store, not the daemon's memory, decides."""
    config = tmp_path / "radtrack.toml"
    config.write_text(f'[store]\npath = "{tmp_path / "radtrack.db"}"\n')
    status, _ = await asyncio.to_thread(
        import_csv, tmp_path, config, "user_id,username\n200,bob\n", capsys
    )
    assert status == 0
    refused = await upsert(daemon, {"userId": 300, "username": "bob"})
    assert refused.codes == ["USERNAME_TAKEN"]
    assert "'bob' belongs to userId 200" in refused.json()["errors"][0]["message"]
    assert sqlite_users(tmp_path / "radtrack.db") == [(200, "bob", None)]


def test_users_import_refuses_to_take_a_username(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "users.db"
    config = tmp_path / "radtrack.toml"
    config.write_text(f'[store]\npath = "{db}"\n')
    assert (
        import_csv(tmp_path, config, "user_id,username,reseller_id\n100,alice,1\n", capsys)[0] == 0
    )

    status, printed = import_csv(
        tmp_path, config, "user_id,username,reseller_id\n300,carol,2\n400,alice,2\n", capsys
    )
    assert status == 2
    assert printed == (
        f"radtrack: {tmp_path / 'users.csv'}: user 400: username 'alice' belongs to user 100; "
        "nothing was imported (to move it, give user 100 another username, or none, in the "
        "same file)\n"
    )
    assert sqlite_users(db) == [(100, "alice", 1)]  # carol neither: all or nothing

    status, printed = import_csv(
        tmp_path, config, "user_id,username,reseller_id\n400,alice,2\n100,,1\n", capsys
    )
    assert status == 0, printed
    assert sqlite_users(db) == [(100, None, 1), (400, "alice", 2)]


@pytest.mark.asyncio
async def test_postgresql_refuses_it_too(
    pg_dsn: str,
    tmp_path: Path,
    daemon_factory: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store = {"backend": "postgresql", "dsn": pg_dsn, "node_name": "n1"}
    radius = {"clients": [{"name": "gw", "address": "127.0.0.1", "secret": SECRET}]}
    daemon = await daemon_factory(make_settings(tmp_path, store=store, radius=radius))
    assert ok(await upsert(daemon, {"userId": 100, "username": "alice"}))
    refused = await upsert(daemon, {"userId": 400, "username": "alice"})
    assert refused.codes == ["USERNAME_TAKEN"]

    # another writer (the CLI, or another node) gave "bob" to 200; this node never loaded it
    config = tmp_path / "pg.toml"
    config.write_text(f'[store]\nbackend = "postgresql"\ndsn = "{pg_dsn}"\n')
    # (in a thread: the CLI runs an event loop of its own)
    status, _ = await asyncio.to_thread(
        import_csv, tmp_path, config, "user_id,username\n200,bob\n", capsys
    )
    assert status == 0
    refused = await upsert(daemon, {"userId": 300, "username": "bob"})
    assert refused.codes == ["USERNAME_TAKEN"]
    assert "'bob' belongs to userId 200" in refused.json()["errors"][0]["message"]

    status, printed = await asyncio.to_thread(
        import_csv, tmp_path, config, "user_id,username\n500,alice\n", capsys
    )
    assert status == 2
    assert "user 500: username 'alice' belongs to user 100; nothing was imported" in printed
    conn = await asyncpg.connect(pg_dsn)
    try:
        rows = await conn.fetch("SELECT user_id, username FROM users ORDER BY 1")
    finally:
        await conn.close()
    assert [tuple(r) for r in rows] == [(100, "alice"), (200, "bob")]
