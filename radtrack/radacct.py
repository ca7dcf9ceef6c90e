"""`radtrack import radacct`: reading a FreeRADIUS ``radacct`` table (the schemas FreeRADIUS 3
ships for SQLite and PostgreSQL) as dicts of lower-case column names, and the import's steps:
the store's users, the rows mapped (radtrack/importer.py), written (radtrack/store/imports.py)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from radtrack.errors import StoreError
from radtrack.importer import (
    COLUMNS,
    OPTIONAL_COLUMNS,
    Mapper,
    Progress,
    Summary,
    decide,
    keys_of,
    map_rows,
)
from radtrack.model import Session
from radtrack.store import imports


def _where(history: bool) -> str:
    return "" if history else " WHERE acctstoptime IS NULL"


def _select(present: set[str], history: bool) -> str:
    missing = set(COLUMNS) - set(OPTIONAL_COLUMNS) - present
    if missing:
        raise ValueError(f"radacct has no column {', '.join(sorted(missing))}")
    names = [c for c in (*COLUMNS, *OPTIONAL_COLUMNS) if c in present]
    names = list(dict.fromkeys(names))
    return f"SELECT {', '.join(names)} FROM radacct{_where(history)} ORDER BY radacctid"


def read_sqlite(path: Path, history: bool) -> tuple[int, Iterator[dict[str, Any]]]:
    """(rows to read, the rows) of the radacct table in a SQLite file, read-only. Raises
    sqlite3.Error (no such file or table) or ValueError (not FreeRADIUS's columns)."""
    if not path.is_file():
        raise sqlite3.OperationalError(f"no such file: {path}")
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        present = {row[1].lower() for row in conn.execute("PRAGMA table_info(radacct)")}
        if not present:
            raise sqlite3.OperationalError(f"{path} has no radacct table")
        select = _select(present, history)
        (total,) = conn.execute(f"SELECT count(*) FROM radacct{_where(history)}").fetchone()
    except BaseException:
        conn.close()
        raise

    def rows() -> Iterator[dict[str, Any]]:
        try:
            cursor = conn.execute(select)
            names = [d[0].lower() for d in cursor.description]
            for values in cursor:
                yield dict(zip(names, values, strict=True))
        finally:
            conn.close()

    return int(total), rows()


async def read_postgresql(dsn: str, password: str | None, history: bool) -> list[dict[str, Any]]:
    """Every row to import of radacct in a PostgreSQL database (held in memory: a radacct of
    open sessions is small; a long history may want --history left off). Raises asyncpg's
    errors, OSError, or ValueError (not FreeRADIUS's columns)."""
    import asyncpg

    conn = await asyncpg.connect(dsn, password=password, timeout=10)
    try:
        present = {
            r["column_name"].lower()
            for r in await conn.fetch(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_name = 'radacct' AND table_schema = ANY(current_schemas(false))"
            )
        }
        if not present:
            raise ValueError("the database has no radacct table")
        records = await conn.fetch(_select(present, history))
    finally:
        await conn.close()
    return [{k.lower(): v for k, v in record.items()} for record in records]


def _errors() -> tuple[type[Exception], ...]:
    errors: tuple[type[Exception], ...] = (sqlite3.Error, OSError, ValueError, StoreError)
    try:
        import asyncpg
    except ImportError:  # pragma: no cover - the [postgresql] extra is not installed
        return errors
    return (*errors, asyncpg.PostgresError, asyncpg.InterfaceError)


# what run() raises when the source, the store or the data says no (the CLI prints it)
ERRORS = _errors()


def is_dsn(source: str) -> bool:
    return source.startswith(("postgresql://", "postgres://"))


@dataclass(frozen=True, slots=True)
class Target:
    """The configured store, as the import needs it (cli.py builds it from the settings)."""

    backend: str  # "sqlite" or "postgresql"
    path: Path
    dsn: str = ""
    password: str | None = field(default=None, repr=False)


def run(
    source: str,
    target: Target,
    mapper: Mapper,
    *,
    history: bool,
    progress_to: TextIO | None,
) -> Summary:
    """Import the radacct table at ``source`` (a SQLite file or a PostgreSQL DSN) into
    ``target``. Raises sqlite3.Error, OSError, ValueError, StoreError (DatabaseInUse) or
    asyncpg's errors."""
    if target.backend == "postgresql":
        users = asyncio.run(imports.postgresql_users(target.dsn, target.password))
    else:
        users = imports.sqlite_users(target.path)
    for user in users:
        mapper.users.upsert(user)
    if is_dsn(source):
        records = asyncio.run(read_postgresql(source, None, history))
        total, rows = len(records), iter(records)
    else:
        total, rows = read_sqlite(Path(source), history)
    summary = Summary()
    progress = Progress(total, progress_to)
    mapped = map_rows(rows, mapper, summary, progress)
    progress.finish()

    def decided(stored: Mapping[str, list[imports.Known]]) -> list[Session]:
        return decide(mapped, stored, summary)

    if target.backend == "postgresql":
        sessions, newer = asyncio.run(
            imports.import_postgresql(target.dsn, target.password, keys_of(mapped), decided)
        )
        summary.present += newer
    else:
        sessions = imports.import_sqlite(target.path, keys_of(mapped), decided)
    summary.imported = len(sessions)
    summary.online = sum(1 for s in sessions if s.online)
    return summary
