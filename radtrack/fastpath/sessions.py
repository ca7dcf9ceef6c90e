"""The fast path of the accounting core: the Interim-Update of an online session
(radtrack/fastpath/__init__.py says why; tests/test_accounting.py and
tests/test_accounting_model.py run it beside radtrack/accounting.py's plain rules)."""

from __future__ import annotations

from radtrack.accounting import Accountant
from radtrack.model import (
    AccountingRequest,
    ChangeKind,
    Session,
    SessionChange,
    StatusType,
    session_key,
)
from radtrack.store.index import SessionIndex, UserDirectory

_new_tuple = tuple.__new__  # builds a NamedTuple from a tuple in C

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

    def __init__(
        self,
        index: SessionIndex,
        users: UserDirectory,
        *,
        default_interim_interval: int = 600,
        stale_multiple: float = 3.0,
    ) -> None:
        super().__init__(
            index,
            users,
            default_interim_interval=default_interim_interval,
            stale_multiple=stale_multiple,
        )
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
            session.calling_station_id = self.shared.share(calling_station_id)
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
