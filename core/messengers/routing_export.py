"""Routing rules for the messengers found blocked, for the tools users already run.

Pure functions: catalogue entries (``assets/targets``), which messengers are blocked and what
(``calls`` and/or ``messages``), the outbound the user routes through and whether it carries UDP,
and today's date in; a configuration text and warnings out. Formats: sing-box route rules,
Xray/V2Ray routing rules, Clash/mihomo rules, and for DPI-bypass tools an nftables table of sets
(address-protocol-port triples, addresses, ports) and the same lists for ``ipset restore``.
Blocked calls select the catalogue's ``calls_only`` ranges, blocked messages the others; every
rule names its messenger and whether it is for calls only, and the text says where the ranges
come from and how old they are. Output is sorted, so the same inputs always give the same text.
Documented in docs/routing-rules.md.
"""

from __future__ import annotations

import datetime as dt
import enum
import ipaddress
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from callpath.core.i18n import _
from callpath.core.messengers.catalog import AddressRange, MessengerEntry, PortSpan

CALLS = "calls"
MESSAGES = "messages"
KINDS = (CALLS, MESSAGES)
DEFAULT_OUTBOUND = "proxy"
STALE_AFTER_DAYS = 180  # older ranges get a warning: messengers move their servers
# Outbound tags and Clash proxy/group names may hold spaces and any script ("🚀 Прокси"); only
# what would break a Clash rule (commas, brackets) or a comment line is refused.
_TAG = r"[^\s,()\"'\\\x00-\x1f\x7f](?:[^,()\"'\\\x00-\x1f\x7f]{0,62}[^\s,()\"'\\\x00-\x1f\x7f])?"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ExportFormat(enum.StrEnum):
    SING_BOX = "sing-box"
    XRAY = "xray"
    CLASH = "clash"
    NFTABLES = "nftables"
    IPSET = "ipset"


class ExportError(ValueError):
    """Inputs the export cannot use (an unknown messenger, a bad outbound name)."""


@dataclass(frozen=True)
class RuleGroup:
    """One rule's worth: a messenger's networks on one protocol and one set of ports."""

    messenger_id: str
    messenger_name: str
    calls_only: bool
    proto: str  # "udp" | "tcp"
    ports: tuple[PortSpan, ...]
    networks: tuple[Network, ...]
    note: str

    @property
    def tag(self) -> str:
        return f"callpath-{self.messenger_id}-{CALLS if self.calls_only else MESSAGES}"

    @property
    def single_ports(self) -> tuple[int, ...]:
        return tuple(span.low for span in self.ports if span.low == span.high)

    @property
    def port_ranges(self) -> tuple[PortSpan, ...]:
        return tuple(span for span in self.ports if span.low != span.high)

    def describe(self, ports: Sequence[PortSpan | int] | None = None) -> str:
        """ "Telegram — calls only: UDP 596-599, 1400 — call servers and reflectors"; ``ports``
        names the part of the group's ports one rule holds."""
        what = _("calls only") if self.calls_only else _("messages")
        listed = ", ".join(str(span) for span in (self.ports if ports is None else ports))
        text = f"{self.messenger_name} — {what}: {self.proto.upper()} {listed}"
        return f"{text} — {self.note}" if self.note else text


@dataclass(frozen=True)
class ExportedRules:
    format: ExportFormat
    text: str
    warnings: tuple[str, ...]
    groups: tuple[RuleGroup, ...]
    age_line: str


