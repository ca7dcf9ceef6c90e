"""Several radtrack nodes on one PostgreSQL (issue 13), with real parts only: a real server
(tests/pgserver.py), real daemons in this event loop, RADIUS over UDP from pyrad's client,
GraphQL over HTTP, Disconnect-Requests to a NAS simulator on a UDP socket.

What a NAS sees: a packet acknowledged by one node is stored and visible on every node within a
second; a NAS failing over to the other node, or sending to both, ends in the state one node
would reach; with PostgreSQL down nothing is acknowledged and every node says it is not ready,
and everything is answered and visible once it is back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from pyrad.dictionary import Dictionary

from radtrack.daemon import Daemon
from radtrack.model import SESSION_COLUMNS, Session, session_key
from tests.conftest import SECRET, acct_packet, make_settings, send_pyrad, udp_port
from tests.httpclient import Reply, graphql, http
from tests.pgserver import PgCluster
from tests.test_control import Nas

ADMIN = "admin-token-for-tests"
ONLINE = "query($u: Int!) { getOnlineSessions(userId: $u) { id sessionId inputOctets } }"
COUNT = "query($u: Int!) { onlineSessionCount(userId: $u) }"
LIMIT = "query($u: Int!) { deviceLimit(userId: $u) { online limit exceeded } }"
DISCONNECT = "mutation($id: ID!) { disconnectSession(id: $id) { sessionId nasName status } }"
NAS_IP = "192.0.2.1"


async def until(check: Callable[[], Any], timeout: float = 1.0) -> float:
    """Wait until ``check()`` (sync or async) is true; the seconds it took. Fails after
    ``timeout`` (the promise under test: visible on every node within 1 s)."""
    started = time.monotonic()
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not true within {timeout} s")
        await asyncio.sleep(0.01)


class Node:
    def __init__(self, daemon: Daemon, dictionary: Dictionary) -> None:
        self.daemon = daemon
        self.dictionary = dictionary

    async def send(self, *, retries: int = 1, timeout: float = 2.0, **attributes: Any) -> bool:
        """One Accounting-Request from the NAS; whether an Accounting-Response came back."""
        packet = acct_packet(self.dictionary, NAS_IP_Address=NAS_IP, **attributes)
        reply = await send_pyrad(
            udp_port(self.daemon),
            packet,
            dictionary=self.dictionary,
            retries=retries,
            timeout=timeout,
        )
        return reply is not None

    async def graphql(self, query: str, **variables: Any) -> Reply:
        assert self.daemon.http_address is not None
        return await graphql(self.daemon.http_address[1], query, ADMIN, **variables)

    async def online(self, user_id: int) -> list[dict[str, Any]]:
        reply = await self.graphql(ONLINE, u=user_id)
        return reply.json()["data"]["getOnlineSessions"]  # type: ignore[no-any-return]

    async def ready(self) -> int:
        assert self.daemon.http_address is not None
        return (await http(self.daemon.http_address[1], "GET", "/readyz")).status

    def state(self, session_id: str) -> tuple[object, ...] | None:
        """This node's memory of a session (online or recently closed), as a row."""
        found = self.daemon.index.find(session_key(f"gw/{NAS_IP}", session_id, None))
        return None if found is None else found.row()


NodeFactory = Callable[..., Awaitable[Node]]


@pytest_asyncio.fixture
async def nas(dictionary: Dictionary) -> AsyncIterator[tuple[Nas, int]]:
    """A NAS answering Disconnect-Requests with ACK, on 127.0.0.1; and its port."""
    transport, simulator = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: Nas(dictionary, "ack"), local_addr=("127.0.0.1", 0)
    )
    yield simulator, transport.get_extra_info("sockname")[1]
    transport.close()


def node_settings(tmp_path: Path, dsn: str, name: str, coa_port: int, **sections: Any) -> Any:
    gw = {
        "name": "gw",
        "address": "127.0.0.1",
        "secret": SECRET,
        "coa_address": "127.0.0.1",
        "coa_port": coa_port,
    }
    store = {"backend": "postgresql", "dsn": dsn, "node_name": name, "feed_poll_interval": 0.2}
    store.update(sections.pop("store", {}))
    radius = {"clients": [gw], "disconnect_timeout": 0.3, "disconnect_attempts": 2}
    return make_settings(tmp_path / name, radius=radius, store=store, **sections)


@pytest_asyncio.fixture
async def node(
    pg_dsn: str, daemon_factory: Any, tmp_path: Path, nas: tuple[Nas, int], dictionary: Dictionary
) -> NodeFactory:
    """``await node("a")``: a radtrack node on the test's database (stopped before the
    database is dropped: ``pg_dsn`` comes first)."""

    async def start(name: str, dsn: str = pg_dsn, **sections: Any) -> Node:
        settings = node_settings(tmp_path, dsn, name, nas[1], **sections)
        return Node(await daemon_factory(settings), dictionary)

    return start


