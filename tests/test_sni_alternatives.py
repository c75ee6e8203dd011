"""A TLS relay tried under other server names (a profile's ``sni_alternatives``): only the
ClientHello's SNI changes, the certificate is still verified against the relay's own name.

Pure logic first, then a real coturn over TLS on loopback (coturn ignores the SNI), with
certificate verification on."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest

from callpath.core.call.engine import Engine, EngineOptions, PathPlan
from callpath.core.call.stages import StageFailure
from callpath.core.call.targets import HttpEchoTarget
from callpath.core.model.results import PathResult, SniAttempt, Stage
from callpath.core.paths.relay import (
    TurnEndpoint,
    certificate_matches,
    connect_stream,
    server_names_to_try,
    tls_server_names,
    try_server_names,
    worth_another_name,
)
from callpath.core.profile.document import ProfileError, parse_profile
from callpath.core.report.document import report_to_dict, validate_report
from callpath.core.servers.echo_server import EchoServer, EchoServerConfig
from tests.servers import CoturnServer

CERT = {
    "subjectAltName": (
        ("DNS", "turn.example.org"),
        ("DNS", "*.relay.example.org"),
        ("IP Address", "192.0.2.7"),
    )
}


@pytest.mark.parametrize(
    ("host", "matches"),
    [
        ("turn.example.org", True),
        ("TURN.Example.org.", True),
        ("a.relay.example.org", True),
        ("relay.example.org", False),  # the wildcard needs a label
        ("a.b.relay.example.org", False),  # and covers exactly one
        ("vk.com", False),
        ("192.0.2.7", True),
        ("192.0.2.8", False),
    ],
)
def test_certificate_names_are_checked_like_rfc_6125(host: str, matches: bool) -> None:
    assert certificate_matches(CERT, host) is matches


def test_a_certificate_without_alternative_names_matches_nothing() -> None:
    assert not certificate_matches({"subject": ((("commonName", "turn.example.org"),),)}, "x")
    assert not certificate_matches(
        {"subject": ((("commonName", "turn.example.org"),),)}, "turn.example.org"
    )


def test_names_are_tried_own_name_first_without_repeats() -> None:
    assert server_names_to_try("turn.example.org", ("vk.com", "TURN.example.org", "vk.com")) == (
        "turn.example.org",
        "vk.com",
    )
    assert tls_server_names("turn.example.org", ("vk.com",), "tls") == (
        "turn.example.org",
        "vk.com",
    )
    assert tls_server_names("turn.example.org", ("vk.com",), "tcp") == ()
    assert tls_server_names("turn.example.org", (), "tls") == ()


def test_only_failures_a_name_can_cause_are_worth_another_name() -> None:
    for failure in ("connection_reset", "generic_timeout_error", "media_stalled", "eof_error"):
        assert worth_another_name(failure)
    for failure in (None, "ssl_invalid_hostname", "ssl_unknown_authority", "turn_auth_failed"):
        assert not worth_another_name(failure)


def _result(failure: str | None) -> PathResult:
    return PathResult("turn-tls", failure is None, failure, (), "turns:x")


async def test_names_are_tried_until_one_carries_the_call() -> None:
    outcomes = {"own.example": "media_stalled", "vk.com": "connection_reset", "ya.ru": None}
    tried: list[str] = []

    async def attempt(name: str) -> PathResult:
        tried.append(name)
        return _result(outcomes[name])

    result = await try_server_names(("own.example", "vk.com", "ya.ru", "unused.ru"), attempt)
    assert tried == ["own.example", "vk.com", "ya.ru"]
    assert result.failure is None and result.server_name == "ya.ru"
    assert result.sni_attempts == (
        SniAttempt("own.example", "media_stalled"),
        SniAttempt("vk.com", "connection_reset"),
        SniAttempt("ya.ru", None),
    )


async def test_a_failure_no_name_can_change_stops_the_tries() -> None:
    async def attempt(name: str) -> PathResult:
        return _result("turn_auth_failed")

    result = await try_server_names(("own.example", "vk.com"), attempt)
    assert result.sni_attempts == (SniAttempt("own.example", "turn_auth_failed"),)


PROFILE = """
version: 1
name: t
target: {{kind: echo, url: "https://echo.example.org/"}}
ice_servers:
  - urls: [{urls}]
    username: u
    credential: ${{env:CALLPATH_TEST_SECRET}}
    sni_alternatives: {names}
