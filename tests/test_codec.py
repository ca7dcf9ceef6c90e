"""radtrack.radius.codec against pyrad, the reference it replaced on the hot path.

The codec walks attributes with plain slicing instead of building pyrad packets. These tests
prove it gives what pyrad gives on valid packets (attributes, authenticator checks, decoded
values, replies byte for byte) and rejects what pyrad rejects, raising only MalformedPacket.

Pure and deterministic: no network, no clock (``now`` is passed in), hypothesis derandomized
with no example database. Each property checks one to a few thousand packets.
bench/fuzz_codec.py is the long variant (hundreds of thousands of hostile datagrams).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import random
import re
import string
import struct
from collections import OrderedDict
from collections.abc import Callable
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyrad.packet import AcctPacket, PacketError

from radtrack import fastpath
from radtrack.errors import MalformedPacket
from radtrack.model import AccountingRequest, StatusType
from radtrack.radius import codec, decoder, dictionary

DICT = dictionary.load()
DECODER = fastpath.FastAccountingDecoder(DICT)  # what the daemon runs
PLAIN = decoder.AccountingDecoder(DICT)  # the plain rules it is checked against
NOW = 1_700_000_000.5
NAS_NAME = "nas-a"
SOURCE_IP = "192.0.2.7"
ZERO = b"\x00" * 16
MA = codec.MESSAGE_AUTHENTICATOR
VSA = 26
UNKNOWN_TYPES = (200, 201, 224, 250, 255)  # not in the shipped dictionary (checked below)


def examples(count: int) -> settings:
    return settings(
        max_examples=count,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# -- reference helpers, written independently of the codec -----------------------------------


def raw_walk(data: bytes) -> tuple[list[tuple[int, bytes]], str | None]:
    """The attributes of ``data`` (cut to its Length field) and why the walk stopped early, if
    it did: "cut" (one octet left), "short" (attribute length below 2), "overrun" (an attribute
    runs past Length)."""
    (length,) = struct.unpack_from("!H", data, 2)
    body = memoryview(data)[20:length]
    attrs: list[tuple[int, bytes]] = []
    offset = 0
    while offset < len(body):
        if len(body) - offset == 1:
            return attrs, "cut"
        attr_type, attr_len = body[offset], body[offset + 1]
        if attr_len < 2:
            return attrs, "short"
        if offset + attr_len > len(body):
            return attrs, "overrun"
        attrs.append((attr_type, bytes(body[offset + 2 : offset + attr_len])))
        offset += attr_len
    return attrs, None


def pyrad_view(attrs: list[tuple[int, bytes]]) -> list[tuple[object, list[bytes]]]:
    """Attributes as pyrad's Packet holds them after decoding: grouped by key in order of first
    appearance, a Vendor-Specific split into ``(vendor, type)`` keys when it is at least 6
    octets and its sub-attributes add up (RFC 2865 §5.26), else kept raw under 26."""
    grouped: OrderedDict[object, list[bytes]] = OrderedDict()
    for attr_type, value in attrs:
        items: list[tuple[object, bytes]] = [(attr_type, value)]
        if attr_type == VSA and len(value) >= 6:
            (vendor,) = struct.unpack_from("!L", value)
            subs: list[tuple[object, bytes]] = []
            offset = 4
            while offset < len(value):
                sub_len = value[offset + 1] if offset + 1 < len(value) else 0
                if sub_len < 2 or offset + sub_len > len(value):
                    subs = []
                    break
                subs.append(((vendor, value[offset]), value[offset + 2 : offset + sub_len]))
                offset += sub_len
            items = subs or items
        for key, item in items:
            grouped.setdefault(key, []).append(item)
    return list(grouped.items())


def pyrad_items(packet: AcctPacket) -> list[tuple[object, list[bytes]]]:
    return [(key, list(values)) for key, values in OrderedDict.items(packet)]


def pyrad_decode(data: bytes, secret: bytes = b"secret") -> AcctPacket:
    return AcctPacket(packet=data, dict=DICT, secret=secret)


def encode_attrs(attrs: list[tuple[int, bytes]]) -> bytes:
    return b"".join(bytes((attr_type, len(value) + 2)) + value for attr_type, value in attrs)


def accounting_packet(
    attrs: list[tuple[int, bytes]], secret: bytes, code: int = 4, identifier: int = 1
) -> bytes:
    """An Accounting-Request (or other code) with its Request Authenticator (RFC 2866 §3)."""
    return resign(struct.pack("!BBH", code, identifier, 20) + ZERO + encode_attrs(attrs), secret)


def resign(data: bytes, secret: bytes) -> bytes:
    """``data`` with its Length fixed to its size and its Request Authenticator recomputed."""
    head = data[:2] + struct.pack("!H", len(data))
    return head + hashlib.md5(head + ZERO + data[20:] + secret).digest() + data[20:]


def offsets_of(data: bytes) -> list[int]:
    """The offset of each attribute of a well-formed packet."""
    offsets, pos = [], 20
    while pos < len(data):
        offsets.append(pos)
        pos += data[pos + 1]
    return offsets


def other_secret(secret: bytes, other: bytes) -> bytes:
    """A secret that is really different. HMAC pads its key with zeros, so two secrets that
    differ only in trailing NUL octets are the same key for the Message-Authenticator."""
    return secret + b"x" if other.rstrip(b"\0") == secret.rstrip(b"\0") else other


def value_number(name: str, value: object) -> int:
    """A pyrad-decoded integer attribute (a value name or a number) as its number."""
    if isinstance(value, str):
        return int.from_bytes(DICT.attributes[name].values.forward[value], "big")
    assert isinstance(value, int)
    return value


def escaped_text(raw: bytes) -> str:
    """The text rule of docs/reliability.md written another way than codec.text: every octet
    that is not part of valid UTF-8 (a lone surrogate under surrogateescape) and every NUL
    becomes the four characters \\xNN."""
    return "".join(
        f"\\x{ord(char) - 0xDC00:02x}"
        if 0xDC80 <= ord(char) <= 0xDCFF
        else "\\x00"
        if char == "\0"
        else char
        for char in raw.decode("utf-8", "surrogateescape")
    )


def as_text(value: object) -> str:
    """pyrad returns a string attribute as str when it is UTF-8, else as bytes."""
    if isinstance(value, str):
        value = value.encode()
    assert isinstance(value, bytes)
    return escaped_text(value)


def capped(counter: int) -> int:
    """A 64-bit counter as radtrack keeps it: at most 2**63 - 1 (a signed 64-bit integer)."""
    return min(counter, 2**63 - 1)


# -- generators -------------------------------------------------------------------------------
#
# Building pyrad packets from fine-grained hypothesis draws costs ~12 ms a case, minutes for the
# suite. So hypothesis draws a 64-bit seed and a random.Random seeded with it picks attributes and
# values; a failure still reports the datagram and secret, and derandomize=True makes every run
# draw the same seeds.

SEEDS = st.integers(0, 2**64 - 1)
SECRETS = st.binary(min_size=1, max_size=48)
TEXT_CHARS = (
    string.ascii_letters + string.digits + " -_.:@/\\\"'%\x00\x7f" + "äßé中文\u200b\U0001f600"
)
TRACKED_STATUSES = ("Start", "Stop", "Interim-Update", "Accounting-On", "Accounting-Off")
Generator = Callable[[random.Random], object]
T = TypeVar("T")


def _u32(rng: random.Random) -> int:
    if rng.random() < 0.2:
        return rng.choice((0, 1, 2**31, 2**32 - 1))
    return rng.getrandbits(32)


def _octets(rng: random.Random, most: int = 64) -> bytes:
    return rng.randbytes(rng.randint(0, most))


def _text(rng: random.Random) -> str:
    return "".join(rng.choice(TEXT_CHARS) for _ in range(rng.randint(0, 40)))


def _string(rng: random.Random) -> str | bytes:
    """A string attribute's value: text, or octets that are often not UTF-8."""
    return _text(rng) if rng.random() < 0.8 else _octets(rng, 60)


