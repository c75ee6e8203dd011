"""The echo server attacked as a public service (issue 21): slow headers, deep JSON, offers that
never connect, candidates that never answer, private ranges. Real HTTP and UDP on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from callpath.core.model.config import EchoServerLimits
from callpath.core.servers.echo_server import EchoServer, EchoServerConfig
from callpath.core.servers.request_guard import json_depth_exceeds, screen_offer
from tests.conftest import EchoServerStarter
from tests.servers import free_port

ServerFactory = Callable[..., Awaitable[EchoServer]]


@pytest.fixture
def start_server(echo_servers: EchoServerStarter) -> ServerFactory:
    async def start(limits: EchoServerLimits, **changes: object) -> EchoServer:
        config = EchoServerConfig(
            host="127.0.0.1", port=0, ice_addresses=("127.0.0.1",), limits=limits
        )
        return await echo_servers(config, **changes)

    return start


async def offer_without_candidates() -> str:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("audio")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = str(pc.localDescription.sdp)
    await pc.close()
    kept = [line for line in sdp.splitlines() if not line.startswith("a=candidate:")]
    return "\r\n".join(kept) + "\r\n"


async def post(server: EchoServer, body: bytes) -> tuple[int, dict[str, object]]:
    async with (
        aiohttp.ClientSession() as client,
        client.post(
            server.url + "/offer", data=body, headers={"Content-Type": "application/json"}
        ) as response,
    ):
        return response.status, await response.json()


async def test_a_client_dribbling_headers_is_cut_off(start_server: ServerFactory) -> None:
    server = await start_server(EchoServerLimits(header_timeout_s=1.0))
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"POST /offer HTTP/1.1\r\nHost: x\r\n")
    started = time.monotonic()
    closed_after: float | None = None
    for _ in range(40):  # one byte every 0.1 s, for up to 4 s
        await asyncio.sleep(0.1)
        if reader.at_eof() or writer.is_closing():
            closed_after = time.monotonic() - started
            break
        try:
            writer.write(b"X")
            await writer.drain()
        except ConnectionError:
            closed_after = time.monotonic() - started
            break
    if closed_after is None:
        data = await asyncio.wait_for(reader.read(100), 0.5)
        closed_after = time.monotonic() - started if data == b"" else None
    writer.close()
    assert closed_after is not None and closed_after < 3.0, "a slow client kept its connection"
    assert server.guard is not None and server.guard.timed_out == 1


async def test_connections_beyond_the_limit_are_closed(start_server: ServerFactory) -> None:
    server = await start_server(EchoServerLimits(max_connections=2, header_timeout_s=5.0))
    held = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(2)]
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    with contextlib.suppress(ConnectionResetError):  # closed at once: an end or a reset
        assert await asyncio.wait_for(reader.read(10), 2.0) == b""
    assert server.guard is not None and server.guard.refused == 1
    for _, held_writer in held:
        held_writer.close()
    writer.close()


async def test_a_deeply_nested_body_is_a_400_without_a_traceback(
    start_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    server = await start_server(EchoServerLimits(max_request_bytes=128 * 1024))
    caplog.set_level(logging.DEBUG)
    status, body = await post(server, b"[" * 30_000 + b"]" * 30_000)
    assert status == 400 and "nested" in str(body["error"])
    assert "Traceback" not in caplog.text and "RecursionError" not in caplog.text
    assert json_depth_exceeds('{"a": "[[[[[[["}', 3) is False


async def test_a_call_that_never_connects_frees_its_slot(start_server: ServerFactory) -> None:
    server = await start_server(EchoServerLimits(max_calls=1, ice_timeout_s=1.0))
    sdp = await offer_without_candidates()
    body = json.dumps({"type": "offer", "sdp": sdp}).encode()
    assert (await post(server, body))[0] == 200
    assert (await post(server, body))[0] == 503  # the one slot is taken
    deadline = time.monotonic() + 5
    while server.calls and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert not server.calls, "the call kept its slot although ICE never connected"
    assert (await post(server, body))[0] == 200


async def test_unanswering_candidates_get_no_more_bytes_than_the_offer(
    start_server: ServerFactory,
) -> None:
    """The issue's reflector: many candidates at addresses that never answer. Every byte the
    server sends them is counted by sockets this test owns."""
    limits = EchoServerLimits(ice_timeout_s=4.0)
    server = await start_server(limits)
    sockets = []
    for _ in range(limits.max_candidates_per_offer):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        sockets.append(sock)
    sdp = await offer_without_candidates()
    lines = sdp.rstrip("\r\n").split("\r\n")
    candidates = [
        f"a=candidate:{index} 1 udp {2130706431 - index} 127.0.0.1 {sock.getsockname()[1]} typ host"
        for index, sock in enumerate(sockets)
    ]
    position = max(i for i, line in enumerate(lines) if line.startswith("a=ice-pwd"))
    lines[position + 1 : position + 1] = candidates
    body = json.dumps({"type": "offer", "sdp": "\r\n".join(lines) + "\r\n"}).encode()
    status, _ = await post(server, body)
    assert status == 200
    received = 0
    deadline = time.monotonic() + limits.ice_timeout_s + 2
    while time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        for sock in sockets:
            while True:
                try:
                    received += len(sock.recv(2048))
                except BlockingIOError:
                    break
    for sock in sockets:
        sock.close()
    print(f"STUN bytes sent {received} for an offer of {len(body)} bytes")
    assert received > 0  # the checks were sent, and counted
    assert received <= len(body), f"{received} bytes sent for a {len(body)}-byte offer"
    assert not server.calls


def test_private_and_named_candidates_are_removed_unless_allowed() -> None:
    head = "v=0\r\na=ice-pwd:x\r\n"
    private = "a=candidate:1 1 udp 1 10.1.2.3 5000 typ host"
    public = "a=candidate:2 1 udp 1 93.184.216.34 5000 typ srflx raddr 10.1.2.3 rport 5000"
    named = "a=candidate:3 1 udp 1 abc.local 5000 typ host"
    limits = EchoServerLimits()
    screened = screen_offer(f"{head}{private}\r\n{public}\r\n{named}\r\n", limits)
    assert screened.problem is None and screened.dropped_candidates == 2
    assert public in screened.sdp and private not in screened.sdp
    # Nothing left: answered all the same (a phone's browser hides its host addresses behind
    # mDNS names; the server learns the caller's address from the caller's own checks).
    emptied = screen_offer(f"{head}{private}\r\n{named}\r\n", limits)
    assert emptied.problem is None and emptied.dropped_candidates == 2
    assert "a=candidate" not in emptied.sdp
    allowed = screen_offer(f"{head}{private}\r\n", EchoServerLimits(allow_private_candidates=True))
    assert allowed.problem is None and private in allowed.sdp
    many = head + "".join(f"{public}\r\n" for _ in range(limits.max_candidates_per_offer + 1))
    assert "at most" in str(screen_offer(many, limits).problem)


async def test_a_public_server_answers_without_the_private_candidates(
    start_server: ServerFactory,
) -> None:
    # ice_addresses None: a deployed server (every interface). The private candidate is removed
    # before the call exists, so the server has nowhere to send a check to.
    server = await start_server(EchoServerLimits(), ice_addresses=None)
    sdp = await offer_without_candidates()
    sdp = sdp.replace("a=ice-pwd", "a=candidate:1 1 udp 1 192.168.1.20 5000 typ host\r\na=ice-pwd")
    status, body = await post(server, json.dumps({"type": "offer", "sdp": sdp}).encode())
    assert status == 200 and body["type"] == "answer"
    (call,) = server.calls.values()
    remote = call._pc.remoteDescription if call._pc is not None else None
    assert remote is not None and "192.168.1.20" not in remote.sdp
    await call.close()
    assert not server.calls


@pytest.mark.slow
async def test_secrets_are_never_logged_even_verbose(tmp_path: Path) -> None:
    """``callpath -v echo-server``: the token and what callers send as tokens stay out of its
    output, through accepted and refused offers, deep bodies and slow clients."""
    token = "tok-" + "7f3a9c" * 4
    wrong = "wrong-" + "c0ffee" * 4
    port = free_port()
    log = tmp_path / "echo.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "callpath.core.cli.main",
                "-v",
                "echo-server",
                "--listen",
                f"127.0.0.1:{port}",
                "--ice-address",
                "127.0.0.1",
                "--token-env",
                "CALLPATH_TEST_TOKEN",
                "--max-calls",
                "2",
            ],
            env={**os.environ, "CALLPATH_TEST_TOKEN": token},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        deadline = time.monotonic() + 30
        async with aiohttp.ClientSession() as client:
            while True:
                try:
                    async with client.get(url + "/health") as reply:
                        if reply.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                assert process.poll() is None and time.monotonic() < deadline
                await asyncio.sleep(0.2)
            pc.addTransceiver("audio")
            await pc.setLocalDescription(await pc.createOffer())
            offer = {"type": "offer", "sdp": pc.localDescription.sdp}
            for secret in (token, wrong):
                headers = {"Authorization": f"Bearer {secret}"}
                async with client.post(url + "/offer", json=offer, headers=headers) as reply:
                    assert reply.status == (200 if secret == token else 401)
                async with client.post(
                    url + "/offer", data=b"[" * 30_000, headers=headers
                ) as reply:
                    assert reply.status in (400, 401)
                async with client.post(
                    url + "/offer", json={"type": "offer", "sdp": f"v=0\r\n{secret}"},
                    headers=headers,
                ) as reply:  # fmt: skip
                    assert reply.status in (400, 401)
    finally:
        await pc.close()
        process.send_signal(signal.SIGINT)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    text = log.read_text(errors="replace")
    assert "Echo server listening" in text
    assert token not in text and wrong not in text
    assert "Traceback" not in text


CALLER = r"""
import asyncio, sys
import aiohttp
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack

