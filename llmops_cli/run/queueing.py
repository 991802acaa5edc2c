"""The delay signal of the adaptive concurrency limit: seeing a provider that
queues calls instead of refusing them.

A server that answers a fixed number of requests at a time and queues the
rest without complaint (llama.cpp's server has one slot; Ollama, TGI and vLLM
under load queue too; hosted APIs often queue before they answer 429) never
sends the 429/503 the AIMD limit (:mod:`llmops_cli.run.concurrency`) backs off on:
the limit grows, every extra call waits in the server's queue, and the run's
latencies measure that queue. Delay-based congestion control sees it, as TCP
Vegas does (Brakmo & Peterson 1995, "TCP Vegas: end to end congestion
avoidance on a global Internet", IEEE JSAC 13(8)) and Netflix's
``concurrency-limits`` (``VegasLimit``, ``Gradient2Limit``,
https://github.com/Netflix/concurrency-limits) do for services:

* **baseline latency** — the least latency of any answering attempt (Vegas'
  ``rtt_noload``), raised to a window's mean latency once that window is shown
  not to have queued (below);
* **windows** — the completions are cut into windows of at least
  :data:`MIN_WINDOW` calls (half the limit once it is larger) and
  :data:`ROUNDS` baseline latencies; an answer slower than :data:`QUEUE_RATIO`
  times the least pauses slow start until its window is judged (as HyStart
  ends TCP's slow start on a rising delay, Ha & Rhee 2011), and the run's
  first window is judged after :data:`MIN_WINDOW` answers already; each gives the
  throughput X (calls per second), the mean latency R and the time-averaged
  calls in flight N; a window whose N is under half the limit (the run is
  running out of work) decides nothing;
* **queue suspected** — a window's R is more than :data:`QUEUE_RATIO` times
  the baseline (two windows in a row; the window that ended slow start
  alone): by Little's law (N = X·R) the calls that were served rather than
  queued are about X·baseline; when that (times :data:`HEADROOM`) is at most
  :data:`PROBE_SHARE` of the limit, the limit is lowered to it — a *probe*;
* **the throughput decides** — the first window of :data:`VERDICT_WINDOW`
  answers at the lower limit (once the calls in flight have drained to it)
  is compared with the throughput before: a queue keeps it, no queue lowers
  it in proportion to the limit; judged at their geometric midpoint, and at
  least :data:`KEEP_SHARE` of it kept (X_after ≥ X_before·max(0.8,
  √(lower/before))). Kept: the queue is confirmed and the
  lower limit is the *knee*. Fallen: the calls were being served, the latency
  is the provider's own (answers of different lengths, a slow model): the
  limit goes back, slow start resumes if it was on, the baseline becomes the
  window's mean latency and the next probe needs twice the ratio (up to 4×);
* **the run's first window** — its calls were all sent at once, so the
  least latency seen holds our own start-up work and may have queued: once
  an answer in it is slow, no call is sent until the window is judged (each
  one sent then would wait behind the whole burst), and a knee it finds is
  checked by a try below it after one window instead of :data:`HOLD` (when
  that try loses throughput, the knee stands and is held as any other);
* **above the knee** the limit does not grow with each success; after
  :data:`HOLD` windows at the knee it tries one window at 1.25× the knee (at
  least one more call); it stays there only when the throughput rose by at
  least :data:`GAIN_SHARE` of the rise in calls (``Gradient2``'s "latency
  rose with the limit but the throughput did not": back to the knee, and the
  next try waits twice as long, up to :data:`MAX_HOLD` windows); a try whose
  first :data:`MIN_WINDOW` answers already took too long for the throughput
  to have risen (Little's law) ends there;
* **below the knee** — tries alternate with one at half the knee, judged as a
  probe (as BBR's ProbeRTT drains its queue to re-measure the least delay):
  when no call was ever alone at the server, even the least latency seen
  had queued, and only a lower limit shows it.

Throughput is measured two ways: answers over the window's time (right while
the calls in flight change, noisy when answers come in bursts) and Little's
N/R (steadier, but only once the calls in flight have settled), the latter
for windows judged in a steady state.

Against one slot the limit settles at 1 (trying 2 now and then); against a
server with room for every call (64 slots, 200 ms) no window suspects a queue
until the client's own CPU becomes the bottleneck, where the same test keeps
the limit at the level that still adds throughput. Its cost where nothing
queues but latencies vary a lot (heavy-tailed answer lengths): a probe or
two early in the run; in ``tests/test_queueing.py``'s simulation (2,000
calls, no limit at the server) 1.07–1.28× the wall time without the signal
over twelve seeds (lognormal σ 0.5 and 0.9; median 1.15). Against a server
with a few slots (4) it holds about twice their number in flight.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol


class SteeredLimit(Protocol):
    """What the delay signal reads and sets on the limit it steers
    (:class:`~llmops_cli.run.concurrency.AdaptiveLimit`, which imports this
    module): the limit (calls in flight), its cap, the calls in flight now,
    and whether it is still in slow start."""

    limit: float
    cap: int
    _in_flight: int
    _slow_start: bool

MIN_WINDOW = 4  # completions per window at least
ROUNDS = 2  # a window lasts this many baseline latencies at least
QUEUE_RATIO = 1.5  # a window's mean latency above this many times the baseline: a queue is suspected
HEADROOM = 1.25  # the limit after a probe: this many times Little's estimate of the calls being served
KEEP_SHARE = 0.8  # a lower limit must keep this share of the throughput at least to confirm a queue
PROBE_SHARE = 0.5  # a suspected queue is probed only when Little's estimate is at most this share of the limit
VERDICT_WINDOW = 8  # completions at least in the window that judges a probe
GAIN_SHARE = 0.5  # a try above the knee must raise the throughput by this share of the rise in calls
HOLD = 8  # windows at the knee before the first try above it
MAX_HOLD = 64


@dataclass
class Window:
    """One window of completions: since ``start`` (seconds on the limit's
    clock), ``count`` answers whose latencies sum to ``latency_sum``, and the
    integral of calls in flight over time (``area``, call·seconds) up to ``last``."""

    start: float
    last: float
    area: float = 0.0
    count: int = 0
    latency_sum: float = 0.0
    fresh: tuple[int, float] = (0, 0.0)  # answers (and their latency sum) to calls sent within the window

    def measures(self, now: float) -> tuple[float, float, float]:
        """(throughput X in calls/s — answers over the window's time, mean
        latency R in s, mean calls in flight N)."""
        span = max(now - self.start, 1e-9)
        return self.count / span, self.latency_sum / max(self.count, 1), self.area / span


@dataclass
class Probe:
    """A limit change awaiting the throughput's verdict: ``kind`` ``"down"``
    (a suspected queue) or ``"up"`` (a try above the knee), with the limit,
    throughput, mean latency and slow-start state before it."""

    kind: str
    limit: float
    throughput: float
    latency: float
    slow_start: bool
    early: bool = False  # a probe of the run's first window: its baseline came from answers sent together


class DelaySignal:
    """The delay signal of one :class:`~llmops_cli.run.concurrency.AdaptiveLimit`
    (see the module docstring). The limit calls :meth:`flow` before each
    change in its calls in flight, :meth:`sample` with each answering
    attempt's latency (seconds), and asks :meth:`holds` before growing."""

    def __init__(self):
        self.min_latency: float | None = None
        self.base: float | None = None  # a window's mean latency shown not to queue
        self.knee: float | None = None
        self.knee_throughput: float | None = None
        self.probes = 0  # limit changes made by the delay signal (tests, the record)
        self._window: Window | None = None
        self._probe: Probe | None = None
        self._hold = HOLD
        self._wait = 0
        self._hystart = False  # slow start paused by a slow answer, until the window is judged
        self._first = True  # the run's first window is being measured
        self._fresh: float | None = None  # the closed window's mean latency of calls sent within it
        self._knee_slow_start = False  # whether slow start was on before the knee was found
        self._total = 0.0  # seconds, over all answers
        self._try_down = True  # the next try at the knee goes below it (they alternate)
        self._ratio = QUEUE_RATIO  # doubled after each probe that found no queue
        self._at_knee = (0.0, 0.0)  # (answers, seconds) at the knee since the last try above it
        self._suspects: list[float] = []  # the throughputs of the windows in a row that suggested a queue
        self._recheck = False  # the try below the knee under way checks a knee found in the run's first window
        self._paused_limit: float | None = None  # the limit while the first window's sending is paused

    def baseline(self) -> float | None:
        """The latency of a call that does not queue (seconds), or None before any answer."""
        if self.min_latency is None:
            return None
        return max(self.min_latency, self.base or 0.0)

    def _base(self) -> float:
        """:meth:`baseline` once an answer has set it (every caller runs after one)."""
        base = self.baseline()
        assert base is not None, "no answer yet"
        return base

    def holds(self, limit: float) -> bool:
        """Whether a success must not raise ``limit``: a probe is being
        measured, the first window's sending is paused, or the limit is at
        or above a confirmed knee."""
        return (self._probe is not None or self._paused_limit is not None
                or (self.knee is not None and limit >= self.knee))

    def congested(self, lim: SteeredLimit) -> None:
        """The limit is about to be halved on a 429/503/timeout: a probe in
        measurement is void (its window would measure the halving), slow
        start is over for good, and a paused first window's limit is the
        one halved."""
        self._probe, self._hystart = None, False
        self._resume(lim)

    def _resume(self, lim: SteeredLimit) -> None:
        """End the first window's pause, if on: the limit from before it is back."""
        if self._paused_limit is not None:
            lim.limit, self._paused_limit = self._paused_limit, None

    def flow(self, now: float, in_flight: int, lim: SteeredLimit) -> None:
        """Account ``in_flight`` calls up to ``now``, just before that count
        changes; a window starts once the calls in flight are within the limit
        (after a lower limit, when they have drained to it)."""
        w = self._window
        if w is not None:
            w.area += in_flight * (now - w.last)
            w.last = now
        elif in_flight <= int(lim.limit):
            self._window = Window(now, now)

    def sample(self, now: float, latency: float, lim: SteeredLimit) -> None:
        """One answer that took ``latency`` seconds (its answering attempt);
        closes the window when it is long enough and acts on it."""
        if latency < 0:
            return
        first = self.min_latency is None
        if self.min_latency is None or latency < self.min_latency:
            self.min_latency = latency
        w = self._window
        if w is None:
            return
        if first:  # the first window starts at the first answer: no answer can come sooner, whatever the limit
            w.start, w.area = now, 0.0
            return
        w.count += 1
        w.latency_sum += latency
        if now - latency >= w.start:
            w.fresh = (w.fresh[0] + 1, w.fresh[1] + latency)
        # in slow start the limit doubles every round: a queue seen already in the window's second answer is acted
        # on at once (as HyStart ends TCP's slow start on a rising delay), not a window of doubling later
        if lim._slow_start and latency > QUEUE_RATIO * self._base():
            lim._slow_start, self._hystart = False, True  # no more doubling until the window has been judged
            if self._first:
                # the run's first calls were all sent at once: a queue seen now is theirs, and every call sent
                # until the window is judged would wait behind all of them. None is sent until then
                self._paused_limit, lim.limit = lim.limit, 1.0
        # the run's first window alone: there answers over time measure a queue's throughput exactly (it starts at
        # the first answer); later windows in slow start come in bursts of a round, judged as any other
        early = (self._hystart and self._first and w.count >= MIN_WINDOW
                 and w.latency_sum / w.count > QUEUE_RATIO * self._base())
        least, late = MIN_WINDOW, False
        if self._probe is not None:
            least = VERDICT_WINDOW
        futile = self._probe is not None and self._probe.kind == "up" and self._futile(w, lim)
        if self._probe is not None and self._probe.kind == "down":
            # no queue: the throughput fell with the limit, and waiting for the window's answers one by one is slow;
            # judged as soon as the queue's throughput would have given them all
            late = now - w.start > 1.5 * VERDICT_WINDOW / (self._probe.throughput * self._keep(lim.limit, self._probe.limit))
        # a window spans ROUNDS baseline latencies at least: answers come in bursts, and a window of one burst
        # would measure the burst, not the throughput
        long_enough = now - w.start >= ROUNDS * self._base()
        if early or late or futile or (long_enough and w.count >= max(least, int(lim.limit) // 2)):
            w.area += lim._in_flight * (now - w.last)
            w.last = now
            self._window = Window(now, now) if lim._in_flight <= int(lim.limit) else None
            self._fresh = w.fresh[1] / w.fresh[0] if w.fresh[0] else None
            self._decide(*w.measures(now), now - w.start, lim, futile)

    def _futile(self, w: Window, lim: SteeredLimit) -> bool:
        """Whether a try above the knee has already failed, before its
        window is full: :data:`MIN_WINDOW` answers to calls sent at the
        higher limit took so much longer than at the knee that, by Little's
        law (X = N/R), the throughput cannot have risen by
        :data:`GAIN_SHARE` of the rise in calls (with a 20% margin). Against
        one slot this ends each try in half the answers; it never accepts one."""
        probe = self._probe
        assert probe is not None
        count, total = w.fresh
        if count < MIN_WINDOW or probe.latency <= 0:
            return False
        more = int(lim.limit) / int(probe.limit)
        return total / count > 1.2 * probe.latency * more / (1 + GAIN_SHARE * (more - 1))

    @staticmethod
    def _keep(lower: float, before: float) -> float:
        """The share of the throughput a lower limit must keep to confirm a
        queue: the geometric midpoint between a queue (all of it) and no
        queue (``lower/before`` of it), and at least :data:`KEEP_SHARE`."""
        return max(KEEP_SHARE, math.sqrt(int(lower) / int(before)))

    def _set(self, lim: SteeredLimit, value: float) -> None:
        lim.limit = max(1.0, min(float(lim.cap), value))
        if lim._in_flight > int(lim.limit):
            self._window = None  # the next window starts once the calls in flight drained to the new limit

    def _decide(self, x: float, r: float, n: float, span: float, lim: SteeredLimit, futile: bool = False) -> None:
        """Act on a closed window of ``span`` seconds: throughput ``x``
        (calls/s), mean latency ``r`` (s), mean calls in flight ``n``;
        ``futile``: a try above the knee already failed (:meth:`_futile`)."""
        probe, self._probe = self._probe, None
        recheck = self._recheck and probe is not None
        if probe is not None:
            self._recheck = False
        paused = self._hystart
        early, self._hystart = self._hystart and self._first, False
        self._first = False
        if paused:  # slow start was paused on one slow answer: the window judges it (a probe keeps it paused)
            lim._slow_start = True
        self._resume(lim)  # and the first window's sending with it
        # two measures of the throughput: answers over time (x), right even while the calls in flight change but
        # noisy when answers come in bursts; Little's law n/r, steadier but only once the calls in flight have
        # settled: used for the windows judged in a steady state (not the first, not one after a change)
        steady = n / r if r > 0 else x
        if probe is not None and probe.kind == "down":
            # a queue: the throughput stays; no queue: it falls with the limit. Judged at their geometric midpoint
            if x >= probe.throughput * self._keep(lim.limit, probe.limit):  # the removed calls were queueing
                self.knee, self.knee_throughput, self._wait = lim.limit, x, self._hold
                self._at_knee = (x * span, span)
                self._knee_slow_start = probe.slow_start
                if probe.early and int(lim.limit) >= 2:
                    # this knee is Little's law on the run's first answers, all sent together: the least of their
                    # latencies holds the client's own start-up work (and may have queued), so the knee may be too
                    # high. The first try below it comes after one window, not HOLD
                    self._wait, self._try_down, self._recheck = 1, True, True
            else:  # they were being served: this latency is the provider's own, not a queue
                # (the latency of the calls sent at the lower limit: those sent before may have queued behind others)
                self.base = max(self.base or 0.0, self._fresh if self._fresh is not None else r)
                lim._slow_start = probe.slow_start
                if recheck:  # the early knee was right: it stands, held as any knee
                    self._wait = self._hold
                else:
                    self._ratio = min(2 * self._ratio, 4 * QUEUE_RATIO)  # and a queue must show more clearly next time
                    if self.knee is not None:  # a try below the knee: the knee stands; the try above it comes next
                        self._wait = 1
                self._set(lim, probe.limit)
            return
        if probe is not None:  # a try above the knee
            more = int(lim.limit) / int(probe.limit)  # the calls in flight are whole
            if not futile and x >= probe.throughput * (1 + GAIN_SHARE * (more - 1)):
                self.knee = self.knee_throughput = None
                self._hold = HOLD
                lim._slow_start = self._knee_slow_start  # the knee was wrong or has moved: explore as before it
            else:  # latency rose with the limit, the throughput did not: back to the knee, try again later
                self._hold = min(MAX_HOLD, 2 * self._hold)
                self._wait = self._hold
                self._set(lim, probe.limit)
            return
        if n < 0.5 * int(lim.limit):
            return  # too few calls to fill the limit (the run is running out of work): the window says nothing
        base = self._base()
        # Little's law: the calls being served, with some headroom; the verdict compares answers over time with
        # answers over time (the same measure before and after)
        target = max(1.0, (x if early else steady) * base * HEADROOM)
        suspect = r > self._ratio * base and target <= PROBE_SHARE * lim.limit
        self._suspects = self._suspects + [x] if suspect else []
        # one window may be a run of long answers: a queue is acted on when two windows in a row show it (at once
        # in the window that ended slow start), against the higher of their throughputs
        if suspect and (early or len(self._suspects) >= 2):
            self._probe = Probe("down", lim.limit, max(self._suspects), r, lim._slow_start, early)
            self._suspects = []
            lim._slow_start = False
            self.probes += 1
            self._set(lim, target)
            return
        if self.knee is not None and lim.limit >= self.knee:
            self._at_knee = (self._at_knee[0] + x * span, self._at_knee[1] + span)
            self.knee_throughput = self._at_knee[0] / max(self._at_knee[1], 1e-9)  # over every window since the last try
            self._wait -= 1
            if self._wait <= 0:
                # tries alternate above and below the knee (as BBR drains its queue to re-measure the least delay):
                # the least latency seen may itself have queued when no call was ever alone at the server
                down = self._try_down and int(lim.limit) >= 2
                self._try_down = not self._try_down
                if down or lim.limit < lim.cap:
                    self._probe = Probe("down" if down else "up", lim.limit, self.knee_throughput, r, False)
                    self._at_knee = (0.0, 0.0)
                    self.probes += 1
                    self._set(lim, max(1.0, int(lim.limit) / 2) if down else max(lim.limit + 1, lim.limit * 1.25))
