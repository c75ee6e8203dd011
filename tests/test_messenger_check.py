"""``callpath check``: the judge, network state, recipes, the DoH comparison, allowlist and
offline detection, checks through real Dante and ss-local, the report schema and the command.

Everything runs against the lab's stand-ins (``callpath.core.lab.standins``): no test sends a
packet to a real messenger address."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from string import Formatter
from typing import Any

import pytest

from callpath.core.checkup.document import check_to_dict, validate_check_report
from callpath.core.checkup.results import CheckResult
from callpath.core.discovery.proxies import FoundProxy
from callpath.core.lab.check_comparison import compare_check
from callpath.core.lab.check_world import run_lab_check
from callpath.core.lab.scenario import ScenarioError, find_scenario, parse_scenario
from callpath.core.lab.standins import is_standin
from callpath.core.messengers.catalog import load_catalog
from callpath.core.messengers.judge import (
    DIRECT,
    NOT_CARRIED,
    CheckedEndpoint,
    Reachability,
    judge_messenger,
)
from callpath.core.messengers.network_state import (
    NetworkObservations,
    NetworkState,
    network_state,
)
from callpath.core.messengers.recipes import (
    MessengerFacts,
    load_recipes,
    parse_recipes,
    select_recipes,
)
from callpath.core.model.errors import LocatedError
from callpath.core.model.proxy_url import parse_proxy_url
from callpath.core.report.document import ReportError
from tests.proxy_servers import DanteServer, ShadowsocksPair

ROOT = Path(__file__).parents[1]
NEW_PRESETS = (
    "russia-2025",
    "russia-2026-dns",
    "mobile-encrypted-udp",
    "telegram-ip-block",
    "mobile-whitelist",
    "proxy-without-udp",
)


def _endpoint(
    role: str,
    proto: str,
    failures: tuple[str | None, ...],
    through: str = DIRECT,
    certainty: str = "medium",
    port: int = 443,
) -> CheckedEndpoint:
    return CheckedEndpoint(role, "relay.example", port, proto, certainty, through, failures)


OK = (None,)
FAIL = ("generic_timeout_error",)
UDP_OK = (None, None)
UDP_FAIL = ("stun_no_response", "stun_no_response")


# --- the judge (pure) -------------------------------------------------------------------------


def _direct(*endpoints: CheckedEndpoint, network: str = "online") -> tuple[str, str, str, str]:
    judged = judge_messenger({DIRECT: list(endpoints)}, network)[0]
    return (
        judged.messages.value.value,
        judged.calls.value.value,
        judged.messages.reason,
        judged.calls.reason,
    )


def test_judge_works_tcp_only_blocked_unknown() -> None:
    chat = _endpoint("signalling", "tls", OK)
    udp = _endpoint("relay", "stun", UDP_OK, port=3478)
    tcp = _endpoint("relay", "tcp", OK)
    assert _direct(chat, udp, tcp)[:2] == ("works", "works")
    udp_blocked = _endpoint("relay", "stun", UDP_FAIL, port=3478)
    assert _direct(chat, udp_blocked, tcp)[:2] == ("works", "tcp_only")
    tcp_blocked = _endpoint("relay", "tcp", FAIL)
    chat_blocked = _endpoint("signalling", "tls", FAIL)
    assert _direct(chat_blocked, udp_blocked, tcp_blocked)[:2] == ("blocked", "blocked")
    # No relay known: calls cannot be told, never "works".
    assert _direct(chat) == ("works", "unknown", "", "no_endpoint")


def test_disagreeing_repeats_are_intermittent_not_averaged() -> None:
    flaky = _endpoint("relay", "stun", (None, "stun_no_response", None), port=1400)
    _messages, calls, _, reason = _direct(_endpoint("signalling", "tcp", OK), flaky)
    assert (calls, reason) == ("intermittent", "repeats_disagree")
    assert flaky.status.value == "intermittent"


def test_failing_everywhere_is_unknown_service_may_be_down() -> None:
    """OONI's January 2026 false positive: WhatsApp's own servers refused port 5222."""
    routes = {
        DIRECT: [_endpoint("signalling", "tcp", ("connection_refused",))],
        "socks5-a": [_endpoint("signalling", "tcp", ("connection_refused",), through="socks5-a")],
    }
    judged = judge_messenger(routes)
    assert [j.messages.value for j in judged] == [Reachability.UNKNOWN] * 2
    assert judged[0].messages.reason == "service_may_be_down"


def test_a_route_that_gets_through_makes_the_failure_a_block() -> None:
    routes = {
        DIRECT: [_endpoint("relay", "stun", UDP_FAIL, certainty="weak", port=1400)],
        "socks5-a": [
            _endpoint("relay", "stun", UDP_OK, through="socks5-a", certainty="weak", port=1400)
        ],
    }
    direct, proxy = judge_messenger(routes)
    assert (direct.calls.value, direct.calls.reason) == (Reachability.BLOCKED, "blocked_here")
    assert proxy.calls.value is Reachability.WORKS


def test_a_guessed_address_alone_cannot_prove_a_block() -> None:
    weak = _endpoint("relay", "stun", UDP_FAIL, certainty="weak", port=3478)
    assert _direct(_endpoint("signalling", "tcp", OK), weak)[1:4:2] == ("unknown", "weak_guess")
    strong = _endpoint("relay", "stun", UDP_FAIL, certainty="strong", port=3478)
    assert _direct(_endpoint("signalling", "tcp", OK), strong)[1] == "blocked"


def test_a_proxy_without_udp_does_not_carry_calls() -> None:
    routes = {
        DIRECT: [_endpoint("relay", "stun", UDP_FAIL, port=3478)],
        "http-p": [_endpoint("relay", "stun", (NOT_CARRIED,), through="http-p", port=3478)],
    }
    direct, proxy = judge_messenger(routes)
    assert (proxy.calls.value, proxy.calls.reason) == (Reachability.UNKNOWN, "not_carried")
    # The proxy did not try, so it neither confirms nor clears the direct failure.
    assert direct.calls.value is Reachability.BLOCKED


def test_offline_and_allowlist_override_the_direct_results() -> None:
    blocked = (_endpoint("signalling", "tcp", FAIL), _endpoint("relay", "stun", UDP_FAIL))
    assert _direct(*blocked, network="offline") == ("unknown", "unknown", "offline", "offline")
    assert _direct(*blocked, network="allowlist")[:3] == ("blocked", "blocked", "allowlist")


def test_network_state() -> None:
    def state(domestic: int, foreign: int) -> NetworkState:
        return network_state(NetworkObservations(domestic, 3, foreign, 10))

    assert state(0, 0) is NetworkState.OFFLINE
    assert state(2, 0) is NetworkState.ALLOWLIST
    assert state(0, 1) is NetworkState.ONLINE
    assert state(3, 5) is NetworkState.ONLINE


# --- recipes ---------------------------------------------------------------------------------


def _chosen(facts: MessengerFacts) -> list[str]:
    return [c.recipe.id for c in select_recipes(load_recipes(), facts, facts.messenger)]


def test_recipes_are_chosen_by_what_was_measured() -> None:
    telegram = MessengerFacts("telegram", calls="blocked", messages="works")
    assert _chosen(telegram) == ["telegram-system-tunnel", "telegram-force-tcp"]
    assert _chosen(MessengerFacts("telegram", calls="works", messages="works")) == []
    whatsapp = MessengerFacts(
        "whatsapp",
        calls="blocked",
        messages="works",
        calls_work_through=("socks5://127.0.0.1:1080",),
        proxies_without_udp=("http://127.0.0.1:8080",),
    )
    chosen = select_recipes(load_recipes(), whatsapp, "WhatsApp")
    assert [c.recipe.id for c in chosen] == [
        "whatsapp-protect-ip",
        "route-through-working-proxy",
        "proxy-without-udp",
    ]
    assert "socks5://127.0.0.1:1080" in chosen[1].text("en")
    assert "http://127.0.0.1:8080" in chosen[2].text("ru")
    allowlist = MessengerFacts("signal", calls="blocked", messages="blocked", network="allowlist")
    assert _chosen(allowlist)[0] == "network-allowlist"
    dns = MessengerFacts("whatsapp", calls="works", messages="blocked", dns_tampering=True)
    assert _chosen(dns) == ["dns-use-encrypted"]
    down = MessengerFacts("whatsapp", calls="works", messages="unknown", service_down=True)
    assert _chosen(down) == ["service-may-be-down"]


def test_every_recipe_has_source_date_and_russian_text() -> None:
    recipes = load_recipes()
    assert len(recipes) >= 8
    ids = {e.id for e in load_catalog()} | {"any"}
    for recipe in recipes:
        assert recipe.source and len(recipe.date) == 7, recipe.id
        assert recipe.text["ru"] != recipe.text["en"], recipe.id
        assert set(recipe.messengers) <= ids, recipe.id
        placeholders = {name for _t, name, _s, _c in Formatter().parse(recipe.text["en"]) if name}
        for language, text in recipe.text.items():
            found = {name for _t, name, _s, _c in Formatter().parse(text) if name}
            assert found == placeholders, (recipe.id, language)


def test_recipe_errors_name_the_file() -> None:
    with pytest.raises(LocatedError, match="en and ru"):
        parse_recipes(
            "version: 1\nrecipes:\n- {id: x, messengers: [any], when: {}, source: s,"
            " date: 2026-01, text: {en: hi}}\n",
            "r.yaml",
        )
    with pytest.raises(LocatedError, match="when may only name"):
        parse_recipes(
            "version: 1\nrecipes:\n- {id: x, messengers: [any], when: {weather: rain},"
            " source: s, date: 2026-01, text: {en: a, ru: b}}\n",
            "r.yaml",
        )


# --- the lab: stand-ins, DNS, allowlist, offline ---------------------------------------------


def _outcome(result: CheckResult, messenger: str, through: str = DIRECT) -> tuple[str, str]:
    found = next(m for m in result.messengers if m.id == messenger and m.through == through)
    return found.messages.value.value, found.calls.value.value


def _no_real_address_contacted(result: CheckResult) -> None:
    """Every DNS answer the check used is a lab stand-in: nothing left the machine."""
    for lookup in result.dns:
        for address in (*lookup.system, *lookup.doh):
            assert is_standin(address), (lookup.name, address)


@pytest.mark.slow
async def test_doh_comparison_names_dns_tampering_and_the_tunnel_restores() -> None:
    result = await run_lab_check(find_scenario("russia-2026-dns"))
    whatsapp = {lookup.name: lookup for lookup in result.dns if lookup.role == "whatsapp"}
    assert whatsapp["e1.whatsapp.net"].tampered
    assert whatsapp["e1.whatsapp.net"].system_failure == "dns_nxdomain_error"
    assert whatsapp["e1.whatsapp.net"].doh
    assert not any(lookup.tampered for lookup in result.dns if lookup.role == "telegram")
    assert _outcome(result, "whatsapp") == ("blocked", "works")
    proxy = result.proxies[0]
    assert proxy.carries_udp is True
    assert _outcome(result, "whatsapp", proxy.id)[0] == "works"
    fixes = next(m for m in result.direct() if m.id == "whatsapp").fixes
    assert "dns-use-encrypted" in [f.recipe.id for f in fixes]
    _no_real_address_contacted(result)


@pytest.mark.slow
async def test_allowlist_mode_is_named_at_once() -> None:
    events = []
    result = await run_lab_check(find_scenario("mobile-whitelist"), events.append)
    assert result.network is NetworkState.ALLOWLIST
    domestic = [r for r in result.references if r.kind == "domestic"]
    assert domestic and all(r.failure is None for r in domestic)
    assert all(m.calls.reason == "allowlist" for m in result.direct())
    # The allowlist line comes before any messenger line.
    phases = [e.phase for e in events]
    assert phases.index("network") < phases.index("messenger")
    assert "allowlist" in events[1].text
    assert result.calls_blocked


@pytest.mark.slow
async def test_no_connectivity_at_all_is_told_as_such() -> None:
    scenario = parse_scenario(
        "version: 1\nid: offline\ntitle: offline\nexplanation: nothing answers\n"
        "check_proxies: []\nrules:\n  - allow_only: {services: [turn-tls]}\n"
        "expect: {voice: [], video: []}\n"
    )
    result = await run_lab_check(scenario)
    assert result.network is NetworkState.OFFLINE
    assert all(m.messages.reason == "offline" for m in result.direct())


# --- real proxies: Dante and ss-local ---------------------------------------------------------


def _found(url: str) -> FoundProxy:
    parsed = parse_proxy_url(url)
    return FoundProxy(parsed, parsed.kind, "test", None, False)


TELEGRAM_BLOCKED = (
    "version: 1\nid: tg\ntitle: tg\nexplanation: tg\ncheck_proxies: []\nrules:\n"
    "  - drop_udp_to: {services: [messenger-telegram, messenger-whatsapp]}\n"
    "  - block_tcp_connect: {services: [messenger-telegram], mode: drop}\n"
    "expect: {voice: [], video: []}\n"
)


@pytest.mark.servers
@pytest.mark.slow
async def test_checks_through_dante_and_ss_local(
    dante: DanteServer, dante_without_udp: DanteServer, shadowsocks: ShadowsocksPair
) -> None:
    proxies = [_found(dante.url), _found(dante_without_udp.url), _found(shadowsocks.url)]
    result = await run_lab_check(parse_scenario(TELEGRAM_BLOCKED), extra_proxies=proxies)
    by_url = {p.url: p for p in result.proxies}
    assert by_url[dante.url].carries_udp is True
    assert by_url[shadowsocks.url].carries_udp is True
    assert by_url[dante_without_udp.url].carries_udp is False
    assert _outcome(result, "telegram") == ("blocked", "blocked")
    for url in (dante.url, shadowsocks.url):
        assert _outcome(result, "telegram", by_url[url].id) == ("works", "works"), url
    # Through the TCP-only Dante, messages come back but calls cannot be carried.
    no_udp = next(m for m in result.messengers if m.through == by_url[dante_without_udp.url].id)
    assert no_udp.calls.reason == "not_carried" or no_udp.id != "telegram"
    assert _outcome(result, "telegram", by_url[dante_without_udp.url].id) == ("works", "unknown")
    telegram = next(m for m in result.direct() if m.id == "telegram")
    fixes = {f.recipe.id: f for f in telegram.fixes}
    assert "route-through-working-proxy" in fixes and "proxy-without-udp" in fixes
    assert dante_without_udp.url in fixes["proxy-without-udp"].text("en")


@pytest.mark.servers
@pytest.mark.slow
async def test_ss_local_without_udp_relay_is_told_apart(tmp_path: Path) -> None:
    """ss-local without ``-u`` accepts UDP ASSOCIATE but carries nothing: only the round trip
    to a STUN server tells."""
    from tests.proxy_servers import run_shadowsocks

    with run_shadowsocks(tmp_path, udp=False) as pair:
        result = await run_lab_check(
            parse_scenario(TELEGRAM_BLOCKED), extra_proxies=[_found(pair.url)]
        )
    assert result.proxies[0].carries_udp is False
    assert result.proxies[0].failure == "stun_no_response"


# --- presets, report, command ----------------------------------------------------------------


def test_new_presets_carry_messenger_expectations_and_sources() -> None:
    for name in NEW_PRESETS:
        scenario = find_scenario(name)
        assert scenario.expect.checks_messengers, name
        text = (ROOT / "assets" / "scenarios" / f"{name}.yaml").read_text(encoding="utf-8")
        assert "Sources:" in text or name == "russia-2025", name
    russia = find_scenario("russia-2025").expect.messengers
    for messenger in ("whatsapp", "telegram"):
        assert (russia[messenger].messages, russia[messenger].calls) == ("works", "blocked")


def test_scenario_messenger_expectations_are_validated() -> None:
    base = "version: 1\nid: x\ntitle: x\nexplanation: x\nrules: []\n"
    with pytest.raises(ScenarioError, match="not a messenger"):
        parse_scenario(base + "expect: {voice: [], video: [], messengers: {icq: {calls: works}}}")
    with pytest.raises(ScenarioError, match="must be one of"):
        parse_scenario(base + "expect: {voice: [], video: [], messengers: {zoom: {calls: ok}}}")
    with pytest.raises(ScenarioError, match="unknown lab service"):
        parse_scenario(
            "version: 1\nid: x\ntitle: x\nexplanation: x\n"
            "rules: [{drop_udp_to: {services: [messenger-icq]}}]\nexpect: {voice: [], video: []}"
        )


@pytest.mark.slow
@pytest.mark.parametrize("name", NEW_PRESETS)
async def test_presets_give_their_expected_messenger_results(name: str) -> None:
    scenario = find_scenario(name)
    result = await run_lab_check(scenario)
    assert compare_check(scenario, result) == ()
    _no_real_address_contacted(result)
    validate_check_report(check_to_dict(result))


@pytest.mark.slow
async def test_report_follows_the_schema_and_the_interface() -> None:
    result = await run_lab_check(find_scenario("russia-2025"))
    report = check_to_dict(result)
    validate_check_report(report)
    assert report["network"] == "online" and report["check_version"] == 2
    proxy = report["proxies"][0]
    assert proxy["carries_udp"] is True and "@" not in proxy["url"]
    throughs = {m["through"] for m in report["messengers"]}
    assert throughs == {"direct", proxy["id"]}
    telegram = next(
        m for m in report["messengers"] if m["id"] == "telegram" and m["through"] == "direct"
    )
    assert (telegram["messages"], telegram["calls"]) == ("works", "blocked")
    relays = [e for e in telegram["endpoints"] if e["role"] == "relay"]
    assert {e["port"] for e in relays} == {1400}
    assert all(len(e["attempts"]) >= 2 for e in relays)  # UDP repeats
    assert telegram["fixes"] and all(f["source"] and f["date"] for f in telegram["fixes"])
    broken = json.loads(json.dumps(report))
    broken["messengers"][0]["calls"] = "fine"
    with pytest.raises(ReportError, match="calls"):
        validate_check_report(broken)


def _callpath(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "callpath.core.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


@pytest.mark.slow
def test_check_command_exit_status_and_json(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    blocked = _callpath("check", "--lab", "russia-2025", "--json", str(out))
    assert blocked.returncode == 1, blocked.stderr
    assert "carries UDP: yes" in blocked.stdout
    validate_check_report(json.loads(out.read_text(encoding="utf-8")))
    working = _callpath("check", "--lab", "open-network")
    assert working.returncode == 0, working.stdout + working.stderr


def test_check_command_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    for args in (
        ("check", "--proxy", "127.0.0.1:1080", "--lab", "open-network"),
        ("check", "--lab", "no-such-scenario"),
        ("check", "--lab", "open-network", "--json", str(tmp_path / "missing" / "r.json")),
    ):
        done = _callpath(*args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert done.stderr.startswith("callpath: ") and done.stderr.count("\n") == 1, done.stderr


@pytest.mark.slow
def test_a_lab_run_report_carries_the_messenger_check(tmp_path: Path) -> None:
    from callpath.core.report.document import validate_report

    out = tmp_path / "lab.json"
    done = _callpath("--lang", "en", "lab", "--scenario", "russia-2026-dns", "--json", str(out))
    # The calls' verdict is timing-sensitive under load; the check's content is not.
    assert done.returncode in (0, 1), done.stderr
    assert "The messenger check matches the scenario." in done.stdout
    data = json.loads(out.read_text(encoding="utf-8"))
    validate_report(data)
    validate_check_report(data["messenger_check"])
    assert data["messenger_check"]["scenario"] == "russia-2026-dns"


# --- the new lab rules (pure) ----------------------------------------------------------------


def _packet(payload: bytes, target: tuple[str, int], transport: str = "udp") -> Any:
    from callpath.core.lab.rules import FlowDirection, Packet, Transport

    return Packet(
        0.0, Transport(transport), FlowDirection.OUTBOUND, ("127.0.0.1", 5000), target, payload
    )


def test_unrecognisable_udp_is_dropped_handshakes_pass() -> None:
    from callpath.core.lab.rules import Action, Censor, DropUnrecognisedUdp

    censor = Censor([DropUnrecognisedUdp()])
    stun = b"\x00\x01\x00\x00\x21\x12\xa4\x42" + bytes(12)
    dtls_hello = b"\x16\xfe\xfd" + bytes(10)
    quic_initial = b"\xc3\x00\x00\x00\x01" + bytes(20)
    rtp = b"\x80\x6f" + bytes(30)
    quic_short = b"\x43" + bytes(30)
    target = ("127.0.0.4", 4000)
    for payload in (stun, dtls_hello, quic_initial):
        assert censor.evaluate(_packet(payload, target)).action is Action.PASS
    for payload in (rtp, quic_short, b"\x17\xfe\xfd" + bytes(10)):
        assert censor.evaluate(_packet(payload, target)).action is Action.DROP
    assert censor.evaluate(_packet(rtp, target, "tcp")).action is Action.PASS


def test_allowlist_over_several_services() -> None:
    from callpath.core.lab.rules import Action, AllowOnlyTargets, Censor

    censor = Censor([AllowOnlyTargets(frozenset({("127.78.0.1/24", None), ("127.0.0.2", 5349)}))])
    assert censor.evaluate(_packet(b"x", ("127.78.0.3", 443), "tcp")).action is Action.PASS
    assert censor.evaluate(_packet(b"x", ("127.0.0.2", 5349), "tcp")).action is Action.PASS
    assert censor.evaluate(_packet(b"x", ("127.0.0.2", 3478))).action is Action.DROP
    assert censor.evaluate(_packet(b"x", ("127.77.5.1", 443), "tcp")).action is Action.DROP
