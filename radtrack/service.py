"""The glue of the packet path: datagram -> client -> dedup -> codec -> accounting -> store ->
(after the commit) Accounting-Response and events. Everything here runs on the event loop and
never blocks; the store's commit thread does the disk work. UDP datagrams come in through
``on_datagram``; RadSec packets (radtrack/radsec.py), whose client the TLS connection named,
through ``on_packet``: from there on the path is the same.
"""

from __future__ import annotations

import asyncio
import bisect
import ipaddress
import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from typing import Protocol

from pyrad.dictionary import Dictionary

from radtrack import fastpath
from radtrack.accounting import Accountant
from radtrack.errors import MalformedPacket
from radtrack.logs import RateLimiter
from radtrack.model import ChangeKind, Session, SessionChange
from radtrack.radius import codec
from radtrack.radius.dedup import IN_FLIGHT, Key, ResponseCache
from radtrack.radius.settings import ClientSettings, RadiusSettings
from radtrack.store.base import Outcome, Partial, Store
from radtrack.transport import Address, UdpListener

logger = logging.getLogger(__name__)

_ACCOUNTING_REQUEST, _STATUS_SERVER = codec.ACCOUNTING_REQUEST, codec.STATUS_SERVER

Subscriber = Callable[[Sequence[SessionChange]], None]


class Sender(Protocol):
    """Where replies go (transport.UdpListener, RadSec's replies.LoopReplies): ``send`` on the
    event loop, ``send_many`` from the commit thread (store.base.ReplySender)."""

    def send(self, data: bytes, addr: Address) -> None: ...

    def send_many(self, replies: Sequence[tuple[bytes, Address]]) -> None: ...


# a packet accepted and submitted: (cache key, reply, monotonic time read, its changes, the
# sender of its replies, the NAS's address); for the changes of expire(): (None, b"", 0.0,
# changes, None, None)
_Accepted = tuple[Key | None, bytes, float, list[SessionChange], Sender | None, Address | None]

# Why a datagram got no answer (the label of radtrack_packets_dropped_total)
DROP_REASONS = (
    "oversized",
    "unknown_client",
    "malformed",
    "bad_authenticator",
    "unexpected_code",
    "queue_full",
    "store_failed",
    "not_ready",
    # authenticated and decoded, but its effect could not be stored (a value the store cannot
    # hold: store/journal.py ROW_ERRORS); the other packets of its commit were answered
    "unstorable",
)


class ClientTable:
    """NAS clients by source address: exact addresses first, then the most specific network.
    Not the RadSec clients: over UDP their secret is no secret (radsec.py matches them)."""

    def __init__(self, clients: Sequence[ClientSettings]) -> None:
        self.exact: dict[str, ClientSettings] = {}
        self.networks: list[ClientSettings] = []
        for client in clients:
            if client.radsec:
                continue
            if client.network.num_addresses == 1:
                self.exact[str(client.network.network_address)] = client
            else:
                self.networks.append(client)
        self.networks.sort(key=lambda c: c.network.prefixlen, reverse=True)

    def match(self, host: str) -> ClientSettings | None:
        client = self.exact.get(host)
        if client is not None or not self.networks:
            return client
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return None
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
            client = self.exact.get(str(address))
            if client is not None:
                return client
        for client in self.networks:
            if address.version == client.network.version and address in client.network:
                return client
        return None


# Upper bounds (seconds) of the acknowledgement latency histogram (radtrack_ack_latency_seconds)
ACK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Stats:
    """Counters for metrics, the status line and tests."""

    def __init__(self) -> None:
        self.ack_buckets = [0] * (len(ACK_BUCKETS) + 1)  # the last one is +Inf
        self.received = 0
        self.accepted = 0  # verified and handed to the accounting core
        self.acknowledged = 0
        self.duplicates = 0
        self.status_server = 0
        self.ignored_status = 0  # e.g. Acct-Status-Type Failed: acknowledged, not tracked
        self.dropped: Counter[str] = Counter()
        self.ack_latency_sum = 0.0


