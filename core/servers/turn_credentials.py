"""Short-lived TURN credentials for browsers, by the TURN REST API scheme coturn supports.

The operator names the relays the test page may use (``--turn URI``) and gives coturn and the
echo server one shared secret (coturn: ``use-auth-secret`` + ``static-auth-secret``). For every
page load the echo server mints ``username = "<expiry unix time>:<user>"`` and
``password = base64(HMAC-SHA1(secret, username))``; coturn recomputes the password and refuses
the username once the expiry has passed. No long-term password ever reaches a browser.

Pure: the caller passes ``now``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

DEFAULT_TTL_S = 3600
DEFAULT_USER = "callpath-web"


@dataclass(frozen=True)
class TurnRelay:
    """One TURN URI the page calls through, with the path id it tests."""

    uri: str
    path_id: str  # turn-udp, turn-tcp or turn-tls
    transport: str  # udp, tcp or tls: what the browser's relayProtocol must say


@dataclass(frozen=True)
class TurnCredential:
    username: str
    password: str
    expires_at: int  # unix time


def parse_turn_uri(uri: str) -> TurnRelay:
    """``turn:host:port?transport=udp|tcp`` or ``turns:host:port[?transport=tcp]``.

    ``ValueError`` says what is wrong, in words fit for a command-line error.
    """
    scheme, _sep, rest = uri.partition(":")
    scheme = scheme.lower()
    if scheme not in ("turn", "turns") or not rest or rest.startswith("//"):
        raise ValueError(f"{uri!r} is not a turn: or turns: URI (turn:HOST:PORT?transport=udp)")
    parts = urlsplit(f"//{rest}")
    if "@" in rest or not parts.hostname:
        raise ValueError(f"{uri!r}: expected HOST[:PORT] after {scheme}: and no user name")
    try:
        port = parts.port
    except ValueError as error:
        raise ValueError(f"{uri!r}: {error}") from error
    del port
    transports = parse_qs(parts.query).get("transport", [])
    transport = transports[0].lower() if transports else ("tcp" if scheme == "turns" else "udp")
    if transport not in ("udp", "tcp") or (scheme == "turns" and transport != "tcp"):
        raise ValueError(f"{uri!r}: transport must be udp or tcp (turns: is always tcp)")
    if scheme == "turns":
        return TurnRelay(uri, "turn-tls", "tls")
    return TurnRelay(uri, f"turn-{transport}", transport)


def turn_rest_credential(
    secret: str, now: float, *, ttl_s: int = DEFAULT_TTL_S, user: str = DEFAULT_USER
) -> TurnCredential:
    """A credential valid until ``now + ttl_s`` for a coturn with ``static-auth-secret``."""
    if not secret:
        raise ValueError("the TURN secret is empty")
    expires_at = int(now) + ttl_s
    username = f"{expires_at}:{user}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return TurnCredential(username, base64.b64encode(digest).decode("ascii"), expires_at)
