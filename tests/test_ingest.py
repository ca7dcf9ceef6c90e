"""Accounting ingest on real loopback sockets: one test per rule of issue #2 at least.

Packets come from pyrad's client, from FreeRADIUS's radclient, or as raw bytes for the forged
and malformed cases. The daemon runs in the test's event loop with a real SQLite file.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import sqlite3
import struct
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from pyrad.packet import AccountingResponse

from radtrack.daemon import Daemon, StartupError
from radtrack.errors import StoreError
from radtrack.store import journal
from tests.conftest import (
    SECRET,
    acct_packet,
    make_settings,
    radclient,
    send_pyrad,
    send_raw,
    udp_port,
)

NO_API = {"listen": ""}


def rows(db: Path, where: str = "1") -> list[sqlite3.Row]:
    conn = journal.open_current(db)  # sessions plus the journal's rows not yet folded in
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(
            f"SELECT * FROM current_sessions WHERE {where} ORDER BY start_time"
        ).fetchall()
    finally:
        conn.close()


def start_packet(dictionary: Any, session: str = "s1", user: str = "12345", **extra: Any) -> Any:
    attrs: dict[str, Any] = {
        "User_Name": user,
        "Acct_Status_Type": "Start",
        "Acct_Session_Id": session,
        "NAS_IP_Address": "192.0.2.1",
        "NAS_Port_Id": "1001",
        "NAS_Port_Type": "Virtual",
        "Connect_Info": "WireGuard",
        "Calling_Station_Id": "AA:BB:CC:DD:EE:FF",
        "Framed_IP_Address": "100.64.0.50",
        "Event_Timestamp": 1705314600,
    }
    attrs.update(extra)
    return acct_packet(dictionary, **attrs)


def packet(dictionary: Any, status: str, session: str = "s1", **extra: Any) -> Any:
    """An Accounting-Request of user 12345 on NAS 192.0.2.1 (``extra`` adds or overrides)."""
    attrs: dict[str, Any] = {
        "User_Name": "12345",
        "Acct_Status_Type": status,
        "Acct_Session_Id": session,
        "NAS_IP_Address": "192.0.2.1",
    }
    attrs.update(extra)
    return acct_packet(dictionary, **attrs)


def client(name: str, address: str, **extra: Any) -> dict[str, Any]:
    """One [[radius.clients]] entry with the tests' secret."""
    return {"name": name, "address": address, "secret": SECRET, **extra}


StartIngest = Callable[..., Awaitable[Daemon]]


@pytest_asyncio.fixture
async def start_ingest(daemon_factory: Any) -> StartIngest:
    """``await start_ingest(**sections)``: a daemon without the API, ``sections`` as for
    make_settings (``radius={"clients": [client("pop", "127.0.0.0/29")]}``)."""

    async def start(**sections: Any) -> Daemon:
        return await daemon_factory(api=NO_API, **sections)  # type: ignore[no-any-return]

    return start


@pytest_asyncio.fixture
async def ingest(start_ingest: StartIngest) -> Daemon:
    return await start_ingest()


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Another process holds an exclusive lock on this SQLite file until the block ends."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.close()


def db_path(daemon: Daemon) -> Path:
    return daemon.settings.store.path


@pytest.mark.asyncio
async def test_start_is_stored_before_it_is_acknowledged(ingest: Daemon, dictionary: Any) -> None:
    reply = await send_pyrad(udp_port(ingest), start_packet(dictionary), dictionary=dictionary)
    assert reply is not None and reply.code == AccountingResponse
    # the reply left after COMMIT, so a fresh connection sees the row
    [row] = rows(db_path(ingest))
    assert row["session_id"] == "s1"
    assert row["user_id"] == 12345
    assert row["nas_ip"] == "192.0.2.1"
    assert row["nas_port_type"] == "Virtual"
    assert row["connect_info_start"] == "WireGuard"
    assert row["start_time"] == 1705314600
    assert row["stop_time"] is None
    [session] = ingest.index.for_user(12345)
    assert session.framed_ip == "100.64.0.50"


