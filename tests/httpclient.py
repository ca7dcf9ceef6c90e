"""A tiny HTTP/1.1 client for the tests (httpx is not a dependency): one request a connection."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from typing import Any


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def codes(self) -> list[str]:
        return [e["extensions"]["code"] for e in self.json()["errors"]]


async def http(
    port: int,
    method: str,
    path: str,
    body: bytes = b"",
    headers: list[tuple[str, str]] | None = None,
    *,
    length: bool = True,
) -> Reply:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        head = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
        if length and (body or method == "POST"):
            head.append(f"Content-Length: {len(body)}")
        head += [f"{name}: {value}" for name, value in headers or []]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        await writer.drain()
        raw = await reader.read()
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return parse_reply(raw)


def parse_reply(raw: bytes) -> Reply:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    fields = dict(line.split(": ", 1) for line in lines)
    return Reply(int(status_line.split()[1]), {k.lower(): v for k, v in fields.items()}, body)


async def graphql(port: int, query: str, token: str | None, **variables: Any) -> Reply:
    """POST /graphql with a bearer token (None: without one)."""
    headers = [("Content-Type", "application/json")]
    if token is not None:
        headers.append(("Authorization", f"Bearer {token}"))
    body = json.dumps({"query": query, "variables": variables or None}).encode()
    return await http(port, "POST", "/graphql", body, headers)
