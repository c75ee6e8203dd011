"""Profiles: the YAML file support staff send to users, describing their echo peer and relays.

``load_profile`` turns a file into a frozen ``Profile``. Every mistake becomes a ``ProfileError``
carrying the file and the 1-based line of the offending YAML node, and a message that says what
is wrong and what to write instead. The format is documented in ``docs/profile.md``.

Secrets (TURN credentials, echo tokens) are only ever *references* in a profile:
``${env:NAME}`` or ``keyring:SERVICE/USER``. They are resolved lazily, when the engine (or the
CLI's start-up check) asks, so parsing a profile never touches the environment or the keyring.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import ipaddress
import math
import os
import re
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from callpath.core.i18n import _
from callpath.core.model.config import QualityConfig, Timeouts
from callpath.core.model.errors import LocatedError
from callpath.core.model.hostnames import control_character_problem, host_problem, url_problem
from callpath.core.model.proxy_url import ProxyUrl, parse_proxy_url
from callpath.core.model.results import PathId
from callpath.core.model.yaml_input import (
    YamlLimits,
    check_list_length,
    compose_yaml,
    plain_int,
    plain_number,
    read_input_file,
    shown,
)
from callpath.core.profile import secretstore

PROFILE_VERSION = 1
MAX_PROFILE_BYTES = 1024 * 1024
# What a profile may hold (docs/profile.md, "Limits"): far above any real profile, far below
# what would make loading slow or memory-hungry.
PROFILE_LIMITS = YamlLimits(max_bytes=MAX_PROFILE_BYTES, max_depth=16, max_nodes=10_000)
MAX_ICE_SERVERS = 16
MAX_URIS_PER_SERVER = 16
MAX_PROXIES = 16

# Paths this release can run; the other PathId values are reserved for later releases.
IMPLEMENTED_PATHS: tuple[PathId, ...] = tuple(PathId)
TURN_PATHS: tuple[PathId, ...] = (PathId.TURN_UDP, PathId.TURN_TCP, PathId.TURN_TLS)


class ProfileError(LocatedError):
    """A profile that cannot be used."""


# --- ICE server URIs (RFC 7064 stun:, RFC 7065 turn:/turns:) ------------------------------------

IceScheme = Literal["stun", "turn", "turns"]
IceTransport = Literal["udp", "tcp"]

DEFAULT_PORTS: dict[str, int] = {"stun": 3478, "turn": 3478, "turns": 5349}
_HOST_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")


@dataclass(frozen=True)
class IceUri:
    scheme: IceScheme
    host: str  # lower-case name, dotted IPv4, or IPv6 without brackets
    port: int
    transport: IceTransport  # stun: always udp; turns: always tcp

    @property
    def host_port(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def __str__(self) -> str:
        if self.scheme == "stun":
            return f"stun:{self.host_port}"
        return f"{self.scheme}:{self.host_port}?transport={self.transport}"


def _uri_error(uri: str, problem: str) -> ValueError:
    return ValueError(_("bad ICE server URI {uri!r}: {problem}").format(uri=uri, problem=problem))


def _parse_host(uri: str, text: str) -> str:
    if not text:
        raise _uri_error(uri, _("the host is missing; write e.g. turn:turn.example.org:3478"))
    if re.fullmatch(r"[0-9.]+", text):
        try:
            return str(ipaddress.IPv4Address(text))
        except ValueError:
            raise _uri_error(
                uri, _("{host!r} is not a valid IPv4 address").format(host=text)
            ) from None
    labels = text.split(".")
    if len(text) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in labels):
        raise _uri_error(
            uri,
            _(
                "{host!r} is not a valid host name (letters, digits, '-' and '.' only; "
                "IPv6 addresses go in brackets)"
            ).format(host=text),
        )
    return text.lower()


def _split_host_port(uri: str, text: str) -> tuple[str, str | None]:
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise _uri_error(uri, _("the IPv6 address has no closing ']'"))
        literal, after = text[1:end], text[end + 1 :]
        try:
            if "%" in literal:
                raise ValueError(literal)
            host = str(ipaddress.IPv6Address(literal))
        except ValueError:
            raise _uri_error(
                uri, _("{host!r} is not a valid IPv6 address").format(host=literal)
            ) from None
        if not after:
            return host, None
        if not after.startswith(":"):
            raise _uri_error(uri, _("expected ':PORT' after the IPv6 address"))
        return host, after[1:]
    if text.count(":") > 1:
        raise _uri_error(uri, _("put IPv6 addresses in brackets, e.g. turn:[2001:db8::1]:3478"))
    host, colon, port = text.partition(":")
    return _parse_host(uri, host), (port if colon else None)


def _parse_port(uri: str, text: str | None, scheme: str) -> int:
    if text is None:
        return DEFAULT_PORTS[scheme]
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= 65535:
        raise _uri_error(
            uri,
            _("port {port!r} is not a number from 1 to 65535 (leave it out for {default})").format(
                port=text, default=DEFAULT_PORTS[scheme]
            ),
        )
    return int(text)


def _parse_transport(uri: str, scheme: str, query: str | None) -> IceTransport:
    if query is None:
        return "tcp" if scheme == "turns" else "udp"
    if scheme == "stun":
        raise _uri_error(uri, _("stun: URIs take no '?transport='; STUN always runs over UDP"))
    key, equals, value = query.partition("=")
    if key.lower() != "transport" or not equals:
        raise _uri_error(uri, _("the only query allowed is ?transport=udp or ?transport=tcp"))
    transport = value.lower()
    if transport not in ("udp", "tcp"):
        raise _uri_error(uri, _("unknown transport {value!r}; use udp or tcp").format(value=value))
    if scheme == "turns" and transport == "udp":
        raise _uri_error(
            uri,
            _(
                "turns: with transport=udp (TURN over DTLS) is not supported; use turns: over TCP "
                "(leave the transport out) or turn:HOST:PORT?transport=udp"
            ),
        )
    return "tcp" if transport == "tcp" else "udp"


def parse_ice_uri(text: str) -> IceUri:
    """Parse ``stun:HOST[:PORT]``, ``turn:HOST[:PORT][?transport=udp|tcp]`` or ``turns:...``.

    Raises ``ValueError`` with a message that says how to write the URI correctly.
    """
    uri = text.strip()
    if not uri:
        raise ValueError(
            _("empty ICE server URI; write e.g. turn:turn.example.org:3478?transport=udp")
        )
    userinfo, at, after_at = uri.partition("?")[0].rpartition("@")
    if at:
        # What precedes '@' may be a password: keep it out of the message.
        scheme_part = userinfo.split(":", 1)[0] + ":" if ":" in userinfo else ""
        raise _uri_error(
            f"{scheme_part}***@{after_at}",
            _(
                "user names and passwords do not go in the URI; write them as username and "
                "credential next to urls"
            ),
        )
    if any(character.isspace() for character in uri):
        raise _uri_error(uri, _("URIs contain no spaces"))
    scheme_text, colon, rest = uri.partition(":")
    scheme = scheme_text.lower()
    if not colon or scheme not in DEFAULT_PORTS:
        if scheme == "stuns":
            problem = _("stuns: (STUN over TLS) is not supported; use stun: or turns:")
        else:
            problem = _("unknown scheme; ICE server URIs start with stun:, turn: or turns:")
        raise _uri_error(uri, problem)
    if rest.startswith("//"):
        raise _uri_error(
            uri,
            _("ICE server URIs have no '//' after the scheme; write {fixed}").format(
                fixed=f"{scheme}:{rest[2:]}"
            ),
        )
    if "#" in rest:
        raise _uri_error(uri, _("ICE server URIs have no '#' fragment"))
    authority, question, query = rest.partition("?")
    if "/" in authority:
        raise _uri_error(uri, _("ICE server URIs have no path ('/'); write SCHEME:HOST:PORT"))
    host, port_text = _split_host_port(uri, authority)
    port = _parse_port(uri, port_text, scheme)
    transport = _parse_transport(uri, scheme, query if question else None)
    return IceUri(scheme=_SCHEMES[scheme], host=host, port=port, transport=transport)


_SCHEMES: dict[str, IceScheme] = {"stun": "stun", "turn": "turn", "turns": "turns"}


# --- secret references --------------------------------------------------------------------------


class SecretKind(enum.StrEnum):
    ENV = "env"
    KEYRING = "keyring"


_ENV_REFERENCE = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}")


def _literal_secret_message() -> str:
    return _("secrets are never written in a profile; use ${env:NAME} or keyring:SERVICE/USER")


@dataclass(frozen=True)
class SecretRef:
    """A reference to a secret kept outside the profile; never the secret itself."""

    text: str  # the reference as written, e.g. "${env:TURN_PASSWORD}"
    kind: SecretKind
    env_var: str | None = None  # for ${env:NAME}
    service: str | None = None  # for keyring:SERVICE/USER
    user: str | None = None
    # Where the reference was written, so resolution errors point at the profile line.
    file: str | None = field(default=None, compare=False)
    line: int | None = field(default=None, compare=False)

    @staticmethod
    def parse(text: str, *, file: str | None = None, line: int | None = None) -> SecretRef:
        """Parse ``${env:NAME}`` or ``keyring:SERVICE/USER``; ``ValueError`` for anything else.

        The message never repeats ``text`` unless it is recognisably a reference, because a
        mistaken value may be a real password.
        """
        reference = text.strip()
        match = _ENV_REFERENCE.fullmatch(reference)
        if match:
            return SecretRef(
                text=reference, kind=SecretKind.ENV, env_var=match[1], file=file, line=line
            )
        if reference.startswith("${env:"):
            raise ValueError(
                _(
                    "malformed reference {text!r}; write ${{env:NAME}} where NAME has only "
                    "letters, digits and '_' and does not start with a digit"
                ).format(text=reference)
            )
        if reference.startswith("keyring:"):
            service, slash, user = reference[len("keyring:") :].partition("/")
            if slash:
                problem = secretstore.keyring_name_problem(service, user)
            else:
                problem = _("the '/' between service and user is missing")
            if problem:
                raise ValueError(
                    _("malformed reference {text!r}: {problem}; write keyring:SERVICE/USER").format(
                        text=reference, problem=problem
                    )
                )
            return SecretRef(
                text=reference,
                kind=SecretKind.KEYRING,
                service=service,
                user=user,
                file=file,
                line=line,
            )
        if reference.startswith("$"):
            raise ValueError(
                _("environment references are written ${env:NAME}, e.g. ${env:TURN_PASSWORD}")
            )
        raise ValueError(_literal_secret_message())

    def _error(self, message: str) -> ProfileError:
        return ProfileError(f"{self.text}: {message}", file=self.file, line=self.line)

    def resolve(self) -> str:
        """The secret's value; ``ProfileError`` saying how to provide it when it is missing."""
        if self.kind is SecretKind.ENV:
            assert self.env_var is not None
            value = os.environ.get(self.env_var)
            if value is None:
                raise self._error(
                    _(
                        "the environment variable {name} is not set; set the environment "
                        "variable {name} before running callpath"
                    ).format(name=self.env_var)
                )
            if not value:
                raise self._error(
                    _("the environment variable {name} is empty; set it to the secret").format(
                        name=self.env_var
                    )
                )
            return value
        assert self.service is not None and self.user is not None
        try:
            stored = secretstore.get_secret(self.service, self.user)
        except secretstore.SecretStoreError as error:
            raise self._error(str(error)) from None
        if stored is None:
            raise self._error(
                _(
                    "no secret is stored in the keyring for service {service!r} and user "
                    "{user!r}; run: callpath secret set {service} {user}"
                ).format(service=self.service, user=self.user)
            )
        return stored


