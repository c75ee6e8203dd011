"""Fuzzing the readers of user files (issue 21): profiles, lab scenarios and reports.

Whatever the input, a reader returns its value or raises its own error type with a one-line
message; never another exception (RecursionError, OverflowError, ValueError from ``int``...),
and never slowly. The hostile cases found this way are kept as files in tests/fixtures/hostile/.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callpath.core.lab.scenario import ScenarioError, parse_scenario
from callpath.core.profile.document import ProfileError, load_profile, parse_profile
from callpath.core.report.document import ReportError, load_report, report_to_dict
from tests.test_report import run_result

FUZZ = settings(
    max_examples=int(os.environ.get("CALLPATH_FUZZ_EXAMPLES", "150")),
    deadline=timedelta(seconds=2),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Scalars as written in YAML: the number forms YAML 1.1 knows, over-long and non-finite
# numbers, control characters, over-long host labels, aliases and tags.
HOSTILE_SCALARS = [
    "0x1", "0o7", "017", "0b101", "1_000", "1:00", "190:20:30", "-1", "0", "1e400",
    "1.0e+400", ".inf", "-.inf", ".nan", "9" * 5000, "1" + "0" * 400, "65536", "99999999",
    "4.5", "true", "~", "''", '"a\\0b"', '"a\\r\\nb"', '"\\t"', "!!python/none x", "!custom x",
    "*undefined", "&a x", "<<", "https://" + "a" * 300 + ".org", "https://a\u0085b.org",
    "stun:" + "b" * 64 + ".org", "turn:[::1", "socks5://[::1]:99999", "https://x.org:0",
    "[" * 60 + "]" * 60, "{" * 40 + "}" * 40, "${env:X}", "keyring:a/b", "https://[::1]:8443",
]  # fmt: skip

scalar = st.one_of(
    st.sampled_from(HOSTILE_SCALARS),
    st.integers().map(str),
    st.floats().map(repr),
    st.text(max_size=30).map(json.dumps),  # a double-quoted YAML string, escapes included
)

PROFILE_SECTIONS = [
    "version: {a}",
    "timeouts:\n  ice: {a}\n  dtls: {b}",
    "quality:\n  window_s: {a}\n  concurrency: {b}\n  video_width: {a}",
    "control:\n  host: {a}\n  tcp_bulk_port: {b}\n  udp_port: {a}",
    "ice_servers:\n  - urls: [{a}, {b}]\n    username: {a}\n    credential: {b}",
    "proxies:\n  - url: {a}\n    stun: {b}",
    "masque:\n  url: {a}\n  server_name: {b}",
    "paths: [{a}, {b}]",
    "description: {a}",
    "ca_bundle: {a}",
    "x: &r [{a}, {b}]\nice_servers: [*r, *r]",
]
PROFILE_HEAD = "version: 1\nname: Fuzz\n"
TARGETS = [
    "target:\n  kind: echo\n  url: https://echo.example.org:8443\n",
    "target:\n  kind: {a}\n  url: {b}\n",
    "target:\n  kind: relay-loopback\n",
]


@st.composite
def profile_texts(draw: st.DrawFn) -> str:
    parts = [PROFILE_HEAD, draw(st.sampled_from(TARGETS)).format(a=draw(scalar), b=draw(scalar))]
    for section in draw(st.lists(st.sampled_from(PROFILE_SECTIONS), max_size=3)):
        parts.append(section.format(a=draw(scalar), b=draw(scalar)) + "\n")
    return "".join(parts)


def _one_line(error: Exception) -> None:
    text = str(error)
    assert text and "\n" not in text and "Traceback" not in text, text


@FUZZ
@given(profile_texts())
def test_profile_reader_structured(text: str) -> None:
    try:
        parse_profile(text)
    except ProfileError as error:
        _one_line(error)


@FUZZ
@given(st.text(max_size=400))
def test_profile_reader_any_text(text: str) -> None:
    try:
        parse_profile(text)
    except ProfileError as error:
        _one_line(error)


@FUZZ
@given(st.binary(max_size=400))
def test_profile_file_any_bytes(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "profile.yaml"
        path.write_bytes(data)
        try:
            load_profile(path)
        except ProfileError as error:
            _one_line(error)


RULES = [
    "drop_udp: {{}}",
    "cut_udp_flow: {{max_packets: {a}, max_seconds: {b}, residual_block_s: {a}}}",
    "throttle: {{rate_kbps: {a}, burst_bytes: {b}, transports: [{a}]}}",
    "random_loss: {{percent: {a}, seed: {b}}}",
    "delay: {{rtt_ms: {a}, jitter_ms: {b}}}",
    "block_tls_sni: {{names: [{a}, {b}], mode: {a}}}",
    "freeze_tcp: {{after_bytes: {a}, services: [{b}]}}",
    "dns_nxdomain: {{names: {a}}}",
    "{a}: {b}",
]


@st.composite
def scenario_texts(draw: st.DrawFn) -> str:
    rules = [
        draw(st.sampled_from(RULES)).format(a=draw(scalar), b=draw(scalar))
        for _ in range(draw(st.integers(0, 3)))
    ]
    head = draw(
        st.sampled_from(
            [
                "version: 1\nid: fuzz\n",
                "version: {a}\nid: {b}\n",
            ]
        )
    ).format(a=draw(scalar), b=draw(scalar))
    expect = draw(st.sampled_from(["{{voice: [], video: []}}", "{{voice: [{a}], video: {b}}}"]))
    return (
        head
        + f"title: {draw(scalar)}\nexplanation: {draw(scalar)}\n"
        + "rules:\n"
        + "".join(f"  - {rule}\n" for rule in rules)
        + "expect: "
        + expect.format(a=draw(scalar), b=draw(scalar))
        + "\n"
        + draw(st.sampled_from(["", "paths: [{a}]\n"])).format(a=draw(scalar))
    )


@FUZZ
@given(scenario_texts())
def test_scenario_reader_structured(text: str) -> None:
    try:
        parse_scenario(text)
    except ScenarioError as error:
        _one_line(error)


@FUZZ
@given(st.text(max_size=400))
def test_scenario_reader_any_text(text: str) -> None:
    try:
        parse_scenario(text)
    except ScenarioError as error:
        _one_line(error)


# --- reports ---------------------------------------------------------------------------------

VALID_REPORT = report_to_dict(run_result(), redact=False)
json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=20),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


REPORT_PATHS = [path for path in _paths(VALID_REPORT) if path]
RAW_REPLACEMENTS = ["NaN", "Infinity", "-Infinity", "1e400", "9" * 5000, "[" * 5000, '"\\ud800"']


def _replaced(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    data = json.loads(json.dumps(VALID_REPORT))
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return data  # type: ignore[no-any-return]


def _load_text(text: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "report.json"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            load_report(path)
        except ReportError as error:
            _one_line(error)


@FUZZ
@given(st.sampled_from(REPORT_PATHS), json_values)
def test_report_loader_with_a_field_replaced(path: tuple[Any, ...], value: Any) -> None:
    _load_text(json.dumps(_replaced(path, value)))


@FUZZ
@given(st.sampled_from(REPORT_PATHS), st.sampled_from(RAW_REPLACEMENTS))
def test_report_loader_with_raw_hostile_numbers(path: tuple[Any, ...], raw: str) -> None:
    marker = "__callpath_fuzz__"
    _load_text(json.dumps(_replaced(path, marker)).replace(f'"{marker}"', raw))


@FUZZ
@given(st.binary(max_size=300))
def test_report_loader_any_bytes(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "report.json"
        path.write_bytes(data)
        try:
            load_report(path)
        except ReportError as error:
            _one_line(error)


def test_the_valid_report_loads() -> None:
    _load_text(json.dumps(VALID_REPORT))  # the fuzzers start from a report that loads
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "report.json"
        path.write_text(json.dumps(VALID_REPORT))
        assert load_report(path)["schema_version"] == VALID_REPORT["schema_version"]
