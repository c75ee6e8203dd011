"""``--hold DURATION`` on the console: the option, the live hold display, the summary lines.

Kept apart from ``console`` (the run's table): the hold comes after the verdict, which is
printed as soon as ``RunFinished`` arrives, then one line per held path every few seconds
(elapsed, current quality) and the events (a path stopped, degraded, held).
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import IO, Any

from rich.console import Console

from callpath.core.call.quality import voice_mos
from callpath.core.i18n import _
from callpath.core.model.config import HoldConfig
from callpath.core.model.events import (
    Event,
    HoldFinished,
    HoldPathEnded,
    HoldSampleTaken,
    HoldStarted,
)
from callpath.core.model.results import Direction, MediaKind, RunResult
from callpath.core.paths.registry import path_label
from callpath.core.present.hold import duration_text, hold_outcome

_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)\s*m)?\s*(?:(\d+(?:\.\d+)?)\s*s?)?\s*$")
PLAIN_EVERY_S = 5  # a plain (non-terminal) display prints each held path this often
MAX_HOLD_S = 3600.0


def parse_duration(text: str) -> float:
    """``2m``, ``45s``, ``1m30s``, ``90`` (seconds) -> seconds; argparse reports bad ones."""
    match = _DURATION.match(text)
    if not text.strip() or match is None or not any(match.groups()):
        raise argparse.ArgumentTypeError(
            _("not a duration: {text!r} (examples: 2m, 45s, 1m30s)").format(text=text)
        )
    minutes, seconds = match.groups()
    value = float(minutes or 0) * 60 + float(seconds or 0)
    if not 0 < value <= MAX_HOLD_S:
        raise argparse.ArgumentTypeError(
            _("the hold must last between 1 s and {limit}").format(limit=duration_text(MAX_HOLD_S))
        )
    return value


def add_hold_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--hold",
        type=parse_duration,
        metavar="DURATION",
        help=_(
            "after the verdict, keep the best call for voice and for video going this long "
            "(e.g. 2m, 45s) and say when and how it ended"
        ),
    )
    parser.add_argument(
        "--hold-all",
        action="store_true",
        help=_("with --hold, keep every path that worked going, not only the best ones"),
    )


def hold_config(args: argparse.Namespace) -> HoldConfig | None:
    seconds = getattr(args, "hold", None)
    if seconds is None:
        return None
    return HoldConfig(duration_s=seconds, every_path=bool(getattr(args, "hold_all", False)))


def hold_event_json(event: Event) -> dict[str, Any] | None:
    """A JSON-lines record of a hold event (None: not a hold event)."""
    if isinstance(event, HoldStarted):
        return {
            "event": "hold_started",
            "paths": list(event.path_ids),
            "duration_s": event.duration_s,
        }
    if isinstance(event, HoldSampleTaken):
        sample = event.sample
        return {
            "event": "hold_sample",
            "path": event.path_id,
            "t": sample.t,
            "kind": sample.kind.value,
            "direction": sample.direction.value,
            "rtt_ms": _round(sample.rtt_ms),
            "loss_pct": _round(sample.loss_pct),
            "bitrate_kbps": _round(sample.bitrate_kbps),
        }
    if isinstance(event, HoldPathEnded):
        hold = event.result
        return {
            "event": "hold_path_ended",
            "path": hold.path_id,
            "ended": hold.ended.value,
            "achieved_s": hold.achieved_s,
            "ended_at_s": hold.ended_at_s,
            "mechanism": hold.mechanism,
        }
    if isinstance(event, HoldFinished):
        return {"event": "hold_finished", "paths": [h.path_id for h in event.result.holds]}
    return None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


class HoldDisplay:
    """Prints the hold as it runs (for the console's live and plain modes)."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._console = Console(file=stream or sys.stdout, highlight=False)
        self._duration = 0.0
        self._latest: dict[tuple[str, MediaKind, Direction], Any] = {}

    def __call__(self, event: Event) -> None:
        if isinstance(event, HoldStarted):
            self._duration = event.duration_s
            self._console.print()
            self._console.print(
                _(
                    "Keeping the call going for {duration} on: {paths} (Ctrl-C ends it, keeping "
                    "what was measured)"
                ).format(
                    duration=duration_text(event.duration_s),
                    paths=", ".join(path_label(p) for p in event.path_ids) or _("(no path)"),
                )
            )
        elif isinstance(event, HoldSampleTaken):
            sample = event.sample
            self._latest[(event.path_id, sample.kind, sample.direction)] = sample
            last_of_second = (
                sample.kind == MediaKind.VIDEO and sample.direction == Direction.RECEIVED
            )
            if last_of_second and round(sample.t) % PLAIN_EVERY_S == 0:
                self._console.print(self.status_line(event.path_id, sample.t))
        elif isinstance(event, HoldPathEnded):
            self._console.print(hold_outcome(event.result))

    def status_line(self, path_id: str, t: float) -> str:
        """``TURN over UDP  0:35 / 2:00  voice MOS 4.3, 0 % lost  video 412 kbit/s``."""
        voice_sent = self._latest.get((path_id, MediaKind.AUDIO, Direction.SENT))
        voice_back = self._latest.get((path_id, MediaKind.AUDIO, Direction.RECEIVED))
        video_back = self._latest.get((path_id, MediaKind.VIDEO, Direction.RECEIVED))
        parts = [f"{path_label(path_id)}  {_clock(t)} / {_clock(self._duration)}"]
        silent = voice_back is not None and (voice_back.bitrate_kbps or 0.0) < 1.0
        if silent:
            parts.append(_("no media received"))
        elif voice_sent is not None and voice_back is not None:
            loss = voice_back.loss_pct or 0.0
            score = voice_mos(voice_sent.rtt_ms or 0.0, voice_back.jitter_ms or 0.0, loss)
            parts.append(
                _("voice MOS {mos}, {loss} % lost").format(mos=f"{score:.1f}", loss=round(loss))
            )
        if not silent and video_back is not None and video_back.bitrate_kbps is not None:
            parts.append(_("video {rate} kbit/s").format(rate=round(video_back.bitrate_kbps)))
        return "  ".join(parts)


def _clock(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole // 60}:{whole % 60:02d}"


def print_holds(run: RunResult, console: Console) -> None:
    """The hold's outcome per held path, after the run's summary."""
    if not run.holds:
        return
    console.print()
    console.print(_("[bold]Held calls[/bold]"))
    for hold in run.holds:
        console.print("  " + hold_outcome(hold))
