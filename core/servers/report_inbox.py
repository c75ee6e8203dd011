"""Reports sent from the test page to the support team: SQLite in the echo server's data dir.

Each stored report gets a short code the user can read out on the phone (``K7F-3QX``: no 0/O,
1/I/L). The inbox is bounded — at most ``max_reports`` reports (the oldest go first) of at most
``max_report_bytes`` each — and each client may send at most ``per_client`` reports per
``window_s`` seconds. Bounds live in :class:`InboxLimits`; the rate limiter takes ``now``.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

INBOX_FILE = "reports.sqlite3"
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 6


@dataclass(frozen=True)
class InboxLimits:
    max_reports: int = 2000
    max_report_bytes: int = 64 * 1024  # the echo server refuses larger requests anyway
    per_client: int = 10
    window_s: float = 600.0
    max_clients_tracked: int = 10_000


@dataclass(frozen=True)
class StoredReport:
    code: str
    received_at: str  # ISO 8601 UTC, as the report's own timestamps
    client: str
    size: int
    report: dict[str, Any]


def new_code() -> str:
    raw = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
    return f"{raw[:3]}-{raw[3:]}"


def normalise_code(text: str) -> str:
    """What the user read out or typed, as stored: upper case, spaces dropped, one dash."""
    raw = "".join(ch for ch in text.upper() if ch.isalnum())
    return f"{raw[:3]}-{raw[3:]}" if len(raw) == CODE_LENGTH else raw


class RateLimiter:
    """At most ``per_client`` events per ``window_s`` for each client key (sliding window)."""

    def __init__(self, per_client: int, window_s: float, max_clients: int) -> None:
        self._per_client = per_client
        self._window_s = window_s
        self._max_clients = max_clients
        self._events: dict[str, deque[float]] = {}

    def allow(self, client: str, now: float) -> bool:
        events = self._events.get(client)
        if events is None:
            if len(self._events) >= self._max_clients:
                self._forget_idle(now)
                if len(self._events) >= self._max_clients:
                    return False
            events = self._events[client] = deque()
        while events and events[0] <= now - self._window_s:
            events.popleft()
        if len(events) >= self._per_client:
            return False
        events.append(now)
        return True

    def _forget_idle(self, now: float) -> None:
        idle = [
            client
            for client, events in self._events.items()
            if not events or events[-1] <= now - self._window_s
        ]
        for client in idle:
            del self._events[client]


class ReportInbox:
    """The SQLite file of received reports. Opened per operation: the CLI reads it while the
    server writes (SQLite's own locking keeps them apart)."""

    def __init__(self, data_dir: Path, limits: InboxLimits | None = None) -> None:
        self.path = data_dir / INBOX_FILE
        self.limits = limits or InboxLimits()

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=5.0)
        connection.execute(
            "CREATE TABLE IF NOT EXISTS reports ("
            " id INTEGER PRIMARY KEY AUTOINCREMENT,"
            " code TEXT UNIQUE NOT NULL,"
            " received_at TEXT NOT NULL,"
            " client TEXT NOT NULL,"
            " body TEXT NOT NULL)"
        )
        return connection

    def store(self, report: dict[str, Any], client: str, received_at: str) -> str:
        """Store ``report``; its code. ``ValueError`` when it is too large."""
        body = json.dumps(report, ensure_ascii=False, sort_keys=True)
        if len(body.encode()) > self.limits.max_report_bytes:
            raise ValueError("report too large")
        connection = self._connect()
        try:
            with connection:
                for _attempt in range(20):
                    code = new_code()
                    try:
                        connection.execute(
                            "INSERT INTO reports (code, received_at, client, body)"
                            " VALUES (?, ?, ?, ?)",
                            (code, received_at, client, body),
                        )
                        break
                    except sqlite3.IntegrityError:
                        continue
                else:  # pragma: no cover - 31**6 codes
                    raise RuntimeError("no free report code")
                connection.execute(
                    "DELETE FROM reports WHERE id NOT IN"
                    " (SELECT id FROM reports ORDER BY id DESC LIMIT ?)",
                    (self.limits.max_reports,),
                )
        finally:
            connection.close()
        return code

    def entries(self) -> list[StoredReport]:
        """Every stored report, newest first."""
        return self._select("ORDER BY id DESC", ())

    def get(self, code: str) -> StoredReport | None:
        found = self._select("WHERE code = ?", (normalise_code(code),))
        return found[0] if found else None

    def _select(self, clause: str, parameters: tuple[Any, ...]) -> list[StoredReport]:
        if not self.path.is_file():
            return []
        connection = self._connect()
        try:
            rows = connection.execute(
                f"SELECT code, received_at, client, body FROM reports {clause}", parameters
            ).fetchall()
        finally:
            connection.close()
        return [
            StoredReport(code, received_at, client, len(body.encode()), json.loads(body))
            for code, received_at, client, body in rows
        ]