def _ipv4(rng: random.Random) -> str:
    return str(ipaddress.IPv4Address(rng.getrandbits(32)))


def _ipv6(rng: random.Random) -> str:
    return str(ipaddress.IPv6Address(rng.getrandbits(128)))


def _named(attribute: str) -> Generator:
    """A value name of an integer attribute, or any number."""
    names = sorted(DICT.attributes[attribute].values.forward)
    return lambda rng: rng.choice(names) if rng.random() < 0.7 else _u32(rng)


def _status(rng: random.Random) -> object:
    """Mostly a status radtrack tracks; else Failed, tunnel records or an unknown number."""
    return rng.choice(TRACKED_STATUSES) if rng.random() < 0.8 else _named("Acct-Status-Type")(rng)


def _vendor_specific(rng: random.Random) -> bytes:
    """A Vendor-Specific value: vendor id and sub-attributes, or anything (RFC 2865 §5.26)."""
    if rng.random() < 0.3:
        return _octets(rng, 40)  # pyrad keeps what does not split raw, under 26
    subs = [(rng.randrange(256), _octets(rng, 20)) for _ in range(rng.randint(0, 4))]
    return struct.pack("!L", rng.getrandbits(32)) + encode_attrs(subs)


# attribute name -> generator of the value given to pyrad's AddAttribute
VALUES: dict[str, Generator] = {
    "User-Name": _string,
    "NAS-IP-Address": _ipv4,
    "NAS-IPv6-Address": _ipv6,
    "NAS-Identifier": _string,
    "NAS-Port-Id": _string,
    "NAS-Port-Type": _named("NAS-Port-Type"),
    "Calling-Station-Id": _string,
    "Called-Station-Id": _string,
    "Framed-IP-Address": _ipv4,
    "Connect-Info": _string,
    "Class": _octets,
    "Acct-Session-Time": _u32,
    "Acct-Input-Octets": _u32,
    "Acct-Output-Octets": _u32,
    "Acct-Input-Packets": _u32,
    "Acct-Output-Packets": _u32,
    "Acct-Input-Gigawords": _u32,
    "Acct-Output-Gigawords": _u32,
    "Acct-Terminate-Cause": _named("Acct-Terminate-Cause"),
    "Event-Timestamp": _u32,
    "Acct-Delay-Time": _u32,
    "Acct-Interim-Interval": _u32,
}
OPTIONAL: list[object] = [*VALUES, "Proxy-State", VSA, *UNKNOWN_TYPES, MA]


def random_request(
    rng: random.Random, *, max_proxy_states: int = 5, message_authenticator: bool | None = None
) -> tuple[bytes, bytes]:
    """(datagram, secret): an Accounting-Request encoded by pyrad's AcctPacket.RequestPacket()
    from a random set of attributes in random order. Acct-Status-Type and Acct-Session-Id are
    there three times in four. A Message-Authenticator is first (where
    add_message_authenticator() puts it) or anywhere among the attributes."""
    secret = rng.randbytes(rng.randint(1, 48))
    packet = AcctPacket(dict=DICT, secret=secret, id=rng.randrange(256))
    keys = rng.sample(OPTIONAL, rng.randint(0, len(OPTIONAL)))
    for name in ("Acct-Status-Type", "Acct-Session-Id"):
        if rng.random() < 0.75:
            keys.insert(rng.randint(0, len(keys)), name)
    if message_authenticator is not None:
        if MA in keys:
            keys.remove(MA)
        if message_authenticator:
            keys.insert(rng.randint(0, len(keys)), MA)
    for key in keys:
        if key == MA:
            if rng.random() < 0.5:
                packet.add_message_authenticator()  # first attribute
            else:
                packet[MA] = [ZERO]  # here; pyrad computes it in place when encoding
                packet.message_authenticator = True
        elif key == "Proxy-State":
            states = [_octets(rng) for _ in range(rng.randint(1, max_proxy_states))]
            packet.AddAttribute("Proxy-State", states)
        elif key == VSA:
            packet[VSA] = [_vendor_specific(rng) for _ in range(rng.randint(1, 3))]
        elif isinstance(key, int):
            packet[key] = [_octets(rng) for _ in range(rng.randint(1, 3))]
        elif key == "Acct-Status-Type":
            packet.AddAttribute(key, _status(rng))
        elif key == "Acct-Session-Id":
            packet.AddAttribute(key, _string(rng))
        else:
            assert isinstance(key, str)
            packet.AddAttribute(key, VALUES[key](rng))
    return packet.RequestPacket(), secret


def random_status_server(rng: random.Random) -> tuple[bytes, bytes]:
    """(datagram, secret): a Status-Server from pyrad's AcctPacket(code=12).RequestPacket(),
    which gives it a random authenticator and a Message-Authenticator (RFC 5997 §3)."""
    secret = rng.randbytes(rng.randint(1, 48))
    packet = AcctPacket(code=codec.STATUS_SERVER, dict=DICT, secret=secret, id=rng.randrange(256))
    if rng.random() < 0.5:
        packet.AddAttribute("NAS-Identifier", _text(rng))
    if rng.random() < 0.5:
        packet.AddAttribute("NAS-IP-Address", _ipv4(rng))
    states = [_octets(rng) for _ in range(rng.randint(0, 3))]
    if states:
        packet.AddAttribute("Proxy-State", states)
    return packet.RequestPacket(), secret


def _flip(data: bytes, position: int, bit: int) -> bytes:
    if not data:
        return data
    position %= len(data)
    return data[:position] + bytes((data[position] ^ (1 << bit),)) + data[position + 1 :]


def _set_length(data: bytes, length: int) -> bytes:
    return data[:2] + struct.pack("!H", length) + data[4:] if len(data) >= 4 else data


