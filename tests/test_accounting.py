"""The accounting core, one rule at a time (issue 2, RFC 2866 / RFC 2869), and the live index.

Pure tests: requests are built as AccountingRequest records, the clock is an argument.
tests/test_accounting_model.py checks the same rules against a reference model under reordering,
duplication and loss.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from radtrack.accounting import NAS_REBOOT, Accountant
from radtrack.fastpath import FastAccountant
from radtrack.model import (
    AccountingRequest,
    ChangeKind,
    Session,
    StatusType,
    User,
    session_key,
)
from radtrack.store.index import SessionIndex, UserDirectory

NAS = "edge/192.0.2.1"
OTHER_NAS = "edge/192.0.2.2"
T0 = 1_705_314_600.0


def packet(
    status: StatusType, at: float, session_id: str = "s1", nas_key: str = NAS, **fields: Any
) -> AccountingRequest:
    fields.setdefault("user_name", "12345")
    return AccountingRequest(
        status=status,
        nas_key=nas_key,
        nas_name=nas_key.split("/")[0],
        nas_ip=nas_key.split("/")[1],
        session_id=session_id,
        event_time=at,
        **fields,
    )


def start(at: float = T0, **fields: Any) -> AccountingRequest:
    fields.setdefault("connect_info", "WireGuard")
    return packet(StatusType.START, at, **fields)


def counters(session_time: int, rate: int = 1000) -> dict[str, int]:
    return {
        "session_time": session_time,
        "input_octets": session_time * rate,
        "output_octets": session_time * rate * 2,
        "input_packets": session_time,
        "output_packets": session_time * 2,
    }


def interim(elapsed: int, **fields: Any) -> AccountingRequest:
    """An Interim-Update ``elapsed`` seconds after T0, with counters for that long."""
    fields = {**counters(elapsed), **fields}
    return packet(StatusType.INTERIM_UPDATE, T0 + elapsed, **fields)


def stop(elapsed: int, cause: str = "User-Request", **fields: Any) -> AccountingRequest:
    fields = {**counters(elapsed), **fields}
    return packet(StatusType.STOP, T0 + elapsed, terminate_cause=cause, **fields)


def reboot(
    at: float, nas_key: str = NAS, status: StatusType = StatusType.ACCOUNTING_ON
) -> AccountingRequest:
    return AccountingRequest(status, nas_key, nas_key.split("/")[0], nas_key.split("/")[1], "", at)


def sid_of(session_id: str = "s1", nas_key: str = NAS, class_hex: str | None = None) -> str:
    return session_key(nas_key, session_id, class_hex)


@pytest.fixture
def users() -> UserDirectory:
    return UserDirectory()


@pytest.fixture(params=[Accountant, FastAccountant], ids=["plain", "fast"])
def acct(request: pytest.FixtureRequest, users: UserDirectory) -> Accountant:
    """Every rule test runs on the plain rules and on the fast path the daemon runs."""
    kind: type[Accountant] = request.param
    return kind(SessionIndex(), users, default_interim_interval=600, stale_multiple=3.0)


def kinds(changes: list[Any]) -> list[ChangeKind]:
    return [change.kind for change in changes]


def found(acct: Accountant, sid: str | None = None) -> Session:
    session = acct.index.find(sid or sid_of())
    assert session is not None
    return session


def feed(acct: Accountant, *requests: AccountingRequest) -> None:
    for request in requests:
        acct.handle(request)


# -- the session lifecycle (RFC 2866 §5.1) -------------------------------------------------------
def test_start_opens_session(acct: Accountant) -> None:
    changes = acct.handle(start())
    assert kinds(changes) == [ChangeKind.STARTED]
    session = found(acct)
    assert changes[0].session is session
    assert session.online
    assert [s.id for s in acct.index] == [sid_of()]
    assert (session.start_time, session.last_update) == (T0, T0)
    assert session.connect_info_start == "WireGuard"
    assert session.start_seen


def test_interim_refreshes_counters_and_last_seen(acct: Accountant) -> None:
    acct.handle(start())
    changes = acct.handle(interim(300, framed_ip="100.64.0.9"))
    assert kinds(changes) == [ChangeKind.UPDATED]
    assert changes[0].counters_only  # the writer may update just the counter columns
    session = found(acct)
    assert session.online
    assert session.last_update == T0 + 300
    assert (session.input_octets, session.output_octets) == (300_000, 600_000)
    assert (session.input_packets, session.output_packets, session.session_time) == (300, 600, 300)
    assert session.framed_ip == "100.64.0.9"
    assert session.start_time == T0


def test_interim_of_online_session_fills_every_attribute_known_later(acct: Accountant) -> None:
    acct.handle(start(user_name=None, interim_interval=None))
    late = {
        "nas_port_id": "wg0/7",
        "nas_port_type": "Virtual",
        "calling_station_id": "AA:BB",
        "called_station_id": "192.0.2.1:51820",
        "framed_ip": "100.64.0.7",
        "interim_interval": 120,
    }
    changes = acct.handle(interim(60, user_name="12345", **late, received_at=T0 + 5_000))
    assert [(c.kind, c.counters_only) for c in changes] == [(ChangeKind.UPDATED, False)]
    session = found(acct)
    assert {name: getattr(session, name) for name in late} == late
    assert (session.user_name, session.user_id, session.last_seen) == ("12345", 12345, T0 + 5_000)
    # absent attributes keep what the session knows; an older arrival time does not rewind
    changes = acct.handle(interim(120, user_name="other", received_at=T0 + 10))
    assert [(c.kind, c.counters_only) for c in changes] == [(ChangeKind.UPDATED, True)]
    assert {name: getattr(session, name) for name in late} == late
    assert (session.user_name, session.last_seen) == ("12345", T0 + 5_000)


def test_interim_with_the_same_event_time_counts_by_session_time(acct: Accountant) -> None:
    acct.handle(start())
    acct.handle(interim(60))
    same_time = packet(StatusType.INTERIM_UPDATE, T0 + 60, **counters(61))
    assert kinds(acct.handle(same_time)) == [ChangeKind.UPDATED]
    assert found(acct).session_time == 61
    older_counters = packet(StatusType.INTERIM_UPDATE, T0 + 60, **counters(59))
    assert acct.handle(older_counters) == []
    assert found(acct).session_time == 61


def test_interim_without_start_opens_session_started_session_time_ago(acct: Accountant) -> None:
    # RFC 2866 §5.7: Acct-Session-Time says how long the session has run
    assert kinds(acct.handle(interim(300))) == [ChangeKind.STARTED]
    session = found(acct)
    assert session.online
    assert session.start_time == T0
    assert session.session_time == 300
    assert not session.start_seen
    assert session.connect_info_start is None


def test_stop_closes_session_with_cause_time_and_final_counters(acct: Accountant) -> None:
    feed(acct, start(), interim(300))
    changes = acct.handle(stop(420, cause="Idle-Timeout"))
    assert kinds(changes) == [ChangeKind.STOPPED]
    session = found(acct)
    assert not session.online
    assert len(acct.index) == 0
    assert session.stop_time == T0 + 420
    assert session.terminate_cause == "Idle-Timeout"
    assert session.close_reason == "stop"
    assert (session.session_time, session.input_octets) == (420, 420_000)


def test_stop_without_start_records_closed_session(acct: Accountant) -> None:
    assert kinds(acct.handle(stop(420))) == [ChangeKind.STOPPED]
    session = found(acct)
    assert not session.online
    assert len(acct.index) == 0
    assert session.start_time == T0
    assert session.stop_time == T0 + 420
    assert session.close_reason == "stop"
    assert session.input_octets == 420_000


def test_interim_after_stop_does_not_reopen(acct: Accountant) -> None:
    feed(acct, start(), stop(420))
    assert acct.handle(interim(300)) == []  # late
    assert acct.handle(interim(900)) == []  # even one claiming to be newer than the Stop
    session = found(acct)
    assert not session.online
    assert (session.session_time, session.stop_time) == (420, T0 + 420)


def test_start_after_stop_does_not_reopen(acct: Accountant) -> None:
    acct.handle(stop(420))
    assert kinds(acct.handle(start())) == [ChangeKind.UPDATED]
    session = found(acct)
    assert not session.online
    assert len(acct.index) == 0
    assert session.close_reason == "stop"


# -- NAS reboots (RFC 2866 §5.1 Accounting-On/Off) ----------------------------------------------
def test_accounting_on_closes_sessions_of_that_nas_started_before_it(acct: Accountant) -> None:
    feed(
        acct,
        start(session_id="old"),
        start(session_id="other", nas_key=OTHER_NAS),
        start(T0 + 200, session_id="new"),
        interim(100, session_id="old"),
    )
    changes = acct.handle(reboot(T0 + 150))
    assert kinds(changes) == [ChangeKind.STOPPED]
    old = found(acct, sid_of("old"))
    assert changes[0].session is old
    assert not old.online
    assert (old.stop_time, old.terminate_cause, old.close_reason) == (
        T0 + 150,
        NAS_REBOOT,
        "accounting-on",
    )
    assert old.session_time == 150  # it ran until the reboot
    assert old.input_octets == 100_000  # the last counters it reported
    assert found(acct, sid_of("other", OTHER_NAS)).online  # another NAS
    assert found(acct, sid_of("new")).online  # started after the reboot
    assert acct.handle(reboot(T0 + 150)) == []  # a retransmission


def test_accounting_off_records_close_reason_accounting_off(acct: Accountant) -> None:
    acct.handle(start())
    assert kinds(acct.handle(reboot(T0 + 60, status=StatusType.ACCOUNTING_OFF))) == [
        ChangeKind.STOPPED
    ]
    session = found(acct)
    assert (session.close_reason, session.terminate_cause) == ("accounting-off", NAS_REBOOT)


def test_accounting_on_before_late_packets_keeps_their_session_closed(acct: Accountant) -> None:
    # the Accounting-On overtook the last packets the NAS sent before rebooting
    acct.handle(reboot(T0 + 650))
    assert kinds(acct.handle(interim(600))) == [ChangeKind.STOPPED]
    assert len(acct.index) == 0
    session = found(acct)
    assert (session.stop_time, session.close_reason) == (T0 + 650, "accounting-on")
    assert (session.session_time, session.input_octets) == (650, 600_000)
    assert kinds(acct.handle(start())) == [ChangeKind.UPDATED]  # the Start fills in, no reopen
    assert len(acct.index) == 0
    # a session started after the reboot is not affected
    assert kinds(acct.handle(start(T0 + 700, session_id="s2"))) == [ChangeKind.STARTED]


def test_late_interim_after_reboot_brings_counters_without_reopening(acct: Accountant) -> None:
    feed(acct, start(), interim(300), reboot(T0 + 650))
    assert kinds(acct.handle(interim(600))) == [ChangeKind.UPDATED]
    session = found(acct)
    assert not session.online
    assert (session.stop_time, session.close_reason) == (T0 + 650, "accounting-on")
    assert (session.session_time, session.input_octets, session.last_update) == (
        650,
        600_000,
        T0 + 600,
    )
    assert acct.handle(interim(300)) == []  # older still: nothing


def test_reboot_is_remembered_across_a_restart(acct: Accountant, users: UserDirectory) -> None:
    feed(acct, start(session_id="s0"), reboot(T0 + 650))
    restarted = Accountant(SessionIndex(), users)
    restarted.restore(Session.from_row(found(acct, sid_of("s0")).row()))  # as recovery does
    assert kinds(restarted.handle(interim(600))) == [ChangeKind.STOPPED]
    assert len(restarted.index) == 0


def test_stop_after_reboot_close_records_the_stop(acct: Accountant) -> None:
    feed(acct, start(), reboot(T0 + 650))
    assert kinds(acct.handle(stop(420))) == [ChangeKind.UPDATED]
    session = found(acct)
    assert (session.close_reason, session.stop_time, session.terminate_cause) == (
        "stop",
        T0 + 420,
        "User-Request",
    )


# -- counters ------------------------------------------------------------------------------------
def test_counters_are_64_bit(acct: Accountant) -> None:
    # RFC 2869 §5.1-5.2: the codec has already combined Gigawords and the 32-bit counter
    big = (5 << 32) + 17
    acct.handle(start())
    acct.handle(interim(60, input_octets=big, output_octets=big * 2))
    session = found(acct)
    assert (session.input_octets, session.output_octets) == (big, big * 2)


def test_late_interim_does_not_regress_counters(acct: Accountant) -> None:
    feed(acct, start(), interim(600))
    assert acct.handle(interim(300)) == []
    session = found(acct)
    assert (session.session_time, session.input_octets, session.last_update) == (
        600,
        600_000,
        T0 + 600,
    )


# -- stale sessions ------------------------------------------------------------------------------
def test_expire_closes_stale_session_at_last_update(acct: Accountant) -> None:
    feed(acct, start(interim_interval=60), interim(60, interim_interval=60))
    assert acct.expire(T0 + 60 + 179) == []
    changes = acct.expire(T0 + 60 + 180)  # 3 x Acct-Interim-Interval without news
    assert kinds(changes) == [ChangeKind.STOPPED]
    session = found(acct)
    assert not session.online
    assert (session.close_reason, session.stop_time) == ("stale", T0 + 60)
    assert session.terminate_cause is None
    assert acct.expire(T0 + 10_000) == []


def test_expire_uses_default_interim_interval_when_nas_sends_none(acct: Accountant) -> None:
    acct.handle(start())
    assert acct.expire(T0 + 1799) == []
    assert kinds(acct.expire(T0 + 1800)) == [ChangeKind.STOPPED]  # 3 x the default 600 s


def test_expire_spares_session_updated_since(acct: Accountant) -> None:
    feed(acct, start(), interim(1000))
    assert acct.expire(T0 + 1800) == []
    assert found(acct).online
    assert acct.expire(T0 + 1000 + 1799) == []  # the deadline moved to the last update
    assert kinds(acct.expire(T0 + 2800)) == [ChangeKind.STOPPED]


def test_expire_closes_at_most_limit_sessions_per_call(acct: Accountant) -> None:
    feed(acct, *(start(session_id=f"s{n}") for n in range(3)))
    assert len(acct.expire(T0 + 1800, limit=2)) == 2
    assert len(acct.expire(T0 + 1800, limit=2)) == 1


def test_interim_reopens_stale_session(acct: Accountant) -> None:
    feed(acct, start(), interim(60))
    acct.expire(T0 + 60 + 1800)
    assert acct.handle(interim(30)) == []  # older than the last update: stays closed
    assert not found(acct).online
    assert kinds(acct.handle(interim(1900))) == [ChangeKind.STARTED]
    session = found(acct)
    assert session.online
    assert (session.stop_time, session.close_reason, session.last_update) == (
        None,
        None,
        T0 + 1900,
    )
    assert [s.id for s in acct.index] == [session.id]
    assert kinds(acct.expire(T0 + 1900 + 1800)) == [ChangeKind.STOPPED]  # and can go stale again


def test_interim_after_stale_close_does_not_reopen_session_of_rebooted_nas(
    acct: Accountant,
) -> None:
    acct.handle(start())
    acct.expire(T0 + 1800)
    acct.handle(reboot(T0 + 1900))  # nothing online to close
    assert kinds(acct.handle(interim(1200))) == [ChangeKind.UPDATED]
    session = found(acct)
    assert not session.online
    assert (session.close_reason, session.stop_time, session.terminate_cause) == (
        "accounting-on",
        T0 + 1900,
        NAS_REBOOT,
    )


def test_stop_after_stale_close_records_the_stop(acct: Accountant) -> None:
    acct.handle(start())
    acct.expire(T0 + 1800)
    assert kinds(acct.handle(stop(420))) == [ChangeKind.UPDATED]
    session = found(acct)
    assert not session.online
    assert (session.close_reason, session.stop_time) == ("stop", T0 + 420)


def test_stop_closed_session_is_never_reopened(acct: Accountant) -> None:
    feed(acct, start(), stop(60))
    acct.expire(T0 + 10_000)
    assert acct.handle(interim(5000)) == []  # its implied start is the old session's
    assert len(acct.index) == 0
    # a Start long after the Stop is another session under the same Acct-Session-Id (issue 19)
    assert kinds(acct.handle(start(T0 + 6000))) == [ChangeKind.STARTED]
    old = found(acct)
    assert (old.online, old.stop_time) == (False, T0 + 60)
    assert [s.id for s in acct.index] != [old.id]


# -- Acct-Session-Id reuse (issue 19, RFC 2866 §5.5) ------------------------------------------
def online_ids(acct: Accountant) -> list[str]:
    return [s.id for s in acct.index.for_user(12345)]


def test_start_after_accounting_on_is_a_new_session_under_the_same_id(acct: Accountant) -> None:
    # the sequence: the NAS rebooted and its counter gave X1 out again
    feed(acct, start(session_id="X1"), reboot(T0 + 100))
    changes = acct.handle(start(T0 + 200, session_id="X1"))
    assert kinds(changes) == [ChangeKind.STARTED]
    new = changes[0].session
    old = found(acct, sid_of("X1"))  # the first session keeps the id it always had
    assert online_ids(acct) == [new.id] and new.id != old.id
    assert (new.start_time, new.session_id, new.start_seen) == (T0 + 200, "X1", True)
    assert (old.stop_time, old.close_reason) == (T0 + 100, "accounting-on")
    assert acct.index.incarnations(sid_of("X1")) == [old, new]
    # its Interims find it, through the hot path and without it
    assert kinds(acct.handle(interim(260, session_id="X1", session_time=60))) == [
        ChangeKind.UPDATED
    ]
    assert (new.session_time, new.last_update, old.session_time) == (60, T0 + 260, 100)


def test_start_after_accounting_off_is_a_new_session(acct: Accountant) -> None:
    feed(acct, start(), reboot(T0 + 100, status=StatusType.ACCOUNTING_OFF))
    assert kinds(acct.handle(start(T0 + 100))) == [ChangeKind.STARTED]  # at the very moment
    assert len(online_ids(acct)) == 1 and found(acct).close_reason == "accounting-off"


def test_start_after_stop_is_a_new_session_and_the_old_stays_closed(acct: Accountant) -> None:
    feed(acct, start(session_id="X2"), stop(50, session_id="X2"))
    changes = acct.handle(start(T0 + 300, session_id="X2"))
    assert kinds(changes) == [ChangeKind.STARTED]
    old = found(acct, sid_of("X2"))
    assert online_ids(acct) == [changes[0].session.id]
    assert (old.online, old.stop_time, old.session_time) == (False, T0 + 50, 50)


def test_late_packets_of_the_old_session_touch_neither_session(acct: Accountant) -> None:
    feed(acct, start(), interim(60), reboot(T0 + 100))
    acct.handle(start(T0 + 200))
    old = found(acct)
    new = acct.index.incarnations(sid_of())[-1]
    acct.handle(interim(230, session_time=30))  # the new one's first Interim: in the hot path
    before = new.row()
    # sent before the reboot, delivered now: the old session's newer counters, still closed
    assert kinds(acct.handle(interim(90))) == [ChangeKind.UPDATED]
    assert (old.online, old.input_octets, old.stop_time) == (False, 90_000, T0 + 100)
    assert kinds(acct.handle(stop(95))) == [ChangeKind.UPDATED]  # its Stop, late: recorded
    assert (old.online, old.close_reason, old.stop_time) == (False, "stop", T0 + 95)
    assert acct.handle(interim(60)) == [] and acct.handle(stop(95)) == []  # duplicates
    assert new.row() == before and online_ids(acct) == [new.id]


def test_late_stop_of_a_stopped_session_after_the_new_start_changes_nothing(
    acct: Accountant,
) -> None:
    feed(acct, start(), stop(50), start(T0 + 300))
    new = acct.index.incarnations(sid_of())[-1]
    before = (found(acct).row(), new.row())
    assert acct.handle(interim(40)) == []
    assert acct.handle(stop(50)) == []
    assert (found(acct).row(), new.row()) == before and online_ids(acct) == [new.id]


def test_retransmitted_old_start_opens_nothing(acct: Accountant) -> None:
    feed(acct, start(), reboot(T0 + 100), start(T0 + 200))
    before = [s.row() for s in acct.index.incarnations(sid_of())]
    assert acct.handle(start()) == []
    assert acct.handle(start(T0 + 200)) == []  # and the new one's Start again: a duplicate
    assert [s.row() for s in acct.index.incarnations(sid_of())] == before
    assert len(online_ids(acct)) == 1


def test_old_start_arriving_after_the_new_one_is_recorded_closed(acct: Accountant) -> None:
    # the reboot and the new session came first; the old Start was held up
    feed(acct, reboot(T0 + 100), start(T0 + 200))
    new = found(acct)  # the first one seen takes the key as its id
    assert kinds(acct.handle(start())) == [ChangeKind.STOPPED]
    old, current = acct.index.incarnations(sid_of())
    assert current is new and new.online
    assert (old.start_time, old.stop_time, old.close_reason) == (T0, T0 + 100, "accounting-on")
    assert acct.handle(start()) == []


def test_interim_of_a_new_session_whose_start_was_lost_opens_it(acct: Accountant) -> None:
    # implied start T0+250: after the Stop at T0+50, so not the old session's packet
    feed(acct, start(), stop(50))
    assert kinds(acct.handle(interim(310, session_time=60))) == [ChangeKind.STARTED]
    new = acct.index.incarnations(sid_of())[-1]
    assert (new.online, new.start_time) == (True, T0 + 250)
    assert kinds(acct.handle(start(T0 + 250))) == [ChangeKind.UPDATED]  # the lost Start, late
    assert new.start_seen and new.online
    # after a reboot: every Interim dated after it
    feed(acct, start(session_id="r"), reboot(T0 + 400))
    assert kinds(acct.handle(interim(430, session_id="r", session_time=20))) == [ChangeKind.STARTED]


def test_stop_of_a_new_session_whose_packets_were_lost_records_it(acct: Accountant) -> None:
    feed(acct, start(), stop(50))
    assert kinds(acct.handle(stop(400, session_time=100))) == [ChangeKind.STOPPED]
    old, new = acct.index.incarnations(sid_of())
    assert (old.stop_time, new.start_time, new.stop_time) == (T0 + 50, T0 + 300, T0 + 400)
    assert len(acct.index) == 0


def test_stale_session_still_reopens_for_its_own_packets(acct: Accountant) -> None:
    feed(acct, start(), interim(60))
    acct.expire(T0 + 60 + 1800)
    # implied start T0: the stale session's own Interim, late: it was online all along
    assert kinds(acct.handle(interim(1900))) == [ChangeKind.STARTED]
    assert online_ids(acct) == [sid_of()]
    acct.expire(T0 + 1900 + 1800)
    # implied start T0+3000, long after its last update: another session under its id
    assert kinds(acct.handle(interim(3100, session_time=100))) == [ChangeKind.STARTED]
    old, new = acct.index.incarnations(sid_of())
    assert (old.online, old.close_reason, new.online) == (False, "stale", True)


def test_late_interim_of_a_stale_session_replaced_since_does_not_reopen_it(
    acct: Accountant,
) -> None:
    feed(acct, start(), interim(60))
    acct.expire(T0 + 60 + 1800)
    acct.handle(start(T0 + 3000))  # a new session under the id
    assert kinds(acct.handle(interim(120))) == [ChangeKind.UPDATED]
    old, new = acct.index.incarnations(sid_of())
    assert (old.online, old.stop_time, old.session_time) == (False, T0 + 120, 120)
    assert online_ids(acct) == [new.id]


def test_later_sessions_ids_are_stable_and_distinct() -> None:
    def run() -> list[str]:
        acct = Accountant(SessionIndex(), UserDirectory())
        feed(acct, start(), stop(50), start(T0 + 300), stop(350, session_time=50), start(T0 + 600))
        return [s.id for s in acct.index.incarnations(sid_of())]

    ids = run()
    assert ids == run() and len(set(ids)) == 3 and ids[0] == sid_of()
    assert all(i.startswith(sid_of()) for i in ids)


def test_reused_id_survives_a_restart(acct: Accountant, users: UserDirectory) -> None:
    feed(acct, start(), reboot(T0 + 100), start(T0 + 200), interim(260, session_time=60))
    rows = [s.row() for s in acct.index.incarnations(sid_of())]
    restarted = Accountant(SessionIndex(), users)
    for row in reversed(rows):  # recovery gives the open sessions first
        restarted.restore(Session.from_row(row))
    assert [s.row() for s in restarted.index.incarnations(sid_of())] == rows
    assert kinds(restarted.handle(interim(320, session_time=120))) == [ChangeKind.UPDATED]
    assert kinds(restarted.handle(interim(90))) == [ChangeKind.UPDATED]  # the old one's, late
    old, new = restarted.index.incarnations(sid_of())
    assert (new.session_time, new.online, old.online, old.session_time) == (120, True, False, 100)


def test_closed_capacity_evicts_old_incarnations_too() -> None:
    acct = Accountant(SessionIndex(closed_capacity=2), UserDirectory())
    feed(acct, start(), stop(50), start(T0 + 300), stop(350, session_time=50), start(T0 + 600))
    feed(acct, start(session_id="a"), stop(10, session_id="a"))
    feed(acct, start(session_id="b"), stop(10, session_id="b"))
    (current,) = acct.index.incarnations(sid_of())  # the closed ones left the set
    assert current.online and current.start_time == T0 + 600
    feed(acct, start(session_id="c"), stop(10, session_id="c"))
    assert acct.index.incarnations(sid_of()) == [current]


# -- session identity (DESIGN.md) ----------------------------------------------------------------
def test_same_session_id_on_two_nases_is_two_sessions(acct: Accountant) -> None:
    feed(acct, start(), start(nas_key=OTHER_NAS))
    assert {s.id for s in acct.index} == {sid_of(), sid_of(nas_key=OTHER_NAS)}
    acct.handle(stop(60, nas_key=OTHER_NAS))
    assert found(acct).online
    assert not found(acct, sid_of(nas_key=OTHER_NAS)).online


def test_different_class_is_different_session(acct: Accountant) -> None:
    feed(acct, start(class_hex="0a0b"), start(class_hex="0c0d"), start())
    assert {s.id for s in acct.index} == {
        sid_of(class_hex="0a0b"),
        sid_of(class_hex="0c0d"),
        sid_of(),
    }
    assert len({sid_of(class_hex="0a0b"), sid_of(class_hex="0c0d"), sid_of()}) == 3


# -- users ----------------------------------------------------------------------------------------
def test_numeric_user_name_is_user_id(acct: Accountant) -> None:
    acct.handle(start(user_name="12345"))
    assert found(acct).user_id == 12345


def test_numeric_user_name_beyond_graphql_int_is_unmapped(acct: Accountant) -> None:
    acct.handle(start(user_name=str(2**31)))
    assert found(acct).user_id is None


def test_users_table_entry_wins_over_numeric_user_name(
    acct: Accountant, users: UserDirectory
) -> None:
    users.upsert(User(7, "12345"))
    users.upsert(User(8, "alice"))
    feed(acct, start(user_name="12345"), start(session_id="s2", user_name="alice"))
    assert found(acct).user_id == 7
    assert found(acct, sid_of("s2")).user_id == 8


def test_users_table_username_moves_to_newer_entry(users: UserDirectory) -> None:
    users.upsert(User(7, "alice", reseller_id=1))
    assert users.upsert(User(8, "alice", reseller_id=2)) is None
    assert users.resolve("alice", None) == 8
    assert users.get(7) == User(7, None, 1)
    assert users.reseller_of(8) == 2


def test_unmapped_user_name_has_no_user_id(acct: Accountant) -> None:
    acct.handle(start(user_name="alice"))
    assert found(acct).user_id is None


def test_pattern_over_user_name_group_1_is_user_id() -> None:
    users = UserDirectory(numeric_user_names=False, pattern=r"^cust(\d+)@")
    assert users.resolve("cust42@example.net", None) == 42
    assert users.resolve("12345", None) is None  # numeric names are off
    assert users.resolve("guest@example.net", None) is None


def test_pattern_over_class_hex() -> None:
    users = UserDirectory(pattern=r"uid=(\d+)", pattern_attribute="Class")
    class_hex = b"plan=gold;uid=77".hex()
    assert users.resolve("alice", class_hex) == 77
    assert users.resolve("alice", None) is None
    assert users.resolve("12345", class_hex) == 12345  # a numeric User-Name comes first


def test_user_name_learned_late_maps_user(acct: Accountant) -> None:
    # the NAS sends User-Name in the Start only, and the Start arrives after an Interim
    acct.handle(interim(60, user_name=None))
    assert found(acct).user_id is None
    acct.handle(start(user_name="12345"))
    assert found(acct).user_id == 12345
    assert [s.id for s in acct.index.for_user(12345)] == [sid_of()]


def test_interim_bringing_the_user_name_writes_the_whole_row(acct: Accountant) -> None:
    acct.handle(interim(60, user_name=None))
    changes = acct.handle(interim(120, user_name="12345"))
    assert [(c.kind, c.counters_only) for c in changes] == [(ChangeKind.UPDATED, False)]
    assert (found(acct).user_name, found(acct).user_id) == ("12345", 12345)
    assert acct.index.count_for_user(12345) == 1


# -- idempotence and order (DESIGN.md invariant 2) -----------------------------------------------
def test_retransmitted_interim_changes_nothing(acct: Accountant) -> None:
    feed(acct, start(), interim(60))
    before = found(acct).row()
    assert acct.handle(interim(60)) == []
    assert found(acct).row() == before


def test_duplicate_start_changes_nothing(acct: Accountant) -> None:
    acct.handle(start())
    before = found(acct).row()
    assert acct.handle(start()) == []
    assert found(acct).row() == before


def test_duplicate_stop_changes_nothing(acct: Accountant) -> None:
    feed(acct, start(), stop(60))
    before = found(acct).row()
    assert acct.handle(stop(60)) == []
    assert found(acct).row() == before


def test_start_after_interim_fills_start_time_and_connect_info(acct: Accountant) -> None:
    acct.handle(interim(300, session_time=290))  # a skewed Acct-Session-Time
    assert found(acct).start_time == T0 + 10
    assert kinds(acct.handle(start(connect_info="100Mbps"))) == [ChangeKind.UPDATED]
    session = found(acct)
    assert session.online
    assert (session.start_time, session.connect_info_start) == (T0, "100Mbps")
    assert session.start_seen
    assert session.last_update == T0 + 300  # the Start is older: not the last news


def test_start_after_stop_fills_start_time_and_stays_closed(acct: Accountant) -> None:
    acct.handle(stop(420, session_time=400))
    acct.handle(start(connect_info="100Mbps"))
    session = found(acct)
    assert not session.online
    assert (session.start_time, session.connect_info_start) == (T0, "100Mbps")
    assert (session.stop_time, session.session_time) == (T0 + 420, 400)


@pytest.mark.parametrize(
    "clean",
    [
        pytest.param([start(), interim(300), interim(600), stop(700)], id="closed"),
        pytest.param([start(), interim(300), interim(600)], id="online"),
    ],
)
def test_any_order_with_a_retransmission_gives_the_clean_state(
    clean: list[AccountingRequest],
) -> None:
    def final(requests: tuple[AccountingRequest, ...]) -> tuple[object, ...]:
        acct = Accountant(SessionIndex(), UserDirectory())
        feed(acct, *requests)
        return (found(acct).row(), [s.id for s in acct.index])

    expected = final(tuple(clean))
    for order in itertools.permutations([*clean, clean[1]]):
        assert final(order) == expected, order


# -- the index ------------------------------------------------------------------------------------
def test_for_user_lists_online_sessions_oldest_first(acct: Accountant) -> None:
    feed(
        acct,
        start(T0 + 20, session_id="b"),
        start(T0 + 10, session_id="a"),
        start(T0 + 30, session_id="c"),
        start(T0 + 5, session_id="other-user", user_name="999"),
    )
    assert [s.session_id for s in acct.index.for_user(12345)] == ["a", "b", "c"]
    acct.handle(packet(StatusType.STOP, T0 + 40, session_id="b"))
    assert [s.session_id for s in acct.index.for_user(12345)] == ["a", "c"]
    assert acct.index.for_user(4242) == []


def test_count_for_user(acct: Accountant) -> None:
    feed(acct, start(session_id="a"), start(session_id="b"), start(session_id="x", user_name="9"))
    assert acct.index.count_for_user(12345) == 2
    assert acct.index.count_for_user(9) == 1
    assert acct.index.count_for_user(4242) == 0
    acct.handle(packet(StatusType.STOP, T0 + 1, session_id="a"))
    assert acct.index.count_for_user(12345) == 1


def test_per_nas_counts_online_sessions_per_client(acct: Accountant) -> None:
    # counted by nas_name, the configured client, which may cover several NASes
    feed(
        acct,
        start(session_id="a"),
        start(session_id="b", nas_key=OTHER_NAS),
        start(session_id="c", nas_key="core/198.51.100.1"),
    )
    assert acct.index.per_nas == {"edge": 2, "core": 1}
    acct.handle(reboot(T0 + 60, nas_key="core/198.51.100.1"))
    assert acct.index.per_nas == {"edge": 2}
    acct.handle(packet(StatusType.STOP, T0 + 60, session_id="a"))
    acct.expire(T0 + 10_000)
    assert acct.index.per_nas == {}


def make_session(name: str, start_time: float = T0, user_id: int | None = None) -> Session:
    return Session(
        sid_of(name), NAS, "edge", "192.0.2.1", name, start_time, start_time, user_id=user_id
    )


def close(index: SessionIndex, session: Session) -> None:
    session.stop_time = session.last_update
    index.close(session)


def test_closed_capacity_evicts_oldest_closed_session() -> None:
    index = SessionIndex(closed_capacity=2)
    sessions = [make_session(name) for name in "abc"]
    for session in sessions:
        index.add_online(session)
    for session in sessions:
        close(index, session)
    assert index.find(sid_of("a")) is None  # evicted
    assert index.find(sid_of("b")) is sessions[1]
    assert index.find(sid_of("c")) is sessions[2]


def test_reopened_session_does_not_take_a_closed_slot() -> None:
    index = SessionIndex(closed_capacity=2)
    a, b, c = (make_session(name) for name in "abc")
    for session in (a, b, c):
        index.add_online(session)
    close(index, b)
    close(index, a)
    a.stop_time = None
    index.add_online(a)  # reopened (an Interim after a stale close)
    close(index, c)
    assert index.find(b.id) is b  # two closed sessions fit in two slots
    assert index.find(a.id) is a


def test_set_user_refiles_online_session() -> None:
    index = SessionIndex()
    session = make_session("a", user_id=1)
    index.add_online(session)
    index.set_user(session, 2)
    assert (index.count_for_user(1), index.for_user(2)) == (0, [session])
    assert index.per_nas == {"edge": 1}
    index.set_user(session, None)
    assert index.count_for_user(2) == 0
    assert len(index) == 1
    close(index, session)
    index.set_user(session, 3)  # a closed session is relabelled, not filed
    assert (session.user_id, index.count_for_user(3)) == (3, 0)


def test_expire_with_a_budget_spreads_one_pass_over_several_calls() -> None:
    index = SessionIndex()
    acct = Accountant(index, UserDirectory(), default_interim_interval=600, stale_multiple=3.0)
    for n in range(10):
        acct.handle(
            AccountingRequest(
                status=StatusType.START,
                nas_key="nas/192.0.2.1",
                nas_name="nas",
                nas_ip="192.0.2.1",
                session_id=f"budget-{n}",
                event_time=1_700_000_000.0,
            )
        )
    later = 1_700_000_000.0 + 1800
    closed = [len(acct.expire(later, budget=4)) for _ in range(3)]
    assert closed == [4, 4, 2]  # one pass of 10 sessions, 4 at a time
    assert len(index) == 0


def test_stale_rule_counts_from_arrival_not_from_the_nas_clock() -> None:
    # a NAS whose clock is a year behind (or a backlog of old packets): not stale on arrival
    index = SessionIndex()
    acct = Accountant(index, UserDirectory(), default_interim_interval=600, stale_multiple=3.0)
    now = 1_760_000_000.0
    acct.handle(
        AccountingRequest(
            status=StatusType.START,
            nas_key="nas/192.0.2.1",
            nas_name="nas",
            nas_ip="192.0.2.1",
            session_id="old-clock",
            event_time=now - 365 * 86_400,
            received_at=now,
        )
    )
    assert acct.expire(now + 1799) == []
    [change] = acct.expire(now + 1800)
    assert change.session.stop_time == now - 365 * 86_400  # the last time the NAS reported


def test_recovery_gives_open_sessions_a_full_interval() -> None:
    index = SessionIndex()
    acct = Accountant(index, UserDirectory(), default_interim_interval=600, stale_multiple=3.0)
    session = Session("r1", "nas/192.0.2.1", "nas", "192.0.2.1", "s", 1_000.0, 1_000.0)
    acct.restore(session, now=1_760_000_000.0)  # radtrack was down for a long time
    assert acct.expire(1_760_000_000.0 + 1799) == []
    assert len(acct.expire(1_760_000_000.0 + 1800)) == 1


def fresh(text: str) -> str:
    """An equal string that is a new object, as each decoded packet's are."""
    return "".join(list(text))


