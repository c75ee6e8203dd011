"""Map exceptions to OONI-style failure strings (GUIDE §3), with addresses scrubbed."""

from __future__ import annotations

import asyncio
import errno
import re
import socket
import ssl

# OpenSSL X509 verification result codes (x509_vfy.h) that mean "who signed this is unknown".
_UNKNOWN_AUTHORITY_CODES = {2, 18, 19, 20, 21, 27}
_HOSTNAME_MISMATCH_CODE = 62
_ADDRESS_PATTERN = re.compile(
    r"(?:\d{1,3}\.){3}\d{1,3}|\[?[0-9a-fA-F]{0,4}(?::[0-9a-fA-F]{0,4}){2,7}\]?"
)


def scrub(text: str) -> str:
    """Remove IP addresses from free text that ends up in a failure string."""
    return _ADDRESS_PATTERN.sub("[scrubbed]", text)


def failure_from_exception(error: BaseException) -> str:
    """The OONI-style failure string for an exception raised by a network step."""
    if isinstance(error, TimeoutError | asyncio.TimeoutError):
        return "generic_timeout_error"
    if isinstance(error, ssl.SSLCertVerificationError):
        code = getattr(error, "verify_code", None)
        if code == _HOSTNAME_MISMATCH_CODE:
            return "ssl_invalid_hostname"
        if code in _UNKNOWN_AUTHORITY_CODES:
            return "ssl_unknown_authority"
        return "ssl_invalid_certificate"
    if isinstance(error, ssl.SSLEOFError | asyncio.IncompleteReadError | EOFError):
        return "eof_error"
    if isinstance(error, ssl.SSLError):
        return "ssl_failed_handshake"
    if isinstance(error, socket.gaierror):
        if error.errno == socket.EAI_NONAME:
            return "dns_nxdomain_error"
        if error.errno == getattr(socket, "EAI_NODATA", -5):
            return "dns_no_answer"
        return "dns_lookup_error"
    if isinstance(error, ConnectionRefusedError):
        return "connection_refused"
    if isinstance(error, ConnectionResetError | BrokenPipeError):
        return "connection_reset"
    if isinstance(error, ConnectionAbortedError):
        return "connection_reset"
    if isinstance(error, OSError) and error.errno is not None:
        if error.errno == errno.EHOSTUNREACH:
            return "host_unreachable"
        if error.errno == errno.ENETUNREACH:
            return "network_unreachable"
        if error.errno == errno.ECONNREFUSED:
            return "connection_refused"
        if error.errno == errno.ETIMEDOUT:
            return "generic_timeout_error"
    text = scrub(str(error) or type(error).__name__)
    return f"unknown_failure: {text}"
