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
import importlib
import itertools
import operator
import re
import struct
from collections.abc import Callable, Sequence
from socket import AF_INET6, inet_ntoa, inet_ntop
from typing import Literal, NamedTuple, Protocol

from pyrad.dictionary import Dictionary

from radtrack.errors import MalformedPacket
from radtrack.model import AccountingRequest, StatusType


class _Digest(Protocol):
    def digest(self) -> bytes: ...

    def update(self, data: bytes, /) -> None: ...

    def copy(self) -> _Digest: ...


def _fast_md5() -> Callable[[bytes], _Digest]:
    """CPython's own MD5: for a RADIUS packet's few hundred octets about 1.5-2x as fast as
    OpenSSL's (whose per-call setup dominates at this size); the digest is the same."""
    try:
        return importlib.import_module("_md5").md5  # type: ignore[no-any-return]
    except (ImportError, AttributeError):  # a Python built without it
        return hashlib.md5


md5 = _fast_md5()
_HMAC_PADS: dict[bytes, tuple[_Digest, _Digest]] = {}


def hmac_md5(key: bytes, message: bytes) -> bytes:
    """HMAC-MD5 (RFC 2104) with the key's padded inner and outer blocks hashed once and copied
    per call: ~3x faster than hmac.digest(key, message, "md5"), same result."""
    pads = _HMAC_PADS.get(key)
    if pads is None:
        block = (md5(key).digest() if len(key) > 64 else key).ljust(64, b"\0")
        pads = (
            md5(bytes(octet ^ 0x36 for octet in block)),
            md5(bytes(octet ^ 0x5C for octet in block)),
        )
        if len(_HMAC_PADS) >= 1024:  # keys are NAS secrets: few; never grow without bound
            _HMAC_PADS.clear()
        _HMAC_PADS[key] = pads
    inner = pads[0].copy()
    inner.update(message)
    outer = pads[1].copy()
    outer.update(inner.digest())
    return outer.digest()


# Packet codes (RFC 2865 §3, RFC 2866 §3, RFC 5176 §3, RFC 5997 §2)
ACCOUNTING_REQUEST = 4
ACCOUNTING_RESPONSE = 5
STATUS_SERVER = 12
DISCONNECT_REQUEST = 40
DISCONNECT_ACK = 41
DISCONNECT_NAK = 42

MAX_PACKET_SIZE = 4096  # RFC 2865 §3: "The maximum length is 4096"
HEADER = struct.Struct("!BBH16s")
_new_tuple = tuple.__new__  # builds a NamedTuple from a tuple in C
REPLY_HEAD = struct.Struct("!BBH")
# an Accounting-Response without attributes, per Identifier: Code, Identifier, Length 20
_BARE_REPLY_HEADS = [REPLY_HEAD.pack(5, identifier, 20) for identifier in range(256)]
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
    """A structurally valid RADIUS packet: header fields and attribute values.

    ``data`` is the packet cut to its Length field (octets past it are padding, RFC 2866 §3).
    ``kept`` has a slot per attribute type the hot path reads (KEPT_ORDER, then one slot that
    stays False for every other type): the value of the type's first instance, or None when the
    packet has none (a list when decode() walked the packet, a tuple when it used a layout).
    The other types are not cut out of ``data`` at all (``first`` and ``all`` find them).
    ``values`` shows the same by attribute type (256 slots); ``attributes`` lists
    them all in wire order, walked again from ``data`` when asked.
    """

    code: int
    identifier: int
    authenticator: bytes
    data: bytes
    kept: Sequence[bytes | None | Literal[False]]

    @property
    def values(self) -> list[bytes | None | Literal[False]]:
        """By attribute type: the first instance's value of a kept type (None: absent), False
        for a type that is not kept."""
        kept = self.kept
        return [kept[slot] for slot in _SLOTS]

    @property
    def attributes(self) -> list[tuple[int, bytes]]:
        data = self.data
        attributes = []
        pos = 20
        while pos < len(data):  # decode() checked the structure
            end = pos + data[pos + 1]
            attributes.append((data[pos], data[pos + 2 : end]))
            pos = end
        return attributes

    def first(self, attr_type: int) -> bytes | None:
        value = self.kept[_SLOTS[attr_type]]
        if value is False:  # not kept: look
            return next((v for key, v in self.attributes if key == attr_type), None)
        return value

    def all(self, attr_type: int) -> list[bytes]:
        if self.kept[_SLOTS[attr_type]] is None:
            return []
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
    layout = _LAYOUTS.get(length)
    if layout is not None:
        mask, expected, cut, arrange = layout
        if int.from_bytes(data) & mask == expected:  # the walk would take the same steps
            values = arrange(cut(data) + _ABSENT)
            return _new_tuple(RawPacket, (code, identifier, authenticator, data, values))
    kept = _NOTHING_KEPT[:]
    slots = _SLOTS
    pos = 20
    try:
        while pos < length:
            start = pos + 2
            end = pos + data[pos + 1]  # IndexError: one octet left, the header is cut off
            if end < start or end > length:
                if end < start:
                    raise MalformedPacket(f"attribute {data[pos]} has length {end - pos}")
                raise MalformedPacket(f"attribute {data[pos]} runs past the end of the packet")
            slot = slots[data[pos]]
            if kept[slot] is None:  # a type kept, and its first instance
                kept[slot] = data[start:end]
            pos = end
    except IndexError:
        raise MalformedPacket(f"attribute header cut off at octet {pos}") from None
    if layout is None or _relearn():
        _learn(data, length)
    return _new_tuple(RawPacket, (code, identifier, authenticator, data, kept))


