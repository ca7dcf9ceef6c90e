"""The SQLite store: one node, one file (the default). store/base.py's ``Store`` on the writer
(group commit to the journal, folds, checkpoints: store/writer.py), start-up recovery
(store/recovery.py) and the history reader (store/history.py)."""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from radtrack.errors import StoreError, UsernameTaken
from radtrack.model import Session, User, taken_username
from radtrack.store import recovery, snapshot
from radtrack.store.base import LiveState, RemoteApply
from radtrack.store.history import PRUNE, PRUNE_CHUNK, HistoryReader
from radtrack.store.schema import FREE_OWN_USERNAME, UPSERT_USER, username_owners
from radtrack.store.writer import Writer

logger = logging.getLogger(__name__)


def _session_id(session: Session) -> str:
    return session.id


class SqliteStore(Writer):
    """The writer plus the operations the daemon and the API name."""

    def __init__(
        self,
        path: Path,
        *,
        synchronous: str = "FULL",
        max_batch: int = 10_000,
        commit_delay: float = 0.0,
        busy_timeout: float = 1.0,
        cache_mb: int = 256,
    ) -> None:
        super().__init__(
            path,
            synchronous=synchronous,
            max_batch=max_batch,
            commit_delay=commit_delay,
            busy_timeout=busy_timeout,
            cache_mb=cache_mb,
        )
        self.history = HistoryReader(path)
        # the snapshot (store/snapshot.py): the database file as this start found it, the
        # data_version after start-up broke the seal, where the online sessions come from at
        # close, and the closed-session limit they were loaded with
        self._file_at_open: tuple[int, int, int] | None = None
        self._unchanged_since: int | None = None
        self._online: Callable[[], list[Session]] | None = None
        self._closed_limit = 0
        self._sealed: snapshot.Sealed | str | None = None

    async def open(self) -> None:
        self._file_at_open = snapshot.file_stamp(self.path)  # before anything opens it
        await super().open()
        await self.history.open()

    async def close(self, timeout: float | None = None) -> None:
        await self.history.close()
        await super().close(timeout)  # _last_words seals, if the close is clean
        sealed, self._sealed = self._sealed, None
        online, self._online = self._online, None
        if isinstance(sealed, str):
            logger.info("event=snapshot_skipped reason=%r", sealed)
        elif sealed is not None and online is not None:
            await self._write_snapshot(sealed, online())

    def _last_words(self, conn: sqlite3.Connection) -> None:
        if self._online is not None and self._unchanged_since is not None:
            self._sealed = snapshot.take_seal(conn, self._unchanged_since, self._closed_limit)

    async def _write_snapshot(self, sealed: snapshot.Sealed, online: list[Session]) -> None:
        started = time.monotonic()
        stamp = snapshot.Stamp(
            sealed.token, sealed.schema_version, self._closed_limit, snapshot.file_stamp(self.path)
        )

        def write() -> int:
            online.sort(key=_session_id)  # the table's order, which a table start gives
            return snapshot.write(self.path, stamp, [*online, *sealed.closed], sealed.users)

        try:
            size = await asyncio.to_thread(write)
        except (snapshot.SnapshotInvalid, OSError) as exc:
            logger.warning(
                "event=snapshot_failed error=%r (the next start reads the table)", str(exc)
            )
            return
        logger.info(
            "event=snapshot_written sessions=%d users=%d bytes=%d seconds=%.2f",
            len(online) + len(sealed.closed),
            len(sealed.users),
            size,
            time.monotonic() - started,
        )

    def describe(self) -> str:
        return str(self.path)

    def keep_at_close(self, online: Callable[[], list[Session]]) -> None:
        self._online = online

    async def load_state(self, closed_limit: int) -> LiveState:
        path = self.path
        self._closed_limit = closed_limit
        token, schema_version, self._unchanged_since = await self.on_main(
            functools.partial(snapshot.break_seal, synchronous=self._main_synchronous)
        )
        expected = snapshot.Stamp(token, schema_version, closed_limit, self._file_at_open)

        def load() -> tuple[list[Session], list[User], str]:
            found = snapshot.load(path, expected)  # and gone: the seal is broken already
            if found is not None:
                return *found, "snapshot"
            return (
                list(recovery.load_sessions(path, closed_limit)),
                recovery.load_users(path),
                "table",
            )

        sessions, users, source = await asyncio.to_thread(load)
        self.stats.recovered_from_snapshot = source == "snapshot"
        return LiveState(sessions, users, self.stats.recovered_journal_rows, source)

    def follow_remote(self, apply: RemoteApply) -> None:
        """Only this node writes a SQLite file: nothing comes from elsewhere."""

    async def maintain(self) -> None:
        await self.checkpoint()

    async def load_users(self) -> list[User]:
        return await asyncio.to_thread(recovery.load_users, self.path)

    async def upsert_users(self, users: Sequence[User]) -> None:
        # what the file says now (`radtrack users import` may have written since the last load)
        taken = await asyncio.to_thread(self._taken_username, users)
        if taken is not None:
            raise taken
        # one transaction; shielded so a cancelled HTTP request cannot half-apply it
        await asyncio.shield(
            self.run(
                [
                    (FREE_OWN_USERNAME, [(u.user_id,) for u in users]),
                    (
                        UPSERT_USER,
                        [(u.user_id, u.username, u.reseller_id, u.max_sessions) for u in users],
                    ),
                ]
            )
        )

    def _taken_username(self, users: Sequence[User]) -> UsernameTaken | None:
        names = [u.username for u in users if u.username is not None]
        if not names:
            return None
        try:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, isolation_level=None)
            try:
                owners = username_owners(conn, names)
            finally:
                conn.close()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the users: {exc}") from None
        return taken_username(users, owners.get)

    async def history_page(
        self,
        user_id: int,
        *,
        since: float | None,
        until: float | None,
        limit: int,
        cursor: str | None,
    ) -> tuple[list[Session], str | None]:
        # the history reads ``sessions``: fold the journal first, so every acknowledged packet
        # is in what it reads
        await self.sync()
        return await self.history.page(
            user_id, since=since, until=until, limit=limit, cursor=cursor
        )

    async def prune_closed(self, before: float) -> int:
        total = 0
        while True:
            changed = await self.execute(PRUNE, (before,))
            total += changed
            if changed < PRUNE_CHUNK:
                return total
