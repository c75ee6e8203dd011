"""The one module that touches private parts of aiortc, aioice and aioquic.

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
import asyncio.selector_events
import contextlib
import contextvars
import importlib.metadata
import queue
import socket
import threading
import time
import weakref
from collections.abc import Callable, Coroutine, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol

import aioice.ice
import aioice.stun
import aioice.turn
import aiortc
import pylibsrtp
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3Connection
from aioquic.quic.connection import QuicConnection
from aiortc import RTCPeerConnection
from aiortc.codecs import is_rtx
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtcrtpreceiver import NackGenerator, StreamStatistics
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_RTPFB_NACK,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSrPacket,
    clamp_packets_lost,
    pack_remb_fci,
    unpack_remb_fci,
)

from callpath.core.call.datagram_batch import DatagramBatch, parse_sockaddr, sockaddr_bytes
from callpath.core.call.rtp_forwarding import (
    HISTORY_SIZE,
    RTP_HEADER_BYTES,
    ForwardedStream,
    RtpHeader,
    parse_rtp_header,
    readdress,
    wrap_retransmission,
)
from callpath.core.model.results import SelectedPair
from callpath.core.paths.masque.capsule import SETTING_H3_DATAGRAM

if TYPE_CHECKING:
    from callpath.core.call._rtp_echo import EchoSocket, EchoStream

# asyncio's selector transport (private): the echo's socket reader pauses it and reads its socket.
_SELECTOR_TRANSPORT: type = getattr(asyncio.selector_events, "_SelectorTransport")  # noqa: B009

PINNED_VERSIONS = {"aiortc": "1.16.0", "aioice": "0.13.0", "aioquic": "1.7.2"}


class LibraryChangedError(RuntimeError):
    """aiortc, aioice or aioquic no longer looks like the version this adapter was written for."""


def check_library_versions() -> None:
    """Raise LibraryChangedError when an installed library differs from the pinned version, or
    when an internal this module relies on has moved."""
    for name, pinned in PINNED_VERSIONS.items():
        installed = importlib.metadata.version(name)
        if installed != pinned:
            raise LibraryChangedError(
                f"{name} {installed} is installed but core/call/library_adapter.py was written for "
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
        (aioice.ice.Connection, "data_received"),
        (aioice.ice.StunProtocol, "send_stun"),
        (aioice.ice.StunProtocol, "datagram_received"),
        (aiortc.RTCRtpReceiver, "_handle_rtp_packet"),
        (aiortc.RTCRtpReceiver, "_send_rtcp"),
        (aiortc.RTCRtpReceiver, "_send_rtcp_pli"),
        (aiortc.RTCRtpReceiver, "_send_rtcp_nack"),
        (aiortc.RTCRtpReceiver, "_enabled"),
        (aiortc.RTCRtpReceiver, "_RTCRtpReceiver__codecs"),
        (aiortc.RTCRtpReceiver, "_RTCRtpReceiver__remote_streams"),
        (aiortc.RTCRtpReceiver, "_RTCRtpReceiver__nack_generator"),
        (aiortc.RTCRtpReceiver, "_RTCRtpReceiver__rtcp_ssrc"),
        (aiortc.RTCRtpSender, "_send_keyframe"),
        (aiortc.RTCRtpSender, "_handle_rtcp_packet"),
        (aiortc.RTCRtpSender, "_rtx_ssrc"),
        (aiortc.RTCRtpSender, "_RTCRtpSender__rtx_payload_type"),
        (aiortc.RTCRtpSender, "_RTCRtpSender__rtx_sequence_number"),
        (aiortc.RTCRtpSender, "_RTCRtpSender__packet_count"),
        (aiortc.RTCRtpSender, "_RTCRtpSender__octet_count"),
        (aiortc.RTCRtpSender, "_RTCRtpSender__rtp_timestamp"),
        (aiortc.RTCRtpSender, "_RTCRtpSender__ntp_timestamp"),
        (aiortc.RTCDtlsTransport, "_handle_rtp_data"),
        (aiortc.RTCDtlsTransport, "_send_rtp"),
        (aiortc.RTCDtlsTransport, "_state"),
        (aiortc.RTCDtlsTransport, "_rx_srtp"),
        (aiortc.RTCDtlsTransport, "_tx_srtp"),
        (aiortc.RTCDtlsTransport, "_rtp_header_extensions_map"),
        (aiortc.RTCDtlsTransport, "_RTCDtlsTransport__rx_bytes"),
        (aiortc.RTCDtlsTransport, "_RTCDtlsTransport__rx_packets"),
        (aiortc.RTCDtlsTransport, "_RTCDtlsTransport__tx_bytes"),
        (aiortc.RTCDtlsTransport, "_RTCDtlsTransport__tx_packets"),
        (aiortc.RTCIceGatherer, "_connection"),
        (pylibsrtp.Session, "_srtp"),
        # The echo's socket reader (_SocketReader): asyncio's selector loop and transports.
        (asyncio.selector_events.BaseSelectorEventLoop, "_add_reader"),
        (asyncio.selector_events.BaseSelectorEventLoop, "_remove_reader"),
        (_SELECTOR_TRANSPORT, "_sock"),
        (_SELECTOR_TRANSPORT, "pause_reading"),
        (_SELECTOR_TRANSPORT, "resume_reading"),
        (_SELECTOR_TRANSPORT, "is_reading"),
        (H3Connection, "_get_local_settings"),
        (QuicConnection, "_remote_max_datagram_frame_size"),
        (QuicConnectionProtocol, "_quic"),
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
    if _srtp_functions() is None:
        raise LibraryChangedError(
            f"the installed pylibsrtp's srtp_protect is not libsrtp 2's ({_SRTP_CALL}): "
            "the echo's native loop (core/call/_rtp_echo.c) would call it wrongly"
        )


# --- aioquic: HTTP/3 datagrams for MASQUE ---------------------------------------------------


class H3DatagramConnection(H3Connection):
    """aioquic's HTTP/3 connection, also announcing SETTINGS_H3_DATAGRAM = 1 (RFC 9297 §2.1.1).

    aioquic only sends that setting together with WebTransport, which CONNECT-UDP has no use
    for; its private ``_get_local_settings`` is the one place to add it.
    """

    def _get_local_settings(self) -> dict[int, int]:
        settings = super()._get_local_settings()
        settings[SETTING_H3_DATAGRAM] = 1
        return settings


def remote_max_datagram_frame_size(quic: QuicConnection) -> int | None:
    """The peer's max_datagram_frame_size transport parameter (None: no QUIC datagrams).

    aioquic keeps it private; its own HTTP/3 settings check reads the same attribute."""
    value = getattr(quic, "_remote_max_datagram_frame_size")  # noqa: B009
    return None if value is None else int(value)


def quic_connection(protocol: QuicConnectionProtocol) -> QuicConnection:
    """The QUIC connection an aioquic protocol drives (aioquic keeps it as ``_quic``)."""
    connection: QuicConnection = protocol._quic
    return connection


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
    protocol = factory(
        server,
        username=username,
        password=password,
        lifetime=lifetime,
        channel_refresh_time=CHANNEL_REFRESH_S,
    )
    _watch_lifetimes(protocol)
    return protocol


# aioice rebinds a channel (which also refreshes the peer's permission, RFC 8656 §12) this long
# after binding it; its default (500 s) outlives the 300 s permissions servers grant, so a
# call held longer than five minutes would lose the far end's media.
CHANNEL_REFRESH_S = 240


@dataclass
class TurnLifetimes:
    """When a TURN allocation was made and refreshed (``time.monotonic()``), and for how long
    the server granted it: the evidence that a held call's allocation stayed alive."""

    allocated_at: float | None = None
    lifetime_s: float | None = None
    refreshed_at: list[float] = field(default_factory=list)
    refresh_failed_at: list[float] = field(default_factory=list)
    # ChannelBind successes: each installs or refreshes the peer's permission (RFC 8656 §12).
    channel_bound_at: list[float] = field(default_factory=list)


