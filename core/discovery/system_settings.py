"""Proxies named in the system's settings and in installed clients' configuration files.

Reading only: environment variables, GNOME's ``gsettings``, KDE's ``kioslaverc``, Windows' and
macOS' proxy settings where the app runs there, and the inbounds of sing-box, Xray/V2Ray and
Clash/mihomo configuration files. Parsing is pure (text in, proxies out) so every format is
tested without the desktop or client installed; the readers around it bound every file and
subprocess and treat anything unreadable as "nothing found here".
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

MAX_CONFIG_BYTES = 1024 * 1024
SUBPROCESS_TIMEOUT_S = 2.0
WILDCARD_ADDRESSES = frozenset({"", "0.0.0.0", "::", "[::]", "*", "localhost"})

SOURCE_ENVIRONMENT = "environment"
SOURCE_GNOME = "GNOME settings"
SOURCE_KDE = "KDE settings"
SOURCE_WINDOWS = "Windows settings"
SOURCE_MACOS = "macOS settings"
SOURCE_CONFIG = "config file"


@dataclass(frozen=True)
class NamedProxy:
    """A proxy some setting or file names: not yet contacted."""

    kind: str  # socks5 | http
    host: str
    port: int
    source: str  # one of the SOURCE_* names
    where: str  # the variable, settings key or file that names it
    client: str | None = None  # the client whose configuration it is, when a file tells


# --- system settings ---------------------------------------------------------------------------


def from_gsettings(values: Mapping[str, str]) -> list[NamedProxy]:
    """GNOME: ``values`` maps keys such as ``mode``, ``socks.host``, ``socks.port`` (as
    ``gsettings get org.gnome.system.proxy[.socks] KEY`` prints them, quotes included)."""

    def plain(key: str) -> str:
        return values.get(key, "").strip().strip("'\"")

    if plain("mode") != "manual":
        return []
    found = []
    for section, kind in (("socks", "socks5"), ("https", "http"), ("http", "http")):
        host, port = plain(f"{section}.host"), plain(f"{section}.port")
        if host and port.isdigit() and 0 < int(port) < 65536:
            found.append(
                NamedProxy(kind, host, int(port), SOURCE_GNOME, f"org.gnome.system.proxy.{section}")
            )
    return _unique(found)


def from_kioslaverc(text: str, where: str) -> list[NamedProxy]:
    """KDE: ``[Proxy Settings]`` with ``ProxyType=1`` (manual) and ``socksProxy``/``httpsProxy``/
    ``httpProxy`` written as ``socks://127.0.0.1 1080`` or ``http://host:port``."""
    section: dict[str, str] = {}
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
            continue
        if current == "Proxy Settings" and "=" in line:
            key, _sep, value = line.partition("=")
            section[key.strip()] = value.strip()
    if section.get("ProxyType") != "1":
        return []
    found = []
    for key, kind in (("socksProxy", "socks5"), ("httpsProxy", "http"), ("httpProxy", "http")):
        value = section.get(key, "")
        if " " in value and value.rsplit(" ", 1)[1].isdigit():
            value = value.rsplit(" ", 1)[0] + ":" + value.rsplit(" ", 1)[1]
        parsed = _host_port(value)
        if parsed is not None:
            found.append(NamedProxy(kind, parsed[0], parsed[1], SOURCE_KDE, f"{where} {key}"))
    return _unique(found)


def from_windows_proxy_server(enabled: bool, server: str) -> list[NamedProxy]:
    """Windows: ``ProxyEnable`` and ``ProxyServer`` of Internet Settings, either ``host:port``
    for every protocol or ``http=h:p;https=h:p;socks=h:p``."""
    if not enabled or not server.strip():
        return []
    found = []
    parts = [p for p in server.split(";") if p.strip()]
    for part in parts:
        scheme, _sep, address = part.partition("=") if "=" in part else ("http", "", part)
        kind = "socks5" if scheme.strip().lower() == "socks" else "http"
        if scheme.strip().lower() not in ("http", "https", "socks"):
            continue
        parsed = _host_port(address.strip())
        if parsed is not None:
            found.append(NamedProxy(kind, parsed[0], parsed[1], SOURCE_WINDOWS, "ProxyServer"))
    return _unique(found)


