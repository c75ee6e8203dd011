"""Name resolution for the resolve stage: the system resolver, or a given DNS server (lab)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Protocol


class Resolver(Protocol):
    async def resolve(self, host: str) -> list[str]:
        """Addresses for ``host`` (IPv4 first); raise OSError/socket.gaierror on failure."""
        ...


def is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class SystemResolver:
    """The operating system's resolver (what the user's apps see)."""

    async def resolve(self, host: str) -> list[str]:
        if is_address(host):
            return [host]
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, None, proto=socket.IPPROTO_UDP)
        addresses: list[str] = []
        for family, _, _, _, sockaddr in sorted(infos, key=lambda info: info[0] != socket.AF_INET):
            address = str(sockaddr[0])
            if address not in addresses and family in (socket.AF_INET, socket.AF_INET6):
                addresses.append(address)
        if not addresses:
            raise socket.gaierror(getattr(socket, "EAI_NODATA", -5), "no address")
        return addresses
