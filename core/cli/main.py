"""``callpath`` command line: one front end over the same core and report as the GUI.

Exit codes: 0 some tested path restores voice, 1 none does, 2 bad input (profile, options,
missing secret), 130 interrupted before any result.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import callpath.core
from callpath.core.cli import secret as secret_command
from callpath.core.cli.execution import EXIT_BAD_INPUT, execute, fail
from callpath.core.cli.hold_console import add_hold_options
from callpath.core.cli.self_test import SelfTestAction
from callpath.core.i18n import LANGUAGES, _, set_language, system_language


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="callpath",
        description=_("Find the network path that restores voice and video calls."),
    )
    parser.add_argument(
        "--version", action="version", version=f"callpath {callpath.core.__version__}"
    )
    parser.add_argument(
        "--self-test",
        action=SelfTestAction,
        help=_("check this installation (libraries, data files, one lab call) and exit"),
    )
    parser.add_argument("--lang", choices=LANGUAGES, help=_("language of the output"))
    parser.add_argument("-v", "--verbose", action="store_true", help=_("log library details"))
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help=_("test the paths of a profile"))
    run.add_argument("--profile", required=True, type=Path, help=_("profile file (YAML)"))
    run.add_argument("--paths", help=_("comma-separated subset of the profile's paths"))
    run.add_argument(
        "--discover-proxies",
        action="store_true",
        help=_("also test through the proxies found running on this computer"),
    )
    _add_output_options(run)

    echo = commands.add_parser("echo-server", help=_("answer test calls and echo them back"))
    echo.add_argument("--listen", default="0.0.0.0:8443", help=_("HOST:PORT to listen on"))
    echo.add_argument("--cert", type=Path, help=_("TLS certificate (PEM) for HTTPS"))
    echo.add_argument("--key", type=Path, help=_("TLS private key (PEM) for HTTPS"))
    echo.add_argument(
        "--token-env",
        metavar="NAME",
        help=_("environment variable holding the bearer token callers must present"),
    )
    echo.add_argument("--max-calls", type=int, default=20, help=_("concurrent calls at most"))
    echo.add_argument(
        "--allow-private-candidates",
        action="store_true",
        help=_(
            "accept offers whose ICE candidates are in loopback, private or reserved ranges "
            "(a lab or a private network; refused by default)"
        ),
    )
    echo.add_argument(
        "--max-call-seconds", type=float, default=300.0, help=_("longest call in seconds")
    )
    echo.add_argument(
        "--ice-address",
        action="append",
        help=_("address to offer ICE host candidates on (repeatable; default: all)"),
    )
    echo.add_argument(
        "--masque-port",
        type=int,
        metavar="PORT",
        help=_("also serve MASQUE (CONNECT-UDP over HTTP/3) on this UDP port; needs --cert/--key"),
    )
    echo.add_argument(
        "--masque-allow",
        action="append",
        metavar="HOST:PORTS",
        help=_("a target the MASQUE endpoint may reach (default: the echo's own addresses)"),
    )
    for flag, what in (
        ("--control-udp-port", _("control server: UDP echo and STUN port")),
        ("--control-tcp-port", _("control server: TCP bulk port")),
        ("--control-quic-port", _("control server: QUIC port")),
    ):
        echo.add_argument(
            flag, type=int, metavar="PORT", help=_("{what} (default: off)").format(what=what)
        )

    from callpath.core.cli.echo_server import add_web_arguments

    add_web_arguments(echo)
    from callpath.core.cli.reports import add_parser as add_reports_parser

    add_reports_parser(commands)
    secret_command.add_parser(commands)
    from callpath.core.cli.proxies import add_parser as add_proxies_parser

    add_proxies_parser(commands)
    commands.add_parser(
        "gui", help=_("open the desktop app (extra arguments go to callpath-gui)"), add_help=False
    )

    from callpath.core.cli.check import add_parser as add_check_parser

    add_check_parser(commands)
    from callpath.core.cli.lab import add_parser as add_lab_parser
    from callpath.core.cli.rules import add_parser as add_rules_parser

    add_rules_parser(commands)

    add_lab_parser(commands, _add_output_options)

    return parser


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", type=Path, metavar="OUT", help=_("write the JSON report here"))
    parser.add_argument(
        "--jsonl", action="store_true", help=_("print events as JSON lines instead of a display")
    )
    parser.add_argument(
        "--no-redact", action="store_true", help=_("keep IP addresses and host names in the report")
    )
    add_hold_options(parser)


def _requested_language(argv: Sequence[str]) -> str | None:
    """``--lang`` read before the parser exists, so that its help texts are translated too."""
    for index, word in enumerate(argv):
        if word.startswith("--lang="):
            return word.split("=", 1)[1]
        if word == "--lang" and index + 1 < len(argv):
            return argv[index + 1]
    return None


GuiOpener = Callable[[list[str]], int]


def main(argv: Sequence[str] | None = None, *, open_gui: GuiOpener | None = None) -> int:
    """The command line. ``open_gui`` starts the desktop app; the launcher above core passes
    it in (core never imports the front end), and without it ``callpath gui`` explains why."""
    words = list(sys.argv[1:] if argv is None else argv)
    set_language(_requested_language(words) or system_language())
    parser = _parser()
    args, extra = parser.parse_known_args(words)
    if extra and args.command != "gui":
        parser.error(_("unrecognized arguments: {arguments}").format(arguments=" ".join(extra)))
    args.gui_arguments = extra
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if args.command == "run":
        return _run(args)
    if args.command == "echo-server":
        from callpath.core.cli.echo_server import run as run_echo_server

        return run_echo_server(args)
    if args.command == "gui":
        return _gui(args, open_gui)
    if args.command == "proxies":
        from callpath.core.cli.proxies import run as run_proxies

        return run_proxies(args)
    if args.command == "check":
        from callpath.core.cli.check import run as run_check_command

        return run_check_command(args)
    if args.command == "lab":
        from callpath.core.cli.lab import run as run_lab

        return run_lab(args)
    if args.command == "rules":
        from callpath.core.cli.rules import run as run_rules

        return run_rules(args)
    if args.command == "secret":
        return int(secret_command.run(args))
    if args.command == "reports":
        from callpath.core.cli.reports import run as run_reports

        return run_reports(args)
    parser.error(f"unknown command {args.command}")
    return EXIT_BAD_INPUT


def _gui(args: argparse.Namespace, open_gui: GuiOpener | None) -> int:
    if open_gui is None:
        return fail(_("the desktop app is not part of this installation"))
    arguments = list(args.gui_arguments)
    if args.lang and "--lang" not in arguments:
        arguments = ["--lang", args.lang, *arguments]
    return open_gui(arguments)


def _run(args: argparse.Namespace) -> int:
    from callpath.core.profile.document import ProfileError, load_profile
    from callpath.core.run.plan import plan_run

    try:
        profile = load_profile(args.profile)
        if args.discover_proxies:
            from callpath.core.cli.proxies import print_found, with_discovered_proxies
            from callpath.core.discovery.proxies import discover_local_proxies

            found = asyncio.run(discover_local_proxies())
            if not args.jsonl:
                print_found(found)
            profile = with_discovered_proxies(profile, found)
        only = [p.strip() for p in args.paths.split(",") if p.strip()] if args.paths else None
        plan = plan_run(profile, only_paths=only)
    except ProfileError as error:
        return fail(str(error))
    from callpath.core.run.source import ProfileSource

    return execute(ProfileSource(plan, args.profile), args)


if __name__ == "__main__":
    sys.exit(main())