@pytest_asyncio.fixture
async def reference(daemon_factory: Any, tmp_path: Path, dictionary: Dictionary) -> Node:
    """One node on SQLite, the same NAS: the state the cluster must reach."""
    daemon = await daemon_factory(
        make_settings(
            tmp_path / "single",
            radius={"clients": [{"name": "gw", "address": "127.0.0.1", "secret": SECRET}]},
        )
    )
    return Node(daemon, dictionary)


async def stored(dsn: str, session_id: str) -> tuple[object, ...] | None:
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            f"SELECT {', '.join(SESSION_COLUMNS)} FROM sessions WHERE session_id = $1", session_id
        )
    finally:
        await conn.close()
    return None if row is None else Session.from_row(tuple(row)).row()


def start(sid: str, user: str = "4001", ts: int = 1_700_000_000) -> dict[str, Any]:
    return {
        "Acct_Status_Type": "Start",
        "Acct_Session_Id": sid,
        "User_Name": user,
        "Framed_IP_Address": "100.64.0.9",
        "Event_Timestamp": ts,
    }


def interim(sid: str, octets: int, ts: int, user: str = "4001") -> dict[str, Any]:
    return {
        "Acct_Status_Type": "Interim-Update",
        "Acct_Session_Id": sid,
        "User_Name": user,
        "Acct_Input_Octets": octets,
        "Acct_Session_Time": ts - 1_700_000_000,
        "Event_Timestamp": ts,
    }


def stop(sid: str, octets: int, ts: int, user: str = "4001") -> dict[str, Any]:
    return {
        "Acct_Status_Type": "Stop",
        "Acct_Session_Id": sid,
        "User_Name": user,
        "Acct_Input_Octets": octets,
        "Acct_Session_Time": ts - 1_700_000_000,
        "Acct_Terminate_Cause": "User-Request",
        "Event_Timestamp": ts,
    }


@pytest.mark.asyncio
async def test_a_session_acked_by_one_node_is_online_on_the_other_within_a_second(
    node: NodeFactory, pg_dsn: str
) -> None:
    a, b = await node("a"), await node("b")
    assert await a.send(**start("s-1"))
    assert await stored(pg_dsn, "s-1") is not None  # acknowledged: it is in PostgreSQL

    await until(lambda: b.online(4001))
    [seen] = await b.online(4001)
    assert seen["sessionId"] == "s-1"
    assert (await b.graphql(COUNT, u=4001)).json()["data"]["onlineSessionCount"] == 1

    assert await a.send(**interim("s-1", 5_000, 1_700_000_060))

    async def b_has_the_counters() -> bool:
        return [s["inputOctets"] for s in await b.online(4001)] == [5_000]

    await until(b_has_the_counters)
    assert await b.send(**stop("s-1", 9_000, 1_700_000_120))
    await until(lambda: a.state("s-1") is not None and a.state("s-1") == b.state("s-1"))
    assert await a.online(4001) == []


@pytest.mark.asyncio
async def test_a_nas_failing_over_ends_as_one_node_would(
    node: NodeFactory, pg_dsn: str, reference: Node
) -> None:
    a, b = await node("a"), await node("b")
    # Start acknowledged by A; A stops answering, so the NAS sends the rest to B
    sequence = [
        (a, start("f-1")),
        (b, interim("f-1", 1_000, 1_700_000_060)),
        (b, interim("f-1", 2_000, 1_700_000_120)),
        (b, stop("f-1", 3_000, 1_700_000_180)),
    ]
    for target, packet in sequence:
        assert await target.send(**packet)
        assert await reference.send(**packet)
        # the NAS fails over after its retransmissions timed out, seconds later: by then the
        # other node has what the first one committed
        await until(lambda: a.state("f-1") == b.state("f-1"))

    expected = reference.state("f-1")
    assert expected is not None and expected[SESSION_COLUMNS.index("stop_time")] is not None
    assert a.state("f-1") == b.state("f-1") == expected
    assert await stored(pg_dsn, "f-1") == expected


@pytest.mark.asyncio
async def test_duplicates_sent_to_both_nodes_change_nothing_twice(
    node: NodeFactory, pg_dsn: str, reference: Node
) -> None:
    a, b = await node("a"), await node("b")
    for packet in (start("d-1"), interim("d-1", 700, 1_700_000_060)):
        # the NAS timed out on A (its reply was lost) and sent the same packet to B too
        got = await asyncio.gather(a.send(**packet), b.send(**packet))
        assert got == [True, True]
        assert await reference.send(**packet)
    await until(lambda: a.state("d-1") == b.state("d-1"))
    assert a.state("d-1") == b.state("d-1") == reference.state("d-1")
    assert await stored(pg_dsn, "d-1") == reference.state("d-1")
    assert len(await a.online(4001)) == len(await b.online(4001)) == 1


