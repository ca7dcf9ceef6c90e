"""The users directory kept in agreement with the store and with the online sessions: a user
written (the API's upsertUsers, `radtrack users import` picked up on SIGHUP) is stored, then
known in memory, and the online sessions of its User-Name are re-filed under its user id, in
memory and in the store (DESIGN.md invariant 3: both agree)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from radtrack.model import ChangeKind, SessionChange, User
from radtrack.store.base import Store
from radtrack.store.index import SessionIndex, UserDirectory

logger = logging.getLogger(__name__)


class UserSync:
    def __init__(self, index: SessionIndex, users: UserDirectory, store: Store) -> None:
        self.index = index
        self.users = users
        self.store = store

    async def upsert(self, users: Sequence[User]) -> None:
        """Write users durably, then update memory; StoreError when the write fails."""
        await self.store.upsert_users(users)
        for user in users:
            self.users.upsert(user)
        self.remap({user.username for user in users if user.username is not None})

    async def reload(self) -> None:
        """Pick up users written to the store by someone else (`radtrack users import`)."""
        try:
            users = await self.store.load_users()
        except Exception as exc:  # a locked or failing database: keep the users we have
            logger.warning("event=users_reload_failed error=%r", str(exc))
            return
        changed = [u for u in users if self.users.get(u.user_id) != u]
        for user in changed:
            self.users.upsert(user)
        if changed:
            self.remap({u.username for u in changed if u.username is not None})
            logger.info("event=users_reloaded changed=%d", len(changed))

    def remap(self, names: set[str]) -> None:
        """Re-file the online sessions of these User-Names under their (new) user ids."""
        if not names:
            return
        changes = []
        for session in self.index:
            if session.user_name in names:
                user_id = self.users.resolve(session.user_name, session.class_hex)
                if user_id != session.user_id:
                    self.index.set_user(session, user_id)
                    changes.append(SessionChange(ChangeKind.UPDATED, session))
        if changes:
            self.store.submit(changes)
