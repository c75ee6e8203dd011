"""The ``socks5-udp`` path: the call's UDP inside the user's SOCKS5 proxy (UDP ASSOCIATE,
``paths/socks5.py``). The association is handed to aiortc as its relay candidate, so the
selected pair must be that candidate running over the SOCKS5 tunnel."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from callpath.core.call.library_adapter import PreparedTunnel
from callpath.core.model.results import PathId, Stage
from callpath.core.paths.base import (
    TUNNEL_ICE_SERVER,
    PairProof,
    PathContext,
    PathPlan,
    PreparedPath,
    proxy_plan,
)
from callpath.core.paths.socks5 import Socks5UdpTunnel, open_socks5_udp
from callpath.core.profile.document import Profile


@dataclass(frozen=True)
class Socks5UdpPath:
    def plan(self, profile: Profile, path_id: PathId) -> PathPlan:
        return PathPlan(path_id, proxy=proxy_plan(profile, path_id))

    async def prepare(
        self, plan: PathPlan, address: str | None, context: PathContext
    ) -> PreparedPath:
        """SOCKS5 UDP ASSOCIATE (and, with a STUN server, the address peers will see)."""
        proxy = plan.proxy
        assert proxy is not None
        timeout = context.timeouts.connect

        async def connect(evidence: dict[str, Any]) -> PreparedTunnel:
            tunnel = await open_socks5_udp(
                proxy.url, proxy.password, timeout, stun_server=proxy.stun, evidence=evidence
            )
            return PreparedTunnel(tunnel=tunnel, transport_name=tunnel.tunnel_name)

        prepared = await context.recorder.run(Stage.CONNECT, connect, timeout + 1.0)
        context.keep(prepared)
        return PreparedPath((TUNNEL_ICE_SERVER,), prepared)

    def proof(self, plan: PathPlan) -> PairProof:
        return PairProof(relay_transport=Socks5UdpTunnel.tunnel_name)
