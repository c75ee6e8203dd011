"""The phone test page in Debian's headless Chromium against a real echo server and coturn.

coturn takes TURN REST API credentials only (``use-auth-secret``), the page is served over
HTTPS with a throwaway CA, and Chromium trusts the test certificates by their SPKI hashes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from callpath.core.call.quality import summarize
from callpath.core.cli.main import main
from callpath.core.model.results import Direction, Grade, MediaKind, QualitySample
from callpath.core.report.document import redact_addresses, validate_report
from callpath.core.servers.echo_server import EchoServer, EchoServerConfig, server_ssl_context
from callpath.core.servers.report_inbox import StoredReport
from callpath.core.servers.turn_credentials import parse_turn_uri
from callpath.core.servers.web_page import VIDEO_SIZE, WebPageConfig
from callpath.core.servers.web_routes import WebOptions
from tests.browser import origin_of, requests_from_page, run_chromium, run_firefox
from tests.certs import make_server_certificate
from tests.servers import CoturnServer, run_coturn

pytestmark = [pytest.mark.servers, pytest.mark.slow, pytest.mark.timeout(240)]

TURN_SECRET = "phone-test-shared-secret"
MEASURE_S = 4
# CALLPATH_RECORD_PHONE_FIXTURE=1 saves the page-made report the fast tests use.
FIXTURE = Path(__file__).parent / "fixtures" / "phone" / "page-report.json"


@pytest.fixture(scope="module")
def rest_coturn(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with run_coturn(tmp_path_factory.mktemp("coturn-rest"), auth_secret=TURN_SECRET) as server:
        yield server


@contextlib.asynccontextmanager
async def echo_for_page(
    coturn: CoturnServer, tmp_path: Path, *, turn_secret: str = TURN_SECRET
) -> AsyncIterator[tuple[EchoServer, Path]]:
    """An echo server over HTTPS offering the page direct and coturn's three TURN URIs."""
    certificate = make_server_certificate(tmp_path / "echo-certs", ("localhost",))
    relays = tuple(
        parse_turn_uri(uri)
        for uri in (coturn.turn_udp_uri, coturn.turn_tcp_uri, coturn.turn_tls_uri)
    )
    server = EchoServer(
        EchoServerConfig(
            host="127.0.0.1",
            port=0,
            ice_addresses=("127.0.0.1",),
            ssl_context=server_ssl_context(str(certificate.cert_path), str(certificate.key_path)),
            web=WebOptions(
                page=WebPageConfig(turn_relays=relays, turn_secret=turn_secret),
                data_dir=tmp_path / "data",
                report_validator=validate_report,
                report_redactor=redact_addresses,
            ),
        )
    )
    await server.start()
    try:
        yield server, certificate.cert_path
    finally:
        await server.stop()


@pytest.fixture
async def https_echo(
    rest_coturn: CoturnServer, tmp_path: Path
) -> AsyncIterator[tuple[EchoServer, Path]]:
    async with echo_for_page(rest_coturn, tmp_path) as started:
        yield started


async def wait_for_report(server: EchoServer, timeout: float) -> StoredReport:
    inbox = server.web.inbox
    assert inbox is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stored = inbox.entries()
        if stored:
            return stored[0]
        await asyncio.sleep(0.5)
    raise AssertionError("no report reached the inbox")


def python_grade(kind: MediaKind, media: dict[str, Any]) -> tuple[str, list[str]]:
    """The app's own grading of the page's samples (core/call/quality.py)."""
    samples = [
        QualitySample(
            t=sample["t"],
            direction=Direction(sample["direction"]),
            kind=kind,
            rtt_ms=sample["rtt_ms"],
            jitter_ms=sample["jitter_ms"],
            loss_pct=sample["loss_pct"],
            bitrate_kbps=sample["bitrate_kbps"],
        )
        for sample in media["samples"]
    ]
    quality = summarize(
        kind,
        samples,
        video_pixels=VIDEO_SIZE[0] * VIDEO_SIZE[1],
        stalled="media_stalled" in media["reasons"],
    )
    return str(quality.grade), list(quality.reasons)