# Layouts of packets seen, by Length: a NAS sends packets of the same shape over and over (the
# same attributes in the same order, mostly of the same lengths), so decode() checks the type
# and length octets where the layout has them and, when they all match, cuts the kept values
# out at the layout's offsets instead of walking the attributes in Python (~10x cheaper). The
# check is one big-integer AND: the packet as a number, masked to the octets that hold types
# and lengths. When they match, the walk would have stepped through the same offsets to the
# same end, so the result is the walk's. At most one per Length (4096).
_Kept = tuple[bytes | None | Literal[False], ...]
# (the mask of the type and length octets, their values under it, the kept values' cutter
# (in wire order), their arranger (into KEPT_ORDER))
_Layout = tuple[
    int,
    int,
    Callable[[bytes], _Kept],
    Callable[[_Kept], _Kept],
]
_LAYOUTS: dict[int, _Layout] = {}
# appended to the values cut, for the arranger: a kept type absent gets None, the last slot False
_ABSENT: tuple[None, Literal[False]] = (None, False)
_MISSES = itertools.count()


def _relearn() -> bool:
    """A packet did not fit the layout of its Length: every 4th one replaces it (packets of two
    shapes with the same Length do not relearn on every packet)."""
    return not next(_MISSES) & 3


def _learn(data: bytes, length: int) -> None:
    """Remember the layout of a packet decode() walked without error."""
    offsets: list[int] = []
    first: dict[int, tuple[int, int]] = {}  # kept type -> (offset, end) of its first value
    pos = 20
    while pos < length:
        offsets += (pos, pos + 1)
        attr_type = data[pos]
        end = pos + data[pos + 1]
        if attr_type in KEPT_TYPES and attr_type not in first:
            first[attr_type] = (pos + 2, end)
        pos = end
    if len(first) < 2:  # itemgetter returns a tuple from 2 items on; no layout needed anyway
        return
    # the kept values in wire order, cut by one struct format of skips and strings
    present = sorted(first, key=first.__getitem__)
    fmt, at = ["!"], 0
    for attr_type in present:
        start, end = first[attr_type]
        fmt.append(f"{start - at}x{end - start}s")
        at = end
    absent = len(present)
    mask = bytearray(length)
    for offset in offsets:
        mask[offset] = 0xFF
    mask_number = int.from_bytes(mask)
    _LAYOUTS[length] = (
        mask_number,
        int.from_bytes(data) & mask_number,
        struct.Struct("".join(fmt)).unpack_from,
        operator.itemgetter(
            *(present.index(t) if t in first else absent for t in KEPT_ORDER), absent + 1
        ),
    )


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
    packet: RawPacket, secret: bytes, require_message_authenticator: bool = False
) -> bool:
    """Check a request's authenticators with the NAS's secret.

    Accounting-Request: the Request Authenticator is MD5 over the packet with a zero
    authenticator plus the secret (RFC 2866 §3). Status-Server: its authenticator is random, so
    the Message-Authenticator is required and checked instead (RFC 5997 §3). A
    Message-Authenticator, when present, must be 16 octets, appear once and verify (RFC 2869
    §5.14, RFC 3579 §3.2); for accounting it is computed with a zero authenticator.
    """
    code, _, authenticator, data, kept = packet[:]  # an exact tuple: no attribute lookups
    if kept[_MA_SLOT] is None:  # the common case, in short
        if code == STATUS_SERVER or require_message_authenticator:
            return False
        expected = md5(b"".join((data[:4], ZERO_AUTH, data[20:], secret))).digest()
        return hmac.compare_digest(expected, authenticator)
    ma_values = packet.all(MESSAGE_AUTHENTICATOR)
    if len(ma_values) > 1 or (ma_values and len(ma_values[0]) != 16):
        return False
    if packet.code == STATUS_SERVER:
        if not ma_values:
            return False
        vector = packet.authenticator
    else:
        expected = md5(packet.data[:4] + ZERO_AUTH + packet.data[20:] + secret).digest()
        if not hmac.compare_digest(expected, packet.authenticator):
            return False
        if not ma_values:
            return not require_message_authenticator
        vector = ZERO_AUTH
    mac = hmac_md5(secret, packet.data[:4] + vector + zeroed_message_authenticator(packet))
    return hmac.compare_digest(mac, ma_values[0])


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
    _, identifier, authenticator, _, kept = request[:]  # an exact tuple: no attribute lookups
    if kept[_PS_SLOT] is None and not message_authenticator:
        # the common case, no attributes: the header of each Identifier is made once
        head = _BARE_REPLY_HEADS[identifier] if code == ACCOUNTING_RESPONSE else b""
        if not head:
            head = REPLY_HEAD.pack(code, identifier, 20)
        return head + md5(b"".join((head, authenticator, secret))).digest()
    attrs = b"".join(
        bytes((PROXY_STATE, len(value) + 2)) + value for value in request.all(PROXY_STATE)
    )
    if message_authenticator:
        length = 20 + 18 + len(attrs)
        head = struct.pack("!BBH", code, request.identifier, length)
        vector = request.authenticator if request.code == STATUS_SERVER else ZERO_AUTH
        mac = hmac_md5(secret, head + vector + b"\x50\x12" + ZERO_AUTH + attrs)
        attrs = b"\x50\x12" + mac + attrs
    head = struct.pack("!BBH", code, request.identifier, 20 + len(attrs))
    auth = md5(head + request.authenticator + attrs + secret).digest()
    return head + auth + attrs


