"""A clean end for each asyncio run of model calls, interrupted or not.

When a run is stopped (Ctrl-C, SIGTERM, or a call that raised), the calls in
flight are cancelled. Left to ``asyncio.run``'s own clean-up, two kinds of
coroutine were never awaited and Python printed "coroutine ... was never
awaited" on stderr:

* tasks LiteLLM starts on the side (fire-and-forget logging hooks), some from
  the ``finally`` of the very call being cancelled — created after
  ``asyncio.run`` took its list of tasks to cancel, never started;
* the coroutine LiteLLM's ``acompletion`` gets back from the provider's
  set-up, which it runs in the loop's default executor: a call cancelled
  while that set-up runs drops it.

A third showed in CI (1 run of ~20): "Task was destroyed but it is
pending!" for LiteLLM's ``async_service_success_hook``, a task created while
``asyncio.run`` was already closing the loop (by a callback run in the last
turn of its clean-up), so it was never started and the loop's ``close()``
dropped it.

:func:`settle` cancels and awaits every task until none is left, waits for
the executor, then closes the coroutines its jobs returned that nobody awaited
(:class:`ClosingExecutor` keeps them). :func:`run` is ``asyncio.run`` with a
clean-up that repeats until no task is left, after each of its steps.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class ClosingExecutor(ThreadPoolExecutor):
    """A thread pool (to be the loop's default executor) that keeps every
    coroutine its jobs return, so that :meth:`close_orphans` can close the
    ones nobody awaited."""

    def __init__(self) -> None:
        super().__init__(thread_name_prefix="llmops-asyncio")
        self._returned: list[Any] = []
        self._lock = threading.Lock()

    def submit(self, fn, /, *args, **kwargs) -> Future:
        fut = super().submit(fn, *args, **kwargs)
        fut.add_done_callback(self._keep)
        return fut

    def _keep(self, fut: Future) -> None:
        if fut.cancelled() or fut.exception() is not None or not inspect.iscoroutine(fut.result()):
            return
        with self._lock:
            if len(self._returned) >= 1024:  # forget the ones already awaited to the end
                self._returned = [c for c in self._returned if inspect.getcoroutinestate(c) != inspect.CORO_CLOSED]
            self._returned.append(fut.result())

    def close_orphans(self) -> int:
        """Close every returned coroutine that was never started; how many."""
        with self._lock:
            returned, self._returned = self._returned, []
        orphans = [c for c in returned if inspect.getcoroutinestate(c) == inspect.CORO_CREATED]
        for c in orphans:
            c.close()
        return len(orphans)


async def settle(executor: ClosingExecutor | None = None, rounds: int = 5) -> None:
    """Cancel every other task on the running loop and wait until all are
    done (a few rounds: cancelling a task can create another); then, given
    the loop's ``executor``, wait for its jobs and close the coroutines they
    returned that nobody awaited. Call it last, in a ``finally``, from the
    task that ``asyncio.run`` runs."""
    me = asyncio.current_task()
    for _ in range(rounds):
        rest = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
        if not rest:
            break
        for t in rest:
            t.cancel()
        await asyncio.gather(*rest, return_exceptions=True)
    if executor is not None:
        await asyncio.get_running_loop().shutdown_default_executor()
        executor.close_orphans()


def run(main: Coroutine[Any, Any, T], rounds: int = 10) -> T:
    """Run ``main`` on a new event loop and return its result, as
    ``asyncio.run`` does; but before the loop is closed, every task is
    cancelled and awaited again after each clean-up step (async generators
    closed, default executor shut down), so a task that LiteLLM starts from a
    ``finally`` or a callback during the clean-up is run to its end or
    cancelled, never dropped pending.

    Args:
        main: the coroutine to run.
        rounds: at most this many cancel-and-wait rounds per step (a
            cancelled task can start another).

    Raises:
        whatever ``main`` raises; ``KeyboardInterrupt`` where a signal landed.
    """
    loop = asyncio.new_event_loop()
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(main)
    finally:
        try:
            _drain(loop, rounds)
            loop.run_until_complete(loop.shutdown_asyncgens())
            _drain(loop, rounds)
            loop.run_until_complete(loop.shutdown_default_executor())
            _drain(loop, rounds)
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def _drain(loop: asyncio.AbstractEventLoop, rounds: int) -> None:
    """Cancel and await every task left, then give the callbacks already
    scheduled one more turn (one may start a task), until a turn starts none
    (at most ``rounds`` times). The turn's own task can be cancelled by a
    task's clean-up (:func:`settle` cancels every other task): then again."""
    for _ in range(rounds):
        rest = asyncio.all_tasks(loop)
        if rest:
            for t in rest:
                t.cancel()
            loop.run_until_complete(asyncio.gather(*rest, return_exceptions=True))
            continue
        try:
            loop.run_until_complete(asyncio.sleep(0))
        except asyncio.CancelledError:
            continue
        if not asyncio.all_tasks(loop):
            return
