"""The messenger check's two sides of a VPN, without namespaces: the report (check_version 2
beside version 1 reports, which still read back), the words per messenger and side in the CLI
and the app, the refusal when sockets cannot be bound, and the probes' sockets bound to an
interface (loopback here; tests/test_check_around_vpn.py goes around a real TUN)."""

from __future__ import annotations

import asyncio
import copy
import json
import socket
import ssl
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from callpath.core.checkup.document import validate_check_report
from callpath.core.checkup.engine import around_vpn
from callpath.core.checkup.texts import sides_lines
from callpath.core.discovery.clients import load_client_data
from callpath.core.discovery.tunnels import ARPHRD_NONE, Interface, analyse
from callpath.core.i18n import set_language
from callpath.core.lab.dns_server import DnsResponder
from callpath.core.model.route import RouteSituation
from callpath.core.present.route import route_lines
from callpath.core.probes import ProbeConfig
from callpath.core.probes.binding import (
    BoundResolver,
    LookupFailed,
    can_bind,
    nameservers_outside,
    open_connection,
)
from callpath.core.probes.dns import probe_dns
from callpath.core.probes.stun import probe_stun_binding
from callpath.core.probes.tcp import probe_tcp_connect
from callpath.core.report.document import ReportError

FIXTURE = Path(__file__).parent / "fixtures" / "check" / "russia-2025.json"  # check_version 1
pytest_plugins = ["tests.gui_support"]  # fixtures: app, data_dir, english, qt_warnings_fail


def _situation(physical: str = "eth0") -> RouteSituation:
    interfaces = [
        Interface(physical, 1, False, None, True),
        Interface("amn0", ARPHRD_NONE, True, None, True),
    ]
    return analyse(
        interfaces,
        {"192.0.2.1": "amn0"}.get,
        data=load_client_data(),
        privileged=True,
        platform="linux",
    )


def _two_sided_report() -> dict[str, Any]:
    """The lab fixture as if measured behind AmneziaVPN: through it every call works, around
    it (eth0) what the lab's censor did."""
    report = json.loads(FIXTURE.read_text("utf-8"))
    report["check_version"] = 2
    report["route"] = _situation().to_dict()
    report["around_vpn"] = {
        "interface": "eth0",
        "network": "online",
        "udp": "works",
        "references": report["references"],
        "dns": report["dns"],
    }
    messengers = []
    for entry in report["messengers"]:
        if entry["through"] != "direct":
            continue
        around = copy.deepcopy(entry) | {"through": "around-vpn", "fixes": []}
        through = entry | {"calls": "works", "calls_reason": None}
        if entry["id"] == "zoom":
            through = entry
        messengers += [through, around]
    report["messengers"] = messengers
    report["proxies"] = []
    return report


def test_a_version_1_report_still_validates_and_a_two_sided_one_too() -> None:
    validate_check_report(json.loads(FIXTURE.read_text("utf-8")))
    report = _two_sided_report()
    validate_check_report(report)
    broken = copy.deepcopy(report)
    broken["around_vpn"]["udp"] = "maybe"
    with pytest.raises(ReportError, match="around_vpn"):
        validate_check_report(broken)
    broken = copy.deepcopy(report)
    broken["check_version"] = 3
    with pytest.raises(ReportError, match="check_version"):
        validate_check_report(broken)


def test_words_per_messenger_and_side() -> None:
    set_language("en")
    works, blocked = (
        {"messages": "works", "calls": "works"},
        {"messages": "works", "calls": "blocked"},
    )
    assert sides_lines("Telegram", "wg0", works, blocked) == [
        "Without your VPN Telegram calls are blocked; through it (wg0) they work."
    ]
    assert sides_lines("Signal", "wg0", works, works) == [
        "Signal calls work both through your VPN (wg0) and without it."
    ]
    nothing = {"messages": "blocked", "calls": "unknown"}
    assert sides_lines("Zoom", "wg0", works | {"calls": "unknown"}, nothing) == [
        "Without your VPN Zoom messages are blocked; through it (wg0) they work."
    ]
    set_language("ru")
    try:
        assert sides_lines("Telegram", "wg0", works, blocked) == [
            "Без VPN звонки Telegram: заблокированы; через VPN (wg0): работают."
        ]
    finally:
        set_language("en")


def test_the_check_page_shows_both_sides(english: None) -> None:
    from callpath.gui.check_view import check_section_html, check_text, columns, findings, rows

    report = _two_sided_report()
    assert [c.title for c in columns(report)] == [
        "Through your VPN (amn0)",
        "Around your VPN (eth0)",
    ]
    telegram = next(r for r in rows(report) if r.messenger == "telegram")
    (_, through_calls), (_, around_calls) = telegram.cells
    assert (through_calls.value, around_calls.value) == ("works", "blocked")
    lines = findings(report)
    assert lines[1:3] == [
        "Measured through your VPN (amn0, AmneziaVPN).",
        "Also measured around your VPN, via eth0: what your apps get with the VPN off.",
    ]
    assert "Without your VPN Telegram calls are blocked; through it (amn0) they work." in lines
    assert not any("Only the VPN side" in line for line in lines)
    assert "Around your VPN (eth0)" in check_section_html(report)
    assert "- Telegram: Through your VPN (amn0): messages work, calls work" in check_text(report)
    # A version 1 report: one column, no word about sides.
    old = json.loads(FIXTURE.read_text("utf-8"))
    assert [c.through for c in columns(old)] == ["direct", old["proxies"][0]["id"]]
    assert not any("VPN" in line for line in findings(old))


