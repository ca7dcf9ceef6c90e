"""RadSec (RADIUS over TLS, RFC 6614) ingest, measured: acknowledged Accounting-Requests per
second and acknowledgement latency over TLS connections, each with a window of requests in
flight (a reply lets the next request go: closed loop).

    python3 bench/radsec_load.py                       # 4 connections x 64 in flight, 10 s
    python3 bench/radsec_load.py --connections 1 --window 256 --seconds 20 --json
    python3 bench/radsec_load.py --udp                 # then bench/loadgen.py over UDP, same node

It starts ``radtrack serve`` (a child process, on uvloop, SQLite with synchronous FULL, in a
temp directory) with a RadSec listener on a free loopback port and certificates it makes itself
(tests/tlscerts.py: the ``cryptography`` package of the [test] extra). Every packet is encoded
before the timed phase, by bench/loadgen.py's generator (the same sessions and mix as its UDP
load), with the RadSec secret "radsec". The client runs on uvloop in this process: on a small
box it shares the cores with radtrack, so compare figures from one run (``--udp``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import ssl
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from tests.tlscerts import Pki, make_pki  # noqa: E402

sys.path.insert(0, str(HERE))
import loadgen  # noqa: E402

SECRET = "radsec"  # RFC 6614 §2.3
UDP_SECRET = "bench-secret-0123456789"
HEADER = struct.Struct("!BBH")
SEED = 17


def packets_for(connection: int, args: argparse.Namespace) -> list[bytes]:
    """Connection ``connection``'s packets: bench/loadgen.py's (its sessions, its 10/80/10 mix
    of Start, Interim-Update and Stop, its seed), signed with the RadSec secret; Identifier =
    position % 256: with a window of at most 256 and replies in order (a connection's answers
    come as they are committed), an Identifier is free again when it is reused."""
    cfg = argparse.Namespace(
        seed=SEED, workers=args.connections, sessions=args.sessions, nases=10, secret=SECRET
    )
    cfg.epoch = int(time.time())
    packets, _ = loadgen.build_packets(cfg, connection, args.packets // args.connections, 1)
    return packets


class Stream:
    """One TLS connection in closed loop: ``window`` requests in flight."""

    def __init__(self, packets: list[bytes], window: int) -> None:
        self.packets = packets
        self.window = window
        self.sent: dict[int, float] = {}  # Identifier -> when it went
        self.latencies: list[float] = []
        self.next = 0
        self.bad = 0

    async def run(self, port: int, context: ssl.SSLContext, until: float) -> None:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=context, server_hostname="127.0.0.1"
        )
        clock = time.perf_counter  # (uvloop's loop.time() counts whole milliseconds)
        try:
            self._send(writer, self.window, clock())
            while self.sent:
                head = await reader.readexactly(20)
                length = HEADER.unpack_from(head)[2]
                rest = await reader.readexactly(length - 20) if length > 20 else b""
                now = clock()
                went = self.sent.pop(head[1], None)
                if went is None or head[0] != 5 or len(head + rest) != length:
                    self.bad += 1
                    continue
                self.latencies.append(now - went)
                if now < until:
                    self._send(writer, 1, now)
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, ssl.SSLError):
                pass

    def _send(self, writer: asyncio.StreamWriter, count: int, now: float) -> None:
        out = []
        for _ in range(count):
            if self.next >= len(self.packets):
                return
            data = self.packets[self.next]
            self.next += 1
            self.sent[data[1]] = now
            out.append(data)
        writer.write(b"".join(out))


def config(folder: Path, pki: Pki, udp: int, http: int) -> Path:
    path = folder / "radtrack.toml"
    path.write_text(
        f"""
