"""What the command line does on PostgreSQL (`radtrack migrate`, `sessions`, `users import`):
one connection each, nothing kept."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from radtrack.model import User
from radtrack.store.pg import schema
from radtrack.store.pg.store import connect, write_users

# the columns `radtrack sessions` shows, as on SQLite
ONLINE_COLUMNS = (
    "id",
    "session_id",
    "user_id",
    "user_name",
    "nas_name",
    "nas_ip",
    "framed_ip",
    "calling_station_id",
    "start_time",
    "last_update",
    "input_octets",
    "output_octets",
)


async def migrate(dsn: str, password: str | None) -> tuple[int, int]:
    """Create or migrate the schema; (version before, version now)."""
    conn = await connect(dsn, password, "migrate")
    try:
        before = await schema.migrate(conn)
    finally:
        await conn.close()
    return before, schema.SCHEMA_VERSION


async def online_sessions(
    dsn: str, password: str | None, user_id: int | None, nas: str | None
) -> list[dict[str, Any]]:
    """The online sessions (of a user, of a NAS), oldest start first."""
    where = ["stop_time IS NULL"]
    params: list[object] = []
    if user_id is not None:
        params.append(user_id)
        where.append(f"user_id = ${len(params)}")
    if nas is not None:
        params.append(nas)
        where.append(f"nas_name = ${len(params)}")
    conn = await connect(dsn, password, "sessions")
    try:
        rows = await conn.fetch(
            f"SELECT {', '.join(ONLINE_COLUMNS)} FROM sessions WHERE {' AND '.join(where)} "
            "ORDER BY start_time",
            *params,
        )
    finally:
        await conn.close()
    return [dict(row) for row in rows]


async def import_users(
    dsn: str, password: str | None, rows: Sequence[tuple[int, str | None, int | None, int | None]]
) -> None:
    """Upsert users in one transaction; UsernameTaken (nothing written) when a username would
    be taken from a user the rows leave alone."""
    conn = await connect(dsn, password, "users-import")
    try:
        await schema.migrate(conn)
        await write_users(conn, [User(*row) for row in rows])
    finally:
        await conn.close()
