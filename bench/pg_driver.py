"""Which PostgreSQL driver for radtrack's group commit: asyncpg or psycopg 3, measured.

The write pattern is the writer's: one transaction per group commit that appends N session
snapshot rows (the 26 columns of model.SESSION_COLUMNS, plus the writing transaction's xid8 as
the change feed stores it), ``synchronous_commit = on``, COMMIT; commits back to back on one
connection, each one awaited before the next starts (an Accounting-Response waits for it).

Modes:
  asyncpg  executemany   INSERT ... VALUES ($1..$26), one parameter set per row
  asyncpg  copy          copy_records_to_table (binary COPY)
  asyncpg  unnest        one INSERT ... SELECT FROM unnest($1::text[], ...): one array per column
  psycopg  executemany   cursor.executemany in pipeline mode (one round trip for the lot)
  psycopg  copy          cursor.copy(... FORMAT BINARY) with write_row
  psycopg  unnest        as asyncpg's, arrays bound as parameters
(unnest is the one shape that also works for an upsert: COPY cannot ON CONFLICT.)
  asyncpg  feed          radtrack.store.pg.feed.write_changes: the unnest upsert into
                         ``sessions`` plus one change row per session and the NOTIFY trigger,
                         on a migrated schema; the same 8 batches go round, so after the first
                         8 commits every row is an update, as Interim-Updates are

  python3 bench/pg_driver.py                       # a cluster of its own, ~1 s per cell
  python3 bench/pg_driver.py --dsn postgresql://... --seconds 3 --json

Reports rows/s and the commit latency p50/p99 (BEGIN to COMMIT done) per driver, mode and N.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from radtrack.model import SESSION_COLUMNS, Session  # noqa: E402
from radtrack.store import journal  # noqa: E402
from radtrack.store.pg import feed, schema  # noqa: E402
from tests import pgserver  # noqa: E402

COLUMN_TYPES = {
    "user_id": "bigint",
    "start_time": "double precision",
    "last_update": "double precision",
    "stop_time": "double precision",
    "input_octets": "bigint",
    "output_octets": "bigint",
    "input_packets": "bigint",
    "output_packets": "bigint",
    "session_time": "bigint",
    "interim_interval": "bigint",
    "start_seen": "boolean",
}
TYPES = [COLUMN_TYPES.get(c, "text") for c in SESSION_COLUMNS]
COLS = ", ".join(SESSION_COLUMNS)


def ddl(table: str) -> str:
    return (
        f"DROP TABLE IF EXISTS {table}; CREATE TABLE {table} ("
        + ", ".join(f"{c} {t}" for c, t in zip(SESSION_COLUMNS, TYPES, strict=True))
        + ", xid xid8 NOT NULL DEFAULT pg_current_xact_id())"
    )


def insert_sql(table: str, placeholders: list[str]) -> str:
    return f"INSERT INTO {table} ({COLS}) VALUES ({', '.join(placeholders)})"


def unnest_sql(table: str, placeholders: list[str]) -> str:
    arrays = ", ".join(f"{p}::{t}[]" for p, t in zip(placeholders, TYPES, strict=True))
    return f"INSERT INTO {table} ({COLS}) SELECT * FROM unnest({arrays})"


DOLLARS = [f"${i + 1}" for i in range(len(TYPES))]
PERCENTS = ["%s"] * len(TYPES)

Row = tuple[Any, ...]
MODES = [
    ("asyncpg", "executemany"),
    ("asyncpg", "copy"),
    ("asyncpg", "unnest"),
    ("psycopg", "executemany"),
    ("psycopg", "copy"),
    ("psycopg", "unnest"),
    ("asyncpg", "feed"),
]
RESET_FEED = (
    "DROP TABLE IF EXISTS sessions, users, session_changes, feed_state, schema_version;"
    "DROP FUNCTION IF EXISTS radtrack_notify_changes CASCADE"
)


def rows(n: int, batch: int) -> list[Row]:
    """Snapshots as the writer takes them (journal.whole_row of a live Session)."""
    out = []
    for i in range(n):
        s = Session(
            f"{batch:08x}{i:016x}",
            "nas-local/192.0.2.1",
            "nas-local",
            "192.0.2.1",
            f"{i:016X}",
            1_700_000_000.0,
            1_700_000_300.0,
            user_name=str(100_000 + i),
            user_id=100_000 + i,
            nas_port_id=f"wg0/{i}",
            nas_port_type="Virtual",
            calling_station_id="AA:BB:CC:DD:EE:FF",
            called_station_id="192.0.2.1:51820",
            framed_ip="100.64.0.1",
            connect_info_start="WireGuard",
            input_octets=123_456_789 + i,
            output_octets=987_654_321 + i,
            input_packets=12_345,
            output_packets=54_321,
            session_time=300,
            interim_interval=300,
            start_seen=True,
        )
        out.append(journal.whole_row(s))
    return out


def columns(batch: list[Row]) -> list[list[Any]]:
    return [list(c) for c in zip(*batch, strict=True)]


Commit = Callable[[list[Row]], Awaitable[None]]


@contextlib.asynccontextmanager
async def asyncpg_mode(dsn: str, mode: str, table: str) -> Any:
    conn = await asyncpg.connect(dsn)
    insert, unnest = insert_sql(table, DOLLARS), unnest_sql(table, DOLLARS)
    try:

        async def commit(batch: list[Row]) -> None:
            async with conn.transaction():
                if mode == "executemany":
                    await conn.executemany(insert, batch)
                elif mode == "copy":
                    await conn.copy_records_to_table(table, records=batch, columns=SESSION_COLUMNS)
                elif mode == "feed":
                    await feed.write_changes(conn, "bench", batch)
                else:
                    await conn.execute(unnest, *columns(batch))

        yield commit
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def psycopg_mode(dsn: str, mode: str, table: str) -> Any:
    import psycopg  # only for the comparison: pip install "psycopg[binary]"

    conn = await psycopg.AsyncConnection.connect(dsn)
    insert, unnest = insert_sql(table, PERCENTS), unnest_sql(table, PERCENTS)
    copy_sql = f"COPY {table} ({COLS}) FROM STDIN (FORMAT BINARY)"
    try:

        async def commit(batch: list[Row]) -> None:
            async with conn.transaction(), conn.cursor() as cur:
                if mode == "executemany":
                    await cur.executemany(insert, batch)  # pipelined by psycopg
                elif mode == "copy":
                    async with cur.copy(copy_sql) as copy:
                        copy.set_types(TYPES)
                        for row in batch:
                            await copy.write_row(row)
                else:
                    await cur.execute(unnest, columns(batch), prepare=True)

        yield commit
    finally:
        await conn.close()


async def measure(commit: Commit, batches: list[list[Row]], seconds: float) -> list[float]:
    """Commit latencies (seconds) of back-to-back commits for ``seconds`` (20 at least)."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    while (now := time.perf_counter()) < deadline or len(latencies) < 20:
        await commit(batches[len(latencies) % len(batches)])
        latencies.append(time.perf_counter() - now)
    return latencies


