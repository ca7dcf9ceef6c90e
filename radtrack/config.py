"""TOML configuration, parsed once into frozen settings.

Each part defines the settings value it takes (the API's in radtrack.api.settings, the RADIUS
side's in radtrack.radius.settings, which also reads its own [radius] table); this module reads
the TOML, validates it and builds those values, plus the sections only the daemon reads
(sessions, users, store, daemon). Only the shell (cli.py, daemon.py) imports it.

Unknown keys and wrong types are errors that name the key path (``radius.clients[1].secret``) and
say how to fix it. Library code raises ConfigError; only the CLI turns it into an exit status.
Every setting is documented in config.example.toml (tests/test_config.py checks that).
"""

from __future__ import annotations

import os
import re
import tomllib
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from radtrack.api.settings import SCOPES, ApiSettings, TokenSettings
from radtrack.errors import ConfigError
from radtrack.radius.settings import RESTART_ONLY, RadiusSettings, read_radius
from radtrack.tomltable import Table, parse_endpoint

WEAK_SECRET_LENGTH = 16
SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
LIMIT_POLICIES = ("off", "disconnect-oldest", "disconnect-newest")


@dataclass(frozen=True, slots=True)
class SessionSettings:
    default_interim_interval: int = 600
    stale_multiple: float = 3.0
    stale_check_interval: float = 30.0
    closed_cache: int = 100_000


@dataclass(frozen=True, slots=True)
class UserSettings:
    numeric_user_names: bool = True
    pattern: str | None = None
    pattern_attribute: str = "User-Name"
    default_max_sessions: int = 0  # 0: no limit
    limit_policy: str = "off"  # or "disconnect-oldest" / "disconnect-newest"


BACKENDS = ("sqlite", "postgresql")


@dataclass(frozen=True, slots=True)
class StoreSettings:
    backend: str = "sqlite"
    path: Path = Path("radtrack.db")
    synchronous: str = "FULL"
    max_batch: int = 10_000
    busy_timeout: float = 1.0
    cache_mb: int = 256
    retention_days: int = 0  # closed sessions older than this are pruned; 0 keeps them all
    history_page_max: int = 500
    # PostgreSQL (backend = "postgresql"): the password is never in the DSN, and never logged
    dsn: str = ""
    password_file: Path | None = None
    password_env: str = ""
    node_name: str = ""  # "" : the host name and the process id
    feed_poll_interval: float = 0.5


@dataclass(frozen=True, slots=True)
class DaemonSettings:
    shutdown_timeout: float = 10.0
    log_level: str = "INFO"


@dataclass(frozen=True, slots=True)
class Settings:
    radius: RadiusSettings = RadiusSettings()
    sessions: SessionSettings = SessionSettings()
    users: UserSettings = UserSettings()
    store: StoreSettings = StoreSettings()
    api: ApiSettings = ApiSettings()
    daemon: DaemonSettings = DaemonSettings()
    source: Path | None = None

    def needing_restart(self, new: Settings) -> list[str]:
        """The settings that differ in ``new`` and that only a restart applies (SIGHUP
        applies NAS clients, secrets and tokens)."""
        fixed = {
            **{
                f"radius.{name}": (getattr(self.radius, name), getattr(new.radius, name))
                for name in RESTART_ONLY
            },
            "store": (self.store, new.store),
            "api.listen": (self.api.listen, new.api.listen),
            "api limits": (replace(self.api, tokens=()), replace(new.api, tokens=())),
            "sessions": (self.sessions, new.sessions),
            "users": (self.users, new.users),
            "daemon": (self.daemon, new.daemon),
        }
        return [key for key, (before, after) in fixed.items() if before != after]

    def warnings(self) -> list[str]:
        """Things that work but should not (weak secrets...), for check-config and start-up."""
        out = []
        for i, client in enumerate(self.radius.clients):
            if client.radsec and not self.radius.radsec_listen:
                out.append(
                    f"radius.clients[{i}]: {client.name!r} is a RadSec client but "
                    "radius.radsec_listen is empty: it cannot connect"
                )
            if len(client.secret) < WEAK_SECRET_LENGTH and not client.radsec:
                out.append(
                    f"radius.clients[{i}].secret: the secret of {client.name!r} is shorter than "
                    f"{WEAK_SECRET_LENGTH} characters (hint: `radtrack secret` makes a strong one)"
                )
        if not self.api.tokens and self.api.listen is not None:
            out.append("api.tokens: no token is configured, every API request will be refused")
        return out


