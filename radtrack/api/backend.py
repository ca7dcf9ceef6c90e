"""What the API needs from the daemon: the live state to read and the users table to write.

The daemon implements Backend; tests use an in-memory fake. Resolvers read ``index`` and
``users`` only (never SQLite), so a GraphQL read never waits on ingest.
"""

from __future__ import annotations

from typing import Protocol

from radtrack.model import Session, User
from radtrack.radius.disconnect import DisconnectResult
from radtrack.store.index import SessionIndex, UserDirectory
from radtrack.trend import SessionTrend


class Backend(Protocol):
    @property
    def index(self) -> SessionIndex:
        """The memory index of online sessions (read only for the API)."""
        ...

    @property
    def users(self) -> UserDirectory:
        """User ids to owning resellers (read only for the API; written by upsert_users)."""
        ...

    @property
    def trend(self) -> SessionTrend:
        """The last hour of the live state (read only for the API: ``read`` copies it)."""
        ...

    async def upsert_users(self, users: list[User]) -> None:
        """Write users durably, then update ``users``; raises UsernameTaken (nothing written)
        when a username would be taken from a user not in ``users``, StoreError when the write
        fails."""
        ...

    def readiness(self) -> dict[str, bool]:
        """Readiness of each part, e.g. {"udp": True, "database": True}; /readyz adds "http"."""
        ...

    def device_limit(self, user_id: int) -> int:
        """The most sessions the user may have online; 0 means no limit."""
        ...

    async def disconnect(self, session: Session, *, requested_by: str) -> DisconnectResult:
        """Send a Disconnect-Request to the session's NAS; LookupError if it cannot be sent."""
        ...

    @property
    def history_page_max(self) -> int:
        """The largest page sessionHistory may return."""
        ...

    async def session_history(
        self,
        user_id: int,
        *,
        since: float | None,
        until: float | None,
        limit: int,
        cursor: str | None,
    ) -> tuple[list[Session], str | None]:
        """A page of the user's stored sessions, newest first, and the next page's cursor."""
        ...