def _watch_lifetimes(protocol: Any) -> None:
    lifetimes = TurnLifetimes()
    original = protocol.request

    async def request(
        request: aioice.stun.Message, *args: Any, **kwargs: Any
    ) -> tuple[aioice.stun.Message, tuple[str, int]]:
        method = request.message_method
        try:
            response: tuple[aioice.stun.Message, tuple[str, int]] = await original(
                request, *args, **kwargs
            )
        except (ConnectionError, aioice.stun.TransactionError):
            if method == aioice.stun.Method.REFRESH and request.attributes.get("LIFETIME"):
                lifetimes.refresh_failed_at.append(time.monotonic())
            raise
        granted = response[0].attributes.get("LIFETIME")
        if method == aioice.stun.Method.ALLOCATE:
            lifetimes.allocated_at = time.monotonic()
            lifetimes.lifetime_s = granted
        elif method == aioice.stun.Method.CHANNEL_BIND:
            lifetimes.channel_bound_at.append(time.monotonic())
        elif method == aioice.stun.Method.REFRESH and granted:
            lifetimes.refreshed_at.append(time.monotonic())
            lifetimes.lifetime_s = granted
        return response

    protocol.request = request
    protocol.callpath_lifetimes = lifetimes


def turn_lifetimes(prepared: PreparedRelay) -> TurnLifetimes | None:
    """The lifetimes of ``prepared``'s allocation (None: a tunnel, not a TURN allocation)."""
    if not isinstance(prepared, PreparedTurn):
        return None
    lifetimes = getattr(prepared.inner_protocol, "callpath_lifetimes", None)
    return lifetimes if isinstance(lifetimes, TurnLifetimes) else None


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


def watch_datagram_errors(protocol: Any) -> None:
    """Remember the first ICMP error (port or host unreachable) a TURN-over-UDP protocol's
    connected socket reports, as ``watch_stream_closed`` remembers a reset: aioice ignores
    them, so an Allocate to a closed port or an unreachable host would wait for its timeout
    although its failure is already certain."""
    closed: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()
    original = protocol.error_received

    def error_received(error: Exception) -> None:
        if isinstance(error, OSError) and not closed.done():
            closed.set_result(error)
        original(error)

    protocol.error_received = error_received
    protocol.callpath_closed = closed


def stream_closed(protocol: Any) -> asyncio.Future[BaseException | None] | None:
    """The future ``watch_stream_closed`` attached to ``protocol``, if any."""
    closed: asyncio.Future[BaseException | None] | None = getattr(protocol, "callpath_closed", None)
    return closed


def install() -> None:
    """Route aioice's host-address and TURN-endpoint look-ups through this module, and aiortc's
    decoder threads through ``_decoder_worker`` (idempotent)."""
    aioice.ice.get_host_addresses = _get_host_addresses
    aioice.turn.create_turn_endpoint = _create_turn_endpoint
    aiortc.rtcrtpreceiver.decoder_worker = _decoder_worker


# --- frames counted, not decoded ------------------------------------------------------------

