"""The kernel lab: the lab's scenarios with real servers, real sockets and nftables (root, Linux).

Two network namespaces joined by one veth pair, and nothing else:

- ``callpath-lab-<pid>-<tag>-client`` holds the user's end, ``198.18.200.1/24``. The real
  ``callpath run`` runs here with a generated profile;
- ``callpath-lab-<pid>-<tag>-outside`` holds the other end with ``198.18.200.2`` (coturn: TURN
  over UDP and TCP on 3478, over TLS on 443) and ``198.18.200.3`` (Janus, echotest over HTTP on
  8088). Traffic between coturn and Janus stays in this namespace, outside the censor.
  ``198.18.200.4`` holds CallPath's control server (UDP echo, TCP bulk, QUIC), which the
  client's probes compare against, as in the userspace lab.

The scenario's censor is nftables on the wire (``core/lab/nft.py``): what the client sends is
filtered where it arrives in the outside namespace, what it receives where it arrives in the
client's, so every loss is silent, as on a real network.

198.18.0.0/15 is reserved for benchmarking (RFC 2544), both veth ends live in namespaces made
here, and neither namespace has a route beyond the /24: no packet can leave. The root
namespace's interfaces, routes and firewall are never touched. See ``docs/lab-kernel.md``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import yaml

from callpath.core.i18n import _
from callpath.core.lab.certificates import LabCertificates, write_lab_certificates
from callpath.core.lab.nft import (
    CLIENT_INTERFACE,
    OUTSIDE_INTERFACE,
    Endpoint,
    Rulesets,
    Unexpressible,
    translate,
)
from callpath.core.lab.scenario import LAB_PATHS, Scenario
from callpath.core.model.results import PathId

if TYPE_CHECKING:
    from callpath.core.lab.comparison import Comparison

NAMESPACE_PREFIX = "callpath-lab"
SUBNET = ipaddress.IPv4Network("198.18.200.0/24")
CLIENT_ADDRESS = "198.18.200.1"
TURN_ADDRESS = "198.18.200.2"
JANUS_ADDRESS = "198.18.200.3"
CONTROL_ADDRESS = "198.18.200.4"
TURN_NAME = "turn.callpath.lab"  # in the certificate beside the address; nothing resolves it
TURN_USER = "lab"
TURN_REALM = "callpath.lab"
TURN_PORT = 3478  # UDP and TCP
TURN_TLS_PORT = 443
TURN_RELAY_PORTS = (49152, 49999)
JANUS_HTTP_PORT = 8088
JANUS_RTP_PORTS = (20000, 20999)
JANUS_URL = f"http://{JANUS_ADDRESS}:{JANUS_HTTP_PORT}/janus"
PASSWORD_VARIABLE = "CALLPATH_LAB_TURN_PASSWORD"
# CallPath's own MASQUE endpoint (``callpath echo-server --masque-port``) beside coturn.
MASQUE_PORT = 8443
MASQUE_HTTP_PORT = 8444
# The control server (``callpath echo-server --control-*-port``), on an address of its own so that
# a rule naming the relay's address (a residual block after a cut) does not reach it.
CONTROL_HTTP_PORT = 8444
CONTROL_UDP_PORT = 3479
CONTROL_TCP_PORT = 8445
CONTROL_QUIC_PORT = 4433

SERVICES: Mapping[str, Endpoint] = {
    "turn-udp": Endpoint(TURN_ADDRESS, TURN_PORT, "udp"),
    "turn-tcp": Endpoint(TURN_ADDRESS, TURN_PORT, "tcp"),
    "turn-tls": Endpoint(TURN_ADDRESS, TURN_TLS_PORT, "tcp"),
    "echo": Endpoint(JANUS_ADDRESS),
    "masque": Endpoint(TURN_ADDRESS, MASQUE_PORT, "udp"),
    # Plain TCP to the control server, so a scenario can block it (an allowlist would).
    "control": Endpoint(CONTROL_ADDRESS, CONTROL_TCP_PORT, "tcp"),
}
# Paths with a server in this lab (no proxy stand-in); a scenario's proxy paths are left out.
KERNEL_PATHS = LAB_PATHS
# Janus signalling, which the userspace lab keeps outside the censor, passes every rule.
SIGNALLING = Endpoint(JANUS_ADDRESS, JANUS_HTTP_PORT, "tcp")

START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 5.0
COMMAND_TIMEOUT_S = 10.0
RUN_TIMEOUT_S = 120.0
LOG_TAIL_LINES = 40

REQUIRED_BINARIES = (
    ("ip", "iproute2"),
    ("nft", "nftables"),
    ("turnserver", "coturn"),
    ("janus", "janus"),
)
JANUS_LIB_DIRS = (
    Path("/usr/lib/x86_64-linux-gnu/janus"),
    Path("/usr/lib/aarch64-linux-gnu/janus"),
    Path("/usr/lib/janus"),
    Path("/usr/local/lib/janus"),
    Path("/opt/janus/lib/janus"),
)
_ROUTE_TYPES = frozenset(
    {"unicast", "local", "broadcast", "multicast", "anycast", "blackhole", "unreachable"}
    | {"prohibit", "throw", "nat"}
)
_ALLOWED_DESTINATIONS = (SUBNET, ipaddress.IPv4Network("127.0.0.0/8"))


class KernelLabError(Exception):
    """The kernel lab cannot start or run; ``logs`` holds the servers' last log lines."""

    def __init__(self, message: str, logs: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.logs = logs

    def __str__(self) -> str:
        return f"{self.message}\n{self.logs}" if self.logs else self.message


class ScenarioNotExpressible(KernelLabError):
    """The scenario has a rule nftables cannot reproduce."""

    def __init__(self, scenario: Scenario, unexpressible: Unexpressible) -> None:
        super().__init__(
            _("scenario {id} cannot run in the kernel lab: {reason}").format(
                id=scenario.id, reason=unexpressible
            )
        )
        self.reason = unexpressible


@dataclass(frozen=True)
class KernelResult:
    """One scenario's call set in the kernel lab: what ``callpath run`` said and wrote."""

    scenario_id: str
    paths: tuple[str, ...]  # the scenario's paths this lab ran; expectations cover only these
    exit_code: int
    report: Mapping[str, Any]
    comparison: Comparison
    log_tails: Mapping[str, str] = field(default_factory=dict)

    @property
    def agrees(self) -> bool:
        return self.comparison.agrees

    def path_summary(self) -> list[tuple[str, str | None, str, str]]:
        """(path, failure, voice grade, video grade) of every path, for messages."""
        return [
            (p["id"], p["failure"], p["voice"]["grade"], p["video"]["grade"])
            for p in self.report.get("paths", [])
        ]


def kernel_paths(scenario: Scenario) -> tuple[str, ...]:
    """The scenario's paths this lab has servers for, in the scenario's order."""
    return tuple(str(path_id) for path_id in scenario.paths if path_id in KERNEL_PATHS)


def ruleset_for(scenario: Scenario) -> Rulesets:
    """The censor's nftables tables for ``scenario``; raises when it is inexpressible."""
    if not kernel_paths(scenario):
        reason = _("the kernel lab has no server for the paths {paths}").format(
            paths=", ".join(scenario.paths)
        )
        raise ScenarioNotExpressible(scenario, Unexpressible("paths", reason))
    ruleset = translate(scenario.rules, SERVICES, exempt=(SIGNALLING,))
    if isinstance(ruleset, Unexpressible):
        raise ScenarioNotExpressible(scenario, ruleset)
    return ruleset


def run_kernel_scenario(
    scenario: Scenario,
    timeout: float = RUN_TIMEOUT_S,
    *,
    redact: bool = False,
    language: str = "en",
) -> KernelResult:
    """Start the kernel lab, run ``scenario``'s call set through it, tear everything down.

    ``language`` is the one the report's texts (headline, findings) are written in."""
    ruleset_for(scenario)  # refuse before starting anything
    with KernelLab() as lab:
        return lab.run(scenario, timeout, redact=redact, language=language)


# --- requirements ---------------------------------------------------------------------------


def find_binary(name: str) -> str | None:
    """``name`` on PATH or in the sbin directories a non-root PATH often lacks."""
    found = shutil.which(name)
    if found:
        return found
    for directory in ("/usr/sbin", "/sbin", "/usr/local/sbin"):
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def find_janus_lib_dir() -> Path | None:
    """The directory holding Janus's ``plugins/`` and ``transports/``."""
    for directory in JANUS_LIB_DIRS:
        if (directory / "plugins" / "libjanus_echotest.so").is_file():
            return directory
    return None


def check_requirements() -> dict[str, str]:
    """Binary name → path; raises ``KernelLabError`` saying what is missing."""
    if not sys.platform.startswith("linux"):
        raise KernelLabError(_("the kernel lab runs on Linux only"))
    if os.geteuid() != 0:
        raise KernelLabError(
            _("the kernel lab needs root (it creates network namespaces and nftables rules)")
        )
    found = {}
    for name, package in REQUIRED_BINARIES:
        path = find_binary(name)
        if path is None:
            raise KernelLabError(
                _("the kernel lab needs {binary} (Debian package {package})").format(
                    binary=name, package=package
                )
            )
        found[name] = path
    if find_janus_lib_dir() is None:
        raise KernelLabError(
            _("the Janus echotest plugin is not installed in any of: {dirs}").format(
                dirs=", ".join(str(d) for d in JANUS_LIB_DIRS)
            )
        )
    return found


# --- processes and namespaces ---------------------------------------------------------------


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _command(argv: Sequence[str], *, stdin: str | None = None) -> str:
    """Run a set-up command; its failure is a ``KernelLabError`` quoting its error output."""
    try:
        result = subprocess.run(
            list(argv),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise KernelLabError(f"{' '.join(argv)}: {error}") from None
    if result.returncode != 0:
        raise KernelLabError(f"{' '.join(argv)}: {result.stderr.strip() or result.returncode}")
    return result.stdout


def _quiet(argv: Sequence[str]) -> None:
    """Run a teardown command whose failure changes nothing (the thing is already gone)."""
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        subprocess.run(list(argv), capture_output=True, timeout=COMMAND_TIMEOUT_S, check=False)


def _namespace_pids(namespace: str) -> list[int]:
    try:
        result = subprocess.run(
            ["ip", "netns", "pids", namespace],
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [int(word) for word in result.stdout.split() if word.isdigit()]


def _delete_namespace(namespace: str) -> None:
    """Kill what still runs in ``namespace`` (only the lab starts processes there), delete it."""
    for pid in _namespace_pids(namespace):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    _quiet(["ip", "netns", "del", namespace])


def remove_stale_namespaces() -> list[str]:
    """Delete the namespaces of kernel labs whose process is gone; returns their names."""
    try:
        listing = _command(["ip", "netns", "list"])
    except KernelLabError:
        return []
    removed = []
    for line in listing.splitlines():
        name = line.split()[0] if line.split() else ""
        parts = name.split("-")
        if not name.startswith(NAMESPACE_PREFIX + "-") or len(parts) < 5 or not parts[2].isdigit():
            continue
        if not Path(f"/proc/{parts[2]}").exists():
            _delete_namespace(name)
            removed.append(name)
    return removed


def foreign_routes(namespace: str) -> list[str]:
    """Routes in ``namespace`` (every table) that lead anywhere but the lab subnet or loopback."""
    foreign = []
    for family in ("-4", "-6"):
        listing = _command(["ip", "-n", namespace, family, "-o", "route", "show", "table", "all"])
        for line in listing.splitlines():
            words = line.split()
            if not words:
                continue
            destination = words[1] if words[0] in _ROUTE_TYPES and len(words) > 1 else words[0]
            try:
                network = ipaddress.ip_network(destination, strict=False)
            except ValueError:  # "default" and anything unexpected
                foreign.append(line.strip())
                continue
            if isinstance(network, ipaddress.IPv6Network):
                if network != ipaddress.IPv6Network("::1/128"):
                    foreign.append(line.strip())
            elif not any(network.subnet_of(allowed) for allowed in _ALLOWED_DESTINATIONS):
                foreign.append(line.strip())
    return foreign


def interfaces(namespace: str) -> list[str]:
    """Names of the network interfaces in ``namespace``."""
    listing = _command(["ip", "-n", namespace, "-o", "link", "show"])
    return [line.split(":")[1].strip().split("@")[0] for line in listing.splitlines() if line]


class _Daemon:
    """A server started by the lab inside a namespace, logging to a file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        workdir: Path,
        log: Path,
        environment: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.log = log
        self.stopped = False
        with log.open("wb") as console:
            # Its own session: Ctrl-C in the terminal reaches it only through ``stop``.
            self.process = subprocess.Popen(
                list(argv),
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=None if environment is None else dict(environment),
            )

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        self.stopped = True
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(STOP_TIMEOUT_S)


# --- server configuration -------------------------------------------------------------------


def write_certificates(directory: Path) -> LabCertificates:
    """A throwaway CA and a certificate for the relay's name and address, as PEM files."""
    return write_lab_certificates(
        directory, (TURN_NAME,), (TURN_ADDRESS,), "CallPath kernel lab CA"
    )


def coturn_config(
    workdir: Path,
    certificate: Path,
    key: Path,
    password: str,
    *,
    listen: str = TURN_ADDRESS,
    relay: str = TURN_ADDRESS,
    port: int = TURN_PORT,
    tls_port: int = TURN_TLS_PORT,
    user: str = TURN_USER,
    realm: str = TURN_REALM,
    relay_ports: tuple[int, int] = TURN_RELAY_PORTS,
    peer_lines: Sequence[str] = (
        # The relay relays to the echo peer only: never an open relay, even inside the lab.
        "denied-peer-ip=0.0.0.0-255.255.255.255",
        f"allowed-peer-ip={JANUS_ADDRESS}",
    ),
) -> str:
    """coturn's configuration: TURN over UDP/TCP on ``port``, TLS on ``tls_port``, one long-term
    user, logs and state in ``workdir``. The defaults are the kernel lab's; the test suite's
    coturn on loopback passes its own (``tests/servers.py``)."""
    lines = [
        f"listening-ip={listen}",
        f"relay-ip={relay}",
        f"listening-port={port}",
        f"tls-listening-port={tls_port}",
        f"cert={certificate}",
        f"pkey={key}",
        "lt-cred-mech",
        f"user={user}:{password}",
        f"realm={realm}",
        "fingerprint",
        *peer_lines,
        "no-multicast-peers",
        "no-cli",
        "no-dtls",
        "no-rfc5780",
        "no-software-attribute",
        "no-stdout-log",
        f"min-port={relay_ports[0]}",
        f"max-port={relay_ports[1]}",
        f"log-file={workdir / 'turnserver.log'}",
        "simple-log",
        f"pidfile={workdir / 'turnserver.pid'}",
        f"userdb={workdir / 'turndb.sqlite'}",
        "relay-threads=1",
    ]
    return "\n".join(lines) + "\n"


def _all_but(folder: Path, keep: str) -> str:
    return ",".join(sorted(path.name for path in folder.glob("*.so") if path.name != keep))


def janus_configs(
    lib_dir: Path,
    config_dir: Path,
    *,
    address: str = JANUS_ADDRESS,
    ice_enforce: str = JANUS_ADDRESS,
    http_port: int = JANUS_HTTP_PORT,
    rtp_ports: tuple[int, int] = JANUS_RTP_PORTS,
    server_name: str = "CallPathKernelLab",
) -> dict[str, str]:
    """File name → text of Janus's configuration: echotest over HTTP on ``address``, ICE only
    on ``ice_enforce`` (an address or interface name). The defaults are the kernel lab's; the
    test suite's Janus in its own namespace passes its own (``tests/servers.py``)."""
    main = f"""general: {{
    configs_folder = "{config_dir}"
    plugins_folder = "{lib_dir / "plugins"}"
    transports_folder = "{lib_dir / "transports"}"
    events_folder = "{lib_dir / "events"}"
    loggers_folder = "{lib_dir / "loggers"}"
    debug_level = 4
    debug_colors = false
    session_timeout = 60
    server_name = "{server_name}"
    interface = "{address}"
}}
media: {{
    ipv6 = false
    rtp_port_range = "{rtp_ports[0]}-{rtp_ports[1]}"
}}
nat: {{
    nice_debug = false
    ice_enforce_list = "{ice_enforce}"
    ignore_mdns = true
}}
plugins: {{
    disable = "{_all_but(lib_dir / "plugins", "libjanus_echotest.so")}"
}}
transports: {{
    disable = "{_all_but(lib_dir / "transports", "libjanus_http.so")}"
}}
loggers: {{
    disable = "{_all_but(lib_dir / "loggers", "")}"
}}
events: {{
    broadcast = false
    disable = "{_all_but(lib_dir / "events", "")}"
}}
"""
    http = f"""general: {{
    json = "compact"
    base_path = "/janus"
    http = true
    port = {http_port}
    ip = "{address}"
    https = false
}}
admin: {{
    admin_http = false
    admin_https = false
}}
"""
    return {
        "janus.jcfg": main,
        "janus.transport.http.jcfg": http,
        "janus.plugin.echotest.jcfg": "general: {\n}\n",
    }


def client_profile(scenario: Scenario, ca_file: Path) -> str:
    """The profile ``callpath run`` uses in the client namespace: addresses, no DNS."""
    profile = {
        "version": 1,
        "name": f"Kernel lab: {scenario.id}",
        "target": {"kind": "janus", "url": JANUS_URL},
        "ice_servers": [
            {
                "urls": [
                    f"turn:{TURN_ADDRESS}:{TURN_PORT}?transport=udp",
                    f"turn:{TURN_ADDRESS}:{TURN_PORT}?transport=tcp",
                    # The address is in the certificate, so TLS verifies it without a name.
                    f"turns:{TURN_ADDRESS}:{TURN_TLS_PORT}?transport=tcp",
                ],
                "username": TURN_USER,
                "credential": f"${{env:{PASSWORD_VARIABLE}}}",
            }
        ],
        "paths": list(kernel_paths(scenario)),
        "ca_bundle": str(ca_file),
        "control": {
            "host": CONTROL_ADDRESS,
            "udp_port": CONTROL_UDP_PORT,
            "tcp_bulk_port": CONTROL_TCP_PORT,
            "quic_port": CONTROL_QUIC_PORT,
        },
    }
    if PathId.MASQUE in kernel_paths(scenario):
        profile["masque"] = {
            "url": f"https://{TURN_ADDRESS}:{MASQUE_PORT}",
            "server_name": TURN_NAME,
            "token": f"${{env:{PASSWORD_VARIABLE}}}",
        }
    return yaml.safe_dump(profile, sort_keys=False)


# --- readiness probe (runs inside the client namespace) -------------------------------------

_STUN_COOKIE = 0x2112A442


def stun_answers(host: str, port: int) -> bool:
    transaction = secrets.token_bytes(12)
    request = struct.pack("!HHI", 0x0001, 0, _STUN_COOKIE) + transaction
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.5)
        try:
            sock.sendto(request, (host, port))
            data = sock.recv(2048)
        except OSError:
            return False
    return (
        len(data) >= 20
        and struct.unpack("!H", data[:2])[0] == 0x0101
        and data[8:20] == (transaction)
    )


def tls_answers(host: str, port: int, ca_file: Path) -> bool:
    context = ssl.create_default_context(cafile=str(ca_file))
    try:
        with (
            socket.create_connection((host, port), timeout=1.0) as raw,
            context.wrap_socket(raw, server_hostname=host),
        ):
            return True
    except (OSError, ssl.SSLError):
        return False


def tcp_answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def janus_answers(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy
    try:
        with opener.open(f"{url}/info", timeout=1.0) as response:
            info = json.loads(response.read())
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and info.get("janus") == "server_info"


def probe_services(ca_file: Path, timeout: float) -> list[str]:
    """Poll every lab service until all answer or ``timeout`` passes; returns the silent ones."""
    checks = {
        "coturn STUN/UDP": lambda: stun_answers(TURN_ADDRESS, TURN_PORT),
        "coturn TCP": lambda: tcp_answers(TURN_ADDRESS, TURN_PORT),
        "coturn TLS": lambda: tls_answers(TURN_ADDRESS, TURN_TLS_PORT, ca_file),
        "Janus HTTP": lambda: janus_answers(JANUS_URL),
        "control server TCP": lambda: tcp_answers(CONTROL_ADDRESS, CONTROL_TCP_PORT),
    }
    deadline = time.monotonic() + timeout
    silent = list(checks)
    while True:
        silent = [name for name in silent if not checks[name]()]
        if not silent or time.monotonic() >= deadline:
            return silent
        time.sleep(0.2)


# --- the lab --------------------------------------------------------------------------------


class KernelLab:
    """Namespaces, veth, coturn and Janus for kernel-level scenarios; a context manager.

    Start once, then ``run`` as many scenarios as needed: each run swaps the client
    namespace's nftables table and starts a fresh ``callpath run``.
    """

    def __init__(self, workdir: Path | None = None) -> None:
        tag = secrets.token_hex(3)
        base = f"{NAMESPACE_PREFIX}-{os.getpid()}-{tag}"
        self.client_namespace = f"{base}-client"
        self.outside_namespace = f"{base}-outside"
        self._given_workdir = workdir
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        self.workdir = workdir or Path()
        self._password = secrets.token_urlsafe(18)
        self._daemons: list[_Daemon] = []
        self._certificates: LabCertificates | None = None
        self._runs = 0
        self._started = False

    def __enter__(self) -> KernelLab:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- start and stop

    def start(self) -> None:
        binaries = check_requirements()
        remove_stale_namespaces()
        if self._given_workdir is None:
            self._tempdir = tempfile.TemporaryDirectory(prefix="callpath-kernel-lab-")
            self.workdir = Path(self._tempdir.name)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o700)  # the coturn config holds the relay's password
        self._started = True
        self._create_network()
        problems = self.isolation_problems()
        if problems:
            raise KernelLabError(
                _("the lab's namespaces are not isolated: {problems}").format(
                    problems="; ".join(problems)
                )
            )
        self._certificates = write_certificates(self.workdir)
        self._start_coturn(binaries["turnserver"])
        self._start_janus(binaries["janus"])
        self._start_masque()
        self._start_control()
        self._wait_ready()
        self._wait_masque_ready()

    def close(self) -> None:
        """Stop the servers and delete both namespaces; safe to call more than once."""
        for daemon in reversed(self._daemons):
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                daemon.stop()
        self._daemons.clear()
        if self._started:
            _delete_namespace(self.client_namespace)
            _delete_namespace(self.outside_namespace)
            self._started = False
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None

    def _in(self, namespace: str, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", namespace, *argv]

    def _create_network(self) -> None:
        client, outside = self.client_namespace, self.outside_namespace
        prefix = SUBNET.prefixlen
        for namespace in (client, outside):
            _command(["ip", "netns", "add", namespace])
            # IPv4 only: no IPv6 link-local addresses for ICE to find (best effort: a kernel
            # without IPv6 has nothing to disable).
            with contextlib.suppress(KernelLabError):
                disable = "net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1"
                _command(self._in(namespace, ["sysctl", "-qw", *disable.split()]))
        # Both ends are created inside the namespaces: the root namespace never sees them.
        # (No word here contains a space, so split() gives the argument vectors.)
        commands = [
            f"ip -n {client} link add {CLIENT_INTERFACE} type veth "
            f"peer name {OUTSIDE_INTERFACE} netns {outside}",
            f"ip -n {client} addr add {CLIENT_ADDRESS}/{prefix} dev {CLIENT_INTERFACE}",
            f"ip -n {outside} addr add {TURN_ADDRESS}/{prefix} dev {OUTSIDE_INTERFACE}",
            f"ip -n {outside} addr add {JANUS_ADDRESS}/{prefix} dev {OUTSIDE_INTERFACE}",
            f"ip -n {outside} addr add {CONTROL_ADDRESS}/{prefix} dev {OUTSIDE_INTERFACE}",
        ]
        for namespace, interface in ((client, CLIENT_INTERFACE), (outside, OUTSIDE_INTERFACE)):
            commands.append(f"ip -n {namespace} link set lo up")
            commands.append(f"ip -n {namespace} link set {interface} up")
        for command in commands:
            _command(command.split())

    def isolation_problems(self) -> list[str]:
        """Anything that would let a packet leave the two namespaces (empty when isolated)."""
        problems = []
        for namespace, interface in (
            (self.client_namespace, CLIENT_INTERFACE),
            (self.outside_namespace, OUTSIDE_INTERFACE),
        ):
            problems += [f"{namespace}: route {route}" for route in foreign_routes(namespace)]
            extra = sorted(set(interfaces(namespace)) - {"lo", interface})
            problems += [f"{namespace}: interface {name}" for name in extra]
        return problems

    def _start_coturn(self, binary: str) -> None:
        assert self._certificates is not None
        workdir = self.workdir / "coturn"
        workdir.mkdir()
        config = workdir / "turnserver.conf"
        config.touch(mode=0o600)
        certificates = self._certificates
        config.write_text(
            coturn_config(workdir, certificates.certificate, certificates.key, self._password)
        )
        argv = self._in(self.outside_namespace, [binary, "-c", str(config)])
        self._daemons.append(_Daemon("coturn", argv, workdir, workdir / "console.log"))

    def _start_janus(self, binary: str) -> None:
        lib_dir = find_janus_lib_dir()
        assert lib_dir is not None  # check_requirements found it
        workdir = self.workdir / "janus"
        config_dir = workdir / "conf"
        config_dir.mkdir(parents=True)
        for name, text in janus_configs(lib_dir, config_dir).items():
            (config_dir / name).write_text(text)
        argv = self._in(
            self.outside_namespace,
            [binary, "-C", str(config_dir / "janus.jcfg"), "-F", str(config_dir), "-o"],
        )
        self._daemons.append(_Daemon("janus", argv, workdir, workdir / "console.log"))

    def _start_masque(self) -> None:
        """CallPath's echo server in the outside namespace, serving only its MASQUE endpoint,
        which may forward to Janus and nothing else."""
        assert self._certificates is not None
        self._start_echo_server("masque", [
            "--listen", f"{TURN_ADDRESS}:{MASQUE_HTTP_PORT}",
            "--cert", str(self._certificates.certificate),
            "--key", str(self._certificates.key),
            "--ice-address", TURN_ADDRESS,
            "--masque-port", str(MASQUE_PORT),
            "--masque-allow", f"{JANUS_ADDRESS}:1024-65535",
        ])  # fmt: skip

    def _start_control(self) -> None:
        """A second echo server in the outside namespace for its control server only: the
        probes' reference peer beyond the censor (its echo endpoint goes unused)."""
        self._start_echo_server("control", [
            "--listen", f"{CONTROL_ADDRESS}:{CONTROL_HTTP_PORT}",
            "--ice-address", CONTROL_ADDRESS,
            "--max-calls", "1",
            "--control-udp-port", str(CONTROL_UDP_PORT),
            "--control-tcp-port", str(CONTROL_TCP_PORT),
            "--control-quic-port", str(CONTROL_QUIC_PORT),
        ])  # fmt: skip

    def _start_echo_server(self, name: str, options: Sequence[str]) -> None:
        """``callpath echo-server OPTIONS`` in the outside namespace, its bearer token the
        lab's password."""
        workdir = self.workdir / name
        workdir.mkdir()
        command = [sys.executable, "-m", "callpath.core.cli.main", "echo-server", *options]
        command += ["--token-env", PASSWORD_VARIABLE, "--allow-private-candidates"]
        environment = self._environment()
        environment[PASSWORD_VARIABLE] = self._password
        argv = self._in(self.outside_namespace, command)
        self._daemons.append(_Daemon(name, argv, workdir, workdir / "console.log", environment))

    def _wait_masque_ready(self) -> None:
        daemon = next(d for d in self._daemons if d.name == "masque")
        deadline = time.monotonic() + START_TIMEOUT_S
        while b"MASQUE endpoint on UDP" not in daemon.log.read_bytes():
            self._check_servers()
            if time.monotonic() > deadline:
                raise KernelLabError(
                    _("the lab's servers did not answer within {seconds:.0f} s: {silent}").format(
                        seconds=START_TIMEOUT_S, silent="masque"
                    ),
                    self.logs(),
                )
            time.sleep(0.1)

    def _wait_ready(self) -> None:
        assert self._certificates is not None
        probe = [sys.executable, "-m", "callpath.core.lab.kernel", "probe"]
        argv = self._in(
            self.client_namespace, [*probe, str(self._certificates.ca), str(START_TIMEOUT_S)]
        )
        try:
            result = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=START_TIMEOUT_S + COMMAND_TIMEOUT_S,
                env=self._environment(),
                check=False,
            )
            silent = result.stdout.strip() or result.stderr.strip()
            ready = result.returncode == 0
        except subprocess.TimeoutExpired:
            silent, ready = "probe timed out", False
        self._check_servers()
        if not ready:
            raise KernelLabError(
                _("the lab's servers did not answer within {seconds:.0f} s: {silent}").format(
                    seconds=START_TIMEOUT_S, silent=silent
                ),
                self.logs(),
            )

    def _check_servers(self) -> None:
        for daemon in self._daemons:
            if not daemon.stopped and not daemon.alive():
                raise KernelLabError(
                    _("{server} stopped unexpectedly (exit code {code})").format(
                        server=daemon.name, code=daemon.process.returncode
                    ),
                    self.logs(),
                )

    def logs(self, extra: Mapping[str, Path] | None = None) -> str:
        return "\n".join(f"--- {name} ---\n{text}" for name, text in self.log_tails(extra).items())

    def log_tails(self, extra: Mapping[str, Path] | None = None) -> dict[str, str]:
        tails = {daemon.name: _tail(daemon.log) for daemon in self._daemons}
        coturn_log = self.workdir / "coturn" / "turnserver.log"
        if coturn_log.exists():
            tails["coturn log"] = _tail(coturn_log)
        for name, path in (extra or {}).items():
            tails[name] = _tail(path)
        return tails

    def _environment(self) -> dict[str, str]:
        environment = dict(os.environ)
        # ``python -m core...`` must find this checkout whatever the current directory is.
        root = str(Path(__file__).resolve().parents[2])
        paths = [root, *filter(None, environment.get("PYTHONPATH", "").split(os.pathsep))]
        environment["PYTHONPATH"] = os.pathsep.join(paths)
        for proxy in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
            environment.pop(proxy, None)
        return environment

    # -- scenarios

    def apply(self, scenario: Scenario) -> Rulesets:
        """Replace the censor's rules with ``scenario``'s; returns the tables loaded."""
        rulesets = ruleset_for(scenario)
        _command(self._in(self.outside_namespace, ["nft", "-f", "-"]), stdin=rulesets.outbound)
        _command(self._in(self.client_namespace, ["nft", "-f", "-"]), stdin=rulesets.inbound)
        return rulesets

    def ruleset(self) -> Rulesets:
        """The censor's tables as the kernel lists them (outbound, inbound)."""
        listing = ["nft", "list", "ruleset"]
        return Rulesets(
            outbound=_command(self._in(self.outside_namespace, listing)),
            inbound=_command(self._in(self.client_namespace, listing)),
        )

    def run(
        self,
        scenario: Scenario,
        timeout: float = RUN_TIMEOUT_S,
        *,
        redact: bool = False,
        language: str = "en",
    ) -> KernelResult:
        """Apply ``scenario``'s rules and run ``callpath run`` over the paths this lab has.

        The report keeps the lab's addresses unless ``redact`` (they are all 198.18.200.x).
        """
        assert self._certificates is not None, "start the lab first"
        self.apply(scenario)
        self._runs += 1
        rundir = self.workdir / f"run-{self._runs}-{scenario.id}"
        rundir.mkdir()
        profile = rundir / "profile.yaml"
        profile.write_text(client_profile(scenario, self._certificates.ca))
        report_file = rundir / "report.json"
        events, errors = rundir / "events.jsonl", rundir / "stderr.log"
        cli = [sys.executable, "-m", "callpath.core.cli.main", "--lang", language, "run", "--jsonl"]
        cli += [] if redact else ["--no-redact"]
        argv = self._in(
            self.client_namespace, [*cli, "--profile", str(profile), "--json", str(report_file)]
        )
        environment = self._environment()
        environment[PASSWORD_VARIABLE] = self._password
        extra_logs = {"callpath run (stderr)": errors, "callpath run (events)": events}
        with events.open("wb") as stdout, errors.open("wb") as stderr:
            process = subprocess.Popen(
                argv,
                cwd=rundir,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                env=environment,
                start_new_session=True,
            )
            try:
                exit_code = process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(STOP_TIMEOUT_S)
                raise KernelLabError(
                    _("the test calls did not finish within {seconds:.0f} s").format(
                        seconds=timeout
                    ),
                    self.logs(extra_logs),
                ) from None
        self._check_servers()
        try:
            report = json.loads(report_file.read_text())
        except (OSError, ValueError):
            raise KernelLabError(
                _("callpath run wrote no report (exit code {code})").format(code=exit_code),
                self.logs(extra_logs),
            ) from None
        return KernelResult(
            scenario_id=scenario.id,
            paths=kernel_paths(scenario),
            exit_code=exit_code,
            report=report,
            comparison=_compare(scenario, report),
            log_tails=self.log_tails(extra_logs),
        )


def _compare(scenario: Scenario, report: Mapping[str, Any]) -> Comparison:
    """The report's verdict and findings beside the scenario's expectations, on this lab's
    paths, by the same rule as the userspace lab (``callpath.core.lab.comparison``)."""
    from callpath.core.lab.comparison import compare
    from callpath.core.report.decode import report_from_dict

    return compare(scenario, report_from_dict(report), paths_run=frozenset(kernel_paths(scenario)))


def _probe_main(argv: Sequence[str]) -> int:
    """``python -m callpath.core.lab.kernel probe CA_FILE TIMEOUT``: 0 once every service
    answers."""
    if len(argv) != 3 or argv[0] != "probe":
        print("usage: python -m callpath.core.lab.kernel probe CA_FILE TIMEOUT_S", file=sys.stderr)
        return 2
    silent = probe_services(Path(argv[1]), float(argv[2]))
    if silent:
        print(", ".join(silent))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_probe_main(sys.argv[1:]))
