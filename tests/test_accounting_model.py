"""The accounting core against a small reference model (issue 5, DESIGN.md invariant 2).

Hypothesis draws a "truth": sessions on three NASes (two of them behind one configured client,
so they share a ``nas_name``), each a Start, Interim-Updates every Acct-Interim-Interval with
growing 64-bit counters and Acct-Session-Time, and usually a Stop; plus NAS reboots
(Accounting-On/Off) that cut every session the NAS had up at that moment. The state machine then
delivers those packets the way UDP does: in order, reordered (a delayed packet carries an event
time older than packets already seen), duplicated (retransmissions), or never (lost), and lets the
clock run so the stale rule fires.

The reference model never looks at delivery order. It computes each session from the *set* of
packets delivered so far (plus the stale marks the expire timer left):

* start time: the Start's event time, else min(event time - Acct-Session-Time);
* counters and last update: from the delivered packet with the greatest event time;
* closed by Stop if the Stop arrived; else stale if the timer closed it (while the model had it
  online) and nothing newer came since; else closed by the earliest delivered reboot of its NAS
  later than its start (Acct-Session-Time then runs up to the reboot); else online;
* the user id from the User-Name of any delivered packet (some NASes send it in the Start only).

Some sessions are followed by another one under the same Acct-Session-Id on the same NAS (issue
19: NASes restart their session counters at boot): the second is its own session (an
incarnation of the key, with an id of its own), computed from its own packets as above; the
index holds a key's incarnations oldest first (SessionIndex.incarnations), matched with the
model's by order.

Three restrictions on the generated traffic, all things real NASes do not do:
* packets of one NAS never cross one of its reboots (the NAS lost those sessions), and event
  times are integers while reboots happen at half seconds, so "started before the reboot" is
  never a tie;
* the reboots of one NAS are delivered in the order they happened (a NAS does not reboot twice
  within one retransmission window). Delivered out of order, a later Accounting-On would close a
  session first and the earlier one, arriving after it, finds nothing open: the stop time would
  then depend on delivery order;
* an Acct-Session-Id comes back only after its session ended with a Stop or a reboot of its NAS,
  and that packet reaches radtrack (it is never lost) before any packet of the new session. A NAS
  ends a session before it reuses the id; if radtrack missed both the Stop and the
  Accounting-On, a Start of the new session looks like a duplicate of the old, still online, and
  only the stale rule and the next Interim part them (tests/test_accounting.py).

Set RADTRACK_MODEL_EXAMPLES to run more examples (e.g. 20000 for a long run).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from radtrack.accounting import NAS_REBOOT, Accountant
from radtrack.fastpath import FastAccountant
from radtrack.model import (
    SESSION_COLUMNS,
    AccountingRequest,
    ChangeKind,
    CloseReason,
    Session,
    SessionChange,
    StatusType,
    User,
    session_key,
)
from radtrack.store.index import SessionIndex, UserDirectory
from radtrack.store.schema import COUNTER_COLUMNS

DEFAULT_INTERVAL = 60
STALE_MULTIPLE = 3.0


@dataclass(frozen=True)
class Nas:
    key: str
    name: str
    ip: str
    interval: int | None  # Acct-Interim-Interval the NAS sends, None: it sends none


NASES = (
    Nas("edge/10.0.0.1", "edge", "10.0.0.1", 30),
    Nas("edge/10.0.0.2", "edge", "10.0.0.2", None),  # same client (nas_name), another NAS
    Nas("core/10.0.1.1", "core", "10.0.1.1", 45),
)
USER_IDS = {"1001": 1001, "1002": 1002, "alice": 7, None: None}  # "alice" via the users table


@dataclass(frozen=True)
class Packet:
    """One truth packet: ``number`` is unique, ``sid`` is the session key (None for a reboot)."""

    number: int
    sid: str | None
    request: AccountingRequest
    incarnation: int = 0  # 1: the second session under the same key
    after: int | None = None  # the packet delivered first (the end of the previous session)
    kept: bool = False  # never lost (the end of a session whose id comes back)


@dataclass(frozen=True)
class Plan:
    nas: int
    session_id: str
    class_hex: str | None
    user_name: str | None
    user_name_in_start_only: bool  # some NASes send User-Name in the Start only
    connect_info: str | None
    t0: int
    interims: int
    stop_after: int | None  # seconds after the last Interim, None: no Stop
    rate: int
    again: int | None  # seconds after its end that the NAS reuses its Acct-Session-Id


plans = st.builds(
    Plan,
    nas=st.integers(0, len(NASES) - 1),
    session_id=st.sampled_from(["1", "2", "3"]),  # the same Acct-Session-Id on several NASes
    class_hex=st.sampled_from([None, "616263"]),
    user_name=st.sampled_from(list(USER_IDS)),
    user_name_in_start_only=st.booleans(),
    connect_info=st.sampled_from([None, "100Mbps"]),
    t0=st.integers(0, 1500),
    interims=st.integers(0, 4),
    stop_after=st.one_of(st.none(), st.integers(1, 29)),
    rate=st.sampled_from([1, 1000, 2**31 + 7]),  # the last one crosses 32 bits (Gigawords)
    again=st.one_of(st.none(), st.integers(1, 400)),
)
reboot_lists = st.lists(
    st.tuples(
        st.integers(1, 1700), st.sampled_from([StatusType.ACCOUNTING_ON, StatusType.ACCOUNTING_OFF])
    ),
    max_size=2,
    unique_by=lambda r: r[0],
)
scenarios = st.tuples(
    st.lists(plans, max_size=8, unique_by=lambda p: (p.nas, p.session_id, p.class_hex)),
    st.tuples(*(reboot_lists for _ in NASES)),
)


def packet_of(
    plan: Plan, status: StatusType, elapsed: int | None, **extra: object
) -> AccountingRequest:
    """A packet of ``plan``'s session sent ``elapsed`` seconds after its start (with counters
    then, None for the Start)."""
    nas = NASES[plan.nas]
    counters = {}
    if elapsed is not None:
        counters = {
            "session_time": elapsed,
            "input_octets": elapsed * plan.rate,
            "output_octets": elapsed * plan.rate * 3,
            "input_packets": elapsed,
            "output_packets": elapsed * 2,
        }
    return AccountingRequest(
        status,
        nas.key,
        nas.name,
        nas.ip,
        plan.session_id,
        float(plan.t0 + (elapsed or 0)),
        user_name=None
        if plan.user_name_in_start_only and status is not StatusType.START
        else plan.user_name,
        class_hex=plan.class_hex,
        interim_interval=nas.interval,
        **counters,  # type: ignore[arg-type]
        **extra,  # type: ignore[arg-type]
    )


def truth(plan_list: list[Plan], reboots: tuple[list[tuple[int, StatusType]], ...]) -> list[Packet]:
    """Every packet the NASes send for this scenario, in no particular order."""
    packets: list[Packet] = []

    def add(sid: str | None, request: AccountingRequest) -> None:
        packets.append(Packet(len(packets), sid, request))

    for nas, nas_reboots in zip(NASES, reboots, strict=True):
        for at, status in nas_reboots:
            add(None, AccountingRequest(status, nas.key, nas.name, nas.ip, "", at + 0.5))
    # (NAS, time) -> the reboot's packet (two NASes may reboot at the same moment)
    reboot_packets = {(p.request.nas_key, p.request.event_time): p.number for p in packets}
    for first in plan_list:
        nas = NASES[first.nas]
        interval = nas.interval or DEFAULT_INTERVAL
        sid = session_key(nas.key, first.session_id, first.class_hex)
        plan: Plan | None = first
        incarnation, after = 0, None
        while plan is not None:
            cut = min((at + 0.5 for at, _ in reboots[plan.nas] if at + 0.5 > plan.t0), default=None)
            session = [packet_of(plan, StatusType.START, None, connect_info=plan.connect_info)]
            session += [
                packet_of(plan, StatusType.INTERIM_UPDATE, k * interval)
                for k in range(1, plan.interims + 1)
            ]
            if plan.stop_after is not None:
                elapsed = plan.interims * interval + plan.stop_after
                cause = "User-Request" if plan.rate % 2 else "Idle-Timeout"
                session.append(packet_of(plan, StatusType.STOP, elapsed, terminate_cause=cause))
            sent = [r for r in session if cut is None or r.event_time < cut]  # the reboot lost
            ended = cut is not None or sent[-1].status is StatusType.STOP
            again = plan.again is not None and ended and incarnation == 0
            for request in sent:
                packets.append(Packet(len(packets), sid, request, incarnation, after))
            plan = None
            if again:
                assert first.again is not None
                if sent[-1].status is StatusType.STOP:
                    end, after = sent[-1].event_time, packets[-1].number
                else:
                    assert cut is not None
                    end, after = cut, reboot_packets[(nas.key, cut)]
                packets[after] = replace(packets[after], kept=True)
                plan = replace(first, t0=int(end) + first.again)
                incarnation += 1
    return packets


@dataclass(frozen=True)
class Expected:
    nas_key: str
    nas_name: str
    user_id: int | None
    start_time: float
    last_update: float
    stop_time: float | None
    terminate_cause: str | None
    close_reason: str | None
    connect_info_start: str | None
    counters: tuple[int, int, int, int, int]


T = TypeVar("T")


class AccountingModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.users = UserDirectory()
        self.users.upsert(User(7, "alice"))
        self.index = SessionIndex()
        # the fast path the daemon runs, checked against the model; the plain rules beside it
        # get every packet too, and must make the same changes (the differential test of
        # radtrack/fastpath.py on this traffic)
        self.accountant = FastAccountant(
            self.index,
            self.users,
            default_interim_interval=DEFAULT_INTERVAL,
            stale_multiple=STALE_MULTIPLE,
        )
        self.plain_index = SessionIndex()
        self.plain = Accountant(
            self.plain_index,
            self.users,
            default_interim_interval=DEFAULT_INTERVAL,
            stale_multiple=STALE_MULTIPLE,
        )
        self.pending: list[Packet] = []
        self.delivered: dict[int, Packet] = {}
        # (session key, incarnation) -> last update when expire closed it
        self.stale_marks: dict[tuple[str, int], float] = {}
        self.now = 0.0
        self.stored: dict[str, dict[str, object]] = {}  # the rows the writer would have written

    @staticmethod
    def both(
        fast: Callable[[T], list[SessionChange]],
        plain: Callable[[T], list[SessionChange]],
        argument: T,
    ) -> list[SessionChange]:
        """The fast path's changes, once the plain rules made the same ones."""
        changes = fast(argument)
        expected = plain(argument)
        assert [(c.kind, c.counters_only, c.session.row()) for c in changes] == [
            (c.kind, c.counters_only, c.session.row()) for c in expected
        ], "the fast path and the plain rules disagree"
        return changes

    def persist(self, changes: list[SessionChange]) -> None:
        """Apply the effects as the writer does: a whole row, or only the counter columns."""
        for change in changes:
            row = dict(zip(SESSION_COLUMNS, change.session.row(), strict=True))
            if change.counters_only:
                stored = self.stored[change.session.id]  # a first write is always whole
                stored.update((column, row[column]) for column in COUNTER_COLUMNS)
            else:
                self.stored[change.session.id] = row

    # -- the reference model -------------------------------------------------------------
    def expected(self) -> dict[tuple[str, int], Expected]:
        """Each session (key, incarnation) with a delivered packet."""
        by_session: dict[tuple[str, int], list[AccountingRequest]] = {}
        reboots: dict[str, list[AccountingRequest]] = {}
        for packet in self.delivered.values():
            if packet.sid is None:
                reboots.setdefault(packet.request.nas_key, []).append(packet.request)
            else:
                by_session.setdefault((packet.sid, packet.incarnation), []).append(packet.request)
        return {
            sid: self.expect(sid, requests, reboots.get(requests[0].nas_key, []))
            for sid, requests in sorted(by_session.items())
        }

    def live(self) -> dict[tuple[str, int], Session]:
        """The index's sessions matched with the model's: a key's incarnations in order."""
        expected = self.expected()
        matched: dict[tuple[str, int], Session] = {}
        for key in {sid for sid, _ in expected}:
            mine = sorted(i for sid, i in expected if sid == key)
            theirs = self.index.incarnations(key)
            assert len(theirs) == len(mine), (key, mine, [s.start_time for s in theirs])
            matched.update(zip(((key, i) for i in mine), theirs, strict=True))
        return matched

    def expect(
        self,
        sid: tuple[str, int],
        requests: list[AccountingRequest],
        reboots: list[AccountingRequest],
    ) -> Expected:
        first = requests[0]
        starts = [r for r in requests if r.status is StatusType.START]
        stops = [r for r in requests if r.status is StatusType.STOP]
        if starts:
            start_time = starts[0].event_time
        else:
            start_time = min(r.event_time - (r.session_time or 0) for r in requests)
        last_update = max(r.event_time for r in requests)
        with_counters = [r for r in requests if r.status is not StatusType.START]
        latest = max(with_counters, key=lambda r: r.event_time, default=None)
        counters = (0, 0, 0, 0, 0)
        if latest is not None:
            counters = (
                latest.input_octets or 0,
                latest.output_octets or 0,
                latest.input_packets or 0,
                latest.output_packets or 0,
                latest.session_time or 0,
            )
        reboot = min(
            (r for r in reboots if r.event_time > start_time),
            key=lambda r: r.event_time,
            default=None,
        )
        stop_time = cause = reason = None
        if stops:
            stop_time, cause, reason = stops[0].event_time, stops[0].terminate_cause, "stop"
        elif self.stale_marks.get(sid) == last_update:
            stop_time, reason = last_update, "stale"
        elif reboot is not None:
            stop_time, cause = reboot.event_time, NAS_REBOOT
            reason = (
                CloseReason.ACCOUNTING_ON
                if reboot.status is StatusType.ACCOUNTING_ON
                else CloseReason.ACCOUNTING_OFF
            )
            # the session ran until the reboot, though no packet said so
            counters = (*counters[:4], max(counters[4], int(reboot.event_time - start_time)))
        return Expected(
            nas_key=first.nas_key,
            nas_name=first.nas_name,
            user_id=USER_IDS[max((r.user_name for r in requests if r.user_name), default=None)],
            start_time=start_time,
            last_update=last_update,
            stop_time=stop_time,
            terminate_cause=cause,
            close_reason=reason,
            connect_info_start=starts[0].connect_info if starts else None,
            counters=counters,
        )

    # -- delivery ------------------------------------------------------------------------
    @initialize(scenario=scenarios)
    def draw_truth(
        self, scenario: tuple[list[Plan], tuple[list[tuple[int, StatusType]], ...]]
    ) -> None:
        self.pending = truth(*scenario)

    def take(self, packet: Packet) -> Packet:
        """The packet to deliver when ``packet`` is picked, taken out of ``pending``: the end
        of the previous session under its id goes first, and so does an earlier reboot of the
        same NAS (see the module docstring)."""
        while packet.after is not None and packet.after not in self.delivered:
            packet = next(p for p in self.pending if p.number == packet.after)
        if packet.sid is None:
            earlier = [
                p
                for p in self.pending
                if p.sid is None
                and p.request.nas_key == packet.request.nas_key
                and p.request.event_time < packet.request.event_time
            ]
            if earlier:
                packet = min(earlier, key=lambda p: p.request.event_time)
        self.pending.remove(packet)
        self.delivered[packet.number] = packet
        self.now = max(self.now, packet.request.event_time)
        return packet

    def deliver(self, packet: Packet) -> None:
        packet = self.take(packet)
        changes = self.both(self.accountant.handle, self.plain.handle, packet.request)
        self.persist(changes)
        for change in changes:
            if change.kind is ChangeKind.STARTED:
                assert change.session.online
            elif change.kind is ChangeKind.STOPPED:
                assert not change.session.online

    @precondition(lambda self: self.pending)
    @rule()
    def deliver_next(self) -> None:
        self.deliver(min(self.pending, key=lambda p: (p.request.event_time, p.number)))

    @precondition(lambda self: self.pending)
    @rule(pick=st.integers(0, 1000))
    def deliver_out_of_order(self, pick: int) -> None:
        self.deliver(self.pending[pick % len(self.pending)])

    @precondition(lambda self: self.delivered)
    @rule(pick=st.integers(0, 1000))
    def retransmit(self, pick: int) -> None:
        packets = sorted(self.delivered)
        packet = self.delivered[packets[pick % len(packets)]]
        # nothing new: no change
        assert self.both(self.accountant.handle, self.plain.handle, packet.request) == []

    @precondition(lambda self: self.pending)
    @rule(pick=st.integers(0, 1000))
    def lose(self, pick: int) -> None:
        if not self.pending[pick % len(self.pending)].kept:
            del self.pending[pick % len(self.pending)]

    @rule(seconds=st.integers(0, 400))
    def expire(self, seconds: int) -> None:
        self.now += seconds
        for sid, want in self.expected().items():
            if want.stop_time is None:
                nas = next(n for n in NASES if n.key == want.nas_key)
                limit = (nas.interval or DEFAULT_INTERVAL) * STALE_MULTIPLE
                if want.last_update + limit <= self.now:
                    self.stale_marks[sid] = want.last_update
        changes = self.both(self.accountant.expire, self.plain.expire, self.now)
        self.persist(changes)
        for change in changes:
            assert change.session.close_reason == "stale"

    # -- invariants ----------------------------------------------------------------------
    @invariant()
    def the_fast_path_holds_what_the_plain_rules_hold(self) -> None:
        assert sorted(s.row() for s in self.index) == sorted(s.row() for s in self.plain_index)
        assert self.index.per_nas == self.plain_index.per_nas

    @invariant()
    def openings_and_closings_add_up(self) -> None:
        # the counts the dashboard's plots and the metrics read: every opening and closing
        for accountant, index in ((self.accountant, self.index), (self.plain, self.plain_index)):
            assert accountant.sessions_opened - accountant.sessions_closed == len(index)

    @invariant()
    def sessions_match_the_model(self) -> None:
        expected = self.expected()
        live = self.live()
        online = {live[sid].id for sid, want in expected.items() if want.stop_time is None}
        assert {s.id for s in self.index} == online
        assert len({s.id for s in live.values()}) == len(live)  # each its own id
        for sid, want in expected.items():
            session = live[sid]
            assert self.index.find(session.id) is session
            if sid[1] == 0 and (sid[0], 1) not in expected:
                assert session.id == sid[0]  # the only session of a key: the key is its id
            got = Expected(
                nas_key=session.nas_key,
                nas_name=session.nas_name,
                user_id=session.user_id,
                start_time=session.start_time,
                last_update=session.last_update,
                stop_time=session.stop_time,
                terminate_cause=session.terminate_cause,
                close_reason=session.close_reason,
                connect_info_start=session.connect_info_start,
                counters=(
                    session.input_octets,
                    session.output_octets,
                    session.input_packets,
                    session.output_packets,
                    session.session_time,
                ),
            )
            assert got == want, sid

    @invariant()
    def effects_rebuild_the_state(self) -> None:
        # DESIGN.md invariant 3: what the writer stores from the effects is the live state
        for sid, stored in self.stored.items():
            session = self.index.find(sid)
            assert session is not None
            assert stored == dict(zip(SESSION_COLUMNS, session.row(), strict=True)), sid
        assert set(self.stored) == {s.id for s in self.live().values()}

    @invariant()
    def index_views_match_the_model(self) -> None:
        expected = self.expected()
        live = self.live()
        online = {live[sid].id: want for sid, want in expected.items() if want.stop_time is None}
        assert self.index.per_nas == Counter(want.nas_name for want in online.values())
        for user_id in (1001, 1002, 7):
            mine = sorted(
                (want.start_time, sid) for sid, want in online.items() if want.user_id == user_id
            )
            assert [s.id for s in self.index.for_user(user_id)] == [sid for _, sid in mine]
            assert self.index.count_for_user(user_id) == len(mine)


AccountingModel.TestCase.settings = settings(
    max_examples=int(os.environ.get("RADTRACK_MODEL_EXAMPLES", "200")),
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestAccountingModel = AccountingModel.TestCase
