"""Run the benchmarks and write docs/performance.md.

    python -m bench.run --quick     # a small subset of everything, under two minutes
    python -m bench.run --full      # the whole grid and ramps (about 40 minutes)
    python -m bench.run --quick --only cost --only gui_stall   # some benchmarks only
    python -m bench.run --report    # only rewrite docs/performance.md from bench/results/

Each benchmark runs in its own process, one after another (never two at once: they would
measure each other), and writes ``bench/results/NAME-MODE.json``. The document shows the
results of both modes that exist, each with the command that produced it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from typing import Any

from bench.common import (
    ROOT,
    TARGET_CAPACITY_RATIO,
    TARGET_CAPACITY_RATIO_BUDGET,
    TARGET_CPU_S,
    TARGET_FIRST_FINDING_S,
    TARGET_GUI_STALL_MS,
    TARGET_JITTER_MS,
    TARGET_LOSS_SE,
    TARGET_PEAK_MB,
    capacity_ratio,
    mark,
    markdown_table,
    read_result,
)

BENCHMARKS = ("verdict_time", "accuracy", "cost", "gui_stall", "capacity")
EXTRA_ARGS: dict[tuple[str, str], list[str]] = {}
DOC = ROOT / "docs" / "performance.md"


def run_benchmarks(mode: str, only: list[str]) -> dict[str, float]:
    durations = {}
    for name in BENCHMARKS:
        if only and name not in only:
            continue
        argv = [sys.executable, "-m", f"bench.{name}", "--mode", mode]
        argv += EXTRA_ARGS.get((name, mode), [])
        print(f"== {' '.join(argv[1:])}", flush=True)
        started = time.monotonic()
        completed = subprocess.run(argv, cwd=ROOT, check=False)
        durations[name] = round(time.monotonic() - started, 1)
        if completed.returncode != 0:
            print(f"!! {name} exited with {completed.returncode}", flush=True)
    return durations


# --- the document ---------------------------------------------------------------------------


def _header(result: dict[str, Any]) -> str:
    machine = result["machine"]
    return (
        f"`{result['command']}` — {machine['when']}, {machine['cpus']} CPUs, load average "
        f"{machine['load_average_1m']} at the start, Python {machine['python']}."
    )


def verdict_section(result: dict[str, Any]) -> str:
    rows = []
    for run in result["runs"]:
        rows.append(
            (
                run["scenario"],
                run["calls"],
                run["first_failure_s"],
                run["first_path_s"],
                run["first_finding_s"],
                mark(run["first_finding_within_target"]),
                run["verdict_s"],
                f"{run['target_verdict_s']:.0f}",
                mark(run["verdict_within_target"]),
                run.get("report_s", "–"),
                run.get("sequential_total_s"),
                run.get("parallel_over_sequential"),
                mark(run["verdict_as_expected"]),
            )
        )
    table = markdown_table(
        (
            "scenario",
            "calls",
            "first failure s",
            "first path s",
            "first finding s",
            f"≤ {TARGET_FIRST_FINDING_S:g} s",
            "verdict s",
            "target s",
            "met",
            "report s (with diagnosis)",
            "sequential s",
            "parallel / sequential",
            "verdict as expected",
        ),
        rows,
    )
    firsts = "\n".join(
        f"- {run['scenario']} ×{run['calls']}: first failure "
        f"`{run['first_failure'] or '–'}`, first path `{run['first_path'] or '–'}`"
        for run in result["runs"]
    )
    return f"{_header(result)}\n\n{table}\n\n{firsts}\n"


def accuracy_section(result: dict[str, Any]) -> str:
    summary = result["summary"]
    cells = [c for c in result["cells"] if c.get("exercised")]
    rows = [
        (
            c["rtt_ms"],
            c["jitter_ms"],
            c["loss_pct"],
            c.get("rtt_truth_ms"),
            c.get("measured_rtt_ms"),
            c.get("rtt_error_ms"),
            mark(c.get("rtt_ok")),
            mark(c.get("rtt_within_sampling_noise")),
            c.get("jitter_truth_ms"),
            c.get("measured_jitter_ms"),
            c.get("jitter_error_ms"),
            mark(c.get("jitter_ok")),
            c.get("measured_loss_pct"),
            c.get("realised_loss_pct"),
            c.get("loss_se_pct"),
            c.get("loss_error_in_se"),
            mark(c.get("loss_ok")),
        )
        for c in cells
    ]
    table = markdown_table(
        (
            "RTT",
            "J ±",
            "loss %",
            "RTT truth",
            "RTT meas.",
            "err",
            "≤ max(3, 5 %)",
            "within sampling",
            "jitter truth",
            "jitter meas.",
            "err",
            "≤ 3 ms",
            "loss meas.",
            "loss realised",
            "SE",
            "err / SE",
            f"≤ {TARGET_LOSS_SE} SE",
        ),
        rows,
    )
    by_jitter: dict[float, list[dict[str, Any]]] = {}
    for cell in cells:
        by_jitter.setdefault(cell["jitter_ms"], []).append(cell)
    trust_rows = [
        (
            f"±{jitter}",
            len(group),
            f"{sum(1 for c in group if c.get('rtt_ok'))}/{len(group)}",
            f"{sum(1 for c in group if c.get('jitter_ok'))}/{len(group)}",
            f"{sum(1 for c in group if c.get('loss_ok'))}/{len(group)}",
            max((abs(c.get("rtt_error_ms") or 0) for c in group), default=None),
            max((abs(c.get("jitter_error_ms") or 0) for c in group), default=None),
        )
        for jitter, group in sorted(by_jitter.items())
    ]
    trust = markdown_table(
        (
            "injected jitter (ms)",
            "cells",
            "RTT within target",
            "jitter within target",
            "loss within target",
            "worst |RTT err| ms",
            "worst |jitter err| ms",
        ),
        trust_rows,
    )
    worst = (
        f"Worst cases: RTT {summary['worst_rtt']}, jitter {summary['worst_jitter']}, "
        f"loss {summary['worst_loss_in_se']}."
    )
    totals = (
        f"{summary['measured']}/{summary['cells']} cells measured; within target: RTT "
        f"{summary['rtt_ok']}, jitter {summary['jitter_ok']}, loss {summary['loss_ok']}; RTT "
        f"within target or its own sampling noise: {summary.get('rtt_within_sampling_noise')}. "
        f"Quality window {result['window_s']:.0f} s."
    )
    return f"{_header(result)}\n\n{totals}\n\n{trust}\n\n{worst}\n\n{table}\n"


def cost_section(result: dict[str, Any]) -> str:
    rows = [
        (
            r["scenario"],
            r["wall_s"],
            r["cpu_user_s"],
            r["cpu_system_s"],
            r["cpu_s"],
            mark(r["cpu_within_target"]),
            r["peak_rss_mb"],
            mark(r["memory_within_target"]),
            r["exit_code"],
        )
        for r in result["runs"]
    ]
    table = markdown_table(
        (
            "scenario",
            "wall s",
            "user s",
            "system s",
            "CPU s",
            f"≤ {TARGET_CPU_S:.0f}",
            "peak RSS MB",
            f"≤ {TARGET_PEAK_MB:.0f}",
            "exit",
        ),
        rows,
    )
    return f"{_header(result)}\n\n{table}\n"


def gui_section(result: dict[str, Any] | None) -> str:
    if result is None:
        return "Not measured yet in this mode.\n"
    rows = [
        (
            r["scenario"],
            r["switch_interval_ms"],
            r["run_s"],
            r["ticks"],
            r["median_gap_ms"],
            r["p99_gap_ms"],
            r["longest_stall_ms"],
            r["gaps_over_50ms"],
            mark(r["within_target"]),
            r["idle_longest_stall_ms"],
            r["python_threads_max"],
        )
        for r in result["runs"]
    ]
    table = markdown_table(
        (
            "scenario",
            "GIL switch interval ms",
            "run s",
            "ticks",
            "median gap ms",
            "p99 gap ms",
            "longest stall ms",
            "stalls > 50 ms",
            f"≤ {TARGET_GUI_STALL_MS:.0f} ms",
            "idle longest ms",
            "threads",
        ),
        rows,
    )
    worst_lines = []
    for r in result["runs"]:
        for stall in r.get("worst_stalls", [])[:3]:
            where = "after the run (verdict page)" if stall["after_run_completed"] else "run"
            loop = " ← ".join(reversed(stall.get("loop_thread_stack", [])[-3:])) or "–"
            worst_lines.append(
                f"- {r['scenario']}: {stall['stall_ms']} ms ending {stall['ended_at_s']} s into "
                f"the run ({where}); "
                f"asyncio thread then at: `{loop}`"
            )
    return f"{_header(result)}\n\n{table}\n\nWorst stalls:\n\n" + "\n".join(worst_lines) + "\n"


def capacity_section(result: dict[str, Any]) -> str:
    parts = [_header(result), ""]
    for name in ("echo_server", "janus", "echo_server_budget", "janus_budget"):
        ramp = result.get(name)
        if ramp is None:
            continue
        if "error" in ramp:
            parts.append(f"**{name}**: not measured: {ramp['error']}\n")
            continue
        if "cpu_budget_pct" in ramp:
            parts.append(
                f"*Held to {ramp['cpu_budget_pct']:g} % of one core ({ramp['cpu_budget']}).*\n"
            )
        rows = [
            (
                s["calls"],
                mark(s["sustained"]),
                s["server_cpu_pct"],
                " + ".join(str(v) for v in s["generator_cpu_pct"]),
                s["min_mos"],
                s["max_loss_pct"],
                s["min_video_echo_fps"],
                "; ".join(", ".join(m) for m in s["missed"])[:160] or "–",
            )
            for s in ramp["steps"]
        ]
        parts.append(
            f"**{name}** — capacity {ramp['capacity_calls']} calls"
            + ("" if ramp["limit_reached"] else " (no step failed: at least this many)")
        )
        parts.append("")
        parts.append(
            markdown_table(
                (
                    "calls",
                    "sustained",
                    "server CPU %",
                    "generator CPU % (per process)",
                    "min MOS",
                    "max loss %",
                    "min echoed video fps",
                    "missed",
                ),
                rows,
            )
        )
        parts.append("")
    for suffix, label in (("", "whole machine"), ("_budget", "equal CPU budgets")):
        ratio = _ratio(result, suffix)
        if ratio is not None:
            value, bound, met = ratio
            parts.append(
                f"Ratio echo server / Janus, {label}: **{value:.3g}** ({bound}); target ≥ "
                f"{_capacity_target(suffix)}: {mark(met)}.\n"
            )
    return "\n".join(parts) + "\n"


def _ratio(result: dict[str, Any], suffix: str = "") -> tuple[float, str, bool | None] | None:
    """The capacity ratio of the plain ramps (``suffix`` "") or the budgeted ones ("_budget")."""
    ours, theirs = result.get(f"echo_server{suffix}", {}), result.get(f"janus{suffix}", {})
    if "capacity_calls" not in ours or "capacity_calls" not in theirs:
        return None
    value, bound, met = capacity_ratio(
        ours["capacity_calls"],
        ours["limit_reached"],
        theirs["capacity_calls"],
        theirs["limit_reached"],
        _capacity_target(suffix),
    )
    return None if value is None else (value, bound, met)


def _capacity_target(suffix: str) -> float:
    return TARGET_CAPACITY_RATIO_BUDGET if suffix == "_budget" else TARGET_CAPACITY_RATIO


def targets_table(mode: str) -> str:
    verdict = read_result("verdict_time", mode)
    accuracy = read_result("accuracy", mode)
    cost = read_result("cost", mode)
    gui = read_result("gui_stall", mode)
    capacity = read_result("capacity", mode)
    rows: list[tuple[Any, ...]] = []
    if verdict:
        for run in verdict["runs"]:
            rows.append(
                (
                    f"verdict, {run['scenario']} ×{run['calls']}",
                    f"≤ {run['target_verdict_s']:.0f} s",
                    f"{run['verdict_s']} s",
                    mark(run["verdict_within_target"]),
                )
            )
        best = min(
            (r for r in verdict["runs"] if r["first_finding_s"] is not None),
            key=lambda r: r["first_finding_s"],
            default=None,
        )
        worst = max(
            (r for r in verdict["runs"] if r["first_finding_s"] is not None),
            key=lambda r: r["first_finding_s"],
            default=None,
        )
        if best and worst:
            rows.append(
                (
                    "first finding",
                    f"≤ {TARGET_FIRST_FINDING_S:g} s",
                    f"{best['first_finding_s']}–{worst['first_finding_s']} s",
                    mark(worst["first_finding_s"] <= TARGET_FIRST_FINDING_S),
                )
            )
    if cost:
        summary = cost["summary"]
        rows.append(
            (
                "CPU of a full run (open network)",
                f"≤ {TARGET_CPU_S:.0f} s",
                f"{summary['open_network_cpu_s_median']} s",
                mark(summary["open_network_cpu_s_median"] <= TARGET_CPU_S),
            )
        )
        rows.append(
            (
                "peak memory (open network)",
                f"≤ {TARGET_PEAK_MB:.0f} MB",
                f"{summary['open_network_peak_rss_mb_max']} MB",
                mark(summary["open_network_peak_rss_mb_max"] <= TARGET_PEAK_MB),
            )
        )
    if gui:
        default = gui["runs"][0]["switch_interval_ms"]  # the first run keeps Python's default
        runs = [r for r in gui["runs"] if r["switch_interval_ms"] == default]
        worst = max(runs, key=lambda r: r["longest_stall_ms"])
        rows.append(
            (
                f"GUI longest stall ({len(runs)} run{'s' if len(runs) > 1 else ''})",
                f"≤ {TARGET_GUI_STALL_MS:.0f} ms",
                f"{worst['longest_stall_ms']} ms (p99 gap {worst['p99_gap_ms']} ms)",
                mark(all(r["within_target"] for r in runs)),
            )
        )
    else:
        rows.append(("GUI longest stall", "≤ 50 ms", "not measured yet", "n/a"))
    if accuracy:
        s = accuracy["summary"]
        n = s["measured"]
        rows.append(("RTT", "max(3 ms, 5 %)", f"{s['rtt_ok']}/{n} cells", mark(s["rtt_ok"] == n)))
        rows.append(
            (
                "jitter",
                f"±{TARGET_JITTER_MS:.0f} ms",
                f"{s['jitter_ok']}/{n} cells",
                mark(s["jitter_ok"] == n),
            )
        )
        rows.append(
            (
                "loss",
                f"≤ {TARGET_LOSS_SE} SE",
                f"{s['loss_ok']}/{n} cells",
                mark(s["loss_ok"] == n),
            )
        )
    for suffix, label in (("", ""), ("_budget", ", equal CPU budgets")):
        ratio = _ratio(capacity, suffix) if capacity else None
        if capacity and ratio is not None:
            value, bound, met = ratio
            rows.append(
                (
                    f"echo server / Janus capacity{label}",
                    f"≥ {_capacity_target(suffix)}",
                    f"{capacity['echo_server' + suffix]['capacity_calls']} / "
                    f"{capacity['janus' + suffix]['capacity_calls']} calls = {value:.3g} ({bound})",
                    mark(met),
                )
            )
    return markdown_table(("target", "required", "measured", "met"), rows)


def mode_section(mode: str) -> str:
    sections = []
    available = {name: read_result(name, mode) for name in BENCHMARKS}
    if not any(available.values()):
        return f"No {mode} results yet: run `python -m bench.run --{mode}`.\n"
    sections.append(f"### Targets ({mode})\n\n{targets_table(mode)}\n")
    renderers = {
        "verdict_time": ("Time to verdict", verdict_section),
        "accuracy": ("Accuracy", accuracy_section),
        "cost": ("Cost of a run", cost_section),
        "capacity": ("Echo server capacity", capacity_section),
    }
    for name, (title, render) in renderers.items():
        result = available[name]
        body = render(result) if result else "Not measured yet in this mode.\n"
        sections.append(f"### {title} ({mode})\n\n{body}")
    sections.append(f"### GUI stalls ({mode})\n\n{gui_section(available['gui_stall'])}")
    return "\n".join(sections)


def render_document() -> str:
    from bench.performance_text import PROLOGUE, epilogue

    return (
        PROLOGUE
        + "\n## Quick mode results\n\n"
        + mode_section("quick")
        + "\n## Full mode results\n\n"
        + mode_section("full")
        + "\n"
        + epilogue()
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--quick", action="store_true", help="a small subset, under two minutes")
    mode.add_argument("--full", action="store_true", help="every grid cell and ramp step")
    mode.add_argument("--report", action="store_true", help="only rewrite docs/performance.md")
    parser.add_argument("--only", action="append", choices=BENCHMARKS, default=[])
    args = parser.parse_args()
    if not args.report:
        started = time.monotonic()
        durations = run_benchmarks("quick" if args.quick else "full", args.only)
        print(f"benchmarks took {time.monotonic() - started:.0f} s: {durations}", flush=True)
    DOC.write_text(render_document(), encoding="utf-8")
    print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