def parse_secret_ref(text: str) -> SecretRef:
    return SecretRef.parse(text)


# --- profile ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IceServer:
    urls: tuple[IceUri, ...]
    username: str | None = None
    credential: SecretRef | None = None
    # Other server names for the ClientHello of this server's turns: URIs, tried in order when
    # the relay's own name is reset, dropped or frozen; the certificate is still checked
    # against the name in the URI.
    sni_alternatives: tuple[str, ...] = ()


class TargetKind(enum.StrEnum):
    ECHO = "echo"  # the project's own echo peer (callpath echo-server)
    JANUS = "janus"  # a Janus gateway's echotest plugin over REST
    RELAY_LOOPBACK = "relay-loopback"  # two local relay-only peers through the same TURN server


@dataclass(frozen=True)
class ProxyEntry:
    """A proxy the user's circumvention tool (or network) offers."""

    url: ProxyUrl
    password: SecretRef | None = None
    # A STUN server reached through the proxy, to learn the address peers see (socks5-udp).
    stun: IceUri | None = None


@dataclass(frozen=True)
class MasqueServer:
    """A MASQUE (CONNECT-UDP over HTTP/3) proxy, e.g. ``callpath echo-server``'s endpoint."""

    url: str
    host: str
    port: int
    server_name: str | None = None
    token: SecretRef | None = None


