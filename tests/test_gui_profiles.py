"""The profile editor: checked as you type by callpath.core.profile.document's own rules, secrets
in an in-process
keyring, save/export without secrets, the sender confirmation, and "check this server" as a
real call through coturn on 127.0.0.1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from callpath.core.profile.document import load_profile
from callpath.gui.app import AppController
from callpath.gui.qt import QLineEdit, QPlainTextEdit
from callpath.gui.report_view import Light
from tests.gui_helpers import dialogs_of, wait_for_page
from tests.keyrings import MemoryKeyring
from tests.servers import CoturnServer

pytest_plugins = ["tests.gui_support"]
pytestmark = pytest.mark.timeout(120)


def edit(app: AppController, key: str, text: str) -> None:
    widget = app.window.profiles.fields[key][0]
    if isinstance(widget, QPlainTextEdit):
        widget.setPlainText(text)
    else:
        assert isinstance(widget, QLineEdit)
        widget.setText(text)


def test_errors_appear_next_to_the_field_in_the_cores_words(
    app: AppController, memory_keyring: MemoryKeyring
) -> None:
    window = app.window
    window.tool_actions["profiles"].trigger()
    page = window.profiles
    assert window.current_page() == "profiles"
    assert page.error_for("name") == "name is empty; give it a value"
    assert not page.save_button.isEnabled()

    edit(app, "name", "Helpdesk relays")
    assert page.error_for("name") == ""
    assert page.error_for("target.url") == "target.url is empty; give it a value"
    edit(app, "target.url", "ftp://echo.example.org")
    assert "is not an http:// or https:// URL" in page.error_for("target.url")
    edit(app, "target.url", "https://echo.example.org:8443")

    page.add_server()
    edit(app, "servers[0].urls", "turns:turn.example.org:443?transport=udp")
    assert page.error_for("servers[0].urls").startswith(
        "ice_servers[1].urls: bad ICE server URI 'turns:turn.example.org:443?transport=udp'"
    )
    edit(app, "servers[0].urls", "turns:turn.example.org:443")
    edit(app, "servers[0].username", "alice")
    edit(app, "servers[0].credential", "hunter2")  # a literal password is refused...
    message = page.error_for("servers[0].credential")
    assert message == (
        "ice_servers[1].credential: secrets are never written in a profile; use ${env:NAME} or "
        "keyring:SERVICE/USER"
    )
    assert "hunter2" not in page.status.text()
    assert "line 10" in page.status.text()
    edit(app, "servers[0].credential", "${env:TURN_PASSWORD}")
    assert page.validation.error is None
    assert "a test runs direct UDP, TURN over TLS" in page.status.text()

    page.path_boxes["turn-udp"].setChecked(True)
    assert page.error_for("paths").startswith("path 'turn-udp' needs a turn:HOST:PORT?")
    page.path_boxes["turn-udp"].setChecked(False)
    assert page.validation.profile is not None and page.save_button.isEnabled()


def test_a_password_goes_to_the_keyring_and_saved_files_hold_only_the_reference(
    app: AppController, memory_keyring: MemoryKeyring, tmp_path: Path
) -> None:
    window = app.window
    window.tool_actions["profiles"].trigger()
    page = window.profiles
    assert "MemoryKeyring" in page.keyring_status.text()
    edit(app, "name", "Helpdesk relays")
    edit(app, "sender", "Example NGO helpdesk")
    edit(app, "target.url", "https://echo.example.org:8443")
    page.add_server()
    edit(app, "servers[0].urls", "stun:stun.example.org\nturns:turn.example.org:443")
    edit(app, "servers[0].username", "alice")

    dialogs_of(app).secrets.append("s3cret-Pa55")
    credential = page.fields["servers[0].credential"][0]
    store = next(
        button
        for button in credential.parentWidget().findChildren(type(page.save_button))
        if button.text().startswith("Store in keyring")
    )
    store.click()
    assert memory_keyring.passwords == {("callpath", "alice"): "s3cret-Pa55"}
    assert isinstance(credential, QLineEdit) and credential.text() == "keyring:callpath/alice"
    assert page.validation.error is None

    saved = tmp_path / "mine.yaml"
    exported = tmp_path / "to-send.yaml"
    dialogs_of(app).paths.extend([saved, exported])
    assert page.save()
    page.export()
    for file in (saved, exported):
        text = file.read_text(encoding="utf-8")
        assert "s3cret-Pa55" not in text and "keyring:callpath/alice" in text
        profile = load_profile(file)
        assert profile.sender == "Example NGO helpdesk"
        credential_ref = profile.ice_servers[0].credential
        assert credential_ref is not None and credential_ref.resolve() == "s3cret-Pa55"

    # Opening the saved file again fills the same form.
    page.new_profile()
    assert page.load(saved)
    assert page.form.servers[0].credential == "keyring:callpath/alice"
    assert "says it is from: Example NGO helpdesk" in page.origin.text()


def test_without_a_keyring_the_editor_says_so_and_names_the_env_fallback(
    app: AppController, no_keyring: None
) -> None:
    window = app.window
    window.tool_actions["profiles"].trigger()
    page = window.profiles
    page.refresh_keyring()
    assert "No keyring is available" in page.keyring_status.text()
    assert "${env:NAME}" in page.keyring_status.text()
    page.add_server()
    credential = page.fields["servers[0].credential"][0]
    assert isinstance(credential, QLineEdit)
    page.store_secret(credential, "alice")
    title, text = dialogs_of(app).errors[-1]
    assert title == "No keyring available" and "${env:NAME}" in text
    assert credential.text() == ""


def test_someone_elses_profile_is_confirmed_with_its_sender_and_servers(
    app: AppController, tmp_path: Path
) -> None:
    profile = tmp_path / "from-helpdesk.yaml"
    profile.write_text(
        "version: 1\nname: Their relays\nsender: Helpdesk of Example NGO\n"
        "target: {kind: echo, url: 'https://echo.example.org:8443'}\n"
        "ice_servers:\n  - urls: ['stun:stun.example.org', 'turns:turn.example.org:443']\n",
        encoding="utf-8",
    )
    dialogs = dialogs_of(app)
    dialogs.answers.append(False)
    assert not app.window.open_profile(profile)
    title, text = dialogs.questions[-1]
    assert title == "Use this profile?"
    assert "says it is from: Helpdesk of Example NGO" in text
    for host in (
        "https://echo.example.org:8443",
        "stun:stun.example.org:3478",
        "turns:turn.example.org:443?transport=tcp",
    ):
        assert host in text
    assert app.window.home.profile_source is None

    dialogs.answers.append(True)
    assert app.window.open_profile(profile)
    assert app.window.home.profile_source is not None
    assert app.window.home.profile_choice.isChecked()


def test_check_this_server_runs_only_that_path_through_the_relay(
    qtbot: Any, app: AppController, memory_keyring: MemoryKeyring, coturn: CoturnServer
) -> None:
    memory_keyring.passwords[("callpath", coturn.username)] = coturn.password
    window = app.window
    window.tool_actions["profiles"].trigger()
    page = window.profiles
    edit(app, "name", "Lab relay")
    page.kind_box.setCurrentIndex(page.kind_box.findData("relay-loopback"))
    page.add_server()
    edit(app, "servers[0].urls", f"{coturn.turn_udp_uri}\n{coturn.turn_tcp_uri}")
    edit(app, "servers[0].username", coturn.username)
    edit(app, "servers[0].credential", f"keyring:callpath/{coturn.username}")
    assert page.validation.error is None, page.validation.error
    combo, button = page.server_checks[0]
    assert [combo.itemData(i) for i in range(combo.count())] == ["turn-udp", "turn-tcp"]
    combo.setCurrentIndex(0)
    button.click()
    wait_for_page(qtbot, window, "verdict")
    assert list(window.verdict.cards) == ["turn-udp"]
    assert window.verdict.cards["turn-udp"].light.light == Light.GREEN


def test_unsaved_edits_and_workshop_rules_survive_a_language_switch(app: AppController) -> None:
    window = app.window
    window.tool_actions["profiles"].trigger()
    edit(app, "name", "Half-made profile")
    window.profiles.add_server()
    edit(app, "servers[0].urls", "turns:turn.example.org:443")
    window.workshop.select_scenario("udp-blocked")
    window.workshop.toggle_rule(1)  # Filter STUN on
    window.language_actions["ru"].trigger()
    rebuilt = app.window
    assert rebuilt is not window and rebuilt.current_page() == "profiles"
    assert rebuilt.profiles.form.name == "Half-made profile"
    assert rebuilt.profiles.form.servers[0].urls == ["turns:turn.example.org:443"]
    assert rebuilt.workshop.scenario is not None
    assert rebuilt.workshop.scenario.id == "udp-blocked"
    enabled = {k for k, v in rebuilt.workshop.composer.states.items() if v.enabled}
    assert enabled == {"drop_udp", "drop_stun"}
    assert rebuilt.workshop.rows[1].check.isChecked()
    rebuilt.language_actions["en"].trigger()
