"""TCP connect, TCP bulk and TLS probes against real servers on 127.0.0.2, through the lab's
censor middlebox (127.0.0.3) where a test needs blocking."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from callpath.core.lab.middlebox import Middlebox
from callpath.core.lab.rules import (
    BlockMode,
    BlockTcpConnect,
    BlockTlsSni,
    Censor,
    FreezeTcp,
    Rule,
)
from callpath.core.model.probe_results import ProbeKind, ProbeResult
from callpath.core.probes import ProbeConfig
from callpath.core.probes.tcp import probe_tcp_bulk, probe_tcp_connect
from callpath.core.probes.tls import probe_tls, spki_sha256
from callpath.core.servers.control_server import ControlServer
from tests.certs import (
    ServerCertificate,
    make_self_signed_certificate,
    make_server_certificate,
)

SERVER_HOST = "127.0.0.2"
TARGET_NAME = "relay.callpath.test"
Address = tuple[str, int]

FAST = ProbeConfig(connect_timeout_s=2.0, tls_timeout_s=1.5, bulk_stall_s=1.0, bulk_timeout_s=10.0)


@pytest.fixture
async def control() -> AsyncIterator[ControlServer]:
    async with ControlServer() as server:
        await server.start(SERVER_HOST, udp_port=None, quic_port=None)
        yield server


async def _via_box(
    target: Address, rules: tuple[Rule, ...], probe: Callable[[Address], Awaitable[ProbeResult]]
) -> ProbeResult:
    async with Middlebox(Censor(rules)) as box:
        return await probe(await box.expose_tcp(target))


# --- TCP connect -----------------------------------------------------------------------------


async def test_connect_probe_times_a_connection(control: ControlServer) -> None:
    assert control.tcp_bulk_address is not None
    result = await probe_tcp_connect(control.tcp_bulk_address, FAST)
    assert result.probe == ProbeKind.TCP_CONNECT and result.failure is None
    assert isinstance(result.evidence["tcp_connect_ms"], float)


async def test_connect_probe_refused() -> None:
    server = await asyncio.start_server(lambda r, w: None, SERVER_HOST, 0)
    address = server.sockets[0].getsockname()[:2]
    server.close()
    await server.wait_closed()
    result = await probe_tcp_connect(address, FAST)
    assert result.failure == "connection_refused"


async def test_connect_probe_reset_by_the_censor(control: ControlServer) -> None:
    assert control.tcp_bulk_address is not None
    # A reset connect shows as a connection that dies at once (the box accepts it first).
    result = await _via_box(
        control.tcp_bulk_address,
        (BlockTcpConnect(mode=BlockMode.RESET),),
        lambda address: probe_tcp_bulk(address, FAST),
    )
    assert result.failure in ("connection_reset", "eof_error")
    assert result.evidence["bytes_received"] == 0


# --- TCP bulk --------------------------------------------------------------------------------


async def test_bulk_probe_pulls_64k(control: ControlServer) -> None:
    assert control.tcp_bulk_address is not None
    result = await _via_box(control.tcp_bulk_address, (), lambda a: probe_tcp_bulk(a, FAST))
    assert result.failure is None
    assert result.evidence["bytes_received"] == 64 * 1024
    assert result.evidence["stalled"] is False


async def test_bulk_probe_sees_the_16k_freeze(control: ControlServer) -> None:
    assert control.tcp_bulk_address is not None
    result = await _via_box(
        control.tcp_bulk_address,
        (FreezeTcp(after_bytes=16 * 1024),),
        lambda a: probe_tcp_bulk(a, FAST),
    )
    assert result.failure == "generic_timeout_error"
    assert result.evidence["stalled"] is True
    assert result.evidence["bytes_received"] == 16 * 1024
    assert result.control


# --- TLS -------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def tls_server(cert_path: Path, key_path: Path) -> AsyncIterator[Address]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(reader.read(1), 3.0)
        writer.close()

    server = await asyncio.start_server(handle, SERVER_HOST, 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[:2]
    finally:
        server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 2.0)


@pytest.fixture
def certificate(tmp_path: Path) -> ServerCertificate:
    return make_server_certificate(tmp_path / "good", (TARGET_NAME,))


def _client_context(ca_path: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca_path))


async def test_tls_probe_clean(certificate: ServerCertificate) -> None:
    async with tls_server(certificate.cert_path, certificate.key_path) as address:
        result = await probe_tls(
            address, TARGET_NAME, FAST, verify_context=_client_context(certificate.ca_path)
        )
    assert result.failure is None
    target, neutral = result.evidence["target"], result.evidence["neutral"]
    assert target["failure"] is None and neutral["failure"] is None
    assert "CallPath test CA" in target["certificate"]["issuer"]
    assert result.evidence["certificate_verified"] is True


@pytest.mark.parametrize(
    ("mode", "failure"),
    [(BlockMode.RESET, "connection_reset"), (BlockMode.DROP, "generic_timeout_error")],
)
async def test_tls_probe_sni_filter(
    certificate: ServerCertificate, mode: BlockMode, failure: str
) -> None:
    async with tls_server(certificate.cert_path, certificate.key_path) as address:
        result = await _via_box(
            address,
            (BlockTlsSni(frozenset({TARGET_NAME}), mode=mode),),
            lambda a: probe_tls(
                a, TARGET_NAME, FAST, verify_context=_client_context(certificate.ca_path)
            ),
        )
    target, neutral = result.evidence["target"], result.evidence["neutral"]
    assert result.failure == failure
    assert target["phase"] == "tls_handshake" and "tcp_connect_ms" in target
    assert neutral["failure"] is None


async def test_tls_probe_sees_a_certificate_from_another_ca(
    certificate: ServerCertificate, tmp_path: Path
) -> None:
    stray = make_self_signed_certificate(tmp_path / "stray", (TARGET_NAME,))
    async with tls_server(stray.cert_path, stray.key_path) as address:
        result = await probe_tls(
            address, TARGET_NAME, FAST, verify_context=_client_context(certificate.ca_path)
        )
    assert result.failure == "ssl_unknown_authority"
    target = result.evidence["target"]
    assert target["phase"] == "tls_handshake"
    assert target["certificate"]["issuer"] == target["certificate"]["subject"]  # self-signed
    assert result.evidence["certificate_verified"] is False


async def test_tls_probe_pins(certificate: ServerCertificate) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    der = x509.load_pem_x509_certificate(certificate.cert_path.read_bytes()).public_bytes(
        serialization.Encoding.DER
    )
    right_pin = spki_sha256(der)
    context = _client_context(certificate.ca_path)
    async with tls_server(certificate.cert_path, certificate.key_path) as address:
        pinned = await probe_tls(
            address, TARGET_NAME, FAST, verify_context=context, pinned_spki_sha256=[right_pin]
        )
        other = await probe_tls(
            address, TARGET_NAME, FAST, verify_context=context, pinned_spki_sha256=["ab" * 32]
        )
    assert pinned.failure is None and pinned.evidence["pin_mismatch"] is False
    assert other.failure == "ssl_invalid_certificate" and other.evidence["pin_mismatch"] is True


async def test_tls_probe_nothing_listening() -> None:
    server = await asyncio.start_server(lambda r, w: None, SERVER_HOST, 0)
    address = server.sockets[0].getsockname()[:2]
    server.close()
    await server.wait_closed()
    result = await probe_tls(address, TARGET_NAME, FAST)
    assert result.failure == "connection_refused"
    assert result.evidence["target"]["phase"] == "tcp_connect"
