"""Authenticated Accounting-Requests with odd contents, for the daemon-wide fuzz test
(tests/test_fuzz_daemon.py) and its long variant (bench/fuzz_daemon.py).

An odd request is structurally valid and signed with the right secret, so it passes the codec's
checks and reaches the accounting core and the store; only its values are odd: arbitrary octets
in every text attribute the codec keeps (not UTF-8, NUL, empty, 253 octets), integers at the
edges of 32 bits, values of the wrong size. Whatever they hold, radtrack must store them or drop
them, and never let one of them stop the packets of everyone else (issue #16).
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from radtrack.model import SESSION_COLUMNS

ACCOUNTING_REQUEST = 4
ZERO = b"\x00" * 16

# Acct-Status-Type values radtrack tracks (RFC 2866 §5.1)
START, STOP, INTERIM, ACCOUNTING_ON, ACCOUNTING_OFF = 1, 2, 3, 7, 8
ACCT_STATUS_TYPE = 40
ACCT_SESSION_ID = 44
NAS_IP_ADDRESS = 4
# every text or octets attribute the codec keeps (radtrack/radius/codec.py KEPT_ORDER)
TEXT_TYPES = {
    "User-Name": 1,
    "NAS-Identifier": 32,
    "NAS-Port-Id": 87,
    "Called-Station-Id": 30,
    "Calling-Station-Id": 31,
    "Connect-Info": 77,
    "Class": 25,
    "Framed-IP-Address": 8,
    "NAS-IPv6-Address": 95,
}
# every integer attribute the codec keeps
INTEGER_TYPES = {
    "Event-Timestamp": 55,
    "Acct-Delay-Time": 41,
    "Acct-Input-Octets": 42,
    "Acct-Output-Octets": 43,
    "Acct-Input-Gigawords": 52,
    "Acct-Output-Gigawords": 53,
    "Acct-Input-Packets": 47,
    "Acct-Output-Packets": 48,
    "Acct-Session-Time": 46,
    "Acct-Interim-Interval": 85,
    "NAS-Port-Type": 61,
    "Acct-Terminate-Cause": 49,
}
BOUNDARY_INTEGERS = (0, 1, 2**31 - 1, 2**31, 2**32 - 2, 2**32 - 1)
STOP_TIME = SESSION_COLUMNS.index("stop_time")


@dataclass(frozen=True)
class OddRequest:
    """What one odd request carries: its status, session id octets, and attribute values by
    type (an integer attribute's value is its octets too: usually 4, sometimes not)."""

    status: int
    session_id: bytes | None
    values: dict[int, bytes] = field(default_factory=dict)

    def attributes(self) -> list[tuple[int, bytes]]:
        attrs = [(ACCT_STATUS_TYPE, struct.pack("!I", self.status))]
        if self.session_id is not None:
            attrs.append((ACCT_SESSION_ID, self.session_id))
        attrs += sorted(self.values.items())
        return attrs


def datagram(identifier: int, secret: bytes, attributes: list[tuple[int, bytes]]) -> bytes:
    """An Accounting-Request with its Request Authenticator (RFC 2866 §3)."""
    body = b"".join(bytes((kind, len(value) + 2)) + value for kind, value in attributes)
    head = struct.pack("!BBH", ACCOUNTING_REQUEST, identifier & 0xFF, 20 + len(body))
    authenticator = hashlib.md5(head + ZERO + body + secret).digest()
    return head + authenticator + body


def normal_start(session_id: str, user_id: int, event_time: int) -> list[tuple[int, bytes]]:
    """A Start as a well-behaved NAS sends it."""
    return [
        (ACCT_STATUS_TYPE, struct.pack("!I", START)),
        (ACCT_SESSION_ID, session_id.encode()),
        (1, str(user_id).encode()),  # User-Name
        (NAS_IP_ADDRESS, bytes((192, 0, 2, 1))),
        (87, b"1001"),  # NAS-Port-Id
        (61, struct.pack("!I", 5)),  # NAS-Port-Type Virtual
        (77, b"WireGuard"),  # Connect-Info
        (31, b"AA:BB:CC:DD:EE:FF"),  # Calling-Station-Id
        (8, bytes((100, 64, 0, 50))),  # Framed-IP-Address
        (55, struct.pack("!I", event_time)),  # Event-Timestamp
    ]


def random_octets(rng: random.Random) -> bytes:
    """Octets a misbehaving NAS might send: mostly text-like, often not UTF-8."""
    kind = rng.random()
    size = rng.choice((0, 1, 2, 4, 16, rng.randint(0, 64), 253))
    if kind < 0.3:
        return rng.randbytes(size)
    if kind < 0.5:
        return "".join(rng.choice("aé中\x00\\x") for _ in range(size)).encode()[:253]
    if kind < 0.7:
        return ("café".encode("latin-1") * (size // 4 + 1))[:253]
    return rng.choice((b"\xff", b"\xffsid", b"\x00", b"\\xff", b"a\x00b", b"\xc3", b"\xed\xa0\x80"))


def random_integer(rng: random.Random) -> bytes:
    if rng.random() < 0.1:
        return rng.randbytes(rng.choice((0, 1, 3, 5, 8)))  # the wrong size
    if rng.random() < 0.6:
        return struct.pack("!I", rng.choice(BOUNDARY_INTEGERS))
    return struct.pack("!I", rng.getrandbits(32))


def random_odd_request(rng: random.Random) -> OddRequest:
    status = rng.choice((START, START, INTERIM, INTERIM, STOP, ACCOUNTING_ON, ACCOUNTING_OFF))
    session_id: bytes | None = random_octets(rng)
    if status in (ACCOUNTING_ON, ACCOUNTING_OFF) and rng.random() < 0.5:
        session_id = None  # optional there (RFC 2866 §5.5)
    values = {}
    for kind in TEXT_TYPES.values():
        if rng.random() < 0.6:
            values[kind] = random_octets(rng)
    for kind in INTEGER_TYPES.values():
        if rng.random() < 0.5:
            values[kind] = random_integer(rng)
    if rng.random() < 0.5:
        values[NAS_IP_ADDRESS] = rng.choice((rng.randbytes(4), rng.randbytes(rng.randint(0, 6))))
    return OddRequest(status, session_id, values)


# -- the harness: a real daemon in a thread of its own, its state read on its event loop -------


class DaemonThread:
    """A Daemon running on an event loop in a background thread, so that a synchronous test
    (hypothesis) or a benchmark can send real datagrams and wait for real replies."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.daemon: Any = None

    def call(self, coro: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> None:
        from radtrack.daemon import Daemon

        async def start() -> Any:
            daemon = Daemon(self.settings)
            await daemon.start()
            return daemon

        self.daemon = self.call(start())

    def stop(self) -> None:
        if self.daemon is not None:
            self.call(self.daemon.stop())
            self.daemon = None

    def close(self) -> None:
        self.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    @property
    def port(self) -> int:
        return int(self.daemon.listeners[0].address[1])

    def state(self) -> tuple[dict[str, tuple[object, ...]], dict[str, tuple[object, ...]]]:
        """After everything submitted is committed: (memory, store), each session id -> row, for
        every session the store holds (memory: what the live state has for the same ids), and
        the online sessions of memory that the store does not hold."""

        async def read() -> tuple[dict[str, tuple[object, ...]], dict[str, tuple[object, ...]]]:
            daemon = self.daemon
            await daemon.store.flush()
            while daemon.store.queued:  # the stale timer closed sessions meanwhile
                await daemon.store.flush()
            # nothing in flight: read both without giving the event loop a turn in between
            return snapshot(daemon)

        return self.call(read())  # type: ignore[no-any-return]


def snapshot(daemon: Any) -> tuple[dict[str, tuple[object, ...]], dict[str, tuple[object, ...]]]:
    """(memory, store) of a daemon with nothing in flight, both session id -> row: every
    session the store holds, what the live state has for the same ids, and the online
    sessions of the live state (a blocking read of the store: call it on the daemon's loop
    between two of its steps)."""
    stored = store_rows(daemon.settings.store.path)
    index = daemon.index
    memory = {}
    for sid in stored:
        session = index.find(sid)
        if session is not None:
            memory[sid] = session.row()
    for session in index:
        memory[session.id] = session.row()
    return memory, stored


def store_rows(db: Path) -> dict[str, tuple[object, ...]]:
    """Every session the store holds (sessions overlaid with the journal), id -> row; reading it
    fails if any text in it is not valid UTF-8."""
    from radtrack.store import journal

    conn = journal.open_current(db)
    try:
        return {row[0]: tuple(row) for row in conn.execute("SELECT * FROM current_sessions")}
    finally:
        conn.close()


def differences(
    memory: dict[str, tuple[object, ...]], stored: dict[str, tuple[object, ...]]
) -> list[str]:
    """Where memory and the store disagree: an online session only one of them has, or a session
    both have with different values (a closed one memory has forgotten is fine: it keeps a
    bounded number)."""
    problems = []
    for sid, row in memory.items():
        if sid not in stored:
            problems.append(
                f"{sid}: in memory ({'online' if row[STOP_TIME] is None else 'closed'}), not stored"
            )
        elif stored[sid] != row:
            problems.append(f"{sid}: memory {row!r} != store {stored[sid]!r}")
    for sid, row in stored.items():
        if row[STOP_TIME] is None and sid not in memory:
            problems.append(f"{sid}: online in the store, not in memory")
    return problems


class Sender:
    """A UDP socket bound to one loopback address that sends datagrams and collects replies
    by Identifier."""

    def __init__(self, source: str) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((source, 0))
        self.next_id = 0

    def identifier(self) -> int:
        identifier, self.next_id = self.next_id, (self.next_id + 1) & 0xFF
        return identifier

    def send(self, data: bytes, port: int) -> None:
        self.sock.sendto(data, ("127.0.0.1", port))

    def replies(self, expected: set[int], timeout: float) -> set[int]:
        """The Identifiers of the replies that came in (waiting for ``expected``, at most
        ``timeout`` seconds)."""
        got: set[int] = set()
        deadline = time.monotonic() + timeout
        while not expected <= got:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.sock.settimeout(left)
            try:
                reply = self.sock.recv(4096)
            except TimeoutError:
                break
            got.add(reply[1])
        return got

    def close(self) -> None:
        self.sock.close()