async def main(url):
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTrack(AudioStreamTrack())
    await pc.setLocalDescription(await pc.createOffer())
    async with aiohttp.ClientSession() as client:
        offer = {"type": "offer", "sdp": pc.localDescription.sdp}
        async with client.post(url + "/offer", json=offer) as reply:
            answer = await reply.json()
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
    while pc.connectionState != "connected":
        await asyncio.sleep(0.05)
    print("connected", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main(sys.argv[1]))
"""


@pytest.mark.slow
async def test_a_caller_that_vanishes_frees_its_slot(start_server: ServerFactory) -> None:
    """The caller is SIGKILLed mid-call (no hang-up, no DTLS close): the call ends once
    nothing has arrived for ``caller_silence_s``; while media flowed it stayed up."""
    limits = EchoServerLimits(caller_silence_s=2.0)
    server = await start_server(limits)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CALLER, server.url, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        assert line.strip() == b"connected"
        await asyncio.sleep(limits.caller_silence_s + 1.5)
        assert len(server.calls) == 1, "a call with media flowing was closed"
        process.kill()
        killed = time.monotonic()
        while server.calls and time.monotonic() - killed < 15:
            await asyncio.sleep(0.1)
        assert not server.calls, "the vanished caller kept its slot"
        assert time.monotonic() - killed < limits.caller_silence_s + 4
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
