"""Verified Accounting-Requests into AccountingRequests: what each attribute means (RFC 2865,
2866, 2869), the plain rules, one attribute a line. The daemon runs the same rules written for
speed (radtrack/fastpath), which tests/test_codec.py checks against these.

Contract: ``AccountingDecoder.request`` raises only MalformedPacket.
"""

from __future__ import annotations

from socket import AF_INET6, inet_ntoa, inet_ntop

from pyrad.dictionary import Dictionary

from radtrack.errors import MalformedPacket
from radtrack.model import AccountingRequest, StatusType
from radtrack.radius.codec import (
    ACCT_DELAY_TIME,
    ACCT_INPUT_GIGAWORDS,
    ACCT_INPUT_OCTETS,
    ACCT_INPUT_PACKETS,
    ACCT_INTERIM_INTERVAL,
    ACCT_OUTPUT_GIGAWORDS,
    ACCT_OUTPUT_OCTETS,
    ACCT_OUTPUT_PACKETS,
    ACCT_SESSION_ID,
    ACCT_SESSION_TIME,
    ACCT_STATUS_TYPE,
    ACCT_TERMINATE_CAUSE,
    CALLED_STATION_ID,
    CALLING_STATION_ID,
    CLASS,
    CONNECT_INFO,
    EVENT_TIMESTAMP,
    FRAMED_IP_ADDRESS,
    NAS_IDENTIFIER,
    NAS_IP_ADDRESS,
    NAS_IPV6_ADDRESS,
    NAS_PORT_ID,
    NAS_PORT_TYPE,
    USER_NAME,
    RawPacket,
    text,
)

# Acct-Status-Type values as they appear on the wire -> the member (no Enum call per packet)
STATUS_TYPES = {status.value.to_bytes(4, "big"): status for status in StatusType}
SESSION_ID_OPTIONAL = (StatusType.ACCOUNTING_ON, StatusType.ACCOUNTING_OFF)
_SHARED_MAX = 100_000
# RFC 2869 §5.1-5.2 Gigawords make 64-bit counters; SQLite and PostgreSQL integers are signed
# 64-bit, so a counter past 2**63 - 1 octets (Gigawords >= 2**31: 9.2 EB) is kept at that value
MAX_COUNTER = (1 << 63) - 1


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

    def request(
        self, packet: RawPacket, nas_name: str, source_ip: str, now: float
    ) -> AccountingRequest | None:
        """The AccountingRequest of a verified Accounting-Request; None for a status radtrack
        does not track (e.g. Failed, RFC 2867 tunnel records), which is acknowledged all the same.
        Raises MalformedPacket when Acct-Status-Type or Acct-Session-Id is missing or invalid.
        An attribute that should appear once but repeats counts by its first instance, as in
        FreeRADIUS and pyrad.

        The plain rules, one attribute a line; the daemon runs radtrack/fastpath's version
        of this method, which tests/test_codec.py checks against this one.
        """
        first = packet.first
        status_raw = first(ACCT_STATUS_TYPE)
        if status_raw is None:
            raise MalformedPacket("no Acct-Status-Type")  # RFC 2866 §5.1: MUST be present
        status = STATUS_TYPES.get(status_raw)
        if status is None:
            if len(status_raw) != 4:
                raise MalformedPacket("Acct-Status-Type is not 4 octets")
            return None  # a status radtrack does not track
        session_id = first(ACCT_SESSION_ID)
        if session_id is None and status not in SESSION_ID_OPTIONAL:
            raise MalformedPacket("no Acct-Session-Id")  # RFC 2866 §5.5: MUST be present
        nas_key, nas_ip = self._nas(
            nas_name,
            source_ip,
            first(NAS_IP_ADDRESS),
            first(NAS_IPV6_ADDRESS),
            first(NAS_IDENTIFIER),
        )
        connect_info = _optional_text(first(CONNECT_INFO))
        class_raw = first(CLASS)
        return AccountingRequest(
            status=status,
            nas_key=nas_key,
            nas_name=nas_name,
            nas_ip=nas_ip,
            session_id="" if session_id is None else text(session_id),
            event_time=_event_time(first(EVENT_TIMESTAMP), first(ACCT_DELAY_TIME), now),
            user_name=_optional_text(first(USER_NAME)),
            class_hex=None if class_raw is None else class_raw.hex(),
            nas_port_id=_optional_text(first(NAS_PORT_ID)),
            nas_port_type=_label(first(NAS_PORT_TYPE), self.port_types),
            calling_station_id=_optional_text(first(CALLING_STATION_ID)),
            called_station_id=_optional_text(first(CALLED_STATION_ID)),
            framed_ip=_ipv4(first(FRAMED_IP_ADDRESS)),
            connect_info=None if connect_info is None else self._share(connect_info),
            session_time=_number(first(ACCT_SESSION_TIME)),
            input_octets=_counter(first(ACCT_INPUT_OCTETS), first(ACCT_INPUT_GIGAWORDS)),
            output_octets=_counter(first(ACCT_OUTPUT_OCTETS), first(ACCT_OUTPUT_GIGAWORDS)),
            input_packets=_number(first(ACCT_INPUT_PACKETS)),
            output_packets=_number(first(ACCT_OUTPUT_PACKETS)),
            terminate_cause=_label(first(ACCT_TERMINATE_CAUSE), self.terminate_causes),
            interim_interval=_number(first(ACCT_INTERIM_INTERVAL)),
            received_at=now,
        )


def _number(raw: bytes | None) -> int | None:
    """An integer attribute (RFC 2865 §5: 4 octets); one of another size is ignored."""
    return int.from_bytes(raw) if raw is not None and len(raw) == 4 else None


def _counter(low_raw: bytes | None, gigawords_raw: bytes | None) -> int | None:
    """An octet counter with its Gigawords: how often the 32-bit counter wrapped (RFC 2869
    §5.1-5.2), at most MAX_COUNTER."""
    low = _number(low_raw)
    if low is None:
        return None
    return min(low + ((_number(gigawords_raw) or 0) << 32), MAX_COUNTER)


def _event_time(timestamp_raw: bytes | None, delay_raw: bytes | None, now: float) -> float:
    """RFC 2869 §5.3 Event-Timestamp; else the arrival minus Acct-Delay-Time (RFC 2866 §5.2)."""
    timestamp = _number(timestamp_raw)
    if timestamp is not None:
        return float(timestamp)
    delay = _number(delay_raw)
    return now if delay is None else now - delay


def _label(raw: bytes | None, names: dict[bytes, str]) -> str | None:
    """An enumerated value by its dictionary name, else its number as text."""
    if raw is None:
        return None
    name = names.get(raw)
    if name is None and len(raw) == 4:
        return str(int.from_bytes(raw))
    return name


def _ipv4(raw: bytes | None) -> str | None:
    return inet_ntoa(raw) if raw is not None and len(raw) == 4 else None


def _optional_text(raw: bytes | None) -> str | None:
    return None if raw is None else text(raw)
