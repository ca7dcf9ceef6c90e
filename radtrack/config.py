"""TOML configuration, parsed once into frozen settings.

Each part defines the settings value it takes (the API's in radtrack.api.settings, the RADIUS
side's in radtrack.radius.settings, which also reads its own [radius] table, the store's in
radtrack.store.settings); this module reads the TOML, validates it and builds those values,
plus the sections only the daemon reads (sessions, users, daemon). Only the shell (cli.py,
daemon.py) imports it.

Unknown keys and wrong types are errors that name the key path (``radius.clients[1].secret``) and
say how to fix it, all of a file's at once (ConfigErrors). Library code raises ConfigError; only the
CLI turns it into an exit status.
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

from radtrack.api.settings import RESELLER, SCOPES, ApiSettings, TokenSettings
from radtrack.errors import ConfigError, ConfigErrors
from radtrack.radius.settings import RESTART_ONLY, RadiusSettings, read_radius
from radtrack.store.settings import BACKENDS, StoreSettings
from radtrack.tomltable import Table

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
            "api limits": (_limits(self.api), _limits(new.api)),
            "sessions": (self.sessions, new.sessions),
            "users": (self.users, new.users),
            "daemon": (self.daemon, new.daemon),
        }
        return [key for key, (before, after) in fixed.items() if before != after]

    def reloaded(self, new: Settings) -> Settings:
        """These settings with what SIGHUP applies taken from ``new``: NAS clients and secrets
        (not the listeners), the API's tokens and the /metrics token."""
        radius = new.radius.keeping_restart_only(self.radius)
        api = replace(
            self.api, tokens=new.api.tokens, metrics_token_sha256=new.api.metrics_token_sha256
        )
        return replace(self, radius=radius, api=api)

    def warnings(self) -> list[str]:
        """Things that work but should not (weak secrets...), for check-config and start-up."""
        return [*self.radius.warnings(), *self.api.warnings()]


def _limits(api: ApiSettings) -> ApiSettings:
    """The API settings that only a restart applies (tokens are reloaded)."""
    return replace(api, tokens=(), metrics_token_sha256=b"")


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
            if re.compile(pattern).groups > 1:
                t.fail("pattern", "has more than one group", "capture only the id: 'uid=(\\d+)'")
        except re.error as exc:
            t.fail(
                "pattern",
                f"is not a valid regular expression: {exc}",
                "a Python regular expression in single quotes, e.g. 'uid=(\\d+)'",
            )
    attribute = t.get("pattern_attribute", str, d.pattern_attribute)
    if attribute not in ("User-Name", "Class"):
        t.fail("pattern_attribute", f"{attribute!r} is not supported", '"User-Name" or "Class"')
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
        t.fail(name, f"{value!r} is not a known value", f"one of {', '.join(choices)}")
        return default
    return value


def _store(t: Table, base: Path | None) -> StoreSettings:
    d = StoreSettings()
    path = _beside(base, t.get("path", str, str(d.path)))
    sync = t.get("synchronous", str, d.synchronous).upper()
    if sync not in SYNCHRONOUS:
        t.fail(
            "synchronous",
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
        commit_delay=_commit_delay(t, d.commit_delay),
        snapshot=t.get("snapshot", bool, d.snapshot),
        busy_timeout=float(t.positive("busy_timeout", float, d.busy_timeout)),
        cache_mb=t.positive("cache_mb", int, d.cache_mb),
        retention_days=t.positive("retention_days", int, d.retention_days, zero=True),
        history_page_max=t.positive("history_page_max", int, d.history_page_max),
        dsn=dsn,
        password_file=_beside(base, password_file) if password_file else None,
        password_env=t.get("password_env", str, d.password_env),
        node_name=t.get("node_name", str, d.node_name),
        feed_poll_interval=float(t.positive("feed_poll_interval", float, d.feed_poll_interval)),
    )
    t.done()
    return s


def _beside(base: Path | None, path: str) -> Path:
    """A path of the config file: a relative one is relative to the file's folder (``base``)."""
    return base / path if base is not None else Path(path)


