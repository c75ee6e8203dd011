"""Throwaway certificates for tests: a test CA, a server certificate it signs, and a stray one.

Everything is generated in memory with ``cryptography`` and written as PEM files; nothing here
is trusted outside the test that asked for it.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=2)
# Backdated so that a clock a little behind the machine that made the certificate still accepts it.
BACKDATE = datetime.timedelta(hours=1)


@dataclass(frozen=True)
class ServerCertificate:
    """PEM files of a server certificate and the CA that signed it."""

    ca_path: Path  # what clients trust
    cert_path: Path  # server certificate followed by nothing else (the CA is the root)
    key_path: Path
    dns_names: tuple[str, ...]


@dataclass(frozen=True)
class SelfSignedCertificate:
    """A certificate no test CA signed, for "wrong certificate" negative tests."""

    cert_path: Path
    key_path: Path


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "CallPath tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _write_cert(cert: x509.Certificate, path: Path) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _subject_alt_names(dns_names: Sequence[str]) -> x509.SubjectAlternativeName:
    general_names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
    general_names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    return x509.SubjectAlternativeName(general_names)


def _server_builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    dns_names: Sequence[str],
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + VALIDITY)
        .add_extension(_subject_alt_names(dns_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def make_server_certificate(
    directory: Path, dns_names: Sequence[str] = ("localhost",)
) -> ServerCertificate:
    """Create a test CA and a server certificate for ``dns_names`` and IP 127.0.0.1.

    Files written to ``directory``: ``ca.pem``, ``server.pem``, ``server.key``.
    """
    if not dns_names:
        raise ValueError("a server certificate needs at least one DNS name")
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)

    ca_key = _new_key()
    ca_name = _name("CallPath test CA")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    server_key = _new_key()
    server_cert = (
        _server_builder(_name(dns_names[0]), ca_name, server_key.public_key(), dns_names)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )

    result = ServerCertificate(
        ca_path=directory / "ca.pem",
        cert_path=directory / "server.pem",
        key_path=directory / "server.key",
        dns_names=tuple(dns_names),
    )
    _write_cert(ca_cert, result.ca_path)
    _write_cert(server_cert, result.cert_path)
    _write_key(server_key, result.key_path)
    return result


def make_self_signed_certificate(
    directory: Path, dns_names: Sequence[str] = ("localhost",)
) -> SelfSignedCertificate:
    """Create a self-signed server certificate that no test CA vouches for.

    Files written to ``directory``: ``wrong.pem``, ``wrong.key``.
    """
    if not dns_names:
        raise ValueError("a server certificate needs at least one DNS name")
    directory.mkdir(parents=True, exist_ok=True)
    key = _new_key()
    name = _name(dns_names[0])
    cert = _server_builder(name, name, key.public_key(), dns_names).sign(key, hashes.SHA256())
    result = SelfSignedCertificate(
        cert_path=directory / "wrong.pem", key_path=directory / "wrong.key"
    )
    _write_cert(cert, result.cert_path)
    _write_key(key, result.key_path)
    return result