def _sessions(t: Table) -> SessionSettings:
    d = SessionSettings()
    s = SessionSettings(
        default_interim_interval=t.positive(
            "default_interim_interval", int, d.default_interim_interval
        ),
        stale_multiple=float(t.positive("stale_multiple", float, d.stale_multiple)),
        stale_check_interval=float(
            t.positive("stale_check_interval", float, d.stale_check_interval)
        ),
        closed_cache=t.positive("closed_cache", int, d.closed_cache, zero=True),
    )
    t.done()
    return s


def _users(t: Table) -> UserSettings:
    d = UserSettings()
    pattern = t.get("pattern", str, None) or None
    if pattern is not None:
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise ConfigError(
                t.key("pattern"), f"is not a valid regular expression: {exc}"
            ) from None
        if compiled.groups > 1:
            raise ConfigError(t.key("pattern"), "has more than one group", "capture only the id")
    attribute = t.get("pattern_attribute", str, d.pattern_attribute)
    if attribute not in ("User-Name", "Class"):
        raise ConfigError(
            t.key("pattern_attribute"), f"{attribute!r} is not supported", '"User-Name" or "Class"'
        )
    s = UserSettings(
        numeric_user_names=t.get("numeric_user_names", bool, d.numeric_user_names),
        pattern=pattern,
        pattern_attribute=attribute,
        default_max_sessions=t.positive("default_max_sessions", int, 0, zero=True),
        limit_policy=_choice(t, "limit_policy", LIMIT_POLICIES, d.limit_policy),
    )
    t.done()
    return s


def _choice(t: Table, name: str, choices: tuple[str, ...], default: str) -> str:
    value: str = t.get(name, str, default)
    if value not in choices:
        raise ConfigError(t.key(name), f"{value!r} is not one of {', '.join(choices)}")
    return value


def _store(t: Table, base: Path | None) -> StoreSettings:
    d = StoreSettings()
    path = Path(t.get("path", str, str(d.path)))
    if base is not None and not path.is_absolute():
        path = base / path
    sync = t.get("synchronous", str, d.synchronous).upper()
    if sync not in SYNCHRONOUS:
        raise ConfigError(
            t.key("synchronous"),
            f"{sync!r} is not a SQLite synchronous mode",
            "FULL (survives power loss) or NORMAL",
        )
    backend = _choice(t, "backend", BACKENDS, d.backend)
    dsn = _dsn(t, backend)
    password_file = t.get("password_file", str, None)
    s = StoreSettings(
        backend=backend,
        path=path,
        synchronous=sync,
        max_batch=t.positive("max_batch", int, d.max_batch),
        busy_timeout=float(t.positive("busy_timeout", float, d.busy_timeout)),
        cache_mb=t.positive("cache_mb", int, d.cache_mb),
        retention_days=t.positive("retention_days", int, d.retention_days, zero=True),
        history_page_max=t.positive("history_page_max", int, d.history_page_max),
        dsn=dsn,
        password_file=(
            None
            if not password_file
            else Path(password_file)
            if base is None
            else base / password_file
        ),
        password_env=t.get("password_env", str, d.password_env),
        node_name=t.get("node_name", str, d.node_name),
        feed_poll_interval=float(t.positive("feed_poll_interval", float, d.feed_poll_interval)),
    )
    t.done()
    return s


def _dsn(t: Table, backend: str) -> str:
    dsn: str = t.get("dsn", str, "")
    if backend != "postgresql":
        return dsn
    if not dsn:
        raise ConfigError(
            t.key("dsn"),
            'is required with backend = "postgresql"',
            'e.g. "postgresql://radtrack@/radtrack?host=/run/postgresql"',
        )
    parts = urllib.parse.urlsplit(dsn)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ConfigError(
            t.key("dsn"), "is not a postgresql:// URI", "postgresql://USER@HOST:PORT/DATABASE"
        )
    query = urllib.parse.parse_qs(parts.query)
    if parts.password is not None or "password" in query:
        # the message never repeats the DSN: it holds the password
        raise ConfigError(
            t.key("dsn"),
            "holds a password",
            "put it in a file named by store.password_file, or an environment variable "
            "named by store.password_env, and leave it out of the DSN",
        )
    return dsn


def store_password(store: StoreSettings) -> str | None:
    """The PostgreSQL password from store.password_file or store.password_env (None: neither,
    libpq's own ~/.pgpass or PGPASSWORD may still give one). Raises ConfigError."""
    if store.password_file is not None:
        try:
            return store.password_file.read_text(encoding="utf-8").strip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                "store.password_file",
                f"cannot be read: {getattr(exc, 'strerror', None) or exc}",
                "a file holding only the password, readable by radtrack (mode 0600)",
            ) from None
    if store.password_env:
        value = os.environ.get(store.password_env)
        if value is None:
            raise ConfigError(
                "store.password_env",
                f"the environment variable {store.password_env} is not set",
                "set it in the service's environment (systemd: EnvironmentFile=)",
            )
        return value
    return None


