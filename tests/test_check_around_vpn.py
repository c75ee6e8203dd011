"""The messenger check behind a VPN, both through it and around it (issue 26's "Done when").

Two network namespaces the test creates, joined by one veth pair (10.231.0.0/30):

- "client": the user's machine. A sing-box TUN device (``tun0``, the VPN) carries the default
  route (metric 100); the veth is the physical interface, with a worse default route (metric
  200) that only sockets bound to it take. sing-box sends what enters the TUN, over
  Shadowsocks, to the far namespace (its outbound leaves by the veth to 10.231.0.2).
- "far": the rest of the world. A sing-box Shadowsocks server whose direct outbound reaches the
  lab's messenger and reference stand-ins, a DNS server and a DoH server, all on local routes of
  this namespace (10.232.0.0/16 messengers, 10.233.0.0/16 references). The censor is nftables
  there: UDP arriving straight from the client over the veth towards the messengers
  (the calls) is dropped; what arrives through the VPN's server is not.

So calls work through the VPN and are blocked around it, while messages work on both sides. The
check runs in the client namespace as root (both sides measured, with those answers) and with
CAP_NET_RAW dropped (only the VPN side, and why). Nothing leaves the two namespaces.
"""

from __future__ import annotations

import ipaddress
import json
import os
import platform
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from callpath.core.checkup.document import validate_check_report
from callpath.core.lab.standins import StandinTable
from callpath.core.messengers.catalog import load_catalog
from tests.refuse_bind_to_device import ARCHITECTURES
from tests.routing_tools import sing_box_binary
from tests.servers import NAMESPACE_PREFIX, ServerProcess, require_binary

