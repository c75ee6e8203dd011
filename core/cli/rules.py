"""``callpath rules``: routing rules for blocked messengers, for sing-box, Xray/V2Ray,
Clash/mihomo or nftables (``core/messengers/routing_export``; docs/routing-rules.md).

What is blocked comes from ``--messenger ID[:calls|:messages]`` (repeatable) and/or a report's
``messengers`` section (``--from-report``: a messenger's calls or messages that are ``blocked`` or
``intermittent`` on the direct path). ``add_export_arguments`` and ``export_for`` are the same
options and code for any command that wants to write rules after a check.

Exit codes: 0 rules written, 2 bad input.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from callpath.core.cli.execution import fail
from callpath.core.i18n import _
from callpath.core.messengers.catalog import CatalogError, load_catalog
from callpath.core.messengers.judge import AROUND_VPN, DIRECT
from callpath.core.messengers.routing_export import (
    CALLS,
    DEFAULT_OUTBOUND,
    KINDS,
    MESSAGES,
    ExportError,
    ExportFormat,
    export_rules,
)

EXIT_WRITTEN = 0
BLOCKED_STATES = ("blocked", "intermittent")
KNOWN_STATES = ("works", "tcp_only", "blocked", "intermittent", "unknown")
MAX_REPORT_BYTES = 64 * 1024 * 1024


class ReportInputError(ValueError):
    """A report file that cannot be read for the export; ``str()`` is ``FILE[:LINE]: what``."""


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rules = commands.add_parser(
        "rules",
        help=_("write routing rules that send blocked messengers through your proxy or VPN"),
    )
    add_export_arguments(rules)
    rules.add_argument(
        "--messenger",
        action="append",
        metavar="ID[:calls|:messages]",
        help=_(
            "a blocked messenger from the catalogue, e.g. telegram or whatsapp:calls "
            "(repeatable; without ':' both calls and messages)"
        ),
    )
    rules.add_argument(
        "--from-report",
        type=Path,
        metavar="REPORT.json",
        help=_("take the blocked messengers from a report written by callpath check --json"),
    )


def add_export_arguments(
    parser: argparse.ArgumentParser,
    *,
    format_option: str = "--format",
    required: bool = True,
    out_option: str = "--out",
    with_catalog: bool = True,
) -> None:
    """The export's options, read back by ``export_for``. Another command adds them under its
    own names where they would clash, e.g. ``callpath check``: ``format_option="--export-rules",
    required=False, out_option="--rules-out"``, then ``if args.export_format:
    export_for(blocked, args)``."""
    parser.add_argument(
        format_option,
        dest="export_format",
        required=required,
        choices=[f.value for f in ExportFormat],
        help=_("rules format"),
    )
    parser.add_argument(
        "--outbound",
        default=DEFAULT_OUTBOUND,
        metavar="TAG",
        help=_("the outbound (tag, proxy or group name) the rules send traffic to"),
    )
    parser.add_argument(
        "--outbound-has-udp",
        choices=["yes", "no"],
        help=_("whether that outbound carries UDP (calls need it); warns when it does not"),
    )
    parser.add_argument(
        out_option,
        dest="rules_out",
        type=Path,
        metavar="FILE",
        help=_("write the rules here (default: print them)"),
    )
    if with_catalog:
        parser.add_argument(
            "--catalog",
            type=Path,
            metavar="DIR",
            help=_("messenger catalogue folder (default: the bundled one)"),
        )


def parse_messenger_option(text: str) -> tuple[str, set[str]]:
    """``telegram`` → both kinds; ``telegram:calls`` or ``telegram:calls,messages``."""
    name, _colon, kinds_text = text.partition(":")
    kinds = {k.strip() for k in kinds_text.split(",") if k.strip()} if _colon else set(KINDS)
    bad = sorted(kinds - set(KINDS))
    if not name.strip() or bad or not kinds:
        raise ValueError(
            _("--messenger {value!r}: write ID, ID:calls or ID:messages").format(value=text)
        )
    return name.strip(), kinds


def blocked_from_report(path: Path) -> dict[str, set[str]]:
    """Messenger id → what is blocked on the direct path, from a report file."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ReportInputError(f"{path}: {error.strerror or error}") from None
    if len(data) > MAX_REPORT_BYTES:
        raise ReportInputError(f"{path}: " + _("the file is too large"))
    try:
        document = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ReportInputError(f"{path}: " + _("the file is not UTF-8 text")) from None
    except json.JSONDecodeError as error:
        raise ReportInputError(
            f"{path}:{error.lineno}: " + _("not JSON: {what}").format(what=error.msg)
        ) from None
    if not isinstance(document, dict) or "messengers" not in document:
        raise ReportInputError(
            f"{path}: " + _("no 'messengers' section: write the report with callpath check --json")
        )
    return blocked_from_messengers(document["messengers"], str(path))


