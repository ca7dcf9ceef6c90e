"""RadSec's TLS side (RFC 6614): the server's TLS context from the settings, and which RadSec
client a connection is, by its source address and the names its certificate carries. No
sockets here (radtrack/radsec.py has them).

Contract: ``server_context`` raises only ConfigError (naming the key and how to fix it).
"""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Sequence
from typing import Any

from radtrack.errors import ConfigError
from radtrack.radius.settings import ClientSettings, RadiusSettings


class _EncryptedKey(Exception):
    """The private key asks for a password: radtrack runs unattended and has none to give."""


def _no_password() -> str:
    raise _EncryptedKey


def _why(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return exc.reason or str(exc)
    return getattr(exc, "strerror", None) or str(exc)


def server_context(settings: RadiusSettings) -> ssl.SSLContext | None:
    """The TLS context of the RadSec listeners (None when there is none): this server's
    certificate and key, client certificates required and verified against radsec_ca (RFC
    6614 §2.3: mutual authentication), TLS 1.2 or later (RFC 6614 asks for 1.1 or later; RFC
    8996 deprecates 1.0 and 1.1)."""
    if not settings.radsec_listen:
        return None
    certificate, key, ca = settings.radsec_certificate, settings.radsec_key, settings.radsec_ca
    assert certificate is not None and key is not None and ca is not None  # read_radius: required
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    try:
        context.load_cert_chain(certificate, key, password=_no_password)
    except _EncryptedKey:
        raise ConfigError(
            "radius.radsec_key",
            f"{key} is encrypted",
            f"radtrack cannot ask for its password: `openssl pkey -in {key} -out NEW.key`",
        ) from None
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            "radius.radsec_certificate",
            f"cannot load {certificate} with the key {key}: {_why(exc)}",
            "PEM files: the certificate (then its chain) and the private key that matches it",
        ) from None
    try:
        if ca.is_dir():
            context.load_verify_locations(capath=ca)
        else:
            context.load_verify_locations(cafile=ca)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            "radius.radsec_ca",
            f"cannot load {ca}: {_why(exc)}",
            "a PEM file of the CA certificate(s) that sign the clients' certificates",
        ) from None
    return context


def certificate_names(peercert: dict[str, Any] | None) -> list[str]:
    """The names a peer certificate carries (``SSLSocket.getpeercert()``'s dict): its
    subjectAltName DNS and IP entries, then its subject commonName(s)."""
    if not peercert:
        return []
    names = [
        value.strip()
        for kind, value in peercert.get("subjectAltName", ())
        if kind in ("DNS", "IP Address")
    ]
    for rdn in peercert.get("subject", ()):
        names += [value for key, value in rdn if key == "commonName"]
    return names


def _same_name(wanted: str, name: str) -> bool:
    """DNS names compare without case (RFC 4343); IP addresses as addresses."""
    if wanted.casefold() == name.casefold():
        return True
    try:
        return ipaddress.ip_address(wanted) == ipaddress.ip_address(name)
    except ValueError:
        return False


class RadsecClients:
    """The RadSec clients, matched as radsecproxy and FreeRADIUS do: by the connection's source
    address (an IP or a network, the most specific first), then by the certificate: a client
    with ``certificate_name`` takes only a certificate that carries that name (no wildcards);
    one without takes any certificate radsec_ca signed."""

    def __init__(self, clients: Sequence[ClientSettings]) -> None:
        self.clients = sorted(
            (client for client in clients if client.radsec),
            key=lambda client: client.network.prefixlen,
            reverse=True,
        )

    def candidates(self, host: str) -> list[ClientSettings]:
        """The clients a connection from ``host`` may be, before its certificate is seen."""
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return []
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return [
            client
            for client in self.clients
            if address.version == client.network.version and address in client.network
        ]

    def choose(self, host: str, names: Sequence[str]) -> ClientSettings | None:
        """The client a connection from ``host`` with a certificate carrying ``names`` is."""
        for client in self.candidates(host):
            wanted = client.certificate_name
            if wanted is None or any(_same_name(wanted, name) for name in names):
                return client
        return None
