"""The RADIUS side's settings: the NAS clients, the intake (UDP and RadSec) and the
Disconnect client, and ``read_radius``, which builds them from the ``[radius]`` table (and its
``[[radius.clients]]``) for config.py; the defaults here are the ones config.example.toml
documents.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from radtrack.endpoint import Endpoint
from radtrack.tomltable import Table, kind_of

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# RFC 6614 §2.3: over TLS the RADIUS shared secret is "radsec" (TLS protects the packets)
RADSEC_SECRET = b"radsec"


WEAK_SECRET_LENGTH = 16  # octets; a warning below


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """One NAS (or a network of NASes sharing a secret), matched by UDP source address; or,
    with ``radsec``, a RadSec client (RFC 6614), matched by the source address of its TLS
    connection and, with ``certificate_name``, by a name its certificate carries."""

    name: str
    network: IPNetwork
    secret: bytes = field(repr=False)
    require_message_authenticator: bool = False
    coa_address: str | None = None  # where Disconnect-Requests go; default: the NAS's address
    coa_port: int = 3799
    address: str = ""  # as written in the config ("10.0.0.1/24" is the network 10.0.0.0/24)
    radsec: bool = False  # accounting over TLS only (radius.radsec_listen), never over UDP
    # a subjectAltName (DNS or IP) or the subject CN its client certificate must carry; None:
    # any certificate the radsec_ca signed
    certificate_name: str | None = None

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
    # RadSec (RFC 6614): TLS listeners, this server's certificate chain and key (PEM), and the
    # CA certificates (a PEM file or a folder of hashed ones) client certificates must chain to
    radsec_listen: tuple[Endpoint, ...] = ()
    radsec_certificate: Path | None = None
    radsec_key: Path | None = None
    radsec_ca: Path | None = None
    radsec_max_connections: int = 64
    # seconds a connection may stay without a packet (0: forever), and seconds the TLS
    # handshake, and a packet once its first octet has arrived, may take
    radsec_idle_timeout: float = 30.0
    radsec_read_timeout: float = 10.0

    def keeping_restart_only(self, running: RadiusSettings) -> RadiusSettings:
        """These settings with the ones only a restart applies (RESTART_ONLY) as ``running``
        has them: what a reload (SIGHUP) applies."""
        return replace(self, **{name: getattr(running, name) for name in RESTART_ONLY})

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
            if client.radsec and not self.radsec_listen:
                out.append(
                    f"radius.clients[{i}]: {client.name!r} is a RadSec client but "
                    "radius.radsec_listen is empty: it cannot connect"
                )
            if len(client.secret) < WEAK_SECRET_LENGTH and not client.radsec:
                out.append(
                    f"radius.clients[{i}].secret: the secret of {client.name!r} is shorter than "
                    f"{WEAK_SECRET_LENGTH} characters (hint: `radtrack secret` makes a strong one)"
                )
        return out


# the [radius] settings a reload (SIGHUP) does not apply: sockets, and the TLS listeners'
RESTART_ONLY = (
    "listen",
    "receive_buffer",
    "radsec_listen",
    "radsec_certificate",
    "radsec_key",
    "radsec_ca",
    "radsec_max_connections",
    "radsec_idle_timeout",
    "radsec_read_timeout",
)


def _endpoints(
    t: Table, name: str, default: list[str], *, required: bool = False
) -> tuple[Endpoint, ...]:
    raw = t.get(name, list, default)
    if required and not raw:
        t.fail(name, "is empty", "give at least one address to listen on")
    endpoints = []
    for i, item in enumerate(raw):
        if not isinstance(item, str):
            t.fail(f"{name}[{i}]", f"must be a string, not {kind_of(item)}", '"127.0.0.1:1813"')
        elif (endpoint := t.endpoint(item, f"{name}[{i}]")) is not None:
            endpoints.append(endpoint)
    return tuple(endpoints)


def read_radius(t: Table, base: Path | None) -> RadiusSettings:
    """The [radius] table (config.py reads the file); relative paths are relative to ``base``.
    A wrong value is reported to ``t`` (tomltable.Table.fail) and its default taken."""
    listen = _endpoints(t, "listen", ["127.0.0.1:1813"], required=True)
    names: set[str] = set()
    clients = [client for c in t.tables("clients") if (client := _client(c, names)) is not None]
    dictionary = t.get("dictionary", str, None)
    d = RadiusSettings()
    settings = RadiusSettings(
        listen=listen,
        clients=tuple(clients),
        receive_buffer=t.positive("receive_buffer", int, d.receive_buffer),
        queue_size=t.positive("queue_size", int, d.queue_size),
        dedup_ttl=float(t.positive("dedup_ttl", float, d.dedup_ttl)),
        dedup_capacity=t.positive("dedup_capacity", int, d.dedup_capacity),
        dictionary=Path(dictionary) if dictionary else None,
        disconnect_timeout=float(t.positive("disconnect_timeout", float, d.disconnect_timeout)),
        disconnect_attempts=t.positive("disconnect_attempts", int, d.disconnect_attempts),
        **_radsec(t, base),
    )
    t.done()
    return settings


def _client(c: Table, names: set[str]) -> ClientSettings | None:
    """One [[radius.clients]] entry; None when it has problems (reported)."""
    found = len(c.problems)
    name = c.require("name", str, 'give each NAS a name, e.g. name = "vpn-gw-1"')
    if name is not None:
        if name in names:
            c.fail("name", f"{name!r} is used by two clients", "names are unique")
        names.add(name)
    address_hint = 'an IP or a CIDR, e.g. "192.0.2.10" or "192.0.2.0/24"'
    address = c.require("address", str, address_hint)
    network = None
    if address is not None:
        try:
            network = ipaddress.ip_network(address, strict=False)
        except ValueError:
            c.fail("address", f"{address!r} is not an IP address or CIDR", address_hint)
    radsec = c.get("radsec", bool, False)
    if radsec:  # RFC 6614 §2.3: "radsec" unless both ends agree on another one
        secret = c.get("secret", str, RADSEC_SECRET.decode())
    else:
        secret = c.require("secret", str, "`radtrack secret` prints a strong random one")
    if secret == "":
        c.fail("secret", "is empty", "`radtrack secret` prints a strong one")
    certificate_name = c.get("certificate_name", str, None)
    if certificate_name is not None and not radsec:
        c.fail(
            "certificate_name",
            "is for RadSec clients only",
            "add radsec = true (the NAS then sends over TLS to radius.radsec_listen)",
        )
    coa_address = c.get("coa_address", str, None)
    if coa_address is not None and radsec:
        c.fail(
            "coa_address",
            "cannot be used with radsec = true",
            "Disconnect-Request over RadSec is not supported yet (docs/radsec.md)",
        )
    elif coa_address is not None:
        try:
            ipaddress.ip_address(coa_address)
        except ValueError:
            c.fail(
                "coa_address",
                f"{coa_address!r} is not an IP address",
                'e.g. "192.0.2.10"; leave it out to use the NAS-IP-Address of the session',
            )
    require_message_authenticator = c.get("require_message_authenticator", bool, False)
    coa_port = c.positive("coa_port", int, 3799)
    c.done()
    if len(c.problems) > found or network is None:
        return None
    return ClientSettings(
        name=name,
        network=network,
        secret=secret.encode(),
        require_message_authenticator=require_message_authenticator,
        coa_address=coa_address,
        coa_port=coa_port,
        address=address,
        radsec=radsec,
        certificate_name=certificate_name or None,
    )


def _radsec(t: Table, base: Path | None) -> dict[str, Any]:
    """The radsec_* settings of [radius], as RadiusSettings' keyword arguments."""
    d = RadiusSettings()
    listen = _endpoints(t, "radsec_listen", [])
    files: dict[str, Path | None] = {}
    for name in ("radsec_certificate", "radsec_key", "radsec_ca"):
        value = t.get(name, str, "")
        if listen and not value:
            t.fail(
                name,
                "is required with radsec_listen",
                "a PEM file (radsec_ca: or a folder of CA certificates); see docs/radsec.md",
            )
        path = Path(value) if value else None
        files[name] = base / path if path is not None and base is not None else path
    return {
        "radsec_listen": listen,
        **files,
        "radsec_max_connections": t.positive(
            "radsec_max_connections", int, d.radsec_max_connections
        ),
        "radsec_idle_timeout": float(
            t.positive("radsec_idle_timeout", float, d.radsec_idle_timeout, zero=True)
        ),
        "radsec_read_timeout": float(
            t.positive("radsec_read_timeout", float, d.radsec_read_timeout)
        ),
    }
