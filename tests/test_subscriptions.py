"""Subscriptions end to end: a real daemon, real RADIUS packets (pyrad), and a WebSocket client
nobody here wrote (the ``websockets`` library) speaking graphql-transport-ws."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import socket
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pyrad.dictionary import Dictionary
from pyrad.packet import AcctPacket
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedError, InvalidStatus
from websockets.typing import Subprotocol

from radtrack import config
from radtrack.api.settings import ApiSettings
from radtrack.daemon import Daemon
from tests.conftest import (
    ADMIN_TOKEN,
    RESELLER2_TOKEN,
    RESELLER_TOKEN,
    acct_packet,
    send_pyrad,
    udp_port,
)
from tests.httpclient import graphql

EVENTS = """subscription Events($userId: Int) {
  sessionEvents(userId: $userId) {
    kind reason at
    session { id sessionId userId nasName inputOctets connectInfoStart calledStationId }
  }
}"""
UPSERT = "mutation Up($users: [UserInput!]!) { upsertUsers(users: $users) { upserted } }"


# -- helpers ----------------------------------------------------------------------------------
@contextlib.asynccontextmanager
async def live(
    daemon: Daemon,
    init: dict[str, Any] | None = None,
    *,
    headers: dict[str, str] | None = None,
    sock: socket.socket | None = None,
) -> AsyncIterator[ClientConnection]:
    """A graphql-transport-ws connection; with ``init``, connection_init sent and acknowledged."""
    assert daemon.http_address is not None
    async with connect(
        f"ws://127.0.0.1:{daemon.http_address[1]}/graphql",
        subprotocols=[Subprotocol("graphql-transport-ws")],
        additional_headers=headers,
        proxy=None,
        sock=sock,
        compression=None,
        max_queue=1,
        open_timeout=5,
        close_timeout=2,
    ) as ws:
        if init is not None:
            await send(ws, {"type": "connection_init", "payload": init})
            assert await receive(ws) == {"type": "connection_ack"}
        yield ws


async def send(ws: ClientConnection, message: dict[str, Any]) -> None:
    await ws.send(json.dumps(message))


async def receive(ws: ClientConnection) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 5.0))
    return message


async def subscribe(ws: ClientConnection, op_id: str, user_id: int | None = None) -> None:
    """Subscribe, then ping: the server handles a connection's messages in order, so the pong
    means the subscription is registered (the protocol has no acknowledgement for subscribe)."""
    payload = {"query": EVENTS, "variables": {"userId": user_id}}
    await send(ws, {"id": op_id, "type": "subscribe", "payload": payload})
    await sync(ws)


async def sync(ws: ClientConnection) -> None:
    await send(ws, {"type": "ping"})
    assert await receive(ws) == {"type": "pong"}


async def closed_with(ws: ClientConnection) -> tuple[int, str]:
    with pytest.raises(ConnectionClosedError) as closed:
        await receive(ws)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, closed.value.rcvd.reason


def event(message: dict[str, Any], op_id: str) -> dict[str, Any]:
    assert message["type"] == "next" and message["id"] == op_id, message
    assert "errors" not in message["payload"], message
    result: dict[str, Any] = message["payload"]["data"]["sessionEvents"]
    return result


def packet(dictionary: Dictionary, status: str, user: int, session: str, **extra: Any) -> Any:
    return acct_packet(
        dictionary,
        User_Name=str(user),
        Acct_Status_Type=status,
        Acct_Session_Id=session,
        NAS_IP_Address="192.0.2.1",
        **extra,
    )


async def acked(daemon: Daemon, dictionary: Dictionary, *args: Any, **extra: Any) -> None:
    request = packet(dictionary, *args, **extra)
    reply = await send_pyrad(udp_port(daemon), request, dictionary=dictionary)
    assert reply is not None, "no Accounting-Response"


async def send_window(port: int, packets: list[AcctPacket]) -> int:
    """Send up to 256 packets at once (distinct identifiers), retransmit what is unanswered;
    returns how many verified Accounting-Responses came back."""
    loop = asyncio.get_running_loop()
    waiting = {p.id: p for p in packets}
    assert len(waiting) == len(packets)
    raw = {ident: p.RequestPacket() for ident, p in waiting.items()}
    answered = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        for _ in range(5):  # the NAS's retransmissions
            for ident in waiting:
                sock.sendto(raw[ident], ("127.0.0.1", port))
            deadline = loop.time() + 1.0
            while waiting and loop.time() < deadline:
                with contextlib.suppress(TimeoutError):
                    left = deadline - loop.time()
                    data = await asyncio.wait_for(loop.sock_recv(sock, 4096), left)
                    request = waiting.get(data[1])
                    reply = request and request.CreateReply(packet=data)
                    if request is not None and request.VerifyReply(reply, data):
                        del waiting[data[1]]
                        answered += 1
            if not waiting:
                break
    return answered


# -- tests ------------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_events_arrive_in_commit_order(daemon: Daemon, dictionary: Dictionary) -> None:
    async with (
        live(daemon, {"Authorization": f"Bearer {ADMIN_TOKEN}"}) as everyone,
        live(daemon, {"token": ADMIN_TOKEN}) as followers,
    ):
        await subscribe(everyone, "all")
        await subscribe(followers, "mine", 4242)
        await subscribe(followers, "other", 999)
        await acked(daemon, dictionary, "Start", 4242, "live-1", Connect_Info="100Mbps")
        await acked(daemon, dictionary, "Interim-Update", 4242, "live-1", Acct_Input_Octets=1000)
        await acked(
            daemon, dictionary, "Stop", 4242, "live-1", Acct_Input_Octets=2500,
            Acct_Terminate_Cause="User-Request",
        )  # fmt: skip
        for ws, op_id in ((everyone, "all"), (followers, "mine")):
            events = [event(await receive(ws), op_id) for _ in range(3)]
            assert [e["kind"] for e in events] == ["STARTED", "UPDATED", "STOPPED"]
            assert [e["reason"] for e in events] == [None, None, "stop"]
            assert [e["session"]["inputOctets"] for e in events] == [0, 1000, 2500]
            assert {e["session"]["sessionId"] for e in events} == {"live-1"}
            assert {e["session"]["userId"] for e in events} == {4242}
            assert {e["session"]["nasName"] for e in events} == {"nas-local"}
            assert {e["session"]["connectInfoStart"] for e in events} == {"100Mbps"}
            assert all(e["at"].endswith("Z") for e in events)
        # "other" got none of those: the next message on its connection is its own user's Start
        await acked(daemon, dictionary, "Start", 999, "live-2")
        assert event(await receive(followers), "other")["session"]["sessionId"] == "live-2"
        assert event(await receive(everyone), "all")["session"]["sessionId"] == "live-2"
    assert daemon.service is not None and daemon.service.stats.acknowledged == 4


@pytest.mark.asyncio
async def test_refused_without_a_valid_token(daemon: Daemon) -> None:
    for payload in (None, {}, {"token": "wrong"}, {"Authorization": "Basic YWRtaW4="}):
        async with live(daemon) as ws:
            await send(ws, {"type": "connection_init", "payload": payload})
            assert await closed_with(ws) == (4401, "Unauthorized: a valid bearer token is required")
    async with live(daemon) as ws:  # subscribe before connection_init (the protocol's 4401)
        await send(ws, {"id": "1", "type": "subscribe", "payload": {"query": EVENTS}})
        assert (await closed_with(ws))[0] == 4401
    # the upgrade's Authorization header is enough (non-browser clients)
    bearer = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with live(daemon, {}, headers=bearer) as ws:
        await subscribe(ws, "1")
    async with live(daemon, headers={"Authorization": "Bearer wrong"}) as ws:
        await send(ws, {"type": "connection_init"})
        assert (await closed_with(ws))[0] == 4401
    # no graphql-transport-ws subprotocol: closed at once
    assert daemon.http_address is not None
    url = f"ws://127.0.0.1:{daemon.http_address[1]}/graphql"
    async with connect(url, proxy=None, open_timeout=5) as ws:
        assert await closed_with(ws) == (4406, "Subprotocol not acceptable")
    with pytest.raises(InvalidStatus) as refused:  # no WebSocket anywhere else
        async with connect(url.replace("/graphql", "/"), proxy=None, open_timeout=5):
            pass
    assert refused.value.response.status_code == 403


@pytest.mark.asyncio
async def test_protocol_errors(daemon: Daemon) -> None:
    admin = {"token": ADMIN_TOKEN}
    async with live(daemon, admin) as ws:
        query = {"query": "query { stats { online } }"}
        await send(ws, {"id": "q", "type": "subscribe", "payload": query})
        refused = await receive(ws)
        assert refused["type"] == "error" and refused["id"] == "q"
        assert refused["payload"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
        assert "POST /graphql" in refused["payload"][0]["message"]
        bad = {"query": EVENTS, "variables": {"userId": "x"}}
        await send(ws, {"id": "v", "type": "subscribe", "payload": bad})
        refused = await receive(ws)
        assert refused["type"] == "error"
        assert refused["payload"][0]["extensions"]["code"] == "BAD_USER_INPUT"
        await subscribe(ws, "1")
        await send(ws, {"id": "1", "type": "subscribe", "payload": {"query": EVENTS}})
        assert (await closed_with(ws))[0] == 4409  # the id is in use
    for frame in ("not json", '["a list"]', b"\x00binary"):
        async with live(daemon, admin) as ws:
            await ws.send(frame)
            assert (await closed_with(ws))[0] == 4400
    async with live(daemon, admin) as ws:
        await send(ws, {"type": "connection_init", "payload": admin})
        assert (await closed_with(ws))[0] == 4429


@pytest.mark.asyncio
async def test_reseller_sees_only_its_users(daemon: Daemon, dictionary: Dictionary) -> None:
    assert daemon.http_address is not None
    port = daemon.http_address[1]

    async def owner(user_id: int, reseller_id: int) -> None:
        users = [{"userId": user_id, "resellerId": reseller_id}]
        reply = await graphql(port, UPSERT, ADMIN_TOKEN, users=users)
        assert reply.json() == {"data": {"upsertUsers": {"upserted": 1}}}

    await owner(601, 1)
    await owner(602, 2)
    async with live(daemon, {"token": RESELLER_TOKEN}) as ws:
        for op_id, user_id in (("all", None), ("theirs", 602)):
            payload = {"query": EVENTS, "variables": {"userId": user_id}}
            await send(ws, {"id": op_id, "type": "subscribe", "payload": payload})
            refused = await receive(ws)
            assert refused["type"] == "error" and refused["id"] == op_id
            assert [e["extensions"]["code"] for e in refused["payload"]] == ["FORBIDDEN"]
        await subscribe(ws, "mine", 601)
        await acked(daemon, dictionary, "Start", 602, "r-602")
        await acked(daemon, dictionary, "Start", 601, "r-601")
        assert event(await receive(ws), "mine")["session"]["sessionId"] == "r-601"
        # ownership is checked per event: while 601 belongs to reseller 2, nothing arrives
        await owner(601, 2)
        await acked(daemon, dictionary, "Stop", 601, "r-601")
        await owner(601, 1)
        await acked(daemon, dictionary, "Start", 601, "r-601b")
        assert event(await receive(ws), "mine")["session"]["sessionId"] == "r-601b"
    # stats: admin only (totals of every reseller)
    stats = "{ stats { online byNas { nasName online } } }"
    reply = await graphql(port, stats, RESELLER2_TOKEN)
    assert reply.codes == ["FORBIDDEN"]
    reply = await graphql(port, stats, ADMIN_TOKEN)
    assert reply.json()["data"]["stats"] == {
        "online": 2,
        "byNas": [{"nasName": "nas-local", "online": 2}],
    }


def shrink_server_buffers(daemon: Daemon, client_port: int) -> None:
    """For the connection from ``client_port``: small server-side buffers. Otherwise the kernel
    buffers megabytes (~2,500 events) for a peer that does not read before the server's send
    blocks and its queue starts to fill; with them, a hundred events do."""
    threaded = daemon.http_server
    assert threaded is not None

    async def shrink() -> bool:  # on the API's loop, which owns the transports
        for protocol in list(threaded.server.server_state.connections):
            if protocol.client is not None and protocol.client[1] == client_port:
                protocol.transport.set_write_buffer_limits(high=4096)
                sock = protocol.transport.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
                return True
        return False

    if not threaded.thread.submit(shrink()).result(5):
        raise AssertionError(f"no server-side connection from port {client_port}")


@pytest.mark.asyncio
async def test_a_slow_consumer_is_dropped_and_ingest_goes_on(
    daemon: Daemon, dictionary: Dictionary
) -> None:
    assert daemon.app is not None and daemon.service is not None
    hub = daemon.app.events  # type: ignore[attr-defined]
    hub.queue_size = 64  # the default (1,000) works the same, with more packets
    slow_socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # set before connecting: the window the client offers stays small
    slow_socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow_socket.connect(("127.0.0.1", daemon.http_address[1]))  # type: ignore[index]
    admin = {"token": ADMIN_TOKEN}
    async with live(daemon, admin, sock=slow_socket) as slow, live(daemon, admin) as fast:
        shrink_server_buffers(daemon, slow_socket.getsockname()[1])
        await subscribe(slow, "slow")
        await subscribe(fast, "fast")
        received: list[dict[str, Any]] = []

        async def read_fast(count: int) -> None:
            while len(received) < count:
                received.append(event(await receive(fast), "fast"))

        # big events (long attributes) fill the buffers sooner; at most 8 packets per commit,
        # well below the queue, so only a reader that does not read can fall behind
        long = {"Connect_Info": "c" * 200, "Called_Station_Id": "d" * 200}
        start = packet(dictionary, "Start", 77, "slow-1", **long)
        start.id = 0
        assert await send_window(udp_port(daemon), [start]) == 1
        sent = 1
        while hub.dropped == 0 and sent < 5_000:
            window = []
            for ident in range(8):
                interim = packet(
                    dictionary, "Interim-Update", 77, "slow-1", Acct_Input_Octets=sent, **long
                )
                interim.id = ident
                window.append(interim)
                sent += 1
            reader = asyncio.create_task(read_fast(sent))
            assert await send_window(udp_port(daemon), window) == len(window)
            await reader
        assert hub.dropped == 1, "the slow consumer was never dropped"
        assert daemon.service.stats.acknowledged == sent  # every packet answered
        assert len(hub) == 1  # the fast one is still subscribed
        # the fast consumer got every event, in commit order (changes committed together
        # show the session as that commit left it)
        assert [e["kind"] for e in received] == ["STARTED"] + ["UPDATED"] * (sent - 1)
        octets = [e["session"]["inputOctets"] for e in received]
        assert octets == sorted(octets) and octets[-1] == sent - 1
        # the slow one, when it finally reads: what was already on the wire, then the error
        while (message := await receive(slow))["type"] == "next" and "errors" not in message[
            "payload"
        ]:
            pass
        assert message["payload"]["errors"][0]["extensions"]["code"] == "SERVICE_UNAVAILABLE"
        assert "too slow" in message["payload"]["errors"][0]["message"]
        assert await receive(slow) == {"type": "complete", "id": "slow"}
        # and the connection is still usable: subscribe again
        await subscribe(slow, "again")


@pytest.mark.asyncio
async def test_limits(daemon: Daemon, dictionary: Dictionary) -> None:
    assert daemon.app is not None
    endpoint = daemon.app.live  # type: ignore[attr-defined]
    admin = {"token": ADMIN_TOKEN}
    async with live(daemon, admin) as ws:
        for n in range(ApiSettings().max_subscriptions_per_connection):
            await subscribe(ws, f"s{n}", n)
        payload = {"query": EVENTS, "variables": {"userId": 1}}
        await send(ws, {"id": "one-too-many", "type": "subscribe", "payload": payload})
        refused = await receive(ws)
        assert refused["type"] == "error" and refused["id"] == "one-too-many"
        assert refused["payload"][0]["message"] == (
            f"At most {ApiSettings().max_subscriptions_per_connection} subscriptions per connection"
        )
        await send(ws, {"id": "s3", "type": "complete"})  # one ends: room for another
        await subscribe(ws, "s3-again", 3)
        await acked(daemon, dictionary, "Start", 3, "limit-3")
        assert event(await receive(ws), "s3-again")["session"]["sessionId"] == "limit-3"
    await all_closed(daemon)
    endpoint.max_connections = 1
    async with live(daemon, admin):
        async with live(daemon) as refused:
            assert await closed_with(refused) == (1013, "Too many WebSocket connections")
    await all_closed(daemon)
    async with live(daemon, admin) as ws:
        await subscribe(ws, "after")


async def all_closed(daemon: Daemon) -> None:
    """Until the server has ended every WebSocket handler (they end after the client's close;
    there is nothing to await from here)."""
    endpoint = daemon.app.live  # type: ignore[union-attr]
    deadline = asyncio.get_running_loop().time() + 5
    while endpoint.connections and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)
    assert endpoint.connections == 0


@pytest.mark.asyncio
async def test_tokens_are_never_logged(daemon: Daemon, caplog: pytest.LogCaptureFixture) -> None:
    """Not even at DEBUG, where websockets (under uvicorn's logger) dumps headers and frames."""
    caplog.set_level(logging.DEBUG)
    bearer = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with live(daemon, {"token": ADMIN_TOKEN}, headers=bearer) as ws:
        await subscribe(ws, "1")
    async with live(daemon) as ws:
        await send(ws, {"type": "connection_init", "payload": {"token": "wrong-token-secret"}})
        assert (await closed_with(ws))[0] == 4401
    await all_closed(daemon)
    server_side = [r for r in caplog.records if not r.name.startswith("websockets")]
    assert any("WebSocket /graphql" in r.getMessage() for r in server_side)
    for record in server_side:
        assert ADMIN_TOKEN not in record.getMessage()
        assert "wrong-token-secret" not in record.getMessage()


@pytest.mark.asyncio
async def test_stop_ends_every_subscription(daemon: Daemon) -> None:
    assert daemon.app is not None
    hub = daemon.app.events  # type: ignore[attr-defined]
    daemon.app.live.handler.connection_init_wait_timeout = timedelta(seconds=0.2)  # type: ignore[attr-defined]
    async with live(daemon) as silent:  # no connection_init in time: the protocol's 4408
        assert (await closed_with(silent))[0] == 4408
    async with live(daemon, {"token": ADMIN_TOKEN}) as ws:
        await subscribe(ws, "all")
        await subscribe(ws, "one", 5)
        assert len(hub) == 2
        loop = asyncio.get_running_loop()
        started = loop.time()
        await daemon.stop()
        assert loop.time() - started < 2.0  # no request or socket left to time out
        assert (await closed_with(ws))[0] == 1012  # "service restart"
    assert len(hub) == 0


@pytest.mark.asyncio
async def test_reload_that_revokes_a_token_ends_its_subscriptions(
    daemon_factory: Any, tmp_path: Path
) -> None:
    keep, drop = "stays-token-0001", "goes-token-0002"

    def write(tokens: list[str]) -> Path:
        path = tmp_path / "live.toml"
        lines = ['[radius]\nlisten = ["127.0.0.1:0"]\n', f'[store]\npath = "{tmp_path}/l.db"\n']
        lines.append('[api]\nlisten = "127.0.0.1:0"\n')
        for token in tokens:
            digest = hashlib.sha256(token.encode()).hexdigest()
            lines.append(
                f'[[api.tokens]]\nname = "{token[:10]}"\nsha256 = "{digest}"\nscopes = ["admin"]\n'
            )
        path.write_text("\n".join(lines))
        return path

    daemon = await daemon_factory(config.load(write([keep, drop])))
    async with live(daemon, {"token": drop}) as revoked_ws, live(daemon, {"token": keep}) as ws:
        await subscribe(revoked_ws, "r")
        await subscribe(ws, "k")
        write([keep])
        assert daemon.reload()
        message = await receive(revoked_ws)
        assert message["type"] == "next" and message["id"] == "r"
        assert message["payload"]["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        # the connection may not start anything new with the revoked token
        assert await receive(revoked_ws) == {"type": "complete", "id": "r"}
        await send(revoked_ws, {"id": "r2", "type": "subscribe", "payload": {"query": EVENTS}})
        assert (await closed_with(revoked_ws))[0] == 4401
        await sync(ws)  # the other token's connection is untouched
    # both closed: the API's thread forgets their subscriptions as it sees the connections end
    hub = daemon.app.events  # type: ignore[attr-defined]
    for _ in range(100):
        if len(hub) == 0:
            break
        await asyncio.sleep(0.01)
    assert len(hub) == 0