def _attribute_offsets(data: bytes) -> list[int]:
    """Attribute offsets as far as a (possibly damaged) packet can be walked."""
    offsets, pos = [], 20
    while pos + 1 < len(data) and data[pos + 1] >= 2:
        offsets.append(pos)
        pos += data[pos + 1]
    return offsets


def _set_attribute_length(data: bytes, rng: random.Random) -> bytes:
    offsets = _attribute_offsets(data)
    if not offsets:
        return data
    pos = rng.choice(offsets) + 1
    attr_len = rng.choice((0, 1, 255, rng.randrange(256)))
    return data[:pos] + bytes((attr_len,)) + data[pos + 1 :]


def _insert(data: bytes, rng: random.Random) -> bytes:
    pos = rng.randint(0, len(data))
    return data[:pos] + rng.randbytes(rng.randint(1, 8)) + data[pos:]


def _delete(data: bytes, rng: random.Random) -> bytes:
    pos = rng.randint(0, len(data))
    return data[:pos] + data[pos + rng.randint(1, 40) :]


def _length_field(rng: random.Random, size: int) -> int:
    return rng.choice(
        (
            rng.randint(0, 40),
            rng.randint(4090, 4100),
            rng.randrange(65536),
            size + rng.randint(-40, 40),
        )
    )


MUTATIONS: tuple[Callable[[bytes, random.Random], bytes], ...] = (
    lambda data, rng: _flip(data, rng.randrange(max(len(data), 1)), rng.randrange(8)),
    lambda data, rng: data[: rng.randint(0, len(data))],  # truncate
    lambda data, rng: _set_length(data, max(0, min(65535, _length_field(rng, len(data))))),
    _set_attribute_length,  # to 0, 1, 255 or anything
    lambda data, rng: data + rng.randbytes(rng.randint(1, 300)),  # padding
    _insert,
    _delete,
)


def random_damage(data: bytes, rng: random.Random) -> bytes:
    """1 to 4 of: a bit flip, a truncation, a Length edit, an attribute length edit, appended
    octets, inserted octets, deleted octets."""
    for _ in range(rng.randint(1, 4)):
        data = rng.choice(MUTATIONS)(data, rng)
    return data


def random_mutated_request(rng: random.Random) -> bytes:
    data, _ = random_request(rng)
    return random_damage(data, rng)


HEADER_AND_NOISE = st.builds(
    lambda code, ident, body, auth: struct.pack("!BBH", code, ident, 20 + len(body)) + auth + body,
    st.sampled_from([4, 12, 5, 1, 40]),
    st.integers(0, 255),
    st.binary(max_size=400),
    st.binary(min_size=16, max_size=16),
)


def batches(make: Callable[[random.Random], T], size: int = 4) -> st.SearchStrategy[list[T]]:
    """``size`` cases per hypothesis example, each made from its own drawn seed. hypothesis
    costs ~2 ms an example here, so batching checks four packets for the price of one; on a
    failure the passing seeds shrink to 0 and the assertion shows the failing packet."""
    return st.lists(SEEDS.map(lambda seed: make(random.Random(seed))), min_size=size, max_size=size)


def padded_packet(length: int) -> bytes:
    """A signed Accounting-Request (secret b"secret") of exactly ``length`` octets, filled with
    Class attributes."""
    attrs, left = [], length - 20
    while left:
        size = min(255, left)
        if left - size == 1:
            size -= 1
        attrs.append((codec.CLASS, b"c" * (size - 2)))
        left -= size
    return accounting_packet(attrs, b"secret")


# -- 0. preconditions ---------------------------------------------------------------------------


def test_unknown_types_are_not_in_the_dictionary() -> None:
    for attr_type in UNKNOWN_TYPES:
        assert not DICT.attrindex.HasBackward(attr_type)


# -- 1. differential against pyrad on valid packets ---------------------------------------------


def check_decode(data: bytes, reference: AcctPacket) -> codec.RawPacket:
    """Same header; the same (type, raw value) attributes in wire order as an independent walk;
    the same grouping as pyrad's decode (VSAs split the way pyrad splits them)."""
    packet = codec.decode(data)
    assert (packet.code, packet.identifier, packet.authenticator) == (
        reference.code,
        reference.id,
        reference.authenticator,
    )
    assert packet.data == data
    walked, stopped = raw_walk(data)
    assert stopped is None
    assert packet.attributes == walked
    assert pyrad_view(packet.attributes) == pyrad_items(reference)
    return packet


def check_verify(packet: codec.RawPacket, data: bytes, secret: bytes) -> None:
    """Right secret: both accept (pyrad's VerifyAcctRequest, and its
    verify_message_authenticator when there is a Message-Authenticator). Wrong secret (one bit
    off): both reject."""
    reference = pyrad_decode(data, secret)
    has_ma = bool(packet.all(MA))
    assert reference.VerifyAcctRequest() is True
    if has_ma:
        assert reference.verify_message_authenticator() is True
    assert codec.verify_request(packet, secret) is True
    assert codec.verify_request(packet, secret, require_message_authenticator=True) is has_ma

    wrong = other_secret(secret, _flip(secret, len(secret) - 1, 0))
    assert pyrad_decode(data, wrong).VerifyAcctRequest() is False
    assert codec.verify_request(packet, wrong) is False
    assert codec.verify_request(packet, wrong, require_message_authenticator=True) is False


