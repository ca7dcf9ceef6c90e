"""RadSec (RFC 6614) on real TLS sockets on 127.0.0.1: Python's own ssl client sends framed
pyrad packets; the daemon runs in the test's event loop with a real SQLite file. One test per
rule: the same packet path as UDP (stored before acknowledged, dedup, forged or malformed
dropped), the stream's framing, and every bound (stalled, idle, too many, bad certificates)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import socket
import ssl
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from pyrad.packet import AccountingResponse

from radtrack.daemon import Daemon, StartupError
from radtrack.store import journal
from tests.conftest import SECRET, make_settings, send_raw, udp_port
from tests.test_ingest import locked, packet, rows, start_packet
from tests.tlscerts import Pair, Pki, make_pki

RADSEC = b"radsec"  # RFC 6614 §2.3


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def radsec_client(address: str = "127.0.0.1", **extra: Any) -> dict[str, Any]:
    return {"name": "nas-tls", "address": address, "radsec": True, **extra}


def radsec_section(pki: Pki, *clients: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """The [radius] table of a daemon with UDP (nas-local) and a RadSec listener."""
    return {
        "radsec_listen": ["127.0.0.1:0"],
        "radsec_certificate": str(pki.server.certificate),
        "radsec_key": str(pki.server.key),
        "radsec_ca": str(pki.ca),
        "clients": [
            {"name": "nas-local", "address": "127.0.0.1", "secret": SECRET},
            *(clients or (radsec_client(),)),
        ],
        **extra,
    }


StartRadsec = Callable[..., Awaitable[Daemon]]


@pytest_asyncio.fixture
async def start_radsec(daemon_factory: Any, pki: Pki) -> StartRadsec:
    """``await start_radsec(*clients, **radius_keys)``: a daemon without the API."""

    async def start(*clients: dict[str, Any], **extra: Any) -> Daemon:
        radius = radsec_section(pki, *clients, **extra)
        return await daemon_factory(api={"listen": ""}, radius=radius)  # type: ignore[no-any-return]

    return start


@pytest_asyncio.fixture
async def radsec(start_radsec: StartRadsec) -> Daemon:
    return await start_radsec()


def radsec_port(daemon: Daemon) -> int:
    assert daemon.radsec is not None
    return daemon.radsec.addresses[0][1]


def client_context(pki: Pki, pair: Pair | None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(pki.ca)  # the server is checked too: 127.0.0.1 in its SAN
    if pair is not None:
        context.load_cert_chain(pair.certificate, pair.key)
    return context


class TlsNas:
    """A RadSec client: Python's ssl over asyncio streams; packets framed by their Length."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int, context: ssl.SSLContext, source: str = "127.0.0.1") -> TlsNas:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=context, server_hostname="127.0.0.1", local_addr=(source, 0)
        )
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def reply(self, timeout: float = 3.0) -> bytes | None:
        """The next packet from the server; None when the stream ends or nothing comes."""
        try:
            head = await asyncio.wait_for(self.reader.readexactly(4), timeout)
            length = struct.unpack("!H", head[2:4])[0]
            return head + await asyncio.wait_for(self.reader.readexactly(length - 4), timeout)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            return None

    async def closed_by_server(self, timeout: float = 5.0) -> bool:
        """Whether the server ends the stream (EOF, or a TLS alert) within ``timeout``."""
        try:
            return await asyncio.wait_for(self.reader.read(65536), timeout) == b""
        except (ConnectionError, ssl.SSLError):
            return True
        except TimeoutError:
            return False

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await self.writer.wait_closed()


async def connect(daemon: Daemon, pki: Pki, pair: Pair | None = None, **kw: Any) -> TlsNas:
    return await TlsNas.connect(radsec_port(daemon), client_context(pki, pair or pki.nas), **kw)


async def until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for the daemon (same event loop) to get somewhere, e.g. a counter to move."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def encoded(dictionary: Any, session: str = "s1", status: str = "Start", **extra: Any) -> Any:
    """A pyrad Accounting-Request signed with the RadSec secret (its Identifier varies)."""
    request = packet(dictionary, status, session, **extra)
    request.secret = RADSEC
    return request


def response_ok(request: Any, reply: bytes) -> bool:
    """An Accounting-Response to ``request`` whose Response Authenticator verifies (RFC 2866
    §3, with the RadSec secret)."""
    expected = hashlib.md5(reply[:4] + request.authenticator + reply[20:] + RADSEC).digest()
    return reply[0] == AccountingResponse and reply[1] == request.id and reply[4:20] == expected


