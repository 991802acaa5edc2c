"""Executing a plan's requests: answers from the cache, else calls through
LiteLLM (:mod:`.provider`) with bounded concurrency per endpoint, retries,
every answer cached as it arrives, and an early stop once the run can no
longer complete.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from llmops_cli.core.cache import Cache
from llmops_cli.plan.requests import Request
from llmops_cli.run.concurrency import DEFAULT_CAP, DEFAULT_START, AdaptiveLimit, LimitStats
from llmops_cli.run.provider import api_key, call_model, check_credentials, congestion_signal, import_litellm, str_or_none, warm_up
from llmops_cli.record.schema import Call

if TYPE_CHECKING:
    from llmops_cli.plan.endpoint import Endpoint

DEFAULT_RETRIES = 8  # retries per call on 429/5xx/connection errors/timeouts
# what the cache keeps of a call: the answer, who served it, its usage, first latency and token log-probability
# totals; never credentials
CACHED_FIELDS = {"output", "response", "prompt_tokens", "completion_tokens", "cost_usd", "latency_s", "served_model",
                 "system_fingerprint", "logprob_sum", "logprob_tokens", "deployment"}


class Progress:
    """Counts resolved requests for a progress display: ``add(n)`` when more
    requests are planned (e.g. judge calls after the answers), ``tick()``
    after each; ``report(done, total)`` is called on every tick."""

    def __init__(self, report: Callable[[int, int], None] | None = None):
        self.done = 0
        self.total = 0
        self._report = report

    def add(self, n: int) -> None:
        self.total += n

    def tick(self) -> None:
        self.done += 1
        if self._report:
            self._report(self.done, self.total)


def _cached_call(value: dict[str, Any], repeat: int) -> Call:
    """A cached answer as this run's call: ``cached``, no retries of its own,
    and the latency recorded when it was first answered (None for answers
    cached before latencies were kept)."""
    call = Call.model_validate({**value, "repeat": repeat})
    raw = value.get("response")  # the cached dict itself: reading call.response would parse its JSON text per key
    if "served_model" not in value and isinstance(raw, dict):  # cached before served_model was kept
        call.served_model = str_or_none(raw.get("model"))
        call.system_fingerprint = str_or_none(raw.get("system_fingerprint"))
    call.cached = True
    call.retries = 0
    return call


def _ep(req: Request) -> Endpoint:
    """The endpoint a request to send goes to: only a request whose ``call``
    is given up front (outputs read from a file) has none, and it is never sent."""
    assert req.endpoint is not None, "a request without an endpoint is never sent"
    return req.endpoint


async def _answer_all(todo: list[Request], cache: Cache | None, concurrency: int | None, max_concurrency: int,
                      retries: int, on_done: Callable[[], None], max_failed_cases: int | None,
                      config_path) -> LimitStats:
    """Make every call in ``todo``: per endpoint an adaptive limit on calls in
    flight (:mod:`llmops_cli.run.concurrency`; fixed at ``concurrency`` when
    given), the embedded model one at a time, so latency measures the call,
    not a queue; an endpoint with deployments has one limit for all of them
    (the Router picks the deployment once a slot is taken) and one
    ``litellm.Router`` (:mod:`llmops_cli.run.deployments`), discarded at the end.
    Returns what the limits saw, summed over endpoints. An answer from a
    fallback model is recorded but not cached: the cache holds the logical
    model's answers.

    Once more than ``max_failed_cases`` cases have a call that failed after
    its retries, the run can no longer complete: calls not yet started are
    skipped (their ``req.call`` stays ``None``), so a dead provider costs one
    round of retries rather than one per case. Calls already in flight finish
    (their answers may be paid for, and are cached)."""
    import asyncio

    from llmops_cli.run import local_model

    litellm = import_litellm()
    keys = {ep: api_key(ep, config_path) for ep in {_ep(r) for r in todo}}
    limits: dict[tuple, AdaptiveLimit] = {}
    for ep in keys:
        if ep.route not in limits:
            fixed = local_model.MAX_CONCURRENCY if ep.is_local else concurrency
            limits[ep.route] = AdaptiveLimit(fixed or DEFAULT_START, fixed or max_concurrency, adaptive=fixed is None,
                                             classify=congestion_signal)
    failed: set[int] = set()
    routed: dict = {}  # route → RoutedCalls, for endpoints with deployments
    from llmops_cli.run.budget import STOPPED, current

    budget = current()  # --max-cost: once the spend passes it, no call is started

    def hopeless() -> bool:
        return (max_failed_cases is not None and len(failed) > max_failed_cases) or (budget is not None and budget.exceeded)

    async def one(req: Request) -> None:
        ep = _ep(req)
        call = await call_model(litellm, req, keys[ep], retries, limits[ep.route], hopeless, routed.get(ep.route))
        if call is None:  # not started: the run had stopped early
            if budget is not None and budget.exceeded:
                req.call = Call(repeat=req.repeat, error=STOPPED)
            return
        req.call = call
        if budget is not None:
            budget.spend(call.cost_usd)
        by_fallback = call.deployment is not None and any(t.fallback and t.label == call.deployment
                                                          for t in ep.deployments)
        if req.call.error is None and cache is not None and not by_fallback:
            cache.put(req.key, ep.model, req.call.model_dump(include=CACHED_FIELDS))
        elif req.call.error is not None:
            failed.add(req.case_index)
        on_done()

    from llmops_cli.run.aio import ClosingExecutor, settle

    executor = ClosingExecutor()
    asyncio.get_running_loop().set_default_executor(executor)
    await warm_up(litellm, keys)
    from llmops_cli.run.deployments import routers

    url = getattr(cache, "url", None)  # a shared Redis cache: the Routers count rpm/tpm there too
    routed.update(routers(litellm, keys, config_path, url if isinstance(url, str) and url.startswith(("redis", "unix"))
                          else None))
    queues: dict[tuple, list[Request]] = {}
    for r in todo:
        queues.setdefault(_ep(r).route, []).append(r)

    async def worker(queue) -> None:
        for req in queue:  # shared by the route's workers: each request is taken once, in plan order
            await one(req)

    # per route as many workers as its limit's cap, not a task per request (10,000 waiting tasks held 3 MB)
    tasks = []
    for route, requests in queues.items():
        queue = iter(requests)
        tasks += [asyncio.ensure_future(worker(queue)) for _ in range(min(limits[route].cap, len(requests)))]
    try:
        await asyncio.gather(*tasks)
    finally:  # also when interrupted (Ctrl-C, SIGTERM) or a call raised: no coroutine left unawaited
        await settle(executor)
        for r in routed.values():
            r.close()
    seen = [lim.stats() for lim in limits.values()]
    return LimitStats(max(s.peak for s in seen), sum(s.throttled for s in seen), sum(s.congestion for s in seen),
                      max(s.final for s in seen))


def execute(requests: list[Request], cache: Cache | None, *, concurrency: int | None = None,
            max_concurrency: int = DEFAULT_CAP, retries: int = DEFAULT_RETRIES,
            on_done: Callable[[], None] = lambda: None, max_failed_cases: int | None = None, refresh: bool = False,
            config_path: str | Path | None = None) -> LimitStats | None:
    """Fill ``req.call`` for every request: from the cache, else by calling
    (LiteLLM is imported only if something misses). Returns what the
    concurrency limits saw (calls in flight at most, 429s, congestion
    signals), or None when nothing was called.

    Args:
        requests: the plan's requests (model or judge calls).
        cache: answers are read from and written to it; ``None``: no cache.
        concurrency: calls in flight at once per endpoint, fixed; None
            (default): adaptive, from 8 up to ``max_concurrency``, halved
            on 429s, 503s and timeouts (:mod:`llmops_cli.run.concurrency`). The
            embedded model: one at a time, so latency measures the call,
            not a queue.
        max_concurrency: the adaptive limit's cap.
        retries: retries per call on 429/408/409/5xx, connection errors and
            timeouts (exponential backoff with jitter, ``Retry-After`` honoured).
        on_done: called after each request is resolved (progress).
        max_failed_cases: past this many cases with a failed call, the
            remaining calls are not made (``req.call`` stays ``None``).
        refresh: read nothing from the cache, call for every request (answers
            are still written to it).
        config_path: named in credential errors.

    Raises:
        ConfigError: a key an endpoint needs is not in the environment —
            before any call.
        OutputError: the cache cannot be written."""
    todo = []
    for req in requests:
        hit = cache.get(req.key) if cache is not None and not refresh else None
        if hit is not None:
            req.call = _cached_call(hit, req.repeat)
            on_done()
        else:
            todo.append(req)
    if todo:
        for ep in {_ep(r) for r in todo}:
            check_credentials(ep, config_path)  # fail on a missing key before any call, not after retries
        from llmops_cli.run import aio  # only when something is called: a fully cached run skips asyncio

        return aio.run(_answer_all(todo, cache, concurrency, max(1, max_concurrency), retries, on_done,
                                       max_failed_cases, config_path))
    return None


def allowed_failures(n_cases: int, max_error_share: float) -> int:
    """The most failed cases :func:`llmops_cli.jobs.recording.check_errors` lets pass (``k / n ≤ share``,
    computed the same way, so float rounding cannot make the two disagree)."""
    return next((k for k in range(n_cases, -1, -1) if not n_cases or k / n_cases <= max_error_share), 0)
