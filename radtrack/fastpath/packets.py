"""The fast path of the codec: packet layouts learned by Length, and the request decoder
written for speed (radtrack/fastpath/__init__.py says why; tests/test_codec.py checks both
against radtrack/radius/codec.py's walk and radtrack/radius/decoder.py's plain rules)."""

from __future__ import annotations

import itertools
import operator
import struct
from collections.abc import Callable, Sequence
from typing import Literal

from radtrack.errors import MalformedPacket
from radtrack.model import (
    AccountingRequest,
)
from radtrack.radius import codec
from radtrack.radius.codec import (
    KEPT_ORDER,
    KEPT_TYPES,
    RawPacket,
    header,
    text,
)
from radtrack.radius.decoder import (
    MAX_COUNTER,
    SESSION_ID_OPTIONAL,
    STATUS_TYPES,
    AccountingDecoder,
)

_new_tuple = tuple.__new__  # builds a NamedTuple from a tuple in C
_OCTETS = tuple(str(octet) for octet in range(256))


def decode(data: bytes) -> RawPacket:
    """codec.decode, by a learned layout when the packet fits one (the result is the walk's)."""
    code, identifier, length, authenticator, data = header(data)
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

    # long: one call per packet, its conversions inline (a helper call costs more than one)
    def request(  # noqa: C901
        self, packet: RawPacket, nas_name: str, source_ip: str, now: float
    ) -> AccountingRequest | None:
        """decoder.AccountingDecoder.request (its contract and results), for speed: the kept
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
