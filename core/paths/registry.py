"""Every path CallPath can test: its label, what carries its media, and its kind — what it takes
from a profile, how it opens its transport and what its selected pair must prove (``base.py``).

The engine, the planner, the diagnosis, the console and the app ask this registry instead of
keeping their own lists of path ids. Adding a path means one module for its kind and one entry
here (docs/architecture.md, "How to add a path").
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from callpath.core.i18n import N_, _
from callpath.core.model.results import PathId
from callpath.core.paths.base import PathKind
from callpath.core.paths.direct import DirectPath
from callpath.core.paths.masque.path import MasquePath
from callpath.core.paths.socks5_udp import Socks5UdpPath
from callpath.core.paths.turn import ProxiedTurnPath, TurnPath


class Carrier(enum.StrEnum):
    """What the network sees of a path's media: datagrams or a TCP stream."""

    UDP = "udp"
    TCP = "tcp"


class ProxyKind(enum.StrEnum):
    SOCKS5 = "socks5"
    HTTP = "http"


@dataclass(frozen=True)
class PathSpec:
    id: PathId
    label: str  # marked for translation; path_label() translates it
    carrier: Carrier  # what a censor sees between the user and the first hop
    kind: PathKind  # plans, prepares and proves the path
    relay: bool  # media goes through a TURN allocation: the selected local candidate is `relay`
    proxy: ProxyKind | None = None  # the user's proxy the path goes through, if any
    tunnel: bool = False  # media inside a tunnel (SOCKS5 UDP, MASQUE): a host candidate through it
    needs: str = ""  # what a profile must hold for the path to be tried (docs and the editor)
    # The ICE server URI (scheme, transport) the path checks on its own, if it uses one.
    ice_uri: tuple[str, str] | None = None


_SPECS = (
    PathSpec(
        PathId.DIRECT,
        N_("direct UDP"),
        Carrier.UDP,
        DirectPath(),
        relay=False,
        needs="the echo target (and optionally a stun: server)",
        ice_uri=("stun", "udp"),
    ),
    PathSpec(
        PathId.TURN_UDP,
        N_("TURN over UDP"),
        Carrier.UDP,
        TurnPath("udp"),
        relay=True,
        needs="a turn: URI",
        ice_uri=("turn", "udp"),
    ),
    PathSpec(
        PathId.TURN_TCP,
        N_("TURN over TCP"),
        Carrier.TCP,
        TurnPath("tcp"),
        relay=True,
        needs="a turn: URI with ?transport=tcp",
        ice_uri=("turn", "tcp"),
    ),
    PathSpec(
        PathId.TURN_TLS,
        N_("TURN over TLS"),
        Carrier.TCP,
        TurnPath("tls"),
        relay=True,
        needs="a turns: URI",
        ice_uri=("turns", "tcp"),
    ),
    PathSpec(
        PathId.SOCKS5_UDP,
        N_("SOCKS5 proxy (UDP)"),
        Carrier.UDP,
        Socks5UdpPath(),
        relay=False,
        proxy=ProxyKind.SOCKS5,
        tunnel=True,
        needs="a socks5 proxy",
    ),
    PathSpec(
        PathId.SOCKS5_TURN,
        N_("TURN through a SOCKS5 proxy"),
        Carrier.TCP,
        ProxiedTurnPath(),
        relay=True,
        proxy=ProxyKind.SOCKS5,
        needs="a socks5 proxy and a TURN URI over TCP or TLS",
    ),
    PathSpec(
        PathId.HTTP_TURN,
        N_("TURN through an HTTP proxy"),
        Carrier.TCP,
        ProxiedTurnPath(),
        relay=True,
        proxy=ProxyKind.HTTP,
        needs="an http proxy and a TURN URI over TCP or TLS",
    ),
    PathSpec(
        PathId.MASQUE,
        N_("MASQUE (HTTP/3)"),
        Carrier.UDP,
        MasquePath(),
        relay=False,
        tunnel=True,
        needs="a masque: section",
    ),
)

PATHS: Mapping[PathId, PathSpec] = MappingProxyType({spec.id: spec for spec in _SPECS})


def path_spec(path_id: str) -> PathSpec | None:
    try:
        return PATHS[PathId(path_id)]
    except ValueError:
        return None


def path_kind(path_id: str) -> PathKind:
    """How a path is planned, prepared and proven; raises KeyError for an unknown id."""
    try:
        return PATHS[PathId(path_id)].kind
    except ValueError:
        raise KeyError(path_id) from None


def path_label(path_id: str) -> str:
    """Human name of a path in the current language; unknown ids are returned as they are."""
    spec = path_spec(path_id)
    return _(spec.label) if spec is not None else path_id


def path_ids() -> tuple[PathId, ...]:
    """Every path, in the order runs, tables and lists show them."""
    return tuple(PATHS)


def paths_where(
    *,
    carrier: Carrier | None = None,
    proxied: bool | None = None,
    proxy: ProxyKind | None = None,
) -> frozenset[PathId]:
    return frozenset(_matching(carrier=carrier, proxied=proxied, proxy=proxy))


def _matching(
    *, carrier: Carrier | None, proxied: bool | None, proxy: ProxyKind | None
) -> Iterator[PathId]:
    for spec in _SPECS:
        if carrier is not None and spec.carrier != carrier:
            continue
        if proxied is not None and (spec.proxy is not None) != proxied:
            continue
        if proxy is not None and spec.proxy != proxy:
            continue
        yield spec.id
