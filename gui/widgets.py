"""Small painted widgets: stage indicators, traffic lights and live sparkline charts.

Painted with QPainter (QtCharts is not part of PySide6-Essentials). Each one carries an
accessible name that says in words what its colour shows.
"""

from __future__ import annotations

import enum

from callpath.core.i18n import N_, _, is_rtl
from callpath.gui.qt import (
    QColor,
    QLabel,
    QPainter,
    QPainterPath,
    QPaintEvent,
    QPen,
    QPointF,
    QRectF,
    QSize,
    QSizePolicy,
    Qt,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)
from callpath.gui.report_view import LIGHT_NAMES, Light, number

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


class Sparkline(QWidget):
    """A small line chart of one metric, one coloured line per path."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.series: dict[str, dict[float, float]] = {}
        self.colours: dict[str, QColor] = {}
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def sizeHint(self) -> QSize:
        return QSize(160, max(48, self.fontMetrics().height() * 3))

    def minimumSizeHint(self) -> QSize:
        return QSize(60, max(48, self.fontMetrics().height() * 3))

    def set_point(self, key: str, t: float, value: float, colour: QColor) -> None:
        self.series.setdefault(key, {})[t] = value
        self.colours[key] = colour
        self.update()

    def clear(self) -> None:
        self.series.clear()
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        frame = QRectF(self.rect()).adjusted(0.5, 0.5, -0.5, -0.5)
        painter.setPen(QPen(QColor("#d0d0d0"), 1))
        painter.setBrush(QColor("#fafafa"))
        painter.drawRect(frame)
        points = [p for values in self.series.values() for p in values.items()]
        if points:
            x_low = min(t for t, _v in points)
            x_high = max(max(t for t, _v in points), x_low + 4.0)
            y_high = max(v for _t, v in points) or 1.0
            area = frame.adjusted(4, 4, -4, -4)
            for key, values in self.series.items():
                path = QPainterPath()
                for index, (t, v) in enumerate(sorted(values.items())):
                    x = area.left() + (t - x_low) / (x_high - x_low) * area.width()
                    y = area.bottom() - max(0.0, v) / y_high * area.height()
                    if index == 0:
                        path.moveTo(QPointF(x, y))
                    else:
                        path.lineTo(QPointF(x, y))
                painter.setPen(QPen(self.colours[key], 2))
                painter.setBrush(Qt.BrushStyle.NoBrush)
                if len(values) == 1:
                    painter.drawEllipse(path.currentPosition(), 2.0, 2.0)
                else:
                    painter.drawPath(path)
        painter.end()


class ChartCard(QWidget):
    """A titled sparkline with its latest value written out (for screen readers too)."""

    def __init__(self, title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = title
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        self.caption = wrapping_label(title)
        self.chart = Sparkline()
        self.chart.setAccessibleName(title)
        layout.addWidget(self.caption)
        layout.addWidget(self.chart)

    def set_point(self, key: str, t: float, value: float, colour: QColor, digits: int) -> None:
        self.chart.set_point(key, t, value, colour)
        latest = f"{self.title}: {number(value, digits)}"
        self.caption.setText(latest)
        self.chart.setAccessibleName(latest)