def test_sessions_share_repeated_strings_and_interims_keep_them() -> None:
    accountant = Accountant(SessionIndex(), UserDirectory())
    values = {"nas_port_id": "wg0", "called_station_id": "vpn.example.net"}
    for n in range(3):
        fields = {name: fresh(value) for name, value in values.items()}
        accountant.handle(start(session_id=f"s{n}", user_name=fresh("12345"), **fields))
    first, *others = accountant.index.for_user(12345)
    assert len(others) == 2
    for other in others:
        for name in (*values, "user_name", "user_id"):
            assert getattr(other, name) is getattr(first, name), name
    # an Interim with equal values leaves the session's (shared) strings in place
    accountant.handle(
        packet(
            StatusType.INTERIM_UPDATE,
            T0 + 60,
            session_id="s0",
            calling_station_id=fresh("AA:BB"),
            **{name: fresh(value) for name, value in values.items()},
        )
    )
    session = next(s for s in accountant.index.for_user(12345) if s.session_id == "s0")
    assert session.nas_port_id is first.nas_port_id
    assert session.called_station_id is first.called_station_id
    # a new value replaces the old one
    accountant.handle(
        packet(StatusType.INTERIM_UPDATE, T0 + 120, session_id="s0", nas_port_id="wg1")
    )
    assert session.nas_port_id == "wg1" and session.calling_station_id == "AA:BB"


def test_session_ids_are_the_blake2b_of_nas_session_and_class() -> None:
    """Ids are stored: session_key (which reuses each NAS's hash state) must give what the
    one-shot definition gives, for any text, lone surrogates included."""
    import hashlib
    import random

    from radtrack.model import session_key

    rng = random.Random(7)
    for _ in range(2_000):
        nas_key, session_id = (
            "".join(chr(rng.choice((0x41, 0, 0xDCFF, 0xE9, 0x1F600))) for _ in range(n))
            for n in (rng.randint(0, 4), rng.randint(0, 6))
        )
        class_hex = rng.choice((None, "", "6162"))
        material = f"{nas_key}\x00{session_id}\x00{class_hex or ''}"
        expected = hashlib.blake2b(
            material.encode("utf-8", "surrogateescape"), digest_size=12
        ).hexdigest()
        assert session_key(nas_key, session_id, class_hex) == expected
    assert session_key("edge/192.0.2.1", "s1", None) == session_key("edge/192.0.2.1", "s1", "")
