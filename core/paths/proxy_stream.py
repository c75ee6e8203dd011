"""TCP streams through a SOCKS5 or HTTP CONNECT proxy, for TURN over TCP/TLS (python-socks).

``proxy_stream_opener`` returns a ``callpath.core.paths.relay.StreamOpener``: the engine hands it to
``connect_stream`` and everything after the connected socket (TLS, TURN) is unchanged. Errors
become OONI-style failure strings so a report says *how* the proxy failed.
"""

from __future__ import annotations

import socket
from typing import Any

from python_socks import ProxyConnectionError, ProxyError, ProxyTimeoutError, ProxyType
from python_socks.async_.asyncio import Proxy

from callpath.core.call.stages import StageFailure
from callpath.core.model.failures import failure_from_exception, scrub
from callpath.core.model.proxy_url import ProxyUrl
from callpath.core.paths.relay import StreamOpener
from callpath.core.paths.socks5 import reply_failure

PROXY_TYPES = {"socks5": ProxyType.SOCKS5, "http": ProxyType.HTTP}
HTTP_PROXY_AUTH_REQUIRED = 407

# python-socks reports these conditions only as message text (no error code); matched here,
# in one place, and exercised against real proxies by tests/test_proxy_connect.py.
_AUTH_MESSAGES = {
    "username and password authentication failure": "username/password rejected",
    "no acceptable authentication methods": "no acceptable method",
}
_EOF_MESSAGES = ("connection closed unexpectedly", "invalid proxy response")
_PROTOCOL_MESSAGES = ("unexpected socks version", "invalid status line", "malformed")


def proxy_failure(error: BaseException, proxy: ProxyUrl) -> StageFailure:
    """The StageFailure for an exception raised by python-socks while connecting."""
    evidence: dict[str, Any] = {"proxy_kind": proxy.kind}
    if isinstance(error, ProxyTimeoutError):
        return StageFailure("generic_timeout_error", evidence)
    if isinstance(error, ProxyConnectionError):
        cause = error.__cause__ if isinstance(error.__cause__, OSError) else error
        evidence["proxy_unreachable"] = True
        return StageFailure(failure_from_exception(cause), evidence)
    if isinstance(error, ProxyError):
        code = error.error_code
        if code is not None and proxy.kind == "http":
            evidence["status"] = code
            return StageFailure("http_unexpected_status_code", evidence)
        if code is not None:
            evidence["reply_code"] = code
            return StageFailure(reply_failure(code), evidence)
        text = str(error).lower()
        for message, reason in _AUTH_MESSAGES.items():
            if message in text:
                evidence["reason"] = reason
                return StageFailure("socks_auth_refused", evidence)
        if any(message in text for message in _EOF_MESSAGES) or not text:
            return StageFailure("eof_error", evidence)
        if any(message in text for message in _PROTOCOL_MESSAGES):
            evidence["reason"] = scrub(str(error))
            failure = "socks_protocol_error" if proxy.kind == "socks5" else "http_protocol_error"
            return StageFailure(failure, evidence)
        return StageFailure(f"unknown_failure: {scrub(str(error))}", evidence)
    if isinstance(error, OSError | EOFError | TimeoutError):
        return StageFailure(failure_from_exception(error), evidence)
    return StageFailure(f"unknown_failure: {scrub(str(error) or type(error).__name__)}", evidence)


def proxy_stream_opener(proxy: ProxyUrl, password: str | None) -> StreamOpener:
    """A StreamOpener that connects to the target through ``proxy``."""
    proxy_type = PROXY_TYPES[proxy.kind]

    async def open_through_proxy(address: tuple[str, int], timeout: float) -> socket.socket:
        # Built here, not outside: python-socks binds the event loop running at construction.
        client = Proxy(
            proxy_type,
            proxy.host,
            proxy.port,
            username=proxy.username,
            password=password,
            rdns=proxy.remote_dns,
        )
        try:
            sock: socket.socket = await client.connect(address[0], address[1], timeout=timeout)
        except (ProxyError, ProxyConnectionError, ProxyTimeoutError, OSError, EOFError) as error:
            raise proxy_failure(error, proxy) from error
        sock.setblocking(False)
        return sock

    return open_through_proxy
