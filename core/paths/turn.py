"""The TURN paths: a relay over UDP, TCP or TLS (``turn-udp``, ``turn-tcp``, ``turn-tls``), and
a relay over TCP or TLS reached through the user's SOCKS5 or HTTP proxy (``socks5-turn``,
``http-turn``). CallPath makes the allocation itself (``paths/relay.py``) so each step is a
timed stage, then hands it to aiortc; the selected pair must be a relay candidate over the
allocation's transport."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from typing import Any

from aiortc import RTCIceServer

from callpath.core.call.library_adapter import PreparedTurn
from callpath.core.call.targets import LocalEchoSession, relay_only_configuration
from callpath.core.model.results import PathId, Stage
from callpath.core.paths.base import (
    TUNNEL_ICE_SERVER,
    PairProof,
    PathContext,
    PathPlan,
    PreparedPath,
    proxy_plan,
    server_plan,
    uri_host,
)
from callpath.core.paths.proxy_stream import proxy_stream_opener
from callpath.core.paths.relay import (
    StreamCounters,
    StreamOpener,
    TurnEndpoint,
    allocate,
    connect_stream,
    open_udp,
)
from callpath.core.profile.document import Profile


def _endpoint(plan: PathPlan, address: str | None, transport: str) -> TurnEndpoint:
    assert address is not None and plan.port is not None
    return TurnEndpoint(
        host=plan.host or address,
        address=address,
        port=plan.port,
        transport=transport,
        username=plan.username,
        password=plan.password,
        sni=plan.sni,
    )


@dataclass(frozen=True)
class TurnPath:
    """A TURN relay reached directly over ``transport`` (udp, tcp or tls)."""

    transport: str

    def plan(self, profile: Profile, path_id: PathId) -> PathPlan:
        return server_plan(path_id, profile.server_for(path_id))

    async def prepare(
        self, plan: PathPlan, address: str | None, context: PathContext
    ) -> PreparedPath:
        endpoint = _endpoint(plan, address, self.transport)
        prepared = await prepare_turn(endpoint, context)
        assert address is not None
        turn_url = f"turn:{uri_host(address)}:{plan.port}?transport=udp"
        server = RTCIceServer(urls=turn_url, username=plan.username, credential=plan.password)
        session = None
        if context.relay_loopback:
            echo_turn = await prepare_turn(endpoint, context, record=False)
            session = LocalEchoSession(
                relay_only_configuration(turn_url, plan.username, plan.password),
                prepared_turn=echo_turn,
            )
        return PreparedPath((server,), prepared, session)

    def proof(self, plan: PathPlan) -> PairProof:
        return PairProof(relay_transport=self.transport)


@dataclass(frozen=True)
class ProxiedTurnPath:
    """A TURN relay over TCP or TLS, reached through the user's proxy (CONNECT or SOCKS5)."""

    def plan(self, profile: Profile, path_id: PathId) -> PathPlan:
        chosen = profile.relay_behind_proxy()
        assert chosen is not None  # the profile parser checked it
        _, uri = chosen
        return replace(
            server_plan(path_id, chosen),
            proxy=proxy_plan(profile, path_id),
            turn_transport="tls" if uri.scheme == "turns" else "tcp",
        )

    async def prepare(
        self, plan: PathPlan, address: str | None, context: PathContext
    ) -> PreparedPath:
        assert plan.proxy is not None and plan.turn_transport is not None
        endpoint = _endpoint(plan, address, plan.turn_transport)
        opener = proxy_stream_opener(plan.proxy.url, plan.proxy.password)
        prepared = await prepare_turn(endpoint, context, opener=opener)
        return PreparedPath((TUNNEL_ICE_SERVER,), prepared)

    def proof(self, plan: PathPlan) -> PairProof:
        return PairProof(relay_transport=plan.turn_transport)


async def prepare_turn(
    endpoint: TurnEndpoint,
    context: PathContext,
    *,
    record: bool = True,
    opener: StreamOpener | None = None,
) -> PreparedTurn:
    """Connect to the TURN server and allocate; ``record=False`` for the echo side's own
    allocation in relay-loopback mode, which is not a stage of the path under test."""
    timeouts = context.timeouts
    recorder = context.recorder

    counters = None
    if record and endpoint.transport != "udp" and context.watch_relay is not None:
        counters = StreamCounters()
        context.watch_relay(counters, endpoint.port)

    async def connect(evidence: dict[str, Any]) -> tuple[asyncio.BaseTransport, Any]:
        if endpoint.transport == "udp":
            return await open_udp(endpoint)
        return await connect_stream(
            endpoint,
            context.ssl_context,
            timeouts.connect,
            evidence,
            opener or context.stream_opener,
            counters,
        )

    if not record:
        async with asyncio.timeout(timeouts.connect + timeouts.turn_allocate):
            transport, protocol = await connect({})
            try:
                prepared = await allocate(endpoint, transport, protocol, {})
            except BaseException:
                transport.close()
                raise
        context.keep(prepared)
        return prepared

    if endpoint.transport == "udp":
        # Nothing to connect over UDP: the Allocate itself is the first packet.
        transport, protocol = await connect({})
    else:
        transport, protocol = await recorder.run(Stage.CONNECT, connect, timeouts.connect)

    async def do_allocate(evidence: dict[str, Any]) -> PreparedTurn:
        return await allocate(endpoint, transport, protocol, evidence)

    # Over UDP, an Allocate that is never answered is the classic sign of blocked UDP/STUN.
    silent = "stun_no_response" if endpoint.transport == "udp" else "generic_timeout_error"
    try:
        prepared = await recorder.run(
            Stage.TURN_ALLOCATE, do_allocate, timeouts.turn_allocate, timeout_failure=silent
        )
    except BaseException:
        transport.close()
        raise
    context.keep(prepared)
    return prepared