_original_decoder_worker = aiortc.rtcrtpreceiver.decoder_worker
# The tracks (their frame queues) whose frames are handed on encoded: see ``skip_decoding``.
_undecoded: weakref.WeakSet[asyncio.Queue[Any]] = weakref.WeakSet()


def skip_decoding(track: Any) -> None:
    """Hand the remote ``track`` every frame the jitter buffer completes, still encoded, instead
    of decoding it: a test call needs to know when whole frames arrive, not their pixels, and
    decoding eight paths' video at once costs a large share of a small machine. Call in the
    ``track`` event (before the receiver starts)."""
    _undecoded.add(track._queue)


def _decoder_worker(
    loop: asyncio.AbstractEventLoop,
    input_q: queue.Queue[Any],
    output_q: asyncio.Queue[Any],
    decode_error: threading.Event,
) -> None:
    if output_q not in _undecoded:
        _original_decoder_worker(loop, input_q, output_q, decode_error)
        return
    while True:
        task = input_q.get()
        if task is None:
            break
        loop.call_soon_threadsafe(output_q.put_nowait, task[1])  # (codec, encoded frame)
    asyncio.run_coroutine_threadsafe(output_q.put(None), loop)  # the track has ended


# --- STUN sending budget (echo server) ----------------------------------------------------


class StunBudget:
    """What an answering peer may send as STUN: at most ``max_requests`` requests (checks and
    their retransmissions), and never more bytes than ``initial_bytes`` (the offer that asked
    for them) plus every byte the caller sent to its ICE sockets: no amplification."""

    def __init__(self, *, max_requests: int, initial_bytes: int) -> None:
        self.max_requests = max_requests
        self.initial_bytes = initial_bytes
        self.sent_bytes = 0
        self.received_bytes = 0
        self.requests = 0
        self.dropped = 0
        # Once ICE has connected, consent checks (one per ~5 s) are answered by the caller and
        # only the byte budget applies.
        self.connected = False

    def allows(self, size: int, *, request: bool) -> bool:
        if request and not self.connected and self.requests >= self.max_requests:
            return False
        return self.sent_bytes + size <= self.initial_bytes + self.received_bytes

    def sent(self, size: int, *, request: bool) -> None:
        self.sent_bytes += size
        self.requests += int(request)


def limit_stun_sending(pc: RTCPeerConnection, budget: StunBudget) -> int:
    """Route every STUN message ``pc``'s ICE sockets send through ``budget`` (messages over it are
    dropped: the checks fail and ICE gives up) and count what arrives on them; how many sockets
    were wrapped."""
    connection = _ice_connection(pc)
    if connection is None:
        return 0
    protocols = list(connection._protocols)
    for protocol in protocols:
        send = protocol.send_stun
        receive = protocol.datagram_received

        def send_stun(
            message: aioice.stun.Message,
            addr: tuple[str, int],
            _send: Callable[[aioice.stun.Message, tuple[str, int]], None] = send,
        ) -> None:
            size = len(bytes(message))
            request = message.message_class == aioice.stun.Class.REQUEST
            if not budget.allows(size, request=request):
                budget.dropped += 1
                return
            budget.sent(size, request=request)
            _send(message, addr)

        def datagram_received(
            data: bytes | str,
            addr: tuple[Any, ...],
            _receive: Callable[[bytes | str, tuple[Any, ...]], None] = receive,
        ) -> None:
            budget.received_bytes += len(data)
            _receive(data, addr)

        protocol.callpath_stun_budget = budget  # type: ignore[attr-defined]
        protocol.send_stun = send_stun  # type: ignore[method-assign]
        protocol.datagram_received = datagram_received  # type: ignore[method-assign]
    return len(protocols)


def ice_connected(pc: RTCPeerConnection) -> bool:
    """True once ``pc``'s ICE has a nominated pair (connected or completed)."""
    return pc.iceConnectionState in ("connected", "completed")


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


@dataclass(frozen=True)
class ReportCounters:
    """The cumulative counters of one receiver report about our stream (RFC 3550 6.4.1):
    packets lost so far, and the highest sequence number received (16 bits, as aiortc fills
    it in)."""

    packets_lost: int
    highest_sequence: int


class ReceiverReports:
    """The latest receiver report the far end sent about one of our senders' streams."""

    def __init__(self) -> None:
        self.latest: ReportCounters | None = None
        self.count = 0


def watch_receiver_reports(sender: Any) -> ReceiverReports:
    """Wrap ``sender._handle_rtcp_packet`` to keep the counters of every report about it."""
    reports = ReceiverReports()
    original = sender._handle_rtcp_packet

    async def watching(packet: Any) -> None:
        if isinstance(packet, RtcpRrPacket | RtcpSrPacket):
            for report in packet.reports:
                if report.ssrc == sender._ssrc:
                    reports.latest = ReportCounters(report.packets_lost, report.highest_sequence)
                    reports.count += 1
        await original(packet)

    sender._handle_rtcp_packet = watching
    return reports


# --- RTP echo -------------------------------------------------------------------------------


_UNKNOWN, _MEDIA, _RETRANSMISSION = 0, 1, 2
# How often the native loop's reader checks its pair and sessions and publishes its counts
# (senders' reports, byte counters): often enough that nothing reads them stale by more than
# a report interval's tiny part, rarely enough to cost nothing per packet.
NATIVE_REFRESH_S = 0.05

# libsrtp 2's in-place calls, which the native loop makes through pylibsrtp's own binding
# (libsrtp 3 changed them).
_SRTP_CALL = "srtp_err_status_t(*)(struct srtp_ctx_t_ *, void *, int *)"


