#!/usr/bin/env python3
"""GraphQL load driver (stdlib only, independent of radtrack's code): keep-alive HTTP/1.1
connections POSTing getOnlineSessions for random user ids, closed loop (--connections) or paced
(--rate). Prints a JSON summary: requests, errors, req/s, latency percentiles.

    python3 bench/graphql_load.py --url http://127.0.0.1:8080/graphql --token TOKEN \
        --users 1-50000 --connections 32 --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from urllib.parse import urlsplit

QUERY = (
    "query getOnlineSessions($userId: Int!) { getOnlineSessions(userId: $userId) { id sessionId "
    "nasIpAddress nasPortId nasPortType startTime connectInfoStart callingStationId "
    "framedIpAddress } }"
)


def percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


class Client:
    def __init__(self, host: str, port: int, path: str, token: str) -> None:
        self.host, self.port, self.path, self.token = host, port, path, token
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def request(self, user_id: int) -> tuple[int, bytes]:
        assert self.reader is not None and self.writer is not None
        body = json.dumps({"query": QUERY, "variables": {"userId": user_id}}).encode()
        self.writer.write(
            (
                f"POST {self.path} HTTP/1.1\r\nHost: {self.host}\r\n"
                f"Content-Type: application/json\r\nAuthorization: Bearer {self.token}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
            + body
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        return status, await self.reader.readexactly(length)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except ConnectionError:
                pass


async def run(args: argparse.Namespace) -> dict[str, object]:
    url = urlsplit(args.url)
    if url.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("only loopback targets are allowed")
    low, high = (int(x) for x in args.users.split("-"))
    rng = random.Random(args.seed)
    latencies: list[float] = []
    errors = 0
    nonempty = 0
    deadline = time.monotonic() + args.duration
    clients = [
        Client(url.hostname, url.port or 80, url.path or "/graphql", args.token)
        for _ in range(args.connections)
    ]
    await asyncio.gather(*(c.connect() for c in clients))
    interval = args.connections / args.rate if args.rate else 0.0

    async def loop(client: Client, offset: float) -> None:
        nonlocal errors, nonempty
        next_at = time.monotonic() + offset
        while time.monotonic() < deadline:
            if interval:
                delay = next_at - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                next_at += interval
            began = time.perf_counter()
            status, body = await client.request(rng.randint(low, high))
            latencies.append(time.perf_counter() - began)
            if status != 200 or b'"errors"' in body:
                errors += 1
            elif b'"sessionId"' in body:
                nonempty += 1

    started = time.monotonic()
    cpu = time.process_time()
    await asyncio.gather(
        *(loop(c, i * interval / max(1, args.connections)) for i, c in enumerate(clients))
    )
    elapsed = time.monotonic() - started
    await asyncio.gather(*(c.close() for c in clients))
    return {
        "requests": len(latencies),
        "errors": errors,
        "answers_with_sessions": nonempty,
        "duration_s": round(elapsed, 3),
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "latency_p50_ms": round(percentile(latencies, 50) * 1000, 3),
        "latency_p99_ms": round(percentile(latencies, 99) * 1000, 3),
        "latency_max_ms": round(max(latencies, default=0) * 1000, 3),
        "client_cpu_s": round(time.process_time() - cpu, 3),
        "connections": args.connections,
        "rate": args.rate,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8080/graphql")
    parser.add_argument("--token", required=True)
    parser.add_argument("--users", default="1-50000", help="user id range, e.g. 1-50000")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rate", type=float, default=0.0, help="total req/s (0: closed loop)")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    try:
        import uvloop

        summary = uvloop.run(run(args))
    except ImportError:
        summary = asyncio.run(run(args))
    json.dump(summary, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
