"""The messengers' call endpoints (``assets/targets/*.yaml``): loading and validation.

Each file describes one messenger: signalling endpoints (TCP or TLS: where messages and call
set-up go) and call relay endpoints (STUN over UDP, or TCP/TLS fallbacks), plus the address
ranges its traffic goes to (with protocol, ports, whether they matter for calls only, source and
the date they were seen in use), which cannot be probed without a host but are what the routing
export (``routing_export``) writes out. ``certainty`` says how well the list
is known (``weak`` entries are hypotheses). Every mistake is a ``CatalogError`` with the file and
the 1-based line of the offending YAML node. The format is documented in
``docs/diagnosis.md`` (section "Messenger reachability").
"""

from __future__ import annotations

import datetime as dt
import enum
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from callpath.core.i18n import _
from callpath.core.model.errors import LocatedError
from callpath.core.model.hostnames import host_problem
from callpath.core.model.yaml_input import (
    YamlLimits,
    check_list_length,
    compose_yaml,
    plain_int,
    read_input_file,
)
from callpath.core.resources import asset_path

CATALOG_VERSION = 2
# Version 1 files (address ranges without source, date or calls_only; ports as one text) are
# still read: their ranges have no provenance, and the routing export says so.
SUPPORTED_VERSIONS = (1, 2)
MAX_FILE_BYTES = 256 * 1024
CATALOG_LIMITS = YamlLimits(max_bytes=MAX_FILE_BYTES, max_depth=16, max_nodes=20_000)
MAX_LIST_ITEMS = 512  # endpoints, address ranges, sources
_HOST = re.compile(r"(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?")
_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,40}")


class CatalogError(LocatedError):
    """A catalogue file that cannot be used."""


class Certainty(enum.StrEnum):
    STRONG = "strong"  # documented by the vendor or verified by measurements
    MEDIUM = "medium"  # consistent public reports
    WEAK = "weak"  # a hypothesis


class SignallingProto(enum.StrEnum):
    TCP = "tcp"
    TLS = "tls"


class RelayProto(enum.StrEnum):
    STUN = "stun"  # STUN Binding over UDP (TURN servers and STUN servers answer it)
    TCP = "tcp"
    TLS = "tls"


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    proto: str  # a SignallingProto or RelayProto value
    line: int = 0  # where it is written, for messages
    certainty: str = ""  # a Certainty value; empty: the messenger's own certainty
    note: str = ""


class RangeProto(enum.StrEnum):
    UDP = "udp"
    TCP = "tcp"


@dataclass(frozen=True, order=True)
class PortSpan:
    """Ports ``low`` to ``high`` inclusive (one port when they are equal)."""

    low: int
    high: int

    def __str__(self) -> str:
        return str(self.low) if self.low == self.high else f"{self.low}-{self.high}"


@dataclass(frozen=True, order=True)
class Observed:
    """When a range was seen in use: a day, or only a month (``day`` is then None)."""

    year: int
    month: int
    day: int | None = None

    def earliest(self) -> dt.date:
        """The first day the text can mean (a month counts from its first day)."""
        return dt.date(self.year, self.month, self.day or 1)

    def __str__(self) -> str:
        month = f"{self.year:04d}-{self.month:02d}"
        return month if self.day is None else f"{month}-{self.day:02d}"


@dataclass(frozen=True)
class AddressRange:
    """One network a messenger's traffic goes to, on ``proto`` and ``ports``.

    ``calls_only`` ranges matter for calls alone (routing them fixes calls, not messages); the
    others carry messages (and may carry calls too). ``source`` and ``observed`` say where the
    range comes from and when it was seen in use (version 1 files have neither)."""

    network: str
    proto: str  # a RangeProto value
    ports: tuple[PortSpan, ...]
    calls_only: bool = False
    source: str = ""
    observed: Observed | None = None
    note: str = ""
    line: int = 0


