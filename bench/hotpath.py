#!/usr/bin/env python3
"""Event-loop CPU per accounting packet: the whole ``AccountingService.on_datagram`` path and the
bookkeeping after the commit, without the disk.

    python3 bench/hotpath.py                      # 50,000 packets, 5 runs, best run reported
    python3 bench/hotpath.py --socket             # through a real UdpListener and UDP sockets
    python3 bench/hotpath.py --profile            # cProfile of one run, top functions
    valgrind --tool=cachegrind --cache-sim=no python3 bench/hotpath.py --runs 1 --packets N
        # instructions: run with two N and divide the difference (stable on a busy machine)

Packets come from bench/loadgen.py's encoder (10 % Start, 80 % Interim, 10 % Stop). A warm-up
round (every session once) fills the live index first, so the timed packets meet the steady
state: known sessions, Interims updating counters, Stops closing, Starts opening. It runs on
the daemon's event loop (uvloop when installed), since the service may leave work to it.

The writer is a stand-in with the real one's split: every ``--batch`` packets a "commit" sends
the replies (the commit thread's work: not timed) and hands the callbacks back to the loop
(timed, with whatever they schedule). Its ``submit`` snapshots the sessions as the real one
does; the subscribers are those of a started daemon (device limits, the API's live view with
nobody subscribed). So the figure is the event-loop thread's CPU per packet.

By default datagrams are handed to ``on_datagram`` directly; with ``--socket`` they are sent to
a bound UdpListener in chunks of ``--batch`` and read by its ``_readable`` (recvfrom).

Reports microseconds of CPU (process time) per packet: the figure to compare before and after
a change on the packet path; and the cyclic GC's collections per 1,000 timed packets by
generation, with their CPU time (gc.callbacks), under the daemon's GC thresholds.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import importlib.util
import pickle
import pstats
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from radtrack import config  # noqa: E402
from radtrack.api.events import EventHub  # noqa: E402
from radtrack.cli import GC_FULL, GC_MIDDLE, GC_YOUNG  # noqa: E402
from radtrack.daemon import Daemon  # noqa: E402
from radtrack.model import SessionChange  # noqa: E402
from radtrack.radius.dictionary import load as load_dictionary  # noqa: E402
from radtrack.service import AccountingService  # noqa: E402
from radtrack.store import journal  # noqa: E402
from radtrack.transport import UdpListener  # noqa: E402

SECRET = "bench-secret-0123456789"
PEER = ("127.0.0.1", 40000)


def _loadgen() -> Any:
    spec = importlib.util.spec_from_file_location("loadgen", HERE / "loadgen.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FakeWriter:
    """The writer's interface on the event loop, without the disk: ``submit`` takes a snapshot
    of each changed session (``Session.row()``, as the real one does on the event loop) and
    keeps the callback; ``commit`` calls the callbacks."""

    def __init__(self) -> None:
        self.healthy = True
        self.finished: list[object] = []  # commits done on a thread (none here)
        self.callbacks: list[Callable[[bool], None]] = []
        self.acks: list[tuple[Any, bytes, Any]] = []
        self.rows: dict[str, tuple[tuple[object, ...], bool]] = {}

    @property
    def queued(self) -> int:
        return len(self.callbacks)

    def run_finished(self) -> None:
        pass

    def submit(
        self,
        changes: Sequence[SessionChange],
        done: Callable[[bool], None] | None = None,
        ack: tuple[Any, bytes, Any] | None = None,
    ) -> None:
        # as Writer.submit: a counters row for an Interim, else the whole row
        rows = self.rows
        for change in changes:
            session = change.session
            queued = rows.get(session.id)
            if change.counters_only and (queued is None or not queued[1]):
                rows[session.id] = (journal.counters_row(session), False)
            else:
                rows[session.id] = (journal.whole_row(session), True)
        if done is not None:
            self.callbacks.append(done)
        if ack is not None:
            self.acks.append(ack)

    def commit(self) -> list[Callable[[bool], None]]:
        """What the commit thread does after COMMIT: send the replies; returns the callbacks
        it hands back to the event loop."""
        callbacks, self.callbacks = self.callbacks, []
        acks, self.acks = self.acks, []
        self.rows = {}
        for sender, data, address in acks:
            sender.send_many([(data, address)])
        return callbacks


class GcProbe:
    """Cyclic GC collections and their CPU time (gc.callbacks), by generation, while on."""

    def __init__(self) -> None:
        self.on = False
        self.started = 0.0
        self.pauses: list[list[float]] = [[], [], []]
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if not self.on:
            return
        if phase == "start":
            self.started = time.process_time()
        else:
            self.pauses[info["generation"]].append(time.process_time() - self.started)

    def report(self, packets: int) -> str:
        parts = []
        for generation, pauses in enumerate(self.pauses):
            if pauses:
                parts.append(
                    f"gen{generation} {len(pauses) / packets * 1000:.2f}/1k packets "
                    f"(mean {sum(pauses) / len(pauses) * 1e3:.2f} ms, "
                    f"max {max(pauses) * 1e3:.2f} ms)"
                )
            else:
                parts.append(f"gen{generation} none")
        return "gc: " + ", ".join(parts)


GC_PROBE = GcProbe()


def completed(callbacks: list[Callable[[bool], None]]) -> None:
    """What the event loop does after a commit (Writer._completed)."""
    for done in callbacks:
        done(True)


class FakeListener:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append(data)

    def send_many(self, replies: list[tuple[bytes, tuple[str, int]]]) -> None:
        self.sent += [data for data, _ in replies]


def build(packets: int, sessions: int, seed: int) -> tuple[list[bytes], list[bytes]]:
    """(warm-up packets, timed packets), encoded once and kept in a temp file"""
    cache = Path(tempfile.gettempdir()) / f"radtrack-hotpath-{packets}-{sessions}-{seed}.pickle"
    if cache.exists():
        warmup, timed = pickle.loads(cache.read_bytes())
        return warmup, timed
    loadgen = _loadgen()
    cfg = loadgen.generator_parser().parse_args(
        ["--secret", SECRET, "--sessions", str(sessions), "--workers", "1", "--seed", str(seed)]
    )
    cfg.epoch = 1_700_000_000
    encoded, _mix = loadgen.build_packets(cfg, 0, sessions + packets, 16)
    warmup, timed = encoded[:sessions], encoded[sessions:]
    cache.write_bytes(pickle.dumps((warmup, timed)))
    return warmup, timed


def make_service() -> tuple[AccountingService, FakeWriter]:
    settings = config.parse(
        {
            "radius": {
                "listen": ["127.0.0.1:0"],
                "clients": [{"name": "nas-local", "address": "127.0.0.1", "secret": SECRET}],
            },
            "store": {"path": "/nonexistent/radtrack.db"},
            "api": {"listen": ""},
        }
    )
    daemon = Daemon(settings)  # not started: its live state, accountant and subscribers
    writer = FakeWriter()
    service = AccountingService(settings.radius, load_dictionary(), daemon.accountant, writer)  # type: ignore[arg-type]
    # the subscribers a started daemon has: the device-limit check and the API's live view
    service.subscribers.append(daemon.control.enforce_limits)
    service.subscribers.append(EventHub(daemon.users).publish)
    return service, writer


async def run_direct(warmup: list[bytes], timed: list[bytes], batch: int) -> tuple[float, int]:
    service, writer = make_service()
    listener = FakeListener()
    handle = service.on_datagram
    for data in warmup:
        handle(listener, data, PEER)  # type: ignore[arg-type]
    completed(writer.commit())
    await asyncio.sleep(0)
    listener.sent.clear()
    GC_PROBE.on = True
    elapsed = 0.0
    for i in range(0, len(timed), batch):
        start = time.process_time()
        for data in timed[i : i + batch]:
            handle(listener, data, PEER)  # type: ignore[arg-type]
        elapsed += time.process_time() - start
        callbacks = writer.commit()  # the commit thread's part: not timed
        start = time.process_time()
        completed(callbacks)
        await asyncio.sleep(0)  # what the callbacks left for the loop (call_soon)
        elapsed += time.process_time() - start
    GC_PROBE.on = False
    return elapsed, len(listener.sent)


async def run_socket(warmup: list[bytes], timed: list[bytes], batch: int) -> tuple[float, int]:
    service, writer = make_service()
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    server.bind(("127.0.0.1", 0))
    server.setblocking(False)
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    client.bind(("127.0.0.1", 0))
    client.setblocking(False)
    address = server.getsockname()
    listener = UdpListener(server, service.on_datagram, batch=batch)
    answered = 0

    def drain() -> int:
        count = 0
        while True:
            try:
                client.recv(65535)
            except BlockingIOError:
                return count
            count += 1

    def feed(chunk: list[bytes]) -> None:
        for data in chunk:
            client.sendto(data, address)

    for i in range(0, len(warmup), batch):
        feed(warmup[i : i + batch])
        listener._readable()
        completed(writer.commit())
        await asyncio.sleep(0)
        drain()
    GC_PROBE.on = True
    elapsed = 0.0
    for i in range(0, len(timed), batch):
        feed(timed[i : i + batch])
        start = time.process_time()
        listener._readable()
        elapsed += time.process_time() - start
        callbacks = writer.commit()  # the commit thread's part (the replies): not timed
        start = time.process_time()
        completed(callbacks)
        await asyncio.sleep(0)
        elapsed += time.process_time() - start
        answered += drain()
    GC_PROBE.on = False
    server.close()
    client.close()
    return elapsed, answered


def run(
    mode: Callable[[list[bytes], list[bytes], int], Coroutine[Any, Any, tuple[float, int]]],
    warmup: list[bytes],
    timed: list[bytes],
    batch: int,
) -> tuple[float, int]:
    try:
        import uvloop  # the daemon's event loop
    except ImportError:
        return asyncio.run(mode(warmup, timed, batch))
    return uvloop.run(mode(warmup, timed, batch))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--packets", type=int, default=50_000, help="timed packets (50000)")
    parser.add_argument("--sessions", type=int, default=5_000, help="concurrent sessions (5000)")
    parser.add_argument("--batch", type=int, default=256, help="packets per commit (256)")
    parser.add_argument("--runs", type=int, default=5, help="runs; the best is reported (5)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--socket", action="store_true", help="through a UdpListener and UDP")
    parser.add_argument("--profile", action="store_true", help="cProfile one run")
    args = parser.parse_args()
    gc.set_threshold(GC_YOUNG, GC_MIDDLE, GC_FULL)  # as `radtrack serve` sets it
    warmup, timed = build(args.packets, args.sessions, args.seed)
    mode = run_socket if args.socket else run_direct
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        run(mode, warmup, timed, args.batch)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
        return
    results = []
    for _ in range(args.runs):
        elapsed, answered = run(mode, warmup, timed, args.batch)
        if answered != len(timed):
            raise SystemExit(f"only {answered} of {len(timed)} packets answered")
        results.append(elapsed / len(timed) * 1e6)
    print(
        f"{'socket' if args.socket else 'direct'}: {len(timed)} packets, "
        f"best {min(results):.1f} us/packet, runs " + " ".join(f"{r:.1f}" for r in sorted(results))
    )
    print(GC_PROBE.report(len(timed) * args.runs))


if __name__ == "__main__":
    main()
