"""The echo server's side of the phone test page, over real HTTP on loopback: page files,
thresholds and translations, TURN REST credentials, CORS, the report inbox, VP9-only offers."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from callpath.core.call.quality import DEFAULT_THRESHOLDS, Thresholds
from callpath.core.cli.main import main
from callpath.core.i18n import messages_for
from callpath.core.report.document import load_report, redact_addresses, validate_report
from callpath.core.resources import asset_path
from callpath.core.servers.echo_server import EchoServer, EchoServerConfig
from callpath.core.servers.offer_codecs import merge_answer, split_offer
from callpath.core.servers.report_inbox import InboxLimits, RateLimiter, ReportInbox
from callpath.core.servers.turn_credentials import parse_turn_uri, turn_rest_credential
from callpath.core.servers.web_page import PAGE_STRINGS, WebPageConfig, choose_language
from callpath.core.servers.web_routes import WebOptions
from tests.conftest import EchoServerStarter
from tests.servers import free_port, http_get_json

FIXTURE = Path(__file__).parent / "fixtures" / "phone" / "page-report.json"
ServerFactory = Callable[..., Awaitable[EchoServer]]


@pytest.fixture
def start_server(tmp_path: Path, echo_servers: EchoServerStarter) -> ServerFactory:

    async def start(**changes: Any) -> EchoServer:
        config = EchoServerConfig(
            host="127.0.0.1",
            port=0,
            ice_addresses=("127.0.0.1",),
            web=WebOptions(
                data_dir=tmp_path / "data",
                report_validator=validate_report,
                report_redactor=redact_addresses,
            ),
        )
        return await echo_servers(config, **changes)

    return start


async def request(
    method: str, url: str, *, json_body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], Any]:
    async with (
        aiohttp.ClientSession() as client,
        client.request(method, url, json=json_body, headers=headers or {}) as response,
    ):
        text = await response.text()
        try:
            body: Any = json.loads(text)
        except ValueError:
            body = text
        return response.status, dict(response.headers), body


def page_report() -> dict[str, Any]:
    """A report the page made in headless Chromium (recorded by tests/test_phone_page.py)."""
    data: dict[str, Any] = json.loads(FIXTURE.read_text(encoding="utf-8"))
    return data


# --- page, thresholds, translations ---------------------------------------------------------


async def test_the_page_is_served_with_a_policy_that_forbids_other_hosts(
    start_server: ServerFactory,
) -> None:
    server = await start_server(token="s3cret")  # the page itself needs no token
    status, headers, body = await request("GET", server.url + "/")
    assert status == 200 and "text/html" in headers["Content-Type"]
    assert '<script src="/web/app.js">' in body
    policy = headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    for name in ("/web/app.js", "/web/style.css"):
        status, _headers, _body = await request("GET", server.url + name)
        assert status == 200
    # No URL of another host anywhere in the page's files.
    for file in asset_path("web").iterdir():
        text = file.read_text(encoding="utf-8")
        assert not re.search(r"(?i)\b(?:https?|wss?)://", text), file
    # …and the configuration does need it.
    assert (await request("GET", server.url + "/web/config"))[0] == 401


async def test_the_page_grades_with_the_apps_own_thresholds(start_server: ServerFactory) -> None:
    server = await start_server()
    status, _headers, config = await request("GET", server.url + "/web/config")
    assert status == 200
    assert config["thresholds"] == dataclasses.asdict(DEFAULT_THRESHOLDS)
    assert set(config["thresholds"]) == {field.name for field in dataclasses.fields(Thresholds)}
    assert config["software"] == "callpath-web" and config["paths"] == [{"id": "direct"}]
    # Every threshold the page's grading reads is one the server sends.
    used = set(re.findall(r"\bth\.([a-z_]+)", asset_path("web", "app.js").read_text()))
    assert used and used <= set(config["thresholds"])


async def test_the_page_speaks_the_browsers_language_from_the_catalogues(
    start_server: ServerFactory,
) -> None:
    server = await start_server()
    headers = {"Accept-Language": "ru-RU,ru;q=0.9,en;q=0.8"}
    _status, _headers, russian = await request("GET", server.url + "/web/config", headers=headers)
    catalogue = messages_for("ru")
    assert russian["language"] == "ru"
    for key, text in PAGE_STRINGS.items():
        assert catalogue.get(text), f"no Russian for {text!r}"
        assert russian["strings"][key] == catalogue[text]
    assert russian["strings"]["path.turn-tls"] == catalogue["TURN over TLS"]
    _status, _headers, english = await request("GET", server.url + "/web/config?lang=en")
    assert english["strings"]["start"] == "Start the test"
    assert choose_language(None, "de-DE,fa;q=0.5") == "fa"
    assert choose_language("zh-CN", None) == "zh" and choose_language(None, None) == "en"


# --- TURN REST credentials ------------------------------------------------------------------


def test_turn_rest_credentials_follow_the_scheme_coturn_checks() -> None:
    credential = turn_rest_credential("s3cret", now=1_700_000_000.7, ttl_s=600, user="web")
    assert credential.username == "1700000600:web" and credential.expires_at == 1_700_000_600
    expected = hmac.new(b"s3cret", b"1700000600:web", hashlib.sha1).digest()
    assert base64.b64decode(credential.password) == expected
    with pytest.raises(ValueError):
        turn_rest_credential("", now=0)


def test_turn_uris_name_their_path() -> None:
    assert parse_turn_uri("turn:relay.example.org:3478?transport=udp").path_id == "turn-udp"
    assert parse_turn_uri("turn:relay.example.org").transport == "udp"
    assert parse_turn_uri("turn:192.0.2.1:443?transport=tcp").path_id == "turn-tcp"
    tls = parse_turn_uri("turns:relay.example.org:5349?transport=tcp")
    assert (tls.path_id, tls.transport) == ("turn-tls", "tls")
    for bad in ("stun:relay:3478", "turn:", "turn:user@relay", "turns:relay?transport=udp"):
        with pytest.raises(ValueError):
            parse_turn_uri(bad)


async def test_the_page_gets_short_lived_credentials_never_the_secret(
    start_server: ServerFactory,
) -> None:
    relays = (parse_turn_uri("turn:127.0.0.1:3478?transport=udp"),)
    page = WebPageConfig(turn_relays=relays, turn_secret="the-shared-secret", turn_ttl_s=120)
    server = await start_server(
        web=WebOptions(page=page, data_dir=None, report_validator=validate_report)
    )
    _status, _headers, config = await request("GET", server.url + "/web/config")
    direct, relay = config["paths"]
    assert direct == {"id": "direct"} and relay["id"] == "turn-udp"
    assert relay["relay_protocol"] == "udp"
    expiry, user = relay["username"].split(":")
    assert 0 < int(expiry) - time.time() <= 121 and user == "callpath-web"
    assert "the-shared-secret" not in json.dumps(config)
    assert config["reports"] is False


# --- CORS -----------------------------------------------------------------------------------


async def test_cors_for_the_own_origin_and_listed_ones_only_preflight_before_the_token(
    start_server: ServerFactory,
) -> None:
    server = await start_server(token="s3cret", cors_origins=("https://support.example.org",))
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    for origin in (server.url, "https://support.example.org", "https://SUPPORT.example.org:443"):
        status, headers, _body = await request(
            "OPTIONS", server.url + "/offer", headers={**preflight, "Origin": origin}
        )
        assert status == 204, origin
        assert headers["Access-Control-Allow-Origin"] == origin
        assert "Authorization" in headers["Access-Control-Allow-Headers"]
        assert "POST" in headers["Access-Control-Allow-Methods"]
    status, headers, _body = await request(
        "OPTIONS", server.url + "/offer", headers={**preflight, "Origin": "https://evil.example"}
    )
    assert status == 403 and "Access-Control-Allow-Origin" not in headers
    # Real requests: the allowed origin can read even the 401; another origin gets no header.
    status, headers, _body = await request(
        "POST", server.url + "/offer", json_body={}, headers={"Origin": server.url}
    )
    assert status == 401 and headers["Access-Control-Allow-Origin"] == server.url
    status, headers, _body = await request(
        "GET",
        server.url + "/web/config",
        headers={"Origin": "https://evil.example", "Authorization": "Bearer s3cret"},
    )
    assert status == 200 and "Access-Control-Allow-Origin" not in headers


# --- VP9-only offers ------------------------------------------------------------------------


async def aiortc_offer_with_only(codec: str) -> tuple[RTCPeerConnection, str]:
    """A real aiortc offer (audio + video) whose video then names only ``codec``."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("audio")
    pc.addTransceiver("video")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    sdp = re.sub(r"a=rtpmap:(\d+) (VP8|H264)/90000", rf"a=rtpmap:\1 {codec}/90000", sdp)
    return pc, sdp


