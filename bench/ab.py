#!/usr/bin/env python3
"""A/B of two builds on one scenario of bench/run_all.py, the builds alternated.

    python3 bench/ab.py query --tree /work/main --tree /work/wt-base --rounds 3
    python3 bench/ab.py ingest --tree /work/main --tree /work/wt-base --rounds 3
    python3 bench/ab.py latency --tree /work/main --tree /work/wt-base --rounds 3

Each round starts radtrack from each tree in turn (PYTHONPATH=tree) and runs the scenario with
run_all's commands and options. ``query`` (3b): 100,000 sessions online, then getOnlineSessions
at 200 req/s beside ingest at 5,000 packets/s; prints the query p50/p99 and the ingest figures.
``ingest`` (1): durable ingest, closed loop, 300,000 packets over 100,000 sessions; prints
packets/s, ack p99 and CPU a packet by thread. ``saturated`` (3c): ingest at 3,000 packets/s
beside 64 connections of queries; prints the ack p99, drops and query rate. ``latency`` (2):
ingest paced at 5,000 packets/s for 25 s on a fresh daemon; prints the ack p50/p99.
Alternating the trees in one run is what makes two builds comparable on this shared box.
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


def saturated(tree: str, work: Path, sessions: int) -> dict[str, object]:
    """3c: ingest at 3,000 packets/s beside GraphQL saturated by 64 connections."""
    work.mkdir()
    with TreeRadtrack(work, tree) as rt:
        run_all.loadgen(rt.udp, run_all.SECRET, sessions=sessions, packets=sessions, workers=2)
        users = f"100000-{100000 + sessions // 2 - 1}"
        fed = run_all.background_loadgen(
            rt.udp, rate=3000, duration=20, sessions=sessions, seed=3, workers=1
        )
        time.sleep(2)
        query = run_all.graphql_load(rt.http, users=users, connections=64, duration=14)
        out = run_all.finish(fed)
        return {"acked_per_s": out["acked_per_s"], "lost": out["lost"],
                "ack_p99": out["latency_p99_ms"], "query_rps": query["requests_per_s"],
                "drops": run_all.drops(rt.metrics())}  # fmt: skip


def ingest(tree: str, work: Path, packets: int, paced: bool = False) -> dict[str, object]:
    work.mkdir()
    with TreeRadtrack(work, tree) as rt:
        before = rt.thread_cpu()
        if paced:
            load: dict[str, object] = {"rate": 5000, "duration": 25, "workers": 1}
        else:
            load = {"packets": packets, "workers": 2, "window": 512}
        out = run_all.loadgen(rt.udp, run_all.SECRET, sessions=100_000, **load)
        after = rt.thread_cpu()
        acked = max(1, int(out["acked"]))  # type: ignore[call-overload]
        cpu = {k: round((after[k] - before.get(k, 0.0)) * 1e6 / acked, 1) for k in after}
        return {"acked_per_s": out["acked_per_s"], "lost": out["lost"],
                "ack_p50": out["latency_p50_ms"], "ack_p99": out["latency_p99_ms"],
                "us_per_packet": cpu}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=("query", "ingest", "latency", "saturated"))
    parser.add_argument("--tree", action="append", required=True)
    parser.add_argument("--packets", type=int, default=300_000, help="ingest: packets")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=float, default=17.0)
    parser.add_argument("--sessions", type=int, default=100_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="radtrack-ab-"))
    seen: dict[str, list[float]] = {t: [] for t in args.tree}
    for r in range(args.rounds):
        for i, tree in enumerate(args.tree):
            if args.scenario == "saturated":
                got = saturated(tree, work / f"{r}-{i}", args.sessions)
                seen[tree].append(float(got["ack_p99"]))  # type: ignore[arg-type]
                print(json.dumps({"round": r, "tree": tree, "load": os.getloadavg()[0], **got}))
                continue
            if args.scenario in ("ingest", "latency"):
                paced = args.scenario == "latency"
                got = ingest(tree, work / f"{r}-{i}", args.packets, paced)
                figure = got["ack_p99" if paced else "acked_per_s"]
                seen[tree].append(float(figure))  # type: ignore[arg-type]
                print(json.dumps({"round": r, "tree": tree, "load": os.getloadavg()[0], **got}))
                continue
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
    what = {"ingest": "packets/s", "latency": "ack p99 ms", "query": "query p99 ms",
            "saturated": "ack p99 ms beside saturated queries"}[args.scenario]  # fmt: skip
    for tree, values in seen.items():
        print(f"{tree}: {what} median {statistics.median(values):.2f} of {values}")


if __name__ == "__main__":
    main()