# The attribute types decode() cuts out of a packet, in the order of RawPacket.kept: what
# AccountingDecoder.request reads (it unpacks them in this order), then Proxy-State and
# Message-Authenticator
KEPT_ORDER = (
    ACCT_STATUS_TYPE,
    ACCT_SESSION_ID,
    USER_NAME,
    NAS_IP_ADDRESS,
    NAS_IDENTIFIER,
    NAS_IPV6_ADDRESS,
    CLASS,
    NAS_PORT_ID,
    NAS_PORT_TYPE,
    CALLING_STATION_ID,
    CALLED_STATION_ID,
    FRAMED_IP_ADDRESS,
    CONNECT_INFO,
    ACCT_TERMINATE_CAUSE,
    ACCT_SESSION_TIME,
    ACCT_INTERIM_INTERVAL,
    EVENT_TIMESTAMP,
    ACCT_DELAY_TIME,
    ACCT_INPUT_OCTETS,
    ACCT_OUTPUT_OCTETS,
    ACCT_INPUT_PACKETS,
    ACCT_OUTPUT_PACKETS,
    ACCT_INPUT_GIGAWORDS,
    ACCT_OUTPUT_GIGAWORDS,
    PROXY_STATE,
    MESSAGE_AUTHENTICATOR,
)
KEPT_TYPES = frozenset(KEPT_ORDER)
_PS_SLOT = KEPT_ORDER.index(PROXY_STATE)
_MA_SLOT = KEPT_ORDER.index(MESSAGE_AUTHENTICATOR)
# attribute type -> its slot in RawPacket.kept; the types not kept share the last slot, which
# stays False (a tuple: its item lookup is the cheapest in the walk)
_SLOTS = tuple(
    KEPT_ORDER.index(attr_type) if attr_type in KEPT_TYPES else len(KEPT_ORDER)
    for attr_type in range(256)
)
# decode()'s kept values before the walk
_NOTHING_KEPT: list[bytes | None | Literal[False]] = [None] * len(KEPT_ORDER)
_NOTHING_KEPT.append(False)
# Acct-Status-Type values as they appear on the wire -> the member (no Enum call per packet)
_STATUS_TYPES = {status.value.to_bytes(4, "big"): status for status in StatusType}
_SESSION_ID_OPTIONAL = (StatusType.ACCOUNTING_ON, StatusType.ACCOUNTING_OFF)
_SHARED_MAX = 100_000
_OCTETS = tuple(str(octet) for octet in range(256))


