"""Run an eval set through a pinned configuration.

``run_eval(config)`` loads the eval set, retrieves context (if configured),
renders the prompts, answers every case through ``litellm.acompletion``
(bounded concurrency, response cache, retries with exponential backoff and
jitter from ``tenacity``), scores the outputs and returns a
:class:`~llmops_cli.record.RunRecord`.

LiteLLM is imported lazily — only when some call misses the cache — with
``LITELLM_LOCAL_MODEL_COST_MAP=True`` set first so that it never fetches its
price list from the network.
"""

from __future__ import annotations

import asyncio
import email.utils
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from . import __version__
from .cache import ResponseCache, cache_key
from .config import Config, ConfigError, fingerprint
from .dataset import Case, dataset_hash, load_dataset
from .errors import Interrupted, RunIncomplete
from .prompt import render, render_messages
from .record import Call, CaseRecord, MetricSummary, RetrievedChunk, Retrieval, RunRecord, Usage, new_run_id, now_iso
from .scorers import SCORERS, aggregate, score_all

DEFAULT_CONCURRENCY = 8
DEFAULT_RETRIES = 4
CALL_PARAMS = ("temperature", "max_tokens", "top_p", "seed", "stop")

ProgressFn = Callable[[int, int], None]


def import_litellm():
    """Import LiteLLM (≈3.5 s) with the offline price map, and register the
    embedded ``local`` provider."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    from . import local_model

    litellm.suppress_debug_info = True
    litellm.drop_params = True
    local_model.register(litellm)
    return litellm


@dataclass
class Request:
    """One model call to make: case index, repeat, messages and cache key."""

    case_index: int
    repeat: int
    messages: list[dict[str, Any]]
    key: str
    call: Call | None = None


@dataclass
class Prepared:
    """Everything known before any model call."""

    cases: list[Case]
    dataset_hash: str
    corpus_hash: str | None
    retrievals: list[Retrieval | None]
    messages: list[list[dict[str, Any]]]
    requests: list[Request] = field(default_factory=list)


def call_params(cfg: Config) -> dict[str, Any]:
    """The parameters that shape the answer (cache key and request body)."""
    p = cfg.params.model_dump()
    return {k: p[k] for k in CALL_PARAMS if p[k] is not None}


def prepare(cfg: Config, limit: int | None = None, with_prompts: bool = True) -> Prepared:
    """Load cases, retrieve, render messages and compute cache keys.

    Raises:
        DatasetError: eval set or corpus unreadable/empty.
        ConfigError: a template uses an undefined variable.
    """
    cases = load_dataset(cfg.dataset, cfg.base_dir, limit)
    path = cfg.path or "<config>"
    retrievals: list[Retrieval | None] = [None] * len(cases)
    chunk_vars: list[dict[str, Any]] = [{} for _ in cases]
    corpus_hash = None
    if cfg.retrieval and with_prompts:
        from .retrieval import BM25Retriever, chunk_variables, load_corpus

        r = cfg.retrieval
        chunks, corpus_hash = load_corpus(r, cfg.base_dir)
        queries = [render(r.query, c.inputs, path, "retrieval.query") for c in cases]
        hits = BM25Retriever(chunks, r.k1, r.b).retrieve(queries, r.top_k)
        for i, (q, h) in enumerate(zip(queries, hits)):
            retrievals[i] = Retrieval(query=q, chunks=[RetrievedChunk(id=c.id, score=round(s, 4)) for c, s in h])
            chunk_vars[i] = chunk_variables(h)
    messages: list[list[dict[str, Any]]] = []
    if with_prompts:
        for c, cv in zip(cases, chunk_vars):
            variables = {**c.inputs, **cv, "references": c.references}
            messages.append(render_messages(cfg.system_template, cfg.user_template, variables, path))
    prep = Prepared(cases, dataset_hash(cases), corpus_hash, retrievals, messages)
    if with_prompts:
        params = call_params(cfg)
        for i, msgs in enumerate(messages):
            for rep in range(cfg.repeats):
                prep.requests.append(Request(i, rep, msgs, cache_key(cfg.model, cfg.api_base, msgs, params, rep)))
    return prep


# -- model calls -----------------------------------------------------------

def _status(exc: BaseException) -> int | None:
    code = getattr(exc, "status_code", None)
    return code if isinstance(code, int) else None


def is_retryable(exc: BaseException) -> bool:
    """429, 408, 409, 5xx, connection errors and timeouts are retried."""
    import litellm

    if isinstance(exc, (litellm.Timeout, litellm.APIConnectionError, asyncio.TimeoutError)):
        return True
    code = _status(exc)
    return code is not None and (code in (408, 409, 429) or code >= 500)


def retry_after_s(exc: BaseException) -> float | None:
    """Seconds from a ``Retry-After`` header on the error's response, if any."""
    headers = getattr(exc, "litellm_response_headers", None)
    resp = getattr(exc, "response", None)
    if headers is None and resp is not None:
        headers = getattr(resp, "headers", None)
    value = headers.get("retry-after") if headers is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_tz(value)
        return max(0.0, email.utils.mktime_tz(parsed) - time.time()) if parsed else None


