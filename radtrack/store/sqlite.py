"""The SQLite store: one node, one file (the default). store/base.py's ``Store`` on the writer
(group commit to the journal, folds, checkpoints: store/writer.py), start-up recovery
(store/recovery.py) and the history reader (store/history.py)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from radtrack.errors import StoreError, UsernameTaken
from radtrack.model import Session, User, taken_username
from radtrack.store import recovery
from radtrack.store.base import LiveState, RemoteApply
from radtrack.store.history import PRUNE, PRUNE_CHUNK, HistoryReader
from radtrack.store.schema import FREE_OWN_USERNAME, UPSERT_USER, username_owners
from radtrack.store.writer import Writer


class SqliteStore(Writer):
    """The writer plus the operations the daemon and the API name."""

    def __init__(
        self,
        path: Path,
        *,
        synchronous: str = "FULL",
        max_batch: int = 10_000,
        busy_timeout: float = 1.0,
        cache_mb: int = 256,
    ) -> None:
        super().__init__(
            path,
            synchronous=synchronous,
            max_batch=max_batch,
            busy_timeout=busy_timeout,
            cache_mb=cache_mb,
        )
        self.history = HistoryReader(path)

    async def open(self) -> None:
        await super().open()
        await self.history.open()

    async def close(self, timeout: float | None = None) -> None:
        await self.history.close()
        await super().close(timeout)

    def describe(self) -> str:
        return str(self.path)

    async def load_state(self, closed_limit: int) -> LiveState:
        path = self.path

        def load() -> tuple[list[Session], list[User]]:
            return list(recovery.load_sessions(path, closed_limit)), recovery.load_users(path)

        sessions, users = await asyncio.to_thread(load)
        return LiveState(sessions, users, self.stats.recovered_journal_rows)

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