def select_groups(
    entries: Sequence[MessengerEntry], blocked: Mapping[str, Iterable[str]]
) -> tuple[tuple[RuleGroup, ...], tuple[str, ...]]:
    """The rule groups for what is blocked, sorted, and warnings about what has no ranges."""
    by_id = {entry.id: entry for entry in entries}
    unknown = sorted(set(blocked) - set(by_id))
    if unknown:
        raise ExportError(
            _("unknown messenger {ids}; known: {known}").format(
                ids=", ".join(unknown), known=", ".join(sorted(by_id))
            )
        )
    groups: list[RuleGroup] = []
    warnings: list[str] = []
    for messenger_id in sorted(blocked):
        kinds = set(blocked[messenger_id])
        bad = sorted(kinds - set(KINDS))
        if bad:
            raise ExportError(
                _("what is blocked must be calls or messages, not {what}").format(
                    what=", ".join(bad)
                )
            )
        entry = by_id[messenger_id]
        wanted = [r for r in entry.address_ranges if (CALLS if r.calls_only else MESSAGES) in kinds]
        for kind in sorted(kinds):
            if not any((CALLS if r.calls_only else MESSAGES) == kind for r in wanted):
                warnings.append(
                    _(
                        "{name}: the catalogue has no address ranges for its {kind}; "
                        "nothing is written for them"
                    ).format(name=entry.name, kind=_kind_text(kind))
                )
        groups.extend(_group(entry, wanted))
        everywhere = sorted(
            {str(span) for r in wanted if _is_default(r.network) for span in r.ports},
            key=lambda text: int(text.split("-")[0]),
        )
        if everywhere:
            warnings.append(
                _(
                    "{name}: no address range is known; its rules match ports {ports} "
                    "on every address"
                ).format(name=entry.name, ports=", ".join(everywhere))
            )
    groups.sort(key=lambda g: (g.messenger_id, not g.calls_only, g.proto, g.ports, g.note))
    return tuple(groups), tuple(warnings)


def _kind_text(kind: str) -> str:
    return _("calls") if kind == CALLS else _("messages")


def _group(entry: MessengerEntry, ranges: Sequence[AddressRange]) -> list[RuleGroup]:
    keyed: dict[tuple[bool, str, tuple[PortSpan, ...], str], set[Network]] = {}
    for item in ranges:
        key = (item.calls_only, item.proto, item.ports, item.note)
        keyed.setdefault(key, set()).add(ipaddress.ip_network(item.network))
    return [
        RuleGroup(
            messenger_id=entry.id,
            messenger_name=entry.name,
            calls_only=calls_only,
            proto=proto,
            ports=ports,
            networks=tuple(sorted(networks, key=_network_key)),
            note=note,
        )
        for (calls_only, proto, ports, note), networks in keyed.items()
    ]


def _network_key(network: Network) -> tuple[int, int, int]:
    return (network.version, int(network.network_address), network.prefixlen)


def _is_default(network: str) -> bool:
    return ipaddress.ip_network(network).prefixlen == 0


def age_line(ranges: Iterable[AddressRange], today: dt.date) -> tuple[str, tuple[str, ...]]:
    """ "ranges observed 2025-08, up to 493 days old" and a warning when they are stale."""
    ranges = list(ranges)
    dates = sorted({r.observed for r in ranges if r.observed is not None})
    warnings: list[str] = []
    if not ranges:
        return _("no ranges"), ()
    if any(r.observed is None for r in ranges):
        warnings.append(_("some ranges have no observation date: their age is unknown"))
    if not dates:
        return _("ranges observed: date unknown"), tuple(warnings)
    oldest, newest = dates[0], dates[-1]
    days = (today - oldest.earliest()).days
    observed = str(oldest) if oldest == newest else f"{oldest} … {newest}"
    if oldest.day is None:
        line = _("ranges observed {observed}, up to {days} days old").format(
            observed=observed, days=days
        )
    else:
        line = _("ranges observed {observed}, {days} days old").format(observed=observed, days=days)
    if days < 0:
        warnings.append(
            _("a range's observation date is after today ({today})").format(today=today)
        )
    elif days > STALE_AFTER_DAYS:
        warnings.append(
            _(
                "the ranges are up to {days} days old: messengers move their servers; "
                "compare them with the sources before relying on them"
            ).format(days=days)
        )
    return line, tuple(warnings)


