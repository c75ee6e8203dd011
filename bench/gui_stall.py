"""The GUI's longest stall during a real run: a 1 ms QTimer in the Qt event loop, offscreen.

The real ``MainWindow`` (running page with its live charts, verdict page, history saving into a
temporary data directory) is driven through the real ``RunBridge`` with a run source that starts
the built-in lab's open network (four paths, the same engine as every run). A precise QTimer
fires every millisecond in the GUI thread; the longest gap between two ticks, minus the 1 ms
period, is the longest time the GUI could not react. An idle baseline of the same timer, before
the run, shows what the platform itself adds.

Run: ``QT_QPA_PLATFORM=offscreen python -m bench.gui_stall --mode quick|full`` (the script sets
the platform itself when it is not set). ``--hold SECONDS`` adds an open-network run whose calls
are kept going that long after the verdict (the app's "Keep the call going", on the same live
charts); its row also gives the longest stall during the hold alone.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from bench.common import TARGET_GUI_STALL_MS, longest_stall_ms, percentile, write_result

TICK_MS = 1
IDLE_BASELINE_MS = 2000
RUN_TIMEOUT_MS = 120_000


SCENARIOS_FULL = ("open-network", "russia-2025")
WATCHDOG_PERIOD_S = 0.002
WATCHDOG_STALE_S = 0.025


class StallWatchdog(threading.Thread):
    """Attributes stalls: when the GUI's timer is late, note what every thread was doing.

    The watchdog needs the GIL too, so it sees the threads just after whoever held it let go;
    the GUI thread's own stack tells apart "the GUI thread was busy" (its code on top) from
    "it was waiting for the GIL" (Qt's event loop on top).
    """

    def __init__(self, last_tick: list[float], gui_thread: int) -> None:
        super().__init__(name="stall-watchdog", daemon=True)
        self._last_tick = last_tick
        self._gui = gui_thread
        self.running = True
        self.stalls: list[dict[str, Any]] = []

    def run(self) -> None:
        reported_for = 0.0
        while self.running:
            time.sleep(WATCHDOG_PERIOD_S)
            last = self._last_tick[0]
            if not last or time.perf_counter() - last < WATCHDOG_STALE_S or last == reported_for:
                continue
            reported_for = last
            frames = sys._current_frames()
            names = {t.ident: t.name for t in threading.enumerate()}
            threads = {}
            for ident, frame in frames.items():
                if ident == threading.get_ident():
                    continue
                stack = traceback.extract_stack(frame)[-8:]
                threads[names.get(ident, str(ident))] = [
                    f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in stack
                ]
            gui = threads.get(names.get(self._gui, ""), [])
            self.stalls.append({"at": time.perf_counter(), "gui_thread": gui, "threads": threads})


def _gaps_ms(ticks: list[float]) -> list[float]:
    return [(b - a) * 1000 for a, b in itertools.pairwise(ticks)]


def measure(
    scenario_name: str, switch_interval_ms: float | None = None, hold_s: float | None = None
) -> dict[str, Any]:
    default_switch = sys.getswitchinterval()
    if switch_interval_ms is not None:
        # Experiment: how long a thread may keep the GIL before handing it on (default 5 ms).
        sys.setswitchinterval(switch_interval_ms / 1000)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    # History is saved at the end of a run: keep it out of the user's real data directory.
    os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="callpath-bench-gui-")
    from callpath.core.lab.scenario import find_scenario
    from callpath.core.lab.source import LabSource
    from callpath.core.model.config import HoldConfig
    from callpath.gui.bridge import RunBridge
    from callpath.gui.dialogs import UnattendedDialogs
    from callpath.gui.main_window import MainWindow
    from callpath.gui.qt import QApplication, Qt, QTimer

    scenario = find_scenario(scenario_name)

    app = QApplication.instance() or QApplication(["callpath-bench"])
    bridge = RunBridge()
    window = MainWindow(bridge, UnattendedDialogs())
    window.resize(1000, 760)
    window.show()
    idle: list[float] = []
    during: list[float] = []
    state: dict[str, Any] = {"phase": "idle", "result": None, "failed": ""}

    last_tick = [0.0]
    watchdog = StallWatchdog(last_tick, threading.get_ident())

    def tick() -> None:
        last_tick[0] = time.perf_counter()
        (idle if state["phase"] == "idle" else during).append(time.perf_counter())
        if len(during) % 500 == 0:
            state["threads"] = max(state.get("threads", 0), threading.active_count())

    timer = QTimer()
    timer.setTimerType(Qt.TimerType.PreciseTimer)
    timer.setInterval(TICK_MS)
    timer.timeout.connect(tick)

    def begin_run() -> None:
        state["phase"] = "run"
        state["started"] = time.perf_counter()
        source = LabSource(scenario)
        window.running.begin(source.title, source.path_ids, source.expected_seconds())
        window.show_page("running")
        bridge.start(source, HoldConfig(duration_s=hold_s) if hold_s else None)

    def hold_started(_event: object) -> None:
        state["hold_index"] = len(during)

    def completed(run: object) -> None:
        state["result"] = run
        state["finished"] = time.perf_counter()
        # Keep ticking while the verdict page is built and shown, then stop.
        QTimer.singleShot(500, app.quit)

    def failed(message: str) -> None:
        state["failed"] = message
        app.quit()

    bridge.runCompleted.connect(completed)
    bridge.runFailed.connect(failed)
    bridge.holdStarted.connect(hold_started)
    timer.start()
    watchdog.start()
    QTimer.singleShot(IDLE_BASELINE_MS, begin_run)
    QTimer.singleShot(RUN_TIMEOUT_MS + round((hold_s or 0) * 1000), app.quit)
    app.exec()
    timer.stop()
    watchdog.running = False
    watchdog.join(1.0)
    bridge.shutdown()
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(default_switch)
    window.close()

    gaps = _gaps_ms(during)
    idle_gaps = _gaps_ms(idle)
    longest = longest_stall_ms(during, TICK_MS / 1000)
    run = state["result"]
    started = state.get("started", 0.0)
    finished = state.get("finished", 0.0)
    # Where the worst stalls happened: seconds after the run started, and whether the run had
    # already completed (the verdict page being built) when the stall ended.
    worst = sorted(zip(gaps, during[1:], strict=False), reverse=True)[:5]
    worst_stalls = [
        {
            "stall_ms": round(gap - TICK_MS, 1),
            "ended_at_s": round(end - started, 2),
            "after_run_completed": bool(finished) and end >= finished,
        }
        for gap, end in worst
    ]
    # The watchdog's view of the three worst stalls (matched by the time it fired).
    for stall, (_gap, end) in zip(worst_stalls, worst, strict=False):
        seen = [w for w in watchdog.stalls if end - 0.5 <= w["at"] <= end]
        if seen:
            stall["gui_thread_stack"] = seen[-1]["gui_thread"]
            stall["loop_thread_stack"] = seen[-1]["threads"].get("callpath-asyncio", [])
    return {
        "scenario": scenario.id,
        "switch_interval_ms": round(switch_interval * 1000, 3),
        "python_threads_max": state.get("threads"),
        "run_completed": run is not None,
        "run_failed": state["failed"],
        "run_s": round(state.get("finished", 0.0) - state.get("started", 0.0), 2),
        "verdict_page_shown": window.current_page() == "verdict",
        "ticks": len(during),
        "longest_stall_ms": round(longest, 2),
        "p99_gap_ms": round(percentile(gaps, 0.99), 2) if gaps else None,
        "median_gap_ms": round(statistics.median(gaps), 3) if gaps else None,
        "worst_stalls": worst_stalls,
        "gaps_over_50ms": sum(1 for g in gaps if g - TICK_MS > TARGET_GUI_STALL_MS),
        "idle_longest_stall_ms": round(longest_stall_ms(idle, TICK_MS / 1000), 2),
        "idle_p99_gap_ms": round(percentile(idle_gaps, 0.99), 2) if idle_gaps else None,
        "hold_s": hold_s,
        "hold_longest_stall_ms": (
            round(longest_stall_ms(during[state["hold_index"] :], TICK_MS / 1000), 2)
            if "hold_index" in state
            else None
        ),
        "target_ms": TARGET_GUI_STALL_MS,
        "within_target": longest <= TARGET_GUI_STALL_MS,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("quick", "full"), default="quick")
    parser.add_argument(
        "--switch-interval-ms",
        type=float,
        action="append",
        help="also measure with this GIL switch interval (experiment; repeatable)",
    )
    parser.add_argument(
        "--hold",
        type=float,
        metavar="SECONDS",
        help="also measure an open-network run held this long after the verdict",
    )
    args = parser.parse_args()
    rows = []
    # Quick: one open-network run. Full: each scenario twice (the first run of a process is the
    # one that pays for first-time set-up, the second shows a window that has run before).
    scenarios = ("open-network",) if args.mode == "quick" else SCENARIOS_FULL * 2
    runs: list[tuple[str, float | None, float | None]] = [(name, None, None) for name in scenarios]
    runs += [("open-network", interval, None) for interval in args.switch_interval_ms or ()]
    if args.hold:
        runs.append(("open-network", None, args.hold))
    for scenario, interval, hold in runs:
        row = measure(scenario, interval, hold)
        print(
            f"{scenario}, switch {row['switch_interval_ms']} ms: longest stall "
            f"{row['longest_stall_ms']} ms (p99 gap {row['p99_gap_ms']} ms, idle "
            f"{row['idle_longest_stall_ms']} ms, {row['python_threads_max']} threads), "
            f"run completed {row['run_completed']}"
            + (f", hold {hold} s: longest stall {row['hold_longest_stall_ms']} ms" if hold else ""),
            flush=True,
        )
        rows.append(row)
    command = f"python -m bench.gui_stall --mode {args.mode}"
    if args.switch_interval_ms:
        command += "".join(f" --switch-interval-ms {v:g}" for v in args.switch_interval_ms)
    if args.hold:
        command += f" --hold {args.hold:g}"
    print(write_result("gui_stall", args.mode, command, {"runs": rows}))


if __name__ == "__main__":
    main()
