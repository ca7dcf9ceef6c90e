"""Reading a TOML table into settings: every key used is remembered, so an unknown one is an
error that names its key path, and a wrong type says what was expected; every problem of a
document is collected, not only the first (config.py builds each part's settings with these)."""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
from collections.abc import Mapping
from typing import Any

from radtrack.endpoint import Endpoint
from radtrack.errors import ConfigError

# where a problem is in the document: the place of each key in its table, from the root down
# (tomllib keeps the file's order), so that problems are listed in the file's order
Position = tuple[int, ...]
HINT_SHA256 = "the hex SHA-256 of the token (`radtrack token create` prints one), never the token"


class Table:
    """A TOML table being read: remembers which keys were used, to reject the others, and
    collects what is wrong instead of stopping at the first problem.

    ``problems`` is shared by a table and the tables read from it, so the root's list holds
    every problem of the document (``errors()`` in the file's order). A wrong value is reported
    and its default (None for a required one) taken instead, so the reading goes on; the caller
    raises once at the end (``config.parse``) when anything was reported.
    """

    def __init__(
        self,
        data: Mapping[str, Any],
        path: str,
        problems: list[tuple[Position, ConfigError]] | None = None,
        position: Position = (),
    ) -> None:
        self.problems: list[tuple[Position, ConfigError]] = [] if problems is None else problems
        self.path = path
        self.position = position
        self.used: set[str] = set()
        if not isinstance(data, Mapping):
            error = ConfigError(path, f"must be a table, not {kind_of(data)}", f"write [{path}]")
            self.problems.append((position, error))
            data = {}
        self.data = data

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def errors(self) -> list[ConfigError]:
        """The problems reported so far, in the order of the file (a sort keeps the order of
        those found at one place)."""
        return [error for _, error in sorted(self.problems, key=lambda problem: problem[0])]

    def _at(self, name: str) -> Position:
        """The position of ``name`` ("key" or "key[i]") in the document; a missing key sorts
        after the table's keys."""
        base, _, index = name.partition("[")
        keys = list(self.data)
        place = keys.index(base) if base in self.data else len(keys)
        return (*self.position, place, *((int(index.rstrip("]")),) if index else ()))

    def fail(self, name: str, message: str, hint: str) -> None:
        """Report a problem with this table's key ``name`` ("key", or "key[i]" for an item)."""
        self.problems.append((self._at(name), ConfigError(self.key(name), message, hint)))

    def get(self, name: str, kind: type | tuple[type, ...], default: Any) -> Any:
        """The value of ``name``, or ``default`` when it is missing or of the wrong type (which
        is reported)."""
        self.used.add(name)
        if name not in self.data:
            return default
        value = self.data[name]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds:
            self.fail(
                name, f"must be {names_of(kinds)}, not a boolean", example(name, kinds, default)
            )
            return default
        if not isinstance(value, kinds):
            self.fail(
                name,
                f"must be {names_of(kinds)}, not {kind_of(value)}",
                example(name, kinds, default),
            )
            return default
        return value

    def require(self, name: str, kind: type | tuple[type, ...], hint: str) -> Any:
        """The value of ``name``; None when it is missing (reported with ``hint``) or wrong."""
        if name not in self.data:
            self.used.add(name)
            self.fail(name, "is required", hint)
            return None
        return self.get(name, kind, None)

    def positive(self, name: str, kind: type, default: Any, *, zero: bool = False) -> Any:
        value = self.get(name, kind if kind is not float else (int, float), default)
        if value < 0 or (value == 0 and not zero):
            self.fail(
                name,
                f"must be {'>= 0' if zero else '> 0'}, not {value}",
                f"the default is {default}",
            )
            return default
        return value

    def endpoint(self, text: str, name: str) -> Endpoint | None:
        """``parse_endpoint`` for the value of ``name`` ("key" or "key[i]"), or None when it is
        wrong (reported)."""
        try:
            return parse_endpoint(text, self.key(name))
        except ConfigError as exc:
            self.fail(name, exc.message, exc.hint)
            return None

    def sha256(self, name: str, *, required: bool) -> bytes:
        """A hex SHA-256 (of a bearer token) as bytes; b"" when not required and absent or "",
        and when wrong (reported)."""
        digest = self.require(name, str, HINT_SHA256) if required else self.get(name, str, "")
        if not digest:
            return b""
        if not re.fullmatch(r"[0-9a-fA-F]{64}", digest):
            self.fail(name, "is not 64 hex digits", HINT_SHA256)
            return b""
        return bytes.fromhex(digest)

    def table(self, name: str) -> Table:
        self.used.add(name)
        return Table(self.data.get(name, {}), self.key(name), self.problems, self._at(name))

    def tables(self, name: str) -> list[Table]:
        self.used.add(name)
        items = self.data.get(name, [])
        if not isinstance(items, list):
            self.fail(
                name,
                f"must be an array of tables, not {kind_of(items)}",
                f"write [[{self.key(name)}]]",
            )
            return []
        tables = []
        for i, item in enumerate(items):
            if isinstance(item, Mapping):
                key = f"{name}[{i}]"
                tables.append(Table(item, self.key(key), self.problems, self._at(key)))
            else:  # reported here, once, rather than as a table missing all its keys
                hint = f"write each entry as a [[{self.key(name)}]] table"
                self.fail(f"{name}[{i}]", f"must be a table, not {kind_of(item)}", hint)
        return tables

    def done(self) -> None:
        """Report every key of the table that was never read: unknown settings."""
        known = sorted(self.used)
        for name in sorted(set(self.data) - self.used):
            close = difflib.get_close_matches(name, known, n=1)
            guess = f"did you mean {close[0]}? " if close else ""
            self.fail(name, "is not a known setting", f"{guess}known keys here: {', '.join(known)}")


def example(name: str, kinds: tuple[type, ...], default: Any) -> str:
    """A hint for a value of the wrong type: the default as TOML, or the shape of the kind."""
    if default is not None and default != []:
        return f"e.g. {name} = {toml_value(default)}"
    return {
        str: f'in quotes, e.g. {name} = "..."',
        int: f"a whole number without quotes, e.g. {name} = 1",
        bool: f"true or false, without quotes: {name} = true",
        list: f'an array in brackets, e.g. {name} = ["..."]',
    }.get(kinds[0], f"see config.example.toml for {name}")


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string for the plain texts of the defaults
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    return repr(value)


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
