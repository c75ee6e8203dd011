"""The hand-written parts of docs/performance.md (the tables between them are generated).

Figures of the engine's configuration are read from its defaults when the file is written, so
the explanations follow the code.
"""

from callpath.core.model.config import QualityConfig, Timeouts

PROLOGUE = """# Performance

How fast, how accurate and how cheap a CallPath diagnosis is, measured on this project's own
machine with the scripts in `bench/`. **This file is generated** by `python -m bench.run`; edit
`bench/performance_text.py` for the prose.

```sh
python -m bench.run --quick    # a small subset of everything, under two minutes
python -m bench.run --full     # every grid cell and ramp step (about 40 minutes)
python -m bench.run --report   # rewrite this file from bench/results/*.json only
```

Every benchmark runs in its own process, one after another, and writes
`bench/results/NAME-MODE.json` with the exact command, the time, the CPU count and the load
average when it started. The test suite never runs them (`tests/test_bench_quick.py` only checks
their pure helpers). Numbers taken while other work runs on the machine are noisy: regenerate on
a quiet machine before quoting them. The capacity benchmark's Janus half needs root (Janus runs
in a network namespace, see `tests/servers.py`); without it the row says why it is missing.

## What is measured, and how

**Time to verdict** (`bench/verdict_time.py`). One lab per scenario (its start-up is reported
apart, not counted); in it one Engine with every lab path, exactly as `callpath lab` runs it.
Times count from the engine's `RunStarted` event:

- *first failure*: the first `StageFinished` that carries a failure (a path shown blocked);
- *first media*: the first successful `media_up` (voice and video flow both ways on a path that
  is proven to go the way under test: the user can already be told "calls get through on X");
- *first path*: the first `PathFinished` (a path fully measured or given up);
- *first finding* = the earliest of the three: the first moment the user learns something
  definite about one path; the ≤ 3 s target is checked against it;
- *verdict*: the engine's result (before the diagnosis, whose `RunFinished` follows).

In the same process and lab, the same paths are then run *one Engine per path, one after
another*; the ratio parallel / sequential is taken from these two measurements. The sequential
runs come second and so run warm (a conservative ratio). Scenarios: the presets `open-network`,
`udp-blocked`, `russia-2025` and `bench/scenarios/everything-blocked.yaml` (all UDP dropped,
TCP connections to the relay's TCP and TLS ports never answered: every path fails by timeout,
the slowest possible verdict). The full mode also runs the open network with eight calls
(the lab's paths, cycled), the brief's "up to 8 paths".

**Accuracy** (`bench/accuracy.py`). A grid of injected round trip (0, 50, 150, 300 ms) × per
packet jitter (uniform ±0, 10, 30, 50 ms on each leg) × random loss (0, 2, 5, 10, 20 % each
way) through the lab censor, one Engine run of the `direct` path per cell (quick mode: two
cells). The measurement is voice in the upstream (`sent`) direction: the echo peer's receiver
reports about what we sent, which crossed the censor once (see docs/lab.md). The truth is taken
from the datagrams the censor actually handled (a wrapper around `Censor.evaluate` in the
benchmark sees every datagram of the call with the censor's decision), never assumed:

- *RTT truth* = mean delay of the outbound STUN Binding requests + mean delay of the inbound
  answers in the window: the engine's round trips are STUN checks on the media's candidate pair,
  about 40 a second (`QualityConfig.rtt_check_interval_s`), and it reports the median of the
  per-second means. Under jitter one check spreads by ±(2 J), so the table also says whether an
  error is within 2 standard errors of that estimate ("within sampling");
- *jitter truth* = the RFC 3550 estimator run over the delays the censor gave to the voice RTP
  packets, in order (steady-state mean over the window). With independent uniform ±J delays it
  would tend to 2J/3; the lab keeps each flow in order (a packet never overtakes the one before,
  as in a FIFO queue), which correlates consecutive delays and lowers it (≈ 14 ms instead of
  20 ms for ±30 ms);
- *loss truth* = the injected probability p; the target is |measured − p| ≤ 1.5 × the binomial
  standard error √(p(1−p)/n) for the n voice packets sent in the quality window (the realised
  fraction is shown too: the difference between the two is chance, not measurement error).

**Cost** (`bench/cost.py`). `python -m callpath.core.cli.main lab --scenario open-network --jsonl`
in a child
process; `os.wait4` returns that child's own CPU time (user + system) and peak resident memory
(`ru_maxrss`). The lab's servers (TURN relay, censor, echo peer, which transcodes every call)
run in the same process, so a diagnosis against remote servers costs less than this.

**GUI stalls** (`bench/gui_stall.py`). The real `MainWindow` and `RunBridge`, offscreen, run a
lab scenario through a run source (quick: the open network once; full: the open network and
Russia 2025, twice each); a 1 ms `QTimer` (precise) ticks in the GUI thread and the longest gap
minus 1 ms is the longest stall, counted until half a second after the verdict page is shown.
An idle baseline of 2 s comes first. A watchdog thread notes what the asyncio thread was doing
when the GUI was late (it needs the GIL too, so it sees the moment just after).

**Echo capacity** (`bench/capacity.py`, `bench/loadgen.py`). Ramp 1, 2, 4, 8, 16, 32 concurrent
audio+video echo calls against one `callpath echo-server --ice-address 127.0.0.1` process, then
against Janus's echotest (in its namespace), the same load each time. A step is sustained when
every call connected and had loss < 1 % (audio and video, both directions), voice MOS ≥ 4 and
at least 90 % of the audio and 80 % of the video frames echoed back whole. The load generator
runs in separate processes (up to 8 calls each) and is kept light so that it is not the
bottleneck: media is encoded once and replayed as packets, and received media is counted per
frame but not decoded. Its CPU is recorded per process beside the server's; on this 2-core
machine server and generators share the cores, so the last step of a ramp is only a server
limit when the generators use well under a core.

On two cores Janus outlasts what the generators can drive (at 32 calls they take a core), so
the whole-machine ramp cannot find its ceiling. The ratio is therefore also measured at **equal
CPU budgets**: each server in turn is held to the same share of one core by a cgroup CPU
quota (20 ms periods, so throttling adds at most a few tens of milliseconds), and ramped in finer
steps until it fails; both ceilings then lie well within the generators' reach. The capacity is
the largest step sustained (the true value lies below the next step).
"""