@dataclass(frozen=True)
class ControlServer:
    """Where the cooperative control server listens (docs/control-server.md), named in the
    profile because the echo target does not advertise it (a Janus target, or a control server
    on another host). A port left out turns that service's probes off."""

    host: str
    udp_port: int | None = None
    tcp_bulk_port: int | None = None
    quic_port: int | None = None


@dataclass(frozen=True)
class Target:
    kind: TargetKind
    url: str | None = None  # http(s) signalling URL, for echo and janus
    token: SecretRef | None = None  # echo only


def _proxy_for(proxies: Iterable[ProxyEntry], path_id: str) -> ProxyEntry | None:
    wanted = {PathId.SOCKS5_UDP: "socks5", PathId.SOCKS5_TURN: "socks5", PathId.HTTP_TURN: "http"}
    kind = wanted.get(PathId(path_id)) if path_id in set(PathId) else None
    if kind is None:
        return None
    return next((proxy for proxy in proxies if proxy.url.kind == kind), None)


def _server_for(ice_servers: Iterable[IceServer], path_id: str) -> tuple[IceServer, IceUri] | None:
    wanted: dict[str, tuple[str, str]] = {
        PathId.DIRECT: ("stun", "udp"),
        PathId.TURN_UDP: ("turn", "udp"),
        PathId.TURN_TCP: ("turn", "tcp"),
        PathId.TURN_TLS: ("turns", "tcp"),
    }
    if path_id not in wanted:
        return None
    scheme, transport = wanted[path_id]
    for server in ice_servers:
        for uri in server.urls:
            if uri.scheme == scheme and uri.transport == transport:
                return server, uri
    return None


@dataclass(frozen=True)
class Profile:
    version: int
    name: str
    source: Path | None
    target: Target
    ice_servers: tuple[IceServer, ...]
    paths: tuple[str, ...]  # PathId values, in the order given (or the default order)
    timeouts: Timeouts = field(default_factory=Timeouts)
    quality: QualityConfig = field(default_factory=QualityConfig)
    ca_bundle: Path | None = None
    description: str = ""
    sender: str = ""
    proxies: tuple[ProxyEntry, ...] = ()
    masque: MasqueServer | None = None
    control: ControlServer | None = None

    def proxy_for(self, path_id: str) -> ProxyEntry | None:
        """The proxy a proxy path goes through: socks5-udp and socks5-turn take the first
        SOCKS5 proxy, http-turn the first HTTP proxy."""
        return _proxy_for(self.proxies, path_id)

    def relay_behind_proxy(self) -> tuple[IceServer, IceUri] | None:
        """The TURN server that socks5-turn and http-turn reach through the proxy: the first
        turns: URI, else the first turn: URI over TCP (a proxy carries TCP only)."""
        return _server_for(self.ice_servers, PathId.TURN_TLS) or _server_for(
            self.ice_servers, PathId.TURN_TCP
        )

    def server_for(self, path_id: str) -> tuple[IceServer, IceUri] | None:
        """The ICE server and URI a path uses: direct → first stun:, turn-udp → first turn:
        over udp, turn-tcp → first turn: over tcp, turn-tls → first turns:. None when absent
        (for direct this means host candidates only)."""
        return _server_for(self.ice_servers, path_id)

    def required_secrets(self) -> tuple[SecretRef, ...]:
        """Every secret reference the selected paths and the target will resolve, in order.

        Front ends resolve these at start so a missing secret fails the run before any call.
        """
        found: list[SecretRef] = []
        if self.target.token is not None:
            found.append(self.target.token)
        for path_id in self.paths:
            chosen = self.server_for(path_id)
            if path_id in (PathId.SOCKS5_TURN, PathId.HTTP_TURN):
                chosen = self.relay_behind_proxy()
            if chosen is not None and chosen[0].credential is not None:
                found.append(chosen[0].credential)
            proxy = self.proxy_for(path_id)
            if proxy is not None and proxy.password is not None:
                found.append(proxy.password)
            if path_id == PathId.MASQUE and self.masque is not None and self.masque.token:
                found.append(self.masque.token)
        unique: list[SecretRef] = []
        for reference in found:
            if reference not in unique:
                unique.append(reference)
        return tuple(unique)


