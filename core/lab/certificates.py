"""Throwaway certificates for the labs' and the tests' TLS and QUIC servers: a CA, a server
certificate it signs, and (for "wrong certificate" tests) a self-signed one. Never trusted beyond
one run; the one generator for the userspace lab, the kernel lab and the test suite.

The certificates carry what strict verifiers ask for (Python's ``VERIFY_X509_STRICT``: key
identifiers, a critical CA basic constraint with key usage), and are backdated an hour so a
clock a little behind still accepts them.
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
BACKDATE = datetime.timedelta(hours=1)
ORGANIZATION = "CallPath lab"


@dataclass(frozen=True)
class LabCertificates:
    ca_pem: bytes
    ca: Path
    certificate: Path
    key: Path


@dataclass(frozen=True)
class SelfSignedCertificate:
    """A certificate no lab CA signed."""

    certificate: Path
    key: Path


def write_lab_certificates(
    directory: Path, names: Sequence[str], addresses: Sequence[str], ca_name: str
) -> LabCertificates:
    """A new CA and one server certificate for ``names`` and ``addresses``, as PEM files
    (``ca.pem``, ``server.pem``, ``server.key`` in ``directory``)."""
    if not names:
        raise ValueError("a server certificate needs at least one name")
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = _new_key()
    issuer = _name(ca_name)
    ca = (
        x509.CertificateBuilder()
        .subject_name(issuer)
        .issuer_name(issuer)
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
    key = _new_key()
    certificate = (
        _server_builder(_name(names[0]), issuer, key.public_key(), names, addresses, now)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem = ca.public_bytes(serialization.Encoding.PEM)
    files = LabCertificates(
        ca_pem, directory / "ca.pem", directory / "server.pem", directory / "server.key"
    )
    files.ca.write_bytes(ca_pem)
    files.certificate.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    _write_key(key, files.key)
    return files


def write_self_signed_certificate(
    directory: Path, names: Sequence[str], addresses: Sequence[str] = ()
) -> SelfSignedCertificate:
    """A self-signed server certificate no CA vouches for (``wrong.pem``, ``wrong.key``)."""
    if not names:
        raise ValueError("a server certificate needs at least one name")
    directory.mkdir(parents=True, exist_ok=True)
    key = _new_key()
    name = _name(names[0])
    now = datetime.datetime.now(datetime.UTC)
    builder = _server_builder(name, name, key.public_key(), names, addresses, now)
    certificate = builder.sign(key, hashes.SHA256())
    files = SelfSignedCertificate(directory / "wrong.pem", directory / "wrong.key")
    files.certificate.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    _write_key(key, files.key)
    return files


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _server_builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    names: Sequence[str],
    addresses: Sequence[str],
    now: datetime.datetime,
) -> x509.CertificateBuilder:
    alternative_names: list[x509.GeneralName] = [x509.DNSName(name) for name in names]
    alternative_names += [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectAlternativeName(alternative_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
