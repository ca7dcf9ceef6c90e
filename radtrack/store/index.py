"""The live state: every online session, by id and by user, plus recently closed ones.

Pure data, no I/O and no clock. The accounting core is the only writer; the API, the CLI status
line and metrics read it. Memory per session matters (a million sessions must fit in ~750 MB), so
there is one dict by id, one dict entry per user (its sessions chained through
``Session.next_of_user``, no list per user), and per-NAS counts instead of per-NAS dicts.
"""

from __future__ import annotations

import bisect
import re
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence

from radtrack.model import KEY_LENGTH, Session, User


class UserDirectory:
    """Maps a session's User-Name (or Class) to an API user id, and users to their reseller.

    Order: an entry of the users table for that User-Name; else a numeric User-Name is the user
    id (when ``numeric_user_names``); else ``pattern`` over the User-Name or the Class text.
    """

    def __init__(
        self,
        *,
        numeric_user_names: bool = True,
        pattern: str | None = None,
        pattern_attribute: str = "User-Name",
    ) -> None:
        self.numeric_user_names = numeric_user_names
        self.pattern = re.compile(pattern) if pattern else None
        self.pattern_attribute = pattern_attribute
        self._by_name: dict[str, User] = {}
        self._by_id: dict[int, User] = {}

    def upsert(self, user: User) -> User | None:
        """Add or replace a user; returns the previous entry for that user id."""
        old = self._by_id.get(user.user_id)
        if old is not None and old.username is not None:
            self._by_name.pop(old.username, None)
        if user.username is not None:
            stale = self._by_name.get(user.username)
            if stale is not None and stale.user_id != user.user_id:
                # a username maps to one user id: the newer entry takes it over
                self._by_id[stale.user_id] = User(
                    stale.user_id, None, stale.reseller_id, stale.max_sessions
                )
            self._by_name[user.username] = user
        self._by_id[user.user_id] = user
        return old

    def get(self, user_id: int) -> User | None:
        return self._by_id.get(user_id)

    def __len__(self) -> int:
        return len(self._by_id)

    def resolve(self, user_name: str | None, class_hex: str | None) -> int | None:
        """The user id of a session, or None when nothing maps it."""
        if user_name is not None:
            user = self._by_name.get(user_name)
            if user is not None:
                return user.user_id
            if self.numeric_user_names and user_name.isascii() and user_name.isdigit():
                value = int(user_name)
                if value < 2**31:  # GraphQL Int is 32-bit signed
                    return value
        if self.pattern is not None:
            if self.pattern_attribute == "Class":
                text = bytes.fromhex(class_hex).decode("utf-8", "replace") if class_hex else None
            else:
                text = user_name
            if text is not None:
                match = self.pattern.search(text)
                if match is not None:
                    try:
                        value = int(match.group(1) if match.groups() else match.group(0))
                    except ValueError:
                        return None
                    if 0 <= value < 2**31:
                        return value
        return None

    def reseller_of(self, user_id: int) -> int | None:
        user = self._by_id.get(user_id)
        return None if user is None else user.reseller_id


