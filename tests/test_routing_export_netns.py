"""Real sing-box, V2Ray and mihomo route with the exported rules, in namespaces the test creates.

Two namespaces joined by a veth pair; every address lives inside them. The "client" namespace
runs the tool under test with a SOCKS5 (mixed) inbound, a direct outbound, a SOCKS5 outbound to
the "proxy", and that tool's export of the rules. The "far" namespace holds the proxy (a sing-box
on 10.213.0.3 whose direct outbound leaves from that address) and a UDP server on two addresses:
one inside the test catalogue's call range 10.213.5.0/24 (a private range that exists only here;
no real messenger address is used) and one outside it (10.213.6.7). The server answers each
datagram with the source address it saw, so the answer says which way the packet went:
10.213.0.3 through the proxy, 10.213.0.1 straight from the client.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from callpath.core.messengers.catalog import parse_entry
from callpath.core.messengers.routing_export import ExportFormat, export_rules
from tests.routing_tools import mihomo_binary, sing_box_binary
from tests.servers import require_binary

pytestmark = [pytest.mark.root, pytest.mark.slow]

CLIENT_ADDRESS = "10.213.0.1"
FAR_ADDRESS = "10.213.0.2"
PROXY_ADDRESS = "10.213.0.3"
CALL_TARGET = "10.213.5.7"  # inside the catalogue's call range
OTHER_TARGET = "10.213.6.7"  # outside every range
PROXY_PORT = 1080
MIXED_PORT = 10808

LAB_ENTRY = """\
version: 2
id: lab-chat
name: Lab chat
certainty: strong
signalling: []
relays: []
address_ranges:
  - networks: [10.213.5.0/24]
    proto: udp
    ports: [3478, 3480]
    calls_only: true
    source: this test
    observed: 2026-12-01
"""

RECEIVER = """
import socket, sys
socks = []
for port in (3478, 3480, 4000):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    socks.append(s)
print("ready", flush=True)
import selectors
sel = selectors.DefaultSelector()
for s in socks:
    sel.register(s, selectors.EVENT_READ)
while True:
    for key, _ in sel.select():
        data, peer = key.fileobj.recvfrom(2048)
        key.fileobj.sendto(peer[0].encode(), peer)
