"""radtrack on PostgreSQL, measured: one node's durable ingest, and the cross-node lag.

  python3 bench/pg_cluster.py ingest [--seconds 20] [--rate N]   # one node: SQLite, PG, SQLite
  python3 bench/pg_cluster.py lag [--rate 2000] [--seconds 20]
  python3 bench/pg_cluster.py recover --sessions 1000000   # start-up load of the live state

Both start a PostgreSQL cluster of their own (tests/pgserver.py: fsync and synchronous_commit
on; as root it runs as ``postgres``) and ``radtrack serve`` child processes on it.

``lag``: node A takes bench/loadgen.py's open-loop load at ``--rate`` packets/s; meanwhile a
probe sends A a Start of a new session (a user of its own) every 50 ms and, once A has
acknowledged it, asks node B over GraphQL (``onlineSessionCount``) every 2 ms until B counts it.
The lag is B's first count minus A's acknowledgement (it includes one GraphQL round trip,
~1 ms); p50 / p99 / max over the probes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from pyrad.client import Client, Timeout  # noqa: E402
from pyrad.packet import AcctPacket  # noqa: E402

from radtrack.radius.dictionary import load as load_dictionary  # noqa: E402
from tests import pgserver  # noqa: E402

sys.path.insert(0, str(HERE))
from run_all import SECRET, TOKEN, Radtrack, load_average  # noqa: E402


def radtrack_on(workdir: Path, dsn: str, name: str) -> Radtrack:
    """``radtrack serve`` as a child process (run_all.Radtrack) on PostgreSQL at ``dsn``; "": on
    SQLite in ``workdir`` (the default backend)."""
    if not dsn:
        return Radtrack(workdir, name=name)
    store = f'backend = "postgresql"\ndsn = "{dsn}"\nnode_name = "{name}"'
    return Radtrack(workdir, store=store, name=name)


def loadgen(node: Radtrack, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(HERE / "loadgen.py"), "--server", f"127.0.0.1:{node.udp}"]
        + ["--secret", SECRET, "--json", *extra],
        stdout=subprocess.PIPE,
        text=True,
    )


def ingest(
    dsn: str, workdir: Path, seconds: float, sessions: int, rate: int | None
) -> dict[str, Any]:
    """SQLite, then PostgreSQL, then SQLite again: the same load on the same box, in one run."""
    paced = ["--rate", str(rate)] if rate else []
    keep = ("acked_per_s", "latency_p50_ms", "latency_p90_ms", "latency_p99_ms", "lost")
    result: dict[str, Any] = {"load_average_before": load_average()}
    for n, (backend, target) in enumerate((("sqlite", ""), ("postgresql", dsn), ("sqlite", ""))):
        with radtrack_on(workdir, target, f"{backend}-{n}") as node:
            load = loadgen(node, "--duration", str(seconds), "--sessions", str(sessions), *paced)
            out, _ = load.communicate()
        summary = json.loads(out)
        result[f"{n + 1}. {backend}"] = {k: summary[k] for k in keep}
    result["load_average_after"] = load_average()
    return result


def recover(dsn: str, sessions: int) -> dict[str, Any]:
    """Write ``sessions`` online sessions, then time a node's start-up load of them."""
    import gc
    import resource

    from radtrack.model import Session
    from radtrack.store import journal
    from radtrack.store.pg import feed
    from radtrack.store.pg.store import PgStore, connect

    async def run() -> dict[str, Any]:
        store = PgStore(dsn, node="bench")
        await store.open()  # migrates
        conn = await connect(dsn, None, "bench-writer")
        began = time.monotonic()
        for start in range(0, sessions, 20_000):
            rows = [
                journal.whole_row(
                    Session(
                        f"id-{n:08d}",
                        f"nas-{n % 50}/192.0.2.{n % 50}",
                        f"nas-{n % 50}",
                        f"192.0.2.{n % 50}",
                        f"sess-{n}",
                        1_700_000_000.0 + n,
                        1_700_000_300.0 + n,
                        user_name=str(100_000 + n),
                        user_id=100_000 + n,
                        nas_port_id=f"wg0/{n % 1000}",
                        nas_port_type="Virtual",
                        calling_station_id=f"02:00:00:{n >> 16 & 255:02x}:{n >> 8 & 255:02x}"
                        f":{n & 255:02x}",
                        framed_ip=f"100.{64 + (n >> 16)}.{n >> 8 & 255}.{n & 255}",
                        connect_info_start="WireGuard",
                        input_octets=n * 1000,
                        start_seen=True,
                    )
                )
                for n in range(start, min(sessions, start + 20_000))
            ]
            await feed.write_changes(conn, "bench-writer", rows)
        written = time.monotonic() - began
        await conn.execute("VACUUM ANALYZE sessions")
        await conn.close()
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        cpu = time.process_time()
        began = time.monotonic()
        state = await store.load_state(100_000)
        loaded = time.monotonic() - began
        cpu = time.process_time() - cpu
        count = len(state.sessions)
        del state
        gc.collect()
        await store.close()
        with tempfile.TemporaryDirectory() as tmp:
            began = time.monotonic()
            with radtrack_on(Path(tmp), dsn, "restarted") as node:
                started = time.monotonic() - began
                daemon_line = node.recovery_line.split("event=recovered ", 1)[-1]
        return {
            "daemon_start_s": round(started, 2),
            "daemon_recovered": daemon_line,
            "sessions": count,
            "write_s": round(written, 1),
            "load_s": round(loaded, 2),
            "load_cpu_s": round(cpu, 2),
            "max_rss_mb_before_load": round(rss_before / 1024),
            "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        }

    return asyncio.run(run())


async def probe(a: Radtrack, b: Radtrack, seconds: float) -> list[float]:
    dictionary = load_dictionary()
    lags: list[float] = []

    def send(i: int) -> float | None:
        packet = AcctPacket(dict=dictionary, secret=SECRET.encode())
        packet["Acct-Status-Type"] = "Start"
        packet["Acct-Session-Id"] = f"probe-{i}"
        packet["User-Name"] = str(900_000 + i)
        packet["NAS-IP-Address"] = "192.0.2.250"
        packet["Event-Timestamp"] = int(time.time())
        client = Client(server="127.0.0.1", acctport=a.udp, secret=SECRET.encode(), dict=dictionary)
        client.timeout, client.retries = 2, 3
        try:
            client.SendPacket(packet)
        except Timeout:
            return None
        finally:
            client._CloseSocket()
        return time.monotonic()

    async def count_on_b(user_id: int) -> int:
        query = json.dumps({"query": f"{{ onlineSessionCount(userId: {user_id}) }}"}).encode()
        reader, writer = await asyncio.open_connection("127.0.0.1", b.http)
        writer.write(
            (
                f"POST /graphql HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(query)}\r\n\r\n"
            ).encode()
            + query
        )
        raw = await reader.read()
        writer.close()
        body = json.loads(raw.split(b"\r\n\r\n", 1)[1])
        return int(body["data"]["onlineSessionCount"])

    deadline = time.monotonic() + seconds
    i = 0
    while time.monotonic() < deadline:
        i += 1
        acked = await asyncio.to_thread(send, i)
        if acked is None:
            continue
        while not await count_on_b(900_000 + i):
            await asyncio.sleep(0.002)
        lags.append(time.monotonic() - acked)
        await asyncio.sleep(0.05)
    return lags


def lag(dsn: str, workdir: Path, rate: int, seconds: float, sessions: int) -> dict[str, Any]:
    with radtrack_on(workdir, dsn, "a") as a, radtrack_on(workdir, dsn, "b") as b:
        load = loadgen(
            a, "--rate", str(rate), "--duration", str(seconds + 2), "--sessions", str(sessions)
        )
        time.sleep(1.0)  # the load is running
        lags = sorted(asyncio.run(probe(a, b, seconds)))
        out, _ = load.communicate()
    summary = json.loads(out)
    return {
        "load_average": load_average(),
        "rate": rate,
        "load_acked_per_s": summary["acked_per_s"],
        "load_ack_p99_ms": summary["latency_p99_ms"],
        "probes": len(lags),
        "lag_p50_ms": round(statistics.median(lags) * 1e3, 1),
        "lag_p99_ms": round(lags[min(len(lags) - 1, int(len(lags) * 0.99))] * 1e3, 1),
        "lag_max_ms": round(lags[-1] * 1e3, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("ingest", "lag", "recover"))
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=int, help="lag: default 2000; ingest: open loop")
    parser.add_argument("--sessions", type=int, default=20_000)
    args = parser.parse_args()
    with pgserver.running() as cluster, tempfile.TemporaryDirectory() as tmp:
        dsn = cluster.dsn(cluster.create_database())
        workdir = Path(tmp)
        if args.mode == "recover":
            result = recover(dsn, args.sessions)
        elif args.mode == "ingest":
            result = ingest(dsn, workdir, args.seconds, args.sessions, args.rate)
        else:
            result = lag(dsn, workdir, args.rate or 2000, args.seconds, args.sessions)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
