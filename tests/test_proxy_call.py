"""End to end: real aiortc calls whose media crosses real proxies, and TURN through proxies.

(a) socks5-udp: the caller's relay candidate is a SOCKS5 UDP association (Dante, ss-local),
handed to aiortc as a ``PreparedTunnel``; an in-process echo peer answers on 127.0.0.1 and the
test proves, from the echo side's selected pair, that the call's UDP came from the proxy.
(b) socks5-turn / http-turn: a TURN allocation at coturn over TCP (and TLS) reached through
Dante's SOCKS5 CONNECT and tinyproxy's HTTP CONNECT.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from callpath.core.call.echo_peer import EchoCall
from callpath.core.call.library_adapter import PreparedTunnel, selected_pair, use_prepared_turn
from callpath.core.call.media import SpeechLikeAudioTrack
from callpath.core.model.proxy_url import parse_proxy_url
from callpath.core.paths.proxy_stream import proxy_stream_opener
from callpath.core.paths.relay import TurnEndpoint, allocate, connect_stream
from callpath.core.paths.socks5 import Socks5UdpTunnel, open_socks5_udp
from tests.proxy_servers import (
    TinyproxyServer,
    run_tinyproxy,
)
from tests.servers import TLS_HOST, CoturnServer, ServerProcess

pytestmark = [pytest.mark.servers, pytest.mark.slow]

TIMEOUT_S = 5.0
CALL_TIMEOUT_S = 15.0
AUDIO_FRAMES_WANTED = 25  # half a second of echoed 20 ms Opus frames
# aiortc asks for a relay candidate only when a TURN server is configured; this one is never
# contacted because the prepared tunnel takes its place.
PLACEHOLDER_TURN = RTCIceServer(
    urls="turn:127.0.0.1:9?transport=udp", username="unused", credential="unused"
)


@pytest.fixture(scope="module")
def tinyproxy(
    tmp_path_factory: pytest.TempPathFactory, coturn: CoturnServer
) -> Iterator[TinyproxyServer]:
    with run_tinyproxy(
        tmp_path_factory.mktemp("tinyproxy"), connect_ports=[coturn.port, coturn.tls_port]
    ) as server:
        yield server


async def _count_frames(
    track: MediaStreamTrack, received: list[int], enough: asyncio.Event
) -> None:
    with contextlib.suppress(MediaStreamError):
        while True:
            await track.recv()
            received[0] += 1
            if received[0] >= AUDIO_FRAMES_WANTED:
                enough.set()


async def _call_through(tunnel: Socks5UdpTunnel) -> dict[str, Any]:
    """Place an audio call whose only candidate is ``tunnel``; return what each side saw."""
    prepared = PreparedTunnel(tunnel, tunnel.tunnel_name)
    configuration = RTCConfiguration(
        iceServers=[PLACEHOLDER_TURN],
        iceTransportPolicy=RTCIceTransportPolicy.RELAY,
        bundlePolicy=RTCBundlePolicy.MAX_BUNDLE,
    )
    echo = EchoCall(
        RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE),
        ice_addresses=("127.0.0.1",),
    )
    with use_prepared_turn(prepared):
        pc = RTCPeerConnection(configuration)
    received = [0]
    enough = asyncio.Event()
    consumers: list[asyncio.Task[None]] = []

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        consumers.append(asyncio.create_task(_count_frames(track, received, enough)))

    pc.addTrack(SpeechLikeAudioTrack())
    try:
        with use_prepared_turn(prepared):
            await asyncio.wait_for(pc.setLocalDescription(await pc.createOffer()), TIMEOUT_S)
        offer = pc.localDescription.sdp
        answer = await asyncio.wait_for(echo.answer(offer), TIMEOUT_S)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        await asyncio.wait_for(enough.wait(), CALL_TIMEOUT_S)
        return {
            "offer": offer,
            "caller_pair": selected_pair(pc),
            "echo_pair": selected_pair(echo._pc),  # type: ignore[arg-type]
            "frames": received[0],
            "connection_state": pc.connectionState,
        }
    finally:
        for task in consumers:
            task.cancel()
        await asyncio.gather(*consumers, return_exceptions=True)
        await asyncio.wait_for(pc.close(), TIMEOUT_S)
        await echo.close()
        prepared.close()


@pytest.mark.parametrize("proxy_name", ["dante", "shadowsocks"])
async def test_call_media_through_socks5_udp_associate(
    proxy_name: str, request: pytest.FixtureRequest, coturn: CoturnServer
) -> None:
    proxy = request.getfixturevalue(proxy_name)
    url = parse_proxy_url(proxy.url)
    # coturn only answers the STUN Binding that tells the tunnel the address peers see.
    tunnel = await open_socks5_udp(url, None, TIMEOUT_S, stun_server=(coturn.host, coturn.port))
    external = tunnel.get_extra_info("sockname")
    seen = await _call_through(tunnel)

    assert seen["connection_state"] == "connected"
    assert seen["frames"] >= AUDIO_FRAMES_WANTED
    assert f"{external[0]} {external[1]} typ relay" in seen["offer"]
    caller = seen["caller_pair"]
    assert caller is not None
    assert (caller.local_type, caller.local_address, caller.local_port) == ("relay", *external)
    assert caller.relay_transport == "socks5-udp"
    assert caller.relay_server == f"{url.host}:{url.port}"
    # The echo peer's nominated pair has the proxy's relay socket as the remote end: the media
    # reached it from the proxy, not from the caller's own sockets.
    echo = seen["echo_pair"]
    assert echo is not None
    assert (echo.remote_address, echo.remote_port) == external
    assert echo.local_type == "host"
    assert tunnel.is_closing()


async def _turn_allocation_through(
    opener_url: str, password: str | None, coturn: CoturnServer, transport: str
) -> dict[str, Any]:
    port = coturn.tls_port if transport == "tls" else coturn.port
    endpoint = TurnEndpoint(
        host=TLS_HOST if transport == "tls" else coturn.host,
        address=coturn.host,
        port=port,
        transport=transport,
        username=coturn.username,
        password=coturn.password,
    )
    evidence: dict[str, Any] = {}
    opener = proxy_stream_opener(parse_proxy_url(opener_url), password)
    stream, protocol = await asyncio.wait_for(
        connect_stream(endpoint, coturn.ssl_context(), TIMEOUT_S, evidence, opener), TIMEOUT_S
    )
    try:
        prepared = await asyncio.wait_for(allocate(endpoint, stream, protocol, evidence), TIMEOUT_S)
        evidence["relayed"] = prepared.relayed_address
        evidence["transport_name"] = prepared.transport_name
    finally:
        stream.close()
    return evidence


@pytest.mark.parametrize("transport", ["tcp", "tls"])
@pytest.mark.parametrize("proxy_name", ["dante", "tinyproxy"])
async def test_turn_allocation_through_a_connect_proxy(
    proxy_name: str, transport: str, request: pytest.FixtureRequest, coturn: CoturnServer
) -> None:
    proxy = request.getfixturevalue(proxy_name)
    evidence = await _turn_allocation_through(proxy.url, None, coturn, transport)
    host, port = evidence["relayed"]
    assert host == coturn.relay_ip
    assert coturn.relay_ports[0] <= port <= coturn.relay_ports[1]
    assert evidence["transport_name"] == transport
    assert evidence["mapped_address"] == "127.0.0.1"  # coturn saw the proxy's connection
    if transport == "tls":
        assert evidence["sni"] == TLS_HOST
        assert evidence["tls_version"].startswith("TLS")
    # The proxy's own log shows it opened the connection to coturn.
    port = coturn.tls_port if transport == "tls" else coturn.port
    mention = f"127.0.0.1.{port}" if proxy_name == "dante" else f"CONNECT 127.0.0.1:{port}"
    assert await _log_mentions(proxy.process, mention), proxy.process.logs()


async def _log_mentions(process: ServerProcess, text: str) -> bool:
    """Whether one of the server's logs contains ``text`` (logs are written a little late)."""
    for _ in range(40):
        for path in process.log_files:
            with contextlib.suppress(OSError):
                if text in path.read_text(errors="replace"):
                    return True
        await asyncio.sleep(0.05)
    return False
