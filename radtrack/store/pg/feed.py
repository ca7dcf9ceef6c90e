"""The change feed: every committed session change reaches every other node, and none is lost.

Writing. ``write_changes`` upserts a group commit's session snapshots into ``sessions`` and, in
the same transaction, appends one ``session_changes`` row: the ids of the sessions written and
the writing transaction's id (``xid8``, ``pg_current_xact_id()``: 64 bits, it never wraps); a
statement trigger NOTIFYs ``radtrack_changes``, which PostgreSQL delivers at COMMIT, only if it
commits. One change row per commit, whatever its size: the upsert is the cost, not the feed.

Reading. A reader's cursor is an xid8 horizon: "every change of a transaction whose xid is
below the cursor has been delivered". ``read_changes`` takes one snapshot (REPEATABLE READ)
and, in it, the horizon ``h = pg_snapshot_xmin(pg_current_snapshot())``, the lowest xid still
running (every lower one has committed or rolled back); it returns the changes with
``cursor <= xid < h`` and moves the cursor to ``h``.

Why nothing is skipped, although xids (like sequence values) are not assigned in commit order:
every transaction with an xid below ``h`` had finished when the snapshot was taken, so its rows
are in the snapshot if it committed, and no transaction can add a row with an xid below ``h``
any more (a transaction writes rows with its own xid only, and those are all done). The rows
with ``cursor <= xid < h`` are therefore complete and final, and a transaction still running
(or one that commits after the snapshot with a lower xid than some visible one) has
``xid >= h``: it is read next time, never passed over. Ranges of successive reads are disjoint,
so a change is delivered once to a reader that keeps its cursor. A dropped connection or a
restart loses nothing: the rows are durable, and reading from the kept cursor catches up. A
NOTIFY is only a wake-up; a reader also polls, so a lost one costs latency, not data.

What is delivered is the session's *current* row in the reader's snapshot (``sessions`` joined
on the changed ids), not the snapshot the change wrote. Two commits of one session may fall in
different reads out of commit order (an older xid can commit later), but each read shows the
state as of a later snapshot, so a reader never goes back to an older state of a session.
Several changes of a session in one range come as one row. Rows last written by the reader's
own node are left out (it holds them in memory already). Two nodes writing one session at the
same moment (a NAS failing over mid-commit) is for the accounting layer to reconcile: the feed
hands every other node the state that committed last.

The horizon stands still while a transaction that wrote something is open, so the feed's lag
is at least the longest writing transaction on the database (read-only ones take no xid and do
not count): radtrack's commits are short; an operator's long UPDATE delays the feed, not data.

``prune`` deletes changes below a horizon every node has passed and raises ``feed_state.floor``;
a reader whose cursor is below the floor gets FeedGap and must reload its state from ``sessions``
(``load_sessions`` gives the rows and the cursor to start from, in one snapshot).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from radtrack.errors import StoreError
from radtrack.model import SESSION_COLUMNS
from radtrack.store.pg.schema import NOTIFY_CHANNEL, SESSION_TYPES

Row = tuple[Any, ...]
# an asyncpg.Connection: asyncpg ships no type information
Connection = Any

_COLUMNS = ", ".join(SESSION_COLUMNS)
_WIDTH = len(SESSION_COLUMNS)
_ARRAYS = ", ".join(f"${i + 2}::{t}[]" for i, t in enumerate(SESSION_TYPES))
_SET = ", ".join(f"{c} = excluded.{c}" for c in (*SESSION_COLUMNS[1:], "written_by"))
# $1: the writing node; $2..: one array per column. Ids arrive sorted and once each (an upsert
# may not touch a row twice), so concurrent commits lock their rows in one order: no deadlock
WRITE = (
    "WITH written AS ("
    f"INSERT INTO sessions ({_COLUMNS}, written_by) "
    f"SELECT u.*, $1 FROM unnest({_ARRAYS}) AS u "
    f"ON CONFLICT (id) DO UPDATE SET {_SET} RETURNING id) "
    "INSERT INTO session_changes (ids) SELECT array_agg(id) FROM written"
)
# As WRITE, but a session's row is replaced only by a state at least as new: the later last
# update, then the longer session time, then closed before open (a session closed as stale at
# its last update, and reopened by a later Interim, as the accounting core does). A node that
# wrote from a state older than another node's commit (a NAS failing over mid-flight) does not
# take the session back. Returns the ids written; the others' rows stay (the writer re-reads
# them).
_NEWER = (
    "(excluded.last_update, excluded.session_time, excluded.stop_time IS NOT NULL) >= "
    "(sessions.last_update, sessions.session_time, sessions.stop_time IS NOT NULL)"
)
WRITE_NEWER = (
    "WITH written AS ("
    f"INSERT INTO sessions ({_COLUMNS}, written_by) "
    f"SELECT u.*, $1 FROM unnest({_ARRAYS}) AS u "
    f"ON CONFLICT (id) DO UPDATE SET {_SET} WHERE {_NEWER} RETURNING id), "
    "changed AS (INSERT INTO session_changes (ids) "
    "SELECT array_agg(id) FROM written HAVING count(*) > 0) "
    "SELECT id FROM written"
)
_HORIZON = "SELECT pg_snapshot_xmin(pg_current_snapshot()), (SELECT floor FROM feed_state)"
# the xid of the change row (commit) at ``limit``: a read ends below it
_LIMIT_XID = (
    "SELECT xid FROM session_changes WHERE xid >= $1 AND xid < $2 ORDER BY xid OFFSET $3 LIMIT 1"
)
_READ = (
    f"SELECT {_COLUMNS} FROM sessions WHERE id IN "
    "(SELECT unnest(ids) FROM session_changes WHERE xid >= $1 AND xid < $2) "
    "AND written_by IS DISTINCT FROM $3"
)


class FeedGap(StoreError):
    """Changes after the reader's cursor were pruned: reload from ``sessions``."""


