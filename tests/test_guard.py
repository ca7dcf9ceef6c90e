"""Slow clients are cut off; normal ones are not (radtrack/api/guard.py, issue #17: 50
connections sending their headers a byte at a time stayed open over 25 s).

The real embedded uvicorn, with httptools and with h11, on 127.0.0.1 and a free port; clients
on real sockets. Trickling bytes with sleeps in between is the behaviour under test here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from radtrack.api.app import create_app
from radtrack.api.guard import ConnectionGuard
from radtrack.api.server import EmbeddedServer, bind_tcp
from radtrack.api.settings import ApiSettings
from radtrack.daemon import Daemon
from tests.httpclient import Reply, http, parse_reply
from tests.test_api import ADMIN, TOKENS, FakeBackend, populated

PARSERS = ["httptools", "h11"]
QUERY = json.dumps({"query": "{ onlineSessionCount(userId: 10) }"}).encode()
HEAD = (
    "POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    f"Authorization: Bearer {ADMIN}\r\n"
)


@dataclass
class Guarded:
    port: int
    guard: ConnectionGuard
    backend: FakeBackend


@contextlib.asynccontextmanager
async def serving(http_parser: str, **overrides: Any) -> AsyncIterator[Guarded]:
    settings = ApiSettings(tokens=TOKENS, **overrides)
    backend = populated()
    guard = ConnectionGuard(settings)
    server = EmbeddedServer(create_app(backend, settings), guard=guard, http=http_parser)
    sock = bind_tcp("127.0.0.1", 0)
    port = sock.getsockname()[1]
    await server.start(sock)
    try:
        yield Guarded(port, guard, backend)
    finally:
        await server.stop(2.0)


async def query(port: int) -> Reply:
    headers = [("Content-Type", "application/json"), ("Authorization", f"Bearer {ADMIN}")]
    return await http(port, "POST", "/graphql", QUERY, headers)


async def read_all(reader: asyncio.StreamReader) -> bytes:
    with contextlib.suppress(ConnectionError):
        return await reader.read()
    return b""


async def slow_client(
    port: int, prefix: bytes, trickle: bytes, every: float
) -> tuple[float, bytes]:
    """Send ``prefix``, then ``trickle`` a byte every ``every`` s until the server closes;
    (seconds until it did, what it answered)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    try:
        writer.write(prefix)
        answer = asyncio.ensure_future(read_all(reader))
        for byte in trickle:
            if answer.done():
                break
            with contextlib.suppress(ConnectionError):
                writer.write(bytes([byte]))
                await writer.drain()
            await asyncio.wait([answer], timeout=every)
        raw = await asyncio.wait_for(answer, 10)
        return time.monotonic() - started, raw
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def is_timeout(raw: bytes) -> bool:
    reply = parse_reply(raw)
    return (
        reply.status == 408
        and reply.headers["connection"] == "close"
        and reply.codes == ["REQUEST_TIMEOUT"]
        and "api.request_timeout" in reply.json()["errors"][0]["message"]
    )


@pytest.mark.asyncio
@pytest.mark.parametrize("http_parser", PARSERS)
async def test_slow_clients_are_cut_off_while_queries_go_on(http_parser: str) -> None:
    timeout = 1.0
    async with serving(http_parser, request_timeout=timeout) as api:
        slow_headers = [
            slow_client(api.port, b"POST /graphql HTTP/1.1\r\n", b"X-Slow: " + b"a" * 100, 0.1)
            for _ in range(20)
        ]
        body = HEAD.encode() + f"Content-Length: {len(QUERY)}\r\n\r\n".encode()
        slow_body = [slow_client(api.port, body, QUERY, 0.2) for _ in range(5)]
        silent = [slow_client(api.port, b"", b"", 0.0) for _ in range(5)]
        clients = asyncio.gather(*slow_headers, *slow_body, *silent)

        answered = []
        began = time.monotonic()
        while time.monotonic() - began < timeout * 1.5:  # beside them, queries go on
            sent = time.monotonic()
            reply = await query(api.port)
            answered.append(time.monotonic() - sent)
            assert reply.json() == {"data": {"onlineSessionCount": 2}}
            await asyncio.sleep(0.05)
        results = await clients

    assert len(answered) >= 10 and max(answered) < 0.5
    for elapsed, raw in results:
        assert timeout * 0.9 <= elapsed < timeout + 1.5, elapsed
        assert is_timeout(raw), raw
    assert api.guard.timed_out == 30
    assert api.guard.open == 0


