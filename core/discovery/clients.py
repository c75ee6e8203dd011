"""What circumvention clients open by default: local proxy ports and tunnel interface names.

The data is ``assets/discovery/proxy_clients.yaml``, each entry with its source, so that a new
client is a data change. A port is a hint only: discovery names the client whose default the
port is, but the real handshake decides what answers there.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from callpath.core.model.errors import LocatedError
from callpath.core.resources import asset_path

CLIENTS_VERSION = 1
PROXY_KINDS = frozenset({"socks5", "http", "mixed"})  # mixed: SOCKS5 and HTTP on one port


class ClientDataError(LocatedError):
    """The clients file cannot be used."""


@dataclass(frozen=True)
class KnownClient:
    name: str
    kind: str  # socks5 | http | mixed
    port: int
    source: str

    @property
    def protocols(self) -> tuple[str, ...]:
        return ("socks5", "http") if self.kind == "mixed" else (self.kind,)


@dataclass(frozen=True)
class InterfaceHint:
    prefix: str
    client: str | None  # None: the name only says "a tunnel"
    source: str


@dataclass(frozen=True)
class ClientData:
    clients: tuple[KnownClient, ...]
    interfaces: tuple[InterfaceHint, ...]

    def default_ports(self) -> tuple[int, ...]:
        return tuple(dict.fromkeys(client.port for client in self.clients))

    def clients_on(self, port: int, protocol: str) -> tuple[str, ...]:
        """Names of the clients that open ``protocol`` on ``port`` by default."""
        return tuple(
            dict.fromkeys(
                c.name for c in self.clients if c.port == port and protocol in c.protocols
            )
        )

    def client_of_interface(self, name: str) -> InterfaceHint | None:
        return next((h for h in self.interfaces if name.startswith(h.prefix)), None)


def parse_client_data(text: str, file: str) -> ClientData:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise ClientDataError(f"not valid YAML: {error}", file=file, line=line) from error
    if not isinstance(document, Mapping) or document.get("version") != CLIENTS_VERSION:
        raise ClientDataError(f"expected a mapping with version: {CLIENTS_VERSION}", file=file)
    clients = tuple(_client(item, file) for item in _list(document, "clients", file))
    interfaces = tuple(_interface(item, file) for item in _list(document, "interfaces", file))
    return ClientData(clients=clients, interfaces=interfaces)


@functools.cache
def load_client_data() -> ClientData:
    """The shipped data (read once: it is part of the installation and does not change)."""
    path = asset_path("discovery", "proxy_clients.yaml")
    return parse_client_data(path.read_text("utf-8"), str(path))


def _list(document: Mapping[str, Any], key: str, file: str) -> Sequence[Any]:
    value = document.get(key)
    if not isinstance(value, list):
        raise ClientDataError(f"{key} must be a list", file=file)
    return value


def _text(item: Mapping[str, Any], key: str, file: str) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ClientDataError(f"{key} must be a non-empty text in {dict(item)!r}", file=file)
    return value


def _client(item: Any, file: str) -> KnownClient:
    if not isinstance(item, Mapping):
        raise ClientDataError(f"a client must be a mapping, not {item!r}", file=file)
    kind = _text(item, "kind", file)
    port = item.get("port")
    if kind not in PROXY_KINDS:
        raise ClientDataError(f"kind must be one of {sorted(PROXY_KINDS)}: {kind!r}", file=file)
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise ClientDataError(f"port must be 1-65535: {port!r}", file=file)
    return KnownClient(
        name=_text(item, "name", file), kind=kind, port=port, source=_text(item, "source", file)
    )


def _interface(item: Any, file: str) -> InterfaceHint:
    if not isinstance(item, Mapping):
        raise ClientDataError(f"an interface must be a mapping, not {item!r}", file=file)
    client = item.get("client")
    if client is not None and not isinstance(client, str):
        raise ClientDataError(f"client must be a text or null: {client!r}", file=file)
    return InterfaceHint(
        prefix=_text(item, "prefix", file), client=client, source=_text(item, "source", file)
    )
