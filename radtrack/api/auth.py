"""Bearer tokens: who is asking (what each may see is radtrack.api.access).

Tokens are configured as SHA-256 digests (api.tokens, api.metrics_token_sha256); a presented
token is hashed and compared with every configured digest in constant time, without stopping at
a match. Tokens are never logged, and neither are digests.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass, field

from radtrack.api.settings import ADMIN, EXAMPLE_TOKENS, TokenSettings, token_digest


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: the name of the token (for logs) and its scopes."""

    name: str
    scopes: frozenset[str]
    reseller_id: int | None = None
    # the digest of the token this principal came from: a reload that removes the token
    # ends what was authorised with it (open subscriptions included)
    token_digest: bytes = field(default=b"", repr=False)

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.scopes


class TokenVerifier:
    """Maps an Authorization header to a Principal, or None when the token is not configured."""

    def __init__(self, tokens: Iterable[TokenSettings]) -> None:
        self._entries = tuple(
            (t.sha256, Principal(t.name, frozenset(t.scopes), t.reseller_id, t.sha256))
            for t in tokens
        )
        self._principals = frozenset(principal for _, principal in self._entries)
        configured = {digest for digest, _ in self._entries}
        # the first public example token that is configured, for the dashboard's hint
        self.example_token = next(
            (token for token in EXAMPLE_TOKENS if token_digest(token) in configured), None
        )

    def knows(self, principal: Principal) -> bool:
        """The principal's token (with the same name and scopes) is still configured."""
        return principal in self._principals

    def authenticate(self, authorization: bytes | None) -> Principal | None:
        digest = bearer_digest(authorization)
        if digest is None:
            return None
        found: Principal | None = None
        for expected, principal in self._entries:  # every digest, no early exit
            if hmac.compare_digest(digest, expected):
                found = principal
        return found


def bearer_digest(authorization: bytes | None) -> bytes | None:
    """The SHA-256 of the token of an ``Authorization: Bearer <token>`` header, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(b" ")
    token = token.strip()
    if scheme.lower() != b"bearer" or not token:
        return None
    return hashlib.sha256(token).digest()


def bearer_matches(authorization: bytes | None, expected: bytes) -> bool:
    """The header carries the token whose SHA-256 is ``expected`` (compared in constant time)."""
    digest = bearer_digest(authorization)
    return digest is not None and hmac.compare_digest(digest, expected)
