"""The ``direct`` path: plain UDP between the user and the echo peer, the way a call goes when
nothing is in the way. A STUN server from the profile (if any) adds a server-reflexive
candidate; the selected pair must not touch a relay."""

from __future__ import annotations

from dataclasses import dataclass

from aiortc import RTCIceServer

from callpath.core.model.results import PathId
from callpath.core.paths.base import (
    PairProof,
    PathContext,
    PathPlan,
    PreparedPath,
    server_plan,
    uri_host,
)
from callpath.core.profile.document import Profile


@dataclass(frozen=True)
class DirectPath:
    def plan(self, profile: Profile, path_id: PathId) -> PathPlan:
        # Without a stun: server, host candidates only.
        return server_plan(path_id, profile.server_for(path_id))

    async def prepare(
        self, plan: PathPlan, address: str | None, context: PathContext
    ) -> PreparedPath:
        if address is None or plan.port is None:
            return PreparedPath()
        return PreparedPath((RTCIceServer(urls=f"stun:{uri_host(address)}:{plan.port}"),))

    def proof(self, plan: PathPlan) -> PairProof:
        return PairProof(relay_transport=None)
