"""The workshop's censor composer: switches and sliders that become lab rules.

Pure and Qt-free. Each ``RuleControl`` produces one ``RuleSpec`` of a kind from
``callpath.core.lab.scenario.RULE_PARAMETERS``, with the same parameters a scenario file would
hold. The
composed rules are written out as a scenario file and read back with ``parse_scenario``, so the
workshop can only run what a scenario file could say, checked by the same rules (and a trainer
can save it as one).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from callpath.core.i18n import LANGUAGES, N_, _, current_language
from callpath.core.lab.network import MASQUE_NAME, TURN_NAME
from callpath.core.lab.scenario import (
    LAB_PATHS,
    RULE_PARAMETERS,
    RuleSpec,
    Scenario,
    parse_scenario,
)

WORKSHOP_ID = "workshop"


@dataclass(frozen=True)
class Slider:
    """A numeric parameter of a rule; values are whole numbers in ``unit``."""

    param: str
    label: str  # N_()
    minimum: int
    maximum: int
    default: int
    unit: str = ""  # N_()
    step: int = 1


@dataclass(frozen=True)
class RuleControl:
    key: str  # the rule kind it produces
    title: str  # N_()
    hint: str  # N_(): what the censor does, in plain words
    fixed: Mapping[str, Any] = field(default_factory=dict)  # list and word parameters
    sliders: tuple[Slider, ...] = ()


# Order matters twice: the presenter's number keys follow it, and rules are applied in it
# (``delay`` last, as docs/lab.md asks).
CONTROLS: tuple[RuleControl, ...] = (
    RuleControl(
        "drop_udp",
        N_("Drop all UDP"),
        N_("Every UDP packet is lost; only TCP gets through."),
    ),
    RuleControl(
        "drop_stun",
        N_("Filter STUN"),
        N_("Call set-up (STUN) packets are recognised and lost; other UDP passes."),
    ),
    RuleControl(
        "drop_udp_to",
        N_("Drop UDP to the call relays"),
        N_("UDP to the echo peer and the relay's UDP port is lost; TCP is untouched."),
        fixed={"services": ("echo", "turn-udp")},
    ),
    RuleControl(
        "block_tcp_connect",
        N_("Block the relay's TCP port"),
        N_("Connections to the relay's plain TCP port never get an answer."),
        fixed={"services": ("turn-tcp",), "mode": "drop"},
    ),
    RuleControl(
        "block_tls_sni",
        N_("Reset TLS by server name"),
        N_("TLS connections naming the relay are reset right after the first message."),
        fixed={"names": (TURN_NAME,), "mode": "reset"},
    ),
    RuleControl(
        "cut_udp_flow",
        N_("Cut UDP flows"),
        N_("A UDP flow dies after a few seconds, like calls that drop mid-sentence."),
        sliders=(Slider("max_seconds", N_("cut after"), 1, 20, 2, N_("s")),),
    ),
    RuleControl(
        "throttle",
        N_("Throttle UDP"),
        N_("UDP is slowed to a trickle; what does not fit is lost."),
        fixed={"transports": ("udp",)},
        sliders=(Slider("rate_kbps", N_("rate"), 16, 2000, 40, N_("kbit/s"), 8),),
    ),
    RuleControl(
        "freeze_tcp",
        N_("Freeze TCP"),
        N_("After some kilobytes from a server, nothing more arrives (no reset)."),
        sliders=(Slider("after_bytes", N_("freeze after"), 4096, 65536, 16384, N_("bytes"), 1024),),
    ),
    RuleControl(
        "drop_quic",
        N_("Drop QUIC"),
        N_("QUIC (HTTP/3) packets are lost: MASQUE cannot connect."),
    ),
    RuleControl(
        "dns_nxdomain",
        N_("Tamper DNS"),
        N_("The network's resolver says the relay's name does not exist."),
        fixed={"names": (TURN_NAME, MASQUE_NAME)},
    ),
    RuleControl(
        "random_loss",
        N_("Random loss"),
        N_("Each UDP packet is lost with this probability: a bad network, not a censor."),
        fixed={"seed": 1},
        sliders=(Slider("percent", N_("loss"), 1, 50, 8, N_("%")),),
    ),
    RuleControl(
        "delay",
        N_("Delay"),
        N_("Every packet waits: a long round trip with jitter, like a satellite link."),
        fixed={"seed": 1},
        sliders=(
            Slider("rtt_ms", N_("round trip"), 0, 1500, 300, N_("ms"), 10),
            Slider("jitter_ms", N_("jitter"), 0, 200, 20, N_("ms")),
        ),
    ),
)
CONTROL_KEYS = tuple(control.key for control in CONTROLS)
# The presenter's keys, in CONTROLS order: the number row, then the two keys after it.
PRESENTER_KEYS = ("1", "2", "3", "4", "5", "6", "7", "8", "9", "0", "-", "=")
assert set(CONTROL_KEYS) <= set(RULE_PARAMETERS), "every control must produce a known rule"


def control(key: str) -> RuleControl:
    return next(item for item in CONTROLS if item.key == key)


@dataclass
class RuleState:
    enabled: bool
    params: dict[str, Any]


def _defaults(item: RuleControl) -> dict[str, Any]:
    params = dict(item.fixed)
    params.update({slider.param: slider.default for slider in item.sliders})
    return params


def _fits_control(spec: RuleSpec) -> bool:
    """Whether the rule's control can show every parameter it has (a freeze with a range of
    cut points and an allowlist cannot: it stays as the scenario wrote it)."""
    item = control(spec.kind)
    shown = {slider.param for slider in item.sliders} | set(item.fixed)
    return set(spec.params) <= shown


class Composer:
    """The workshop's rules: one state per control, plus a scenario's rules no control has."""

    def __init__(self) -> None:
        self.base: Scenario | None = None
        self.states = {item.key: RuleState(False, _defaults(item)) for item in CONTROLS}
        self.extra: list[RuleSpec] = []

    def load(self, scenario: Scenario) -> None:
        """Start from a scenario: its rules switched on with its parameters, the rest off."""
        self.base = scenario
        self.states = {item.key: RuleState(False, _defaults(item)) for item in CONTROLS}
        self.extra = []
        for spec in scenario.rules:
            state = self.states.get(spec.kind)
            if state is None or state.enabled or not _fits_control(spec):
                self.extra.append(spec)
                continue
            state.enabled = True
            state.params.update(spec.params)

    def toggle(self, key: str) -> bool:
        state = self.states[key]
        state.enabled = not state.enabled
        return state.enabled

    def set_enabled(self, key: str, enabled: bool) -> None:
        self.states[key].enabled = enabled

    def set_value(self, key: str, param: str, value: int) -> None:
        self.states[key].params[param] = value

    def value(self, key: str, param: str) -> Any:
        return self.states[key].params.get(param)

    def rules(self) -> tuple[RuleSpec, ...]:
        """Enabled rules in the controls' order, the scenario's other rules, delay last."""
        chosen = [
            RuleSpec(key, dict(self.states[key].params))
            for key in CONTROL_KEYS
            if self.states[key].enabled and key != "delay"
        ]
        chosen.extend(self.extra)
        if self.states["delay"].enabled:
            chosen.append(RuleSpec("delay", dict(self.states["delay"].params)))
        return tuple(chosen)

    @property
    def modified(self) -> bool:
        """Whether the rules differ from the loaded scenario's."""
        if self.base is None:
            return bool(self.rules())
        return _normal(self.rules()) != _normal(self.base.rules)

    def scenario_text(self) -> str:
        """The composed censor as a scenario file (YAML)."""
        base = self.base
        if base is not None and not self.modified:
            title = dict(base.title)
            explanation = dict(base.explanation)
            scenario_id = base.id
            expect = {
                "voice": sorted(base.expect.voice),
                "video": sorted(base.expect.video),
                "mechanisms": sorted(base.expect.mechanisms),
            }
        else:
            scenario_id = f"{base.id}-{WORKSHOP_ID}" if base is not None else WORKSHOP_ID
            title = _texts(
                N_("Workshop: {title}") if base is not None else N_("Workshop: your own censor"),
                base,
            )
            explanation = {"en": "Rules composed in the workshop."}
            language = current_language()
            if language != "en":
                explanation[language] = _("Rules composed in the workshop.")
            # Nobody has said what these rules should restore: expect nothing to be compared.
            expect = {"voice": [], "video": []}
        document = {
            "version": 1,
            "id": scenario_id,
            "title": title,
            "explanation": explanation,
            "paths": [str(p) for p in (base.paths if base is not None else LAB_PATHS)],
            "rules": [{spec.kind: _plain(spec.params)} for spec in self.rules()],
            "expect": expect,
        }
        return yaml.safe_dump(document, allow_unicode=True, sort_keys=False)

    def scenario(self) -> Scenario:
        """The composed scenario, read back through the scenario file reader."""
        return parse_scenario(self.scenario_text())


def _texts(template: str, base: Scenario | None) -> dict[str, str]:
    """A title in English and in the current language (the run's report keeps the latter)."""
    english = template.format(title=base.title.get("en", base.id) if base is not None else "")
    texts = {"en": english}
    language = current_language()
    if language != "en" and language in LANGUAGES:
        texts[language] = _(template).format(title=base.text("title") if base else "")
    return texts


def _plain(params: Mapping[str, Any]) -> dict[str, Any]:
    return {key: list(v) if isinstance(v, tuple) else v for key, v in params.items()}


def _normal(rules: tuple[RuleSpec, ...]) -> list[tuple[str, dict[str, Any]]]:
    return [(spec.kind, _plain(spec.params)) for spec in rules]