def test_a_saved_two_sided_report_opens_in_the_app(app: Any, tmp_path: Path) -> None:
    saved = tmp_path / "check.json"
    saved.write_text(json.dumps(_two_sided_report()), "utf-8")
    window = app.window
    assert window.open_report(saved)
    assert window.current_page() == "check"
    table = window.check.table
    headers = [table.horizontalHeaderItem(c).text() for c in range(table.columnCount())]
    assert "Calls (Around your VPN (eth0))" in headers
    assert "Calls (Through your VPN (amn0))" in headers
    text = window.check.findings.text()
    assert "Without your VPN WhatsApp calls are blocked; through it (amn0) they work." in text


def test_going_around_is_refused_when_no_socket_can_be_bound_there() -> None:
    set_language("en")
    situation = _situation(physical="nosuchif0")
    assert situation.can_go_around
    route, interface = around_vpn(situation)
    assert interface is None and route is not None
    assert not route.can_go_around and route.around_refused == "around_bind_failed"
    assert route_lines(route.to_dict())[1].startswith("Only the VPN side was measured")
    assert can_bind("nosuchif0") is not None
    # No VPN: nothing to go around; a refusal found by discovery stays as it is.
    assert around_vpn(None) == (None, None)
    refused = analyse(
        [
            Interface("eth0", 1, False, None, True),
            Interface("wg0", ARPHRD_NONE, False, "wireguard", True),
        ],
        {"192.0.2.1": "wg0"}.get,
        data=load_client_data(),
        privileged=False,
        platform="linux",
    )
    assert around_vpn(refused) == (refused, None)


def test_nameservers_outside_skip_loopback_stubs(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("nameserver 127.0.0.53\nnameserver 10.0.0.1\nsearch lan\n")
    assert nameservers_outside("eth0", conf) == [("10.0.0.1", 53)]
    conf.write_text("nameserver 127.0.0.53\n")
    links = {"eth0": ["192.168.1.1", "fe80::1%eth0", "fe80::1", "2001:db8::53"]}
    assert nameservers_outside("eth0", conf, lambda name: links.get(name, [])) == [
        ("192.168.1.1", 53),
        ("2001:db8::53", 53),
    ]
    assert nameservers_outside("eth0", tmp_path / "missing") == []


# --- sockets bound to an interface (SO_BINDTODEVICE to loopback) ------------------------------


def _need_binding() -> None:
    if not hasattr(socket, "SO_BINDTODEVICE"):
        pytest.skip("SO_BINDTODEVICE is Linux only")
    if can_bind("lo") is not None:
        pytest.skip("binding sockets to an interface is not allowed here (CAP_NET_RAW)")


async def test_probes_and_lookups_leave_by_the_bound_interface() -> None:
    _need_binding()
    # DoH on a closed loopback port: nothing may leave the machine.
    config = ProbeConfig(
        bind_interface="lo",
        connect_timeout_s=2.0,
        dns_timeout_s=2.0,
        doh_url="https://127.0.0.1:9/dns-query",
    )
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = int(server.sockets[0].getsockname()[1])
    responder = DnsResponder({"chat.lab.invalid": ["127.77.1.1"]})
    dns_server = await responder.start("127.0.0.1", 0)
    try:
        assert (await probe_tcp_connect(("127.0.0.1", port), config)).failure is None
        _, writer = await open_connection("127.0.0.1", port, "lo")
        assert (
            writer.get_extra_info("socket")
            .getsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, 16)
            .rstrip(b"\0")
            == b"lo"
        )
        writer.close()
        resolver = BoundResolver([dns_server], "lo", 2.0)
        assert await resolver.resolve("chat.lab.invalid") == ["127.77.1.1"]
        with pytest.raises(LookupFailed) as missing:
            await resolver.resolve("other.lab.invalid")
        assert missing.value.failure == "dns_nxdomain_error"
        with pytest.raises(LookupFailed) as none:
            await BoundResolver([], "lo").resolve("chat.lab.invalid")
        assert none.value.failure == "dns_no_resolver_around_vpn"
        # The DNS probe: the bound resolver beside DoH through a bound connector.
        lookup = await probe_dns("chat.lab.invalid", config, system_resolver=resolver)
        assert lookup.evidence["system_addresses"] == ["127.77.1.1"]
        assert lookup.evidence["doh_failure"] == "connection_refused"
        # Bound to an interface that cannot reach loopback, nothing answers.
        away = ProbeConfig(bind_interface="nosuchif0", connect_timeout_s=1.0)
        assert (await probe_tcp_connect(("127.0.0.1", port), away)).failure is not None
    finally:
        server.close()
        await responder.close()


