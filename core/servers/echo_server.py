"""``callpath echo-server``: answers test calls over HTTP(S) signalling and echoes every track.

Support staff run it outside the censored network. API (JSON):

- ``POST /offer`` with ``{"type": "offer", "sdp": ...}``
  → ``{"type": "answer", "sdp": ..., "call_id": ...}``
- ``DELETE /calls/{call_id}`` ends a call early.
- ``GET /`` the phone test page, ``GET /web/config`` what it loads, ``POST /reports`` a report
  it sends to the support team (``callpath.core.servers.web_routes``; docs/phone-test.md).
- ``GET /health`` → ``{"ok": true, "calls": N, "version": ..., "native_loop": bool}``; the last
  says whether calls are echoed by the per-packet loop in C (``core/call/_rtp_echo.c``), which
  carries about twice the calls per core of the Python loop used where it is not built.
- ``GET /control`` → ``{"udp_port": P, "tcp_bulk_port": P, "quic_port": P}``: the control server
  (``callpath.core.servers.control_server``) mounted beside the echo on the same host, null for a
  part that is
  off; 404 when no control port was configured. Off by default: its ports must be opened in the
  firewall and published, which only the operator can decide (docs/control-server.md).

No trickle ICE: the answer carries every server candidate, and callers post their offer once
their own gathering is complete (browsers: ``iceGatheringState == "complete"``, or after a few
seconds with what they have). An offer whose audio or video has no codec the echo forwards
(VP9-only, AV1-only) gets that section rejected (port 0) and the rest answered; a 400 naming the
codecs when nothing is left. CORS: the page's own origin and ``cors_origins`` only.

With ``--token`` every request needs ``Authorization: Bearer <token>``. Limits
(``EchoServerLimits``, docs/control-server.md): concurrent calls (503 when full), call duration,
request size (413), header and body timeouts, open connections, JSON depth, candidates per
offer and their address ranges, ICE checks per call, and a call whose ICE has not connected
within seconds is closed (``callpath.core.servers.request_guard``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hmac
import ipaddress
import logging
import secrets
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web
from aiortc import RTCConfiguration

import callpath.core
from callpath.core.call import library_adapter
from callpath.core.call.echo_peer import EchoCall
from callpath.core.call.library_adapter import interface_addresses
from callpath.core.model.config import EchoServerLimits
from callpath.core.model.failures import scrub
from callpath.core.model.json_input import load_bounded_json
from callpath.core.servers.control_server import ControlServer
from callpath.core.servers.cors import cors_middleware
from callpath.core.servers.masque_endpoint import (
    AllowedTargets,
    MasqueEndpoint,
    MasqueEndpointConfig,
)
from callpath.core.servers.offer_codecs import describe, merge_answer, split_offer
from callpath.core.servers.request_guard import ConnectionGuard, json_depth_exceeds, screen_offer
from callpath.core.servers.web_routes import PUBLIC_PATHS, WebOptions, WebRoutes

logger = logging.getLogger(__name__)


@dataclass
class EchoServerConfig:
    host: str = "0.0.0.0"
    port: int = 8443
    token: str | None = None
    ssl_context: ssl.SSLContext | None = None
    limits: EchoServerLimits = field(default_factory=EchoServerLimits)
    # Host candidate addresses; None = every interface (deployment), ("127.0.0.1",) in tests.
    ice_addresses: tuple[str, ...] | None = None
    # The control server's ports (0: any free port); None leaves that part off.
    control_udp_port: int | None = None
    control_tcp_port: int | None = None
    control_quic_port: int | None = None
    # MASQUE endpoint (CONNECT-UDP over HTTP/3) on this UDP port; needs the TLS certificate.
    masque_port: int | None = None
    masque_certificate: tuple[str, str] | None = None  # (certificate PEM, key PEM) files
    # Where the endpoint may forward to: defaults to the echo's own ICE addresses, any port
    # from 1024 (the echo peer's media) — never an open proxy.
    masque_allowed_targets: tuple[str, ...] = ()
    # The phone test page, its TURN relays and the report inbox (core/servers/web_routes.py).
    web: WebOptions = field(default_factory=WebOptions)
    # Origins besides the server's own that may call the signalling from a browser.
    cors_origins: tuple[str, ...] = ()

    @property
    def control_enabled(self) -> bool:
        ports = (self.control_udp_port, self.control_tcp_port, self.control_quic_port)
        return any(port is not None for port in ports)


def call_end_reason(
    call: EchoCall, age_s: float, now: float, limits: EchoServerLimits
) -> str | None:
    """Why a call must end now (a short English reason for the log), or None."""
    if age_s >= limits.max_call_s:
        return "it reached the maximum call duration"
    if not call.ice_connected:
        return "ICE did not connect in time" if age_s >= limits.ice_timeout_s else None
    last = call.last_received_at
    if last is not None and now - last > limits.caller_silence_s:
        return "nothing arrived from the caller for too long"
    return None


def _only_loopback(addresses: tuple[str, ...] | None) -> bool:
    try:
        return bool(addresses) and all(
            ipaddress.ip_address(address).is_loopback for address in addresses or ()
        )
    except ValueError:
        return False


class EchoServer:
    def __init__(self, config: EchoServerConfig) -> None:
        if _only_loopback(config.ice_addresses) and not config.limits.allow_private_candidates:
            # A server whose own ICE addresses are loopback can only ever talk to this machine
            # (the app's built-in echo, the tests): loopback candidates are what it needs.
            config = dataclasses.replace(
                config,
                limits=dataclasses.replace(config.limits, allow_private_candidates=True),
            )
        self.config = config
        self.calls: dict[str, EchoCall] = {}
        self._timers: dict[str, asyncio.Task[None]] = {}
        self._runner: web.AppRunner | None = None
        self._server: asyncio.Server | None = None
        self.guard: ConnectionGuard | None = None
        self.port = config.port
        self.control: ControlServer | None = None
        self.masque: MasqueEndpoint | None = None
        self.web = WebRoutes(config.web)

    def _app(self) -> web.Application:
        app = web.Application(
            client_max_size=self.config.limits.max_request_bytes,
            middlewares=[cors_middleware(self.config.cors_origins), self._auth_middleware],
        )
        self.web.add_to(app)
        app.router.add_post("/offer", self._offer)
        app.router.add_delete("/calls/{call_id}", self._hangup)
        app.router.add_get("/health", self._health)
        app.router.add_get("/control", self._control)
        return app

    @web.middleware
    async def _auth_middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if self.guard is None:
            return await self._authorised(request, handler)
        with self.guard.request(request.transport):
            return await self._authorised(request, handler)

    async def _authorised(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        token = self.config.token
        if token is not None and request.path not in PUBLIC_PATHS:
            supplied = request.headers.get("Authorization", "")
            expected = f"Bearer {token}"
            if not hmac.compare_digest(supplied.encode(), expected.encode()):
                return web.json_response({"error": "unauthorized"}, status=401)
        return await handler(request)

    async def _offer(self, request: web.Request) -> web.Response:
        if len(self.calls) >= self.config.limits.max_calls:
            return web.json_response({"error": "busy"}, status=503)
        limits = self.config.limits
        try:
            text = await asyncio.wait_for(request.text(), timeout=limits.body_timeout_s)
        except TimeoutError:
            return web.json_response({"error": "the body arrived too slowly"}, status=408)
        if json_depth_exceeds(text, limits.max_json_depth):
            return web.json_response({"error": "the JSON is nested too deeply"}, status=400)
        try:
            body = load_bounded_json(text, max_depth=limits.max_json_depth)
        except ValueError:
            return web.json_response({"error": "body is not JSON"}, status=400)
        if (
            not isinstance(body, dict)
            or body.get("type") != "offer"
            or not isinstance(body.get("sdp"), str)
        ):
            return web.json_response({"error": "expected {type: offer, sdp: ...}"}, status=400)
        if not any(line.startswith(("m=audio", "m=video")) for line in body["sdp"].splitlines()):
            return web.json_response({"error": "the offer has no audio or video"}, status=400)
        screened = screen_offer(body["sdp"], limits)
        if screened.problem is not None:
            return web.json_response({"error": screened.problem}, status=400)
        offer = split_offer(screened.sdp)
        for rejected in offer.rejected:
            logger.warning("offer: rejecting the %s", describe(rejected))
        if len(offer.rejected) == sum(
            line.startswith(("m=audio", "m=video")) for line in screened.sdp.splitlines()
        ):
            error = "; ".join(describe(rejected) for rejected in offer.rejected)
            return web.json_response({"error": f"no common codec: {error}"}, status=400)
        call_id = secrets.token_urlsafe(12)
        call = EchoCall(
            RTCConfiguration(iceServers=[]),
            ice_addresses=self.config.ice_addresses,
            on_closed=lambda closed: self._forget(call_id),
            max_ice_checks=limits.max_ice_checks_per_call,
        )
        self.calls[call_id] = call
        try:
            answer = await asyncio.wait_for(call.answer(offer.sdp), timeout=10.0)
        except Exception as error:  # a malformed offer must not leave a half-made call behind
            await call.close()
            logger.warning("offer rejected: %s: %s", type(error).__name__, scrub(str(error))[:200])
            return web.json_response({"error": "offer could not be answered"}, status=400)
        self._timers[call_id] = asyncio.create_task(self._expire(call_id))
        answer = merge_answer(answer, offer.rejected)
        return web.json_response({"type": "answer", "sdp": answer, "call_id": call_id})

    async def _expire(self, call_id: str) -> None:
        """Close the call when it runs out of time, when ICE has not connected within
        ``ice_timeout_s``, or when the caller has gone silent (vanished without hanging up)."""
        limits = self.config.limits
        loop = asyncio.get_running_loop()
        started = loop.time()
        interval = min(0.5, limits.ice_timeout_s / 4, limits.max_call_s / 4)
        while True:
            await asyncio.sleep(interval)
            call = self.calls.get(call_id)
            if call is None:
                return
            now = loop.time()
            reason = call_end_reason(call, now - started, now, limits)
            if reason is not None:
                logger.info("call closed: %s", reason)
                await call.close()
                return

    def _forget(self, call_id: str) -> None:
        self.calls.pop(call_id, None)
        timer = self._timers.pop(call_id, None)
        if timer is not None and timer is not asyncio.current_task():
            timer.cancel()

    async def _hangup(self, request: web.Request) -> web.Response:
        call = self.calls.get(request.match_info["call_id"])
        if call is None:
            return web.json_response({"error": "no such call"}, status=404)
        await call.close()
        return web.json_response({"ok": True})

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "ok": True,
                "calls": len(self.calls),
                "version": callpath.core.__version__,
                "native_loop": library_adapter.NATIVE_LOOP is not None,
            }
        )

    async def _control(self, request: web.Request) -> web.Response:
        control = self.control
        if control is None:
            return web.json_response({"error": "no control server"}, status=404)

        def port(address: tuple[str, int] | None) -> int | None:
            return None if address is None else address[1]

        return web.json_response(
            {
                "udp_port": port(control.udp_address),
                "tcp_bulk_port": port(control.tcp_bulk_address),
                "quic_port": port(control.quic_address),
            }
        )

    async def start(self) -> None:
        config = self.config
        if config.control_enabled:
            control = ControlServer()
            await control.start(
                config.host,
                udp_port=config.control_udp_port,
                tcp_bulk_port=config.control_tcp_port,
                quic_port=config.control_quic_port,
            )
            self.control = control
        try:
            await self._start_masque()
            await self._start_http()
        except BaseException:
            await self._close_control()
            raise

    async def _start_masque(self) -> None:
        config = self.config
        if config.masque_port is None:
            return
        if config.masque_certificate is None:
            raise ValueError("the MASQUE endpoint needs --cert and --key")
        addresses = config.ice_addresses or tuple(
            address for address in interface_addresses() if ":" not in address
        )
        targets = config.masque_allowed_targets or tuple(
            f"{address}:1024-65535" for address in addresses
        )
        endpoint = MasqueEndpoint(
            MasqueEndpointConfig(
                allowed_targets=AllowedTargets.parse(targets),
                tokens=(config.token,) if config.token else (),
            )
        )
        certificate, key = config.masque_certificate
        await endpoint.start(config.host, config.masque_port, certificate, key)
        self.masque = endpoint

    async def _close_control(self) -> None:
        if self.control is not None:
            await self.control.close()
            self.control = None
        if self.masque is not None:
            await self.masque.close()
            self.masque = None

    async def _start_http(self) -> None:
        self._runner = web.AppRunner(self._app(), access_log=None)
        await self._runner.setup()
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        self.guard = ConnectionGuard(self.config.limits, loop.time)
        # Every connection goes through the guard (count, header and idle deadlines).
        self._server = await loop.create_server(
            self.guard.protocol_factory(server),
            self.config.host,
            self.config.port,
            ssl=self.config.ssl_context,
            # A TLS handshake that stalls is cut off like slow headers.
            ssl_handshake_timeout=(
                self.config.limits.header_timeout_s if self.config.ssl_context else None
            ),
            reuse_address=True,
        )
        self.guard.start()
        self.port = int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        scheme = "https" if self.config.ssl_context else "http"
        host = self.config.host if ":" not in self.config.host else f"[{self.config.host}]"
        return f"{scheme}://{host}:{self.port}"

    async def stop(self) -> None:
        for call in list(self.calls.values()):
            await call.close()
        for timer in list(self._timers.values()):
            timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await timer
        if self._server is not None:
            self._server.close()
        if self.guard is not None:
            await self.guard.stop()
        if self._runner is not None:
            await self._runner.cleanup()
        await self._close_control()


def server_ssl_context(cert: str, key: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context
