"""The lab's DNS responder and resolver helper, over real UDP on loopback."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import dns.message
import dns.rcode
import pytest

from callpath.core.lab.dns_server import (
    BogusAnswerFor,
    DnsLimits,
    DnsLookupError,
    DnsResponder,
    NxdomainFor,
    resolve,
    resolve_a,
)

RECORDS = {
    "turn.lab.example": ["127.0.0.2"],
    "echo.lab.example.": ["127.0.0.2", "::1"],
    "v6only.lab.example": ["::1"],
    "whatsapp.com": ["127.0.0.2"],
}
TIMEOUT = 2.0


@pytest.fixture
async def clean() -> AsyncIterator[DnsResponder]:
    responder = DnsResponder(RECORDS)
    await responder.start("127.0.0.2")
    yield responder
    await asyncio.wait_for(responder.close(), 5)


@pytest.fixture
async def isp(clean: DnsResponder) -> AsyncIterator[DnsResponder]:
    """The tampering resolver the client asks, forwarding the rest to the clean one."""
    responder = DnsResponder(
        tampering=[
            NxdomainFor(frozenset({"WhatsApp.com"})),
            BogusAnswerFor(frozenset({"turn.lab.example"}), addresses=("127.0.0.9", "::9")),
        ],
        upstream=clean.address,
    )
    await responder.start("127.0.0.3")
    yield responder
    await asyncio.wait_for(responder.close(), 5)


async def failure_of(name: str, server: tuple[str, int], rdtype: str = "A") -> str:
    with pytest.raises(DnsLookupError) as caught:
        await resolve(name, server, TIMEOUT, rdtype)
    return caught.value.failure


async def test_table_answers(clean: DnsResponder) -> None:
    assert await resolve_a("turn.lab.example", clean.address, TIMEOUT) == ["127.0.0.2"]
    assert await resolve_a("ECHO.lab.example.", clean.address, TIMEOUT) == ["127.0.0.2"]
    assert await resolve("echo.lab.example", clean.address, TIMEOUT, "AAAA") == ["::1"]
    assert await failure_of("unknown.lab.example", clean.address) == "dns_nxdomain_error"
    assert await failure_of("v6only.lab.example", clean.address) == "dns_no_answer"
    assert await failure_of("turn.lab.example", clean.address, "AAAA") == "dns_no_answer"
    assert clean.queries == 6


async def test_isp_resolver_tampers_and_forwards_the_rest(
    clean: DnsResponder, isp: DnsResponder
) -> None:
    assert await failure_of("whatsapp.com", isp.address) == "dns_nxdomain_error"
    assert await failure_of("e1.whatsapp.com", isp.address) == "dns_nxdomain_error"
    assert await resolve_a("turn.lab.example", isp.address, TIMEOUT) == ["127.0.0.9"]
    assert await resolve("turn.lab.example", isp.address, TIMEOUT, "AAAA") == ["::9"]
    # Untouched names come from the clean resolver, NXDOMAIN included.
    assert await resolve_a("echo.lab.example", isp.address, TIMEOUT) == ["127.0.0.2"]
    assert await failure_of("unknown.lab.example", isp.address) == "dns_nxdomain_error"
    # The clean resolver still tells the truth: that difference is the evidence.
    assert await resolve_a("whatsapp.com", clean.address, TIMEOUT) == ["127.0.0.2"]
    assert isp.tampered == {"dns_nxdomain": 2, "dns_bogus_answer": 2}
    assert clean.queries == 3


async def test_tampering_changes_live(isp: DnsResponder) -> None:
    isp.set_tampering([])
    assert await resolve_a("whatsapp.com", isp.address, TIMEOUT) == ["127.0.0.2"]
    isp.set_tampering([BogusAnswerFor(frozenset({"whatsapp.com"}))])
    assert await resolve_a("whatsapp.com", isp.address, TIMEOUT) == ["127.0.0.9"]


async def test_silent_server_times_out() -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.2", 0))
    try:
        with pytest.raises(DnsLookupError) as caught:
            await resolve_a("turn.lab.example", silent.getsockname(), 0.3)
        assert caught.value.failure == "generic_timeout_error"
    finally:
        silent.close()


async def test_dead_upstream_gives_servfail() -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.2", 0))
    responder = DnsResponder(
        upstream=silent.getsockname(), limits=DnsLimits(upstream_timeout_s=0.2)
    )
    await responder.start("127.0.0.3")
    try:
        assert await failure_of("anything.example", responder.address) == "dns_servfail_error"
    finally:
        await asyncio.wait_for(responder.close(), 5)
        silent.close()


async def test_garbage_is_ignored_and_the_responder_keeps_answering(clean: DnsResponder) -> None:
    loop = asyncio.get_running_loop()
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.setblocking(False)
    sender.bind(("127.0.0.1", 0))
    try:
        await loop.sock_sendto(sender, b"\x00\x01garbage", clean.address)
        # A response sent as a query is not answered either.
        response = dns.message.make_response(dns.message.make_query("turn.lab.example", "A"))
        await loop.sock_sendto(sender, response.to_wire(), clean.address)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(loop.sock_recv(sender, 512), 0.3)
        query = dns.message.make_query("turn.lab.example", "A")
        await loop.sock_sendto(sender, query.to_wire(), clean.address)
        answer = dns.message.from_wire(await asyncio.wait_for(loop.sock_recv(sender, 512), 2))
        assert answer.id == query.id
        assert answer.rcode() == dns.rcode.NOERROR
        assert answer.answer[0].ttl == DnsLimits().ttl_s
    finally:
        sender.close()


def test_bad_tampering_configuration_is_refused() -> None:
    with pytest.raises(ValueError):
        BogusAnswerFor(frozenset({"x.example"}), addresses=("not an address",))


async def test_tcp_answers_like_udp_and_tampering_can_spare_it(
    clean: DnsResponder, isp: DnsResponder
) -> None:
    assert await resolve_a("turn.lab.example", clean.address, TIMEOUT, tcp=True) == ["127.0.0.2"]
    # Tampering on every transport by default …
    assert await resolve_a("turn.lab.example", isp.address, TIMEOUT, tcp=True) == ["127.0.0.9"]
    # … or on UDP only, as Russian mobile networks did in 2026: TCP gets the clean answer.
    isp.set_tampering([NxdomainFor(frozenset({"whatsapp.com"}), transports=frozenset({"udp"}))])
    assert await failure_of("whatsapp.com", isp.address) == "dns_nxdomain_error"
    assert await resolve_a("whatsapp.com", isp.address, TIMEOUT, tcp=True) == ["127.0.0.2"]
    with pytest.raises(DnsLookupError) as caught:
        await resolve_a("unknown.lab.example", isp.address, TIMEOUT, tcp=True)
    assert caught.value.failure == "dns_nxdomain_error"
