"""Both halves of the messenger check behind a VPN, run inside the namespaces of
tests/test_check_around_vpn.py (``python -m tests.netns_check serve|check …``).

``serve`` (the "far" namespace): the lab's messenger and reference stand-ins on addresses of
that namespace (no middlebox: the censor is an nftables rule there), a DNS server answering
their names and a DNS-over-HTTPS server in front of it; it writes where everything listens to
a JSON file and serves until killed.

``check`` (the "client" namespace, behind the sing-box TUN): the real check engine on a world
whose endpoints are those stand-ins and whose route is what ``tunnels.detect`` reads in this
namespace, so both sides run exactly as ``callpath check`` would; it writes the check report
and prints the CLI's table and route lines.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import ssl
import sys
import tempfile
from pathlib import Path

import dns.asyncquery
import dns.exception
import dns.message
from aiohttp import web

from callpath.core.call.resolver import Resolver
from callpath.core.checkup.document import check_to_dict
from callpath.core.checkup.engine import CheckConfig, run_check
from callpath.core.cli.check import print_result, route_texts
from callpath.core.discovery.proxies import FoundProxy
from callpath.core.discovery.tunnels import detect
from callpath.core.i18n import set_language
from callpath.core.lab.certificates import write_lab_certificates
from callpath.core.lab.dns_server import DnsResponder
from callpath.core.lab.standins import Standins, StandinTable
from callpath.core.messengers.catalog import load_catalog
from callpath.core.messengers.recipes import load_recipes
from callpath.core.messengers.references import load_references
from callpath.core.model.route import RouteSituation
from callpath.core.probes.binding import BoundResolver

PREFIXES = ("10.232", "10.233")  # messengers, references: local routes of the far namespace
STANDIN_NETWORKS = tuple(ipaddress.ip_network(f"{p}.0.0/16") for p in PREFIXES)
DNS_ADDRESS = "10.233.2.53"
DOH_ADDRESS = "10.233.2.54"
DOH_PORT = 8443
DOH_PATH = "/dns-query"


# --- the far side ------------------------------------------------------------------------------


async def _doh(dns_server: tuple[str, int], request: web.Request) -> web.Response:
    try:
        query = dns.message.from_wire(await request.read())
        response = await dns.asyncquery.udp(query, dns_server[0], timeout=2.0, port=dns_server[1])
    except (dns.exception.DNSException, OSError):
        return web.Response(status=502)
    return web.Response(body=response.to_wire(), content_type="application/dns-message")


async def serve(out: Path) -> None:
    standins = Standins(load_catalog(), load_references(), prefixes=PREFIXES)
    with tempfile.TemporaryDirectory() as folder:
        await standins.start(None, Path(folder) / "standins")
        responder = DnsResponder(standins.names)
        dns_server = await responder.start(DNS_ADDRESS, 53)
        files = write_lab_certificates(
            Path(folder) / "doh", ("doh.lab.invalid",), (DOH_ADDRESS,), "CallPath DoH CA"
        )
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(files.certificate, files.key)
        app = web.Application()
        app.router.add_post(DOH_PATH, lambda request: _doh(dns_server, request))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, DOH_ADDRESS, DOH_PORT, ssl_context=context).start()
        table = {
            "standins": standins.table().to_dict(),
            "dns": list(dns_server),
            "doh_url": f"https://{DOH_ADDRESS}:{DOH_PORT}{DOH_PATH}",
            "doh_ca_pem": files.ca_pem.decode(),
        }
        partial = out.with_suffix(".partial")
        partial.write_text(json.dumps(table), "utf-8")
        partial.rename(out)  # whole, or not at all
        await asyncio.Event().wait()


# --- the client side ---------------------------------------------------------------------------


class NamespaceWorld:
    """The check's world in the client namespace: stand-ins instead of messengers, the far
    namespace's DNS, and the route as this namespace's routing table says."""

    def __init__(self, data: dict[str, object]) -> None:
        self.table = StandinTable.from_dict(data["standins"])  # type: ignore[arg-type]
        host, port = data["dns"]  # type: ignore[misc]
        self._dns = (str(host), int(port))
        self._doh_url = str(data["doh_url"])
        self._tls = ssl.create_default_context(cadata=self.table.ca_pem)
        self._doh_tls = ssl.create_default_context(cadata=str(data["doh_ca_pem"]))

    @property
    def resolver(self) -> Resolver:
        return BoundResolver([self._dns], None)

    def around_resolver(self, interface: str, timeout: float) -> Resolver:
        return BoundResolver([self._dns], interface, timeout)

    @property
    def tls_context(self) -> ssl.SSLContext | None:
        return self._tls

    @property
    def doh_url(self) -> str:
        return self._doh_url

    @property
    def doh_ssl_context(self) -> ssl.SSLContext | None:
        return self._doh_tls

    @property
    def tcp_echo(self) -> bool:
        return True

    def plausible(self, address: str) -> bool:
        try:
            parsed = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(parsed in network for network in STANDIN_NETWORKS)

    def direct(self, address: str, port: int, proto: str) -> tuple[str, int]:
        return self.table.direct(address, port, proto)

    def via_proxy(self, address: str, port: int, proto: str) -> tuple[str, int]:
        return self.table.direct(address, port, proto)

    async def find_proxies(self) -> list[FoundProxy]:
        return []

    def route(self) -> RouteSituation | None:
        return detect()


async def check(table: Path, out: Path) -> int:
    set_language("en")
    world = NamespaceWorld(json.loads(table.read_text("utf-8")))
    result = await run_check(
        world,
        load_catalog(),
        load_references(),
        load_recipes(),
        config=CheckConfig(),
        progress=lambda event: print(event.text, flush=True),
    )
    out.write_text(json.dumps(check_to_dict(result), indent=2), "utf-8")
    print_result(result, sys.stdout)
    for line in route_texts(result):
        print(line)
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["serve"]:
        asyncio.run(serve(Path(argv[1])))
        return 0
    if argv[:1] == ["check"]:
        return asyncio.run(check(Path(argv[1]), Path(argv[2])))
    print("usage: python -m tests.netns_check serve OUT | check TABLE OUT", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
