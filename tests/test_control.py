"""Session control end to end (issue #6): GraphQL -> daemon -> Disconnect-Request -> a NAS
simulator on loopback; device limits and the limit policy; history pages and retention.

Sessions are created by real Accounting-Requests; every Disconnect-Request goes to 127.0.0.1
(coa_address), never to the NAS-IP-Address inside the packets.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from pyrad.dictionary import Dictionary
from pyrad.packet import CoAPacket, DisconnectNAK

from radtrack.daemon import Daemon
from tests.conftest import (
    ADMIN_TOKEN,
    RESELLER2_TOKEN,
    RESELLER_TOKEN,
    SECRET,
    acct_packet,
    make_settings,
    send_pyrad,
    udp_port,
)
from tests.httpclient import graphql


class Nas(asyncio.DatagramProtocol):
    """Answers Disconnect-Requests like a NAS would: ``mode`` is "ack", "nak" or "silent"."""

    def __init__(self, dictionary: Dictionary, mode: str) -> None:
        self.dictionary = dictionary
        self.mode = mode
        self.requests: list[CoAPacket] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        request = CoAPacket(packet=data, dict=self.dictionary, secret=SECRET.encode())
        assert request.VerifyCoARequest() and request.verify_message_authenticator()
        self.requests.append(request)
        if self.mode == "silent":
            return
        reply = request.CreateReply()
        if self.mode == "nak":
            reply.code = DisconnectNAK
            reply["Error-Cause"] = "Session-Context-Not-Found"
        assert self.transport is not None
        self.transport.sendto(reply.ReplyPacket(), addr)

    def session_ids(self) -> list[str]:
        return [r["Acct-Session-Id"][0] for r in self.requests]


@pytest_asyncio.fixture
async def nas_sim(dictionary: Dictionary) -> AsyncIterator[Callable[[str], Any]]:
    transports: list[asyncio.DatagramTransport] = []

    async def start(mode: str) -> tuple[Nas, int]:
        transport, nas = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: Nas(dictionary, mode), local_addr=("127.0.0.1", 0)
        )
        transports.append(transport)
        return nas, transport.get_extra_info("sockname")[1]

    yield start
    for transport in transports:
        transport.close()


async def control_daemon(
    daemon_factory: Any, tmp_path: Path, coa_port: int, **sections: Any
) -> Daemon:
    radius = {
        "clients": [
            {
                "name": "gw",
                "address": "127.0.0.1",
                "secret": SECRET,
                "coa_address": "127.0.0.1",
                "coa_port": coa_port,
            }
        ],
        "disconnect_timeout": 0.2,
        "disconnect_attempts": 2,
    }
    radius.update(sections.pop("radius", {}))
    return await daemon_factory(make_settings(tmp_path, radius=radius, **sections))  # type: ignore[no-any-return]


async def start(daemon: Daemon, dictionary: Dictionary, sid: str, user: str, ts: int) -> None:
    packet = acct_packet(
        dictionary,
        User_Name=user,
        Acct_Status_Type="Start",
        Acct_Session_Id=sid,
        NAS_IP_Address="192.0.2.1",
        Framed_IP_Address="100.64.0.9",
        Event_Timestamp=ts,
    )
    assert await send_pyrad(udp_port(daemon), packet, dictionary=dictionary) is not None


async def stop(daemon: Daemon, dictionary: Dictionary, sid: str, user: str, ts: int) -> None:
    packet = acct_packet(
        dictionary,
        User_Name=user,
        Acct_Status_Type="Stop",
        Acct_Session_Id=sid,
        NAS_IP_Address="192.0.2.1",
        Acct_Terminate_Cause="User-Request",
        Acct_Session_Time=60,
        Acct_Input_Octets=123,
        Event_Timestamp=ts,
    )
    assert await send_pyrad(udp_port(daemon), packet, dictionary=dictionary) is not None


def http_port(daemon: Daemon) -> int:
    assert daemon.http_address is not None
    return daemon.http_address[1]


DISCONNECT = """mutation($id: ID!) { disconnectSession(id: $id) {
  id sessionId nasName status errorCause attempts } }"""
ONLINE = "query($u: Int!) { getOnlineSessions(userId: $u) { id sessionId disconnecting } }"


@pytest.mark.asyncio
async def test_disconnect_ack_marks_session_until_its_stop(
    daemon_factory: Any, tmp_path: Path, dictionary: Dictionary, nas_sim: Any
) -> None:
    nas, port = await nas_sim("ack")
    daemon = await control_daemon(daemon_factory, tmp_path, port)
    await start(daemon, dictionary, "s-1", "501", 1_700_000_000)
    [session] = daemon.index.for_user(501)
    reply = await graphql(http_port(daemon), DISCONNECT, ADMIN_TOKEN, id=session.id)
    result = reply.json()["data"]["disconnectSession"]
    assert result == {
        "id": session.id,
        "sessionId": "s-1",
        "nasName": "gw",
        "status": "ACK",
        "errorCause": None,
        "attempts": 1,
    }
    # the request named the session the way the NAS knows it
    [request] = nas.requests
    assert request["Acct-Session-Id"] == ["s-1"]
    assert request["User-Name"] == ["501"]
    assert request["NAS-IP-Address"] == ["192.0.2.1"]
    assert request["Framed-IP-Address"] == ["100.64.0.9"]
    assert "Event-Timestamp" in request
    online = (await graphql(http_port(daemon), ONLINE, ADMIN_TOKEN, u=501)).json()["data"]
    assert online["getOnlineSessions"][0]["disconnecting"] is True
    await stop(daemon, dictionary, "s-1", "501", 1_700_000_100)
    online = (await graphql(http_port(daemon), ONLINE, ADMIN_TOKEN, u=501)).json()["data"]
    assert online["getOnlineSessions"] == []


@pytest.mark.asyncio
async def test_disconnect_nak_reports_error_cause(
    daemon_factory: Any, tmp_path: Path, dictionary: Dictionary, nas_sim: Any
) -> None:
    _, port = await nas_sim("nak")
    daemon = await control_daemon(daemon_factory, tmp_path, port)
    await start(daemon, dictionary, "s-2", "502", 1_700_000_000)
    [session] = daemon.index.for_user(502)
    reply = await graphql(http_port(daemon), DISCONNECT, ADMIN_TOKEN, id=session.id)
    result = reply.json()["data"]["disconnectSession"]
    assert result["status"] == "NAK"
    assert result["errorCause"] == "Session-Context-Not-Found"
    assert session.disconnecting is False


@pytest.mark.asyncio
async def test_disconnect_timeout_within_configured_time(
    daemon_factory: Any, tmp_path: Path, dictionary: Dictionary, nas_sim: Any
) -> None:
    nas, port = await nas_sim("silent")
    daemon = await control_daemon(daemon_factory, tmp_path, port)
    await start(daemon, dictionary, "s-3", "503", 1_700_000_000)
    [session] = daemon.index.for_user(503)
    began = time.monotonic()
    reply = await graphql(http_port(daemon), DISCONNECT, ADMIN_TOKEN, id=session.id)
    elapsed = time.monotonic() - began
    result = reply.json()["data"]["disconnectSession"]
    assert result["status"] == "TIMEOUT" and result["attempts"] == 2
    assert 0.35 <= elapsed <= 1.5  # 0.2 s x 2 attempts, plus HTTP
    assert len(nas.requests) == 2
    assert nas.requests[0].raw_packet == nas.requests[1].raw_packet  # same id, same authenticator


@pytest.mark.asyncio
async def test_reseller_cannot_disconnect_other_resellers_sessions(
    daemon_factory: Any, tmp_path: Path, dictionary: Dictionary, nas_sim: Any
) -> None:
    nas, port = await nas_sim("ack")
    daemon = await control_daemon(daemon_factory, tmp_path, port)
    upsert = "mutation($u: [UserInput!]!) { upsertUsers(users: $u) { upserted } }"
    users = [
        {"userId": 601, "username": "alice", "resellerId": 1},
        {"userId": 602, "username": "bob", "resellerId": 2},
    ]
    assert (await graphql(http_port(daemon), upsert, ADMIN_TOKEN, u=users)).status == 200
    await start(daemon, dictionary, "alice-1", "alice", 1_700_000_000)
    await start(daemon, dictionary, "bob-1", "bob", 1_700_000_000)
    [bob] = daemon.index.for_user(602)
    refused = await graphql(http_port(daemon), DISCONNECT, RESELLER_TOKEN, id=bob.id)
    assert refused.codes == ["BAD_USER_INPUT"]
    assert nas.requests == []
    allowed = await graphql(http_port(daemon), DISCONNECT, RESELLER2_TOKEN, id=bob.id)
    assert allowed.json()["data"]["disconnectSession"]["status"] == "ACK"
    every = "mutation($u: Int!) { disconnectUserSessions(userId: $u) { sessionId status } }"
    refused = await graphql(http_port(daemon), every, RESELLER2_TOKEN, u=601)
    assert refused.codes == ["FORBIDDEN"]
    mine = await graphql(http_port(daemon), every, RESELLER_TOKEN, u=601)
    assert mine.json()["data"]["disconnectUserSessions"] == [
        {"sessionId": "alice-1", "status": "ACK"}
    ]
    assert nas.session_ids() == ["bob-1", "alice-1"]


@pytest.mark.asyncio
async def test_unknown_session_id_is_bad_user_input(
    daemon_factory: Any, tmp_path: Path, nas_sim: Any
) -> None:
    _, port = await nas_sim("ack")
    daemon = await control_daemon(daemon_factory, tmp_path, port)
    reply = await graphql(http_port(daemon), DISCONNECT, ADMIN_TOKEN, id="nope")
    assert reply.codes == ["BAD_USER_INPUT"]


LIMIT = "query($u: Int!) { deviceLimit(userId: $u) { userId online limit exceeded } }"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("policy", "victim"), [("disconnect-oldest", "dev-1"), ("disconnect-newest", "dev-3")]
)
async def test_limit_policy_disconnects_oldest_or_newest(
    daemon_factory: Any,
    tmp_path: Path,
    dictionary: Dictionary,
    nas_sim: Any,
    policy: str,
    victim: str,
) -> None:
    nas, port = await nas_sim("ack")
    daemon = await control_daemon(
        daemon_factory,
        tmp_path,
        port,
        users={"default_max_sessions": 2, "limit_policy": policy},
    )
    for n in (1, 2, 3):
        await start(daemon, dictionary, f"dev-{n}", "700", 1_700_000_000 + n)
    for _ in range(100):
        if nas.requests:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)  # a second, wrong request would have arrived by now
    assert nas.session_ids() == [victim]
    limit = (await graphql(http_port(daemon), LIMIT, ADMIN_TOKEN, u=700)).json()["data"]
    assert limit["deviceLimit"] == {"userId": 700, "online": 3, "limit": 2, "exceeded": True}


@pytest.mark.asyncio
async def test_limit_policy_off_only_reports(
    daemon_factory: Any,
    tmp_path: Path,
    dictionary: Dictionary,
    nas_sim: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    nas, port = await nas_sim("ack")
    daemon = await control_daemon(daemon_factory, tmp_path, port, users={"default_max_sessions": 1})
    with caplog.at_level("INFO"):
        for n in (1, 2):
            await start(daemon, dictionary, f"off-{n}", "701", 1_700_000_000 + n)
        await asyncio.sleep(0.1)
    assert nas.requests == []
    assert "event=device_limit_exceeded user=701 online=2 limit=1 policy=off" in caplog.text


HISTORY = """query($u: Int!, $first: Int, $after: String, $from: DateTime, $to: DateTime) {
  sessionHistory(userId: $u, first: $first, after: $after, from: $from, to: $to) {
    sessions { sessionId startTime stopTime terminateCause closeReason inputOctets duration }
    nextCursor } }"""


@pytest.mark.asyncio
async def test_history_pages_newest_first(
    daemon_factory: Any, tmp_path: Path, dictionary: Dictionary, nas_sim: Any
) -> None:
    _, port = await nas_sim("ack")
    daemon = await control_daemon(daemon_factory, tmp_path, port, store={"history_page_max": 3})
    base = 1_700_000_000
    for n in range(5):
        await start(daemon, dictionary, f"h-{n}", "800", base + n * 1000)
        if n < 4:
            await stop(daemon, dictionary, f"h-{n}", "800", base + n * 1000 + 60)
    api = http_port(daemon)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        reply = await graphql(api, HISTORY, ADMIN_TOKEN, u=800, first=2, after=cursor)
        page = reply.json()["data"]["sessionHistory"]
        seen += [s["sessionId"] for s in page["sessions"]]
        pages += 1
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == ["h-4", "h-3", "h-2", "h-1", "h-0"] and pages == 3
    first = (await graphql(api, HISTORY, ADMIN_TOKEN, u=800, first=2)).json()
    open_one, closed = first["data"]["sessionHistory"]["sessions"]
    assert open_one["stopTime"] is None
    assert closed == {
        "sessionId": "h-3",
        "startTime": "2023-11-14T23:03:20Z",
        "stopTime": "2023-11-14T23:04:20Z",
        "terminateCause": "User-Request",
        "closeReason": "stop",
        "inputOctets": 123,
        "duration": 60,
    }
    window = await graphql(
        api,
        HISTORY,
        ADMIN_TOKEN,
        u=800,
        first=3,
        **{"from": "2023-11-14T22:32:00Z"},
        to="2023-11-14T23:00:00Z",
    )
    assert [s["sessionId"] for s in window.json()["data"]["sessionHistory"]["sessions"]] == ["h-2"]
    too_big = await graphql(api, HISTORY, ADMIN_TOKEN, u=800, first=4)
    assert too_big.codes == ["BAD_USER_INPUT"]
    bad_cursor = await graphql(api, HISTORY, ADMIN_TOKEN, u=800, after="garbage!")
    assert bad_cursor.codes == ["BAD_USER_INPUT"]
    forbidden = await graphql(api, HISTORY, RESELLER_TOKEN, u=800)
    assert forbidden.codes == ["FORBIDDEN"]


@pytest.mark.asyncio
async def test_retention_prunes_only_old_closed_sessions(
    daemon_factory: Any, tmp_path: Path, dictionary: Dictionary, nas_sim: Any
) -> None:
    _, port = await nas_sim("ack")
    daemon = await control_daemon(daemon_factory, tmp_path, port, store={"retention_days": 30})
    now = 1_700_000_000
    day = 86_400
    await start(daemon, dictionary, "old", "900", now - 40 * day)
    await stop(daemon, dictionary, "old", "900", now - 40 * day + 60)
    await start(daemon, dictionary, "recent", "900", now - 10 * day)
    await stop(daemon, dictionary, "recent", "900", now - 10 * day + 60)
    await start(daemon, dictionary, "ancient-but-open", "900", now - 50 * day)
    assert await daemon.prune_history(now=now) == 1
    reply = await graphql(http_port(daemon), HISTORY, ADMIN_TOKEN, u=900, first=10)
    names = [s["sessionId"] for s in reply.json()["data"]["sessionHistory"]["sessions"]]
    assert names == ["recent", "ancient-but-open"]
