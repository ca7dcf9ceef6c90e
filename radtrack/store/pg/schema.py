"""The PostgreSQL schema, versioned by ``schema_version`` like the SQLite one (store/schema.py).

Tables:

- ``sessions``: one row per session, the same columns as model.SESSION_COLUMNS plus
  ``written_by``, the node whose commit wrote the row's current state (store/pg/feed.py uses it
  so a node is not handed back its own writes). Text stays text; counters and user ids are
  ``bigint`` (64-bit, as SQLite's INTEGER); ``start_seen`` is a ``boolean``; the three times are
  ``double precision`` POSIX seconds, as in memory and in SQLite: a float round-trips exactly
  (``timestamptz`` keeps microseconds and needs a datetime per value, three per row, on the
  acknowledgement path and in a million-row recovery), and ``to_timestamp(start_time)`` gives a
  timestamptz to whoever wants one in SQL. ``fillfactor`` 80 leaves room in each page so that an
  Interim-Update, which changes no indexed column, is a HOT update (no index entry written).
- ``users``: User-Name to API user id and reseller, as in SQLite.
- ``session_changes`` and ``feed_state``: the change feed between nodes (store/pg/feed.py says
  how it is read and why it misses nothing); a statement trigger NOTIFYs ``radtrack_changes``
  on every insert, so every writer wakes the readers, whoever it is.

``migrate`` runs every pending migration in one transaction under an advisory lock, so nodes
started together against a new database migrate it once, and a failed migration leaves the
previous version whole (PostgreSQL's DDL is transactional).
"""

from __future__ import annotations

from typing import Any

from radtrack.errors import StoreError
from radtrack.model import SESSION_COLUMNS

# Column types in sessions; every other column of SESSION_COLUMNS is text
_TYPES = {
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
# an asyncpg.Connection: asyncpg ships no type information
Connection = Any

SESSION_TYPES: tuple[str, ...] = tuple(_TYPES.get(c, "text") for c in SESSION_COLUMNS)
_NOT_NULL = {"id", "nas_key", "nas_name", "nas_ip", "session_id", "start_time", "last_update"}
_DEFAULTS = {
    "input_octets": "0",
    "output_octets": "0",
    "input_packets": "0",
    "output_packets": "0",
    "session_time": "0",
    "start_seen": "false",
}


def _column(name: str, type_: str) -> str:
    spec = f"{name} {type_}"
    if name == "id":
        return spec + " PRIMARY KEY"
    if name in _NOT_NULL:
        spec += " NOT NULL"
    if name in _DEFAULTS:
        spec += f" NOT NULL DEFAULT {_DEFAULTS[name]}"
    return spec


_SESSION_COLUMNS_DDL = ",\n    ".join(
    _column(c, t) for c, t in zip(SESSION_COLUMNS, SESSION_TYPES, strict=True)
)

NOTIFY_CHANNEL = "radtrack_changes"

# Each entry migrates from version i to i + 1; append, never edit.
MIGRATIONS: tuple[str, ...] = (
    f"""
    CREATE TABLE sessions (
        {_SESSION_COLUMNS_DDL},
        written_by text NOT NULL
    ) WITH (fillfactor = 80);
    CREATE INDEX sessions_user_history ON sessions (user_id, start_time);
    CREATE INDEX sessions_stop_time ON sessions (stop_time) WHERE stop_time IS NOT NULL;
    CREATE TABLE users (
        user_id      bigint PRIMARY KEY,
        username     text UNIQUE,
        reseller_id  bigint,
        max_sessions bigint
    );
    -- one row per commit: the writing transaction's id and the ids of the sessions it wrote
    CREATE TABLE session_changes (
        xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
        ids text[] NOT NULL
    );
    CREATE INDEX session_changes_xid ON session_changes (xid);
    -- changes below ``floor`` have been pruned: a reader whose cursor is lower must reload
    CREATE TABLE feed_state (floor xid8 NOT NULL);
    INSERT INTO feed_state (floor) VALUES ('0');
    CREATE FUNCTION radtrack_notify_changes() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify('{NOTIFY_CHANNEL}', '');
        RETURN NULL;
    END $$;
    CREATE TRIGGER session_changes_notify AFTER INSERT ON session_changes
        FOR EACH STATEMENT EXECUTE FUNCTION radtrack_notify_changes();
    """,
    # 2: where each node's feed reader is (store/pg/store.py saves it every minute), so that
    # changes every live node has read can be pruned
    """
    CREATE TABLE feed_cursors (
        node   text PRIMARY KEY,
        cursor xid8 NOT NULL,
        seen   timestamptz NOT NULL DEFAULT now()
    );
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)

# any constant of our own: the advisory lock that serialises migrations across nodes
_MIGRATION_LOCK = 0x7261_6474_7261_636B  # "radtrack"


class SchemaTooNew(StoreError):
    """The database was written by a newer radtrack."""


async def schema_version(conn: Connection) -> int:
    """The version of the schema in the database; 0 when radtrack never migrated it."""
    exists = await conn.fetchval("SELECT to_regclass('schema_version') IS NOT NULL")
    if not exists:
        return 0
    return int(await conn.fetchval("SELECT version FROM schema_version"))


async def migrate(conn: Connection) -> int:
    """Bring the schema to SCHEMA_VERSION (an asyncpg connection); returns the version found
    before. Raises SchemaTooNew, and changes nothing, if the database is newer than this
    radtrack."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL);"
            "INSERT INTO schema_version (version) "
            "SELECT 0 WHERE NOT EXISTS (SELECT FROM schema_version)"
        )
        version = await schema_version(conn)
        if version > SCHEMA_VERSION:
            raise SchemaTooNew(
                f"database schema version {version} is newer than this radtrack's "
                f"{SCHEMA_VERSION}: upgrade radtrack"
            )
        for target in range(version, SCHEMA_VERSION):
            await conn.execute(MIGRATIONS[target])
        await conn.execute("UPDATE schema_version SET version = $1", SCHEMA_VERSION)
    return version
