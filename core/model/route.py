"""What a measurement went through: the tunnel interfaces of VPNs in TUN mode, which of them
carries the default route, and whether a check can also go around it. Found by
``callpath.core.discovery.tunnels``; carried by run and check reports."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TunnelInterface:
    name: str
    kind: str  # wireguard | tun | ppp | tunnel
    client: str | None  # the client the interface name points at, if any
    default_route: bool  # the default route leaves through it
    routes_to: tuple[str, ...] = ()  # of the addresses asked about, those routed through it


@dataclass(frozen=True)
class RouteSituation:
    """What a measurement from this machine goes through."""

    tunnels: tuple[TunnelInterface, ...]
    default_interface: str | None  # where the default route leaves (None: not known)
    physical_interface: str | None  # the interface to go around the VPN by, if one is found
    can_go_around: bool  # both sides can be measured (through the VPN and around it)
    around_refused: str | None  # why only one side can be measured (when there is a VPN)

    @property
    def vpn(self) -> TunnelInterface | None:
        """The tunnel that carries the default route: measurements go through it."""
        return next((t for t in self.tunnels if t.default_route), None)

    def to_dict(self) -> dict[str, object]:
        vpn = self.vpn
        return {
            "through_vpn": vpn is not None,
            "vpn_interface": None if vpn is None else vpn.name,
            "vpn_kind": None if vpn is None else vpn.kind,
            "vpn_client": None if vpn is None else vpn.client,
            "default_interface": self.default_interface,
            "physical_interface": self.physical_interface,
            "can_go_around": self.can_go_around,
            "around_refused": self.around_refused,
            "tunnels": [
                {
                    "name": t.name,
                    "kind": t.kind,
                    "client": t.client,
                    "default_route": t.default_route,
                    "routes_to": list(t.routes_to),
                }
                for t in self.tunnels
            ],
        }


def route_from_dict(data: Mapping[str, Any]) -> RouteSituation:
    """A report's ``route`` section read back."""
    return RouteSituation(
        tunnels=tuple(
            TunnelInterface(
                name=str(t["name"]),
                kind=str(t["kind"]),
                client=t.get("client"),
                default_route=bool(t.get("default_route")),
                routes_to=tuple(str(a) for a in t.get("routes_to") or ()),
            )
            for t in data.get("tunnels") or ()
        ),
        default_interface=data.get("default_interface"),
        physical_interface=data.get("physical_interface"),
        can_go_around=bool(data.get("can_go_around")),
        around_refused=data.get("around_refused"),
    )
