"""Issue 19 end to end: a NAS that reboots (or just ends a session) reuses its Acct-Session-Ids.

The issue's exact sequences go to a real daemon as RADIUS over UDP from pyrad's client; the
answers are read back the way users read them: getOnlineSessions and sessionHistory over HTTP,
the SQLite file (what `radtrack sessions` reads), and the online set rebuilt after a restart.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from pyrad.dictionary import Dictionary

from radtrack.daemon import Daemon
from radtrack.store import journal
from tests.conftest import ADMIN_TOKEN, acct_packet, make_settings, send_pyrad, udp_port
from tests.httpclient import graphql

T = 1_705_314_600
NAS = "192.0.2.1"
ONLINE = "query($u: Int!) { getOnlineSessions(userId: $u) { id sessionId startTime } }"
HISTORY = """query($u: Int!) { sessionHistory(userId: $u) {
  sessions { id sessionId startTime stopTime closeReason } } }"""


async def send(daemon: Daemon, dictionary: Dictionary, status: str, at: int, **attrs: Any) -> None:
    packet = acct_packet(
        dictionary, Acct_Status_Type=status, NAS_IP_Address=NAS, Event_Timestamp=at, **attrs
    )
    reply = await send_pyrad(udp_port(daemon), packet, dictionary=dictionary)
    assert reply is not None  # acknowledged: the effect is on disk


async def session(
    daemon: Daemon, dictionary: Dictionary, status: str, sid: str, at: int, **attrs: Any
) -> None:
    await send(daemon, dictionary, status, at, User_Name="5001", Acct_Session_Id=sid, **attrs)


async def online(daemon: Daemon) -> list[dict[str, Any]]:
    assert daemon.http_address is not None
    reply = await graphql(daemon.http_address[1], ONLINE, ADMIN_TOKEN, u=5001)
    return reply.json()["data"]["getOnlineSessions"]  # type: ignore[no-any-return]


async def history(daemon: Daemon) -> list[dict[str, Any]]:
    assert daemon.http_address is not None
    reply = await graphql(daemon.http_address[1], HISTORY, ADMIN_TOKEN, u=5001)
    return reply.json()["data"]["sessionHistory"]["sessions"]  # type: ignore[no-any-return]


def stored_online(db: Path) -> list[tuple[str, str, float]]:
    """What `radtrack sessions` lists: the acknowledged rows, journal included."""
    conn = journal.open_current(db)
    try:
        return conn.execute(
            "SELECT id, session_id, start_time FROM current_sessions "
            "WHERE stop_time IS NULL ORDER BY start_time"
        ).fetchall()
    finally:
        conn.close()


def iso(at: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


@pytest.mark.asyncio
async def test_start_after_accounting_on_and_after_stop_is_online_and_survives_a_restart(
    daemon_factory: Any, tmp_path: Path, dictionary: Dictionary
) -> None:
    settings = make_settings(tmp_path)
    daemon = await daemon_factory(settings)
    # X1: Start, the NAS reboots (Accounting-On), X1 again for a new session
    await session(daemon, dictionary, "Start", "X1", T)
    await send(daemon, dictionary, "Accounting-On", T + 100)
    await session(daemon, dictionary, "Start", "X1", T + 200)
    # X2: Start, Stop, X2 again
    await session(daemon, dictionary, "Start", "X2", T)
    await session(daemon, dictionary, "Stop", "X2", T + 50, Acct_Session_Time=50)
    await session(daemon, dictionary, "Start", "X2", T + 300)

    now = await online(daemon)
    assert [(s["sessionId"], s["startTime"]) for s in now] == [
        ("X1", iso(T + 200)),
        ("X2", iso(T + 300)),
    ]
    db = settings.store.path
    assert [(sid, start) for _, sid, start in stored_online(db)] == [
        ("X1", T + 200),
        ("X2", T + 300),
    ]
    # both sessions of each id in the history, each with its own id
    past = await history(daemon)
    assert sorted((s["sessionId"], s["startTime"], s["closeReason"]) for s in past) == [
        ("X1", iso(T), "accounting-on"),
        ("X1", iso(T + 200), None),
        ("X2", iso(T), "stop"),
        ("X2", iso(T + 300), None),
    ]
    assert len({s["id"] for s in past}) == 4

    # late packets of the old X1 and a retransmitted old Start: neither session moves
    await session(daemon, dictionary, "Interim-Update", "X1", T + 90, Acct_Session_Time=90)
    await session(daemon, dictionary, "Start", "X1", T)
    await session(daemon, dictionary, "Interim-Update", "X2", T + 40, Acct_Session_Time=40)
    assert await online(daemon) == now

    await daemon.stop()
    restarted = await daemon_factory(settings)
    assert await online(restarted) == now
    # the new X1's Interim finds the new X1 after the restart; the old one stays closed
    await session(restarted, dictionary, "Interim-Update", "X1", T + 500, Acct_Session_Time=300)
    [x1] = [s for s in restarted.index.for_user(5001) if s.session_id == "X1"]
    assert (x1.id, x1.session_time, x1.start_time) == (now[0]["id"], 300, T + 200)
    assert await online(restarted) == now
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("SELECT count(*) FROM sessions").fetchone() == (4,)
    finally:
        conn.close()
