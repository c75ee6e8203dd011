"""CORS for the echo server's signalling: the page's own origin and operator-listed ones only.

A preflight (``OPTIONS`` with ``Access-Control-Request-Method``) is answered here, before the
token check, since browsers never send credentials with one. Every other answer to an allowed
origin — errors included, so the page can read them — carries ``Access-Control-Allow-Origin``
for that origin alone (never ``*``) and ``Vary: Origin``. Other origins get no CORS headers (the
browser then hides the answer) and a 403 to their preflights.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Middleware

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ALLOWED_METHODS = "GET, POST, DELETE, OPTIONS"
ALLOWED_HEADERS = "Authorization, Content-Type"
PREFLIGHT_MAX_AGE_S = 600


def normalise_origin(origin: str) -> str:
    """``scheme://host[:port]`` in lower case, the default port left out; ``ValueError`` if
    ``origin`` is not one."""
    parts = urlsplit(origin.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{origin!r} is not an origin (https://host[:port])")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ValueError(f"{origin!r} is not an origin: no path, query or user name")
    port = parts.port
    default = 443 if parts.scheme == "https" else 80
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    suffix = "" if port in (None, default) else f":{port}"
    return f"{parts.scheme}://{host}{suffix}"


def own_origin(request: web.Request) -> str | None:
    try:
        return normalise_origin(f"{request.scheme}://{request.host}")
    except ValueError:
        return None


def cors_middleware(extra_origins: Iterable[str]) -> Middleware:
    allowed = frozenset(normalise_origin(origin) for origin in extra_origins)

    def allowed_origin(request: web.Request) -> str | None:
        origin = request.headers.get("Origin")
        if origin is None:
            return None
        try:
            normalised = normalise_origin(origin)
        except ValueError:
            return None
        if normalised in allowed or normalised == own_origin(request):
            return origin
        return None

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = allowed_origin(request)
        preflight = (
            request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers
        )
        if preflight:
            if origin is None:
                return web.json_response({"error": "origin not allowed"}, status=403)
            return web.Response(
                status=204,
                headers={
                    "Access-Control-Allow-Origin": origin,
                    "Access-Control-Allow-Methods": ALLOWED_METHODS,
                    "Access-Control-Allow-Headers": ALLOWED_HEADERS,
                    "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE_S),
                    "Vary": "Origin",
                },
            )
        try:
            response = await handler(request)
        except web.HTTPException as error:
            if origin is not None:
                error.headers["Access-Control-Allow-Origin"] = origin
                error.headers["Vary"] = "Origin"
            raise
        if origin is not None:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
        return response

    return middleware
