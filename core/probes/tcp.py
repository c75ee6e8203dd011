"""TCP probes: connect timing, and a 64 KB pull that shows a freeze after ~16 KB.

The bulk pull asks the control server for ``bulk_bytes`` (``GET <n>\\n``) over one connection and
records how many bytes arrived before the data stopped for ``bulk_stall_s``. Russia's TSPU (2025)
freezes TCP connections to foreign hosting after roughly 16–20 KB server→client without an RST;
a stall between 12 and 34 KB is the evidence for ``tcp_freeze_16k``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from callpath.core.model.failures import failure_from_exception
from callpath.core.model.probe_results import ProbeKind, ProbeResult
from callpath.core.probes import ProbeConfig, ProbeTimer, host_port, milliseconds
from callpath.core.probes.binding import open_connection

Address = tuple[str, int]
READ_BYTES = 16 * 1024


async def _close(writer: asyncio.StreamWriter, timeout: float = 1.0) -> None:
    writer.close()
    with contextlib.suppress(OSError, TimeoutError, ConnectionError):
        await asyncio.wait_for(writer.wait_closed(), timeout)


async def probe_tcp_connect(
    address: Address, config: ProbeConfig, *, origin: float = 0.0, control: bool = False
) -> ProbeResult:
    """One TCP connection attempt: ``tcp_connect_ms`` or the OONI failure."""
    timer = ProbeTimer(origin)
    evidence: dict[str, Any] = {}
    failure: str | None = None
    try:
        async with asyncio.timeout(config.connect_timeout_s):
            _, writer = await open_connection(*address, config.bind_interface)
        evidence["tcp_connect_ms"] = milliseconds(timer.elapsed())
        await _close(writer)
    except (OSError, TimeoutError) as error:
        failure = failure_from_exception(error)
    return timer.result(
        ProbeKind.TCP_CONNECT, host_port(*address), failure, evidence, control=control
    )


async def _pull(address: Address, config: ProbeConfig, evidence: dict[str, Any]) -> str | None:
    started = time.monotonic()
    async with asyncio.timeout(config.connect_timeout_s):
        reader, writer = await open_connection(*address, config.bind_interface)
    evidence["tcp_connect_ms"] = milliseconds(time.monotonic() - started)
    received = 0
    last_data = requested_at = time.monotonic()
    try:
        writer.write(f"GET {config.bulk_bytes}\n".encode())
        await writer.drain()
        while received < config.bulk_bytes:
            try:
                async with asyncio.timeout(config.bulk_stall_s):
                    chunk = await reader.read(READ_BYTES)
            except TimeoutError:
                evidence["stalled"] = True
                evidence["stall_after_s"] = round(last_data - requested_at, 3)
                return "generic_timeout_error"
            if not chunk:
                return "eof_error"
            if received == 0:
                evidence["first_byte_ms"] = milliseconds(time.monotonic() - requested_at)
            received += len(chunk)
            evidence["bytes_received"] = received
            last_data = time.monotonic()
        evidence["transfer_s"] = round(last_data - requested_at, 3)
        return None
    finally:
        evidence["bytes_received"] = received
        await _close(writer)


async def probe_tcp_bulk(
    address: Address, config: ProbeConfig, *, origin: float = 0.0, control: bool = True
) -> ProbeResult:
    """Pull ``bulk_bytes`` from the control server's bulk endpoint over one connection."""
    timer = ProbeTimer(origin)
    evidence: dict[str, Any] = {"requested": config.bulk_bytes, "stalled": False}
    try:
        async with asyncio.timeout(config.bulk_timeout_s):
            failure = await _pull(address, config, evidence)
    except (OSError, TimeoutError, EOFError) as error:
        failure = failure_from_exception(error)
    return timer.result(ProbeKind.TCP_BULK, host_port(*address), failure, evidence, control=control)
