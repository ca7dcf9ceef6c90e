"""The RADIUS side's settings: the NAS clients, the intake and the Disconnect client.

config.py builds them from the ``[radius]`` table (and its ``[[radius.clients]]``); the
defaults here are the ones config.example.toml documents.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from radtrack.endpoint import Endpoint

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


WEAK_SECRET_LENGTH = 16  # octets; a warning below


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """One NAS (or a network of NASes sharing a secret), matched by UDP source address."""

    name: str
    network: IPNetwork
    secret: bytes = field(repr=False)
    require_message_authenticator: bool = False
    coa_address: str | None = None  # where Disconnect-Requests go; default: the NAS's address
    coa_port: int = 3799
    address: str = ""  # as written in the config ("10.0.0.1/24" is the network 10.0.0.0/24)

    def host_bits_set(self) -> bool:
        """The configured CIDR has bits set beyond its prefix ("10.0.0.1/24"): it still means
        the whole network, which may not be what was meant."""
        if "/" not in self.address:
            return False
        return ipaddress.ip_interface(self.address).ip != self.network.network_address

    def __repr__(self) -> str:  # never show the secret
        return f"ClientSettings(name={self.name!r}, network={self.network})"


@dataclass(frozen=True, slots=True)
class RadiusSettings:
    listen: tuple[Endpoint, ...] = (Endpoint("127.0.0.1", 1813),)
    clients: tuple[ClientSettings, ...] = ()
    receive_buffer: int = 4 * 1024 * 1024
    queue_size: int = 20_000
    dedup_ttl: float = 30.0
    dedup_capacity: int = 200_000
    dictionary: Path | None = None
    disconnect_timeout: float = 1.0
    disconnect_attempts: int = 3

    def warnings(self) -> list[str]:
        """What works but should not: a CIDR with host bits, a weak secret."""
        out = []
        for i, client in enumerate(self.clients):
            if client.host_bits_set():
                net = client.network
                host = client.address.partition("/")[0]
                out.append(
                    f"radius.clients[{i}].address: {client.address!r} has host bits set; it "
                    f"means the network {net} ({net.network_address} to {net.broadcast_address})"
                    f' (hint: write "{net}" for that network, or "{host}" for one NAS)'
                )
            if len(client.secret) < WEAK_SECRET_LENGTH:
                out.append(
                    f"radius.clients[{i}].secret: the secret of {client.name!r} is shorter than "
                    f"{WEAK_SECRET_LENGTH} characters (hint: `radtrack secret` makes a strong one)"
                )
        return out
