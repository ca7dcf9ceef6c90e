"""Endpoint: the host and port a listener binds (UDP accounting, the HTTP API)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str  # a literal IPv4 or IPv6 address, or "localhost"
    port: int  # 0 picks a free port

    @property
    def is_loopback(self) -> bool:
        """Only this machine can reach it (127.0.0.0/8, ::1, "localhost")."""
        if self.host == "localhost":
            return True
        return ipaddress.ip_address(self.host).is_loopback

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