async def write_changes(conn: Connection, node: str, rows: Sequence[Row]) -> None:
    """Store session snapshots (whole rows in SESSION_COLUMNS order, ``start_seen`` a bool)
    and their change rows; the last snapshot of a session in ``rows`` wins. One statement:
    a transaction of its own (durable when it returns), or part of the caller's."""
    if not rows:
        return
    latest = {row[0]: row for row in rows}
    ordered = [latest[key] for key in sorted(latest)]
    columns = [list(column) for column in zip(*ordered, strict=True)]
    if len(columns) != _WIDTH:
        raise ValueError(f"a session row has {_WIDTH} columns, not {len(columns)}")
    await conn.execute(WRITE, node, *columns)


async def write_newer(conn: Connection, node: str, rows: Sequence[Row]) -> list[object]:
    """As write_changes, but no row goes back to an older state of its session (WRITE_NEWER);
    returns the ids of the sessions whose rows were not written."""
    if not rows:
        return []
    latest = {row[0]: row for row in rows}
    ordered = [latest[key] for key in sorted(latest)]
    columns = [list(column) for column in zip(*ordered, strict=True)]
    if len(columns) != _WIDTH:
        raise ValueError(f"a session row has {_WIDTH} columns, not {len(columns)}")
    written = {record[0] for record in await conn.fetch(WRITE_NEWER, node, *columns)}
    return [key for key in latest if key not in written]


async def read_changes(
    conn: Connection, cursor: int, node: str | None = None, limit: int = 1_000
) -> tuple[list[Row], int]:
    """The sessions changed by commits whose xid is at or above ``cursor`` and below the
    snapshot's horizon (see above), as current rows in SESSION_COLUMNS order, leaving out those last
    written by ``node``; and the cursor to pass next time. The changes of ``limit`` commits at
    most per call (a read may then come back empty with a new cursor: read on). Raises
    FeedGap below the pruned floor."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        horizon, floor = await conn.fetchrow(_HORIZON)
        if cursor < floor:
            raise FeedGap(f"changes before {floor} were pruned; this reader is at {cursor}")
        end = await conn.fetchval(_LIMIT_XID, cursor, horizon, limit)
        if end is not None:
            # a transaction that wrote several change rows comes whole, even past ``limit``
            horizon = end if end > cursor else end + 1
        records = await conn.fetch(_READ, cursor, horizon, node)
    return [tuple(r) for r in records], int(horizon)


async def load_sessions(conn: Connection, online_only: bool = True) -> tuple[list[Row], int]:
    """Every (online) session and the cursor to follow the feed from, in one snapshot: changes
    at or after the cursor may already be in the rows (they come again, as current rows)."""
    where = " WHERE stop_time IS NULL" if online_only else ""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        horizon, _ = await conn.fetchrow(_HORIZON)
        records = await conn.fetch(f"SELECT {_COLUMNS} FROM sessions{where}")
    return [tuple(r) for r in records], int(horizon)


async def prune(conn: Connection, before: int) -> int:
    """Delete the changes below ``before`` (a cursor every node has passed); raise the floor.
    Returns the rows deleted."""
    async with conn.transaction():
        await conn.execute("UPDATE feed_state SET floor = greatest(floor, $1::xid8)", before)
        done = await conn.execute("DELETE FROM session_changes WHERE xid < $1", before)
    return int(done.split()[-1])


class ChangeListener:
    """LISTEN on a connection of its own: ``wait`` returns early when a commit NOTIFYs.

    The wake-up is a hint: follow the feed as ``wait`` then ``read_changes``, in a loop with a
    poll timeout, so a NOTIFY lost with a dropped connection costs at most one poll interval.
    ``wait`` also returns when the connection is lost (``closed`` is then True: reconnect).
    """

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._event = asyncio.Event()
        self.closed = False

    async def start(self) -> None:
        self._conn.add_termination_listener(self._terminated)
        await self._conn.add_listener(NOTIFY_CHANNEL, self._notified)

    def _notified(self, *_: object) -> None:
        self._event.set()

    def _terminated(self, *_: object) -> None:
        self.closed = True
        self._event.set()

    async def wait(self, timeout: float) -> bool:
        """True when woken by a NOTIFY (or a lost connection), False after ``timeout``."""
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            return False
        self._event.clear()
        return True

    async def close(self) -> None:
        """Stop listening and close the connection; idempotent."""
        if not self._conn.is_closed():
            await self._conn.remove_listener(NOTIFY_CHANNEL, self._notified)
            self._conn.remove_termination_listener(self._terminated)
            await self._conn.close()
