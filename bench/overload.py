#!/usr/bin/env python3
"""Overload (issue #5, the long variant): offer several times what radtrack can commit for
30 s, then a normal load. Reports peak RSS (bounded by radius.queue_size), drops by reason,
and checks that every packet the load generator saw acknowledged is in the database and that
the daemon catches up once the load falls.

    python3 bench/overload.py --rate 15000 --seconds 30
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run_all import SECRET, Radtrack, drops, loadgen  # noqa: E402

from radtrack.store import journal  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=int, default=15_000, help="offered packets/s")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--sessions", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, Radtrack(Path(tmp)) as rt:
        peak = 0.0
        stop = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, rt.rss_mb())
                time.sleep(0.2)

        sampler = threading.Thread(target=sample)
        sampler.start()
        ack_log = Path(tmp) / "acked.tsv"
        overload = loadgen(
            rt.udp, SECRET, sessions=args.sessions, rate=args.rate, duration=args.seconds,
            workers=2, retries=0, ack_log=ack_log, seed=5,
        )  # fmt: skip
        metrics = rt.metrics()
        recovery = loadgen(
            rt.udp, SECRET, sessions=args.sessions, rate=2000, duration=10, workers=1, seed=6
        )
        stop.set()
        sampler.join()
        acked = {line.split("\t")[0] for line in ack_log.read_text().splitlines()}
        conn = journal.open_current(rt.db)
        stored = {row[0] for row in conn.execute("SELECT session_id FROM current_sessions")}
        conn.close()
        missing = acked - stored
        print(
            json.dumps(
                {
                    "offered_per_s": args.rate,
                    "seconds": args.seconds,
                    "overload": {
                        k: overload[k]
                        for k in ("sent", "acked", "lost", "acked_per_s", "latency_p99_ms")
                    },
                    "server_drops": drops(metrics),
                    "peak_rss_mb": round(peak, 1),
                    "acked_sessions_missing_from_db": len(missing),
                    "after_the_load_falls": {
                        k: recovery[k] for k in ("sent", "acked", "lost", "latency_p99_ms")
                    },
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