async def test_a_vp9_only_offer_gets_its_video_rejected_and_its_audio_answered(
    start_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    server = await start_server()
    pc, sdp = await aiortc_offer_with_only("VP9")
    try:
        status, _headers, answer = await request(
            "POST", server.url + "/offer", json_body={"type": "offer", "sdp": sdp}
        )
    finally:
        await pc.close()
    assert status == 200, answer
    media = [line for line in answer["sdp"].splitlines() if line.startswith("m=")]
    assert media[0].startswith("m=audio ") and not media[0].startswith("m=audio 0 ")
    assert media[1].startswith("m=video 0 ")
    assert "a=mid:1" in answer["sdp"] and "a=group:BUNDLE 0\r\n" in answer["sdp"]
    assert "rejecting the video offered only VP9" in caplog.text
    assert caplog.records[-1].levelname == "WARNING"


async def test_an_offer_with_nothing_the_echo_can_forward_is_a_400_naming_the_codec(
    start_server: ServerFactory,
) -> None:
    server = await start_server()
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = re.sub(
        r"a=rtpmap:(\d+) (VP8|H264)/90000", r"a=rtpmap:\1 AV1/90000", pc.localDescription.sdp
    )
    await pc.close()
    status, _headers, body = await request(
        "POST", server.url + "/offer", json_body={"type": "offer", "sdp": sdp}
    )
    assert status == 400 and "AV1" in body["error"] and "VP8" in body["error"]


def test_split_and_merge_keep_every_section_in_place() -> None:
    offer = (
        "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1 2\r\n"
        "m=video 9 UDP/TLS/RTP/SAVPF 98 99\r\na=mid:0\r\na=rtpmap:98 AV1/90000\r\n"
        "a=rtpmap:99 rtx/90000\r\n"
        "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:1\r\na=rtpmap:111 opus/48000/2\r\n"
        "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:2\r\na=rtpmap:96 VP8/90000\r\n"
    )
    split = split_offer(offer)
    assert [section.offered for section in split.rejected] == [("AV1",)]
    assert "a=group:BUNDLE 1 2\r\n" in split.sdp and "AV1" not in split.sdp
    answer = (
        "v=0\r\ns=-\r\na=group:BUNDLE 1 2\r\n"
        "m=audio 9 X 111\r\na=mid:1\r\nm=video 9 X 96\r\na=mid:2\r\n"
    )
    merged = merge_answer(answer, split.rejected)
    assert [line for line in merged.splitlines() if line.startswith("m=")] == [
        "m=video 0 UDP/TLS/RTP/SAVPF 98",
        "m=audio 9 X 111",
        "m=video 9 X 96",
    ]
    # Nothing to reject: the offer goes to aiortc untouched (static payload types count).
    fine = offer.replace("AV1/90000", "H264/90000").replace("111\r\n", "111 0\r\n", 1)
    assert split_offer(fine).rejected == () and split_offer(fine).sdp == fine
    pcmu_only = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n"
    assert split_offer(pcmu_only).rejected == ()


# --- reports --------------------------------------------------------------------------------


async def test_reports_are_stored_validated_bounded_and_rate_limited(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    limits = InboxLimits(max_reports=2, per_client=3, window_s=600)
    server = await start_server(
        web=WebOptions(
            data_dir=tmp_path / "data", inbox_limits=limits, report_validator=validate_report
        )
    )
    report = page_report()
    codes = []
    for _ in range(3):
        status, _headers, body = await request(
            "POST", server.url + "/reports", json_body={"report": report}
        )
        assert status == 200, body
        assert re.fullmatch(r"[2-9A-HJKMNP-Z]{3}-[2-9A-HJKMNP-Z]{3}", body["code"])
        codes.append(body["code"])
    inbox = ReportInbox(tmp_path / "data")
    assert [stored.code for stored in inbox.entries()] == codes[:0:-1]  # the oldest went
    assert inbox.get(codes[0]) is None and inbox.get(codes[2].replace("-", " ")) is not None
    status, _headers, body = await request(
        "POST", server.url + "/reports", json_body={"report": report}
    )
    assert status == 429
    broken = {**report, "paths": "none"}
    other = await start_server(
        web=WebOptions(data_dir=tmp_path / "other", report_validator=validate_report)
    )
    status, _headers, body = await request(
        "POST", other.url + "/reports", json_body={"report": broken}
    )
    assert status == 400 and "paths" in body["error"]


async def test_a_report_sent_as_redacted_is_stored_without_addresses(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    server = await start_server()
    report = page_report()
    tls = next(path for path in report["paths"] if path["id"] == "turn-tls")
    tls["server"] = "turns:turn.example.org:5349?transport=tcp"
    tls["selected_pair"].update(local_address="203.0.113.7", relay_server="turn.example.org:5349")
    inbox = ReportInbox(tmp_path / "data")
    for redacted in (True, False):
        status, _headers, body = await request(
            "POST", server.url + "/reports", json_body={"report": {**report, "redacted": redacted}}
        )
        assert status == 200, body
        stored = inbox.get(body["code"])
        assert stored is not None
        path = next(p for p in stored.report["paths"] if p["id"] == "turn-tls")
        text = json.dumps(stored.report)
        if redacted:
            assert "203.0.113.7" not in text and "example.org" not in text
            assert path["server"].startswith("turns:host-") and stored.client == ""
            validate_report(stored.report)
        else:
            assert path["selected_pair"]["local_address"] == "203.0.113.7"
            assert stored.client == "127.0.0.1"


def test_the_inbox_refuses_oversized_reports_and_the_limiter_forgets_old_events(
    tmp_path: Path,
) -> None:
    inbox = ReportInbox(tmp_path, InboxLimits(max_report_bytes=100))
    with pytest.raises(ValueError):
        inbox.store({"text": "x" * 200}, "", "2026-01-01T00:00:00.000Z")
    limiter = RateLimiter(per_client=2, window_s=10, max_clients=2)
    assert limiter.allow("a", 0) and limiter.allow("a", 1) and not limiter.allow("a", 2)
    assert limiter.allow("a", 11)
    assert limiter.allow("b", 11) and not limiter.allow("c", 11)  # too many clients tracked
    assert limiter.allow("c", 30)  # idle ones forgotten


def test_callpath_reports_lists_shows_and_exports_files_the_app_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    code = ReportInbox(data).store(page_report(), "", "2026-12-07T12:00:00.000Z")
    assert main(["reports", "--data-dir", str(data), "list"]) == 0
    assert code in capsys.readouterr().out
    assert main(["reports", "--data-dir", str(data), "show", "nope-00"]) == 2
    assert "no report with the code" in capsys.readouterr().err
    out = tmp_path / "exported"
    assert main(["reports", "--data-dir", str(data), "export", "--out", str(out), code]) == 0
    exported = out / f"callpath-report-{code}.json"
    assert capsys.readouterr().out.strip() == str(exported)
    assert load_report(exported) == page_report()


def test_echo_server_options_for_the_page_are_checked(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    base = ["echo-server", "--listen", "127.0.0.1:0"]
    assert main([*base, "--turn", "turn:relay.example.org:3478"]) == 2
    assert "--turn needs --turn-secret-env" in capsys.readouterr().err
    monkeypatch.setenv("PHONE_TURN_SECRET", "x")
    assert main([*base, "--turn", "stun:relay", "--turn-secret-env", "PHONE_TURN_SECRET"]) == 2
    assert "not a turn: or turns: URI" in capsys.readouterr().err
    assert main([*base, "--allow-origin", "https://a.example/path"]) == 2
    assert "is not an origin" in capsys.readouterr().err


async def test_the_echo_server_command_serves_the_page_with_relays_and_keeps_reports(
    tmp_path: Path,
) -> None:
    port = free_port()
    data = tmp_path / "data"
    command = [
        sys.executable, "-m", "callpath.core.cli.main", "echo-server",
        "--listen", f"127.0.0.1:{port}", "--ice-address", "127.0.0.1",
        "--turn", "turns:turn.example.org:5349?transport=tcp",
        "--turn-secret-env", "PHONE_TEST_TURN_SECRET", "--turn-ttl", "300",
        "--allow-origin", "https://support.example.org", "--data-dir", str(data),
    ]  # fmt: skip
    environment = {**os.environ, "PHONE_TEST_TURN_SECRET": "cli-secret", "CALLPATH_LANG": "en"}
    process = subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while http_get_json(url + "/health") is None:
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        _status, _headers, config = await request("GET", url + "/web/config?lang=ru")
        assert [path["id"] for path in config["paths"]] == ["direct", "turn-tls"]
        assert config["reports"] is True and config["language"] == "ru"
        status, headers, _body = await request(
            "OPTIONS",
            url + "/reports",
            headers={
                "Origin": "https://support.example.org",
                "Access-Control-Request-Method": "POST",
            },
        )
        assert status == 204
        assert headers["Access-Control-Allow-Origin"] == "https://support.example.org"
        report = page_report()
        report["paths"][0]["selected_pair"]["local_address"] = "198.51.100.4"
        status, _headers, body = await request(
            "POST", url + "/reports", json_body={"report": report}
        )
        assert status == 200, body
    finally:
        process.terminate()
        output, _errors = process.communicate(timeout=10)
    assert f"Phone test page: {url}/" in output
    stored = ReportInbox(data).get(body["code"])
    assert stored is not None and "198.51.100.4" not in json.dumps(stored.report)