# RFC 2869 §5.1-5.2 Gigawords make 64-bit counters; SQLite and PostgreSQL integers are signed
# 64-bit, so a counter past 2**63 - 1 octets (Gigawords >= 2**31: 9.2 EB) is kept at that value
MAX_COUNTER = (1 << 63) - 1


def text(raw: bytes) -> str:
    """An attribute of type text as the string every layer keeps (docs/reliability.md).

    RFC 2865 §5 says text is UTF-8, and most NASes send it; for the ones that do not (a latin-1
    Connect-Info, binary octets in a Calling-Station-Id) each octet that is not part of valid
    UTF-8 is kept as the four characters ``\\xNN``, and so is NUL (valid UTF-8, but PostgreSQL
    text cannot hold it): the result is always valid UTF-8 without NUL, so the journal, SQLite,
    the API and the dashboard can all take it, and ``octets(text(raw)) == raw`` gives back what
    the NAS sent (a Disconnect-Request names the session as the NAS knows it)."""
    try:
        value = raw.decode()
    except UnicodeDecodeError:
        return _escaped(raw)
    return _escaped(raw) if "\0" in value else value


def _escaped(raw: bytes) -> str:
    return raw.decode("utf-8", "backslashreplace").replace("\0", "\\x00")


# what text() writes for an octet it escapes: NUL, or one that is not valid UTF-8 (0x80-0xff)
_ESCAPE = re.compile(r"\\x(00|[89a-f][0-9a-f])")


def octets(value: str) -> bytes:
    """The octets a NAS sent for a string ``text`` made (its ``\\xNN`` escapes undone)."""
    if "\\x" not in value:
        return value.encode()
    parts = _ESCAPE.split(value)  # text, hex, text, hex, ..., text
    out = bytearray()
    for at, part in enumerate(parts):
        out += bytes.fromhex(part) if at % 2 else part.encode()
    return bytes(out)


