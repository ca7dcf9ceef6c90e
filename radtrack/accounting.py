"""The accounting core: a sans-IO state machine over the live session index.

``Accountant.handle(request)`` applies one AccountingRequest and returns the SessionChanges it
caused; ``expire(now)`` closes stale sessions. No asyncio, no I/O, no clock: the caller passes
time in and carries the effects out (persist, answer, notify).

Every rule is idempotent and tolerant of order (DESIGN.md invariant 2): a retransmission, a
duplicate Start, an Interim or Stop without a Start, or packets out of order end in the same
state as the clean sequence.
"""

from __future__ import annotations

import heapq

from radtrack.index import SessionIndex, UserDirectory
from radtrack.model import (
    AccountingRequest,
    ChangeKind,
    CloseReason,
    Session,
    SessionChange,
    StatusType,
    session_key,
)

# Acct-Terminate-Cause recorded for sessions closed by Accounting-On/Off (as FreeRADIUS does)
NAS_REBOOT = "NAS-Reboot"


class Accountant:
    """Owns the writes to a SessionIndex.

    ``default_interim_interval`` and ``stale_multiple`` set the stale rule: a session with no
    update for ``stale_multiple`` x its Acct-Interim-Interval (or the default when the NAS sends
    none) is closed with close_reason "stale".
    """

    def __init__(
        self,
        index: SessionIndex,
        users: UserDirectory,
        *,
        default_interim_interval: int = 600,
        stale_multiple: float = 3.0,
    ) -> None:
        self.index = index
        self.users = users
        self.default_interim_interval = default_interim_interval
        self.stale_multiple = stale_multiple
        self._deadlines: list[tuple[float, str]] = []

    # -- packets ---------------------------------------------------------------------------
    def handle(self, request: AccountingRequest) -> list[SessionChange]:
        status = request.status
        if status is StatusType.INTERIM_UPDATE:
            return self._interim(request)
        if status is StatusType.START:
            return self._start(request)
        if status is StatusType.STOP:
            return self._stop(request)
        return self._nas_restart(request)

    def _lookup(self, request: AccountingRequest) -> tuple[str, Session | None]:
        sid = session_key(request.nas_key, request.session_id, request.class_hex)
        return sid, self.index.find(sid)

    def _new(self, sid: str, request: AccountingRequest, start_time: float) -> Session:
        session = Session(
            sid,
            request.nas_key,
            request.nas_name,
            request.nas_ip,
            request.session_id,
            start_time,
            request.event_time,
            class_hex=request.class_hex,
            user_name=request.user_name,
            user_id=self.users.resolve(request.user_name, request.class_hex),
        )
        _merge_attributes(session, request)
        _take_counters(session, request)
        return session

    def _start(self, request: AccountingRequest) -> list[SessionChange]:
        # RFC 2866 §5.1: Start marks the beginning of the user's service
        sid, session = self._lookup(request)
        if session is None:
            session = self._new(sid, request, request.event_time)
            session.start_seen = True
            session.connect_info_start = request.connect_info
            self._open(session)
            return [SessionChange(ChangeKind.STARTED, session)]
        if session.start_seen:
            return []  # a duplicate Start: nothing new
        # the Start arrives after an Interim or a Stop of the same session: it knows the start
        session.start_seen = True
        session.start_time = request.event_time
        session.connect_info_start = request.connect_info
        _merge_attributes(session, request)
        return [SessionChange(ChangeKind.UPDATED, session)]  # never reopens a closed session

    def _interim(self, request: AccountingRequest) -> list[SessionChange]:
        # RFC 2869 §2.1 / RFC 2866 §5.1: Interim-Update carries the running counters
        sid, session = self._lookup(request)
        if session is None:
            # the Start was lost: open the session from what the Interim knows
            session = self._new(sid, request, _start_from(request))
            self._open(session)
            return [SessionChange(ChangeKind.STARTED, session)]
        if not _is_newer(session, request):
            return []  # a late or duplicate Interim: keep the newer counters
        if not session.online:
            if session.close_reason != CloseReason.STALE:
                return []  # an Interim after the Stop (or a NAS reboot) does not reopen it
            # closed as stale, yet the NAS reports it alive: it was online all along
            session.stop_time = None
            session.close_reason = None
            session.last_update = request.event_time
            _merge_attributes(session, request)
            _take_counters(session, request)
            self._open(session)
            return [SessionChange(ChangeKind.STARTED, session)]
        session.last_update = request.event_time
        _merge_attributes(session, request)
        _take_counters(session, request)
        return [SessionChange(ChangeKind.UPDATED, session, counters_only=True)]

    def _stop(self, request: AccountingRequest) -> list[SessionChange]:
        # RFC 2866 §5.1: Stop ends the session and carries the final counters and cause
        sid, session = self._lookup(request)
        if session is None:
            # the Start (and every Interim) was lost: record the closed session all the same
            session = self._new(sid, request, _start_from(request))
            self._finish(session, request)
            self.index.remember_closed(session)
            return [SessionChange(ChangeKind.STOPPED, session)]
        if not session.online:
            if session.close_reason == CloseReason.STOP:
                return []  # a duplicate Stop
            # closed by the stale rule or a NAS reboot before its Stop came: the Stop knows better
            self._finish(session, request)
            return [SessionChange(ChangeKind.UPDATED, session)]
        self._finish(session, request)
        self.index.close(session)
        return [SessionChange(ChangeKind.STOPPED, session)]

    def _finish(self, session: Session, request: AccountingRequest) -> None:
        session.stop_time = request.event_time
        session.last_update = max(session.last_update, request.event_time)
        session.terminate_cause = request.terminate_cause
        session.close_reason = CloseReason.STOP
        _merge_attributes(session, request)
        _take_counters(session, request)

    def _nas_restart(self, request: AccountingRequest) -> list[SessionChange]:
        # RFC 2866 §5.1 Accounting-On/Off: the NAS (re)started or stops, so every session it had
        # open before that moment is over
        reason = (
            CloseReason.ACCOUNTING_ON
            if request.status is StatusType.ACCOUNTING_ON
            else CloseReason.ACCOUNTING_OFF
        )
        changes = []
        for session in self.index.online_of_nas(request.nas_key):
            if session.start_time >= request.event_time:
                continue  # started after the reboot: not affected
            session.stop_time = request.event_time
            session.terminate_cause = NAS_REBOOT
            session.close_reason = reason
            session.session_time = max(
                session.session_time, int(request.event_time - session.start_time)
            )
            self.index.close(session)
            changes.append(SessionChange(ChangeKind.STOPPED, session))
        return changes

    def _open(self, session: Session) -> None:
        self.index.add_online(session)
        heapq.heappush(self._deadlines, (self._deadline(session), session.id))

    # -- recovery and timers -------------------------------------------------------------------
    def restore(self, session: Session) -> None:
        """Put a session loaded from the database back into the live state (start-up)."""
        if session.online:
            self._open(session)
        else:
            self.index.remember_closed(session)

    def _deadline(self, session: Session) -> float:
        interval = session.interim_interval or self.default_interim_interval
        return session.last_update + interval * self.stale_multiple

    def next_deadline(self) -> float | None:
        return self._deadlines[0][0] if self._deadlines else None

    def expire(self, now: float, limit: int = 10_000) -> list[SessionChange]:
        """Close sessions with no update for longer than the stale limit; at most ``limit``
        per call so a long backlog never stalls the event loop."""
        changes: list[SessionChange] = []
        heap = self._deadlines
        while heap and heap[0][0] <= now and len(changes) < limit:
            _, sid = heapq.heappop(heap)
            session = self.index.get(sid)
            if session is None:
                continue  # closed meanwhile
            deadline = self._deadline(session)
            if deadline > now:
                heapq.heappush(heap, (deadline, sid))  # updated since: check again later
                continue
            session.stop_time = session.last_update  # the last moment it was known to be alive
            session.close_reason = CloseReason.STALE
            self.index.close(session)
            changes.append(SessionChange(ChangeKind.STOPPED, session))
        return changes


