"""Small widgets, painted with QPainter: stage indicators, traffic lights, and the live quality
charts (axes with units, a time scale, grade-threshold bands; QtCharts is not part of
PySide6-Essentials). Each one carries an accessible name that says in words what its colour
shows.
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Sequence
from html import escape
from typing import Any

from callpath.core.call.quality import GradeBand
from callpath.core.i18n import N_, _, is_rtl
from callpath.core.model.results import Grade
from callpath.gui.qt import (
    QColor,
    QFont,
    QFontMetricsF,
    QLabel,
    QPainter,
    QPaintEvent,
    QPalette,
    QPen,
    QPixmap,
    QPointF,
    QPolygonF,
    QRectF,
    QSize,
    QSizePolicy,
    Qt,
    QTextBrowser,
    QTimer,
    QTransform,
    QVBoxLayout,
    QWidget,
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
# Samples arrive several times a second per path; the charts repaint at most this often, so a
# burst of samples costs one repaint (the GUI must stay responsive during a run).
REDRAW_INTERVAL_MS = 250


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten at or above ``value`` (> 0)."""
    power = 10.0 ** math.floor(math.log10(value))
    return next(step * power for step in (1.0, 2.0, 5.0, 10.0) if step * power >= value)


HEADROOM = 1.15  # above the highest value (or the first threshold) on the value axis
# When several charts must redo their pictures at once (the page is laid out anew when a run
# starts, while the engine starts too), one does it per this interval; the others show their
# previous picture stretched meanwhile.
PICTURE_SPACING_MS = 40