@pytest.mark.asyncio
async def test_start_over_radsec_is_stored_before_it_is_acknowledged(
    radsec: Daemon, pki: Pki, dictionary: Any
) -> None:
    nas = await connect(radsec, pki)
    try:
        request = start_packet(dictionary, session="tls-1")
        request.secret = RADSEC
        await nas.send(request.RequestPacket())
        reply = await nas.reply()
        assert reply is not None and response_ok(request, reply)
        # the reply left after COMMIT: a fresh connection sees the row
        [row] = rows(radsec.settings.store.path)
        assert (row["session_id"], row["nas_name"], row["user_id"]) == ("tls-1", "nas-tls", 12345)
        assert radsec.radsec is not None and radsec.radsec.stats.accepted == 1
        assert radsec.service is not None and radsec.service.stats.acknowledged == 1
    finally:
        await nas.close()


@pytest.mark.asyncio
async def test_a_packet_split_over_reads_and_packets_sharing_one(
    radsec: Daemon, pki: Pki, dictionary: Any
) -> None:
    nas = await connect(radsec, pki)
    try:
        first = encoded(dictionary, "split")
        data = first.RequestPacket()
        for at in range(len(data)):  # one octet per TLS record
            await nas.send(data[at : at + 1])
        reply = await nas.reply()
        assert reply is not None and response_ok(first, reply)
        requests = [encoded(dictionary, f"batch-{i}") for i in range(5)]
        await nas.send(b"".join(r.RequestPacket() for r in requests))
        replies = [await nas.reply() for _ in requests]
        by_id = {r[1]: r for r in replies if r is not None}
        assert all(response_ok(r, by_id[r.id]) for r in requests)
        assert {s.session_id for s in radsec.index.for_user(12345)} == {
            "split",
            *(f"batch-{i}" for i in range(5)),
        }
    finally:
        await nas.close()


@pytest.mark.asyncio
async def test_a_retransmission_on_the_connection_is_answered_from_the_cache(
    radsec: Daemon, pki: Pki, dictionary: Any
) -> None:
    nas = await connect(radsec, pki)
    try:
        data = encoded(dictionary, "again").RequestPacket()
        await nas.send(data)
        first = await nas.reply()
        commits = radsec.store.stats.commits
        await nas.send(data)  # same Identifier and authenticator
        assert await nas.reply() == first
        assert radsec.service is not None and radsec.service.stats.duplicates == 1
        assert radsec.store.stats.commits == commits  # the duplicate touched nothing
    finally:
        await nas.close()


@pytest.mark.asyncio
async def test_no_reply_while_the_write_is_not_durable(
    start_radsec: StartRadsec, pki: Pki, dictionary: Any
) -> None:
    daemon = await start_radsec(radsec_idle_timeout=0)
    nas = await connect(daemon, pki)
    try:
        data = encoded(dictionary, "during-lock").RequestPacket()
        with locked(journal.journal_path(daemon.settings.store.path)):
            await nas.send(data)
            assert await nas.reply(timeout=1.0) is None  # not durable: not answered
            assert daemon.service is not None
            await until(lambda: daemon.service.stats.dropped["store_failed"] >= 1)  # type: ignore[union-attr]
        # the NAS sends it again (same connection, RFC 6613 §2.6.1): stored, then answered
        await nas.send(data)
        reply = await nas.reply(timeout=6.0)
        assert reply is not None and reply[0] == AccountingResponse
        assert [r["session_id"] for r in rows(daemon.settings.store.path)] == ["during-lock"]
    finally:
        await nas.close()


def status_server(secret: bytes) -> bytes:
    """A Status-Server (RFC 5997) with its Message-Authenticator."""
    authenticator = os.urandom(16)
    length = 20 + 18
    head = struct.pack("!BBH", 12, 7, length)
    mac = hmac.new(secret, head + authenticator + b"\x50\x12" + bytes(16), hashlib.md5).digest()
    return head + authenticator + b"\x50\x12" + mac


@pytest.mark.asyncio
async def test_status_server_is_answered_over_radsec(radsec: Daemon, pki: Pki) -> None:
    nas = await connect(radsec, pki)
    try:
        await nas.send(status_server(RADSEC))
        reply = await nas.reply()
        assert reply is not None and reply[0] == AccountingResponse and reply[1] == 7
        assert radsec.service is not None and radsec.service.stats.status_server == 1
    finally:
        await nas.close()


