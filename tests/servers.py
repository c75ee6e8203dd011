"""Real third-party servers (coturn, Janus) started by the tests themselves on 127.0.0.1.

Each server gets a fresh config in a temporary directory, free ports, a bounded readiness wait and
a log file that is shown when it fails to start or dies. Nothing here listens on anything but
loopback, and nothing contacts the outside (no STUN servers, no public IP discovery).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import secrets
import socket
import ssl
import struct
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from callpath.core.lab import kernel as kernel_lab
from callpath.core.lab.kernel import find_binary
from tests.certs import make_server_certificate

LOOPBACK = "127.0.0.1"
TLS_HOST = "localhost"  # a name in the test certificate that resolves to LOOPBACK

START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 5.0
LOG_TAIL_LINES = 60

# Ranges handed to servers for relay/RTP ports stay below Linux's ephemeral range (32768+), so
# they do not collide with the source ports of ordinary client sockets.
PORT_RANGE_LOW = 20000
PORT_RANGE_HIGH = 32000

JANUS_LIB_DIRS = kernel_lab.JANUS_LIB_DIRS

STUN_MAGIC_COOKIE = 0x2112A442
STUN_BINDING_REQUEST = 0x0001
STUN_BINDING_SUCCESS = 0x0101


# --- binaries -------------------------------------------------------------------------------


def require_binary(name: str, debian_package: str) -> str:
    """The path of ``name``; skip the test if it is missing and we cannot install it.

    As root, ``scripts/setup.sh`` installs every server package, so a missing binary there is a
    broken set-up and fails the test instead of hiding behind a skip.
    """
    found = find_binary(name)
    if found:
        return found
    reason = (
        f"{name} is not installed (Debian package {debian_package}; run scripts/setup.sh as root)"
    )
    if os.geteuid() != 0:
        pytest.skip(reason)
    pytest.fail(reason)


# --- ports ----------------------------------------------------------------------------------


def free_port(host: str = LOOPBACK) -> int:
    """A port that is free for both TCP and UDP on ``host`` right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((host, 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((host, port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no port free for both TCP and UDP on loopback")


def _range_is_free(host: str, low: int, count: int) -> bool:
    with contextlib.ExitStack() as stack:
        for port in range(low, low + count):
            for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                sock = stack.enter_context(socket.socket(socket.AF_INET, kind))
                try:
                    sock.bind((host, port))
                except OSError:
                    return False
    return True


def free_port_range(count: int, host: str = LOOPBACK) -> tuple[int, int]:
    """An inclusive range of ``count`` consecutive ports (even start) free for TCP and UDP."""
    for _ in range(200):
        low = random.randrange(PORT_RANGE_LOW, PORT_RANGE_HIGH - count, 2)
        if _range_is_free(host, low, count):
            return low, low + count - 1
    raise RuntimeError(f"no range of {count} free ports on loopback")


# --- processes ------------------------------------------------------------------------------


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


class ServerProcess:
    """A child process logging to a file; ``stop`` sends SIGTERM, then SIGKILL."""

    def __init__(
        self, name: str, argv: Sequence[str], workdir: Path, log_files: Sequence[Path] = ()
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.console_log = workdir / f"{name}.console.log"
        self.log_files = [self.console_log, *log_files]
        self.stopped = False  # set once we asked it to stop, so its exit is not a crash
        with self.console_log.open("wb") as console:
            # A new session keeps Ctrl-C in the terminal from reaching the server before teardown.
            self.process = subprocess.Popen(
                self.argv,
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def logs(self) -> str:
        return "\n".join(f"--- {path} ---\n{_tail(path)}" for path in self.log_files)

    def wait_ready(self, probe: Callable[[], bool], timeout: float = START_TIMEOUT_S) -> None:
        """Poll ``probe`` until it returns True; fail with the server's log if it never does."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()
                pytest.fail(
                    f"{self.name} exited with code {self.process.returncode} while starting:\n"
                    f"{' '.join(self.argv)}\n{self.logs()}",
                    pytrace=False,
                )
            if probe():
                return
            time.sleep(0.1)
        self.stop()
        pytest.fail(
            f"{self.name} not ready within {timeout:.0f} s:\n{' '.join(self.argv)}\n{self.logs()}",
            pytrace=False,
        )

    def check_alive(self) -> None:
        """Fail if the server exited on its own (a crash) rather than through ``stop``."""
        if not self.stopped and self.process.poll() is not None:
            pytest.fail(
                f"{self.name} died with code {self.process.returncode}:\n{self.logs()}",
                pytrace=False,
            )

    def stop(self) -> None:
        self.stopped = True
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT_S)


# --- probes ---------------------------------------------------------------------------------


def stun_binding_ok(host: str, port: int, timeout: float = 0.5) -> bool:
    """True if a STUN Binding request over UDP gets a success response with our transaction."""
    transaction = secrets.token_bytes(12)
    request = struct.pack("!HHI", STUN_BINDING_REQUEST, 0, STUN_MAGIC_COOKIE) + transaction
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendto(request, (host, port))
            data, _ = sock.recvfrom(2048)
        except OSError:
            return False
    if len(data) < 20:
        return False
    message_type, _, cookie = struct.unpack("!HHI", data[:8])
    return (
        message_type == STUN_BINDING_SUCCESS
        and cookie == STUN_MAGIC_COOKIE
        and data[8:20] == transaction
    )


def tcp_connect_ok(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def tls_handshake_ok(
    host: str, port: int, context: ssl.SSLContext, server_name: str, timeout: float = 1.0
) -> bool:
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=server_name),
        ):
            return True
    except (OSError, ssl.SSLError):
        return False


def http_get_json(url: str, timeout: float = 1.0) -> dict[str, object] | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            data = json.loads(response.read())
    except (OSError, urllib.error.URLError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def client_ssl_context(ca_path: Path) -> ssl.SSLContext:
    """A client context that trusts only the test CA (hostname checking on)."""
    return ssl.create_default_context(cafile=str(ca_path))


# --- coturn ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CoturnServer:
    """A running coturn: STUN and TURN over UDP, TCP and TLS on 127.0.0.1."""

    host: str
    port: int  # UDP and TCP
    tls_port: int
    tls_host: str  # name in the certificate; resolves to ``host``
    username: str
    password: str
    realm: str
    ca_path: Path
    relay_ports: tuple[int, int]
    relay_ip: str
    process: ServerProcess

    @property
    def stun_uri(self) -> str:
        return f"stun:{self.host}:{self.port}"

    @property
    def turn_udp_uri(self) -> str:
        return f"turn:{self.host}:{self.port}?transport=udp"

    @property
    def turn_tcp_uri(self) -> str:
        return f"turn:{self.host}:{self.port}?transport=tcp"

    @property
    def turn_tls_uri(self) -> str:
        return f"turns:{self.tls_host}:{self.tls_port}?transport=tcp"

    def ssl_context(self) -> ssl.SSLContext:
        return client_ssl_context(self.ca_path)


@contextlib.contextmanager
def run_coturn(
    workdir: Path,
    *,
    username: str = "callpath",
    password: str = "secret-pass",
    realm: str = "callpath.test",
    relay_ip: str = LOOPBACK,
    extra_config: Sequence[str] = (),
    auth_secret: str | None = None,
) -> Iterator[CoturnServer]:
    """Start ``turnserver`` on 127.0.0.1 with its own certificate; stop it on exit.

    ``auth_secret`` switches coturn from the long-term user to TURN REST API credentials
    (``use-auth-secret`` + ``static-auth-secret``): ``username``/``password`` then do not work.

    ``relay_ip`` is where relayed traffic leaves from: 127.0.0.1, or the host end of a test
    network namespace (``NetworkNamespace.host_address``) to relay towards a server inside it.
    """
    binary = require_binary("turnserver", "coturn")
    check_localhost_is_loopback()
    workdir.mkdir(parents=True, exist_ok=True)
    certificate = make_server_certificate(workdir / "certs", (TLS_HOST,))
    port = free_port()
    tls_port = free_port()
    relay_ports = free_port_range(64, relay_ip)
    config_path = workdir / "turnserver.conf"
    config_text = kernel_lab.coturn_config(
        workdir,
        certificate.cert_path,
        certificate.key_path,
        password,
        listen=LOOPBACK,
        relay=relay_ip,
        port=port,
        tls_port=tls_port,
        user=username,
        realm=realm,
        relay_ports=relay_ports,
        peer_lines=("allow-loopback-peers", *extra_config),
    )
    if auth_secret is not None:
        lines = [
            line
            for line in config_text.splitlines()
            if line != "lt-cred-mech" and not line.startswith("user=")
        ]
        config_text = "\n".join([*lines, "use-auth-secret", f"static-auth-secret={auth_secret}"])
    config_path.write_text(config_text + "\n")
    process = ServerProcess(
        "turnserver", [binary, "-c", str(config_path)], workdir, [workdir / "turnserver.log"]
    )
    try:
        context = client_ssl_context(certificate.ca_path)
        process.wait_ready(
            lambda: (
                stun_binding_ok(LOOPBACK, port)
                and tcp_connect_ok(LOOPBACK, port)
                and tls_handshake_ok(LOOPBACK, tls_port, context, TLS_HOST)
            )
        )
        yield CoturnServer(
            host=LOOPBACK,
            port=port,
            tls_port=tls_port,
            tls_host=TLS_HOST,
            username=username,
            password=password,
            realm=realm,
            ca_path=certificate.ca_path,
            relay_ports=relay_ports,
            relay_ip=relay_ip,
            process=process,
        )
        process.check_alive()
    finally:
        process.stop()


def check_localhost_is_loopback() -> None:
    """The TLS URIs use ``localhost``; make sure it cannot lead anywhere but 127.0.0.1."""
    addresses = {info[4][0] for info in socket.getaddrinfo(TLS_HOST, None, socket.AF_INET)}
    if addresses != {LOOPBACK}:
        pytest.fail(f"{TLS_HOST} resolves to {sorted(addresses)}, not only {LOOPBACK}")


# --- network namespaces ---------------------------------------------------------------------

NAMESPACE_PREFIX = "callpath-test"
# 198.18.0.0/15 is reserved for benchmarking (RFC 2544): never a real destination.
NAMESPACE_SUBNET_OCTETS = (198, 18)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def _remove_stale_namespaces() -> None:
    """Delete namespaces left behind by test runs that were killed (their pid is gone)."""
    listing = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, timeout=10, check=False
    ).stdout
    for line in listing.splitlines():
        name = line.split()[0] if line.split() else ""
        parts = name.split("-")
        if not name.startswith(NAMESPACE_PREFIX + "-") or len(parts) < 4:
            continue
        owner = int(parts[2]) if parts[2].isdigit() else 0
        if owner and not Path(f"/proc/{owner}").exists():
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


def _used_ipv4_addresses() -> str:
    return subprocess.run(
        ["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True, timeout=10, check=False
    ).stdout


@dataclass(frozen=True)
class NetworkNamespace:
    """A network namespace joined to this one by a veth pair on a private /30."""

    name: str
    host_interface: str
    host_address: str  # this side of the veth
    inner_interface: str
    inner_address: str  # the namespace side

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *argv]


@contextlib.contextmanager
def network_namespace() -> Iterator[NetworkNamespace]:
    """Create a namespace with a veth pair to this one (root only); delete it on exit."""
    if os.geteuid() != 0:
        pytest.skip("creating a network namespace needs root")
    require_binary("ip", "iproute2")
    _remove_stale_namespaces()
    used = _used_ipv4_addresses()
    for _ in range(100):
        third, fourth = random.randrange(256), random.randrange(0, 256, 4)
        prefix = f"{NAMESPACE_SUBNET_OCTETS[0]}.{NAMESPACE_SUBNET_OCTETS[1]}.{third}."
        host_address, inner_address = f"{prefix}{fourth + 1}", f"{prefix}{fourth + 2}"
        if f" {host_address}/" not in used and f" {inner_address}/" not in used:
            break
    else:
        raise RuntimeError("no free /30 for a test namespace")
    tag = secrets.token_hex(3)
    namespace = NetworkNamespace(
        name=f"{NAMESPACE_PREFIX}-{os.getpid()}-{tag}",
        host_interface=f"cph{tag}",
        host_address=host_address,
        inner_interface=f"cpn{tag}",
        inner_address=inner_address,
    )
    _ip("netns", "add", namespace.name)
    try:
        _ip(
            "link", "add", namespace.host_interface,
            "type", "veth", "peer", "name", namespace.inner_interface,
        )  # fmt: skip
        _ip("link", "set", namespace.inner_interface, "netns", namespace.name)
        _ip("addr", "add", f"{host_address}/30", "dev", namespace.host_interface)
        _ip("link", "set", namespace.host_interface, "up")
        inner = ("-n", namespace.name)
        _ip(*inner, "addr", "add", f"{inner_address}/30", "dev", namespace.inner_interface)
        _ip(*inner, "link", "set", namespace.inner_interface, "up")
        _ip(*inner, "link", "set", "lo", "up")
        yield namespace
    finally:
        # Deleting the namespace destroys its end of the veth, which takes the other end along.
        subprocess.run(["ip", "netns", "del", namespace.name], capture_output=True, check=False)
        subprocess.run(
            ["ip", "link", "del", namespace.host_interface], capture_output=True, check=False
        )


# --- Janus ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class JanusServer:
    """A running Janus gateway with only the echotest plugin and the plain HTTP transport.

    Janus runs in its own network namespace: Janus 1.1 never gathers on loopback interfaces and
    then lets libnice gather on every other interface, so on 127.0.0.1 it would offer (and send
    to) this machine's real addresses. In the namespace its only interface is the veth end at
    ``host``; peers must offer host candidates on ``client_address`` (see ``ice_host_addresses``)
    or relay through a TURN server whose ``relay_ip`` is ``client_address``.
    """

    host: str  # Janus's address (inside the namespace)
    port: int
    base_url: str  # e.g. http://198.18.x.y:PORT/janus
    client_address: str  # this machine's end of the veth pair
    rtp_ports: tuple[int, int]
    config_dir: Path
    namespace: NetworkNamespace
    process: ServerProcess

    @property
    def ice_host_addresses(self) -> list[str]:
        """What ``aioice.ice.get_host_addresses`` should return for a direct call to Janus."""
        return [self.client_address]


def find_janus_lib_dir() -> Path:
    """The directory holding Janus's ``plugins/`` and ``transports/`` (Debian: multiarch lib)."""
    found = kernel_lab.find_janus_lib_dir()
    if found is None:
        pytest.fail(f"Janus plugins not found in any of {[str(d) for d in JANUS_LIB_DIRS]}")
    return found


@contextlib.contextmanager
def run_janus(workdir: Path, *, rtp_port_count: int = 40) -> Iterator[JanusServer]:
    """Start ``janus`` (echotest over plain HTTP) in its own network namespace; stop it on exit.

    Each call takes one RTP port (bundled, RTCP multiplexed): ``rtp_port_count`` bounds the
    concurrent calls (the capacity benchmark asks for more than the tests need)."""
    binary = require_binary("janus", "janus")
    if os.geteuid() != 0:
        pytest.skip("Janus must run in a network namespace to keep ICE off real interfaces: root")
    lib_dir = find_janus_lib_dir()
    config_dir = workdir / "conf"
    config_dir.mkdir(parents=True, exist_ok=True)
    with network_namespace() as namespace:
        # Nothing else lives in the namespace, so any port there is free.
        http_port = 8088
        rtp_ports = (20000, 20000 + rtp_port_count - 1)
        for name, text in kernel_lab.janus_configs(
            lib_dir,
            config_dir,
            address=namespace.inner_address,
            ice_enforce=namespace.inner_interface,
            http_port=http_port,
            rtp_ports=rtp_ports,
            server_name="CallPathTestJanus",
        ).items():
            (config_dir / name).write_text(text)
        argv = [binary, "-C", str(config_dir / "janus.jcfg"), "-F", str(config_dir), "-o"]
        process = ServerProcess("janus", namespace.command(argv), workdir)
        base_url = f"http://{namespace.inner_address}:{http_port}/janus"
        try:
            process.wait_ready(lambda: http_get_json(f"{base_url}/info") is not None)
            yield JanusServer(
                host=namespace.inner_address,
                port=http_port,
                base_url=base_url,
                client_address=namespace.host_address,
                rtp_ports=rtp_ports,
                config_dir=config_dir,
                namespace=namespace,
                process=process,
            )
            process.check_alive()
        finally:
            process.stop()
