"""The one module that touches private parts of aiortc and aioice.

aiortc exposes neither the nominated ICE pair nor a way to hand it a TURN allocation that
CallPath made itself (needed to time and name each stage, to verify TLS against a private CA, and
later to tunnel TURN through proxies). Everything that reaches into the libraries' internals is
here, behind small functions, with the versions it was written against pinned in pyproject and
checked by ``check_library_versions`` (a test calls it and fails loudly when they move).

Per-path behaviour is chosen through context variables, so concurrent paths in one event loop
do not see each other's settings: asyncio tasks copy the context of the task that creates them,
and aiortc gathers candidates inside the task that calls ``setLocalDescription``.
"""

from __future__ import annotations

import asyncio
import contextvars
import importlib.metadata
import queue
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import aioice.ice
import aioice.stun
import aioice.turn
import aiortc
from aiortc import RTCPeerConnection

from core.results import SelectedPair

PINNED_VERSIONS = {"aiortc": "1.16.0", "aioice": "0.13.0"}


class LibraryChangedError(RuntimeError):
    """aiortc or aioice no longer looks like the version this adapter was written for."""


def check_library_versions() -> None:
    """Raise LibraryChangedError when an installed library differs from the pinned version, or
    when an internal this module relies on has moved."""
    for name, pinned in PINNED_VERSIONS.items():
        installed = importlib.metadata.version(name)
        if installed != pinned:
            raise LibraryChangedError(
                f"{name} {installed} is installed but core/aiortc_adapter.py was written for "
                f"{pinned}: re-check every private attribute it uses, then update the pin"
            )
    probes: list[tuple[object, str]] = [
        (aioice.ice, "get_host_addresses"),
        (aioice.turn, "create_turn_endpoint"),
        (aioice.turn, "TurnTransport"),
        (aioice.turn, "TurnClientTcpProtocol"),
        (aioice.turn, "TurnClientUdpProtocol"),
        (aioice.ice.Connection, "_nominated"),
        (aioice.ice.Connection, "build_request"),
        (aioice.ice.StunProtocol, "request"),
        (aiortc.RTCRtpReceiver, "_handle_rtp_packet"),
        (aiortc.RTCRtpReceiver, "_send_rtcp_pli"),
        (aiortc.RTCRtpReceiver, "_RTCRtpReceiver__decoder_queue"),
        (aiortc.RTCRtpSender, "_send_keyframe"),
        (aiortc.RTCIceGatherer, "_connection"),
    ]
    for owner, attribute in probes:
        # Instance attributes are assigned in __init__, so they show up in its code object.
        init = getattr(owner, "__init__", None)
        assigned = getattr(getattr(init, "__code__", None), "co_names", ())
        present = hasattr(owner, attribute) or (isinstance(owner, type) and attribute in assigned)
        if not present:
            raise LibraryChangedError(f"{owner!r} has no attribute {attribute!r} any more")
    transport = aioice.turn.TurnTransport.__new__(aioice.turn.TurnTransport)
    if not hasattr(transport, "_connect"):
        raise LibraryChangedError("aioice.turn.TurnTransport._connect is gone")


# --- host candidate addresses -------------------------------------------------------------

_host_addresses: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar(
    "callpath_host_addresses", default=None
)
_original_get_host_addresses = aioice.ice.get_host_addresses


def _get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    override = _host_addresses.get()
    if override is not None:
        return list(override)
    return _original_get_host_addresses(use_ipv4, use_ipv6)


def interface_addresses() -> list[str]:
    """The addresses aioice would gather host candidates on (IPv4 then IPv6, no loopback)."""
    return list(_original_get_host_addresses(True, True))


@contextmanager
def host_addresses(addresses: tuple[str, ...] | None) -> Iterator[None]:
    """Within this context, ICE host candidates are gathered on exactly ``addresses``.

    aioice never offers loopback addresses; the lab and the tests need exactly that, and a
    deployed echo server may want to pin one public address. ``None`` keeps aioice's choice.
    """
    token = _host_addresses.set(addresses)
    try:
        yield
    finally:
        _host_addresses.reset(token)


# --- TURN allocations made by CallPath ----------------------------------------------------


@dataclass
class PreparedTurn:
    """A TURN allocation CallPath created (and timed) itself, to be used by aioice."""

    inner_transport: asyncio.BaseTransport
    inner_protocol: aioice.turn.TurnClientTcpProtocol | aioice.turn.TurnClientUdpProtocol
    relayed_address: tuple[str, int]
    transport_name: str  # udp | tcp | tls
    server: tuple[str, int]
    used: bool = False

    def close(self) -> None:
        if not self.used:
            self.inner_transport.close()


