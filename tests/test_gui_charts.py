"""The live charts (offscreen): axes with units and a time scale, one legend keyed to the path
colours, the grade thresholds of core/call/quality.py drawn as bands, larger in presenter mode."""

from __future__ import annotations

from typing import Any

import tests.gui_helpers  # noqa: F401  (offscreen platform before Qt starts)
from callpath.core.call.quality import grade_bands
from callpath.core.model.events import SampleTaken
from callpath.core.model.results import Direction, MediaKind, QualitySample
from callpath.gui.qt import QApplication
from callpath.gui.running_page import RunningPage
from callpath.gui.workshop_page import WorkshopPage

pytest_plugins = ["tests.gui_support"]
PATHS = ("direct", "turn-tls")


def sample(path_id: str, t: float, kind: MediaKind, **values: float) -> SampleTaken:
    return SampleTaken(
        path_id,
        QualitySample(
            t=t,
            kind=kind,
            direction=Direction.RECEIVED,
            rtt_ms=values.get("rtt_ms"),
            jitter_ms=values.get("jitter_ms"),
            loss_pct=values.get("loss_pct"),
            bitrate_kbps=values.get("bitrate_kbps"),
        ),
    )


def test_charts_have_units_a_time_axis_bands_and_a_legend(
    qapp: QApplication, qtbot: Any, english: Any
) -> None:
    page = RunningPage()
    page.begin("Lab", PATHS, 15)
    video_rate = page.charts[("video", "bitrate_kbps")].chart
    assert video_rate.unit == "kbit/s"
    assert video_rate.time_label == "seconds"
    assert page.charts[("audio", "loss_pct")].chart.unit == "%"
    # The bands are the quality module's thresholds.
    assert video_rate.bands == grade_bands(MediaKind.VIDEO, "bitrate_kbps")
    assert len(video_rate.bands) == 3
    assert page.charts[("video", "rtt_ms")].chart.bands == ()

    for t in (1.0, 2.0, 12.0):
        page.on_sample(sample("direct", t, MediaKind.VIDEO, bitrate_kbps=400.0, loss_pct=1.0))
        page.on_sample(sample("turn-tls", t, MediaKind.VIDEO, bitrate_kbps=90.0))
    assert video_rate.series["direct"] == {1.0: 400.0, 2.0: 400.0, 12.0: 400.0}
    # A burst of samples is drawn once, within the redraw interval.
    qtbot.waitUntil(lambda: not video_rate._dirty, timeout=2000)
    assert [t for t, _value in video_rate._lines["direct"]] == [1.0, 2.0, 12.0]
    # The time scale follows the call; the value scale shows the highest value.
    (x_low, x_high), (y_low, y_high) = video_rate.view_range()
    assert x_low <= 0.0 and x_high >= 12.0
    assert y_low <= 0.0 and y_high >= 400.0
    # The legend names each path in its row's colour, and the three grades of the bands.
    legend = [label for label, _colour in page.legend.entries]
    assert legend == ["direct UDP", "TURN over TLS"]
    assert [colour for _label, colour in page.legend.entries] == [
        page.rows[p].colour.name() for p in PATHS
    ]
    assert video_rate.colours["turn-tls"] == page.rows["turn-tls"].colour
    for grade in ("good", "degraded", "unusable"):
        assert grade in page.legend.accessibleName()
    assert page.charts[("video", "bitrate_kbps")].caption.text() == "bitrate, kbit/s: 90"


def test_presenter_mode_makes_the_charts_readable_across_a_room(
    qapp: QApplication, english: Any
) -> None:
    page = RunningPage()
    page.begin("Lab", PATHS, 15)
    page.on_sample(sample("direct", 1.0, MediaKind.AUDIO, rtt_ms=40.0))
    chart = page.charts[("audio", "rtt_ms")].chart
    chart.redraw()
    small, thin, low = chart.tick_font().pointSizeF(), chart.line_width(), chart.sizeHint()
    page.set_presenter(True)
    assert chart.tick_font().pointSizeF() >= small * 1.5
    assert chart.line_width() >= thin * 1.5
    assert chart.sizeHint().height() >= low.height() * 1.5
    page.set_presenter(False)
    assert chart.tick_font().pointSizeF() == small


def test_the_workshop_draws_the_runs_samples_live(qapp: QApplication, english: Any) -> None:
    page = WorkshopPage()
    page.begin(15, PATHS)
    page.on_sample(sample("turn-tls", 1.0, MediaKind.VIDEO, bitrate_kbps=300.0))
    page.on_sample(sample("turn-tls", 1.0, MediaKind.AUDIO, loss_pct=2.5))
    assert page.charts[("video", "bitrate_kbps")].chart.series["turn-tls"] == {1.0: 300.0}
    assert page.charts[("audio", "loss_pct")].chart.series["turn-tls"] == {1.0: 2.5}
    page.set_presenter(True)
    page.set_presenter(False)


def test_the_chart_paints_its_lines_bands_and_labels(
    qapp: QApplication, qtbot: Any, english: Any
) -> None:
    """A painted chart: the path's colour where its line is, the band colours behind, and time
    left to right in Persian too; painting happens on update only, a few times a second."""
    from callpath.core.i18n import set_language
    from callpath.gui.qt import QColor, Qt
    from callpath.gui.widgets import LiveChart

    for language in ("en", "fa"):
        set_language(language)
        qapp.setLayoutDirection(
            Qt.LayoutDirection.RightToLeft if language == "fa" else Qt.LayoutDirection.LeftToRight
        )
        chart = LiveChart("%", grade_bands(MediaKind.AUDIO, "loss_pct"))
        chart.resize(400, 240)
        colour = QColor("#0072B2")
        for t in range(1, 9):
            chart.set_point("direct", float(t), 0.5, colour)
        chart.redraw()
        image = chart.grab().toImage()
        area = chart.plot_area()
        row = round(area.bottom() - area.height() * 0.5 / chart.view_range()[1][1])
        line = [image.pixelColor(x, row) for x in range(round(area.left()), round(area.right()))]
        blue = [x for x, c in enumerate(line) if c.blue() > 150 and c.red() < 80]
        # The line runs from 1 s to 8 s of a 10 s axis, starting on the left in every language.
        assert blue, language
        assert blue[0] < len(line) * 0.2 and 0.7 * len(line) < blue[-1] < 0.9 * len(line)
        # Above the line, the band behind is coloured (not the plain background).
        above = image.pixelColor(round(area.center().x()), round(area.top()) + 3)
        assert above != chart.palette().color(chart.backgroundRole()), language
    set_language("en")
    qapp.setLayoutDirection(Qt.LayoutDirection.LeftToRight)


def test_the_qt_binding_keeps_none_alive(qapp: QApplication) -> None:
    """PySide6 6.12.0 drops a reference to None on each call of a method that returns nothing;
    Python 3.11 then aborts once None's count reaches zero (pyproject excludes that release)."""
    import sys

    from callpath.gui.qt import QWidget

    widget = QWidget()
    before = sys.getrefcount(None)
    for width in range(2000):
        widget.setMinimumWidth(width % 50)
    assert abs(sys.getrefcount(None) - before) < 100
