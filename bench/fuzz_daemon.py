#!/usr/bin/env python3
"""Long fuzz run of the whole daemon (the long variant of tests/test_fuzz_daemon.py).

    python3 bench/fuzz_daemon.py --cases 100000 --seed 1

A real daemon (its own event loop in a thread, a SQLite file in a temp dir) gets authenticated
Accounting-Requests with odd contents from one NAS (tests/oddpackets.py: arbitrary octets in
every text attribute the codec keeps, integers at the edges of 32 bits, values of the wrong
size, Accounting-On/Off among them) interleaved with normal Starts from another NAS, over UDP on
127.0.0.1, in batches. After every batch: every normal packet was answered and its session is
online, the daemon is ready; every ``--check-every`` batches and at the end, memory equals the
store (sessions overlaid with the journal); at the end a restart rebuilds the same online set.
Every odd packet is expected to be answered too; one that is not is counted (and is a failure
unless the daemon counted it as dropped for a reason it gives).

The summary is JSON on stdout; exit status 1 on the first broken invariant, with the batch's
seed on stderr to replay it.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from radtrack.model import session_key  # noqa: E402
from tests.conftest import make_settings  # noqa: E402
from tests.oddpackets import (  # noqa: E402
    STOP_TIME,
    DaemonThread,
    Sender,
    datagram,
    differences,
    normal_start,
    random_odd_request,
)

ODD_SECRET = b"odd-nas-secret-0123"
NORMAL_SECRET = b"normal-nas-secret-0123"
NORMAL_SOURCE = "127.0.0.2"
CLIENTS = [
    {"name": "nas-odd", "address": "127.0.0.1", "secret": ODD_SECRET.decode()},
    {"name": "nas-normal", "address": NORMAL_SOURCE, "secret": NORMAL_SECRET.decode()},
]


def fail(message: str, seed: int) -> None:
    print(f"FAILED: {message} (batch seed {seed})", file=sys.stderr)
    sys.exit(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=100_000, help="odd packets in all")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--batch", type=int, default=100, help="odd packets a batch (<= 200)")
    parser.add_argument("--check-every", type=int, default=20, help="batches between checks")
    args = parser.parse_args()
    batch_size = max(1, min(args.batch, 200))

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="radtrack-fuzz-") as tmp:
        settings = make_settings(Path(tmp), radius={"clients": CLIENTS}, api={"listen": ""})
        harness = DaemonThread(settings)
        harness.start()
        odd, normal = Sender("127.0.0.1"), Sender(NORMAL_SOURCE)
        master = random.Random(args.seed)
        sent = answered = normal_sent = batches = checks = 0
        normal_ids: list[str] = []
        slowest_batch = 0.0
        try:
            while sent < args.cases:
                seed = master.getrandbits(64)
                rng = random.Random(seed)
                count = min(batch_size, args.cases - sent)
                batch_started = time.monotonic()
                odd_ids: set[int] = set()
                normal_batch: set[int] = set()
                for _ in range(count):
                    if rng.random() < 0.2:
                        number = normal_sent
                        identifier = normal.identifier()
                        packet = normal_start(f"n-{number}", 70_000 + number, 1_705_314_600)
                        normal.send(datagram(identifier, NORMAL_SECRET, packet), harness.port)
                        normal_batch.add(identifier)
                        normal_ids.append(session_key("nas-normal/192.0.2.1", f"n-{number}", None))
                        normal_sent += 1
                    identifier = odd.identifier()
                    request = random_odd_request(rng)
                    odd.send(datagram(identifier, ODD_SECRET, request.attributes()), harness.port)
                    odd_ids.add(identifier)
                got_normal = normal.replies(normal_batch, 10.0)
                if got_normal != normal_batch:
                    fail(f"{len(normal_batch - got_normal)} normal packets not answered", seed)
                got_odd = odd.replies(odd_ids, 10.0)
                answered += len(got_odd & odd_ids)
                sent += count
                batches += 1
                daemon = harness.daemon
                if not daemon.store.healthy:
                    fail("the daemon is not ready", seed)
                recent = normal_ids[len(normal_ids) - len(normal_batch) :]
                missing = [sid for sid in recent if daemon.index.get(sid) is None]
                if missing:
                    fail(f"normal sessions not online: {missing[:3]}", seed)
                slowest_batch = max(slowest_batch, time.monotonic() - batch_started)
                if batches % args.check_every == 0 or sent >= args.cases:
                    memory, stored = harness.state()
                    problems = differences(memory, stored)
                    if problems:
                        fail(f"memory != store: {problems[:3]}", seed)
                    missing = [sid for sid in normal_ids if daemon.index.get(sid) is None]
                    if missing:
                        fail(f"normal sessions not online: {missing[:3]}", seed)
                    checks += 1
            dropped = dict(harness.daemon.service.stats.dropped)
            before, _ = harness.state()
            online = {sid: row for sid, row in before.items() if row[STOP_TIME] is None}
            harness.stop()
            recovery_started = time.monotonic()
            harness.start()
            recovery = time.monotonic() - recovery_started
            after, stored = harness.state()
            rebuilt = {sid: row for sid, row in after.items() if row[STOP_TIME] is None}
            if rebuilt != online or differences(after, stored):
                fail("a restart did not rebuild the online set", args.seed)
        finally:
            odd.close()
            normal.close()
            harness.close()
    unanswered = sent - answered
    summary = {
        "cases": sent,
        "seed": args.seed,
        "odd_answered": answered,
        "odd_unanswered": unanswered,
        "dropped": dropped,
        "normal_packets": normal_sent,
        "batches": batches,
        "memory_store_checks": checks + 1,
        "online_after_restart": len(rebuilt),
        "restart_seconds": round(recovery, 2),
        "slowest_batch_seconds": round(slowest_batch, 3),
        "seconds": round(time.monotonic() - started, 1),
        "python": platform.python_version(),
    }
    print(json.dumps(summary))
    if unanswered and unanswered != sum(dropped.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