@pytest.mark.asyncio
async def test_a_forged_authenticator_gets_no_reply_and_ends_the_connection(
    radsec: Daemon, pki: Pki, dictionary: Any
) -> None:
    nas = await connect(radsec, pki)
    try:
        forged = encoded(dictionary, "forged")
        forged.secret = b"not-the-radsec-secret"
        await nas.send(forged.RequestPacket())
        assert await nas.closed_by_server()  # RFC 6613 §2.6.4, with no reply before it
        assert radsec.service is not None
        assert radsec.service.stats.dropped["bad_authenticator"] == 1
        assert radsec.radsec is not None
        await until(lambda: radsec.radsec.stats.closed["bad_authenticator"] == 1)  # type: ignore[union-attr]
        assert rows(radsec.settings.store.path) == []
    finally:
        await nas.close()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("length", "reason"), [(5000, "oversized"), (19, "malformed"), (0, "malformed")]
)
async def test_a_bad_length_field_ends_the_connection(
    radsec: Daemon, pki: Pki, dictionary: Any, length: int, reason: str
) -> None:
    nas = await connect(radsec, pki)
    try:
        await nas.send(struct.pack("!BBH", 4, 1, length) + bytes(16))
        assert await nas.closed_by_server()
        assert radsec.service is not None and radsec.service.stats.dropped[reason] == 1
        assert radsec.radsec is not None
        await until(lambda: radsec.radsec.stats.closed["bad_length"] == 1)  # type: ignore[union-attr]
    finally:
        await nas.close()


@pytest.mark.asyncio
async def test_a_malformed_packet_is_dropped_and_ends_the_connection(
    radsec: Daemon, pki: Pki, dictionary: Any
) -> None:
    nas = await connect(radsec, pki)
    try:
        data = bytearray(encoded(dictionary, "bad-attr").RequestPacket())
        data[21] = 1  # the first attribute's length below 2 (RFC 2865 §5)
        await nas.send(bytes(data))
        assert await nas.closed_by_server()
        assert radsec.service is not None and radsec.service.stats.dropped["malformed"] == 1
        assert len(radsec.index) == 0
    finally:
        await nas.close()


