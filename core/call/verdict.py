"""Path results → the verdict: which paths restore voice and video, best first, and a headline.

Pure: the only state read is the current language, for the translated headline and labels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from babel.numbers import format_decimal

from callpath.core.call.quality import rank_key
from callpath.core.i18n import _, current_language
from callpath.core.model.results import Grade, MediaQuality, PathResult, Verdict
from callpath.core.paths.registry import path_label


def decide(paths: Sequence[PathResult]) -> Verdict:
    """Which exercised paths restore voice and video (good grade, best first) and a headline."""
    return Verdict(
        voice_restored_by=_restored_by(paths, _voice),
        video_restored_by=_restored_by(paths, _video),
        headline=_headline(paths),
    )


def _voice(path: PathResult) -> MediaQuality:
    return path.voice


def _video(path: PathResult) -> MediaQuality:
    return path.video


def _restored_by(
    paths: Sequence[PathResult], quality_of: Callable[[PathResult], MediaQuality]
) -> tuple[str, ...]:
    good = [path for path in paths if path.exercised and quality_of(path).grade == Grade.GOOD]
    # sorted() is stable: paths that rank equal keep the order they were tested in.
    return tuple(path.path_id for path in sorted(good, key=lambda p: rank_key(quality_of(p))))


def _best(
    paths: Sequence[PathResult], quality_of: Callable[[PathResult], MediaQuality]
) -> PathResult | None:
    tested = [
        path for path in paths if path.exercised and quality_of(path).grade != Grade.NOT_TESTED
    ]
    return min(tested, key=lambda p: rank_key(quality_of(p)), default=None)


def _headline(paths: Sequence[PathResult]) -> str:
    best_voice = _best(paths, _voice)
    best_video = _best(paths, _video)
    if best_voice is None and best_video is None:
        return _("No tested path carried a call.")
    return _("{voice} {video}").format(
        voice=_voice_sentence(best_voice), video=_video_sentence(best_video)
    )


def _voice_sentence(best: PathResult | None) -> str:
    if best is None:
        return _("Voice: not tested.")
    quality = best.voice
    path = path_label(best.path_id)
    if quality.grade == Grade.GOOD:
        if quality.mos is None:
            return _("Voice: works via {path}.").format(path=path)
        return _("Voice: works via {path} (MOS {mos}).").format(
            path=path, mos=_mos_text(quality.mos)
        )
    if quality.grade == Grade.DEGRADED:
        if quality.mos is None:
            return _("Voice: degraded at best ({path}).").format(path=path)
        return _("Voice: degraded at best ({path}, MOS {mos}).").format(
            path=path, mos=_mos_text(quality.mos)
        )
    return _("Voice: does not work on any tested path.")


def _video_sentence(best: PathResult | None) -> str:
    if best is None:
        return _("Video: not tested.")
    path = path_label(best.path_id)
    if best.video.grade == Grade.GOOD:
        return _("Video: works via {path}.").format(path=path)
    if best.video.grade == Grade.DEGRADED:
        return _("Video: degraded at best ({path}).").format(path=path)
    return _("Video: does not work on any tested path.")


def _mos_text(mos: float) -> str:
    """MOS with one decimal, in the current language's number format (4.3, 4,3)."""
    return str(format_decimal(mos, format="0.0", locale=current_language()))