pytestmark = [pytest.mark.root, pytest.mark.servers, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
CLIENT_ADDRESS = "10.231.0.1"
FAR_ADDRESS = "10.231.0.2"
VPN_PORT = 8388
VPN_PASSWORD = "callpath-test"
TUN = "tun0"
CENSORED = ipaddress.ip_network("10.232.0.0/16")  # the messengers' stand-ins (netns_check.py)


@dataclass(frozen=True)
class VpnWorld:
    client: str  # namespace names
    far: str
    physical: str  # the client's veth end
    table: Path  # where the stand-ins listen (tests/netns_check.py serve)
    workdir: Path


def _ip(*arguments: str) -> None:
    subprocess.run(["ip", *arguments], check=True, capture_output=True, timeout=10)


def _in(namespace: str, argv: list[str]) -> list[str]:
    return ["ip", "netns", "exec", namespace, *argv]


def _python(
    namespace: str, *arguments: str, drop_net_raw: bool = False, refuse_bind: bool = False
) -> list[str]:
    argv = ["env", f"PYTHONPATH={ROOT}", sys.executable, "-m", "tests.netns_check", *arguments]
    if refuse_bind:  # as a kernel before 5.7 does for a user without CAP_NET_RAW
        argv = [sys.executable, str(ROOT / "tests" / "refuse_bind_to_device.py"), *argv]
    if drop_net_raw:
        argv = ["setpriv", "--inh-caps=-net_raw", "--bounding-set=-net_raw", *argv]
    return _in(namespace, argv)


def _write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(json.dumps(data), "utf-8")
    return path


def _has_link(namespace: str, name: str) -> bool:
    result = subprocess.run(
        ["ip", "-n", namespace, "link", "show", name], capture_output=True, timeout=10, check=False
    )
    return result.returncode == 0


CENSOR = """
table inet callpath_censor {{
  chain input {{
    type filter hook input priority 0; policy accept;
    iifname "{veth}" ip daddr 10.232.0.0/16 meta l4proto udp drop
  }}
}}
"""


@pytest.fixture(scope="module")
def vpn_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VpnWorld]:
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    require_binary("ip", "iproute2")
    require_binary("nft", "nftables")
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is missing")
    sing_box = sing_box_binary()
    workdir = tmp_path_factory.mktemp("around-vpn")
    tag = secrets.token_hex(3)
    client = f"{NAMESPACE_PREFIX}-{os.getpid()}-{tag}c"
    far = f"{NAMESPACE_PREFIX}-{os.getpid()}-{tag}f"
    veth_client, veth_far = f"cpa{tag}c", f"cpa{tag}f"
    processes: list[ServerProcess] = []
    _ip("netns", "add", client)
    try:
        _ip("netns", "add", far)
        _ip("link", "add", veth_client, "type", "veth", "peer", "name", veth_far)
        _ip("link", "set", veth_client, "netns", client)
        _ip("link", "set", veth_far, "netns", far)
        ends = ((client, veth_client, CLIENT_ADDRESS), (far, veth_far, FAR_ADDRESS))
        for namespace, veth, address in ends:
            _ip("-n", namespace, "addr", "add", f"{address}/30", "dev", veth)
            _ip("-n", namespace, "link", "set", veth, "up")
            _ip("-n", namespace, "link", "set", "lo", "up")
        for network in ("10.232.0.0/16", "10.233.0.0/16"):
            _ip("-n", far, "route", "add", "local", network, "dev", "lo")
        subprocess.run(
            _in(far, ["nft", "-f", "-"]),
            input=CENSOR.format(veth=veth_far),
            text=True,
            check=True,
            timeout=10,
        )
        shadowsocks = {"method": "aes-128-gcm", "password": VPN_PASSWORD}
        server = _write(
            workdir / "vpn-server.json",
            {
                "log": {"level": "error"},
                "inbounds": [
                    {"type": "shadowsocks", "listen": FAR_ADDRESS, "listen_port": VPN_PORT}
                    | shadowsocks
                ],
                "outbounds": [{"type": "direct"}],
            },
        )
        processes.append(
            ServerProcess("vpn-server", _in(far, [sing_box, "run", "-c", str(server)]), workdir)
        )
        vpn = _write(
            workdir / "vpn-client.json",
            {
                "log": {"level": "error"},
                "inbounds": [
                    {
                        "type": "tun",
                        "interface_name": TUN,
                        "address": ["172.19.0.1/30"],
                        "auto_route": False,
                        "stack": "gvisor",
                    }
                ],
                "outbounds": [
                    {"type": "shadowsocks", "server": FAR_ADDRESS, "server_port": VPN_PORT}
                    | shadowsocks
                ],
                "route": {"default_interface": veth_client},
            },
        )
        processes.append(
            ServerProcess("vpn-client", _in(client, [sing_box, "run", "-c", str(vpn)]), workdir)
        )
        processes[-1].wait_ready(lambda: _has_link(client, TUN))
        _ip("-n", client, "route", "add", "default", "dev", TUN, "metric", "100")
        _ip(
            "-n", client, "route", "add", "default",
            "via", FAR_ADDRESS, "dev", veth_client, "metric", "200",
        )  # fmt: skip
        table = workdir / "standins.json"
        processes.append(ServerProcess("standins", _python(far, "serve", str(table)), workdir))
        processes[-1].wait_ready(table.exists, timeout=60)
        yield VpnWorld(client, far, veth_client, table, workdir)
    finally:
        for process in processes:
            process.stop()
        for namespace in (client, far):
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, check=False)