def check_request(packet: codec.RawPacket, reference: AcctPacket) -> None:
    """AccountingDecoder.request reads what pyrad's dictionary-driven decode reads."""

    def named(name: str) -> object:
        values = reference.get(name)
        return values[0] if values else None

    status = named("Acct-Status-Type")
    session_id = named("Acct-Session-Id")
    if status is None:  # RFC 2866 §5.1: MUST be present
        with pytest.raises(MalformedPacket):
            DECODER.request(packet, NAS_NAME, SOURCE_IP, NOW)
        return
    number = value_number("Acct-Status-Type", status)
    if number not in {int(status_type) for status_type in StatusType}:
        assert DECODER.request(packet, NAS_NAME, SOURCE_IP, NOW) is None  # not tracked, acked
        return
    if session_id is None and number not in (StatusType.ACCOUNTING_ON, StatusType.ACCOUNTING_OFF):
        with pytest.raises(MalformedPacket):  # RFC 2866 §5.5: MUST be present
            DECODER.request(packet, NAS_NAME, SOURCE_IP, NOW)
        return
    request = DECODER.request(packet, NAS_NAME, SOURCE_IP, NOW)
    assert request is not None

    def text(name: str) -> str | None:
        value = named(name)
        return None if value is None else as_text(value)

    def label(name: str) -> str | None:
        value = named(name)
        return None if value is None else str(value)  # the value's name, else its number

    def counter(octets: str, gigawords: str) -> int | None:
        low, high = named(octets), named(gigawords)
        assert low is None or isinstance(low, int)
        assert high is None or isinstance(high, int)
        return None if low is None else capped(((high or 0) << 32) + low)  # RFC 2869 §5.1-5.2

    nas_address = named("NAS-IP-Address") or named("NAS-IPv6-Address")
    identity = nas_address or text("NAS-Identifier") or SOURCE_IP
    timestamp, delay = named("Event-Timestamp"), named("Acct-Delay-Time")
    class_value = named("Class")
    assert request.status == number
    assert request.session_id == ("" if session_id is None else as_text(session_id))
    assert request.nas_name == NAS_NAME
    assert request.nas_key == f"{NAS_NAME}/{identity}"
    assert request.nas_ip == (nas_address or SOURCE_IP)
    assert request.user_name == text("User-Name")
    assert request.nas_port_id == text("NAS-Port-Id")
    assert request.calling_station_id == text("Calling-Station-Id")
    assert request.called_station_id == text("Called-Station-Id")
    assert request.connect_info == text("Connect-Info")
    assert request.nas_port_type == label("NAS-Port-Type")
    assert request.terminate_cause == label("Acct-Terminate-Cause")
    assert request.framed_ip == named("Framed-IP-Address")
    assert request.class_hex == (None if class_value is None else bytes(class_value).hex())
    assert request.session_time == named("Acct-Session-Time")
    assert request.interim_interval == named("Acct-Interim-Interval")
    assert request.input_packets == named("Acct-Input-Packets")
    assert request.output_packets == named("Acct-Output-Packets")
    assert request.input_octets == counter("Acct-Input-Octets", "Acct-Input-Gigawords")
    assert request.output_octets == counter("Acct-Output-Octets", "Acct-Output-Gigawords")
    # RFC 2869 §5.3 Event-Timestamp, else arrival minus Acct-Delay-Time (RFC 2866 §5.2)
    expected_time = float(timestamp) if timestamp is not None else NOW - (delay or 0)
    assert request.event_time == expected_time


@examples(750)
@given(batches(random_request))
def test_valid_requests_agree_with_pyrad(cases: list[tuple[bytes, bytes]]) -> None:
    """3,000 pyrad-encoded Accounting-Requests: decode, verify_request and
    AccountingDecoder.request agree with pyrad on each."""
    for data, secret in cases:
        reference = pyrad_decode(data, secret)
        packet = check_decode(data, reference)
        check_verify(packet, data, secret)
        check_request(packet, reference)


@examples(200)
@given(
    st.lists(
        st.tuples(st.sampled_from([1, 25, 26, 33, 44, 80, 200, 255]), st.binary(max_size=30)),
        max_size=30,
    )
)
def test_decode_keeps_interleaved_repeats_in_wire_order(attrs: list[tuple[int, bytes]]) -> None:
    """pyrad's encoder groups repeated attributes, so interleavings are built by hand here:
    the codec keeps the exact wire order; pyrad's grouped view agrees with it."""
    data = accounting_packet(attrs, b"secret")
    packet = codec.decode(data)
    assert packet.attributes == attrs
    assert packet.all(codec.PROXY_STATE) == [v for t, v in attrs if t == codec.PROXY_STATE]
    assert pyrad_view(packet.attributes) == pyrad_items(pyrad_decode(data))


def test_the_nas_and_time_remembered_are_those_of_the_client_and_the_packet() -> None:
    """The fast request() remembers each NAS-IP-Address's identity and the last Event-Timestamp; a
    second client sending the same NAS-IP-Address is a NAS of its own."""
    decoder = fastpath.FastAccountingDecoder(DICT)

    def request(client: str, timestamp: int, non_utf8: bool = False) -> AccountingRequest:
        attrs = [
            (codec.ACCT_STATUS_TYPE, struct.pack("!I", 3)),
            (codec.ACCT_SESSION_ID, b"s\xff1" if non_utf8 else b"s1"),
            (codec.NAS_IP_ADDRESS, bytes((192, 0, 2, 9))),
            (codec.EVENT_TIMESTAMP, struct.pack("!I", timestamp)),
        ]
        packet = codec.decode(accounting_packet(attrs, b"s"))
        result = decoder.request(packet, client, SOURCE_IP, NOW)
        assert result is not None
        return result

    first, again = request("a", 100), request("a", 100)
    other, later = request("b", 100), request("a", 101, non_utf8=True)
    assert (first.nas_key, first.nas_ip, first.event_time) == ("a/192.0.2.9", "192.0.2.9", 100.0)
    assert again.event_time is first.event_time and again.nas_key is first.nas_key
    assert (other.nas_key, other.nas_name) == ("b/192.0.2.9", "b")
    assert (later.nas_key, later.event_time) == ("a/192.0.2.9", 101.0)
    assert later.session_id == "s\\xff1"  # the octet that is not UTF-8, escaped


def test_gigawords_make_64_bit_counters() -> None:
    attrs = [
        (codec.ACCT_STATUS_TYPE, struct.pack("!I", 2)),
        (codec.ACCT_SESSION_ID, b"s1"),
        (codec.ACCT_INPUT_OCTETS, struct.pack("!I", 5)),
        (codec.ACCT_INPUT_GIGAWORDS, struct.pack("!I", 3)),
        (codec.ACCT_OUTPUT_OCTETS, struct.pack("!I", 2**32 - 1)),
        (codec.ACCT_OUTPUT_GIGAWORDS, struct.pack("!I", 2**32 - 1)),
        (codec.ACCT_DELAY_TIME, struct.pack("!I", 30)),
    ]
    packet = codec.decode(accounting_packet(attrs, b"s"))
    request = DECODER.request(packet, NAS_NAME, SOURCE_IP, NOW)
    assert request is not None
    assert request.input_octets == (3 << 32) + 5
    # 2**64 - 1 does not fit a signed 64-bit column: kept at the largest value that does
    assert request.output_octets == decoder.MAX_COUNTER == 2**63 - 1
    assert request.event_time == NOW - 30


