"""QUIC probe: a handshake with the target's name and one with a neutral name (aioquic).

Both fail while UDP otherwise passes: ``quic_blocked``; only the target's name fails:
``quic_sni_blocked`` (the censor read the SNI from the Initial packet). aioquic reports every
failure as a bare ``ConnectionError`` and blocked UDP as an idle timeout, so the idle timeout is
set to the probe's timeout and a failure that took that long is named ``generic_timeout_error``.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection

from callpath.core.model.failures import failure_from_exception
from callpath.core.model.probe_results import ProbeKind, ProbeResult
from callpath.core.probes import ProbeConfig, ProbeTimer, host_port, milliseconds
from callpath.core.probes.binding import bound_socket

Address = tuple[str, int]


@asynccontextmanager
async def _bound_connect(
    address: Address, configuration: QuicConfiguration, interface: str
) -> AsyncIterator[QuicConnectionProtocol]:
    """aioquic's ``connect`` (public API only) from a socket bound to ``interface``."""
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    sock = bound_socket(family, socket.SOCK_DGRAM, interface)
    try:
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: QuicConnectionProtocol(QuicConnection(configuration=configuration)),
            sock=sock,
        )
    except BaseException:
        sock.close()
        raise
    try:
        protocol.connect(address, transmit=True)
        await protocol.wait_connected()
        yield protocol
    finally:
        protocol.close()
        await protocol.wait_closed()
        transport.close()


async def _handshake(address: Address, server_name: str, config: ProbeConfig) -> dict[str, Any]:
    configuration = QuicConfiguration(
        is_client=True,
        alpn_protocols=[config.quic_alpn],
        server_name=server_name,
        idle_timeout=config.quic_timeout_s,
    )
    # Reachability only: whose certificate it is, is the TLS probe's question.
    configuration.verify_mode = ssl.CERT_NONE
    started = time.monotonic()
    try:
        async with asyncio.timeout(config.quic_timeout_s + 1.0):
            if config.bind_interface is None:
                async with connect(*address, configuration=configuration, wait_connected=True):
                    elapsed = time.monotonic() - started
            else:
                async with _bound_connect(address, configuration, config.bind_interface):
                    elapsed = time.monotonic() - started
        return {"ok": True, "failure": None, "handshake_ms": milliseconds(elapsed)}
    except (ConnectionError, OSError, TimeoutError) as error:
        elapsed = time.monotonic() - started
        if isinstance(error, ConnectionError) and elapsed >= 0.9 * config.quic_timeout_s:
            failure = "generic_timeout_error"  # aioquic's idle timeout
        else:
            failure = failure_from_exception(error)
        return {"ok": False, "failure": failure, "after_s": round(elapsed, 3)}


async def probe_quic(
    address: Address,
    server_name: str,
    config: ProbeConfig,
    *,
    origin: float = 0.0,
    control: bool = True,
) -> ProbeResult:
    """Handshakes to ``address`` with ``server_name`` and with ``config.neutral_sni``."""
    timer = ProbeTimer(origin)
    target, neutral = await asyncio.gather(
        _handshake(address, server_name, config),
        _handshake(address, config.neutral_sni, config),
    )
    evidence = {
        "server_name": server_name,
        "neutral_sni": config.neutral_sni,
        "target_ok": target["ok"],
        "neutral_ok": neutral["ok"],
        "target_failure": target["failure"],
        "neutral_failure": neutral["failure"],
        "handshake_ms": target.get("handshake_ms"),
        "neutral_handshake_ms": neutral.get("handshake_ms"),
    }
    return timer.result(
        ProbeKind.QUIC_HANDSHAKE, host_port(*address), target["failure"], evidence, control=control
    )
