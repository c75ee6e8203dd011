"""The ``masque`` path: the call's UDP inside a MASQUE proxy (CONNECT-UDP over HTTP/3,
``paths/masque/client.py``). The tunnel is handed to aiortc as its relay candidate, so the
selected pair must be that candidate running over the MASQUE tunnel."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from callpath.core.call.library_adapter import PreparedTunnel
from callpath.core.model.results import PathId, Stage
from callpath.core.paths.base import (
    TUNNEL_ICE_SERVER,
    MasquePlan,
    PairProof,
    PathContext,
    PathPlan,
    PreparedPath,
)
from callpath.core.paths.masque.client import MasqueUdpTunnel, open_masque_udp
from callpath.core.profile.document import Profile


@dataclass(frozen=True)
class MasquePath:
    def plan(self, profile: Profile, path_id: PathId) -> PathPlan:
        """The profile's ``masque:`` section; the first CONNECT-UDP goes to the echo host."""
        masque = profile.masque
        assert masque is not None  # the profile parser checked it
        first_target = None
        if profile.target.url is not None:
            parts = urlsplit(profile.target.url)
            if parts.hostname is not None:
                first_target = (parts.hostname, parts.port or 443)
        return PathPlan(
            path_id=path_id,
            server_uri=masque.url,
            host=masque.host,
            port=masque.port,
            masque=MasquePlan(
                server_name=masque.server_name,
                token=masque.token.resolve() if masque.token is not None else None,
                cafile=str(profile.ca_bundle) if profile.ca_bundle is not None else None,
                first_target=first_target,
            ),
        )

    async def prepare(
        self, plan: PathPlan, address: str | None, context: PathContext
    ) -> PreparedPath:
        """QUIC + HTTP/3 to the MASQUE proxy and a first CONNECT-UDP request (connect stage)."""
        masque = plan.masque
        assert masque is not None and address is not None and plan.port is not None
        first_target = masque.first_target or (address, 9)
        timeout = context.timeouts.connect

        async def connect(evidence: dict[str, Any]) -> PreparedTunnel:
            tunnel = await open_masque_udp(
                address,
                plan.port or 443,
                first_target,
                server_name=masque.server_name or plan.host,
                authority=masque.authority,
                token=masque.token,
                cafile=masque.cafile,
                cadata=masque.cadata,
                handshake_timeout=timeout,
                request_timeout=timeout,
                evidence=evidence,
            )
            return PreparedTunnel(tunnel=tunnel, transport_name=tunnel.tunnel_name)

        prepared = await context.recorder.run(Stage.CONNECT, connect, timeout + 1.0)
        context.keep(prepared)
        return PreparedPath((TUNNEL_ICE_SERVER,), prepared)

    def proof(self, plan: PathPlan) -> PairProof:
        return PairProof(relay_transport=MasqueUdpTunnel.tunnel_name)