async def test_stun_leaves_by_the_bound_interface() -> None:
    _need_binding()
    from callpath.core.servers.control_server import stun_binding_response

    class Answerer(asyncio.DatagramProtocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport

        def datagram_received(self, data: bytes, addr: Any) -> None:
            answer = stun_binding_response(data, (addr[0], addr[1]))
            if answer is not None:
                self.transport.sendto(answer, addr)

    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(Answerer, local_addr=("127.0.0.1", 0))
    port = int(transport.get_extra_info("sockname")[1])
    try:
        bound = ProbeConfig(bind_interface="lo", stun_wait_s=0.5)
        assert (await probe_stun_binding(("127.0.0.1", port), bound)).failure is None
    finally:
        transport.close()


async def test_doh_around_goes_through_a_bound_connector(tmp_path: Path) -> None:
    _need_binding()
    from callpath.core.lab.certificates import write_lab_certificates
    from callpath.core.probes.dns import doh_connector, doh_wire_query

    seen: list[bytes] = []

    async def answer(request: web.Request) -> web.Response:
        import dns.message

        query = dns.message.from_wire(await request.read())
        seen.append(request.transport.get_extra_info("peername")[0].encode())  # type: ignore[union-attr]
        reply = dns.message.make_response(query)
        return web.Response(
            status=200, body=reply.to_wire(), content_type="application/dns-message"
        )

    files = write_lab_certificates(tmp_path, ("doh.lab.invalid",), ("127.0.0.1",), "test CA")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(files.certificate, files.key)
    app = web.Application()
    app.router.add_post("/dns-query", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = runner.addresses[0][1]
    client = ssl.create_default_context(cadata=files.ca_pem.decode())
    config = ProbeConfig(bind_interface="lo")
    try:
        connector = doh_connector(config, BoundResolver([], "lo"), client)
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.post(
                f"https://127.0.0.1:{port}/dns-query",
                data=doh_wire_query("chat.lab.invalid"),
                headers={"content-type": "application/dns-message"},
            ) as response,
        ):
            assert response.status == 200
        assert seen == [b"127.0.0.1"]
        away = doh_connector(ProbeConfig(bind_interface="nosuchif0"), BoundResolver([], None))
        async with aiohttp.ClientSession(connector=away) as session:
            with pytest.raises(aiohttp.ClientError):
                await session.post(f"https://127.0.0.1:{port}/dns-query", data=b"")
    finally:
        await runner.cleanup()


def test_routing_rules_follow_the_side_around_the_vpn() -> None:
    """Behind a VPN that carries every call, what the rules must send through it is what is
    blocked without it."""
    from callpath.core.cli.rules import blocked_from_messengers

    report = _two_sided_report()
    direct_only = [m for m in report["messengers"] if m["through"] == "direct"]
    assert "whatsapp" not in blocked_from_messengers(direct_only)  # through the VPN: works
    blocked = blocked_from_messengers(report["messengers"])
    assert blocked["whatsapp"] == {"calls"} and blocked["telegram"] == {"calls"}
    assert "signal" not in blocked  # TCP-only around the VPN is not a block


async def test_quic_leaves_by_the_bound_interface() -> None:
    _need_binding()
    from callpath.core.probes.quic import probe_quic
    from callpath.core.servers.control_server import ControlServer

    async with ControlServer() as server:
        await server.start("127.0.0.2", udp_port=None, tcp_bulk_port=None)
        assert server.quic_address is not None
        bound = ProbeConfig(bind_interface="lo", quic_timeout_s=1.5, connect_timeout_s=1.5)
        quic = await probe_quic(server.quic_address, "callpath.test", bound)
        assert quic.evidence["target_ok"] and quic.evidence["neutral_ok"], quic.evidence
        away = ProbeConfig(bind_interface="nosuchif0", quic_timeout_s=1.0)
        assert (await probe_quic(server.quic_address, "callpath.test", away)).failure is not None


async def test_tls_leaves_by_the_bound_interface(tmp_path: Path) -> None:
    _need_binding()
    from callpath.core.lab.certificates import write_lab_certificates
    from callpath.core.probes.tls import probe_tls

    files = write_lab_certificates(tmp_path, ("chat.lab.invalid",), (), "test CA")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(files.certificate, files.key)
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0, ssl=context)
    address = ("127.0.0.1", int(server.sockets[0].getsockname()[1]))
    expected = ssl.create_default_context(cadata=files.ca_pem.decode())
    try:
        bound = ProbeConfig(bind_interface="lo", connect_timeout_s=1.5, tls_timeout_s=1.5)
        tls = await probe_tls(address, "chat.lab.invalid", bound, verify_context=expected)
        assert tls.failure is None, tls.evidence
        away = replace(bound, bind_interface="nosuchif0")
        tls = await probe_tls(address, "chat.lab.invalid", away, verify_context=expected)
        assert tls.failure is not None and tls.evidence["target"]["phase"] == "tcp_connect"
    finally:
        server.close()
