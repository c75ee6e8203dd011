"""Profile editor: make and change profiles, checked as you type with the core's own rules.

Every edit renders the form as profile YAML and parses it with
``callpath.core.profile.document.parse_profile``
(``gui/profile_form.py``); the parser's message appears next to the field on its line. Secrets
are references; **Store in keyring…** puts a password in the OS keyring through
``callpath.core.profile.secretstore`` and writes ``keyring:SERVICE/USER`` in the field. Saved and
exported files
are the validated YAML, which the parser guarantees holds no secret.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from callpath.core.i18n import _
from callpath.core.model.results import PathId
from callpath.core.paths.registry import path_label
from callpath.core.profile import secretstore
from callpath.core.profile.document import ProfileError, load_profile
from callpath.core.report.document import write_text_atomically
from callpath.core.run.plan import plan_run
from callpath.gui.dialogs import Dialogs
from callpath.gui.profile_form import (
    TARGET_KINDS,
    ProfileForm,
    ProxyForm,
    ServerForm,
    Validation,
    check_form,
    form_from_profile,
    proxy_paths,
    server_paths,
    validate,
)
from callpath.gui.qt import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
    Signal,
)
from callpath.gui.sources import ProfileSource
from callpath.gui.widgets import wrapping_label

KEYRING_SERVICE = "callpath"
ERROR_STYLE = "color: #c62828;"
EXPORT_HEADER = (
    "# CallPath profile. Secrets are references (${env:NAME} or keyring:SERVICE/USER), never\n"
    "# values: store them on each computer with `callpath secret set SERVICE USER`.\n"
)


def _error_label() -> QLabel:
    label = wrapping_label()
    label.setStyleSheet(ERROR_STYLE)
    label.setVisible(False)
    return label


def _keyring_user(text: str) -> str:
    """A keyring user name from a field's context: no spaces, no '/'."""
    word = re.sub(r"[^A-Za-z0-9._@-]+", "-", text.strip()).strip("-")
    return word or "secret"


