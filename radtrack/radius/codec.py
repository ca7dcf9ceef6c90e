"""The RADIUS codec: bytes in, verified packets and AccountingRequests out; replies encoded.

This is the hot path, so it walks the attributes with plain slicing instead of building pyrad
packets (~10 µs against ~55 µs a packet, measured in docs/performance.md); pyrad's dictionary
drives what the values mean. tests/test_codec.py proves it gives what pyrad gives on valid
packets and rejects what pyrad rejects.

Contract: ``decode`` raises only MalformedPacket. ``verify_request`` returns a bool and never
raises. ``AccountingDecoder.request`` raises only MalformedPacket.
"""

from __future__ import annotations

import hashlib
import hmac
import socket
import struct
from typing import NamedTuple

from pyrad.dictionary import Dictionary

from radtrack.errors import MalformedPacket
from radtrack.model import AccountingRequest, StatusType

# Packet codes (RFC 2865 §3, RFC 2866 §3, RFC 5176 §3, RFC 5997 §2)
ACCOUNTING_REQUEST = 4
ACCOUNTING_RESPONSE = 5
STATUS_SERVER = 12
DISCONNECT_REQUEST = 40
DISCONNECT_ACK = 41
DISCONNECT_NAK = 42

MAX_PACKET_SIZE = 4096  # RFC 2865 §3: "The maximum length is 4096"
HEADER = struct.Struct("!BBH16s")
ZERO_AUTH = b"\x00" * 16

# Attribute types the hot path reads (RFC 2865 §5, RFC 2866 §5, RFC 2869 §5)
USER_NAME = 1
NAS_IP_ADDRESS = 4
FRAMED_IP_ADDRESS = 8
CLASS = 25
CALLED_STATION_ID = 30
CALLING_STATION_ID = 31
NAS_IDENTIFIER = 32
PROXY_STATE = 33
ACCT_STATUS_TYPE = 40
ACCT_DELAY_TIME = 41
ACCT_INPUT_OCTETS = 42
ACCT_OUTPUT_OCTETS = 43
ACCT_SESSION_ID = 44
ACCT_SESSION_TIME = 46
ACCT_INPUT_PACKETS = 47
ACCT_OUTPUT_PACKETS = 48
ACCT_TERMINATE_CAUSE = 49
ACCT_INPUT_GIGAWORDS = 52
ACCT_OUTPUT_GIGAWORDS = 53
EVENT_TIMESTAMP = 55
CONNECT_INFO = 77
MESSAGE_AUTHENTICATOR = 80
ACCT_INTERIM_INTERVAL = 85
NAS_PORT_ID = 87
NAS_PORT_TYPE = 61
NAS_IPV6_ADDRESS = 95


class RawPacket(NamedTuple):
    """A structurally valid RADIUS packet: header fields and attributes in wire order.

    ``data`` is the packet cut to its Length field (octets past it are padding, RFC 2866 §3).
    """

    code: int
    identifier: int
    authenticator: bytes
    data: bytes
    attributes: list[tuple[int, bytes]]

    def first(self, attr_type: int) -> bytes | None:
        for key, value in self.attributes:
            if key == attr_type:
                return value
        return None

    def all(self, attr_type: int) -> list[bytes]:
        return [value for key, value in self.attributes if key == attr_type]


def decode(data: bytes) -> RawPacket:
    """Split a datagram into header and attributes (RFC 2865 §3 and §5).

    Rejects: shorter than 20 octets, Length below 20 or above the datagram or 4096, an attribute
    shorter than 2 octets or running past Length. Octets past Length are ignored.
    """
    size = len(data)
    if size < 20:
        raise MalformedPacket(f"{size} octets, shorter than a RADIUS header")
    code, identifier, length, authenticator = HEADER.unpack_from(data)
    if length < 20 or length > size:
        raise MalformedPacket(f"Length field {length} does not fit a datagram of {size} octets")
    if length > MAX_PACKET_SIZE:
        raise MalformedPacket(f"Length field {length} exceeds {MAX_PACKET_SIZE}")
    if length < size:
        data = data[:length]
    attributes: list[tuple[int, bytes]] = []
    pos = 20
    while pos < length:
        if pos + 2 > length:
            raise MalformedPacket(f"attribute header cut off at octet {pos}")
        attr_type = data[pos]
        attr_len = data[pos + 1]
        if attr_len < 2:
            raise MalformedPacket(f"attribute {attr_type} has length {attr_len}")
        end = pos + attr_len
        if end > length:
            raise MalformedPacket(f"attribute {attr_type} runs past the end of the packet")
        attributes.append((attr_type, data[pos + 2 : end]))
        pos = end
    return RawPacket(code, identifier, authenticator, data, attributes)