"""

SOCKS_CLIENT = """
import json, socket, struct, sys, time
def wait(host, port):
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection((host, port), 0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
wait("127.0.0.1", %(mixed)d)
wait("%(proxy)s", %(proxy_port)d)
def associate():
    control = socket.create_connection(("127.0.0.1", %(mixed)d), 5)
    control.sendall(b"\\x05\\x01\\x00")
    assert control.recv(2) == b"\\x05\\x00"
    control.sendall(b"\\x05\\x03\\x00\\x01" + bytes(4) + bytes(2))
    reply = control.recv(10)
    assert reply[1] == 0, reply
    relay = (socket.inet_ntoa(reply[4:8]), struct.unpack("!H", reply[8:10])[0])
    if relay[0] == "0.0.0.0":
        relay = ("127.0.0.1", relay[1])
    return control, relay
seen = {}
for target in json.loads(sys.argv[1]):
    # One association per destination: sing-box routes a UDP session by its first packet.
    control, relay = associate()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.settimeout(3)
    host, port = target
    header = b"\\x00\\x00\\x00\\x01" + socket.inet_aton(host) + struct.pack("!H", port)
    answer = None
    for attempt in range(3):
        udp.sendto(header + b"which way?", relay)
        try:
            data, _ = udp.recvfrom(2048)
            answer = data[10:].decode()
            break
        except socket.timeout:
            continue
    seen[f"{host}:{port}"] = answer
    udp.close()
    control.close()
print(json.dumps(seen))
"""


def _run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, text=True)


@pytest.fixture
def namespaces() -> Iterator[tuple[str, str]]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root and iproute2")
    tag = f"{os.getpid() % 100000}"
    client, far = f"cprx-c-{tag}", f"cprx-f-{tag}"
    veth_client, veth_far = f"cpxc{tag}", f"cpxf{tag}"
    try:
        _run("ip", "netns", "add", client)
        _run("ip", "netns", "add", far)
        _run("ip", "link", "add", veth_client, "netns", client, "type", "veth", "peer", "name",
             veth_far, "netns", far)  # fmt: skip
        for ns in (client, far):
            _run("ip", "-n", ns, "link", "set", "lo", "up")
        _run("ip", "-n", client, "addr", "add", f"{CLIENT_ADDRESS}/24", "dev", veth_client)
        _run("ip", "-n", client, "link", "set", veth_client, "up")
        for network in ("10.213.5.0/24", "10.213.6.0/24"):
            _run("ip", "-n", client, "route", "add", network, "via", FAR_ADDRESS)
        _run("ip", "-n", far, "addr", "add", f"{FAR_ADDRESS}/24", "dev", veth_far)
        _run("ip", "-n", far, "addr", "add", f"{PROXY_ADDRESS}/24", "dev", veth_far)
        _run("ip", "-n", far, "link", "set", veth_far, "up")
        for address in (CALL_TARGET, OTHER_TARGET):
            _run("ip", "-n", far, "addr", "add", f"{address}/32", "dev", "lo")
        yield client, far
    finally:
        for ns in (client, far):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


class Started:
    def __init__(self) -> None:
        self.processes: list[tuple[subprocess.Popen[str], Path | None]] = []

    def start(self, command: list[str], log: Path | None = None) -> subprocess.Popen[str]:
        if log is None:
            process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        else:
            with log.open("w") as out:
                process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, text=True)
        self.processes.append((process, log))
        return process

    def stop(self) -> str:
        logs = []
        for process, log in self.processes:
            process.kill()
            process.wait(5)
            if process.stdout is not None:
                process.stdout.close()
            if log is not None:
                logs.append(f"--- {log.name}\n{log.read_text()[-3000:]}")
        return "\n".join(logs)


def exported(format: ExportFormat) -> str:
    entry = parse_entry(LAB_ENTRY, "lab-chat.yaml")
    return export_rules(
        [entry], {"lab-chat": {"calls"}}, format=format, outbound="proxy",
        outbound_has_udp=True, today=dt.date(2026, 12, 7),
    ).text  # fmt: skip


def sing_box_client(folder: Path) -> list[str]:
    rules = folder / "rules.json"
    rules.write_text(exported(ExportFormat.SING_BOX))
    base = folder / "client.json"
    base.write_text(
        json.dumps(
            {
                "log": {"level": "debug"},
                "inbounds": [
                    {"type": "mixed", "tag": "in", "listen": "127.0.0.1",
                     "listen_port": MIXED_PORT}
                ],
                "outbounds": [
                    {"type": "direct", "tag": "direct"},
                    {"type": "socks", "tag": "proxy", "server": PROXY_ADDRESS,
                     "server_port": PROXY_PORT, "version": "5"},
                ],
                "route": {"final": "direct"},
            }
        )
    )  # fmt: skip
    return [sing_box_binary(), "run", "-c", str(base), "-c", str(rules)]


def v2ray_client(folder: Path) -> list[str]:
    binary = require_binary("v2ray", "v2ray")
    rules = folder / "rules.json"
    rules.write_text(exported(ExportFormat.XRAY))
    base = folder / "client.json"
    base.write_text(
        json.dumps(
            {
                "log": {"loglevel": "debug"},
                "inbounds": [
                    {"listen": "127.0.0.1", "port": MIXED_PORT, "protocol": "socks",
                     "settings": {"udp": True, "ip": "127.0.0.1"}}
                ],
                "outbounds": [
                    {"protocol": "freedom", "tag": "direct"},
                    {"protocol": "socks", "tag": "proxy",
                     "settings": {"servers": [{"address": PROXY_ADDRESS, "port": PROXY_PORT}]}},
                ],
            }
        )
    )  # fmt: skip
    return [binary, "-config", str(base), "-config", str(rules)]


def mihomo_client(folder: Path) -> list[str]:
    binary = mihomo_binary(folder)
    rules = yaml.safe_load(exported(ExportFormat.CLASH))["rules"]
    config = {
        "mixed-port": MIXED_PORT,
        "bind-address": "127.0.0.1",
        "allow-lan": False,
        "mode": "rule",
        "log-level": "debug",
        "proxies": [
            {"name": "proxy", "type": "socks5", "server": PROXY_ADDRESS, "port": PROXY_PORT,
             "udp": True}
        ],
        "rules": [*rules, "MATCH,DIRECT"],
    }  # fmt: skip
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return [binary, "-d", str(folder), "-f", str(path)]


CLIENTS = {"sing-box": sing_box_client, "v2ray": v2ray_client, "mihomo": mihomo_client}


@pytest.mark.parametrize("client_tool", sorted(CLIENTS))
def test_a_call_range_packet_leaves_through_the_proxy_another_goes_direct(
    namespaces: tuple[str, str], tmp_path: Path, client_tool: str
) -> None:
    client, far = namespaces
    client_command = CLIENTS[client_tool](tmp_path)
    proxy = tmp_path / "proxy.json"
    proxy.write_text(
        json.dumps(
            {
                "log": {"level": "debug"},
                "inbounds": [
                    {"type": "socks", "tag": "in", "listen": PROXY_ADDRESS,
                     "listen_port": PROXY_PORT}
                ],
                "outbounds": [
                    {"type": "direct", "tag": "out", "inet4_bind_address": PROXY_ADDRESS}
                ],
            }
        )
    )  # fmt: skip
    started = Started()
    try:
        receiver = started.start(["ip", "netns", "exec", far, sys.executable, "-c", RECEIVER])
        assert receiver.stdout is not None and receiver.stdout.readline().strip() == "ready"
        started.start(
            ["ip", "netns", "exec", far, sing_box_binary(), "run", "-c", str(proxy)],
            tmp_path / "proxy.log",
        )
        started.start(["ip", "netns", "exec", client, *client_command], tmp_path / "client.log")
        script = SOCKS_CLIENT % {
            "mixed": MIXED_PORT, "proxy": PROXY_ADDRESS, "proxy_port": PROXY_PORT,
        }  # fmt: skip
        targets = [[CALL_TARGET, 3478], [CALL_TARGET, 3480], [OTHER_TARGET, 3478],
                   [CALL_TARGET, 4000]]  # fmt: skip
        probe = subprocess.run(
            ["ip", "netns", "exec", client, sys.executable, "-c", script, json.dumps(targets)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert probe.returncode == 0, probe.stderr
        seen = json.loads(probe.stdout)
    finally:
        logs = started.stop()
    assert seen == {
        f"{CALL_TARGET}:3478": PROXY_ADDRESS,  # the call range on a call port: the proxy
        f"{CALL_TARGET}:3480": PROXY_ADDRESS,
        f"{OTHER_TARGET}:3478": CLIENT_ADDRESS,  # another address: direct
        f"{CALL_TARGET}:4000": CLIENT_ADDRESS,  # the call range on another port: direct
    }, logs


DIRECT_CLIENT = """
import json, socket, sys
seen = {}
for host, port in json.loads(sys.argv[1]):
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.settimeout(1.0)
    answer = None
    for attempt in range(2):
        try:
            udp.sendto(b"which way?", (host, port))
        except PermissionError:  # a drop in the output hook refuses the send
            answer = "dropped"
            break
        try:
            answer = udp.recvfrom(2048)[0].decode()
            break
        except socket.timeout:
            continue
    seen[f"{host}:{port}"] = answer
    udp.close()
print(json.dumps(seen))
"""


@pytest.mark.parametrize(
    "match",
    [
        "ip daddr . meta l4proto . th dport @messengers_v4",
        "ip daddr @messengers_v4_addr udp dport @messengers_udp_ports",
    ],
)
def test_nftables_sets_match_the_call_range_packets(
    namespaces: tuple[str, str], tmp_path: Path, match: str
) -> None:
    """The exported sets, loaded into the client namespace and used by a rule that drops what
    they match: the call range's call ports go unanswered, everything else is answered."""
    nft = shutil.which("nft") or pytest.fail("nft is missing (Debian nftables)")
    client, far = namespaces
    table = tmp_path / "rules.nft"
    table.write_text(exported(ExportFormat.NFTABLES))
    _run("ip", "netns", "exec", client, nft, "-f", str(table))
    _run("ip", "netns", "exec", client, nft, "add chain inet callpath out "
         "{ type filter hook output priority 0 ; }")  # fmt: skip
    _run("ip", "netns", "exec", client, nft, f"add rule inet callpath out {match} counter drop")
    started = Started()
    try:
        receiver = started.start(["ip", "netns", "exec", far, sys.executable, "-c", RECEIVER])
        assert receiver.stdout is not None and receiver.stdout.readline().strip() == "ready"
        targets = [[CALL_TARGET, 3478], [CALL_TARGET, 3480], [OTHER_TARGET, 3478],
                   [CALL_TARGET, 4000]]  # fmt: skip
        probe = subprocess.run(
            ["ip", "netns", "exec", client, sys.executable, "-c", DIRECT_CLIENT,
             json.dumps(targets)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert probe.returncode == 0, probe.stderr
    finally:
        started.stop()
    assert json.loads(probe.stdout) == {
        f"{CALL_TARGET}:3478": "dropped",  # matched by the sets
        f"{CALL_TARGET}:3480": "dropped",
        f"{OTHER_TARGET}:3478": CLIENT_ADDRESS,
        f"{CALL_TARGET}:4000": CLIENT_ADDRESS,
    }
