"""One packet is never the disk (issue #16): a packet whose values the store cannot hold is
dropped alone, the others of its commit are stored and answered, and memory goes back to what
the store holds. And the packet of the issue itself (User-Name 0xff) is stored, escaped.

Real daemon, real UDP on 127.0.0.1, a real SQLite file. The store's refusal is made with a
trigger in the journal (a constraint, as a schema change or a bug might add one), since the
codec no longer lets any value through that SQLite cannot take.
"""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path
from typing import Any

import pytest

from radtrack.daemon import Daemon
from radtrack.model import session_key
from radtrack.store import journal
from tests.conftest import SECRET, make_settings, send_raw
from tests.httpclient import http
from tests.oddpackets import (
    ACCT_SESSION_ID,
    ACCT_STATUS_TYPE,
    INTERIM,
    Sender,
    datagram,
    differences,
    normal_start,
    snapshot,
)

NAS_KEY = "nas-local/192.0.2.1"


def refuse(db: Path, condition: str) -> None:
    """Make the store refuse journal rows WHEN ``condition`` (before the daemon opens it)."""
    conn = journal.open_journal(journal.journal_path(db), 1.0)
    try:
        conn.execute(
            f"CREATE TRIGGER refuse BEFORE INSERT ON log WHEN {condition} "
            "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
        )
    finally:
        conn.close()


async def start_daemon(daemon_factory: Any, tmp_path: Path, **sections: Any) -> Daemon:
    return await daemon_factory(make_settings(tmp_path, **sections))  # type: ignore[no-any-return]


async def refusing_daemon(
    daemon_factory: Any, tmp_path: Path, condition: str
) -> tuple[Daemon, int]:
    """A daemon (no API) whose store refuses journal rows WHEN ``condition``, and its UDP port."""
    refuse(tmp_path / "radtrack.db", condition)
    daemon = await start_daemon(daemon_factory, tmp_path, api={"listen": ""})
    return daemon, daemon.listeners[0].address[1]


def interim(session_id: str, identifier: int, input_octets: int, event_time: int) -> bytes:
    return datagram(
        identifier,
        SECRET.encode(),
        [
            (ACCT_STATUS_TYPE, struct.pack("!I", INTERIM)),
            (ACCT_SESSION_ID, session_id.encode()),
            (4, bytes((192, 0, 2, 1))),  # NAS-IP-Address
            (42, struct.pack("!I", input_octets)),  # Acct-Input-Octets
            (55, struct.pack("!I", event_time)),  # Event-Timestamp
        ],
    )


@pytest.mark.asyncio
async def test_the_packet_of_the_issue_is_stored_escaped_and_the_next_answered_at_once(
    daemon_factory: Any, tmp_path: Path
) -> None:
    daemon = await start_daemon(daemon_factory, tmp_path)
    port = daemon.listeners[0].address[1]
    poison = [
        (ACCT_STATUS_TYPE, struct.pack("!I", 1)),
        (ACCT_SESSION_ID, b"\xffsid"),
        (1, b"\xff"),  # User-Name: one octet that is not UTF-8
        (4, bytes((192, 0, 2, 1))),
        (55, struct.pack("!I", 1_705_314_600)),
    ]
    assert await send_raw(port, datagram(1, SECRET.encode(), poison), timeout=2.0) is not None
    odd = [
        (kind, b"caf\xe9" if kind == 77 else value)  # a latin-1 Connect-Info
        for kind, value in normal_start("odd-text", 4242, 1_705_314_601)
    ] + [(30, b"\xff\x00ssid")]  # Called-Station-Id: octets that are not UTF-8, a NUL
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await send_raw(port, datagram(2, SECRET.encode(), odd), timeout=2.0) is not None
    assert await send_raw(
        port, datagram(3, SECRET.encode(), normal_start("next", 4243, 1_705_314_602))
    )
    assert loop.time() - started < 1.0  # answered at once, no retry loop in the way
    assert daemon.store.healthy

    [poisoned] = [s for s in daemon.index if s.session_id == "\\xffsid"]
    assert poisoned.user_name == "\\xff"
    memory, stored = snapshot(daemon)
    assert differences(memory, stored) == []
    assert stored[poisoned.id][6] == "\\xff"  # user_name, valid UTF-8 in SQLite
    [odd_row] = [row for row in stored.values() if row[4] == "odd-text"]
    assert odd_row[11] == "\\xff\\x00ssid"  # called_station_id: no NUL, no surrogate
    # the API shows the escaped text, and its answer is valid UTF-8
    assert daemon.http_address is not None
    query = b'{"query": "{ getOnlineSessions(userId: 4242) { sessionId connectInfoStart } }"}'
    reply = await http(
        daemon.http_address[1],
        "POST",
        "/graphql",
        query,
        [("Content-Type", "application/json"), ("Authorization", "Bearer admin-token-for-tests")],
    )
    reply.body.decode("utf-8")  # strict
    assert reply.json() == {
        "data": {"getOnlineSessions": [{"sessionId": "odd-text", "connectInfoStart": "caf\\xe9"}]}
    }
    ready = await http(daemon.http_address[1], "GET", "/readyz")
    assert ready.status == 200


