"""Plain-language lines of the messenger check (CLI progress, app, HTML export)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from callpath.core.checkup.results import CheckedProxy, CheckResult, MessengerOutcome
from callpath.core.i18n import N_, _
from callpath.core.messengers.judge import AROUND_VPN, DIRECT, REASONS, Judgement, Reachability
from callpath.core.messengers.network_state import NetworkState
from callpath.core.model.route import RouteSituation

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


# How calls or messages fare on one side of a VPN, as the end of a sentence about them:
# "Without your VPN Telegram calls are blocked; through it (wg0) they work."
SIDE_PREDICATES = {
    Reachability.WORKS: N_("work"),
    Reachability.TCP_ONLY: N_("work over TCP only"),
    Reachability.BLOCKED: N_("are blocked"),
    Reachability.INTERMITTENT: N_("work only now and then"),
    Reachability.UNKNOWN: N_("could not be told"),
}


def route_name(
    through: str, proxies: Sequence[CheckedProxy], route: RouteSituation | None = None
) -> str:
    vpn = None if route is None else route.vpn
    if through == DIRECT:
        if vpn is not None:
            return _("through your VPN {interface}").format(interface=vpn.name)
        return _("direct")
    if through == AROUND_VPN:
        interface = "" if route is None else route.physical_interface or ""
        return _("around your VPN, via {interface}").format(interface=interface)
    for proxy in proxies:
        if proxy.id == through:
            return _("through {url}").format(url=proxy.url)
    return through


def messenger_line(
    outcome: MessengerOutcome,
    proxies: Sequence[CheckedProxy],
    route: RouteSituation | None = None,
) -> str:
    return _("{name} ({route}): messages {messages}; calls {calls}").format(
        name=outcome.name,
        route=route_name(outcome.through, proxies, route),
        messages=reachability_text(outcome.messages),
        calls=reachability_text(outcome.calls),
    )


def sides_lines(
    name: str, vpn: str, through: Mapping[str, str], around: Mapping[str, str]
) -> list[str]:
    """One messenger on both sides of the VPN ``vpn``, in plain words: the calls, then the
    messages where they differ between the sides. ``through``/``around`` map ``messages`` and
    ``calls`` to Reachability values (a report's messenger entries)."""
    lines = []
    for what in ("calls", "messages"):
        inside = _side_value(through.get(what))
        outside = _side_value(around.get(what))
        if inside == outside:
            if what == "calls" and inside is not Reachability.UNKNOWN:
                lines.append(
                    _(
                        "{name} calls {through} both through your VPN ({vpn}) and without it."
                    ).format(name=name, vpn=vpn, through=_(SIDE_PREDICATES[inside]))
                )
            continue
        template = (
            _("Without your VPN {name} calls {around}; through it ({vpn}) they {through}.")
            if what == "calls"
            else _("Without your VPN {name} messages {around}; through it ({vpn}) they {through}.")
        )
        lines.append(
            template.format(
                name=name,
                vpn=vpn,
                around=_(SIDE_PREDICATES[outside]),
                through=_(SIDE_PREDICATES[inside]),
            )
        )
    return lines


def _side_value(value: str | None) -> Reachability:
    try:
        return Reachability(value or "unknown")
    except ValueError:
        return Reachability.UNKNOWN


def result_sides_lines(result: CheckResult) -> list[str]:
    """Every messenger measured on both sides of the VPN, in plain words."""
    vpn = None if result.route is None else result.route.vpn
    if vpn is None or result.around is None:
        return []
    around = {m.id: m for m in result.around_vpn()}
    lines = []
    for outcome in result.direct():
        other = around.get(outcome.id)
        if other is None:
            continue
        lines += sides_lines(
            outcome.name,
            vpn.name,
            {"messages": outcome.messages.value.value, "calls": outcome.calls.value.value},
            {"messages": other.messages.value.value, "calls": other.calls.value.value},
        )
    return lines