@pytest.mark.asyncio
async def test_half_a_packet_then_a_stall_is_closed_and_counted(
    start_radsec: StartRadsec, pki: Pki, dictionary: Any
) -> None:
    daemon = await start_radsec(radsec_read_timeout=0.3)
    nas = await connect(daemon, pki)
    try:
        data = encoded(dictionary, "half").RequestPacket()
        await nas.send(data[: len(data) // 2])
        assert await nas.closed_by_server(timeout=5.0)
        assert daemon.radsec is not None and daemon.radsec.stats.closed["stalled"] == 1
        assert len(daemon.index) == 0
    finally:
        await nas.close()


@pytest.mark.asyncio
async def test_an_idle_connection_is_closed_after_its_last_packet(
    start_radsec: StartRadsec, pki: Pki, dictionary: Any
) -> None:
    daemon = await start_radsec(radsec_idle_timeout=0.3)
    nas = await connect(daemon, pki)
    try:
        await nas.send(encoded(dictionary, "then-idle").RequestPacket())
        assert await nas.reply() is not None
        assert await nas.closed_by_server(timeout=5.0)
        assert daemon.radsec is not None and daemon.radsec.stats.closed["idle"] == 1
    finally:
        await nas.close()


@pytest.mark.asyncio
async def test_a_silent_tcp_client_gets_no_handshake_past_the_read_timeout(
    start_radsec: StartRadsec,
) -> None:
    daemon = await start_radsec(radsec_read_timeout=0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", radsec_port(daemon))
    try:  # TCP only: no ClientHello
        assert await asyncio.wait_for(reader.read(100), 5.0) == b""
        assert daemon.radsec is not None
        await until(lambda: daemon.radsec.stats.refused["handshake_timeout"] == 1)  # type: ignore[union-attr]
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def refused(daemon: Daemon, pki: Pki, context: ssl.SSLContext, dictionary: Any) -> None:
    """The server ends the connection during or right after the handshake, answering nothing."""
    try:
        nas = await TlsNas.connect(radsec_port(daemon), context)
    except (ConnectionError, ssl.SSLError):
        return  # refused within the handshake (TLS 1.2, or an alert the client saw first)
    try:
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await nas.send(encoded(dictionary, "refused").RequestPacket())
        assert await nas.reply() is None
    finally:
        await nas.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("certificate", ["none", "rogue"])
async def test_a_client_without_a_valid_certificate_is_refused_and_counted(
    radsec: Daemon, pki: Pki, dictionary: Any, certificate: str
) -> None:
    pair = pki.rogue if certificate == "rogue" else None  # the rogue CA's: the right name
    await refused(radsec, pki, client_context(pki, pair), dictionary)
    assert radsec.radsec is not None
    await until(lambda: radsec.radsec.stats.refused["handshake_failed"] == 1)  # type: ignore[union-attr]
    assert radsec.radsec.stats.accepted == 0
    assert len(radsec.index) == 0
    await until(lambda: not radsec.radsec.connections)  # type: ignore[union-attr]


@pytest.mark.asyncio
async def test_a_certificate_must_carry_the_clients_name(
    start_radsec: StartRadsec, pki: Pki, dictionary: Any
) -> None:
    daemon = await start_radsec(radsec_client(certificate_name="NAS1.example.net"))
    await refused(daemon, pki, client_context(pki, pki.other), dictionary)  # the CA's, not nas1
    assert daemon.radsec is not None
    await until(lambda: daemon.radsec.stats.refused["certificate_mismatch"] == 1)  # type: ignore[union-attr]
    nas = await connect(daemon, pki, pki.nas)  # DNS names compare without case
    try:
        await nas.send(encoded(dictionary, "named").RequestPacket())
        assert await nas.reply() is not None
    finally:
        await nas.close()


@pytest.mark.asyncio
async def test_clients_of_one_address_are_told_apart_by_their_certificates(
    start_radsec: StartRadsec, pki: Pki, dictionary: Any
) -> None:
    daemon = await start_radsec(
        {"name": "nas-one", "address": "127.0.0.0/8", "radsec": True, "certificate_name": "x"},
        {"name": "nas-two", "address": "127.0.0.1", "radsec": True, "certificate_name": "y"},
        {
            "name": "other",
            "address": "127.0.0.0/24",
            "radsec": True,
            "certificate_name": "other.example.net",
        },
    )
    nas = await connect(daemon, pki, pki.other)
    try:
        await nas.send(encoded(dictionary, "by-certificate").RequestPacket())
        assert await nas.reply() is not None
        assert [s.nas_name for s in daemon.index.for_user(12345)] == ["other"]
    finally:
        await nas.close()


@pytest.mark.asyncio
async def test_an_unknown_source_is_refused_before_tls(
    start_radsec: StartRadsec, pki: Pki, dictionary: Any
) -> None:
    daemon = await start_radsec(radsec_client("127.0.0.2"))
    await refused(daemon, pki, client_context(pki, pki.nas), dictionary)  # from 127.0.0.1
    assert daemon.radsec is not None
    assert daemon.radsec.stats.refused["unknown_client"] == 1
    nas = await connect(daemon, pki, source="127.0.0.2")
    try:
        await nas.send(encoded(dictionary, "known").RequestPacket())
        assert await nas.reply() is not None
    finally:
        await nas.close()


@pytest.mark.asyncio
async def test_a_radsec_client_is_no_udp_client(
    start_radsec: StartRadsec, pki: Pki, dictionary: Any
) -> None:
    # a UDP packet with the secret "radsec" from the RadSec client's address: no such client
    daemon = await start_radsec(radsec_client("127.0.0.3"))
    data = encoded(dictionary, "udp").RequestPacket()
    assert await send_raw(udp_port(daemon), data, source="127.0.0.3") is None
    assert daemon.service is not None and daemon.service.stats.dropped["unknown_client"] == 1


@pytest.mark.asyncio
async def test_connections_beyond_the_limit_are_refused(
    start_radsec: StartRadsec, pki: Pki, dictionary: Any
) -> None:
    daemon = await start_radsec(radsec_max_connections=2)
    first, second = await connect(daemon, pki), await connect(daemon, pki)
    try:
        await refused(daemon, pki, client_context(pki, pki.nas), dictionary)
        assert daemon.radsec is not None and daemon.radsec.stats.refused["too_many"] == 1
        await second.close()
        await until(lambda: len(daemon.radsec.connections) == 1)  # type: ignore[union-attr]
        third = await connect(daemon, pki)
        try:
            await third.send(encoded(dictionary, "third").RequestPacket())
            assert await third.reply() is not None
        finally:
            await third.close()
        assert daemon.radsec.stats.closed["peer"] >= 1
    finally:
        await first.close()
        await second.close()


@pytest.mark.asyncio
async def test_a_removed_client_loses_its_connection_on_reload(
    radsec: Daemon, pki: Pki, dictionary: Any, tmp_path: Path
) -> None:
    nas = await connect(radsec, pki)
    try:
        await nas.send(encoded(dictionary, "before-reload").RequestPacket())
        assert await nas.reply() is not None
        without = make_settings(tmp_path, radius=radsec_section(pki, radsec_client("127.0.0.9")))
        assert radsec.radsec is not None
        radsec.radsec.reconfigure(without.radius)
        assert await nas.closed_by_server()
        assert radsec.radsec.stats.closed["client_removed"] == 1
    finally:
        await nas.close()


@pytest.mark.asyncio
async def test_shutdown_answers_what_was_accepted_then_closes(
    radsec: Daemon, pki: Pki, dictionary: Any
) -> None:
    nas = await connect(radsec, pki)
    try:
        requests = [encoded(dictionary, f"last-{i}") for i in range(20)]
        await nas.send(b"".join(r.RequestPacket() for r in requests))
        assert radsec.service is not None
        await until(lambda: radsec.service.stats.accepted == 20)  # type: ignore[union-attr]
        stopping = asyncio.get_running_loop().create_task(radsec.stop())
        replies = [await nas.reply() for _ in requests]
        assert all(reply is not None for reply in replies)  # every accepted one answered
        assert await nas.closed_by_server()
        await stopping
        assert radsec.radsec is not None and radsec.radsec.stats.closed["shutdown"] == 1
        assert len(rows(radsec.settings.store.path)) == 20
    finally:
        await nas.close()


@pytest.mark.asyncio
async def test_disconnect_over_radsec_is_refused_with_a_reason(
    radsec: Daemon, pki: Pki, dictionary: Any
) -> None:
    nas = await connect(radsec, pki)
    try:
        await nas.send(encoded(dictionary, "no-coa").RequestPacket())
        assert await nas.reply() is not None
    finally:
        await nas.close()
    [session] = radsec.index.for_user(12345)
    with pytest.raises(LookupError, match="not supported yet"):
        await radsec.disconnect(session, requested_by="test")


@pytest.mark.asyncio
async def test_radsec_metrics(daemon_factory: Any, pki: Pki, dictionary: Any) -> None:
    from tests.test_metrics import scrape

    daemon = await daemon_factory(radius=radsec_section(pki))
    nas = await connect(daemon, pki)
    try:
        await nas.send(encoded(dictionary, "metered").RequestPacket())
        assert await nas.reply() is not None
        samples = await scrape(daemon)
    finally:
        await nas.close()
    assert samples[("radtrack_radsec_connections_open", ())] == 1
    assert samples[("radtrack_radsec_connections_accepted_total", ())] == 1
    assert samples[("radtrack_radsec_packets_received_total", ())] == 1
    assert samples[("radtrack_packets_acknowledged_total", ())] == 1
    assert samples[("radtrack_radsec_refused_total", (("reason", "too_many"),))] == 0
    assert samples[("radtrack_radsec_closed_total", (("reason", "stalled"),))] == 0


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"radsec_key": "{pki.encrypted_key}"}, "radius.radsec_key: .* is encrypted"),
        ({"radsec_key": "{pki.nas.key}"}, "radius.radsec_certificate: cannot load"),
        ({"radsec_ca": "{pki.server.key}"}, "radius.radsec_ca: cannot load"),
        ({"radsec_certificate": "/nonexistent.pem"}, "radius.radsec_certificate: cannot load"),
    ],
)
async def test_unusable_certificates_stop_start_up_naming_the_key(
    tmp_path: Path, pki: Pki, change: dict[str, str], message: str
) -> None:
    radius = {**radsec_section(pki), **{k: v.format(pki=pki) for k, v in change.items()}}
    settings = make_settings(tmp_path, api={"listen": ""}, radius=radius)
    daemon = Daemon(settings)
    with pytest.raises(StartupError, match=message):
        await daemon.start()
    await daemon.stop()