class LiveChart(QWidget):
    """A live line chart of one metric, painted with QPainter: one coloured line per path, a time
    axis in seconds, a value axis with its unit, and the grade thresholds drawn behind as bands.

    Samples only mark the chart dirty; it repaints (``update``) at most every
    ``REDRAW_INTERVAL_MS``. Everything but the lines (bands, grid, axes, labels) is painted once
    into a cached picture, redone only when the size, the scale or presenter mode changes; a
    repaint is that picture and one polyline per path in data coordinates. Few calls into Qt per
    repaint matter more than their speed: each one lets the engine's thread take the GIL, and
    getting it back can take the switch interval (5 ms) while a call runs."""

    def __init__(
        self,
        unit: str,
        bands: Sequence[GradeBand] = (),
        parent: QWidget | None = None,
        *,
        scale_floor: float = 1.0,
    ) -> None:
        super().__init__(parent)
        # The value axis shows at least up to here, so typical values need no rescaling.
        self.scale_floor = scale_floor
        self.series: dict[str, dict[float, float]] = {}
        self.colours: dict[str, QColor] = {}
        self.unit = unit
        self.time_label = _("seconds")
        self.bands = tuple(bands)
        self.presenter = False
        self._scale = 1.0
        self._dark = False
        # The application's line height, not a page style sheet's (presenter type is large).
        self._line_height = self.fontMetrics().height()
        self._lines: dict[str, list[tuple[float, float]]] = {}  # sorted points, as last drawn
        self._polygons: dict[str, QPolygonF] = {}  # the same, in data coordinates
        self._pens: dict[str, QPen] = {}
        self._dirty: set[str] = set()
        self._shown_range = (MIN_SECONDS_SHOWN, 1.0)
        self._background_picture: QPixmap | None = None
        self._picture_key: tuple[Any, ...] = ()
        self._area = QRectF()
        self._to_pixels = QTransform()
        self._redraw = QTimer(self)
        self._redraw.setSingleShot(True)
        self._redraw.setInterval(REDRAW_INTERVAL_MS)
        self._redraw.timeout.connect(self.redraw)
        palette = self.palette()
        self._light = (
            palette.color(QPalette.ColorRole.WindowText),
            palette.color(QPalette.ColorRole.Base),
        )
        self._text_colour, self._background = self._light
        # Time runs left to right in every language, Persian included.
        self.setLayoutDirection(Qt.LayoutDirection.LeftToRight)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self._rescale()

    def sizeHint(self) -> QSize:
        return QSize(220, int(self._line_height * 9 * self._scale))

    def minimumSizeHint(self) -> QSize:
        return QSize(140, int(self._line_height * 7 * self._scale))

    def set_presenter(self, on: bool, *, dark: bool = False) -> None:
        """Larger type, thicker lines, for a projector; ``dark``: white on black, with stronger
        bands (the workshop's presenter style)."""
        self.presenter = on
        self._scale = PRESENTER_SCALE if on else 1.0
        self._dark = dark
        self._text_colour, self._background = (
            (QColor("#ffffff"), QColor("#000000")) if dark else self._light
        )
        self._pens.clear()
        self.updateGeometry()
        self.update()

    def tick_font(self) -> QFont:
        """The axes' type: the application's (whatever a page's style sheet sets), scaled."""
        font = QFont()
        font.setPointSizeF(max(font.pointSizeF(), 8.0) * self._scale)
        return font

    def line_width(self) -> float:
        return LINE_WIDTH * self._scale

    def band_colour(self, band: GradeBand) -> QColor:
        colour = QColor(GRADE_BAND_COLOURS[band.grade])
        if self._dark:
            colour.setAlpha(min(255, colour.alpha() * 3))
        return colour

    def set_point(self, key: str, t: float, value: float, colour: QColor) -> None:
        """Add a point; the chart repaints within ``REDRAW_INTERVAL_MS`` (once for a burst)."""
        self.series.setdefault(key, {})[t] = value
        self.colours.setdefault(key, colour)
        self._dirty.add(key)
        if not self._redraw.isActive():
            self._redraw.start()

    def redraw(self) -> None:
        """Take the points added since the last redraw, and schedule one repaint."""
        self._redraw.stop()
        for key in self._dirty:
            points = sorted(self.series[key].items())
            before = self._lines.get(key, [])
            polygon = self._polygons.get(key)
            if polygon is not None and points[: len(before)] == before:
                for t, value in points[len(before) :]:  # the usual case: later samples
                    polygon.append(QPointF(t, value))
            else:
                self._polygons[key] = QPolygonF([QPointF(t, value) for t, value in points])
            self._lines[key] = points
        self._dirty.clear()
        self._rescale()
        self.update()

    def clear(self) -> None:
        self._redraw.stop()
        self._dirty.clear()
        self._lines.clear()
        self._polygons.clear()
        self._pens.clear()
        self.series.clear()
        self.colours.clear()
        self._rescale()
        self.update()

    def view_range(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """(time from, to), (value from, to) the axes show."""
        right, top = self._shown_range
        return (0.0, right), (0.0, top)

    def _rescale(self) -> None:
        """Time from 0 to the latest sample (at least ``MIN_SECONDS_SHOWN``, in steps of it);
        values from 0 to above the highest value and the first threshold, in 1-2-5 steps (the
        cached picture is redone only when a step is passed)."""
        values = [v for line in self._lines.values() for _t, v in line]
        latest = max((line[-1][0] for line in self._lines.values() if line), default=0.0)
        first_edge = next((band.high for band in self.bands if band.high is not None), None)
        right = MIN_SECONDS_SHOWN * math.ceil(latest / MIN_SECONDS_SHOWN or 1.0)
        top = nice_ceiling(max([*values, first_edge or 0.0, self.scale_floor, 1.0]) * HEADROOM)
        self._shown_range = (right, top)

    def plot_area(self) -> QRectF:
        """Where the lines are drawn, inside the axes' labels."""
        metrics = QFontMetricsF(self.tick_font())
        top = self._shown_range[1]
        widest = max(metrics.horizontalAdvance(_tick_text(v, top)) for v in _ticks(top))
        gap = metrics.height() * 0.3
        left = widest + gap * 2
        top_margin = metrics.height() * 1.5 + gap  # the unit, above the top value's label
        bottom = metrics.height() * 2 + gap  # tick labels, then the time axis' name
        return QRectF(
            left,
            top_margin,
            max(10.0, self.width() - left - metrics.horizontalAdvance("00") / 2 - gap),
            max(10.0, self.height() - top_margin - bottom),
        )

    def _picture(self) -> tuple[QPixmap, QTransform]:
        """Background, bands, grid, axes and labels for the current size, range and style, and
        the data-to-pixel transform that goes with them."""
        ratio = self.devicePixelRatioF()
        key = (self.width(), self.height(), ratio, self._shown_range, self._scale, self._dark)
        old = self._background_picture
        if old is not None and key == self._picture_key:
            return old, self._to_pixels
        now = time.monotonic()
        if old is not None and now - _last_picture_at[0] < PICTURE_SPACING_MS / 1000:
            # Another chart has just redone its picture: the previous one, stretched to the new
            # size (the lines with it), until this chart's turn comes.
            QTimer.singleShot(PICTURE_SPACING_MS, self.update)
            size = old.deviceIndependentSize()
            stretch = QTransform.fromScale(
                self.width() / max(1.0, size.width()), self.height() / max(1.0, size.height())
            )
            return old, self._to_pixels * stretch
        _last_picture_at[0] = now
        right, top = self._shown_range
        area = self.plot_area()
        self._area = area
        # Data coordinates (seconds, value) to pixels: the lines are drawn through this.
        self._to_pixels = QTransform(
            area.width() / right, 0.0, 0.0, -area.height() / top, area.left(), area.bottom()
        )
        picture = QPixmap(round(self.width() * ratio), round(self.height() * ratio))
        picture.setDevicePixelRatio(ratio)
        painter = QPainter(picture)
        self._paint_axes(painter, area)
        painter.end()
        self._background_picture, self._picture_key = picture, key
        return picture, self._to_pixels

    def _paint_axes(self, painter: QPainter, area: QRectF) -> None:
        right, top = self._shown_range
        font = self.tick_font()
        metrics = QFontMetricsF(font)

        def x_of(t: float) -> float:
            return area.left() + area.width() * t / right

        def y_of(value: float) -> float:
            return area.bottom() - area.height() * value / top

        painter.fillRect(QRectF(0, 0, self.width(), self.height()), self._background)
        painter.setFont(font)
        # Grade bands behind everything, each threshold a dashed line.
        for band in self.bands:
            high = top if band.high is None else min(band.high, top)
            if band.low >= top or high <= band.low:
                continue
            y_high, y_low = y_of(high), y_of(band.low)
            painter.fillRect(
                QRectF(area.left(), y_high, area.width(), y_low - y_high), self.band_colour(band)
            )
            if band.low > 0:
                painter.setPen(QPen(GRADE_LINE_COLOURS[band.grade], 1, Qt.PenStyle.DashLine))
                painter.drawLine(QPointF(area.left(), y_low), QPointF(area.right(), y_low))
        # Grid, tick labels, axes.
        grid = QColor(self._text_colour)
        grid.setAlpha(45)
        grid_pen = QPen(grid, 1)
        text_height = metrics.height()
        for value in _ticks(top):
            y = y_of(value)
            painter.setPen(grid_pen)
            painter.drawLine(QPointF(area.left(), y), QPointF(area.right(), y))
            painter.setPen(self._text_colour)
            painter.drawText(
                QRectF(0, y - text_height / 2, area.left() - text_height * 0.3, text_height),
                Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                _tick_text(value, top),
            )
        for t in _ticks(right):
            x = x_of(t)
            painter.setPen(grid_pen)
            painter.drawLine(QPointF(x, area.top()), QPointF(x, area.bottom()))
            painter.setPen(self._text_colour)
            painter.drawText(
                QRectF(x - text_height * 2, area.bottom() + 2, text_height * 4, text_height),
                Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop,
                _tick_text(t, right),
            )
        painter.setPen(QPen(self._text_colour, max(1.0, round(self._scale))))
        painter.drawLine(area.bottomLeft(), area.topLeft())
        painter.drawLine(area.bottomLeft(), area.bottomRight())
        # The unit above the value axis, the time axis' name under its labels.
        painter.drawText(
            QRectF(0, 0, self.width(), text_height),
            Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
            self.unit,
        )
        painter.drawText(
            QRectF(area.left(), area.bottom() + text_height + 2, area.width(), text_height),
            Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop,
            self.time_label,
        )

    def _pen(self, key: str) -> QPen:
        pen = self._pens.get(key)
        if pen is None:
            pen = QPen(self.colours[key], self.line_width())
            pen.setCosmetic(True)  # its width in pixels, whatever the data-to-pixel scale
            pen.setCapStyle(Qt.PenCapStyle.RoundCap)
            pen.setJoinStyle(Qt.PenJoinStyle.RoundJoin)
            self._pens[key] = pen
        return pen

    def paintEvent(self, event: QPaintEvent) -> None:
        picture, to_pixels = self._picture()
        painter = QPainter(self)
        painter.drawPixmap(
            QRectF(0, 0, self.width(), self.height()), picture, QRectF(picture.rect())
        )
        if self._polygons:
            margin = self.line_width()
            painter.setClipRect(self._area.adjusted(-margin, -margin, margin, margin))
            painter.setRenderHint(QPainter.RenderHint.Antialiasing)
            painter.setTransform(to_pixels)
            for key in sorted(self._polygons):
                painter.setPen(self._pen(key))
                polygon = self._polygons[key]
                if len(self._lines[key]) == 1:  # a single sample: a dot
                    painter.drawPoints(polygon)
                else:
                    painter.drawPolyline(polygon)
        painter.end()


# When a chart last redid its picture (shared by every chart: the spacing is between them all).
_last_picture_at = [0.0]


def _ticks(top: float) -> list[float]:
    """Round values from 0 up to ``top`` for an axis' labels (4 to 6 of them)."""
    step = nice_ceiling(top / 5)
    return [step * i for i in range(int(top / step + 1e-9) + 1)]


def _tick_text(value: float, top: float) -> str:
    return number(value, 0 if top >= 5 else 1)


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
