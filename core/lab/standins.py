"""Stand-ins for every messenger endpoint of the catalogue and the check's reference endpoints.

The messenger check (``callpath.core.checkup``) must run against the lab, offline, and no test may
ever send a packet to a real messenger. So each messenger gets one lab address
(``127.77.<n>.1``); its host names answer with it through the lab's DNS, and its address
literals are mapped onto it. Every (port, transport) the catalogue lists there gets a stand-in
server on a free port of that address — UDP that answers STUN, a TCP listener, a TLS listener with
a certificate for the messenger's names — exposed through the censor's middlebox. Domestic
reference endpoints live on ``127.78.0.<n>``, public STUN servers on ``127.78.1.<n>``.

Scenario rules name them as services: ``messenger-<id>`` (every port of that messenger's
address), ``domestic`` and ``public-stun``.

The same stand-ins also serve on other addresses (``prefixes``) without a middlebox, e.g. inside
a network namespace behind a VPN stand-in; ``table()`` then says where each one listens, for a
check run in another process (``StandinTable``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from callpath.core.call.resolver import is_address
from callpath.core.lab.certificates import write_lab_certificates
from callpath.core.lab.middlebox import Middlebox
from callpath.core.messengers.catalog import Endpoint, MessengerEntry
from callpath.core.messengers.references import References
from callpath.core.servers.control_server import stun_binding_response

STANDIN_NETWORKS = (ipaddress.ip_network("127.77.0.0/16"), ipaddress.ip_network("127.78.0.0/16"))
# Nothing listens here: an address the lab does not know goes nowhere (never to the internet).
NOWHERE = "127.77.0.254"
DOMESTIC_SERVICE = "domestic"
PUBLIC_STUN_SERVICE = "public-stun"
Address = tuple[str, int]


def messenger_service(messenger_id: str) -> str:
    return f"messenger-{messenger_id}"


def is_standin(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in network for network in STANDIN_NETWORKS)


@dataclass(frozen=True)
class StandinHost:
    service: str  # the scenario's service name
    address: str  # the lab address
    endpoints: tuple[Endpoint, ...]


class _StunAnswerer(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        source = (str(addr[0]), int(addr[1]))
        answer = stun_binding_response(data, source)
        if answer is not None and self.transport is not None:
            self.transport.sendto(answer, source)


async def _hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A TCP (or TLS) stand-in: echoes what it reads until the client closes the connection.

    Echoing lets the check see a connection the userspace censor blackholes or resets after
    the kernel completed the handshake with the middlebox (``BlockTcpConnect``)."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(30):
            while data := await reader.read(4096):
                writer.write(data)
                await writer.drain()
    writer.close()


LOOPBACK_PREFIXES = ("127.77", "127.78")  # messengers, references


def plan_hosts(
    catalog: Sequence[MessengerEntry],
    references: References,
    country: str,
    prefixes: tuple[str, str] = LOOPBACK_PREFIXES,
) -> tuple[StandinHost, ...]:
    messengers, others = prefixes
    hosts = [
        StandinHost(
            messenger_service(entry.id),
            f"{messengers}.{index + 1}.1",
            (*entry.signalling, *entry.relays),
        )
        for index, entry in enumerate(catalog)
    ]
    for index, endpoint in enumerate(references.domestic_for(country)):
        hosts.append(StandinHost(DOMESTIC_SERVICE, f"{others}.0.{index + 1}", (endpoint,)))
    for index, endpoint in enumerate(references.public_stun):
        hosts.append(StandinHost(PUBLIC_STUN_SERVICE, f"{others}.1.{index + 1}", (endpoint,)))
    return tuple(hosts)


@dataclass(frozen=True)
class StandinTable:
    """Where stand-ins served by another process listen (``Standins.table``), JSON-able."""

    names: dict[str, list[str]]  # DNS name -> stand-in address
    literals: dict[str, str]  # catalogue address literal -> stand-in address
    served: dict[str, Address]  # "address port proto" -> where it listens
    ca_pem: str  # the CA of the TLS stand-ins

    def direct(self, address: str, port: int, proto: str) -> Address:
        """Where a check of a catalogue endpoint goes (nowhere for one the table lacks)."""
        key = f"{self.literals.get(address, address)} {port} {proto}"
        return self.served.get(key, (NOWHERE, port))

    def to_dict(self) -> dict[str, Any]:
        return {
            "names": self.names,
            "literals": self.literals,
            "served": {key: list(at) for key, at in self.served.items()},
            "ca_pem": self.ca_pem,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StandinTable:
        return cls(
            names={str(k): [str(a) for a in v] for k, v in data["names"].items()},
            literals={str(k): str(v) for k, v in data["literals"].items()},
            served={str(k): (str(v[0]), int(v[1])) for k, v in data["served"].items()},
            ca_pem=str(data["ca_pem"]),
        )


class Standins:
    """Starts the stand-ins and maps catalogue addresses onto them (direct and through a tunnel)."""

    def __init__(
        self,
        catalog: Sequence[MessengerEntry],
        references: References,
        country: str = "ru",
        prefixes: tuple[str, str] = LOOPBACK_PREFIXES,
    ) -> None:
        self.hosts = plan_hosts(catalog, references, country, prefixes)
        self.names: dict[str, list[str]] = {}  # DNS name -> lab address
        self._literals: dict[str, str] = {}  # catalogue address literal -> lab address
        self._real: dict[tuple[str, int, str], Address] = {}  # (lab, port, proto) -> server
        self._exposed: dict[tuple[str, int, str], Address] = {}  # … -> middlebox forwarder
        self._servers: list[asyncio.Server] = []
        self._datagrams: list[asyncio.DatagramTransport] = []
        self.client_context: ssl.SSLContext | None = None
        self.ca_pem = ""
        for host in self.hosts:
            for endpoint in host.endpoints:
                if is_address(endpoint.host):
                    self._literals[endpoint.host] = host.address
                else:
                    self.names[endpoint.host] = [host.address]

    @property
    def services(self) -> dict[str, tuple[str, ...]]:
        """Service name -> lab addresses (every port)."""
        services: dict[str, list[str]] = {}
        for host in self.hosts:
            services.setdefault(host.service, []).append(host.address)
        return {name: tuple(addresses) for name, addresses in services.items()}

    async def start(self, middlebox: Middlebox | None, certificate_directory: Path) -> None:
        """Serve every stand-in; exposed through ``middlebox`` (the censor), or as they are
        when there is none."""
        names = sorted(self.names)
        files = write_lab_certificates(certificate_directory, names, (), "CallPath stand-in CA")
        self.ca_pem = files.ca_pem.decode()
        server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_context.load_cert_chain(files.certificate, files.key)
        self.client_context = ssl.create_default_context(cadata=files.ca_pem.decode())
        loop = asyncio.get_running_loop()
        for host in self.hosts:
            for endpoint in host.endpoints:
                transport = "udp" if endpoint.proto == "stun" else "tcp"
                key = (host.address, endpoint.port, endpoint.proto)
                if key in self._real:
                    continue
                if transport == "udp":
                    datagram, _ = await loop.create_datagram_endpoint(
                        _StunAnswerer, local_addr=(host.address, 0)
                    )
                    self._datagrams.append(datagram)
                    port = int(datagram.get_extra_info("sockname")[1])
                    self._real[key] = (host.address, port)
                    self._exposed[key] = (
                        (host.address, port)
                        if middlebox is None
                        else await middlebox.expose_udp((host.address, port))
                    )
                else:
                    context = server_context if endpoint.proto == "tls" else None
                    server = await asyncio.start_server(_hold, host.address, 0, ssl=context)
                    self._servers.append(server)
                    port = int(server.sockets[0].getsockname()[1])
                    self._real[key] = (host.address, port)
                    self._exposed[key] = (
                        (host.address, port)
                        if middlebox is None
                        else await middlebox.expose_tcp((host.address, port))
                    )

    def table(self) -> StandinTable:
        """Where each stand-in listens (as exposed), for a check in another process."""
        return StandinTable(
            names={name: list(addresses) for name, addresses in self.names.items()},
            literals=dict(self._literals),
            served={f"{a} {port} {proto}": at for (a, port, proto), at in self._exposed.items()},
            ca_pem=self.ca_pem,
        )

    def _key(self, address: str, port: int, proto: str) -> tuple[str, int, str]:
        return (self._literals.get(address, address), port, proto)

    def direct(self, address: str, port: int, proto: str) -> Address:
        """The middlebox forwarder for a catalogue endpoint (crosses the censor). ``proto``
        (tcp|tls|stun) tells apart a TLS and a plain TCP stand-in on one catalogue port."""
        return self._exposed.get(self._key(address, port, proto), (NOWHERE, port))

    def via_tunnel(self, address: str, port: int, proto: str) -> Address:
        """The stand-in itself, for a tunnel that leaves outside the censor."""
        return self._real.get(self._key(address, port, proto), (NOWHERE, port))

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for datagram in self._datagrams:
            datagram.close()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2.0)
        self._servers.clear()
        self._datagrams.clear()


class LabHttpProxy:
    """The user's HTTP CONNECT proxy (TCP only), leaving outside the censor like the SOCKS one."""

    def __init__(self, listen_host: str, exit_host: str) -> None:
        self._listen = listen_host
        self._exit = exit_host
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, self._listen, 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(5):
                head = await reader.readuntil(b"\r\n\r\n")
            parts = head.split(b"\r\n", 1)[0].split()
            if len(parts) < 2 or parts[0] != b"CONNECT":
                writer.write(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
                return
            host, _, port_text = parts[1].decode("ascii").rpartition(":")
            host = host.strip("[]")
            if not is_standin(host):
                writer.write(b"HTTP/1.1 403 Forbidden\r\n\r\n")
                return
            try:
                async with asyncio.timeout(5):
                    up_reader, upstream = await asyncio.open_connection(
                        host, int(port_text), local_addr=(self._exit, 0)
                    )
            except (OSError, TimeoutError, ValueError):
                writer.write(b"HTTP/1.1 502 Bad Gateway\r\n\r\n")
                return
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
            await asyncio.gather(_pipe(reader, upstream), _pipe(up_reader, writer))
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            if upstream is not None:
                upstream.close()
            writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(OSError):
        writer.close()
