"""Real proxies started by the tests on 127.0.0.1: Dante, shadowsocks-libev, tinyproxy.

Like ``tests.servers``: fresh configs in a temporary directory, free ports, a bounded readiness
wait (a real protocol handshake, not just a TCP connect), logs shown on failure, clean stop.
Also small UDP and TCP echo servers on loopback for traffic through the proxies.

Dante's ``socksmethod: username`` checks the system's passwd/shadow. To give it a test user
without touching this machine's accounts, danted runs in a private mount namespace where a
temporary passwd and shadow (the real ones plus the test user) are bind-mounted over
/etc/passwd and /etc/shadow; that needs root, so username tests skip otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import os
import secrets
import signal
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest

from tests.servers import LOOPBACK, ServerProcess, free_port, require_binary, tcp_connect_ok

SHADOWSOCKS_METHOD = "chacha20-ietf-poly1305"
DANTE_TEST_USER = "cpproxytest"
DANTE_TEST_UID = 64917


def socks5_greeting_ok(host: str, port: int, timeout: float = 0.5) -> bool:
    """True if the port answers a SOCKS5 greeting with a SOCKS5 method selection."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"\x05\x02\x00\x02")
            return sock.recv(2)[:1] == b"\x05"
    except OSError:
        return False


def http_connect_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    """True if the port answers a CONNECT (to a closed loopback port) with an HTTP status line."""
    with socket.socket() as closed:
        closed.bind((LOOPBACK, 0))
        target = f"{LOOPBACK}:{closed.getsockname()[1]}"
        try:
            with socket.create_connection((host, port), timeout=timeout) as sock:
                sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
                return sock.recv(16).startswith(b"HTTP/1.")
        except OSError:
            return False


def kill_process_group(process: ServerProcess) -> None:
    """SIGKILL the server and every child it forked (each server runs in its own session)."""
    process.stopped = True
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.process.pid, signal.SIGKILL)
    process.process.wait(5)


# --- Dante ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DanteServer:
    host: str
    port: int
    username: str | None
    password: str | None
    udp: bool
    process: ServerProcess

    @property
    def url(self) -> str:
        user = f"{self.username}@" if self.username else ""
        return f"socks5://{user}{self.host}:{self.port}"


def dante_config(*, port: int, log_path: Path, username_auth: bool, udp: bool) -> str:
    commands = "bind connect bindreply" + (" udpassociate udpreply" if udp else "")
    privileges = ["user.privileged: root", "user.unprivileged: nobody"] if os.geteuid() == 0 else []
    lines = [
        f"logoutput: {log_path}",
        f"internal: {LOOPBACK} port = {port}",
        f"external: {LOOPBACK}",
        "clientmethod: none",
        f"socksmethod: {'username' if username_auth else 'none'}",
        *privileges,
        "client pass {",
        "  from: 127.0.0.0/8 to: 0.0.0.0/0",
        "}",
        "socks pass {",
        "  from: 127.0.0.0/8 to: 127.0.0.0/8",
        f"  command: {commands}",
        "  log: error connect disconnect",
        "}",
    ]
    return "\n".join(lines) + "\n"


