"""The phone test page ``callpath echo-server`` serves at ``/``, and what the page loads.

The page (assets/web/) is static and self-contained: it talks to this server only, and the
Content-Security-Policy sent with it forbids anything else. ``GET /web/config`` gives it, in one
JSON document:

- ``thresholds``: every field of :class:`callpath.core.call.quality.Thresholds`, from the Python
  constants themselves, so the page grades with exactly the numbers the app uses;
- ``strings``: the page's texts in the browser's language (``?lang=`` or Accept-Language), from
  the project's .po catalogues;
- ``paths``: direct, then one entry per ``--turn`` URI with a fresh short-lived credential
  (TURN REST API, :mod:`callpath.core.servers.turn_credentials`);
- ``software`` and ``version`` for the report the page builds.

ICE: the server does not trickle. The page waits until its ICE gathering is complete (or
``GATHERING_WAIT_S`` has passed) before it posts the offer, and the answer carries every server
candidate. Documented in docs/phone-test.md.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from callpath.core import __version__
from callpath.core.call.quality import DEFAULT_THRESHOLDS, Thresholds
from callpath.core.i18n import CATALOGUE_LOCALES, LANGUAGES, N_, messages_for
from callpath.core.paths.registry import PATHS
from callpath.core.resources import asset_path
from callpath.core.servers.turn_credentials import TurnRelay, turn_rest_credential

WEB_SOFTWARE_NAME = "callpath-web"
GATHERING_WAIT_S = 5.0
VIDEO_SIZE = (320, 240)

# The files the page consists of: request path → (file under assets/web, content type).
PAGE_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/web/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/web/style.css": ("style.css", "text/css; charset=utf-8"),
}
# Nothing but this server, ever: the page's promise to the user, enforced by the browser.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; media-src 'self' blob: mediastream:; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)

# Every text the page shows, by the key app.js uses. Placeholders in braces.
PAGE_STRINGS = {
    "title": N_("Call test"),
    "intro": N_(
        "This page checks whether voice and video calls get through from this phone's network. "
        "Nothing is installed and no microphone or camera is used: the test sends a tone and a "
        "moving picture to your support team's server, which sends them back."
    ),
    "start": N_("Start the test"),
    "again": N_("Test again"),
    "running": N_("Testing… {done} of {total} ways tested"),
    "connecting": N_("connecting"),
    "measuring": N_("measuring"),
    "voice": N_("Voice"),
    "video": N_("Video"),
    "good": N_("good"),
    "degraded": N_("degraded"),
    "unusable": N_("unusable"),
    "not_tested": N_("not tested"),
    "failed": N_("does not work ({failure})"),
    "not_proven": N_("the call did not go this way"),
    "figures": N_("round trip {rtt} ms, jitter {jitter} ms, loss {loss} %, {bitrate} kbit/s"),
    "voice_works": N_("Voice calls work: best {path}."),
    "voice_none": N_("No way tested carried voice well enough for a call."),
    "video_works": N_("Video calls work: best {path}."),
    "video_none": N_("No way tested carried video well enough."),
    "nothing": N_("No way tested carried a call."),
    "send": N_("Send to my support team"),
    "include_addresses": N_("Include addresses (helps support; leave unticked to hide them)"),
    "sending": N_("Sending…"),
    "sent": N_("Sent. Tell your support team this code: {code}"),
    "send_failed": N_("The report could not be sent: {error}"),
    "cannot_start": N_("The test could not start: {error}"),
    "unsupported": N_("This browser cannot place test calls (no WebRTC)."),
}


@dataclass(frozen=True)
class WebPageConfig:
    """What the operator decided for the page."""

    turn_relays: tuple[TurnRelay, ...] = ()
    turn_secret: str | None = None
    turn_ttl_s: int = 3600
    measure_s: float = 8.0


def thresholds_json(thresholds: Thresholds = DEFAULT_THRESHOLDS) -> dict[str, Any]:
    return dataclasses.asdict(thresholds)


def choose_language(query: str | None, accept_language: str | None) -> str:
    """``?lang=`` if CallPath has it, else the first Accept-Language CallPath has, else en."""
    candidates: list[str] = []
    if query:
        candidates.append(query)
    for part in (accept_language or "").split(","):
        tag = part.split(";", 1)[0].strip()
        if tag:
            candidates.append(tag)
    for tag in candidates:
        code = tag.replace("_", "-").split("-", 1)[0].lower()
        if code in LANGUAGES:
            return code
    return "en"


def page_strings(language: str) -> dict[str, str]:
    messages = messages_for(language)
    strings = {key: messages.get(text, text) for key, text in PAGE_STRINGS.items()}
    for spec in PATHS.values():
        strings[f"path.{spec.id.value}"] = messages.get(spec.label, spec.label)
    return strings


def page_config(
    config: WebPageConfig, language: str, now: float, *, reports: bool
) -> dict[str, Any]:
    """The JSON document of ``GET /web/config``; ``reports``: the server takes reports."""
    paths: list[dict[str, Any]] = [{"id": "direct"}]
    if config.turn_secret:
        credential = turn_rest_credential(config.turn_secret, now, ttl_s=config.turn_ttl_s)
        for relay in config.turn_relays:
            paths.append(
                {
                    "id": relay.path_id,
                    "urls": relay.uri,
                    "username": credential.username,
                    "credential": credential.password,
                    "relay_protocol": relay.transport,
                }
            )
    return {
        "software": WEB_SOFTWARE_NAME,
        "version": __version__,
        "language": language,
        "rtl": language == "fa",
        "catalogue": CATALOGUE_LOCALES.get(language, language),
        "strings": page_strings(language),
        "thresholds": thresholds_json(),
        "paths": paths,
        "video": {"width": VIDEO_SIZE[0], "height": VIDEO_SIZE[1]},
        "measure_s": config.measure_s,
        "gathering_wait_s": GATHERING_WAIT_S,
        "reports": reports,
    }


def page_file(request_path: str) -> tuple[Path, str] | None:
    entry = PAGE_FILES.get(request_path)
    if entry is None:
        return None
    name, content_type = entry
    return asset_path("web", name), content_type
