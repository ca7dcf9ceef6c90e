#!/usr/bin/env python3
"""Memory per online session and start-up recovery time.

    python3 bench/memory.py --sessions 1000000 --json

1. Builds N online sessions the way ingest does (AccountingRequests through the accounting core,
   realistic attribute values, each request dropped once handled) and measures the resident
   memory they add, strings included.
2. Writes them to a SQLite database with the writer's own statements.
3. Rebuilds the live state from that database as start-up does (recovery.load_sessions +
   Accountant.restore) and times it.

With --db PATH --only-db it only writes the database (used by bench/run_all.py's scaling runs);
with --db PATH --recover-only it only times step 3 on a database written before, and with
--reader-process as well it times an experiment: the SQLite fetch in a second process.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import marshal
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from radtrack import gcpolicy  # noqa: E402
from radtrack.accounting import Accountant  # noqa: E402
from radtrack.model import AccountingRequest, Session, StatusType  # noqa: E402
from radtrack.store import columnar, recovery, snapshot  # noqa: E402
from radtrack.store.index import SessionIndex, UserDirectory  # noqa: E402
from radtrack.store.schema import UPSERT_CHUNK, migrate, upsert_sessions  # noqa: E402


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def requests(n: int) -> Iterator[AccountingRequest]:
    """Starts of ``n`` sessions. Their strings are new objects per request, as a decoded packet's
    are, except those radius/codec.py shares (the NAS identity, NAS-Port-Type, Connect-Info)."""
    base = 1_760_000_000
    ips = [f"100.64.{i}.1" for i in range(20)]
    nases = [f"bench/{ip}" for ip in ips]
    for i in range(n):
        nas = i % 20
        yield AccountingRequest(
            status=StatusType.START,
            nas_key=nases[nas],
            nas_name="bench",
            nas_ip=ips[nas],
            session_id=f"{0x5F000000 + i:08X}{i % 7:04d}",
            event_time=float(base + i % 86_400),
            user_name=str(1 + i // 2),
            nas_port_id=f"wg{i % 4000}",
            nas_port_type="Virtual",
            calling_station_id=f"{i % 256:02X}:{(i >> 8) % 256:02X}:1A:2B:3C:4D",
            called_station_id="".join(("vpn.example", ".net")),  # a new str each time
            framed_ip=f"100.{64 + (i >> 16) % 64}.{(i >> 8) % 256}.{i % 256}",
            connect_info="WireGuard",
            interim_interval=300,
        )


def write_db(path: Path, accountant: Accountant) -> float:
    began = time.monotonic()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    migrate(conn)
    rows = [s.row() for s in accountant.index]
    for start in range(0, len(rows), 20 * UPSERT_CHUNK):
        conn.execute("BEGIN")
        for at in range(start, min(start + 20 * UPSERT_CHUNK, len(rows)), UPSERT_CHUNK):
            chunk = rows[at : at + UPSERT_CHUNK]
            conn.execute(upsert_sessions(len(chunk)), list(itertools.chain.from_iterable(chunk)))
        conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return time.monotonic() - began


# --reader-process: an experiment, not what start-up does. A second Python process runs the
# open-sessions query and hands the rows over a pipe in marshal chunks; this one builds the
# sessions from them with recovery's own loop. sqlite3 in Python 3.11 releases the GIL around
# sqlite3_step and around every column's sqlite3_column_type, so a reader *thread* gets the GIL
# back only every switch interval while the builder runs: only a process overlaps the fetch.
_READER = """
import marshal, sqlite3, sys
conn = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True, isolation_level=None)
conn.execute("BEGIN")
cursor = conn.execute(sys.argv[2])
out = sys.stdout.buffer
while rows := cursor.fetchmany(2000):
    blob = marshal.dumps(rows, 2)
    out.write(len(blob).to_bytes(8, "little") + blob)