[radius]
listen = ["127.0.0.1:{udp}"]
queue_size = 50000
radsec_listen = ["127.0.0.1:0"]
radsec_certificate = "{pki.server.certificate}"
radsec_key = "{pki.server.key}"
radsec_ca = "{pki.ca}"
radsec_idle_timeout = 0
[[radius.clients]]
name = "bench-tls"
address = "127.0.0.1"
radsec = true
[[radius.clients]]
name = "bench-udp"
address = "127.0.0.1"
secret = "{UDP_SECRET}"
[sessions]
default_interim_interval = 86400
[store]
path = "{folder / "bench.db"}"
[api]
listen = "127.0.0.1:{http}"
[daemon]
log_level = "INFO"
"""
    )
    return path


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


async def drive(args: argparse.Namespace, port: int, pki: Pki, pid: int) -> dict[str, Any]:
    context = ssl.create_default_context(cafile=str(pki.ca))
    context.load_cert_chain(pki.nas.certificate, pki.nas.key)
    streams = [Stream(packets_for(c, args), args.window) for c in range(args.connections)]
    cpu = cpu_seconds(pid)
    began = time.monotonic()
    until = time.perf_counter() + args.seconds
    await asyncio.gather(*(stream.run(port, context, until) for stream in streams))
    elapsed = time.monotonic() - began
    latencies = [x for stream in streams for x in stream.latencies]
    return {
        "transport": "tls",
        "connections": args.connections,
        "window": args.window,
        "seconds": round(elapsed, 2),
        "acked": len(latencies),
        "acked_per_s": round(len(latencies) / elapsed),
        "latency_p50_ms": round(percentile(latencies, 0.5) * 1000, 2),
        "latency_p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        "latency_mean_ms": round(statistics.fmean(latencies) * 1000, 2) if latencies else 0,
        "bad_replies": sum(stream.bad for stream in streams),
        "server_cpu_us_per_packet": round(
            (cpu_seconds(pid) - cpu) / max(len(latencies), 1) * 1e6, 1
        ),
        "ran_out_of_packets": any(s.next >= len(s.packets) for s in streams),
    }


def udp_run(args: argparse.Namespace, udp: int, pid: int) -> dict[str, Any]:
    """bench/loadgen.py over UDP against the same node, for comparison: as many requests in
    flight (2 workers), the same sessions."""
    cpu = cpu_seconds(pid)
    window = max(1, min(256, args.connections * args.window // 2))
    out = subprocess.run(
        [sys.executable, str(HERE / "loadgen.py"), "--server", f"127.0.0.1:{udp}"]
        + ["--secret", UDP_SECRET, "--duration", str(args.seconds), "--json"]
        + ["--sessions", str(args.sessions), "--workers", "2", "--window", str(window)]
        + ["--seed", str(SEED)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    summary = json.loads(out)
    keep = ("acked_per_s", "latency_p50_ms", "latency_p99_ms", "lost")
    acked = summary.get("acked") or summary.get("acknowledged") or 0
    per_packet = (cpu_seconds(pid) - cpu) / max(acked, 1) * 1e6
    return {
        "transport": "udp (bench/loadgen.py)",
        **{k: summary.get(k) for k in keep},
        "server_cpu_us_per_packet": round(per_packet, 1) if acked else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--window", type=int, default=64, help="requests in flight, <= 256")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--packets", type=int, default=400_000, help="encoded beforehand")
    parser.add_argument("--sessions", type=int, default=20_000)
    parser.add_argument("--udp", action="store_true", help="then loadgen over UDP, same node")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not 1 <= args.window <= 256:
        parser.error("--window must be 1..256 (one connection's Identifiers)")
    with tempfile.TemporaryDirectory(prefix="radsec-bench-") as tmp:
        folder = Path(tmp)
        pki = make_pki(folder / "pki")
        udp = free_port(socket.SOCK_DGRAM)
        child = subprocess.Popen(
            [sys.executable, "-m", "radtrack", "serve", "--config"]
            + [str(config(folder, pki, udp, free_port(socket.SOCK_STREAM)))],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        try:
            assert child.stderr is not None
            for line in child.stderr:
                match = re.search(r"event=started .*radsec=127\.0\.0\.1:(\d+)", line)
                if match:
                    break
            else:
                raise SystemExit("radtrack did not start")
            import uvloop

            results = [uvloop.run(drive(args, int(match.group(1)), pki, child.pid))]
            if args.udp:
                results.append(udp_run(args, udp, child.pid))
        finally:
            child.terminate()
            child.communicate(timeout=30)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for result in results:
            print("  ".join(f"{k}={v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
