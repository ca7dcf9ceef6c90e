"""Crash safety: the real daemon, killed with SIGKILL at random moments under load, restarted.

A NAS-like sender retransmits every packet until it is answered (RFC 5080: accounting clients
retry). After the last kill: every acknowledged packet's effect is in the database, no session is
duplicated, and the online set the daemon rebuilds at start-up equals what the packets say.
The long variant (more kills, more packets) is bench/crash_soak.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pyrad.dictionary import Dictionary
from pyrad.packet import AcctPacket

from radtrack.store import journal

SECRET = "crash-test-secret-0123"


@dataclass
class Plan:
    """The packets of ``sessions`` sessions: Start, two Interims, and a Stop for most."""

    packets: list[tuple[str, str, int, bytes]] = field(default_factory=list)
    stopped: set[str] = field(default_factory=set)


def make_plan(dictionary: Dictionary, sessions: int, seed: int) -> Plan:
    rng = random.Random(seed)
    plan = Plan()
    base = int(time.time()) - 200  # recent: no session may count as stale meanwhile
    for n in range(sessions):
        sid = f"crash-{seed}-{n}"
        t0 = base + n
        steps = [
            ("Start", t0, 0),
            ("Interim-Update", t0 + 60, 60),
            ("Interim-Update", t0 + 120, 120),
        ]
        if rng.random() < 0.7:
            steps.append(("Stop", t0 + 180, 180))
            plan.stopped.add(sid)
        for status, ts, elapsed in steps:
            pkt = AcctPacket(dict=dictionary, secret=SECRET.encode(), id=rng.randrange(256))
            pkt["User-Name"] = str(1000 + n % 50)
            pkt["Acct-Status-Type"] = status
            pkt["Acct-Session-Id"] = sid
            pkt["NAS-IP-Address"] = "192.0.2.10"
            pkt["Event-Timestamp"] = ts
            pkt["Acct-Session-Time"] = elapsed
            pkt["Acct-Input-Octets"] = elapsed * 1000
            if status == "Stop":
                pkt["Acct-Terminate-Cause"] = "User-Request"
            plan.packets.append((sid, status, ts, pkt.RequestPacket()))
    return plan


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(
    tmp_path: Path, port: int, store: str | None = None, name: str = "radtrack"
) -> Path:
    """The config of a daemon child process; ``store``: the lines of its [store] table
    (default: SQLite in tmp_path, crash.db)."""
    if store is None:
        store = f'path = "{tmp_path / "crash.db"}"'
    path = tmp_path / f"{name}.toml"
    path.write_text(
        f"""
[radius]
listen = ["127.0.0.1:{port}"]
[[radius.clients]]
name = "crash-nas"
address = "127.0.0.1"
secret = "{SECRET}"
[store]
{store}
[api]
listen = ""
"""
    )
    return path


class Daemon:
    """radtrack serve as a child process."""

    def __init__(self, config: Path, sources: list[str] | None = None) -> None:
        self.config = config
        self.proc: asyncio.subprocess.Process | None = None
        self.last_stop = ""
        # where each start rebuilt the live state from (source=snapshot|table)
        self.sources = [] if sources is None else sources

    async def start(self) -> None:
        self.last_stop = ""
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "radtrack",
            "serve",
            "--config",
            str(self.config),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        assert self.proc.stderr is not None
        while True:
            line = await asyncio.wait_for(self.proc.stderr.readline(), 20)
            assert line, "radtrack exited during start-up"
            if b"event=recovered" in line:
                self.sources.append(line.split(b"source=")[1].split()[0].decode())
            if b"event=started" in line:
                break
        self._drain = asyncio.create_task(self._consume())

    async def _consume(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            if b"event=stopped" in line:
                self.last_stop = line.decode()

    async def kill(self, sig: int) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        code = await asyncio.wait_for(self.proc.wait(), 20)
        await self._drain
        return code


class Nas(asyncio.DatagramProtocol):
    """Sends every packet, retransmits what is unanswered, records what was acknowledged."""

    def __init__(self, plan: Plan, port: int, window: int = 64, retry: float = 0.25) -> None:
        self.plan = plan
        self.port = port
        self.window = window
        self.retry = retry
        self.acked: list[tuple[str, str, int]] = []
        self.transport: asyncio.DatagramTransport | None = None
        self._waiting: dict[int, asyncio.Future[None]] = {}
        self._by_ident: dict[int, int] = {}
        self._sent: dict[int, bytes] = {}  # packet index -> its Request Authenticator

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) >= 20 and data[0] == 5:
            index = self._by_ident.get(data[1])
            if index is not None and self._answers(index, data):
                future = self._waiting.get(index)
                if future is not None and not future.done():
                    future.set_result(None)

    def _answers(self, index: int, reply: bytes) -> bool:
        """The reply's Response Authenticator is over this packet's Request Authenticator
        (RFC 2866 §3): a late reply to an earlier packet of the same slot (a retransmission
        answered after its first copy) must not count as this one's acknowledgement."""
        request_authenticator = self._sent.get(index)
        if request_authenticator is None:
            return False
        expected = hashlib.md5(
            reply[:4] + request_authenticator + reply[20:] + SECRET.encode()
        ).digest()
        return expected == reply[4:20]

    async def _send_one(self, index: int, slot: int) -> None:
        sid, status, ts, data = self.plan.packets[index]
        # one identifier per in-flight slot, so replies match exactly one packet
        data = bytes([data[0], slot]) + data[2:]
        data = _resign(data)
        self._by_ident[slot] = index
        self._sent[index] = data[4:20]
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[index] = future
        assert self.transport is not None
        while True:
            self.transport.sendto(data, ("127.0.0.1", self.port))
            try:
                await asyncio.wait_for(asyncio.shield(future), self.retry)
                break
            except TimeoutError:
                continue  # like a NAS: retry (forever; the test bounds the whole run)
        del self._waiting[index]
        self.acked.append((sid, status, ts))

    async def run(self) -> None:
        """Deliver the packets of each session in order; sessions run in parallel."""
        sessions: dict[str, list[int]] = {}
        for i, (sid, _, _, _) in enumerate(self.plan.packets):
            sessions.setdefault(sid, []).append(i)
        slots: asyncio.Queue[int] = asyncio.Queue()
        for slot in range(self.window):
            slots.put_nowait(slot)

        async def session(indexes: list[int]) -> None:
            for index in indexes:
                slot = await slots.get()
                try:
                    await self._send_one(index, slot)
                finally:
                    slots.put_nowait(slot)

        await asyncio.gather(*(session(ix) for ix in sessions.values()))


