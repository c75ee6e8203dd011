"""Echo-server capacity: concurrent audio+video echo calls sustained, against Janus's echotest.

Ramp 1, 2, 4, 8, … calls. At each step the calls are placed by ``bench.loadgen`` processes
(one per up to ``CALLS_PER_GENERATOR`` calls), all started together; after the calls connect
and settle, quality is measured over a window. A step is sustained when every call connected
and every call had, over the window:

- packet loss below 1 % for audio and video, upstream and downstream (upstream from the
  server's receiver reports: from the window's start, or from the server's first report when
  it came within the window's first fifth, ``bench.loadgen.LATE_REPORT_SHARE``);
- voice MOS ≥ 4 (simplified E-model from RTT, the worse audio jitter and the worse audio loss);
- the echo really flowing: ≥ 90 % of the 50 audio frames/s and ≥ 80 % of the 30 video frames/s
  sent came back as complete frames (an overloaded transcoding echo drops frames before any
  RTP loss shows).

Capacity is the largest sustained step; the ramp stops at the first step that fails.

Servers: ``callpath echo-server --ice-address 127.0.0.1`` in its own process, and Janus (the
test suite's ``run_janus``: echotest only, in its own network namespace — needs root — with
the generator's host candidates on the namespace's veth address). The CPU of the server and of
every generator process is recorded over the window from ``/proc``/``getrusage``.

**Equal CPU budgets.** On a small machine Janus outlasts what the load generator can drive
(at 32 calls the generators already take a core of two), so its ceiling, and with it the ratio,
stays unknown. The ratio is therefore also measured with each server held to the same CPU
budget (``--cpu-budget``, default 8 % of one core, by a cgroup CPU quota over 20 ms periods,
which adds at most a few milliseconds of delay when a server is throttled): both servers then
reach their ceiling well within the generators' reach. Steps are coarse, so each capacity is
"the largest step sustained"; the true value lies below the next step.

Run: ``python -m bench.capacity --mode quick|full [--cpu-budget PCT]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.common import (
    ROOT,
    TARGET_CAPACITY_RATIO,
    TARGET_CAPACITY_RATIO_BUDGET,
    capacity_ratio,
    cpu_seconds_from_stat,
    write_result,
)

CALLS_PER_GENERATOR = 8
LOSS_LIMIT_PCT = 1.0
MOS_LIMIT = 4.0
AUDIO_FPS, VIDEO_FPS = 50, 30
AUDIO_ECHO_SHARE, VIDEO_ECHO_SHARE = 0.9, 0.8
QUICK: dict[str, Any] = {
    "steps": (1, 2),
    "window": 3.0,
    "janus_steps": (2,),
    "budget_steps": (2,),
}
FULL: dict[str, Any] = {
    "steps": (1, 2, 4, 8, 16, 32),
    "window": 10.0,
    "janus_steps": (1, 2, 4, 8, 16, 32),
    "budget_steps": (2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 28, 32, 40),
}
DEFAULT_CPU_BUDGET_PCT = 8.0
BUDGET_PERIOD_US = 20_000
JANUS_RTP_PORTS = 120  # more than the largest step
STEP_TIMEOUT_S = 120.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class CpuSampler(threading.Thread):
    """Samples a process's CPU seconds twice a second, with wall-clock times."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.samples: list[tuple[float, float]] = []
        self.running = True

    def run(self) -> None:
        path = Path(f"/proc/{self.pid}/stat")
        while self.running:
            try:
                line = path.read_text()
            except OSError:
                return
            self.samples.append((time.time(), cpu_seconds_from_stat(line, CLOCK_TICKS)))
            time.sleep(0.5)

    def cpu_between(self, start: float, end: float) -> float | None:
        inside = [s for s in self.samples if start <= s[0] <= end + 0.5]
        if len(inside) < 2:
            return None
        (t0, c0), (t1, c1) = inside[0], inside[-1]
        return (c1 - c0) / (t1 - t0) * 100 if t1 > t0 else None


def call_sustained(row: dict[str, Any]) -> tuple[bool, list[str]]:
    """Whether one call met every condition, and which it missed."""
    if "failure" in row:
        return False, [f"not connected: {row['failure']}"]
    missed = []
    for key in (
        "audio_loss_up_pct",
        "audio_loss_down_pct",
        "video_loss_up_pct",
        "video_loss_down_pct",
    ):
        value = row.get(key)
        if value is None or value >= LOSS_LIMIT_PCT:
            missed.append(f"{key}={value}")
    mos = row.get("mos")
    if mos is None or mos < MOS_LIMIT:
        missed.append(f"mos={mos}")
    if row.get("audio_echo_fps", 0) < AUDIO_ECHO_SHARE * AUDIO_FPS:
        missed.append(f"audio_echo_fps={row.get('audio_echo_fps')}")
    if row.get("video_echo_fps", 0) < VIDEO_ECHO_SHARE * VIDEO_FPS:
        missed.append(f"video_echo_fps={row.get('video_echo_fps')}")
    return not missed, missed