class DatagramTunnel(Protocol):
    """A datagram transport that carries the call's UDP through a proxy or tunnel.

    It plays the part of a TURN allocation for aioice: ``get_extra_info("sockname")`` is the
    address the far side sees (the proxy's UDP relay address), ``sendto`` wraps and sends a
    datagram to a peer through the tunnel, and received datagrams are handed to the protocol
    given to ``set_receiver`` as ``datagram_received(data, peer_address)``. ``tunnel_name``
    names the path (e.g. ``socks5-udp``) and ``get_extra_info("proxy_address")`` gives the
    proxy's (host, port), so the selected pair can prove the call went through the tunnel.
    """

    tunnel_name: str

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None: ...

    def close(self) -> None: ...

    def is_closing(self) -> bool: ...

    def get_extra_info(self, name: str, default: Any = None) -> Any: ...

    def set_receiver(self, protocol: asyncio.DatagramProtocol) -> None: ...


@dataclass
class PreparedTunnel:
    """A tunnel CallPath opened (SOCKS5 UDP ASSOCIATE, MASQUE, ...), used as the relay."""

    tunnel: DatagramTunnel
    transport_name: str  # socks5-udp | masque | ...
    used: bool = False

    def close(self) -> None:
        self.tunnel.close()


PreparedRelay = PreparedTurn | PreparedTunnel

_prepared_turn: contextvars.ContextVar[PreparedRelay | None] = contextvars.ContextVar(
    "callpath_prepared_turn", default=None
)
_original_create_turn_endpoint = aioice.turn.create_turn_endpoint


async def _create_turn_endpoint(
    protocol_factory: Callable[[], Any], *args: Any, **kwargs: Any
) -> tuple[aioice.turn.TurnTransport, Any]:
    prepared = _prepared_turn.get()
    if prepared is not None and prepared.used:
        # One allocation per path: never let aioice open another one behind CallPath's back.
        raise ConnectionError("the prepared TURN allocation is already in use")
    if prepared is None:
        return await _original_create_turn_endpoint(protocol_factory, *args, **kwargs)
    prepared.used = True
    if isinstance(prepared, PreparedTunnel):
        tunnel_protocol = protocol_factory()
        prepared.tunnel.set_receiver(tunnel_protocol)
        tunnel_protocol.connection_made(prepared.tunnel)
        return prepared.tunnel, tunnel_protocol  # type: ignore[return-value]
    # Same steps as TurnTransport._connect, minus the allocation CallPath already made.
    protocol = protocol_factory()
    turn_transport = aioice.turn.TurnTransport(prepared.inner_protocol)
    turn_transport._TurnTransport__relayed_address = prepared.relayed_address  # type: ignore[attr-defined]
    prepared.inner_protocol.receiver = protocol
    protocol.connection_made(turn_transport)
    return turn_transport, protocol


@contextmanager
def use_prepared_turn(prepared: PreparedRelay | None) -> Iterator[None]:
    """Within this context, aiortc's relay candidate uses ``prepared`` instead of allocating."""
    token = _prepared_turn.set(prepared)
    try:
        yield
    finally:
        _prepared_turn.reset(token)


def turn_client_protocol(
    transport_name: str,
    server: tuple[str, int],
    username: str,
    password: str,
    lifetime: int = 600,
) -> aioice.turn.TurnClientTcpProtocol | aioice.turn.TurnClientUdpProtocol:
    """aioice's TURN client protocol for a stream (tcp/tls) or datagram (udp) transport."""
    factory = (
        aioice.turn.TurnClientUdpProtocol
        if transport_name == "udp"
        else aioice.turn.TurnClientTcpProtocol
    )
    return factory(
        server,
        username=username,
        password=password,
        lifetime=lifetime,
        channel_refresh_time=aioice.turn.DEFAULT_CHANNEL_REFRESH_TIME,
    )


def watch_stream_closed(protocol: Any) -> None:
    """Remember when a TURN-over-TCP protocol's connection closes, and with which error.

    aioice only forwards ``connection_lost`` to its receiver, which exists after the Allocate,
    so a reset during the Allocate would otherwise go unnoticed until a timeout.
    """
    closed: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()
    original = protocol.connection_lost

    def connection_lost(error: BaseException | None) -> None:
        if not closed.done():
            closed.set_result(error)
        original(error)

    protocol.connection_lost = connection_lost
    protocol.callpath_closed = closed


def stream_closed(protocol: Any) -> asyncio.Future[BaseException | None] | None:
    """The future ``watch_stream_closed`` attached to ``protocol``, if any."""
    closed: asyncio.Future[BaseException | None] | None = getattr(protocol, "callpath_closed", None)
    return closed


def install() -> None:
    """Route aioice's host-address and TURN-endpoint look-ups through this module (idempotent)."""
    aioice.ice.get_host_addresses = _get_host_addresses
    aioice.turn.create_turn_endpoint = _create_turn_endpoint


# --- the selected candidate pair ----------------------------------------------------------


def _ice_connection(pc: RTCPeerConnection) -> aioice.ice.Connection | None:
    for transceiver in pc.getTransceivers():
        dtls = transceiver.sender.transport
        if dtls is not None:
            connection: aioice.ice.Connection = dtls.transport.iceGatherer._connection
            return connection
    sctp = pc.sctp
    if sctp is not None:
        sctp_connection: aioice.ice.Connection = sctp.transport.transport.iceGatherer._connection
        return sctp_connection
    return None


