"""The echo server's routes for browsers: the test page, its configuration, report upload.

Kept apart from :mod:`callpath.core.servers.echo_server`, which only registers them. Page files
and ``/web/config`` need no token when the operator gave none; with ``--token`` the page passes
it from the link's fragment (``#token=…``), which browsers never send to servers or log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from callpath.core.servers.report_inbox import InboxLimits, RateLimiter, ReportInbox
from callpath.core.servers.web_page import (
    CONTENT_SECURITY_POLICY,
    PAGE_FILES,
    WebPageConfig,
    choose_language,
    page_config,
    page_file,
)

logger = logging.getLogger(__name__)

# Served without the token: the page itself (it holds nothing secret) and the health check.
PUBLIC_PATHS = frozenset({*PAGE_FILES, "/health"})
ReportValidator = Callable[[dict[str, Any]], None]  # raises ValueError naming the problem
ReportRedactor = Callable[[dict[str, Any]], dict[str, Any]]  # addresses → pseudonyms


@dataclass
class WebOptions:
    page: WebPageConfig = field(default_factory=WebPageConfig)
    data_dir: Path | None = None  # where the report inbox lives; None: no report upload
    inbox_limits: InboxLimits = field(default_factory=InboxLimits)
    report_validator: ReportValidator | None = None
    # Applied to reports that say they are redacted, so that no address is stored whatever
    # the sending page did (callpath.core.report.document.redact_addresses).
    report_redactor: ReportRedactor | None = None


class WebRoutes:
    def __init__(self, options: WebOptions, clock: Callable[[], float] = time.time) -> None:
        self.options = options
        self._clock = clock
        limits = options.inbox_limits
        self.inbox = ReportInbox(options.data_dir, limits) if options.data_dir else None
        self._limiter = RateLimiter(limits.per_client, limits.window_s, limits.max_clients_tracked)

    def add_to(self, app: web.Application) -> None:
        for path in PAGE_FILES:
            app.router.add_get(path, self._file)
        app.router.add_get("/web/config", self._config)
        app.router.add_post("/reports", self._report)

    async def _file(self, request: web.Request) -> web.StreamResponse:
        found = page_file(request.path)
        if found is None:  # pragma: no cover - only registered paths reach here
            raise web.HTTPNotFound()
        path, content_type = found
        return web.Response(
            body=path.read_bytes(),
            headers={
                "Content-Type": content_type,
                "Content-Security-Policy": CONTENT_SECURITY_POLICY,
                "Cache-Control": "no-cache",
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer",
            },
        )

    async def _config(self, request: web.Request) -> web.Response:
        language = choose_language(
            request.query.get("lang"), request.headers.get("Accept-Language")
        )
        document = page_config(
            self.options.page, language, self._clock(), reports=self.inbox is not None
        )
        return web.json_response(document, headers={"Cache-Control": "no-store"})

    async def _report(self, request: web.Request) -> web.Response:
        inbox = self.inbox
        if inbox is None:
            return web.json_response({"error": "this server takes no reports"}, status=404)
        client = request.remote or "unknown"
        if not self._limiter.allow(client, self._clock()):
            logger.warning("report refused: too many from one client")
            return web.json_response({"error": "too many reports, try later"}, status=429)
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": "body is not JSON"}, status=400)
        report = body.get("report") if isinstance(body, dict) else None
        if not isinstance(report, dict):
            return web.json_response({"error": "expected {report: {...}}"}, status=400)
        validator = self.options.report_validator
        try:
            if validator is not None:
                validator(report)
        except ValueError as error:
            logger.warning("report refused: %s", error)
            return web.json_response({"error": f"not a valid report: {error}"}, status=400)
        received_at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        # The user chose to hide addresses: the sender's address is not kept either.
        redacted = report.get("redacted") is not False
        stored_client = "" if redacted else client
        if redacted and self.options.report_redactor is not None:
            report = self.options.report_redactor(report)
        try:
            code = inbox.store(report, stored_client, received_at)
        except ValueError as error:
            return web.json_response({"error": str(error)}, status=413)
        logger.info("report %s received", code)
        return web.json_response({"code": code})