def _srtp_functions() -> tuple[int, int] | None:
    """The addresses of pylibsrtp's ``srtp_unprotect`` and ``srtp_protect``, when they are the
    calls the native loop was written for."""
    binding: Any = importlib.import_module("pylibsrtp._binding")
    functions = [binding.ffi.addressof(binding.lib, n) for n in ("srtp_unprotect", "srtp_protect")]
    if any(binding.ffi.typeof(f).cname != _SRTP_CALL for f in functions):
        return None
    unprotect, protect = (int(binding.ffi.cast("uintptr_t", f)) for f in functions)
    return unprotect, protect


def _session_address(session: pylibsrtp.Session) -> int:
    """The address of the libsrtp session behind a pylibsrtp one (its private ``_srtp``)."""
    binding: Any = importlib.import_module("pylibsrtp._binding")
    return int(binding.ffi.cast("uintptr_t", session._srtp[0]))


def _load_native_loop() -> ModuleType | None:
    try:
        module = importlib.import_module("callpath.core.call._rtp_echo")
    except ImportError:
        return None  # not built here (no C compiler, not Linux): the loop runs in Python
    return module if _srtp_functions() is not None else None


# The echo's per-packet loop in C (core/call/_rtp_echo.c), or None where it is not built. Read
# when a stream is set up, so tests can set it to None to run the same loop in Python.
NATIVE_LOOP: ModuleType | None = _load_native_loop()


def _none_if_negative(value: int) -> int | None:
    return None if value < 0 else value


class _NativeStatistics:
    """The statistics of one received stream that the native loop counts, as aiortc's
    receiver reads a ``StreamStatistics`` for its reports and ``getStats`` (the arithmetic is
    aiortc 1.16's)."""

    def __init__(self, native: EchoStream) -> None:
        self._native = native
        self._expected_prior = 0
        self._received_prior = 0

    def add(self, packet: RtpHeader) -> None:
        self._native.add(packet.sequence_number, packet.timestamp, time.time())

    @property
    def max_seq(self) -> int | None:
        return _none_if_negative(self._native.max_seq)

    @property
    def packets_received(self) -> int:
        return self._native.packets_received

    @property
    def packets_expected(self) -> int:
        native = self._native
        if native.base_seq < 0:
            return 0
        return native.cycles + native.max_seq - native.base_seq + 1

    @property
    def packets_lost(self) -> int:
        lost: int = clamp_packets_lost(self.packets_expected - self.packets_received)
        return lost

    @property
    def jitter(self) -> int:
        return self._native.jitter_q4 >> 4

    @property
    def fraction_lost(self) -> int:
        expected = self.packets_expected
        received = self.packets_received
        expected_interval = expected - self._expected_prior
        received_interval = received - self._received_prior
        self._expected_prior, self._received_prior = expected, received
        lost_interval = expected_interval - received_interval
        if expected_interval == 0 or lost_interval <= 0:
            return 0
        return (lost_interval << 8) // expected_interval


class _NativeNacks:
    """aiortc's NackGenerator for a stream whose in-order packets the native loop takes: it
    moves the highest sequence number there; gaps and late packets come here."""

    def __init__(self, native: EchoStream) -> None:
        self._native = native
        self._generator: Any = NackGenerator()

    @property
    def missing(self) -> set[int]:
        missing: set[int] = self._generator.missing
        return missing

    def add(self, header: RtpHeader) -> bool:
        generator, native = self._generator, self._native
        generator.max_seq = _none_if_negative(native.nack_max_seq)
        missed = bool(generator.add(header))
        native.nack_max_seq = -1 if generator.max_seq is None else generator.max_seq
        return missed

    def truncate(self) -> None:
        self._generator.max_seq = _none_if_negative(self._native.nack_max_seq)
        self._generator.truncate()