def split_calls(calls: int) -> list[int]:
    """Calls per generator process: as even as possible, at most CALLS_PER_GENERATOR each."""
    processes = max(1, math.ceil(calls / CALLS_PER_GENERATOR))
    base, extra = divmod(calls, processes)
    return [base + (1 if i < extra else 0) for i in range(processes)]


def run_step(
    target: str, url: str, host_address: str, calls: int, window: float, server_pid: int
) -> dict[str, Any]:
    sampler = CpuSampler(server_pid)
    sampler.start()
    start_at = time.time() + 3.0  # generators pre-encode first, then start together
    with tempfile.TemporaryDirectory(prefix="callpath-bench-load-") as folder:
        children = []
        for index, share in enumerate(split_calls(calls)):
            out = Path(folder) / f"gen{index}.json"
            argv = [
                sys.executable, "-m", "bench.loadgen", "--target", target, "--url", url,
                "--calls", str(share), "--window", str(window), "--host-address", host_address,
                "--start-at", str(start_at), "--out", str(out),
            ]  # fmt: skip
            children.append((subprocess.Popen(argv, cwd=ROOT, stderr=subprocess.PIPE), out))
        generators = []
        for child, out in children:
            try:
                _, stderr = child.communicate(timeout=STEP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                child.kill()
                _, stderr = child.communicate()
            if out.exists():
                generators.append(json.loads(out.read_text()))
            else:
                generators.append({"error": stderr.decode(errors="replace")[-600:], "rows": []})
    sampler.running = False
    sampler.join(2.0)
    rows = [row for g in generators for row in g.get("rows", [])]
    verdicts = [call_sustained(row) for row in rows]
    starts = [g["window_start"] for g in generators if "window_start" in g]
    ends = [g["window_end"] for g in generators if "window_end" in g]
    server_cpu = sampler.cpu_between(max(starts), min(ends)) if starts and ends else None
    sustained = len(rows) == calls and all(ok for ok, _ in verdicts)
    mos_values = [r["mos"] for r in rows if r.get("mos") is not None]
    return {
        "calls": calls,
        "sustained": sustained,
        "connected": sum(g.get("connected", 0) for g in generators),
        "server_cpu_pct": round(server_cpu, 1) if server_cpu is not None else None,
        "generator_processes": len(generators),
        "generator_cpu_pct": [g.get("generator_cpu_pct") for g in generators],
        "min_mos": round(min(mos_values), 2) if mos_values else None,
        "max_loss_pct": max(
            (
                r[k]
                for r in rows
                for k in r
                if k.endswith("_pct") and "loss" in k and r[k] is not None
            ),
            default=None,
        ),
        "min_video_echo_fps": round(min((r.get("video_echo_fps", 0) for r in rows), default=0), 1),
        "missed": [m for ok, m in verdicts if not ok][:4],
        "errors": [g["error"] for g in generators if "error" in g],
        "rows": rows,
    }


def ramp(
    target: str, url: str, host_address: str, steps: tuple[int, ...], window: float, pid: int
) -> dict[str, Any]:
    results = []
    capacity = 0
    for calls in steps:
        step = run_step(target, url, host_address, calls, window, pid)
        print(
            f"{target} {calls:>2} calls: sustained {step['sustained']}, server CPU "
            f"{step['server_cpu_pct']} %, generators {step['generator_cpu_pct']} %, "
            f"min MOS {step['min_mos']}, max loss {step['max_loss_pct']}, "
            f"min video echo {step['min_video_echo_fps']} fps {step['missed'][:1]}",
            flush=True,
        )
        results.append(step)
        if not step["sustained"]:
            break
        capacity = calls
    return {
        "capacity_calls": capacity,
        "limit_reached": bool(results) and not results[-1]["sustained"],
        "steps": results,
    }


@contextlib.contextmanager
def cpu_budget(pid: int, percent: float) -> Iterator[str]:
    """Hold process ``pid`` (and the threads it starts) to ``percent`` of one core, with a
    cgroup CPU quota (v1 ``cpu`` controller, else v2 ``cpu.max``); yields how. Raises
    ``OSError`` when neither is writable (not root, or no cgroup CPU controller)."""
    quota = max(1000, round(BUDGET_PERIOD_US * percent / 100))
    name = f"callpath-bench-{os.getpid()}-{pid}"
    v1, v2 = Path("/sys/fs/cgroup/cpu"), Path("/sys/fs/cgroup")
    if (v1 / "cpu.cfs_quota_us").exists():
        group, parent = v1 / name, v1
        group.mkdir()
        (group / "cpu.cfs_period_us").write_text(str(BUDGET_PERIOD_US))
        (group / "cpu.cfs_quota_us").write_text(str(quota))
        how = f"cgroup v1 cpu.cfs_quota_us={quota} per {BUDGET_PERIOD_US} us"
    else:
        group, parent = v2 / name, v2
        group.mkdir()
        (group / "cpu.max").write_text(f"{quota} {BUDGET_PERIOD_US}")
        how = f"cgroup v2 cpu.max={quota} {BUDGET_PERIOD_US}"
    try:
        (group / "cgroup.procs").write_text(str(pid))
        yield how
    finally:
        # Move whatever is left back out, so that the group can be removed.
        with contextlib.suppress(OSError):
            for line in (group / "cgroup.procs").read_text().split():
                with contextlib.suppress(OSError):
                    (parent / "cgroup.procs").write_text(line)
        with contextlib.suppress(OSError):
            group.rmdir()


def budgeted_ramp(
    target: str,
    url: str,
    host_address: str,
    steps: tuple[int, ...],
    window: float,
    pid: int,
    percent: float,
) -> dict[str, Any]:
    try:
        with cpu_budget(pid, percent) as how:
            result = ramp(target, url, host_address, steps, window, pid)
    except OSError as error:
        return {"error": f"no CPU budget possible here: {error}"}
    return {**result, "cpu_budget_pct": percent, "cpu_budget": how}


def _health_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=1.0) as response:
            return bool(json.loads(response.read()).get("ok"))
    except OSError:
        return False