def _start_from(request: AccountingRequest) -> float:
    # RFC 2866 §5.7: Acct-Session-Time is how long the user has received service
    return request.event_time - (request.session_time or 0)


def _is_newer(session: Session, request: AccountingRequest) -> bool:
    if request.event_time != session.last_update:
        return request.event_time > session.last_update
    return (request.session_time or 0) > session.session_time


def _merge_attributes(session: Session, request: AccountingRequest) -> None:
    """Attributes known later (a Framed-IP-Address assigned after the Start...) fill the record."""
    if request.user_name is not None and session.user_name is None:
        session.user_name = request.user_name
    if request.nas_port_id is not None:
        session.nas_port_id = request.nas_port_id
    if request.nas_port_type is not None:
        session.nas_port_type = request.nas_port_type
    if request.calling_station_id is not None:
        session.calling_station_id = request.calling_station_id
    if request.called_station_id is not None:
        session.called_station_id = request.called_station_id
    if request.framed_ip is not None:
        session.framed_ip = request.framed_ip
    if request.interim_interval:
        session.interim_interval = request.interim_interval


def _take_counters(session: Session, request: AccountingRequest) -> None:
    if request.session_time is not None:
        session.session_time = request.session_time
    if request.input_octets is not None:
        session.input_octets = request.input_octets
    if request.output_octets is not None:
        session.output_octets = request.output_octets
    if request.input_packets is not None:
        session.input_packets = request.input_packets
    if request.output_packets is not None:
        session.output_packets = request.output_packets