def zeroed_message_authenticator(packet: RawPacket) -> bytes:
    """The packet's attributes with the Message-Authenticator value replaced by zeros."""
    data = packet.data
    pos = 20
    while pos < len(data):
        attr_len = data[pos + 1]
        if data[pos] == MESSAGE_AUTHENTICATOR:
            return data[20 : pos + 2] + ZERO_AUTH + data[pos + attr_len :]
        pos += attr_len
    return data[20:]


def verify_request(
    packet: RawPacket, secret: bytes, *, require_message_authenticator: bool = False
) -> bool:
    """Check a request's authenticators with the NAS's secret.

    Accounting-Request: the Request Authenticator is MD5 over the packet with a zero
    authenticator plus the secret (RFC 2866 §3). Status-Server: its authenticator is random, so
    the Message-Authenticator is required and checked instead (RFC 5997 §3). A
    Message-Authenticator, when present, must be 16 octets, appear once and verify (RFC 2869
    §5.14, RFC 3579 §3.2); for accounting it is computed with a zero authenticator.
    """
    ma_values = packet.all(MESSAGE_AUTHENTICATOR)
    if len(ma_values) > 1 or (ma_values and len(ma_values[0]) != 16):
        return False
    if packet.code == STATUS_SERVER:
        if not ma_values:
            return False
        vector = packet.authenticator
    else:
        expected = hashlib.md5(packet.data[:4] + ZERO_AUTH + packet.data[20:] + secret).digest()
        if not hmac.compare_digest(expected, packet.authenticator):
            return False
        if not ma_values:
            return not require_message_authenticator
        vector = ZERO_AUTH
    mac = hmac.new(secret, packet.data[:4] + vector + zeroed_message_authenticator(packet), "md5")
    return hmac.compare_digest(mac.digest(), ma_values[0])


def encode_reply(
    request: RawPacket,
    secret: bytes,
    code: int = ACCOUNTING_RESPONSE,
    *,
    message_authenticator: bool = False,
) -> bytes:
    """A reply to ``request``: its Proxy-State attributes copied in order (RFC 2865 §5.33),
    the Response Authenticator over the request's authenticator (RFC 2866 §3), and optionally a
    Message-Authenticator: computed with the request's authenticator in a reply to Status-Server
    (RFC 5997 §3), with 16 zero octets in a reply to an Accounting-Request (as FreeRADIUS and
    pyrad compute and check it).
    """
    attrs = b"".join(
        bytes((PROXY_STATE, len(value) + 2)) + value for value in request.all(PROXY_STATE)
    )
    if message_authenticator:
        length = 20 + 18 + len(attrs)
        head = struct.pack("!BBH", code, request.identifier, length)
        vector = request.authenticator if request.code == STATUS_SERVER else ZERO_AUTH
        mac = hmac.new(secret, head + vector + b"\x50\x12" + ZERO_AUTH + attrs, "md5").digest()
        attrs = b"\x50\x12" + mac + attrs
    head = struct.pack("!BBH", code, request.identifier, 20 + len(attrs))
    auth = hashlib.md5(head + request.authenticator + attrs + secret).digest()
    return head + auth + attrs


def _int(value: bytes) -> int | None:
    return int.from_bytes(value, "big") if len(value) == 4 else None


def _text(value: bytes) -> str:
    return value.decode("utf-8", "surrogateescape")


def _int_or_none(value: bytes | None) -> int | None:
    return int.from_bytes(value, "big") if value is not None and len(value) == 4 else None


def _ipv4(value: bytes) -> str | None:
    return socket.inet_ntoa(value) if len(value) == 4 else None


