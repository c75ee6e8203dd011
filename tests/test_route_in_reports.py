"""A check measured through a VPN says so: in the check report (schema-valid), in the CLI's words
and on the app's check page."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from callpath.core.checkup.document import validate_check_report
from callpath.core.discovery.clients import load_client_data
from callpath.core.discovery.tunnels import ARPHRD_NONE, Interface, analyse
from callpath.core.i18n import set_language
from callpath.core.present.route import around_refused_text, route_lines, vpn_sentence
from callpath.core.report.document import ReportError

FIXTURE = Path(__file__).parent / "fixtures" / "check" / "russia-2025.json"


def _situation(privileged: bool):  # type: ignore[no-untyped-def]
    interfaces = [
        Interface("eth0", 1, False, None, True),
        Interface("amn0", ARPHRD_NONE, True, None, True),
    ]
    return analyse(
        interfaces,
        {"192.0.2.1": "amn0"}.get,
        data=load_client_data(),
        privileged=privileged,
        platform="linux",
    )


def test_the_check_report_carries_the_route_and_stays_valid() -> None:
    report = json.loads(FIXTURE.read_text("utf-8"))
    validate_check_report(report)  # lab runs have no route section
    report["route"] = _situation(privileged=False).to_dict()
    validate_check_report(report)
    assert report["route"]["vpn_client"] == "AmneziaVPN"
    report["route"]["around_refused"] = "because"
    with pytest.raises(ReportError, match="around_refused"):
        validate_check_report(report)


def test_words_for_the_vpn_side_only() -> None:
    set_language("en")
    situation = _situation(privileged=False)
    assert vpn_sentence(situation) == "Measured through your VPN (amn0, AmneziaVPN)."
    assert around_refused_text(situation) is not None
    assert route_lines(situation.to_dict()) == [
        "Measured through your VPN (amn0, AmneziaVPN).",
        "Only the VPN side can be measured: going around the VPN needs root (CAP_NET_RAW).",
    ]
    assert route_lines(None) == [] and route_lines({"through_vpn": False}) == []
    set_language("ru")
    try:
        assert route_lines(situation.to_dict())[0] == "Измерено через ваш VPN (amn0, AmneziaVPN)."
    finally:
        set_language("en")


def test_the_check_page_lists_the_vpn_line() -> None:
    from callpath.gui.check_view import findings

    report = json.loads(FIXTURE.read_text("utf-8"))
    assert not any("VPN" in line for line in findings(report))
    report["route"] = _situation(privileged=True).to_dict()
    lines = findings(report)
    assert "Measured through your VPN (amn0, AmneziaVPN)." in lines


def test_a_run_report_keeps_the_route_through_encode_and_decode() -> None:
    from datetime import UTC, datetime

    from callpath.core.model.results import RunResult, Verdict
    from callpath.core.report.decode import report_from_dict
    from callpath.core.report.document import report_to_dict, validate_report
    from callpath.gui.report_view import headline_lines

    now = datetime.now(UTC)
    run = RunResult(
        started_at=now,
        finished_at=now,
        profile_name="p",
        target="echo",
        paths=(),
        verdict=Verdict((), (), "No tested path carried a call."),
        route=_situation(privileged=False),
    )
    data = report_to_dict(run)
    validate_report(data)
    assert data["route"]["vpn_interface"] == "amn0"
    assert report_from_dict(data).route == run.route
    assert "Measured through your VPN (amn0, AmneziaVPN)." in headline_lines(data)
    without = report_to_dict(RunResult(now, now, "p", "lab", (), Verdict((), (), "x")))
    assert "route" not in without
