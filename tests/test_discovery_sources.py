"""Where proxies and VPNs are found: clients' default ports, system settings, clients' files,
tunnel interfaces (pure parsing and analysis; the real ones are in test_discovery_namespace)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from callpath.core.discovery.clients import ClientDataError, load_client_data, parse_client_data
from callpath.core.discovery.system_settings import (
    SOURCE_CONFIG,
    SOURCE_GNOME,
    SOURCE_KDE,
    NamedProxy,
    config_file_proxies,
    from_clash_config,
    from_gsettings,
    from_kioslaverc,
    from_scutil,
    from_sing_box_config,
    from_windows_proxy_server,
    from_xray_config,
    system_proxies,
)
from callpath.core.discovery.tunnels import ARPHRD_NONE, Interface, analyse


def test_shipped_client_data_names_todays_clients() -> None:
    data = load_client_data()
    ports = data.default_ports()
    for port in (1080, 10808, 10809, 2080, 7890, 7897, 12334, 9050, 9150, 8118, 3128, 8888):
        assert port in ports
    assert data.clients_on(8888, "http") == ("tinyproxy",)
    assert data.clients_on(7890, "socks5") == ("Clash / mihomo",)  # a mixed port
    assert data.clients_on(7891, "http") == ()
    assert all(client.source for client in data.clients)
    hint = data.client_of_interface("outline-tun0")
    assert hint is not None and hint.client == "Outline"
    assert data.client_of_interface("eth0") is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("version: 2\nclients: []\ninterfaces: []\n", "version: 1"),
        ("version: 1\nclients: {}\ninterfaces: []\n", "clients must be a list"),
        (
            "version: 1\nclients: [{name: x, kind: ftp, port: 1, source: s}]\ninterfaces: []\n",
            "kind",
        ),
        (
            "version: 1\nclients: [{name: x, kind: http, port: 0, source: s}]\ninterfaces: []\n",
            "port",
        ),
        ("version: 1\nclients: [\n", "not valid YAML"),
    ],
)
def test_client_data_errors_name_the_file(text: str, message: str) -> None:
    with pytest.raises(ClientDataError, match=message) as raised:
        parse_client_data(text, "clients.yaml")
    assert str(raised.value).startswith("clients.yaml")


def test_gnome_manual_settings() -> None:
    values = {
        "mode": "'manual'",
        "socks.host": "'127.0.0.1'",
        "socks.port": "1080",
        "https.host": "''",
        "https.port": "0",
        "http.host": "'proxy.example'",
        "http.port": "3128",
    }
    assert from_gsettings(values) == [
        NamedProxy("socks5", "127.0.0.1", 1080, SOURCE_GNOME, "org.gnome.system.proxy.socks"),
        NamedProxy("http", "proxy.example", 3128, SOURCE_GNOME, "org.gnome.system.proxy.http"),
    ]
    assert from_gsettings({**values, "mode": "'none'"}) == []


def test_kde_manual_settings_both_spellings() -> None:
    text = (
        "[General]\nfoo=bar\n[Proxy Settings]\nProxyType=1\n"
        "socksProxy=socks://127.0.0.1 7891\nhttpProxy=http://127.0.0.1:8118\n"
    )
    assert from_kioslaverc(text, "kioslaverc") == [
        NamedProxy("socks5", "127.0.0.1", 7891, SOURCE_KDE, "kioslaverc socksProxy"),
        NamedProxy("http", "127.0.0.1", 8118, SOURCE_KDE, "kioslaverc httpProxy"),
    ]
    assert from_kioslaverc(text.replace("ProxyType=1", "ProxyType=0"), "k") == []


def test_windows_and_macos_settings() -> None:
    assert [(p.kind, p.port) for p in from_windows_proxy_server(True, "127.0.0.1:10809")] == [
        ("http", 10809)
    ]
    per_protocol = from_windows_proxy_server(True, "http=127.0.0.1:8080;socks=127.0.0.1:1080")
    assert [(p.kind, p.port) for p in per_protocol] == [("http", 8080), ("socks5", 1080)]
    assert from_windows_proxy_server(False, "127.0.0.1:8080") == []
    scutil = "<dictionary> {\n  SOCKSEnable : 1\n  SOCKSPort : 7890\n  SOCKSProxy : 127.0.0.1\n}"
    assert [(p.kind, p.host, p.port) for p in from_scutil(scutil)] == [
        ("socks5", "127.0.0.1", 7890)
    ]


def test_clients_configuration_files() -> None:
    sing_box = {
        "inbounds": [
            {"type": "mixed", "listen": "127.0.0.1", "listen_port": 2080},
            {"type": "tun", "interface_name": "sing-box"},
            {"type": "socks", "listen": "::", "listen_port": 2081},
        ]
    }
    assert [(p.kind, p.host, p.port) for p in from_sing_box_config(sing_box, "c.json")] == [
        ("socks5", "127.0.0.1", 2080),
        ("http", "127.0.0.1", 2080),
        ("socks5", "127.0.0.1", 2081),
    ]
    xray = {"inbounds": [{"protocol": "socks", "port": 10808, "listen": "127.0.0.1"}]}
    assert [(p.kind, p.port) for p in from_xray_config(xray, "x.json")] == [("socks5", 10808)]
    clash = {"mixed-port": 7897, "socks-port": 7891, "port": "x", "bind-address": "*"}
    assert [(p.kind, p.port) for p in from_clash_config(clash, "c.yaml")] == [
        ("socks5", 7897),
        ("http", 7897),
        ("socks5", 7891),
    ]
    assert from_sing_box_config({"inbounds": "nope"}, "c.json") == []
    assert from_clash_config(["not", "a", "mapping"], "c.yaml") == []


def test_config_files_read_safely(tmp_path: Path) -> None:
    good = tmp_path / "config.json"
    good.write_text(json.dumps({"inbounds": [{"type": "http", "listen_port": 23456}]}))
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    huge = tmp_path / "huge.yaml"
    huge.write_text("port: 1\n" + "#" * (2 * 1024 * 1024))
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000)
    paths = [("sing-box", p) for p in (good, broken, huge, deep, tmp_path / "missing.json")]
    found = config_file_proxies(paths)
    assert found == [NamedProxy("http", "127.0.0.1", 23456, SOURCE_CONFIG, str(good), "sing-box")]


def test_system_settings_reader_asks_gsettings_and_kde(tmp_path: Path) -> None:
    answers = {
        "mode": "'manual'",
        "host": "'127.0.0.1'",
        "port": "9150",
    }

    def runner(argv: list[str] | tuple[str, ...]) -> str | None:
        schema, key = argv[2], argv[3]
        if key == "mode":
            return answers["mode"]
        return answers[key] if schema.endswith(".socks") else "''" if key == "host" else "0"

    (tmp_path / ".config").mkdir()
    (tmp_path / ".config" / "kioslaverc").write_text(
        "[Proxy Settings]\nProxyType=1\nhttpsProxy=http://127.0.0.1 8888\n"
    )
    found = system_proxies(home=tmp_path, runner=runner, platform="linux")
    assert [(p.source, p.kind, p.port) for p in found] == [
        (SOURCE_GNOME, "socks5", 9150),
        (SOURCE_KDE, "http", 8888),
    ]
    assert system_proxies(home=tmp_path, runner=lambda argv: None, platform="linux") == [
        NamedProxy(
            "http", "127.0.0.1", 8888, SOURCE_KDE, f"{tmp_path}/.config/kioslaverc httpsProxy"
        )
    ]


def _interfaces() -> list[Interface]:
    return [
        Interface("lo", 772, False, None, True),
        Interface("eth0", 1, False, None, True),
        Interface("wg0", ARPHRD_NONE, False, "wireguard", True),
        Interface("tun7", ARPHRD_NONE, True, None, True),
    ]


def test_vpn_carrying_the_default_route_is_named() -> None:
    routes = {"192.0.2.1": "wg0", "198.51.100.7": "tun7", "203.0.113.9": "eth0"}
    situation = analyse(
        _interfaces(),
        routes.get,
        addresses=("198.51.100.7", "203.0.113.9"),
        privileged=True,
        platform="linux",
    )
    vpn = situation.vpn
    assert vpn is not None and (vpn.name, vpn.kind, vpn.client) == ("wg0", "wireguard", "WireGuard")
    tun = next(t for t in situation.tunnels if t.name == "tun7")
    assert not tun.default_route and tun.routes_to == ("198.51.100.7",)
    assert situation.physical_interface == "eth0"
    assert situation.can_go_around and situation.around_refused is None
    assert situation.to_dict()["vpn_interface"] == "wg0"


@pytest.mark.parametrize(
    ("privileged", "platform", "reason"),
    [(False, "linux", "around_not_root"), (True, "darwin", "around_platform")],
)
def test_only_the_vpn_side_when_going_around_is_not_possible(
    privileged: bool, platform: str, reason: str
) -> None:
    situation = analyse(
        _interfaces(), {"192.0.2.1": "wg0"}.get, privileged=privileged, platform=platform
    )
    assert situation.vpn is not None
    assert not situation.can_go_around and situation.around_refused == reason


def test_no_vpn_no_claim() -> None:
    situation = analyse(_interfaces(), {"192.0.2.1": "eth0"}.get, privileged=True)
    assert situation.vpn is None and not situation.can_go_around
    assert situation.around_refused is None
    assert situation.default_interface == "eth0"