# --- YAML node reading --------------------------------------------------------------------------


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1


def _kind_of(node: Node) -> str:
    if isinstance(node, MappingNode):
        return _("a mapping")
    if isinstance(node, SequenceNode):
        return _("a list")
    tag = str(node.tag)
    if tag.endswith(":null"):
        return _("nothing")
    if tag.endswith((":int", ":float")):
        return _("a number")
    if tag.endswith(":bool"):
        return _("true/false")
    return _("text")


def _is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and str(node.tag).endswith(":null")


class _Reader:
    """Walks composed YAML nodes, turning every mistake into a ProfileError with its line."""

    def __init__(self, file: str | None) -> None:
        self.file = file
        self.root: Node | None = None

    def error(self, node: Node | None, message: str) -> ProfileError:
        return ProfileError(message, file=self.file, line=None if node is None else _line(node))

    def mapping(self, node: Node, where: str, allowed: Sequence[str]) -> dict[str, Node]:
        """Keys to value nodes of a mapping; unknown and duplicate keys are errors.

        A key whose value is empty (null) counts as absent.
        """
        if not isinstance(node, MappingNode):
            raise self.error(
                node,
                _("{where} must be a mapping of key: value, not {kind}").format(
                    where=where, kind=_kind_of(node)
                ),
            )
        result: dict[str, Node] = {}
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value) if isinstance(key_node, ScalarNode) else ""
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = _(" (did you mean '{close}'?)").format(close=close[0]) if close else ""
                message = (
                    _("unknown top-level key '{key}'{hint}; expected one of: {allowed}")
                    if node is self.root
                    else _("unknown key '{key}' in '{where}'{hint}; expected one of: {allowed}")
                )
                raise self.error(
                    key_node,
                    message.format(
                        key=shown(key), where=where, hint=hint, allowed=", ".join(sorted(allowed))
                    ),
                )
            if key in seen:
                raise self.error(
                    key_node,
                    (
                        _("top-level key '{key}' appears twice; keep only one")
                        if node is self.root
                        else _("key '{key}' appears twice in '{where}'; keep only one")
                    ).format(key=key, where=where),
                )
            seen.add(key)
            if not _is_null(value_node):
                result[key] = value_node
        return result

    def required(self, values: dict[str, Node], key: str, parent: Node, where: str) -> Node:
        if key not in values:
            raise self.error(
                parent, _("{where} needs '{key}'; add it").format(where=where, key=key)
            )
        return values[key]

    def text(self, node: Node, where: str) -> str:
        if not isinstance(node, ScalarNode):
            raise self.error(
                node, _("{where} must be text, not {kind}").format(where=where, kind=_kind_of(node))
            )
        value = str(node.value).strip()
        if not value:
            raise self.error(node, _("{where} is empty; give it a value").format(where=where))
        return value

    def text_list(self, node: Node, where: str, expected: str) -> list[tuple[str, Node]]:
        """A list of scalars; a single scalar counts as a one-item list."""
        items = node.value if isinstance(node, SequenceNode) else [node]
        if isinstance(node, MappingNode) or not items:
            raise self.error(
                node,
                _("{where}: expected {expected}, not {kind}").format(
                    where=where,
                    expected=expected,
                    kind=_("an empty list") if not items else _kind_of(node),
                ),
            )
        result: list[tuple[str, Node]] = []
        for item in items:
            if not isinstance(item, ScalarNode) or _is_null(item):
                raise self.error(
                    item,
                    _("{where}: expected {expected}; this item is {kind}").format(
                        where=where, expected=expected, kind=_kind_of(item)
                    ),
                )
            result.append((self.text(item, where), item))
        return result

    def positive_number(self, node: Node, where: str, *, integer: bool) -> float:
        value = plain_int(node) if integer else plain_number(node)
        if value is None or not math.isfinite(value) or value <= 0:
            expected = _("a positive whole number") if integer else _("a positive number")
            raise self.error(
                node,
                _("{where} must be {expected}, e.g. 4; got {value!r}").format(
                    where=where,
                    expected=expected,
                    value=shown(node.value) if isinstance(node, ScalarNode) else _kind_of(node),
                ),
            )
        return value

    def at_most(self, node: Node, value: float, maximum: float, where: str) -> None:
        if value > maximum:
            raise self.error(
                node,
                _("{where} must be at most {maximum}; got {value}").format(
                    where=where, maximum=maximum, value=shown(value)
                ),
            )

    def limit(self, node: SequenceNode, limit: int, where: str) -> None:
        check_list_length(node, limit=limit, where=where, file=self.file, error_type=ProfileError)

    def secret(self, node: Node, where: str) -> SecretRef:
        text = self.text(node, where)
        try:
            return SecretRef.parse(text, file=self.file, line=_line(node))
        except ValueError as error:
            raise self.error(node, f"{where}: {error}") from None


