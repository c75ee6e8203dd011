"""DNS probe (lab resolver on 127.0.0.2 vs a DoH server on 127.0.0.1 started here) and QUIC
probe (the control server's QUIC endpoint, through the lab middlebox for blocking).

Nothing leaves loopback."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
from aiohttp import web

from callpath.core.lab.dns_server import BogusAnswerFor, DnsResponder, NxdomainFor, resolve_a
from callpath.core.lab.middlebox import Middlebox
from callpath.core.lab.rules import Censor, DropQuic, Rule
from callpath.core.model.probe_results import ProbeKind
from callpath.core.probes import ProbeConfig
from callpath.core.probes.dns import is_bogon, parse_doh_json, probe_dns
from callpath.core.probes.quic import probe_quic
from callpath.core.servers.control_server import ControlServer

NAME = "relay.callpath.test"
PUBLIC_ADDRESS = "157.240.205.60"  # never contacted: only compared


class LabResolver:
    """The system-resolver stand-in: asks the lab's (possibly tampering) DNS responder."""

    def __init__(self, server: tuple[str, int]) -> None:
        self.server = server

    async def resolve(self, host: str) -> list[str]:
        return await resolve_a(host, self.server, 2.0)


def _doh_app(records: Mapping[str, Sequence[str]]) -> web.Application:
    async def wire(request: web.Request) -> web.Response:
        query = dns.message.from_wire(await request.read())
        response = dns.message.make_response(query)
        name = str(query.question[0].name).rstrip(".")
        if name not in records:
            response.set_rcode(dns.rcode.NXDOMAIN)
        else:
            response.answer.append(
                dns.rrset.from_text_list(name + ".", 60, "IN", "A", list(records[name]))
            )
        return web.Response(body=response.to_wire(), content_type="application/dns-message")

    async def as_json(request: web.Request) -> web.Response:
        name = request.query["name"]
        if name not in records:
            return web.Response(text=json.dumps({"Status": 3}), content_type="application/dns-json")
        answer = [{"name": name, "type": 1, "data": a} for a in records[name]]
        return web.Response(
            text=json.dumps({"Status": 0, "Answer": answer}), content_type="application/dns-json"
        )

    app = web.Application()
    app.router.add_post("/dns-query", wire)
    app.router.add_get("/dns-query", as_json)
    return app


@pytest.fixture
async def doh_url() -> AsyncIterator[str]:
    runner = web.AppRunner(_doh_app({NAME: [PUBLIC_ADDRESS]}))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/dns-query"
    finally:
        await runner.cleanup()


async def _lab_resolver(*tampering: NxdomainFor | BogusAnswerFor) -> DnsResponder:
    responder = DnsResponder({NAME: [PUBLIC_ADDRESS]}, tampering=tampering)
    await responder.start("127.0.0.2", 0)
    return responder


def test_bogons() -> None:
    assert is_bogon("10.1.2.3") and is_bogon("127.0.0.9") and is_bogon("100.64.0.1")
    assert is_bogon("0.0.0.0") and is_bogon("not an address")
    assert not is_bogon(PUBLIC_ADDRESS)


def test_doh_json_parsing() -> None:
    assert parse_doh_json({"Status": 0, "Answer": [{"type": 1, "data": "1.1.1.1"}]}) == ["1.1.1.1"]
    with pytest.raises(Exception, match="dns_no_answer"):
        parse_doh_json({"Status": 0, "Answer": [{"type": 5, "data": "x."}]})
    with pytest.raises(Exception, match="dns_nxdomain_error"):
        parse_doh_json({"Status": 3})


@pytest.mark.parametrize("doh_format", ["wire", "json"])
async def test_dns_probe_clean(doh_url: str, doh_format: str) -> None:
    async with await _lab_resolver() as responder:
        config = ProbeConfig(doh_url=doh_url, doh_format=doh_format, dns_timeout_s=3.0)
        result = await probe_dns(NAME, config, system_resolver=LabResolver(responder.address))
    assert result.probe == ProbeKind.DNS and result.failure is None
    assert result.evidence["system_addresses"] == [PUBLIC_ADDRESS]
    assert result.evidence["doh_addresses"] == [PUBLIC_ADDRESS]
    assert result.evidence["consistent"] is True


