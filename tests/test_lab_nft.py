"""Scenario rules → nftables text: what each rule kind becomes, what cannot be expressed, and
(as root) that the kernel's own parser accepts every generated ruleset."""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator

import pytest

from callpath.core.lab.nft import (
    TABLE,
    Endpoint,
    Rulesets,
    Unexpressible,
    translate,
    unexpressible_reason,
)
from callpath.core.lab.scenario import RULE_PARAMETERS, RuleSpec, list_presets, parse_scenario
from tests.servers import find_binary

SERVICES = {
    "turn-udp": Endpoint("198.18.200.2", 3478, "udp"),
    "turn-tcp": Endpoint("198.18.200.2", 3478, "tcp"),
    "turn-tls": Endpoint("198.18.200.2", 443, "tcp"),
    "echo": Endpoint("198.18.200.3"),
}
SIGNALLING = Endpoint("198.18.200.3", 8088, "tcp")

# One spec of every expressible kind, with every parameter the translation reads.
EXPRESSIBLE = [
    RuleSpec("drop_udp"),
    RuleSpec("drop_udp_to", {"services": ("echo", "turn-udp", "turn-tcp")}),
    RuleSpec("drop_stun"),
    RuleSpec("cut_udp_flow", {"max_packets": 40, "max_bytes": 9000, "residual_block_s": 30}),
    RuleSpec("throttle", {"rate_kbps": 40, "transports": ("udp",)}),
    RuleSpec("throttle", {"rate_kbps": 80, "burst_bytes": 4000}),
    RuleSpec("throttle", {"rate_kbps": 96, "transports": ("udp",), "shared": True}),
    RuleSpec("random_loss", {"percent": 8.25, "seed": 3}),
    RuleSpec("random_loss", {"percent": 100}),
    RuleSpec("freeze_tcp", {"after_bytes": 16384, "services": ("turn-tcp", "turn-tls")}),
    RuleSpec("freeze_tcp", {}),
    RuleSpec(
        "freeze_tcp",
        {"after_bytes_min": 12288, "after_bytes_max": 34816, "seed": 9, "services": ("turn-tls",)},
    ),
    RuleSpec("drop_quic", {}),
    RuleSpec("block_tcp_connect", {"services": ("turn-tcp", "turn-udp"), "mode": "drop"}),
    RuleSpec("block_tcp_connect", {"services": ("turn-tls", "echo"), "mode": "reset"}),
]
UNEXPRESSIBLE = [
    RuleSpec("delay", {"rtt_ms": 100}),
    RuleSpec("block_tls_sni", {"names": ("turn.callpath.lab",)}),
    RuleSpec("dns_nxdomain", {"names": ("turn.callpath.lab",)}),
    RuleSpec("dns_bogus", {"names": ("turn.callpath.lab",)}),
    RuleSpec("unknown_names", {"names": ("turn.callpath.lab",)}),
    RuleSpec("cut_udp_flow", {"max_seconds": 2}),
    RuleSpec("drop_quic", {"names": ("masque.callpath.lab",)}),
    RuleSpec("drop_unrecognised_udp", {}),
    RuleSpec("allow_only", {"services": ("domestic", "turn-tls")}),
    RuleSpec("expire_idle_binding", {"idle_s": 30}),
]


def chain_rules(table: str) -> list[str]:
    """The rule lines of a table's censor chain (without the chain's type line)."""
    lines = [line.strip() for line in table.splitlines()]
    start = lines.index("chain censor {") + 1
    end = lines.index("}", start)
    assert lines[start] == "type filter hook input priority filter; policy accept;"
    return lines[start + 1 : end]


def translated(*specs: RuleSpec) -> Rulesets:
    result = translate(specs, SERVICES, exempt=(SIGNALLING,))
    assert isinstance(result, Rulesets), result
    return result


