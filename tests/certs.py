"""Throwaway certificates for tests, from the one generator the labs use
(``callpath.core.lab.certificates``): a test CA with a server certificate it signs (for the
given names and 127.0.0.1), and a stray self-signed one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from callpath.core.lab.certificates import write_lab_certificates, write_self_signed_certificate

LOOPBACK = ("127.0.0.1",)


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


def make_server_certificate(
    directory: Path, dns_names: Sequence[str] = ("localhost",)
) -> ServerCertificate:
    """A test CA and a server certificate for ``dns_names`` and IP 127.0.0.1 (``ca.pem``,
    ``server.pem``, ``server.key`` in ``directory``)."""
    files = write_lab_certificates(directory, dns_names, LOOPBACK, "CallPath test CA")
    return ServerCertificate(files.ca, files.certificate, files.key, tuple(dns_names))


def make_self_signed_certificate(
    directory: Path, dns_names: Sequence[str] = ("localhost",)
) -> SelfSignedCertificate:
    """A self-signed server certificate no test CA vouches for (``wrong.pem``, ``wrong.key``)."""
    files = write_self_signed_certificate(directory, dns_names, LOOPBACK)
    return SelfSignedCertificate(files.certificate, files.key)
