"""The exception family of radtrack, one class per boundary.

Contracts:
- ``config.load`` raises only ConfigError (with the key path and a hint).
- ``radius.dictionary.load`` raises only DictionaryError.
- ``radius.codec.decode`` raises only MalformedPacket; anything else is a bug.
- a store (``store.base.Store``) reports a failed write as StoreError; a failed commit's packets
  get no reply. A users write that would take a username from a user id it does not also
  write is refused whole with UsernameTaken.
"""

from __future__ import annotations


class RadtrackError(Exception):
    """Base of every error radtrack raises on purpose."""


class ConfigError(RadtrackError):
    """The configuration is invalid; ``path`` names the key (e.g. ``radius.clients[0].secret``)."""

    def __init__(self, path: str, message: str, hint: str = "") -> None:
        self.path = path
        self.message = message
        self.hint = hint
        text = f"{path}: {message}" if path else message
        if hint:
            text += f" (hint: {hint})"
        super().__init__(text)


class DictionaryError(RadtrackError):
    """A RADIUS dictionary could not be loaded or lacks an attribute radtrack needs."""


class MalformedPacket(RadtrackError):
    """A datagram is not a well-formed RADIUS packet (RFC 2865 §3, §5)."""


class StoreError(RadtrackError):
    """A database write failed (disk full, read-only, locked); nothing of it is acknowledged."""


class UsernameTaken(RadtrackError):
    """A users write gives ``username`` to ``user_id`` (entry ``index`` of the write), but user
    ``owner``, which the write leaves alone, holds it; usernames are unique, and one is never
    taken from a user silently (its sessions would change hands). Nothing was written."""

    def __init__(self, username: str, owner: int, user_id: int, index: int) -> None:
        super().__init__(f"username {username!r} belongs to user {owner}, not to user {user_id}")
        self.username = username
        self.owner = owner
        self.user_id = user_id
        self.index = index


class StartupError(RadtrackError):
    """The daemon cannot start (busy port, unusable database...)."""