def rules_of(*specs: RuleSpec) -> tuple[list[str], list[str]]:
    """(outbound, inbound) rules the specs add after the fixed prologue: only what crosses the
    veth is censored, and the echo peer's signalling never is."""
    tables = translated(*specs)
    outbound, inbound = chain_rules(tables.outbound), chain_rules(tables.inbound)
    assert outbound[:2] == [
        'iifname != "cp-outside" accept',
        "ip daddr 198.18.200.3 tcp dport 8088 accept",
    ]
    assert inbound[:2] == [
        'iifname != "cp-client" accept',
        "ip saddr 198.18.200.3 tcp sport 8088 accept",
    ]
    return outbound[2:], inbound[2:]


def test_every_rule_kind_is_either_translated_or_refused() -> None:
    covered = {spec.kind for spec in EXPRESSIBLE + UNEXPRESSIBLE}
    assert covered == set(RULE_PARAMETERS)


def test_an_open_network_has_only_the_exemptions() -> None:
    tables = translated()
    for text in (tables.outbound, tables.inbound):
        assert text.startswith(f"table inet {TABLE}\ndelete table inet {TABLE}\n")
    assert rules_of() == ([], [])


def test_drop_udp_drops_both_ways() -> None:
    assert rules_of(RuleSpec("drop_udp")) == (
        ["meta l4proto udp drop"],
        ["meta l4proto udp drop"],
    )


def test_drop_udp_to_matches_udp_services_and_every_port_of_the_echo_peer() -> None:
    output, input_ = rules_of(RuleSpec("drop_udp_to", {"services": ("echo", "turn-udp")}))
    assert output == [
        "ip daddr 198.18.200.3 meta l4proto udp drop",
        "ip daddr 198.18.200.2 udp dport 3478 drop",
    ]
    assert input_ == [
        "ip saddr 198.18.200.3 meta l4proto udp drop",
        "ip saddr 198.18.200.2 udp sport 3478 drop",
    ]


def test_udp_rules_ignore_tcp_services_that_share_the_port() -> None:
    # turn-tcp listens on 3478 like turn-udp; dropping "UDP to turn-tcp" must not hit turn-udp.
    assert rules_of(RuleSpec("drop_udp_to", {"services": ("turn-tcp",)})) == ([], [])
    assert rules_of(RuleSpec("block_tcp_connect", {"services": ("turn-udp",)})) == ([], [])


def test_services_without_a_server_in_this_lab_match_nothing() -> None:
    assert rules_of(RuleSpec("drop_udp_to", {"services": ("masque",)})) == ([], [])


def test_drop_stun_matches_the_cookie_after_the_udp_header() -> None:
    output, input_ = rules_of(RuleSpec("drop_stun"))
    expected = ["udp length >= 28 @th,64,2 0 @th,96,32 0x2112a442 drop"]
    assert output == input_ == expected


def test_cut_udp_flow_counts_both_directions_and_remembers_a_residual_block() -> None:
    tables = translated(RuleSpec("cut_udp_flow", {"max_packets": 40, "residual_block_s": 30}))
    for text in (tables.outbound, tables.inbound):
        assert "set residual_0 { type ipv4_addr; flags dynamic, timeout; }" in text
    output, input_ = chain_rules(tables.outbound), chain_rules(tables.inbound)
    assert output[-2:] == [
        "meta l4proto udp ct packets > 40 add @residual_0 { ip daddr timeout 30s } drop",
        "meta l4proto udp ct state new ip daddr @residual_0 drop",
    ]
    assert input_[-2:] == [
        "meta l4proto udp ct packets > 40 add @residual_0 { ip saddr timeout 30s } drop",
        "meta l4proto udp ct state new ip saddr @residual_0 drop",
    ]
    output, input_ = rules_of(RuleSpec("cut_udp_flow", {"max_bytes": 9000}))
    assert output == input_ == ["meta l4proto udp ct bytes > 9000 drop"]