def _check(
    world: VpnWorld, name: str, *, drop_net_raw: bool = False, refuse_bind: bool = False
) -> tuple[dict[str, Any], str]:
    out = world.workdir / f"{name}.json"
    argv = _python(
        world.client,
        "check",
        str(world.table),
        str(out),
        drop_net_raw=drop_net_raw,
        refuse_bind=refuse_bind,
    )
    result = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
        env={**os.environ, "COLUMNS": "160"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(out.read_text("utf-8"))
    validate_check_report(report)
    return report, result.stdout


def _censored(table: StandinTable, host: str, port: int) -> bool:
    """Whether the far namespace's censor drops UDP to this catalogue endpoint's stand-in."""
    address = table.direct(table.names[host][0] if host in table.names else host, port, "stun")[0]
    return ipaddress.ip_address(address) in CENSORED


def _by_route(report: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(m["id"], m["through"]): m for m in report["messengers"]}


def test_as_root_both_sides_are_measured_and_differ(vpn_world: VpnWorld) -> None:
    report, text = _check(vpn_world, "root")
    assert report["check_version"] == 2
    route = report["route"]
    assert route["vpn_interface"] == TUN and route["vpn_kind"] == "tun"
    assert route["physical_interface"] == vpn_world.physical and route["can_go_around"]
    around = report["around_vpn"]
    assert around["interface"] == vpn_world.physical
    assert around["network"] == "online" and around["udp"] == "works"  # public STUN passes
    # Names were looked up around the VPN too: the far DNS and DoH, from the bound sockets.
    assert all(lookup["system"] and lookup["doh"] for lookup in around["dns"]), around["dns"]
    results = _by_route(report)
    table = StandinTable.from_dict(json.loads(vpn_world.table.read_text("utf-8"))["standins"])
    blocked = 0
    for entry in [e for e in load_catalog() if any(r.proto == "stun" for r in e.relays)]:
        through, outside = results[(entry.id, "direct")], results[(entry.id, "around-vpn")]
        assert through["messages"] == "works" and outside["messages"] == "works", entry.id
        assert through["calls"] == "works", (entry.id, through)
        if not all(_censored(table, r.host, r.port) for r in entry.relays if r.proto == "stun"):
            # Its call relay is a public STUN server too (Google's): the censor lets it be.
            assert outside["calls"] == "works", (entry.id, outside)
            continue
        tcp_fallback = any(r.proto != "stun" for r in entry.relays)
        assert outside["calls"] == ("tcp_only" if tcp_fallback else "blocked"), (entry.id, outside)
        udp = [
            attempt["failure"]
            for endpoint in outside["endpoints"]
            if endpoint["proto"] == "stun"
            for attempt in endpoint["attempts"]
        ]
        assert udp and all(f == "stun_no_response" for f in udp), (entry.id, udp)
        if not tcp_fallback:
            blocked += 1
            line = f"Without your VPN {entry.name} calls are blocked; through it ({TUN}) they work."
            assert line in text, text
    assert blocked >= 2  # WhatsApp and Telegram among them
    assert "Measured through your VPN (tun0, TUN device)." in text
    assert f"Also measured around your VPN, via {vpn_world.physical}" in text
    assert "Only the VPN side" not in text


def _kernel_allows_unprivileged_binding() -> bool:
    major, minor = (int(part) for part in platform.release().split(".")[:2])
    return (major, minor) >= (5, 7)


def test_without_net_raw_a_current_kernel_still_lets_both_sides_be_measured(
    vpn_world: VpnWorld,
) -> None:
    if not _kernel_allows_unprivileged_binding():
        pytest.skip("Linux before 5.7 binds sockets to a device for CAP_NET_RAW only")
    report, text = _check(vpn_world, "unprivileged", drop_net_raw=True)
    route = report["route"]
    assert route["can_go_around"] and route["around_refused"] is None
    assert report["around_vpn"]["interface"] == vpn_world.physical
    assert {m["through"] for m in report["messengers"]} == {"direct", "around-vpn"}
    assert f"calls are blocked; through it ({TUN}) they work." in text
    assert "Only the VPN side" not in text


def test_where_the_kernel_refuses_the_bind_only_the_vpn_side_with_the_reason(
    vpn_world: VpnWorld,
) -> None:
    if platform.machine() not in ARCHITECTURES:
        pytest.skip(f"no seccomp filter written for {platform.machine()}")
    report, text = _check(vpn_world, "refused", drop_net_raw=True, refuse_bind=True)
    route = report["route"]
    assert route["vpn_interface"] == TUN
    assert not route["can_go_around"] and route["around_refused"] == "around_not_root"
    assert "around_vpn" not in report
    assert {m["through"] for m in report["messengers"]} == {"direct"}
    relays = {e.id for e in load_catalog() if e.relays}
    assert all(m["calls"] == "works" for m in report["messengers"] if m["id"] in relays)
    assert "Measured through your VPN (tun0, TUN device)." in text
    assert "Only the VPN side can be measured: going around the VPN needs root" in text
    assert "Without your VPN" not in text
