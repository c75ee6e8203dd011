"""Running: one row of stage indicators per path, live quality charts, and Stop."""

from __future__ import annotations

from callpath.core.call.quality import grade_bands
from callpath.core.i18n import N_, _
from callpath.core.model.events import (
    HoldPathEnded,
    HoldSampleTaken,
    HoldStarted,
    PathFinished,
    RunStarted,
    SampleTaken,
    StageFinished,
    StageStarted,
)
from callpath.core.model.results import STAGE_ORDER, MediaKind
from callpath.core.paths.registry import path_label
from callpath.core.present.failures import stage_name
from callpath.core.present.hold import duration_text, hold_outcome
from callpath.core.report.document import path_to_dict
from callpath.gui.qt import (
    QColor,
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    Qt,
    QTimer,
    QVBoxLayout,
    QWidget,
    Signal,
)
from callpath.gui.report_view import (
    LIGHT_NAMES,
    SERIES,
    combine,
    path_view,
    series_name,
)
from callpath.gui.widgets import (
    PRESENTER_SCALE,
    SERIES_COLOURS,
    ChartCard,
    ChartLegend,
    DirectedLabel,
    StageIndicator,
    StageState,
    wrapping_label,
)

# Short column headings; the full stage names are in tooltips and accessible names.
STAGE_SHORT = {
    "resolve": N_("DNS"),
    "connect": N_("connect"),
    "turn_allocate": N_("relay"),
    "ice": N_("ICE"),
    "dtls": N_("DTLS"),
    "media_up": N_("media"),
    "quality": N_("quality"),
}
PREPARE_AGAIN_MS = 1500
# Value axes start this high ("" = either kind): a healthy call's values fit without rescaling.
SCALE_FLOORS = {
    ("", "rtt_ms"): 100.0,
    ("", "jitter_ms"): 30.0,
    ("", "loss_pct"): 5.0,
    ("audio", "bitrate_kbps"): 80.0,
    ("video", "bitrate_kbps"): 800.0,
}
DIGITS = {"rtt_ms": 0, "jitter_ms": 1, "loss_pct": 1, "bitrate_kbps": 0}
# The value axis's unit of each metric.
UNITS = {"rtt_ms": N_("ms"), "jitter_ms": N_("ms"), "loss_pct": "%", "bitrate_kbps": N_("kbit/s")}


def path_colour(index: int) -> QColor:
    """The colour of the ``index``-th path of a run: its swatch, chart line and legend entry."""
    return QColor(SERIES_COLOURS[index % len(SERIES_COLOURS)])


class ChartFeed:
    """Puts each second's sample on the charts: both directions combined (the worse leg decides
    the call, as on the Verdict page), one line per path in the path's colour."""

    def __init__(self, charts: dict[tuple[str, str], ChartCard]) -> None:
        self.charts = charts
        self._samples: dict[tuple[str, str, str, float], list[float]] = {}

    def clear(self) -> None:
        self._samples.clear()
        for card in self.charts.values():
            card.chart.clear()
            card.caption.setText(card.title)

    def add(self, event: SampleTaken, colour: QColor) -> None:
        sample = event.sample
        for metric in SERIES:
            card = self.charts.get((sample.kind.value, metric))
            value = getattr(sample, metric)
            if card is None or value is None:
                continue
            key = (event.path_id, sample.kind.value, metric, sample.t)
            values = self._samples.setdefault(key, [])
            values.append(float(value))
            card.set_point(event.path_id, sample.t, combine(metric, values), colour, DIGITS[metric])


def chart_card(kind: MediaKind, metric: str, title: str | None = None) -> ChartCard:
    """A live chart of ``metric`` for ``kind``: its unit on the value axis, its grade bands."""
    floor = SCALE_FLOORS.get((kind.value, metric), SCALE_FLOORS.get(("", metric), 1.0))
    return ChartCard(
        title or series_name(metric),
        _(UNITS[metric]),
        grade_bands(kind, metric),
        scale_floor=floor,
    )


