"""The exception family of radtrack, one class per boundary.

Contracts:
- ``config.load`` raises only ConfigError (with the key path and a hint); a file with several
  errors raises ConfigErrors, a ConfigError that holds them all (``errors``).
- ``radius.dictionary.load`` raises only DictionaryError.
- ``radius.codec.decode`` raises only MalformedPacket; anything else is a bug.
- a store (``store.base.Store``) reports a failed write as StoreError; a failed commit's packets
  get no reply. A users write that would take a username from a user id it does not also
  write is refused whole with UsernameTaken.
"""

from __future__ import annotations

from collections.abc import Sequence


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

    @property
    def errors(self) -> tuple[ConfigError, ...]:
        """Every error this one stands for: itself (ConfigErrors: all of them)."""
        return (self,)


class ConfigErrors(ConfigError):
    """Several errors of one configuration, in the order they were found; ``path``,
    ``message`` and ``hint`` are the first one's, ``str()`` joins them all with "; "."""

    def __init__(self, errors: Sequence[ConfigError]) -> None:
        first = errors[0]
        super().__init__(first.path, first.message, first.hint)
        self._errors = tuple(errors)
        self.args = ("; ".join(str(error) for error in self._errors),)

    @property
    def errors(self) -> tuple[ConfigError, ...]:
        return self._errors


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