# --- profile sections ---------------------------------------------------------------------------

_TOP_KEYS = (
    "version",
    "name",
    "description",
    "sender",
    "target",
    "ice_servers",
    "paths",
    "ca_bundle",
    "timeouts",
    "quality",
    "proxies",
    "masque",
    "control",
)


def _read_version(reader: _Reader, root: MappingNode) -> int:
    for key_node, value_node in root.value:
        if isinstance(key_node, ScalarNode) and key_node.value == "version":
            version = plain_int(value_node)
            if version is None:
                raise reader.error(
                    value_node,
                    _("version must be the number {version} (without quotes)").format(
                        version=PROFILE_VERSION
                    ),
                )
            if version != PROFILE_VERSION:
                raise reader.error(
                    value_node,
                    _(
                        "profile version {found} is not supported by this CallPath, which reads "
                        "version {version}; ask the sender for a version {version} profile or "
                        "update CallPath"
                    ).format(found=version, version=PROFILE_VERSION),
                )
            return version
    raise reader.error(
        root,
        _("the profile has no 'version'; add 'version: {version}' as its first line").format(
            version=PROFILE_VERSION
        ),
    )


def _read_url(reader: _Reader, node: Node, where: str) -> str:
    url = reader.text(node, where)
    problem = url_problem(url)
    if problem is not None:
        raise reader.error(node, f"{where}: {problem}")
    parts = urlsplit(url)
    if "@" in parts.netloc:
        # user:password@host — refuse without repeating it.
        raise reader.error(node, f"{where}: {_literal_secret_message()}")
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
        port_ok = True
    except ValueError:
        port_ok = False
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname or not port_ok:
        raise reader.error(
            node,
            _(
                "{where} {url!r} is not an http:// or https:// URL with a host, "
                "e.g. https://echo.example.org:8443"
            ).format(where=where, url=shown(url, 120)),
        )
    problem = host_problem(parts.hostname)
    if problem is not None:
        raise reader.error(node, f"{where}: {problem}")
    return url


def _read_target(reader: _Reader, node: Node) -> Target:
    values = reader.mapping(node, "target", ("kind", "url", "token"))
    kind_node = reader.required(values, "kind", node, "target")
    kind_text = reader.text(kind_node, "target.kind")
    try:
        kind = TargetKind(kind_text)
    except ValueError:
        raise reader.error(
            kind_node,
            _("unknown target kind '{kind}'; expected one of: {kinds}").format(
                kind=shown(kind_text), kinds=", ".join(TargetKind)
            ),
        ) from None
    url: str | None = None
    if kind is TargetKind.RELAY_LOOPBACK:
        if "url" in values:
            raise reader.error(
                values["url"],
                _(
                    "target kind relay-loopback calls itself through the relay and takes no "
                    "url; remove 'url'"
                ),
            )
    else:
        url = _read_url(reader, reader.required(values, "url", node, "target"), "target.url")
    token: SecretRef | None = None
    if "token" in values:
        if kind is not TargetKind.ECHO:
            raise reader.error(
                values["token"],
                _("target.token is only used by kind echo; remove it for kind {kind}").format(
                    kind=kind
                ),
            )
        token = reader.secret(values["token"], "target.token")
    return Target(kind=kind, url=url, token=token)


def _read_ice_server(reader: _Reader, node: Node, where: str) -> IceServer:
    values = reader.mapping(node, where, ("urls", "username", "credential", "sni_alternatives"))
    urls_where = f"{where}.urls"
    uris: list[IceUri] = []
    urls_node = reader.required(values, "urls", node, where)
    if isinstance(urls_node, SequenceNode):
        reader.limit(urls_node, MAX_URIS_PER_SERVER, urls_where)
    for text, item in reader.text_list(
        reader.required(values, "urls", node, where), urls_where, _("a list of URIs")
    ):
        try:
            uris.append(parse_ice_uri(text))
        except ValueError as error:
            raise reader.error(item, f"{urls_where}: {error}") from None
    username = (
        reader.text(values["username"], f"{where}.username") if "username" in values else None
    )
    if username is not None and (problem := control_character_problem(username)) is not None:
        raise reader.error(values["username"], f"{where}.username: {problem}")
    credential = (
        reader.secret(values["credential"], f"{where}.credential")
        if "credential" in values
        else None
    )
    if (username is None) != (credential is None):
        raise reader.error(
            node,
            _(
                "{where} has a username without a credential or the other way round; give both "
                "(credential: ${{env:NAME}} or keyring:SERVICE/USER) or neither"
            ).format(where=where),
        )
    if username is not None and not any(uri.scheme != "stun" for uri in uris):
        raise reader.error(
            node,
            _(
                "{where} has a username and credential but only stun: URIs, which use none; "
                "remove them or add the turn:/turns: URIs they belong to"
            ).format(where=where),
        )
    sni_alternatives = (
        _read_sni_alternatives(reader, values["sni_alternatives"], where, uris)
        if "sni_alternatives" in values
        else ()
    )
    return IceServer(
        urls=tuple(uris),
        username=username,
        credential=credential,
        sni_alternatives=sni_alternatives,
    )


