"""Lab scenarios: YAML files naming a censor's rules and the outcome they should produce.

Rules refer to the lab's *services* (``turn-udp``, ``turn-tcp``, ``turn-tls``, ``echo``) rather
than to addresses and ports, which the lab picks at run time. The file format is documented in
``docs/lab.md``; presets live in ``assets/scenarios/``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from callpath.core.i18n import _, current_language
from callpath.core.model.errors import LocatedError
from callpath.core.model.yaml_input import (
    YamlLimits,
    check_list_length,
    compose_yaml,
    plain_number,
    read_input_file,
    shown,
)
from callpath.core.paths.registry import PATHS, ProxyKind, path_ids
from callpath.core.resources import asset_path

SCENARIO_VERSION = 1
SERVICES = ("turn-udp", "turn-tcp", "turn-tls", "masque", "echo", "control")
# Paths a scenario runs unless it lists its own; the proxy paths go through the lab's stand-in
# for the user's circumvention tool and are run only by scenarios that list them.
# The lab's stand-in is a SOCKS5 proxy, so it runs no HTTP-proxy path.
LAB_PATHS = tuple(path for path in path_ids() if PATHS[path].proxy is None)
LAB_PROXY_PATHS = tuple(path for path in path_ids() if PATHS[path].proxy is ProxyKind.SOCKS5)


# The user's local proxies a scenario offers to ``callpath check`` (stand-ins on the client side
# whose tunnels leave outside the censor): a SOCKS5 that carries UDP, one that does not, HTTP.
CHECK_PROXIES = ("socks5", "socks5-tcp", "http")
REACHABILITY = ("works", "tcp_only", "blocked", "intermittent", "unknown")
NETWORK_STATES = ("online", "offline", "allowlist")


def standin_services() -> tuple[str, ...]:
    """Services of the messenger check's stand-ins (``callpath.core.lab.standins``)."""
    from callpath.core.messengers.catalog import load_catalog

    return ("domestic", "public-stun", *(f"messenger-{e.id}" for e in load_catalog()))


class ScenarioError(LocatedError):
    """A scenario that cannot be used."""


@dataclass(frozen=True)
class RuleSpec:
    """One censor rule as written in a scenario: its kind and validated parameters."""

    kind: str
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MessengerExpectation:
    messages: str | None = None  # a REACHABILITY value; None: not checked
    calls: str | None = None


@dataclass(frozen=True)
class Expectation:
    voice: frozenset[str]  # exactly the paths that must restore voice
    video: frozenset[str]
    mechanisms: frozenset[str] = frozenset()  # named by the diagnosis, where it runs
    # ``callpath check`` on the scenario: network state, messengers directly and through the
    # scenario's first check proxy (empty: the check is not part of the expectation).
    network: str | None = None
    messengers: Mapping[str, MessengerExpectation] = field(default_factory=dict)
    messengers_through_proxy: Mapping[str, MessengerExpectation] = field(default_factory=dict)

    @property
    def checks_messengers(self) -> bool:
        return bool(self.network or self.messengers or self.messengers_through_proxy)


@dataclass(frozen=True)
class HeldPathExpectation:
    """How one path's held call should end (``callpath lab --hold``; docs/lab.md)."""

    ended: str  # a HoldEnd value
    mechanism: str | None = None  # None: no mechanism is named (or, for held, none applies)
    flow_age_s: tuple[float, float] | None = None  # where the stop or fall may lie
    flow_bytes: tuple[int, int] | None = None  # bytes sent + received by then


@dataclass(frozen=True)
class HoldExpectation:
    """What a hold of ``seconds`` on the scenario shows, per path held."""

    seconds: float
    paths: Mapping[str, HeldPathExpectation] = field(default_factory=dict)


HOLD_ENDS = ("held", "media_stopped", "degraded")
HOLD_MECHANISMS = (
    "flow_cut",
    "cut_after_time",
    "cut_after_volume",
    "relay_allocation_expired",
    "relay_permission_expired",
    "rate_capped_after_burst",
)


