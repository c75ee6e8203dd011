"""``callpath lab``: run the built-in lab's censor scenarios with the same engine as ``run``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

from rich.console import Console
from rich.table import Table

from core.engine import Engine
from core.events import EventSink
from core.i18n import _
from core.lab.network import LabNetwork
from core.lab.scenario import Scenario, ScenarioError, find_scenario, list_presets
from core.results import RunResult
from core.verdict import path_label

EXIT_AS_EXPECTED = 0
EXIT_UNEXPECTED = 1
EXIT_BAD_INPUT = 2
DEFAULT_SCENARIO = "russia-2025"


@dataclass(frozen=True)
class Comparison:
    """The verdict beside what the scenario expects."""

    voice_expected: frozenset[str]
    voice_found: frozenset[str]
    video_expected: frozenset[str]
    video_found: frozenset[str]

    @property
    def agrees(self) -> bool:
        return self.voice_expected == self.voice_found and self.video_expected == self.video_found


def compare(scenario: Scenario, run: RunResult) -> Comparison:
    return Comparison(
        voice_expected=scenario.expect.voice,
        voice_found=frozenset(run.verdict.voice_restored_by),
        video_expected=scenario.expect.video,
        video_found=frozenset(run.verdict.video_restored_by),
    )


async def run_scenario(
    scenario: Scenario, sink: EventSink, on_ready: Callable[[LabNetwork], None] | None = None
) -> RunResult:
    """Start the lab for ``scenario``, run every lab path through it, stop the lab."""
    async with LabNetwork(scenario) as lab:
        if on_ready is not None:
            on_ready(lab)
        engine = Engine(lab.plans(), lab.target(), sink, lab.options())
        return await engine.run()


def add_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    add_output_options: Callable[[argparse.ArgumentParser], None],
) -> None:
    lab = commands.add_parser(
        "lab", help=_("run a built-in censorship scenario on this machine (offline)")
    )
    lab.add_argument("--list", action="store_true", help=_("list the scenario presets"))
    lab.add_argument(
        "--scenario",
        default=DEFAULT_SCENARIO,
        metavar="NAME|FILE",
        help=_("preset name or scenario file (default: {name})").format(name=DEFAULT_SCENARIO),
    )
    add_output_options(lab)


def run(args: argparse.Namespace) -> int:
    from core.cli import execute, fail

    if args.list:
        try:
            presets = list_presets()
        except ScenarioError as error:
            return fail(str(error))
        print_presets(presets)
        return EXIT_AS_EXPECTED
    try:
        scenario = find_scenario(args.scenario)
    except ScenarioError as error:
        return fail(str(error))
    if not args.jsonl:
        console = Console(highlight=False)
        console.print(f"[bold]{scenario.text('title')}[/bold]")
        console.print(scenario.text("explanation"))
        console.print()
    holder: dict[str, RunResult] = {}

    class _LabEngine:
        def __init__(self, sink: EventSink) -> None:
            self._sink = sink

        async def run(self) -> RunResult:
            result = await run_scenario(scenario, self._sink)
            holder["run"] = result
            return result

    status = execute(_LabEngine, args)
    if status == EXIT_BAD_INPUT or "run" not in holder:
        return status
    comparison = compare(scenario, holder["run"])
    if not args.jsonl:
        print_comparison(comparison)
    return EXIT_AS_EXPECTED if comparison.agrees else EXIT_UNEXPECTED


def print_presets(presets: list[Scenario], stream: IO[str] | None = None) -> None:
    console = Console(file=stream or sys.stdout, highlight=False)
    table = Table(title=_("Lab scenarios"))
    table.add_column(_("Name"))
    table.add_column(_("What it shows"))
    table.add_column(_("Restores voice"))
    for scenario in presets:
        restores = ", ".join(path_label(p) for p in sorted(scenario.expect.voice)) or _("nothing")
        table.add_row(scenario.id, scenario.text("title"), restores)
    console.print(table)


def _names(paths: frozenset[str]) -> str:
    return ", ".join(path_label(p) for p in sorted(paths)) or _("none")


def print_comparison(comparison: Comparison, stream: IO[str] | None = None) -> None:
    console = Console(file=stream or sys.stdout, highlight=False)
    table = Table(title=_("Verdict against the scenario's expected outcome"))
    table.add_column("")
    table.add_column(_("Expected"))
    table.add_column(_("Measured"))
    table.add_column("")
    for label, expected, found in (
        (_("Voice restored by"), comparison.voice_expected, comparison.voice_found),
        (_("Video restored by"), comparison.video_expected, comparison.video_found),
    ):
        mark = "[green]✓[/green]" if expected == found else "[red]✗[/red]"
        table.add_row(label, _names(expected), _names(found), mark)
    console.print(table)
    if comparison.agrees:
        console.print(_("The measured verdict matches the scenario."))
    else:
        console.print(_("The measured verdict differs from what the scenario expects."))
