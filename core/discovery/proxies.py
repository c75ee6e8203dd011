"""Find proxies already running on this machine (v2rayN, Clash, sing-box, Tor, ss-local, …).

Each listed port on 127.0.0.1 gets a real handshake, never a bare TCP connect:

- SOCKS5: the greeting offering only "no auth"; "no acceptable method" means the proxy needs
  credentials. Without credentials, a UDP ASSOCIATE request then says
  whether it carries UDP (the association is dropped at once; no datagram is sent).
- HTTP: ``CONNECT 127.0.0.1:<port>`` where the port is one we hold bound but not listening, so
  the proxy's attempt is refused on loopback and nothing leaves the machine. A proxy answers
  with a status line (403 for a port it does not allow, 407 for credentials, 5xx for the refused
  connection, 200 from proxies that answer before dialling). Statuses an ordinary web server
  gives to a CONNECT (400, 404, 405, 501) are not taken as a proxy.

Where the ports come from: the default ports of today's clients (``assets/discovery``, with
the client each port belongs to), proxies named in ALL_PROXY/HTTPS_PROXY (and lower-case
forms), in the desktop's proxy settings (GNOME, KDE, Windows, macOS) and in installed clients'
configuration files (sing-box, Xray/V2Ray, Clash/mihomo inbounds). Each found proxy says where it
was found. Only those on a loopback address are probed; others are listed without being
contacted.

A SOCKS5 proxy that accepts UDP ASSOCIATE may still not relay UDP (ss-local without ``-u``
accepts it); only a real tunnel (``open_socks5_udp`` with a STUN server) proves it does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from callpath.core.call.stages import StageFailure
from callpath.core.discovery.clients import ClientData, load_client_data
from callpath.core.discovery.system_settings import (
    NamedProxy,
    config_file_proxies,
    default_config_paths,
    system_proxies,
)
from callpath.core.model.proxy_url import ProxyUrl
from callpath.core.paths.socks5 import (
    COMMAND_UDP_ASSOCIATE,
    greeting,
    parse_method_selection,
    request,
)

LOOPBACK = "127.0.0.1"
ENVIRONMENT_VARIABLES = ("ALL_PROXY", "all_proxy", "HTTPS_PROXY", "https_proxy")
DEFAULT_TIMEOUT_S = 1.0
STATUS_LINE_MAX_BYTES = 1024
# What proxies answer to CONNECT towards a refused or forbidden port (see module docstring).
PROXY_STATUSES = frozenset({200, 403, 407, 500, 502, 503, 504})
ENVIRONMENT_SCHEMES = {"socks5": "socks5", "socks5h": "socks5h", "http": "http"}

SOURCE_PORT_SCAN = "port scan"
SOURCE_ENVIRONMENT = "environment"


def default_ports(data: ClientData | None = None) -> tuple[int, ...]:
    """The default local ports of the clients in ``assets/discovery``."""
    return (load_client_data() if data is None else data).default_ports()


@dataclass(frozen=True)
class FoundProxy:
    url: ProxyUrl
    kind: str  # socks5 | http
    source: str  # "port scan" | "environment" | a system setting | "config file"
    supports_udp: bool | None  # None: HTTP, not contacted, or credentials needed to ask
    auth_required: bool
    responded: bool | None = True  # None: not contacted (not on loopback)
    client: str | None = None  # whose default port or configuration file it is
    where: str | None = None  # the variable, setting or file that names it


@dataclass(frozen=True)
class _Probe:
    auth_required: bool
    supports_udp: bool | None


async def probe_socks5(host: str, port: int, timeout: float) -> _Probe | None:
    """SOCKS5 greeting (and UDP ASSOCIATE when no auth is needed); None if not SOCKS5."""
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            # Only "no auth" is offered: a proxy that needs credentials answers "no acceptable
            # method", and an echo service's copy of the greeting is not a valid answer.
            writer.write(greeting(offer_password=False))
            await writer.drain()
            try:
                parse_method_selection(await reader.readexactly(2), offer_password=False)
            except StageFailure as failure:
                if failure.failure == "socks_auth_refused":
                    return _Probe(auth_required=True, supports_udp=None)
                return None
            try:
                await request(reader, writer, COMMAND_UDP_ASSOCIATE, ("0.0.0.0", 0))
            except StageFailure as refused:
                if refused.failure == "socks_protocol_error":
                    return None
                return _Probe(auth_required=False, supports_udp=False)
            return _Probe(auth_required=False, supports_udp=True)
    except (OSError, EOFError, TimeoutError):
        return None
    finally:
        if writer is not None:
            writer.close()


def _parse_status_line(data: bytes) -> int | None:
    line = data.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split()
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        return None
    return int(parts[1])


async def probe_http(host: str, port: int, timeout: float) -> _Probe | None:
    """HTTP CONNECT to a closed loopback port; None unless a proxy-like status comes back."""
    writer: asyncio.StreamWriter | None = None
    # Held bound without listening for the whole probe: the port stays closed and ours.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as closed:
        closed.bind((LOOPBACK, 0))
        target = f"{LOOPBACK}:{closed.getsockname()[1]}"
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(host, port)
                writer.write(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
                await writer.drain()
                data = b""
                while b"\r\n" not in data and len(data) < STATUS_LINE_MAX_BYTES:
                    chunk = await reader.read(STATUS_LINE_MAX_BYTES)
                    if not chunk:
                        break
                    data += chunk
        except (OSError, EOFError, TimeoutError):
            return None
        finally:
            if writer is not None:
                writer.close()
    status = _parse_status_line(data)
    if status not in PROXY_STATUSES:
        return None
    return _Probe(auth_required=status == 407, supports_udp=None)


def proxies_from_environment(environ: Mapping[str, str]) -> list[ProxyUrl]:
    """Proxy URLs from ALL_PROXY/HTTPS_PROXY and friends, passwords dropped, duplicates once.

    A value without a scheme is HTTP (as curl reads it); schemes CallPath cannot use
    (``https://``, ``socks4://``) are skipped.
    """
    found: list[ProxyUrl] = []
    for variable in ENVIRONMENT_VARIABLES:
        value = environ.get(variable, "").strip()
        if not value:
            continue
        if "://" not in value:
            value = f"http://{value}"
        try:
            parts = urlsplit(value)
            port = parts.port
        except ValueError:
            continue
        scheme = ENVIRONMENT_SCHEMES.get(parts.scheme.lower())
        if scheme is None or not parts.hostname:
            continue
        url = ProxyUrl(
            scheme=scheme,
            host=parts.hostname,
            port=port or 1080,
            username=parts.username or None,
        )
        if url not in found:
            found.append(url)
    return found


def _has_password(environ: Mapping[str, str], url: ProxyUrl) -> bool:
    for variable in ENVIRONMENT_VARIABLES:
        value = environ.get(variable, "")
        with contextlib.suppress(ValueError):
            parts = urlsplit(value if "://" in value else f"http://{value}")
            if parts.hostname == url.host and parts.password:
                return True
    return False


async def _probe(kind: str, host: str, port: int, timeout: float) -> _Probe | None:
    if kind == "socks5":
        return await probe_socks5(host, port, timeout)
    return await probe_http(host, port, timeout)


async def discover_local_proxies(
    ports: Sequence[int] | None = None,
    environ: Mapping[str, str] = os.environ,
    timeout: float = DEFAULT_TIMEOUT_S,
    *,
    named: Sequence[NamedProxy] | None = None,
    data: ClientData | None = None,
) -> list[FoundProxy]:
    """Proxies named by the environment, the system and clients' files, then those answering
    on ``ports`` of 127.0.0.1 (default: the known clients' ports).

    ``named`` replaces what the system settings and configuration files name (tests pass their
    own). Every probe runs at once and each is bounded by ``timeout``, so the whole search takes
    about ``timeout`` seconds. A port speaking both protocols (a mixed port) is listed once per
    protocol.
    """
    data = load_client_data() if data is None else data
    scan_ports = data.default_ports() if ports is None else tuple(ports)
    configured = proxies_from_environment(environ)
    if named is None:
        named = system_proxies() + config_file_proxies(default_config_paths())
    candidates: list[tuple[ProxyUrl, str, str | None, str | None]] = [
        (url, SOURCE_ENVIRONMENT, None, _variable_naming(environ, url)) for url in configured
    ]
    for item in named:
        url = ProxyUrl(scheme=item.kind, host=item.host, port=item.port)
        if all((u.kind, u.host, u.port) != (url.kind, url.host, url.port) for u, *_ in candidates):
            candidates.append((url, item.source, item.client, item.where))
    candidate_probes = [
        _probe(url.kind, url.host, url.port, timeout) if url.is_loopback else _none()
        for url, *_rest in candidates
    ]
    scanned = [(kind, port) for port in scan_ports for kind in ("socks5", "http")]
    scan_probes = [_probe(kind, LOOPBACK, port, timeout) for kind, port in scanned]
    results = await asyncio.gather(*candidate_probes, *scan_probes)
    found: list[FoundProxy] = []
    for (url, source, client, where), result in zip(
        candidates, results[: len(candidates)], strict=True
    ):
        contacted = url.is_loopback
        found.append(
            FoundProxy(
                url=url,
                kind=url.kind,
                source=source,
                supports_udp=None if result is None else result.supports_udp,
                auth_required=(result is not None and result.auth_required)
                or url.username is not None
                or (source == SOURCE_ENVIRONMENT and _has_password(environ, url)),
                responded=(result is not None) if contacted else None,
                client=client or _default_client(data, url),
                where=where,
            )
        )
    seen = {(item.kind, item.url.port) for item in found if item.url.is_loopback}
    for (kind, port), result in zip(scanned, results[len(candidates) :], strict=True):
        if result is None or (kind, port) in seen:
            continue
        url = ProxyUrl(scheme=kind, host=LOOPBACK, port=port)
        found.append(
            FoundProxy(
                url=url,
                kind=kind,
                source=SOURCE_PORT_SCAN,
                supports_udp=result.supports_udp,
                auth_required=result.auth_required,
                client=_default_client(data, url),
            )
        )
    return found


def _default_client(data: ClientData, url: ProxyUrl) -> str | None:
    """The clients that open this port by default, when it is on loopback."""
    if not url.is_loopback:
        return None
    names = data.clients_on(url.port, url.kind)
    return " / ".join(names) if names else None


def _variable_naming(environ: Mapping[str, str], url: ProxyUrl) -> str | None:
    for variable in ENVIRONMENT_VARIABLES:
        if url in proxies_from_environment({variable: environ.get(variable, "")}):
            return variable
    return None


async def _none() -> None:
    return None