class AccountingDecoder:
    """Turns a verified Accounting-Request into an AccountingRequest, using a pyrad dictionary
    for value names (NAS-Port-Type "Virtual", Acct-Terminate-Cause "User-Request", ...)."""

    def __init__(self, dictionary: Dictionary) -> None:
        # keyed by the 4 octets of the value as sent, so a packet's value is looked up directly
        self.port_types = self._names(dictionary, "NAS-Port-Type")
        self.terminate_causes = self._names(dictionary, "Acct-Terminate-Cause")
        # strings repeated across sessions (NAS addresses, port types, Connect-Info) are shared
        # so a million sessions do not keep a million copies (docs/performance.md)
        self._shared: dict[str, str] = {}
        # NAS-IP-Address as sent -> (client name, nas_key, nas_ip)
        self._nases: dict[bytes, tuple[str, str, str]] = {}
        # the last Event-Timestamp as sent, and its float (packets of one second share it)
        self._timestamp_raw = b""
        self._timestamp = 0.0

    @staticmethod
    def _names(dictionary: Dictionary, attribute: str) -> dict[bytes, str]:
        values = dictionary.attributes[attribute].values.forward
        return {int.from_bytes(raw, "big").to_bytes(4, "big"): name for name, raw in values.items()}

    def _share(self, text: str) -> str:
        shared = self._shared.get(text)
        if shared is None:
            if len(self._shared) >= _SHARED_MAX:
                return text
            self._shared[text] = shared = text
        return shared

    def _nas(
        self,
        nas_name: str,
        source_ip: str,
        nas_ip_raw: bytes | None,
        nas_ipv6_raw: bytes | None,
        nas_identifier_raw: bytes | None,
    ) -> tuple[str, str]:
        """(nas_key, nas_ip) of a request: the client's name plus NAS-IP-Address, else
        NAS-IPv6-Address, else NAS-Identifier, else the source address. Remembered by
        NAS-IP-Address (request() looks there first)."""
        if nas_ip_raw is not None and len(nas_ip_raw) == 4:
            nas_address: str | None = inet_ntoa(nas_ip_raw)
        elif nas_ipv6_raw is not None and len(nas_ipv6_raw) == 16:
            nas_address = inet_ntop(AF_INET6, nas_ipv6_raw)
        else:
            nas_address = None
        if nas_address:
            identity = nas_address
        else:
            identity = (
                text(nas_identifier_raw) if nas_identifier_raw is not None else None
            ) or source_ip
        shared = self._shared
        value = f"{nas_name}/{identity}"
        nas_key = shared.get(value) or self._share(value)
        value = nas_address or source_ip
        nas_ip = shared.get(value) or self._share(value)
        if nas_ip_raw is not None and len(nas_ip_raw) == 4 and len(self._nases) < _SHARED_MAX:
            self._nases[nas_ip_raw] = (nas_name, nas_key, nas_ip)
        return nas_key, nas_ip

    def request(  # noqa: C901 - one line per attribute, read top to bottom
        self, packet: RawPacket, nas_name: str, source_ip: str, now: float
    ) -> AccountingRequest | None:
        """The AccountingRequest of a verified Accounting-Request; None for a status radtrack
        does not track (e.g. Failed, RFC 2867 tunnel records), which is acknowledged all the same.
        Raises MalformedPacket when Acct-Status-Type or Acct-Session-Id is missing or invalid.
        An attribute that should appear once but repeats counts by its first instance, as in
        FreeRADIUS and pyrad.

        Written for speed (it runs once per packet): the kept values are unpacked in one step,
        conversions are inline rather than helper calls.
        """
        # the last slot (types not kept) holds False, and is not read
        kept: Sequence[bytes | None] = packet.kept  # type: ignore[assignment]
        (
            status_raw,
            session_id_raw,
            user_name_raw,
            nas_ip_raw,
            nas_identifier_raw,
            nas_ipv6_raw,
            class_raw,
            nas_port_id_raw,
            nas_port_type_raw,
            calling_raw,
            called_raw,
            framed_ip_raw,
            connect_info_raw,
            terminate_raw,
            session_time_raw,
            interim_raw,
            event_ts_raw,
            delay_raw,
            in_oct_raw,
            out_oct_raw,
            in_pkt_raw,
            out_pkt_raw,
            in_giga_raw,
            out_giga_raw,
            _proxy_state,
            _message_authenticator,
            _not_kept,
        ) = kept
        if status_raw is None:
            raise MalformedPacket("no Acct-Status-Type")  # RFC 2866 §5.1: MUST be present
        status = _STATUS_TYPES.get(status_raw)
        if status is None:
            if len(status_raw) != 4:
                raise MalformedPacket("Acct-Status-Type is not 4 octets")
            return None
        if session_id_raw is None and status not in _SESSION_ID_OPTIONAL:
            raise MalformedPacket("no Acct-Session-Id")  # RFC 2866 §5.5: MUST be present
        # text() for each, in short for the packets that are valid UTF-8 without NUL (all but
        # a misconfigured NAS's): the strict decoder, and a NUL check
        try:
            session_id = "" if session_id_raw is None else session_id_raw.decode()
            user_name = None if user_name_raw is None else user_name_raw.decode()
            nas_port_id = None if nas_port_id_raw is None else nas_port_id_raw.decode()
            calling = None if calling_raw is None else calling_raw.decode()
            called = None if called_raw is None else called_raw.decode()
            # one search over the five (an absent one reads "None": no NUL either)
            plain = "\0" not in f"{session_id}{user_name}{nas_port_id}{calling}{called}"
        except UnicodeDecodeError:
            plain = False
        if not plain:
            session_id = "" if session_id_raw is None else text(session_id_raw)
            user_name = None if user_name_raw is None else text(user_name_raw)
            nas_port_id = None if nas_port_id_raw is None else text(nas_port_id_raw)
            calling = None if calling_raw is None else text(calling_raw)
            called = None if called_raw is None else text(called_raw)
        from_bytes = int.from_bytes  # big-endian (network order) by default
        # RFC 2869 §5.3 Event-Timestamp; else arrival minus Acct-Delay-Time (RFC 2866 §5.2)
        if event_ts_raw is not None and len(event_ts_raw) == 4:
            if event_ts_raw == self._timestamp_raw:  # the same second as the packet before
                event_time = self._timestamp
            else:
                event_time = self._timestamp = float(from_bytes(event_ts_raw))
                self._timestamp_raw = event_ts_raw
        elif delay_raw is not None and len(delay_raw) == 4:
            event_time = now - from_bytes(delay_raw)
        else:
            event_time = now
        known = self._nases.get(nas_ip_raw) if nas_ip_raw is not None else None
        if known is not None and known[0] == nas_name:
            nas_key, nas_ip = known[1], known[2]
        else:
            nas_key, nas_ip = self._nas(
                nas_name, source_ip, nas_ip_raw, nas_ipv6_raw, nas_identifier_raw
            )
        if connect_info_raw is not None:
            value = text(connect_info_raw)
            connect_info: str | None = self._shared.get(value) or self._share(value)
        else:
            connect_info = None
        if nas_port_type_raw is not None:
            nas_port_type = self.port_types.get(nas_port_type_raw)
            if nas_port_type is None and len(nas_port_type_raw) == 4:
                nas_port_type = str(from_bytes(nas_port_type_raw))
        else:
            nas_port_type = None
        if terminate_raw is not None:
            terminate = self.terminate_causes.get(terminate_raw)
            if terminate is None and len(terminate_raw) == 4:
                terminate = str(from_bytes(terminate_raw))
        else:
            terminate = None
        if in_oct_raw is not None and len(in_oct_raw) == 4:
            # RFC 2869 §5.1-5.2: Gigawords count how often the 32-bit counter wrapped
            low = from_bytes(in_oct_raw)
            if in_giga_raw is not None and len(in_giga_raw) == 4:
                low += from_bytes(in_giga_raw) << 32
                if low > MAX_COUNTER:
                    low = MAX_COUNTER
            input_octets: int | None = low
        else:
            input_octets = None
        if out_oct_raw is not None and len(out_oct_raw) == 4:
            low = from_bytes(out_oct_raw)
            if out_giga_raw is not None and len(out_giga_raw) == 4:
                low += from_bytes(out_giga_raw) << 32
                if low > MAX_COUNTER:
                    low = MAX_COUNTER
            output_octets: int | None = low
        else:
            output_octets = None
        if framed_ip_raw is not None and len(framed_ip_raw) == 4:
            a, b, c, d = framed_ip_raw  # as inet_ntoa writes it, without its cost
            framed_ip: str | None = f"{_OCTETS[a]}.{_OCTETS[b]}.{_OCTETS[c]}.{_OCTETS[d]}"
        else:
            framed_ip = None
        # tuple.__new__: NamedTuple's own __new__ and _make are Python functions, a frame each;
        # the field order is AccountingRequest's (tests/test_codec.py checks every field)
        return _new_tuple(
            AccountingRequest,
            (
                status,
                nas_key,
                nas_name,
                nas_ip,
                session_id,
                event_time,
                user_name,
                class_raw.hex() if class_raw is not None else None,  # class_hex
                nas_port_id,
                nas_port_type,
                calling,  # calling_station_id
                called,  # called_station_id
                framed_ip,
                connect_info,
                # session_time
                from_bytes(session_time_raw)
                if session_time_raw is not None and len(session_time_raw) == 4
                else None,
                input_octets,
                output_octets,
                # input_packets
                from_bytes(in_pkt_raw) if in_pkt_raw is not None and len(in_pkt_raw) == 4 else None,
                # output_packets
                from_bytes(out_pkt_raw)
                if out_pkt_raw is not None and len(out_pkt_raw) == 4
                else None,
                terminate,
                # interim_interval
                from_bytes(interim_raw)
                if interim_raw is not None and len(interim_raw) == 4
                else None,
                now,  # received_at
            ),
        )