def reference_request(
    attrs: list[tuple[int, bytes]], nas_name: str, source_ip: str, now: float
) -> object:
    """AccountingDecoder.request written the plain way (one helper per value), as it was before
    the hot path was tuned: the specification the tuned decoder must match on any input,
    including values of the wrong length. Returns the AccountingRequest's fields as a dict, None,
    or the MalformedPacket type."""
    first: dict[int, bytes] = {}
    for attr_type, value in attrs:
        first.setdefault(attr_type, value)

    def number(attr_type: int) -> int | None:
        value = first.get(attr_type)
        return int.from_bytes(value, "big") if value is not None and len(value) == 4 else None

    def text(attr_type: int) -> str | None:
        value = first.get(attr_type)
        return None if value is None else escaped_text(value)

    def ipv4(attr_type: int) -> str | None:
        value = first.get(attr_type)
        return str(ipaddress.IPv4Address(value)) if value is not None and len(value) == 4 else None

    def label(attr_type: int, names: dict[int, str]) -> str | None:
        value = number(attr_type)
        return None if value is None else names.get(value, str(value))

    def names(attribute: str) -> dict[int, str]:
        forward = DICT.attributes[attribute].values.forward
        return {int.from_bytes(raw, "big"): name for name, raw in forward.items()}

    if codec.ACCT_STATUS_TYPE not in first or number(codec.ACCT_STATUS_TYPE) is None:
        return MalformedPacket
    status = number(codec.ACCT_STATUS_TYPE)
    if status not in {int(s) for s in StatusType}:
        return None
    session_id = text(codec.ACCT_SESSION_ID)
    if session_id is None:
        if status not in (StatusType.ACCOUNTING_ON, StatusType.ACCOUNTING_OFF):
            return MalformedPacket
        session_id = ""
    ipv6 = first.get(codec.NAS_IPV6_ADDRESS)
    nas_address = ipv4(codec.NAS_IP_ADDRESS) or (
        str(ipaddress.IPv6Address(ipv6)) if ipv6 is not None and len(ipv6) == 16 else None
    )
    identity = nas_address or text(codec.NAS_IDENTIFIER) or source_ip
    timestamp = number(codec.EVENT_TIMESTAMP)
    klass = first.get(codec.CLASS)

    def counter(low: int, high: int) -> int | None:
        value = number(low)
        return None if value is None else capped(((number(high) or 0) << 32) + value)

    return {
        "status": status,
        "nas_key": f"{nas_name}/{identity}",
        "nas_name": nas_name,
        "nas_ip": nas_address or source_ip,
        "session_id": session_id,
        "event_time": (
            float(timestamp)
            if timestamp is not None
            else now - (number(codec.ACCT_DELAY_TIME) or 0)
        ),
        "user_name": text(codec.USER_NAME),
        "class_hex": None if klass is None else klass.hex(),
        "nas_port_id": text(codec.NAS_PORT_ID),
        "nas_port_type": label(codec.NAS_PORT_TYPE, names("NAS-Port-Type")),
        "calling_station_id": text(codec.CALLING_STATION_ID),
        "called_station_id": text(codec.CALLED_STATION_ID),
        "framed_ip": ipv4(codec.FRAMED_IP_ADDRESS),
        "connect_info": text(codec.CONNECT_INFO),
        "session_time": number(codec.ACCT_SESSION_TIME),
        "input_octets": counter(codec.ACCT_INPUT_OCTETS, codec.ACCT_INPUT_GIGAWORDS),
        "output_octets": counter(codec.ACCT_OUTPUT_OCTETS, codec.ACCT_OUTPUT_GIGAWORDS),
        "input_packets": number(codec.ACCT_INPUT_PACKETS),
        "output_packets": number(codec.ACCT_OUTPUT_PACKETS),
        "terminate_cause": label(codec.ACCT_TERMINATE_CAUSE, names("Acct-Terminate-Cause")),
        "interim_interval": number(codec.ACCT_INTERIM_INTERVAL),
        "received_at": now,
    }


# every attribute the decoder reads, with values of any length (4 octets more often)
_READ_TYPES = [
    codec.USER_NAME,
    codec.NAS_IP_ADDRESS,
    codec.FRAMED_IP_ADDRESS,
    codec.CLASS,
    codec.CALLED_STATION_ID,
    codec.CALLING_STATION_ID,
    codec.NAS_IDENTIFIER,
    codec.ACCT_STATUS_TYPE,
    codec.ACCT_DELAY_TIME,
    codec.ACCT_INPUT_OCTETS,
    codec.ACCT_OUTPUT_OCTETS,
    codec.ACCT_SESSION_ID,
    codec.ACCT_SESSION_TIME,
    codec.ACCT_INPUT_PACKETS,
    codec.ACCT_OUTPUT_PACKETS,
    codec.ACCT_TERMINATE_CAUSE,
    codec.ACCT_INPUT_GIGAWORDS,
    codec.ACCT_OUTPUT_GIGAWORDS,
    codec.EVENT_TIMESTAMP,
    codec.CONNECT_INFO,
    codec.ACCT_INTERIM_INTERVAL,
    codec.NAS_PORT_ID,
    codec.NAS_PORT_TYPE,
    codec.NAS_IPV6_ADDRESS,
]


def _any_value(rng: random.Random) -> bytes:
    kind = rng.random()
    if kind < 0.5:
        return rng.choice([1, 2, 3, 5, 7, 8, 15, 19, 2**31, 2**32 - 1]).to_bytes(4, "big")
    if kind < 0.6:
        return rng.randbytes(16)
    if kind < 0.7:
        return rng.choice([b"", b"\xff\xfe", "é".encode(), b"nas-1"])
    return rng.randbytes(rng.randint(0, 20))


def _any_attributes(rng: random.Random) -> list[tuple[int, bytes]]:
    types = [rng.choice(_READ_TYPES) for _ in range(rng.randint(0, 30))]
    if rng.random() < 0.7:
        types.insert(0, codec.ACCT_SESSION_ID)
    if rng.random() < 0.9:
        types.insert(rng.randint(0, len(types)), codec.ACCT_STATUS_TYPE)
    attrs = [(attr_type, _any_value(rng)) for attr_type in types]
    if rng.random() < 0.8:  # mostly a status radtrack tracks, so that the fields get compared
        status = rng.choice([1, 2, 3, 7, 8]).to_bytes(4, "big")
        attrs = [(t, status if t == codec.ACCT_STATUS_TYPE else v) for t, v in attrs]
    return attrs


@examples(500)
@given(batches(_any_attributes))
def test_request_matches_the_plain_reference(cases: list[list[tuple[int, bytes]]]) -> None:
    """2,000 requests with every attribute the decoder reads at any length (0, 4, 16, ...),
    repeated and in any order: the tuned decoder gives what the plain reference gives, field by
    field, and raises MalformedPacket exactly when the reference does."""
    for attrs in cases:
        packet = codec.decode(accounting_packet(attrs, b"s"))
        expected = reference_request(attrs, NAS_NAME, SOURCE_IP, NOW)
        if expected is MalformedPacket:
            with pytest.raises(MalformedPacket):
                DECODER.request(packet, NAS_NAME, SOURCE_IP, NOW)
            continue
        request = DECODER.request(packet, NAS_NAME, SOURCE_IP, NOW)
        if expected is None:
            assert request is None
            continue
        assert request is not None
        assert len(request) == len(AccountingRequest._fields)  # built with tuple.__new__
        assert request._asdict() == expected
        assert type(request.status) is StatusType