def _resign(data: bytes) -> bytes:
    auth = hashlib.md5(data[:4] + b"\0" * 16 + data[20:] + SECRET.encode()).digest()
    return data[:4] + auth + data[20:]


def check_database(db: Path, nas: Nas, plan: Plan) -> None:
    conn = journal.open_current(db)  # after a SIGKILL the journal may hold unfolded rows
    try:
        rows = {
            r[0]: r
            for r in conn.execute(
                "SELECT session_id, start_time, last_update, stop_time, close_reason, input_octets"
                " FROM current_sessions"
            )
        }
        (count,) = conn.execute("SELECT count(*) FROM current_sessions").fetchone()
    finally:
        conn.close()
    assert count == len(rows), "a session was stored twice"
    for sid, status, ts in nas.acked:
        row = rows.get(sid)
        assert row is not None, f"acknowledged {status} of {sid} is not in the database"
        _, start_time, last_update, stop_time, close_reason, _ = row
        if status == "Start":
            assert start_time == ts
        elif status == "Interim-Update":
            assert last_update >= ts or stop_time is not None
        else:
            assert stop_time == ts and close_reason == "stop"
    online = {sid for sid, r in rows.items() if r[3] is None}
    expected_online = {sid for sid, _, _, _ in plan.packets} - plan.stopped
    assert online == expected_online


async def crash_run(
    tmp_path: Path,
    dictionary: Dictionary,
    *,
    sessions: int,
    kills: int,
    seed: int,
    sig: int,
    sources: list[str] | None = None,
) -> tuple[int, int]:
    rng = random.Random(seed)
    plan = make_plan(dictionary, sessions, seed)
    port = free_udp_port()
    daemon = Daemon(write_config(tmp_path, port), sources)
    await daemon.start()
    loop = asyncio.get_running_loop()
    transport, nas = await loop.create_datagram_endpoint(
        lambda: Nas(plan, port), local_addr=("127.0.0.1", 0)
    )
    try:
        sending = asyncio.create_task(nas.run())
        # kill at random points of the load: after a random number of acknowledgements plus a
        # random few milliseconds, so some kills land inside a commit
        points = sorted(rng.sample(range(50, len(plan.packets) - 50), kills))
        done_kills = 0
        for point in points:
            while len(nas.acked) < point and not sending.done():
                await asyncio.sleep(0.002)
            if sending.done():
                break
            await asyncio.sleep(rng.uniform(0, 0.02))
            code = await daemon.kill(sig)
            if sig == signal.SIGTERM:
                # a clean stop: everything accepted before intake stopped was answered
                assert code == 0
                assert " unanswered=0" in daemon.last_stop, daemon.last_stop
            done_kills += 1
            await daemon.start()
        await asyncio.wait_for(sending, 120)
    finally:
        transport.close()
    code = await daemon.kill(signal.SIGTERM)
    assert code == 0
    assert len(nas.acked) == len(plan.packets)
    check_database(tmp_path / "crash.db", nas, plan)
    return done_kills, len(nas.acked)


@pytest.mark.slow
@pytest.mark.asyncio
@pytest.mark.parametrize("seed", [1, 2])
async def test_sigkill_under_load_loses_nothing_acknowledged(
    tmp_path: Path, dictionary: Dictionary, seed: int
) -> None:
    kills, acked = await crash_run(
        tmp_path, dictionary, sessions=800, kills=5, seed=seed, sig=signal.SIGKILL
    )
    assert kills == 5, "the load ended before the daemon could be killed enough times"
    assert acked >= 2500


@pytest.mark.slow
@pytest.mark.asyncio
async def test_sigterm_under_load_loses_nothing(tmp_path: Path, dictionary: Dictionary) -> None:
    """...and each start after a clean stop under load rebuilds from that stop's snapshot
    (store/snapshot.py); the sessions it rebuilt take the rest of the load, and the store
    ends with every acknowledged packet and the online set the packets say."""
    sources: list[str] = []
    kills, _ = await crash_run(
        tmp_path, dictionary, sessions=600, kills=3, seed=7, sig=signal.SIGTERM, sources=sources
    )
    assert kills == 3
    assert sources == ["table", "snapshot", "snapshot", "snapshot"]