@pytest.mark.asyncio
async def test_accounting_on_closes_the_nas_sessions_whichever_node_stored_them(
    node: NodeFactory, pg_dsn: str
) -> None:
    a, b = await node("a"), await node("b")
    assert await a.send(**start("on-a", user="4002"))
    assert await b.send(**start("on-b", user="4002"))
    await until(lambda: a.state("on-b") is not None and b.state("on-a") is not None)

    # the NAS rebooted and says so to B
    assert await b.send(Acct_Status_Type="Accounting-On", Event_Timestamp=1_700_000_500)
    await until(lambda: not [s for s in a.daemon.index if s.user_id == 4002])
    assert await b.online(4002) == [] and await a.online(4002) == []
    reason = SESSION_COLUMNS.index("close_reason")
    for sid in ("on-a", "on-b"):
        row = await stored(pg_dsn, sid)
        assert row is not None and row[reason] == "accounting-on"


@pytest.mark.asyncio
async def test_disconnect_on_one_node_reaches_the_nas_for_a_session_the_other_ingested(
    node: NodeFactory, nas: tuple[Nas, int]
) -> None:
    a, b = await node("a"), await node("b")
    assert await a.send(**start("dc-1", user="4003"))
    await until(lambda: b.online(4003))
    [session] = await b.online(4003)
    result = (await b.graphql(DISCONNECT, id=session["id"])).json()["data"]["disconnectSession"]
    assert result == {"sessionId": "dc-1", "nasName": "gw", "status": "ACK"}
    assert nas[0].session_ids() == ["dc-1"]


@pytest.mark.asyncio
async def test_device_limits_count_the_sessions_of_every_node(
    node: NodeFactory, nas: tuple[Nas, int]
) -> None:
    users = {"default_max_sessions": 1, "limit_policy": "disconnect-newest"}
    a, b = await node("a", users=users), await node("b", users=users)
    assert await a.send(**start("lim-1", user="4004", ts=1_700_000_000))
    await until(lambda: b.online(4004))
    assert await b.send(**start("lim-2", user="4004", ts=1_700_000_010))
    # B counts A's session: the user is over its limit, and the newest one goes
    await until(lambda: nas[0].session_ids() == ["lim-2"])

    async def limit_on_a() -> dict[str, Any]:
        return (await a.graphql(LIMIT, u=4004)).json()["data"]["deviceLimit"]  # type: ignore[no-any-return]

    # A counts B's session too, once it has B's commit (within the second)
    await until(lambda: _equals(limit_on_a(), {"online": 2, "limit": 1, "exceeded": True}))
    assert nas[0].session_ids() == ["lim-2"]  # A's own policy did not send a second request


@pytest.mark.asyncio
async def test_a_node_started_later_loads_the_live_state_from_postgresql(
    node: NodeFactory,
) -> None:
    a = await node("a")
    for i in range(20):
        assert await a.send(**start(f"r-{i}", user="4005"))
    assert await a.send(**stop("r-0", 10, 1_700_000_100, user="4005"))
    c = await node("c")
    assert c.daemon.recovered_sessions == 19
    assert sorted(s["sessionId"] for s in await c.online(4005)) == sorted(
        f"r-{i}" for i in range(1, 20)
    )
    assert c.state("r-0") == a.state("r-0")  # the closed one is kept too (late packets)


@pytest.mark.asyncio
async def test_postgresql_down_means_no_replies_and_not_ready_then_full_catch_up(
    daemon_factory: Any, tmp_path: Path, nas: tuple[Nas, int], dictionary: Dictionary
) -> None:
    cluster = PgCluster()  # a server of its own: this test stops it
    cluster.start()
    daemons: list[Daemon] = []
    try:
        dsn = cluster.dsn(cluster.create_database())
        for name in ("a", "b"):
            daemons.append(await daemon_factory(node_settings(tmp_path, dsn, name, nas[1])))
        a, b = (Node(daemon, dictionary) for daemon in daemons)
        assert await a.send(**start("pd-0", user="4006"))
        assert await a.ready() == await b.ready() == 200

        cluster.pause()
        assert not await a.send(**start("pd-1", user="4006"), retries=0, timeout=1.0)
        await until(lambda: _is(a, 503), timeout=5.0)
        await until(lambda: _is(b, 503), timeout=5.0)

        cluster.resume()
        # the NAS retransmits: now it is answered, and the other node sees it
        assert await a.send(**start("pd-1", user="4006"), retries=5, timeout=1.0)
        await until(lambda: _is(a, 200), timeout=5.0)
        await until(lambda: _is(b, 200), timeout=5.0)
        await until(lambda: b.state("pd-1") is not None, timeout=2.0)
        assert sorted(s["sessionId"] for s in await b.online(4006)) == ["pd-0", "pd-1"]
    finally:
        for daemon in daemons:
            await daemon.stop()
        cluster.stop()


async def _equals(value: Awaitable[Any], expected: Any) -> bool:
    return await value == expected


async def _is(target: Node, status: int) -> bool:
    return await target.ready() == status