@pytest.mark.asyncio
async def test_interim_and_stop_update_and_close(ingest: Daemon, dictionary: Any) -> None:
    port = udp_port(ingest)
    await send_pyrad(port, start_packet(dictionary), dictionary=dictionary)
    interim = packet(
        dictionary,
        "Interim-Update",
        Acct_Session_Time=300,
        Acct_Input_Octets=1000,
        Acct_Output_Octets=5,
        Acct_Output_Gigawords=2,
        Event_Timestamp=1705314900,
    )
    assert await send_pyrad(port, interim, dictionary=dictionary) is not None
    [row] = rows(db_path(ingest))
    assert row["input_octets"] == 1000
    assert row["output_octets"] == 2 * 2**32 + 5  # RFC 2869 §5.2 Gigawords
    assert row["last_update"] == 1705314900
    stop = packet(
        dictionary,
        "Stop",
        Acct_Session_Time=600,
        Acct_Input_Octets=2000,
        Acct_Terminate_Cause="User-Request",
        Event_Timestamp=1705315200,
    )
    assert await send_pyrad(port, stop, dictionary=dictionary) is not None
    [row] = rows(db_path(ingest))
    assert row["stop_time"] == 1705315200
    assert row["terminate_cause"] == "User-Request"
    assert row["close_reason"] == "stop"
    assert row["input_octets"] == 2000
    assert ingest.index.for_user(12345) == []


@pytest.mark.asyncio
async def test_event_time_without_timestamp_is_arrival_minus_delay(
    ingest: Daemon, dictionary: Any
) -> None:
    packet = acct_packet(
        dictionary,
        User_Name="7",
        Acct_Status_Type="Start",
        Acct_Session_Id="delayed",
        Acct_Delay_Time=100,
    )
    before = ingest.service.clock() if ingest.service else 0.0
    assert await send_pyrad(udp_port(ingest), packet, dictionary=dictionary) is not None
    [session] = ingest.index.for_user(7)
    assert before - 100 - 1 <= session.start_time <= before - 100 + 5


@pytest.mark.asyncio
async def test_radclient_start_interim_stop(ingest: Daemon) -> None:
    port = udp_port(ingest)
    base = (
        'User-Name = "4242"\nAcct-Session-Id = "rc-1"\nNAS-IP-Address = 192.0.2.9\n'
        "NAS-Port-Type = Virtual\nFramed-IP-Address = 100.64.1.2\n"
    )
    code, out = await radclient(port, base + 'Acct-Status-Type = Start\nConnect-Info = "ocserv"\n')
    assert code == 0 and "Received Accounting-Response" in out, out
    assert [s.session_id for s in ingest.index.for_user(4242)] == ["rc-1"]
    code, out = await radclient(
        port, base + "Acct-Status-Type = Interim-Update\nAcct-Session-Time = 60\n"
    )
    assert code == 0 and "Received Accounting-Response" in out, out
    code, out = await radclient(
        port, base + "Acct-Status-Type = Stop\nAcct-Terminate-Cause = Idle-Timeout\n"
    )
    assert code == 0 and "Received Accounting-Response" in out, out
    [row] = rows(db_path(ingest))
    assert row["terminate_cause"] == "Idle-Timeout"
    assert row["connect_info_start"] == "ocserv"
    assert ingest.index.for_user(4242) == []


@pytest.mark.asyncio
async def test_status_server_is_answered(ingest: Daemon) -> None:
    code, out = await radclient(
        udp_port(ingest), "Message-Authenticator = 0x00\n", command="status"
    )
    assert code == 0 and "Received Accounting-Response" in out, out
    assert ingest.service is not None and ingest.service.stats.status_server == 1


@pytest.mark.asyncio
async def test_wrong_secret_is_dropped_and_counted(ingest: Daemon, dictionary: Any) -> None:
    packet = start_packet(dictionary, session="forged")
    packet.secret = b"not-the-secret-at-all"
    reply = await send_pyrad(
        udp_port(ingest), packet, dictionary=dictionary, secret="not-the-secret-at-all", timeout=0.5
    )
    assert reply is None
    assert ingest.service is not None
    assert ingest.service.stats.dropped["bad_authenticator"] == 1
    assert rows(db_path(ingest)) == []


