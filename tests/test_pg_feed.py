"""The PostgreSQL schema and change feed (store/pg/) against a real server (tests/pgserver.py):
what one node commits reaches the others, once, in full, whatever the commit order, across
dropped connections and missed NOTIFYs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from radtrack.model import SESSION_COLUMNS, Session
from radtrack.store import journal
from radtrack.store.pg import feed, schema

Connect = Callable[[], Awaitable[Any]]
OCTETS = SESSION_COLUMNS.index("input_octets")


@pytest_asyncio.fixture
async def connect(pg_dsn: str) -> AsyncIterator[Connect]:
    """Open connections to the test's database (migrated); all closed at the end."""
    opened: list[Any] = []

    async def open_one() -> Any:
        conn = await asyncpg.connect(pg_dsn)
        opened.append(conn)
        return conn

    await schema.migrate(await open_one())
    yield open_one
    for conn in opened:
        await conn.close()


def row(sid: str, *, octets: int = 0, stop: float | None = None) -> feed.Row:
    """A session snapshot as the writer takes it."""
    return tuple(
        journal.whole_row(
            Session(
                f"id-{sid}",
                "nas-a/192.0.2.1",
                "nas-a",
                "192.0.2.1",
                sid,
                1_700_000_000.25,
                1_700_000_300.5 + octets,
                user_name="12345",
                user_id=12345,
                nas_port_id="wg0/1",
                calling_station_id="AA:BB:CC:DD:EE:FF",
                framed_ip="100.64.0.1",
                connect_info_start="WireGuard",
                input_octets=(1 << 40) + octets,
                stop_time=stop,
                start_seen=True,
            )
        )
    )


def ids(rows: list[feed.Row]) -> list[str]:
    return sorted(r[4] for r in rows)


@pytest.mark.asyncio
async def test_a_commit_of_one_node_reaches_another_exactly(connect: Connect) -> None:
    a, b = await connect(), await connect()
    written = [row("s1"), row("s2", octets=7, stop=1_700_000_900.75)]
    await feed.write_changes(a, "node-a", written)

    got, cursor = await feed.read_changes(b, 0, node="node-b")
    assert sorted(got) == sorted(written)  # every column round-trips: floats, 2^40, bools, NULL
    assert cursor > 0
    # the writer's own node is not handed its writes back
    assert (await feed.read_changes(b, 0, node="node-a"))[0] == []


@pytest.mark.asyncio
async def test_transactions_committing_out_of_xid_order_are_both_delivered(
    connect: Connect,
) -> None:
    early, late, reader = await connect(), await connect(), await connect()
    seen: list[feed.Row] = []

    # ``early`` takes its xid first and commits last: a cursor that followed the highest
    # committed id (as with a sequence) would pass over it
    tx_early = early.transaction()
    await tx_early.start()
    await feed.write_changes(early, "node-a", [row("early")])
    await feed.write_changes(late, "node-b", [row("late")])
    assert await early.fetchval("SELECT pg_current_xact_id()") < await late.fetchval(
        "SELECT max(xid) FROM session_changes"
    )

    got, cursor = await feed.read_changes(reader, 0, node="node-c")
    seen += got  # "late" is committed but waits until nothing older is still running
    await tx_early.commit()
    got, cursor = await feed.read_changes(reader, cursor, node="node-c")
    seen += got

    assert ids(seen) == ["early", "late"]


@pytest.mark.asyncio
async def test_a_reader_that_was_disconnected_catches_up_from_its_cursor(
    connect: Connect,
) -> None:
    writer = await connect()
    await feed.write_changes(writer, "node-a", [row("before")])
    reader = await connect()
    listener = feed.ChangeListener(await connect())
    await listener.start()
    _, cursor = await feed.read_changes(reader, 0, node="node-b")
    await reader.close()
    await listener.close()

    # commits while node-b is away: their NOTIFYs reach nobody
    for i in range(5):
        await feed.write_changes(writer, "node-a", [row(f"away-{i}")])
    await feed.write_changes(writer, "node-a", [row("before", octets=1)])

    reader = await connect()
    got, cursor = await feed.read_changes(reader, cursor, node="node-b")
    assert ids(got) == ["away-0", "away-1", "away-2", "away-3", "away-4", "before"]
    assert [r[OCTETS] for r in got if r[4] == "before"] == [(1 << 40) + 1]  # its newest state
    assert await feed.read_changes(reader, cursor, node="node-b") == ([], cursor)


@pytest.mark.asyncio
async def test_nothing_is_delivered_twice_to_a_reader_that_advances(connect: Connect) -> None:
    writer, reader = await connect(), await connect()
    for i in range(30):
        await feed.write_changes(writer, "node-a", [row(f"s{i}-{j}") for j in range(3)])
        if i == 10:  # one transaction that writes twice
            async with writer.transaction():
                await feed.write_changes(writer, "node-a", [row("twice-1")])
                await feed.write_changes(writer, "node-a", [row("twice-2")])

    delivered: list[feed.Row] = []
    cursor = 0
    while True:  # small reads: the changes of 2 commits at most each
        got, after = await feed.read_changes(reader, cursor, node="node-b", limit=2)
        if after == cursor:
            break
        assert len(got) <= 6
        delivered += got
        cursor = after

    assert len(delivered) == 92
    assert len(set(ids(delivered))) == 92
    await feed.write_changes(writer, "node-a", [row("one-more")])
    assert ids((await feed.read_changes(reader, cursor, node="node-b"))[0]) == ["one-more"]