class EchoedStream:
    """One received stream sent straight back by an echo peer, packet by packet.

    The receiver keeps the statistics behind its receiver reports, so the caller still learns
    what reached the echo; the jitter buffer, depacketising and the sender's re-packetising are
    skipped. Feedback from the caller about the echoed stream goes where it can be acted on
    (as in Janus's echotest, the echo runs no estimator of its own):

    - video packets missing on the way in are asked of the caller's sender at once (NACK, as
      aiortc's receiver would), and so are packets the caller asks for that the echo never
      received; their retransmissions are sent on as retransmissions, so that the caller
      still counts them as lost on the main stream (the loss it measures stays the loop's, see
      ``callpath.core.call.rtp_forwarding``) while its decoder gets the frame whole;
    - a retransmission request for a packet the echo sent is answered from those packets;
    - a keyframe request and the caller's bandwidth estimate (REMB) go to the caller's own
      sender, whose stream this is: the estimate then covers the whole loop.
    """

    def __init__(self, receiver: Any, sender: Any, allowed: Callable[[], bool]) -> None:
        self._receiver = receiver
        self._sender = sender
        self._allowed = allowed
        self._codecs: dict[int, Any] = receiver._RTCRtpReceiver__codecs
        # StreamStatistics reads only sequence_number and timestamp: our RtpHeader has both.
        self._statistics: dict[int, Any] = receiver._RTCRtpReceiver__remote_streams
        # Video only, as aiortc's receiver does: upstream gaps are asked for at once.
        self._nacks: Any = receiver._RTCRtpReceiver__nack_generator
        # With the native loop, the counters live in its stream and are read through views.
        native_loop = NATIVE_LOOP
        self.native: EchoStream | None = None
        self.forwarded: ForwardedStream | EchoStream
        if native_loop is None:
            self.forwarded = ForwardedStream(sender._ssrc)
        else:
            asks_for_losses = self._nacks is not None
            self.native = native_loop.EchoStream(sender._ssrc, HISTORY_SIZE, asks_for_losses)
            self.forwarded = self.native  # ssrc, counters and recall, as ForwardedStream's
            if self._nacks is not None:
                self._nacks = _NativeNacks(self.native)
        self.source_ssrc: int | None = None
        self.python_fast = 0  # packets the Python loop echoed from the socket
        self.packets_slow = 0
        self.router: _RtpEchoRouter | None = None  # set by echo_rtp
        self._kinds: dict[int, int] = {}  # payload type -> _MEDIA or _RETRANSMISSION
        self._unflushed = False
        self._pending: set[asyncio.Future[None]] = set()  # keeps RTCP tasks alive until done
        sender._send_keyframe = self._request_keyframe
        handle_feedback = sender._handle_rtcp_packet

        async def relaying(packet: Any) -> None:
            if isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
                await self._answer_nack(packet.lost)
                return
            await self._relay_estimate(packet)
            await handle_feedback(packet)

        sender._handle_rtcp_packet = relaying

    def handle(self, packet: bytes, now: float) -> bytes | None:
        """Account for one decrypted RTP packet; return what to send back, if anything.
        ``now`` is the UNIX time (one reading per batch of packets); call ``flush`` after a
        batch so that the sender's reports announce what was sent."""
        header = parse_rtp_header(packet)
        if header is None or not self._receiver._enabled:
            return None
        kind = self._kinds.get(header.payload_type)
        if kind is None:
            kind = self._learn_kind(header.payload_type)
        if kind == _MEDIA:
            statistics: Any = self._statistics.get(header.ssrc)
            if statistics is None:
                clockrate = self._codecs[header.payload_type].clockRate
                statistics = self._statistics[header.ssrc] = self._new_statistics(
                    header.ssrc, clockrate
                )
            statistics.add(header)
            self.source_ssrc = header.ssrc
            nacks = self._nacks
            if nacks is not None and nacks.add(header):
                self._spawn(self._receiver._send_rtcp_nack(header.ssrc, sorted(nacks.missing)))
            if not self._allowed():
                return None
            if self.native is not None:
                return self.native.forward(packet, now)
            self._unflushed = True
            assert isinstance(self.forwarded, ForwardedStream)
            return self.forwarded.rewrite(packet, header, now)
        if kind == _RETRANSMISSION:
            if self._nacks is not None and len(packet) >= header.payload_offset + 2:
                # The original sequence number leads the payload (RFC 4588).
                recovered = int.from_bytes(
                    packet[header.payload_offset : header.payload_offset + 2], "big"
                )
                self._nacks.missing.discard(recovered)
            return self._pass_retransmission(packet)
        return None

    def _new_statistics(self, ssrc: int, clockrate: int) -> Any:
        native = self.native
        if native is None or native.source_ssrc >= 0:
            return StreamStatistics(clockrate)  # the native loop counts one source per stream
        native.source_ssrc, native.clockrate = ssrc, clockrate
        return _NativeStatistics(native)

    def _learn_kind(self, payload_type: int) -> int:
        codec = self._codecs.get(payload_type)
        if codec is None:
            return _UNKNOWN  # not remembered: the codecs may still be set
        kind = _RETRANSMISSION if is_rtx(codec) else _MEDIA
        self._kinds[payload_type] = kind
        if kind == _MEDIA and self.native is not None:
            self.native.mark_media(payload_type)
        return kind

    @property
    def packets_fast(self) -> int:
        """Packets echoed from the socket by the echo itself (not by aiortc's path)."""
        return self.python_fast + (self.native.packets_fast if self.native is not None else 0)

    def prepare_native_read(self) -> None:
        """Tell the native loop what only Python knows, before it reads."""
        native = self.native
        if native is not None:
            native.receiving = int(self._receiver._enabled)
            native.allowed = int(self._allowed())

    @property
    def socket_reads(self) -> tuple[int, int, bool] | None:
        """How the echo's socket reader has read so far: (wake-ups, datagrams, whether with
        ``recvmmsg``); None while aioice's transport reads the media's socket."""
        reader = self.router.reader if self.router is not None else None
        return None if reader is None else (reader.reads, reader.datagrams, reader.batched)

    def flush(self) -> None:
        """Publish what was sent to the sender, whose reports announce it (aiortc's sender
        would count these itself)."""
        native = self.native
        if native is not None:
            if self._nacks is not None and self._nacks.missing:
                self._nacks.truncate()  # as aiortc's generator does on every packet
            if not native.unflushed:
                return
            native.unflushed = 0
        elif not self._unflushed:
            return
        self._unflushed = False
        sender, forwarded = self._sender, self.forwarded
        sender._RTCRtpSender__packet_count = forwarded.packets_sent
        sender._RTCRtpSender__octet_count = forwarded.payload_bytes_sent
        sender._RTCRtpSender__rtp_timestamp = forwarded.last_timestamp
        sender._RTCRtpSender__ntp_timestamp = forwarded.last_sent_ntp

    def _pass_retransmission(self, packet: bytes) -> bytes | None:
        sender = self._sender
        rtx_payload_type = sender._RTCRtpSender__rtx_payload_type
        if rtx_payload_type is None or not self._allowed():
            return None
        return readdress(packet, rtx_payload_type, self._next_rtx_sequence(), sender._rtx_ssrc)

    def _next_rtx_sequence(self) -> int:
        sender = self._sender
        sequence_number: int = sender._RTCRtpSender__rtx_sequence_number
        sender._RTCRtpSender__rtx_sequence_number = (sequence_number + 1) & 0xFFFF
        return sequence_number

    async def _answer_nack(self, lost: list[int]) -> None:
        never_received = []
        for sequence_number in lost:
            packet = self.forwarded.recall(sequence_number)
            header = parse_rtp_header(packet) if packet is not None else None
            if packet is None or header is None:
                never_received.append(sequence_number)
                continue
            sender = self._sender
            rtx_payload_type = sender._RTCRtpSender__rtx_payload_type
            if rtx_payload_type is not None:
                packet = wrap_retransmission(
                    packet, header, rtx_payload_type, self._next_rtx_sequence(), sender._rtx_ssrc
                )
            with contextlib.suppress(ConnectionError):
                await sender.transport._send_rtp(packet)
        if never_received and self.source_ssrc is not None:
            await self._receiver._send_rtcp_nack(self.source_ssrc, never_received)

    async def _relay_estimate(self, packet: Any) -> None:
        if not (isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP):
            return
        rtcp_ssrc = self._receiver._RTCRtpReceiver__rtcp_ssrc
        try:
            bitrate, ssrcs = unpack_remb_fci(packet.fci)
        except ValueError:
            return
        if self.forwarded.ssrc in ssrcs and self.source_ssrc is not None and rtcp_ssrc:
            relayed = RtcpPsfbPacket(
                fmt=RTCP_PSFB_APP,
                ssrc=rtcp_ssrc,
                media_ssrc=0,
                fci=pack_remb_fci(bitrate, [self.source_ssrc]),
            )
            await self._receiver._send_rtcp(relayed)

    def _request_keyframe(self) -> None:
        # An echo cannot make a keyframe: ask the caller's sender, the source of the stream.
        if self.source_ssrc is not None:
            self._spawn(self._receiver._send_rtcp_pli(self.source_ssrc))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)


