"""Pure parts of the desktop app: explanations, traffic lights, history location, sources.

No Qt here: these modules must work (and be testable) without a display.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from callpath.core.i18n import set_language
from callpath.core.present.failures import FAILURE_EXPLANATIONS, explain_failure, next_step_for
from callpath.core.profile.document import ProfileError
from callpath.core.run.source import DemoSource, ProfileSource
from callpath.gui.history import DATA_DIR_VARIABLE, data_dir, history_dir
from callpath.gui.report_view import Light, path_light, path_view

COMMON_FAILURES = (
    "turn_auth_failed",
    "ssl_unknown_authority",
    "ssl_invalid_hostname",
    "connection_refused",
    "generic_timeout_error",
    "stun_no_response",
    "ice_failed",
    "dtls_handshake_timeout",
    "media_stalled",
    "path_not_exercised",
    "dns_nxdomain_error",
    "connection_reset",
    "interrupted",
)


@pytest.fixture
def english() -> Iterator[None]:
    set_language("en")
    yield
    set_language("en")


@pytest.mark.parametrize("failure", COMMON_FAILURES)
def test_common_failures_have_their_own_explanation_in_both_languages(
    failure: str, english: None
) -> None:
    generic = explain_failure("unknown_failure: boom")
    english_text = explain_failure(failure)
    assert english_text is not None and english_text != generic
    set_language("ru")
    russian = explain_failure(failure)
    assert russian is not None and russian != english_text, "missing Russian translation"


def test_failure_families_and_unknown_strings_are_explained(english: None) -> None:
    assert (
        explain_failure("turn_allocate_failed:486") == FAILURE_EXPLANATIONS["turn_allocate_failed"]
    )
    assert "socks_host_unreachable" in (explain_failure("socks_host_unreachable") or "")
    assert explain_failure("something_new") == FAILURE_EXPLANATIONS["unknown_failure"]
    assert explain_failure(None) is None
    assert next_step_for("ice_failed") is not None
    assert next_step_for(None) is None


def _path(**fields: object) -> dict[str, object]:
    path: dict[str, object] = {
        "id": "turn-udp",
        "exercised": True,
        "failure": None,
        "stages": [],
        "voice": {"grade": "good"},
        "video": {"grade": "good"},
    }
    path.update(fields)
    return path


def test_traffic_lights() -> None:
    assert path_light(_path()) == Light.GREEN
    assert path_light(_path(video={"grade": "degraded"})) == Light.AMBER
    assert path_light(_path(voice={"grade": "good"}, video={"grade": "unusable"})) == Light.AMBER
    unusable = {"grade": "unusable"}
    assert path_light(_path(voice=unusable, video=unusable)) == Light.RED
    failed_stage = [{"stage": "ice", "failure": "ice_failed"}]
    failed = _path(
        exercised=False,
        failure="ice_failed",
        stages=failed_stage,
        voice={"grade": "not_tested"},
        video={"grade": "not_tested"},
    )
    assert path_light(failed) == Light.RED
    stopped = _path(exercised=False, failure="interrupted", stages=failed_stage)
    assert path_light(stopped) == Light.GREY


def test_data_dir_follows_the_environment_override(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DATA_DIR_VARIABLE, str(tmp_path / "portable"))
    assert data_dir() == tmp_path / "portable"
    assert history_dir() == tmp_path / "portable" / "history"
    monkeypatch.delenv(DATA_DIR_VARIABLE)
    assert data_dir().name == "callpath"


def test_profile_source_reads_the_profile_in_the_caller_and_errors_name_the_line(
    tmp_path: Path,
) -> None:
    good = tmp_path / "direct.yaml"
    good.write_text(
        "version: 1\nname: Office network\ntarget:\n  kind: echo\n"
        "  url: http://127.0.0.1:9\npaths: [direct]\n",
        encoding="utf-8",
    )
    source = ProfileSource.from_file(good)
    assert source.title == "Office network"
    assert source.path_ids == ("direct",)
    assert source.expected_seconds() == DemoSource().expected_seconds()

    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nname: x\npaths: [direct, carrier-pigeon]\n", encoding="utf-8")
    with pytest.raises(ProfileError) as raised:
        ProfileSource.from_file(bad)
    assert raised.value.file is not None and raised.value.line is not None


def test_the_pure_gui_modules_do_not_import_qt() -> None:
    code = (
        "import sys\n"
        "import callpath.gui.report_view, callpath.gui.html_report\n"
        "import callpath.gui.history, callpath.gui.report_files\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('PySide6', 'shiboken6'))\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=Path(__file__).parents[1],
    )
    assert result.returncode == 0, result.stderr


def test_a_stalled_path_says_when_it_stalled_and_shows_no_good_mos(english: None) -> None:
    """The report's values, as the app reads them: a path that stalled shows "stalled after
    N s" and the MOS the report holds over the whole window (none above "unusable")."""
    path = {
        "id": "turn-tls",
        "exercised": True,
        "failure": "media_stalled",
        "voice": {"grade": "unusable", "mos": 1.0, "loss_pct": 90.0},
        "video": {"grade": "unusable", "bitrate_kbps": 12.0},
        "stages": [
            {"stage": "media_up", "failure": None, "evidence": {}},
            {"stage": "quality", "failure": "media_stalled", "evidence": {"stalled_after_s": 0.4}},
        ],
    }
    status = path_view(path).status
    assert "stalled after 0.4 s" in status and "MOS 1.0" in status
    set_language("ru")
    assert "остановился через 0,4 с" in path_view(path).status