@examples(300)
@given(st.binary(max_size=150), st.binary(max_size=300))
def test_hmac_md5_is_hmac(key: bytes, message: bytes) -> None:
    assert codec.hmac_md5(key, message) == hmac.digest(key, message, "md5")
    assert codec.hmac_md5(key, message) == hmac.digest(key, message, "md5")  # pads reused
    assert codec.md5(message).digest() == hashlib.md5(message).digest()


def test_values_hold_the_first_instance() -> None:
    attrs = [(1, b"a"), (33, b"p1"), (6, b"\x00\x00\x00\x02"), (1, b"b"), (33, b"p2"), (6, b"x")]
    packet = codec.decode(accounting_packet(attrs, b"s"))
    kept = {t: v for t, v in enumerate(packet.values) if isinstance(v, bytes)}
    assert kept == {1: b"a", 33: b"p1"}  # Service-Type (6) is not read on the hot path
    assert packet.values[6] is False and packet.values[44] is None and len(packet.values) == 256
    assert packet.first(1) == b"a" and packet.first(2) is None and packet.first(200) is None
    assert packet.first(6) == b"\x00\x00\x00\x02"  # found by walking the packet
    assert packet.all(33) == [b"p1", b"p2"] and packet.all(80) == []
    assert packet.all(6) == [b"\x00\x00\x00\x02", b"x"] and packet.all(200) == []


# -- 2. rejects what pyrad rejects; only MalformedPacket escapes --------------------------------


def _codec_is_stricter(data: bytes) -> bool:
    """The packets pyrad accepts and the codec rejects, on purpose:
    - Length above 4096 (RFC 2865 §3 sets 4096 as the maximum; pyrad allows up to 8192);
    - an attribute running past Length (RFC 2865 §5 makes the packet malformed; pyrad silently
      truncates the attribute's value and stops).
    """
    (length,) = struct.unpack_from("!H", data, 2)
    return length > codec.MAX_PACKET_SIZE or raw_walk(data)[1] == "overrun"


def check_hostile(data: bytes) -> None:
    """Whatever pyrad rejects the codec rejects with MalformedPacket; whatever the codec
    accepts pyrad accepts with the same attributes, and verify_request / request then raise
    nothing (request: nothing but MalformedPacket)."""
    try:
        pyrad_decode(data)
    except Exception:  # PacketError mostly; any failure in pyrad's decode counts as a reject
        pyrad_accepts = False
    else:
        pyrad_accepts = True
    try:
        packet = codec.decode(data)  # any exception but MalformedPacket fails the test
    except MalformedPacket:
        assert not pyrad_accepts or _codec_is_stricter(data)
        return
    assert pyrad_accepts, "the codec accepted a packet pyrad rejects"
    assert pyrad_view(packet.attributes) == pyrad_items(pyrad_decode(data))
    assert isinstance(codec.verify_request(packet, b"secret"), bool)
    assert isinstance(codec.verify_request(packet, b"", require_message_authenticator=True), bool)
    try:
        DECODER.request(packet, NAS_NAME, SOURCE_IP, NOW)
    except MalformedPacket:
        pass


@examples(2000)
@given(st.one_of(st.binary(max_size=5000), HEADER_AND_NOISE))
def test_random_bytes_are_rejected_like_pyrad(data: bytes) -> None:
    """Arbitrary octets (up to 5,000), and random octets behind a plausible header."""
    check_hostile(data)


@examples(750)
@given(batches(random_mutated_request))
def test_damaged_requests_are_rejected_like_pyrad(cases: list[bytes]) -> None:
    """3,000 valid requests with 1-4 random damages each: bit flips, truncations, Length
    edits, attribute lengths set to 0/1/255/anything, octets appended, inserted, deleted."""
    for data in cases:
        check_hostile(data)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x04",
        b"\x04\x01\x00\x14" + ZERO[:15],  # 19 octets
        b"\x04\x01\x00\x13" + ZERO,  # Length 19
        b"\x04\x01\x00\x15" + ZERO,  # Length 21 > datagram
        b"\x04\x01\x00\x15" + ZERO + b"\x01",  # one octet of attribute header
        b"\x04\x01\x00\x16" + ZERO + b"\x01\x00",  # attribute length 0
        b"\x04\x01\x00\x16" + ZERO + b"\x01\x01",  # attribute length 1
        b"\x04\x01\x00\x17" + ZERO + b"\x01\x01\x02",  # length 1; stepping by 1 would "fit"
        b"\x04\x01\xff\xff" + ZERO,  # Length 65535 > datagram
    ],
)
def test_broken_headers_are_rejected_like_pyrad(data: bytes) -> None:
    with pytest.raises(PacketError):
        pyrad_decode(data)
    with pytest.raises(MalformedPacket):
        codec.decode(data)


def test_attribute_past_length_is_rejected_though_pyrad_truncates_it() -> None:
    data = accounting_packet([(codec.USER_NAME, b"alice")], b"s")
    data = data[:21] + b"\x40" + data[22:]  # User-Name claims 64 octets, 7 are there
    assert pyrad_decode(data)[codec.USER_NAME] == [b"alice"]  # pyrad: silently truncated
    with pytest.raises(MalformedPacket, match="runs past"):
        codec.decode(data)


def walked(data: bytes) -> codec.RawPacket | type[MalformedPacket]:
    """codec.decode: the plain attribute walk."""
    try:
        return codec.decode(data)
    except MalformedPacket:
        return MalformedPacket


def decoded(data: bytes) -> codec.RawPacket | type[MalformedPacket]:
    """fastpath.decode (by a learned layout when one fits), as a comparable value."""
    try:
        packet = fastpath.decode(data)
    except MalformedPacket:
        return MalformedPacket
    return packet._replace(kept=list(packet.kept))


def _same_length_variants(rng: random.Random) -> list[bytes]:
    """A valid request, then packets of the same Length: other values in the same places (the
    layout fits), and one type or length octet changed (it does not)."""
    data, _ = random_request(rng)
    offsets = offsets_of(data)
    variants = [data]
    for _ in range(3):
        body = bytearray(data)
        for pos in offsets:
            for at in range(pos + 2, pos + body[pos + 1]):
                body[at] = rng.randrange(256)
        variants.append(bytes(body))
    for _ in range(3 if offsets else 0):
        body = bytearray(data)
        pos = rng.choice(offsets) + rng.randint(0, 1)
        body[pos] = rng.randrange(256)
        variants.append(bytes(body))
    return variants


@examples(300)
@given(batches(_same_length_variants, size=2))
def test_decoding_by_a_learned_layout_gives_what_the_walk_gives(cases: list[list[bytes]]) -> None:
    """fastpath.decode remembers the layout of each Length and cuts values out at its offsets
    when a packet's type and length octets match it; whatever matches or not, the result (or
    the MalformedPacket) is the walk's (codec.decode)."""
    for variants in cases:
        for data in variants + variants:  # the second round meets the layouts learned
            assert decoded(data) == walked(data)


# -- 3. octets past Length are padding (RFC 2866 §3) --------------------------------------------


