"""The Disconnect-Request client (radtrack.radius.disconnect) against a NAS simulator.

The simulator is a real UDP socket on 127.0.0.1 (port 0, read back) that decodes every request
with pyrad, the implementation nobody here wrote: pyrad must verify the Request Authenticator
and the Message-Authenticator and find the session's attributes. It answers by a scripted mode,
building its replies with pyrad too, and then forging or breaking them where a test needs it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import logging
import os
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import pytest
import pytest_asyncio
from pyrad.packet import CoAACK, CoAPacket, DisconnectACK, DisconnectNAK, DisconnectRequest

from radtrack.model import Session
from radtrack.radius import codec, dictionary
from radtrack.radius.disconnect import (
    DisconnectClient,
    DisconnectResult,
    encode_request,
    request_attributes,
    verify_reply,
)
from radtrack.radius.settings import ClientSettings

DICT = dictionary.load()
SECRET = b"disconnect-secret-0123456789"
EVENT_TIME = 1_700_000_000
SESSION_ID = "sess-0001"

Datagram = tuple[bytes, bool]  # (bytes, send from a second socket instead of the NAS's)
Mode = Callable[["NasSimulator", CoAPacket], list[Datagram]]


def make_session(nas_ip: str = "127.0.0.1", **extra: Any) -> Session:
    fields: dict[str, Any] = {
        "user_name": "12345",
        "framed_ip": "100.64.0.50",
        "calling_station_id": "AA:BB:CC:DD:EE:FF",
    }
    fields.update(extra)
    return Session(
        "0123456789abcdef01234567",
        f"nas-test/{nas_ip}",
        "nas-test",
        nas_ip,
        fields.pop("session_id", SESSION_ID),
        EVENT_TIME - 600.0,
        EVENT_TIME - 60.0,
        **fields,
    )


def make_client(port: int, coa_address: str | None = "127.0.0.1") -> ClientSettings:
    return ClientSettings(
        name="nas-test",
        network=ipaddress.ip_network("127.0.0.0/8"),
        secret=SECRET,
        coa_address=coa_address,
        coa_port=port,
    )


# -- the NAS simulator -----------------------------------------------------------------------


class NasSimulator(asyncio.DatagramProtocol):
    """Checks each Disconnect-Request with pyrad, then answers as ``mode`` says."""

    def __init__(self, mode: Mode) -> None:
        self.mode = mode
        self.requests: list[bytes] = []
        self.decoded: list[CoAPacket] = []
        self.problems: list[str] = []
        self.received = asyncio.Event()
        self.transport: asyncio.DatagramTransport | None = None
        self.other: asyncio.DatagramTransport | None = None  # the "wrong source" socket
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set_result(None)

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.requests.append(data)
        self.received.set()
        packet = CoAPacket(packet=data, dict=DICT, secret=SECRET)
        if packet.code != DisconnectRequest:
            self.problems.append(f"code {packet.code}")
        elif not packet.VerifyCoARequest():
            self.problems.append("Request Authenticator does not verify")
        elif not packet.message_authenticator:
            self.problems.append("no Message-Authenticator")
        elif not packet.verify_message_authenticator():
            self.problems.append("Message-Authenticator does not verify")
        if self.problems:
            return  # a real NAS silently discards such a request (RFC 5176 §3.4)
        self.decoded.append(packet)
        assert self.transport is not None and self.other is not None
        for reply, from_other in self.mode(self, packet):
            (self.other if from_other else self.transport).sendto(reply, addr)


@pytest_asyncio.fixture
async def nas_factory() -> AsyncIterator[Callable[..., Awaitable[NasSimulator]]]:
    """Start NAS simulators on 127.0.0.1:0 (or ::1 with ``host``); all closed at the end."""
    loop = asyncio.get_running_loop()
    transports: list[tuple[asyncio.DatagramTransport, asyncio.Future[None]]] = []

    async def start(mode: Mode, host: str = "127.0.0.1") -> NasSimulator:
        transport, simulator = await loop.create_datagram_endpoint(
            lambda: NasSimulator(mode), local_addr=(host, 0)
        )
        other, other_proto = await loop.create_datagram_endpoint(_Sink, local_addr=(host, 0))
        simulator.other = other
        transports.append((transport, simulator.closed))
        transports.append((other, other_proto.closed))
        return simulator

    yield start
    for transport, closed in transports:
        transport.close()
        await closed


class _Sink(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set_result(None)


# -- replies, built by pyrad and broken on purpose -------------------------------------------


def reply_bytes(
    request: CoAPacket,
    code: int = DisconnectACK,
    *,
    secret: bytes = SECRET,
    message_authenticator: bool = False,
    **attributes: Any,
) -> bytes:
    reply = request.CreateReply()
    reply.code = code
    reply.secret = secret
    for name, value in attributes.items():
        reply[name.replace("_", "-")] = value
    if message_authenticator:
        reply.add_message_authenticator()
    return reply.ReplyPacket()  # type: ignore[no-any-return]


def resign(request: CoAPacket, data: bytes, *, identifier: int | None = None) -> bytes:
    """``data`` with a correct Response Authenticator (and optionally another Identifier)."""
    head = data[:1] + bytes((request.id if identifier is None else identifier,)) + data[2:4]
    auth = hashlib.md5(head + request.authenticator + data[20:] + SECRET).digest()
    return head + auth + data[20:]


def forged_message_authenticator(request: CoAPacket) -> bytes:
    """An ACK whose Response Authenticator verifies but whose Message-Authenticator does not."""
    return resign(
        request, reply_bytes(request, secret=b"not-the-secret", message_authenticator=True)
    )


def ack(sim: NasSimulator, request: CoAPacket) -> list[Datagram]:
    return [(reply_bytes(request), False)]


def nak_not_found(sim: NasSimulator, request: CoAPacket) -> list[Datagram]:
    return [(reply_bytes(request, DisconnectNAK, Error_Cause="Session-Context-Not-Found"), False)]


def silence(sim: NasSimulator, request: CoAPacket) -> list[Datagram]:
    return []


async def run(
    nas: NasSimulator,
    *,
    timeout: float = 0.1,
    attempts: int = 2,
    session: Session | None = None,
    client: ClientSettings | None = None,
) -> DisconnectResult:
    disconnect = DisconnectClient(DICT, timeout=timeout, attempts=attempts)
    return await disconnect.disconnect(
        session or make_session(), client or make_client(nas.port), event_time=EVENT_TIME
    )


# -- the request on the wire -----------------------------------------------------------------


def test_request_is_byte_for_byte_what_pyrad_encodes() -> None:
    session = make_session()
    ours = encode_request(77, SECRET, request_attributes(session, EVENT_TIME))
    theirs = CoAPacket(code=DisconnectRequest, id=77, secret=SECRET, dict=DICT)
    theirs.add_message_authenticator()
    theirs["Acct-Session-Id"] = SESSION_ID
    theirs["User-Name"] = "12345"
    theirs["NAS-IP-Address"] = "127.0.0.1"
    theirs["Framed-IP-Address"] = "100.64.0.50"
    theirs["Calling-Station-Id"] = "AA:BB:CC:DD:EE:FF"
    theirs["Event-Timestamp"] = EVENT_TIME
    assert ours == theirs.RequestPacket()


def test_pyrad_verifies_both_authenticators_and_reads_the_attributes() -> None:
    data = encode_request(5, SECRET, request_attributes(make_session(), EVENT_TIME))
    packet = CoAPacket(packet=data, dict=DICT, secret=SECRET)
    assert packet.code == DisconnectRequest and packet.id == 5
    assert packet.VerifyCoARequest()
    assert packet.verify_message_authenticator()
    assert data[20] == codec.MESSAGE_AUTHENTICATOR  # first, as BlastRADIUS advice has it
    assert packet["Acct-Session-Id"] == [SESSION_ID]
    assert packet["User-Name"] == ["12345"]
    assert packet["NAS-IP-Address"] == ["127.0.0.1"]
    assert packet["Framed-IP-Address"] == ["100.64.0.50"]
    assert packet["Calling-Station-Id"] == ["AA:BB:CC:DD:EE:FF"]
    assert packet["Event-Timestamp"] == [EVENT_TIME]
    # with another secret neither check passes
    wrong = CoAPacket(packet=data, dict=DICT, secret=b"other")
    assert not wrong.VerifyCoARequest()
    assert not wrong.verify_message_authenticator()


def test_ipv6_nas_and_unknown_attributes_are_left_out() -> None:
    session = make_session("2001:db8::1", user_name=None, framed_ip=None, calling_station_id=None)
    data = encode_request(9, SECRET, request_attributes(session, EVENT_TIME))
    packet = CoAPacket(packet=data, dict=DICT, secret=SECRET)
    assert packet.VerifyCoARequest() and packet.verify_message_authenticator()
    assert packet["NAS-IPv6-Address"] == ["2001:db8::1"]
    assert set(packet.keys()) == {
        "Message-Authenticator",
        "Acct-Session-Id",
        "NAS-IPv6-Address",
        "Event-Timestamp",
    }


def test_session_id_goes_back_as_the_octets_the_nas_sent() -> None:
    raw_id = b"\xff\xfe-id\x00"  # not UTF-8, and a NUL: the codec keeps them escaped
    session = make_session(session_id=codec.text(raw_id))
    assert session.session_id == "\\xff\\xfe-id\\x00"
    packet = codec.decode(encode_request(1, SECRET, request_attributes(session, EVENT_TIME)))
    assert packet.first(codec.ACCT_SESSION_ID) == raw_id


def test_a_session_without_acct_session_id_is_refused() -> None:
    with pytest.raises(ValueError, match="Acct-Session-Id"):
        request_attributes(make_session(session_id=""), EVENT_TIME)


def test_verify_reply_takes_the_request_authenticator_for_the_message_authenticator() -> None:
    request_bytes = encode_request(3, SECRET, request_attributes(make_session(), EVENT_TIME))
    request = CoAPacket(packet=request_bytes, dict=DICT, secret=SECRET)
    good = reply_bytes(request, message_authenticator=True)
    assert verify_reply(request_bytes, good, SECRET, EVENT_TIME) is not None
    # the same reply with its Message-Authenticator computed over 16 zero octets (the rule for
    # the *request*) must fail: replies use the Request Authenticator (RFC 5176 §3.4)
    ma_at = good.index(bytes((codec.MESSAGE_AUTHENTICATOR, 18))) + 2
    zero_vector = good[:4] + codec.ZERO_AUTH + good[20:ma_at] + codec.ZERO_AUTH + good[ma_at + 16 :]
    mac = hmac.new(SECRET, zero_vector, "md5").digest()
    wrong = resign(request, good[:ma_at] + mac + good[ma_at + 16 :])
    assert verify_reply(request_bytes, wrong, SECRET, EVENT_TIME) is None
    assert verify_reply(request_bytes, b"\x29\x03\x00", SECRET, EVENT_TIME) is None


# -- the exchange on real sockets ------------------------------------------------------------


@pytest.mark.asyncio
async def test_ack(nas_factory: Any) -> None:
    nas = await nas_factory(ack)
    result = await run(nas)
    assert nas.problems == []
    assert result.status == "ACK" and result.error_cause is None and result.attempts == 1
    assert 0 <= result.elapsed < 0.1
    [packet] = nas.decoded
    assert packet["Acct-Session-Id"] == [SESSION_ID]
    assert packet["User-Name"] == ["12345"]
    assert packet["NAS-IP-Address"] == ["127.0.0.1"]
    assert packet["Framed-IP-Address"] == ["100.64.0.50"]
    assert packet["Calling-Station-Id"] == ["AA:BB:CC:DD:EE:FF"]
    assert packet["Event-Timestamp"] == [EVENT_TIME]


@pytest.mark.asyncio
async def test_nak_carries_the_error_cause_by_name(nas_factory: Any) -> None:
    nas = await nas_factory(nak_not_found)
    result = await run(nas)
    assert result == DisconnectResult("NAK", "Session-Context-Not-Found", 1, result.elapsed)


@pytest.mark.asyncio
async def test_unknown_error_cause_is_given_as_its_number(nas_factory: Any) -> None:
    def nak_599(sim: NasSimulator, request: CoAPacket) -> list[Datagram]:
        return [(reply_bytes(request, DisconnectNAK, Error_Cause=599), False)]

    nas = await nas_factory(nak_599)
    result = await run(nas)
    assert (result.status, result.error_cause) == ("NAK", "599")


@pytest.mark.asyncio
async def test_replies_with_a_valid_message_authenticator_are_accepted(nas_factory: Any) -> None:
    def signed_nak(sim: NasSimulator, request: CoAPacket) -> list[Datagram]:
        reply = reply_bytes(
            request,
            DisconnectNAK,
            message_authenticator=True,
            Error_Cause="Session-Context-Not-Found",
            Event_Timestamp=EVENT_TIME + 1,
        )
        return [(reply, False)]

    nas = await nas_factory(signed_nak)
    result = await run(nas)
    assert (result.status, result.error_cause, result.attempts) == (
        "NAK",
        "Session-Context-Not-Found",
        1,
    )


@pytest.mark.asyncio
async def test_wrong_secret_reply_is_not_accepted(nas_factory: Any) -> None:
    def wrong_secret(sim: NasSimulator, request: CoAPacket) -> list[Datagram]:
        return [(reply_bytes(request, secret=b"not-the-secret"), False)]

    nas = await nas_factory(wrong_secret)
    result = await run(nas)
    assert result.status == "TIMEOUT" and result.attempts == 2
    assert len(nas.decoded) == 2  # the NAS answered both times, both answers were dropped


@pytest.mark.asyncio
async def test_coa_ack_does_not_answer_a_disconnect_request(nas_factory: Any) -> None:
    def coa_ack(sim: NasSimulator, request: CoAPacket) -> list[Datagram]:
        # correctly signed, only the code is wrong
        return [(reply_bytes(request, CoAACK), False)]

    nas = await nas_factory(coa_ack)
    assert (await run(nas)).status == "TIMEOUT"


@pytest.mark.asyncio
async def test_forged_message_authenticator_is_ignored(nas_factory: Any) -> None:
    def forged(sim: NasSimulator, request: CoAPacket) -> list[Datagram]:
        return [(forged_message_authenticator(request), False)]

    nas = await nas_factory(forged)
    assert (await run(nas)).status == "TIMEOUT"


@pytest.mark.asyncio
async def test_reply_from_another_port_is_ignored(nas_factory: Any) -> None:
    def other_port(sim: NasSimulator, request: CoAPacket) -> list[Datagram]:
        return [(reply_bytes(request), True)]  # genuine, but not from where the request went

    nas = await nas_factory(other_port)
    assert (await run(nas)).status == "TIMEOUT"


@pytest.mark.asyncio
async def test_stale_event_timestamp_in_reply_is_ignored(nas_factory: Any) -> None:
    def stale(sim: NasSimulator, request: CoAPacket) -> list[Datagram]:
        return [(reply_bytes(request, Event_Timestamp=EVENT_TIME - 301), False)]

    nas = await nas_factory(stale)
    assert (await run(nas)).status == "TIMEOUT"  # RFC 5176 §6.3


@pytest.mark.asyncio
async def test_bad_replies_are_skipped_and_the_genuine_one_is_taken(nas_factory: Any) -> None:
    """Every reply below would read as an ACK if accepted; only the genuine NAK counts."""

    def noisy(sim: NasSimulator, request: CoAPacket) -> list[Datagram]:
        good_ack = reply_bytes(request)
        return [
            (b"\x29\x00", False),  # malformed: shorter than a header
            (good_ack[:2] + b"\x00\xff" + good_ack[4:], False),  # Length past the datagram
            (good_ack, True),  # wrong source port
            (resign(request, good_ack, identifier=(request.id + 1) % 256), False),  # wrong id
            (reply_bytes(request, secret=b"not-the-secret"), False),  # wrong authenticator
            (forged_message_authenticator(request), False),
            (reply_bytes(request, CoAACK), False),
            (reply_bytes(request, DisconnectNAK, Error_Cause="Resources-Unavailable"), False),
            (good_ack, False),  # too late: the NAK already won
        ]

    nas = await nas_factory(noisy)
    result = await run(nas, timeout=1.0)
    assert (result.status, result.error_cause, result.attempts) == (
        "NAK",
        "Resources-Unavailable",
        1,
    )


@pytest.mark.asyncio
async def test_silence_times_out_within_timeout_times_attempts(nas_factory: Any) -> None:
    nas = await nas_factory(silence)
    result = await run(nas, timeout=0.2, attempts=3)
    assert result.status == "TIMEOUT" and result.error_cause is None and result.attempts == 3
    assert 0.55 <= result.elapsed <= 1.5
    assert len(nas.requests) == 3
    assert nas.requests[0] == nas.requests[1] == nas.requests[2]  # same Identifier and auth


@pytest.mark.asyncio
async def test_retransmission_is_identical_and_gets_the_answer(nas_factory: Any) -> None:
    def drop_first(sim: NasSimulator, request: CoAPacket) -> list[Datagram]:
        return [] if len(sim.requests) == 1 else ack(sim, request)

    nas = await nas_factory(drop_first)
    result = await run(nas, timeout=0.2, attempts=3)
    assert result.status == "ACK" and result.attempts == 2
    assert 0.15 <= result.elapsed < 0.4
    assert len(nas.requests) == 2 and nas.requests[0] == nas.requests[1]
    assert nas.problems == []


@pytest.mark.asyncio
async def test_ipv6_nas_address_is_the_default_destination(nas_factory: Any) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        nas = await nas_factory(ack, host="::1")
    except OSError:
        pytest.skip("::1 is not available")
    session = make_session("::1")
    result = await run(nas, session=session, client=make_client(nas.port, coa_address=None))
    assert result.status == "ACK"
    assert nas.decoded[0]["NAS-IPv6-Address"] == ["::1"]


@pytest.mark.asyncio
async def test_every_result_is_logged_without_the_secret(
    nas_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    nas = await nas_factory(nak_not_found)
    with caplog.at_level(logging.INFO, logger="radtrack.radius.disconnect"):
        session = make_session()
        await run(nas, session=session)
    [record] = [r for r in caplog.records if r.name == "radtrack.radius.disconnect"]
    assert record.levelno == logging.INFO
    message = record.getMessage()
    assert message.startswith(
        f"event=disconnect result=NAK nas=nas-test session={session.id} attempts=1"
    )
    assert "error_cause=Session-Context-Not-Found" in message
    assert SECRET.decode() not in message


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.asyncio
@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
async def test_every_call_closes_its_socket_even_when_cancelled(nas_factory: Any) -> None:
    nas = await nas_factory(ack)
    before = open_fds()
    for _ in range(20):
        assert (await run(nas)).status == "ACK"
    assert open_fds() == before
    quiet = await nas_factory(silence)
    before = open_fds()
    task = asyncio.ensure_future(run(quiet, timeout=5.0, attempts=3))
    await quiet.received.wait()
    assert open_fds() == before + 1  # the call's own socket
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert open_fds() == before


def test_event_timestamp_is_four_octets() -> None:
    attrs = dict(request_attributes(make_session(), EVENT_TIME))
    assert attrs[codec.EVENT_TIMESTAMP] == struct.pack("!I", EVENT_TIME)