@pytest.mark.asyncio
@pytest.mark.parametrize("http_parser", PARSERS)
async def test_the_clock_counts_only_the_time_to_send_a_request(http_parser: str) -> None:
    """Idle time between requests on a kept-alive connection and the app's time to answer are
    not the client's: a connection that waits longer than request_timeout in either is fine."""
    async with serving(http_parser, request_timeout=0.5) as api:
        reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
        request = HEAD.encode() + f"Content-Length: {len(QUERY)}\r\n\r\n".encode() + QUERY
        try:
            for _ in range(2):  # the second after an idle second
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                body = await reader.readexactly(length)
                assert json.loads(body) == {"data": {"onlineSessionCount": 2}}
                await asyncio.sleep(1.0)
        finally:
            writer.close()
            await writer.wait_closed()

        api.backend.gate = asyncio.Event()  # the app takes a second and a half to answer
        upsert = {"query": "mutation { upsertUsers(users: [{userId: 5}]) { upserted } }"}
        headers = [("Content-Type", "application/json"), ("Authorization", f"Bearer {ADMIN}")]
        slow = asyncio.ensure_future(
            http(api.port, "POST", "/graphql", json.dumps(upsert).encode(), headers)
        )
        await asyncio.sleep(1.5)
        api.backend.gate.set()
        assert (await slow).json() == {"data": {"upsertUsers": {"upserted": 1}}}
        assert api.guard.timed_out == 0


@pytest.mark.asyncio
@pytest.mark.parametrize("http_parser", PARSERS)
async def test_connections_over_the_cap_are_refused(http_parser: str) -> None:
    async with serving(http_parser, max_connections=3, request_timeout=30.0) as api:
        held = [await asyncio.open_connection("127.0.0.1", api.port) for _ in range(3)]
        reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
        raw = await asyncio.wait_for(read_all(reader), 5)
        writer.close()
        refused = parse_reply(raw)
        assert refused.status == 503 and refused.codes == ["SERVICE_UNAVAILABLE"]
        assert "api.max_connections = 3" in refused.json()["errors"][0]["message"]
        assert api.guard.refused == 1 and api.guard.open == 3
        for _, held_writer in held:
            held_writer.close()
        deadline = time.monotonic() + 5
        while api.guard.open and time.monotonic() < deadline:
            await asyncio.sleep(0.01)  # the server sees the closes: nothing to await on
        reply = await query(api.port)
        assert reply.json() == {"data": {"onlineSessionCount": 2}}


@pytest.mark.asyncio
@pytest.mark.parametrize("http_parser", PARSERS)
async def test_a_websocket_leaves_the_count_and_the_clock(http_parser: str) -> None:
    async with serving(http_parser, request_timeout=0.5, max_connections=1) as api:
        url = f"ws://127.0.0.1:{api.port}/graphql"
        protocols = [Subprotocol("graphql-transport-ws")]
        async with connect(url, subprotocols=protocols, proxy=None) as ws:
            await ws.send(json.dumps({"type": "connection_init", "payload": {"token": ADMIN}}))
            assert json.loads(await ws.recv())["type"] == "connection_ack"
            assert api.guard.open == 0
            await asyncio.sleep(1.0)  # twice the request timeout
            await ws.send(json.dumps({"type": "ping"}))
            assert json.loads(await ws.recv())["type"] == "pong"
            reply = await query(api.port)  # the one HTTP connection allowed is free
            assert reply.status == 200
        assert api.guard.timed_out == 0


@pytest.mark.asyncio
async def test_timeouts_are_counted_in_the_metrics(daemon_factory: Any) -> None:
    daemon: Daemon = await daemon_factory(api={"request_timeout": 0.5, "max_connections": 50})
    assert daemon.http_address is not None
    port = daemon.http_address[1]
    elapsed, raw = await slow_client(port, b"GET /metrics HTTP/1.1\r\n", b"X" * 50, 0.1)
    assert is_timeout(raw) and elapsed < 2.0
    reply = await http(port, "GET", "/metrics")
    samples = {
        sample.name: sample.value
        for family in text_string_to_metric_families(reply.body.decode())
        for sample in family.samples
    }
    assert samples["radtrack_api_connections_timed_out_total"] == 1
    assert samples["radtrack_api_connections_refused_total"] == 0
    assert samples["radtrack_api_connections_open"] == 1  # the scrape's own
