"""Verdict: restoring paths, their order, headlines and path labels
(callpath.core.call.verdict)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from babel.messages.extract import extract_python
from babel.messages.pofile import read_po

from callpath.core.call.verdict import decide
from callpath.core.i18n import set_language
from callpath.core.model.results import (
    Grade,
    MediaKind,
    MediaQuality,
    PathId,
    PathResult,
    Stage,
    StageResult,
)
from callpath.core.paths.registry import path_label
from callpath.core.resources import asset_path


@pytest.fixture
def russian() -> Iterator[None]:
    set_language("ru")
    try:
        yield
    finally:
        set_language("en")


def voice(
    grade: Grade, mos: float | None = None, loss: float = 0.0, rtt: float = 40.0
) -> MediaQuality:
    return MediaQuality(MediaKind.AUDIO, grade, mos=mos, loss_pct=loss, rtt_ms=rtt)


def video(grade: Grade, loss: float = 0.0, bitrate: float = 300.0) -> MediaQuality:
    return MediaQuality(MediaKind.VIDEO, grade, loss_pct=loss, rtt_ms=40.0, bitrate_kbps=bitrate)


def path(
    path_id: str,
    voice_quality: MediaQuality | None = None,
    video_quality: MediaQuality | None = None,
    *,
    exercised: bool = True,
) -> PathResult:
    return PathResult(
        path_id=path_id,
        exercised=exercised,
        failure=None if exercised else "ice_failed",
        stages=(StageResult(Stage.ICE, 0.1, 0.5, None if exercised else "ice_failed"),),
        server="turn:relay.example.org:3478",
        voice=voice_quality or MediaQuality.not_tested(MediaKind.AUDIO),
        video=video_quality or MediaQuality.not_tested(MediaKind.VIDEO),
    )


def failed(path_id: str) -> PathResult:
    return path(path_id, exercised=False)


@pytest.mark.parametrize(
    ("path_id", "label"),
    [
        (PathId.DIRECT, "direct UDP"),
        (PathId.TURN_UDP, "TURN over UDP"),
        (PathId.TURN_TCP, "TURN over TCP"),
        (PathId.TURN_TLS, "TURN over TLS"),
        (PathId.SOCKS5_UDP, "SOCKS5 proxy (UDP)"),
        (PathId.SOCKS5_TURN, "TURN through a SOCKS5 proxy"),
        (PathId.HTTP_TURN, "TURN through an HTTP proxy"),
        (PathId.MASQUE, "MASQUE (HTTP/3)"),
        ("carrier-pigeon", "carrier-pigeon"),
    ],
)
def test_path_labels(path_id: str, label: str) -> None:
    assert path_label(path_id) == label
    assert path_label(str(path_id)) == label


def test_path_labels_in_russian(russian: None) -> None:
    assert path_label("turn-tls") == "TURN по TLS"
    assert path_label("direct") == "прямой UDP"
    assert path_label("unknown-path") == "unknown-path"


def test_restored_by_orders_best_first_and_skips_unexercised() -> None:
    paths = [
        path("direct", voice(Grade.DEGRADED, 3.0), video(Grade.DEGRADED)),
        path("turn-udp", voice(Grade.GOOD, 4.0, loss=1.0), video(Grade.GOOD, bitrate=250)),
        path("turn-tls", voice(Grade.GOOD, 4.3), video(Grade.GOOD, bitrate=400)),
        path("turn-tcp", voice(Grade.GOOD, 4.0, loss=0.5), video(Grade.UNUSABLE)),
        # Good media over a path that the selected pair did not prove: not a restoring path.
        path("masque", voice(Grade.GOOD, 4.4), video(Grade.GOOD), exercised=False),
        failed("socks5-udp"),
    ]
    verdict = decide(paths)
    assert verdict.voice_restored_by == ("turn-tls", "turn-tcp", "turn-udp")
    assert verdict.video_restored_by == ("turn-tls", "turn-udp")
    assert verdict.headline == (
        "Voice: works via TURN over TLS (MOS 4.3). Video: works via TURN over TLS."
    )


def test_equal_paths_keep_their_tested_order() -> None:
    paths = [
        path("turn-tcp", voice(Grade.GOOD, 4.1), video(Grade.GOOD)),
        path("turn-udp", voice(Grade.GOOD, 4.1), video(Grade.GOOD)),
    ]
    verdict = decide(paths)
    assert verdict.voice_restored_by == ("turn-tcp", "turn-udp")
    assert verdict.video_restored_by == ("turn-tcp", "turn-udp")


def test_headline_degraded_voice_and_no_video() -> None:
    paths = [
        path("direct", voice(Grade.DEGRADED, 2.94), video(Grade.UNUSABLE)),
        path("turn-udp", voice(Grade.UNUSABLE, 1.2), video(Grade.UNUSABLE)),
        failed("turn-tls"),
    ]
    verdict = decide(paths)
    assert verdict.voice_restored_by == ()
    assert verdict.video_restored_by == ()
    assert verdict.headline == (
        "Voice: degraded at best (direct UDP, MOS 2.9). Video: does not work on any tested path."
    )


def test_headline_voice_and_video_from_different_paths() -> None:
    paths = [
        path("direct", voice(Grade.GOOD, 4.2), video(Grade.DEGRADED)),
        path("turn-tcp", voice(Grade.DEGRADED, 3.2), video(Grade.DEGRADED, loss=1)),
    ]
    assert decide(paths).headline == (
        "Voice: works via direct UDP (MOS 4.2). Video: degraded at best (direct UDP)."
    )


def test_headline_without_mos_and_untested_video() -> None:
    paths = [path("socks5-udp", voice(Grade.DEGRADED))]
    assert decide(paths).headline == (
        "Voice: degraded at best (SOCKS5 proxy (UDP)). Video: not tested."
    )
    paths = [path("http-turn", None, video(Grade.GOOD))]
    assert decide(paths).headline == (
        "Voice: not tested. Video: works via TURN through an HTTP proxy."
    )


def test_headline_nothing_carried_a_call() -> None:
    assert decide([]).headline == "No tested path carried a call."
    paths = [failed("direct"), failed("turn-udp"), path("turn-tls")]
    verdict = decide(paths)
    assert verdict.headline == "No tested path carried a call."
    assert (verdict.voice_restored_by, verdict.video_restored_by) == ((), ())


def test_headline_all_unusable() -> None:
    paths = [path("direct", voice(Grade.UNUSABLE, 1.0), video(Grade.UNUSABLE))]
    assert decide(paths).headline == (
        "Voice: does not work on any tested path. Video: does not work on any tested path."
    )


def test_headline_in_russian(russian: None) -> None:
    paths = [
        path("turn-tls", voice(Grade.GOOD, 4.26), video(Grade.GOOD)),
        path("direct", voice(Grade.DEGRADED, 3.0), video(Grade.DEGRADED)),
    ]
    assert decide(paths).headline == (
        "Голос: работает через TURN по TLS (MOS 4,3). Видео: работает через TURN по TLS."
    )
    paths = [path("direct", voice(Grade.DEGRADED, 2.9), video(Grade.UNUSABLE))]
    assert decide(paths).headline == (
        "Голос: в лучшем случае с помехами (прямой UDP, MOS 2,9). "
        "Видео: не работает ни на одном из проверенных путей."
    )
    assert decide([]).headline == "Ни по одному из проверенных путей звонок не прошёл."


def test_language_restored_after_russian_test() -> None:
    assert path_label("turn-tls") == "TURN over TLS"


def test_every_verdict_string_has_a_russian_translation() -> None:
    source = Path(__file__).resolve().parent.parent / "core" / "verdict.py"
    with source.open("rb") as handle:
        # Calls with a variable (``_(label)``) extract as None; only literals need entries.
        extracted = {
            messages
            for _line, _function, messages, _comments in extract_python(
                handle, {"_": None, "N_": None}, [], {}
            )
            if isinstance(messages, str)
        }
    with asset_path("locale", "ru", "LC_MESSAGES", "callpath.po").open("rb") as handle:
        catalogue = read_po(handle, locale="ru")
    translated = {
        message.id for message in catalogue if message.id and message.string and not message.fuzzy
    }
    assert len(extracted) >= 20
    assert extracted <= translated, sorted(extracted - translated)
