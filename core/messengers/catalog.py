"""The messengers' call endpoints (``assets/targets/*.yaml``): loading and validation.

Each file describes one messenger: signalling endpoints (TCP or TLS: where messages and call
set-up go) and call relay endpoints (STUN over UDP, or TCP/TLS fallbacks), plus address ranges
that are documented but cannot be probed without a host. ``certainty`` says how well the list
is known (``weak`` entries are hypotheses). Every mistake is a ``CatalogError`` with the file and
the 1-based line of the offending YAML node. The format is documented in
``docs/diagnosis.md`` (section "Messenger reachability").
"""

from __future__ import annotations

import enum
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from callpath.core.i18n import _
from callpath.core.model.errors import LocatedError
from callpath.core.resources import asset_path

CATALOG_VERSION = 1
MAX_FILE_BYTES = 256 * 1024
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


@dataclass(frozen=True)
class AddressRange:
    network: str
    proto: str
    ports: str
    note: str = ""


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
        return tuple(self.text(item, what) for item in node.value)

    def port(self, node: Node) -> int:
        text = self.text(node, "port")
        if not text.isdigit() or not 1 <= int(text) <= 65535:
            raise self.error(node, _("port must be a number from 1 to 65535"))
        return int(text)

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
        if not _HOST.fullmatch(text):
            raise self.error(
                node, _("{host!r} is not a host name or an IP address").format(host=text)
            )
        return text.lower()

    def endpoints(self, node: Node, what: str, protos: type[enum.StrEnum]) -> tuple[Endpoint, ...]:
        if not isinstance(node, SequenceNode):
            raise self.error(node, _("{what} must be a list").format(what=what))
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

    def ranges(self, node: Node) -> tuple[AddressRange, ...]:
        if not isinstance(node, SequenceNode):
            raise self.error(node, _("{what} must be a list").format(what="address_ranges"))
        ranges: list[AddressRange] = []
        for item in node.value:
            fields = self.mapping(item, "address_ranges", {"network", "proto", "ports", "note"})
            if "network" not in fields:
                raise self.error(item, _("an address range needs {key!r}").format(key="network"))
            network_node = fields["network"][1]
            network = self.text(network_node, "network")
            try:
                network = str(ipaddress.ip_network(network, strict=False))
            except ValueError:
                raise self.error(
                    network_node, _("{value!r} is not a network").format(value=network)
                ) from None
            ranges.append(
                AddressRange(
                    network=network,
                    proto=self.text(fields["proto"][1], "proto") if "proto" in fields else "",
                    ports=self.text(fields["ports"][1], "ports") if "ports" in fields else "",
                    note=self.text(fields["note"][1], "note") if "note" in fields else "",
                )
            )
        return tuple(ranges)


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
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as error:
        line = error.problem_mark.line + 1 if error.problem_mark is not None else None
        raise CatalogError(str(error.problem or error), file=file, line=line) from None
    if root is None:
        raise CatalogError(_("the file is empty"), file=file, line=1)
    fields = reader.mapping(root, _("the file"), _TOP_KEYS)
    for required in ("version", "id", "name", "certainty", "signalling", "relays"):
        if required not in fields:
            raise reader.error(root, _("{key!r} is missing").format(key=required))
    version_node = fields["version"][1]
    if reader.text(version_node, "version") != str(CATALOG_VERSION):
        raise reader.error(
            version_node, _("version must be {version}").format(version=CATALOG_VERSION)
        )
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
        address_ranges=reader.ranges(fields["address_ranges"][1])
        if "address_ranges" in fields
        else (),
        notes=reader.text(fields["notes"][1], "notes") if "notes" in fields else "",
        sources=reader.texts(fields["sources"][1], "sources") if "sources" in fields else (),
        file=file,
    )


def load_entry(path: Path) -> MessengerEntry:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise CatalogError(str(error.strerror or error), file=str(path)) from None
    if len(data) > MAX_FILE_BYTES:
        raise CatalogError(_("the file is too large"), file=str(path))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise CatalogError(_("the file is not UTF-8 text"), file=str(path)) from None
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
