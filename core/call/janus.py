"""Janus ``echotest`` signalling over the Janus REST API (HTTP long polling).

A call against a Janus gateway needs one Janus *session* holding one *handle* attached to the
``janus.plugin.echotest`` plugin. The flow, every request bounded by a timeout:

1. ``open``: ``POST <base>`` ``{"janus": "create"}`` → session id;
   ``POST <base>/<session>`` ``{"janus": "attach", "plugin": ...}`` → handle id;
   then a background task sends ``{"janus": "keepalive"}`` every 25 s, because Janus drops a
   session after ``session_timeout`` (60 s by default) without traffic.
2. ``negotiate``: ``POST <base>/<session>/<handle>`` ``{"janus": "message", "body": {"audio",
   "video"}, "jsep": offer}``; Janus acknowledges at once and delivers the plugin's reply later,
   so ``GET <base>/<session>?maxev=1`` is long-polled until the ``event`` for our handle and
   transaction arrives with the ``jsep`` answer (Janus puts its candidates in the answer SDP; the
   offer says ``trickle: false`` because aiortc sends every candidate in the offer).
3. ``close``: ``detach`` the handle, ``destroy`` the session, close the HTTP client; bounded and
   never raising, so teardown cannot hang or mask the real result.

Every failure is a ``JanusError`` whose ``failure`` is an OONI-style string.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
from ssl import SSLContext
from types import TracebackType
from typing import Any, Self

import aiohttp

from callpath.core.model.failures import failure_from_exception, scrub
from callpath.core.model.json_input import load_bounded_json

ECHOTEST_PLUGIN = "janus.plugin.echotest"
KEEPALIVE_INTERVAL_S = 25.0  # Janus's default session_timeout is 60 s
CLOSE_TIMEOUT_S = 2.0
MAX_RESPONSE_DEPTH = 32  # deeper JSON from the gateway is refused before parsing


class JanusError(Exception):
    """A Janus request failed; ``failure`` is OONI-style, ``message`` is the detail."""

    def __init__(self, failure: str, message: str) -> None:
        super().__init__(f"{failure}: {message}")
        self.failure = failure
        self.message = message


def janus_error_from_exception(error: BaseException) -> JanusError:
    """Map an exception raised while talking to Janus onto an OONI-style failure."""
    if isinstance(error, JanusError):
        return error
    if isinstance(error, TimeoutError):
        return JanusError("generic_timeout_error", "Janus did not answer in time")
    if isinstance(error, aiohttp.ClientConnectorCertificateError):
        cause: BaseException = error.certificate_error
    elif isinstance(error, aiohttp.ClientConnectorError):
        cause = error.os_error  # DNS, refused, unreachable, TLS handshake
    elif isinstance(error, aiohttp.ServerDisconnectedError):
        return JanusError("eof_error", "Janus closed the connection")
    else:
        cause = error
    return JanusError(failure_from_exception(cause), scrub(str(cause) or type(cause).__name__))


def _transaction() -> str:
    return secrets.token_hex(8)


def _raise_if_janus_error(reply: dict[str, Any]) -> None:
    """Raise for a core error (``"janus": "error"``) or an echotest error in ``plugindata``."""
    if reply.get("janus") == "error":
        error = reply.get("error")
        code = error.get("code") if isinstance(error, dict) else None
        reason = error.get("reason") if isinstance(error, dict) else None
        raise JanusError(f"janus_error:{code}", str(reason or "Janus returned an error"))
    plugindata = reply.get("plugindata")
    data = plugindata.get("data") if isinstance(plugindata, dict) else None
    if isinstance(data, dict) and "error_code" in data:
        raise JanusError(
            f"janus_error:{data['error_code']}", str(data.get("error") or "plugin error")
        )


class JanusEchoSession:
    """One Janus session with one echotest handle; see the module docstring for the flow.

    Use ``async with JanusEchoSession() as janus:`` or call ``close`` yourself after ``open``.
    """

    def __init__(
        self,
        *,
        plugin: str = ECHOTEST_PLUGIN,
        keepalive_interval: float = KEEPALIVE_INTERVAL_S,
        close_timeout: float = CLOSE_TIMEOUT_S,
    ) -> None:
        self.plugin = plugin
        self.keepalive_interval = keepalive_interval
        self.close_timeout = close_timeout
        self.session_id: int | None = None
        self.handle_id: int | None = None
        self.keepalives_sent = 0
        self.keepalive_failure: JanusError | None = None  # the last keepalive that failed
        self._base_url = ""
        self._request_timeout = 0.0
        self._http: aiohttp.ClientSession | None = None
        self._ssl: SSLContext | bool = True
        self._keepalive_task: asyncio.Task[None] | None = None
        self._poll_counter = itertools.count()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    # --- public API -------------------------------------------------------------------------

    async def open(self, base_url: str, *, ssl: SSLContext | None, timeout: float) -> None:
        """Create a session and attach the plugin; start the keepalive task.

        ``base_url`` is the REST root, e.g. ``https://janus.example.org/janus``; ``ssl`` is the
        context to verify an ``https`` server with (None: the system trust store).
        """
        if self._http is not None:
            raise RuntimeError("JanusEchoSession.open called twice")
        self._base_url = base_url.rstrip("/")
        self._request_timeout = timeout
        self._ssl = ssl if ssl is not None else True
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        try:
            async with asyncio.timeout(timeout):
                created = await self._post(self._base_url, {"janus": "create"})
                self.session_id = self._id_from(created)
                attached = await self._post(
                    self._session_url, {"janus": "attach", "plugin": self.plugin}
                )
                self.handle_id = self._id_from(attached)
        except BaseException as error:
            await self.close()
            if not isinstance(error, Exception):
                raise  # cancellation: not a Janus failure
            raise janus_error_from_exception(error) from error
        self._keepalive_task = asyncio.create_task(self._keep_alive(), name="janus-keepalive")

    async def negotiate(
        self, offer_sdp: str, *, audio: bool = True, video: bool = True, timeout: float
    ) -> str:
        """Send the SDP offer to the plugin and return Janus's SDP answer."""
        if self._http is None or self.handle_id is None:
            raise RuntimeError("JanusEchoSession.negotiate called before open")
        transaction = _transaction()
        message = {
            "janus": "message",
            "transaction": transaction,
            "body": {"audio": audio, "video": video},
            "jsep": {"type": "offer", "sdp": offer_sdp, "trickle": False},
        }
        try:
            async with asyncio.timeout(timeout):
                reply = await self._post(self._handle_url, message, transaction=transaction)
                answer = self._answer_from(reply, transaction)
                while answer is None:
                    for event in await self._poll():
                        answer = self._answer_from(event, transaction)
                        if answer is not None:
                            break
                return answer
        except Exception as error:
            raise janus_error_from_exception(error) from error

    async def close(self) -> None:
        """Detach the handle, destroy the session and close HTTP; bounded, never raises."""
        task, self._keepalive_task = self._keepalive_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        http, self._http = self._http, None
        if http is None:
            return
        try:
            # Best effort: if Janus is gone, it drops the session by itself after its timeout.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.close_timeout):
                    if self.session_id is not None and self.handle_id is not None:
                        await self._post_with(http, self._handle_url, {"janus": "detach"})
                    if self.session_id is not None:
                        await self._post_with(http, self._session_url, {"janus": "destroy"})
        finally:
            self.handle_id = None
            self.session_id = None
            with contextlib.suppress(Exception):
                await http.close()

    # --- internals --------------------------------------------------------------------------

    @property
    def _session_url(self) -> str:
        return f"{self._base_url}/{self.session_id}"

    @property
    def _handle_url(self) -> str:
        return f"{self._base_url}/{self.session_id}/{self.handle_id}"

    async def _keep_alive(self) -> None:
        """Every ``keepalive_interval`` seconds, tell Janus the session is still in use."""
        while True:
            await asyncio.sleep(self.keepalive_interval)
            http = self._http
            if http is None or self.session_id is None:
                return
            try:
                async with asyncio.timeout(self._request_timeout):
                    await self._post_with(http, self._session_url, {"janus": "keepalive"})
                self.keepalives_sent += 1
            except Exception as error:
                self.keepalive_failure = janus_error_from_exception(error)

    async def _post(
        self, url: str, body: dict[str, Any], *, transaction: str | None = None
    ) -> dict[str, Any]:
        if self._http is None:
            raise RuntimeError("JanusEchoSession is closed")
        return await self._post_with(self._http, url, body, transaction=transaction)

    async def _post_with(
        self,
        http: aiohttp.ClientSession,
        url: str,
        body: dict[str, Any],
        *,
        transaction: str | None = None,
    ) -> dict[str, Any]:
        payload = {**body, "transaction": transaction or _transaction()}
        async with http.post(url, json=payload, ssl=self._ssl) as response:
            reply = await self._json_from(response)
        if not isinstance(reply, dict):
            raise JanusError("janus_bad_response", "Janus replied with JSON that is not an object")
        _raise_if_janus_error(reply)
        return reply

    async def _poll(self) -> list[dict[str, Any]]:
        """One long poll for session events; Janus answers with a keepalive after ~30 s idle."""
        if self._http is None:
            raise RuntimeError("JanusEchoSession is closed")
        # rid defeats caches between us and Janus, as janus.js does.
        params = {"maxev": "1", "rid": str(next(self._poll_counter))}
        async with self._http.get(self._session_url, params=params, ssl=self._ssl) as response:
            reply = await self._json_from(response)
        events = reply if isinstance(reply, list) else [reply]
        if not all(isinstance(event, dict) for event in events):
            raise JanusError("janus_bad_response", "Janus sent an event that is not an object")
        for event in events:
            if event.get("janus") == "error":
                _raise_if_janus_error(event)
        return events

    @staticmethod
    async def _json_from(response: aiohttp.ClientResponse) -> Any:
        if response.status != 200:
            raise JanusError("http_unexpected_status_code", f"HTTP {response.status}")
        text = await response.text()
        try:
            return load_bounded_json(text, max_depth=MAX_RESPONSE_DEPTH)
        except ValueError as error:
            raise JanusError("janus_bad_response", "Janus replied with invalid JSON") from error

    @staticmethod
    def _id_from(reply: dict[str, Any]) -> int:
        data = reply.get("data")
        identifier = data.get("id") if isinstance(data, dict) else None
        if reply.get("janus") != "success" or not isinstance(identifier, int):
            raise JanusError("janus_bad_response", f"unexpected reply {reply.get('janus')!r}")
        return identifier

    def _answer_from(self, event: dict[str, Any], transaction: str) -> str | None:
        """The answer SDP if ``event`` is our plugin's reply; raise if it reports an error."""
        if event.get("janus") in ("ack", "keepalive"):
            return None
        if event.get("sender") not in (None, self.handle_id):
            return None
        if event.get("janus") in ("hangup", "detached"):
            reason = str(event.get("reason") or event.get("janus"))
            raise JanusError(f"janus_error:{event.get('janus')}", reason)
        if event.get("janus") != "event" or event.get("transaction") not in (None, transaction):
            return None
        _raise_if_janus_error(event)
        jsep = event.get("jsep")
        if not isinstance(jsep, dict):
            return None
        if jsep.get("type") != "answer" or not isinstance(jsep.get("sdp"), str):
            raise JanusError("janus_bad_response", f"unexpected jsep type {jsep.get('type')!r}")
        return str(jsep["sdp"])
