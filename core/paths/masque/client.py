"""MASQUE client: the call's UDP through CONNECT-UDP over HTTP/3 (RFC 9298, RFC 9297).

``open_masque_udp`` makes the QUIC connection, checks that the proxy speaks HTTP Datagrams and
opens a first UDP proxying request; the returned ``MasqueUdpTunnel`` plays the part of a TURN
allocation for aioice (``callpath.core.call.library_adapter.DatagramTunnel``). A CONNECT-UDP
request reaches
one target only, so the tunnel opens one more request stream on the same QUIC connection for
every new destination the call sends to, queueing that destination's first datagrams while
the proxy answers.

Every failure is raised as ``StageFailure`` with an OONI-style name: ``quic_blocked`` when no
handshake answer came back, ``ssl_*`` for certificate problems, ``h3_datagram_unsupported``
when the proxy's SETTINGS or transport parameters lack datagram support, and
``masque_connect_udp_refused`` with the HTTP status when the proxy says no.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN
from aioquic.h3.events import DatagramReceived, DataReceived, H3Event, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import (
    ConnectionTerminated,
    HandshakeCompleted,
    QuicEvent,
    StreamReset,
)
from aioquic.quic.packet import QuicErrorCode

from callpath.core.call.library_adapter import (
    H3DatagramConnection,
    quic_connection,
    remote_max_datagram_frame_size,
)
from callpath.core.call.stages import StageFailure
from callpath.core.model.failures import failure_from_exception
from callpath.core.paths.masque.capsule import (
    CAPSULE_TYPE_DATAGRAM,
    CONNECT_UDP_PROTOCOL,
    SETTING_ENABLE_CONNECT_PROTOCOL,
    SETTING_H3_DATAGRAM,
    CapsuleError,
    CapsuleParser,
    decode_udp_payload,
    encode_udp_payload,
    encode_varint,
    expand_udp_path,
    parse_address,
)

logger = logging.getLogger(__name__)

# CallPath extension: the proxy's UDP address towards the target, "host:port" (docs/masque.md).
ADDRESS_HEADER = b"callpath-udp-address"
# Large enough for aiortc's video packets (1300-byte payloads plus RTP and SRTP overhead) inside
# QUIC; 1452 bytes of UDP payload fit a 1500-byte MTU over IPv6 as well as IPv4.
DEFAULT_MAX_DATAGRAM_SIZE = 1452
MAX_DATAGRAM_FRAME_SIZE = 65_536
# Short header (flags, connection ID up to 20 bytes, packet number), AEAD tag, DATAGRAM frame
# type and length: what a QUIC packet adds around an HTTP Datagram, rounded up.
QUIC_DATAGRAM_OVERHEAD = 1 + 20 + 4 + 16 + 1 + 2
MAX_QUEUED_PER_TARGET = 64
MAX_TARGETS = 16
# Longer than QUIC's closing period (three probe timeouts) on any sane path.
CLOSE_WAIT_S = 5.0
# RFC 8839 §5.1: how a candidate says "related address not disclosed".
UNDISCLOSED_IPV4 = ("0.0.0.0", 9)
UNDISCLOSED_IPV6 = ("::", 9)


def quic_configuration(
    *,
    server_name: str | None,
    cafile: str | Path | None = None,
    cadata: bytes | None = None,
    verify: bool = True,
    idle_timeout: float = 30.0,
    max_datagram_size: int = DEFAULT_MAX_DATAGRAM_SIZE,
) -> QuicConfiguration:
    """A client configuration for HTTP/3 with QUIC datagrams enabled."""
    configuration = QuicConfiguration(
        is_client=True,
        alpn_protocols=H3_ALPN,
        server_name=server_name,
        idle_timeout=idle_timeout,
        max_datagram_frame_size=MAX_DATAGRAM_FRAME_SIZE,
        max_datagram_size=max_datagram_size,
    )
    if cafile is not None or cadata is not None:
        configuration.load_verify_locations(
            cafile=None if cafile is None else str(cafile), cadata=cadata
        )
    configuration.verify_mode = ssl.CERT_REQUIRED if verify else ssl.CERT_NONE
    return configuration


# --- naming failures -----------------------------------------------------------------------

_CRYPTO_ERROR_FIRST = int(QuicErrorCode.CRYPTO_ERROR)
_CRYPTO_ERROR_LAST = _CRYPTO_ERROR_FIRST + 0xFF
_H3_SETTINGS_ERROR = 0x109
_UNKNOWN_AUTHORITY_REASONS = (
    "unable to get local issuer certificate",
    "unable to get issuer certificate",
    "self-signed certificate",
    "self signed certificate",
    "unable to verify the first certificate",
)


def termination_failure(error_code: int, reason: str, *, handshake_done: bool) -> str:
    """The failure name for a QUIC connection that ended with ``error_code`` and ``reason``.

    aioquic reports certificate problems only as a CRYPTO_ERROR with OpenSSL's or
    service-identity's text, so the text is what tells them apart.
    """
    lowered = reason.lower()
    if reason == "Idle timeout":
        return "generic_timeout_error" if handshake_done else "quic_blocked"
    if "common protocol version" in lowered:
        return "quic_incompatible_version"
    if _CRYPTO_ERROR_FIRST <= error_code <= _CRYPTO_ERROR_LAST:
        if "doesn't match" in lowered:
            return "ssl_invalid_hostname"
        if any(text in lowered for text in _UNKNOWN_AUTHORITY_REASONS):
            return "ssl_unknown_authority"
        if "no longer valid" in lowered or "not valid yet" in lowered or "expired" in lowered:
            return "ssl_invalid_certificate"
        return "ssl_failed_handshake"
    if error_code == _H3_SETTINGS_ERROR and "h3_datagram" in lowered:
        return "h3_datagram_unsupported"
    return "connection_reset" if handshake_done else "ssl_failed_handshake"


# --- the QUIC connection -------------------------------------------------------------------


class _ClientProtocol(QuicConnectionProtocol):
    """One QUIC connection to the proxy, with HTTP/3 on top; events go to ``tunnel``."""

    def __init__(self, quic: QuicConnection, stream_handler: Any = None) -> None:
        super().__init__(quic, stream_handler=stream_handler)
        self.h3 = H3DatagramConnection(quic)
        self.tunnel: MasqueUdpTunnel | None = None
        self.terminated: ConnectionTerminated | None = None
        self.handshake_completed = asyncio.Event()
        self.settings_received = asyncio.Event()
        self.ended = asyncio.Event()

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, ConnectionTerminated):
            self.terminated = event
            self.ended.set()
            if self.tunnel is not None:
                self.tunnel._connection_ended(event)
            return
        if isinstance(event, HandshakeCompleted):
            self.handshake_completed.set()
        if isinstance(event, StreamReset) and self.tunnel is not None:
            self.tunnel._stream_reset(event.stream_id, event.error_code)
        for h3_event in self.h3.handle_event(event):
            if self.tunnel is not None:
                self.tunnel._h3_event(h3_event)
        if self.h3.received_settings is not None:
            self.settings_received.set()

    @property
    def quic(self) -> QuicConnection:
        return quic_connection(self)


async def _resolve(host: str, port: int, timeout: float) -> tuple[str, int]:
    try:
        ipaddress.ip_address(host)
        return host, port
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except TimeoutError:
        raise StageFailure("generic_timeout_error", {"step": "resolve"}) from None
    except OSError as error:
        raise StageFailure(failure_from_exception(error), {"step": "resolve"}) from error
    address = infos[0][4]
    return str(address[0]), int(address[1])


async def _wait_until(event: asyncio.Event, protocol: _ClientProtocol) -> bool:
    """Wait for ``event`` or the end of the connection; True when ``event`` happened."""
    if event.is_set():
        return True
    waiters = {
        asyncio.ensure_future(event.wait()),
        asyncio.ensure_future(protocol.ended.wait()),
    }
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    return event.is_set()


async def _connect_quic(
    address: tuple[str, int], configuration: QuicConfiguration, timeout: float
) -> tuple[asyncio.DatagramTransport, _ClientProtocol]:
    """A QUIC connection with its handshake done, or StageFailure."""
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", 0))
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: _ClientProtocol(QuicConnection(configuration=configuration)), sock=sock
        )
    except OSError as error:
        sock.close()
        raise StageFailure(failure_from_exception(error), {"step": "quic_handshake"}) from error
    try:
        protocol.connect(address)
        # Own events rather than wait_connected(): aioquic would leave its waiter future with
        # an exception nobody retrieves when the handshake is abandoned on timeout.
        async with asyncio.timeout(timeout):
            if not await _wait_until(protocol.handshake_completed, protocol):
                raise ConnectionError("QUIC connection ended during the handshake")
    except (TimeoutError, ConnectionError) as error:
        terminated = protocol.terminated
        if isinstance(error, TimeoutError) or terminated is None:
            failure = "quic_blocked"
            evidence: dict[str, Any] = {"step": "quic_handshake", "timeout_s": timeout}
        else:
            failure = termination_failure(
                terminated.error_code, terminated.reason_phrase, handshake_done=False
            )
            evidence = {"step": "quic_handshake", "quic_error_code": terminated.error_code}
        await _shutdown(protocol, transport)
        raise StageFailure(failure, evidence) from None
    except BaseException:
        transport.close()
        raise
    return transport, protocol


async def _shutdown(protocol: _ClientProtocol, transport: asyncio.DatagramTransport) -> None:
    """Close the QUIC connection, then its socket.

    The socket must outlive the connection's closing period: aioquic's timer still sends
    through it, and asyncio fails loudly on a closed unconnected datagram transport.
    """
    protocol.close()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(CLOSE_WAIT_S):
            await protocol.wait_closed()
    transport.close()


async def quic_handshake(host: str, port: int, server_name: str, timeout: float) -> str | None:
    """Complete a QUIC handshake (ALPN h3, certificate not checked) with ``server_name`` as SNI.

    Returns None when the handshake completes, else the failure name. The diagnosis compares
    the proxy's real name with a neutral one to tell ``quic_sni_blocked`` from
    ``quic_blocked``.
    """
    try:
        address = await _resolve(host, port, timeout)
        configuration = quic_configuration(
            server_name=server_name, verify=False, idle_timeout=timeout
        )
        transport, protocol = await _connect_quic(address, configuration, timeout)
    except StageFailure as failure:
        return failure.failure
    await _shutdown(protocol, transport)
    return None


# --- the tunnel ----------------------------------------------------------------------------

OPENING = "opening"
OPEN = "open"
REFUSED = "refused"
CLOSED = "closed"


@dataclass
class _Flow:
    """One CONNECT-UDP request stream, carrying the UDP of one target."""

    target: tuple[str, int]
    stream_id: int
    state: str = OPENING
    status: int | None = None
    sockname: tuple[str, int] | None = None
    reset_code: int | None = None
    queued: list[bytes] = field(default_factory=list)
    parser: CapsuleParser = field(default_factory=CapsuleParser)
    settled: asyncio.Event = field(default_factory=asyncio.Event)


def _request_headers(
    authority: str, target: tuple[str, int], token: str | None
) -> list[tuple[bytes, bytes]]:
    headers = [
        (b":method", b"CONNECT"),
        (b":protocol", CONNECT_UDP_PROTOCOL.encode()),
        (b":scheme", b"https"),
        (b":authority", authority.encode()),
        (b":path", expand_udp_path(target[0], target[1]).encode()),
        (b"capsule-protocol", b"?1"),
        (b"user-agent", b"CallPath"),
    ]
    if token is not None:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    return headers


def default_authority(host: str, port: int) -> str:
    """``host[:port]`` as HTTP writes it (port omitted when 443, IPv6 in brackets)."""
    shown = f"[{host}]" if ":" in host else host
    return shown if port == 443 else f"{shown}:{port}"


class MasqueUdpTunnel:
    """UDP to any number of targets through one QUIC connection to a MASQUE proxy.

    Implements ``callpath.core.call.library_adapter.DatagramTunnel``: ``sockname`` is the proxy's
    UDP address
    towards the first target (from the ``callpath-udp-address`` response header, else the
    proxy's own address), which is what the far side of the call sees.
    """

    tunnel_name = "masque"

    def __init__(
        self,
        transport: asyncio.DatagramTransport,
        protocol: _ClientProtocol,
        *,
        proxy_address: tuple[str, int],
        authority: str,
        token: str | None,
        max_datagram_size: int,
        keepalive_s: float,
    ) -> None:
        self._transport = transport
        self._protocol = protocol
        self._proxy_address = proxy_address
        self._authority = authority
        self._token = token
        self._max_http_datagram = max_datagram_size - QUIC_DATAGRAM_OVERHEAD
        self._flows: dict[tuple[str, int], _Flow] = {}
        self._by_stream: dict[int, _Flow] = {}
        self._receiver: asyncio.DatagramProtocol | None = None
        self._sockname: tuple[str, int] = proxy_address
        self._closing = False
        self._lost_reported = False
        self._closer: asyncio.Task[None] | None = None
        self.datagrams_dropped = 0
        protocol.tunnel = self
        self._keepalive = asyncio.get_running_loop().create_task(self._keep_alive(keepalive_s))

    # DatagramTunnel

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        if self._closing:
            return
        target = (str(addr[0]), int(addr[1]))
        flow = self._flows.get(target)
        if flow is None:
            if len(self._flows) >= MAX_TARGETS:
                self.datagrams_dropped += 1
                return
            flow = self._open_flow(target)
        if flow.state == OPEN:
            self._send(flow, data)
        elif flow.state == OPENING and len(flow.queued) < MAX_QUEUED_PER_TARGET:
            flow.queued.append(data)
        else:
            self.datagrams_dropped += 1

    def set_receiver(self, protocol: asyncio.DatagramProtocol) -> None:
        self._receiver = protocol

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "sockname":
            return self._sockname
        if name == "related_address":
            return UNDISCLOSED_IPV6 if ":" in self._sockname[0] else UNDISCLOSED_IPV4
        if name in ("proxy_address", "peername"):
            return self._proxy_address
        return default

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Close the QUIC connection (CONNECTION_CLOSE now, the socket once it drained)."""
        if self._closing:
            return
        self._closing = True
        self._keepalive.cancel()
        for flow in self._flows.values():
            flow.state = CLOSED if flow.state != REFUSED else REFUSED
            flow.queued.clear()
            flow.settled.set()
        self._protocol.close()  # CONNECTION_CLOSE goes out now
        self._closer = asyncio.get_running_loop().create_task(self._finish_close())
        # Closed for the receiver now, as a UDP socket's transport would be: the QUIC socket
        # drains in the background (waiting for it held every MASQUE call's teardown ~2 s).
        self._report_lost()

    async def aclose(self) -> None:
        """Close and wait (bounded) until the socket is released."""
        self.close()
        if self._closer is not None:
            await self._closer

    # introspection, for evidence and tests

    def flow_state(self, target: tuple[str, int]) -> str | None:
        """``opening``, ``open``, ``refused`` or ``closed`` for a target, None if never used."""
        flow = self._flows.get((str(target[0]), int(target[1])))
        return None if flow is None else flow.state

    def flow_status(self, target: tuple[str, int]) -> int | None:
        """The HTTP status the proxy answered for ``target``'s request."""
        flow = self._flows.get((str(target[0]), int(target[1])))
        return None if flow is None else flow.status

    def flow_sockname(self, target: tuple[str, int]) -> tuple[str, int] | None:
        """The proxy's UDP address towards ``target``, when the proxy reported it."""
        flow = self._flows.get((str(target[0]), int(target[1])))
        return None if flow is None else flow.sockname

    async def wait_settled(self, target: tuple[str, int], timeout: float) -> str:
        """Wait until the proxy answered ``target``'s request; return the flow state."""
        flow = self._flows.get((str(target[0]), int(target[1])))
        if flow is None:
            raise KeyError(target)
        async with asyncio.timeout(timeout):
            await _wait_until(flow.settled, self._protocol)
        return flow.state

    # internals

    def _open_flow(self, target: tuple[str, int]) -> _Flow:
        quic = self._protocol.quic
        stream_id = quic.get_next_available_stream_id()
        flow = _Flow(target=target, stream_id=stream_id)
        self._flows[target] = flow
        self._by_stream[stream_id] = flow
        self._protocol.h3.send_headers(
            stream_id, _request_headers(self._authority, target, self._token)
        )
        self._protocol.transmit()
        return flow

    def _send(self, flow: _Flow, data: bytes) -> None:
        payload = encode_udp_payload(data)
        if len(encode_varint(flow.stream_id // 4)) + len(payload) > self._max_http_datagram:
            # aioquic would keep a DATAGRAM frame that never fits at the head of its queue.
            self.datagrams_dropped += 1
            return
        self._protocol.h3.send_datagram(flow.stream_id, payload)
        self._protocol.transmit()

    def _deliver(self, flow: _Flow, http_datagram_payload: bytes) -> None:
        payload = decode_udp_payload(http_datagram_payload)
        if payload is None or self._receiver is None or flow.state != OPEN:
            return
        self._receiver.datagram_received(payload, flow.target)

    def _h3_event(self, event: H3Event) -> None:
        if isinstance(event, DatagramReceived):
            flow = self._by_stream.get(event.stream_id)
            if flow is not None:
                self._deliver(flow, event.data)
        elif isinstance(event, HeadersReceived):
            flow = self._by_stream.get(event.stream_id)
            if flow is not None and flow.state == OPENING:
                self._response(flow, event.headers, event.stream_ended)
        elif isinstance(event, DataReceived):
            flow = self._by_stream.get(event.stream_id)
            if flow is None:
                return
            try:
                capsules = flow.parser.feed(event.data)
            except CapsuleError:
                self._end_flow(flow, CLOSED)
                return
            for capsule in capsules:
                if capsule.type == CAPSULE_TYPE_DATAGRAM:
                    self._deliver(flow, capsule.value)
            if event.stream_ended:
                self._end_flow(flow, CLOSED)

    def _response(self, flow: _Flow, headers: list[tuple[bytes, bytes]], ended: bool) -> None:
        fields = dict(headers)
        try:
            status = int(fields.get(b":status", b"0"))
        except ValueError:
            status = 0
        if 100 <= status < 200:
            return  # interim; the final response follows
        flow.status = status
        if not 200 <= status < 300 or ended:
            self._end_flow(flow, REFUSED)
            return
        reported = fields.get(ADDRESS_HEADER)
        if reported is not None:
            try:
                flow.sockname = parse_address(reported.decode("ascii"))
            except (ValueError, UnicodeDecodeError):
                logger.info("MASQUE proxy sent an unusable %s header", ADDRESS_HEADER.decode())
        flow.state = OPEN
        flow.settled.set()
        queued, flow.queued = flow.queued, []
        for data in queued:
            self._send(flow, data)

    def _end_flow(self, flow: _Flow, state: str) -> None:
        flow.state = state
        flow.queued.clear()
        flow.settled.set()

    def _stream_reset(self, stream_id: int, error_code: int) -> None:
        flow = self._by_stream.get(stream_id)
        if flow is not None:
            flow.reset_code = error_code
            self._end_flow(flow, REFUSED if flow.state == OPENING else CLOSED)

    def _connection_ended(self, event: ConnectionTerminated) -> None:
        for flow in self._flows.values():
            if flow.state in (OPENING, OPEN):
                self._end_flow(flow, CLOSED)
        self._keepalive.cancel()
        if not self._closing:
            logger.info("MASQUE connection ended: %s", event.reason_phrase or event.error_code)
            self._closing = True
            self._transport.close()
        self._report_lost()

    def _report_lost(self) -> None:
        # aioice's StunProtocol.close() waits for connection_lost, like a real transport's.
        if self._lost_reported or self._receiver is None:
            return
        self._lost_reported = True
        asyncio.get_running_loop().call_soon(self._receiver.connection_lost, None)

    async def _finish_close(self) -> None:
        try:
            await _shutdown(self._protocol, self._transport)
        finally:
            self._transport.close()
            self._report_lost()

    async def _keep_alive(self, interval: float) -> None:
        # A tunnel opened before the call starts must survive the signalling exchange.
        while True:
            await asyncio.sleep(interval)
            self._protocol.quic.send_ping(0)
            self._protocol.transmit()

    def _use_first_flow(self, flow: _Flow) -> None:
        if flow.sockname is not None:
            self._sockname = flow.sockname


async def open_masque_udp(
    proxy_host: str,
    proxy_port: int,
    target: tuple[str, int],
    *,
    server_name: str | None = None,
    authority: str | None = None,
    token: str | None = None,
    cafile: str | Path | None = None,
    cadata: bytes | None = None,
    verify: bool = True,
    handshake_timeout: float = 5.0,
    request_timeout: float = 5.0,
    idle_timeout: float = 30.0,
    max_datagram_size: int = DEFAULT_MAX_DATAGRAM_SIZE,
    evidence: dict[str, Any] | None = None,
) -> MasqueUdpTunnel:
    """Connect to the MASQUE proxy and open a CONNECT-UDP request to ``target``.

    ``server_name`` is the SNI and the name the certificate must carry (default: the proxy
    host); ``authority`` is the request's ``:authority`` (default: ``server_name[:port]``);
    ``token`` is sent as ``authorization: Bearer …``. ``cafile``/``cadata`` add trusted CAs;
    ``verify=False`` accepts any certificate. ``evidence`` (the stage's dict) receives timings
    and the proxy's answer. Raises StageFailure.
    """
    notes = evidence if evidence is not None else {}
    name = server_name or proxy_host
    address = await _resolve(proxy_host, proxy_port, handshake_timeout)
    configuration = quic_configuration(
        server_name=name,
        cafile=cafile,
        cadata=cadata,
        verify=verify,
        idle_timeout=idle_timeout,
        max_datagram_size=max_datagram_size,
    )
    started = time.monotonic()
    transport, protocol = await _connect_quic(address, configuration, handshake_timeout)
    notes["quic_handshake_ms"] = round((time.monotonic() - started) * 1000, 1)
    tunnel = MasqueUdpTunnel(
        transport,
        protocol,
        proxy_address=address,
        authority=authority or default_authority(name, proxy_port),
        token=token,
        max_datagram_size=max_datagram_size,
        keepalive_s=max(1.0, idle_timeout / 3),
    )
    try:
        await _check_settings(protocol, request_timeout, notes)
        request_started = time.monotonic()
        flow = tunnel._open_flow((str(target[0]), int(target[1])))
        try:
            async with asyncio.timeout(request_timeout):
                await _wait_until(flow.settled, protocol)
        except TimeoutError:
            raise StageFailure(
                "generic_timeout_error", {"step": "connect_udp", "timeout_s": request_timeout}
            ) from None
        notes["connect_udp_ms"] = round((time.monotonic() - request_started) * 1000, 1)
        if protocol.terminated is not None and flow.state != OPEN:
            terminated = protocol.terminated
            raise StageFailure(
                termination_failure(
                    terminated.error_code, terminated.reason_phrase, handshake_done=True
                ),
                {"step": "connect_udp", "quic_error_code": terminated.error_code},
            )
        notes["status"] = flow.status
        if flow.state != OPEN:
            refused: dict[str, Any] = {"step": "connect_udp", "status": flow.status}
            if flow.reset_code is not None:
                refused["stream_reset"] = flow.reset_code
            raise StageFailure("masque_connect_udp_refused", refused)
        tunnel._use_first_flow(flow)
        notes["udp_address_reported"] = flow.sockname is not None
    except BaseException:
        await tunnel.aclose()
        raise
    return tunnel


async def _check_settings(protocol: _ClientProtocol, timeout: float, notes: dict[str, Any]) -> None:
    try:
        async with asyncio.timeout(timeout):
            received = await _wait_until(protocol.settings_received, protocol)
    except TimeoutError:
        raise StageFailure(
            "generic_timeout_error", {"step": "h3_settings", "timeout_s": timeout}
        ) from None
    if not received:
        terminated = protocol.terminated
        code = 0 if terminated is None else terminated.error_code
        reason = "" if terminated is None else terminated.reason_phrase
        raise StageFailure(
            termination_failure(code, reason, handshake_done=True),
            {"step": "h3_settings", "quic_error_code": code},
        )
    settings = protocol.h3.received_settings or {}
    datagram_frame_size = remote_max_datagram_frame_size(protocol.quic)
    notes["h3_datagram"] = settings.get(SETTING_H3_DATAGRAM, 0)
    notes["max_datagram_frame_size"] = datagram_frame_size
    if settings.get(SETTING_H3_DATAGRAM) != 1 or not datagram_frame_size:
        raise StageFailure(
            "h3_datagram_unsupported",
            {
                "step": "h3_settings",
                "h3_datagram": settings.get(SETTING_H3_DATAGRAM, 0),
                "max_datagram_frame_size": datagram_frame_size,
            },
        )
    if settings.get(SETTING_ENABLE_CONNECT_PROTOCOL) != 1:
        raise StageFailure(
            "masque_connect_udp_refused",
            {"step": "h3_settings", "status": None, "enable_connect_protocol": 0},
        )
