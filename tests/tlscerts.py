"""Test certificates for RadSec, made by the tests themselves (``cryptography``), never committed:
a CA, the server's certificate (for 127.0.0.1 and localhost), client certificates it signs,
and a rogue CA's client certificate that carries a known client's name."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

Key = ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class Pair:
    certificate: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    ca: Path  # the CA certificate radtrack's radsec_ca (and the clients) trust
    server: Pair  # SAN IP 127.0.0.1, DNS localhost
    nas: Pair  # CN nas1.example.net, SAN DNS nas1.example.net
    other: Pair  # CN other.example.net: signed by the CA, another client's name
    rogue: Pair  # CN nas1.example.net, signed by a CA nobody trusts
    encrypted_key: Path  # the server's key, encrypted with a password


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(
    subject: str,
    key: Key,
    issuer: tuple[x509.Name, Key] | None,
    *,
    ca: bool = False,
    server: bool = False,
    sans: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    issuer_name, issuer_key = issuer if issuer is not None else (_name(subject), key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if ca:
        usage = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
        builder = builder.add_extension(usage, critical=True)
    else:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        ).add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(folder: Path, name: str, certificate: x509.Certificate, key: Key) -> Pair:
    cert_path, key_path = folder / f"{name}.pem", folder / f"{name}.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return Pair(cert_path, key_path)


def make_pki(folder: Path) -> Pki:
    folder.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _certificate("radtrack test CA", ca_key, None, ca=True)
    (folder / "ca.pem").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    issuer = (ca_cert.subject, ca_key)

    server_key = ec.generate_private_key(ec.SECP256R1())
    server_sans: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.DNSName("localhost"),
    ]
    server = _certificate("localhost", server_key, issuer, server=True, sans=server_sans)
    pairs = {"server": _write(folder, "server", server, server_key)}
    for name, subject in (("nas", "nas1.example.net"), ("other", "other.example.net")):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _certificate(subject, key, issuer, sans=[x509.DNSName(subject)])
        pairs[name] = _write(folder, name, cert, key)

    rogue_ca_key = ec.generate_private_key(ec.SECP256R1())
    rogue_ca = _certificate("not the radtrack CA", rogue_ca_key, None, ca=True)
    rogue_key = ec.generate_private_key(ec.SECP256R1())
    rogue = _certificate(
        "nas1.example.net",
        rogue_key,
        (rogue_ca.subject, rogue_ca_key),
        sans=[x509.DNSName("nas1.example.net")],
    )
    pairs["rogue"] = _write(folder, "rogue", rogue, rogue_key)

    encrypted = folder / "encrypted.key"
    encrypted.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"a password"),
        )
    )
    return Pki(folder / "ca.pem", encrypted_key=encrypted, **pairs)