def _with_padding(rng: random.Random) -> tuple[bytes, bytes, bytes]:
    data, secret = random_request(rng)
    return data, secret, rng.randbytes(rng.randint(1, 300))


@examples(250)
@given(batches(_with_padding))
def test_octets_past_length_are_ignored(cases: list[tuple[bytes, bytes, bytes]]) -> None:
    """1,000 valid requests with 1-300 random octets appended: the same attributes, still
    verified (by pyrad too), the same reply."""
    for data, secret, junk in cases:
        clean = codec.decode(data)
        padded = codec.decode(data + junk)
        assert padded.data == data
        assert padded.attributes == clean.attributes
        assert codec.verify_request(padded, secret) is True
        assert pyrad_decode(data + junk, secret).VerifyAcctRequest() is True
        assert codec.encode_reply(padded, secret) == codec.encode_reply(clean, secret)


def test_padding_may_take_the_datagram_past_4096() -> None:
    data = padded_packet(4000)
    packet = codec.decode(data + b"\xff" * 500)  # the Length field counts, not the datagram
    assert packet.data == data
    assert codec.verify_request(packet, b"secret") is True


# -- 4. the maximum length (RFC 2865 §3) ---------------------------------------------------------


@examples(200)
@given(st.integers(codec.MAX_PACKET_SIZE + 1, 8192))
def test_length_over_4096_is_rejected(length: int) -> None:
    data = padded_packet(length)
    assert pyrad_decode(data, b"secret").VerifyAcctRequest() is True  # pyrad allows up to 8192
    with pytest.raises(MalformedPacket, match="exceeds"):
        codec.decode(data)


@pytest.mark.parametrize("length", [22, 4095, codec.MAX_PACKET_SIZE])
def test_length_up_to_4096_is_accepted(length: int) -> None:
    data = padded_packet(length)
    packet = codec.decode(data)
    assert len(packet.data) == length
    assert pyrad_view(packet.attributes) == pyrad_items(pyrad_decode(data))
    assert codec.verify_request(packet, b"secret") is True


# -- 5. replies equal pyrad's --------------------------------------------------------------------


@examples(400)
@given(batches(lambda rng: random_request(rng, max_proxy_states=3)))
def test_encode_reply_equals_pyrad(cases: list[tuple[bytes, bytes]]) -> None:
    """1,600 requests with 0-3 Proxy-States: the reply is byte for byte pyrad's
    CreateReply().ReplyPacket() (Proxy-States copied in order, RFC 2865 §5.33) and pyrad's
    VerifyReply accepts it; also with a Message-Authenticator, which in a reply to an
    Accounting-Request is computed with a zero vector (as FreeRADIUS and pyrad do)."""
    for data, secret in cases:
        packet = codec.decode(data)
        request = pyrad_decode(data, secret)
        for with_ma in (False, True):
            reply = codec.encode_reply(packet, secret, message_authenticator=with_ma)
            assert reply == request.CreateReply(message_authenticator=with_ma).ReplyPacket()
            assert request.VerifyReply(request.CreateReply(packet=reply), reply) is True
            decoded = codec.decode(reply)
            assert decoded.code == codec.ACCOUNTING_RESPONSE
            assert decoded.identifier == packet.identifier
            assert decoded.all(codec.PROXY_STATE) == packet.all(codec.PROXY_STATE)
            assert len(decoded.all(MA)) == with_ma
        forged = codec.encode_reply(packet, secret + b"x")
        assert request.VerifyReply(request.CreateReply(packet=forged), forged) is False


@examples(250)
@given(batches(random_status_server))
def test_status_server(cases: list[tuple[bytes, bytes]]) -> None:
    """1,000 Status-Servers (RFC 5997 §3): the Message-Authenticator authenticates them (their
    authenticator is random) and must be there; the Accounting-Response carries one computed
    with the request's authenticator, byte for byte pyrad's, and pyrad's VerifyReply (which
    checks it) accepts it."""
    for data, secret in cases:
        packet = codec.decode(data)
        request = pyrad_decode(data, secret)
        assert packet.code == codec.STATUS_SERVER
        assert request.VerifyAcctRequest() is True
        assert codec.verify_request(packet, secret) is True
        assert codec.verify_request(packet, secret, require_message_authenticator=True) is True

        wrong = other_secret(secret, _flip(secret, len(secret) - 1, 0))
        assert pyrad_decode(data, wrong).VerifyAcctRequest() is False
        assert codec.verify_request(packet, wrong) is False

        tampered = codec.decode(_flip(data, 4, 0))  # the authenticator is under the MAC
        assert codec.verify_request(tampered, secret) is False

        stripped = data[:20] + encode_attrs([(t, v) for t, v in packet.attributes if t != MA])
        stripped = _set_length(stripped, len(stripped))
        assert pyrad_decode(stripped, secret).VerifyAcctRequest() is False
        assert codec.verify_request(codec.decode(stripped), secret) is False

        reply = codec.encode_reply(packet, secret, message_authenticator=True)
        assert reply == request.CreateReply().ReplyPacket()
        assert request.VerifyReply(request.CreateReply(packet=reply), reply, enforce_ma=True)
        bare = codec.encode_reply(packet, secret)
        assert not request.VerifyReply(request.CreateReply(packet=bare), bare, enforce_ma=True)


def test_other_secret_is_really_other() -> None:
    """HMAC pads its key with zeros: secrets differing only in trailing NULs give the same
    Message-Authenticator, to pyrad and to the codec alike (found by hypothesis)."""
    data = AcctPacket(code=codec.STATUS_SERVER, dict=DICT, secret=b"\x00\x00").RequestPacket()
    assert pyrad_decode(data, b"\x00").VerifyAcctRequest() is True
    assert codec.verify_request(codec.decode(data), b"\x00") is True
    assert other_secret(b"\x00\x00", b"\x00") == b"\x00\x00x"


# -- 6. Message-Authenticator (RFC 2869 §5.14, RFC 3579 §3.2) ------------------------------------