def export_rules(
    entries: Sequence[MessengerEntry],
    blocked: Mapping[str, Iterable[str]],
    *,
    format: ExportFormat,
    outbound: str = DEFAULT_OUTBOUND,
    outbound_has_udp: bool | None = None,
    today: dt.date,
) -> ExportedRules:
    """The configuration text for ``format`` routing what is blocked through ``outbound``."""
    blocked = {messenger_id: frozenset(kinds) for messenger_id, kinds in blocked.items()}
    if not re.fullmatch(_TAG, outbound):
        raise ExportError(
            _(
                "the outbound name must be 1 to 64 characters without commas, brackets, quotes "
                "or line breaks, and not start or end with a space: {name!r}"
            ).format(name=outbound)
        )
    groups, warnings = select_groups(entries, blocked)
    by_id = {entry.id: entry for entry in entries}
    chosen = [
        r
        for messenger_id in blocked
        for r in by_id[messenger_id].address_ranges
        if (CALLS if r.calls_only else MESSAGES) in set(blocked[messenger_id])
    ]
    line, age_warnings = age_line(chosen, today)
    all_warnings = list(warnings) + list(age_warnings)
    if not groups:
        all_warnings.append(_("nothing to export: no range is selected"))
    has_udp_rules = any(g.proto == "udp" for g in groups)
    if has_udp_rules and outbound_has_udp is False:
        all_warnings.append(
            _(
                "the outbound {outbound!r} carries no UDP: calls will not pass through it "
                "(use one that does, e.g. Shadowsocks or a WireGuard/TUN VPN)"
            ).format(outbound=outbound)
        )
    header = _header(format, entries, blocked, outbound, line, today)
    header += [
        _("source: {source}").format(source=source)
        for source in sorted({r.source for r in chosen if r.source})
    ]
    if outbound_has_udp is None and has_udp_rules:
        header.append(
            _("calls need UDP: check that {outbound!r} carries it (callpath proxies tells)").format(
                outbound=outbound
            )
        )
    header += [_("warning: {text}").format(text=w) for w in all_warnings]
    renderer = _RENDERERS[format]
    text = renderer(groups, outbound, header)
    return ExportedRules(
        format=format,
        text=text,
        warnings=tuple(all_warnings),
        groups=groups,
        age_line=line,
    )


def _header(
    format: ExportFormat,
    entries: Sequence[MessengerEntry],
    blocked: Mapping[str, Iterable[str]],
    outbound: str,
    age: str,
    today: dt.date,
) -> list[str]:
    names = {entry.id: entry.name for entry in entries}
    listed = ", ".join(
        f"{names[m]} ({', '.join(_kind_text(k) for k in sorted(set(blocked[m])))})"
        for m in sorted(blocked)
    )
    lines = [
        _("CallPath routing rules for {format}, written {today}").format(
            format=format, today=today
        ),
        _("for: {messengers}").format(messengers=listed or _("nothing")),
        _("outbound: {outbound}").format(outbound=outbound),
        age,
    ]
    return lines


# --- sing-box ------------------------------------------------------------------------------


def _sing_box_rules(group: RuleGroup, outbound: str) -> list[tuple[str, dict[str, object]]]:
    base: dict[str, object] = {
        "ip_cidr": [str(n) for n in group.networks],
        "network": [group.proto],
    }
    rules: list[tuple[str, dict[str, object]]] = []
    if group.single_ports:
        rule = {**base, "port": list(group.single_ports), "outbound": outbound}
        rules.append((group.describe(group.single_ports), rule))
    if group.port_ranges:
        ranges = [f"{s.low}:{s.high}" for s in group.port_ranges]
        rule = {**base, "port_range": ranges, "outbound": outbound}
        rules.append((group.describe(group.port_ranges), rule))
    return rules


def _render_sing_box(groups: Sequence[RuleGroup], outbound: str, header: list[str]) -> str:
    lines = [f"// {line}" for line in header]
    lines += ["// " + _("merge route.rules into your configuration, before its other rules")]
    lines += ["{", '  "route": {', '    "rules": [']
    body: list[str] = []
    for group in groups:
        for comment, rule in _sing_box_rules(group, outbound):
            body.append(f"      // {comment}")
            body.append("      " + json.dumps(rule, ensure_ascii=False) + ",")
    _strip_last_comma(body)
    lines += [*body, "    ]", "  }", "}"]
    return "\n".join(lines) + "\n"


# --- Xray / V2Ray --------------------------------------------------------------------------