async def test_dns_probe_sees_nxdomain_tampering(doh_url: str) -> None:
    async with await _lab_resolver(NxdomainFor(frozenset({NAME}))) as responder:
        config = ProbeConfig(doh_url=doh_url, dns_timeout_s=3.0)
        result = await probe_dns(NAME, config, system_resolver=LabResolver(responder.address))
    assert result.failure == "dns_nxdomain_error"
    assert result.evidence["system_failure"] == "dns_nxdomain_error"
    assert result.evidence["doh_addresses"] == [PUBLIC_ADDRESS]


async def test_dns_probe_sees_bogus_answers(doh_url: str) -> None:
    async with await _lab_resolver(BogusAnswerFor(frozenset({NAME}))) as responder:
        config = ProbeConfig(doh_url=doh_url, dns_timeout_s=3.0)
        result = await probe_dns(NAME, config, system_resolver=LabResolver(responder.address))
    assert result.failure == "dns_bogon_error"
    assert result.evidence["system_bogons"] == ["127.0.0.9"]
    assert result.evidence["consistent"] is False


async def test_dns_probe_doh_unreachable(doh_url: str) -> None:
    dead = doh_url.replace(doh_url.split(":")[2].split("/")[0], "1")  # port 1: refused
    async with await _lab_resolver() as responder:
        config = ProbeConfig(doh_url=dead, dns_timeout_s=2.0)
        result = await probe_dns(NAME, config, system_resolver=LabResolver(responder.address))
    assert result.failure is None  # the system answer itself is fine
    assert result.evidence["doh_failure"] == "connection_refused"


# --- QUIC ------------------------------------------------------------------------------------

QUIC_FAST = ProbeConfig(quic_timeout_s=1.5, neutral_sni="neutral.callpath.test")


@pytest.fixture
async def control() -> AsyncIterator[ControlServer]:
    async with ControlServer() as server:
        await server.start("127.0.0.2", udp_port=None, tcp_bulk_port=None)
        yield server


async def _quic_through(control: ControlServer, *rules: Rule) -> dict[str, object]:
    assert control.quic_address is not None
    async with Middlebox(Censor(rules)) as box:
        forwarder = await box.expose_udp(control.quic_address)
        result = await probe_quic(forwarder, NAME, QUIC_FAST)
    return {"failure": result.failure, **result.evidence}


async def test_quic_probe_open(control: ControlServer) -> None:
    evidence = await _quic_through(control)
    assert evidence["failure"] is None
    assert evidence["target_ok"] is True and evidence["neutral_ok"] is True


async def test_quic_probe_all_quic_dropped(control: ControlServer) -> None:
    evidence = await _quic_through(control, DropQuic())
    assert evidence["target_ok"] is False and evidence["neutral_ok"] is False
    assert evidence["target_failure"] == "generic_timeout_error"


async def test_quic_probe_sni_dropped(control: ControlServer) -> None:
    evidence = await _quic_through(control, DropQuic(server_names=frozenset({NAME})))
    assert evidence["target_ok"] is False and evidence["neutral_ok"] is True
    assert evidence["failure"] == "generic_timeout_error"


def test_dns_transports_say_which_one_lied() -> None:
    from callpath.core.probes.dns import compare_transports

    only_udp = compare_transports(
        None, "dns_nxdomain_error", ["203.0.113.5"], None, ["203.0.113.5"], None
    )
    assert only_udp["lying_transports"] == ["udp"]
    assert only_udp["honest_transports"] == ["tcp", "doh"]
    both = compare_transports(
        None, "dns_nxdomain_error", None, "dns_nxdomain_error", ["1.2.3.4"], None
    )
    assert both["lying_transports"] == ["udp", "tcp"]
    assert both["honest_transports"] == ["doh"]
    bogus_tcp = compare_transports(["1.2.3.4"], None, ["10.0.0.1"], None, ["1.2.3.4"], None)
    assert bogus_tcp["lying_transports"] == ["tcp"]
    # Without an answering DoH nothing can be judged.
    assert "lying_transports" not in compare_transports(None, "x", ["1.2.3.4"], None, None, "y")
