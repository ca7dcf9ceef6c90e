"""Session control end to end (issue #6): GraphQL -> daemon -> Disconnect-Request -> a NAS
simulator on loopback; device limits and the limit policy; history pages and retention.

Sessions are created by real Accounting-Requests; every Disconnect-Request goes to 127.0.0.1
(coa_address), never to the NAS-IP-Address inside the packets.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from pyrad.dictionary import Dictionary

from radtrack.daemon import Daemon
from radtrack.model import Session
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
from tests.httpclient import Reply, graphql
from tests.nas import Nas


@dataclass
class Rig:
    """A daemon whose one NAS ("gw", 127.0.0.1) is a Nas simulator, and ways to drive both."""

    daemon: Daemon
    nas: Nas
    dictionary: Dictionary

    async def start(self, sid: str, user: str, ts: int) -> None:
        await self._send(
            Acct_Status_Type="Start",
            Acct_Session_Id=sid,
            User_Name=user,
            Framed_IP_Address="100.64.0.9",
            Event_Timestamp=ts,
        )

    async def stop(self, sid: str, user: str, ts: int) -> None:
        await self._send(
            Acct_Status_Type="Stop",
            Acct_Session_Id=sid,
            User_Name=user,
            Acct_Terminate_Cause="User-Request",
            Acct_Session_Time=60,
            Acct_Input_Octets=123,
            Event_Timestamp=ts,
        )

    async def _send(self, **attributes: Any) -> None:
        packet = acct_packet(self.dictionary, NAS_IP_Address="192.0.2.1", **attributes)
        reply = await send_pyrad(udp_port(self.daemon), packet, dictionary=self.dictionary)
        assert reply is not None

    def online(self, user_id: int) -> list[Session]:
        return self.daemon.index.for_user(user_id)

    async def graphql(self, query: str, token: str = ADMIN_TOKEN, **variables: Any) -> Reply:
        assert self.daemon.http_address is not None
        return await graphql(self.daemon.http_address[1], query, token, **variables)


RigFactory = Callable[..., Awaitable[Rig]]


@pytest_asyncio.fixture
async def rig(
    daemon_factory: Any, tmp_path: Path, dictionary: Dictionary
) -> AsyncIterator[RigFactory]:
    """``await rig(mode, **sections)``: a NAS simulator answering in ``mode`` ("ack", "nak" or
    "silent") and a daemon sending it Disconnect-Requests (0.2 s timeout, 2 attempts);
    ``sections`` as for make_settings (``users={"default_max_sessions": 2}``)."""
    transports: list[asyncio.DatagramTransport] = []

    async def start(mode: str = "ack", **sections: Any) -> Rig:
        transport, nas = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: Nas(dictionary, mode), local_addr=("127.0.0.1", 0)
        )
        transports.append(transport)
        gw = {
            "name": "gw",
            "address": "127.0.0.1",
            "secret": SECRET,
            "coa_address": "127.0.0.1",
            "coa_port": transport.get_extra_info("sockname")[1],
        }
        radius = {"clients": [gw], "disconnect_timeout": 0.2, "disconnect_attempts": 2}
        radius.update(sections.pop("radius", {}))
        daemon = await daemon_factory(make_settings(tmp_path, radius=radius, **sections))
        return Rig(daemon, nas, dictionary)

    yield start
    for transport in transports:
        transport.close()


DISCONNECT = """mutation($id: ID!) { disconnectSession(id: $id) {
  id sessionId nasName status errorCause attempts } }"""
ONLINE = "query($u: Int!) { getOnlineSessions(userId: $u) { id sessionId disconnecting } }"


@pytest.mark.asyncio
async def test_disconnect_ack_marks_session_until_its_stop(rig: RigFactory) -> None:
    r = await rig("ack")
    await r.start("s-1", "501", 1_700_000_000)
    [session] = r.online(501)
    result = (await r.graphql(DISCONNECT, id=session.id)).json()["data"]["disconnectSession"]
    assert result == {
        "id": session.id,
        "sessionId": "s-1",
        "nasName": "gw",
        "status": "ACK",
        "errorCause": None,
        "attempts": 1,
    }
    # the request named the session the way the NAS knows it
    [request] = r.nas.requests
    assert request["Acct-Session-Id"] == ["s-1"]
    assert request["User-Name"] == ["501"]
    assert request["NAS-IP-Address"] == ["192.0.2.1"]
    assert request["Framed-IP-Address"] == ["100.64.0.9"]
    assert "Event-Timestamp" in request
    online = (await r.graphql(ONLINE, u=501)).json()["data"]
    assert online["getOnlineSessions"][0]["disconnecting"] is True
    await r.stop("s-1", "501", 1_700_000_100)
    online = (await r.graphql(ONLINE, u=501)).json()["data"]
    assert online["getOnlineSessions"] == []


@pytest.mark.asyncio
async def test_disconnect_nak_reports_error_cause(rig: RigFactory) -> None:
    r = await rig("nak")
    await r.start("s-2", "502", 1_700_000_000)
    [session] = r.online(502)
    result = (await r.graphql(DISCONNECT, id=session.id)).json()["data"]["disconnectSession"]
    assert result["status"] == "NAK"
    assert result["errorCause"] == "Session-Context-Not-Found"
    assert session.disconnecting is False


@pytest.mark.asyncio
async def test_disconnect_timeout_within_configured_time(rig: RigFactory) -> None:
    r = await rig("silent")
    await r.start("s-3", "503", 1_700_000_000)
    [session] = r.online(503)
    began = time.monotonic()
    reply = await r.graphql(DISCONNECT, id=session.id)
    elapsed = time.monotonic() - began
    result = reply.json()["data"]["disconnectSession"]
    assert result["status"] == "TIMEOUT" and result["attempts"] == 2
    assert 0.35 <= elapsed <= 1.5  # 0.2 s x 2 attempts, plus HTTP
    assert len(r.nas.requests) == 2
    assert r.nas.requests[0].raw_packet == r.nas.requests[1].raw_packet  # same id, same auth.


@pytest.mark.asyncio
async def test_reseller_cannot_disconnect_other_resellers_sessions(rig: RigFactory) -> None:
    r = await rig("ack")
    upsert = "mutation($u: [UserInput!]!) { upsertUsers(users: $u) { upserted } }"
    users = [
        {"userId": 601, "username": "alice", "resellerId": 1},
        {"userId": 602, "username": "bob", "resellerId": 2},
    ]
    assert (await r.graphql(upsert, u=users)).status == 200
    await r.start("alice-1", "alice", 1_700_000_000)
    await r.start("bob-1", "bob", 1_700_000_000)
    [bob] = r.online(602)
    refused = await r.graphql(DISCONNECT, RESELLER_TOKEN, id=bob.id)
    assert refused.codes == ["BAD_USER_INPUT"]
    assert r.nas.requests == []
    allowed = await r.graphql(DISCONNECT, RESELLER2_TOKEN, id=bob.id)
    assert allowed.json()["data"]["disconnectSession"]["status"] == "ACK"
    every = "mutation($u: Int!) { disconnectUserSessions(userId: $u) { sessionId status } }"
    refused = await r.graphql(every, RESELLER2_TOKEN, u=601)
    assert refused.codes == ["FORBIDDEN"]
    mine = await r.graphql(every, RESELLER_TOKEN, u=601)
    assert mine.json()["data"]["disconnectUserSessions"] == [
        {"sessionId": "alice-1", "status": "ACK"}
    ]
    assert r.nas.session_ids() == ["bob-1", "alice-1"]


@pytest.mark.asyncio
async def test_unknown_session_id_is_bad_user_input(rig: RigFactory) -> None:
    r = await rig("ack")
    reply = await r.graphql(DISCONNECT, id="nope")
    assert reply.codes == ["BAD_USER_INPUT"]


LIMIT = "query($u: Int!) { deviceLimit(userId: $u) { userId online limit exceeded } }"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("policy", "victim"), [("disconnect-oldest", "dev-1"), ("disconnect-newest", "dev-3")]
)
async def test_limit_policy_disconnects_oldest_or_newest(
    rig: RigFactory, policy: str, victim: str
) -> None:
    r = await rig("ack", users={"default_max_sessions": 2, "limit_policy": policy})
    for n in (1, 2, 3):
        await r.start(f"dev-{n}", "700", 1_700_000_000 + n)
    for _ in range(100):
        if r.nas.requests:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)  # a second, wrong request would have arrived by now
    assert r.nas.session_ids() == [victim]
    limit = (await r.graphql(LIMIT, u=700)).json()["data"]
    assert limit["deviceLimit"] == {"userId": 700, "online": 3, "limit": 2, "exceeded": True}


@pytest.mark.asyncio
async def test_limit_policy_off_only_reports(
    rig: RigFactory, caplog: pytest.LogCaptureFixture
) -> None:
    r = await rig("ack", users={"default_max_sessions": 1})
    with caplog.at_level("INFO"):
        for n in (1, 2):
            await r.start(f"off-{n}", "701", 1_700_000_000 + n)
        await asyncio.sleep(0.1)
    assert r.nas.requests == []
    assert "event=device_limit_exceeded user=701 online=2 limit=1 policy=off" in caplog.text


HISTORY = """query($u: Int!, $first: Int, $after: String, $from: DateTime, $to: DateTime) {
  sessionHistory(userId: $u, first: $first, after: $after, from: $from, to: $to) {
    sessions { sessionId startTime stopTime terminateCause closeReason inputOctets duration }
    nextCursor } }"""


@pytest.mark.asyncio
async def test_history_pages_newest_first(rig: RigFactory) -> None:
    r = await rig("ack", store={"history_page_max": 3})
    base = 1_700_000_000
    for n in range(5):
        await r.start(f"h-{n}", "800", base + n * 1000)
        if n < 4:
            await r.stop(f"h-{n}", "800", base + n * 1000 + 60)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        reply = await r.graphql(HISTORY, u=800, first=2, after=cursor)
        page = reply.json()["data"]["sessionHistory"]
        seen += [s["sessionId"] for s in page["sessions"]]
        pages += 1
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == ["h-4", "h-3", "h-2", "h-1", "h-0"] and pages == 3
    first = (await r.graphql(HISTORY, u=800, first=2)).json()
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
    window = await r.graphql(
        HISTORY, u=800, first=3, **{"from": "2023-11-14T22:32:00Z"}, to="2023-11-14T23:00:00Z"
    )
    assert [s["sessionId"] for s in window.json()["data"]["sessionHistory"]["sessions"]] == ["h-2"]
    too_big = await r.graphql(HISTORY, u=800, first=4)
    assert too_big.codes == ["BAD_USER_INPUT"]
    bad_cursor = await r.graphql(HISTORY, u=800, after="garbage!")
    assert bad_cursor.codes == ["BAD_USER_INPUT"]
    forbidden = await r.graphql(HISTORY, RESELLER_TOKEN, u=800)
    assert forbidden.codes == ["FORBIDDEN"]


@pytest.mark.asyncio
async def test_retention_prunes_only_old_closed_sessions(rig: RigFactory) -> None:
    r = await rig("ack", store={"retention_days": 30})
    now = 1_700_000_000
    day = 86_400
    await r.start("old", "900", now - 40 * day)
    await r.stop("old", "900", now - 40 * day + 60)
    await r.start("recent", "900", now - 10 * day)
    await r.stop("recent", "900", now - 10 * day + 60)
    await r.start("ancient-but-open", "900", now - 50 * day)
    assert await r.daemon.retention.prune(now=now) == 1
    reply = await r.graphql(HISTORY, u=900, first=10)
    names = [s["sessionId"] for s in reply.json()["data"]["sessionHistory"]["sessions"]]
    assert names == ["recent", "ancient-but-open"]