def _render_xray(groups: Sequence[RuleGroup], outbound: str, header: list[str]) -> str:
    lines = [f"// {line}" for line in header]
    lines += ["// " + _("merge routing.rules into your configuration, before its other rules")]
    lines += ["{", '  "routing": {', '    "rules": [']
    body: list[str] = []
    for group in groups:
        for ports in (group.single_ports, group.port_ranges):
            if not ports:
                continue
            rule = {
                "type": "field",
                "ruleTag": group.tag,
                "ip": [str(n) for n in group.networks],
                "port": ",".join(str(p) for p in ports),
                "network": group.proto,
                "outboundTag": outbound,
            }
            body.append(f"      // {group.describe(ports)}")
            body.append("      " + json.dumps(rule, ensure_ascii=False) + ",")
    _strip_last_comma(body)
    lines += [*body, "    ]", "  }", "}"]
    return "\n".join(lines) + "\n"


def _strip_last_comma(body: list[str]) -> None:
    for index in range(len(body) - 1, -1, -1):
        if body[index].endswith(","):
            body[index] = body[index][:-1]
            return


# --- Clash / mihomo ------------------------------------------------------------------------


def clash_rules(group: RuleGroup, outbound: str) -> list[str]:
    """One AND rule per network and port span: IP-CIDR(6) with no-resolve, NETWORK, DST-PORT."""
    rules: list[str] = []
    for network in group.networks:
        kind = "IP-CIDR" if network.version == 4 else "IP-CIDR6"
        for span in group.ports:
            parts = [f"({kind},{network},no-resolve)"]
            if network.prefixlen == 0:
                parts = []  # every address of this family: only the protocol and port decide
            parts += [f"(NETWORK,{group.proto.upper()})", f"(DST-PORT,{span})"]
            rules.append(f"AND,({','.join(parts)}),{outbound}")
    return list(dict.fromkeys(rules))


def _render_clash(groups: Sequence[RuleGroup], outbound: str, header: list[str]) -> str:
    lines = [f"# {line}" for line in header]
    lines += ["# " + _("merge these rules into your configuration, before its other rules")]
    lines.append("rules:" if groups else "rules: []")
    for group in groups:
        lines.append(f"  # {group.describe()}")
        lines += [f"  - {rule}" for rule in clash_rules(group, outbound)]
    return "\n".join(lines) + "\n"


# --- nftables ------------------------------------------------------------------------------


Element = tuple[Network, str, PortSpan]


def disjoint_elements(elements: Iterable[Element]) -> list[Element]:
    """The same (address, protocol, port) points as ``elements`` without overlaps, which
    nftables refuses in an interval set: ports of one network are merged, and a network's
    ports already covered by a network containing it are left out."""
    by_key: dict[tuple[Network, str], list[PortSpan]] = {}
    for network, proto, span in elements:
        by_key.setdefault((network, proto), []).append(span)
    merged = {key: _merge_spans(spans) for key, spans in by_key.items()}
    result: list[Element] = []
    for (network, proto), spans in merged.items():
        covering = [
            span
            for (other, other_proto), other_spans in merged.items()
            if other_proto == proto
            and other != network
            and other.version == network.version
            and network.subnet_of(other)  # type: ignore[arg-type]
            for span in other_spans
        ]
        for span in _subtract(spans, _merge_spans(covering)):
            result.append((network, proto, span))
    return sorted(result, key=lambda e: (_network_key(e[0]), e[1], e[2]))


def _merge_spans(spans: Iterable[PortSpan]) -> list[PortSpan]:
    merged: list[PortSpan] = []
    for span in sorted(spans):
        if merged and span.low <= merged[-1].high + 1:
            last = merged[-1]
            merged[-1] = PortSpan(last.low, max(last.high, span.high))
        else:
            merged.append(span)
    return merged


def _subtract(spans: Sequence[PortSpan], covering: Sequence[PortSpan]) -> list[PortSpan]:
    result: list[PortSpan] = []
    for span in spans:
        pieces = [span]
        for cut in covering:
            next_pieces: list[PortSpan] = []
            for piece in pieces:
                if cut.high < piece.low or cut.low > piece.high:
                    next_pieces.append(piece)
                    continue
                if piece.low < cut.low:
                    next_pieces.append(PortSpan(piece.low, cut.low - 1))
                if cut.high < piece.high:
                    next_pieces.append(PortSpan(cut.high + 1, piece.high))
            pieces = next_pieces
        result += pieces
    return result


