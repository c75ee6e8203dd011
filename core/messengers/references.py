"""Reference endpoints of the messenger check (``assets/messengers/network.yaml``): public STUN
servers, the DoH resolver, and per country the domestic services that stay reachable in
allowlist mode."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from callpath.core.i18n import _
from callpath.core.messengers.catalog import CatalogError, Endpoint
from callpath.core.resources import asset_path

REFERENCES_VERSION = 1


@dataclass(frozen=True)
class References:
    public_stun: tuple[Endpoint, ...]
    doh_url: str
    domestic: Mapping[str, tuple[Endpoint, ...]]  # country code -> endpoints

    def domestic_for(self, country: str) -> tuple[Endpoint, ...]:
        return self.domestic.get(country, ())


def _endpoint(item: Any, file: str, default_proto: str) -> Endpoint:
    if not isinstance(item, dict) or not isinstance(item.get("host"), str):
        raise CatalogError(_("an endpoint needs {key!r}").format(key="host"), file=file)
    port = item.get("port")
    if not isinstance(port, int) or not 1 <= port <= 65535:
        raise CatalogError(_("port must be a number from 1 to 65535"), file=file)
    proto = str(item.get("proto", default_proto))
    if proto not in ("tcp", "tls", "stun"):
        raise CatalogError(
            _("{what} must be one of {allowed}, not {value!r}").format(
                what="proto", allowed="tcp, tls, stun", value=proto
            ),
            file=file,
        )
    return Endpoint(host=item["host"].lower(), port=port, proto=proto)


def parse_references(text: str, file: str = "<text>") -> References:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise CatalogError(str(error), file=file) from None
    if not isinstance(data, dict) or data.get("version") != REFERENCES_VERSION:
        raise CatalogError(
            _("version must be {version}").format(version=REFERENCES_VERSION), file=file
        )
    doh = data.get("doh")
    if not isinstance(doh, dict) or not str(doh.get("url", "")).startswith("https://"):
        raise CatalogError(_("doh.url must be an https:// URL"), file=file)
    domestic = data.get("domestic") or {}
    if not isinstance(domestic, dict):
        raise CatalogError(_("{what} must be a mapping").format(what="domestic"), file=file)
    return References(
        public_stun=tuple(_endpoint(i, file, "stun") for i in data.get("public_stun") or []),
        doh_url=str(doh["url"]),
        domestic={
            str(country): tuple(_endpoint(i, file, "tls") for i in items or [])
            for country, items in domestic.items()
        },
    )


def references_path() -> Path:
    return asset_path("messengers", "network.yaml")


def load_references(path: Path | None = None) -> References:
    file = path if path is not None else references_path()
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise CatalogError(str(error), file=str(file)) from None
    return parse_references(text, str(file))
