"""A held call's outcome in plain words, for the CLI, the app and the HTML export alike."""

from __future__ import annotations

from callpath.core.call.hold_rules import (
    CUT_AFTER_TIME,
    CUT_AFTER_VOLUME,
    FLOW_CUT,
    RATE_CAPPED_AFTER_BURST,
    RELAY_ALLOCATION_EXPIRED,
    RELAY_PERMISSION_EXPIRED,
)
from callpath.core.i18n import N_, _
from callpath.core.model.results import Direction, HoldEnd, HoldResult
from callpath.core.paths.registry import path_label

MECHANISM_TEXTS = {
    FLOW_CUT: N_(
        "the flow was cut after {age} of media ({volume} sent): a limit on time or volume, "
        "one call cannot tell which"
    ),
    CUT_AFTER_TIME: N_("the flow was cut after {age} of media, whatever its volume"),
    CUT_AFTER_VOLUME: N_("the flow was cut after {volume} sent, whatever its duration"),
    RELAY_ALLOCATION_EXPIRED: N_("the relay allocation expired without being refreshed"),
    RELAY_PERMISSION_EXPIRED: N_(
        "the relay's permission for the far end expired without being refreshed"
    ),
    RATE_CAPPED_AFTER_BURST: N_(
        "the rate was capped at {cap} kbit/s once {volume} had passed (a burst allowance)"
    ),
}


def duration_text(seconds: float) -> str:
    """``45 s``, ``2 min``, ``2 min 5 s``."""
    whole = round(seconds)
    if whole < 60:
        return _("{seconds} s").format(seconds=whole)
    minutes, rest = divmod(whole, 60)
    if rest == 0:
        return _("{minutes} min").format(minutes=minutes)
    return _("{minutes} min {seconds} s").format(minutes=minutes, seconds=rest)


def volume_text(count: int) -> str:
    if count >= 1_000_000:
        return _("{count} MB").format(count=f"{count / 1_000_000:.1f}")
    return _("{count} KB").format(count=round(count / 1000))


def mechanism_text(hold: HoldResult) -> str | None:
    """What the evidence says ended or slowed the held call, or None (inconclusive)."""
    if hold.mechanism not in MECHANISM_TEXTS:
        return None
    evidence = hold.evidence
    sent = next((d.bytes for d in hold.directions if d.direction == Direction.SENT), 0)
    volume = evidence.get("burst_bytes", evidence.get("sent_bytes", sent))
    return _(MECHANISM_TEXTS[hold.mechanism]).format(
        age=duration_text(float(evidence.get("flow_age_s", hold.flow_age_s))),
        volume=volume_text(int(volume)),
        cap=evidence.get("cap_kbps", "?"),
    )


def hold_outcome(hold: HoldResult) -> str:
    """One line: ``TURN over UDP: held 45 s`` or how and when it stopped."""
    label = path_label(hold.path_id)
    if hold.ended == HoldEnd.HELD:
        line = _("{path}: held {duration}").format(
            path=label, duration=duration_text(hold.achieved_s)
        )
    elif hold.ended == HoldEnd.STOPPED_BY_USER:
        line = _("{path}: held {duration} of {asked}, then stopped by you").format(
            path=label, duration=duration_text(hold.achieved_s), asked=duration_text(hold.asked_s)
        )
    elif hold.ended == HoldEnd.DEGRADED:
        line = _("{path}: degraded {at} into the hold").format(
            path=label, at=duration_text(hold.ended_at_s or 0.0)
        )
    else:
        line = _("{path}: media stopped {at} into the hold").format(
            path=label, at=duration_text(hold.ended_at_s or 0.0)
        )
    why = mechanism_text(hold)
    if why is not None:
        line += " — " + why
    elif hold.ended in (HoldEnd.MEDIA_STOPPED, HoldEnd.DEGRADED):
        line += " — " + _("the evidence does not name a cause")
    return line
