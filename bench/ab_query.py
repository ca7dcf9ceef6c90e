#!/usr/bin/env python3
"""A/B of target 3b alone: getOnlineSessions at 200 req/s beside ingest at 5,000 packets/s.

    python3 bench/ab_query.py --tree /work/main --tree /work/wt-base --rounds 3

Each round starts radtrack from each tree in turn (PYTHONPATH=tree), puts 100,000 sessions
online, then runs the 3b load of bench/run_all.py (the same commands and options) and prints
the query p50/p99 and ingest figures per tree; alternating the trees in one run is what makes
two builds comparable on this shared box.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run_all  # noqa: E402


class TreeRadtrack(run_all.Radtrack):
    def __init__(self, workdir: Path, tree: str) -> None:
        super().__init__(workdir)
        self.tree = tree

    def __enter__(self) -> TreeRadtrack:
        saved = run_all.ROOT
        run_all.ROOT = Path(self.tree)
        try:
            super().__enter__()
        finally:
            run_all.ROOT = saved
        return self


def one(tree: str, work: Path, duration: float, sessions: int) -> dict[str, object]:
    work.mkdir()
    with TreeRadtrack(work, tree) as rt:
        run_all.loadgen(rt.udp, run_all.SECRET, sessions=sessions, packets=sessions, workers=2)
        users = f"100000-{100000 + sessions // 2 - 1}"
        ingest = run_all.background_loadgen(
            rt.udp, rate=5000, duration=duration + 5, sessions=sessions, seed=2, workers=1
        )
        time.sleep(3)
        query = run_all.graphql_load(
            rt.http, users=users, connections=4, rate=200, duration=duration
        )
        fed = run_all.finish(ingest)
        return {"query": query, "ingest": fed, "rss_mb": rt.rss_mb()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", action="append", required=True)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=float, default=17.0)
    parser.add_argument("--sessions", type=int, default=100_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="radtrack-ab-"))
    seen: dict[str, list[float]] = {t: [] for t in args.tree}
    for r in range(args.rounds):
        for i, tree in enumerate(args.tree):
            out = one(tree, work / f"{r}-{i}", args.duration, args.sessions)
            q, fed = out["query"], out["ingest"]
            assert isinstance(q, dict) and isinstance(fed, dict)
            seen[tree].append(float(q["latency_p99_ms"]))
            print(
                json.dumps(
                    {
                        "round": r,
                        "tree": tree,
                        "load": os.getloadavg()[0],
                        "p50": q["latency_p50_ms"],
                        "p99": q["latency_p99_ms"],
                        "max": q["latency_max_ms"],
                        "rps": q["requests_per_s"],
                        "errors": q["errors"],
                        "acked": fed["acked_per_s"],
                        "lost": fed["lost"],
                        "ack_p99": fed["latency_p99_ms"],
                    }  # fmt: skip
                ),
                flush=True,
            )
    for tree, p99s in seen.items():
        print(f"{tree}: p99 median {statistics.median(p99s):.2f} ms of {p99s}")


if __name__ == "__main__":
    main()