def _error_text(exc: BaseException, cfg: Config) -> str:
    text = f"{type(exc).__name__}: {exc}"
    text = " ".join(text.split())
    for secret in _secrets(cfg):
        text = text.replace(secret, "***")
    return text[:500]


def _secrets(cfg: Config) -> list[str]:
    names = [cfg.api_key_env] if cfg.api_key_env else []
    names += [k for k in os.environ if k.endswith(("_API_KEY", "_TOKEN", "_SECRET"))]
    return [os.environ[n] for n in names if n and len(os.environ.get(n, "")) >= 6]


def _api_key(cfg: Config) -> str | None:
    if not cfg.api_key_env:
        return None
    key = os.environ.get(cfg.api_key_env)
    if not key:
        raise ConfigError(cfg.path or "<config>", "api_key_env", f"environment variable {cfg.api_key_env} is not set")
    return key


def _cost(litellm, response) -> float | None:
    hidden = getattr(response, "_hidden_params", None) or {}
    cost = hidden.get("response_cost")
    if cost is None:
        try:
            cost = litellm.completion_cost(completion_response=response)
        except Exception:
            return None
    return float(cost) if cost is not None else None


async def _call_model(litellm, cfg: Config, req: Request, retries: int) -> Call:
    from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential

    backoff = wait_random_exponential(multiplier=0.5, max=20)

    def wait(state) -> float:
        ra = retry_after_s(state.outcome.exception())
        base = backoff(state)
        return max(base, min(ra, 60.0)) if ra is not None else base

    kwargs = dict(model=cfg.model, messages=req.messages, timeout=cfg.params.timeout, num_retries=0, max_retries=0, **call_params(cfg))
    if cfg.api_base:
        kwargs["api_base"] = cfg.api_base
    key = _api_key(cfg)
    if key:
        kwargs["api_key"] = key
    attempts = 0
    t0 = time.perf_counter()
    try:
        async for attempt in AsyncRetrying(stop=stop_after_attempt(retries + 1), wait=wait, retry=retry_if_exception(is_retryable), reraise=True):
            with attempt:
                attempts += 1
                response = await litellm.acompletion(**kwargs)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # recorded as the case's error, never as a score
        return Call(repeat=req.repeat, error=_error_text(exc, cfg), retries=attempts - 1, latency_s=time.perf_counter() - t0)
    latency = time.perf_counter() - t0
    choice = response.choices[0]
    usage = getattr(response, "usage", None)
    return Call(
        repeat=req.repeat,
        output=(choice.message.content or "").strip(),
        response=response.model_dump(mode="json"),
        prompt_tokens=getattr(usage, "prompt_tokens", None),
        completion_tokens=getattr(usage, "completion_tokens", None),
        latency_s=round(latency, 4),
        cost_usd=_cost(litellm, response),
        retries=attempts - 1,
    )


def _cached_call(value: dict[str, Any], repeat: int) -> Call:
    call = Call.model_validate({**value, "repeat": repeat})
    call.cached = True
    call.latency_s = 0.0
    call.retries = 0
    return call


