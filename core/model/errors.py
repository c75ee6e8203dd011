"""Errors that point at a place in a user's file: profiles, scenarios, catalogues."""

from __future__ import annotations


class LocatedError(Exception):
    """A file that cannot be used; ``str()`` is ``FILE:LINE: message`` (parts that are known)."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line

    def __str__(self) -> str:
        location = ":".join(
            part for part in (self.file, None if self.line is None else str(self.line)) if part
        )
        return f"{location}: {self.message}" if location else self.message
