"""End to end: an aiortc call whose only candidate is a MASQUE tunnel reaches the echo peer.

The caller is relay-only; its relay candidate is a ``PreparedTunnel`` around a
``MasqueUdpTunnel`` (the dummy TURN URL only makes aiortc ask for a relay candidate). The echo
peer answers on 127.0.0.1 without any relay, so media must cross CONNECT-UDP both ways.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcconfiguration import RTCBundlePolicy, RTCIceTransportPolicy

from callpath.core.call.echo_peer import EchoCall
from callpath.core.call.library_adapter import PreparedTunnel, selected_pair, use_prepared_turn
from callpath.core.call.media import SpeechLikeAudioTrack
from callpath.core.paths.masque.client import open_masque_udp
from callpath.core.servers.masque_endpoint import (
    AllowedTargets,
    MasqueEndpoint,
    MasqueEndpointConfig,
)
from tests.certs import make_server_certificate

NAME = "masque.test"
TOKEN = "call-token"
CALL_TIMEOUT = 30.0


async def test_aiortc_call_through_masque_reaches_the_echo_peer(tmp_path: Path) -> None:
    certificate = make_server_certificate(tmp_path / "certs", (NAME,))
    endpoint = MasqueEndpoint(
        MasqueEndpointConfig(
            allowed_targets=AllowedTargets.parse(["127.0.0.1:1024-65535"]), tokens=(TOKEN,)
        )
    )
    host, port = await endpoint.start("127.0.0.1", 0, certificate.cert_path, certificate.key_path)
    # The echo peer's ICE port is only known from its answer: the first request goes to an
    # allowed placeholder on the same host, and the tunnel opens the real one on demand.
    placeholder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    placeholder.bind(("127.0.0.1", 0))
    echo: EchoCall | None = None
    pc: RTCPeerConnection | None = None
    try:
        tunnel = await open_masque_udp(
            host,
            port,
            placeholder.getsockname(),
            server_name=NAME,
            token=TOKEN,
            cafile=certificate.ca_path,
        )
        prepared = PreparedTunnel(tunnel=tunnel, transport_name="masque")
        configuration = RTCConfiguration(
            iceServers=[
                RTCIceServer(
                    urls="turn:127.0.0.1:9?transport=udp", username="unused", credential="unused"
                )
            ],
            iceTransportPolicy=RTCIceTransportPolicy.RELAY,
            bundlePolicy=RTCBundlePolicy.MAX_BUNDLE,
        )
        loop = asyncio.get_running_loop()
        echoed: asyncio.Future[MediaStreamTrack] = loop.create_future()
        with use_prepared_turn(prepared):
            pc = RTCPeerConnection(configuration)

            @pc.on("track")
            def on_track(track: MediaStreamTrack) -> None:
                if not echoed.done():
                    echoed.set_result(track)

            pc.addTrack(SpeechLikeAudioTrack())
            await asyncio.wait_for(pc.setLocalDescription(await pc.createOffer()), CALL_TIMEOUT)
        assert prepared.used
        offer = pc.localDescription.sdp
        candidates = [line for line in offer.splitlines() if line.startswith("a=candidate")]
        assert candidates and all(" typ relay" in line for line in candidates)
        relay_address = tunnel.get_extra_info("sockname")
        assert any(f" {relay_address[0]} {relay_address[1]} typ relay" in c for c in candidates)

        echo = EchoCall(RTCConfiguration(iceServers=[]), ice_addresses=("127.0.0.1",))
        answer = await asyncio.wait_for(echo.answer(offer), CALL_TIMEOUT)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))

        track = await asyncio.wait_for(echoed, CALL_TIMEOUT)
        frame = await asyncio.wait_for(track.recv(), CALL_TIMEOUT)  # media came back
        assert frame is not None
        assert pc.connectionState == "connected"
        pair = selected_pair(pc)
        assert pair is not None
        assert pair.local_type == "relay"
        assert pair.relay_transport == "masque"
        assert pair.relay_server == f"{host}:{port}"
        assert (pair.local_address, pair.local_port) == relay_address
        assert endpoint.active_tunnels == 2  # the placeholder and the echo peer's ICE port
        await asyncio.wait_for(pc.close(), 10)
        assert tunnel.is_closing()  # aioice closed its relay, and so the QUIC connection
    finally:
        if pc is not None:
            await asyncio.wait_for(pc.close(), 10)
        if echo is not None:
            await echo.close()
        await endpoint.close()
        placeholder.close()
