"""Overload (issue #5, short variant; the long one is bench/run_all.py and bench/overload.md):
a burst far beyond what one commit can take. Excess is dropped unanswered and counted, every
packet that was answered is stored, memory stays bounded by the intake queue, and the daemon
answers normally once the burst is over."""

from __future__ import annotations

import asyncio
import hashlib
import socket
from pathlib import Path
from typing import Any

import pytest

from radtrack.store import journal
from tests.conftest import SECRET, acct_packet, make_settings, send_raw, udp_port
from tests.httpclient import http


@pytest.mark.asyncio
async def test_burst_beyond_the_queue_is_dropped_counted_and_nothing_acked_is_lost(
    daemon_factory: Any, tmp_path: Path, dictionary: Any
) -> None:
    settings = make_settings(tmp_path, radius={"queue_size": 100})
    daemon = await daemon_factory(settings)
    port = udp_port(daemon)
    packets = [
        acct_packet(
            dictionary,
            User_Name=str(n % 500),
            Acct_Status_Type="Start",
            Acct_Session_Id=f"burst-{n}",
            NAS_IP_Address="192.0.2.1",
        ).RequestPacket()
        for n in range(3000)
    ]

    def blast() -> set[int]:
        """Send everything at once, then collect answers for a while: (indexes answered)."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            sock.bind(("127.0.0.1", 0))
            by_key: dict[tuple[int, bytes], int] = {}
            for n, data in enumerate(packets):
                # identifiers repeat every 256 packets: key replies by (id, authenticator)
                by_key[(data[1], data[4:20])] = n
                sock.sendto(data, ("127.0.0.1", port))
            sock.settimeout(1.0)
            answered: set[int] = set()
            try:
                while True:
                    reply = sock.recv(4096)
                    for (ident, _), n in by_key.items():
                        if ident == reply[1] and n not in answered:
                            # the Response Authenticator binds the reply to one request
                            auth = hashlib.md5(
                                reply[:4] + packets[n][4:20] + reply[20:] + SECRET.encode()
                            ).digest()
                            if auth == reply[4:20]:
                                answered.add(n)
                                break
            except TimeoutError:
                pass
            return answered

    answered = await asyncio.to_thread(blast)
    stats = daemon.service.stats
    assert stats.dropped["queue_full"] > 0  # the excess was refused, not queued without bound
    assert stats.acknowledged == len(answered) > 0
    assert stats.received == stats.accepted + sum(stats.dropped.values()) + stats.duplicates
    conn = journal.open_current(settings.store.path)
    try:
        stored = {row[0] for row in conn.execute("SELECT session_id FROM current_sessions")}
    finally:
        conn.close()
    assert {f"burst-{n}" for n in answered} <= stored  # nothing answered is lost
    # after the burst the daemon answers as usual (a NAS retransmission of a dropped packet)
    dropped = next(n for n in range(len(packets)) if n not in answered)
    reply = await send_raw(port, packets[dropped], timeout=3.0)
    assert reply is not None and reply[0] == 5


@pytest.mark.asyncio
async def test_kernel_drops_of_a_full_socket_buffer_are_counted(
    daemon_factory: Any, tmp_path: Path, dictionary: Any
) -> None:
    # a tiny receive buffer and a paused reader: the kernel drops, /metrics reports it
    settings = make_settings(tmp_path, radius={"receive_buffer": 4096})
    daemon = await daemon_factory(settings)
    listener = daemon.listeners[0]
    listener.pause()
    data = acct_packet(
        dictionary, User_Name="1", Acct_Status_Type="Start", Acct_Session_Id="k"
    ).RequestPacket()

    def flood() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for _ in range(2000):
                sock.sendto(data, ("127.0.0.1", udp_port(daemon)))

    await asyncio.to_thread(flood)
    assert listener.kernel_drops() > 1000
    assert daemon.http_address is not None
    body = (await http(daemon.http_address[1], "GET", "/metrics")).body.decode()
    line = next(
        x
        for x in body.splitlines()
        if x.startswith('radtrack_packets_dropped_total{reason="socket_buffer"}')
    )
    assert float(line.rsplit(" ", 1)[1]) > 1000
    listener.start()
