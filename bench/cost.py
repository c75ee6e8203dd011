"""CPU time and peak memory of a full diagnosis through the CLI, as a user runs it.

``python -m callpath.core.cli.main lab --scenario NAME --jsonl`` runs in a child process;
``os.wait4`` gives
that child's own resource usage (user + system CPU seconds, ``ru_maxrss`` peak resident memory),
so nothing of this benchmark's own process is counted. The lab's servers (TURN relay, censor,
echo peer) run inside the same process, so the figures include them: a real diagnosis against
remote servers costs less.

Run: ``python -m bench.cost --mode quick|full``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from bench.common import ROOT, TARGET_CPU_S, TARGET_PEAK_MB, write_result

QUICK_RUNS = (("open-network", 1),)
FULL_RUNS = (("open-network", 3), ("udp-blocked", 1), ("russia-2025", 1))
RUN_TIMEOUT_S = 120.0


def measure_cli(scenario: str) -> dict[str, Any]:
    argv = [
        sys.executable,
        "-m",
        "callpath.core.cli.main",
        "--lang",
        "en",
        "lab",
        "--scenario",
        scenario,
    ]
    argv.append("--jsonl")
    started = time.monotonic()
    with tempfile.TemporaryFile() as sink:
        child = subprocess.Popen(argv, cwd=ROOT, stdout=sink, stderr=subprocess.PIPE)
        deadline = started + RUN_TIMEOUT_S
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                child.kill()
                pid, status, usage = os.wait4(child.pid, 0)
                break
            time.sleep(0.05)
        child.returncode = os.waitstatus_to_exitcode(status)
        sink.seek(0)
        events = [json.loads(line) for line in sink.read().splitlines() if line.strip()]
    wall = time.monotonic() - started
    stderr = child.stderr.read().decode(errors="replace") if child.stderr else ""
    cpu = usage.ru_utime + usage.ru_stime
    peak_mb = usage.ru_maxrss / 1024  # Linux reports kilobytes
    return {
        "scenario": scenario,
        "exit_code": child.returncode,
        "wall_s": round(wall, 2),
        "cpu_user_s": round(usage.ru_utime, 2),
        "cpu_system_s": round(usage.ru_stime, 2),
        "cpu_s": round(cpu, 2),
        "peak_rss_mb": round(peak_mb, 1),
        "cpu_within_target": cpu <= TARGET_CPU_S,
        "memory_within_target": peak_mb <= TARGET_PEAK_MB,
        "paths": {
            e["path"]: [e.get("failure"), e.get("voice"), e.get("video")]
            for e in events
            if e.get("event") == "path_finished"
        },
        "voice_restored_by": next(
            (e.get("voice_restored_by") for e in events if e.get("event") == "run_finished"), None
        ),
        "stderr_tail": stderr[-400:],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("quick", "full"), default="quick")
    args = parser.parse_args()
    runs = []
    for scenario, repeat in QUICK_RUNS if args.mode == "quick" else FULL_RUNS:
        for _ in range(repeat):
            row = measure_cli(scenario)
            print(
                f"{scenario}: {row['cpu_s']} CPU-s, {row['peak_rss_mb']} MB, {row['wall_s']} s "
                f"(exit {row['exit_code']})",
                flush=True,
            )
            runs.append(row)
    open_runs = [r for r in runs if r["scenario"] == "open-network"]
    summary = {
        "open_network_cpu_s_median": statistics.median(r["cpu_s"] for r in open_runs),
        "open_network_peak_rss_mb_max": max(r["peak_rss_mb"] for r in open_runs),
        "target_cpu_s": TARGET_CPU_S,
        "target_peak_mb": TARGET_PEAK_MB,
    }
    command = f"python -m bench.cost --mode {args.mode}"
    print(write_result("cost", args.mode, command, {"summary": summary, "runs": runs}))


if __name__ == "__main__":
    main()
