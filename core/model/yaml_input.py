"""One hardened way to read the YAML files users and support staff hand to CallPath.

Profiles, lab scenarios and messenger catalogues all come through here, so one set of limits
protects every command from a hostile or broken file:

- only regular files are read: a FIFO, device or socket is refused after ``os.stat``, before it
  is opened, and the file is opened non-blocking and checked again (a file swapped for a FIFO in
  between cannot hang the command);
- a size cap, checked before and while reading;
- bounded nesting depth, checked while composing (PyYAML's composer recurses per level);
- a bounded number of nodes, where an alias counts as the whole subtree it repeats, so an
  "alias bomb" of a few lines is refused instead of being walked;
- numbers in plain decimal only, with a bounded number of digits (``0x1``, ``017``, YAML 1.1
  sexagesimal ``1:00``, 5000-digit and 1e400-sized integers are refused before any ``int()``);
- host names checked strictly (no control characters, DNS labels of at most 63 and names of
  at most 253 characters).

Every problem is raised as the caller's ``LocatedError`` subclass with the file and 1-based line.
"""

from __future__ import annotations

import math
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
import yaml.reader
from yaml.events import AliasEvent
from yaml.nodes import Node, ScalarNode, SequenceNode

from callpath.core.i18n import _
from callpath.core.model.errors import LocatedError

E = TypeVar("E", bound=LocatedError)


@dataclass(frozen=True)
class YamlLimits:
    """How much a YAML input file may hold."""

    max_bytes: int = 1024 * 1024
    max_depth: int = 32  # nested lists/mappings
    # Nodes (scalars, lists, mappings), an alias counting as the subtree it repeats.
    max_nodes: int = 20_000
    max_scalar_chars: int = 64 * 1024


# --- files --------------------------------------------------------------------------------------


def _size_text(size: int) -> str:
    if size >= 1024 * 1024 and size % (1024 * 1024) == 0:
        return f"{size // (1024 * 1024)} MB"
    if size >= 1024 and size % 1024 == 0:
        return f"{size // 1024} KB"
    return _("{size} bytes").format(size=size)