def summary(n: int, latencies: list[float]) -> dict[str, float]:
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return {
        "rows_per_s": n * len(latencies) / sum(latencies),
        "commits": len(latencies),
        "p50_ms": q[49] * 1000,
        "p99_ms": q[98] * 1000,
    }


async def run(
    dsn: str, modes: list[tuple[str, ...]], sizes: list[int], seconds: float, rounds: int
) -> list[dict[str, Any]]:
    """Per N, every mode runs in turn, ``rounds`` times ``seconds / rounds``: a slow spell of
    the shared disk falls on all of them alike."""
    results = []
    async with contextlib.AsyncExitStack() as stack:
        setup = await asyncpg.connect(dsn)
        stack.push_async_callback(setup.close)
        commits = {}
        for driver, mode in modes:
            table = "sessions" if mode == "feed" else f"bench_{driver}_{mode}"
            factory = asyncpg_mode if driver == "asyncpg" else psycopg_mode
            commits[driver, mode] = await stack.enter_async_context(factory(dsn, mode, table))
        for n in sizes:
            batches = [rows(n, b) for b in range(8)]  # built before: time the driver only
            for driver, mode in modes:
                if mode == "feed":
                    await setup.execute(RESET_FEED)
                    await schema.migrate(setup)
                else:
                    await setup.execute(ddl(f"bench_{driver}_{mode}"))
                for batch in batches[:3]:  # warm up: prepared statements, type introspection
                    await commits[driver, mode](batch)
            latencies: dict[tuple[str, ...], list[float]] = {m: [] for m in modes}
            for _ in range(rounds):
                for m in modes:
                    latencies[m] += await measure(commits[m], batches, seconds / rounds)
            for (driver, mode), measured in latencies.items():
                result = summary(n, measured)
                results.append({"driver": driver, "mode": mode, "n": n, **result})
                print(
                    f"{driver:8} {mode:12} N={n:<5} {result['rows_per_s']:>9,.0f} rows/s"
                    f"  commits {result['commits']:>5}  p50 {result['p50_ms']:7.2f} ms"
                    f"  p99 {result['p99_ms']:7.2f} ms",
                    flush=True,
                )
        await setup.execute(
            "; ".join(f"DROP TABLE IF EXISTS bench_{d}_{m}" for d, m in modes) + f"; {RESET_FEED}"
        )
    return results


@contextlib.contextmanager
def server(dsn: str | None) -> Iterator[str]:
    if dsn:
        yield dsn
        return
    with pgserver.running() as cluster:
        yield cluster.dsn()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", help="an existing server (default: start a cluster of its own)")
    parser.add_argument("--seconds", type=float, default=1.0, help="per driver, mode and N")
    parser.add_argument("--rounds", type=int, default=4, help="slices each cell is run in")
    parser.add_argument("--sizes", default="1,10,100,1000", help="rows per commit")
    parser.add_argument("--modes", help="driver:mode,... (default: all)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    modes = [tuple(m.split(":")) for m in args.modes.split(",")] if args.modes else MODES
    with server(args.dsn) as dsn:
        results = asyncio.run(run(dsn, modes, sizes, args.seconds, args.rounds))
    if args.json:
        print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