class SessionIndex:
    """Online sessions by id and by user id, per-NAS counts, and a bounded set of closed ones.

    Closed sessions are kept (at most ``closed_capacity``, oldest evicted first) so that a late
    Interim-Update or Start after a Stop does not reopen the session (RFC 2866 §5.1 ordering is
    not guaranteed on UDP) and a late Start can still complete the closed record.

    A NAS may reuse an Acct-Session-Id (its counter restarts at boot): one key (NAS,
    Acct-Session-Id, Class) then has several sessions, its incarnations, each with its own id
    (model.incarnation_id). For those keys only, ``_lineages`` holds the incarnations in memory,
    oldest first; every other key has one, found by its id, which is the key.
    """

    def __init__(self, closed_capacity: int = 100_000) -> None:
        self._online: dict[str, Session] = {}
        # user id -> one of its online sessions, the head of a chain through next_of_user
        self._by_user: dict[int, Session] = {}
        self._closed: OrderedDict[str, Session] = OrderedDict()
        self.closed_capacity = closed_capacity
        # online sessions per NAS name; a plain dict: a Counter's item assignment goes through
        # a Python-level slot (it defines __delitem__), ~5x slower per session opened
        self.per_nas: dict[str, int] = {}
        # key -> its incarnations in memory (online or closed), by start time: reused keys only
        self.lineages: dict[str, list[Session]] = {}
        # bumped before and after each unlink from a user's chain (odd: one is under way), so
        # that a walk on the API's thread (radtrack/api/thread.py) sees it and walks again; a
        # link at a chain's head needs none (the new head points to the old before it is one)
        self.relinks = 0

    # -- reads (API, metrics) -------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._online)

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self._online.values()))

    def get(self, session_id: str) -> Session | None:
        """An online session by its opaque id."""
        return self._online.get(session_id)

    def find(self, session_id: str) -> Session | None:
        """An online or recently closed session by its opaque id."""
        return self._online.get(session_id) or self._closed.get(session_id)

    def incarnations(self, key: str) -> Sequence[Session]:
        """The sessions of a key (NAS, Acct-Session-Id, Class) in memory, oldest first; the last
        is the current one, which later packets of the key find."""
        lineage = self.lineages.get(key)
        if lineage is not None:
            return lineage
        session = self._online.get(key) or self._closed.get(key)
        return () if session is None else (session,)

    def for_user(self, user_id: int) -> list[Session]:
        """The online sessions of a user, oldest first."""
        sessions = self._chain(user_id)
        sessions.sort(key=_start_key)
        return sessions

    def _chain(self, user_id: int) -> list[Session]:
        """The sessions in a user's chain; from another thread than ingest's, consistent: a
        walk that an unlink overlapped is walked again (``relinks``)."""
        while True:
            before = self.relinks
            sessions = []
            session = self._by_user.get(user_id)
            while session is not None:
                if session.stop_time is None:  # a Stop closes, then unlinks
                    sessions.append(session)
                session = session.next_of_user
            if self.relinks == before and not before & 1:
                return sessions
            time.sleep(0)  # let ingest's thread finish the unlink

    def count_for_user(self, user_id: int) -> int:
        return len(self._chain(user_id))

    def online_of_nas(self, nas_key: str) -> list[Session]:
        """Online sessions of one NAS (a scan: used only for Accounting-On/Off, which is rare)."""
        return [s for s in self._online.values() if s.nas_key == nas_key]

    # -- writes (accounting core, recovery) ----------------------------------------------------
    def add_online(self, session: Session) -> None:
        online = self._online
        count = len(online)
        old = online.setdefault(session.id, session)  # one lookup for the usual, new session
        if len(online) == count:  # the id was online already: this record replaces that one
            self._unlink(old)
            online[session.id] = session
        if self._closed:
            self._closed.pop(session.id, None)  # reopened (stale): no longer takes a closed slot
        per_nas = self.per_nas
        nas_name = session.origin.nas_name  # Session.nas_name is a property: a call
        per_nas[nas_name] = per_nas.get(nas_name, 0) + 1
        user_id = session.user_id
        if user_id is not None:
            head = self._by_user.get(user_id)
            if head is not None:
                # the user's id and name as one object for all its sessions, not one each (an
                # int above 256 and a str: 48 of the 693 bytes of a session rebuilt from the
                # database, two sessions a user)
                session.user_id = head.user_id
                if session.user_name == head.user_name:
                    session.user_name = head.user_name
            session.next_of_user = head
            self._by_user[user_id] = session

    def close(self, session: Session) -> None:
        """Move an online session (already given its stop time) to the closed set."""
        if self._online.pop(session.id, None) is not None:
            self._unlink(session)
        self.remember_closed(session)

    def remember_closed(self, session: Session) -> None:
        self._closed[session.id] = session
        self._closed.move_to_end(session.id)
        while len(self._closed) > self.closed_capacity:
            _, evicted = self._closed.popitem(last=False)
            if self.lineages:
                self._forget_incarnation(evicted)

    def add_incarnation(self, session: Session) -> None:
        """File a session whose key already has one (or, at start-up, whose id says it is a
        later incarnation) among its key's incarnations; add_online or remember_closed too."""
        key = session.id[:KEY_LENGTH]
        lineage = self.lineages.get(key)
        if lineage is None:
            lineage = self.lineages[key] = []
            first = self._online.get(key) or self._closed.get(key)
            if first is not None and first is not session:
                lineage.append(first)
        if session not in lineage:
            bisect.insort(lineage, session, key=_start_time)

    def _forget_incarnation(self, session: Session) -> None:
        key = session.id[:KEY_LENGTH]
        lineage = self.lineages.get(key)
        if lineage is not None and session in lineage:
            lineage.remove(session)
            if not lineage:
                del self.lineages[key]

    def forget(self, session: Session) -> None:
        """Drop a session from the live state, online or closed (its store row was rejected)."""
        if self._online.get(session.id) is session:
            del self._online[session.id]
            self._unlink(session)
        if self._closed.get(session.id) is session:
            del self._closed[session.id]
        if self.lineages:
            self._forget_incarnation(session)

    def set_user(self, session: Session, user_id: int | None) -> None:
        """Re-file an online session under another user id (after a users-table change)."""
        if session.user_id == user_id:
            return
        online = self._online.get(session.id) is session
        if online:
            self._unlink(session)
        session.user_id = user_id
        if online:
            nas_name = session.origin.nas_name
            self.per_nas[nas_name] = self.per_nas.get(nas_name, 0) + 1
            if user_id is not None:
                session.next_of_user = self._by_user.get(user_id)
                self._by_user[user_id] = session

    def _unlink(self, session: Session) -> None:
        self.relinks += 1
        nas_name = session.origin.nas_name
        count = self.per_nas[nas_name] - 1
        if count > 0:
            self.per_nas[nas_name] = count
        else:
            del self.per_nas[nas_name]
        user_id = session.user_id
        if user_id is not None:
            head = self._by_user.get(user_id)
            if head is session:
                if session.next_of_user is None:
                    del self._by_user[user_id]
                else:
                    self._by_user[user_id] = session.next_of_user
            else:
                previous = head
                while previous is not None:
                    following = previous.next_of_user
                    if following is session:
                        previous.next_of_user = session.next_of_user
                        break
                    previous = following
        session.next_of_user = None
        self.relinks += 1


def _start_time(session: Session) -> float:
    return session.start_time


def _start_key(session: Session) -> tuple[float, str]:
    return (session.start_time, session.id)