def test_throttle_is_a_meter_per_flow_and_direction() -> None:
    output, input_ = rules_of(RuleSpec("throttle", {"rate_kbps": 40, "transports": ("udp",)}))
    # 40 kbit/s = 5000 bytes/s; the default burst is a quarter second, as in userspace.
    assert (
        output
        == input_
        == [
            "meta l4proto udp update @throttle_0 { ip saddr . th sport . ip daddr . th dport "
            "limit rate over 5000 bytes/second burst 1250 bytes } drop"
        ]
    )
    tables = translated(RuleSpec("throttle", {"rate_kbps": 8, "burst_bytes": 500}))
    for text in (tables.outbound, tables.inbound):
        assert "set throttle_0 { type ipv4_addr . inet_service . ipv4_addr . inet_service;" in text
        assert "meta l4proto { tcp, udp } update @throttle_0" in text
        assert "limit rate over 1000 bytes/second burst 500 bytes" in text


def test_a_shared_throttle_is_one_limit_for_every_flow() -> None:
    spec = RuleSpec("throttle", {"rate_kbps": 96, "transports": ("udp",), "shared": True})
    output, input_ = rules_of(spec)
    expected = "meta l4proto udp limit rate over 12000 bytes/second burst 3000 bytes drop"
    assert expected in output and expected in input_
    assert not any("@throttle_" in rule for rule in output + input_)  # no per-flow meter


def test_random_loss_keeps_fractions_of_a_percent() -> None:
    output, input_ = rules_of(RuleSpec("random_loss", {"percent": 8.25}))
    assert output == input_ == ["meta l4proto udp numgen random mod 10000 < 825 drop"]
    assert rules_of(RuleSpec("random_loss", {"percent": 100})) == (
        ["meta l4proto udp drop"],
        ["meta l4proto udp drop"],
    )
    assert rules_of(RuleSpec("random_loss", {"percent": 0})) == ([], [])


def test_freeze_tcp_drops_server_bytes_beyond_the_limit_without_a_reset() -> None:
    spec = RuleSpec("freeze_tcp", {"after_bytes": 16384, "services": ("turn-tls",)})
    assert rules_of(spec) == (
        [],
        ["ip saddr 198.18.200.2 tcp sport 443 ct reply bytes > 16384 drop"],
    )
    assert rules_of(RuleSpec("freeze_tcp")) == (
        [],
        ["meta l4proto tcp ct reply bytes > 16384 drop"],
    )


def test_block_tcp_connect_drops_or_resets_connections_on_the_far_side() -> None:
    dropped = RuleSpec("block_tcp_connect", {"services": ("turn-tcp",), "mode": "drop"})
    assert rules_of(dropped) == (["ip daddr 198.18.200.2 tcp dport 3478 drop"], [])
    reset = RuleSpec("block_tcp_connect", {"services": ("echo",), "mode": "reset"})
    assert rules_of(reset) == (["ip daddr 198.18.200.3 meta l4proto tcp reject with tcp reset"], [])


def test_drop_quic_matches_long_header_version_1() -> None:
    output, input_ = rules_of(RuleSpec("drop_quic"))
    assert output == input_ == ["meta l4proto udp @th,64,1 1 @th,72,32 0x00000001 drop"]


def test_rules_keep_the_scenario_order() -> None:
    output, _ = rules_of(RuleSpec("drop_stun"), RuleSpec("drop_udp"))
    assert output[0].endswith("0x2112a442 drop") and output[1] == "meta l4proto udp drop"


@pytest.mark.parametrize("spec", UNEXPRESSIBLE, ids=lambda spec: spec.kind)
def test_rules_without_a_kernel_equivalent_are_refused_with_a_reason(spec: RuleSpec) -> None:
    result = translate([RuleSpec("drop_udp"), spec], SERVICES)
    assert isinstance(result, Unexpressible)
    assert result.rule == spec.kind
    assert result.reason == unexpressible_reason(spec)
    assert result.reason and str(result).startswith(f"{spec.kind}: ")