@contextlib.contextmanager
def echo_server() -> Iterator[tuple[str, int]]:
    from tests.servers import free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [
        sys.executable, "-m", "callpath.core.cli.main", "echo-server",
        "--listen", f"127.0.0.1:{port}",
        "--ice-address", "127.0.0.1", "--max-calls", "100", "--max-call-seconds", "600",
    ]  # fmt: skip
    process = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while not _health_ok(url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("echo server did not start")
            time.sleep(0.1)
        yield url, process.pid
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def _ratio(
    ours: dict[str, Any], theirs: dict[str, Any], target: float = TARGET_CAPACITY_RATIO
) -> dict[str, Any]:
    if "capacity_calls" not in ours or "capacity_calls" not in theirs:
        return {}
    ratio, bound, met = capacity_ratio(
        ours["capacity_calls"],
        ours["limit_reached"],
        theirs["capacity_calls"],
        theirs["limit_reached"],
        target,
    )
    return {
        "ratio": None if ratio is None else round(ratio, 3),
        "ratio_bound": bound,
        "ratio_within_target": met,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("quick", "full"), default="quick")
    parser.add_argument("--no-janus", action="store_true", help="skip the Janus comparison")
    parser.add_argument(
        "--cpu-budget",
        type=float,
        default=DEFAULT_CPU_BUDGET_PCT,
        metavar="PCT",
        help="the equal CPU budget of each server, in %% of one core (0: no budgeted ramps)",
    )
    args = parser.parse_args()
    config = QUICK if args.mode == "quick" else FULL
    steps: tuple[int, ...] = config["steps"]
    budget_steps: tuple[int, ...] = config["budget_steps"]
    window: float = config["window"]
    budget = args.cpu_budget
    data: dict[str, Any] = {"window_s": window, "steps_tried": list(steps)}
    with echo_server() as (url, pid):
        data["echo_server"] = ramp("echo", url, "127.0.0.1", steps, window, pid)
    if budget > 0:
        with echo_server() as (url, pid):
            data["echo_server_budget"] = budgeted_ramp(
                "echo", url, "127.0.0.1", budget_steps, window, pid, budget
            )
    if not args.no_janus:
        try:
            from tests.servers import run_janus

            with tempfile.TemporaryDirectory(prefix="callpath-bench-janus-") as folder:
                with run_janus(Path(folder), rtp_port_count=JANUS_RTP_PORTS) as janus:
                    data["janus"] = ramp(
                        "janus",
                        janus.base_url,
                        janus.client_address,
                        config["janus_steps"],
                        window,
                        janus.process.process.pid,
                    )
                if budget > 0:
                    # A fresh Janus, so that the unbudgeted ramp leaves nothing behind.
                    with run_janus(Path(folder) / "budget", rtp_port_count=JANUS_RTP_PORTS) as j:
                        data["janus_budget"] = budgeted_ramp(
                            "janus",
                            j.base_url,
                            j.client_address,
                            budget_steps,
                            window,
                            j.process.process.pid,
                            budget,
                        )
        except BaseException as error:  # pytest.skip/fail outside pytest, missing root, …
            if isinstance(error, KeyboardInterrupt):
                raise
            data["janus"] = {"error": f"{type(error).__name__}: {error}"[:400]}
    data.update(_ratio(data["echo_server"], data.get("janus", {})))
    budgeted = _ratio(
        data.get("echo_server_budget", {}),
        data.get("janus_budget", {}),
        TARGET_CAPACITY_RATIO_BUDGET,
    )
    data.update({f"budget_{key}": value for key, value in budgeted.items()})
    command = f"python -m bench.capacity --mode {args.mode}"
    if budget != DEFAULT_CPU_BUDGET_PCT:
        command += f" --cpu-budget {budget:g}"
    print(write_result("capacity", args.mode, command, data))


if __name__ == "__main__":
    main()