class AccountingService:
    """Handles every datagram the UDP listeners read, and every packet of a RadSec connection."""

    def __init__(
        self,
        settings: RadiusSettings,
        dictionary: Dictionary,
        accountant: Accountant,
        store: Store,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.clients = ClientTable(settings.clients)
        self.decoder = fastpath.FastAccountingDecoder(dictionary)
        self.accountant = accountant
        self.store = store
        self.cache = ResponseCache(settings.dedup_ttl, settings.dedup_capacity)
        self.clock = clock
        self.stats = Stats()
        self.subscribers: list[Subscriber] = []
        self._warn = RateLimiter()
        # packets in flight that were retransmitted meanwhile (answered again after the commit)
        self._retransmitted: set[Key] = set()
        # what was submitted to the store and is not done yet, in submit order: the store runs
        # the callbacks in that order (commit order), so the one callback, _done, needs no
        # argument of its own (no partial or closure per packet); the first ``_committed`` of
        # them are committed, and _after_commit does their bookkeeping (cache, latency, events)
        # once for all right after a commit's callbacks (not per packet)
        self._submitted: deque[_Accepted] = deque()
        self._committed = 0
        self._after_commit_soon = False
        # sessions whose rows the store rejected: put back to what the store holds once no
        # packet of theirs is in flight (_repair)
        self._repairs: set[str] = set()

    def reconfigure(self, settings: RadiusSettings) -> None:
        """New NAS clients and secrets (SIGHUP); packets in flight keep the secret they had."""
        self.settings = settings
        self.clients = ClientTable(settings.clients)

    def _drop(self, reason: str, peer: str, detail: str = "") -> str:
        """Count and log (rate-limited) a packet dropped unanswered; returns ``reason``."""
        self.stats.dropped[reason] += 1
        allowed, suppressed = self._warn.allow(f"{reason}/{peer}")
        if allowed:
            logger.warning(
                "event=packet_dropped reason=%s peer=%s%s%s",
                reason,
                peer,
                f' detail="{detail}"' if detail else "",
                f" suppressed={suppressed}" if suppressed else "",
            )
        return reason

    def refuse(self, reason: str, peer: str, detail: str = "") -> str:
        """A packet a transport dropped before it got here (RadSec: a bad Length field): read,
        dropped, counted and logged like the ones dropped here."""
        self.stats.received += 1
        return self._drop(reason, peer, detail)

    def _arrived(self) -> float:
        """Before a packet is looked at: returns the time its ack latency counts from."""
        received = time.monotonic()
        if self.store.finished:
            self.store.run_finished()
        if self._after_commit_soon:
            # a commit's events go out before this packet changes any session: an event shows
            # its session as that commit left it (a NAS may send the next packet as soon as it
            # has the reply, which the commit thread sent before the loop got to the callbacks)
            self._after_commit()
        self.stats.received += 1
        return received

    def on_datagram(self, listener: UdpListener, data: bytes, addr: Address) -> None:
        received = self._arrived()
        peer = addr[0]
        if len(data) > codec.MAX_PACKET_SIZE:
            self._drop("oversized", peer, f"{len(data)} octets")
            return
        clients = self.clients
        client = clients.exact.get(peer) or clients.match(peer)
        if client is None:
            self._drop("unknown_client", peer)
            return
        self._handle(listener, data, addr, client, received)

    def on_packet(
        self, sender: Sender, data: bytes, addr: Address, client: ClientSettings
    ) -> str | None:
        """A packet of a client known already (RadSec: by its TLS connection), ``data`` cut to
        its Length field. Returns the reason it was dropped (one of DROP_REASONS), or None when
        it was taken: queued for its commit, answered (Status-Server, a retransmission), or
        held for the reply its first copy will get."""
        return self._handle(sender, data, addr, client, self._arrived())

    def _handle(
        self, sender: Sender, data: bytes, addr: Address, client: ClientSettings, received: float
    ) -> str | None:
        peer = addr[0]
        stats = self.stats
        try:
            packet = fastpath.decode(data)
        except MalformedPacket as exc:
            return self._drop("malformed", peer, str(exc))
        code = packet.code
        if code != _ACCOUNTING_REQUEST and code != _STATUS_SERVER:
            return self._drop("unexpected_code", peer, f"code {code}")
        now = self.clock()
        key = (peer, addr[1], packet.identifier, packet.authenticator)
        cached = self.cache.lookup(key, now)
        if cached is not None:
            stats.duplicates += 1
            if cached is not IN_FLIGHT:
                sender.send(cached, addr)  # type: ignore[arg-type]
            else:
                # a retransmission while its first copy waits for the commit: it gets the
                # reply when that commit completes
                self._retransmitted.add(key)
            return None
        if not codec.verify_request(packet, client.secret, client.require_message_authenticator):
            return self._drop("bad_authenticator", peer, client.name)
        if code == _STATUS_SERVER:
            # RFC 5997 §3: answered with an Accounting-Response carrying a Message-Authenticator,
            # but only while radtrack can store what it would be sent
            if not self.store.healthy:
                return self._drop("not_ready", peer)
            stats.status_server += 1
            sender.send(codec.encode_reply(packet, client.secret, message_authenticator=True), addr)
            return None
        queue_size = self.settings.queue_size
        # every callback the store holds is one of _submitted: the short list first
        if len(self._submitted) >= queue_size and self.store.queued >= queue_size:
            return self._drop("queue_full", peer)  # unanswered: the NAS retransmits later
        try:
            request = self.decoder.request(packet, client.name, peer, now)
        except MalformedPacket as exc:
            return self._drop("malformed", peer, str(exc))
        stats.accepted += 1
        if request is None:
            stats.ignored_status += 1
            changes: list[SessionChange] = []
        else:
            changes = self.accountant.handle(request)
        self.cache.begin(key, now)
        reply = codec.encode_reply(packet, client.secret)

        self.store.submit(changes, self._done, (sender, reply, addr))
        self._submitted.append((key, reply, received, changes, sender, addr))
        return None

    def _done(self, ok: Outcome) -> None:
        """The store's callback, on the event loop after a commit (which has sent the replies
        already), for the oldest submission not done yet. The bookkeeping is done once for all
        the packets of the commit, in _after_commit, right after their callbacks."""
        if ok is not True:
            self._not_committed(ok)
            return
        self._committed += 1
        if not self._after_commit_soon:
            self._schedule_after_commit()

    def _not_committed(self, ok: Outcome) -> None:
        """_done for a failed commit, or a Partial one (rows of some sessions rejected)."""
        # the earlier submissions are committed; this one is the next
        packet = self._submitted[self._committed]
        key, reply, _, changes, sender, addr = packet
        partial = ok if isinstance(ok, Partial) else None
        rejected = (
            []
            if partial is None
            else [c.session.id for c in changes if c.session.id in partial.rejected]
        )
        if partial is not None and not rejected:
            # stored: the commit thread sent no replies for a Partial commit, so here
            self._committed += 1
            if sender is not None and addr is not None:
                sender.send(reply, addr)
            if not self._after_commit_soon:
                self._schedule_after_commit()
            return
        del self._submitted[self._committed]
        if rejected:
            # the store cannot hold what this packet made of its session: unanswered (the NAS
            # may retransmit; the same packet is rejected again), and memory goes back to what
            # the store holds (DESIGN.md invariant 3) in _after_commit, which runs _repair
            self._repairs.update(rejected)
            if not self._after_commit_soon:
                self._schedule_after_commit()
        if key is not None and addr is not None:
            self.cache.forget(key)
            self._retransmitted.discard(key)
            if partial is not None and rejected:
                self._drop("unstorable", addr[0], partial.rejected[rejected[0]])
            else:
                self._drop("store_failed", addr[0])

    def _repair(self) -> None:
        """Put the sessions whose rows the store rejected back to the state the store holds
        (what a restart would rebuild), once no packet of theirs waits for a commit: a later
        commit of one could still store a newer row of the session."""
        in_flight = {
            change.session.id
            for _, _, _, changes, _, _ in self._submitted
            for change in changes
            if change.session.id in self._repairs
        }
        ready = [sid for sid in self._repairs if sid not in in_flight]
        if not ready:
            return
        self._repairs.difference_update(ready)
        try:
            stored = self.store.committed_sessions(ready)
        except Exception:  # the disk fails too: try again after the next commit
            logger.exception("event=repair_failed sessions=%d", len(ready))
            self._repairs.update(ready)
            return
        now = self.clock()
        for sid in ready:
            self.accountant.reload(sid, stored.get(sid), now)
        logger.warning("event=sessions_reloaded count=%d (rows rejected by the store)", len(ready))

    def _schedule_after_commit(self) -> None:
        self._after_commit_soon = True
        try:
            asyncio.get_running_loop().call_soon(self._after_commit)
        except RuntimeError:  # no event loop (a test calling the callbacks): at once
            self._after_commit()

    def _after_commit(self) -> None:
        if not self._after_commit_soon:
            return  # done already (a datagram or expire() came first)
        self._after_commit_soon = False
        submitted = self._submitted
        answer = self.cache.answer
        retransmitted = self._retransmitted
        buckets = self.stats.ack_buckets
        now = self.clock()
        monotonic = time.monotonic()
        latencies = 0.0
        acknowledged = 0
        events: list[SessionChange] = []
        for _ in range(self._committed):
            key, reply, received, changes, sender, addr = submitted.popleft()
            if changes:
                events += changes
            if key is None:
                continue  # expire()'s changes: events only
            answer(key, reply, now)
            if retransmitted and key in retransmitted:
                retransmitted.discard(key)
                sender.send(reply, addr)  # type: ignore[union-attr,arg-type]
            latency = monotonic - received
            latencies += latency
            buckets[bisect.bisect_left(ACK_BUCKETS, latency)] += 1
            acknowledged += 1
        self._committed = 0
        stats = self.stats
        stats.acknowledged += acknowledged
        stats.ack_latency_sum += latencies
        if events:
            self._publish(events)
        if self._repairs:
            self._repair()

    def expire(self, budget: int | None = None) -> int:
        """Close stale sessions (the timer calls this); returns how many were closed."""
        self.store.run_finished()
        self._after_commit()  # events of the last commit first, before sessions change
        changes = self.accountant.expire(self.clock(), budget=budget)
        if changes:
            logger.info("event=sessions_stale count=%d", len(changes))
            for change in changes:
                logger.debug(
                    "event=session_stale id=%s nas=%s session_id=%s",
                    change.session.id,
                    change.session.nas_name,
                    change.session.session_id,
                )
            # published in commit order, after the packets committed before them
            self.store.submit(changes, self._done)
            self._submitted.append((None, b"", 0.0, changes, None, None))
        return len(changes)

    def apply_remote(self, sessions: Sequence[Session]) -> list[SessionChange]:
        """Sessions as the store holds them after other nodes' commits (store/pg/): each
        replaces this node's state of the session unless this node's is newer (a packet it
        handled that the other node's commit did not see). Returns the changes, for the
        API's subscribers; the device-limit policy is the ingesting node's to apply."""
        self.store.run_finished()
        self._after_commit()  # this node's own events first, before sessions change
        find = self.accountant.index.find
        now = self.clock()
        changes: list[SessionChange] = []
        for stored in sessions:
            local = find(stored.id)
            if local is not None and not _supersedes(stored, local):
                continue
            if stored.stop_time is not None:
                kind = ChangeKind.STOPPED
            elif local is None or local.stop_time is not None:
                kind = ChangeKind.STARTED
            else:
                kind = ChangeKind.UPDATED
            self.accountant.reload(stored.id, stored, now)
            changes.append(SessionChange(kind, stored))
        return changes

    def _publish(self, changes: Sequence[SessionChange]) -> None:
        for subscriber in list(self.subscribers):
            try:
                subscriber(changes)
            except Exception:
                logger.exception("event=subscriber_failed")


def _supersedes(stored: Session, local: Session) -> bool:
    """Whether a stored state replaces the one in memory: a different state, and not an older
    one (the later last update, then the longer session time, then closed before open; the
    order the PostgreSQL store writes by, store/pg/feed.py WRITE_NEWER)."""
    if stored.row() == local.row():
        return False
    return (stored.last_update, stored.session_time, stored.stop_time is not None) >= (
        local.last_update,
        local.session_time,
        local.stop_time is not None,
    )
