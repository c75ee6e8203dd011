"""Path results → the verdict: which paths restore voice and video, best first.

Pure. The headline is words, so it comes from ``callpath.core.present.headline`` once the run is
complete (``run.investigation``; ``report.document`` for a run that did not pass through it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from callpath.core.call.quality import rank_key
from callpath.core.model.results import Grade, MediaQuality, PathResult, Verdict


def decide(paths: Sequence[PathResult]) -> Verdict:
    """Which exercised paths restore voice and video (good grade, best first); the headline is
    left empty for the presentation layer to fill."""
    return Verdict(
        voice_restored_by=_restored_by(paths, _voice),
        video_restored_by=_restored_by(paths, _video),
        headline="",
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