def _is_rtp(data: bytes) -> bool:
    """Whether a datagram on the media's socket looks like (S)RTP rather than RTCP, STUN or DTLS
    (RFC 7983: first byte 128-191; RTCP's packet types 192-208 in the second)."""
    return len(data) >= RTP_HEADER_BYTES and 127 < data[0] < 192 and not 191 < data[1] < 209


class _RtpEchoRouter:
    """Sends the RTP of one DTLS transport's echoed streams back as it arrives.

    Packets of a known stream are handled inside the ICE connection's datagram callback when
    the media flows over plain UDP (no queue, no task switch: decrypt, account, rewrite,
    encrypt, send); over a relay or before the first packet of a stream has been routed, they
    take aiortc's own path and are handled when the DTLS transport has decrypted them.

    Once a packet has gone the plain-UDP way, the router reads the nominated pair's socket
    itself when the event loop allows it (``_SocketReader``): every datagram waiting is read
    at once (``callpath.core.call.datagram_batch``), RTP of a known stream is echoed there and
    then, the echoes are sent together, and everything else (STUN consent checks, RTCP, DTLS)
    goes to aioice exactly as if aioice had read it."""

    def __init__(self, dtls: Any) -> None:
        self._dtls = dtls
        self._connection: aioice.ice.Connection = dtls.transport._connection
        self._by_ssrc: dict[bytes, EchoedStream] = {}
        self.streams: Mapping[bytes, EchoedStream] = self._by_ssrc  # by SSRC, as on the wire
        self._original_data_received = self._connection.data_received
        self._original_handle_rtp_data = dtls._handle_rtp_data
        self._connection.data_received = self._data_received
        dtls._handle_rtp_data = self._handle_rtp_data
        self._read_socket = True  # until a reader could not be started
        self.reader: _SocketReader | None = None

    def add(self, receiver: Any, stream: EchoedStream) -> None:
        async def learn(packet: Any, arrival_time_ms: int) -> None:
            # The first packet of a stream or of its retransmissions, routed by aiortc (SSRC,
            # MID or payload type).
            if receiver._RTCRtpReceiver__codecs.get(packet.payload_type) is None:
                return
            key = packet.ssrc.to_bytes(4, "big")
            self._by_ssrc[key] = stream
            if self.reader is not None:
                self.reader.add_stream(key, stream)
            await self._send(stream, packet.serialize(self._dtls._rtp_header_extensions_map))

        receiver._handle_rtp_packet = learn

    def fast_pair(self) -> Any:
        """The nominated pair when its packets may take the fast way (plain UDP, DTLS up)."""
        dtls = self._dtls
        pair = self._connection._nominated.get(1)
        if (
            pair is not None
            and type(pair.protocol) is aioice.ice.StunProtocol
            and dtls._rx_srtp is not None
            and dtls._state == DtlsState.CONNECTED
        ):
            return pair
        return None

    def echo(self, data: bytes, now: float) -> bytes | None:
        """The protected echo of one protected RTP packet of a known stream, if any."""
        stream = self._by_ssrc.get(data[8:12])
        if stream is None:
            return None
        try:
            packet = self._dtls._rx_srtp.unprotect(data)
        except pylibsrtp.Error:
            return None
        stream.python_fast += 1
        reply = stream.handle(packet, now)
        if reply is None:
            return None
        protected: bytes = self._dtls._tx_srtp.protect(reply)
        return protected

    @property
    def by_native(self) -> dict[EchoStream, EchoedStream]:
        """The echoed streams by their native loop's stream."""
        return {s.native: s for s in self._by_ssrc.values() if s.native is not None}

    def sessions(self) -> tuple[pylibsrtp.Session, pylibsrtp.Session]:
        """The DTLS transport's SRTP sessions: (receiving, sending)."""
        return self._dtls._rx_srtp, self._dtls._tx_srtp

    def prepare_native_read(self) -> None:
        for stream in set(self._by_ssrc.values()):
            stream.prepare_native_read()

    def flush(self) -> None:
        for stream in set(self._by_ssrc.values()):
            stream.flush()

    def count(self, received: int, received_bytes: int, sent: int, sent_bytes: int) -> None:
        """Add datagrams handled on the fast way to the DTLS transport's counters."""
        dtls = self._dtls
        dtls._RTCDtlsTransport__rx_bytes += received_bytes
        dtls._RTCDtlsTransport__rx_packets += received
        dtls._RTCDtlsTransport__tx_bytes += sent_bytes
        dtls._RTCDtlsTransport__tx_packets += sent

    def _data_received(self, data: bytes, component: int) -> None:
        if component == 1 and _is_rtp(data) and data[8:12] in self._by_ssrc:
            pair = self.fast_pair()
            if pair is not None:
                reply = self.echo(data, time.time())
                self.flush()
                sent = 0
                if reply is not None:
                    pair.protocol.transport.sendto(reply, pair.remote_addr)
                    sent = len(reply)
                self.count(1, len(data), int(reply is not None), sent)
                if self.reader is None and self._read_socket:
                    self.reader = _SocketReader.start(self, pair)
                    self._read_socket = self.reader is not None  # tried once
                return
        self._original_data_received(data, component)

    async def _handle_rtp_data(self, data: bytes, arrival_time_ms: int) -> None:
        stream = self._by_ssrc.get(data[8:12]) if len(data) >= RTP_HEADER_BYTES else None
        if stream is None:
            await self._original_handle_rtp_data(data, arrival_time_ms)
            return
        await self._send(stream, data)

    async def _send(self, stream: EchoedStream, data: bytes) -> None:
        stream.packets_slow += 1
        reply = stream.handle(data, time.time())
        stream.flush()
        if reply is not None:
            with contextlib.suppress(ConnectionError):
                await self._dtls._send_rtp(reply)


