#!/usr/bin/env python3
"""Where the bytes of an online session go, field by field.

    python3 bench/memory_fields.py --sessions 200000

Builds the sessions of bench/memory.py both ways (by ingest through the accounting core, and
rebuilt from SQLite by start-up recovery) and adds up, per Session slot, the objects that slot
holds: each distinct object once (a shared one is counted where it is first met, in slot order),
at its pymalloc size (rounded up to 16 bytes; the cyclic GC's header included), divided by the
number of sessions. Cached small ints, None and booleans cost nothing. The index's tables
(``SessionIndex._online``, ``_by_user``) and the shared-value tables are rows of their own.
The total is a model; bench/memory.py measures the resident memory itself.

With --interim, every session then gets one Interim-Update, as the daemon sees it (counters,
and radtrack's own clock in received_at): what the counters and timestamps of a session that
has reported cost, which bench/memory.py's sessions (Starts only) do not show.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from memory import requests, write_db  # noqa: E402

from radtrack.accounting import Accountant  # noqa: E402
from radtrack.model import AccountingRequest, Session, StatusType  # noqa: E402
from radtrack.store import recovery  # noqa: E402
from radtrack.store.index import SessionIndex, UserDirectory  # noqa: E402


def allocated(obj: object) -> int:
    """Bytes pymalloc gives ``obj`` (sys.getsizeof counts the GC header, not the rounding)."""
    if obj is None or obj is True or obj is False:
        return 0
    if type(obj) is int and -5 <= obj <= 256:  # the interpreter's cached small ints
        return 0
    size = sys.getsizeof(obj)
    return size if size > 512 else -(-size // 16) * 16


def breakdown(index: SessionIndex, extra: dict[str, Iterable[object]]) -> dict[str, float]:
    """Bytes per online session, by Session slot, then the index's own tables and ``extra``."""
    sessions = list(index)
    n = len(sessions)
    seen = set(map(id, sessions))  # a next_of_user is a session counted already
    rows: dict[str, float] = {"Session object": sum(map(allocated, sessions)) / n}
    for name in Session.__slots__:
        total = 0
        for session in sessions:
            value = getattr(session, name, None)
            if id(value) not in seen:
                seen.add(id(value))
                total += allocated(value)
        rows[name] = total / n
    for name in ("_online", "_by_user", "per_nas", "lineages"):
        rows[f"index.{name}"] = allocated(getattr(index, name)) / n
    for name, objects in extra.items():
        rows[name] = sum(allocated(o) for o in objects) / n
    rows["total"] = sum(rows.values())
    return rows


def interim(start: AccountingRequest, i: int) -> AccountingRequest:
    """An Interim-Update of the session ``start`` opened, 300 s later, with counters."""
    return start._replace(
        status=StatusType.INTERIM_UPDATE,
        event_time=start.event_time + 300,
        session_time=300,
        input_octets=1_000_000 + i,
        output_octets=9_000_000 + i,
        input_packets=5_000 + i % 1000,
        output_packets=7_000 + i % 1000,
        received_at=start.event_time + 300.25,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=200_000)
    parser.add_argument("--interim", action="store_true", help="then one Interim each")
    args = parser.parse_args()
    built = Accountant(SessionIndex(), UserDirectory())
    for request in requests(args.sessions):
        built.handle(request)
    if args.interim:
        for i, request in enumerate(requests(args.sessions)):
            built.handle(interim(request, i))
    tables = {"shared strings table": [built.shared._table]}
    tables["start times table"] = [built.start_times._table]
    ingest = breakdown(built.index, tables)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "fields.db"
        write_db(db, built)
        del built
        gc.collect()
        restored = Accountant(SessionIndex(), UserDirectory())
        for session in recovery.load_sessions(db, 0):
            restored.restore(session)
    recovered = breakdown(restored.index, {})
    print(f"{'bytes per session':24} {'ingest':>8} {'recovered':>9}")
    for name in list(ingest) + [k for k in recovered if k not in ingest]:
        a, b = ingest.get(name, 0.0), recovered.get(name, 0.0)
        if a or b:
            print(f"{name:24} {a:8.1f} {b:9.1f}")


if __name__ == "__main__":
    main()
