"""DNS probe: the system resolver against DNS over HTTPS (and DNS over TCP) for the same name.

Given a ``tcp_resolver`` (the same resolver asked over TCP), the probe compares three answers:
a censor that rewrites DNS over UDP only (Russian mobile networks, August 2026: NXDOMAIN over
UDP, real answers over TCP and DoH) is told apart from one that lies on every transport; the
evidence says which transport lied (``lying_transports``) and which stayed honest.

The system resolver is what the user's apps see (and what a censor's ISP resolver answers);
DNS over HTTPS (RFC 8484 wire format via dnspython, or the JSON flavour) goes to a resolver the
censor cannot rewrite. NXDOMAIN, no answer or private/reserved addresses from the system
resolver while DoH gives other addresses is the evidence for ``dns_tampering``; different public
answers are recorded (``consistent``) but prove nothing on their own (CDNs answer differently).
A private or reserved answer is only suspicious when DoH did not return it too: names that
really live on a private address (an office network, the built-in lab's loopback) resolve the
same way everywhere.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Awaitable
from typing import Any

import aiohttp
import dns.exception
import dns.message
import dns.rcode
import dns.rdatatype

from callpath.core.call.resolver import Resolver, SystemResolver
from callpath.core.model.failures import failure_from_exception
from callpath.core.model.json_input import load_bounded_json
from callpath.core.model.probe_results import ProbeKind, ProbeResult
from callpath.core.probes import ProbeConfig, ProbeTimer
from callpath.core.probes.binding import (
    BoundAiohttpResolver,
    BoundResolver,
    a_records,
    aiohttp_socket_factory,
    nameservers_outside,
)

WIRE_TYPE = "application/dns-message"
JSON_TYPE = "application/dns-json"
MAX_RESPONSE_BYTES = 64 * 1024
DNS_TYPE_A = 1
DNS_STATUS_NXDOMAIN = 3


class DohError(Exception):
    def __init__(self, failure: str) -> None:
        super().__init__(failure)
        self.failure = failure


# --- pure logic ------------------------------------------------------------------------------


def is_bogon(address: str) -> bool:
    """Private, reserved, loopback, shared (CGNAT), documentation… anything not global."""
    try:
        return not ipaddress.ip_address(address).is_global
    except ValueError:
        return True


def doh_wire_query(name: str) -> bytes:
    query = dns.message.make_query(name, dns.rdatatype.A)
    query.id = 0  # RFC 8484 §4.1: cache friendly
    return query.to_wire()


def parse_doh_wire(data: bytes) -> list[str]:
    """IPv4 addresses of a wire-format answer; DohError for NXDOMAIN, no answer, garbage."""
    try:
        response = dns.message.from_wire(data)
    except dns.exception.DNSException:
        raise DohError("unknown_failure: malformed DNS response") from None
    rcode = response.rcode()
    if rcode == dns.rcode.NXDOMAIN:
        raise DohError("dns_nxdomain_error")
    if rcode != dns.rcode.NOERROR:
        raise DohError(f"unknown_failure: DNS rcode {dns.rcode.to_text(rcode)}")
    addresses = a_records(response)
    if not addresses:
        raise DohError("dns_no_answer")
    return addresses


def parse_doh_json(data: Any) -> list[str]:
    if not isinstance(data, dict) or not isinstance(data.get("Status"), int):
        raise DohError("unknown_failure: malformed DNS JSON response")
    if data["Status"] == DNS_STATUS_NXDOMAIN:
        raise DohError("dns_nxdomain_error")
    if data["Status"] != 0:
        raise DohError(f"unknown_failure: DNS status {data['Status']}")
    answers = data.get("Answer") or []
    addresses = [
        str(answer["data"])
        for answer in answers
        if isinstance(answer, dict) and answer.get("type") == DNS_TYPE_A and "data" in answer
    ]
    if not addresses:
        raise DohError("dns_no_answer")
    return addresses


def _lies(addresses: list[str] | None, failure: str | None, doh: list[str]) -> bool:
    """Whether a plain-DNS answer contradicts the DoH answer: a name DoH resolves is said not
    to exist (or to have no address), or an address DoH did not give is private/reserved."""
    if failure is not None:
        return failure in ("dns_nxdomain_error", "dns_no_answer")
    return any(is_bogon(a) and a not in doh for a in addresses or [] if ":" not in a)


def compare_transports(
    system: list[str] | None,
    system_failure: str | None,
    tcp: list[str] | None,
    tcp_failure: str | None,
    doh: list[str] | None,
    doh_failure: str | None,
) -> dict[str, Any]:
    """Evidence of which plain-DNS transport lied, judged against an answering DoH."""
    evidence: dict[str, Any] = {
        "tcp_addresses": [a for a in tcp or [] if ":" not in a],
        "tcp_failure": tcp_failure,
    }
    if not doh or doh_failure is not None:
        return evidence
    lying = [
        transport
        for transport, addresses, failure in (
            ("udp", system, system_failure),
            ("tcp", tcp, tcp_failure),
        )
        if _lies(addresses, failure, doh)
    ]
    evidence["lying_transports"] = lying
    evidence["honest_transports"] = [
        t
        for t, addresses, failure in (("udp", system, system_failure), ("tcp", tcp, tcp_failure))
        if t not in lying and failure is None and addresses
    ] + ["doh"]
    return evidence


def compare(
    name: str,
    system: list[str] | None,
    system_failure: str | None,
    doh: list[str] | None,
    doh_failure: str | None,
) -> tuple[str | None, dict[str, Any]]:
    """(failure, evidence) from both lookups."""
    system_v4 = [a for a in system or [] if ":" not in a]
    doh_list = doh or []
    bogons = [a for a in system_v4 if is_bogon(a)]
    # A bogon DoH returned too is the name's real address, not a forged one.
    unconfirmed = [a for a in bogons if a not in doh_list]
    evidence: dict[str, Any] = {
        "name": name,
        "system_addresses": system_v4,
        "system_failure": system_failure,
        "system_bogons": bogons,
        "unconfirmed_bogons": unconfirmed,
        "doh_addresses": doh_list,
        "doh_failure": doh_failure,
        "doh_bogons": [a for a in doh_list if is_bogon(a)],
        "consistent": bool(set(system_v4) & set(doh_list)) or (not system_v4 and not doh_list),
    }
    failure = system_failure
    if failure is None and unconfirmed:
        failure = "dns_bogon_error"
    return failure, evidence


# --- I/O -------------------------------------------------------------------------------------


async def _system_lookup(resolver: Resolver, name: str) -> list[str]:
    addresses = await resolver.resolve(name)
    if not addresses:
        raise socket.gaierror(getattr(socket, "EAI_NODATA", -5), "no address")
    return addresses


async def doh_lookup(name: str, config: ProbeConfig, session: aiohttp.ClientSession) -> list[str]:
    if config.doh_format == "json":
        params = {"name": name, "type": "A"}
        async with session.get(
            config.doh_url, params=params, headers={"accept": JSON_TYPE}
        ) as response:
            if response.status != 200:
                raise DohError("http_unexpected_status_code")
            body = await response.content.read(MAX_RESPONSE_BYTES)
            try:
                return parse_doh_json(load_bounded_json(body.decode(), max_depth=16))
            except ValueError:
                raise DohError("unknown_failure: malformed DNS JSON response") from None
    async with session.post(
        config.doh_url,
        data=doh_wire_query(name),
        headers={"content-type": WIRE_TYPE, "accept": WIRE_TYPE},
    ) as response:
        if response.status != 200:
            raise DohError("http_unexpected_status_code")
        return parse_doh_wire(await response.content.read(MAX_RESPONSE_BYTES))


def _failure(error: BaseException) -> str:
    known = getattr(error, "failure", None)
    if isinstance(known, str):
        return known
    if isinstance(error, aiohttp.ClientConnectorError) and error.os_error is not None:
        return failure_from_exception(error.os_error)
    return failure_from_exception(error)


async def _guarded(lookup: Awaitable[list[str]]) -> tuple[list[str] | None, str | None]:
    try:
        return await lookup, None
    except (OSError, TimeoutError, ValueError, DohError, aiohttp.ClientError) as error:
        return None, _failure(error)
    except Exception as error:
        # Resolvers with their own error type that names the failure (the lab's resolver).
        if isinstance(getattr(error, "failure", None), str):
            return None, _failure(error)
        raise


def default_resolver(config: ProbeConfig) -> Resolver:
    """The system resolver, or, around a VPN (``bind_interface``), the outside network's DNS
    servers asked from sockets bound to that interface."""
    if config.bind_interface is None:
        return SystemResolver()
    return BoundResolver(
        nameservers_outside(config.bind_interface), config.bind_interface, config.dns_timeout_s
    )


def doh_connector(
    config: ProbeConfig, resolver: Resolver, ssl_context: ssl.SSLContext | None = None
) -> aiohttp.TCPConnector:
    """The DoH client's connector: around a VPN its sockets leave by ``bind_interface`` and
    the DoH server's name is looked up with ``resolver``."""
    context: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
    if config.bind_interface is None:
        return aiohttp.TCPConnector(ssl=context)
    return aiohttp.TCPConnector(
        ssl=context,
        socket_factory=aiohttp_socket_factory(config.bind_interface),
        resolver=BoundAiohttpResolver(resolver),
    )