def _nft_set(name: str, type_: str, elements: Sequence[str], comment: str) -> list[str]:
    lines = [f"\t# {comment}", f"\tset {name} {{", f"\t\ttype {type_}", "\t\tflags interval"]
    if elements:
        lines.append("\t\telements = {")
        lines += [f"\t\t\t{element}," for element in elements]
        lines.append("\t\t}")
    lines.append("\t}")
    return lines


def _render_nftables(groups: Sequence[RuleGroup], outbound: str, header: list[str]) -> str:
    lines = ["#!/usr/sbin/nft -f"] + [f"# {line}" for line in header]
    lines += [
        "# " + _("sets for DPI-bypass tools and policy routing; match them, for example, with"),
        "#   ip daddr . meta l4proto . th dport @messengers_v4 meta mark set 0x1",
        "#   ip daddr @messengers_v4_addr udp dport @messengers_udp_ports ...",
    ]
    for group in groups:
        lines.append(f"# {group.describe()}")
    lines.append("table inet callpath {")
    elements = [(n, g.proto, s) for g in groups for n in g.networks for s in g.ports]
    exact = disjoint_elements(elements)
    for version, family in ((4, "ipv4_addr"), (6, "ipv6_addr")):
        triples = [f"{n} . {proto} . {span}" for n, proto, span in exact if n.version == version]
        lines += _nft_set(
            f"messengers_v{version}",
            f"{family} . inet_proto . inet_service",
            triples,
            _("address . protocol . port, exactly as the catalogue pairs them"),
        )
    for version, family in ((4, "ipv4_addr"), (6, "ipv6_addr")):
        networks = [n for g in groups for n in g.networks if n.version == version]
        collapsed = ipaddress.collapse_addresses(networks)  # type: ignore[type-var]
        lines += _nft_set(
            f"messengers_v{version}_addr",
            family,
            [str(n) for n in sorted(collapsed, key=_network_key)],
            _("addresses alone (an ipset-style list)"),
        )
    for proto in ("udp", "tcp"):
        spans = _merge_spans(s for g in groups if g.proto == proto for s in g.ports)
        lines += _nft_set(
            f"messengers_{proto}_ports",
            "inet_service",
            [str(s) for s in spans],
            _("{proto} ports alone").format(proto=proto.upper()),
        )
    lines.append("}")
    return "\n".join(lines) + "\n"


def _ipset_networks(networks: Iterable[Network]) -> list[Network]:
    """Collapsed and sorted; a /0 becomes its two /1 halves (hash:net takes /1 at the widest)."""
    result: list[Network] = []
    for network in ipaddress.collapse_addresses(networks):  # type: ignore[type-var]
        result += list(network.subnets()) if network.prefixlen == 0 else [network]
    return sorted(result, key=_network_key)


def _render_ipset(groups: Sequence[RuleGroup], outbound: str, header: list[str]) -> str:
    lines = [f"# {line}" for line in header]
    lines += [
        "# " + _("for ipset restore; match them, for example, with iptables:"),
        "#   -m set --match-set callpath-v4 dst -m set --match-set callpath-udp-ports dst",
    ]
    lines += [f"# {group.describe()}" for group in groups]
    for version, family in ((4, "inet"), (6, "inet6")):
        name = f"callpath-v{version}"
        lines.append(f"create {name} hash:net family {family} -exist")
        networks = [n for g in groups for n in g.networks if n.version == version]
        lines += [f"add {name} {n} -exist" for n in _ipset_networks(networks)]
    for proto in ("udp", "tcp"):
        name = f"callpath-{proto}-ports"
        lines.append(f"create {name} bitmap:port range 1-65535 -exist")
        spans = _merge_spans(s for g in groups if g.proto == proto for s in g.ports)
        lines += [f"add {name} {span} -exist" for span in spans]
    return "\n".join(lines) + "\n"


_RENDERERS = {
    ExportFormat.SING_BOX: _render_sing_box,
    ExportFormat.XRAY: _render_xray,
    ExportFormat.CLASH: _render_clash,
    ExportFormat.NFTABLES: _render_nftables,
    ExportFormat.IPSET: _render_ipset,
}
