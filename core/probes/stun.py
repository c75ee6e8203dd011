"""STUN probe: is STUN lost by its signature, or all UDP?

Three flows to the control server's UDP echo, each on its own local port, run at once:
a padded STUN Binding request; a random datagram of the same size (no STUN header); and a
decoy-first flow (a random datagram, then STUN on the same flow, since some DPI only classifies a
flow by its first packet). STUN lost while the random datagram comes back is the signature of
``stun_signature_blocked``; both lost is ``udp_blocked`` (or the control server is down).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aioice.stun

from callpath.core.model.failures import failure_from_exception
from callpath.core.model.probe_results import ProbeKind, ProbeResult
from callpath.core.probes import ProbeConfig, ProbeTimer, host_port, milliseconds
from callpath.core.probes.datagram import Address, DatagramFlow

STUN_HEADER_BYTES = 20
ATTRIBUTE_HEADER_BYTES = 4
MIN_PADDED_BYTES = STUN_HEADER_BYTES + ATTRIBUTE_HEADER_BYTES + 4
ATTEMPT_SPACING_S = 0.25
UNASSIGNED_FIRST_BYTE = 0x08

# (reply, {datagram sent: when}) -> when the datagram it answers was sent, or None
Matcher = Callable[[bytes, dict[bytes, float]], float | None]


# --- pure message logic ----------------------------------------------------------------------


def padded_binding_request(size: int, transaction_id: bytes) -> bytes:
    """A Binding request padded with a SOFTWARE attribute to ``size`` bytes (rounded up to 4).

    The padding lets the control server answer without sending more than it received."""
    size = max(MIN_PADDED_BYTES, size + (-size % 4))
    software = "callpath-probe ".ljust(size - STUN_HEADER_BYTES - ATTRIBUTE_HEADER_BYTES, ".")
    message = aioice.stun.Message(
        message_method=aioice.stun.Method.BINDING,
        message_class=aioice.stun.Class.REQUEST,
        transaction_id=transaction_id,
        attributes={"SOFTWARE": software},
    )
    return bytes(message)


def random_datagram(size: int) -> bytes:
    """Random bytes no classifier can take for STUN, DTLS, TURN, RTP or QUIC.

    The first byte is in 4–15, the range RFC 7983/9443 leave unassigned when they demultiplex
    STUN (0–3), DTLS (20–63), TURN channels (64–79), QUIC and RTP/RTCP (128–191)."""
    body = bytearray(os.urandom(size))
    body[0] = UNASSIGNED_FIRST_BYTE
    return bytes(body)


def is_binding_success(data: bytes, transaction_ids: set[bytes]) -> bool:
    try:
        message = aioice.stun.parse_message(data)
    except ValueError:
        return False
    return (
        message.message_method == aioice.stun.Method.BINDING
        and message.message_class == aioice.stun.Class.RESPONSE
        and message.transaction_id in transaction_ids
    )


@dataclass(frozen=True)
class Exchange:
    answered: bool
    sent: int
    rtt_s: float | None
    refused: bool = False


# --- I/O -------------------------------------------------------------------------------------


async def _exchange(
    flow: DatagramFlow,
    make: Callable[[], bytes],
    matches: Matcher,
    config: ProbeConfig,
) -> Exchange:
    """Send up to ``stun_attempts`` datagrams from ``make()``; stop at the first ``matches``."""
    sent: dict[bytes, float] = {}
    for attempt in range(config.stun_attempts):
        datagram = make()
        sent[datagram] = time.monotonic()
        flow.send(datagram)
        last = attempt == config.stun_attempts - 1
        deadline = time.monotonic() + (config.stun_wait_s if last else ATTEMPT_SPACING_S)
        while (arrival := await flow.next(deadline)) is not None:
            at, data = arrival
            origin = matches(data, sent)
            if origin is not None:
                return Exchange(True, len(sent), at - origin)
    return Exchange(False, len(sent), None, flow.refused)


def _stun_maker(size: int, ids: set[bytes]) -> Callable[[], bytes]:
    def make() -> bytes:
        transaction_id = os.urandom(12)
        ids.add(transaction_id)
        return padded_binding_request(size, transaction_id)

    return make


def _stun_matcher(ids: set[bytes]) -> Matcher:
    def matches(data: bytes, sent: dict[bytes, float]) -> float | None:
        if not is_binding_success(data, ids):
            return None
        transaction_id = data[8:20]
        return next((at for request, at in sent.items() if request[8:20] == transaction_id), None)

    return matches


def _echo_matcher(data: bytes, sent: dict[bytes, float]) -> float | None:
    return sent.get(data)


async def _stun_flow(server: Address, config: ProbeConfig) -> Exchange:
    flow = await DatagramFlow.open(server, config.bind_interface)
    try:
        ids: set[bytes] = set()
        return await _exchange(
            flow, _stun_maker(config.stun_datagram_bytes, ids), _stun_matcher(ids), config
        )
    finally:
        flow.close()


async def _random_flow(server: Address, config: ProbeConfig) -> Exchange:
    flow = await DatagramFlow.open(server, config.bind_interface)
    try:
        size = config.stun_datagram_bytes
        return await _exchange(flow, lambda: random_datagram(size), _echo_matcher, config)
    finally:
        flow.close()


async def _decoy_first_flow(server: Address, config: ProbeConfig) -> tuple[Exchange, Exchange]:
    flow = await DatagramFlow.open(server, config.bind_interface)
    try:
        size = config.stun_datagram_bytes
        decoy = await _exchange(flow, lambda: random_datagram(size), _echo_matcher, config)
        ids: set[bytes] = set()
        stun = await _exchange(flow, _stun_maker(size, ids), _stun_matcher(ids), config)
        return decoy, stun
    finally:
        flow.close()


def _rtt(exchange: Exchange) -> float | None:
    return None if exchange.rtt_s is None else milliseconds(exchange.rtt_s)


async def probe_stun(
    server: Address, config: ProbeConfig, *, origin: float = 0.0, control: bool = True
) -> ProbeResult:
    """STUN vs a same-size random datagram vs decoy-then-STUN, against a UDP echo + STUN server."""
    timer = ProbeTimer(origin)
    target = host_port(*server)
    budget = config.stun_attempts * ATTEMPT_SPACING_S + config.stun_wait_s
    try:
        async with asyncio.timeout(2 * budget + 2.0):
            stun, random, (decoy, decoy_stun) = await asyncio.gather(
                _stun_flow(server, config),
                _random_flow(server, config),
                _decoy_first_flow(server, config),
            )
    except (OSError, TimeoutError) as error:
        failed = failure_from_exception(error)
        return timer.result(ProbeKind.STUN, target, failed, {}, control=control)
    evidence: dict[str, Any] = {
        "datagram_bytes": len(padded_binding_request(config.stun_datagram_bytes, bytes(12))),
        "stun_answered": stun.answered,
        "stun_sent": stun.sent,
        "stun_rtt_ms": _rtt(stun),
        "random_answered": random.answered,
        "random_sent": random.sent,
        "random_rtt_ms": _rtt(random),
        "decoy_answered": decoy.answered,
        "decoy_stun_answered": decoy_stun.answered,
        "icmp_refused": stun.refused or random.refused,
    }
    failure: str | None = None
    if not stun.answered:
        failure = "connection_refused" if stun.refused and random.refused else "stun_no_response"
    return timer.result(ProbeKind.STUN, target, failure, evidence, control=control)


async def probe_stun_binding(
    server: Address, config: ProbeConfig, *, origin: float = 0.0, control: bool = False
) -> ProbeResult:
    """One STUN Binding exchange with any STUN/TURN server (no echo needed): is it reachable?"""
    timer = ProbeTimer(origin)
    target = host_port(*server)
    budget = config.stun_attempts * ATTEMPT_SPACING_S + config.stun_wait_s + 2.0
    try:
        async with asyncio.timeout(budget):
            stun = await _stun_flow(server, config)
    except (OSError, TimeoutError) as error:
        failed = failure_from_exception(error)
        return timer.result(ProbeKind.STUN, target, failed, {}, control=control)
    evidence = {"stun_answered": stun.answered, "stun_sent": stun.sent, "stun_rtt_ms": _rtt(stun)}
    failure: str | None = None
    if not stun.answered:
        failure = "connection_refused" if stun.refused else "stun_no_response"
    return timer.result(ProbeKind.STUN, target, failure, evidence, control=control)