@pytest.mark.asyncio
async def test_a_busy_radsec_port_is_a_clear_startup_error(
    radsec: Daemon, pki: Pki, tmp_path: Path
) -> None:
    radius = radsec_section(pki, radsec_listen=[f"127.0.0.1:{radsec_port(radsec)}"])
    settings = make_settings(tmp_path / "other", api={"listen": ""}, radius=radius)
    with pytest.raises(StartupError, match="radius.radsec_listen: cannot bind TCP"):
        await Daemon(settings).start()


def test_bound_sockets_close_on_a_failed_bind(pki: Pki, tmp_path: Path) -> None:
    from radtrack.sockets import bind_all

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        radius = radsec_section(pki, radsec_listen=[f"127.0.0.1:{port}"])
        settings = make_settings(tmp_path, radius=radius)
        with pytest.raises(StartupError):
            bind_all(settings.radius, settings.api.listen)  # the UDP socket bound first closes


def test_check_config_loads_the_radsec_certificates(pki: Pki, tmp_path: Path) -> None:
    import subprocess
    import sys

    def check(key: Path) -> subprocess.CompletedProcess[str]:
        config = tmp_path / "radtrack.toml"
        config.write_text(
            f'[radius]\nradsec_listen = ["127.0.0.1:2083"]\n'
            f'radsec_certificate = "{pki.server.certificate}"\nradsec_key = "{key}"\n'
            f'radsec_ca = "{pki.ca}"\n[api]\nlisten = ""\n'
        )
        command = [sys.executable, "-m", "radtrack", "check-config", "--config", str(config)]
        return subprocess.run(command, capture_output=True, text=True, timeout=60)

    assert check(pki.server.key).returncode == 0
    bad = check(pki.encrypted_key)
    assert bad.returncode == 2 and "radius.radsec_key" in bad.stderr, bad.stderr