async def probe_dns(
    name: str,
    config: ProbeConfig,
    *,
    system_resolver: Resolver | None = None,
    tcp_resolver: Resolver | None = None,
    session: aiohttp.ClientSession | None = None,
    origin: float = 0.0,
) -> ProbeResult:
    """Look ``name`` up with the system resolver, with DoH at ``config.doh_url`` and, given
    ``tcp_resolver``, with the system's resolver over TCP."""
    timer = ProbeTimer(origin)
    resolver = system_resolver if system_resolver is not None else default_resolver(config)
    own_session = session is None
    client = session or aiohttp.ClientSession(
        connector=doh_connector(config, resolver),
        timeout=aiohttp.ClientTimeout(total=config.dns_timeout_s),
    )
    try:

        async def bounded_system() -> list[str]:
            async with asyncio.timeout(config.dns_timeout_s):
                return await _system_lookup(resolver, name)

        async def bounded_doh() -> list[str]:
            async with asyncio.timeout(config.dns_timeout_s):
                return await doh_lookup(name, config, client)

        async def bounded_tcp() -> list[str]:
            assert tcp_resolver is not None
            async with asyncio.timeout(config.dns_timeout_s):
                return await _system_lookup(tcp_resolver, name)

        lookups = [_guarded(bounded_system()), _guarded(bounded_doh())]
        if tcp_resolver is not None:
            lookups.append(_guarded(bounded_tcp()))
        answers = await asyncio.gather(*lookups)
    finally:
        if own_session:
            await client.close()
    (system, system_failure), (doh, doh_failure) = answers[0], answers[1]
    failure, evidence = compare(name, system, system_failure, doh, doh_failure)
    if tcp_resolver is not None:
        tcp, tcp_failure = answers[2]
        evidence.update(
            compare_transports(system, system_failure, tcp, tcp_failure, doh, doh_failure)
        )
    evidence["doh_url"] = config.doh_url
    return timer.result(ProbeKind.DNS, name, failure, evidence)
