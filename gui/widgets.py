"""Small widgets: stage indicators and traffic lights (painted with QPainter), and the live
quality charts (pyqtgraph: axes, units, time scale and grade-threshold bands; QtCharts is not
part of PySide6-Essentials). Each one carries an accessible name that says in words what its
colour shows.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from html import escape
from typing import Any

from callpath.core.call.quality import GradeBand
from callpath.core.i18n import N_, _, is_rtl
from callpath.core.model.results import Grade
from callpath.gui.qt import (
    QColor,
    QFont,
    QGraphicsLineItem,
    QGraphicsRectItem,
    QLabel,
    QPainter,
    QPaintEvent,
    QPalette,
    QPen,
    QRectF,
    QSize,
    QSizePolicy,
    Qt,
    QTextBrowser,
    QTimer,
    QVBoxLayout,
    QWidget,
    pg,
)
from callpath.gui.report_view import LIGHT_NAMES, Light, grade_name, number

LIGHT_COLOURS = {
    Light.GREEN: QColor("#2e7d32"),
    Light.AMBER: QColor("#f9a825"),
    Light.RED: QColor("#c62828"),
    Light.GREY: QColor("#9e9e9e"),
}
# Distinguishable on white and for the common colour-vision deficiencies (Okabe–Ito).
SERIES_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")


RLM = "\u200f"  # RIGHT-TO-LEFT MARK
# Rich text in the app's text browsers: evidence and samples wrap instead of widening the page.
BROWSER_STYLE = "pre { white-space: pre-wrap; }"


def directed(text: str) -> str:
    """Text as a paragraph in the language's direction.

    Qt guesses a paragraph's direction from its first strong character, so in Persian a line
    that starts with a path name ("TURN روی UDP: …") would be laid out left to right. A leading
    right-to-left mark fixes the paragraph's direction without showing anything.
    """
    if is_rtl() and text and not text.startswith(RLM):
        return RLM + text.replace("\n", "\n" + RLM)
    return text


class DirectedLabel(QLabel):
    """A label whose paragraphs follow the language's direction (see ``directed``)."""

    def __init__(self, text: str = "") -> None:
        super().__init__(directed(text))

    def setText(self, text: str) -> None:
        super().setText(directed(text))

    def text(self) -> str:
        return super().text().replace(RLM, "")


def set_browser_html(browser: QTextBrowser, html: str) -> None:
    """Show report HTML in a text browser, in the language's direction."""
    browser.document().setDefaultStyleSheet(BROWSER_STYLE)
    # A scroll bar that comes and goes re-lays the text out at a width it no longer has: the
    # lines run under the viewport's edge (on the left in right-to-left languages).
    browser.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOn)
    if is_rtl() and not browser.property("rtl-start"):
        # Right-to-left text starts at the right edge of a page that is wider than the view.
        bar = browser.horizontalScrollBar()
        bar.rangeChanged.connect(lambda _low, high: bar.setValue(high))
        browser.setProperty("rtl-start", True)
    browser.setHtml(f"<div dir='rtl'>{html}</div>" if is_rtl() else html)


def wrapping_label(text: str = "", *, bold: bool = False, size_delta: int = 0) -> QLabel:
    """A label that wraps instead of truncating (long Russian text must fit any width)."""
    label = DirectedLabel(text)
    label.setWordWrap(True)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    if bold or size_delta:
        font = label.font()
        font.setBold(bold)
        if size_delta:
            font.setPointSizeF(font.pointSizeF() + size_delta)
        label.setFont(font)
    return label


