"""The fast path: the packet path's speed tricks, each beside the plain rule it stands for.

The daemon runs these; the plain versions (radtrack/radius/codec.py ``decode`` and
``AccountingDecoder.request``, radtrack/accounting.py ``Accountant``) are the specification,
written to be read, and tests check every trick here against them on generated packets
(tests/test_codec.py, tests/test_fastpath.py). What is here and why: a NAS sends packets of the
same shape over and over, so ``decode`` learns each packet Length's layout and cuts a matching
packet's values out with one struct format instead of walking its attributes in Python;
``FastAccountingDecoder.request`` unpacks the kept values in one step and converts them inline
(a helper call per attribute costs more than the conversion); ``FastAccountant`` finds the
session of an Interim-Update (80 % of all packets) in a direct-mapped table instead of hashing
its key, and updates it from the request's fields unpacked in one step (a NamedTuple's field
access is a generic attribute lookup in CPython 3.11). bench/hotpath.py measures them
(docs/performance.md).
"""

from __future__ import annotations

import itertools
import operator
import struct
from collections.abc import Callable, Sequence
from typing import Any, Literal

from radtrack.accounting import Accountant
from radtrack.errors import MalformedPacket
from radtrack.index import SessionIndex, UserDirectory
from radtrack.model import (
    AccountingRequest,
    ChangeKind,
    Session,
    SessionChange,
    StatusType,
    session_key,
)
from radtrack.radius import codec
from radtrack.radius.codec import (
    HEADER,
    KEPT_ORDER,
    KEPT_TYPES,
    MAX_COUNTER,
    MAX_PACKET_SIZE,
    SESSION_ID_OPTIONAL,
    STATUS_TYPES,
    AccountingDecoder,
    RawPacket,
    text,
)

_new_tuple = tuple.__new__  # builds a NamedTuple from a tuple in C
_OCTETS = tuple(str(octet) for octet in range(256))


def decode(data: bytes) -> RawPacket:
    """codec.decode, by a learned layout when the packet fits one (the result is the walk's)."""
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
    packet = codec.decode(data)  # the walk (it checks the structure again: rare, see below)
    if layout is None or _relearn():
        _learn(data, length)
    return packet


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