EPILOGUE_TEMPLATE = """## Reading the results

- **First finding.** No stage can fail before its timeout when the censor drops silently: the
  earliest failure is TURN-over-UDP's Allocate going unanswered, bounded by
  `Timeouts.turn_allocate` = {allocate:g} s (three transmissions at aioice's retransmission
  schedule). On a network where something works, the first finding is the first path whose
  media flows both ways (`media_up`), well before its {window:g} s quality window ends.
- **Eight paths in ≤ 12 s.** Connectivity runs for every path at once; media is measured
  {concurrency} paths at a time (`QualityConfig.concurrency`) for {window:g} s each, so eight
  working paths need {rounds} rounds of media_up + window after connectivity. With 2 at a
  time (until this version) eight paths took 12.8 s; 3 at a time brought them to about 9.6 s
  and five paths from 9.6 to 6.4 s, with every lab scenario still graded as before and a run
  still under 5 CPU-seconds (the lab, its servers and three calls share one event loop).
- **Jitter** measured with the RFC 3550 estimator is not the ±J of the network: with the lab's
  in-order delays the estimator's own truth is well below 2J/3. Compare against the applied
  delays, as here, not against J.
- **Short windows under-read jitter.** Media starts only when a path gets its measurement slot,
  so the first receiver reports of the window come from an estimator that has not converged
  (its time constant is 16 packets, 0.32 s of voice) and pull the median of a few per-second
  values down: in one run of the ±30 ms cell the error was −3.3 ms with a 5 s window and
  −0.4 ms with a 10 s window.
- **RTT under jitter.** Until this version the round trip came from RTCP: one reading a second
  per stream, each the sum of two jittered legs, so under ±30–50 ms of jitter a 3-second median
  missed the truth by 10–30 ms (29 of 79 cells of the previous full grid failed, all with
  jitter). The engine now times STUN checks on the media's own candidate pair, about 40 a
  second (RFC 7675 consent checks are the same packets, answered at once by the far ICE agent,
  through any relay or tunnel), and takes the median of per-second means: 76 of 79 measured
  cells are now within target. The three that are not all have ±50 ms of jitter and read 3–6 ms
  high, a bias rather than noise (each cell averages 300–400 checks). The lab's censor records
  the delay it scheduled, not when its single event loop released the packet, and the client
  handles an answer only when its own loop gets to it; both lags add to the measurement, never
  to the truth, and grow with the packet bursts heavy jitter makes. Not chased further.
- **Echo server against Janus.** `callpath echo-server` now echoes RTP packet by packet, as
  Janus's echotest does (`core/call/rtp_forwarding.py`, wired in `core/call/library_adapter.py`): no
  jitter buffer, no depacketising, no re-packetising. Over plain UDP a packet is decrypted,
  counted for the receiver reports, given the echo's SSRC, encrypted and sent inside the ICE
  datagram callback, with no queue or task switch; feedback goes where Janus sends it (the
  caller's REMB about the echo to the caller's own sender, so the echo runs no bandwidth
  estimator; keyframe requests to the caller; NACKs answered from the packets sent, or asked of
  the caller for packets lost on the way in). On the whole machine the echo server now uses
  8.4 / 15.0 / 25.3 % of a core for 8 / 16 / 32 calls, Janus 6.7 / 11.8 / 24.6 % (the frame
  echo of the previous version: 19.5 / 33.0 / 55.4 %). Held to the same 8 % of a core, the
  echo server sustained 10 calls and Janus 20: a ratio of 0.5, the target, met at the ramp's
  resolution and no more (the true capacities lie below the next steps, 12 and 24, so the
  true ratio is somewhere between 0.42 and 0.6; in the previous run Janus held 16 at this
  budget). The budgeted steps fail where a server runs out of its share (MOS and echoed frames
  drop), with the generators far from busy. What remains per packet is Python on one event
  loop (about one wake-up per 1.5 packets), the SRTP wrapper's buffer copies, and one
  `sendto`, which on loopback also carries the kernel's delivery to the receiving socket (a
  third of the echo's time under `cProfile`); Janus pays the same `sendto` in C. Because
  sequence numbers pass through, a packet lost upstream is missing downstream too: the engine
  now reports the downstream share of the loop's loss
  (`callpath.core.call.engine.downstream_loss_pct`).
  The load generator replays pre-encoded media and counts echoed frames without decoding them
  (a few % of a core per call; see the generators column).
- **GUI stall.** Two stalls used to come once at the start of each run, and neither was the
  core holding the interpreter lock. (1) ~200 ms: the Running page rebuilt its path rows when
  `RunStarted` arrived although `begin` had just built the same rows, and the rebuild made Qt
  lay out the text of every page again (found with `perf`: the GUI thread was in Qt's text
  layout, not waiting for the lock). It now keeps rows that match. (2) ~50–70 ms: a full
  garbage collection, which walks every object of the process and stops every thread; the
  first peer connections allocate enough to trigger one. `callpath.gui.bridge.FullCollections`
  freezes
  what is alive when the first run starts (modules, widgets) out of later collections and
  holds full collections back while a run goes (young generations are still collected). (3)
  Laying out the support-staff details (a long document: every path's stages and samples) with
  the verdict page cost 20–40 ms; they are now laid out when first opened. What remains is the
  verdict page's own first layout after the run (20–34 ms in this run, up to 46 ms in earlier
  ones) and sub-30 ms bumps.
- **Loss** tolerance of 1.5 standard errors is a statistical target: even a perfect estimator
  misses it for about 13 % of cells by chance. The "loss realised" column separates chance
  (realised vs injected) from measurement error (measured vs realised).

## Regenerating

On a quiet machine (nothing else running; the load average is recorded in each JSON):

```sh
python -m bench.run --full     # then commit bench/results/*-full.json and this file
```
"""


def epilogue() -> str:
    timeouts, quality = Timeouts(), QualityConfig()
    return EPILOGUE_TEMPLATE.format(
        allocate=timeouts.turn_allocate,
        window=quality.window_s,
        concurrency=quality.concurrency,
        rounds=-(-8 // max(1, quality.concurrency)),
    )
