"""Reading a TOML table into settings: every key used is remembered, so an unknown one is an
error that names its key path, and a wrong type says what was expected (config.py builds each
part's settings with these)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any

from radtrack.endpoint import Endpoint
from radtrack.errors import ConfigError

HINT_SHA256 = "the hex SHA-256 of the token (`radtrack token create` prints one), never the token"


class Table:
    """A TOML table being read: remembers which keys were used, to reject the others."""

    def __init__(self, data: Mapping[str, Any], path: str) -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(path, f"must be a table, not {kind_of(data)}")
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
            raise ConfigError(self.key(name), f"must be {names_of(kinds)}, not a boolean")
        if not isinstance(value, kinds):
            raise ConfigError(self.key(name), f"must be {names_of(kinds)}, not {kind_of(value)}")
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

    def sha256(self, name: str, *, required: bool) -> bytes:
        """A hex SHA-256 (of a bearer token) as bytes; b"" when not required and absent or ""."""
        digest = self.require(name, str, HINT_SHA256) if required else self.get(name, str, "")
        if not digest and not required:
            return b""
        if not re.fullmatch(r"[0-9a-fA-F]{64}", digest):
            raise ConfigError(self.key(name), "is not 64 hex digits", HINT_SHA256)
        return bytes.fromhex(digest)

    def table(self, name: str) -> Table:
        self.used.add(name)
        return Table(self.data.get(name, {}), self.key(name))

    def tables(self, name: str) -> list[Table]:
        self.used.add(name)
        items = self.data.get(name, [])
        if not isinstance(items, list):
            raise ConfigError(
                self.key(name), f"must be an array of tables ([[{self.key(name)}]])", ""
            )
        return [Table(item, f"{self.key(name)}[{i}]") for i, item in enumerate(items)]

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            known = ", ".join(sorted(self.used))
            raise ConfigError(
                self.key(unknown[0]), "is not a known setting", f"known keys here: {known}"
            )


def kind_of(value: object) -> str:
    return {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "a boolean",
        list: "an array",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def names_of(kinds: tuple[type, ...]) -> str:
    return " or ".join(kind_of(k()) if k is not float else "a number" for k in kinds)


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
