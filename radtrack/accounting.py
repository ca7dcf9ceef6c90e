"""The accounting core: a sans-IO state machine over the live session index.

``Accountant.handle(request)`` applies one AccountingRequest and returns the SessionChanges it
caused; ``expire(now)`` closes stale sessions. No asyncio, no I/O, no clock: the caller passes
time in and carries the effects out (persist, answer, notify).

Every rule is idempotent and tolerant of order (DESIGN.md invariant 2): a retransmission, a
duplicate Start, an Interim or Stop without a Start, or packets out of order end in the same
state as the clean sequence.
"""

# long: the accounting rules read top to bottom in one place (the fast path is radtrack/fastpath)

from __future__ import annotations

import bisect

from radtrack.model import (
    KEY_LENGTH,
    AccountingRequest,
    ChangeKind,
    CloseReason,
    Session,
    SessionChange,
    StatusType,
    incarnation_id,
    session_key,
)
from radtrack.shared import SharedValues
from radtrack.store.index import SessionIndex, UserDirectory

_INTERIM_UPDATE, _START, _STOP = StatusType.INTERIM_UPDATE, StatusType.START, StatusType.STOP

# Acct-Terminate-Cause recorded for sessions closed by Accounting-On/Off (as FreeRADIUS does)
NAS_REBOOT = "NAS-Reboot"
# Accounting-On/Off remembered per NAS, so that late packets of a session the reboot ended
# do not reopen it (DESIGN.md invariant 2); reboots are rare, the last few are enough
REBOOTS_KEPT = 8

