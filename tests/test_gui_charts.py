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
    item = video_rate.plot.getPlotItem()
    assert item.getAxis("left").labelText == "kbit/s"
    assert item.getAxis("bottom").labelText == "seconds"
    assert (
        page.charts[("audio", "loss_pct")].chart.plot.getPlotItem().getAxis("left").labelText == "%"
    )
    # The bands are the quality module's thresholds, one region per band.
    assert video_rate.bands == grade_bands(MediaKind.VIDEO, "bitrate_kbps")
    assert len(video_rate._regions) == 3
    assert page.charts[("video", "rtt_ms")].chart.bands == ()

    for t in (1.0, 2.0, 12.0):
        page.on_sample(sample("direct", t, MediaKind.VIDEO, bitrate_kbps=400.0, loss_pct=1.0))
        page.on_sample(sample("turn-tls", t, MediaKind.VIDEO, bitrate_kbps=90.0))
    assert video_rate.series["direct"] == {1.0: 400.0, 2.0: 400.0, 12.0: 400.0}
    # A burst of samples is drawn once, within the redraw interval.
    qtbot.waitUntil(lambda: not video_rate._dirty, timeout=2000)
    curve = video_rate._curves["direct"]
    assert list(curve.getData()[0]) == [1.0, 2.0, 12.0]
    # The time scale follows the call; the value scale shows the highest value.
    (x_low, x_high), (y_low, y_high) = item.viewRange()
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
    axis = chart.plot.getPlotItem().getAxis("left")
    small, thin = axis.style["tickFont"].pointSizeF(), chart._curves["direct"].opts["pen"].widthF()
    page.set_presenter(True)
    assert axis.style["tickFont"].pointSizeF() >= small * 1.5
    assert chart._curves["direct"].opts["pen"].widthF() >= thin * 1.5
    assert chart.minimumSizeHint().height() > 0
    page.set_presenter(False)
    assert axis.style["tickFont"].pointSizeF() == small


def test_the_workshop_draws_the_runs_samples_live(qapp: QApplication, english: Any) -> None:
    page = WorkshopPage()
    page.begin(15, PATHS)
    page.on_sample(sample("turn-tls", 1.0, MediaKind.VIDEO, bitrate_kbps=300.0))
    page.on_sample(sample("turn-tls", 1.0, MediaKind.AUDIO, loss_pct=2.5))
    assert page.charts[("video", "bitrate_kbps")].chart.series["turn-tls"] == {1.0: 300.0}
    assert page.charts[("audio", "loss_pct")].chart.series["turn-tls"] == {1.0: 2.5}
    page.set_presenter(True)
    page.set_presenter(False)


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


def test_the_chart_library_draws_with_the_apps_binding() -> None:
    from callpath.gui.qt import pg

    assert pg.Qt.QT_LIB == "PySide6"
