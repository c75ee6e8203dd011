"""The run's headline in plain words, for the CLI, the app and the HTML export alike.

One rule (issue 17): every path that carries both voice and video is named, best first
("Voice and video calls work via TURN over TCP and TURN over TLS."); when no path carries both,
one sentence for voice and one for video, each naming the best path for its kind. The report's
``verdict.headline`` is these lines joined. Reports read back from files go through
``callpath.core.report.decode.report_from_dict`` first, so a saved report says what the run said.
"""

from __future__ import annotations

from collections.abc import Callable

from babel.lists import format_list
from babel.numbers import format_decimal

from callpath.core.call.quality import rank_key
from callpath.core.i18n import N_, _, current_language
from callpath.core.model.findings import Confidence
from callpath.core.model.results import Grade, MediaQuality, PathResult, RunResult
from callpath.core.paths.registry import path_label

GRADE_LABELS = {
    Grade.GOOD: N_("good"),
    Grade.DEGRADED: N_("degraded"),
    Grade.UNUSABLE: N_("unusable"),
    Grade.NOT_TESTED: N_("not tested"),
}
CONFIDENCE_LABELS = {
    Confidence.HIGH: N_("high confidence"),
    Confidence.MEDIUM: N_("medium confidence"),
    Confidence.LOW: N_("low confidence"),
}
INTERRUPTED = "interrupted"


def grade_label(grade: str) -> str:
    """A grade (``good``, ``not_tested`` …) in the current language; unknown ones as they are."""
    try:
        return _(GRADE_LABELS[Grade(grade)])
    except ValueError:
        return grade


def confidence_label(confidence: str) -> str:
    try:
        return _(CONFIDENCE_LABELS[Confidence(confidence)])
    except ValueError:
        return confidence


def number(value: float, digits: int = 0) -> str:
    """A number in the current language's format (4.3 / 4,3)."""
    pattern = "0" if digits == 0 else "0." + "0" * digits
    return str(format_decimal(value, format=pattern, locale=current_language()))


def headline(run: RunResult) -> str:
    """The headline as one line (the report's ``verdict.headline``, the CLI's last line)."""
    return " ".join(headline_lines(run))


def headline_lines(run: RunResult) -> tuple[str, ...]:
    """One sentence for the paths that carry both kinds, else one for voice and one for video."""
    both = [p for p in run.verdict.voice_restored_by if p in run.verdict.video_restored_by]
    if both:
        paths = format_list([path_label(p) for p in both], locale=current_language())
        return (_("Voice and video calls work via {paths}.").format(paths=paths),)
    return (voice_sentence(run), video_sentence(run))


def voice_sentence(run: RunResult) -> str:
    best = _best(run, _voice, run.verdict.voice_restored_by)
    if best is None:
        if _any_tried(run):
            return _("Voice calls: no tested path carried a call.")
        return _("Voice calls: not tested.")
    path = path_label(best.path_id)
    if best.voice.grade == Grade.GOOD:
        if best.voice.mos is not None:
            return _("Voice calls work via {path} (quality {mos} of 4.5).").format(
                path=path, mos=number(best.voice.mos, 1)
            )
        return _("Voice calls work via {path}.").format(path=path)
    if best.voice.grade == Grade.DEGRADED:
        return _("Voice calls work poorly at best (via {path}).").format(path=path)
    return _("Voice calls do not work on any tested path.")


def video_sentence(run: RunResult) -> str:
    best = _best(run, _video, run.verdict.video_restored_by)
    if best is None:
        if _any_tried(run):
            return _("Video calls: no tested path carried a call.")
        return _("Video calls: not tested.")
    path = path_label(best.path_id)
    if best.video.grade == Grade.GOOD:
        return _("Video calls work via {path}.").format(path=path)
    if best.video.grade == Grade.DEGRADED:
        return _("Video calls work poorly at best (via {path}).").format(path=path)
    return _("Video calls do not work on any tested path.")


def _voice(path: PathResult) -> MediaQuality:
    return path.voice


def _video(path: PathResult) -> MediaQuality:
    return path.video


def _best(
    run: RunResult,
    quality_of: Callable[[PathResult], MediaQuality],
    restored_by: tuple[str, ...],
) -> PathResult | None:
    """The verdict's first restoring path, else the exercised path whose media ranks best."""
    paths = {path.path_id: path for path in run.paths}
    for path_id in restored_by:
        if path_id in paths:
            return paths[path_id]
    tested = [p for p in run.paths if p.exercised and quality_of(p).grade != Grade.NOT_TESTED]
    return min(tested, key=lambda p: rank_key(quality_of(p)), default=None)


def _any_tried(run: RunResult) -> bool:
    """Whether any path got as far as an outcome (not stopped by the user before it did)."""
    return any(
        path.failure != INTERRUPTED
        and (path.exercised or path.failure is not None or any(s.failure for s in path.stages))
        for path in run.paths
    )
