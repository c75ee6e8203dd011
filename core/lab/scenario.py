"""Lab scenarios: YAML files naming a censor's rules and the outcome they should produce.

Rules refer to the lab's *services* (``turn-udp``, ``turn-tcp``, ``turn-tls``, ``echo``) rather
than to addresses and ports, which the lab picks at run time. The file format is documented in
``docs/lab.md``; presets live in ``assets/scenarios/``.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from callpath.core.i18n import current_language
from callpath.core.model.errors import LocatedError
from callpath.core.model.results import PathId
from callpath.core.resources import asset_path

SCENARIO_VERSION = 1
SERVICES = ("turn-udp", "turn-tcp", "turn-tls", "masque", "echo", "control")
# Paths a scenario runs unless it lists its own; the proxy paths go through the lab's stand-in
# for the user's circumvention tool and are run only by scenarios that list them.
LAB_PATHS = (PathId.DIRECT, PathId.TURN_UDP, PathId.TURN_TCP, PathId.TURN_TLS, PathId.MASQUE)
LAB_PROXY_PATHS = (PathId.SOCKS5_UDP, PathId.SOCKS5_TURN)


class ScenarioError(LocatedError):
    """A scenario that cannot be used."""


@dataclass(frozen=True)
class RuleSpec:
    """One censor rule as written in a scenario: its kind and validated parameters."""

    kind: str
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Expectation:
    voice: frozenset[str]  # exactly the paths that must restore voice
    video: frozenset[str]
    mechanisms: frozenset[str] = frozenset()  # named by the diagnosis, where it runs


@dataclass(frozen=True)
class Scenario:
    id: str
    title: Mapping[str, str]  # language -> text
    explanation: Mapping[str, str]
    rules: tuple[RuleSpec, ...]
    expect: Expectation
    paths: tuple[str, ...] = tuple(LAB_PATHS)
    source: Path | None = None

    def text(self, field_name: str) -> str:
        """The title or explanation in the current language, English when not translated."""
        texts: Mapping[str, str] = getattr(self, field_name)
        return texts.get(current_language()) or texts.get("en", "")


# name -> {parameter: (type, required)}
_NUMBER = (int, float)
RULE_PARAMETERS: dict[str, dict[str, tuple[tuple[type, ...], bool]]] = {
    "drop_udp": {},
    "drop_udp_to": {"services": ((list,), True)},
    "drop_stun": {},
    "cut_udp_flow": {
        "max_packets": ((int,), False),
        "max_bytes": ((int,), False),
        "max_seconds": (_NUMBER, False),
        "residual_block_s": (_NUMBER, False),
    },
    "throttle": {
        "rate_kbps": (_NUMBER, True),
        "burst_bytes": ((int,), False),
        "transports": ((list,), False),
        "shared": ((bool,), False),
    },
    "random_loss": {"percent": (_NUMBER, True), "seed": ((int,), False)},
    "delay": {"rtt_ms": (_NUMBER, True), "jitter_ms": (_NUMBER, False), "seed": ((int,), False)},
    "block_tls_sni": {"names": ((list,), True), "mode": ((str,), False)},
    "freeze_tcp": {"after_bytes": ((int,), False), "services": ((list,), False)},
    "drop_quic": {"names": ((list,), False)},
    "block_tcp_connect": {"services": ((list,), True), "mode": ((str,), False)},
    "dns_nxdomain": {"names": ((list,), True)},
    "dns_bogus": {"names": ((list,), True)},
    "unknown_names": {"names": ((list,), True)},
}
_MODES = ("reset", "drop")


class _Reader:
    def __init__(self, file: str | None) -> None:
        self.file = file

    def error(self, node: Node | None, message: str) -> ScenarioError:
        line = None if node is None else int(node.start_mark.line) + 1
        return ScenarioError(message, file=self.file, line=line)

    def mapping(self, node: Node, what: str) -> dict[str, tuple[Node, Node]]:
        if not isinstance(node, MappingNode):
            raise self.error(node, f"{what} must be a mapping of keys to values")
        result: dict[str, tuple[Node, Node]] = {}
        for key, value in node.value:
            if not isinstance(key, ScalarNode):
                raise self.error(key, f"keys in {what} must be plain words")
            if key.value in result:
                raise self.error(key, f"{key.value!r} appears twice in {what}")
            result[key.value] = (key, value)
        return result

    def check_keys(
        self, items: dict[str, tuple[Node, Node]], allowed: tuple[str, ...], what: str
    ) -> None:
        for name, (key, _) in items.items():
            if name not in allowed:
                hint = difflib.get_close_matches(name, allowed, n=1)
                suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
                raise self.error(
                    key,
                    f"unknown key {name!r} in {what}{suggestion} "
                    f"(expected one of: {', '.join(allowed)})",
                )

    def scalar(self, node: Node, what: str) -> Any:
        if not isinstance(node, ScalarNode):
            raise self.error(node, f"{what} must be a single value")
        return yaml.safe_load(yaml.serialize(node))

    def string_list(self, node: Node, what: str) -> list[str]:
        if not isinstance(node, SequenceNode):
            raise self.error(node, f"{what} must be a list, for example [turn-tls]")
        values = []
        for item in node.value:
            value = self.scalar(item, f"an item of {what}")
            if not isinstance(value, str) or not value:
                raise self.error(item, f"items of {what} must be non-empty words")
            values.append(value)
        return values

    def texts(self, node: Node, what: str) -> dict[str, str]:
        if isinstance(node, ScalarNode):
            return {"en": str(self.scalar(node, what))}
        items = self.mapping(node, what)
        texts = {}
        for language, (_, value) in items.items():
            text = self.scalar(value, f"{what}.{language}")
            if not isinstance(text, str) or not text.strip():
                raise self.error(value, f"{what}.{language} must be text")
            texts[language] = text.strip()
        if "en" not in texts:
            raise self.error(node, f"{what} needs an English text under 'en'")
        return texts


def _rule(reader: _Reader, node: Node) -> RuleSpec:
    if not isinstance(node, MappingNode) or len(node.value) != 1:
        raise reader.error(node, "each rule is one 'kind: {parameters}' entry, e.g. drop_udp: {}")
    key, value = node.value[0]
    kind = str(key.value)
    if kind not in RULE_PARAMETERS:
        hint = difflib.get_close_matches(kind, RULE_PARAMETERS, n=1)
        suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
        raise reader.error(
            key,
            f"unknown rule {kind!r}{suggestion} (known rules: {', '.join(RULE_PARAMETERS)})",
        )
    allowed = RULE_PARAMETERS[kind]
    items = (
        {}
        if (isinstance(value, ScalarNode) and value.value in ("", "~", "null"))
        else (reader.mapping(value, f"rule {kind}"))
    )
    reader.check_keys(items, tuple(allowed), f"rule {kind}")
    params: dict[str, Any] = {}
    for name, (types, required) in allowed.items():
        if name not in items:
            if required:
                raise reader.error(key, f"rule {kind} needs {name!r}")
            continue
        _, value_node = items[name]
        if list in types:
            values = reader.string_list(value_node, f"{kind}.{name}")
            if name == "transports" and not set(values) <= {"udp", "tcp"}:
                raise reader.error(value_node, f"{kind}.transports may list udp and tcp")
            if name == "services":
                for service in values:
                    if service not in SERVICES:
                        raise reader.error(
                            value_node,
                            f"unknown lab service {service!r}; services are: {', '.join(SERVICES)}",
                        )
            params[name] = tuple(values)
            continue
        scalar = reader.scalar(value_node, f"{kind}.{name}")
        if types == (bool,):
            if not isinstance(scalar, bool):
                raise reader.error(value_node, f"{kind}.{name} must be true or false")
            params[name] = scalar
            continue
        if isinstance(scalar, bool) or not isinstance(scalar, types):
            expected = (
                "a whole number"
                if types == (int,)
                else ("a number" if types == _NUMBER else "a word")
            )
            raise reader.error(value_node, f"{kind}.{name} must be {expected}")
        if isinstance(scalar, int | float) and scalar < 0:
            raise reader.error(value_node, f"{kind}.{name} must not be negative")
        if name == "mode" and scalar not in _MODES:
            raise reader.error(value_node, f"{kind}.mode must be one of: {', '.join(_MODES)}")
        if name == "percent" and isinstance(scalar, int | float) and scalar > 100:
            raise reader.error(value_node, f"{kind}.percent must be between 0 and 100")
        params[name] = scalar
    if kind == "cut_udp_flow" and not {"max_packets", "max_bytes", "max_seconds"} & set(params):
        raise reader.error(key, "cut_udp_flow needs max_packets, max_bytes or max_seconds")
    return RuleSpec(kind, params)


def parse_scenario(text: str, source: Path | None = None) -> Scenario:
    file = str(source) if source is not None else None
    reader = _Reader(file)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = None if mark is None else int(mark.line) + 1
        problem = getattr(error, "problem", None) or str(error)
        raise ScenarioError(f"invalid YAML: {problem}", file=file, line=line) from None
    if root is None:
        raise ScenarioError("the scenario file is empty", file=file)
    top = reader.mapping(root, "the scenario")
    reader.check_keys(
        top, ("version", "id", "title", "explanation", "rules", "expect", "paths"), "the scenario"
    )
    for required in ("version", "id", "title", "explanation", "rules", "expect"):
        if required not in top:
            raise reader.error(root, f"the scenario needs {required!r}")
    version = reader.scalar(top["version"][1], "version")
    if version != SCENARIO_VERSION:
        raise reader.error(
            top["version"][1], f"version must be {SCENARIO_VERSION} (this CallPath reads version 1)"
        )
    scenario_id = reader.scalar(top["id"][1], "id")
    if not isinstance(scenario_id, str) or not scenario_id.replace("-", "").isalnum():
        raise reader.error(top["id"][1], "id must be a word of letters, digits and dashes")
    rules_node = top["rules"][1]
    if not isinstance(rules_node, SequenceNode):
        raise reader.error(rules_node, "rules must be a list (use [] for an open network)")
    rules = tuple(_rule(reader, node) for node in rules_node.value)
    paths: tuple[str, ...] = tuple(LAB_PATHS)
    if "paths" in top:
        listed = reader.string_list(top["paths"][1], "paths")
        for path_id in listed:
            if path_id not in LAB_PATHS + LAB_PROXY_PATHS:
                known = ", ".join(LAB_PATHS + LAB_PROXY_PATHS)
                raise reader.error(
                    top["paths"][1],
                    f"the lab cannot run path {path_id!r}; lab paths: {known}",
                )
        paths = tuple(listed)
    expect_items = reader.mapping(top["expect"][1], "expect")
    reader.check_keys(expect_items, ("voice", "video", "mechanisms"), "expect")
    expected: dict[str, frozenset[str]] = {}
    for name in ("voice", "video", "mechanisms"):
        if name not in expect_items:
            if name == "mechanisms":
                expected[name] = frozenset()
                continue
            raise reader.error(top["expect"][1], f"expect needs {name!r} (a list of path ids)")
        node = expect_items[name][1]
        values = (
            reader.string_list(node, f"expect.{name}")
            if not (isinstance(node, SequenceNode) and not node.value)
            else []
        )
        if name != "mechanisms":
            for path_id in values:
                if path_id not in paths:
                    raise reader.error(node, f"expect.{name} names {path_id!r}, not a lab path")
        expected[name] = frozenset(values)
    return Scenario(
        id=scenario_id,
        title=reader.texts(top["title"][1], "title"),
        explanation=reader.texts(top["explanation"][1], "explanation"),
        rules=rules,
        expect=Expectation(expected["voice"], expected["video"], expected["mechanisms"]),
        paths=paths,
        source=source,
    )


def load_scenario(path: Path) -> Scenario:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError("no such scenario file", file=str(path)) from None
    except UnicodeDecodeError:
        raise ScenarioError("the file is not UTF-8 text", file=str(path)) from None
    except OSError as error:
        raise ScenarioError(f"cannot read the file: {error.strerror}", file=str(path)) from None
    return parse_scenario(text, path)


def preset_directory() -> Path:
    return asset_path("scenarios")


def list_presets() -> list[Scenario]:
    return [load_scenario(path) for path in sorted(preset_directory().glob("*.yaml"))]


def find_scenario(name_or_file: str) -> Scenario:
    """A preset by id, or a scenario file by path."""
    candidate = Path(name_or_file)
    if candidate.suffix in (".yaml", ".yml") or candidate.exists():
        return load_scenario(candidate)
    preset = preset_directory() / f"{name_or_file}.yaml"
    if preset.is_file():
        return load_scenario(preset)
    known = ", ".join(sorted(p.stem for p in preset_directory().glob("*.yaml")))
    raise ScenarioError(f"no lab scenario named {name_or_file!r}; presets: {known}")
