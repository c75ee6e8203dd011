"""The echo server's own MASQUE endpoint carries the masque path of a profile run."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from callpath.core.call.engine import Engine, EngineOptions
from callpath.core.model.results import Grade, RunResult
from callpath.core.profile.document import parse_profile
from callpath.core.run.plan import plan_run
from callpath.core.servers.echo_server import EchoServer, EchoServerConfig, server_ssl_context
from tests.certs import make_server_certificate

pytestmark = [pytest.mark.slow]
NAME = "echo.callpath.test"


@pytest.fixture
async def echo_with_masque(tmp_path: Path) -> AsyncIterator[tuple[EchoServer, Path]]:
    certificate = make_server_certificate(tmp_path / "certs", (NAME,))
    server = EchoServer(
        EchoServerConfig(
            host="127.0.0.1",
            port=0,
            token="t0ken",
            ssl_context=server_ssl_context(str(certificate.cert_path), str(certificate.key_path)),
            ice_addresses=("127.0.0.1",),
            masque_port=0,
            masque_certificate=(str(certificate.cert_path), str(certificate.key_path)),
        )
    )
    await server.start()
    yield server, certificate.ca_path
    await server.stop()


async def run_masque_path(server: EchoServer, ca_path: Path, token_variable: str) -> RunResult:
    """A profile run of the masque path through ``server``'s endpoint, its token from
    ``token_variable`` (the echo itself always gets the right one)."""
    assert server.masque is not None
    _, masque_port = server.masque.address
    profile = parse_profile(
        "version: 1\nname: masque\n"
        f"target: {{kind: echo, url: 'https://127.0.0.1:{server.port}', "
        "token: '${env:CALLPATH_TEST_TOKEN}'}\n"
        f"masque:\n  url: https://127.0.0.1:{masque_port}\n  server_name: {NAME}\n"
        f"  token: ${{env:{token_variable}}}\n"
        f"paths: [masque]\nca_bundle: {ca_path}\n",
        Path("masque.yaml"),
    )
    plan = plan_run(profile, base_options=EngineOptions(host_addresses=("127.0.0.1",)))
    return await Engine(plan.plans, plan.target, lambda event: None, plan.options).run()


async def test_masque_path_through_the_echo_servers_endpoint(
    echo_with_masque: tuple[EchoServer, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CALLPATH_TEST_TOKEN", "t0ken")
    run = await run_masque_path(*echo_with_masque, "CALLPATH_TEST_TOKEN")
    path = run.paths[0]
    assert path.failure is None, path.stages
    assert path.exercised
    assert path.selected_pair is not None and path.selected_pair.relay_transport == "masque"
    assert path.voice.grade == Grade.GOOD


async def test_the_endpoint_refuses_a_wrong_token(
    echo_with_masque: tuple[EchoServer, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CALLPATH_TEST_TOKEN", "t0ken")
    monkeypatch.setenv("CALLPATH_WRONG_TOKEN", "nope")
    run = await run_masque_path(*echo_with_masque, "CALLPATH_WRONG_TOKEN")
    path = run.paths[0]
    assert path.failure == "masque_connect_udp_refused"
    connect = path.stages[-1]
    assert connect.evidence.get("status") == 401