class _PathRow:
    def __init__(self, path_id: str, colour: QColor) -> None:
        self.colour = colour
        self.swatch = QFrame()
        self.swatch.setFixedSize(12, 12)
        self.swatch.setStyleSheet(f"background: {colour.name()}; border-radius: 6px;")
        self.name = DirectedLabel(path_label(path_id))
        self.stages = {
            stage.value: StageIndicator(stage_name(stage.value)) for stage in STAGE_ORDER
        }
        self.status = wrapping_label(_("waiting"))


class RunningPage(QWidget):
    stopRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = wrapping_label(_("Testing\u2026"), bold=True, size_delta=4)
        self.subtitle = wrapping_label()
        self.rows: dict[str, _PathRow] = {}
        self._hold_duration = 0.0

        self.paths_box = QGroupBox(_("Paths"))
        self.grid = QGridLayout(self.paths_box)
        self.grid.setHorizontalSpacing(10)

        charts_box = QGroupBox(_("Call quality, live"))
        charts = QGridLayout(charts_box)
        # One legend for every chart: the path colours, and the grade bands behind the lines.
        self.legend = ChartLegend()
        charts.addWidget(self.legend, 0, 0, 1, len(SERIES))
        self.charts: dict[tuple[str, str], ChartCard] = {}
        self.chart_headings: list[QLabel] = []
        for row, (kind, kind_title) in enumerate(
            ((MediaKind.AUDIO, _("Voice")), (MediaKind.VIDEO, _("Video")))
        ):
            heading = QLabel(kind_title)
            font = heading.font()
            font.setBold(True)
            heading.setFont(font)
            self.chart_headings.append(heading)
            charts.addWidget(heading, row * 2 + 1, 0, 1, len(SERIES))
            for column, metric in enumerate(SERIES):
                card = chart_card(kind, metric)
                self.charts[(kind.value, metric)] = card
                charts.addWidget(card, row * 2 + 2, column)

        self.feed = ChartFeed(self.charts)
        # Draw the page once, off screen, soon after the window is built: the charts' first
        # paint (axes, tick labels, fonts) is the costliest, and would otherwise come when a
        # run starts, while the engine starts too.
        # Once soon (hidden, default size) and once when the window has surely been laid out
        # (the page then has the size it will be shown at; axes are cached per size).
        QTimer.singleShot(0, self.prepare)
        QTimer.singleShot(PREPARE_AGAIN_MS, self.prepare)

        self.stop_button = QPushButton(_("S&top"))
        self.stop_button.setAccessibleName(_("Stop the test"))
        self.stop_button.clicked.connect(self._stop)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.stop_button)

        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addWidget(self.subtitle)
        layout.addWidget(self.paths_box)
        layout.addWidget(charts_box)
        layout.addStretch(1)
        layout.addLayout(buttons)

    def begin(self, source_title: str, path_ids: tuple[str, ...], seconds: int) -> None:
        """Reset for a new run of ``source_title``."""
        self.title.setText(_("Testing: {source}").format(source=source_title))
        self.subtitle.setText(
            _(
                "About {seconds} seconds. You can stop at any time; what was measured is kept."
            ).format(seconds=seconds)
        )
        self.stop_button.setEnabled(True)
        self.stop_button.setText(_("S&top"))
        self.feed.clear()
        self._build_rows(path_ids)

    def _build_rows(self, path_ids: tuple[str, ...]) -> None:
        while self.grid.count():
            item = self.grid.takeAt(0)
            widget = item.widget() if item is not None else None
            if widget is not None:
                widget.deleteLater()
        self.rows = {}
        for column, stage in enumerate(STAGE_ORDER, start=2):
            heading = QLabel(_(STAGE_SHORT[stage.value]))
            heading.setToolTip(stage_name(stage.value))
            self.grid.addWidget(heading, 0, column, Qt.AlignmentFlag.AlignHCenter)
        status_column = len(STAGE_ORDER) + 2
        for index, path_id in enumerate(path_ids, start=1):
            colour = path_colour(index - 1)
            row = _PathRow(path_id, colour)
            self.rows[path_id] = row
            self.grid.addWidget(row.swatch, index, 0)
            self.grid.addWidget(row.name, index, 1)
            for column, stage in enumerate(STAGE_ORDER, start=2):
                self.grid.addWidget(
                    row.stages[stage.value], index, column, Qt.AlignmentFlag.AlignHCenter
                )
            self.grid.addWidget(row.status, index, status_column)
        self.grid.setColumnStretch(status_column, 1)
        self.legend.set_paths([(path_label(p), row.colour) for p, row in self.rows.items()])

    def _row(self, path_id: str) -> _PathRow:
        if path_id not in self.rows:
            self._build_rows((*self.rows.keys(), path_id))
        return self.rows[path_id]

    # --- bridge signals ---------------------------------------------------------------------

    def on_run_started(self, event: RunStarted) -> None:
        # ``begin`` built these rows already; building them again relays out the whole window
        # (every page's text) while the run starts: a visible stall.
        if tuple(self.rows) != tuple(event.path_ids):
            self._build_rows(event.path_ids)

    def on_stage_started(self, event: StageStarted) -> None:
        row = self._row(event.path_id)
        row.stages[event.stage.value].set_state(StageState.RUNNING)
        row.status.setText(_("{stage}\u2026").format(stage=stage_name(event.stage.value)))

    def on_stage_finished(self, event: StageFinished) -> None:
        row = self._row(event.path_id)
        result = event.result
        state = StageState.OK if result.failure is None else StageState.FAILED
        row.stages[result.stage.value].set_state(state, result.failure)

    def on_sample(self, event: SampleTaken) -> None:
        self.feed.add(event, self._row(event.path_id).colour)

    def on_path_finished(self, event: PathFinished) -> None:
        row = self._row(event.result.path_id)
        # The row's final word uses the same wording as the Verdict page.
        view = path_view(path_to_dict(event.result))
        row.status.setText(f"{_(LIGHT_NAMES[view.light])}. {view.status}")
        for indicator in row.stages.values():
            if indicator.state == StageState.RUNNING:
                indicator.set_state(StageState.FAILED, event.result.failure)

    # --- the hold (after the verdict): the same charts, fed by the same method ---------------

    def on_hold_started(self, event: HoldStarted) -> None:
        self._hold_duration = event.duration_s
        self.title.setText(_("Keeping the call going"))
        self.subtitle.setText(
            _("{paths}: {duration}. Stop ends it; what was measured is kept.").format(
                paths=", ".join(path_label(p) for p in event.path_ids) or _("(no path)"),
                duration=duration_text(event.duration_s),
            )
        )
        self.feed.clear()

    def on_hold_sample(self, event: HoldSampleTaken) -> None:
        self.on_sample(SampleTaken(event.path_id, event.sample))
        row = self._row(event.path_id)
        row.status.setText(
            _("Held {elapsed} of {duration}").format(
                elapsed=duration_text(event.sample.t),
                duration=duration_text(self._hold_duration),
            )
        )

    def on_hold_path_ended(self, event: HoldPathEnded) -> None:
        self._row(event.result.path_id).status.setText(hold_outcome(event.result))

    def prepare(self) -> None:
        """Paint the page off screen once (see ``__init__``); the picture is discarded."""
        if not self.isVisible():
            self.grab()

    def set_presenter(self, on: bool) -> None:
        """Charts readable from the back of a room: larger type, thicker lines."""
        self.legend.set_presenter(on)
        for card in self.charts.values():
            card.set_presenter(on)
        for heading in self.chart_headings:
            font = heading.font()
            font.setPointSizeF(self.font().pointSizeF() * (PRESENTER_SCALE if on else 1.0))
            heading.setFont(font)

    def _stop(self) -> None:
        self.stop_button.setEnabled(False)
        self.stop_button.setText(_("Stopping\u2026"))
        self.stopRequested.emit()