def _with_forged_ma(rng: random.Random) -> tuple[bytes, bytes]:
    """A request whose MA has one bit flipped, re-signed so only the MA is wrong."""
    data, secret = random_request(rng, message_authenticator=True)
    (pos,) = [pos for pos in offsets_of(data) if data[pos] == MA]
    bit = rng.randrange(128)
    return resign(_flip(data, pos + 2 + bit // 8, bit % 8), secret), secret


@examples(200)
@given(batches(_with_forged_ma))
def test_forged_message_authenticator_is_rejected(cases: list[tuple[bytes, bytes]]) -> None:
    """800 requests whose Message-Authenticator is off by one bit: pyrad and the codec reject
    them, though the Request Authenticator verifies."""
    for forged, secret in cases:
        reference = pyrad_decode(forged, secret)
        assert reference.VerifyAcctRequest() is True  # the Request Authenticator is fine
        assert reference.verify_message_authenticator() is False
        assert codec.verify_request(codec.decode(forged), secret) is False


def _message_authenticator(data: bytes, secret: bytes) -> bytes:
    """The MA of the first MA attribute of an Accounting-Request, as pyrad and FreeRADIUS
    compute it: HMAC-MD5 over the packet with a zero authenticator and a zeroed MA."""
    pos = next(pos for pos in offsets_of(data) if data[pos] == MA)
    zeroed = data[: pos + 2] + ZERO + data[pos + 18 :]
    return hmac.new(secret, zeroed[:4] + ZERO + zeroed[20:], "md5").digest()


def _with_valid_first_ma(attrs: list[tuple[int, bytes]], secret: bytes) -> bytes:
    data = accounting_packet(attrs, secret)
    pos = next(pos for pos in offsets_of(data) if data[pos] == MA)
    data = data[: pos + 2] + _message_authenticator(data, secret) + data[pos + 18 :]
    return resign(data, secret)


START = [(codec.ACCT_STATUS_TYPE, b"\x00\x00\x00\x01"), (codec.ACCT_SESSION_ID, b"s")]


@examples(200)
@given(SECRETS, st.binary(min_size=16, max_size=16))
def test_two_message_authenticators_are_rejected(secret: bytes, second: bytes) -> None:
    single = _with_valid_first_ma([(MA, ZERO), *START], secret)
    assert codec.verify_request(codec.decode(single), secret) is True
    double = _with_valid_first_ma([(MA, ZERO), *START, (MA, second)], secret)
    # pyrad checks the first one only and accepts; RFC 3579 §3.2 allows at most one
    assert pyrad_decode(double, secret).verify_message_authenticator() is True
    assert codec.verify_request(codec.decode(double), secret) is False


@examples(200)
@given(SECRETS, st.binary(max_size=40).filter(lambda value: len(value) != 16))
def test_message_authenticator_of_wrong_length_is_rejected(secret: bytes, value: bytes) -> None:
    data = accounting_packet([START[0], (MA, value), START[1]], secret)
    assert pyrad_decode(data, secret).VerifyAcctRequest() is True  # only the MA is wrong
    assert codec.verify_request(codec.decode(data), secret) is False


def test_required_message_authenticator() -> None:
    without = codec.decode(accounting_packet(START, b"s"))
    assert codec.verify_request(without, b"s") is True
    assert codec.verify_request(without, b"s", require_message_authenticator=True) is False
    with_ma = codec.decode(_with_valid_first_ma([*START, (MA, ZERO)], b"s"))
    assert codec.verify_request(with_ma, b"s", require_message_authenticator=True) is True


def test_status_server_without_message_authenticator_is_rejected() -> None:
    data = struct.pack("!BBH", codec.STATUS_SERVER, 9, 20) + b"\x11" * 16
    assert pyrad_decode(data, b"s").VerifyAcctRequest() is False
    assert codec.verify_request(codec.decode(data), b"s") is False


@given(st.binary(max_size=253))
def test_text_is_valid_utf8_without_nul_and_gives_back_the_octets(raw: bytes) -> None:
    """Whatever octets a NAS puts in a text attribute, every layer gets a string it can store
    (UTF-8 encodable, no NUL for PostgreSQL), and a Disconnect-Request gets the octets back."""
    value = codec.text(raw)
    assert "\0" not in value
    value.encode("utf-8")  # raises on a lone surrogate
    assert value == escaped_text(raw)
    if not LITERAL_ESCAPE.search(raw):  # a NAS that sends the characters \xff itself: see
        assert codec.octets(value) == raw  # docs/reliability.md (only Disconnect differs)


LITERAL_ESCAPE = re.compile(rb"\\x(00|[89a-f][0-9a-f])")


def test_text_keeps_valid_utf8_as_it_is() -> None:
    assert codec.text("DOMAIN\\user é 中文".encode()) == "DOMAIN\\user é 中文"
    assert codec.text(b"caf\xe9") == "caf\\xe9"  # latin-1 from an old BRAS
    assert codec.text(b"\xff") == "\\xff"


def request_fields(
    decoder: decoder.AccountingDecoder, data: bytes
) -> dict[str, object] | None | type[MalformedPacket]:
    try:
        request = decoder.request(codec.decode(data), NAS_NAME, SOURCE_IP, NOW)
    except MalformedPacket:
        return MalformedPacket
    return None if request is None else request._asdict()


@examples(300)
@given(batches(_same_length_variants, size=2))
def test_the_fast_request_decoder_gives_what_the_plain_rules_give(
    cases: list[list[bytes]],
) -> None:
    """fastpath.FastAccountingDecoder.request against decoder.AccountingDecoder.request, field by
    field, on valid requests and on packets with other values or other octets in the same
    places (values of the wrong size, texts that are not UTF-8, unknown statuses...); twice, so
    the second round meets what the fast one remembers (NASes, the last Event-Timestamp)."""
    fast = fastpath.FastAccountingDecoder(DICT)
    for variants in cases:
        for data in variants + variants:
            assert request_fields(fast, data) == request_fields(PLAIN, data)


def test_a_field_reorder_in_the_request_breaks_the_comparison() -> None:
    """The fast decoder builds an AccountingRequest by position: the plain rules build it by
    name, so the comparison above sees any reorder. The field order the fast one writes is
    AccountingRequest's, checked here once by name."""
    data = accounting_packet(
        [
            (codec.ACCT_STATUS_TYPE, struct.pack("!I", 1)),
            (codec.ACCT_SESSION_ID, b"s1"),
            (codec.USER_NAME, b"alice"),
            (codec.NAS_PORT_ID, b"port-7"),
            (codec.CALLING_STATION_ID, b"calling"),
            (codec.CALLED_STATION_ID, b"called"),
            (codec.ACCT_INPUT_OCTETS, struct.pack("!I", 11)),
            (codec.ACCT_OUTPUT_OCTETS, struct.pack("!I", 22)),
            (codec.ACCT_INPUT_PACKETS, struct.pack("!I", 33)),
            (codec.ACCT_OUTPUT_PACKETS, struct.pack("!I", 44)),
            (codec.ACCT_SESSION_TIME, struct.pack("!I", 55)),
            (codec.ACCT_INTERIM_INTERVAL, struct.pack("!I", 66)),
        ],
        b"s",
    )
    request = DECODER.request(codec.decode(data), NAS_NAME, SOURCE_IP, NOW)
    assert request is not None
    assert (request.user_name, request.nas_port_id) == ("alice", "port-7")
    assert (request.calling_station_id, request.called_station_id) == ("calling", "called")
    assert (request.input_octets, request.output_octets) == (11, 22)
    assert (request.input_packets, request.output_packets) == (33, 44)
    assert (request.session_time, request.interim_interval) == (55, 66)