@dataclass(frozen=True)
class Scenario:
    id: str
    title: Mapping[str, str]  # language -> text
    explanation: Mapping[str, str]
    rules: tuple[RuleSpec, ...]
    expect: Expectation
    paths: tuple[str, ...] = tuple(LAB_PATHS)
    source: Path | None = None
    check_proxies: tuple[str, ...] = ("socks5",)
    # When the behaviour was observed in the field (YYYY-MM or YYYY-MM-DD) and where it was
    # reported: every preset names both.
    observed: str = ""
    sources: tuple[str, ...] = ()
    # What the lab should measure when the TLS relay is also tried under other server names
    # (``callpath lab --relay-sni``); None: the same as ``expect``.
    expect_with_sni: Expectation | None = None
    # What ``callpath lab --hold`` shows on this scenario; None: the scenario expects nothing.
    hold: HoldExpectation | None = None

    def labelled_title(self) -> str:
        """The title with the date its behaviour was observed, for preset lists."""
        if not self.observed:
            return self.text("title")
        return _("{title} (observed {date})").format(title=self.text("title"), date=self.observed)

    def explanation_with_sources(self) -> str:
        """The explanation, then where the behaviour was reported, for the app's preset views."""
        explanation = self.text("explanation")
        if not self.sources:
            return explanation
        sources = "; ".join(self.sources)
        return explanation + "\n" + _("Sources: {sources}").format(sources=sources)

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
    "freeze_tcp": {
        "after_bytes": ((int,), False),
        "after_bytes_min": ((int,), False),
        "after_bytes_max": ((int,), False),
        "seed": ((int,), False),
        "services": ((list,), False),
        "except_names": ((list,), False),
    },
    "drop_quic": {"names": ((list,), False)},
    "block_tcp_connect": {"services": ((list,), True), "mode": ((str,), False)},
    "dns_nxdomain": {"names": ((list,), True), "transports": ((list,), False)},
    "dns_bogus": {"names": ((list,), True), "transports": ((list,), False)},
    "unknown_names": {"names": ((list,), True)},
    "allow_only": {"services": ((list,), True)},
    "drop_unrecognised_udp": {},
    "expire_idle_binding": {"idle_s": (_NUMBER, True)},
}
_MODES = ("reset", "drop")
_OBSERVED = re.compile(r"^(19|20)\d\d-(0[1-9]|1[0-2])(-(0[1-9]|[12]\d|3[01]))?$")
# What a scenario may hold (docs/lab.md, "Limits").
SCENARIO_LIMITS = YamlLimits(max_bytes=256 * 1024, max_depth=16, max_nodes=10_000)
MAX_RULES = 64
MAX_LIST_ITEMS = 64
# Upper bounds of rule parameters; the lower bound of every number is 0.
PARAMETER_MAXIMA: dict[str, float] = {
    "max_packets": 10**9,
    "max_bytes": 10**12,
    "max_seconds": 3600,
    "idle_s": 3600,
    "residual_block_s": 3600,
    "rate_kbps": 10**7,
    "burst_bytes": 10**9,
    "percent": 100,
    "seed": 2**63 - 1,
    "rtt_ms": 60_000,
    "jitter_ms": 60_000,
    "after_bytes": 10**12,
    "after_bytes_min": 10**12,
    "after_bytes_max": 10**12,
}
_PLAIN_SCALAR_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "null", "timestamp")
)


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
        for name, (key, _value) in items.items():
            if name not in allowed:
                hint = difflib.get_close_matches(name, allowed, n=1)
                suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
                raise self.error(
                    key,
                    f"unknown key {name!r} in {what}{suggestion} "
                    f"(expected one of: {', '.join(allowed)})",
                )

    def scalar(self, node: Node, what: str) -> Any:
        """A plain value: text, a number in plain decimal, true/false or nothing."""
        if not isinstance(node, ScalarNode):
            raise self.error(node, f"{what} must be a single value")
        tag = str(node.tag)
        if tag not in _PLAIN_SCALAR_TAGS:
            raise self.error(node, f"the YAML tag {shown(tag)} is not allowed; remove it")
        if tag.endswith((":int", ":float")):
            number = plain_number(node)
            if number is None:
                raise self.error(
                    node,
                    f"{what} must be a number written in plain decimal (e.g. 5 or 2.5), "
                    f"not {shown(node.value)!r}",
                )
            return number
        if tag.endswith(":bool"):
            return str(node.value).lower() in ("yes", "true", "on", "y")
        if tag.endswith(":null"):
            return None
        return str(node.value)

    def limit(self, node: SequenceNode, limit: int, what: str) -> None:
        check_list_length(node, limit=limit, where=what, file=self.file, error_type=ScenarioError)

    def string_list(self, node: Node, what: str) -> list[str]:
        if not isinstance(node, SequenceNode):
            raise self.error(node, f"{what} must be a list, for example [turn-tls]")
        self.limit(node, MAX_LIST_ITEMS, what)
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
        for language, (_key, value) in items.items():
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
            if name == "transports" and not values:
                raise reader.error(value_node, f"{kind}.transports must not be empty")
            if name == "services":
                known = (*SERVICES, *standin_services())
                for service in values:
                    if service not in known:
                        raise reader.error(
                            value_node,
                            f"unknown lab service {service!r}; services are: {', '.join(known)}",
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
        maximum = PARAMETER_MAXIMA.get(name)
        if maximum is not None and isinstance(scalar, int | float) and scalar > maximum:
            raise reader.error(value_node, f"{kind}.{name} must be at most {maximum}")
        params[name] = scalar
    if kind == "freeze_tcp":
        ranged = {"after_bytes_min", "after_bytes_max"} & set(params)
        if ranged and "after_bytes" in params:
            raise reader.error(key, "freeze_tcp takes after_bytes or a min/max range, not both")
        if ranged and ranged != {"after_bytes_min", "after_bytes_max"}:
            raise reader.error(key, "freeze_tcp needs both after_bytes_min and after_bytes_max")
        if ranged and params["after_bytes_min"] > params["after_bytes_max"]:
            raise reader.error(key, "freeze_tcp.after_bytes_min must not exceed after_bytes_max")
        if "seed" in params and not ranged:
            raise reader.error(key, "freeze_tcp.seed only applies to a min/max range")
    if kind == "cut_udp_flow" and not {"max_packets", "max_bytes", "max_seconds"} & set(params):
        raise reader.error(key, "cut_udp_flow needs max_packets, max_bytes or max_seconds")
    return RuleSpec(kind, params)


def parse_scenario(text: str, source: Path | None = None) -> Scenario:
    file = str(source) if source is not None else None
    reader = _Reader(file)
    try:
        root = compose_yaml(text, file=file, limits=SCENARIO_LIMITS, error_type=ScenarioError)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = None if mark is None else int(mark.line) + 1
        problem = getattr(error, "problem", None) or str(error)
        raise ScenarioError(f"invalid YAML: {problem}", file=file, line=line) from None
    if root is None:
        raise ScenarioError("the scenario file is empty", file=file)
    top = reader.mapping(root, "the scenario")
    reader.check_keys(
        top,
        (
            "version",
            "id",
            "title",
            "explanation",
            "observed",
            "sources",
            "rules",
            "expect",
            "expect_with_sni",
            "paths",
            "check_proxies",
            "hold",
        ),
        "the scenario",
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
    if (
        not isinstance(scenario_id, str)
        or not scenario_id.replace("-", "").isalnum()
        or not scenario_id.isascii()
        or len(scenario_id) > 64
    ):
        raise reader.error(top["id"][1], "id must be a word of letters, digits and dashes")
    rules_node = top["rules"][1]
    if not isinstance(rules_node, SequenceNode):
        raise reader.error(rules_node, "rules must be a list (use [] for an open network)")
    reader.limit(rules_node, MAX_RULES, "rules")
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
    check_proxies: tuple[str, ...] = ("socks5",)
    if "check_proxies" in top:
        node = top["check_proxies"][1]
        kinds = (
            []
            if isinstance(node, SequenceNode) and not node.value
            else reader.string_list(node, "check_proxies")
        )
        for kind in kinds:
            if kind not in CHECK_PROXIES:
                raise reader.error(
                    node, f"check_proxies may list {', '.join(CHECK_PROXIES)}, not {kind!r}"
                )
        check_proxies = tuple(kinds)
    expectation = _expectation(reader, top["expect"][1], "expect", paths)
    with_sni = (
        _expectation(reader, top["expect_with_sni"][1], "expect_with_sni", paths)
        if "expect_with_sni" in top
        else None
    )
    observed = ""
    if "observed" in top:
        observed = str(reader.scalar(top["observed"][1], "observed"))
        if not _OBSERVED.match(observed):
            raise reader.error(top["observed"][1], "observed must be a date: YYYY-MM or YYYY-MM-DD")
    sources: tuple[str, ...] = ()
    if "sources" in top:
        sources = tuple(reader.string_list(top["sources"][1], "sources"))
        if not sources:
            raise reader.error(top["sources"][1], "sources must name at least one report")
    return Scenario(
        id=scenario_id,
        title=reader.texts(top["title"][1], "title"),
        explanation=reader.texts(top["explanation"][1], "explanation"),
        rules=rules,
        expect=expectation,
        paths=paths,
        source=source,
        observed=observed,
        sources=sources,
        expect_with_sni=with_sni,
        check_proxies=check_proxies,
        hold=_hold_expectation(reader, top["hold"][1], paths) if "hold" in top else None,
    )


def _hold_expectation(reader: _Reader, node: Node, paths: tuple[str, ...]) -> HoldExpectation:
    items = reader.mapping(node, "hold")
    reader.check_keys(items, ("seconds", "paths"), "hold")
    if "seconds" not in items or "paths" not in items:
        raise reader.error(node, "hold needs 'seconds' and 'paths'")
    seconds = reader.scalar(items["seconds"][1], "hold.seconds")
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 < seconds <= 3600:
        raise reader.error(items["seconds"][1], "hold.seconds must be a number of seconds (1–3600)")
    expected: dict[str, HeldPathExpectation] = {}
    for path_id, (key, value) in reader.mapping(items["paths"][1], "hold.paths").items():
        if path_id not in paths:
            raise reader.error(key, f"hold.paths: {path_id!r} is not one of the scenario's paths")
        what = f"hold.paths.{path_id}"
        fields = reader.mapping(value, what)
        reader.check_keys(fields, ("ended", "mechanism", "flow_age_s", "flow_bytes"), what)
        if "ended" not in fields:
            raise reader.error(value, f"{what} needs 'ended' ({', '.join(HOLD_ENDS)})")
        ended = reader.scalar(fields["ended"][1], f"{what}.ended")
        if ended not in HOLD_ENDS:
            raise reader.error(
                fields["ended"][1], f"{what}.ended must be one of: {', '.join(HOLD_ENDS)}"
            )
        mechanism = None
        if "mechanism" in fields:
            mechanism = reader.scalar(fields["mechanism"][1], f"{what}.mechanism")
            if mechanism not in HOLD_MECHANISMS:
                raise reader.error(
                    fields["mechanism"][1],
                    f"{what}.mechanism must be one of: {', '.join(HOLD_MECHANISMS)}",
                )
        expected[path_id] = HeldPathExpectation(
            ended=str(ended),
            mechanism=mechanism,
            flow_age_s=_range(reader, fields, "flow_age_s", what, float),
            flow_bytes=_range(reader, fields, "flow_bytes", what, int),
        )
    return HoldExpectation(float(seconds), expected)


def _range(
    reader: _Reader,
    fields: dict[str, tuple[Node, Node]],
    name: str,
    what: str,
    kind: type[int] | type[float],
) -> Any:
    if name not in fields:
        return None
    node = fields[name][1]
    values = [reader.scalar(item, f"{what}.{name}") for item in getattr(node, "value", ())]
    if (
        not isinstance(node, SequenceNode)
        or len(values) != 2
        or any(isinstance(v, bool) or not isinstance(v, int | float) or v < 0 for v in values)
        or values[0] > values[1]
    ):
        raise reader.error(node, f"{what}.{name} must be [low, high], two numbers")
    return (kind(values[0]), kind(values[1]))


def _expectation(reader: _Reader, node: Node, what: str, paths: tuple[str, ...]) -> Expectation:
    expect_items = reader.mapping(node, what)
    reader.check_keys(
        expect_items,
        ("voice", "video", "mechanisms", "network", "messengers", "messengers_through_proxy"),
        what,
    )
    network: str | None = None
    if "network" in expect_items:
        network = reader.scalar(expect_items["network"][1], f"{what}.network")
        if network not in NETWORK_STATES:
            raise reader.error(
                expect_items["network"][1],
                f"{what}.network must be one of: {', '.join(NETWORK_STATES)}",
            )
    messenger_expectations = {
        name: _messenger_expectations(reader, expect_items[name][1], f"{what}.{name}")
        for name in ("messengers", "messengers_through_proxy")
        if name in expect_items
    }
    expected: dict[str, frozenset[str]] = {}
    for name in ("voice", "video", "mechanisms"):
        if name not in expect_items:
            if name == "mechanisms":
                expected[name] = frozenset()
                continue
            raise reader.error(node, f"{what} needs {name!r} (a list of path ids)")
        item = expect_items[name][1]
        values = (
            reader.string_list(item, f"{what}.{name}")
            if not (isinstance(item, SequenceNode) and not item.value)
            else []
        )
        if name != "mechanisms":
            for path_id in values:
                if path_id not in paths:
                    raise reader.error(item, f"{what}.{name} names {path_id!r}, not a lab path")
        expected[name] = frozenset(values)
    return Expectation(
        expected["voice"],
        expected["video"],
        expected["mechanisms"],
        network=network,
        messengers=messenger_expectations.get("messengers", {}),
        messengers_through_proxy=messenger_expectations.get("messengers_through_proxy", {}),
    )


def _messenger_expectations(
    reader: _Reader, node: Node, what: str
) -> dict[str, MessengerExpectation]:
    from callpath.core.messengers.catalog import load_catalog

    ids = {entry.id for entry in load_catalog()}
    expectations: dict[str, MessengerExpectation] = {}
    for messenger, (key, value) in reader.mapping(node, what).items():
        if messenger not in ids:
            raise reader.error(
                key, f"{what} names {messenger!r}, not a messenger ({', '.join(sorted(ids))})"
            )
        items = reader.mapping(value, f"{what}.{messenger}")
        reader.check_keys(items, ("messages", "calls"), f"{what}.{messenger}")
        values: dict[str, str] = {}
        for name, (_key, value_node) in items.items():
            text = reader.scalar(value_node, f"{what}.{messenger}.{name}")
            if text not in REACHABILITY:
                raise reader.error(
                    value_node,
                    f"{what}.{messenger}.{name} must be one of: {', '.join(REACHABILITY)}",
                )
            values[name] = text
        expectations[messenger] = MessengerExpectation(values.get("messages"), values.get("calls"))
    return expectations


def load_scenario(path: Path) -> Scenario:
    """Read and parse a scenario file (a regular file of at most 256 KB, UTF-8)."""
    text = read_input_file(path, limits=SCENARIO_LIMITS, error_type=ScenarioError)
    return parse_scenario(text, path)


def preset_directory() -> Path:
    return asset_path("scenarios")


def load_preset(path: Path) -> Scenario:
    """A built-in preset: like any scenario, and it must say when and where it was observed."""
    scenario = load_scenario(path)
    if not scenario.observed or not scenario.sources:
        raise ScenarioError(
            "a preset needs 'observed' (the date its behaviour was seen) and 'sources'",
            file=str(path),
        )
    return scenario


def list_presets() -> list[Scenario]:
    return [load_preset(path) for path in sorted(preset_directory().glob("*.yaml"))]


def find_scenario(name_or_file: str) -> Scenario:
    """A preset by id, or a scenario file by path."""
    candidate = Path(name_or_file)
    if candidate.suffix in (".yaml", ".yml") or candidate.exists():
        return load_scenario(candidate)
    preset = preset_directory() / f"{name_or_file}.yaml"
    if preset.is_file():
        return load_preset(preset)
    known = ", ".join(sorted(p.stem for p in preset_directory().glob("*.yaml")))
    raise ScenarioError(f"no lab scenario named {name_or_file!r}; presets: {known}")
