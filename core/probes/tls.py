"""TLS probe: the real server name against a neutral one, and whose certificate comes back.

Two connections to the same address: one whose ClientHello carries the target's name (checked
against the expected CA set and, if given, pinned public keys) and one with a neutral name (not
checked: only "does a handshake complete"). The real name failing while the neutral one works is
the SNI filter's signature: an RST right after the ClientHello (``tls_sni_reset``) or silence
(``tls_sni_drop``). A certificate that does not chain to the expected CA, or whose public key is
not the pinned one, is someone else's (``tls_interception``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ssl
import time
from collections.abc import Iterable
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from callpath.core.model.failures import failure_from_exception
from callpath.core.model.probe_results import ProbeKind, ProbeResult
from callpath.core.probes import ProbeConfig, ProbeTimer, host_port, milliseconds
from callpath.core.probes.binding import open_connection

Address = tuple[str, int]
TCP_PHASE = "tcp_connect"
TLS_PHASE = "tls_handshake"


def spki_sha256(certificate_der: bytes) -> str:
    """Hex SHA-256 of the certificate's SubjectPublicKeyInfo (what a pin names)."""
    certificate = x509.load_der_x509_certificate(certificate_der)
    spki = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).hexdigest()


def describe_certificate(certificate_der: bytes) -> dict[str, Any]:
    certificate = x509.load_der_x509_certificate(certificate_der)
    return {
        "subject": certificate.subject.rfc4514_string(),
        "issuer": certificate.issuer.rfc4514_string(),
        "spki_sha256": spki_sha256(certificate_der),
    }


def unverified_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def _handshake(
    address: Address, server_name: str, context: ssl.SSLContext, config: ProbeConfig
) -> dict[str, Any]:
    """One connection and handshake; evidence of how far it got and what came back."""
    attempt: dict[str, Any] = {"sni": server_name, "failure": None}
    started = time.monotonic()
    try:
        async with asyncio.timeout(config.connect_timeout_s):
            _, writer = await open_connection(*address, config.bind_interface)
    except (OSError, TimeoutError) as error:
        attempt.update(failure=failure_from_exception(error), phase=TCP_PHASE)
        return attempt
    attempt["tcp_connect_ms"] = milliseconds(time.monotonic() - started)
    tls_started = time.monotonic()
    try:
        async with asyncio.timeout(config.tls_timeout_s):
            await writer.start_tls(
                context, server_hostname=server_name, ssl_handshake_timeout=config.tls_timeout_s
            )
        attempt["tls_handshake_ms"] = milliseconds(time.monotonic() - tls_started)
        ssl_object = writer.get_extra_info("ssl_object")
        if ssl_object is not None:
            attempt["tls_version"] = ssl_object.version()
            der = ssl_object.getpeercert(binary_form=True)
            if der:
                attempt["certificate"] = describe_certificate(der)
    except (OSError, TimeoutError, EOFError, ssl.SSLError) as error:
        attempt.update(
            failure=failure_from_exception(error),
            phase=TLS_PHASE,
            after_s=round(time.monotonic() - tls_started, 3),
        )
    finally:
        writer.transport.abort()  # nothing more to say; do not wait for a close_notify
    return attempt


async def probe_tls(
    address: Address,
    server_name: str,
    config: ProbeConfig,
    *,
    verify_context: ssl.SSLContext | None = None,
    pinned_spki_sha256: Iterable[str] = (),
    origin: float = 0.0,
    control: bool = False,
) -> ProbeResult:
    """Handshake with ``server_name`` (verified) and ``config.neutral_sni`` (not verified).

    ``verify_context`` holds the expected CA set (default: the system's). ``failure`` is the real
    name's: ``ssl_*`` when its certificate is not right, ``ssl_invalid_certificate`` with
    ``pin_mismatch`` when it chains but carries another key than the pinned ones."""
    timer = ProbeTimer(origin)
    context = verify_context if verify_context is not None else ssl.create_default_context()
    pins = {pin.lower().replace(":", "") for pin in pinned_spki_sha256}
    budget = 2 * (config.connect_timeout_s + config.tls_timeout_s) + 2.0
    evidence: dict[str, Any] = {"server_name": server_name, "neutral_sni": config.neutral_sni}
    async with asyncio.timeout(budget):
        target, neutral = await asyncio.gather(
            _handshake(address, server_name, context, config),
            _handshake(address, config.neutral_sni, unverified_context(), config),
        )
        failure: str | None = target["failure"]
        if failure is not None and failure.startswith("ssl_") and target.get("phase") == TLS_PHASE:
            # Verification refused the certificate: fetch it unverified to show whose it is.
            with contextlib.suppress(TimeoutError):
                seen = await _handshake(address, server_name, unverified_context(), config)
                if "certificate" in seen:
                    target["certificate"] = seen["certificate"]
    evidence["certificate_verified"] = target["failure"] is None
    if pins and "certificate" in target:
        mismatch = target["certificate"]["spki_sha256"] not in pins
        evidence["pin_mismatch"] = mismatch
        if mismatch and failure is None:
            failure = "ssl_invalid_certificate"
    evidence["target"] = target
    evidence["neutral"] = neutral
    return timer.result(
        ProbeKind.TLS_HANDSHAKE, host_port(*address), failure, evidence, control=control
    )
