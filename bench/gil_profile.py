#!/usr/bin/env python3
"""Who holds the GIL under saturated ingest: py-spy samples of the daemon's threads, those
holding the GIL (``--gil``) and all of them, turned into microseconds a packet by thread.

    python3 bench/gil_profile.py                 # 400,000 packets, 8 s of samples at 500 Hz
    python3 bench/gil_profile.py --top 15        # and each thread's busiest lines

Needs py-spy (``pip install py-spy``; not a dependency of radtrack). The load is run_all's
step 1 (closed loop, 2 workers, window 512, 100,000 sessions). What it answers: the GIL time a
packet of the event loop and of the commit thread together bounds the packets/s of the design
(one interpreter, one GIL) whatever the cores: at G microseconds a packet, 1e6 / G packets/s.
Two runs, one per mode, so each has its own rate; the summary prints both.
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run_all  # noqa: E402


def sample(gil: bool, seconds: int, rate: int, packets: int, out: Path) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="radtrack-gil-"))
    with run_all.Radtrack(work) as rt:
        assert rt.proc is not None
        load = run_all.background_loadgen(
            rt.udp, sessions=100_000, packets=packets, workers=2, window=512, seed=1
        )
        time.sleep(4)  # past the first round of Starts
        args = ["py-spy", "record", "--pid", str(rt.proc.pid), "--threads", "--nonblocking",
                "-f", "raw", "-d", str(seconds), "-r", str(rate), "-o", str(out)]  # fmt: skip
        subprocess.run([*args, "--gil"] if gil else args, capture_output=True, check=True)
        summary = run_all.finish(load)
    shutil.rmtree(work, ignore_errors=True)
    return summary


def by_thread(path: Path) -> tuple[collections.Counter[str], collections.Counter[tuple[str, str]]]:
    threads: collections.Counter[str] = collections.Counter()
    lines: collections.Counter[tuple[str, str]] = collections.Counter()
    for row in path.read_text().splitlines():
        stack, count = row.rsplit(" ", 1)
        frames = stack.split(";")
        name = frames[0].split(":", 1)[-1].strip()
        threads[name] += int(count)
        lines[(name, frames[-1])] += int(count)
    return threads, lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rate", type=int, default=500, help="samples a second")
    parser.add_argument("--packets", type=int, default=400_000)
    parser.add_argument("--top", type=int, default=0, help="busiest lines per thread")
    args = parser.parse_args()
    if not shutil.which("py-spy"):
        raise SystemExit("py-spy is not installed: pip install py-spy")
    report: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for gil in (True, False):
            out = Path(tmp) / ("gil.txt" if gil else "all.txt")
            summary = sample(gil, args.seconds, args.rate, args.packets, out)
            rate = float(summary["acked_per_s"])  # type: ignore[arg-type]
            threads, lines = by_thread(out)
            possible = args.seconds * args.rate
            mode = "holding the GIL" if gil else "running (with or without the GIL)"
            entry = {
                "packets_per_s": rate,
                "lost": summary.get("lost"),
                "share_of_time": {t: round(n / possible, 3) for t, n in threads.most_common()},
                "us_per_packet": {
                    t: round(n / possible / rate * 1e6, 1) for t, n in threads.most_common()
                },
            }
            report["gil" if gil else "all"] = entry
            print(f"{mode}, at {rate:,.0f} packets/s:")
            for name, count in threads.most_common():
                print(f"  {name:24s} {count / possible:6.1%} of the time, "
                      f"{count / possible / rate * 1e6:5.1f} us a packet")  # fmt: skip
            for name, _ in threads.most_common(3 if args.top else 0):
                top = [(n, line) for (t, line), n in lines.most_common() if t == name]
                for n, line in top[: args.top]:
                    print(f"      {n:5d} {line}")
    held = report["gil"]["us_per_packet"]  # type: ignore[index]
    total = sum(v for k, v in held.items())
    print(f"GIL held a packet, all threads: {total:.1f} us: at most {1e6 / total:,.0f} packets/s")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
