"""TOML configuration, parsed once into frozen settings.

Each part defines the settings value it takes (the API's in radtrack.api.settings, the RADIUS
side's in radtrack.radius.settings); this module reads the TOML, validates it and builds those
values, plus the sections only the daemon reads (sessions, users, store, daemon). Only the shell
(cli.py, daemon.py) imports it.

Unknown keys and wrong types are errors that name the key path (``radius.clients[1].secret``) and
say how to fix it. Library code raises ConfigError; only the CLI turns it into an exit status.
Every setting is documented in config.example.toml (tests/test_config.py checks that).
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from radtrack.api.settings import SCOPES, ApiSettings, TokenSettings
from radtrack.endpoint import Endpoint
from radtrack.errors import ConfigError
from radtrack.radius.settings import ClientSettings, RadiusSettings

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


@dataclass(frozen=True, slots=True)
class StoreSettings:
    path: Path = Path("radtrack.db")
    synchronous: str = "FULL"
    max_batch: int = 10_000
    busy_timeout: float = 1.0
    cache_mb: int = 256
    retention_days: int = 0  # closed sessions older than this are pruned; 0 keeps them all
    history_page_max: int = 500


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

    def warnings(self) -> list[str]:
        """Things that work but should not (weak secrets...), for check-config and start-up."""
        out = []
        for i, client in enumerate(self.radius.clients):
            if len(client.secret) < WEAK_SECRET_LENGTH:
                out.append(
                    f"radius.clients[{i}].secret: the secret of {client.name!r} is shorter than "
                    f"{WEAK_SECRET_LENGTH} characters (hint: `radtrack secret` makes a strong one)"
                )
        if not self.api.tokens and self.api.listen is not None:
            out.append("api.tokens: no token is configured, every API request will be refused")
        return out


# -- parsing helpers ---------------------------------------------------------------------------


class _Table:
    """A TOML table being read: remembers which keys were used, to reject the others."""

    def __init__(self, data: Mapping[str, Any], path: str) -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(path, f"must be a table, not {_kind(data)}")
        self.data = data
        self.path = path
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def get(self, name: str, kind: type | tuple[type, ...], default: Any) -> Any:
        self.used.add(name)
        if name not in self.data:
            return default
        value = self.data[name]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds:
            raise ConfigError(self.key(name), f"must be {_names(kinds)}, not a boolean")
        if not isinstance(value, kinds):
            raise ConfigError(self.key(name), f"must be {_names(kinds)}, not {_kind(value)}")
        return value

    def require(self, name: str, kind: type | tuple[type, ...], hint: str) -> Any:
        if name not in self.data:
            raise ConfigError(self.key(name), "is required", hint)
        return self.get(name, kind, None)

    def positive(self, name: str, kind: type, default: Any, *, zero: bool = False) -> Any:
        value = self.get(name, kind if kind is not float else (int, float), default)
        if value < 0 or (value == 0 and not zero):
            raise ConfigError(self.key(name), f"must be {'>= 0' if zero else '> 0'}, not {value}")
        return value

    def table(self, name: str) -> _Table:
        self.used.add(name)
        return _Table(self.data.get(name, {}), self.key(name))

    def tables(self, name: str) -> list[_Table]:
        self.used.add(name)
        items = self.data.get(name, [])
        if not isinstance(items, list):
            raise ConfigError(
                self.key(name), f"must be an array of tables ([[{self.key(name)}]])", ""
            )
        return [_Table(item, f"{self.key(name)}[{i}]") for i, item in enumerate(items)]

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            known = ", ".join(sorted(self.used))
            raise ConfigError(
                self.key(unknown[0]), "is not a known setting", f"known keys here: {known}"
            )


def _kind(value: object) -> str:
    return {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "a boolean",
        list: "an array",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def _names(kinds: tuple[type, ...]) -> str:
    return " or ".join(_kind(k()) if k is not float else "a number" for k in kinds)


def parse_endpoint(text: str, path: str) -> Endpoint:
    """``host:port`` or ``[v6]:port``."""
    match = re.fullmatch(r"\[([0-9A-Fa-f:.%a-zA-Z]+)\]:(\d+)|([^:\[\]]+):(\d+)", text)
    if match is None:
        raise ConfigError(
            path, f"{text!r} is not host:port", 'e.g. "127.0.0.1:1813" or "[::1]:1813"'
        )
    host = match.group(1) or match.group(3)
    port = int(match.group(2) or match.group(4))
    if port > 65535:
        raise ConfigError(path, f"port {port} is out of range", "0-65535 (0 picks a free port)")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            raise ConfigError(
                path, f"{host!r} is not an IP address", "use a literal address"
            ) from None
    return Endpoint(host, port)


def _radius(t: _Table) -> RadiusSettings:
    listen_raw = t.get("listen", list, ["127.0.0.1:1813"])
    listen = []
    for i, item in enumerate(listen_raw):
        if not isinstance(item, str):
            raise ConfigError(f"{t.key('listen')}[{i}]", f"must be a string, not {_kind(item)}")
        listen.append(parse_endpoint(item, f"{t.key('listen')}[{i}]"))
    if not listen:
        raise ConfigError(t.key("listen"), "is empty", "give at least one address to listen on")
    clients = []
    names: set[str] = set()
    for c in t.tables("clients"):
        name = c.require("name", str, 'give each NAS a name, e.g. name = "vpn-gw-1"')
        if name in names:
            raise ConfigError(c.key("name"), f"{name!r} is used by two clients", "names are unique")
        names.add(name)
        address = c.require("address", str, 'an IP or a CIDR, e.g. "192.0.2.10" or "192.0.2.0/24"')
        try:
            network = ipaddress.ip_network(address, strict=False)
        except ValueError:
            raise ConfigError(
                c.key("address"), f"{address!r} is not an IP address or CIDR", 'e.g. "192.0.2.0/24"'
            ) from None
        secret = c.require("secret", str, "`radtrack secret` prints a strong random one")
        if not secret:
            raise ConfigError(c.key("secret"), "is empty", "`radtrack secret` prints a strong one")
        coa_address = c.get("coa_address", str, None)
        if coa_address is not None:
            try:
                ipaddress.ip_address(coa_address)
            except ValueError:
                raise ConfigError(c.key("coa_address"), f"{coa_address!r} is not an IP") from None
        coa_port = c.positive("coa_port", int, 3799)
        clients.append(
            ClientSettings(
                name=name,
                network=network,
                secret=secret.encode(),
                require_message_authenticator=c.get("require_message_authenticator", bool, False),
                coa_address=coa_address,
                coa_port=coa_port,
            )
        )
        c.done()
    dictionary = t.get("dictionary", str, None)
    d = RadiusSettings()
    settings = RadiusSettings(
        listen=tuple(listen),
        clients=tuple(clients),
        receive_buffer=t.positive("receive_buffer", int, d.receive_buffer),
        queue_size=t.positive("queue_size", int, d.queue_size),
        dedup_ttl=float(t.positive("dedup_ttl", float, d.dedup_ttl)),
        dedup_capacity=t.positive("dedup_capacity", int, d.dedup_capacity),
        dictionary=Path(dictionary) if dictionary else None,
        disconnect_timeout=float(t.positive("disconnect_timeout", float, d.disconnect_timeout)),
        disconnect_attempts=t.positive("disconnect_attempts", int, d.disconnect_attempts),
    )
    t.done()
    return settings


def _sessions(t: _Table) -> SessionSettings:
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


def _users(t: _Table) -> UserSettings:
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


def _choice(t: _Table, name: str, choices: tuple[str, ...], default: str) -> str:
    value: str = t.get(name, str, default)
    if value not in choices:
        raise ConfigError(t.key(name), f"{value!r} is not one of {', '.join(choices)}")
    return value


def _store(t: _Table, base: Path | None) -> StoreSettings:
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
    s = StoreSettings(
        path=path,
        synchronous=sync,
        max_batch=t.positive("max_batch", int, d.max_batch),
        busy_timeout=float(t.positive("busy_timeout", float, d.busy_timeout)),
        cache_mb=t.positive("cache_mb", int, d.cache_mb),
        retention_days=t.positive("retention_days", int, d.retention_days, zero=True),
        history_page_max=t.positive("history_page_max", int, d.history_page_max),
    )
    t.done()
    return s


def _api(t: _Table) -> ApiSettings:
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


def _daemon(t: _Table) -> DaemonSettings:
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
    root = _Table(data, "")
    base = source.parent if source is not None else None
    settings = Settings(
        radius=_radius(root.table("radius")),
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