@pytest.mark.asyncio
async def test_a_row_the_store_refuses_loses_only_its_own_packet(
    daemon_factory: Any, tmp_path: Path
) -> None:
    daemon, port = await refusing_daemon(daemon_factory, tmp_path, "NEW.user_name = 'refused-user'")
    sender = Sender("127.0.0.1")
    try:
        normal: set[int] = set()
        for number in range(40):  # sent back to back: the refused row shares their commits
            identifier = sender.identifier()
            if number == 20:
                packet = normal_start("refused", 0, 1_705_314_600)
                packet[2] = (1, b"refused-user")
                refused_id = identifier
            else:
                packet = normal_start(f"good-{number}", 5000 + number, 1_705_314_600)
                normal.add(identifier)
            sender.send(datagram(identifier, SECRET.encode(), packet), port)
        got = await asyncio.to_thread(sender.replies, normal | {refused_id}, 2.0)
    finally:
        sender.close()
    assert got == normal  # every other packet answered, the refused one not
    assert daemon.service.stats.dropped["unstorable"] == 1
    assert daemon.store.stats.rejected_rows == 1
    assert daemon.store.healthy
    refused = session_key(NAS_KEY, "refused", None)
    assert daemon.index.find(refused) is None  # memory holds what the store holds
    memory, stored = snapshot(daemon)
    assert differences(memory, stored) == []
    assert len([s for s in daemon.index if s.session_id.startswith("good-")]) == 39
    # and the next packet is answered well within a NAS's retransmission interval (3 s)
    assert await send_raw(
        port,
        datagram(7, SECRET.encode(), normal_start("after", 6000, 1_705_314_700)),
        timeout=2.0,
    )


@pytest.mark.asyncio
async def test_a_refused_interim_puts_the_session_back_to_what_is_stored(
    daemon_factory: Any, tmp_path: Path
) -> None:
    daemon, port = await refusing_daemon(daemon_factory, tmp_path, "NEW.input_octets = 666")
    secret = SECRET.encode()
    start = normal_start("s1", 5001, 1_705_314_600) + [(42, struct.pack("!I", 100))]
    assert await send_raw(port, datagram(1, secret, start), timeout=2.0) is not None
    sid = session_key(NAS_KEY, "s1", None)
    # the refused Interim: not answered, and memory does not keep its counters
    assert await send_raw(port, interim("s1", 2, 666, 1_705_314_700), timeout=1.0) is None
    session = daemon.index.get(sid)
    assert session is not None and session.online
    assert (session.input_octets, session.last_update) == (100, 1_705_314_600)
    memory, stored = snapshot(daemon)
    assert differences(memory, stored) == []
    assert daemon.service.stats.dropped["unstorable"] == 1
    # the NAS's next Interim is stored and answered as usual
    assert await send_raw(port, interim("s1", 3, 700, 1_705_314_800), timeout=2.0) is not None
    session = daemon.index.get(sid)
    assert session is not None and session.input_octets == 700
    memory, stored = snapshot(daemon)
    assert stored[sid][19] == 700  # input_octets
    assert differences(memory, stored) == []


def test_append_each_rejects_only_the_rows_sqlite_cannot_take(tmp_path: Path) -> None:
    """The writer's row-by-row pass on its own: a lone surrogate (what the codec used to make
    of octets that are not UTF-8) and an integer past 64 bits are rejected, the rest stored."""
    conn = journal.open_journal(tmp_path / "j.journal", 1.0)
    try:
        width = len(journal.JOURNAL_SCHEMA.split(",")) - 2  # the columns after seq and full

        def row(sid: str, text: object = "ok", number: object = 1) -> tuple[object, ...]:
            values: list[object] = [sid] + [text] * 5 + [number] * (width - 6)
            return tuple(values)

        rows = [
            (row("a"), True),
            (row("b", text="\udcff"), True),
            (row("c", number=2**64), True),
            (row("d"), True),
        ]
        with journal.transaction(conn):
            rejected = journal.append_each(conn, rows)
        assert sorted(rejected) == [1, 2]
        assert rejected[1].startswith("UnicodeEncodeError")
        assert rejected[2].startswith("OverflowError")
        rejected[1].encode("utf-8")  # the reason itself is loggable text
        stored = [sid for (sid,) in conn.execute("SELECT id FROM log ORDER BY seq")]
        assert stored == ["a", "d"]
    finally:
        conn.close()
