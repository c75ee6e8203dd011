"""Proxy failures in words a user can act on (SOCKS5 reply codes, HTTP statuses, no UDP)."""

from __future__ import annotations

from typing import Any

from callpath.core.i18n import N_, _
from callpath.core.paths.registry import Carrier, path_spec
from callpath.core.paths.socks5 import UDP_REFUSAL_FAILURES, UDP_REFUSED_EXPLANATION

PROXY_FAILURE_EXPLANATIONS = {
    "socks_auth_refused": N_(
        "the proxy refused the user name or password, or needs credentials that were not given"
    ),
    "socks_general_failure": N_("the proxy could not open the connection (general failure)"),
    "socks_connection_not_allowed": N_("the proxy's rules do not allow this connection"),
    "socks_network_unreachable": N_("the proxy cannot reach the server's network"),
    "socks_host_unreachable": N_("the proxy cannot reach the server"),
    "socks_connection_refused": N_("the server refused the proxy's connection"),
    "socks_ttl_expired": N_("the proxy's connection to the server expired"),
    "socks_command_not_supported": N_("the proxy does not support this request"),
    "socks_address_type_not_supported": N_("the proxy does not accept this kind of address"),
    "socks_protocol_error": N_("this does not answer like a SOCKS5 proxy"),
    "http_protocol_error": N_("this does not answer like an HTTP proxy"),
    "connection_refused": N_("nothing is listening at the proxy's address and port"),
    "eof_error": N_("the proxy closed the connection"),
    "connection_reset": N_("the proxy connection was reset"),
    "generic_timeout_error": N_("the proxy did not answer in time"),
    "stun_no_response": N_(
        "the proxy accepted UDP but nothing came back through it; it may not relay UDP"
    ),
}
# 407 is the standard answer; tinyproxy answers 401 to wrong credentials.
HTTP_AUTH_STATUSES = (401, 407)
HTTP_AUTH_REQUIRED_EXPLANATION = N_(
    "the HTTP proxy wants a valid user name and password (status {status})"
)
HTTP_STATUS_EXPLANATION = N_("the HTTP proxy refused the connection with status {status}")


def explain_proxy_failure(
    failure: str, evidence: dict[str, Any] | None = None, *, udp: bool = False
) -> str | None:
    """A translated sentence for a proxy failure, or None when there is nothing proxy-specific.

    ``udp`` is True for the UDP ASSOCIATE request of ``socks5-udp``: a refusal there means the
    proxy carries no UDP, which does not rule out TURN through the same proxy.
    """
    evidence = evidence or {}
    if udp and failure in UDP_REFUSAL_FAILURES:
        return _(UDP_REFUSED_EXPLANATION)
    if failure == "http_unexpected_status_code":
        status = evidence.get("status")
        if status in HTTP_AUTH_STATUSES:
            return _(HTTP_AUTH_REQUIRED_EXPLANATION).format(status=status)
        return _(HTTP_STATUS_EXPLANATION).format(status=status)
    text = PROXY_FAILURE_EXPLANATIONS.get(failure)
    return None if text is None else _(text)


def explain_path_failure(
    path_id: str, failure: str, evidence: dict[str, Any] | None = None
) -> str | None:
    """A proxy path's own words for its failure (None for other paths, or nothing specific):
    a refusal on a UDP proxy path means the proxy carries no UDP."""
    spec = path_spec(path_id)
    if spec is None or spec.proxy is None:
        return None
    return explain_proxy_failure(failure, evidence, udp=spec.carrier is Carrier.UDP)