async def test_every_path_connects_is_proven_graded_and_the_report_comes_back_by_code(
    https_echo: tuple[EchoServer, Path],
    rest_coturn: CoturnServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server, echo_certificate = https_echo
    page = server.url.replace("127.0.0.1", "localhost") + f"/?autorun=1&send=1&seconds={MEASURE_S}"
    turn_certificate = rest_coturn.ca_path.parent / "server.pem"
    with run_chromium(
        page, tmp_path / "chromium", trusted_certificates=(echo_certificate, turn_certificate)
    ) as chromium:
        stored = await wait_for_report(server, timeout=150)
    report = stored.report
    assert report["software"]["name"] == "callpath-web", chromium.console()[-3000:]
    validate_report(report)
    if os.environ.get("CALLPATH_RECORD_PHONE_FIXTURE") == "1":
        FIXTURE.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")

    paths = {path["id"]: path for path in report["paths"]}
    assert list(paths) == ["direct", "turn-udp", "turn-tcp", "turn-tls"]
    expected_transport = {"direct": None, "turn-udp": "udp", "turn-tcp": "tcp", "turn-tls": "tls"}
    for path_id, path in paths.items():
        pair = path["selected_pair"]
        assert path["failure"] is None and path["exercised"], (path_id, path["stages"])
        assert pair["relay_transport"] == expected_transport[path_id]
        assert pair["local_type"] == ("host" if path_id == "direct" else "relay")
        assert pair["remote_type"] == "host"  # the echo offers host candidates only
        for kind, media_key in ((MediaKind.AUDIO, "voice"), (MediaKind.VIDEO, "video")):
            media = path[media_key]
            assert media["grade"] in ("good", "degraded", "unusable")
            received = [s for s in media["samples"] if s["direction"] == "received"]
            assert len(received) >= MEASURE_S - 1 and any(s["bitrate_kbps"] > 0 for s in received)
            # The page graded with the app's thresholds and rules: the app agrees.
            assert python_grade(kind, media) == (media["grade"], media["reasons"]), path_id
        assert paths[path_id]["voice"]["mos"] is not None
        # Loopback: voice carries (good unless the machine is badly overloaded).
        assert path["voice"]["grade"] != str(Grade.UNUSABLE), path["voice"]
    # The verdict follows the app's rule: exercised paths with good voice restore voice.
    restored = report["verdict"]["voice"]["restored_by"]
    assert sorted(restored) == sorted(p for p in paths if paths[p]["voice"]["grade"] == "good")
    assert restored, "no path carried good voice over loopback"

    # Stored, and back by its code (typed the way a user reads it out).
    data_dir = server.config.web.data_dir
    assert main(["reports", "--data-dir", str(data_dir), "show", stored.code.lower()]) == 0
    assert json.loads(capsys.readouterr().out) == report
    assert main(["reports", "--data-dir", str(data_dir), "list"]) == 0
    assert stored.code in capsys.readouterr().out
    assert report["redacted"] is True and stored.client == ""  # "include addresses" not ticked

    # The page asked this server only: every request it made went to its own origin.
    urls = requests_from_page(chromium.net_log, origin_of(page))
    assert any(url.endswith("/web/config") for url in urls)
    assert any(url.endswith("/reports") for url in urls)
    assert {origin_of(url) for url in urls} == {origin_of(page)}, urls


async def test_a_vp9_only_browser_still_gets_its_audio_echoed(
    https_echo: tuple[EchoServer, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server, echo_certificate = https_echo
    page = server.url + "/?autorun=1&send=1&addresses=1&paths=direct&codec=VP9&seconds=3"
    with run_chromium(
        page, tmp_path / "chromium", trusted_certificates=(echo_certificate,)
    ) as chromium:
        stored = await wait_for_report(server, timeout=90)
    (path,) = stored.report["paths"]
    assert path["exercised"] and path["failure"] is None, chromium.console()[-3000:]
    connect = next(stage for stage in path["stages"] if stage["stage"] == "connect")
    assert connect["evidence"] == {"video_rejected": True}
    assert path["voice"]["grade"] == "good"
    assert path["video"]["grade"] == "not_tested"
    assert stored.report["redacted"] is False and stored.client == "127.0.0.1"
    assert "rejecting the video offered only VP9" in caplog.text


async def test_relays_refuse_wrong_credentials_and_browsers_untrusted_turn_certificates(
    rest_coturn: CoturnServer, tmp_path: Path
) -> None:
    """What makes the passing paths above meaningful: coturn checks the REST credentials, and
    Chromium checks the TURN server's certificate (so deployments need a trusted one)."""
    async with echo_for_page(rest_coturn, tmp_path / "wrong", turn_secret="not-the-secret") as (
        server,
        certificate,
    ):
        page = server.url + "/?autorun=1&send=1&seconds=1&paths=turn-udp"
        with run_chromium(page, tmp_path / "c1", trusted_certificates=(certificate,)):
            stored = await wait_for_report(server, timeout=90)
        (path,) = stored.report["paths"]
        assert (path["id"], path["failure"], path["exercised"]) == (
            "turn-udp",
            "turn_allocate_failed",
            False,
        )
    async with echo_for_page(rest_coturn, tmp_path / "untrusted") as (server, certificate):
        page = server.url + "/?autorun=1&send=1&seconds=1&paths=turn-tls"
        # The page's certificate is trusted, the relay's is not.
        with run_chromium(page, tmp_path / "c2", trusted_certificates=(certificate,)) as chromium:
            stored = await wait_for_report(server, timeout=90)
        (path,) = stored.report["paths"]
        assert (path["id"], path["failure"]) == ("turn-tls", "turn_allocate_failed")
        assert "net_error -202" in chromium.console()


async def test_firefox_places_the_direct_and_plain_turn_calls_too(
    rest_coturn: CoturnServer, tmp_path: Path
) -> None:
    """Firefox ESR over plain HTTP (it has no SPKI flag for the test CA; TURN over TLS is
    Chromium's part above)."""
    relays = (parse_turn_uri(rest_coturn.turn_udp_uri), parse_turn_uri(rest_coturn.turn_tcp_uri))
    server = EchoServer(
        EchoServerConfig(
            host="127.0.0.1",
            port=0,
            ice_addresses=("127.0.0.1",),
            web=WebOptions(
                page=WebPageConfig(turn_relays=relays, turn_secret=TURN_SECRET),
                data_dir=tmp_path / "data",
                report_validator=validate_report,
            ),
        )
    )
    await server.start()
    try:
        with run_firefox(server.url + "/?autorun=1&send=1&seconds=3", tmp_path / "firefox"):
            stored = await wait_for_report(server, timeout=120)
    finally:
        await server.stop()
    validate_report(stored.report)
    paths = {path["id"]: path for path in stored.report["paths"]}
    assert list(paths) == ["direct", "turn-udp", "turn-tcp"]
    for path_id, transport in (("direct", None), ("turn-udp", "udp"), ("turn-tcp", "tcp")):
        path = paths[path_id]
        assert path["exercised"] and path["failure"] is None, (path_id, path["stages"])
        assert path["selected_pair"]["relay_transport"] == transport
        assert path["voice"]["grade"] == "good"
        assert python_grade(MediaKind.VIDEO, path["video"]) == (
            path["video"]["grade"],
            path["video"]["reasons"],
        )
