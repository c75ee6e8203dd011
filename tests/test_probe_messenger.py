"""The messenger endpoint catalogue (assets/targets) and ``probe_messenger`` against lab stand-ins:
an entry file written here that points at servers on 127.0.0.2 (a TCP listener, the control
server's UDP echo with STUN) and, for blocking, the lab middlebox on 127.0.0.3. The real
messenger endpoints are never contacted."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from callpath.core.lab.middlebox import Middlebox
from callpath.core.lab.rules import Censor, DropUdp
from callpath.core.messengers.catalog import (
    CatalogError,
    Certainty,
    load_catalog,
    load_entry,
    parse_entry,
)
from callpath.core.probes import ProbeConfig
from callpath.core.probes.messenger import Reachability, probe_messenger
from callpath.core.servers.control_server import ControlServer

SERVER_HOST = "127.0.0.2"
FAST = ProbeConfig(connect_timeout_s=1.5, stun_attempts=2, stun_wait_s=0.5, dns_timeout_s=1.0)


class TableResolver:
    """Names of the lab stand-ins → loopback addresses; anything else does not exist."""

    def __init__(self, table: dict[str, str]) -> None:
        self.table = table

    async def resolve(self, host: str) -> list[str]:
        if host in self.table:
            return [self.table[host]]
        raise socket.gaierror(socket.EAI_NONAME, "no such name")


def test_bundled_catalogue_loads() -> None:
    entries = {entry.id: entry for entry in load_catalog()}
    assert set(entries) == {
        "whatsapp",
        "telegram",
        "signal",
        "zoom",
        "teams",
        "google-meet",
        "discord",
    }
    assert entries["discord"].certainty is Certainty.WEAK
    signal = entries["signal"]
    assert {(r.host, r.port, r.proto) for r in signal.relays} == {
        ("turn3.voip.signal.org", 3478, "stun"),
        ("turn3.voip.signal.org", 80, "tcp"),
        ("turn3.voip.signal.org", 443, "tls"),
    }
    assert any(r.network == "91.108.4.0/22" for r in entries["telegram"].address_ranges)


GOOD = """\
version: 1
id: lab-chat
name: Lab chat
certainty: strong
signalling:
  - {host: chat.lab.test, port: PORT, proto: tcp}
relays:
  - {host: 127.0.0.2, port: 3478, proto: stun}
