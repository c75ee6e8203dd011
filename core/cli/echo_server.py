"""``callpath echo-server``: answers test calls over HTTP(S) signalling and echoes every track."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal

from callpath.core.cli.execution import fail
from callpath.core.i18n import _


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