_DNS_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def _read_sni_alternatives(
    reader: _Reader, node: Node, where: str, uris: list[IceUri]
) -> tuple[str, ...]:
    """Server names for a turns: relay's ClientHello: DNS names, no addresses, no duplicates."""
    alt_where = f"{where}.sni_alternatives"
    if not any(uri.scheme == "turns" for uri in uris):
        raise reader.error(
            node,
            _("{where} is only used by turns: URIs (TURN over TLS); add one or remove it").format(
                where=alt_where
            ),
        )
    names: list[str] = []
    for text, item in reader.text_list(node, alt_where, _("a list of server names")):
        name = text.rstrip(".").lower()
        labels = name.split(".")
        if (
            len(name) > 253
            or len(labels) < 2
            or not all(_DNS_LABEL.match(label) for label in labels)
            or labels[-1].isdigit()
        ):
            raise reader.error(
                item,
                _(
                    "{where}: {name!r} is not a server name; write a DNS name such as "
                    "vk.com (no address, port or scheme)"
                ).format(where=alt_where, name=text),
            )
        if name in names:
            raise reader.error(
                item, _("{where}: {name!r} is listed twice").format(where=alt_where, name=text)
            )
        names.append(name)
    return tuple(names)


def _read_ice_servers(reader: _Reader, node: Node) -> tuple[IceServer, ...]:
    if not isinstance(node, SequenceNode):
        raise reader.error(
            node,
            _(
                "ice_servers must be a list of ICE servers (each '- urls: [...]'), not {kind}"
            ).format(kind=_kind_of(node)),
        )
    reader.limit(node, MAX_ICE_SERVERS, "ice_servers")
    return tuple(
        _read_ice_server(reader, item, f"ice_servers[{index}]")
        for index, item in enumerate(node.value, start=1)
    )


def _read_proxies(reader: _Reader, node: Node) -> tuple[ProxyEntry, ...]:
    if not isinstance(node, SequenceNode):
        raise reader.error(
            node, _("proxies must be a list of proxies (each '- url: socks5://HOST:PORT')")
        )
    reader.limit(node, MAX_PROXIES, "proxies")
    entries = []
    for index, item in enumerate(node.value, start=1):
        where = f"proxies[{index}]"
        values = reader.mapping(item, where, ("url", "password", "stun"))
        url_node = reader.required(values, "url", item, where)
        try:
            url = parse_proxy_url(reader.text(url_node, f"{where}.url"))
        except ValueError as error:
            raise reader.error(url_node, f"{where}.url: {error}") from None
        password = (
            reader.secret(values["password"], f"{where}.password") if "password" in values else None
        )
        if password is not None and url.username is None:
            raise reader.error(
                values["password"],
                _(
                    "{where} has a password but its URL names no user; write "
                    "socks5://USER@HOST:PORT or remove the password"
                ).format(where=where),
            )
        stun: IceUri | None = None
        if "stun" in values:
            try:
                stun = parse_ice_uri(reader.text(values["stun"], f"{where}.stun"))
            except ValueError as error:
                raise reader.error(values["stun"], f"{where}.stun: {error}") from None
            if stun.scheme != "stun":
                raise reader.error(
                    values["stun"], _("{where}.stun must be a stun: URI").format(where=where)
                )
        entries.append(ProxyEntry(url=url, password=password, stun=stun))
    return tuple(entries)


def _read_masque(reader: _Reader, node: Node) -> MasqueServer:
    values = reader.mapping(node, "masque", ("url", "server_name", "token"))
    url_node = reader.required(values, "url", node, "masque")
    url = _read_url(reader, url_node, "masque.url")
    parts = urlsplit(url)
    if parts.scheme.lower() != "https":
        raise reader.error(
            url_node, _("masque.url must be an https:// URL (HTTP/3 runs over QUIC with TLS)")
        )
    assert parts.hostname is not None
    server_name = (
        reader.text(values["server_name"], "masque.server_name")
        if "server_name" in values
        else None
    )
    if server_name is not None:
        problem = host_problem(server_name)
        if problem is not None:
            raise reader.error(values["server_name"], f"masque.server_name: {problem}")
    token = reader.secret(values["token"], "masque.token") if "token" in values else None
    return MasqueServer(
        url=url,
        host=parts.hostname,
        port=parts.port or 443,
        server_name=server_name,
        token=token,
    )


_CONTROL_PORTS = ("udp_port", "tcp_bulk_port", "quic_port")


def _read_control(reader: _Reader, node: Node) -> ControlServer:
    values = reader.mapping(node, "control", ("host", *_CONTROL_PORTS))
    host_node = reader.required(values, "host", node, "control")
    host = reader.text(host_node, "control.host")
    problem = host_problem(host)
    if problem is not None:
        raise reader.error(host_node, f"control.host: {problem}")
    ports: dict[str, int] = {}
    for key in _CONTROL_PORTS:
        if key in values:
            port = reader.positive_number(values[key], f"control.{key}", integer=True)
            if port > 65535:
                raise reader.error(
                    values[key],
                    _("control.{key} must be a port from 1 to 65535; got {port}").format(
                        key=key, port=int(port)
                    ),
                )
            ports[key] = int(port)
    if "tcp_bulk_port" not in ports:
        raise reader.error(
            node,
            _(
                "control needs 'tcp_bulk_port': it is how CallPath knows the control server "
                "was reachable at all (docs/control-server.md)"
            ),
        )
    return ControlServer(host=host.strip("[]"), **ports)


