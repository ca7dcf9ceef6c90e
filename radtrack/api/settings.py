"""The API's settings: where it listens, its bearer tokens and its limits.

config.py builds them from the ``[api]`` table (and its ``[[api.tokens]]``); the defaults here
are the ones config.example.toml documents. This module imports no GraphQL: the CLI and the
config reader use it without loading the API.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from radtrack.endpoint import Endpoint

ADMIN = "admin"
RESELLER = "reseller"
SCOPES = (ADMIN, RESELLER)


# The tokens of config.example.toml, which are public (its comments and the README give them):
# while one is configured, the dashboard shows it, for a first user to type (never any other
# token: the server knows only their digests). tests/test_config.py checks these against the
# example's digests.
EXAMPLE_TOKENS = ("example-admin-token-change-me", "example-reseller-token-change-me")


def token_digest(token: str) -> bytes:
    """The SHA-256 digest under which a bearer token is configured (``TokenSettings.sha256``)."""
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True, slots=True)
class TokenSettings:
    name: str
    sha256: bytes = field(repr=False)
    scopes: tuple[str, ...]
    reseller_id: int | None = None


@dataclass(frozen=True, slots=True)
class ApiSettings:
    listen: Endpoint | None = Endpoint("127.0.0.1", 8080)
    tokens: tuple[TokenSettings, ...] = ()
    introspection: bool = False
    explorer: bool = False
    max_body_bytes: int = 65_536
    max_depth: int = 8
    max_cost: int = 5_000
    max_tokens: int = 2_000
    document_cache: int = 512
    max_websocket_connections: int = 100
    max_subscriptions_per_connection: int = 10
    subscription_queue: int = 1_000
    subscription_init_timeout: float = 10.0
    # HTTP connections (api/guard.py): seconds to send a whole request, and how many at once
    request_timeout: float = 10.0
    max_connections: int = 1_000
    # seconds between the samples of the dashboard's plots (radtrack/trend.py keeps an hour)
    trend_interval: float = 10.0
    # GET /metrics: b"" leaves it open; else the SHA-256 of the bearer token it requires
    metrics_token_sha256: bytes = field(default=b"", repr=False)

    def warnings(self) -> list[str]:
        """What works but should not: no token, the query page or an open /metrics beyond
        this machine."""
        out = []
        listen = self.listen
        if not self.tokens and listen is not None:
            out.append("api.tokens: no token is configured, every API request will be refused")
        if listen is None or listen.is_loopback:
            return out
        if self.explorer or self.introspection:
            out.append(
                f"api.explorer: the query page or introspection is on, on {listen}, beyond "
                "this machine (hint: production configs leave both off, the default)"
            )
        if not self.metrics_token_sha256:
            out.append(
                f"api.metrics_token_sha256: is not set, so GET /metrics (per-NAS session counts)"
                f" is open to anyone who reaches {listen} (hint: the hex SHA-256 of a token for"
                " Prometheus)"
            )
        return out
