#!/usr/bin/env python3
"""The long crash-safety run (issue #5): the real daemon under a retransmitting load, killed
with SIGKILL (or SIGTERM) at random points many times, then every acknowledged packet checked
against the database (tests/test_crash.py does a short version in the default suite).

    python3 bench/crash_soak.py --kills 25 --sessions 3000 --seed 11 [--signal TERM]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from radtrack.radius.dictionary import load  # noqa: E402
from tests.test_crash import crash_run  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kills", type=int, default=25)
    parser.add_argument("--sessions", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--signal", choices=("KILL", "TERM"), default="KILL")
    args = parser.parse_args()
    sig = signal.SIGKILL if args.signal == "KILL" else signal.SIGTERM
    began = time.monotonic()
    sources: list[str] = []  # each start's source=snapshot|table
    with tempfile.TemporaryDirectory() as tmp:
        kills, acked = asyncio.run(
            crash_run(
                Path(tmp),
                load(),
                sessions=args.sessions,
                kills=args.kills,
                seed=args.seed,
                sig=sig,
                sources=sources,
            )
        )
    print(
        json.dumps(
            {
                "signal": args.signal,
                "kills": kills,
                "packets_acknowledged_and_checked": acked,
                "sessions": args.sessions,
                "starts_by_source": {s: sources.count(s) for s in sorted(set(sources))},
                "seconds": round(time.monotonic() - began, 1),
                "result": "every acknowledged packet stored; no duplicate; online set as expected",
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