async def _answer_all(cfg: Config, todo: list[Request], cache: ResponseCache | None, concurrency: int, retries: int,
                      on_done: Callable[[], None]) -> None:
    litellm = import_litellm()
    from . import local_model

    if cfg.model.startswith(local_model.PROVIDER + "/"):
        concurrency = local_model.MAX_CONCURRENCY  # latency then measures the call, not the queue
    sem = asyncio.Semaphore(concurrency)

    async def one(req: Request) -> None:
        async with sem:
            req.call = await _call_model(litellm, cfg, req, retries)
        if req.call.error is None and cache is not None:
            cache.put(req.key, cfg.model, req.call.model_dump(include={"output", "response", "prompt_tokens", "completion_tokens", "cost_usd"}))
        on_done()

    await asyncio.gather(*(one(r) for r in todo))


# -- assembling the record ---------------------------------------------------

def score_cases(metrics: list[str], records: list[CaseRecord], repeats: int) -> dict[str, MetricSummary]:
    """Score every case's calls (each repeat scored, then averaged per case)
    and fill ``CaseRecord.scores`` / ``.stats``. Returns the aggregates."""
    refs = [c.references for c in records]
    per_repeat = []
    for rep in range(repeats):
        outs = [c.calls[rep].output if rep < len(c.calls) and c.calls[rep].error is None else None for c in records]
        per_repeat.append(score_all(metrics, outs, refs))
    summaries: dict[str, MetricSummary] = {}
    for name in metrics:
        per_case: list[float | None] = []
        stats: list[list[float] | None] = []
        for i, case in enumerate(records):
            vals = [r[name].per_case[i] for r in per_repeat if r[name].per_case[i] is not None]
            score = sum(vals) / len(vals) if vals else None
            st_rows = [r[name].stats[i] for r in per_repeat if r[name].stats and r[name].stats[i] is not None]
            st = [sum(col) / len(st_rows) for col in zip(*st_rows)] if st_rows else None
            case.scores[name] = score
            if st is not None:
                case.stats[name] = st
            per_case.append(score)
            stats.append(st)
        scored = sum(v is not None for v in per_case)
        summaries[name] = MetricSummary(
            aggregate=aggregate(name, per_case, stats if SCORERS[name].from_stats else None),
            scale=SCORERS[name].scale,
            n_scored=scored,
            n_unscored=len(per_case) - scored,
            info=per_repeat[0][name].info,
        )
    return summaries


def _usage(records: list[CaseRecord], wall_s: float, cache: ResponseCache | None) -> Usage:
    calls = [c for r in records for c in r.calls]
    costs = [c.cost_usd for c in calls if c.cost_usd is not None and not c.cached]
    slow = sorted(((c.latency_s or 0.0, r.id) for r in records for c in r.calls if not c.cached), reverse=True)[:5]
    return Usage(
        calls=sum(not c.cached for c in calls),
        prompt_tokens=sum(c.prompt_tokens or 0 for c in calls),
        completion_tokens=sum(c.completion_tokens or 0 for c in calls),
        cost_usd=round(sum(costs), 6) if costs else None,
        cache_hits=sum(c.cached for c in calls),
        cache_misses=sum(not c.cached for c in calls),
        errors=sum(c.error is not None for c in calls),
        retries=sum(c.retries for c in calls),
        wall_s=round(wall_s, 3),
        slowest=[{"id": i, "latency_s": round(s, 3)} for s, i in slow if s > 0],
    )


def build_record(cfg: Config, prep: Prepared, *, source: str = "model", status: str = "complete") -> RunRecord:
    snapshot = cfg.snapshot()
    records = []
    for i, case in enumerate(prep.cases):
        calls = sorted((r.call for r in prep.requests if r.case_index == i and r.call is not None), key=lambda c: c.repeat)
        first = calls[0] if calls else None
        records.append(CaseRecord(
            id=case.id, inputs=case.inputs, references=case.references, retrieval=prep.retrievals[i],
            messages=prep.messages[i] if prep.messages else None, calls=calls,
            output=first.output if first else None,
            error=next((c.error for c in calls if c.error), None) if calls else "not run",
        ))
    return RunRecord(
        run_id=new_run_id(), created_at=now_iso(), tool_version=__version__, source=source, status=status,
        config_path=str(cfg.path) if cfg.path else None, config=snapshot,
        fingerprint=fingerprint(snapshot, prep.corpus_hash), dataset_hash=prep.dataset_hash, corpus_hash=prep.corpus_hash,
        cases=records,
    )


