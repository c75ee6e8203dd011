"""The lab's DNS: a small UDP and TCP responder, DNS tampering rules, and ``resolve_a``.

A tampering rule may act on one transport only: Russian mobile networks in 2026 answered DNS
over UDP to public resolvers with NXDOMAIN for blocked names while DNS over TCP (and DoH) still
gave the real answer (net4people/bbs#657), so ``transports`` can be ``{"udp"}``.

Model: a clean resolver lives outside (a ``DnsResponder`` with the lab's name table), and the
client asks an "ISP resolver" inside (a ``DnsResponder`` with tampering rules and the clean one
as ``upstream``). Tampering happens in the resolver the client trusts, as national censors do
it, rather than by rewriting answers in the middlebox; comparing its answers with the clean
resolver's (reached through the middlebox) is how the diagnosis sees ``dns_tampering``.

Wire format work is done by dnspython.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import struct
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from callpath.core.lab.tls_sni import name_matches, normalise_name

Address = tuple[str, int]

# Bogus answers stay on loopback so a lab client never sends traffic off the machine; nothing
# listens there, and 127.0.0.0/8 is a bogon, as the blocking-page addresses of real ISPs are.
DEFAULT_BOGUS_ADDRESSES = ("127.0.0.9",)


DNS_TRANSPORTS = frozenset({"udp", "tcp"})


@dataclass(frozen=True)
class NxdomainFor:
    """The resolver says the names do not exist."""

    names: frozenset[str]
    include_subdomains: bool = True
    label: str = "dns_nxdomain"
    transports: frozenset[str] = DNS_TRANSPORTS  # the DNS transports it tampers with

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", frozenset(normalise_name(n) for n in self.names))


@dataclass(frozen=True)
class BogusAnswerFor:
    """The resolver answers the names with addresses of its choosing."""

    names: frozenset[str]
    addresses: tuple[str, ...] = DEFAULT_BOGUS_ADDRESSES
    include_subdomains: bool = True
    label: str = "dns_bogus_answer"
    transports: frozenset[str] = DNS_TRANSPORTS

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", frozenset(normalise_name(n) for n in self.names))
        for address in self.addresses:
            ipaddress.ip_address(address)  # raises ValueError on a typo


DnsRule = NxdomainFor | BogusAnswerFor


@dataclass(frozen=True)
class DnsLimits:
    ttl_s: int = 60
    upstream_timeout_s: float = 2.0
    max_upstream_queries: int = 64  # queries forwarded at once; more are answered SERVFAIL
    close_timeout_s: float = 2.0
    tcp_idle_s: float = 5.0  # a TCP client that sends nothing for this long is closed


class DnsResponder(asyncio.DatagramProtocol):
    """Answers A/AAAA queries over UDP and TCP (same address and port) from a table, or via
    ``upstream`` (asked over UDP), after tampering.

    Without ``upstream``: names in ``records`` get their addresses of the asked family (none:
    an empty NOERROR answer), other names NXDOMAIN. With ``upstream``: every query that no
    tampering rule catches is forwarded there and the answer relayed.
    """

    def __init__(
        self,
        records: Mapping[str, Sequence[str]] | None = None,
        *,
        tampering: Iterable[DnsRule] = (),
        upstream: Address | None = None,
        limits: DnsLimits | None = None,
    ) -> None:
        self._records = {
            normalise_name(name): tuple(ipaddress.ip_address(a) for a in addresses)
            for name, addresses in (records or {}).items()
        }
        self._tampering: tuple[DnsRule, ...] = tuple(tampering)
        self.upstream = upstream
        self.limits = limits if limits is not None else DnsLimits()
        self._transport: asyncio.DatagramTransport | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.address: Address = ("", 0)
        self.queries = 0
        self.tampered: Counter[str] = Counter()  # rule label -> queries it answered
        self._tcp: asyncio.Server | None = None

    async def start(self, host: str = "127.0.0.2", port: int = 0) -> Address:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, local_addr=(host, port))
        self._tcp = await asyncio.start_server(self._serve_tcp, host, self.address[1])
        return self.address

    async def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        if self._tcp is not None:
            self._tcp.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=self.limits.close_timeout_s)

    async def __aenter__(self) -> DnsResponder:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def add_records(self, records: Mapping[str, Sequence[str]]) -> None:
        """More names to answer from the table (the lab's stand-ins)."""
        for name, addresses in records.items():
            self._records[normalise_name(name)] = tuple(ipaddress.ip_address(a) for a in addresses)

    @property
    def tampering(self) -> tuple[DnsRule, ...]:
        return self._tampering

    def set_tampering(self, rules: Iterable[DnsRule]) -> None:
        self._tampering = tuple(rules)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # selector datagram transports do not subclass DatagramTransport in 3.11
        self._transport = cast(asyncio.DatagramTransport, transport)
        sockname = transport.get_extra_info("sockname")
        self.address = (str(sockname[0]), int(sockname[1]))

    def error_received(self, exc: Exception) -> None:
        pass  # an ICMP error for an earlier answer; the client has gone

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        client = (str(addr[0]), int(addr[1]))
        query = self._query(data)
        if query is None:
            return  # not a DNS query; a real resolver would stay silent too
        immediate = self._immediate(query, "udp")
        if immediate is not None:
            self._send(immediate, client)
        else:
            self._forward(query, client)

    def _query(self, data: bytes) -> dns.message.Message | None:
        try:
            query = dns.message.from_wire(data)
        except dns.exception.DNSException:
            return None
        if query.flags & dns.flags.QR:
            return None  # a response, not a query
        self.queries += 1
        return query

    def _immediate(self, query: dns.message.Message, transport: str) -> dns.message.Message | None:
        """The answer made here (error, tampering, own table), or None: ask ``upstream``."""
        if query.opcode() != dns.opcode.QUERY:
            return self._error(query, dns.rcode.NOTIMP)
        if len(query.question) != 1:
            return self._error(query, dns.rcode.FORMERR)
        question = query.question[0]
        name = normalise_name(question.name.to_text(omit_final_dot=True))
        tampered = self._tamper(query, name, question.rdtype, transport)
        if tampered is not None:
            return tampered
        if self.upstream is not None:
            return None
        return self._answer(query, name, question.rdtype)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """RFC 7766: two-byte length, message; several queries per connection."""
        try:
            while True:
                async with asyncio.timeout(self.limits.tcp_idle_s):
                    (length,) = struct.unpack("!H", await reader.readexactly(2))
                    data = await reader.readexactly(length)
                query = self._query(data)
                if query is None:
                    return
                response = self._immediate(query, "tcp")
                if response is None:
                    response = await self._ask_upstream(query)
                wire = response.to_wire()
                writer.write(struct.pack("!H", len(wire)) + wire)
                await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError, OSError):
            pass
        finally:
            writer.close()

    def _tamper(
        self,
        query: dns.message.Message,
        name: str,
        rdtype: dns.rdatatype.RdataType,
        transport: str = "udp",
    ) -> dns.message.Message | None:
        for rule in self._tampering:
            if transport not in rule.transports:
                continue
            if not name_matches(name, rule.names, include_subdomains=rule.include_subdomains):
                continue
            self.tampered[rule.label] += 1
            if isinstance(rule, NxdomainFor):
                return self._error(query, dns.rcode.NXDOMAIN)
            addresses = tuple(ipaddress.ip_address(a) for a in rule.addresses)
            return self._with_addresses(query, rdtype, addresses)
        return None

    def _answer(
        self, query: dns.message.Message, name: str, rdtype: dns.rdatatype.RdataType
    ) -> dns.message.Message:
        addresses = self._records.get(name)
        if addresses is None:
            return self._error(query, dns.rcode.NXDOMAIN)
        response = self._with_addresses(query, rdtype, addresses)
        response.flags |= dns.flags.AA
        return response

    def _with_addresses(
        self,
        query: dns.message.Message,
        rdtype: dns.rdatatype.RdataType,
        addresses: Sequence[ipaddress.IPv4Address | ipaddress.IPv6Address],
    ) -> dns.message.Message:
        response = dns.message.make_response(query, recursion_available=True)
        version = {dns.rdatatype.A: 4, dns.rdatatype.AAAA: 6}.get(rdtype)
        matching = [str(a) for a in addresses if a.version == version]
        if matching:
            rrset = dns.rrset.from_text_list(
                query.question[0].name,
                self.limits.ttl_s,
                dns.rdataclass.IN,
                rdtype,
                matching,
            )
            response.answer.append(rrset)
        return response

    @staticmethod
    def _error(query: dns.message.Message, rcode: dns.rcode.Rcode) -> dns.message.Message:
        response = dns.message.make_response(query, recursion_available=True)
        response.set_rcode(rcode)
        return response

    def _forward(self, query: dns.message.Message, client: Address) -> None:
        if len(self._tasks) >= self.limits.max_upstream_queries:
            self._send(self._error(query, dns.rcode.SERVFAIL), client)
            return
        task = asyncio.get_running_loop().create_task(self._relay(query, client))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _relay(self, query: dns.message.Message, client: Address) -> None:
        self._send(await self._ask_upstream(query), client)

    async def _ask_upstream(self, query: dns.message.Message) -> dns.message.Message:
        assert self.upstream is not None
        host, port = self.upstream
        timeout = self.limits.upstream_timeout_s
        try:
            return await asyncio.wait_for(
                dns.asyncquery.udp(query, host, timeout=timeout, port=port, ignore_unexpected=True),
                timeout + 0.5,
            )
        except (dns.exception.DNSException, OSError, TimeoutError):
            return self._error(query, dns.rcode.SERVFAIL)

    def _send(self, response: dns.message.Message, client: Address) -> None:
        if self._transport is not None and not self._transport.is_closing():
            with contextlib.suppress(OSError):
                self._transport.sendto(response.to_wire(), client)