def read_input_file(path: Path, *, limits: YamlLimits, error_type: type[E]) -> str:
    """The UTF-8 text of ``path``; refuses anything but a regular file of at most
    ``limits.max_bytes``. Never blocks on a FIFO or device."""
    file = str(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise error_type(_("file not found; check the path"), file=file) from None
    except PermissionError:
        raise error_type(
            _("permission denied; make the file readable by your user"), file=file
        ) from None
    except (OSError, ValueError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise error_type(
            _("cannot read the file ({reason})").format(reason=reason), file=file
        ) from None
    _check_regular(info, file, limits, error_type)
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except PermissionError:
        raise error_type(
            _("permission denied; make the file readable by your user"), file=file
        ) from None
    except OSError as error:
        raise error_type(
            _("cannot read the file ({reason})").format(reason=error.strerror or error), file=file
        ) from None
    try:
        _check_regular(os.fstat(descriptor), file, limits, error_type)
        chunks: list[bytes] = []
        total = 0
        while total <= limits.max_bytes:
            chunk = os.read(descriptor, min(64 * 1024, limits.max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except OSError as error:
        raise error_type(
            _("cannot read the file ({reason})").format(reason=error.strerror or error), file=file
        ) from None
    finally:
        os.close(descriptor)
    if total > limits.max_bytes:
        raise error_type(_too_large(limits), file=file)
    try:
        return b"".join(chunks).decode("utf-8-sig")
    except UnicodeDecodeError:
        raise error_type(_("the file is not UTF-8 text; save it as UTF-8"), file=file) from None


def _too_large(limits: YamlLimits) -> str:
    return _(
        "the file is larger than {limit}, too large for this kind of file; check the path"
    ).format(limit=_size_text(limits.max_bytes))


def _check_regular(
    info: os.stat_result, file: str, limits: YamlLimits, error_type: type[LocatedError]
) -> None:
    if stat.S_ISDIR(info.st_mode):
        raise error_type(_("this is a folder, not a file; give the file's path"), file=file)
    if not stat.S_ISREG(info.st_mode):
        raise error_type(
            _(
                "this is not a regular file (a pipe, device or socket); save the contents to a "
                "file and give its path"
            ),
            file=file,
        )
    if info.st_size > limits.max_bytes:
        raise error_type(_too_large(limits), file=file)


# --- composing ----------------------------------------------------------------------------------


class _LimitExceeded(Exception):
    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


class _BoundedLoader(yaml.SafeLoader):
    """A SafeLoader whose composer counts depth and (alias-expanded) nodes as it goes."""

    def __init__(self, text: str, limits: YamlLimits) -> None:
        super().__init__(text)
        self._limits = limits
        self._depth = 0
        self._nodes = 0
        self._sizes: dict[int, int] = {}

    def _count(self, amount: int, line: int) -> None:
        self._nodes += amount
        if self._nodes > self._limits.max_nodes:
            raise _LimitExceeded(
                _(
                    "the file holds more than {limit} values (aliases count as what they "
                    "repeat); write it out plainly and keep lists short"
                ).format(limit=self._limits.max_nodes),
                line,
            )

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        line = int(event.start_mark.line) + 1 if event.start_mark is not None else None
        if isinstance(event, AliasEvent):
            alias = super().compose_node(parent, index)
            assert alias is not None
            self._count(self._sizes.get(id(alias), 1), line or 0)
            return alias
        if self._depth >= self._limits.max_depth:
            raise _LimitExceeded(
                _("the file is nested more than {limit} levels deep; flatten it").format(
                    limit=self._limits.max_depth
                ),
                line,
            )
        self._depth += 1
        start = self._nodes
        self._count(1, line or 0)
        node = super().compose_node(parent, index)
        assert node is not None
        self._depth -= 1
        if isinstance(node, ScalarNode) and len(str(node.value)) > self._limits.max_scalar_chars:
            raise _LimitExceeded(
                _("a value is longer than {limit} characters; shorten it").format(
                    limit=self._limits.max_scalar_chars
                ),
                line,
            )
        self._sizes[id(node)] = max(1, self._nodes - start)
        return node


def compose_yaml(
    text: str, *, file: str | None, limits: YamlLimits, error_type: type[E]
) -> Node | None:
    """The YAML node tree of ``text`` (None for an empty document), within ``limits``.

    Syntax errors are raised as ``yaml.YAMLError`` for the caller to phrase; exceeded limits
    as ``error_type`` with the line where the limit was crossed.
    """
    loader: _BoundedLoader | None = None
    try:
        loader = _BoundedLoader(text, limits)  # checks for unprintable characters
        return loader.get_single_node()
    except _LimitExceeded as exceeded:
        raise error_type(exceeded.message, file=file, line=exceeded.line) from None
    except yaml.reader.ReaderError as error:
        character = error.character
        code = ord(character) if isinstance(character, str) else int(character)
        raise error_type(
            _(
                "the file contains the character U+{code:04X}, which YAML does not allow; "
                "remove it (is this a binary file?)"
            ).format(code=code),
            file=file,
            line=text.count("\n", 0, max(0, int(error.position))) + 1,
        ) from None
    except RecursionError:
        raise error_type(
            _("the file is nested too deeply; flatten it"), file=file, line=None
        ) from None
    finally:
        if loader is not None:
            loader.dispose()


def check_list_length(
    node: SequenceNode, *, limit: int, where: str, file: str | None, error_type: type[E]
) -> None:
    """Refuse a list with more than ``limit`` items, naming the limit (docs list them)."""
    if len(node.value) > limit:
        raise error_type(
            _("{where} has {count} items; at most {limit} are allowed").format(
                where=where, count=len(node.value), limit=limit
            ),
            file=file,
            line=int(node.start_mark.line) + 1,
        )


# --- numbers ------------------------------------------------------------------------------------

MAX_INTEGER_DIGITS = 15
_DECIMAL_INT = re.compile(r"[-+]?(?:0|[1-9][0-9]{0,14})")
_DECIMAL_NUMBER = re.compile(
    r"[-+]?(?:[0-9]{1,15}(?:\.[0-9]{0,15})?|\.[0-9]{1,15})(?:[eE][-+]?[0-9]{1,3})?"
)


def plain_int(node: Node) -> int | None:
    """The integer a YAML scalar spells in plain decimal with at most 15 digits, else None.

    ``0x1``, ``0o7``, ``017`` (YAML 1.1 octal), ``1_000``, ``1:00`` (YAML 1.1 base 60), quoted
    numbers and numbers too long to be meant are all None, before any conversion."""
    if not isinstance(node, ScalarNode) or not str(node.tag).endswith(":int"):
        return None
    text = str(node.value)
    if not text.isascii() or not _DECIMAL_INT.fullmatch(text):
        return None
    return int(text)


def plain_number(node: Node) -> int | float | None:
    """A finite number a YAML scalar spells in plain decimal (``4``, ``2.5``, ``1.0e-3``)."""
    whole = plain_int(node)
    if whole is not None:
        return whole
    if not isinstance(node, ScalarNode) or not str(node.tag).endswith(":float"):
        return None
    text = str(node.value)
    if not text.isascii() or not _DECIMAL_NUMBER.fullmatch(text):
        return None
    value = float(text)
    return value if math.isfinite(value) else None


def shown(value: object, limit: int = 40) -> str:
    """``value`` for a message: shortened and without control characters."""
    text = "".join(ch if ch.isprintable() else "?" for ch in str(value))
    return text if len(text) <= limit else text[: limit - 1] + "…"