"""


def test_the_profile_reads_sni_alternatives() -> None:
    profile = parse_profile(
        PROFILE.format(urls="'turns:turn.example.org:443'", names="[VK.com, ya.ru.]")
    )
    assert profile.ice_servers[0].sni_alternatives == ("vk.com", "ya.ru")


@pytest.mark.parametrize(
    ("urls", "names", "fragment"),
    [
        ("'turn:turn.example.org:3478'", "[vk.com]", "only used by turns:"),
        ("'turns:turn.example.org:443'", "[192.0.2.1]", "is not a server name"),
        ("'turns:turn.example.org:443'", "['vk.com:443']", "is not a server name"),
        ("'turns:turn.example.org:443'", "[vk.com, vk.com]", "listed twice"),
        ("'turns:turn.example.org:443'", "[]", "expected a list of server names"),
    ],
)
def test_bad_sni_alternatives_name_the_line(urls: str, names: str, fragment: str) -> None:
    with pytest.raises(ProfileError) as caught:
        parse_profile(PROFILE.format(urls=urls, names=names), Path("p.yaml"))
    assert fragment in caught.value.message
    assert caught.value.line == 9  # the sni_alternatives line


# --- a real coturn over TLS, verification on ------------------------------------------------


def _endpoint(coturn: CoturnServer, host: str, sni: str | None) -> TurnEndpoint:
    return TurnEndpoint(
        host=host,
        address=coturn.host,
        port=coturn.tls_port,
        transport="tls",
        username=coturn.username,
        password=coturn.password,
        sni=sni,
    )


@pytest.mark.servers
async def test_coturn_answers_under_another_sni_with_the_certificate_still_checked(
    coturn: CoturnServer,
) -> None:
    evidence: dict[str, object] = {}
    transport, _protocol = await connect_stream(
        _endpoint(coturn, coturn.tls_host, "vk.com"), coturn.ssl_context(), 5.0, evidence
    )
    try:
        assert evidence["sni"] == "vk.com"
        ssl_object = transport.get_extra_info("ssl_object")
        assert ssl_object is not None
        assert ssl_object.server_hostname == "vk.com"  # what the ClientHello carried
        assert certificate_matches(ssl_object.getpeercert(), coturn.tls_host)
    finally:
        transport.close()


@pytest.mark.servers
async def test_another_sni_never_accepts_a_certificate_for_another_name(
    coturn: CoturnServer,
) -> None:
    # The relay's certificate is not valid for this name: refused after the handshake.
    evidence: dict[str, object] = {}
    with pytest.raises(StageFailure) as caught:
        await connect_stream(
            _endpoint(coturn, "turn.example.org", "vk.com"), coturn.ssl_context(), 5.0, evidence
        )
    assert caught.value.failure == "ssl_invalid_hostname"
    # Nor a certificate from a CA nobody trusts: the chain is still verified in the handshake.
    with pytest.raises(ssl.SSLCertVerificationError):
        await connect_stream(_endpoint(coturn, coturn.tls_host, "vk.com"), None, 5.0, {})


@pytest.mark.servers
@pytest.mark.slow
async def test_a_call_through_coturn_under_an_alternative_sni_is_reported(
    coturn: CoturnServer,
) -> None:
    server = EchoServer(EchoServerConfig(host="127.0.0.1", port=0, ice_addresses=("127.0.0.1",)))
    await server.start()
    try:
        plan = PathPlan(
            "turn-tls",
            coturn.turn_tls_uri,
            coturn.tls_host,
            coturn.tls_port,
            coturn.username,
            coturn.password,
            sni="vk.com",
        )
        options = EngineOptions(host_addresses=("127.0.0.1",), ssl_context=coturn.ssl_context())
        run = await Engine([plan], HttpEchoTarget(server.url), lambda e: None, options).run()
    finally:
        await asyncio.wait_for(server.stop(), 10)
    path = run.paths[0]
    assert path.failure is None, path.stages
    connect = path.stage(Stage.CONNECT)
    assert connect is not None and connect.evidence["sni"] == "vk.com"
    validate_report(report_to_dict(run))


def test_the_console_says_which_server_name_carried_the_call() -> None:
    import io
    from types import SimpleNamespace

    from rich.console import Console

    from callpath.core.cli.console import print_server_names
    from callpath.core.i18n import set_language

    set_language("en")
    carried = PathResult(
        "turn-tls",
        True,
        None,
        (),
        "turns:x",
        sni_attempts=(SniAttempt("own.example", "media_stalled"), SniAttempt("vk.com", None)),
    )
    failed = PathResult(
        "socks5-turn",
        False,
        "connection_reset",
        (),
        "socks5://x",
        sni_attempts=(SniAttempt("own.example", "connection_reset"),),
    )
    stream = io.StringIO()
    run = SimpleNamespace(paths=(carried, failed, _result(None)))
    print_server_names(run, Console(file=stream, width=200))  # type: ignore[arg-type]
    text = stream.getvalue()
    assert "the call went through under the server name vk.com" in text
    assert "own.example (media_stalled), vk.com (works)" in text
    assert "no server name carried the call" in text


class _FixedResolver:
    """Every name resolves to the censor's forwarder in front of the relay."""

    def __init__(self, address: str) -> None:
        self._address = address

    async def resolve(self, host: str) -> list[str]:
        return [self._address]


@pytest.mark.servers
@pytest.mark.slow
async def test_coturn_behind_an_sni_reset_carries_the_call_under_an_alternative_name(
    coturn: CoturnServer,
) -> None:
    from callpath.core.lab.middlebox import Middlebox
    from callpath.core.lab.rules import BlockMode, BlockTlsSni, Censor

    censor = Censor([BlockTlsSni(frozenset({coturn.tls_host}), mode=BlockMode.RESET)])
    server = EchoServer(EchoServerConfig(host="127.0.0.1", port=0, ice_addresses=("127.0.0.1",)))
    await server.start()
    try:
        async with Middlebox(censor, host="127.0.0.3") as box:
            host, port = await box.expose_tcp((coturn.host, coturn.tls_port))
            plan = PathPlan(
                "turn-tls",
                coturn.turn_tls_uri,
                coturn.tls_host,
                port,
                coturn.username,
                coturn.password,
                sni_alternatives=("vk.com",),
            )
            options = EngineOptions(
                host_addresses=("127.0.0.1",),
                ssl_context=coturn.ssl_context(),
                resolver=_FixedResolver(host),
            )
            run = await Engine([plan], HttpEchoTarget(server.url), lambda e: None, options).run()
    finally:
        await asyncio.wait_for(server.stop(), 10)
    path = run.paths[0]
    assert path.sni_attempts[0] == SniAttempt(coturn.tls_host, "connection_reset")
    assert path.sni_attempts[1:] == (SniAttempt("vk.com", None),), path.stages
    assert path.failure is None and path.exercised
    assert censor.count("block_tls_sni") >= 1  # the censor really reset the relay's own name