@pytest.mark.asyncio
async def test_unknown_source_is_dropped_and_counted(
    start_ingest: StartIngest, dictionary: Any
) -> None:
    daemon = await start_ingest(radius={"clients": [client("other", "127.0.0.2")]})
    data = start_packet(dictionary).RequestPacket()
    assert await send_raw(udp_port(daemon), data) is None  # from 127.0.0.1: unknown
    assert daemon.service.stats.dropped["unknown_client"] == 1
    reply = await send_raw(udp_port(daemon), data, source="127.0.0.2")  # the configured NAS
    assert reply is not None and reply[0] == 5


@pytest.mark.asyncio
async def test_cidr_client_matches_network(start_ingest: StartIngest, dictionary: Any) -> None:
    daemon = await start_ingest(radius={"clients": [client("pop", "127.0.0.0/29")]})
    data = start_packet(dictionary).RequestPacket()
    assert await send_raw(udp_port(daemon), data, source="127.0.0.3") is not None
    [session] = daemon.index.for_user(12345)
    assert session.nas_name == "pop"


@pytest.mark.asyncio
async def test_message_authenticator_verified_when_present(ingest: Daemon, dictionary: Any) -> None:
    port = udp_port(ingest)
    good = start_packet(dictionary, session="ma-good")
    good.add_message_authenticator()
    assert await send_pyrad(port, good, dictionary=dictionary) is not None

    forged = start_packet(dictionary, session="ma-forged")
    forged.add_message_authenticator()
    data = bytearray(forged.RequestPacket())
    # corrupt the Message-Authenticator, then fix the Request Authenticator so only the MA lies
    pos = 20
    while data[pos] != 80:
        pos += data[pos + 1]
    data[pos + 2] ^= 0xFF
    data[4:20] = hashlib.md5(
        bytes(data[:4]) + b"\0" * 16 + bytes(data[20:]) + SECRET.encode()
    ).digest()
    assert await send_raw(port, bytes(data)) is None
    assert ingest.service.stats.dropped["bad_authenticator"] == 1
    assert [s.session_id for s in ingest.index.for_user(12345)] == ["ma-good"]


@pytest.mark.asyncio
async def test_message_authenticator_required_per_client(
    start_ingest: StartIngest, dictionary: Any
) -> None:
    strict = client("strict", "127.0.0.1", require_message_authenticator=True)
    daemon = await start_ingest(radius={"clients": [strict]})
    port = udp_port(daemon)
    assert await send_raw(port, start_packet(dictionary, session="bare").RequestPacket()) is None
    signed = start_packet(dictionary, session="signed")
    signed.add_message_authenticator()
    assert await send_pyrad(port, signed, dictionary=dictionary) is not None
    assert [s.session_id for s in daemon.index.for_user(12345)] == ["signed"]


@pytest.mark.asyncio
async def test_oversized_and_malformed_are_dropped(ingest: Daemon, dictionary: Any) -> None:
    port = udp_port(ingest)
    assert await send_raw(port, b"\x04\x01" + b"\x00" * 5000) is None
    assert await send_raw(port, b"\x04\x01\x00") is None  # shorter than a header
    data = bytearray(start_packet(dictionary).RequestPacket())
    data[21] = 1  # first attribute's length below 2
    assert await send_raw(port, bytes(data)) is None
    stats = ingest.service.stats
    assert stats.dropped["oversized"] == 1
    assert stats.dropped["malformed"] == 2
    assert len(ingest.index) == 0


@pytest.mark.asyncio
async def test_octets_past_length_are_ignored(ingest: Daemon, dictionary: Any) -> None:
    data = start_packet(dictionary).RequestPacket() + b"padding-junk"
    reply = await send_raw(udp_port(ingest), data)
    assert reply is not None and reply[0] == 5
    assert len(ingest.index) == 1


@pytest.mark.asyncio
async def test_missing_session_id_is_malformed(ingest: Daemon, dictionary: Any) -> None:
    packet = acct_packet(dictionary, User_Name="1", Acct_Status_Type="Start")
    assert await send_raw(udp_port(ingest), packet.RequestPacket()) is None
    assert ingest.service.stats.dropped["malformed"] == 1


