"""Adaptive concurrency: how many model calls one endpoint has in flight.

An AIMD limit, as TCP's congestion control (Jacobson 1988; RFC 5681):

* **slow start** — from ``start`` calls in flight, each success raises the
  limit by one (it doubles every round of calls) until the first congestion
  signal;
* **congestion avoidance** — then each success raises it by 1/limit (one
  more call per round);
* **multiplicative decrease** — a 429, 503 or 529 answer or a timeout halves
  it (never below 1), at most once per round: signals from calls that
  started before the last decrease are counted but do not halve it again;
* never above ``cap``;
* **queueing** — a provider that queues calls without refusing any (one
  slot, like llama.cpp's server) is seen by its latency and throughput and
  the limit lowered to what it serves at once (:mod:`llmops_cli.run.queueing`,
  as TCP Vegas and Netflix's ``concurrency-limits`` Gradient2).

A call holds its slot through its retries (so a dead provider costs one
round of calls before the run's early stop, not one per case); each failed
attempt is a signal (:meth:`AdaptiveLimit.note`). A fixed limit
(``--concurrency N``) is the same object with adaptation off.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, AsyncIterator, Callable

if TYPE_CHECKING:
    import asyncio

from llmops_cli.run.queueing import DelaySignal

DEFAULT_START = 8  # calls in flight at the start of an adaptive run
DEFAULT_CAP = 64  # the most an adaptive run reaches (--max-concurrency)


class Skipped(Exception):
    """A call not started because the run had already stopped early."""


@dataclass
class LimitStats:
    """What a limit saw: ``peak`` calls in flight at once (the level the run
    reached),
    ``throttled`` 429 answers, ``congestion`` all congestion signals (429,
    503, 529, timeouts), ``final`` the limit at the end."""

    peak: int
    throttled: int
    congestion: int
    final: int


class AdaptiveLimit:
    """An AIMD limit on calls in flight (see the module docstring).

    Args:
        start: calls allowed in flight at first (≥ 1).
        cap: the most ever allowed (≥ 1); ``start`` is clipped to it.
        adaptive: False keeps the limit at ``start`` (``--concurrency N``).
        classify: maps an exception raised inside :meth:`slot` to ``"429"``,
            ``"congestion"`` (other overload signals) or ``None``.
        delay: also lower the limit on a queue seen in the latencies
            (:mod:`llmops_cli.run.queueing`; needs :meth:`observe`); adaptive only.
        clock: seconds, monotonic (tests pass a virtual one).
    """

    def __init__(self, start: int = DEFAULT_START, cap: int = DEFAULT_CAP, *, adaptive: bool = True,
                 classify: Callable[[BaseException], str | None] = lambda exc: None, delay: bool = True,
                 clock: Callable[[], float] = time.perf_counter):
        self.cap = max(1, cap)
        self.limit = float(max(1, min(start, self.cap)))
        self.adaptive = adaptive
        self._classify = classify
        self._in_flight = 0
        self._slow_start = True
        self._round = 0  # bumped at every decrease
        self._cond: asyncio.Condition | None = None  # an asyncio.Condition, made inside the running loop
        self.peak = 0
        self.throttled = 0
        self.congestion = 0
        self._clock = clock
        self.delay = DelaySignal() if adaptive and delay else None

    @contextlib.asynccontextmanager
    async def slot(self, abort: Callable[[], bool] | None = None) -> AsyncIterator[int]:
        """Hold one of the limit's slots for one call (all its attempts). A
        call that ends without an exception counts as a success. Yields the
        round the call started in, for :meth:`note`.

        Raises:
            Skipped: ``abort()`` was true once a slot was free (the run's
                early stop): the call is not made."""
        if self._cond is None:
            import asyncio  # here, not at import: a fully cached run never needs it

            self._cond = asyncio.Condition()
        async with self._cond:
            await self._cond.wait_for(lambda: self._in_flight < int(self.limit))
            if abort is not None and abort():
                self._cond.notify(1)  # the free slot passes on
                raise Skipped
            self.acquired()
        succeeded = False
        try:
            yield self._round
            succeeded = True
        finally:
            async with self._cond:
                self.released(succeeded)
                # wake only as many waiters as there are free slots: waking all of them on every release is
                # quadratic in the calls waiting (10,000 cases: 20 s of the run)
                self._cond.notify(max(0, int(self.limit) - self._in_flight))

    def acquired(self) -> None:
        """A call takes a slot (the synchronous part of :meth:`slot`)."""
        if self.delay is not None:
            self.delay.flow(self._clock(), self._in_flight, self)
        self._in_flight += 1
        self.peak = max(self.peak, self._in_flight)

    def released(self, succeeded: bool) -> None:
        """A call gives its slot back; a success raises the limit (slow start
        +1, else +1/limit) unless the delay signal holds it."""
        if self.delay is not None:
            self.delay.flow(self._clock(), self._in_flight, self)
        self._in_flight -= 1
        if succeeded and self.adaptive and not (self.delay is not None and self.delay.holds(self.limit)):
            self.limit = min(float(self.cap), self.limit + (1.0 if self._slow_start else 1.0 / self.limit))

    def observe(self, latency_s: float) -> None:
        """An answer arrived ``latency_s`` seconds after its (answering)
        attempt was sent: the delay signal's sample. Call it inside the slot."""
        if self.delay is not None:
            self.delay.sample(self._clock(), latency_s, self)

    def note(self, exc: BaseException, started_in: int) -> None:
        """A failed attempt of a call that started in round ``started_in``:
        a congestion signal halves the limit, once per round."""
        signal = self._classify(exc)
        if signal is None:
            return
        self.congestion += 1
        self.throttled += signal == "429"
        if self.adaptive and started_in == self._round:
            if self.delay is not None:
                self.delay.congested(self)
            self.limit = max(1.0, self.limit / 2)
            self._slow_start = False
            self._round += 1

    def stats(self) -> LimitStats:
        return LimitStats(self.peak, self.throttled, self.congestion, int(self.limit))