class ProfilePage(QWidget):
    checkRequested = Signal(object)  # a ProfileSource of one path
    useRequested = Signal(object)  # the saved Path, to select on the Home page
    homeRequested = Signal()

    def __init__(self, dialogs: Dialogs, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.dialogs = dialogs
        self.form = ProfileForm()
        self.file: Path | None = None
        self.validation: Validation = validate(self.form)
        # field key -> (input widget, error label); rebuilt with the server sections
        self.fields: dict[str, tuple[QWidget, QLabel]] = {}
        self._loading = False

        title = wrapping_label(_("Profile editor"), bold=True, size_delta=4)
        self.origin = wrapping_label()
        self.keyring_status = wrapping_label()
        self.keyring_status.setAccessibleName(_("Where secrets are stored"))

        self.new_button = QPushButton(_("&New"))
        self.new_button.clicked.connect(self.new_profile)
        self.import_button = QPushButton(_("&Import\u2026"))
        self.import_button.clicked.connect(self.import_profile)
        self.save_button = QPushButton(_("&Save\u2026"))
        self.save_button.clicked.connect(self.save)
        self.export_button = QPushButton(_("E&xport\u2026"))
        self.export_button.setToolTip(
            _("Write a copy to send; it holds references, never secrets.")
        )
        self.export_button.clicked.connect(self.export)
        self.use_button = QPushButton(_("&Use for a test"))
        self.use_button.clicked.connect(self.use)
        self.home_button = QPushButton(_("&Back"))
        self.home_button.clicked.connect(self.homeRequested)
        actions = QHBoxLayout()
        for button in (self.new_button, self.import_button, self.save_button, self.export_button):
            actions.addWidget(button)
        actions.addStretch(1)
        actions.addWidget(self.use_button)
        actions.addWidget(self.home_button)

        self.body = QWidget()
        self.body_layout = QVBoxLayout(self.body)
        self.scroll_area = scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(self.body)

        self.status = wrapping_label()
        self.status.setAccessibleName(_("Profile check"))

        layout = QVBoxLayout(self)
        layout.addWidget(title)
        layout.addWidget(self.origin)
        layout.addWidget(self.keyring_status)
        layout.addWidget(scroll, 1)
        layout.addWidget(self.status)
        layout.addLayout(actions)
        self.refresh_keyring()
        self._rebuild()

    # --- form building ----------------------------------------------------------------------

    def _line(
        self,
        form: QFormLayout,
        label: str,
        key: str,
        value: str,
        store: Callable[[str], None],
        *,
        secret_user: Callable[[], str] | None = None,
    ) -> QLineEdit:
        edit = QLineEdit(value)
        edit.setAccessibleName(label)
        error = _error_label()
        self.fields[key] = (edit, error)

        def changed(text: str) -> None:
            store(text)
            self.revalidate()

        edit.textChanged.connect(changed)
        holder = QWidget()
        column = QVBoxLayout(holder)
        column.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        row.addWidget(edit, 1)
        if secret_user is not None:
            edit.setPlaceholderText("${env:NAME} / keyring:SERVICE/USER")
            button = QPushButton(_("Store in keyring\u2026"))
            button.setAccessibleName(_("Store {field} in the keyring").format(field=label))
            button.clicked.connect(lambda: self.store_secret(edit, secret_user()))
            row.addWidget(button)
        column.addLayout(row)
        column.addWidget(error)
        form.addRow(label, holder)
        return edit

    def _rebuild(self) -> None:
        """Build every section from ``self.form`` (after loading, adding or removing)."""
        self._loading = True
        while self.body_layout.count():
            item = self.body_layout.takeAt(0)
            widget = item.widget() if item is not None else None
            if widget is not None:
                widget.hide()  # gone from the screen now, deleted when Qt is ready
                widget.deleteLater()
        self.fields = {}
        form = self.form

        general = QGroupBox(_("About this profile"))
        general_form = QFormLayout(general)
        self.name_edit = self._line(
            general_form, _("Name"), "name", form.name, lambda t: setattr(form, "name", t)
        )
        self._line(
            general_form,
            _("Description"),
            "description",
            form.description,
            lambda t: setattr(form, "description", t),
        )
        self._line(
            general_form,
            _("Sender (who made it)"),
            "sender",
            form.sender,
            lambda t: setattr(form, "sender", t),
        )
        self.body_layout.addWidget(general)

        target = QGroupBox(_("Who answers the test call"))
        target_form = QFormLayout(target)
        self.kind_box = QComboBox()
        self.kind_box.setAccessibleName(_("Target kind"))
        for kind in TARGET_KINDS:
            self.kind_box.addItem(kind, kind)
        self.kind_box.setCurrentIndex(max(0, self.kind_box.findData(form.target_kind)))
        self.kind_box.currentIndexChanged.connect(self._kind_changed)
        kind_error = _error_label()
        self.fields["target.kind"] = (self.kind_box, kind_error)
        kind_holder = QWidget()
        kind_column = QVBoxLayout(kind_holder)
        kind_column.setContentsMargins(0, 0, 0, 0)
        kind_column.addWidget(self.kind_box)
        kind_column.addWidget(kind_error)
        target_form.addRow(_("Kind"), kind_holder)
        self._line(
            target_form,
            _("URL"),
            "target.url",
            form.target_url,
            lambda t: setattr(form, "target_url", t),
        )
        self._line(
            target_form,
            _("Token"),
            "target.token",
            form.target_token,
            lambda t: setattr(form, "target_token", t),
            secret_user=lambda: _keyring_user(f"{form.name}-echo-token"),
        )
        self.body_layout.addWidget(target)

        servers = QGroupBox(_("STUN and TURN servers"))
        servers_layout = QVBoxLayout(servers)
        self.server_checks: list[tuple[QComboBox, QPushButton]] = []
        for index, server in enumerate(form.servers):
            servers_layout.addWidget(self._server_box(index, server))
        add_server = QPushButton(_("Add a server"))
        add_server.clicked.connect(self.add_server)
        servers_layout.addWidget(add_server)
        self.body_layout.addWidget(servers)

        proxies = QGroupBox(_("Proxies"))
        proxies_layout = QVBoxLayout(proxies)
        for index, proxy in enumerate(form.proxies):
            proxies_layout.addWidget(self._proxy_box(index, proxy))
        add_proxy = QPushButton(_("Add a proxy"))
        add_proxy.clicked.connect(self.add_proxy)
        proxies_layout.addWidget(add_proxy)
        self.body_layout.addWidget(proxies)

        masque = QGroupBox(_("MASQUE proxy (HTTP/3)"))
        masque_form = QFormLayout(masque)
        self._line(
            masque_form, _("URL"), "masque.url", form.masque_url, lambda t: self._set_masque(t)
        )
        self._line(
            masque_form,
            _("Server name"),
            "masque.server_name",
            form.masque_server_name,
            lambda t: setattr(form, "masque_server_name", t),
        )
        self._line(
            masque_form,
            _("Token"),
            "masque.token",
            form.masque_token,
            lambda t: setattr(form, "masque_token", t),
            secret_user=lambda: _keyring_user(f"{form.name}-masque-token"),
        )
        self.masque_check = QPushButton(_("Check MASQUE"))
        self.masque_check.clicked.connect(lambda: self.check("masque", 0, PathId.MASQUE.value))
        masque_form.addRow("", self.masque_check)
        self.body_layout.addWidget(masque)

        paths = QGroupBox(_("Paths to test (none ticked: every path the servers allow)"))
        paths_layout = QVBoxLayout(paths)
        self.path_boxes: dict[str, QCheckBox] = {}
        for path_id in PathId:
            box = QCheckBox(path_label(path_id.value))
            box.setChecked(path_id.value in form.paths)
            box.toggled.connect(lambda _on, p=path_id.value: self._path_toggled(p))
            self.path_boxes[path_id.value] = box
            paths_layout.addWidget(box)
        paths_error = _error_label()
        self.fields["paths"] = (paths, paths_error)
        paths_layout.addWidget(paths_error)
        self.body_layout.addWidget(paths)

        other = QGroupBox(_("Certificates"))
        other_form = QFormLayout(other)
        self._line(
            other_form,
            _("CA bundle file"),
            "ca_bundle",
            form.ca_bundle,
            lambda t: setattr(form, "ca_bundle", t),
        )
        self.body_layout.addWidget(other)
        self.body_layout.addStretch(1)
        self._loading = False
        self.revalidate()

    def _server_box(self, index: int, server: ServerForm) -> QGroupBox:
        box = QGroupBox(_("Server {number}").format(number=index + 1))
        form = QFormLayout(box)
        urls = QPlainTextEdit("\n".join(server.urls))
        urls.setAccessibleName(_("Server {number}: URIs").format(number=index + 1))
        urls.setPlaceholderText("stun:stun.example.org:3478\nturns:turn.example.org:443")
        urls.setFixedHeight(urls.fontMetrics().lineSpacing() * 4 + 12)
        urls_error = _error_label()
        self.fields[f"servers[{index}].urls"] = (urls, urls_error)
        check_box = QComboBox()
        check_box.setAccessibleName(_("Path to check"))
        check_button = QPushButton(_("Check this server"))

        def urls_changed() -> None:
            server.urls = urls.toPlainText().splitlines()
            self._fill_paths(check_box, server_paths(server))
            self.revalidate()

        urls.textChanged.connect(urls_changed)
        holder = QWidget()
        column = QVBoxLayout(holder)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(urls)
        column.addWidget(urls_error)
        form.addRow(_("URIs (one a line)"), holder)
        self._line(
            form,
            _("User name"),
            f"servers[{index}].username",
            server.username,
            lambda t: setattr(server, "username", t),
        )
        self._line(
            form,
            _("Password"),
            f"servers[{index}].credential",
            server.credential,
            lambda t: setattr(server, "credential", t),
            secret_user=lambda: _keyring_user(server.username or f"{self.form.name}-relay"),
        )
        self._fill_paths(check_box, server_paths(server))
        check_button.clicked.connect(
            lambda: self.check("servers", index, str(check_box.currentData() or ""))
        )
        remove = QPushButton(_("Remove"))
        remove.clicked.connect(lambda: self.remove("servers", index))
        row = QHBoxLayout()
        row.addWidget(check_box, 1)
        row.addWidget(check_button)
        row.addWidget(remove)
        form.addRow("", row)
        self.server_checks.append((check_box, check_button))
        return box

    def _proxy_box(self, index: int, proxy: ProxyForm) -> QGroupBox:
        box = QGroupBox(_("Proxy {number}").format(number=index + 1))
        form = QFormLayout(box)
        check_box = QComboBox()
        check_box.setAccessibleName(_("Path to check"))

        def url_changed(text: str) -> None:
            proxy.url = text
            self._fill_paths(check_box, proxy_paths(proxy))

        self._line(form, _("URL"), f"proxies[{index}].url", proxy.url, url_changed)
        self._line(
            form,
            _("Password"),
            f"proxies[{index}].password",
            proxy.password,
            lambda t: setattr(proxy, "password", t),
            secret_user=lambda: _keyring_user(f"{self.form.name}-proxy-{index + 1}"),
        )
        self._line(
            form,
            _("STUN server"),
            f"proxies[{index}].stun",
            proxy.stun,
            lambda t: setattr(proxy, "stun", t),
        )
        self._fill_paths(check_box, proxy_paths(proxy))
        check_button = QPushButton(_("Check this proxy"))
        check_button.clicked.connect(
            lambda: self.check("proxies", index, str(check_box.currentData() or ""))
        )
        remove = QPushButton(_("Remove"))
        remove.clicked.connect(lambda: self.remove("proxies", index))
        row = QHBoxLayout()
        row.addWidget(check_box, 1)
        row.addWidget(check_button)
        row.addWidget(remove)
        form.addRow("", row)
        return box

    @staticmethod
    def _fill_paths(box: QComboBox, paths: list[str]) -> None:
        current = box.currentData()
        box.clear()
        for path in paths:
            box.addItem(path_label(path), path)
        if current is not None and box.findData(current) >= 0:
            box.setCurrentIndex(box.findData(current))

    def _set_masque(self, text: str) -> None:
        self.form.masque_url = text

    def _kind_changed(self, index: int) -> None:
        self.form.target_kind = str(self.kind_box.itemData(index))
        self.revalidate()

    def _path_toggled(self, path: str) -> None:
        self.form.paths = [p for p, box in self.path_boxes.items() if box.isChecked()]
        self.revalidate()

    def add_server(self) -> None:
        self.form.servers.append(ServerForm())
        self._rebuild()

    def add_proxy(self) -> None:
        self.form.proxies.append(ProxyForm())
        self._rebuild()

    def remove(self, kind: str, index: int) -> None:
        entries: list[ServerForm] | list[ProxyForm] = getattr(self.form, kind)
        del entries[index]
        self._rebuild()

    # --- checking as you type ---------------------------------------------------------------

    def revalidate(self) -> None:
        if self._loading:
            return
        self.validation = validate(self.form, self.file)
        problem_field = self.validation.field
        for key, (_widget, label) in self.fields.items():
            shown = key == problem_field and self.validation.error is not None
            label.setText(self.validation.error.message if shown and self.validation.error else "")
            label.setVisible(shown)
        profile = self.validation.profile
        error = self.validation.error
        if profile is not None:
            paths = ", ".join(path_label(p) for p in profile.paths)
            self.status.setStyleSheet("")
            self.status.setText(_("The profile is valid; a test runs {paths}.").format(paths=paths))
        elif error is not None:
            where = _("line {line}: ").format(line=error.line) if error.line is not None else ""
            self.status.setStyleSheet(ERROR_STYLE)
            self.status.setText(
                _("Not valid yet \u2014 {where}{message}").format(
                    where=where, message=error.message
                )
            )
        for button in (self.save_button, self.export_button, self.use_button):
            button.setEnabled(profile is not None)

    def show_problem(self) -> None:
        """Scroll to the field whose message is shown."""
        entry = self.fields.get(self.validation.field or "")
        if entry is not None:
            self.scroll_area.ensureWidgetVisible(entry[1], 50, 80)

    def error_for(self, key: str) -> str:
        """The message shown next to field ``key`` (empty when none)."""
        entry = self.fields.get(key)
        return entry[1].text() if entry is not None and not entry[1].isHidden() else ""

    # --- secrets ----------------------------------------------------------------------------

    def refresh_keyring(self) -> None:
        try:
            backend = secretstore.require_backend()
        except secretstore.NoKeyringError as error:
            self.keyring_available = False
            self.keyring_status.setStyleSheet(ERROR_STYLE)
            self.keyring_status.setText(
                _(
                    "No keyring is available on this computer, so passwords cannot be stored "
                    "here: {problem}."
                ).format(problem=error)
            )
            return
        self.keyring_available = True
        self.keyring_status.setStyleSheet("")
        stored = _("Passwords are stored in the system keyring ({backend}), never in the profile.")
        self.keyring_status.setText(stored.format(backend=backend))

    def store_secret(self, edit: QLineEdit, user: str) -> None:
        """Ask for a password, keep it in the keyring, put the reference in the field."""
        self.refresh_keyring()
        if not self.keyring_available:
            self.dialogs.show_error(self, _("No keyring available"), self.keyring_status.text())
            return
        secret = self.dialogs.ask_secret(
            self,
            _("Store a password"),
            _("Password for {user} (kept in the keyring as {service}/{user}):").format(
                user=user, service=KEYRING_SERVICE
            ),
        )
        if not secret:
            return
        try:
            secretstore.set_secret(KEYRING_SERVICE, user, secret)
        except secretstore.SecretStoreError as error:
            self.dialogs.show_error(self, _("The password was not stored"), str(error))
            return
        edit.setText(f"keyring:{KEYRING_SERVICE}/{user}")

    # --- files ------------------------------------------------------------------------------

    def new_profile(self) -> None:
        self.form = ProfileForm()
        self.file = None
        self.origin.setText("")
        self._rebuild()

    def load(self, file: Path) -> bool:
        """Open a profile file in the editor."""
        try:
            profile = load_profile(file)
        except ProfileError as error:
            self.dialogs.show_error(self, _("This profile cannot be used"), str(error))
            return False
        self.form = form_from_profile(profile)
        self.file = file
        sender = profile.sender or _("nobody (the profile does not say)")
        self.origin.setText(
            _("{file} \u2014 says it is from: {sender}").format(file=file.name, sender=sender)
        )
        self._rebuild()
        return True

    def restore(self, form: ProfileForm, file: Path | None, origin: str) -> None:
        """Show a form kept from the previous window (language switch), unsaved edits included."""
        self.form = form
        self.file = file
        self.origin.setText(origin)
        self._rebuild()

    def import_profile(self) -> None:
        file = self.dialogs.choose_profile(self)
        if file is not None:
            self.load(file)

    def _write(self, file: Path) -> bool:
        if self.validation.profile is None:
            return False
        try:
            write_text_atomically(file, EXPORT_HEADER + self.validation.rendered.text)
        except OSError as error:
            self.dialogs.show_error(self, _("The profile was not saved"), str(error))
            return False
        self.status.setText(_("Saved to {file}").format(file=file))
        return True

    def _suggested(self) -> str:
        return f"{_keyring_user(self.form.name).lower()}.yaml"

    def save(self) -> bool:
        file = self.file or self.dialogs.choose_save_path(
            self, _("Save profile"), self._suggested(), _("CallPath profiles (*.yaml *.yml)")
        )
        if file is None or not self._write(file):
            return False
        self.file = file
        return True

    def export(self) -> None:
        file = self.dialogs.choose_save_path(
            self, _("Export profile"), self._suggested(), _("CallPath profiles (*.yaml *.yml)")
        )
        if file is not None:
            self._write(file)

    def use(self) -> None:
        if self.save() and self.file is not None:
            self.useRequested.emit(self.file)

    # --- checking one server ----------------------------------------------------------------

    def check(self, kind: str, index: int, path: str) -> None:
        """Run only ``path`` through one server, with the secrets this computer has."""
        if not path:
            self.status.setText(_("This entry has no URI that a path could check yet."))
            return
        reduced = validate(check_form(self.form, kind, index, path), self.file)
        try:
            if reduced.profile is None:
                assert reduced.error is not None
                raise reduced.error
            plan = plan_run(reduced.profile)
        except ProfileError as error:
            self.status.setStyleSheet(ERROR_STYLE)
            self.status.setText(error.message)
            return
        file = self.file or Path(self._suggested())
        self.checkRequested.emit(ProfileSource(file, plan))