class _SocketReader:
    """Reads the socket of a nominated plain-UDP pair in place of asyncio's transport.

    The transport's own reading is paused and the socket's descriptor watched directly; when
    the transport closes (the call ends) it removes that watch itself. Should the nominated
    pair change, the SRTP sessions be replaced or the DTLS transport stop, the transport reads
    again.

    With the native loop (``NATIVE_LOOP``), one call reads, echoes and sends what is waiting
    and hands back only what Python must see; otherwise the Python loop below does the same
    through ``DatagramBatch``."""

    def __init__(self, router: _RtpEchoRouter, pair: Any, transport: Any, sock: Any) -> None:
        self._router = router
        self._pair = pair
        self._protocol = pair.protocol
        self._transport = transport
        self._loop = asyncio.get_running_loop()
        self._fd: int = sock.fileno()
        self._io = DatagramBatch(sock)
        self._budget: StunBudget | None = getattr(self._protocol, "callpath_stun_budget", None)
        self._sessions = router.sessions()
        self._native: EchoSocket | None = None
        self._python_reads = 0
        self._python_datagrams = 0
        self._refresh_at = 0.0
        self._published = (0, 0, 0, 0)
        self._handed_sent = self._handed_sent_bytes = 0

    @classmethod
    def start(cls, router: _RtpEchoRouter, pair: Any) -> _SocketReader | None:
        transport = pair.protocol.transport
        # asyncio's own selector transports (their socket is ``_sock``) can be paused; other
        # loops' (uvloop) keep reading.
        sock = getattr(transport, "_sock", None)
        if not isinstance(sock, socket.socket) or not callable(
            getattr(transport, "pause_reading", None)
        ):
            return None
        if not transport.is_reading():
            return None
        loop = asyncio.get_running_loop()
        if not isinstance(loop, asyncio.selector_events.BaseSelectorEventLoop):
            return None
        reader = cls(router, pair, transport, sock)
        reader._native = reader._native_socket(sock)
        transport.pause_reading()  # removes asyncio's watch on the descriptor
        # The public add_reader refuses a descriptor a transport owns; the transport's own
        # (private) call does not, and closing the transport removes this watch.
        read = reader._read_natively if reader._native is not None else reader._readable
        loop._add_reader(reader._fd, read)  # type: ignore[attr-defined]
        return reader

    def _native_socket(self, sock: socket.socket) -> EchoSocket | None:
        native_loop, functions = NATIVE_LOOP, _srtp_functions()
        streams = self._router.streams
        if native_loop is None or functions is None:
            return None
        if any(stream.native is None for stream in streams.values()):
            return None  # set up while the native loop was off (tests switch it)
        rx, tx = self._sessions
        native: EchoSocket = native_loop.EchoSocket(
            self._fd, rx, _session_address(rx), tx, _session_address(tx), *functions
        )
        native.set_destination(sockaddr_bytes(sock.family, self._pair.remote_addr))
        for key, stream in streams.items():
            if stream.native is not None:
                native.add_stream(key, stream.native)
        return native

    def add_stream(self, key: bytes, stream: EchoedStream) -> None:
        """A stream learned after reading started (its first packet took aiortc's way)."""
        if self._native is not None and stream.native is not None:
            self._native.add_stream(key, stream.native)

    @property
    def batched(self) -> bool:
        return self._native is not None or self._io.batched

    @property
    def reads(self) -> int:
        return self._python_reads + (self._native.reads if self._native is not None else 0)

    @property
    def datagrams(self) -> int:
        native = self._native.datagrams if self._native is not None else 0
        return self._python_datagrams + native

    def _still_fast(self) -> bool:
        router = self._router
        if router.fast_pair() is self._pair and router.sessions() == self._sessions:
            return True
        self._give_back()
        return False

    def _read_natively(self) -> None:
        native = self._native
        assert native is not None
        if self._loop.time() >= self._refresh_at and not self._refresh():
            return
        try:
            left = native.read()
        except OSError as error:
            self._protocol.error_received(error)
            return
        if left is not None:
            self._hand_over(left)

    def _refresh(self) -> bool:
        """Every ``NATIVE_REFRESH_S``, not on every read: check that the pair and the SRTP
        sessions still hold, tell the native loop what only Python knows (may it send, is the
        receiver on), and publish what it counted."""
        if not self._still_fast():
            return False
        self._router.prepare_native_read()
        self.publish()
        self._refresh_at = self._loop.time() + NATIVE_REFRESH_S
        return True

    def publish(self) -> None:
        """Add what the native loop counted since the last time to the DTLS transport's and the
        STUN budget's counters, and the echoes sent to the senders' reports."""
        native = self._native
        if native is None:
            return
        totals = (
            native.received,
            native.received_bytes,
            native.sent + self._handed_sent,
            native.sent_bytes + self._handed_sent_bytes,
        )
        received, received_bytes, sent, sent_bytes = (
            now - before for now, before in zip(totals, self._published, strict=True)
        )
        self._published = totals
        self._router.flush()
        if received or sent:
            if self._budget is not None:
                self._budget.received_bytes += received_bytes
            self._router.count(received, received_bytes, sent, sent_bytes)

    def _hand_over(self, left: list[tuple[EchoStream | None, bytes, bytes | None]]) -> None:
        """What the native loop left to Python: datagrams for aioice, packets for the streams."""
        router, protocol = self._router, self._protocol
        now = time.time()
        replies: list[bytes] = []
        by_native = router.by_native
        for native_stream, data, source in left:
            if native_stream is None:
                address = parse_sockaddr(source) if source is not None else None
                if address is not None:
                    protocol.datagram_received(data, address)  # aioice's own way
                continue
            reply = by_native[native_stream].handle(data, now)
            if reply is not None:
                replies.append(self._sessions[1].protect(reply))
        if replies:
            sent = self._io.send(replies, self._pair.remote_addr)
            self._handed_sent += sent
            self._handed_sent_bytes += sum(len(r) for r in replies[:sent])

    def _readable(self) -> None:
        router, pair, protocol = self._router, self._pair, self._protocol
        if not self._still_fast():
            return
        try:
            datagrams = self._io.receive()
        except OSError as error:
            protocol.error_received(error)
            return
        self._python_reads += 1
        self._python_datagrams += len(datagrams)
        now = time.time()
        replies: list[bytes] = []
        received = received_bytes = 0
        known = router.streams
        for index, data in enumerate(datagrams):
            if not (_is_rtp(data) and data[8:12] in known):
                address = self._io.address(index)
                if data and address is not None:
                    protocol.datagram_received(data, address)  # aioice's own way
                continue
            reply = router.echo(data, now)
            received += 1
            received_bytes += len(data)
            if reply is not None:
                replies.append(reply)
        if not received:
            return
        router.flush()
        if self._budget is not None:
            self._budget.received_bytes += received_bytes
        sent = self._io.send(replies, pair.remote_addr) if replies else 0
        router.count(received, received_bytes, sent, sum(len(r) for r in replies[:sent]))

    def _give_back(self) -> None:
        self.publish()
        self._loop._remove_reader(self._fd)  # type: ignore[attr-defined]
        self._router.reader = None
        if not self._transport.is_closing():
            self._transport.resume_reading()


