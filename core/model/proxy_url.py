"""Proxy URLs as users write them: ``socks5://[user@]host:port``, ``socks5h://…``, ``http://…``.

The password is never part of the URL: profiles hold it as a secret reference and pass it
separately, so a URL can be shown, logged and written to reports as it is.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from callpath.core.i18n import _
from callpath.core.model.hostnames import host_problem, url_problem
from callpath.core.model.yaml_input import shown

SCHEMES = ("socks5", "socks5h", "http")
KIND_BY_SCHEME = {"socks5": "socks5", "socks5h": "socks5", "http": "http"}


@dataclass(frozen=True)
class ProxyUrl:
    """Where a proxy listens and how to talk to it (no password)."""

    scheme: str  # socks5 | socks5h | http
    host: str  # a name or an address, IPv6 without brackets
    port: int
    username: str | None = None

    @property
    def kind(self) -> str:
        """``socks5`` or ``http``: the protocol spoken to the proxy."""
        return KIND_BY_SCHEME[self.scheme]

    @property
    def remote_dns(self) -> bool:
        """Whether target names are resolved by the proxy (``socks5h`` and HTTP CONNECT)."""
        return self.scheme != "socks5"

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    @property
    def is_loopback(self) -> bool:
        """True when the proxy runs on this machine (an address in 127/8 or ::1, or localhost)."""
        if self.host.lower() in ("localhost", "localhost."):
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = f"{self.username}@" if self.username else ""
        return f"{self.scheme}://{user}{host}:{self.port}"


def parse_proxy_url(text: str) -> ProxyUrl:
    """Parse a proxy URL; ValueError says what is wrong and how to write it instead."""
    stripped = text.strip()
    problem = url_problem(stripped)
    if problem is not None:
        raise ValueError(
            _("the proxy URL {url!r} is not usable: {problem}").format(
                url=shown(stripped), problem=problem
            )
        )
    if "://" not in stripped:
        raise ValueError(
            _("{url!r} has no scheme; write socks5://HOST:PORT or http://HOST:PORT").format(
                url=stripped
            )
        )
    try:
        parts = urlsplit(stripped)
        port = parts.port
    except ValueError as error:
        raise ValueError(
            _("{url!r} is not a valid proxy URL: {reason}").format(url=stripped, reason=error)
        ) from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ValueError(
            _("unsupported proxy scheme {scheme!r}; use one of: {schemes}").format(
                scheme=scheme, schemes=", ".join(SCHEMES)
            )
        )
    if parts.password is not None:
        raise ValueError(
            _(
                "the proxy URL contains a password; put the password in a secret reference, "
                "not the URL"
            )
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(
            _("a proxy URL has no path, query or fragment: {url!r}").format(url=stripped)
        )
    host = parts.hostname
    if not host:
        raise ValueError(_("the proxy URL {url!r} has no host").format(url=stripped))
    host_issue = host_problem(host)
    if host_issue is not None:
        raise ValueError(
            _("the proxy URL {url!r} is not usable: {problem}").format(
                url=shown(stripped), problem=host_issue
            )
        )
    if port is None:
        raise ValueError(
            _("the proxy URL {url!r} has no port; write e.g. {example}").format(
                url=stripped, example=f"{scheme}://{parts.netloc}:1080"
            )
        )
    if port == 0:
        raise ValueError(_("the proxy URL {url!r} has port 0").format(url=stripped))
    username = unquote(parts.username) if parts.username is not None else None
    if username == "":
        raise ValueError(_("the proxy URL {url!r} has an empty user name").format(url=stripped))
    return ProxyUrl(scheme=scheme, host=host, port=port, username=username)