"""


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (GOOD.replace("PORT", "70000"), 6, "port must be a number"),
        (GOOD.replace("PORT", "443").replace("proto: stun", "proto: sctp"), 8, "proto must be"),
        (GOOD.replace("PORT", "443").replace("certainty: strong", "certainty: sure"), 4, "strong"),
        (GOOD.replace("PORT", "443") + "colour: blue\n", 9, "unknown key 'colour'"),
        (GOOD.replace("PORT", "443").replace("version: 1", "version: 3"), 1, "version must"),
        (GOOD.replace("PORT", "443").replace("host: chat.lab.test, ", ""), 6, "needs 'host'"),
        ("version: 1\nid: x\n  bad: [", 3, ""),
    ],
)
def test_catalogue_errors_name_file_and_line(text: str, line: int, message: str) -> None:
    with pytest.raises(CatalogError) as raised:
        parse_entry(text, "lab.yaml")
    assert raised.value.file == "lab.yaml" and raised.value.line == line
    assert message in str(raised.value)
    assert str(raised.value).startswith(f"lab.yaml:{line}: ")


@pytest.fixture
async def control() -> AsyncIterator[ControlServer]:
    async with ControlServer() as server:
        await server.start(SERVER_HOST, tcp_bulk_port=None, quic_port=None)
        yield server


@pytest.fixture
async def chat_port() -> AsyncIterator[int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(handle, SERVER_HOST, 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await asyncio.wait_for(server.wait_closed(), 2.0)


def _entry_file(tmp_path: Path, signalling: list[str], relays: list[str]) -> Path:
    lines = ["version: 1", "id: lab-chat", "name: Lab chat", "certainty: strong", "signalling:"]
    lines += [f"  - {item}" for item in signalling] or ["  []"]
    lines += ["relays:"] + ([f"  - {item}" for item in relays] or ["  []"])
    path = tmp_path / "lab-chat.yaml"
    path.write_text("\n".join(lines).replace("signalling:\n  []", "signalling: []") + "\n")
    return path


async def _closed_tcp_port() -> int:
    server = await asyncio.start_server(lambda r, w: None, SERVER_HOST, 0)
    port = int(server.sockets[0].getsockname()[1])
    server.close()
    await server.wait_closed()
    return port


async def test_everything_reachable(tmp_path: Path, control: ControlServer, chat_port: int) -> None:
    assert control.udp_address is not None
    entry = load_entry(
        _entry_file(
            tmp_path,
            [f"{{host: chat.lab.test, port: {chat_port}, proto: tcp}}"],
            [f"{{host: {SERVER_HOST}, port: {control.udp_address[1]}, proto: stun}}"],
        )
    )
    resolver = TableResolver({"chat.lab.test": SERVER_HOST})
    result = await probe_messenger(entry, resolver=resolver, config=FAST)
    assert result.messages is Reachability.WORKS and result.calls is Reachability.WORKS
    assert result.summary == "messages likely work, calls likely work"


async def test_messages_work_calls_blocked(
    tmp_path: Path, control: ControlServer, chat_port: int
) -> None:
    assert control.udp_address is not None
    async with Middlebox(Censor([DropUdp()])) as box:
        relay = await box.expose_udp(control.udp_address)
        entry = load_entry(
            _entry_file(
                tmp_path,
                [f"{{host: {SERVER_HOST}, port: {chat_port}, proto: tcp}}"],
                [f"{{host: {relay[0]}, port: {relay[1]}, proto: stun}}"],
            )
        )
        result = await probe_messenger(entry, resolver=TableResolver({}), config=FAST)
    assert result.messages is Reachability.WORKS
    assert result.calls is Reachability.BLOCKED
    assert result.summary == "messages likely work, calls likely blocked"
    relay_result = next(r for r in result.endpoints if r.role == "relay")
    assert relay_result.probe.failure == "stun_no_response"


async def test_calls_only_over_tcp_fallback_and_unresolvable_signalling(
    tmp_path: Path, control: ControlServer, chat_port: int
) -> None:
    assert control.udp_address is not None
    closed = await _closed_tcp_port()
    async with Middlebox(Censor([DropUdp()])) as box:
        relay = await box.expose_udp(control.udp_address)
        entry = load_entry(
            _entry_file(
                tmp_path,
                [
                    "{host: gone.lab.test, port: 443, proto: tcp}",
                    f"{{host: {SERVER_HOST}, port: {closed}, proto: tcp}}",
                ],
                [
                    f"{{host: {relay[0]}, port: {relay[1]}, proto: stun}}",
                    f"{{host: {SERVER_HOST}, port: {chat_port}, proto: tcp}}",
                ],
            )
        )
        result = await probe_messenger(entry, resolver=TableResolver({}), config=FAST)
    assert result.messages is Reachability.BLOCKED
    assert result.calls is Reachability.TCP_ONLY
    failures = sorted(str(r.probe.failure) for r in result.endpoints if r.role == "signalling")
    assert failures == ["connection_refused", "dns_nxdomain_error"]


async def test_entry_without_relays_says_calls_not_checked(tmp_path: Path, chat_port: int) -> None:
    entry = load_entry(
        _entry_file(tmp_path, [f"{{host: {SERVER_HOST}, port: {chat_port}, proto: tcp}}"], [])
    )
    result = await probe_messenger(entry, resolver=TableResolver({}), config=FAST)
    assert result.calls is Reachability.UNKNOWN
    assert "calls not checked" in result.summary