@pytest.mark.asyncio
async def test_proxy_state_copied_in_order(ingest: Daemon, dictionary: Any) -> None:
    packet = start_packet(dictionary)
    packet.AddAttribute("Proxy-State", b"first")
    packet.AddAttribute("Proxy-State", b"second")
    reply = await send_raw(udp_port(ingest), packet.RequestPacket())
    assert reply is not None
    assert reply[20:] == b"\x21\x07first\x21\x08second"


@pytest.mark.asyncio
async def test_retransmission_gets_the_same_answer_without_a_new_write(
    ingest: Daemon, dictionary: Any
) -> None:
    port = udp_port(ingest)
    data = start_packet(dictionary).RequestPacket()

    def exchange() -> tuple[bytes, bytes]:
        import socket

        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(2)
            sock.sendto(data, ("127.0.0.1", port))
            first = sock.recv(4096)
            sock.sendto(data, ("127.0.0.1", port))  # same source port, id and authenticator
            return first, sock.recv(4096)

    commits = ingest.store.stats.commits
    first, second = await asyncio.to_thread(exchange)
    assert first == second
    assert ingest.service.stats.duplicates == 1
    assert ingest.store.stats.commits == commits + 1  # the duplicate touched nothing


@pytest.mark.asyncio
async def test_accounting_on_closes_the_nas_sessions(ingest: Daemon, dictionary: Any) -> None:
    port = udp_port(ingest)
    for sid in ("a", "b"):
        await send_pyrad(port, start_packet(dictionary, session=sid), dictionary=dictionary)
    other = start_packet(dictionary, session="c", NAS_IP_Address="192.0.2.77")
    await send_pyrad(port, other, dictionary=dictionary)
    reboot = acct_packet(
        dictionary,
        Acct_Status_Type="Accounting-On",
        NAS_IP_Address="192.0.2.1",
        Event_Timestamp=1705320000,
    )
    assert await send_pyrad(port, reboot, dictionary=dictionary) is not None
    assert [s.session_id for s in ingest.index.for_user(12345)] == ["c"]
    closed = rows(db_path(ingest), "close_reason = 'accounting-on'")
    assert sorted(r["session_id"] for r in closed) == ["a", "b"]
    assert {r["terminate_cause"] for r in closed} == {"NAS-Reboot"}


@pytest.mark.asyncio
async def test_unknown_status_type_is_acknowledged_not_tracked(
    ingest: Daemon, dictionary: Any
) -> None:
    packet = acct_packet(dictionary, Acct_Status_Type="Failed", Acct_Session_Id="f", User_Name="1")
    assert await send_pyrad(udp_port(ingest), packet, dictionary=dictionary) is not None
    assert len(ingest.index) == 0
    assert ingest.service.stats.ignored_status == 1


@pytest.mark.asyncio
async def test_restart_rebuilds_online_set(
    daemon_factory: Any, tmp_path: Path, dictionary: Any
) -> None:
    settings = make_settings(tmp_path, api=NO_API)
    first = await daemon_factory(settings)
    port = udp_port(first)
    for sid in ("x", "y", "z"):
        await send_pyrad(port, start_packet(dictionary, session=sid), dictionary=dictionary)
    stop = packet(dictionary, "Stop", "y", Event_Timestamp=1705316000)
    await send_pyrad(port, stop, dictionary=dictionary)
    await first.stop()
    second = await daemon_factory(settings)
    assert [s.session_id for s in second.index.for_user(12345)] == ["x", "z"]
    assert second.recovered_sessions == 2
    # a late Interim for the stopped session does not reopen it after the restart either
    late = packet(dictionary, "Interim-Update", "y", Event_Timestamp=1705315500)
    assert await send_pyrad(udp_port(second), late, dictionary=dictionary) is not None
    assert [s.session_id for s in second.index.for_user(12345)] == ["x", "z"]


