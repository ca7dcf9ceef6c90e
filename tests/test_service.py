"""AccountingService without sockets or disk: a recording writer and listener stand in, so the
order of what happens after a commit (replies, bookkeeping, events) can be checked exactly."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from pyrad.dictionary import Dictionary

from radtrack.accounting import Accountant
from radtrack.model import ChangeKind, SessionChange
from radtrack.service import AccountingService
from radtrack.store.index import SessionIndex, UserDirectory
from tests.conftest import acct_packet, make_settings

PEER = ("127.0.0.1", 50000)


class Writer:
    def __init__(self) -> None:
        self.healthy = True
        self.finished: list[object] = []  # commits done on a thread (none here)
        self.pending: list[tuple[Callable[[bool], None], Any]] = []

    @property
    def queued(self) -> int:
        return len(self.pending)

    def run_finished(self) -> None:
        pass

    def submit(
        self,
        changes: Sequence[SessionChange],
        done: Callable[[bool], None] | None = None,
        ack: Any = None,
    ) -> None:
        assert done is not None
        self.pending.append((done, ack))

    def commit(self, ok: bool = True) -> None:
        """The commit thread's part (send the replies) and the event loop's (the callbacks)."""
        pending, self.pending = self.pending, []
        if ok:
            for _, ack in pending:
                if ack is not None:  # expire() submits without a reply
                    sender, data, address = ack
                    sender.send_many([(data, address)])
        for done, _ in pending:
            done(ok)


class Listener:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((data, addr))

    def send_many(self, replies: list[tuple[bytes, tuple[str, int]]]) -> None:
        self.sent += replies


def service(tmp_path: Path, dictionary: Dictionary) -> tuple[AccountingService, Writer]:
    settings = make_settings(tmp_path)
    writer = Writer()
    accountant = Accountant(SessionIndex(), UserDirectory())
    return AccountingService(settings.radius, dictionary, accountant, writer), writer  # type: ignore[arg-type]


def start(dictionary: Dictionary, session: str, identifier: int) -> bytes:
    packet = acct_packet(
        dictionary,
        User_Name="12345",
        Acct_Status_Type="Start",
        Acct_Session_Id=session,
        NAS_IP_Address="192.0.2.1",
        Event_Timestamp=1705314600,
    )
    packet.id = identifier
    return packet.RequestPacket()  # type: ignore[no-any-return]


@pytest.mark.asyncio
async def test_a_commits_changes_reach_subscribers_in_one_call_in_packet_order(
    tmp_path: Path, dictionary: Dictionary
) -> None:
    svc, writer = service(tmp_path, dictionary)
    calls: list[list[tuple[ChangeKind, str]]] = []
    svc.subscribers.append(
        lambda changes: calls.append([(c.kind, c.session.session_id) for c in changes])
    )
    listener = Listener()
    for n, session in enumerate(("a", "b", "c")):
        svc.on_datagram(listener, start(dictionary, session, n), PEER)  # type: ignore[arg-type]
    assert calls == [] and listener.sent == []  # nothing before the commit
    writer.commit()
    assert len(listener.sent) == 3  # the replies went out with the commit
    # the bookkeeping and the events follow once the loop is done with the commit's callbacks
    assert calls == [] and svc.stats.acknowledged == 0
    await asyncio.sleep(0)
    assert svc.stats.acknowledged == 3
    assert calls == [
        [(ChangeKind.STARTED, "a"), (ChangeKind.STARTED, "b"), (ChangeKind.STARTED, "c")]
    ]


def test_without_an_event_loop_the_callbacks_publish_at_once(
    tmp_path: Path, dictionary: Dictionary
) -> None:
    svc, writer = service(tmp_path, dictionary)
    calls: list[int] = []
    svc.subscribers.append(lambda changes: calls.append(len(changes)))
    svc.on_datagram(Listener(), start(dictionary, "a", 1), PEER)  # type: ignore[arg-type]
    writer.commit()
    assert calls == [1]


@pytest.mark.asyncio
async def test_failed_commit_answers_nothing_publishes_nothing_and_forgets_the_packet(
    tmp_path: Path, dictionary: Dictionary
) -> None:
    svc, writer = service(tmp_path, dictionary)
    calls: list[int] = []
    svc.subscribers.append(lambda changes: calls.append(len(changes)))
    listener = Listener()
    data = start(dictionary, "a", 1)
    svc.on_datagram(listener, data, PEER)  # type: ignore[arg-type]
    writer.commit(ok=False)
    await asyncio.sleep(0)
    assert (listener.sent, calls, svc.stats.dropped["store_failed"]) == ([], [], 1)
    # the retransmission is processed again (not a duplicate) and answered after its commit
    svc.on_datagram(listener, data, PEER)  # type: ignore[arg-type]
    assert svc.stats.duplicates == 0
    writer.commit()
    assert len(listener.sent) == 1


@pytest.mark.asyncio
async def test_retransmissions_in_flight_and_answered(
    tmp_path: Path, dictionary: Dictionary
) -> None:
    svc, writer = service(tmp_path, dictionary)
    listener = Listener()
    data = start(dictionary, "a", 1)
    svc.on_datagram(listener, data, PEER)  # type: ignore[arg-type]
    svc.on_datagram(listener, data, PEER)  # type: ignore[arg-type]  # while in flight
    assert listener.sent == [] and writer.queued == 1
    writer.commit()
    await asyncio.sleep(0)
    # the commit thread's reply, and the same reply again for the retransmission
    assert len(listener.sent) == 2 and listener.sent[0] == listener.sent[1]
    svc.on_datagram(listener, data, PEER)  # type: ignore[arg-type]  # answered: from the cache
    assert len(listener.sent) == 3 and listener.sent[2] == listener.sent[0]
    assert (svc.stats.duplicates, svc.stats.accepted, writer.queued) == (2, 1, 0)


@pytest.mark.asyncio
async def test_a_failed_commit_after_a_good_one_forgets_only_its_own_packets(
    tmp_path: Path, dictionary: Dictionary
) -> None:
    svc, writer = service(tmp_path, dictionary)
    calls: list[list[str]] = []
    svc.subscribers.append(lambda changes: calls.append([c.session.session_id for c in changes]))
    listener = Listener()
    first, second = start(dictionary, "a", 1), start(dictionary, "b", 2)
    svc.on_datagram(listener, first, PEER)  # type: ignore[arg-type]
    svc.on_datagram(listener, second, PEER)  # type: ignore[arg-type]
    for_a, for_b = writer.pending
    writer.pending = [for_a]
    writer.commit()  # a's commit; its bookkeeping waits for the loop
    writer.pending = [for_b]
    writer.commit(ok=False)
    await asyncio.sleep(0)
    assert calls == [["a"]] and len(listener.sent) == 1
    assert (svc.stats.acknowledged, svc.stats.dropped["store_failed"]) == (1, 1)
    svc.on_datagram(listener, first, PEER)  # type: ignore[arg-type]  # answered: the cache
    svc.on_datagram(listener, second, PEER)  # type: ignore[arg-type]  # forgotten: again
    assert (svc.stats.duplicates, svc.stats.accepted, writer.queued) == (1, 3, 1)


@pytest.mark.asyncio
async def test_stale_sessions_are_published_in_commit_order_with_the_packets(
    tmp_path: Path, dictionary: Dictionary
) -> None:
    svc, writer = service(tmp_path, dictionary)
    calls: list[list[tuple[ChangeKind, str]]] = []
    svc.subscribers.append(
        lambda changes: calls.append([(c.kind, c.session.session_id) for c in changes])
    )
    listener = Listener()
    svc.on_datagram(listener, start(dictionary, "a", 1), PEER)  # type: ignore[arg-type]
    svc.clock = lambda: 4e9  # long after: every session is stale
    assert svc.expire() == 1
    writer.commit()  # the packet's commit and the expiry's, in one
    await asyncio.sleep(0)
    assert calls == [[(ChangeKind.STARTED, "a"), (ChangeKind.STOPPED, "a")]]
    assert svc.stats.acknowledged == 1