def from_scutil(text: str) -> list[NamedProxy]:
    """macOS: the dictionary ``scutil --proxy`` prints (``SOCKSEnable : 1``, ``SOCKSProxy``…)."""
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition(" : ")
        if sep:
            values[key.strip()] = value.strip()
    found = []
    for prefix, kind in (("SOCKS", "socks5"), ("HTTPS", "http"), ("HTTP", "http")):
        port = values.get(f"{prefix}Port", "")
        host = values.get(f"{prefix}Proxy", "")
        if values.get(f"{prefix}Enable") == "1" and host and port.isdigit():
            found.append(
                NamedProxy(kind, host, int(port), SOURCE_MACOS, f"scutil --proxy {prefix}Proxy")
            )
    return _unique(found)


Runner = Callable[[Sequence[str]], str | None]


def run_quietly(argv: Sequence[str]) -> str | None:
    """A short subprocess's output, or None when it is missing, fails or takes too long."""
    if shutil.which(argv[0]) is None:
        return None
    try:
        result = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout if result.returncode == 0 else None


def system_proxies(
    *,
    home: Path | None = None,
    runner: Runner = run_quietly,
    platform: str = sys.platform,
) -> list[NamedProxy]:
    """Proxies the desktop's settings name (the environment is read by the caller)."""
    home = Path.home() if home is None else home
    found: list[NamedProxy] = []
    if platform.startswith("linux"):
        keys = {"mode": ("org.gnome.system.proxy", "mode")}
        for section in ("socks", "https", "http"):
            for field in ("host", "port"):
                keys[f"{section}.{field}"] = (f"org.gnome.system.proxy.{section}", field)
        values = {}
        for name, (schema, key) in keys.items():
            output = runner(["gsettings", "get", schema, key])
            if output is None:
                break
            values[name] = output
        found += from_gsettings(values)
        kde = home / ".config" / "kioslaverc"
        text = _read_small(kde)
        if text is not None:
            found += from_kioslaverc(text, str(kde))
    elif platform == "darwin":
        output = runner(["scutil", "--proxy"])
        if output is not None:
            found += from_scutil(output)
    elif platform == "win32":
        found += _windows_settings()
    return _unique(found)


def _windows_settings() -> list[NamedProxy]:  # pragma: no cover - runs on Windows only
    try:
        import winreg  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return []
    path = r"Software\Microsoft\Windows\CurrentVersion\Internet Settings"
    try:
        with winreg.OpenKey(winreg.HKEY_CURRENT_USER, path) as key:  # type: ignore[attr-defined,unused-ignore]
            enabled = winreg.QueryValueEx(key, "ProxyEnable")[0]  # type: ignore[attr-defined,unused-ignore]
            server = winreg.QueryValueEx(key, "ProxyServer")[0]  # type: ignore[attr-defined,unused-ignore]
    except OSError:
        return []
    return from_windows_proxy_server(bool(enabled), str(server))


# --- clients' configuration files --------------------------------------------------------------


def default_config_paths(home: Path | None = None) -> list[tuple[str, Path]]:
    """(client, file) where sing-box, Xray/V2Ray and Clash/mihomo keep their configuration."""
    home = Path.home() if home is None else home
    config = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
    return [
        ("sing-box", Path("/etc/sing-box/config.json")),
        ("sing-box", config / "sing-box" / "config.json"),
        ("Xray", Path("/usr/local/etc/xray/config.json")),
        ("Xray", Path("/etc/xray/config.json")),
        ("Xray", config / "xray" / "config.json"),
        ("V2Ray", Path("/usr/local/etc/v2ray/config.json")),
        ("V2Ray", Path("/etc/v2ray/config.json")),
        ("Clash / mihomo", config / "mihomo" / "config.yaml"),
        ("Clash / mihomo", config / "clash" / "config.yaml"),
        ("Clash / mihomo", Path("/etc/mihomo/config.yaml")),
    ]


