"""Bounded JSON parsing for what arrives from files and the network (issue 21).

``json.loads`` recurses once per nesting level (a 30 000-deep body is a RecursionError),
accepts ``NaN`` and ``Infinity``, and turns a 5000-digit number into a ValueError deep inside.
``load_bounded_json`` checks the nesting depth first, then parses with hooks that refuse
non-finite numbers and integers longer than ``MAX_INTEGER_DIGITS``; every problem is a
``ValueError`` with a short message.
"""

from __future__ import annotations

import json
import math
from typing import Any

MAX_INTEGER_DIGITS = 18


def json_depth_exceeds(text: str, limit: int) -> bool:
    """True when ``text``'s arrays/objects nest deeper than ``limit`` (strings are skipped)."""
    depth = 0
    in_string = False
    escaped = False
    for character in text:
        if in_string:
            if escaped:
                escaped = False
            elif character == "\\":
                escaped = True
            elif character == '"':
                in_string = False
        elif character == '"':
            in_string = True
        elif character in "[{":
            depth += 1
            if depth > limit:
                return True
        elif character in "]}":
            depth -= 1
    return False


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _integer(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise ValueError(f"a number has more than {MAX_INTEGER_DIGITS} digits")
    return int(text)


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("a number is too large")
    return value


def load_bounded_json(text: str, *, max_depth: int) -> Any:
    """``json.loads`` within ``max_depth`` levels, finite numbers and bounded integers."""
    if json_depth_exceeds(text, max_depth):
        raise ValueError(f"the JSON is nested more than {max_depth} levels deep")
    try:
        return json.loads(
            text, parse_constant=_refuse_constant, parse_int=_integer, parse_float=_float
        )
    except RecursionError:
        raise ValueError("the JSON is nested too deeply") from None
