"""Session control (issue #6): device limits per user, and RFC 5176 Disconnect-Requests to a
session's NAS, asked for by the API or by the limit policy after a committed Start.

The limits count every session in the memory index: on PostgreSQL that holds the sessions of
every node (store/pg/), so a user's limit is enforced across the cluster.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from radtrack.model import ChangeKind, Session, SessionChange
from radtrack.radius.disconnect import DisconnectClient, DisconnectResult
from radtrack.radius.settings import ClientSettings
from radtrack.store.index import SessionIndex, UserDirectory

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LimitSettings:
    default_max_sessions: int = 0  # 0: no limit
    limit_policy: str = "off"  # or "disconnect-oldest" / "disconnect-newest"


class SessionControl:
    """Device limits and disconnects over the live state; ``clients`` is replaced on reload."""

    def __init__(
        self,
        index: SessionIndex,
        users: UserDirectory,
        limits: LimitSettings,
        clients: Sequence[ClientSettings] = (),
    ) -> None:
        self.index = index
        self.users = users
        self.limits = limits
        self.clients = clients
        self.disconnector: DisconnectClient | None = None  # set at start-up
        self.results: Counter[str] = Counter()
        self._actions: set[asyncio.Task[DisconnectResult]] = set()

    def device_limit(self, user_id: int) -> int:
        """The most sessions a user may have online; 0 means no limit."""
        user = self.users.get(user_id)
        if user is not None and user.max_sessions:
            return user.max_sessions
        return self.limits.default_max_sessions

    async def disconnect(self, session: Session, *, requested_by: str) -> DisconnectResult:
        """Send a Disconnect-Request for an online session to its NAS (RFC 5176) and report
        the result; after an ACK the session is marked disconnecting until its Stop arrives."""
        assert self.disconnector is not None
        client = next((c for c in self.clients if c.name == session.nas_name), None)
        if client is None:
            raise LookupError(f"the NAS {session.nas_name!r} is no longer configured")
        if client.radsec:
            raise LookupError(
                f"the NAS {session.nas_name!r} sends over RadSec, and Disconnect-Request over "
                "RadSec is not supported yet"
            )
        result = await self.disconnector.disconnect(session, client, event_time=int(time.time()))
        self.results[result.status] += 1
        if session.online:
            session.disconnecting = result.status == "ACK"
        logger.info(
            "event=disconnect by=%s session=%s user=%s nas=%s result=%s error_cause=%s",
            requested_by,
            session.id,
            session.user_id,
            session.nas_name,
            result.status,
            result.error_cause,
        )
        return result

    def enforce_limits(self, changes: Sequence[SessionChange]) -> None:
        """After a committed Start: a user over its device limit is reported, and with a
        limit_policy its oldest (or newest) sessions get a Disconnect-Request."""
        policy = self.limits.limit_policy
        seen: set[int] = set()
        for change in changes:
            user_id = change.session.user_id
            if change.kind is not ChangeKind.STARTED or user_id is None or user_id in seen:
                continue
            seen.add(user_id)
            limit = self.device_limit(user_id)
            if not limit:
                continue
            online = [s for s in self.index.for_user(user_id) if not s.disconnecting]
            excess = len(online) - limit
            if excess <= 0:
                continue
            logger.info(
                "event=device_limit_exceeded user=%s online=%d limit=%d policy=%s",
                user_id,
                len(online),
                limit,
                policy,
            )
            if policy == "off":
                continue
            victims = online[:excess] if policy == "disconnect-oldest" else online[-excess:]
            for victim in victims:
                victim.disconnecting = True  # counted as leaving: no second request for it
                task = asyncio.get_running_loop().create_task(
                    self.disconnect(victim, requested_by=f"limit-policy:{policy}")
                )
                self._actions.add(task)
                task.add_done_callback(self._action_done)

    def _action_done(self, task: asyncio.Task[DisconnectResult]) -> None:
        self._actions.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("event=limit_disconnect_failed error=%r", str(task.exception()))

    def cancel(self) -> None:
        """Shutdown: the disconnects still running are cancelled."""
        for action in list(self._actions):
            action.cancel()