_routers: weakref.WeakKeyDictionary[Any, _RtpEchoRouter] = weakref.WeakKeyDictionary()


def transport_totals(pc: RTCPeerConnection) -> tuple[int, int]:
    """Bytes sent and received by all of ``pc``'s DTLS transports (RTP, RTCP and DTLS, as
    sent and received on the wire): what ``getStats`` reports, read without building one."""
    sent = received = 0
    dtls: Any
    for dtls in {t.receiver.transport for t in pc.getTransceivers()}:
        router = _routers.get(dtls)
        if router is not None and router.reader is not None:
            router.reader.publish()  # what the native loop counted since its last refresh
        sent += dtls._RTCDtlsTransport__tx_bytes
        received += dtls._RTCDtlsTransport__rx_bytes
    return sent, received


def on_keyframe_request(sender: Any, request: Callable[[], None]) -> None:
    """Call ``request`` when the far end asks ``sender`` for a keyframe (PLI or FIR): a sender
    whose track is already encoded cannot make one itself."""
    sender._send_keyframe = request


def echo_rtp(receiver: Any, sender: Any, allowed: Callable[[], bool]) -> EchoedStream:
    """Send every RTP packet ``receiver`` gets straight back through ``sender`` (same DTLS
    transport), while ``allowed()`` holds. Call in the ``track`` event, before media flows;
    ``sender`` needs a track that never produces frames (it would send them too)."""
    dtls = receiver.transport
    router = _routers.get(dtls)
    if router is None:
        router = _routers[dtls] = _RtpEchoRouter(dtls)
    stream = EchoedStream(receiver, sender, allowed)
    stream.router = router
    router.add(receiver, stream)
    return stream


install()