def blocked_from_messengers(items: object, where: str = "messengers") -> dict[str, set[str]]:
    """Messenger id → what is blocked, from a report's ``messengers`` list: ``calls`` or
    ``messages`` that are ``blocked`` or ``intermittent`` on the ``direct`` path (an entry
    without ``through`` counts as direct; results through a proxy say what it fixes). Behind
    a VPN measured from both sides, the network's own answer is the side around the VPN
    (``around-vpn``): what the rules must send through the VPN."""
    if not isinstance(items, list):
        raise ReportInputError(f"{where}: " + _("'messengers' must be a list"))
    network_side = (
        AROUND_VPN
        if any(isinstance(i, dict) and i.get("through") == AROUND_VPN for i in items)
        else DIRECT
    )
    blocked: dict[str, set[str]] = {}
    for index, item in enumerate(items):
        place = f"{where}: messengers[{index}]"
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            raise ReportInputError(place + ": " + _("each messenger needs an 'id'"))
        if item.get("through", DIRECT) != network_side:
            continue
        for kind in (MESSAGES, CALLS):
            state = item.get(kind)
            if state not in KNOWN_STATES:
                raise ReportInputError(
                    place
                    + ": "
                    + _("{kind} must be one of {states}, not {value!r}").format(
                        kind=kind, states=", ".join(KNOWN_STATES), value=state
                    )
                )
            if state in BLOCKED_STATES:
                blocked.setdefault(item["id"], set()).add(kind)
    return blocked


def _has_udp(value: str | None) -> bool | None:
    return None if value is None else value == "yes"


def export_for(blocked: Mapping[str, set[str]], args: argparse.Namespace) -> int:
    """Write the rules for ``blocked`` as ``args`` ask (format, outbound, file); exit status."""
    try:
        entries = load_catalog(getattr(args, "catalog", None))
        result = export_rules(
            entries,
            blocked,
            format=ExportFormat(args.export_format),
            outbound=args.outbound,
            outbound_has_udp=_has_udp(args.outbound_has_udp),
            today=dt.datetime.now(dt.UTC).date(),
        )
    except (CatalogError, ExportError) as error:
        return fail(str(error))
    for warning in result.warnings:
        print(_("callpath: warning: {text}").format(text=warning), file=sys.stderr)
    if args.rules_out is None:
        sys.stdout.write(result.text)
        return EXIT_WRITTEN
    try:
        _write_atomically(args.rules_out, result.text)
    except OSError as error:
        return fail(f"{args.rules_out}: {error.strerror or error}")
    print(
        _("wrote {count} rule groups ({format}) to {file}; {age}").format(
            count=len(result.groups), format=result.format, file=args.rules_out, age=result.age_line
        ),
        file=sys.stderr,
    )
    return EXIT_WRITTEN


def _write_atomically(path: Path, text: str) -> None:
    folder = path.parent if str(path.parent) else Path(".")
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=folder)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def run(args: argparse.Namespace) -> int:
    blocked: dict[str, set[str]] = {}
    try:
        for text in args.messenger or ():
            name, kinds = parse_messenger_option(text)
            blocked.setdefault(name, set()).update(kinds)
        if args.from_report is not None:
            for name, kinds in blocked_from_report(args.from_report).items():
                blocked.setdefault(name, set()).update(kinds)
    except (ValueError, ReportInputError) as error:
        return fail(str(error))
    if not blocked and args.from_report is None:
        return fail(_("name the blocked messengers with --messenger ID or --from-report FILE"))
    return export_for(blocked, args)
