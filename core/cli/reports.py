"""``callpath reports list|show CODE|export``: reports sent from the phone test page.

They live in the echo server's data directory (``--data-dir``, default CallPath's data folder),
in the SQLite inbox of :mod:`callpath.core.servers.report_inbox`. ``export`` writes each as a
report file that ``callpath``'s support view opens.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from callpath.core.cli.execution import fail
from callpath.core.i18n import _


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    reports = commands.add_parser(
        "reports", help=_("reports users sent from the echo server's phone test page")
    )
    reports.add_argument(
        "--data-dir",
        type=Path,
        metavar="DIR",
        help=_("the echo server's data folder (default: CallPath's data folder)"),
    )
    actions = reports.add_subparsers(dest="reports_action", required=True)
    actions.add_parser("list", help=_("list received reports, newest first"))
    show = actions.add_parser("show", help=_("print one report as JSON"))
    show.add_argument("code", help=_("the code the user read out, e.g. K7F-3QX"))
    export = actions.add_parser("export", help=_("write report files the app's support view opens"))
    export.add_argument("codes", nargs="*", metavar="CODE", help=_("only these (default: all)"))
    export.add_argument(
        "--out", type=Path, default=Path("."), metavar="DIR", help=_("folder to write them to")
    )


def export_name(code: str) -> str:
    return f"callpath-report-{code}.json"


def run(args: argparse.Namespace) -> int:
    from callpath.core.report.document import write_report_dict
    from callpath.core.servers.report_inbox import ReportInbox
    from callpath.core.user_data import data_dir

    folder = args.data_dir or data_dir()
    inbox = ReportInbox(folder)
    if args.reports_action == "list":
        stored = inbox.entries()
        if not stored:
            print(_("No reports in {path}").format(path=inbox.path))
        for report in stored:
            verdict = report.report.get("verdict", {})
            headline = verdict.get("headline", "") if isinstance(verdict, dict) else ""
            print(f"{report.code}  {report.received_at}  {headline}")
        return 0
    if args.reports_action == "show":
        found = inbox.get(args.code)
        if found is None:
            return fail(_("no report with the code {code}").format(code=args.code))
        print(json.dumps(found.report, indent=2, ensure_ascii=False))
        return 0
    wanted = [inbox.get(code) for code in args.codes] if args.codes else inbox.entries()
    for code, found in zip(args.codes or [None] * len(wanted), wanted, strict=True):
        if found is None:
            return fail(_("no report with the code {code}").format(code=code))
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        for found in wanted:
            assert found is not None
            target = args.out / export_name(found.code)
            write_report_dict(target, found.report)
            print(target)
    except OSError as error:
        return fail(_("cannot write to {path}: {error}").format(path=args.out, error=error))
    return 0
