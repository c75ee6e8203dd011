"""What a measurement went through, in plain words: "Measured through your VPN (wg0, WireGuard)"
and why the other side (around the VPN) was not measured. Used by ``callpath proxies``,
``callpath check`` and the app's check page."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from callpath.core.i18n import N_, _
from callpath.core.model.route import RouteSituation

AROUND_REFUSED = {
    "around_not_root": N_(
        "Only the VPN side can be measured: going around the VPN needs root (CAP_NET_RAW)."
    ),
    "around_no_interface": N_(
        "Only the VPN side can be measured: no network interface outside the VPN was found."
    ),
    "around_platform": N_(
        "Only the VPN side can be measured: going around a VPN is supported on Linux only."
    ),
    "around_bind_failed": N_(
        "Only the VPN side was measured: this system refused to bind sockets to the network "
        "interface outside the VPN."
    ),
}
TUNNEL_KINDS = {
    "wireguard": N_("WireGuard"),
    "tun": N_("TUN device"),
    "ppp": N_("PPP tunnel"),
    "tunnel": N_("tunnel"),
}


def tunnel_kind_text(kind: str) -> str:
    text = TUNNEL_KINDS.get(kind)
    return _(text) if text is not None else kind


def vpn_sentence(situation: RouteSituation | None) -> str | None:
    """ "Measured through your VPN (wg0, WireGuard).", or None without a VPN."""
    lines = route_lines(None if situation is None else situation.to_dict())
    return lines[0] if lines else None


def around_refused_text(situation: RouteSituation | None) -> str | None:
    """Why going around the VPN is not possible here, or None (no VPN, or it is possible)."""
    lines = route_lines(None if situation is None else situation.to_dict())
    return lines[1] if len(lines) > 1 else None


def around_line(interface: str) -> str:
    """The check also went around the VPN (its ``around_vpn`` section)."""
    return _(
        "Also measured around your VPN, via {interface}: what your apps get with the VPN off."
    ).format(interface=interface)


def route_lines(route: Mapping[str, Any] | None) -> list[str]:
    """The same from a report's ``route`` section (``RouteSituation.to_dict``)."""
    if not route or not route.get("through_vpn"):
        return []
    kind = str(route.get("vpn_kind") or "tunnel")
    what = route.get("vpn_client") or tunnel_kind_text(kind)
    lines = [
        _("Measured through your VPN ({interface}, {what}).").format(
            interface=route.get("vpn_interface"), what=what
        )
    ]
    refused = route.get("around_refused")
    if isinstance(refused, str) and refused in AROUND_REFUSED:
        lines.append(_(AROUND_REFUSED[refused]))
    return lines