class AccountingDecoder:
    """Turns a verified Accounting-Request into an AccountingRequest, using a pyrad dictionary
    for value names (NAS-Port-Type "Virtual", Acct-Terminate-Cause "User-Request", ...)."""

    def __init__(self, dictionary: Dictionary) -> None:
        self.port_types = self._names(dictionary, "NAS-Port-Type")
        self.terminate_causes = self._names(dictionary, "Acct-Terminate-Cause")
        # strings repeated across sessions (NAS addresses, port types, Connect-Info) are shared
        # so a million sessions do not keep a million copies (docs/performance.md)
        self._shared: dict[str, str] = {}

    @staticmethod
    def _names(dictionary: Dictionary, attribute: str) -> dict[int, str]:
        values = dictionary.attributes[attribute].values.forward
        return {int.from_bytes(raw, "big"): name for name, raw in values.items()}

    def _share(self, text: str) -> str:
        shared = self._shared.get(text)
        if shared is None:
            if len(self._shared) >= 100_000:
                return text
            self._shared[text] = shared = text
        return shared

    def request(  # noqa: C901 - one line per attribute, read top to bottom
        self, packet: RawPacket, nas_name: str, source_ip: str, now: float
    ) -> AccountingRequest | None:
        """The AccountingRequest of a verified Accounting-Request; None for a status radtrack
        does not track (e.g. Failed, RFC 2867 tunnel records), which is acknowledged all the same.
        Raises MalformedPacket when Acct-Status-Type or Acct-Session-Id is missing or invalid.
        An attribute that should appear once but repeats counts by its first instance, as in
        FreeRADIUS and pyrad.
        """
        raw = dict(reversed(packet.attributes))  # type -> first value (C speed, one pass)
        get = raw.get
        value = get(ACCT_STATUS_TYPE)
        status_raw = _int(value) if value is not None else None
        if value is not None and status_raw is None:
            raise MalformedPacket("Acct-Status-Type is not 4 octets")
        value = get(ACCT_SESSION_ID)
        session_id = _text(value) if value is not None else None
        value = get(USER_NAME)
        user_name = _text(value) if value is not None else None
        value = get(NAS_IP_ADDRESS)
        nas_ip = _ipv4(value) if value is not None else None
        value = get(NAS_IDENTIFIER)
        nas_identifier = _text(value) if value is not None else None
        value = get(NAS_IPV6_ADDRESS)
        nas_ipv6 = (
            socket.inet_ntop(socket.AF_INET6, value)
            if value is not None and len(value) == 16
            else None
        )
        value = get(CLASS)
        class_hex = value.hex() if value is not None else None
        value = get(NAS_PORT_ID)
        nas_port_id = _text(value) if value is not None else None
        value = get(NAS_PORT_TYPE)
        number = _int(value) if value is not None else None
        nas_port_type = self.port_types.get(number, str(number)) if number is not None else None
        value = get(CALLING_STATION_ID)
        calling = _text(value) if value is not None else None
        value = get(CALLED_STATION_ID)
        called = _text(value) if value is not None else None
        value = get(FRAMED_IP_ADDRESS)
        framed_ip = _ipv4(value) if value is not None else None
        value = get(CONNECT_INFO)
        connect_info = _text(value) if value is not None else None
        value = get(ACCT_TERMINATE_CAUSE)
        number = _int(value) if value is not None else None
        terminate = self.terminate_causes.get(number, str(number)) if number is not None else None
        session_time = _int_or_none(get(ACCT_SESSION_TIME))
        interim = _int_or_none(get(ACCT_INTERIM_INTERVAL))
        event_ts = _int_or_none(get(EVENT_TIMESTAMP))
        delay = _int_or_none(get(ACCT_DELAY_TIME)) or 0
        in_oct = _int_or_none(get(ACCT_INPUT_OCTETS))
        out_oct = _int_or_none(get(ACCT_OUTPUT_OCTETS))
        in_pkt = _int_or_none(get(ACCT_INPUT_PACKETS))
        out_pkt = _int_or_none(get(ACCT_OUTPUT_PACKETS))
        in_giga = _int_or_none(get(ACCT_INPUT_GIGAWORDS)) or 0
        out_giga = _int_or_none(get(ACCT_OUTPUT_GIGAWORDS)) or 0
        if status_raw is None:
            raise MalformedPacket("no Acct-Status-Type")  # RFC 2866 §5.1: MUST be present
        try:
            status = StatusType(status_raw)
        except ValueError:
            return None
        if session_id is None:
            if status in (StatusType.ACCOUNTING_ON, StatusType.ACCOUNTING_OFF):
                session_id = ""
            else:
                raise MalformedPacket("no Acct-Session-Id")  # RFC 2866 §5.5: MUST be present
        # RFC 2869 §5.3 Event-Timestamp; else arrival minus Acct-Delay-Time (RFC 2866 §5.2)
        event_time = float(event_ts) if event_ts is not None else now - delay
        share = self._share
        nas_address = nas_ip or nas_ipv6
        identity = nas_address or nas_identifier or source_ip
        return AccountingRequest(
            status=status,
            nas_key=share(f"{nas_name}/{identity}"),
            nas_name=nas_name,
            nas_ip=share(nas_address or source_ip),
            session_id=session_id,
            event_time=event_time,
            user_name=user_name,
            class_hex=class_hex,
            nas_port_id=nas_port_id,
            nas_port_type=nas_port_type,
            calling_station_id=calling,
            called_station_id=called,
            framed_ip=framed_ip,
            connect_info=share(connect_info) if connect_info is not None else None,
            session_time=session_time,
            # RFC 2869 §5.1-5.2: Gigawords count how often the 32-bit counter wrapped
            input_octets=(in_giga << 32) + in_oct if in_oct is not None else None,
            output_octets=(out_giga << 32) + out_oct if out_oct is not None else None,
            input_packets=in_pkt,
            output_packets=out_pkt,
            terminate_cause=terminate,
            interim_interval=interim,
            received_at=now,
        )
