"""The API on a thread of its own (radtrack/api/thread.py): a query does not wait for the
ingest loop, and its reads of the live state are whole while ingest changes it."""

from __future__ import annotations

import asyncio
import http.client
import json
import sys
import threading
import time
from collections.abc import Iterator

import pytest
from pyrad.dictionary import Dictionary

from radtrack.daemon import Daemon
from radtrack.model import Session
from radtrack.store.index import SessionIndex
from tests.conftest import ADMIN_TOKEN, acct_packet, send_pyrad, udp_port

QUERY = "query($u: Int!) { getOnlineSessions(userId: $u) { sessionId } }"


def session(name: str, user_id: int, start: float) -> Session:
    return Session(f"id-{name}", "nas|10.0.0.1", "nas", "10.0.0.1", name, start, start,
                   user_id=user_id)  # fmt: skip


@pytest.fixture
def busy_switching() -> Iterator[None]:
    """Switch threads as often as the interpreter can, so a walk meets unlinks mid-way."""
    saved = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(saved)


def test_a_walk_on_another_thread_sees_every_session_of_the_user_and_no_other(
    busy_switching: None,
) -> None:
    index = SessionIndex()
    kept = [session(f"kept-{n}", 7, n) for n in range(3)]
    stop = threading.Event()
    bad: list[str] = []

    def ingest() -> None:
        """Sessions of users 7 and 8 opened (above the kept ones in 7's chain), some moved
        to the other user, then all closed (unlinks in the middle of the chains)."""
        n = 0
        while not stop.is_set():
            churn = [session(f"c{n}-{k}", 7 if k % 2 else 8, 100 + n) for k in range(6)]
            for s in churn:
                index.add_online(s)
            for s in churn[::2]:
                index.set_user(s, 7 if s.user_id == 8 else 8)
            for s in churn:
                s.stop_time = 200.0 + n
                index.close(s)
            n += 1

    def reader() -> None:
        walks = 0
        while not stop.is_set() and len(bad) < 5:
            got = index.for_user(7)
            walks += 1
            names = {s.session_id for s in got}
            missing = {s.session_id for s in kept} - names
            if missing:
                bad.append(f"walk {walks} missed {sorted(missing)}")
            others = [s.session_id for s in got if s.user_id not in (7, None)]
            if others:
                bad.append(f"walk {walks} gave another user's sessions {others}")
            if index.count_for_user(7) < len(kept):
                bad.append(f"walk {walks} counted fewer than the kept sessions")

    for s in kept:
        index.add_online(s)
    threads = [threading.Thread(target=ingest), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    stop.set()
    for t in threads:
        t.join(10)
    assert bad == []


def blocking_query(port: int, user_id: int) -> tuple[float, list[str]]:
    """getOnlineSessions from a plain blocking client (not on the test's event loop)."""
    began = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    body = json.dumps({"query": QUERY, "variables": {"u": user_id}})
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {ADMIN_TOKEN}"}
    conn.request("POST", "/graphql", body, headers)
    answer = json.loads(conn.getresponse().read())
    conn.close()
    return time.monotonic() - began, [s["sessionId"] for s in answer["data"]["getOnlineSessions"]]


@pytest.mark.asyncio
async def test_a_query_is_answered_while_the_ingest_loop_is_busy(
    daemon: Daemon, dictionary: Dictionary
) -> None:
    packet = acct_packet(dictionary, Acct_Status_Type="Start", Acct_Session_Id="busy-1",
                         User_Name="4242", Event_Timestamp=int(time.time()))  # fmt: skip
    assert await send_pyrad(udp_port(daemon), packet, dictionary=dictionary) is not None
    assert daemon.http_address is not None
    port = daemon.http_address[1]
    answers: list[tuple[float, list[str]]] = []
    client = threading.Thread(target=lambda: answers.append(blocking_query(port, 4242)))
    loop_blocked = 1.5
    began = time.monotonic()
    client.start()
    time.sleep(loop_blocked)  # the ingest loop (this test's) does nothing else meanwhile
    blocked_for = time.monotonic() - began
    await asyncio.to_thread(client.join, 10)
    assert answers, "no answer"
    took, sessions = answers[0]
    assert sessions == ["busy-1"]
    assert took < 0.5, f"the query waited {took:.2f} s for a loop blocked {blocked_for:.2f} s"
