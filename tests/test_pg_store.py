"""The PostgreSQL store on its own, against a real server: group commit and its outcomes,
a row that cannot be stored rejected alone, a stale state from another node never written
over a newer one (and the newer one handed back to memory)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import pytest
import pytest_asyncio

from radtrack.model import ChangeKind, Session, SessionChange
from radtrack.store.base import Outcome, Partial
from radtrack.store.pg.store import PgStore

StoreFactory = Callable[[str], Any]


def session(sid: str, *, last: float = 1_700_000_060.0, octets: int = 0, **extra: Any) -> Session:
    return Session(
        f"id-{sid}",
        "gw/192.0.2.1",
        "gw",
        "192.0.2.1",
        sid,
        1_700_000_000.0,
        last,
        user_name="4001",
        user_id=4001,
        input_octets=octets,
        session_time=int(last - 1_700_000_000),
        start_seen=True,
        **extra,
    )


@pytest_asyncio.fixture
async def stores(pg_dsn: str) -> AsyncIterator[Callable[[str], Any]]:
    opened: list[PgStore] = []

    async def open_one(node: str) -> PgStore:
        store = PgStore(pg_dsn, node=node)
        await store.open()
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        await store.close(5.0)


async def commit(store: PgStore, changes: Sequence[SessionChange]) -> Outcome:
    done: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
    store.submit(changes, done.set_result)
    return await done


@pytest.mark.asyncio
async def test_a_row_postgresql_cannot_hold_is_rejected_alone(stores: Any) -> None:
    store = await stores("a")
    good, bad = session("good"), session("bad", nas_port_id="port\x00zero")
    outcome = await commit(
        store, [SessionChange(ChangeKind.STARTED, good), SessionChange(ChangeKind.STARTED, bad)]
    )
    assert isinstance(outcome, Partial) and list(outcome.rejected) == ["id-bad"]
    assert store.healthy and store.stats.rejected_rows == 1
    assert sorted(store.committed_sessions(["id-good", "id-bad"])) == ["id-good"]


@pytest.mark.asyncio
async def test_a_stale_state_never_overwrites_a_newer_one_and_memory_gets_the_newer(
    stores: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="radtrack.store.pg.store")
    a, b = await stores("a"), await stores("b")
    handed: list[Session] = []
    b.follow_remote(handed.extend)
    newer = session("s", last=1_700_000_120.0, octets=900)
    assert await commit(a, [SessionChange(ChangeKind.UPDATED, newer)]) is True

    # b has not seen a's commit yet and writes the state it had: acknowledged (the packet's
    # effect is older than what is stored), not written, and the stored state comes back
    older = session("s", last=1_700_000_060.0, octets=100)
    assert await commit(b, [SessionChange(ChangeKind.UPDATED, older)]) is True
    stored = a.committed_sessions(["id-s"])["id-s"]
    assert stored.row() == newer.row()
    assert [s.row() for s in handed if s.id == "id-s"][-1] == newer.row()
    assert "event=rows_superseded count=1" in caplog.text  # read back after b's commit
