"""Echo-server capacity: concurrent audio+video echo calls sustained, against Janus's echotest.

Ramp 1, 2, 4, 8, … calls. At each step the calls are placed by ``bench.loadgen`` processes
(one per up to ``CALLS_PER_GENERATOR`` calls), all started together; after the calls connect
and settle, quality is measured over a window. A step is sustained when every call connected
and every call had, over the window:

- packet loss below 1 % for audio and video, upstream and downstream;
- voice MOS ≥ 4 (simplified E-model from RTT, the worse audio jitter and the worse audio loss);
- the echo really flowing: ≥ 90 % of the 50 audio frames/s and ≥ 80 % of the 30 video frames/s
  sent came back as complete frames (an overloaded transcoding echo drops frames before any
  RTP loss shows).

Capacity is the largest sustained step; the ramp stops at the first step that fails.

Servers: ``callpath echo-server --ice-address 127.0.0.1`` in its own process, and Janus (the
test suite's ``run_janus``: echotest only, in its own network namespace — needs root — with
the generator's host candidates on the namespace's veth address). The CPU of the server and of
every generator process is recorded over the window from ``/proc``/``getrusage``.

Run: ``python -m bench.capacity --mode quick|full``.
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
    capacity_ratio,
    cpu_seconds_from_stat,
    write_result,
)

CALLS_PER_GENERATOR = 8
LOSS_LIMIT_PCT = 1.0
MOS_LIMIT = 4.0
AUDIO_FPS, VIDEO_FPS = 50, 30
AUDIO_ECHO_SHARE, VIDEO_ECHO_SHARE = 0.9, 0.8
QUICK: dict[str, Any] = {"steps": (1, 2), "window": 3.0, "janus_steps": (2,)}
FULL: dict[str, Any] = {
    "steps": (1, 2, 4, 8, 16, 32),
    "window": 10.0,
    "janus_steps": (1, 2, 4, 8, 16, 32),
}
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
        sys.executable, "-m", "core.cli", "echo-server", "--listen", f"127.0.0.1:{port}",
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("quick", "full"), default="quick")
    parser.add_argument("--no-janus", action="store_true", help="skip the Janus comparison")
    args = parser.parse_args()
    config = QUICK if args.mode == "quick" else FULL
    steps: tuple[int, ...] = config["steps"]
    window: float = config["window"]
    data: dict[str, Any] = {"window_s": window, "steps_tried": list(steps)}
    with echo_server() as (url, pid):
        data["echo_server"] = ramp("echo", url, "127.0.0.1", steps, window, pid)
    if not args.no_janus:
        try:
            from tests.servers import run_janus

            with (
                tempfile.TemporaryDirectory(prefix="callpath-bench-janus-") as folder,
                run_janus(Path(folder)) as janus,
            ):
                data["janus"] = ramp(
                    "janus",
                    janus.base_url,
                    janus.client_address,
                    config["janus_steps"],
                    window,
                    janus.process.process.pid,
                )
        except BaseException as error:  # pytest.skip/fail outside pytest, missing root, …
            if isinstance(error, KeyboardInterrupt):
                raise
            data["janus"] = {"error": f"{type(error).__name__}: {error}"[:400]}
    janus_result = data.get("janus", {})
    if "capacity_calls" in janus_result:
        ours = data["echo_server"]
        ratio, bound, met = capacity_ratio(
            ours["capacity_calls"],
            ours["limit_reached"],
            janus_result["capacity_calls"],
            janus_result["limit_reached"],
        )
        data["ratio"] = None if ratio is None else round(ratio, 3)
        data["ratio_bound"] = bound
        data["ratio_within_target"] = met
    command = f"python -m bench.capacity --mode {args.mode}"
    print(write_result("capacity", args.mode, command, data))


if __name__ == "__main__":
    main()