@pytest.mark.asyncio
async def test_ipv6_listener(start_ingest: StartIngest, dictionary: Any) -> None:
    daemon = await start_ingest(radius={"listen": ["[::1]:0"], "clients": [client("v6", "::1")]})
    port = udp_port(daemon)
    data = start_packet(dictionary).RequestPacket()

    def exchange() -> bytes:
        import socket

        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.settimeout(2)
            sock.sendto(data, ("::1", port))
            return sock.recv(4096)

    reply = await asyncio.to_thread(exchange)
    assert reply[0] == 5
    assert daemon.index.for_user(12345)[0].nas_name == "v6"


@pytest.mark.asyncio
async def test_busy_port_is_a_clear_startup_error(ingest: Daemon, tmp_path: Path) -> None:
    port = udp_port(ingest)
    settings = make_settings(
        tmp_path / "other", api=NO_API, radius={"listen": [f"127.0.0.1:{port}"]}
    )
    with pytest.raises(StartupError, match="radius.listen: cannot bind UDP"):
        await Daemon(settings).start()


@pytest.mark.asyncio
async def test_locked_database_means_no_answer_until_it_recovers(
    start_ingest: StartIngest, dictionary: Any
) -> None:
    daemon = await start_ingest(store={"busy_timeout": 0.1})
    port = udp_port(daemon)
    # another process holds the journal (the file every acknowledgement is written to)
    with locked(journal.journal_path(db_path(daemon))):
        data = start_packet(dictionary, session="during-lock").RequestPacket()
        assert await send_raw(port, data, timeout=1.0) is None  # not durable: not answered
        assert daemon.service.stats.dropped["store_failed"] >= 1
        assert daemon.readiness()["database"] is False
    # the NAS retransmits the same packet: now it is stored and answered (after the writer's
    # retry backoff, at most 2 s between attempts, plus a busy machine's slack)
    reply = await send_raw(port, data, timeout=6.0)
    assert reply is not None and reply[0] == 5
    assert [r["session_id"] for r in rows(db_path(daemon))] == ["during-lock"]
    assert daemon.readiness()["database"] is True


@pytest.mark.asyncio
async def test_locked_main_database_delays_only_the_fold(
    start_ingest: StartIngest, dictionary: Any
) -> None:
    # packets are acknowledged once they are in the journal; a lock on the main database (a
    # backup tool, a sqlite3 shell left open) only holds back the fold into sessions
    daemon = await start_ingest(store={"busy_timeout": 0.1})
    with locked(db_path(daemon)):
        data = start_packet(dictionary, session="main-locked").RequestPacket()
        reply = await send_raw(udp_port(daemon), data, timeout=3.0)
        assert reply is not None and reply[0] == 5
        with pytest.raises(StoreError):
            await daemon.store.sync()  # the fold cannot run while the lock is held
        assert daemon.readiness()["database"] is True
    await daemon.store.sync()
    conn = sqlite3.connect(db_path(daemon))
    try:
        folded = conn.execute("SELECT session_id FROM sessions").fetchall()
    finally:
        conn.close()
    assert folded == [("main-locked",)]


@pytest.mark.asyncio
async def test_full_queue_drops_unanswered(start_ingest: StartIngest, dictionary: Any) -> None:
    daemon = await start_ingest(radius={"queue_size": 2}, store={"busy_timeout": 2.0})
    port = udp_port(daemon)
    packets = [start_packet(dictionary, session=f"q{i}").RequestPacket() for i in range(6)]
    with locked(journal.journal_path(db_path(daemon))):
        replies = await asyncio.gather(*(send_raw(port, p, timeout=0.5) for p in packets))
        assert replies == [None] * 6
        assert daemon.service.stats.dropped["queue_full"] >= 4


def test_request_authenticator_helper_matches_rfc() -> None:
    # guard for the forged-MA test above: MD5(Code+ID+Length+16 zero octets+Attributes+Secret)
    body = b"\x2c\x04ab"
    head = struct.pack("!BBH", 4, 1, 20 + len(body))
    auth = hashlib.md5(head + b"\0" * 16 + body + b"s").digest()
    from radtrack.radius import codec

    packet = codec.decode(head + auth + body)
    assert codec.verify_request(packet, b"s")