def _sha512_crypt(password: str) -> str:
    result = subprocess.run(
        ["openssl", "passwd", "-6", "-stdin"],
        input=password,
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    return result.stdout.strip()


def _private_accounts(workdir: Path, username: str, password: str) -> tuple[Path, Path]:
    """Copies of passwd and shadow with the test user added, for danted's namespace only."""
    passwd = workdir / "passwd"
    shadow = workdir / "shadow"
    passwd.write_text(
        Path("/etc/passwd").read_text()
        + f"{username}:x:{DANTE_TEST_UID}:{DANTE_TEST_UID}::/nonexistent:/usr/sbin/nologin\n"
    )
    shadow.write_text(
        Path("/etc/shadow").read_text()
        + f"{username}:{_sha512_crypt(password)}:20000:0:99999:7:::\n"
    )
    shadow.chmod(0o640)
    return passwd, shadow


@contextlib.contextmanager
def run_dante(
    workdir: Path, *, username_auth: bool = False, udp: bool = True
) -> Iterator[DanteServer]:
    """Start ``danted`` on a free port of 127.0.0.1 (SOCKS5; UDP ASSOCIATE if ``udp``)."""
    binary = require_binary("danted", "dante-server")
    username = password = None
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = workdir / "danted.log"
    config_path = workdir / "danted.conf"
    config_path.write_text(
        dante_config(port=port, log_path=log_path, username_auth=username_auth, udp=udp)
    )
    argv = [binary, "-f", str(config_path), "-N", "1"]
    if username_auth:
        if os.geteuid() != 0:
            pytest.skip("Dante username auth needs a test user in a private mount namespace: root")
        unshare = require_binary("unshare", "util-linux")
        username, password = DANTE_TEST_USER, secrets.token_urlsafe(12)
        passwd, shadow = _private_accounts(workdir, username, password)
        script = (
            f"mount --bind {passwd} /etc/passwd && mount --bind {shadow} /etc/shadow && "
            f"exec {' '.join(argv)}"
        )
        argv = [unshare, "--mount", "--propagation", "private", "sh", "-c", script]
    process = ServerProcess("danted", argv, workdir, [log_path])
    try:
        process.wait_ready(lambda: socks5_greeting_ok(LOOPBACK, port))
        yield DanteServer(LOOPBACK, port, username, password, udp, process)
        process.check_alive()
    finally:
        process.stop()


# --- shadowsocks-libev ----------------------------------------------------------------------


@dataclass(frozen=True)
class ShadowsocksPair:
    """ss-server plus ss-local: ss-local is the SOCKS5 proxy (with UDP when ``udp``)."""

    host: str
    port: int  # ss-local's SOCKS5 port (TCP, and UDP relay)
    server_port: int
    udp: bool
    server: ServerProcess
    local: ServerProcess

    @property
    def url(self) -> str:
        return f"socks5://{self.host}:{self.port}"


@contextlib.contextmanager
def run_shadowsocks(workdir: Path, *, udp: bool = True) -> Iterator[ShadowsocksPair]:
    """Start ``ss-server`` and ``ss-local`` (``-u`` when ``udp``) on free loopback ports."""
    server_binary = require_binary("ss-server", "shadowsocks-libev")
    local_binary = require_binary("ss-local", "shadowsocks-libev")
    workdir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(16)
    server_port = free_port()
    local_port = free_port()
    common = ["-k", key, "-m", SHADOWSOCKS_METHOD, "-v"]
    server = ServerProcess(
        "ss-server",
        [server_binary, "-s", LOOPBACK, "-p", str(server_port), "-u", *common],
        workdir,
    )
    local: ServerProcess | None = None
    try:
        server.wait_ready(lambda: tcp_connect_ok(LOOPBACK, server_port))
        local_argv = [local_binary, "-s", LOOPBACK, "-p", str(server_port)]
        local_argv += ["-b", LOOPBACK, "-l", str(local_port), *common]
        if udp:
            local_argv.append("-u")
        local = ServerProcess("ss-local", local_argv, workdir)
        local.wait_ready(lambda: socks5_greeting_ok(LOOPBACK, local_port))
        yield ShadowsocksPair(LOOPBACK, local_port, server_port, udp, server, local)
        server.check_alive()
    finally:
        if local is not None:
            local.stop()
        server.stop()


# --- tinyproxy ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TinyproxyServer:
    host: str
    port: int
    username: str | None
    password: str | None
    process: ServerProcess

    @property
    def url(self) -> str:
        user = f"{self.username}@" if self.username else ""
        return f"http://{user}{self.host}:{self.port}"


def tinyproxy_config(
    *, port: int, connect_ports: Sequence[int], basic_auth: tuple[str, str] | None
) -> str:
    lines = []
    if os.geteuid() == 0:
        # tinyproxy drops root; nogroup is Debian's name, nobody elsewhere.
        group = "nogroup"
        try:
            grp.getgrnam(group)
        except KeyError:
            group = "nobody"
        lines += ["User nobody", f"Group {group}"]
    lines += [
        f"Port {port}",
        f"Listen {LOOPBACK}",
        "Timeout 30",
        "LogLevel Info",  # no LogFile: in the foreground, tinyproxy logs to its console
        "MaxClients 20",
        f"Allow {LOOPBACK}",
        "DisableViaHeader Yes",
        *(f"ConnectPort {connect_port}" for connect_port in connect_ports),
    ]
    if basic_auth is not None:
        lines.append(f"BasicAuth {basic_auth[0]} {basic_auth[1]}")
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def run_tinyproxy(
    workdir: Path, *, connect_ports: Sequence[int], basic_auth: tuple[str, str] | None = None
) -> Iterator[TinyproxyServer]:
    """Start ``tinyproxy`` (HTTP CONNECT to ``connect_ports`` only; BasicAuth if given)."""
    binary = require_binary("tinyproxy", "tinyproxy")
    workdir.mkdir(parents=True, exist_ok=True)
    if not connect_ports:
        raise ValueError("tinyproxy allows every port when no ConnectPort is set; list them")
    port = free_port()
    config_path = workdir / "tinyproxy.conf"
    config_path.write_text(
        tinyproxy_config(port=port, connect_ports=connect_ports, basic_auth=basic_auth)
    )
    process = ServerProcess("tinyproxy", [binary, "-d", "-c", str(config_path)], workdir)
    try:
        process.wait_ready(lambda: http_connect_answers(LOOPBACK, port))
        username, password = basic_auth if basic_auth is not None else (None, None)
        yield TinyproxyServer(LOOPBACK, port, username, password, process)
        process.check_alive()
    finally:
        process.stop()


# --- echo servers ---------------------------------------------------------------------------


class _UdpEcho(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.sources: list[tuple[str, int]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sources.append((addr[0], addr[1]))
        assert self.transport is not None
        self.transport.sendto(data, addr)


@dataclass
class UdpEcho:
    address: tuple[str, int]
    protocol: _UdpEcho

    @property
    def sources(self) -> list[tuple[str, int]]:
        """Source addresses of every datagram received (the proxy's relay addresses)."""
        return self.protocol.sources


@contextlib.asynccontextmanager
async def udp_echo() -> AsyncIterator[UdpEcho]:
    """A UDP echo socket on 127.0.0.1 that records where datagrams came from."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(_UdpEcho, local_addr=(LOOPBACK, 0))
    try:
        host, port = transport.get_extra_info("sockname")[:2]
        yield UdpEcho((host, port), protocol)
    finally:
        transport.close()


@contextlib.asynccontextmanager
async def tcp_echo(port: int = 0) -> AsyncIterator[tuple[str, int]]:
    """A TCP echo server on 127.0.0.1 (``port`` 0: any free port); yields its address.

    On exit it closes every connection and waits for their handlers, so no task outlives it.
    """
    handlers: set[asyncio.Task[Any]] = set()
    writers: set[asyncio.StreamWriter] = set()

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        writers.add(writer)
        with contextlib.suppress(OSError):
            while data := await reader.read(4096):
                writer.write(data)
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, LOOPBACK, port)
    try:
        host, bound_port = server.sockets[0].getsockname()[:2]
        yield host, bound_port
    finally:
        server.close()
        for writer in writers:
            writer.close()
        if handlers:
            await asyncio.wait(handlers, timeout=2.0)
