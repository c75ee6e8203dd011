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

from callpath.core.call.engine import EngineOptions
from callpath.core.cli.execution import EXIT_INTERRUPTED
from callpath.core.i18n import _, current_language
from callpath.core.lab.comparison import Comparison, compare
from callpath.core.lab.scenario import (
    LAB_PATHS,
    LAB_PROXY_PATHS,
    Scenario,
    ScenarioError,
    find_scenario,
    list_presets,
)
from callpath.core.lab.source import LabSource
from callpath.core.model.results import RunResult
from callpath.core.paths.registry import path_label
from callpath.core.profile.document import Profile, ProfileError, load_profile

EXIT_AS_EXPECTED = 0
EXIT_UNEXPECTED = 1
EXIT_BAD_INPUT = 2
DEFAULT_SCENARIO = "russia-2025"


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
        "--relay-sni",
        action="append",
        default=[],
        metavar="NAME",
        help=_(
            "also try the TLS relay under this server name (SNI) when its own name is blocked, "
            "as a profile's sni_alternatives does; repeat for more names"
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
    relay_sni = tuple(args.relay_sni)
    if args.backend == "kernel":
        if args.hold is not None:
            return fail(_("--hold runs in the userspace lab only for now (--backend userspace)"))
        if relay_sni:
            return fail(_("--relay-sni needs the userspace backend: nftables cannot read a SNI"))
        return run_kernel(scenario, args)

    # The lab holds every path that worked: the point is to see which the scenario cuts.
    args.hold_all = True

    def judge(run: RunResult) -> int:
        if run.cancelled:
            return EXIT_INTERRUPTED
        # Only the paths that ran can restore anything (a profile may run fewer than the
        # scenario).
        comparison = compare(
            scenario, run, paths_run=frozenset(scenario.paths), with_sni=bool(relay_sni)
        )
        if not args.jsonl:
            print_comparison(comparison)
        agrees = comparison.agrees
        if args.hold is not None and scenario.hold is not None:
            agrees = print_hold_comparison(scenario, run, quiet=args.jsonl) and agrees
        if scenario.expect.checks_messengers:
            agrees = run_messenger_check(scenario, quiet=args.jsonl, report=args.json) and agrees
        return EXIT_AS_EXPECTED if agrees else EXIT_UNEXPECTED

    source = LabSource(scenario, relay_sni=relay_sni, base_options=options)
    if options is not None:
        source = replace(source, quality=options.quality)
    return execute(source, args, judge)


def run_messenger_check(
    scenario: Scenario, *, quiet: bool = False, report: Path | None = None
) -> bool:
    """``callpath check`` on the scenario's lab, beside its messenger expectation; with
    ``report``, the run's JSON report gets the check as its ``messenger_check`` section."""
    import asyncio

    from callpath.core.checkup.document import check_to_dict
    from callpath.core.cli.check import print_result
    from callpath.core.lab.check_comparison import compare_check
    from callpath.core.lab.check_world import run_lab_check
    from callpath.core.report.document import write_report_dict

    result = asyncio.run(run_lab_check(scenario))
    differences = compare_check(scenario, result)
    if report is not None and report.is_file():
        data = json.loads(report.read_text(encoding="utf-8"))
        data["messenger_check"] = check_to_dict(result)
        write_report_dict(report, data)
    if quiet:
        return not differences
    console = Console(highlight=False)
    print_result(result)
    table = Table(title=_("Messenger check against the scenario's expected outcome"))
    table.add_column("")
    table.add_column(_("Expected"))
    table.add_column(_("Measured"))
    for difference in differences:
        table.add_row(difference.what, difference.expected, f"[red]{difference.found}[/red]")
    if differences:
        console.print(table)
    else:
        console.print(_("The messenger check matches the scenario."))
    return not differences


def run_kernel(scenario: Scenario, args: argparse.Namespace) -> int:
    """``--backend kernel``: the scenario with real servers and nftables (Linux, root)."""
    from callpath.core.cli.console import print_summary
    from callpath.core.cli.execution import fail
    from callpath.core.lab.kernel import KernelLabError, run_kernel_scenario
    from callpath.core.report.decode import report_from_dict

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
        from callpath.core.lab.nft import unapplied_part

        for spec in scenario.rules:
            note = unapplied_part(spec)
            if note is not None:
                print(
                    _("Not applied in the kernel lab: {rule}: {note}").format(
                        rule=spec.kind, note=note
                    )
                )
        # The same per-path results and diagnosis as the userspace lab, from the report that
        # `callpath run` wrote inside the lab's client namespace.
        print_summary(report_from_dict(result.report))
        if args.json is not None:
            print(_("Report written to {path}").format(path=args.json))
        print_comparison(result.comparison)
        if scenario.expect.checks_messengers:
            Console(highlight=False).print(
                _(
                    "The messenger check runs in the userspace lab only; its expectation was "
                    "not checked here (callpath check --lab {name})."
                ).format(name=scenario.id)
            )
    return EXIT_AS_EXPECTED if result.agrees else EXIT_UNEXPECTED


def print_hold_comparison(scenario: Scenario, run: RunResult, *, quiet: bool = False) -> bool:
    """The holds beside the scenario's ``hold:`` expectation; True when they agree. A hold
    shorter than the one the expectation is for is only checked for the paths that were
    expected to hold (a cut may come after it ended)."""
    from callpath.core.lab.hold_expectation import compare_hold

    expectation = scenario.hold
    assert expectation is not None
    asked = max((hold.asked_s for hold in run.holds), default=0.0)
    if asked + 0.5 < expectation.seconds:
        kept = {p: e for p, e in expectation.paths.items() if e.ended == "held"}
        expectation = replace(expectation, paths=kept)
    differences = compare_hold(expectation, run)
    if not quiet:
        console = Console(highlight=False)
        if differences:
            console.print(_("The hold differs from the scenario:"))
            for difference in differences:
                console.print(f"  {difference}")
        else:
            console.print(_("The hold matches the scenario."))
    return not differences


def print_presets(presets: list[Scenario], stream: IO[str] | None = None) -> None:
    console = Console(file=stream or sys.stdout, highlight=False)
    table = Table(title=_("Lab scenarios"))
    table.add_column(_("Name"))
    table.add_column(_("What it shows"))
    table.add_column(_("Observed"))
    table.add_column(_("Restores voice"))
    for scenario in presets:
        restores = ", ".join(path_label(p) for p in sorted(scenario.expect.voice)) or _("nothing")
        table.add_row(scenario.id, scenario.text("title"), scenario.observed, restores)
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