_MISSING_URI_FORM: dict[str, str] = {
    PathId.TURN_UDP: "turn:HOST:PORT?transport=udp",
    PathId.TURN_TCP: "turn:HOST:PORT?transport=tcp",
    PathId.TURN_TLS: "turns:HOST:PORT",
}


def _path_requirement(
    path: PathId,
    ice_servers: tuple[IceServer, ...],
    proxies: tuple[ProxyEntry, ...],
    masque: MasqueServer | None,
) -> str | None:
    """What the profile lacks for ``path`` (a translated hint), or None when it can run."""
    relay_behind_proxy = _server_for(ice_servers, PathId.TURN_TLS) or _server_for(
        ice_servers, PathId.TURN_TCP
    )
    if path in _MISSING_URI_FORM and _server_for(ice_servers, path) is None:
        return _("a {form} URI in ice_servers").format(form=_MISSING_URI_FORM[path])
    if path in (PathId.SOCKS5_UDP, PathId.SOCKS5_TURN) and _proxy_for(proxies, path) is None:
        return _("a socks5:// proxy in proxies")
    if path is PathId.HTTP_TURN and _proxy_for(proxies, path) is None:
        return _("an http:// proxy in proxies")
    if path in (PathId.SOCKS5_TURN, PathId.HTTP_TURN) and relay_behind_proxy is None:
        return _("a turns: or turn:...?transport=tcp URI in ice_servers (proxies carry TCP)")
    if path is PathId.MASQUE and masque is None:
        return _("a masque: section with the proxy's https:// URL")
    return None


def _read_paths(
    reader: _Reader,
    node: Node | None,
    target: Target,
    target_node: Node,
    ice_servers: tuple[IceServer, ...],
    proxies: tuple[ProxyEntry, ...] = (),
    masque: MasqueServer | None = None,
) -> tuple[str, ...]:
    loopback = target.kind is TargetKind.RELAY_LOOPBACK
    if node is None:
        chosen = tuple(
            path
            for path in IMPLEMENTED_PATHS
            if (path in TURN_PATHS and _server_for(ice_servers, path))
            or (path is PathId.DIRECT and not loopback)
            or (
                not loopback
                and path not in TURN_PATHS
                and path is not PathId.DIRECT
                and _path_requirement(path, ice_servers, proxies, masque) is None
            )
        )
        if not chosen:
            raise reader.error(
                target_node,
                _(
                    "target kind relay-loopback needs a turn: or turns: URI in ice_servers; "
                    "add the relay under test"
                ),
            )
        return chosen
    known = ", ".join(PathId)
    implemented = ", ".join(IMPLEMENTED_PATHS)
    result: list[str] = []
    for text, item in reader.text_list(node, "paths", _("a list of path ids")):
        try:
            path = PathId(text)
        except ValueError:
            raise reader.error(
                item,
                _("unknown path '{path}'; expected one of: {known}").format(
                    path=shown(text), known=known
                ),
            ) from None
        if path not in IMPLEMENTED_PATHS:
            raise reader.error(
                item,
                _(
                    "path '{path}' is not available in this version of CallPath; use {implemented}"
                ).format(path=path, implemented=implemented),
            )
        if path in result:
            raise reader.error(
                item, _("path '{path}' is listed twice; keep only one").format(path=path)
            )
        if loopback and path not in TURN_PATHS:
            raise reader.error(
                item,
                _(
                    "path '{path}' cannot be used with target kind relay-loopback, whose peers "
                    "are relay-only; remove it or use target kind echo or janus"
                ).format(path=path),
            )
        if path in _MISSING_URI_FORM and _server_for(ice_servers, path) is None:
            raise reader.error(
                item,
                _(
                    "path '{path}' needs a {form} URI in ice_servers; add one or remove "
                    "'{path}' from paths"
                ).format(path=path, form=_MISSING_URI_FORM[path]),
            )
        missing = _path_requirement(path, ice_servers, proxies, masque)
        if missing is not None:
            raise reader.error(
                item,
                _("path '{path}' needs {missing}; add it or remove '{path}' from paths").format(
                    path=path, missing=missing
                ),
            )
        result.append(path)
    return tuple(result)


def _read_overrides(
    reader: _Reader, node: Node, where: str, defaults: Timeouts | QualityConfig
) -> dict[str, Any]:
    fields = {item.name: item for item in dataclasses.fields(defaults)}
    values = reader.mapping(node, where, tuple(fields))
    result: dict[str, Any] = {}
    for name, value_node in values.items():
        value = reader.positive_number(
            value_node, f"{where}.{name}", integer=fields[name].type in ("int", int)
        )
        reader.at_most(value_node, value, _SETTING_MAXIMA.get(name, MAX_SECONDS), f"{where}.{name}")
        result[name] = value
    return result


# Upper bounds of timeouts and quality settings (docs/profile.md, "Limits"): seconds unless named.
MAX_SECONDS = 3600
_SETTING_MAXIMA: dict[str, float] = {
    "concurrency": 16,
    "video_width": 3840,
    "video_height": 2160,
    "video_fps": 60,
}


