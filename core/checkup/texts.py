"""Plain-language lines of the messenger check (CLI progress, app, HTML export)."""

from __future__ import annotations

from collections.abc import Sequence

from callpath.core.checkup.results import CheckedProxy, MessengerOutcome
from callpath.core.i18n import N_, _
from callpath.core.messengers.judge import DIRECT, REASONS, Judgement, Reachability
from callpath.core.messengers.network_state import NetworkState

REACHABILITY_TEXTS = {
    Reachability.WORKS: N_("work"),
    Reachability.TCP_ONLY: N_("work only over TCP"),
    Reachability.BLOCKED: N_("blocked"),
    Reachability.INTERMITTENT: N_("intermittent"),
    Reachability.UNKNOWN: N_("unknown"),
}


def reachability_text(judgement: Judgement) -> str:
    text = _(REACHABILITY_TEXTS[judgement.value])
    if judgement.reason and judgement.reason in REASONS and judgement.reason != "blocked_here":
        text = _("{value} — {reason}").format(value=text, reason=_(REASONS[judgement.reason]))
    return text


def network_line(state: NetworkState, udp: str) -> str:
    if state is NetworkState.OFFLINE:
        return _(
            "Network: no connectivity at all — nothing answers, not even encrypted DNS or "
            "public STUN."
        )
    if state is NetworkState.ALLOWLIST:
        return _(
            "Network: allowlist mode — only allowlisted (domestic) networks answer; every "
            "foreign address fails on every port. A relay inside the allowed networks could "
            "still carry calls."
        )
    if udp == "blocked":
        return _("Network: online, but UDP gets nowhere (public STUN servers do not answer).")
    return _("Network: online; UDP works (public STUN servers answer).")


def proxy_line(proxy: CheckedProxy) -> str:
    if proxy.carries_udp is True:
        udp = _("carries UDP: yes")
    elif proxy.carries_udp is False:
        udp = _("carries UDP: no — it cannot carry calls")
    else:
        udp = _("carries UDP: cannot tell ({reason})").format(reason=proxy.failure or "")
    return _("Proxy {url} ({kind}): {udp}").format(url=proxy.url, kind=proxy.kind, udp=udp)


def route_name(through: str, proxies: Sequence[CheckedProxy]) -> str:
    if through == DIRECT:
        return _("direct")
    for proxy in proxies:
        if proxy.id == through:
            return _("through {url}").format(url=proxy.url)
    return through


def messenger_line(outcome: MessengerOutcome, proxies: Sequence[CheckedProxy]) -> str:
    return _("{name} ({route}): messages {messages}; calls {calls}").format(
        name=outcome.name,
        route=route_name(outcome.through, proxies),
        messages=reachability_text(outcome.messages),
        calls=reachability_text(outcome.calls),
    )