@pytest.mark.asyncio
async def test_a_reply_for_a_connection_that_has_gone_is_counted_not_sent(
    radsec: Daemon, pki: Pki, dictionary: Any
) -> None:
    assert radsec.radsec is not None
    first = await connect(radsec, pki)
    await until(lambda: len(radsec.radsec.connections) == 1)  # type: ignore[union-attr]
    [gone] = radsec.radsec.connections
    await first.close()
    await until(lambda: not radsec.radsec.connections)  # type: ignore[union-attr]
    second = await connect(radsec, pki)
    try:
        reply = encoded(dictionary, "x").RequestPacket()[:20]
        radsec.radsec.replies.send_many([(reply, ("127.0.0.1", gone))])  # as the commit thread
        await until(lambda: radsec.radsec.replies.send_errors == 1)  # type: ignore[union-attr]
        assert await second.reply(timeout=0.3) is None  # a new connection never gets it
    finally:
        await second.close()


@pytest.mark.asyncio
async def test_every_connection_gives_its_descriptors_back(
    pki: Pki, dictionary: Any, tmp_path: Path
) -> None:
    """Good, refused, silent and cut-off connections, then a stop: as many file descriptors
    open as before the daemon started (a handshake still running at shutdown included)."""
    before = len(os.listdir("/proc/self/fd"))
    radius = radsec_section(pki, radsec_max_connections=8)
    daemon = Daemon(make_settings(tmp_path, api={"listen": ""}, radius=radius))
    await daemon.start()
    clients: list[TlsNas] = []
    silent: list[asyncio.StreamWriter] = []
    try:
        for i in range(4):
            nas = await connect(daemon, pki)
            await nas.send(encoded(dictionary, f"fd-{i}").RequestPacket())
            assert await nas.reply() is not None
            clients.append(nas)
        await clients.pop().close()  # one closed by its client
        for _ in range(2):
            await refused(daemon, pki, client_context(pki, pki.rogue), dictionary)
        half = await connect(daemon, pki)  # half a packet, left there
        await half.send(encoded(dictionary, "half").RequestPacket()[:30])
        clients.append(half)
        for _ in range(2):  # TCP only: still in their handshakes at shutdown
            _, writer = await asyncio.open_connection("127.0.0.1", radsec_port(daemon))
            silent.append(writer)
        assert daemon.radsec is not None
        await until(lambda: len(daemon.radsec.connections) == 6)  # type: ignore[union-attr]
    finally:
        stopping = asyncio.get_running_loop().time()
        await daemon.stop()
        stopped_in = asyncio.get_running_loop().time() - stopping
        for nas in clients:
            await nas.close()
        for writer in silent:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
    assert daemon.radsec.stats.closed["shutdown"] == 4
    assert not daemon.radsec.connections
    assert stopped_in < 3.0  # the handshakes were cut short, not waited for (10 s)
    assert len(os.listdir("/proc/self/fd")) == before
