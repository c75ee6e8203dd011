"""Support view and findings rendering, from reports built with the core's dataclasses.

Real widgets on the offscreen platform; any Qt warning fails. The comparison logic itself is
tested in tests/test_report_diff.py, real engine reports in tests/test_gui_workshop.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from callpath.core.model.findings import Confidence, Finding
from callpath.core.model.results import RunResult
from callpath.core.report.document import report_to_dict, write_report
from callpath.gui.app import AppController
from callpath.gui.html_report import render_html
from callpath.gui.qt import QApplication
from callpath.gui.report_files import redacted_copy
from callpath.gui.report_view import FindingKind, finding_views, next_steps, summary_text
from tests.gui_helpers import dialogs_of
from tests.test_gui_app import made_up_run

pytest_plugins = ["tests.gui_support"]
pytestmark = pytest.mark.timeout(60)

STUN = Finding(
    "stun_signature_blocked",
    ("direct", "turn-udp"),
    {"stun_answered": False, "random_answered": True, "target": "203.0.113.5:3478"},
    Confidence.HIGH,
    "Your network drops the STUN packets calls use to connect.",
    "Use a relay over TCP or TLS.",
    "STUN to 203.0.113.5:3478 lost while a random datagram <b>came back</b>.",
)
UNEXPLAINED = Finding(
    "inconclusive", ("turn-tcp",), {}, Confidence.LOW, "Some paths failed.", "Run again.", "tech"
)
POOR = Finding("poor_network", (), {}, Confidence.MEDIUM, "The network is bad.", "Wait.", "x")


def with_findings(run: RunResult, *findings: Finding) -> RunResult:
    from dataclasses import replace

    return replace(run, findings=findings)


def test_findings_are_ordered_named_and_reach_every_output() -> None:
    report = report_to_dict(with_findings(made_up_run(), UNEXPLAINED, POOR, STUN), redact=False)
    views = finding_views(report)
    assert [v.kind for v in views] == [
        FindingKind.CENSORSHIP,
        FindingKind.NETWORK,
        FindingKind.INCONCLUSIVE,
    ]
    assert views[0].confidence == "high confidence"
    assert views[0].path_labels == "direct UDP, TURN over UDP"
    steps = next_steps(report)
    assert "Use a relay over TCP or TLS." in steps and "Run again." not in steps
    summary = summary_text(report)
    assert "What CallPath found:" in summary
    assert (
        "- Your network drops the STUN packets calls use to connect. "
        "(direct UDP, TURN over UDP; high confidence)" in summary
    )
    page = render_html(report)
    assert "What CallPath found" in page and "Findings of the diagnosis" in page
    assert "&lt;b&gt;came back&lt;/b&gt;" in page and "<b>came back</b>" not in page
    # Redacting a report from history hides the addresses the diagnosis quoted.
    redacted = redacted_copy(report)
    text = str(redacted["findings"])
    assert "203.0.113.5" not in text and "host-" in text


def test_the_support_view_shows_one_report_in_full_and_copies_a_path_section(
    app: AppController, tmp_path: Path
) -> None:
    file = tmp_path / "user.json"
    write_report(file, with_findings(made_up_run(), STUN), redact=True)
    window = app.window
    window.home.support_button.click()
    assert window.current_page() == "support"
    support = window.support
    assert not support.copy_button.isEnabled()
    dialogs_of(app).paths.append(file)
    support.first.open_button.click()
    assert not support.diff_box.isVisibleTo(support)
    full = support.first.browser.toPlainText()
    assert "ssl_unknown_authority" in full and "stun_signature_blocked" in full
    assert "host-1" in full  # the user's redacted report stays redacted
    titles = [s.title for s in support.sections]
    assert titles[:2] == ["Overview", "Findings of the diagnosis"]
    support.section_box.setCurrentIndex(titles.index("TURN over TLS"))
    support.copy_button.click()
    text = QApplication.clipboard().text()
    assert text.startswith("TURN over TLS: does not work.")
    assert "connect" in text and "ssl_unknown_authority" in text
    assert 'sni: "host-' in text  # evidence is part of the stage timeline
    assert "copied" in support.status.text()


def test_two_reports_side_by_side_with_the_differences_highlighted(
    app: AppController, tmp_path: Path
) -> None:
    before, after = tmp_path / "before.json", tmp_path / "after.json"
    write_report(before, with_findings(made_up_run(), STUN), redact=False)
    fixed = made_up_run()
    from dataclasses import replace

    paths = list(fixed.paths)
    paths[1] = replace(paths[0], path_id="turn-tls", server="turns:relay.example.org:443")
    write_report(after, replace(fixed, paths=tuple(paths)), redact=False)

    window = app.window
    window.open_report(before)
    window.verdict.support_button.click()  # the shown report becomes the 1st
    support = window.support
    assert window.current_page() == "support"
    dialogs_of(app).paths.append(after)
    support.second.open_button.click()
    assert support.diff_box.isVisibleTo(support)
    html = support.diff_browser.toHtml()
    assert "#c8e6c9" in html  # turn-tls now carries calls: a green cell
    text = support.sections[0].text
    assert "TURN over TLS (better):" in text
    assert "failure gone: ssl_unknown_authority at “connection to the server”" in text
    assert "Finding gone: Your network drops the STUN packets" in text
    assert "direct UDP: no change" in text

    support.swap_button.click()
    assert "TURN over TLS (worse):" in support.sections[0].text
    assert "New finding: Your network drops the STUN packets" in support.sections[0].text

    # The comparison survives a language switch.
    window.language_actions["ru"].trigger()
    assert app.window.support.diff_box.isVisibleTo(app.window.support)
    app.window.language_actions["en"].trigger()


def test_an_invalid_file_in_the_support_view_is_refused_with_a_message(
    app: AppController, tmp_path: Path, qtbot: Any
) -> None:
    bad = tmp_path / "notes.json"
    bad.write_text("[]", encoding="utf-8")
    dialogs_of(app).paths.append(bad)
    app.window.show_page("support")
    app.window.support.first.open_button.click()
    assert dialogs_of(app).errors[-1][0] == "This is not a CallPath report"
    assert app.window.support.reports == [None, None]


def test_the_html_report_names_the_server_name_that_carried_the_call() -> None:
    from dataclasses import replace

    from callpath.core.model.results import SniAttempt

    run = made_up_run()
    attempts = (SniAttempt("relay.example.org", "media_stalled"), SniAttempt("vk.com", None))
    paths = tuple(
        replace(path, sni_attempts=attempts) if i == 0 else path for i, path in enumerate(run.paths)
    )
    report = report_to_dict(replace(run, paths=paths))
    page = render_html(report)
    assert "Server names (SNI) tried:" in page
    assert "vk.com (works)" in page and "(media_stalled)" in page
    # The relay's own name is redacted like the server; the alternative stays readable.
    assert "relay.example.org" not in page
