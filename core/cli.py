"""``callpath`` command line: one front end over the same core and report as the GUI.

Exit codes: 0 some tested path restores voice, 1 none does, 2 bad input (profile, options,
missing secret), 130 interrupted before any result.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, Protocol

import core
from core import secret_command
from core.events import EventSink
from core.i18n import LANGUAGES, _, set_language, system_language
from core.results import RunResult
from core.self_test import SelfTestAction

EXIT_VOICE_RESTORED = 0
EXIT_NOT_RESTORED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="callpath",
        description=_("Find the network path that restores voice and video calls."),
    )
    parser.add_argument("--version", action="version", version=f"callpath {core.__version__}")
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

    secret_command.add_parser(commands)
    from core.proxy_command import add_parser as add_proxies_parser

    add_proxies_parser(commands)
    commands.add_parser(
        "gui", help=_("open the desktop app (extra arguments go to callpath-gui)"), add_help=False
    )

    from core.lab_command import add_parser as add_lab_parser

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


def _requested_language(argv: Sequence[str]) -> str | None:
    """``--lang`` read before the parser exists, so that its help texts are translated too."""
    for index, word in enumerate(argv):
        if word.startswith("--lang="):
            return word.split("=", 1)[1]
        if word == "--lang" and index + 1 < len(argv):
            return argv[index + 1]
    return None


def main(argv: Sequence[str] | None = None) -> int:
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
        return _echo_server(args)
    if args.command == "gui":
        return _gui(args)
    if args.command == "proxies":
        from core.proxy_command import run as run_proxies

        return run_proxies(args)
    if args.command == "lab":
        from core.lab_command import run as run_lab

        return run_lab(args)
    if args.command == "secret":
        return int(secret_command.run(args))
    parser.error(f"unknown command {args.command}")
    return EXIT_BAD_INPUT


def _gui(args: argparse.Namespace) -> int:
    """Start the desktop app; core itself never imports Qt, so this is a late, guarded import."""
    try:
        gui_app = importlib.import_module("gui.app")
    except ImportError as error:
        return fail(
            _("the desktop app needs PySide6: pip install 'callpath[gui]' ({error})").format(
                error=error
            )
        )
    arguments = list(args.gui_arguments)
    if args.lang and "--lang" not in arguments:
        arguments = ["--lang", args.lang, *arguments]
    return int(gui_app.main(arguments))


def fail(message: str) -> int:
    print(f"callpath: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


def _run(args: argparse.Namespace) -> int:
    from core.plan import plan_run
    from core.profile import ProfileError, load_profile

    try:
        profile = load_profile(args.profile)
        if args.discover_proxies:
            from core.proxy.discovery import discover_local_proxies
            from core.proxy_command import print_found, with_discovered_proxies

            found = asyncio.run(discover_local_proxies())
            if not args.jsonl:
                print_found(found)
            profile = with_discovered_proxies(profile, found)
        only = [p.strip() for p in args.paths.split(",") if p.strip()] if args.paths else None
        plan = plan_run(profile, only_paths=only)
    except ProfileError as error:
        return fail(str(error))
    from core.investigation import run_profile

    class _Investigated:
        def __init__(self, sink: EventSink) -> None:
            self._sink = sink

        async def run(self) -> RunResult:
            return await run_profile(plan, self._sink)

    return execute(_Investigated, args)


class Runnable(Protocol):
    async def run(self) -> RunResult: ...


def execute(make_engine: Callable[[EventSink], Runnable], args: argparse.Namespace) -> int:
    """Run an engine with the console front end; write the report; return the exit code."""
    from core.console import ConsoleProgress, print_summary
    from core.report import write_report

    mode = "jsonl" if args.jsonl else ("live" if sys.stdout.isatty() else "plain")
    progress = ConsoleProgress(mode)
    engine = make_engine(progress)
    try:
        run = asyncio.run(_run_until_interrupted(engine.run()))
    finally:
        progress.close()
    if args.json is not None:
        try:
            write_report(args.json, run, redact=not args.no_redact)
        except OSError as error:
            if mode != "jsonl":
                print_summary(run)
            message = _("cannot write the report to {path}: {error}")
            return fail(message.format(path=args.json, error=error.strerror or error))
    if mode != "jsonl":
        print_summary(run)
        if args.json is not None:
            print(_("Report written to {path}").format(path=args.json))
    if run.cancelled:
        return EXIT_INTERRUPTED
    return EXIT_VOICE_RESTORED if run.verdict.voice_restored_by else EXIT_NOT_RESTORED


async def _run_until_interrupted(coroutine: Coroutine[Any, Any, RunResult]) -> RunResult:
    """Run the engine; Ctrl-C cancels it, and the engine returns the partial result."""
    task = asyncio.ensure_future(coroutine)
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGINT, task.cancel)
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    except (NotImplementedError, RuntimeError):
        pass  # Windows: KeyboardInterrupt still stops the run, without a partial report
    return await task


def _echo_server(args: argparse.Namespace) -> int:
    from core.config import EchoServerLimits
    from core.echo_server import EchoServer, EchoServerConfig, server_ssl_context

    host, _sep, port_text = args.listen.rpartition(":")
    if not host or not port_text.isdigit():
        return fail(_("--listen must be HOST:PORT, for example 0.0.0.0:8443"))
    if (args.cert is None) != (args.key is None):
        return fail(_("--cert and --key go together"))
    token = None
    if args.token_env:
        token = os.environ.get(args.token_env)
        if not token:
            return fail(_("the environment variable {name} is not set").format(name=args.token_env))
    context = None
    if args.cert is not None:
        try:
            context = server_ssl_context(str(args.cert), str(args.key))
        except (OSError, ValueError) as error:
            return fail(_("cannot load the certificate or key: {error}").format(error=error))
    if args.max_calls < 1 or args.max_call_seconds <= 0:
        return fail(_("--max-calls and --max-call-seconds must be positive"))
    config = EchoServerConfig(
        host=host.strip("[]"),
        port=int(port_text),
        token=token,
        ssl_context=context,
        limits=EchoServerLimits(max_calls=args.max_calls, max_call_s=args.max_call_seconds),
        ice_addresses=tuple(args.ice_address) if args.ice_address else None,
        control_udp_port=args.control_udp_port,
        control_tcp_port=args.control_tcp_port,
        control_quic_port=args.control_quic_port,
        masque_port=args.masque_port,
        masque_certificate=(str(args.cert), str(args.key)) if args.cert is not None else None,
        masque_allowed_targets=tuple(args.masque_allow or ()),
    )
    if args.masque_port is not None and args.cert is None:
        return fail(_("--masque-port needs --cert and --key (HTTP/3 always uses TLS)"))
    ports = (args.control_udp_port, args.control_tcp_port, args.control_quic_port)
    if any(port is not None and not 0 <= port <= 65535 for port in ports):
        return fail(_("control ports must be between 0 and 65535"))

    async def serve() -> None:
        server = EchoServer(config)
        await server.start()
        print(_("Echo server listening on {url}").format(url=server.url), flush=True)
        if server.masque is not None:
            masque_host, masque_port = server.masque.address
            print(
                _("MASQUE endpoint on UDP {host}:{port}").format(
                    host=masque_host, port=masque_port
                ),
                flush=True,
            )
        if server.control is not None:
            control = server.control
            print(
                _("Control server: UDP {udp}, TCP bulk {tcp}, QUIC {quic}").format(
                    udp=control.udp_address, tcp=control.tcp_bulk_address, quic=control.quic_address
                ),
                flush=True,
            )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, stop.set)
        try:
            await stop.wait()
        finally:
            await server.stop()

    try:
        asyncio.run(serve())
    except OSError as error:
        return fail(_("cannot listen on {listen}: {error}").format(listen=args.listen, error=error))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
