"""The one bridge between Qt and asyncio: runs the core on its own thread, reports by signals.

PySide6.QtAsyncio cannot run aiortc (no datagram endpoints), so the core gets an explicit
``asyncio.SelectorEventLoop`` (on Windows too: aioice needs UDP endpoints, which the proactor
loop handles differently) on a thread of its own. Every aiortc object is created on that thread
because ``run_source`` builds the Engine (and the source's local servers) there.

Crossing threads: GUI → loop with ``call_soon_threadsafe`` / ``run_coroutine_threadsafe``;
loop → GUI with one internal signal connected by a queued connection, re-emitted in the GUI
thread as one typed signal per core event. Widgets only ever see these signals.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import logging
import threading
from dataclasses import dataclass

from callpath.core.checkup.document import check_to_dict
from callpath.core.checkup.results import CheckProgress, CheckResult
from callpath.core.i18n import _
from callpath.core.model.config import HoldConfig
from callpath.core.model.events import (
    Event,
    HoldPathEnded,
    HoldSampleTaken,
    HoldStarted,
    PathFinished,
    RunFinished,
    RunStarted,
    SampleTaken,
    StageFinished,
    StageStarted,
)
from callpath.core.model.results import RunResult
from callpath.core.run.source import RunSource, run_source
from callpath.gui.check_source import CheckSource
from callpath.gui.qt import QObject, Qt, Signal

logger = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT_S = 10.0


WARM_UP_MODULES = (
    "callpath.core.call.engine",
    "callpath.core.run.investigation",
    "callpath.core.lab.network",
    "callpath.core.cli.lab",
    "callpath.core.checkup.engine",
    "callpath.core.paths.masque.client",
    "callpath.core.paths.socks5",
    "aiortc.codecs.vpx",
    "aiortc.codecs.opus",
    "dns.asyncquery",
    "dns._asyncio_backend",  # dnspython loads its asyncio backend on the first query
    "aioquic.h3.connection",
    "python_socks.async_.asyncio",
)


# While a run goes, the oldest generation is collected only after this many younger collections
# (Python's default is 10): in practice not before the run ends.
DEFERRED_FULL_COLLECTION = 1_000_000


class FullCollections:
    """Keeps the interpreter's full garbage collections out of runs.

    A full collection walks every tracked object while holding the interpreter lock, so it
    stops every thread, the GUI's included. With Qt, aiortc and the app loaded, one came a few
    hundred milliseconds into each run (the first peer connections allocate a lot) and froze the
    window for about 250 ms (docs/performance.md). So: what is alive when the first run starts
    (modules, widgets, caches: they live as long as the app) is frozen out of every later
    collection (``gc.freeze``), and while a run goes the oldest generation waits; afterwards it
    is collected as usual, over what the runs made only. Young generations are collected
    throughout, so short-lived cycles never pile up."""

    def __init__(self) -> None:
        self._frozen = False
        self._saved: tuple[int, int, int] | None = None

    def run_started(self) -> None:
        if not self._frozen:
            gc.freeze()
            self._frozen = True
        if self._saved is None:
            self._saved = gc.get_threshold()
            young, middle, _oldest = self._saved
            gc.set_threshold(young, middle, DEFERRED_FULL_COLLECTION)

    def run_ended(self) -> None:
        if self._saved is not None:
            gc.set_threshold(*self._saved)
            self._saved = None


@dataclass(frozen=True)
class _RunEnded:
    """The engine task finished: with a result, or without one (and a message why)."""

    result: RunResult | CheckResult | None
    message: str = ""


class RunBridge(QObject):
    """Lives in the GUI thread; owns the asyncio thread and the one run that may be going."""

    runStarted = Signal(object)  # callpath.core.model.events.RunStarted
    stageStarted = Signal(object)  # StageStarted
    stageFinished = Signal(object)  # StageFinished
    sampleTaken = Signal(object)  # SampleTaken
    pathFinished = Signal(object)  # PathFinished
    runFinished = Signal(object)  # RunFinished (the run's last event, after the diagnosis)
    runCompleted = Signal(object)  # RunResult, after the engine task ended (also when stopped)
    runFailed = Signal(str)  # the source could not produce any result; the text says why
    busyChanged = Signal(bool)
    checkProgress = Signal(str)  # a line of the messenger check (CheckProgress.text)
    checkCompleted = Signal(object)  # the messenger check's report dict (check_to_dict)
    holdStarted = Signal(object)  # HoldStarted: after RunFinished, the calls are kept going
    holdSampleTaken = Signal(object)  # HoldSampleTaken
    holdPathEnded = Signal(object)  # HoldPathEnded (runCompleted carries the whole result)

    _arrived = Signal(object)  # emitted on the loop thread, delivered queued in the GUI thread

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._loop = asyncio.SelectorEventLoop()
        self._task: asyncio.Task[RunResult | CheckResult] | None = (
            None  # touched on the loop thread only
        )
        self._busy = False  # touched in the GUI thread only
        self._collections = FullCollections()
        self._arrived.connect(self._dispatch, Qt.ConnectionType.QueuedConnection)
        self._thread = threading.Thread(target=self._serve, name="callpath-asyncio", daemon=True)
        self._thread.start()

    # --- GUI thread API ---------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return self._busy

    @property
    def loop_thread(self) -> threading.Thread:
        return self._thread

    def start(self, source: RunSource | CheckSource, hold: HoldConfig | None = None) -> None:
        """Start a run of ``source``; one run at a time. With ``hold``, the best calls are
        kept going after the verdict (``callpath.core.call.hold``)."""
        if self._busy:
            raise RuntimeError("a run is already going")
        if not self._thread.is_alive():
            raise RuntimeError("the bridge has been shut down")
        self._set_busy(True)
        self._collections.run_started()
        self._loop.call_soon_threadsafe(self._begin, source, hold)

    def stop(self) -> None:
        """Cancel the engine task; the engine stops its paths and returns a partial result."""
        if self._busy and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._cancel)

    def pending_tasks(self, timeout: float = 5.0) -> int:
        """How many asyncio tasks are alive on the loop thread (0 when idle)."""
        future = asyncio.run_coroutine_threadsafe(self._count_tasks(), self._loop)
        return future.result(timeout)

    def shutdown(self, timeout: float = SHUTDOWN_TIMEOUT_S) -> None:
        """Stop any run, release the loop's executor threads and join the loop thread."""
        if not self._thread.is_alive():
            return
        future = asyncio.run_coroutine_threadsafe(self._drain(timeout), self._loop)
        with contextlib.suppress(Exception):
            future.result(timeout * 2 + 1)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
        if self._thread.is_alive():
            logger.warning("the asyncio thread did not stop within %.0f s", timeout)
        self._set_busy(False)
        self._collections.run_ended()

    # --- loop thread ------------------------------------------------------------------------

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        # Import what a run needs now, while the app starts, not when Start is pressed: a first
        # import holds the interpreter lock for tens of milliseconds and would stall the window.
        for module in WARM_UP_MODULES:
            with contextlib.suppress(ImportError):
                importlib.import_module(module)
        try:
            self._loop.run_forever()
        finally:
            with contextlib.suppress(Exception):
                self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()

    def _emit(self, event: Event | CheckProgress | _RunEnded) -> None:
        self._arrived.emit(event)

    def _begin(self, source: RunSource | CheckSource, hold: HoldConfig | None = None) -> None:
        running = (
            source.run(self._emit)
            if isinstance(source, CheckSource)
            else run_source(source, self._emit, hold)
        )
        self._task = self._loop.create_task(running, name="callpath run")
        self._task.add_done_callback(self._ended)

    def _cancel(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()

    def _ended(self, task: asyncio.Task[RunResult | CheckResult]) -> None:
        self._task = None
        if task.cancelled():
            self._emit(_RunEnded(None, _("The test was stopped before any path was tried.")))
            return
        error = task.exception()
        if error is not None:
            logger.error("the run failed", exc_info=error)
            message = _("The test could not run: {error}").format(error=error)
            self._emit(_RunEnded(None, message))
            return
        self._emit(_RunEnded(task.result()))

    async def _count_tasks(self) -> int:
        return len(asyncio.all_tasks() - {asyncio.current_task()})

    async def _drain(self, timeout: float) -> None:
        tasks = asyncio.all_tasks() - {asyncio.current_task()}
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
        # aiortc encodes and decodes in the default executor; join its threads too.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._loop.shutdown_default_executor(), timeout)

    # --- back in the GUI thread -------------------------------------------------------------

    def _dispatch(self, event: Event | CheckProgress | _RunEnded) -> None:
        if isinstance(event, RunStarted):
            self.runStarted.emit(event)
        elif isinstance(event, StageStarted):
            self.stageStarted.emit(event)
        elif isinstance(event, StageFinished):
            self.stageFinished.emit(event)
        elif isinstance(event, SampleTaken):
            self.sampleTaken.emit(event)
        elif isinstance(event, PathFinished):
            self.pathFinished.emit(event)
        elif isinstance(event, RunFinished):
            self.runFinished.emit(event)
        elif isinstance(event, HoldSampleTaken):
            self.holdSampleTaken.emit(event)
        elif isinstance(event, HoldStarted):
            self.holdStarted.emit(event)
        elif isinstance(event, HoldPathEnded):
            self.holdPathEnded.emit(event)
        elif isinstance(event, CheckProgress):
            self.checkProgress.emit(event.text)
        elif isinstance(event, _RunEnded):  # other core events (DiagnosisFinished) are not shown
            self._set_busy(False)
            self._collections.run_ended()
            if isinstance(event.result, CheckResult):
                self.checkCompleted.emit(check_to_dict(event.result))
            elif event.result is not None:
                self.runCompleted.emit(event.result)
            else:
                self.runFailed.emit(event.message)

    def _set_busy(self, busy: bool) -> None:
        if busy != self._busy:
            self._busy = busy
            self.busyChanged.emit(busy)