def _relay_transport_name(protocol: Any) -> tuple[str | None, str | None]:
    transport = getattr(protocol, "transport", None)
    tunnel_name = getattr(transport, "tunnel_name", None)
    if isinstance(tunnel_name, str) and transport is not None:
        server = transport.get_extra_info("proxy_address")
        return tunnel_name, None if server is None else f"{server[0]}:{server[1]}"
    if not isinstance(transport, aioice.turn.TurnTransport):
        return None, None
    inner = transport._TurnTransport__inner_protocol  # type: ignore[attr-defined]
    server = f"{inner.server[0]}:{inner.server[1]}"
    if isinstance(inner, aioice.turn.TurnClientUdpProtocol):
        return "udp", server
    stream = inner.transport
    if stream is not None and stream.get_extra_info("ssl_object") is not None:
        return "tls", server
    return "tcp", server


def selected_pair(pc: RTCPeerConnection) -> SelectedPair | None:
    """The nominated ICE pair of ``pc``'s (bundled) transport, or None before nomination."""
    connection = _ice_connection(pc)
    if connection is None:
        return None
    nominated = connection._nominated
    pair = nominated.get(1)
    if pair is None:
        return None
    local = pair.protocol.local_candidate
    remote = pair.remote_candidate
    relay_transport, relay_server = (None, None)
    if local.type == "relay":
        relay_transport, relay_server = _relay_transport_name(pair.protocol)
    return SelectedPair(
        local_type=str(local.type),
        local_address=str(local.host),
        local_port=int(local.port),
        remote_type=str(remote.type),
        remote_address=str(remote.host),
        remote_port=int(remote.port),
        relay_transport=relay_transport,
        relay_server=relay_server,
    )


async def ice_round_trip(pc: RTCPeerConnection) -> float | None:
    """One STUN Binding check on ``pc``'s nominated pair, as RFC 7675 consent checks are made
    (same 5-tuple as the media, through any relay or tunnel); its round trip in seconds, or None
    when there is no nominated pair yet or the check got no answer (aioice gives up after
    ``RETRY_RTO``, half a second, with no retransmission)."""
    connection = _ice_connection(pc)
    if connection is None or connection.remote_password is None:
        return None
    pair = connection._nominated.get(1)
    if pair is None:
        return None
    request = connection.build_request(pair, nominate=False)
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        await pair.protocol.request(
            request,
            pair.remote_addr,
            integrity_key=connection.remote_password.encode("utf8"),
            retransmissions=0,
        )
    except (aioice.stun.TransactionError, ConnectionError, OSError):
        return None
    return loop.time() - started


# --- bytes received per RTP stream -------------------------------------------------------

RTP_HEADER_BYTES = 12


class ReceivedBytes:
    """Counts RTP bytes arriving at one receiver (aiortc's inbound-rtp stats have no bytes)."""

    def __init__(self) -> None:
        self.total = 0
        self.packets = 0


def count_received_bytes(receiver: Any) -> ReceivedBytes:
    """Wrap ``receiver._handle_rtp_packet`` to count the bytes of every RTP packet it gets."""
    counter = ReceivedBytes()
    original = receiver._handle_rtp_packet

    async def counting(packet: Any, arrival_time_ms: int) -> None:
        counter.total += RTP_HEADER_BYTES + len(packet.payload)
        counter.packets += 1
        await original(packet, arrival_time_ms=arrival_time_ms)

    receiver._handle_rtp_packet = counting
    return counter


# --- encoded-frame echo ---------------------------------------------------------------------


class _EncodedFrameTap(queue.Queue[Any]):
    """Stands in for a receiver's decoder queue: complete encoded frames go to ``deliver``
    instead of the decoder thread, which only ever sees the final ``None`` that stops it."""

    def __init__(self, deliver: Callable[[bytes, int], None]) -> None:
        super().__init__()
        self._deliver = deliver

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is None:
            super().put(None, block, timeout)
            return
        _codec, frame = item
        self._deliver(bytes(frame.data), int(frame.timestamp))


def tap_encoded_frames(receiver: Any, deliver: Callable[[bytes, int], None]) -> None:
    """Hand ``receiver``'s reassembled encoded frames (data, RTP timestamp from 0) to
    ``deliver`` and skip decoding. Must be called before the receiver starts (e.g. in the
    ``track`` event, which aiortc fires during setRemoteDescription)."""
    receiver._RTCRtpReceiver__decoder_queue = _EncodedFrameTap(deliver)


def forward_keyframe_requests(sender: Any, receiver: Any) -> None:
    """When the far end asks ``sender`` for a keyframe (PLI/FIR), ask the source of
    ``receiver``'s stream instead: an echo that forwards encoded frames cannot make one."""
    original = sender._send_keyframe
    pending: set[asyncio.Future[None]] = set()  # keeps the request tasks alive until done

    def send_keyframe() -> None:
        original()
        for source in receiver.getSynchronizationSources():
            task = asyncio.ensure_future(receiver._send_rtcp_pli(source.source))
            pending.add(task)
            task.add_done_callback(pending.discard)

    sender._send_keyframe = send_keyframe


install()
