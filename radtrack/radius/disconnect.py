"""Ending a session on its NAS: the RFC 5176 Disconnect-Request client.

The packet work is pure (``request_attributes``, ``encode_request``, ``verify_reply``: bytes and
numbers in, bytes or a verdict out); ``DisconnectClient`` carries it out over UDP, one socket per
call, retransmitting the same bytes until a verified Disconnect-ACK or -NAK arrives or the
attempts run out. pyrad's async client is not used (issue 6: its retry timer and reply matching
are wrong); tests/test_disconnect.py proves pyrad verifies what ``encode_request`` builds.

Contract: ``DisconnectClient.disconnect`` returns a DisconnectResult for every outcome the NAS
causes (ACK, NAK, silence, garbage); it raises ValueError only for a session it cannot name
(no Acct-Session-Id, a NAS address that is not an IP), and OSError only when no UDP socket can
be opened. Replies that fail any check are ignored, never raised.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import logging
import secrets
import struct
from dataclasses import dataclass
from typing import Any

from pyrad.dictionary import Dictionary

from radtrack.errors import MalformedPacket
from radtrack.model import Session
from radtrack.radius.codec import (
    ACCT_SESSION_ID,
    CALLING_STATION_ID,
    DISCONNECT_ACK,
    DISCONNECT_NAK,
    DISCONNECT_REQUEST,
    EVENT_TIMESTAMP,
    FRAMED_IP_ADDRESS,
    MESSAGE_AUTHENTICATOR,
    NAS_IP_ADDRESS,
    NAS_IPV6_ADDRESS,
    USER_NAME,
    ZERO_AUTH,
    RawPacket,
    decode,
    octets,
    zeroed_message_authenticator,
)
from radtrack.radius.settings import ClientSettings

logger = logging.getLogger(__name__)

ERROR_CAUSE = 101  # RFC 5176 §3.5
# RFC 5176 §6.3: a reply's Event-Timestamp, when present, must be current; RFC 3576 §5.4
# recommended 300 seconds as the default window.
EVENT_TIMESTAMP_WINDOW = 300
MAX_ATTRIBUTE_VALUE = 253  # RFC 2865 §5: Length is one octet and counts the 2-octet header

Attributes = list[tuple[int, bytes]]


@dataclass(frozen=True, slots=True)
class DisconnectResult:
    """What the NAS said to one Disconnect-Request.

    ``status`` is "ACK", "NAK" or "TIMEOUT". ``error_cause`` is the reply's Error-Cause by its
    dictionary name (e.g. "Session-Context-Not-Found"), or the number as text when the
    dictionary does not name it; None when the reply carries none (always None on TIMEOUT).
    ``attempts`` counts the datagrams sent, ``elapsed`` the seconds from the first send.
    """

    status: str  # "ACK" | "NAK" | "TIMEOUT"
    error_cause: str | None
    attempts: int
    elapsed: float


# -- pure packet work ----------------------------------------------------------------------------


def _text_value(name: str, text: str) -> bytes:
    # the exact octets the NAS sent (codec.text escaped those that were not UTF-8), so a
    # non-UTF-8 Acct-Session-Id still matches on the NAS
    value = octets(text)
    if not value or len(value) > MAX_ATTRIBUTE_VALUE:
        raise ValueError(f"{name} must be 1 to {MAX_ATTRIBUTE_VALUE} octets, not {len(value)}")
    return value


def request_attributes(session: Session, event_time: int) -> Attributes:
    """The NAS and session identification attributes of a Disconnect-Request (RFC 5176 §3),
    in wire order, without the Message-Authenticator (``encode_request`` adds it).

    Raises ValueError when the session has no Acct-Session-Id (a request naming only a user
    could end all of that user's sessions) or its NAS address is not an IP.
    """
    if not session.session_id:
        raise ValueError(f"session {session.id} has no Acct-Session-Id to disconnect by")
    attrs: Attributes = [(ACCT_SESSION_ID, _text_value("Acct-Session-Id", session.session_id))]
    if session.user_name:
        attrs.append((USER_NAME, _text_value("User-Name", session.user_name)))
    nas = ipaddress.ip_address(session.nas_ip)  # ValueError when it is not an address
    if isinstance(nas, ipaddress.IPv4Address):
        attrs.append((NAS_IP_ADDRESS, nas.packed))  # RFC 2865 §5.4
    else:
        attrs.append((NAS_IPV6_ADDRESS, nas.packed))  # RFC 3162 §2.1
    if session.framed_ip:
        attrs.append((FRAMED_IP_ADDRESS, ipaddress.IPv4Address(session.framed_ip).packed))
    if session.calling_station_id:
        attrs.append(
            (CALLING_STATION_ID, _text_value("Calling-Station-Id", session.calling_station_id))
        )
    # RFC 5176 §6.3: without IPsec, Event-Timestamp (RFC 2869 §5.3) protects against replay
    attrs.append((EVENT_TIMESTAMP, struct.pack("!I", event_time & 0xFFFFFFFF)))
    return attrs


def encode_request(identifier: int, secret: bytes, attributes: Attributes) -> bytes:
    """A Disconnect-Request with a Message-Authenticator as its first attribute.

    Order matters (RFC 5176 §3.4): the Message-Authenticator is HMAC-MD5 over the packet with
    both the Authenticator field and its own value as 16 zero octets, and it is inserted before
    the Request Authenticator is computed, which is then MD5(Code + Identifier + Length +
    16 zero octets + Attributes + Secret) as for an Accounting-Request (RFC 5176 §2.3, RFC 2866
    §3).
    """
    body = b"".join(bytes((key, len(value) + 2)) + value for key, value in attributes)
    length = 20 + 18 + len(body)
    head = struct.pack("!BBH", DISCONNECT_REQUEST, identifier, length)
    ma_head = bytes((MESSAGE_AUTHENTICATOR, 18))
    mac = hmac.new(secret, head + ZERO_AUTH + ma_head + ZERO_AUTH + body, "md5").digest()
    attrs = ma_head + mac + body
    authenticator = hashlib.md5(head + ZERO_AUTH + attrs + secret).digest()
    return head + authenticator + attrs


def verify_reply(request: bytes, data: bytes, secret: bytes, event_time: int) -> RawPacket | None:
    """The reply ``data`` decoded, if it is a genuine answer to ``request``; else None.

    Checks: well formed; code Disconnect-ACK or -NAK (RFC 5176 §2.3, a CoA-ACK does not answer a
    Disconnect-Request); same Identifier; Response Authenticator = MD5(Code + Identifier +
    Length + Request Authenticator + Attributes + Secret) (RFC 5176 §2.3, RFC 2866 §3); a
    Message-Authenticator, if any, appears once and is HMAC-MD5 over the reply with the
    *Request* Authenticator in the Authenticator field (RFC 5176 §3.4, RFC 3579 §3.2); an
    Event-Timestamp, if any, within EVENT_TIMESTAMP_WINDOW of ``event_time`` (RFC 5176 §6.3).
    """
    try:
        packet = decode(data)
    except MalformedPacket:
        return None
    if packet.code not in (DISCONNECT_ACK, DISCONNECT_NAK) or packet.identifier != request[1]:
        return None
    request_auth = request[4:20]
    expected = hashlib.md5(packet.data[:4] + request_auth + packet.data[20:] + secret).digest()
    if not hmac.compare_digest(expected, packet.authenticator):
        return None
    ma_values = packet.all(MESSAGE_AUTHENTICATOR)
    if ma_values:
        if len(ma_values) > 1 or len(ma_values[0]) != 16:
            return None
        mac = hmac.new(
            secret, packet.data[:4] + request_auth + zeroed_message_authenticator(packet), "md5"
        ).digest()
        if not hmac.compare_digest(mac, ma_values[0]):
            return None
    timestamp = packet.first(EVENT_TIMESTAMP)
    if timestamp is not None:
        if len(timestamp) != 4:
            return None
        if abs(int.from_bytes(timestamp, "big") - event_time) > EVENT_TIMESTAMP_WINDOW:
            return None
    return packet


# -- the UDP client ------------------------------------------------------------------------------


class _ReplyProtocol(asyncio.DatagramProtocol):
    """Receives on the call's own socket; the first verified reply from the NAS wins."""

    def __init__(
        self,
        request: bytes,
        secret: bytes,
        event_time: int,
        peer: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.request = request
        self.secret = secret
        self.event_time = event_time
        self.peer = peer
        self.reply: asyncio.Future[RawPacket] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.ignored = 0

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self.reply.done():
            return
        try:
            source = (ipaddress.ip_address(addr[0]), addr[1])
        except (ValueError, TypeError, IndexError):
            source = None
        packet = None
        if source == self.peer:  # RFC 5176 §2.3: the reply comes from where the request went
            packet = verify_reply(self.request, data, self.secret, self.event_time)
        if packet is None:
            self.ignored += 1
            logger.debug("event=disconnect_reply_ignored peer=%s octets=%d", addr, len(data))
            return
        self.reply.set_result(packet)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors and failed sends: keep retransmitting, the attempts bound the wait
        logger.debug("event=disconnect_send_error error=%s", exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class DisconnectClient:
    """Sends RFC 5176 Disconnect-Requests and waits for verified answers.

    ``timeout`` is the wait after each send, ``attempts`` the number of sends in total
    (RadiusSettings.disconnect_timeout and disconnect_attempts), so one call lasts at most
    about ``timeout * attempts``.
    """

    def __init__(self, dictionary: Dictionary, timeout: float, attempts: int) -> None:
        if timeout <= 0 or attempts < 1:
            raise ValueError("timeout must be positive and attempts at least 1")
        self.timeout = timeout
        self.attempts = attempts
        values = dictionary.attributes["Error-Cause"].values.forward  # name -> 4 octets
        self.error_causes: dict[int, str] = {
            int.from_bytes(raw, "big"): name for name, raw in values.items()
        }

    def _error_cause(self, packet: RawPacket) -> str | None:
        value = packet.first(ERROR_CAUSE)
        if value is None or len(value) != 4:
            return None
        number = int.from_bytes(value, "big")
        return self.error_causes.get(number, str(number))

    async def disconnect(
        self, session: Session, client: ClientSettings, *, event_time: int
    ) -> DisconnectResult:
        """Ask the NAS of ``session`` to end it; ``event_time`` (POSIX seconds) goes into the
        Event-Timestamp. Returns ACK, NAK (with the Error-Cause) or TIMEOUT."""
        destination = ipaddress.ip_address(client.coa_address or session.nas_ip)
        port = client.coa_port
        request = encode_request(
            secrets.randbelow(256), client.secret, request_attributes(session, event_time)
        )
        loop = asyncio.get_running_loop()
        local = "0.0.0.0" if destination.version == 4 else "::"
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: _ReplyProtocol(request, client.secret, event_time, (destination, port), loop),
            local_addr=(local, 0),
        )
        start = loop.time()
        sent = 0
        try:
            while sent < self.attempts and not protocol.reply.done():
                # RFC 5080 §2.2.1 / RFC 5176 §2.3: a retransmission is the same packet, same
                # Identifier and authenticator, so the NAS can recognise the duplicate
                transport.sendto(request, (str(destination), port))
                sent += 1
                await asyncio.wait((protocol.reply,), timeout=self.timeout)
        finally:
            transport.close()
            await protocol.closed  # the socket is closed once connection_lost has run
        elapsed = loop.time() - start
        if protocol.reply.done():
            packet = protocol.reply.result()
            status = "ACK" if packet.code == DISCONNECT_ACK else "NAK"
            result = DisconnectResult(status, self._error_cause(packet), sent, elapsed)
        else:
            result = DisconnectResult("TIMEOUT", None, sent, elapsed)
        logger.info(
            "event=disconnect result=%s nas=%s session=%s attempts=%d error_cause=%s "
            "elapsed=%.3f ignored=%d",
            result.status,
            client.name,
            session.id,
            result.attempts,
            result.error_cause or "-",
            result.elapsed,
            protocol.ignored,
        )
        return result
