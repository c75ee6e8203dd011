"""``callpath echo-server``'s limits and protocol, over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from callpath.core.call import datagram_batch, library_adapter
from callpath.core.call.echo_peer import AMPLIFICATION_ALLOWANCE_BYTES, _ByteBudget
from callpath.core.call.media import SpeechLikeAudioTrack, TestPatternVideoTrack
from callpath.core.model.config import EchoServerLimits
from callpath.core.servers.echo_server import EchoServer, EchoServerConfig
from tests.conftest import EchoServerStarter

ServerFactory = Callable[..., Awaitable[EchoServer]]


@pytest.fixture
def start_server(echo_servers: EchoServerStarter) -> ServerFactory:
    async def start(**changes: object) -> EchoServer:
        config = EchoServerConfig(host="127.0.0.1", port=0, ice_addresses=("127.0.0.1",))
        return await echo_servers(config, **changes)

    return start


async def make_offer() -> tuple[RTCPeerConnection, str]:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("audio")
    await pc.setLocalDescription(await pc.createOffer())
    return pc, pc.localDescription.sdp


async def post_offer(
    server: EchoServer, sdp: str, token: str | None = None
) -> tuple[int, dict[str, object]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as client,
        client.post(
            server.url + "/offer", json={"type": "offer", "sdp": sdp}, headers=headers
        ) as response,
    ):
        return response.status, await response.json()


async def test_token_is_required_except_for_health(start_server: ServerFactory) -> None:
    server = await start_server(token="s3cret")
    pc, sdp = await make_offer()
    try:
        assert (await post_offer(server, sdp))[0] == 401
        assert (await post_offer(server, sdp, token="wrong"))[0] == 401
        status, body = await post_offer(server, sdp, token="s3cret")
        assert status == 200
        assert body["type"] == "answer" and "a=candidate" in str(body["sdp"])
        async with aiohttp.ClientSession() as client, client.get(server.url + "/health") as r:
            health = await r.json()
        assert r.status == 200 and health["calls"] == 1
        assert health["native_loop"] is (library_adapter.NATIVE_LOOP is not None)
    finally:
        await pc.close()


async def test_concurrent_call_limit_and_hangup(start_server: ServerFactory) -> None:
    server = await start_server(limits=EchoServerLimits(max_calls=1))
    first, sdp1 = await make_offer()
    second, sdp2 = await make_offer()
    try:
        status, body = await post_offer(server, sdp1)
        assert status == 200
        status, refused = await post_offer(server, sdp2)
        assert status == 503 and refused["error"] == "busy"
        async with (
            aiohttp.ClientSession() as client,
            client.delete(f"{server.url}/calls/{body['call_id']}") as response,
        ):
            assert response.status == 200
        assert not server.calls
        assert (await post_offer(server, sdp2))[0] == 200
    finally:
        await first.close()
        await second.close()


async def test_calls_end_when_their_time_is_up(start_server: ServerFactory) -> None:
    server = await start_server(limits=EchoServerLimits(max_call_s=0.3))
    pc, sdp = await make_offer()
    try:
        assert (await post_offer(server, sdp))[0] == 200
        assert len(server.calls) == 1
        for _ in range(40):
            if not server.calls:
                break
            await asyncio.sleep(0.1)
        assert not server.calls
    finally:
        await pc.close()


async def test_bad_requests_are_refused_and_leave_nothing_behind(
    start_server: ServerFactory,
) -> None:
    server = await start_server(limits=EchoServerLimits(max_request_bytes=4096))
    async with aiohttp.ClientSession() as client:
        async with client.post(server.url + "/offer", data=b"x" * 10_000) as response:
            assert response.status == 413
        async with client.post(server.url + "/offer", data=b"not json") as response:
            assert response.status == 400
        async with client.post(server.url + "/offer", json={"type": "answer"}) as response:
            assert response.status == 400
        async with client.post(
            server.url + "/offer", json={"type": "offer", "sdp": "v=0\r\nnonsense"}
        ) as response:
            assert response.status == 400
        async with client.delete(server.url + "/calls/unknown") as response:
            assert response.status == 404
    assert not server.calls


def test_echo_never_sends_much_more_than_it_receives() -> None:
    budget = _ByteBudget()
    budget.update(sent=100_000, received=100_000)
    assert not budget.exceeded
    budget.update(sent=int(100_000 * 1.25) + AMPLIFICATION_ALLOWANCE_BYTES + 1, received=100_000)
    assert budget.exceeded
    budget.update(sent=10_000, received=100_000)
    assert not budget.exceeded


async def test_a_real_call_is_echoed_on_the_fast_path_and_hung_up(
    start_server: ServerFactory,
) -> None:
    """Voice and video sent to the server come back as whole frames while the server reads the
    call's media socket itself (batched); hanging up closes it and frees the slot."""
    server = await start_server()
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    frames = {"audio": 0, "video": 0}
    tracks: list[MediaStreamTrack] = []
    counters: list[asyncio.Task[None]] = []

    async def count(track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                await track.recv()
                frames[track.kind] += 1

    async def until(condition: Callable[[], bool]) -> None:
        for _ in range(400):
            if condition():
                return
            await asyncio.sleep(0.05)
        raise AssertionError("timed out")

    try:
        pc.addTrack(SpeechLikeAudioTrack())
        pc.addTrack(TestPatternVideoTrack(160, 120, 15))
        pc.on("track", tracks.append)
        await pc.setLocalDescription(await pc.createOffer())
        status, body = await post_offer(server, pc.localDescription.sdp)
        assert status == 200
        await pc.setRemoteDescription(RTCSessionDescription(sdp=str(body["sdp"]), type="answer"))
        await until(lambda: len(tracks) == 2)
        counters.extend(asyncio.create_task(count(track)) for track in tracks)
        await until(lambda: frames["audio"] >= 50 and frames["video"] >= 15)
        call = server.calls[str(body["call_id"])]
        reads = [stream.socket_reads for stream in call.echoed]
        assert len(reads) == 2 and all(r is not None and r[1] > 0 for r in reads)
        assert reads[0] is not None and reads[0][2] is (datagram_batch.BATCH_CALLS is not None)
        await until(lambda: call.bytes_received > 0 and call.bytes_sent > 0)
        assert call.bytes_sent <= call.bytes_received * 1.25 + AMPLIFICATION_ALLOWANCE_BYTES
        async with (
            aiohttp.ClientSession() as client,
            client.delete(f"{server.url}/calls/{body['call_id']}") as response,
        ):
            assert response.status == 200
        assert not server.calls
    finally:
        for counter in counters:
            counter.cancel()
        await pc.close()
