"""``callpath echo-server``: answers test calls over HTTP(S) signalling and echoes every track."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING

from callpath.core.cli.execution import fail
from callpath.core.i18n import _

if TYPE_CHECKING:
    from callpath.core.servers.web_routes import WebOptions


def add_web_arguments(echo: argparse.ArgumentParser) -> None:
    """The phone test page's options (docs/phone-test.md)."""
    echo.add_argument(
        "--turn",
        action="append",
        metavar="URI",
        help=_(
            "a TURN relay the test page calls through, e.g. turns:turn.example.org:5349 "
            "(repeatable; needs --turn-secret-env)"
        ),
    )
    echo.add_argument(
        "--turn-secret-env",
        metavar="NAME",
        help=_("environment variable holding the TURN REST API secret (coturn static-auth-secret)"),
    )
    echo.add_argument(
        "--turn-ttl",
        type=int,
        default=3600,
        metavar="SECONDS",
        help=_("how long the TURN credentials given to a page stay valid"),
    )
    echo.add_argument(
        "--allow-origin",
        action="append",
        metavar="ORIGIN",
        help=_("another web origin that may call this server (repeatable)"),
    )
    echo.add_argument(
        "--data-dir",
        type=Path,
        metavar="DIR",
        help=_("where reports sent from the test page are kept (default: CallPath's data folder)"),
    )
    echo.add_argument(
        "--no-reports",
        action="store_true",
        help=_("do not take reports from the test page"),
    )


def _web_options(args: argparse.Namespace) -> WebOptions | str:
    """``WebOptions`` from the command line, or an error message (str)."""
    from callpath.core.report.document import redact_addresses, validate_report
    from callpath.core.servers.cors import normalise_origin
    from callpath.core.servers.turn_credentials import parse_turn_uri
    from callpath.core.servers.web_page import WebPageConfig
    from callpath.core.servers.web_routes import WebOptions
    from callpath.core.user_data import data_dir

    relays = []
    for uri in args.turn or ():
        try:
            relays.append(parse_turn_uri(uri))
        except ValueError as error:
            return _("--turn: {error}").format(error=error)
    secret = None
    if args.turn_secret_env:
        secret = os.environ.get(args.turn_secret_env)
        if not secret:
            return _("the environment variable {name} is not set").format(name=args.turn_secret_env)
    if relays and secret is None:
        return _("--turn needs --turn-secret-env (browsers get short-lived credentials only)")
    if args.turn_ttl < 60:
        return _("--turn-ttl must be at least 60 seconds")
    for origin in args.allow_origin or ():
        try:
            normalise_origin(origin)
        except ValueError as error:
            return _("--allow-origin: {error}").format(error=error)

    return WebOptions(
        page=WebPageConfig(
            turn_relays=tuple(relays),
            turn_secret=secret,
            turn_ttl_s=args.turn_ttl,
        ),
        data_dir=None if args.no_reports else (args.data_dir or data_dir()),
        report_validator=validate_report,  # ReportError is a ValueError
        report_redactor=redact_addresses,
    )


def run(args: argparse.Namespace) -> int:
    from callpath.core.model.config import EchoServerLimits
    from callpath.core.servers.echo_server import EchoServer, EchoServerConfig, server_ssl_context

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
    web = _web_options(args)
    if isinstance(web, str):
        return fail(web)
    config = EchoServerConfig(
        host=host.strip("[]"),
        port=int(port_text),
        token=token,
        ssl_context=context,
        limits=EchoServerLimits(
            max_calls=args.max_calls,
            max_call_s=args.max_call_seconds,
            allow_private_candidates=args.allow_private_candidates,
        ),
        ice_addresses=tuple(args.ice_address) if args.ice_address else None,
        control_udp_port=args.control_udp_port,
        control_tcp_port=args.control_tcp_port,
        control_quic_port=args.control_quic_port,
        masque_port=args.masque_port,
        masque_certificate=(str(args.cert), str(args.key)) if args.cert is not None else None,
        masque_allowed_targets=tuple(args.masque_allow or ()),
        web=web,
        cors_origins=tuple(args.allow_origin or ()),
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
        print(_("Phone test page: {url}/").format(url=server.url), flush=True)
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
