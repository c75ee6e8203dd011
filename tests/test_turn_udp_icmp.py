"""A TURN-over-UDP Allocate fails at once when the network answers with an ICMP error."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest

from callpath.core.call.stages import StageFailure
from callpath.core.paths.relay import TurnEndpoint, allocate, open_udp


def _closed_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens there now: the kernel answers "port unreachable"


async def test_an_allocate_to_a_closed_udp_port_fails_at_the_icmp_error() -> None:
    endpoint = TurnEndpoint(
        host="127.0.0.1",
        address="127.0.0.1",
        port=_closed_udp_port(),
        transport="udp",
        username="user",
        password="secret",
    )
    transport, protocol = await open_udp(endpoint)
    evidence: dict[str, Any] = {}
    started = time.monotonic()
    try:
        with pytest.raises(StageFailure) as failed:
            await allocate(endpoint, transport, protocol, evidence)
    finally:
        transport.close()
    assert failed.value.failure == "connection_refused"
    # aioice's first retransmission would come after 0.5 s and its timeout after 2.5 s+.
    assert time.monotonic() - started < 0.5