def _read_ca_bundle(reader: _Reader, node: Node, source: Path | None) -> Path:
    text = reader.text(node, "ca_bundle")
    path = Path(text).expanduser()
    if not path.is_absolute():
        base = source.parent if source is not None else Path.cwd()
        path = base.absolute() / path
    if not path.is_file():
        raise reader.error(
            node,
            _(
                "ca_bundle file {path} does not exist; relative paths start from the "
                "profile's folder"
            ).format(path=path),
        )
    try:
        ssl.create_default_context().load_verify_locations(cafile=str(path))
    except (ssl.SSLError, OSError, ValueError):
        raise reader.error(
            node,
            _("ca_bundle file {path} holds no PEM certificate that can be loaded").format(
                path=path
            ),
        ) from None
    return path


def _compose(text: str, file: str | None) -> Node | None:
    try:
        return compose_yaml(text, file=file, limits=PROFILE_LIMITS, error_type=ProfileError)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        problem = error.problem or error.context or ""
        if error.context and error.problem and error.context_mark is not None:
            problem = _("{problem} ({context} that starts on line {line})").format(
                problem=error.problem,
                context=error.context,
                line=error.context_mark.line + 1,
            )
        raise ProfileError(
            _(
                "invalid YAML: {problem}; check the indentation (spaces, not tabs) and quote "
                "values that contain ': ', ' #', '?' or '[' inside a [list]"
            ).format(problem=problem),
            file=file,
            line=None if mark is None else mark.line + 1,
        ) from None
    except yaml.YAMLError as error:
        raise ProfileError(_("invalid YAML: {problem}").format(problem=error), file=file) from None


_PLAIN_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}"
    for name in ("str", "int", "float", "bool", "null", "seq", "map", "timestamp")
)


def _reject_tags(reader: _Reader, root: Node) -> None:
    """Refuse explicit application tags (``!!python/...``, ``!secret``): a profile is plain data."""
    pending, seen = [root], set()
    while pending:
        node = pending.pop()
        if id(node) in seen:  # aliases may make the node graph cyclic
            continue
        seen.add(id(node))
        if node.tag == "tag:yaml.org,2002:merge":
            raise reader.error(
                node, _("YAML merge keys (<<) are not allowed in a profile; write the keys out")
            )
        if node.tag not in _PLAIN_TAGS:
            raise reader.error(
                node,
                _("the YAML tag {tag} is not allowed in a profile; remove it").format(tag=node.tag),
            )
        if isinstance(node, SequenceNode):
            pending.extend(node.value)
        elif isinstance(node, MappingNode):
            for key, value in node.value:
                pending.extend((key, value))


def parse_profile(text: str, source: Path | None = None) -> Profile:
    """Parse profile YAML; ``source`` names the file in errors and anchors relative paths."""
    file = None if source is None else str(source)
    reader = _Reader(file)
    root = _compose(text, file)
    if root is None:
        raise ProfileError(
            _("the profile is empty; it starts with 'version: {version}'").format(
                version=PROFILE_VERSION
            ),
            file=file,
            line=None,
        )
    if not isinstance(root, MappingNode):
        raise reader.error(
            root,
            _(
                "a profile is a mapping of key: value starting with "
                "'version: {version}', not {kind}"
            ).format(version=PROFILE_VERSION, kind=_kind_of(root)),
        )
    _reject_tags(reader, root)
    reader.root = root
    version = _read_version(reader, root)
    values = reader.mapping(root, _("the profile"), _TOP_KEYS)
    name = reader.text(reader.required(values, "name", root, _("the profile")), "name")
    target_node = reader.required(values, "target", root, _("the profile"))
    target = _read_target(reader, target_node)
    ice_servers = (
        _read_ice_servers(reader, values["ice_servers"]) if "ice_servers" in values else ()
    )
    proxies = _read_proxies(reader, values["proxies"]) if "proxies" in values else ()
    masque = _read_masque(reader, values["masque"]) if "masque" in values else None
    control = _read_control(reader, values["control"]) if "control" in values else None
    paths = _read_paths(
        reader, values.get("paths"), target, target_node, ice_servers, proxies, masque
    )
    timeouts = Timeouts()
    if "timeouts" in values:
        timeouts = dataclasses.replace(
            timeouts, **_read_overrides(reader, values["timeouts"], "timeouts", timeouts)
        )
    quality = QualityConfig()
    if "quality" in values:
        quality = dataclasses.replace(
            quality, **_read_overrides(reader, values["quality"], "quality", quality)
        )
    return Profile(
        version=version,
        name=name,
        source=source,
        target=target,
        ice_servers=ice_servers,
        paths=paths,
        timeouts=timeouts,
        quality=quality,
        ca_bundle=(
            _read_ca_bundle(reader, values["ca_bundle"], source) if "ca_bundle" in values else None
        ),
        description=(
            reader.text(values["description"], "description") if "description" in values else ""
        ),
        sender=reader.text(values["sender"], "sender") if "sender" in values else "",
        proxies=proxies,
        masque=masque,
        control=control,
    )


def load_profile(path: Path) -> Profile:
    """Read and parse a profile file; ``ProfileError`` (with the file, no line) if unreadable,
    not a regular file, larger than 1 MB or not UTF-8."""
    text = read_input_file(path, limits=PROFILE_LIMITS, error_type=ProfileError)
    return parse_profile(text, source=path)