@dataclass(frozen=True)
class MessengerEntry:
    id: str
    name: str
    certainty: Certainty
    signalling: tuple[Endpoint, ...]
    relays: tuple[Endpoint, ...]
    address_ranges: tuple[AddressRange, ...] = ()
    notes: str = ""
    sources: tuple[str, ...] = ()
    file: str = ""

    def certainty_of(self, endpoint: Endpoint) -> str:
        """The endpoint's own certainty, or the messenger's."""
        return endpoint.certainty or self.certainty.value

    @property
    def host_names(self) -> tuple[str, ...]:
        """Every host name (not address literal) of the signalling and relay endpoints."""
        names: list[str] = []
        for endpoint in (*self.signalling, *self.relays):
            if not _is_address(endpoint.host) and endpoint.host not in names:
                names.append(endpoint.host)
        return tuple(names)


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class _Reader:
    def __init__(self, file: str) -> None:
        self.file = file

    def error(self, node: Node | None, message: str) -> CatalogError:
        line = int(node.start_mark.line) + 1 if node is not None else None
        return CatalogError(message, file=self.file, line=line)

    def mapping(self, node: Node, what: str, allowed: set[str]) -> dict[str, tuple[Node, Node]]:
        if not isinstance(node, MappingNode):
            raise self.error(node, _("{what} must be a mapping").format(what=what))
        items: dict[str, tuple[Node, Node]] = {}
        for key, value in node.value:
            if not isinstance(key, ScalarNode):
                raise self.error(key, _("keys must be plain words"))
            name = str(key.value)
            if name not in allowed:
                raise self.error(
                    key,
                    _("unknown key {key!r} in {what}; known keys: {known}").format(
                        key=name, what=what, known=", ".join(sorted(allowed))
                    ),
                )
            if name in items:
                raise self.error(key, _("{key!r} is given twice").format(key=name))
            items[name] = (key, value)
        return items

    def text(self, node: Node, what: str) -> str:
        if not isinstance(node, ScalarNode) or not str(node.value).strip():
            raise self.error(node, _("{what} must be a non-empty text").format(what=what))
        return str(node.value).strip()

    def texts(self, node: Node, what: str) -> tuple[str, ...]:
        if not isinstance(node, SequenceNode):
            raise self.error(node, _("{what} must be a list").format(what=what))
        self.limit(node, what)
        return tuple(self.text(item, what) for item in node.value)

    def limit(self, node: SequenceNode, what: str) -> None:
        check_list_length(
            node, limit=MAX_LIST_ITEMS, where=what, file=self.file, error_type=CatalogError
        )

    def port(self, node: Node) -> int:
        port = plain_int(node)
        if port is None or not 1 <= port <= 65535:
            raise self.error(node, _("port must be a number from 1 to 65535"))
        return port

    def choice(self, node: Node, what: str, choices: type[enum.StrEnum]) -> str:
        text = self.text(node, what)
        allowed = [member.value for member in choices]
        if text not in allowed:
            raise self.error(
                node,
                _("{what} must be one of {allowed}, not {value!r}").format(
                    what=what, allowed=", ".join(allowed), value=text
                ),
            )
        return text

    def host(self, node: Node) -> str:
        text = self.text(node, "host")
        try:
            return str(ipaddress.ip_address(text))
        except ValueError:
            pass
        if not _HOST.fullmatch(text) or host_problem(text) is not None:
            raise self.error(
                node, _("{host!r} is not a host name or an IP address").format(host=text)
            )
        return text.lower()

    def endpoints(self, node: Node, what: str, protos: type[enum.StrEnum]) -> tuple[Endpoint, ...]:
        if not isinstance(node, SequenceNode):
            raise self.error(node, _("{what} must be a list").format(what=what))
        self.limit(node, what)
        endpoints: list[Endpoint] = []
        for item in node.value:
            fields = self.mapping(item, what, {"host", "port", "proto", "note", "certainty"})
            for required in ("host", "port", "proto"):
                if required not in fields:
                    raise self.error(item, _("an endpoint needs {key!r}").format(key=required))
            endpoints.append(
                Endpoint(
                    host=self.host(fields["host"][1]),
                    port=self.port(fields["port"][1]),
                    proto=self.choice(fields["proto"][1], "proto", protos),
                    line=int(item.start_mark.line) + 1,
                    certainty=self.choice(fields["certainty"][1], "certainty", Certainty)
                    if "certainty" in fields
                    else "",
                    note=self.text(fields["note"][1], "note") if "note" in fields else "",
                )
            )
        return tuple(endpoints)

    def network(self, node: Node) -> str:
        text = self.text(node, "network")
        try:
            return str(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise self.error(node, _("{value!r} is not a network").format(value=text)) from None

    def ports(self, node: Node) -> tuple[PortSpan, ...]:
        """``3478``, ``"3478-3481"``, ``"3478,3480"`` or a list of such items."""
        items = node.value if isinstance(node, SequenceNode) else [node]
        spans: list[PortSpan] = []
        for item in items:
            for part in self.text(item, "ports").split(","):
                low, _dash, high = part.strip().partition("-")
                span = _port_span(low.strip(), high.strip() if _dash else low.strip())
                if span is None:
                    raise self.error(
                        item,
                        _(
                            "ports must be numbers from 1 to 65535 or ranges such as "
                            "19294-19344, not {value!r}"
                        ).format(value=part.strip()),
                    )
                spans.append(span)
        if not spans:
            raise self.error(node, _("ports must not be empty"))
        return tuple(sorted(set(spans)))

    def flag(self, node: Node, what: str) -> bool:
        text = self.text(node, what)
        if text not in ("true", "false"):
            raise self.error(node, _("{what} must be true or false").format(what=what))
        return text == "true"

    def observed(self, node: Node) -> Observed:
        text = self.text(node, "observed")
        match = _OBSERVED.fullmatch(text)
        observed = None
        if match:
            year, month, day = match.group(1, 2, 3)
            observed = Observed(int(year), int(month), int(day) if day else None)
            try:
                observed.earliest()
            except ValueError:
                observed = None
        if observed is None:
            raise self.error(
                node,
                _(
                    "observed must be a date (2025-08-13) or a month (2025-08), not {value!r}"
                ).format(value=text),
            )
        return observed

    def ranges(self, node: Node, version: int) -> tuple[AddressRange, ...]:
        if not isinstance(node, SequenceNode):
            raise self.error(node, _("{what} must be a list").format(what="address_ranges"))
        self.limit(node, "address_ranges")
        allowed = _RANGE_KEYS if version >= 2 else _RANGE_KEYS_V1
        required = ("proto", "ports", "calls_only", "source", "observed")
        ranges: list[AddressRange] = []
        for item in node.value:
            fields = self.mapping(item, "address_ranges", allowed)
            if ("network" in fields) == ("networks" in fields):
                raise self.error(item, _("an address range needs either 'network' or 'networks'"))
            for key in required if version >= 2 else required[:2]:
                if key not in fields:
                    raise self.error(item, _("an address range needs {key!r}").format(key=key))
            if "network" in fields:
                network_nodes = [fields["network"][1]]
            else:
                listed = fields["networks"][1]
                if not isinstance(listed, SequenceNode) or not listed.value:
                    raise self.error(listed, _("networks must be a non-empty list"))
                network_nodes = list(listed.value)
            proto = self.choice(fields["proto"][1], "proto", RangeProto)
            ports = self.ports(fields["ports"][1])
            calls_only = self.flag(fields["calls_only"][1], "calls_only") if version >= 2 else False
            source = self.text(fields["source"][1], "source") if "source" in fields else ""
            observed = self.observed(fields["observed"][1]) if "observed" in fields else None
            note = self.text(fields["note"][1], "note") if "note" in fields else ""
            for network_node in network_nodes:
                ranges.append(
                    AddressRange(
                        network=self.network(network_node),
                        proto=proto,
                        ports=ports,
                        calls_only=calls_only,
                        source=source,
                        observed=observed,
                        note=note,
                        line=int(network_node.start_mark.line) + 1,
                    )
                )
        return tuple(ranges)


_OBSERVED = re.compile(r"(\d{4})-(\d{2})(?:-(\d{2}))?")
_RANGE_KEYS_V1 = {"network", "proto", "ports", "note"}
_RANGE_KEYS = {"network", "networks", "proto", "ports", "calls_only", "source", "observed", "note"}


def _port_span(low: str, high: str) -> PortSpan | None:
    if not (low.isdigit() and high.isdigit()):
        return None
    first, last = int(low), int(high)
    if not 1 <= first <= last <= 65535:
        return None
    return PortSpan(first, last)


_TOP_KEYS = {
    "version",
    "id",
    "name",
    "certainty",
    "notes",
    "sources",
    "signalling",
    "relays",
    "address_ranges",
}


def parse_entry(text: str, file: str = "<text>") -> MessengerEntry:
    reader = _Reader(file)
    try:
        root = compose_yaml(text, file=file, limits=CATALOG_LIMITS, error_type=CatalogError)
    except yaml.MarkedYAMLError as error:
        line = error.problem_mark.line + 1 if error.problem_mark is not None else None
        raise CatalogError(str(error.problem or error), file=file, line=line) from None
    except yaml.YAMLError as error:
        raise CatalogError(str(error), file=file) from None
    if root is None:
        raise CatalogError(_("the file is empty"), file=file, line=1)
    fields = reader.mapping(root, _("the file"), _TOP_KEYS)
    for required in ("version", "id", "name", "certainty", "signalling", "relays"):
        if required not in fields:
            raise reader.error(root, _("{key!r} is missing").format(key=required))
    version_node = fields["version"][1]
    version_text = reader.text(version_node, "version")
    if version_text not in {str(v) for v in SUPPORTED_VERSIONS}:
        raise reader.error(
            version_node,
            _("version must be {version} (or {old}, read as before)").format(
                version=CATALOG_VERSION, old=", ".join(str(v) for v in SUPPORTED_VERSIONS[:-1])
            ),
        )
    version = int(version_text)
    id_node = fields["id"][1]
    entry_id = reader.text(id_node, "id")
    if not _ID.fullmatch(entry_id):
        raise reader.error(id_node, _("id must be lower-case letters, digits and '-'"))
    return MessengerEntry(
        id=entry_id,
        name=reader.text(fields["name"][1], "name"),
        certainty=Certainty(reader.choice(fields["certainty"][1], "certainty", Certainty)),
        signalling=reader.endpoints(fields["signalling"][1], "signalling", SignallingProto),
        relays=reader.endpoints(fields["relays"][1], "relays", RelayProto),
        address_ranges=reader.ranges(fields["address_ranges"][1], version)
        if "address_ranges" in fields
        else (),
        notes=reader.text(fields["notes"][1], "notes") if "notes" in fields else "",
        sources=reader.texts(fields["sources"][1], "sources") if "sources" in fields else (),
        file=file,
    )


def load_entry(path: Path) -> MessengerEntry:
    text = read_input_file(path, limits=CATALOG_LIMITS, error_type=CatalogError)
    return parse_entry(text, str(path))


def catalog_directory() -> Path:
    return asset_path("targets")


def load_catalog(directory: Path | None = None) -> tuple[MessengerEntry, ...]:
    """Every messenger in ``directory`` (default: the bundled ``assets/targets``), by id."""
    folder = directory if directory is not None else catalog_directory()
    entries = [load_entry(path) for path in sorted(folder.glob("*.yaml"))]
    seen: dict[str, str] = {}
    for entry in entries:
        if entry.id in seen:
            raise CatalogError(
                _("id {id!r} is also used by {other}").format(id=entry.id, other=seen[entry.id]),
                file=entry.file,
            )
        seen[entry.id] = entry.file
    return tuple(sorted(entries, key=lambda e: e.id))