# --- the lab's resolver for the engine ------------------------------------------------------


class DnsLookupError(Exception):
    """A failed lookup; ``failure`` is the OONI-style failure string."""

    def __init__(self, failure: str) -> None:
        super().__init__(failure)
        self.failure = failure


_RCODE_FAILURES = {
    dns.rcode.NXDOMAIN: "dns_nxdomain_error",
    dns.rcode.SERVFAIL: "dns_servfail_error",
    dns.rcode.REFUSED: "dns_refused_error",
}


async def resolve(
    name: str, server: Address, timeout: float, rdtype: str = "A", *, tcp: bool = False
) -> list[str]:
    """Asks ``server`` over UDP (or TCP) for the ``rdtype`` addresses of ``name``.

    Raises ``DnsLookupError`` with ``dns_nxdomain_error``, ``dns_no_answer``,
    ``generic_timeout_error``, ``connection_refused``, ``dns_servfail_error``,
    ``dns_refused_error`` or ``dns_server_misbehaving``.
    """
    wanted = dns.rdatatype.from_text(rdtype)
    query = dns.message.make_query(name, wanted)
    host, port = server
    exchange = (
        dns.asyncquery.tcp(query, host, timeout=timeout, port=port)
        if tcp
        else dns.asyncquery.udp(query, host, timeout=timeout, port=port, ignore_unexpected=True)
    )
    try:
        response = await asyncio.wait_for(exchange, timeout + 0.5)
    except (dns.exception.Timeout, TimeoutError) as error:
        raise DnsLookupError("generic_timeout_error") from error
    except ConnectionRefusedError as error:
        raise DnsLookupError("connection_refused") from error
    except (dns.exception.DNSException, OSError) as error:
        raise DnsLookupError("dns_server_misbehaving") from error
    rcode = response.rcode()
    if rcode != dns.rcode.NOERROR:
        raise DnsLookupError(_RCODE_FAILURES.get(rcode, "dns_server_misbehaving"))
    addresses = [
        rdata.to_text() for rrset in response.answer if rrset.rdtype == wanted for rdata in rrset
    ]
    if not addresses:
        raise DnsLookupError("dns_no_answer")
    return addresses


async def resolve_a(name: str, server: Address, timeout: float, *, tcp: bool = False) -> list[str]:
    """The IPv4 addresses of ``name`` according to ``server`` (see ``resolve`` for failures)."""
    return await resolve(name, server, timeout, "A", tcp=tcp)
