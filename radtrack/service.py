"""The glue of the packet path: datagram -> client -> dedup -> codec -> accounting -> writer ->
(after the commit) Accounting-Response and events. Everything here runs on the event loop and
never blocks; the writer's thread does the disk work.
"""

from __future__ import annotations

import asyncio
import bisect
import ipaddress
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence

from pyrad.dictionary import Dictionary

from radtrack.accounting import Accountant
from radtrack.config import ClientSettings, RadiusSettings
from radtrack.errors import MalformedPacket
from radtrack.logs import RateLimiter
from radtrack.model import SessionChange
from radtrack.radius import codec
from radtrack.radius.dedup import IN_FLIGHT, ResponseCache
from radtrack.store.writer import Writer
from radtrack.transport import Address, UdpListener

logger = logging.getLogger(__name__)

Subscriber = Callable[[Sequence[SessionChange]], None]

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
)


class ClientTable:
    """NAS clients by source address: exact addresses first, then the most specific network."""

    def __init__(self, clients: Sequence[ClientSettings]) -> None:
        self.exact: dict[str, ClientSettings] = {}
        self.networks: list[ClientSettings] = []
        for client in clients:
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
    """Handles every datagram the UDP listeners read."""

    def __init__(
        self,
        settings: RadiusSettings,
        dictionary: Dictionary,
        accountant: Accountant,
        writer: Writer,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.clients = ClientTable(settings.clients)
        self.decoder = codec.AccountingDecoder(dictionary)
        self.accountant = accountant
        self.writer = writer
        self.cache = ResponseCache(settings.dedup_ttl, settings.dedup_capacity)
        self.clock = clock
        self.stats = Stats()
        self.subscribers: list[Subscriber] = []
        self._warn = RateLimiter()
        # packets in flight that were retransmitted meanwhile (answered again after the commit)
        self._retransmitted: set[tuple[object, ...]] = set()
        # changes committed and not yet published: a commit's callbacks gather them, and the
        # subscribers get them in one call right after those callbacks (not one per packet)
        self._unpublished: list[SessionChange] = []

    def reconfigure(self, settings: RadiusSettings) -> None:
        """New NAS clients and secrets (SIGHUP); packets in flight keep the secret they had."""
        self.settings = settings
        self.clients = ClientTable(settings.clients)

    def _drop(self, reason: str, peer: str, detail: str = "") -> None:
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

    def on_datagram(self, listener: UdpListener, data: bytes, addr: Address) -> None:
        received = time.monotonic()  # the ack latency counts from here
        stats = self.stats
        stats.received += 1
        peer = addr[0]
        if len(data) > codec.MAX_PACKET_SIZE:
            self._drop("oversized", peer, f"{len(data)} octets")
            return
        client = self.clients.match(peer)
        if client is None:
            self._drop("unknown_client", peer)
            return
        try:
            packet = codec.decode(data)
        except MalformedPacket as exc:
            self._drop("malformed", peer, str(exc))
            return
        if packet.code not in (codec.ACCOUNTING_REQUEST, codec.STATUS_SERVER):
            self._drop("unexpected_code", peer, f"code {packet.code}")
            return
        now = self.clock()
        key = (peer, addr[1], packet.identifier, packet.authenticator)
        cached = self.cache.lookup(key, now)
        if cached is not None:
            stats.duplicates += 1
            if cached is not IN_FLIGHT:
                listener.send(cached, addr)  # type: ignore[arg-type]
            else:
                # a retransmission while its first copy waits for the commit: it gets the
                # reply when that commit completes
                self._retransmitted.add(key)
            return
        if not codec.verify_request(
            packet,
            client.secret,
            require_message_authenticator=client.require_message_authenticator,
        ):
            self._drop("bad_authenticator", peer, client.name)
            return
        if packet.code == codec.STATUS_SERVER:
            # RFC 5997 §3: answered with an Accounting-Response carrying a Message-Authenticator,
            # but only while radtrack can store what it would be sent
            if not self.writer.healthy:
                self._drop("not_ready", peer)
                return
            stats.status_server += 1
            listener.send(
                codec.encode_reply(packet, client.secret, message_authenticator=True), addr
            )
            return
        if self.writer.queued >= self.settings.queue_size:
            self._drop("queue_full", peer)  # unanswered: the NAS retransmits later
            return
        try:
            request = self.decoder.request(packet, client.name, peer, now)
        except MalformedPacket as exc:
            self._drop("malformed", peer, str(exc))
            return
        stats.accepted += 1
        if request is None:
            stats.ignored_status += 1
            changes: list[SessionChange] = []
        else:
            changes = self.accountant.handle(request)
        self.cache.begin(key, now)
        reply = codec.encode_reply(packet, client.secret)

        def done(ok: bool) -> None:
            if not ok:
                self.cache.forget(key)
                self._retransmitted.discard(key)
                self._drop("store_failed", peer)
                return
            # the commit thread has sent the reply already (the ack below); this bookkeeping
            # runs on the event loop once it gets to it
            self.cache.answer(key, reply, self.clock())
            if self._retransmitted and key in self._retransmitted:
                self._retransmitted.discard(key)
                listener.send(reply, addr)
            latency = time.monotonic() - received
            stats.acknowledged += 1
            stats.ack_latency_sum += latency
            stats.ack_buckets[bisect.bisect_left(ACK_BUCKETS, latency)] += 1
            if changes:
                self._publish_soon(changes)

        self.writer.submit(changes, done, (listener.send, reply, addr))

    def expire(self, budget: int | None = None) -> int:
        """Close stale sessions (the timer calls this); returns how many were closed."""
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
            self.writer.submit(changes, lambda ok: self._publish_soon(changes) if ok else None)
        return len(changes)

    def _publish_soon(self, changes: Sequence[SessionChange]) -> None:
        """Publish once the event loop is done with the callbacks of this commit, in order."""
        unpublished = self._unpublished
        if not unpublished:
            try:
                asyncio.get_running_loop().call_soon(self._publish_unpublished)
            except RuntimeError:  # no event loop (a test calling the callbacks): at once
                self._publish(changes)
                return
        unpublished.extend(changes)

    def _publish_unpublished(self) -> None:
        changes, self._unpublished = self._unpublished, []
        self._publish(changes)

    def _publish(self, changes: Sequence[SessionChange]) -> None:
        for subscriber in list(self.subscribers):
            try:
                subscriber(changes)
            except Exception:
                logger.exception("event=subscriber_failed")
