"""Echo targets a test call can be placed against.

A target turns the caller's offer into an answer from a peer that echoes every track back:
CallPath's own echo server over HTTP(S), a Janus gateway's echotest plugin, or a second local
peer that reaches the first one through the same TURN relay (relay-loopback).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass
from typing import Protocol

import aiohttp
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCIceServer, RTCIceTransportPolicy

from callpath.core.call.echo_peer import EchoCall
from callpath.core.call.library_adapter import PreparedTurn
from callpath.core.call.stages import StageFailure
from callpath.core.model.failures import failure_from_exception


class EchoSession(Protocol):
    """One call's signalling with an echo peer."""

    async def exchange(self, offer_sdp: str) -> str: ...

    async def close(self) -> None: ...


class EchoTarget(Protocol):
    @property
    def kind(self) -> str: ...

    def open_session(self, path_id: str) -> EchoSession: ...


def _signalling_failure(error: BaseException) -> StageFailure:
    if isinstance(error, aiohttp.ClientResponseError):
        return StageFailure("http_unexpected_status_code", {"status": error.status})
    if isinstance(error, aiohttp.ClientConnectorError) and error.os_error is not None:
        return StageFailure(failure_from_exception(error.os_error), {"signalling": True})
    return StageFailure(failure_from_exception(error), {"signalling": True})


@dataclass(frozen=True)
class HttpEchoTarget:
    """CallPath's own echo server (``callpath echo-server``)."""

    url: str
    token: str | None = None
    ssl_context: ssl.SSLContext | None = None
    timeout: float = 8.0
    kind: str = "echo"

    def open_session(self, path_id: str) -> EchoSession:
        return _HttpEchoSession(self)


class _HttpEchoSession:
    def __init__(self, target: HttpEchoTarget) -> None:
        self._target = target
        self._call_id: str | None = None

    def _headers(self) -> dict[str, str]:
        if self._target.token:
            return {"Authorization": f"Bearer {self._target.token}"}
        return {}

    def _client(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(ssl=self._target.ssl_context or True)
        return aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=self._target.timeout)
        )

    async def exchange(self, offer_sdp: str) -> str:
        url = self._target.url.rstrip("/") + "/offer"
        try:
            async with (
                self._client() as client,
                client.post(
                    url, json={"type": "offer", "sdp": offer_sdp}, headers=self._headers()
                ) as response,
            ):
                response.raise_for_status()
                body = await response.json()
        except (aiohttp.ClientError, OSError, TimeoutError) as error:
            raise _signalling_failure(error) from error
        self._call_id = str(body.get("call_id") or "") or None
        return str(body["sdp"])

    async def close(self) -> None:
        if self._call_id is None:
            return
        url = f"{self._target.url.rstrip('/')}/calls/{self._call_id}"
        with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
            async with self._client() as client, client.delete(url, headers=self._headers()):
                pass


@dataclass(frozen=True)
class JanusEchoTarget:
    """A Janus gateway's ``janus.plugin.echotest`` over its REST API."""

    url: str
    ssl_context: ssl.SSLContext | None = None
    timeout: float = 8.0
    kind: str = "janus"

    def open_session(self, path_id: str) -> EchoSession:
        return _JanusSession(self)


class _JanusSession:
    def __init__(self, target: JanusEchoTarget) -> None:
        from callpath.core.call.janus import JanusEchoSession

        self._target = target
        self._session = JanusEchoSession()

    async def exchange(self, offer_sdp: str) -> str:
        from callpath.core.call.janus import JanusError

        try:
            await self._session.open(
                self._target.url, ssl=self._target.ssl_context, timeout=self._target.timeout
            )
            return await self._session.negotiate(offer_sdp, timeout=self._target.timeout)
        except JanusError as error:
            raise StageFailure(error.failure, {"signalling": True}) from error

    async def close(self) -> None:
        await self._session.close()


class LocalEchoSession:
    """An echo peer in this process, answering with the given ICE configuration."""

    def __init__(
        self,
        configuration: RTCConfiguration,
        *,
        ice_addresses: tuple[str, ...] | None = None,
        prepared_turn: PreparedTurn | None = None,
    ) -> None:
        self._call = EchoCall(
            configuration, ice_addresses=ice_addresses, prepared_turn=prepared_turn
        )

    async def exchange(self, offer_sdp: str) -> str:
        return await self._call.answer(offer_sdp)

    async def close(self) -> None:
        await self._call.close()


def relay_only_configuration(turn_url: str, username: str, password: str) -> RTCConfiguration:
    return RTCConfiguration(
        iceServers=[RTCIceServer(urls=turn_url, username=username, credential=password)],
        iceTransportPolicy=RTCIceTransportPolicy.RELAY,
        bundlePolicy=RTCBundlePolicy.MAX_BUNDLE,
    )


async def close_quietly(session: EchoSession, timeout: float) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(session.close(), timeout=timeout)
