"""RadSec intake (RFC 6614): RADIUS accounting over TLS, into the same packet path as UDP.

A connection is matched to a RadSec client by its source address before the handshake (an
unknown source is closed at once, without TLS) and by its certificate after it (radius/tls.py).
Its bytes are cut into packets by their Length field (RFC 6613 §2.1: the stream has no other
framing), each handed to ``AccountingService.on_packet``: the same decoding, authenticator
checks (the secret is "radsec", RFC 6614 §2.3), dedup and durability as a UDP datagram. The
intake's ``replies`` (replies.LoopReplies) are the packets' ``Sender``: the commit thread hands
them a commit's replies after the COMMIT, and the event loop writes them to their TLS streams.

A reply's address is (peer host, connection number): the number stands where a UDP peer's port
does, in the dedup key (RFC 6613 §2.6.5: Identifiers are per connection) and in the acks, and is
never reused, so a reply never reaches a later connection from the same port.

Everything is bounded and counted (``RadsecStats``, radtrack_radsec_* metrics): connections
(radsec_max_connections), the handshake and a half-sent packet (radsec_read_timeout), idle
connections (radsec_idle_timeout), replies a client does not read (its reading pauses). A bad
Length field, a malformed packet or a failed authenticator closes the connection (RFC 6613
§2.6.4: the stream cannot be trusted any more); the packet is dropped and counted as over UDP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from collections import Counter
from collections.abc import Sequence

from radtrack.logs import RateLimiter
from radtrack.radius.codec import MAX_PACKET_SIZE
from radtrack.radius.settings import ClientSettings, RadiusSettings
from radtrack.radius.tls import RadsecClients, certificate_names
from radtrack.replies import LoopReplies
from radtrack.service import AccountingService
from radtrack.transport import Address

logger = logging.getLogger(__name__)

# connection numbers start above every port number: a RadSec reply address is never a UDP one
FIRST_CONNECTION = 1 << 16
# why a connection was refused before it carried a packet (radtrack_radsec_refused_total)
REFUSALS = (
    "accept_failed",  # accept(2) failed (e.g. out of file descriptors): the backlog waits
    "too_many",
    "unknown_client",
    "handshake_failed",
    "handshake_timeout",
    "certificate_mismatch",
)
# why an established connection closed (radtrack_radsec_closed_total)
CLOSES = (
    "peer",
    "idle",
    "stalled",
    "bad_length",
    "malformed",
    "bad_authenticator",
    "client_removed",
    "shutdown",
)
# the drops after which RFC 6613 §2.6.4 closes the connection
_CLOSING_DROPS = frozenset({"malformed", "bad_authenticator"})
SHUTDOWN_SECONDS = 2.0  # for a peer's TLS close_notify


class RadsecStats:
    """Counters for metrics and tests."""

    def __init__(self) -> None:
        self.accepted = 0  # handshakes completed by a known client
        self.received = 0  # packets read (all of them also in service.Stats.received)
        self.refused: Counter[str] = Counter()
        self.closed: Counter[str] = Counter()


class RadsecConnection(asyncio.Protocol):
    """One accepted TCP connection: the TLS stream's protocol once its handshake is done
    (``connection_made``), matched to a client by its certificate then."""

    def __init__(self, intake: RadsecIntake, raw: socket.socket, host: str, number: int) -> None:
        self.intake = intake
        self.raw: socket.socket | None = raw  # until TLS has it
        self.handshaking = False  # its handshake began (the socket is TLS's to close)
        self.host = host
        self.number = number
        self.address: Address = (host, number)  # its replies' address
        self.transport: asyncio.Transport | None = None  # the TLS stream
        self.client: ClientSettings | None = None  # known once established
        self.names: list[str] = []  # its certificate's (radius/tls.py certificate_names)
        self.pending = b""  # the start of a packet not complete yet
        self.partial_since: float | None = None  # when that packet's first octet came
        self.last_activity = 0.0
        self.closing: str | None = None  # why it is being closed
        self.throttled = False  # its replies are not read: its requests are not either

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.raw = None
        self.intake._established(self, transport)  # type: ignore[arg-type]

    def connection_lost(self, exc: Exception | None) -> None:
        self.intake._lost(self)

    def data_received(self, data: bytes) -> None:
        client = self.client
        if client is None or self.closing is not None or not self.intake.reading:
            return  # refused (its certificate), being closed, or shutdown: nothing is read
        if self.pending:
            data = self.pending + data
            self.pending = b""
        intake = self.intake
        now = intake.now()
        self.last_activity = now
        size = len(data)
        pos = 0
        while size - pos >= 4:
            length = data[pos + 2] << 8 | data[pos + 3]  # RFC 2865 §3: 20..4096 octets
            if length < 20 or length > MAX_PACKET_SIZE:
                reason = "malformed" if length < 20 else "oversized"
                intake.service.refuse(reason, self.host, f"Length field {length} over RadSec")
                self.close("bad_length")
                return
            end = pos + length
            if end > size:
                break
            intake.stats.received += 1
            dropped = intake.service.on_packet(intake.replies, data[pos:end], self.address, client)
            pos = end
            if dropped is not None and dropped in _CLOSING_DROPS:
                self.close(dropped)
                return
            if self.closing is not None:
                return
        if pos < size:
            self.pending = data[pos:]
            if pos or self.partial_since is None:  # a new packet began in this read
                self.partial_since = now
        else:
            self.partial_since = None

    def write(self, data: bytes) -> bool:
        if self.transport is None or self.closing is not None:
            return False
        self.transport.write(data)
        self.last_activity = self.intake.now()
        return True

    def pause_writing(self) -> None:
        self.throttled = True
        self.update_reading()

    def resume_writing(self) -> None:
        self.throttled = False
        self.update_reading()

    def update_reading(self) -> None:
        transport = self.transport
        if transport is None or self.closing is not None:
            return
        if self.throttled or not self.intake.reading:
            transport.pause_reading()
        else:
            transport.resume_reading()

    def close(self, reason: str) -> None:
        """Close it (counted now, as one of CLOSES): what was written still goes, then TLS's
        close_notify."""
        if self.closing is None:
            self.closing = reason
            if self.client is not None:
                self.intake._closed(self, reason)
            if self.transport is not None:
                self.transport.close()


class RadsecIntake:
    """The RadSec listeners, their connections, and the Sender of their replies (``replies``)."""

    def __init__(
        self, settings: RadiusSettings, context: ssl.SSLContext, service: AccountingService
    ) -> None:
        self.settings = settings
        self.context = context
        self.service = service
        self.clients = RadsecClients(settings.clients)
        self.stats = RadsecStats()
        self.connections: dict[int, RadsecConnection] = {}
        self.reading = True
        self._listening: list[socket.socket] = []
        self._accepting = False
        self._handshakes: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._next_number = FIRST_CONNECTION
        self._loop: asyncio.AbstractEventLoop | None = None
        self.replies = LoopReplies(self.connections)  # the Sender of every connection's
        self._none_left: asyncio.Event | None = None
        self._warn = RateLimiter()

    async def start(self, sockets: Sequence[socket.socket]) -> None:
        """Accept on the bound, listening, non-blocking sockets (sockets.bind_all)."""
        loop = self._loop = self.replies.loop = asyncio.get_running_loop()
        self._listening = list(sockets)
        for sock in self._listening:
            loop.add_reader(sock.fileno(), self._acceptable, sock)
        self._accepting = True
        self._sweeper = loop.create_task(self._sweep(), name="radtrack-radsec-sweep")

    @property
    def addresses(self) -> list[Address]:
        return [sock.getsockname()[:2] for sock in self._listening]

    def now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    def reconfigure(self, settings: RadiusSettings) -> None:
        """New clients (SIGHUP): each connection is matched again; one that no client takes
        any more is closed, the others go on with their client's new settings."""
        self.clients = RadsecClients(settings.clients)
        for conn in list(self.connections.values()):
            if conn.client is None:
                continue  # in its handshake: matched when it completes
            client = self.clients.choose(conn.host, conn.names)
            if client is None:
                conn.close("client_removed")
            else:
                conn.client = client

    # -- connections ------------------------------------------------------------------------
    def _refuse(self, reason: str, peer: str, detail: str = "") -> None:
        self.stats.refused[reason] += 1
        allowed, suppressed = self._warn.allow(f"{reason}/{peer}")
        if allowed:
            logger.warning(
                "event=radsec_refused reason=%s peer=%s%s%s",
                reason,
                peer,
                f' detail="{detail}"' if detail else "",
                f" suppressed={suppressed}" if suppressed else "",
            )

    def _acceptable(self, listening: socket.socket) -> None:
        for _ in range(64):  # a bounded batch per wake-up, like UDP's
            try:
                raw, peer = listening.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. EMFILE: the backlog keeps them; try again in 1 s
                self._refuse("accept_failed", "-", str(exc))
                assert self._loop is not None
                self._loop.remove_reader(listening.fileno())
                self._loop.call_later(1.0, self._accept_again, listening)
                return
            self._accept(raw, str(peer[0]))

    def _accept_again(self, listening: socket.socket) -> None:
        if self._accepting and self._loop is not None and listening.fileno() != -1:
            self._loop.add_reader(listening.fileno(), self._acceptable, listening)

    def _accept(self, raw: socket.socket, host: str) -> None:
        """A TCP connection: refused at once when there are too many or its source is no
        RadSec client's, else its TLS handshake begins."""
        if len(self.connections) >= self.settings.radsec_max_connections:
            raw.close()
            self._refuse("too_many", host, f"{len(self.connections)} open")
            return
        if not self.clients.candidates(host):
            raw.close()
            self._refuse("unknown_client", host)
            return
        raw.setblocking(False)
        conn = RadsecConnection(self, raw, host, self._next_number)
        self._next_number += 1
        self.connections[conn.number] = conn
        assert self._loop is not None
        task = self._loop.create_task(self._handshake(conn, raw))
        self._handshakes.add(task)
        task.add_done_callback(self._handshakes.discard)

    async def _handshake(self, conn: RadsecConnection, raw: socket.socket) -> None:
        """TLS on the accepted socket; a handshake that fails, or takes longer than
        radsec_read_timeout, is refused and counted (connection_made: one that completes)."""
        assert self._loop is not None
        conn.handshaking = True
        timeout = self.settings.radsec_read_timeout
        started = time.monotonic()
        try:
            await self._loop.connect_accepted_socket(
                lambda: conn,
                raw,
                ssl=self.context,
                ssl_handshake_timeout=timeout,
                ssl_shutdown_timeout=SHUTDOWN_SECONDS,
            )
        except Exception as exc:  # the loop closed the socket; ssl.SSLError is an OSError
            self._lost(conn)
            if not isinstance(exc, OSError | EOFError):
                logger.error("event=radsec_handshake_crashed peer=%s error=%r", conn.host, exc)
            # the loop's own timeout ends it (its exception says so differently in asyncio
            # and uvloop; uvloop's clock counts whole milliseconds)
            if time.monotonic() - started >= timeout * 0.95:
                self._refuse("handshake_timeout", conn.host, f"{timeout:g} s")
            else:
                detail = getattr(exc, "reason", None) or f"{type(exc).__name__}: {exc}"
                self._refuse("handshake_failed", conn.host, str(detail))

    def _established(self, conn: RadsecConnection, transport: asyncio.Transport) -> None:
        """The handshake is done: the certificate names the client, or the connection is
        refused."""
        names = certificate_names(transport.get_extra_info("peercert"))
        client = self.clients.choose(conn.host, names)
        conn.transport = transport
        if client is None:
            conn.closing = "refused"
            transport.close()
            self._refuse("certificate_mismatch", conn.host, ",".join(names))
            return
        conn.client, conn.names = client, names
        conn.last_activity = self.now()
        self.stats.accepted += 1
        logger.info(
            "event=radsec_connected peer=%s port=%s client=%s certificate=%s",
            conn.host,
            transport.get_extra_info("peername")[1],
            client.name,
            names[0] if names else "",
        )
        conn.update_reading()

    def _lost(self, conn: RadsecConnection) -> None:
        if self.connections.get(conn.number) is conn:
            del self.connections[conn.number]
        if conn.client is not None and conn.closing is None:  # the client closed it
            conn.closing = "peer"
            self._closed(conn, "peer")
        if not self.connections and self._none_left is not None:
            self._none_left.set()

    def _closed(self, conn: RadsecConnection, reason: str) -> None:
        assert conn.client is not None
        self.stats.closed[reason] += 1
        if reason in ("peer", "idle", "shutdown"):
            logger.info(
                "event=radsec_closed peer=%s client=%s reason=%s",
                conn.host,
                conn.client.name,
                reason,
            )
            return
        allowed, suppressed = self._warn.allow(f"closed/{reason}/{conn.host}")
        if allowed:  # the client misbehaved: rate-limited like the packets it sends
            logger.warning(
                "event=radsec_closed peer=%s client=%s reason=%s%s",
                conn.host,
                conn.client.name,
                reason,
                f" suppressed={suppressed}" if suppressed else "",
            )

    async def _sweep(self) -> None:
        """Close the connections that stall halfway through a packet, or sit idle."""
        settings = self.settings
        read, idle = settings.radsec_read_timeout, settings.radsec_idle_timeout
        tick = min(1.0, read / 4, idle / 4 if idle else 1.0)
        while True:
            await asyncio.sleep(tick)
            now = self.now()
            for conn in list(self.connections.values()):
                if conn.client is None or conn.closing is not None:
                    continue
                if conn.partial_since is not None and now - conn.partial_since > read:
                    conn.close("stalled")
                elif idle and now - conn.last_activity > idle:
                    conn.close("idle")

    # -- shutdown ---------------------------------------------------------------------------
    def pause(self) -> None:
        """Intake stops (shutdown): no new connection, no more reading; replies still go."""
        self.reading = False
        if self._accepting and self._loop is not None:
            for sock in self._listening:
                self._loop.remove_reader(sock.fileno())
            self._accepting = False
        for conn in self.connections.values():
            conn.update_reading()
        if self._sweeper is not None:
            self._sweeper.cancel()

    async def close(self, timeout: float) -> None:
        """After the store's last commit: write what is left, close every connection (TLS
        close_notify), waiting up to ``timeout`` seconds before cutting them off."""
        self.pause()
        for task in list(self._handshakes):
            task.cancel()
        for task in list(self._handshakes):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for conn in list(self.connections.values()):
            if conn.transport is None:  # its handshake was cut short
                if not conn.handshaking and conn.raw is not None:
                    conn.raw.close()  # its task never ran; else TLS closed the socket
                self._lost(conn)
        if self._sweeper is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        self.replies.flush()
        self._none_left = asyncio.Event()
        for conn in list(self.connections.values()):
            conn.close("shutdown")
        if self.connections:
            try:
                await asyncio.wait_for(self._none_left.wait(), timeout)
            except TimeoutError:
                for conn in list(self.connections.values()):
                    if conn.transport is not None:
                        conn.transport.abort()
        for sock in self._listening:
            sock.close()
