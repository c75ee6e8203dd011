"""``callpath lab``: run the built-in lab's censor scenarios with the same engine as ``run``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import IO

from rich.console import Console
from rich.table import Table

from callpath.core.call.engine import Engine, EngineOptions
from callpath.core.i18n import _, current_language
from callpath.core.lab.comparison import Comparison
from callpath.core.lab.comparison import comparison as lab_comparison
from callpath.core.lab.network import LabNetwork
from callpath.core.lab.scenario import (
    LAB_PATHS,
    LAB_PROXY_PATHS,
    Scenario,
    ScenarioError,
    find_scenario,
    list_presets,
)
from callpath.core.model.events import EventSink
from callpath.core.model.results import RunResult
from callpath.core.paths.registry import path_label
from callpath.core.profile.document import Profile, ProfileError, load_profile
from callpath.core.run.investigation import run_investigated

EXIT_AS_EXPECTED = 0
EXIT_UNEXPECTED = 1
EXIT_BAD_INPUT = 2
DEFAULT_SCENARIO = "russia-2025"


async def run_scenario(
    scenario: Scenario,
    sink: EventSink,
    on_ready: Callable[[LabNetwork], None] | None = None,
    base_options: EngineOptions | None = None,
) -> RunResult:
    """Start the lab for ``scenario``, run every lab path and the lab's probes through it,
    diagnose, stop the lab. ``base_options`` carries a profile's timeouts and quality."""
    async with LabNetwork(scenario) as lab:
        if on_ready is not None:
            on_ready(lab)
        engine = Engine(lab.plans(), lab.target(), sink, lab.options(base_options))
        return await run_investigated(engine.run(), lab.probe_plan(), sink)


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
    lab.add_argument(
        "--backend",
        choices=("userspace", "kernel"),
        default="userspace",
        help=_(
            "where the censored network runs: userspace (this process, no root) or kernel "
            "(network namespaces, nftables, coturn and Janus; Linux, root)"
        ),
    )
    lab.add_argument(
        "--profile",
        type=Path,
        metavar="FILE",
        help=_(
            "run a profile's paths (in its order), timeouts and quality settings in the lab; "
            "the lab's own servers stand in for the ones it names"
        ),
    )
    add_output_options(lab)


def profile_in_lab(scenario: Scenario, file: Path) -> tuple[Scenario, EngineOptions, Profile] | str:
    """``scenario`` narrowed to ``file``'s paths, and engine options with its timeouts and
    quality; or the one-line error (file, line, what to fix)."""
    try:
        profile = load_profile(file)
    except ProfileError as error:
        return str(error)
    runnable = (*LAB_PATHS, *LAB_PROXY_PATHS)
    foreign = [path_id for path_id in profile.paths if path_id not in runnable]
    if foreign:
        return _("{file}: the lab has no server for path {path}; it runs {paths}").format(
            file=file, path=foreign[0], paths=", ".join(runnable)
        )
    options = EngineOptions(timeouts=profile.timeouts, quality=profile.quality)
    return replace(scenario, paths=tuple(profile.paths)), options, profile


def run(args: argparse.Namespace) -> int:
    from callpath.core.cli.execution import execute, fail

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
    options: EngineOptions | None = None
    profile: Profile | None = None
    if args.profile is not None:
        if args.backend == "kernel":
            return fail(_("--profile runs in the userspace lab; leave out --backend kernel"))
        narrowed = profile_in_lab(scenario, args.profile)
        if isinstance(narrowed, str):
            return fail(narrowed)
        scenario, options, profile = narrowed
    if not args.jsonl:
        console = Console(highlight=False)
        console.print(f"[bold]{scenario.text('title')}[/bold]")
        console.print(scenario.text("explanation"))
        if profile is not None:
            console.print(
                _(
                    "Profile \u201c{name}\u201d: its paths, timeouts and quality settings; "
                    "the lab's servers stand in for the ones it names."
                ).format(name=profile.name)
            )
        console.print()
    if args.backend == "kernel":
        return run_kernel(scenario, args)
    holder: dict[str, RunResult] = {}

    class _LabEngine:
        def __init__(self, sink: EventSink) -> None:
            self._sink = sink

        async def run(self) -> RunResult:
            result = await run_scenario(scenario, self._sink, base_options=options)
            holder["run"] = result
            return result

    status = execute(_LabEngine, args)
    if status == EXIT_BAD_INPUT or "run" not in holder:
        return status
    run = holder["run"]
    # Only the paths that ran can restore anything (a profile may run fewer than the scenario).
    comparison = lab_comparison(
        scenario,
        run.verdict.voice_restored_by,
        run.verdict.video_restored_by,
        ((f.mechanism, f.paths) for f in run.findings),
        paths_run=frozenset(scenario.paths),
    )
    if not args.jsonl:
        print_comparison(comparison)
    return EXIT_AS_EXPECTED if comparison.agrees else EXIT_UNEXPECTED


def run_kernel(scenario: Scenario, args: argparse.Namespace) -> int:
    """``--backend kernel``: the scenario with real servers and nftables (Linux, root)."""
    from callpath.core.cli.console import print_summary
    from callpath.core.cli.execution import fail
    from callpath.core.lab.kernel import KernelLabError, run_kernel_scenario
    from callpath.core.report.reading import run_from_report

    try:
        result = run_kernel_scenario(
            scenario, redact=not args.no_redact, language=current_language()
        )
    except KernelLabError as error:  # not root, a missing program, or not expressible
        return fail(str(error))
    if args.json is not None:
        try:
            args.json.write_text(json.dumps(result.report, indent=2) + "\n", encoding="utf-8")
        except OSError as error:
            return fail(str(error))
    if not args.jsonl:
        # The same per-path results and diagnosis as the userspace lab, from the report that
        # `callpath run` wrote inside the lab's client namespace.
        print_summary(run_from_report(result.report))
        if args.json is not None:
            print(_("Report written to {path}").format(path=args.json))
        print_comparison(result.comparison)
    return EXIT_AS_EXPECTED if result.agrees else EXIT_UNEXPECTED


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


def _mechanisms(names: frozenset[str]) -> str:
    return ", ".join(sorted(names)) or _("none")


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
    named = _mechanisms(comparison.mechanisms_found)
    if comparison.inconclusive:
        named += " + " + _("inconclusive")
    mark = "[green]✓[/green]" if comparison.mechanisms_agree else "[red]✗[/red]"
    table.add_row(_("Mechanisms named"), _mechanisms(comparison.mechanisms_expected), named, mark)
    console.print(table)
    if comparison.missing:
        console.print(_("Not named: {names}").format(names=_mechanisms(comparison.missing)))
    if comparison.unexpected:
        console.print(
            _("Named but not expected: {names}").format(names=_mechanisms(comparison.unexpected))
        )
    if comparison.inconclusive_counts:
        console.print(_("An inconclusive finding counts as a disagreement here (docs/lab.md)."))
    if comparison.agrees:
        console.print(_("The measured verdict and diagnosis match the scenario."))
    elif comparison.verdict_agrees:
        console.print(_("The diagnosis differs from what the scenario expects."))
    else:
        console.print(_("The measured verdict differs from what the scenario expects."))