class StageState(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    OK = "ok"
    FAILED = "failed"


STAGE_STATE_NAMES = {
    StageState.PENDING: N_("waiting"),
    StageState.RUNNING: N_("running"),
    StageState.OK: N_("passed"),
    StageState.FAILED: N_("failed"),
}
STAGE_STATE_COLOURS = {
    StageState.PENDING: QColor("#bdbdbd"),
    StageState.RUNNING: QColor("#1565c0"),
    StageState.OK: QColor("#2e7d32"),
    StageState.FAILED: QColor("#c62828"),
}


class StageIndicator(QWidget):
    """One stage of one path: a dot that is grey, blue (running), green (ok) or red (failed)."""

    def __init__(self, stage_title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._title = stage_title
        self.state = StageState.PENDING
        self.failure: str | None = None
        self.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
        self.set_state(StageState.PENDING)

    def sizeHint(self) -> QSize:
        side = max(16, self.fontMetrics().height())
        return QSize(side, side)

    def set_state(self, state: StageState, failure: str | None = None) -> None:
        self.state = state
        self.failure = failure
        text = f"{self._title}: {_(STAGE_STATE_NAMES[state])}"
        if failure:
            text += f" ({failure})"
        self.setAccessibleName(text)
        self.setToolTip(text)
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        colour = STAGE_STATE_COLOURS[self.state]
        rect = QRectF(self.rect()).adjusted(2, 2, -2, -2)
        if self.state == StageState.PENDING:
            painter.setPen(QPen(colour, 2))
            painter.setBrush(Qt.BrushStyle.NoBrush)
        else:
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(colour)
        painter.drawEllipse(rect)
        if self.state == StageState.RUNNING:
            # A white centre tells "running" from "passed" without relying on colour.
            painter.setBrush(QColor("white"))
            painter.drawEllipse(
                rect.adjusted(
                    rect.width() / 3, rect.height() / 3, -rect.width() / 3, -rect.height() / 3
                )
            )
        elif self.state == StageState.FAILED:
            painter.setPen(QPen(QColor("white"), 2))
            inner = rect.adjusted(
                rect.width() / 4, rect.height() / 4, -rect.width() / 4, -rect.height() / 4
            )
            painter.drawLine(inner.topLeft(), inner.bottomRight())
            painter.drawLine(inner.topRight(), inner.bottomLeft())
        painter.end()


class TrafficLight(QWidget):
    """A path's verdict as a coloured disc (green, amber, red, grey) with a spoken name."""

    def __init__(self, light: Light, path_title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.light = light
        self.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
        name = _("{path}: {state}").format(path=path_title, state=_(LIGHT_NAMES[light]))
        self.setAccessibleName(name)
        self.setToolTip(name)

    def sizeHint(self) -> QSize:
        side = max(24, int(self.fontMetrics().height() * 1.6))
        return QSize(side, side)

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(QPen(QColor("#424242"), 1))
        painter.setBrush(LIGHT_COLOURS[self.light])
        painter.drawEllipse(QRectF(self.rect()).adjusted(1, 1, -1, -1))
        painter.end()


GRADE_BAND_COLOURS = {
    Grade.GOOD: QColor(0, 158, 115, 38),  # Okabe–Ito green, light
    Grade.DEGRADED: QColor(230, 159, 0, 46),  # orange
    Grade.UNUSABLE: QColor(213, 94, 0, 46),  # vermillion
}
GRADE_LINE_COLOURS = {
    Grade.GOOD: QColor("#007a59"),
    Grade.DEGRADED: QColor("#a36f00"),
    Grade.UNUSABLE: QColor("#b34700"),
}
LINE_WIDTH = 2.5
PRESENTER_SCALE = 1.7  # type, lines and dots in presenter mode, for the back of the room
MIN_SECONDS_SHOWN = 10.0  # the time axis starts this long, then grows with the call
# Samples arrive several times a second per path; the charts redraw at most this often, so a
# burst of samples costs one redraw (the GUI must stay responsive during a run).
REDRAW_INTERVAL_MS = 250
PREPARED_CURVES = 5  # the lab's paths; a run with more makes the others when they first draw


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten at or above ``value`` (> 0)."""
    power = 10.0 ** math.floor(math.log10(value))
    return next(step * power for step in (1.0, 2.0, 5.0, 10.0) if step * power >= value)


HEADROOM = 1.15  # above the highest value (or the first threshold) on the value axis
BAND_TOP = 1e6  # the open end of a band, beyond any value or time shown


class LiveChart(QWidget):
    """A live line chart of one metric: one coloured line per path, a time axis in seconds,
    a value axis with its unit, and the grade thresholds drawn behind as bands."""

    def __init__(
        self,
        unit: str,
        bands: Sequence[GradeBand] = (),
        parent: QWidget | None = None,
        *,
        scale_floor: float = 1.0,
    ) -> None:
        super().__init__(parent)
        # The value axis shows at least up to here, so that typical values need no rescaling
        # (redrawing the axes of every chart at once is the costliest moment of a run).
        self.scale_floor = scale_floor
        self.series: dict[str, dict[float, float]] = {}
        self.colours: dict[str, QColor] = {}
        self.unit = unit
        self.bands = tuple(bands)
        self._scale = 1.0
        # The application's line height, not a page style sheet's (presenter type is large).
        self._line_height = self.fontMetrics().height()
        self._curves: dict[str, Any] = {}
        self._dirty: set[str] = set()
        self._spare: list[Any] = []  # curves not showing a path now, for the next new path
        self._shown_range = (0.0, 0.0)
        self._redraw = QTimer(self)
        self._redraw.setSingleShot(True)
        self._redraw.setInterval(REDRAW_INTERVAL_MS)
        self._redraw.timeout.connect(self.redraw)
        palette = self.palette()
        self._light = (
            palette.color(QPalette.ColorRole.WindowText),
            palette.color(QPalette.ColorRole.Base),
        )
        self._text_colour = self._light[0]
        self.plot = pg.PlotWidget(background=self._light[1])
        # Time runs left to right in every language (a mirrored plot puts its value axis over
        # the data in right-to-left layouts).
        self.plot.setLayoutDirection(Qt.LayoutDirection.LeftToRight)
        self.plot.getPlotItem().setLayoutDirection(Qt.LayoutDirection.LeftToRight)
        self.plot.setMenuEnabled(False)
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.hideButtons()
        item = self.plot.getPlotItem()
        item.showGrid(x=True, y=True, alpha=0.25)
        self._axes = [item.getAxis("left"), item.getAxis("bottom")]
        self._threshold_lines: list[Any] = []
        self._regions: list[Any] = []
        # Bands and threshold lines are plain Qt graphics items in the plot's coordinates (drawn
        # in C++; pyqtgraph's region and line items cost far more to paint during a run).
        view = self.plot.getPlotItem().getViewBox()
        for band in self.bands:
            top = band.high if band.high is not None else BAND_TOP
            region = QGraphicsRectItem(QRectF(-BAND_TOP, band.low, 2 * BAND_TOP, top - band.low))
            region.setBrush(GRADE_BAND_COLOURS[band.grade])
            region.setPen(QPen(Qt.PenStyle.NoPen))
            region.setZValue(-10)
            view.addItem(region, ignoreBounds=True)
            self._regions.append(region)
            if band.low > 0:
                pen = QPen(GRADE_LINE_COLOURS[band.grade], 1, Qt.PenStyle.DashLine)
                pen.setCosmetic(True)  # one pixel wide whatever the scale
                line = QGraphicsLineItem(-BAND_TOP, band.low, BAND_TOP, band.low)
                line.setPen(pen)
                line.setZValue(-5)
                view.addItem(line, ignoreBounds=True)
                self._threshold_lines.append(line)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.plot)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        # Curves for a run's usual number of paths, made now rather than when the run's first
        # samples arrive (adding an item to a plot is the costliest step of a live chart).
        for _index in range(PREPARED_CURVES):
            curve = pg.PlotCurveItem()
            self.plot.addItem(curve)
            self._spare.append(curve)
        self._style_axes()
        self._rescale()

    def sizeHint(self) -> QSize:
        return QSize(220, int(self._line_height * 9 * self._scale))

    def minimumSizeHint(self) -> QSize:
        return QSize(140, int(self._line_height * 7 * self._scale))

    def set_presenter(self, on: bool, *, dark: bool = False) -> None:
        """Larger type, thicker lines and dots, for a projector; ``dark``: white on black, with
        stronger bands (the workshop's presenter style)."""
        self._scale = PRESENTER_SCALE if on else 1.0
        text, background = (QColor("#ffffff"), QColor("#000000")) if dark else self._light
        self._text_colour = text
        self.plot.setBackground(background)
        strength = 3 if dark else 1
        for region, band in zip(self._regions, self.bands, strict=True):
            colour = QColor(GRADE_BAND_COLOURS[band.grade])
            colour.setAlpha(min(255, colour.alpha() * strength))
            region.setBrush(colour)
        self._style_axes()
        for key in self._curves:
            self._style_curve(key)
        self.updateGeometry()

    def _style_axes(self) -> None:
        font = QFont()  # the application's type, whatever a page's style sheet sets around it
        font.setPointSizeF(max(font.pointSizeF(), 8.0) * self._scale)
        pen = pg.mkPen(self._text_colour, width=max(1, round(self._scale)))
        item = self.plot.getPlotItem()
        for axis in self._axes:
            axis.setTickFont(font)
            axis.setPen(pen)
            axis.setTextPen(pen)
        size = f"{font.pointSizeF():.0f}pt"
        colour = self._text_colour.name()
        item.setLabel("left", self.unit, color=colour, size=size)
        item.setLabel("bottom", _("seconds"), color=colour, size=size)

    def _style_curve(self, key: str) -> None:
        self._curves[key].setPen(pg.mkPen(self.colours[key], width=LINE_WIDTH * self._scale))

    def set_point(self, key: str, t: float, value: float, colour: QColor) -> None:
        """Add a point; the chart redraws within ``REDRAW_INTERVAL_MS`` (one redraw a burst)."""
        self.series.setdefault(key, {})[t] = value
        self.colours.setdefault(key, colour)
        self._dirty.add(key)
        if not self._redraw.isActive():
            self._redraw.start()

    def redraw(self) -> None:
        """Draw the points added since the last redraw. Lines are plain curves (no markers:
        they cost a scatter item each), taken from a pool the previous runs left."""
        self._redraw.stop()
        for key in sorted(self._dirty):
            if key not in self._curves:
                if self._spare:
                    self._curves[key] = self._spare.pop()
                else:
                    self._curves[key] = pg.PlotCurveItem()
                    self.plot.addItem(self._curves[key])
                self._style_curve(key)
            points = sorted(self.series[key].items())
            self._curves[key].setData([p[0] for p in points], [p[1] for p in points])
        self._dirty.clear()
        self._rescale()

    def clear(self) -> None:
        self._redraw.stop()
        self._dirty.clear()
        for curve in self._curves.values():
            curve.setData([], [])
            self._spare.append(curve)
        self._curves.clear()
        self.series.clear()
        self.colours.clear()
        self._rescale()

    def _rescale(self) -> None:
        """Time from 0 to the latest sample (at least ``MIN_SECONDS_SHOWN``); values from 0 to
        above the highest value and the first threshold, so the first band edge shows."""
        values = [v for series in self.series.values() for v in series.values()]
        times = [t for series in self.series.values() for t in series]
        first_edge = next((band.high for band in self.bands if band.high is not None), None)
        # Both ends move in steps (10 s; 1-2-5 values), so the axes are redrawn only when a
        # step is passed, not on every sample.
        right = MIN_SECONDS_SHOWN * math.ceil(max([*times, 0.0]) / MIN_SECONDS_SHOWN or 1.0)
        top = nice_ceiling(max([*values, first_edge or 0.0, self.scale_floor, 1.0]) * HEADROOM)
        if (right, top) != self._shown_range:
            self._shown_range = (right, top)
            self.plot.setXRange(0.0, right, padding=0.02)
            self.plot.setYRange(0.0, top, padding=0.0)


class ChartCard(QWidget):
    """A titled live chart with its latest value written out (for screen readers too)."""

    def __init__(
        self,
        title: str,
        unit: str = "",
        bands: Sequence[GradeBand] = (),
        parent: QWidget | None = None,
        *,
        scale_floor: float = 1.0,
    ) -> None:
        super().__init__(parent)
        self.title = title
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        self.caption = wrapping_label(title)
        self.chart = LiveChart(unit, bands, scale_floor=scale_floor)
        self.chart.setAccessibleName(title)
        layout.addWidget(self.caption)
        layout.addWidget(self.chart)

    def set_presenter(self, on: bool, *, dark: bool = False) -> None:
        font = QFont(self.font())
        if on:
            font.setPointSizeF(font.pointSizeF() * PRESENTER_SCALE)
        self.caption.setFont(font)
        self.chart.set_presenter(on, dark=dark)

    def set_point(self, key: str, t: float, value: float, colour: QColor, digits: int) -> None:
        self.chart.set_point(key, t, value, colour)
        latest = f"{self.title}: {number(value, digits)}"
        self.caption.setText(latest)
        self.chart.setAccessibleName(latest)


class ChartLegend(QLabel):
    """Which colour is which path, and what the bands behind the lines mean: one line of
    coloured marks and names that wraps like text (and reads as text to a screen reader)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWordWrap(True)
        self.setTextFormat(Qt.TextFormat.RichText)
        self.entries: list[tuple[str, str]] = []  # (label, colour) of each path
        self._scale = 1.0
        self.set_paths([])

    def set_paths(self, paths: Sequence[tuple[str, QColor]]) -> None:
        self.entries = [(label, colour.name()) for label, colour in paths]
        size = f"{self._scale * 100:.0f}%"
        parts = [
            f'<span style="color:{colour}; font-size:{size}">\u25ac\u25ac</span>&nbsp;'
            f'<span style="font-size:{size}">{escape(label).replace(" ", "&nbsp;")}</span>'
            for label, colour in self.entries
        ]
        parts += [
            f'<span style="color:{_band_colour(grade).name()}; font-size:{size}">\u25a0</span>'
            f'&nbsp;<span style="font-size:{size}">{escape(grade_name(grade.value))}</span>'
            for grade in (Grade.GOOD, Grade.DEGRADED, Grade.UNUSABLE)
        ]
        self.setText(" &nbsp; ".join(parts))
        names = [label for label, _colour in self.entries]
        bands = [grade_name(g.value) for g in (Grade.GOOD, Grade.DEGRADED, Grade.UNUSABLE)]
        self.setAccessibleName(", ".join(names + bands))

    def set_presenter(self, on: bool) -> None:
        self._scale = PRESENTER_SCALE if on else 1.0
        self.set_paths([(label, QColor(colour)) for label, colour in self.entries])


def _band_colour(grade: Grade) -> QColor:
    """The band colour made opaque over white, as a legend swatch."""
    band = GRADE_BAND_COLOURS[grade]
    alpha = band.alphaF() * 2.2
    return QColor(
        round(255 - (255 - band.red()) * alpha),
        round(255 - (255 - band.green()) * alpha),
        round(255 - (255 - band.blue()) * alpha),
    )