# Acct-Session-Id reuse (see Accountant._place). Where radtrack only guessed a session's end (the
# stale rule: its last update), a packet is of a later session only by a margin: a Start sent
# again without Event-Timestamp is dated arrival minus whole seconds of Acct-Delay-Time (RFC 2866
# §5.2), so two copies differ by up to a second; an Interim's Acct-Session-Time may disagree with
# its event time by seconds (the NAS counts from the link coming up).
START_JITTER = 1.0
SESSION_TIME_SKEW = 60


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
        self._scan: list[Session] = []  # the pass of expire() under way
        self._scan_at = 0
        self._reboots: dict[str, list[tuple[float, CloseReason]]] = {}  # nas_key -> sorted
        # a decoded packet's strings are its own; a session keeps shared ones instead (memory:
        # docs/performance.md), and an Interim's equal value leaves the session's in place.
        # 2 MiB: 65,536 Calling-Station-Ids and 4,000 NAS-Port-Ids over 1,000,000 sessions
        # (bench/memory.py) are then ~80 % shared, ~60 bytes a session less than none
        self.shared: SharedValues[str] = SharedValues(1 << 18)
        # start times, whole seconds from Event-Timestamp mostly: their hash is their value,
        # so a second's sessions share one float and 1 MiB covers 36 hours without a
        # collision (32 bytes a session, less what a second's sessions share)
        self.start_times: SharedValues[float] = SharedValues(1 << 17)
        # sessions this node's packets and timers brought online and took offline (a Start, an
        # Interim of a session not seen before; a Stop, a NAS reboot, the stale rule); not the
        # ones restored at start-up or applied from other nodes (metrics, radtrack/trend.py)
        self.sessions_opened = 0
        self.sessions_closed = 0

    # -- packets ---------------------------------------------------------------------------
    def handle(self, request: AccountingRequest) -> list[SessionChange]:
        """Apply one request; the SessionChanges it caused (none: nothing new, e.g. a
        duplicate). The daemon runs fastpath.FastAccountant, which gives the same."""
        status = request.status
        if status is _INTERIM_UPDATE:
            key = session_key(request.nas_key, request.session_id, request.class_hex)
            session = self.index.find(key)
            if session is not None and session.stop_time is None:
                return self._update(session, request)  # 80 % of all packets
            changes = self._interim(request, key, self._place(key, request))
        elif status is _START:
            changes = self._start(request)
        elif status is _STOP:
            changes = self._stop(request)
        else:
            return self._nas_restart(request)
        seen = request.received_at or request.event_time
        for change in changes:
            session = change.session
            # never backwards: a late Start (older event time) is no news of the session; an
            # equal time keeps its object, often last_update's (a float less: 32 bytes)
            last_seen = session.last_seen
            if seen > last_seen or (seen < last_seen and change.kind is ChangeKind.STARTED):
                session.last_seen = seen
        return changes

    def _update(self, session: Session, request: AccountingRequest) -> list[SessionChange]:
        """An Interim-Update of an online session: its running counters (RFC 2869 §2.1)."""
        if request.event_time < session.last_update:
            return self._late(session, request)
        if not _is_newer(session, request):
            return []  # a duplicate Interim
        session.last_update = request.event_time
        learned_user = self._merge(session, request)
        _take_counters(session, request)
        session.last_seen = max(session.last_seen, request.received_at or request.event_time)
        # only counter columns changed, unless the User-Name came now: then the whole row
        return [SessionChange(ChangeKind.UPDATED, session, not learned_user)]

    def _late(self, session: Session, request: AccountingRequest) -> list[SessionChange]:
        """An Interim older than what an online session knows: late news of it (nothing to do),
        or of an earlier session the NAS has reused its Acct-Session-Id after."""
        if not self.index.lineages and not self._reboots:
            return []  # no key has two sessions, nor can it have: the common case, no hashing
        key = session_key(request.nas_key, request.session_id, request.class_hex)
        found = self._place(key, request)
        if found is session:
            return []
        return self._interim(request, key, found)

    # -- Acct-Session-Id reuse -------------------------------------------------------------
    # RFC 2866 §5.5: Acct-Session-Id is unique to a session only "over the reboots" while a NAS
    # keeps its counter; many restart it at boot (MikroTik, accel-ppp, BRASes), so one key
    # (NAS, Acct-Session-Id, Class) can name several sessions, one after another. Like
    # FreeRADIUS's acct_unique with Acct-Session-Start-Time folded in (and Cisco ISE, which opens
    # a new session for a Start of an id it has closed), each gets its own id: the first keeps
    # the key (model.incarnation_id). A packet belongs to the incarnation whose span holds its
    # start: a Start's event time, an Interim's or Stop's implied start (event time minus
    # Acct-Session-Time, RFC 2866 §5.7); incarnation i spans (end of i-1, end of i]. So a Start
    # after a Stop, or after an Accounting-On/Off of the NAS (RFC 2866 §5.1: it ends every
    # session it had open), is a new session; a late Interim or Stop of the old one still finds
    # the old one (never reopening it), and a retransmitted old Start is a duplicate. An Interim
    # or Stop whose implied start is after the end is of a new session too, whose Start was lost:
    # the old session cannot have sent it (its packets all start at its own start), and opening
    # it keeps a real user visible, where attaching it to the old one would lose that user.
    # Without Acct-Session-Time there is no implied start: such a packet stays with the current
    # incarnation (as before). An online session has no end yet: its packets all go to it (a
    # Start of a reused id reaches a session still online only if the NAS's Stop and
    # Accounting-On were both lost; the stale rule then closes it, and the next Interim is
    # after that end).
    def _place(self, key: str, request: AccountingRequest) -> Session | None:
        """The incarnation of ``key`` that ``request`` is a packet of, or None for one not
        known yet: after every known one (or the key is new), or before the first (a packet
        from before a reboot that preceded the first known one, or an older Stop)."""
        index = self.index
        if not index.lineages and not self._reboots:
            # no key has two sessions and no NAS rebooted (most of the time): the loop below,
            # written out for the Start and Stop of an online session or of a new key
            session = index.find(key)
            if session is None:
                return None
            if session.stop_time is None:  # online: no end to be after, no reboot before it
                if request.status is not _STOP or not self._is_before(session, request):
                    return session
                return None
        incarnations = index.incarnations(key)
        for session in incarnations:
            if not self._is_after(session, request):
                if session is incarnations[0] and self._is_before(session, request):
                    return None
                return session
        return None

    def _is_after(self, session: Session, request: AccountingRequest) -> bool:
        """Is ``request`` of a session that started after ``session`` ended?"""
        if request.status is _START:
            at, slack = request.event_time, START_JITTER
        elif request.session_time is None:
            return False  # no implied start: no evidence of another session
        else:
            at, slack = request.event_time - request.session_time, SESSION_TIME_SKEW
        reboot = self._reboot_after(session)
        if reboot is not None and reboot[0] <= at:
            return True  # the NAS rebooted in between (a session starting then is after it)
        reason = session.close_reason
        if reason is None:
            return False  # online: no end yet
        stop_time = session.stop_time
        assert stop_time is not None
        if reason == CloseReason.STOP:
            return at > stop_time  # the NAS said when it ended
        if reason == CloseReason.STALE:
            return at - stop_time > slack  # the end is radtrack's guess: its last update
        return at >= stop_time  # Accounting-On/Off no longer remembered: its stop time is it

    def _is_before(self, session: Session, request: AccountingRequest) -> bool:
        """Is ``request`` of a session that ended before ``session`` started: a reboot of the
        NAS in between, or a Stop dated before the Start of ``session``?"""
        at = request.event_time - (request.session_time or 0)
        for reboot_at, _ in self._reboots.get(session.nas_key, ()):
            if at < reboot_at <= session.start_time:
                return True
        if request.status is not _STOP:
            return False
        slack = START_JITTER if session.start_seen else SESSION_TIME_SKEW
        return request.event_time < session.start_time - slack

    def _new_incarnation(self, key: str, request: AccountingRequest, start_time: float) -> Session:
        """A session of ``key`` first seen now (by ``request``, its Start or not): the key's
        first (its id is the key) or one more (filed among its incarnations)."""
        index = self.index
        if index.find(key) is None and key not in index.lineages:
            return self._new(key, request, start_time)  # the key's first: the key is its id
        session = self._new(incarnation_id(key, start_time), request, start_time)
        self.index.add_incarnation(session)
        return session

    def _new(self, sid: str, request: AccountingRequest, start_time: float) -> Session:
        start_time = self.start_times.share(start_time)
        last_update = start_time if request.event_time == start_time else request.event_time
        session = Session(
            sid,
            request.nas_key,
            request.nas_name,
            request.nas_ip,
            request.session_id,
            start_time,
            last_update,
            class_hex=request.class_hex,
            user_name=request.user_name,
            user_id=self.users.resolve(request.user_name, request.class_hex),  # add_online shares
            connect_info_start=request.connect_info if request.status is _START else None,
            start_seen=request.status is _START,
        )
        self._merge_attributes(session, request)
        _take_counters(session, request)
        return session

    def _merge_attributes(self, session: Session, request: AccountingRequest) -> None:
        """Attributes known later (a Framed-IP-Address assigned after the Start...) fill the
        record; the strings that repeat across sessions are shared, an equal value stays."""
        if request.user_name is not None and session.user_name is None:
            session.user_name = request.user_name
        value = request.nas_port_id
        if value is not None and value != session.nas_port_id:
            session.nas_port_id = self.shared.share(value)
        if request.nas_port_type is not None:
            session.nas_port_type = request.nas_port_type
        value = request.calling_station_id  # per device, or per NAT address
        if value is not None and value != session.calling_station_id:
            session.calling_station_id = self.shared.share(value)
        value = request.called_station_id
        if value is not None and value != session.called_station_id:
            session.called_station_id = self.shared.share(value)
        value = request.framed_ip
        if value is not None and value != session.framed_ip:
            session.framed_ip = value
        if request.interim_interval:
            session.interim_interval = request.interim_interval

    def _merge(self, session: Session, request: AccountingRequest) -> bool:
        """Fill in what ``request`` knows; True when it brought the session's User-Name."""
        had_user_name = session.user_name is not None
        self._merge_attributes(session, request)
        if had_user_name or session.user_name is None:
            return False
        # the first packet had no User-Name: map the user now, as if it had
        self.index.set_user(session, self.users.resolve(session.user_name, session.class_hex))
        return True

    def _start(self, request: AccountingRequest) -> list[SessionChange]:
        # RFC 2866 §5.1: Start marks the beginning of the user's service
        key = session_key(request.nas_key, request.session_id, request.class_hex)
        session = self._place(key, request)
        if session is None:
            session = self._new_incarnation(key, request, request.event_time)
            return self._open_unless_rebooted(session)
        if session.start_seen:
            return []  # a duplicate Start: nothing new
        if request.event_time < session.start_time - SESSION_TIME_SKEW:
            return []  # long before the start its packets imply: an earlier session's
        # the Start arrives after an Interim or a Stop of the same session: it knows the start
        session.start_arrived(request.connect_info)
        session.start_time = request.event_time
        self._merge(session, request)
        return [SessionChange(ChangeKind.UPDATED, session)]  # never reopens a closed session

    def _interim(
        self, request: AccountingRequest, key: str, session: Session | None
    ) -> list[SessionChange]:
        # RFC 2869 §2.1 / RFC 2866 §5.1: Interim-Update carries the running counters
        if session is None:
            # the Start was lost: open the session from what the Interim knows
            session = self._new_incarnation(key, request, _start_from(request))
            return self._open_unless_rebooted(session)
        if session.stop_time is None:
            return self._update(session, request)
        if not _is_newer(session, request):
            return []  # a late or duplicate Interim: keep the newer counters
        if session.close_reason == CloseReason.STOP:
            return []  # an Interim after the Stop does not reopen it
        reboot = self._reboot_after(session)
        current = self.index.incarnations(key)[-1] is session
        if session.close_reason != CloseReason.STALE or reboot is not None or not current:
            # a NAS reboot ended it, and this Interim, sent before the reboot, arrives late:
            # it brings newer counters but does not reopen the session
            session_time = session.session_time
            session.last_update = request.event_time
            self._merge(session, request)
            _take_counters(session, request)
            if reboot is not None:
                self._close_by_reboot(session, reboot)
            elif session.close_reason == CloseReason.STALE:
                # a newer session took its id: it was alive until this update, then ended
                session.stop_time = session.last_update
            else:  # the reboot that closed it is no longer remembered (restarted since)
                session.session_time = max(session.session_time, session_time)
            return [SessionChange(ChangeKind.UPDATED, session)]
        # closed as stale, yet the NAS reports it alive: it was online all along
        session.stop_time = None
        session.close_reason = None
        session.last_update = request.event_time
        self._merge(session, request)
        _take_counters(session, request)
        self._open(session)
        return [SessionChange(ChangeKind.STARTED, session)]

    def _stop(self, request: AccountingRequest) -> list[SessionChange]:
        # RFC 2866 §5.1: Stop ends the session and carries the final counters and cause
        key = session_key(request.nas_key, request.session_id, request.class_hex)
        session = self._place(key, request)
        if session is None:
            # the Start (and every Interim) was lost: record the closed session all the same
            session = self._new_incarnation(key, request, _start_from(request))
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
        self._close(session)
        return [SessionChange(ChangeKind.STOPPED, session)]

    def _forget_recent(self, session: Session) -> None:
        """A session is no longer online (fastpath.FastAccountant's table forgets it)."""

    def _finish(self, session: Session, request: AccountingRequest) -> None:
        session.stop_time = request.event_time
        session.last_update = max(session.last_update, request.event_time)
        session.set_ending(CloseReason.STOP, request.terminate_cause)
        self._merge(session, request)
        _take_counters(session, request)

    def _nas_restart(self, request: AccountingRequest) -> list[SessionChange]:
        # RFC 2866 §5.1 Accounting-On/Off: the NAS (re)started or stops, so every session it had
        # open before that moment is over
        reason = (
            CloseReason.ACCOUNTING_ON
            if request.status is StatusType.ACCOUNTING_ON
            else CloseReason.ACCOUNTING_OFF
        )
        self._remember_reboot(request.nas_key, (request.event_time, reason))
        changes = []
        for session in self.index.online_of_nas(request.nas_key):
            if session.start_time >= request.event_time:
                continue  # started after the reboot: not affected
            self._close_by_reboot(session, (request.event_time, reason))
            self._close(session)
            changes.append(SessionChange(ChangeKind.STOPPED, session))
        return changes

    def _remember_reboot(self, nas_key: str, reboot: tuple[float, CloseReason]) -> None:
        reboots = self._reboots.setdefault(nas_key, [])
        if all(at != reboot[0] for at, _ in reboots):
            bisect.insort(reboots, reboot)
            del reboots[:-REBOOTS_KEPT]

    def _reboot_after(self, session: Session) -> tuple[float, CloseReason] | None:
        """The first reboot of the session's NAS after its start, if one is known."""
        for reboot in self._reboots.get(session.nas_key, ()):
            if reboot[0] > session.start_time:
                return reboot
        return None

    def _close_by_reboot(self, session: Session, reboot: tuple[float, CloseReason]) -> None:
        at, reason = reboot
        session.stop_time = at
        session.set_ending(reason, NAS_REBOOT)
        session.session_time = max(session.session_time, int(at - session.start_time))

    def _open_unless_rebooted(self, session: Session) -> list[SessionChange]:
        """Open a session first seen now, unless its NAS already said it rebooted since the
        start: then the packets of that session were late, and it is recorded closed."""
        reboot = self._reboot_after(session)
        if reboot is None:
            self._open(session)
            return [SessionChange(ChangeKind.STARTED, session)]
        self._close_by_reboot(session, reboot)
        self.index.remember_closed(session)
        return [SessionChange(ChangeKind.STOPPED, session)]

    def _open(self, session: Session) -> None:
        self.index.add_online(session)
        self.sessions_opened += 1

    def _close(self, session: Session) -> None:
        """An online session (given its stop time) goes offline."""
        self.index.close(session)
        self._forget_recent(session)
        self.sessions_closed += 1

    # -- recovery and timers -------------------------------------------------------------------
    def restore(self, session: Session, now: float | None = None) -> None:
        """Put a session loaded from the database back into the live state (start-up). With
        ``now``, an open session counts as seen then: the stale rule gives it a full interval
        to report, however long radtrack was down."""
        if now is not None:
            session.last_seen = now
        if session.stop_time is None:  # online (a million calls at start-up: no property)
            self.index.add_online(session)
        else:
            self.index.remember_closed(session)
            if session.close_reason in (CloseReason.ACCOUNTING_ON, CloseReason.ACCOUNTING_OFF):
                # its stop time is a reboot of its NAS: late packets must not reopen sessions
                at = session.stop_time or session.last_update
                self._remember_reboot(session.nas_key, (at, CloseReason(session.close_reason)))
        if len(session.id) != KEY_LENGTH or session.id in self.index.lineages:
            self.index.add_incarnation(session)  # one of several sessions of its key (reused)

    def reload(self, session_id: str, stored: Session | None, now: float) -> None:
        """Put one session back to what the store holds (``stored``, None: nothing): the
        store rejected a row of it, so memory must not keep a state no restart would rebuild
        (DESIGN.md invariant 3)."""
        current = self.index.find(session_id)
        if current is not None:
            self.index.forget(current)
            self._forget_recent(current)
        if stored is not None:
            self.restore(stored, now)

    def _deadline(self, session: Session) -> float:
        interval = session.interim_interval or self.default_interim_interval
        return session.last_seen + interval * self.stale_multiple

    def expire(
        self, now: float, limit: int = 10_000, budget: int | None = None
    ) -> list[SessionChange]:
        """Close sessions with no update for longer than the stale limit, at most ``limit``.

        Without ``budget`` every online session is checked. With it, at most ``budget`` are,
        continuing where the previous call stopped: the daemon spreads one pass over the
        stale-check interval, so a million sessions never stall the event loop (and no
        per-session timer costs memory).
        """
        if budget is None:
            candidates = list(self.index)
        else:
            if self._scan_at >= len(self._scan):
                self._scan = list(self.index)  # a new pass over a snapshot
                self._scan_at = 0
            candidates = self._scan[self._scan_at : self._scan_at + budget]
            self._scan_at += len(candidates)
        changes: list[SessionChange] = []
        for session in candidates:
            if len(changes) >= limit:
                break
            if not session.online or self._deadline(session) > now:
                continue
            session.stop_time = session.last_update  # the last moment it was known to be alive
            session.close_reason = CloseReason.STALE
            self._close(session)
            changes.append(SessionChange(ChangeKind.STOPPED, session))
        if budget is None or self._scan_at >= len(self._scan):
            self._scan = []  # release the snapshot between passes
            self._scan_at = 0
        return changes


def _start_from(request: AccountingRequest) -> float:
    # RFC 2866 §5.7: Acct-Session-Time is how long the user has received service
    return request.event_time - (request.session_time or 0)


def _is_newer(session: Session, request: AccountingRequest) -> bool:
    if request.event_time != session.last_update:
        return request.event_time > session.last_update
    return (request.session_time or 0) > session.session_time


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
