"""``callpath check``: can WhatsApp, Telegram & co. get messages and calls through this network,
directly and through the proxies already running here, and what fixes it? No profile, no secrets.

Exit codes: 0 every messenger's calls work directly, 1 some are blocked or intermittent (or the
network is offline or in allowlist mode), 2 bad input.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from callpath.core.checkup.engine import CheckConfig, run_check
from callpath.core.checkup.results import CheckProgress, CheckResult
from callpath.core.checkup.texts import result_sides_lines, route_name
from callpath.core.cli.rules import add_export_arguments, blocked_from_messengers, export_for
from callpath.core.discovery.proxies import FoundProxy
from callpath.core.i18n import _
from callpath.core.messengers.catalog import CatalogError, load_catalog
from callpath.core.messengers.judge import Judgement, Reachability
from callpath.core.messengers.recipes import load_recipes
from callpath.core.messengers.references import load_references
from callpath.core.model.proxy_url import parse_proxy_url
from callpath.core.present.route import around_line, around_refused_text, vpn_sentence

EXIT_CALLS_WORK = 0
EXIT_CALLS_BLOCKED = 1
EXIT_BAD_INPUT = 2
SOURCE_OPTION = "option"

_MARKS = {
    Reachability.WORKS: "[green]●[/green]",
    Reachability.TCP_ONLY: "[yellow]●[/yellow]",
    Reachability.INTERMITTENT: "[yellow]◐[/yellow]",
    Reachability.BLOCKED: "[red]●[/red]",
    Reachability.UNKNOWN: "[dim]○[/dim]",
}


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    check = commands.add_parser(
        "check",
        help=_(
            "test this network for WhatsApp, Telegram and other messengers: messages and "
            "calls, directly and through your proxies (no set-up)"
        ),
    )
    check.add_argument("--json", type=Path, metavar="OUT", help=_("write the JSON report here"))
    check.add_argument(
        "--proxy",
        action="append",
        metavar="URL",
        help=_(
            "also check through this proxy (socks5://HOST:PORT or http://HOST:PORT; repeatable)"
        ),
    )
    check.add_argument(
        "--no-discover",
        action="store_true",
        help=_("do not look for proxies running on this computer"),
    )
    check.add_argument(
        "--country",
        default="ru",
        metavar="CODE",
        help=_("country whose domestic services tell allowlist mode (default: ru)"),
    )
    check.add_argument(
        "--hold",
        metavar="DURATION",
        help=_("not for callpath check, which places no test calls (use callpath run or lab)"),
    )
    check.add_argument(
        "--lab",
        metavar="NAME|FILE",
        help=_("run against a built-in lab scenario instead of the real network (offline)"),
    )
    # Routing rules for the messengers found blocked (docs/routing-rules.md).
    add_export_arguments(
        check,
        format_option="--export-rules",
        required=False,
        out_option="--rules-out",
        with_catalog=False,
    )


def _extra_proxies(urls: Sequence[str] | None) -> list[FoundProxy]:
    found = []
    for text in urls or ():
        url = parse_proxy_url(text)  # ValueError: told as bad input
        found.append(
            FoundProxy(
                url=url,
                kind=url.kind,
                source=SOURCE_OPTION,
                supports_udp=None,
                auth_required=url.username is not None,
            )
        )
    return found


def run(args: argparse.Namespace) -> int:
    from callpath.core.cli.execution import fail

    if args.hold is not None:
        return fail(
            _(
                "--hold keeps test calls going, and callpath check places none: use "
                "callpath run --hold or callpath lab --hold"
            )
        )
    try:
        extra = _extra_proxies(args.proxy)
    except ValueError as error:
        return fail(str(error))
    if args.json is not None and not args.json.parent.is_dir():
        return fail(_("{path}: the folder does not exist").format(path=args.json))
    console = Console(highlight=False)

    def progress(event: CheckProgress) -> None:
        if event.phase == "messenger":
            console.print(f"[dim]{event.done}/{event.total} {escape(event.text)}[/dim]")
        else:
            console.print(escape(event.text))

    config = CheckConfig(country=args.country)
    try:
        if args.lab:
            from callpath.core.lab.check_world import run_lab_check
            from callpath.core.lab.scenario import ScenarioError, find_scenario

            try:
                scenario = find_scenario(args.lab)
            except ScenarioError as error:
                return fail(str(error))
            console.print(_("Lab: {title}").format(title=scenario.text("title")))
            result = asyncio.run(
                run_lab_check(scenario, progress, extra_proxies=extra, config=config)
            )
        else:
            from callpath.core.checkup.world import RealWorld

            references = load_references()
            world = RealWorld(references.doh_url, tuple(extra), discover=not args.no_discover)
            result = asyncio.run(
                run_check(
                    world,
                    load_catalog(),
                    references,
                    load_recipes(),
                    config=config,
                    progress=progress,
                )
            )
    except CatalogError as error:
        return fail(str(error))
    except KeyboardInterrupt:
        return 130
    print_result(result, console.file)
    for line in route_texts(result):
        console.print(escape(line))
    if args.json is not None:
        from callpath.core.checkup.document import write_check_report

        try:
            write_check_report(args.json, result)
        except OSError as error:
            return fail(f"{args.json}: {error.strerror or error}")
        console.print(_("Report written to {path}").format(path=args.json))
    if args.export_format is not None:
        from callpath.core.checkup.document import check_to_dict

        blocked = blocked_from_messengers(check_to_dict(result)["messengers"])
        status = export_for(blocked, args)
        if status == EXIT_BAD_INPUT:
            return status
    return EXIT_CALLS_BLOCKED if result.calls_blocked else EXIT_CALLS_WORK


def route_texts(result: CheckResult) -> list[str]:
    """What the check went through: the VPN, then both of its sides per messenger, or why
    only the VPN side was measured."""
    lines = [line for line in (vpn_sentence(result.route),) if line is not None]
    if result.around is not None:
        lines.append(around_line(result.around.interface))
        lines += result_sides_lines(result)
    else:
        refused = around_refused_text(result.route)
        if refused is not None:
            lines.append(refused)
    return lines


def _cell(judgement: Judgement) -> str:
    from callpath.core.checkup.texts import reachability_text

    return f"{_MARKS[judgement.value]} {escape(reachability_text(judgement))}"


def print_result(result: CheckResult, stream: IO[str] | None = None) -> None:
    console = Console(file=stream or sys.stdout, highlight=False)
    table = Table(title=_("Messengers on this network"))
    table.add_column(_("Messenger"))
    table.add_column(_("Route"))
    table.add_column(_("Messages"))
    table.add_column(_("Calls"))
    for outcome in result.messengers:
        table.add_row(
            escape(outcome.name),
            escape(route_name(outcome.through, result.proxies, result.route)),
            _cell(outcome.messages),
            _cell(outcome.calls),
        )
    console.print(table)
    tampered = [lookup for lookup in result.dns if lookup.tampered]
    for lookup in tampered:
        console.print(
            escape(
                _(
                    "DNS: your resolver says {failure} for {name}, while DNS over HTTPS answers "
                    "(dns_tampering)."
                ).format(failure=lookup.failure, name=lookup.name)
            )
        )
    fixes = [(o.name, fix) for o in result.direct() for fix in o.fixes]
    if fixes:
        console.print()
        console.print(f"[bold]{_('What can fix it')}[/bold]")
        seen: set[str] = set()
        for name, fix in fixes:
            text = fix.text()
            if text in seen:
                continue
            seen.add(text)
            console.print(
                escape(
                    _("• {messenger}: {text} (source: {source}, {date})").format(
                        messenger=name, text=text, source=fix.recipe.source, date=fix.recipe.date
                    )
                )
            )