def from_sing_box_config(document: Any, where: str, client: str = "sing-box") -> list[NamedProxy]:
    """sing-box: ``inbounds`` of type socks, http or mixed, with ``listen`` and ``listen_port``."""
    return _inbound_proxies(document, where, client, kind_key="type", port_key="listen_port")


def from_xray_config(document: Any, where: str, client: str = "Xray") -> list[NamedProxy]:
    """Xray/V2Ray: ``inbounds`` with ``protocol`` socks or http, ``port`` and ``listen``."""
    return _inbound_proxies(document, where, client, kind_key="protocol", port_key="port")


def _inbound_proxies(
    document: Any, where: str, client: str, *, kind_key: str, port_key: str
) -> list[NamedProxy]:
    """The proxy inbounds of a JSON configuration: the two clients name the same fields
    differently."""
    found = []
    for inbound in _inbounds(document):
        kind = inbound.get(kind_key)
        port = _port(inbound.get(port_key))
        if kind not in ("socks", "http", "mixed") or port is None:
            continue
        host = _listen_host(inbound.get("listen"))
        for protocol in _protocols(kind):
            found.append(NamedProxy(protocol, host, port, SOURCE_CONFIG, where, client))
    return _unique(found)


def from_clash_config(
    document: Any, where: str, client: str = "Clash / mihomo"
) -> list[NamedProxy]:
    """Clash/mihomo: ``mixed-port``, ``socks-port`` and ``port`` (HTTP), on ``bind-address``."""
    if not isinstance(document, Mapping):
        return []
    bind = document.get("bind-address")
    host = _listen_host(bind if isinstance(bind, str) else None)
    found = []
    for key, kinds in (("mixed-port", ("socks5", "http")), ("socks-port", ("socks5",))):
        port = _port(document.get(key))
        if port is not None:
            found += [NamedProxy(kind, host, port, SOURCE_CONFIG, where, client) for kind in kinds]
    http = _port(document.get("port"))
    if http is not None:
        found.append(NamedProxy("http", host, http, SOURCE_CONFIG, where, client))
    return _unique(found)


def config_file_proxies(paths: Iterable[tuple[str, Path]]) -> list[NamedProxy]:
    """Inbounds named in the readable ones of ``paths`` ((client, file) pairs)."""
    found: list[NamedProxy] = []
    for client, path in paths:
        text = _read_small(path)
        if text is None:
            continue
        try:
            if path.suffix in (".yaml", ".yml"):
                found += from_clash_config(yaml.safe_load(text), str(path), client)
            else:
                document = json.loads(text)
                found += from_sing_box_config(document, str(path), client)
                found += from_xray_config(document, str(path), client)
        except (ValueError, yaml.YAMLError, RecursionError):
            continue  # a broken file is the client's business; it names nothing here
    return _unique(found)


# --- helpers ---------------------------------------------------------------------------------


def _read_small(path: Path) -> str | None:
    """A regular file's text when it is readable and small; never blocks on a FIFO."""
    try:
        if not path.is_file() or path.stat().st_size > MAX_CONFIG_BYTES:
            return None
        return path.read_text("utf-8", errors="replace")
    except OSError:
        return None


def _inbounds(document: Any) -> list[Mapping[str, Any]]:
    if not isinstance(document, Mapping):
        return []
    inbounds = document.get("inbounds")
    if not isinstance(inbounds, list):
        return []
    return [item for item in inbounds if isinstance(item, Mapping)]


def _protocols(kind: str) -> tuple[str, ...]:
    return {"socks": ("socks5",), "http": ("http",), "mixed": ("socks5", "http")}[kind]


def _port(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536:
        return value
    return None


def _listen_host(value: str | None) -> str:
    """Where a local client can reach an inbound: wildcard listeners answer on loopback."""
    if value is None or value.strip() in WILDCARD_ADDRESSES:
        return "127.0.0.1"
    return value.strip().strip("[]")


def _host_port(value: str) -> tuple[str, int] | None:
    if not value:
        return None
    try:
        parts = urlsplit(value if "://" in value else f"//{value}")
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname or port is None or not 0 < port < 65536:
        return None
    return parts.hostname, port


def _unique(items: Iterable[NamedProxy]) -> list[NamedProxy]:
    return list(dict.fromkeys(items))