def run_eval(cfg: Config, *, limit: int | None = None, concurrency: int = DEFAULT_CONCURRENCY,
             cache: ResponseCache | None = None, retries: int = DEFAULT_RETRIES,
             progress: ProgressFn | None = None) -> RunRecord:
    """Answer and score every case of ``cfg``'s eval set.

    Args:
        cfg: a validated :class:`~llmops_cli.config.Config`.
        limit: number of cases (overrides ``dataset.limit``; 0 = all).
        concurrency: model calls in flight at once (≥ 1).
        cache: response cache, or ``None`` for no caching.
        retries: retries per call on 429/5xx/connection errors/timeouts.
        progress: called as ``progress(done, total)`` after each call.

    Returns:
        The run record, status ``complete``.

    Raises:
        ConfigError, DatasetError: bad input (exit 2), before any model call.
        RunIncomplete: the share of failed cases exceeded
            ``cfg.max_error_share`` (exit 3); ``.record`` is the partial run.
        Interrupted: Ctrl-C; ``.record`` holds every answer completed so far.
    """
    t0 = time.perf_counter()
    prep = prepare(cfg, limit)
    total = len(prep.requests)
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress:
            progress(done, total)

    todo = []
    for req in prep.requests:
        hit = cache.get(req.key) if cache is not None else None
        if hit is not None:
            req.call = _cached_call(hit, req.repeat)
            tick()
        else:
            todo.append(req)
    if todo:
        _api_key(cfg)  # fail on a missing key before any call
        try:
            asyncio.run(_answer_all(cfg, todo, cache, max(1, concurrency), retries, tick))
        except KeyboardInterrupt:
            record = build_record(cfg, prep, status="interrupted")
            record.usage = _usage(record.cases, time.perf_counter() - t0, cache)
            raise Interrupted(f"interrupted after {done} of {total} calls", record) from None
    record = build_record(cfg, prep)
    failed = [c for c in record.cases if c.error]
    if failed and len(failed) / len(record.cases) > cfg.max_error_share:
        record.status = "incomplete"
        record.usage = _usage(record.cases, time.perf_counter() - t0, cache)
        provider = cfg.model.split("/")[0] + (f" at {cfg.api_base}" if cfg.api_base else "")
        raise RunIncomplete(
            f"{len(failed)} of {len(record.cases)} cases failed (limit {cfg.max_error_share:.0%}) calling {provider}; "
            f"first error: {failed[0].error}", record)
    record.metrics = score_cases(cfg.metrics, record.cases, cfg.repeats)
    record.usage = _usage(record.cases, time.perf_counter() - t0, cache)
    return record


def score_outputs(cfg: Config, outputs: dict[str, str], *, limit: int | None = None, name: str = "outputs") -> RunRecord:
    """Score outputs produced elsewhere (``{case_id: output}``) exactly as a
    model run would be scored. A case with no output is an error.

    Raises:
        DatasetError: eval set unreadable; RunIncomplete: too many cases
        without an output (share above ``cfg.max_error_share``).
    """
    t0 = time.perf_counter()
    prep = prepare(cfg, limit, with_prompts=False)
    for i, case in enumerate(prep.cases):
        out = outputs.get(case.id)
        call = Call(output=out) if isinstance(out, str) else Call(error=f"no output for case {case.id!r} in {name}")
        prep.requests.append(Request(i, 0, [], "", call))
    record = build_record(cfg, prep, source="outputs")
    record.config = {**record.config, "model": f"outputs:{name}"}
    record.fingerprint = fingerprint(record.config)
    failed = [c for c in record.cases if c.error]
    if failed and len(failed) / len(record.cases) > cfg.max_error_share:
        record.status = "incomplete"
        raise RunIncomplete(f"{len(failed)} of {len(record.cases)} cases have no output in {name}", record)
    record.metrics = score_cases(cfg.metrics, record.cases, 1)
    record.usage = Usage(wall_s=round(time.perf_counter() - t0, 3))
    return record
