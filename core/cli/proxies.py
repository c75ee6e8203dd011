"""``callpath proxies`` and ``callpath run --discover-proxies``: the proxies the user already runs.

Only loopback is probed (with a real SOCKS5 or HTTP CONNECT handshake); proxies named in
ALL_PROXY/HTTPS_PROXY elsewhere are listed but never contacted.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from collections.abc import Sequence
from typing import IO

from rich.console import Console
from rich.table import Table

from callpath.core.discovery.proxies import DEFAULT_PORTS, FoundProxy, discover_local_proxies
from callpath.core.i18n import _
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


def ports_from(arguments: Sequence[int] | None) -> tuple[int, ...]:
    return tuple(arguments) if arguments else DEFAULT_PORTS


def run(args: argparse.Namespace) -> int:
    found = asyncio.run(discover_local_proxies(ports_from(args.port)))
    print_found(found)
    return 0


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
    table.add_column(_("Proxy"))
    table.add_column(_("Found by"))
    table.add_column(_("Answers"))
    table.add_column(_("Carries UDP"))
    table.add_column(_("Needs a password"))
    for proxy in found:
        answers = {True: _("yes"), False: _("no"), None: _("not contacted")}[proxy.responded]
        table.add_row(
            str(proxy.url),
            proxy.source,
            answers,
            _udp_text(proxy),
            _("yes") if proxy.auth_required else _("no"),
        )
    console.print(table)


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