@pytest.mark.asyncio
async def test_a_reader_never_goes_back_to_an_older_state(connect: Connect) -> None:
    old, straggler, new, reader = [await connect() for _ in range(4)]
    await feed.write_changes(old, "node-a", [row("s", octets=1)])
    _, cursor = await feed.read_changes(reader, 0)

    # xids in the order old < straggler < new; commits in the order new, old, straggler.
    # node-a's commit (old) waits for the session's row lock, which node-b (new) holds until
    # it commits, so node-a's state is the last one written; the straggler keeps the horizon
    # between the two, so their changes reach the reader in two reads, the newer state first
    for conn in (old, straggler, new):
        await conn.execute("BEGIN")
        await conn.execute("SELECT pg_current_xact_id()")
    await feed.write_changes(new, "node-b", [row("s", octets=2)])
    blocked = asyncio.ensure_future(feed.write_changes(old, "node-a", [row("s", octets=3)]))
    await asyncio.sleep(0.2)  # nothing to await: node-a's statement waits inside the server
    assert not blocked.done()
    await new.execute("COMMIT")
    await blocked
    await old.execute("COMMIT")

    states = []
    got, cursor = await feed.read_changes(reader, cursor)
    states += [r[OCTETS] for r in got]
    await straggler.execute("COMMIT")
    got, cursor = await feed.read_changes(reader, cursor)
    states += [r[OCTETS] for r in got]
    assert states == [(1 << 40) + 3, (1 << 40) + 3]


@pytest.mark.asyncio
async def test_nodes_writing_the_same_sessions_at_once_do_not_deadlock(connect: Connect) -> None:
    a, b, reader = await connect(), await connect(), await connect()
    names = [f"s{i}" for i in range(50)]

    async def node(conn: Any, name: str, order: list[str]) -> None:
        for i in range(20):
            await feed.write_changes(conn, name, [row(s, octets=i) for s in order])

    await asyncio.gather(node(a, "node-a", names), node(b, "node-b", names[::-1]))
    got, _ = await feed.read_changes(reader, 0)
    assert ids(got) == sorted(names)


@pytest.mark.asyncio
async def test_the_listener_wakes_on_commits_only(connect: Connect) -> None:
    writer, killer = await connect(), await connect()
    listener = feed.ChangeListener(await connect())
    await listener.start()
    try:
        tx = writer.transaction()
        await tx.start()
        await feed.write_changes(writer, "node-a", [row("rolled-back")])
        await tx.rollback()
        assert not await listener.wait(0.3)

        await feed.write_changes(writer, "node-a", [row("committed")])
        assert await asyncio.wait_for(listener.wait(10), 10)
        assert not listener.closed

        # the server drops the listening connection: wait returns, the follower reconnects
        await killer.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()"
        )
        assert await asyncio.wait_for(listener.wait(10), 10)
        assert listener.closed
    finally:
        await listener.close()


@pytest.mark.asyncio
async def test_a_reader_behind_the_pruned_floor_reloads_and_misses_nothing(
    connect: Connect,
) -> None:
    writer, reader = await connect(), await connect()
    await feed.write_changes(writer, "node-a", [row("s1")])
    _, stale = await feed.read_changes(reader, 0)
    await feed.write_changes(writer, "node-a", [row("s2"), row("gone", stop=1_700_000_400.0)])
    _, passed = await feed.read_changes(reader, stale)

    assert await feed.prune(writer, passed) == 2  # commits
    with pytest.raises(feed.FeedGap):
        await feed.read_changes(reader, stale)

    rows, cursor = await feed.load_sessions(reader)
    assert ids(rows) == ["s1", "s2"]  # online only
    await feed.write_changes(writer, "node-a", [row("s3")])
    assert ids((await feed.read_changes(reader, cursor))[0]) == ["s3"]


@pytest.mark.asyncio
async def test_migration_is_idempotent_and_keeps_data(pg_dsn: str) -> None:
    conn = await asyncpg.connect(pg_dsn)
    try:
        assert await schema.migrate(conn) == 0
        await feed.write_changes(conn, "node-a", [row("kept")])
        assert await schema.migrate(conn) == schema.SCHEMA_VERSION
        assert await schema.schema_version(conn) == schema.SCHEMA_VERSION
        assert ids((await feed.read_changes(conn, 0))[0]) == ["kept"]
    finally:
        await conn.close()


@pytest.mark.asyncio
async def test_nodes_starting_together_migrate_once(pg_dsn: str) -> None:
    conns = [await asyncpg.connect(pg_dsn) for _ in range(3)]
    try:
        found = await asyncio.gather(*(schema.migrate(c) for c in conns))
        assert sorted(found) == [0, schema.SCHEMA_VERSION, schema.SCHEMA_VERSION]
    finally:
        for conn in conns:
            await conn.close()


@pytest.mark.asyncio
async def test_migration_refuses_a_newer_schema_and_changes_nothing(pg_dsn: str) -> None:
    conn = await asyncpg.connect(pg_dsn)
    try:
        await schema.migrate(conn)
        await conn.execute("UPDATE schema_version SET version = $1", schema.SCHEMA_VERSION + 1)
        with pytest.raises(schema.SchemaTooNew, match="newer than this radtrack"):
            await schema.migrate(conn)
        assert await schema.schema_version(conn) == schema.SCHEMA_VERSION + 1
    finally:
        await conn.close()