out.flush()
"""


def _rows_from_reader(db: Path) -> Iterator[Session]:
    select = f"{recovery._SELECT} NOT INDEXED WHERE stop_time IS NULL"
    command = [sys.executable, "-I", "-S", "-c", _READER, str(db), select]
    reader = subprocess.Popen(command, stdout=subprocess.PIPE)
    assert reader.stdout is not None
    read = reader.stdout.read

    def chunks() -> Iterator[bytes]:
        while header := read(8):
            yield read(int.from_bytes(header, "little"))

    with gcpolicy.paused(long_lived=True):
        try:
            rows = itertools.chain.from_iterable(map(marshal.loads, chunks()))
            yield from recovery._Shared().sessions(rows)
        finally:
            reader.stdout.close()
            if reader.wait() != 0:
                raise RuntimeError(f"reader exited with status {reader.returncode}")


def _payload(db: Path) -> Path:
    """The snapshot payload (radtrack/store/columnar.py) of what a table start loads from
    ``db``, written once beside it: what a clean stop of a daemon on ``db`` would write."""
    path = db.with_name(db.name + ".bench-payload")
    if not path.exists():
        payload = columnar.encode(list(recovery.load_sessions(db, 0)), [])
        path.write_bytes(payload)
    return path


def _from_snapshot(db: Path) -> Iterator[Session]:
    try:
        with gcpolicy.paused(long_lived=True):  # as snapshot.load does
            sessions, _ = columnar.decode(_payload(db).read_bytes())
    finally:
        snapshot.release_freed_memory()
    return iter(sessions)


def snapshot_ab(db: Path, rounds: int) -> dict[str, object]:
    """Table and snapshot loads of the same sessions, alternated, each in a new process."""
    _payload(db)
    runs: dict[str, list[dict[str, Any]]] = {"table": [], "snapshot": []}
    for _ in range(rounds):
        for source in runs:
            command = [sys.executable, __file__, "--db", str(db), "--recover-only", "--json"]
            if source == "snapshot":
                command.append("--from-snapshot")
            out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            runs[source].append(json.loads(out))
    summary: dict[str, object] = {"rounds": rounds}
    for source, results in runs.items():
        for key in ("recovery_seconds", "bytes_per_session_recovered"):
            summary[f"{source}_{key}_median"] = statistics.median(r[key] for r in results)
            summary[f"{source}_{key}"] = [r[key] for r in results]
    return summary


def recover(db: Path, reader_process: bool = False, snapshot: bool = False) -> dict[str, object]:
    """Step 3: the live state rebuilt from ``db`` as start-up does; RSS it adds and seconds
    (CPU: this process's, and with ``reader_process`` the reader's apart)."""
    gc.collect()
    before_recovery = rss_mb()
    began = time.monotonic()
    cpu = time.process_time()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    restored = Accountant(SessionIndex(), UserDirectory())
    if snapshot:
        sessions = _from_snapshot(db)
    else:
        sessions = _rows_from_reader(db) if reader_process else recovery.load_sessions(db, 0)
    for session in sessions:
        restored.restore(session)
    recovery_seconds = time.monotonic() - began
    cpu = time.process_time() - cpu
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    reader_cpu = after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
    gc.collect()
    after_recovery = rss_mb()
    n = len(restored.index)
    return {
        "online_after_recovery": n,
        "bytes_per_session_recovered": round((after_recovery - before_recovery) * 2**20 / n),
        "recovery_seconds": round(recovery_seconds, 2),
        "recovery_cpu_seconds": round(cpu, 2),
        **({"reader_cpu_seconds": round(reader_cpu, 2)} if reader_process else {}),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--db")
    parser.add_argument("--only-db", action="store_true")
    parser.add_argument("--recover-only", action="store_true")
    parser.add_argument(
        "--reader-process",
        action="store_true",
        help="with --recover-only: an experiment, the SQLite fetch in a second process",
    )
    parser.add_argument(
        "--from-snapshot",
        action="store_true",
        help="with --recover-only: load the snapshot payload of the database's sessions",
    )
    parser.add_argument(
        "--snapshot-ab",
        type=int,
        metavar="ROUNDS",
        help="with --db: table and snapshot loads alternated, ROUNDS each; medians",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.snapshot_ab:
        if not args.db:
            parser.error("--snapshot-ab needs --db")
        result = snapshot_ab(Path(args.db), args.snapshot_ab)
        print(json.dumps(result, indent=2) if args.json else result)
        return
    if args.recover_only:
        if not args.db:
            parser.error("--recover-only needs --db")
        result = recover(Path(args.db), args.reader_process, args.from_snapshot)
        print(json.dumps(result, indent=2) if args.json else result)
        return
    n = args.sessions
    gc.collect()
    before = rss_mb()
    accountant = Accountant(SessionIndex(), UserDirectory())
    for request in requests(n):
        accountant.handle(request)
    gc.collect()
    built = rss_mb()
    tmp = tempfile.TemporaryDirectory()
    db = Path(args.db) if args.db else Path(tmp.name) / "memory.db"
    write_seconds = write_db(db, accountant)
    if args.only_db:
        return
    per_session = (built - before) * 2**20 / n
    del accountant
    summary = {
        "sessions": n,
        "bytes_per_session_built": round(per_session),
        **recover(db),
        "db_write_seconds": round(write_seconds, 2),
        "db_mb": round(db.stat().st_size / 2**20, 1),
    }
    tmp.cleanup()
    print(json.dumps(summary, indent=2) if args.json else summary)


if __name__ == "__main__":
    main()