def _commit_delay(t: Table, default: float) -> float:
    delay = float(t.positive("commit_delay", float, default, zero=True))
    if delay > 0.05:
        # every small commit waits this long: beyond a few ms it is ack latency for nothing
        t.fail("commit_delay", f"must be <= 0.05 seconds, not {delay}", f"the default is {default}")
        return default
    return delay


def _dsn(t: Table, backend: str) -> str:
    dsn: str = t.get("dsn", str, "")
    if backend != "postgresql":
        return dsn
    if not dsn:
        t.fail(
            "dsn",
            'is required with backend = "postgresql"',
            'e.g. "postgresql://radtrack@/radtrack?host=/run/postgresql"',
        )
        return dsn
    parts = urllib.parse.urlsplit(dsn)
    if parts.scheme not in ("postgresql", "postgres"):
        t.fail("dsn", "is not a postgresql:// URI", "postgresql://USER@HOST:PORT/DATABASE")
    query = urllib.parse.parse_qs(parts.query)
    if parts.password is not None or "password" in query:
        # the message never repeats the DSN: it holds the password
        t.fail(
            "dsn",
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
    listen = t.endpoint(listen_raw, "listen") if listen_raw else None
    names: set[str] = set()
    tokens = [token for tok in t.tables("tokens") if (token := _token(tok, names)) is not None]
    digests = [tok.sha256 for tok in tokens]
    if len(set(digests)) != len(digests):
        t.fail("tokens", "two tokens have the same sha256", "create one token per consumer")
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
        metrics_token_sha256=t.sha256("metrics_token_sha256", required=False),
        request_timeout=float(t.positive("request_timeout", float, d.request_timeout)),
        max_connections=t.positive("max_connections", int, d.max_connections),
        trend_interval=float(t.positive("trend_interval", float, d.trend_interval)),
    )
    if not 1 <= s.trend_interval <= 600:
        t.fail("trend_interval", "must be 1 to 600 seconds", f"the default is {d.trend_interval}")
    t.done()
    return s


def _token(tok: Table, names: set[str]) -> TokenSettings | None:
    """One [[api.tokens]] entry; None when it has problems (reported)."""
    found = len(tok.problems)
    name = tok.require("name", str, 'name the token for the logs, e.g. name = "ops"')
    if name is not None:
        if name in names:
            tok.fail("name", f"{name!r} is used by two tokens", "names are unique")
        names.add(name)
    digest = tok.sha256("sha256", required=True)
    scopes = tok.require("scopes", list, 'scopes = ["admin"] or ["reseller"] with reseller_id')
    for i, scope in enumerate(scopes or ()):
        if scope not in SCOPES:
            tok.fail(f"scopes[{i}]", f"{scope!r} is not a scope", "admin or reseller")
    if scopes == []:
        tok.fail("scopes", "is empty", '"admin" or "reseller"')
    reseller_id = tok.get("reseller_id", int, None)
    if RESELLER in (scopes or ()) and reseller_id is None:
        tok.fail("reseller_id", "is required with scope reseller", "reseller_id = N")
    tok.done()
    if len(tok.problems) > found:
        return None
    return TokenSettings(name, digest, tuple(scopes), reseller_id)


def _daemon(t: Table) -> DaemonSettings:
    d = DaemonSettings()
    level = t.get("log_level", str, d.log_level).upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        t.fail("log_level", f"{level!r} is not a log level", "DEBUG, INFO, WARNING or ERROR")
        level = d.log_level
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
    errors = root.errors()  # every problem of the file at once, not only the first
    if errors:
        raise errors[0] if len(errors) == 1 else ConfigErrors(errors)
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
        raise ConfigError(str(path), "is not UTF-8 text", "save it as UTF-8") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        hint = "fix the syntax there first: the settings are checked once the file parses"
        raise ConfigError(str(path), f"is not valid TOML: {exc}", hint) from None
    return parse(data, path.resolve())
