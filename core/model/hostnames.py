"""Strict checks of host names and URLs taken from user files, before anything uses them.

aiohttp and friends would percent-encode a NUL or CR/LF and carry on; a 300-character label
would reach the resolver. Both are refused here with a message saying what to fix.
"""

from __future__ import annotations

import ipaddress
import re

from callpath.core.i18n import _

MAX_NAME_CHARS = 253
MAX_LABEL_CHARS = 63
MAX_URL_CHARS = 2048
_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?")


def control_character_problem(text: str) -> str | None:
    """A message when ``text`` holds a control character (NUL, CR, LF, tab, DEL, …)."""
    for character in text:
        if ord(character) < 0x20 or 0x7F <= ord(character) < 0xA0 or character in "\u2028\u2029":
            return _("it contains the control character U+{code:04X}; remove it").format(
                code=ord(character)
            )
    return None


def host_problem(host: str) -> str | None:
    """None when ``host`` is an IP address or a valid DNS name, else what is wrong."""
    problem = control_character_problem(host)
    if problem is not None:
        return problem
    literal = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ipaddress.ip_address(literal)
        return None
    except ValueError:
        pass
    if not host.isascii():
        return _(
            "the host {host!r} is not plain ASCII; write an international name as xn--…"
        ).format(host=host[:80])
    name = host[:-1] if host.endswith(".") else host
    if not name:
        return _("the host is empty")
    if len(name) > MAX_NAME_CHARS:
        return _("the host name is {count} characters long; at most {limit} are allowed").format(
            count=len(name), limit=MAX_NAME_CHARS
        )
    for label in name.split("."):
        if len(label) > MAX_LABEL_CHARS:
            return _(
                "a part of the host name is {count} characters long; each part between dots has "
                "at most {limit}"
            ).format(count=len(label), limit=MAX_LABEL_CHARS)
        if not _LABEL.fullmatch(label):
            return _(
                "the host {host!r} is not a valid name (letters, digits, '-' and '.' only)"
            ).format(host=host[:80])
    return None


def url_problem(url: str) -> str | None:
    """Whole-URL checks done before parsing: length and control characters."""
    if len(url) > MAX_URL_CHARS:
        return _("the URL is {count} characters long; at most {limit} are allowed").format(
            count=len(url), limit=MAX_URL_CHARS
        )
    return control_character_problem(url)
