"""Running an engine under the console: live display, report file, exit codes.

Exit codes: 0 some tested path restores voice, 1 none does, 2 bad input (profile, options,
missing secret), 130 interrupted before any result.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from rich.console import Console

from callpath.core.i18n import _
from callpath.core.model.results import RunResult
from callpath.core.run.source import RunSource, run_source

EXIT_VOICE_RESTORED = 0
EXIT_NOT_RESTORED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


def fail(message: str) -> int:
    print(f"callpath: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


def exit_code(run: RunResult) -> int:
    """``callpath run``'s exit code for a finished run."""
    if run.cancelled:
        return EXIT_INTERRUPTED
    return EXIT_VOICE_RESTORED if run.verdict.voice_restored_by else EXIT_NOT_RESTORED


def execute(
    source: RunSource,
    args: argparse.Namespace,
    judge: Callable[[RunResult], int] = exit_code,
) -> int:
    """Run ``source`` with the console front end; write the report; return ``judge``'s exit
    code for the run (or EXIT_BAD_INPUT when the report cannot be written)."""
    from callpath.core.cli.console import ConsoleProgress, print_summary
    from callpath.core.cli.hold_console import hold_config, print_holds
    from callpath.core.model.events import Event, RunFinished
    from callpath.core.report.document import write_report

    mode = "jsonl" if args.jsonl else ("live" if sys.stdout.isatty() else "plain")
    progress = ConsoleProgress(mode)
    hold = hold_config(args)
    verdict_shown = False

    def sink(event: Event) -> None:
        # With a hold, the verdict is shown as soon as it is known, before the hold begins.
        nonlocal verdict_shown
        progress(event)
        if hold is not None and mode != "jsonl" and isinstance(event, RunFinished):
            progress.close()
            print_summary(event.result)
            verdict_shown = True

    try:
        run = asyncio.run(_run_until_interrupted(run_source(source, sink, hold)))
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
        if not verdict_shown:
            print_summary(run)
        print_holds(run, Console(highlight=False))
        if args.json is not None:
            print(_("Report written to {path}").format(path=args.json))
    return judge(run)


async def _run_until_interrupted(coroutine: Coroutine[Any, Any, RunResult]) -> RunResult:
    """Run; Ctrl-C cancels it, and the engine returns the partial result."""
    task = asyncio.ensure_future(coroutine)
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGINT, task.cancel)
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    except (NotImplementedError, RuntimeError):
        pass  # Windows: KeyboardInterrupt still stops the run, without a partial report
    return await task
