"""``callpath proxies`` and ``callpath run --discover-proxies``: the proxies and VPNs the user
already runs.

Only loopback is probed (with a real SOCKS5 or HTTP CONNECT handshake); proxies named elsewhere
(environment, system settings, clients' files) are listed but never contacted. Tunnel
interfaces are read from the routing table: nothing is sent.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from collections.abc import Sequence
from typing import IO, Any

from rich.console import Console
from rich.table import Table

from callpath.core.discovery.proxies import FoundProxy, default_ports, discover_local_proxies
from callpath.core.discovery.tunnels import RouteSituation, detect
from callpath.core.i18n import N_, _
from callpath.core.model.results import PathId
from callpath.core.profile.document import Profile, ProxyEntry


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    proxies = commands.add_parser(
        "proxies", help=_("find the proxies running on this computer and whether they carry UDP")
    )
    proxies.add_argument(
        "--port",
        type=int,
        action="append",
        help=_("a loopback port to probe (repeatable; default: the usual proxy ports)"),
    )
    proxies.add_argument(
        "--json", action="store_true", help=_("print what was found as JSON instead of tables")
    )


def ports_from(arguments: Sequence[int] | None) -> tuple[int, ...]:
    return tuple(arguments) if arguments else default_ports()


def run(args: argparse.Namespace) -> int:
    found = asyncio.run(discover_local_proxies(ports_from(args.port)))
    situation = detect()
    if args.json:
        json.dump(found_to_dict(found, situation), sys.stdout, indent=2)
        print()
        return 0
    print_found(found)
    print_tunnels(situation)
    return 0


def found_to_dict(found: Sequence[FoundProxy], situation: RouteSituation) -> dict[str, Any]:
    return {
        "proxies": [
            {
                "url": str(proxy.url),
                "kind": proxy.kind,
                "source": proxy.source,
                "where": proxy.where,
                "client": proxy.client,
                "answers": proxy.responded,
                "carries_udp": proxy.supports_udp,
                "needs_password": proxy.auth_required,
            }
            for proxy in found
        ],
        "routes": situation.to_dict(),
    }


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
}
TUNNEL_KINDS = {
    "wireguard": N_("WireGuard"),
    "tun": N_("TUN device"),
    "ppp": N_("PPP tunnel"),
    "tunnel": N_("tunnel"),
}


def vpn_sentence(situation: RouteSituation) -> str | None:
    """ "Measured through your VPN (wg0, WireGuard)", or None without a VPN."""
    vpn = situation.vpn
    if vpn is None:
        return None
    what = vpn.client or _(TUNNEL_KINDS.get(vpn.kind, vpn.kind))
    return _("Measured through your VPN ({interface}, {what}).").format(
        interface=vpn.name, what=what
    )


def print_tunnels(situation: RouteSituation, stream: IO[str] | None = None) -> None:
    console = Console(file=stream or sys.stdout, highlight=False)
    if not situation.tunnels:
        console.print(
            _("No VPN interface: connections leave by {interface}.").format(
                interface=situation.default_interface or _("an unknown interface")
            )
        )
        return
    table = Table(title=_("VPN interfaces"))
    table.add_column(_("Interface"))
    table.add_column(_("Kind"))
    table.add_column(_("Client"))
    table.add_column(_("Default route"))
    for tunnel in situation.tunnels:
        table.add_row(
            tunnel.name,
            _(TUNNEL_KINDS.get(tunnel.kind, tunnel.kind)),
            tunnel.client or _("unknown"),
            _("yes") if tunnel.default_route else _("no"),
        )
    console.print(table)
    sentence = vpn_sentence(situation)
    if sentence is not None:
        console.print(sentence)
        if situation.around_refused is not None:
            console.print(_(AROUND_REFUSED[situation.around_refused]))
        else:
            console.print(
                _("Checks can also go around it, by {interface}.").format(
                    interface=situation.physical_interface
                )
            )


def _udp_text(proxy: FoundProxy) -> str:
    if proxy.supports_udp is True:
        return _("yes")
    if proxy.supports_udp is False:
        return _("no (TURN through it may still work)")
    return _("unknown")


def print_found(found: Sequence[FoundProxy], stream: IO[str] | None = None) -> None:
    console = Console(file=stream or sys.stdout, highlight=False)
    if not found:
        console.print(_("No proxy found on this computer."))
        return
    table = Table(title=_("Proxies on this computer"))
    table.add_column(_("Proxy"), overflow="fold")
    table.add_column(_("Found by"), overflow="fold")
    table.add_column(_("Answers"))
    table.add_column(_("Carries UDP"))
    table.add_column(_("Needs a password"))
    for proxy in found:
        answers = {True: _("yes"), False: _("no"), None: _("not contacted")}[proxy.responded]
        table.add_row(
            str(proxy.url),
            found_by_text(proxy),
            answers,
            _udp_text(proxy),
            _("yes") if proxy.auth_required else _("no"),
        )
    console.print(table)


SOURCE_NAMES = {
    "port scan": N_("port scan"),
    "environment": N_("environment"),
    "GNOME settings": N_("GNOME settings"),
    "KDE settings": N_("KDE settings"),
    "Windows settings": N_("Windows settings"),
    "macOS settings": N_("macOS settings"),
    "config file": N_("config file"),
}


def found_by_text(proxy: FoundProxy) -> str:
    """Where a proxy was found, and whose it probably is: "port scan (default of Tor)"."""
    source = _(SOURCE_NAMES.get(proxy.source, proxy.source))
    if proxy.where:
        source = f"{source}: {proxy.where}"
    if proxy.client:
        source = _("{source} ({client})").format(source=source, client=proxy.client)
    return source


def with_discovered_proxies(profile: Profile, found: Sequence[FoundProxy]) -> Profile:
    """``profile`` plus the answering proxies that need no password, as candidate paths."""
    usable = [p for p in found if p.responded and not p.auth_required]
    known = {str(entry.url) for entry in profile.proxies}
    proxies = profile.proxies + tuple(
        ProxyEntry(url=p.url) for p in usable if str(p.url) not in known
    )
    paths = list(profile.paths)
    relay = profile.relay_behind_proxy()
    if any(p.kind == "socks5" and p.supports_udp for p in usable):
        paths.append(PathId.SOCKS5_UDP)
    if relay is not None and any(p.kind == "socks5" for p in usable):
        paths.append(PathId.SOCKS5_TURN)
    if relay is not None and any(p.kind == "http" for p in usable):
        paths.append(PathId.HTTP_TURN)
    unique = tuple(dict.fromkeys(paths))
    return dataclasses.replace(profile, proxies=proxies, paths=unique)
