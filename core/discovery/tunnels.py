"""VPNs in TUN mode: which tunnel interface carries the default route (or the route to a
messenger's addresses), which client made it, and whether a check can also go around it.

Amnezia, Outline, WireGuard and sing-box/Hiddify/v2rayN in TUN mode expose no local proxy: they
route the whole system through a ``tun``/``wg`` interface, so "direct" is measured through the
VPN. This module says so. Everything here reads local state only (sysfs, the routing table, a
route *lookup*): no packet is sent.

Linux reads ``/sys/class/net`` (link type, ``tun_flags``, ``DEVTYPE=wireguard``) and asks the
kernel which interface a destination would leave by (``ip -j route get``, a lookup). Other
platforms fall back to interface names (``utun*`` on macOS), and say what could not be read.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from callpath.core.discovery.clients import ClientData, load_client_data
from callpath.core.discovery.system_settings import Runner, run_quietly
from callpath.core.model.route import RouteSituation, TunnelInterface

ARPHRD_NONE = 65534  # tun devices and WireGuard have no link-layer header
ARPHRD_PPP = 512
ARPHRD_LOOPBACK = 772
CAP_NET_RAW = 13
# A documentation address (RFC 5737): its route is the default route, and nothing is sent to it.
DEFAULT_ROUTE_PROBE = "192.0.2.1"


@dataclass(frozen=True)
class Interface:
    name: str
    link_type: int | None
    is_tun: bool  # has tun_flags: a TUN/TAP device driven by a program
    devtype: str | None  # from uevent, e.g. "wireguard"
    up: bool

    @property
    def tunnel_kind(self) -> str | None:
        """wireguard | tun | ppp | tunnel (by name only) | None for ordinary interfaces."""
        if self.devtype == "wireguard":
            return "wireguard"
        if self.is_tun:
            return "tun"
        if self.link_type == ARPHRD_PPP:
            return "ppp"
        if self.link_type == ARPHRD_NONE:
            return "tunnel"
        if self.link_type is None and self.name.startswith(("utun", "tun", "wg", "ppp")):
            return "tunnel"
        return None


def read_interfaces(sysfs: Path = Path("/sys/class/net")) -> list[Interface]:
    """Every interface sysfs lists; an empty list where there is no sysfs (not Linux)."""
    try:
        names = sorted(p.name for p in sysfs.iterdir())
    except OSError:
        return []
    found = []
    for name in names:
        folder = sysfs / name
        link_type = _read_int(folder / "type")
        flags = _read_int(folder / "flags", base=16)
        uevent = _read_text(folder / "uevent") or ""
        devtype = next(
            (line.split("=", 1)[1] for line in uevent.splitlines() if line.startswith("DEVTYPE=")),
            None,
        )
        found.append(
            Interface(
                name=name,
                link_type=link_type,
                is_tun=(folder / "tun_flags").exists(),
                devtype=devtype,
                up=bool(flags and flags & 0x1),
            )
        )
    return found


def interfaces_by_name(names: Iterable[str]) -> list[Interface]:
    """Where sysfs is missing (macOS, Windows): interfaces known by name only."""
    return [Interface(name, None, False, None, True) for name in names]


RouteLookup = Callable[[str], str | None]


def route_lookup(runner: Runner = run_quietly) -> RouteLookup:
    """The interface the kernel would send ``address`` out of (``ip -j route get``)."""

    def lookup(address: str) -> str | None:
        output = runner(["ip", "-j", "route", "get", address])
        if output is None:
            return None
        try:
            routes = json.loads(output)
        except ValueError:
            return None
        if isinstance(routes, list) and routes and isinstance(routes[0], dict):
            device = routes[0].get("dev")
            return device if isinstance(device, str) else None
        return None

    return lookup


def analyse(
    interfaces: Sequence[Interface],
    lookup: RouteLookup,
    *,
    addresses: Sequence[str] = (),
    data: ClientData | None = None,
    privileged: bool = False,
    platform: str = sys.platform,
) -> RouteSituation:
    """Pure: interfaces, a route lookup and whether sockets may be bound to an interface
    (``privileged``) → what a run goes through."""
    data = load_client_data() if data is None else data
    default = lookup(DEFAULT_ROUTE_PROBE)
    routed = {address: lookup(address) for address in addresses}
    tunnels = []
    for interface in interfaces:
        kind = interface.tunnel_kind
        if kind is None:
            continue
        hint = data.client_of_interface(interface.name)
        tunnels.append(
            TunnelInterface(
                name=interface.name,
                kind=kind,
                client=None if hint is None else hint.client,
                default_route=default == interface.name,
                routes_to=tuple(a for a, device in routed.items() if device == interface.name),
            )
        )
    physical = _physical(interfaces, default)
    vpn = next((t for t in tunnels if t.default_route), None)
    refused = None
    if vpn is not None:
        if not platform.startswith("linux"):
            refused = "around_platform"
        elif physical is None:
            refused = "around_no_interface"
        elif not privileged:
            refused = "around_not_root"
    return RouteSituation(
        tunnels=tuple(tunnels),
        default_interface=default,
        physical_interface=physical,
        can_go_around=vpn is not None and refused is None,
        around_refused=refused,
    )


def detect(addresses: Sequence[str] = ()) -> RouteSituation:
    """This machine's situation, read now."""
    interfaces = read_interfaces()
    if not interfaces:
        interfaces = interfaces_by_name(name for _index, name in _if_nameindex())
    lookup = route_lookup()
    physical = _physical(interfaces, lookup(DEFAULT_ROUTE_PROBE))
    allowed = has_net_raw() or (physical is not None and may_bind_to(physical))
    return analyse(interfaces, lookup, addresses=addresses, privileged=allowed)


def may_bind_to(interface: str) -> bool:
    """Whether a fresh socket may be bound to ``interface`` (``SO_BINDTODEVICE``) here.

    Since Linux 5.7 anyone may bind a socket that is not bound yet; older kernels (and
    sandboxes that filter the call) refuse it without CAP_NET_RAW. Asking the kernel is the
    only way to know; the socket is closed at once and sends nothing."""
    option = getattr(socket, "SO_BINDTODEVICE", None)
    if option is None:
        return False
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, option, interface.encode() + b"\0")
    except OSError:
        return False
    return True


def has_net_raw() -> bool:
    """CAP_NET_RAW in the effective set (root has it): binding to a device is always allowed."""
    status = _read_text(Path("/proc/self/status"))
    if status is None:
        return hasattr(os, "geteuid") and os.geteuid() == 0
    for line in status.splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> CAP_NET_RAW & 1)
    return False


def _physical(interfaces: Sequence[Interface], default: str | None) -> str | None:
    """The interface to go around a VPN by: an up, ordinary (not loopback, not tunnel) one."""
    ordinary = [
        i
        for i in interfaces
        if i.up and i.tunnel_kind is None and i.link_type != ARPHRD_LOOPBACK and i.name != "lo"
    ]
    if default is not None and any(i.name == default for i in ordinary):
        return default
    return ordinary[0].name if len(ordinary) == 1 else None


def _if_nameindex() -> list[tuple[int, str]]:
    try:
        return socket.if_nameindex()
    except OSError:
        return []


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text("utf-8", errors="replace")
    except OSError:
        return None


def _read_int(path: Path, base: int = 10) -> int | None:
    text = _read_text(path)
    if text is None:
        return None
    try:
        return int(text.strip(), base)
    except ValueError:
        return None