class FastAccountingDecoder(AccountingDecoder):
    """AccountingDecoder with its ``request`` written for speed."""

    def request(  # noqa: C901 - one line per attribute; long, as one call per packet is cheaper
        self, packet: RawPacket, nas_name: str, source_ip: str, now: float
    ) -> AccountingRequest | None:
        """The AccountingRequest of a verified Accounting-Request; None for a status radtrack
        does not track (e.g. Failed, RFC 2867 tunnel records), which is acknowledged all the same.
        Raises MalformedPacket when Acct-Status-Type or Acct-Session-Id is missing or invalid.
        An attribute that should appear once but repeats counts by its first instance, as in
        FreeRADIUS and pyrad.

        codec.AccountingDecoder.request, written for speed (it runs once per packet): the kept
        values are unpacked in one step (in KEPT_ORDER: a reorder there fails test_codec's
        comparison with the plain rules), conversions are inline rather than helper calls, the
        NAS of a NAS-IP-Address and the float of the last Event-Timestamp are remembered.
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
        status = STATUS_TYPES.get(status_raw)
        if status is None:
            if len(status_raw) != 4:
                raise MalformedPacket("Acct-Status-Type is not 4 octets")
            return None
        if session_id_raw is None and status not in SESSION_ID_OPTIONAL:
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


# -- the accounting core ---------------------------------------------------------------------

_INTERIM_UPDATE = StatusType.INTERIM_UPDATE
_UPDATED = ChangeKind.UPDATED
_RECENT_MASK = (1 << 17) - 1  # FastAccountant._recent: 131,072 slots (1 MiB)
# the names _update unpacks a request into, in order ("_": not read there)
_INTERIM_FIELDS = (
    "status",
    "nas_key",
    "nas_name",
    "nas_ip",
    "session_id",
    "event_time",
    "user_name",
    "class_hex",
    "nas_port_id",
    "nas_port_type",
    "calling_station_id",
    "called_station_id",
    "framed_ip",
    "connect_info",
    "session_time",
    "input_octets",
    "output_octets",
    "input_packets",
    "output_packets",
    "terminate_cause",
    "interim_interval",
    "received_at",
)
# a field added to or moved in AccountingRequest must be added or moved in _update too
assert AccountingRequest._fields == _INTERIM_FIELDS, "AccountingRequest's fields changed"


class FastAccountant(Accountant):
    """Accountant with the Interim-Update of an online session in one step: its session found
    in a direct-mapped table of online sessions that sent one lately, by hash of their
    Acct-Session-Id (bounded; a session that goes offline leaves it, so it keeps nothing
    alive), checked against all three inputs of its key, instead of hashing the key; then
    updated from the request's fields unpacked at once. Every other packet takes the plain
    rules."""

    def __init__(self, index: SessionIndex, users: UserDirectory, **settings: Any) -> None:
        super().__init__(index, users, **settings)
        self._recent: list[Session | None] = [None] * (_RECENT_MASK + 1)

    def handle(self, request: AccountingRequest) -> list[SessionChange]:
        if request.status is _INTERIM_UPDATE:
            # the id of an online session that sent an Interim lately: its own (ids are a
            # function of these three), without hashing again
            session_id = request.session_id
            slot = hash(session_id) & _RECENT_MASK
            recent = self._recent[slot]
            if (
                recent is not None
                and recent.session_id == session_id
                and recent.nas_key == request.nas_key
                and recent.class_hex == request.class_hex
            ):
                sid = recent.id
            else:
                sid = session_key(request.nas_key, session_id, request.class_hex)
            session = self.index.find(sid)  # a later incarnation of a reused key: the plain way
            if session is not None and session.stop_time is None:
                self._recent[slot] = session
                return self._update(session, request)  # the common case: no detour
        return super().handle(request)

    def _forget_recent(self, session: Session) -> None:
        slot = hash(session.session_id) & _RECENT_MASK
        if self._recent[slot] is session:
            self._recent[slot] = None

    def _update(self, session: Session, request: AccountingRequest) -> list[SessionChange]:
        """Accountant._update (an Interim-Update of an online session, 80 % of all packets)
        written out in one function, the fields unpacked at once."""
        # the fields as locals in one step: a NamedTuple's field access is a generic attribute
        # lookup (not specialized), its [:] an exact tuple that unpacks in one instruction; in
        # AccountingRequest's field order (_INTERIM_FIELDS, checked at import)
        (
            _,
            _,
            _,
            _,
            _,
            event_time,
            user_name,
            _,
            nas_port_id,
            nas_port_type,
            calling_station_id,
            called_station_id,
            framed_ip,
            _,
            session_time,
            input_octets,
            output_octets,
            input_packets,
            output_packets,
            _,
            interim_interval,
            received_at,
        ) = request[:]
        last_update = session.last_update
        if event_time != last_update:
            if event_time < last_update:
                return self._late(session, request)  # keep the newer counters
        elif (session_time or 0) <= session.session_time:
            return []  # a duplicate Interim
        session.last_update = event_time
        # _merge_attributes; an equal value: the session's own (shared) one stays
        learned_user = user_name is not None and session.user_name is None
        if learned_user:
            session.user_name = user_name
        if nas_port_id is not None and nas_port_id != session.nas_port_id:
            session.nas_port_id = self.shared.share(nas_port_id)
        if nas_port_type is not None:
            session.nas_port_type = nas_port_type
        if calling_station_id is not None and calling_station_id != session.calling_station_id:
            session.calling_station_id = calling_station_id
        if called_station_id is not None and called_station_id != session.called_station_id:
            session.called_station_id = self.shared.share(called_station_id)
        if framed_ip is not None and framed_ip != session.framed_ip:
            session.framed_ip = framed_ip
        if interim_interval:
            session.interim_interval = interim_interval
        # _take_counters
        if session_time is not None:
            session.session_time = session_time
        if input_octets is not None:
            session.input_octets = input_octets
        if output_octets is not None:
            session.output_octets = output_octets
        if input_packets is not None:
            session.input_packets = input_packets
        if output_packets is not None:
            session.output_packets = output_packets
        seen = received_at or event_time
        if seen > session.last_seen:
            session.last_seen = seen
        if learned_user:
            # the first packet had no User-Name: map the user now, as if it had; then the user
            # columns change and the whole row is written
            self.index.set_user(session, self.users.resolve(session.user_name, session.class_hex))
            return [SessionChange(ChangeKind.UPDATED, session)]
        return [_new_tuple(SessionChange, (_UPDATED, session, True))]  # counters only