def _api(t: Table) -> ApiSettings:
    d = ApiSettings()
    listen_raw = t.get("listen", str, "127.0.0.1:8080")
    listen = parse_endpoint(listen_raw, t.key("listen")) if listen_raw else None
    tokens = []
    names: set[str] = set()
    for tok in t.tables("tokens"):
        name = tok.require("name", str, 'name the token for the logs, e.g. name = "ops"')
        if name in names:
            raise ConfigError(
                tok.key("name"), f"{name!r} is used by two tokens", "names are unique"
            )
        names.add(name)
        digest = tok.require("sha256", str, "`radtrack token create` prints it")
        if not re.fullmatch(r"[0-9a-fA-F]{64}", digest):
            raise ConfigError(
                tok.key("sha256"),
                "is not 64 hex digits",
                "the hex SHA-256 of the token, from `radtrack token create`",
            )
        scopes = tok.require("scopes", list, 'scopes = ["admin"] or ["reseller"] with reseller_id')
        for i, scope in enumerate(scopes):
            if scope not in SCOPES:
                raise ConfigError(
                    f"{tok.key('scopes')}[{i}]", f"{scope!r} is not a scope", "admin or reseller"
                )
        if not scopes:
            raise ConfigError(tok.key("scopes"), "is empty", '"admin" or "reseller"')
        reseller_id = tok.get("reseller_id", int, None)
        if "reseller" in scopes and reseller_id is None:
            raise ConfigError(
                tok.key("reseller_id"), "is required with scope reseller", "reseller_id = N"
            )
        tokens.append(TokenSettings(name, bytes.fromhex(digest), tuple(scopes), reseller_id))
        tok.done()
    digests = [tok.sha256 for tok in tokens]
    if len(set(digests)) != len(digests):
        raise ConfigError(
            t.key("tokens"), "two tokens have the same sha256", "create one token per consumer"
        )
    s = ApiSettings(
        listen=listen,
        tokens=tuple(tokens),
        introspection=t.get("introspection", bool, d.introspection),
        explorer=t.get("explorer", bool, d.explorer),
        max_body_bytes=t.positive("max_body_bytes", int, d.max_body_bytes),
        max_depth=t.positive("max_depth", int, d.max_depth),
        max_cost=t.positive("max_cost", int, d.max_cost),
        max_tokens=t.positive("max_tokens", int, d.max_tokens),
        document_cache=t.positive("document_cache", int, d.document_cache),
        max_websocket_connections=t.positive(
            "max_websocket_connections", int, d.max_websocket_connections
        ),
        max_subscriptions_per_connection=t.positive(
            "max_subscriptions_per_connection", int, d.max_subscriptions_per_connection
        ),
        subscription_queue=t.positive("subscription_queue", int, d.subscription_queue),
        subscription_init_timeout=float(
            t.positive("subscription_init_timeout", float, d.subscription_init_timeout)
        ),
    )
    t.done()
    return s


def _daemon(t: Table) -> DaemonSettings:
    d = DaemonSettings()
    level = t.get("log_level", str, d.log_level).upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(
            t.key("log_level"), f"{level!r} is not a log level", "DEBUG, INFO, WARNING or ERROR"
        )
    s = DaemonSettings(
        shutdown_timeout=float(t.positive("shutdown_timeout", float, d.shutdown_timeout)),
        log_level=level,
    )
    t.done()
    return s


def parse(data: Mapping[str, Any], source: Path | None = None) -> Settings:
    """Settings from a parsed TOML document; relative paths are relative to its folder."""
    root = Table(data, "")
    base = source.parent if source is not None else None
    settings = Settings(
        radius=read_radius(root.table("radius"), base),
        sessions=_sessions(root.table("sessions")),
        users=_users(root.table("users")),
        store=_store(root.table("store"), base),
        api=_api(root.table("api")),
        daemon=_daemon(root.table("daemon")),
        source=source,
    )
    root.done()
    return settings


def load(path: str | Path) -> Settings:
    """Read and validate a config file; raises only ConfigError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            str(path), f"cannot be read: {exc.strerror}", "check the --config path"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(str(path), "is not UTF-8 text") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), f"is not valid TOML: {exc}") from None
    return parse(data, path.resolve())