def test_a_scenario_file_translates() -> None:
    scenario = parse_scenario(
        "version: 1\nid: t\ntitle: T\nexplanation: E\n"
        "rules:\n  - block_tcp_connect: {services: [turn-tcp], mode: reset}\n"
        "expect: {voice: [turn-tls], video: [turn-tls]}\n"
    )
    output, _ = rules_of(*scenario.rules)
    assert output == ["ip daddr 198.18.200.2 tcp dport 3478 reject with tcp reset"]


# --- the kernel's parser (root) -------------------------------------------------------------


@pytest.fixture(scope="module")
def scratch_namespace() -> Iterator[str]:
    """An empty network namespace to check rulesets in (``nft -c`` changes nothing)."""
    if os.geteuid() != 0:
        pytest.skip("checking rulesets with nft in a network namespace needs root")
    if find_binary("nft") is None or find_binary("ip") is None:
        pytest.fail("nft and ip must be installed (Debian packages nftables, iproute2)")
    name = f"callpath-test-{os.getpid()}-{secrets.token_hex(3)}-nft"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True, timeout=10)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10, check=False)


def nft_check(namespace: str, ruleset: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", namespace, "nft", "-c", "-f", "-"],
        input=ruleset,
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )


@pytest.mark.root
def test_the_kernel_accepts_every_expressible_rule_together(scratch_namespace: str) -> None:
    tables = translated(*EXPRESSIBLE)
    for ruleset in (tables.outbound, tables.inbound):
        result = nft_check(scratch_namespace, ruleset)
        assert result.returncode == 0, (result.stderr, ruleset)


@pytest.mark.root
def test_the_kernel_accepts_every_expressible_preset(scratch_namespace: str) -> None:
    checked = 0
    for scenario in list_presets():
        tables = translate(scenario.rules, SERVICES, exempt=(SIGNALLING,))
        if isinstance(tables, Unexpressible):
            continue
        for ruleset in (tables.outbound, tables.inbound):
            result = nft_check(scratch_namespace, ruleset)
            assert result.returncode == 0, (scenario.id, result.stderr, ruleset)
        checked += 1
    assert checked >= 5


@pytest.mark.root
def test_the_kernel_rejects_a_broken_ruleset(scratch_namespace: str) -> None:
    # The check above could not fail if nft -c accepted anything.
    result = nft_check(scratch_namespace, f"table inet {TABLE} {{ chain c {{ bogus }} }}\n")
    assert result.returncode != 0


def test_a_freeze_range_gives_each_connection_one_of_several_points() -> None:
    from callpath.core.lab.nft import FREEZE_MARK_BASE, FREEZE_POINTS

    spec = RuleSpec(
        "freeze_tcp",
        {"after_bytes_min": 12288, "after_bytes_max": 34816, "services": ("turn-tls",)},
    )
    rules = chain_rules(translated(spec).inbound)
    draws = [rule for rule in rules if "numgen random" in rule]
    assert len(draws) == 1 and f"mod {FREEZE_POINTS}" in draws[0] and "ct mark 0" in draws[0]
    limits = [
        int(rule.split("ct reply bytes > ")[1].split()[0])
        for rule in rules
        if "ct reply bytes" in rule
    ]
    assert len(limits) == FREEZE_POINTS
    assert limits[0] == 12288 and limits[-1] == 34816 and limits == sorted(set(limits))
    marks = {f"ct mark {FREEZE_MARK_BASE + 1 + i} " for i in range(FREEZE_POINTS)}
    assert all(any(mark in rule for rule in rules) for mark in marks)


def test_a_freezes_allowlist_is_left_out_and_said_so() -> None:
    from callpath.core.lab.nft import unapplied_part

    spared = RuleSpec(
        "freeze_tcp",
        {"after_bytes_min": 12288, "after_bytes_max": 34816, "except_names": ("vk.com",)},
    )
    plain = RuleSpec("freeze_tcp", {"after_bytes_min": 12288, "after_bytes_max": 34816})
    # The freeze itself runs; the exemption (an SNI) cannot, and no kernel connection needs it.
    assert translated(spared) == translated(plain)
    note = unapplied_part(spared)
    assert note is not None and "except_names" in note
    assert unapplied_part(plain) is None
