"""What every path kind provides and receives: its plan, the context the engine lends it while
it prepares its transport, and what it hands back.

A path kind (``PathKind``) knows three things, so nothing else branches on path ids:
- ``plan``: what it takes from a profile (servers, proxies, secrets resolved),
- ``prepare``: how it opens its transport before ICE starts (TURN allocation, SOCKS5 UDP
  association, MASQUE tunnel, or nothing), each step a timed stage of the path,
- ``proof``: what the selected candidate pair must show for the call to count.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from aiortc import RTCIceServer

from callpath.core.call.library_adapter import PreparedRelay
from callpath.core.call.stages import StageRecorder
from callpath.core.call.targets import EchoSession
from callpath.core.model.config import Timeouts
from callpath.core.model.proxy_url import ProxyUrl
from callpath.core.model.results import PathId, SelectedPair
from callpath.core.paths.relay import StreamCounters, StreamOpener
from callpath.core.profile.document import IceServer, IceUri, Profile


@dataclass(frozen=True)
class MasquePlan:
    """How to reach a MASQUE (CONNECT-UDP over HTTP/3) proxy for the ``masque`` path."""

    server_name: str | None = None  # SNI and certificate name; default the proxy's host
    authority: str | None = None
    token: str | None = None
    cafile: str | None = None
    cadata: bytes | None = None
    # Where the first CONNECT-UDP request goes: the echo peer's host (any port the proxy
    # allows); the ports ICE really uses open on demand.
    first_target: tuple[str, int] | None = None


@dataclass(frozen=True)
class ProxyPlan:
    """The proxy a proxy path goes through, with its resolved password."""

    url: ProxyUrl
    password: str | None = None
    # socks5-udp: a STUN server reached through the tunnel, to learn the address peers see.
    stun: tuple[str, int] | None = None


@dataclass(frozen=True)
class PathPlan:
    """What one path needs: the server under test (if any) and its credentials."""

    path_id: str
    server_uri: str | None = None  # as shown to users (redacted in reports)
    host: str | None = None
    port: int | None = None
    username: str = ""
    password: str = ""
    masque: MasquePlan | None = None
    proxy: ProxyPlan | None = None
    # For TURN through a proxy (socks5-turn, http-turn): tcp or tls.
    turn_transport: str | None = None
    # Other server names for a TLS relay's ClientHello, tried when its own name is blocked.
    sni_alternatives: tuple[str, ...] = ()
    sni: str | None = None  # the name this attempt uses (set by the engine); None: ``host``


@dataclass(frozen=True)
class PathContext:
    """What the engine lends a path while it prepares its transport."""

    recorder: StageRecorder  # runs and times the path's stages
    timeouts: Timeouts
    ssl_context: ssl.SSLContext | None  # for TURN over TLS (private CA bundles)
    stream_opener: StreamOpener  # how TCP connections to servers are made
    keep: Callable[[PreparedRelay], None]  # hands a relay or tunnel to the call's teardown
    relay_loopback: bool = False  # the echo side answers through the same relay, locally
    # Hands the TCP/TLS relay connection's byte counters (and the relay's port) to the call,
    # which adds them to the connect stage's evidence when the call ends.
    watch_relay: Callable[[StreamCounters, int], None] | None = None


@dataclass(frozen=True)
class PreparedPath:
    """A path's transport, ready for ICE: the ICE servers to give aiortc, the relay or tunnel
    aiortc's relay candidate runs over, and (relay loopback) the echo session it built."""

    ice_servers: tuple[RTCIceServer, ...] = ()
    relay: PreparedRelay | None = None
    session: EchoSession | None = None


@dataclass(frozen=True)
class PairProof:
    """What the selected candidate pair must show: ``relay_transport`` None means a call that
    must not touch any relay; otherwise the local candidate is a relay running over it."""

    relay_transport: str | None = None

    def problem(self, pair: SelectedPair | None) -> str | None:
        """Why the pair does not prove the path, or None when it does."""
        if pair is None:
            return "no nominated candidate pair"
        if self.relay_transport is None:
            if pair.local_type == "relay" or pair.remote_type == "relay":
                return "call went through a relay"
            return None
        if pair.local_type != "relay":
            return f"local candidate is {pair.local_type}, not relay"
        if pair.relay_transport != self.relay_transport:
            return f"relay runs over {pair.relay_transport}, not {self.relay_transport}"
        return None


# The dummy relay URL that makes aiortc ask for a relay candidate, which CallPath's prepared
# tunnel then provides; nothing is ever sent to it (the adapter refuses a second allocation).
TUNNEL_ICE_SERVER = RTCIceServer(
    urls="turn:127.0.0.1:9?transport=udp", username="tunnel", credential="tunnel"
)


class PathKind(Protocol):
    """How one path is planned, prepared and proven (see the module's docstring)."""

    def plan(self, profile: Profile, path_id: PathId) -> PathPlan:
        """The path's plan from a profile that runs it; secrets are resolved here."""
        ...

    async def prepare(
        self, plan: PathPlan, address: str | None, context: PathContext
    ) -> PreparedPath:
        """Open the transport (``address``: the plan's host, resolved unless a proxy does it)."""
        ...

    def proof(self, plan: PathPlan) -> PairProof:
        """What the selected pair must show for this plan's call to count."""
        ...


def uri_host(address: str) -> str:
    """An address as it goes into a URI: IPv6 in brackets."""
    return f"[{address}]" if ":" in address else address


def proxy_plan(profile: Profile, path_id: str) -> ProxyPlan:
    """The proxy a proxy path goes through, its password resolved."""
    proxy = profile.proxy_for(path_id)
    assert proxy is not None  # the profile parser checked it
    password = proxy.password.resolve() if proxy.password is not None else None
    stun = (proxy.stun.host, proxy.stun.port) if proxy.stun is not None else None
    return ProxyPlan(url=proxy.url, password=password, stun=stun)


def server_plan(path_id: str, found: tuple[IceServer, IceUri] | None) -> PathPlan:
    """A plan for the profile's ICE server (None: a plan without one), credential resolved."""
    if found is None:
        return PathPlan(path_id)
    server, uri = found
    return PathPlan(
        path_id=path_id,
        server_uri=str(uri),
        host=uri.host,
        port=uri.port,
        username=server.username or "",
        password=server.credential.resolve() if server.credential is not None else "",
        sni_alternatives=server.sni_alternatives if uri.scheme == "turns" else (),
    )
