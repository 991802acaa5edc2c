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

import dataclasses
import functools
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from . import __version__
from .cache import ResponseCache, cache_key, memoised
from .config import Config, ConfigError, canonical_json, fingerprint, sha256_text
from .dataset import Case, dataset_hash, load_dataset
from .errors import Interrupted, RunIncomplete
from .prompt import render, render_messages
from .record import (Call, CaseRecord, MetricSummary, RetrievedChunk, Retrieval, RunRecord, Usage, collect_environment,
                     new_run_id, now_iso)
from .scorers import SCORERS, aggregate, mean, score_all

DEFAULT_CONCURRENCY = 8
DEFAULT_RETRIES = 8
NOT_RUN = "not run"  # a case's error when its call was never made (interrupted, or the run stopped early)
CALL_PARAMS = ("temperature", "max_tokens", "top_p", "seed", "stop")
SCORER_VERSION = f"{__version__}/1"  # bump when a scorer's definition changes: memoised scores are keyed by it
SCORER_LIBRARIES = ("sacrebleu", "rouge-score", "nltk")  # their versions key memoised scores too

ProgressFn = Callable[[int, int], None]


def import_litellm():
    """Import LiteLLM (≈3.5 s) with the offline price map, and register the
    embedded ``local`` provider."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    from . import local_model

    litellm.suppress_debug_info = True
    litellm.drop_params = True
    import logging

    logging.getLogger("LiteLLM").setLevel(logging.ERROR)  # its warnings (e.g. a new event loop per phase) are not the user's
    import gc

    gc.freeze()  # LiteLLM leaves ~370k long-lived objects; keep every collection during the run from re-walking them
    local_model.register(litellm)
    return litellm


@dataclass(frozen=True)
class Endpoint:
    """Where and how a call goes: LiteLLM model string, optional api_base,
    the *name* of the environment variable holding the key (never the key),
    answer-shaping params, and the per-request timeout in seconds."""

    model: str
    api_base: str | None
    api_key_env: str | None
    params: tuple[tuple[str, Any], ...]
    timeout: float

    @classmethod
    def of(cls, model: str, api_base: str | None, api_key_env: str | None, params) -> "Endpoint":
        p = params.model_dump()
        frozen = tuple((k, tuple(p[k]) if isinstance(p[k], list) else p[k]) for k in CALL_PARAMS if p[k] is not None)
        return cls(model, api_base, api_key_env, frozen, params.timeout)

    @property
    def call_params(self) -> dict[str, Any]:
        """The params as LiteLLM takes them (lists, not tuples)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.params}

    @property
    def is_local(self) -> bool:
        return self.model.startswith("local/")

    def for_sample(self, k: int) -> "Endpoint":
        """The endpoint for the k-th repeat/sample: a pinned ``seed`` becomes
        ``seed + k`` so that repeated samples are not identical by design."""
        if k == 0 or "seed" not in dict(self.params):
            return self
        return dataclasses.replace(self, params=tuple((n, v + k if n == "seed" else v) for n, v in self.params))

    @property
    def route(self) -> tuple[str, str | None]:
        return self.model, self.api_base

    def key(self, messages: list[dict[str, Any]], repeat: int) -> str:
        return cache_key(self.model, self.api_base, messages, self.call_params, repeat)


@dataclass
class Request:
    """One call to make: case index, repeat (or judge sample), messages,
    endpoint and cache key. ``judge`` names the judge for judge calls."""

    case_index: int
    repeat: int
    messages: list[dict[str, Any]]
    key: str
    endpoint: Endpoint | None = None
    call: Call | None = None
    judge: str | None = None
    sample: int = 0


@dataclass
class Prepared:
    """Everything known before any model call."""

    cases: list[Case]
    dataset_hash: str
    corpus_hash: str | None
    retrievals: list[Retrieval | None]
    messages: list[list[dict[str, Any]]]
    requests: list[Request] = field(default_factory=list)
    chunk_vars: list[dict[str, Any]] = field(default_factory=list)


def model_endpoint(cfg: Config) -> Endpoint:
    """The endpoint of the model under test."""
    return Endpoint.of(cfg.model, cfg.api_base, cfg.api_key_env, cfg.params)


def judge_endpoint(cfg: Config, name: str) -> Endpoint:
    """A judge's endpoint; model/api_base/key default to the model under
    test's (:meth:`Config.judge_target`)."""
    return Endpoint.of(*cfg.judge_target(name), cfg.judges[name].params)


def prepare(cfg: Config, limit: int | None = None, with_prompts: bool = True, cache: ResponseCache | None = None) -> Prepared:
    """Load cases, retrieve, render messages and compute cache keys.

    ``with_prompts=False`` only loads the cases (for the dataset hash).
    ``cache`` memoises the retrieval hits (see :func:`retrieval.retrieve`).

    Raises:
        DatasetError: eval set or corpus unreadable/empty.
        ConfigError: a template uses an undefined variable or fails while rendering.
    """
    cases = load_dataset(cfg.dataset, cfg.base_dir, limit)
    path = cfg.path or "<config>"
    if cfg.gate.cluster and any(cfg.gate.cluster not in c.inputs for c in cases):
        raise ConfigError(path, "gate.cluster", f"not an input field of the eval set (inputs: {', '.join(cases[0].inputs)})")
    retrievals: list[Retrieval | None] = [None] * len(cases)
    chunk_vars: list[dict[str, Any]] = [{} for _ in cases]
    corpus_hash = None
    if cfg.retrieval and with_prompts:
        from .retrieval import chunk_variables, load_corpus, retrieve

        r = cfg.retrieval
        chunks, corpus_hash = load_corpus(r, cfg.base_dir)
        queries = [render(r.query, c.inputs, path, "retrieval.query") for c in cases]
        hits = retrieve(r, chunks, corpus_hash, queries, cache)
        for i, (q, h) in enumerate(zip(queries, hits)):
            retrievals[i] = Retrieval(query=q, chunks=[RetrievedChunk(id=c.id, score=round(s, 4), text=c.text) for c, s in h])
            chunk_vars[i] = chunk_variables(h)
    messages: list[list[dict[str, Any]]] = []
    if with_prompts:
        for c, cv in zip(cases, chunk_vars):
            variables = {**c.inputs, **cv}  # never the references: the model under test must not see the gold answers
            messages.append(render_messages(cfg.system_template, cfg.user_template, variables, path))
    prep = Prepared(cases, dataset_hash(cases), corpus_hash, retrievals, messages, chunk_vars=chunk_vars)
    if with_prompts:
        ep = model_endpoint(cfg)
        for i, msgs in enumerate(messages):
            for rep in range(cfg.repeats):
                ep_r = ep.for_sample(rep)
                prep.requests.append(Request(i, rep, msgs, ep_r.key(msgs, rep), ep_r))
    return prep


def judge_requests(cfg: Config, prep: Prepared, records: list[CaseRecord]) -> list[Request]:
    """Judge calls for every judged output: judges × cases × repeats × samples.
    Raises ConfigError for an unreadable template override."""
    from .judge import judge_messages

    out = []
    path = cfg.path or "<config>"
    for name, judge in cfg.judges.items():
        template = cfg.judge_template(name)
        ep = judge_endpoint(cfg, name)
        for i, rec in enumerate(records):
            chunks = prep.chunk_vars[i].get("chunks", []) if prep.chunk_vars else []
            for call in rec.calls:
                if call.error is not None or call.output is None:
                    continue
                msgs = judge_messages(judge, template, rec.inputs, call.output, rec.references, chunks, path, name)
                for k in range(judge.samples):
                    ep_k = ep.for_sample(k)
                    out.append(Request(i, call.repeat, msgs, ep_k.key(msgs, k), ep_k, judge=name, sample=k))
    return out


# -- model calls -----------------------------------------------------------

def _status(exc: BaseException) -> int | None:
    code = getattr(exc, "status_code", None)
    return code if isinstance(code, int) else None


def is_retryable(exc: BaseException) -> bool:
    """429, 408, 409, 5xx, connection errors and timeouts are retried."""
    import asyncio

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
        import email.utils

        parsed = email.utils.parsedate_tz(value)
        return max(0.0, email.utils.mktime_tz(parsed) - time.time()) if parsed else None


def redact(text: str, extra_env: tuple[str | None, ...] = ()) -> str:
    """``text`` with the values of key-like environment variables (``*_API_KEY``,
    ``*_TOKEN``, ``*_SECRET``, ``*_KEY`` and ``extra_env``) replaced by ``***``."""
    names = [n for n in extra_env if n] + [k for k in os.environ if k.endswith(("_API_KEY", "_TOKEN", "_SECRET", "_KEY"))]
    for n in names:
        secret = os.environ.get(n, "")
        if len(secret) >= 6:
            text = text.replace(secret, "***")
    return text


def _error_text(exc: BaseException, ep: Endpoint) -> str:
    return redact(" ".join(f"{type(exc).__name__}: {exc}".split()), (ep.api_key_env,))[:500]


def _api_key(ep: Endpoint, cfg: Config) -> str | None:
    if not ep.api_key_env:
        return None
    key = os.environ.get(ep.api_key_env)
    if not key:
        raise ConfigError(cfg.path or "<config>", "api_key_env", f"environment variable {ep.api_key_env} is not set")
    return key


def _cost(response) -> float | None:
    """USD cost LiteLLM computed for the response (its price map), or None
    when it has no price for the model. Not recomputed: LiteLLM already tried."""
    cost = (getattr(response, "_hidden_params", None) or {}).get("response_cost")
    return float(cost) if cost is not None else None


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


async def _call_model(litellm, req: Request, api_key: str | None, retries: int) -> Call:
    """One call through ``litellm.acompletion`` with retries. The answer's
    ``served_model``/``system_fingerprint`` are the response's ``model`` and
    ``system_fingerprint`` — for an OpenAI-compatible server, what the server
    returned, not the requested model string (LiteLLM 1.106 copies them from
    the server's JSON)."""
    import asyncio

    from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential

    backoff = wait_random_exponential(multiplier=0.5, max=20)

    def wait(state) -> float:
        ra = retry_after_s(state.outcome.exception())
        base = backoff(state)
        return max(base, min(ra, 60.0)) if ra is not None else base

    ep = req.endpoint
    kwargs = dict(model=ep.model, messages=req.messages, timeout=ep.timeout, num_retries=0, max_retries=0, **ep.call_params)
    if ep.api_base:
        kwargs["api_base"] = ep.api_base
    if api_key:
        kwargs["api_key"] = api_key
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
        return Call(repeat=req.repeat, error=_error_text(exc, ep), retries=attempts - 1, latency_s=round(time.perf_counter() - t0, 4))
    latency = time.perf_counter() - t0
    choice = response.choices[0]
    usage = getattr(response, "usage", None)
    raw = response.model_dump(mode="json")
    return Call(
        repeat=req.repeat,
        output=(choice.message.content or "").strip(),
        response=raw,
        served_model=_str_or_none(raw.get("model")),
        system_fingerprint=_str_or_none(raw.get("system_fingerprint")),
        prompt_tokens=getattr(usage, "prompt_tokens", None),
        completion_tokens=getattr(usage, "completion_tokens", None),
        latency_s=round(latency, 4),
        cost_usd=_cost(response),
        retries=attempts - 1,
    )


def _cached_call(value: dict[str, Any], repeat: int) -> Call:
    call = Call.model_validate({**value, "repeat": repeat})
    if "served_model" not in value and isinstance(call.response, dict):  # cached before served_model was kept
        call.served_model = _str_or_none(call.response.get("model"))
        call.system_fingerprint = _str_or_none(call.response.get("system_fingerprint"))
    call.cached = True
    call.latency_s = 0.0
    call.retries = 0
    return call


CACHED_FIELDS = {"output", "response", "prompt_tokens", "completion_tokens", "cost_usd", "served_model", "system_fingerprint"}


async def _answer_all(cfg: Config, todo: list[Request], cache: ResponseCache | None, concurrency: int, retries: int,
                      on_done: Callable[[], None], max_failed_cases: int | None = None) -> None:
    """Make every call in ``todo`` (bounded concurrency per endpoint; the
    embedded model one at a time, so latency measures the call, not a queue).

    Once more than ``max_failed_cases`` cases have a call that failed after
    its retries, the run can no longer complete: calls not yet started are
    skipped (their ``req.call`` stays ``None``), so a dead provider costs one
    round of retries rather than one per case. Calls already in flight finish
    (their answers may be paid for, and are cached)."""
    import asyncio

    from . import local_model

    litellm = import_litellm()
    keys = {ep: _api_key(ep, cfg) for ep in {r.endpoint for r in todo}}
    sems = {ep.route: asyncio.Semaphore(local_model.MAX_CONCURRENCY if ep.is_local else concurrency) for ep in keys}
    failed: set[int] = set()

    def hopeless() -> bool:
        return max_failed_cases is not None and len(failed) > max_failed_cases

    async def one(req: Request) -> None:
        async with sems[req.endpoint.route]:
            if hopeless():
                return
            req.call = await _call_model(litellm, req, keys[req.endpoint], retries)
        if req.call.error is None and cache is not None:
            cache.put(req.key, req.endpoint.model, req.call.model_dump(include=CACHED_FIELDS))
        elif req.call.error is not None:
            failed.add(req.case_index)
        on_done()

    from .aio import ClosingExecutor, settle

    executor = ClosingExecutor()
    asyncio.get_running_loop().set_default_executor(executor)
    tasks = [asyncio.ensure_future(one(r)) for r in todo]
    try:
        await asyncio.gather(*tasks)
    finally:  # also when interrupted (Ctrl-C, SIGTERM) or a call raised: no coroutine left unawaited
        await settle(executor)


def _resolve(cfg: Config, requests: list[Request], cache: ResponseCache | None, concurrency: int, retries: int,
             tick: Callable[[], None], max_failed_cases: int | None = None, refresh: bool = False) -> None:
    """Fill ``req.call`` for every request: from the cache, else by calling
    (LiteLLM is imported only if something misses). Past ``max_failed_cases``
    failed cases the remaining calls are not made (``req.call`` stays None).
    ``refresh``: read nothing from the cache, call for every request (answers
    are still written to it)."""
    todo = []
    for req in requests:
        hit = cache.get(req.key) if cache is not None and not refresh else None
        if hit is not None:
            req.call = _cached_call(hit, req.repeat)
            tick()
        else:
            todo.append(req)
    if todo:
        for ep in {r.endpoint for r in todo}:
            _check_credentials(ep, cfg)  # fail on a missing key before any call, not after retries
        import asyncio  # only when something is called: a fully cached run skips its import

        asyncio.run(_answer_all(cfg, todo, cache, max(1, concurrency), retries, tick, max_failed_cases))


def _check_credentials(ep: Endpoint, cfg: Config) -> None:
    """Raise :class:`ConfigError` (exit 2) when the key an endpoint needs is
    not in the environment (LiteLLM's ``validate_environment``; api-base
    settings are not required, providers have defaults)."""
    if _api_key(ep, cfg) or ep.is_local:
        return
    litellm = import_litellm()
    try:
        env = litellm.validate_environment(model=ep.model, api_base=ep.api_base)
    except Exception:  # an unknown provider: let the call itself report it
        return
    missing = [k for k in env.get("missing_keys", []) if k.endswith(("_KEY", "_TOKEN", "_SECRET"))]
    if missing:
        raise ConfigError(cfg.path or "<config>", "model",
                          f"{', '.join(missing)} is not set in the environment (or .env); {ep.model} needs it")


# -- assembling the record ---------------------------------------------------

def score_cases(metrics: list[str], records: list[CaseRecord], repeats: int,
                cache: ResponseCache | None = None) -> dict[str, MetricSummary]:
    """Score every case's calls (each repeat scored, then averaged per case)
    and fill ``CaseRecord.scores`` / ``.stats``. Returns the aggregates.

    With a ``cache``, a metric's whole result for the same outputs and
    references is reused (a fully cached re-run then imports no scorer)."""
    refs = [c.references for c in records]
    per_repeat = []
    for rep in range(repeats):
        outs = [c.calls[rep].output if rep < len(c.calls) and c.calls[rep].error is None else None for c in records]
        per_repeat.append(_score_memo(metrics, outs, refs, cache))
    summaries: dict[str, MetricSummary] = {}
    for name in metrics:
        per_case: list[float | None] = []
        stats: list[list[float] | None] = []
        for i, case in enumerate(records):
            score = mean([r[name].per_case[i] for r in per_repeat])
            st_rows = [r[name].stats[i] for r in per_repeat if r[name].stats and r[name].stats[i] is not None]
            st = [sum(col) / len(st_rows) for col in zip(*st_rows)] if st_rows else None
            case.scores[name] = score
            if st is not None:
                case.stats[name] = st
            per_case.append(score)
            stats.append(st)
        scored = sum(v is not None for v in per_case)
        summaries[name] = MetricSummary(
            aggregate=per_repeat[0][name].aggregate if repeats == 1 else aggregate(name, per_case, stats if SCORERS[name].from_stats else None),
            scale=SCORERS[name].scale,
            n_scored=scored,
            n_unscored=len(per_case) - scored,
            info=per_repeat[0][name].info,
        )
    return summaries


@functools.lru_cache(maxsize=1)
def scorer_versions() -> tuple[str, ...]:
    """:data:`SCORER_VERSION` and the installed versions of the scoring
    libraries (:data:`SCORER_LIBRARIES`, ``name==version``, or ``name==-``
    when absent), read from package metadata without importing them: a new
    sacrebleu or rouge-score makes memoised metric results stale."""
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "-"

    return (SCORER_VERSION, *(f"{name}=={installed(name)}" for name in SCORER_LIBRARIES))


def _score_memo(metrics: list[str], outs: list[str | None], refs: list[list[str]], cache: ResponseCache | None):
    """Each metric's :class:`MetricResult`, memoised in ``cache`` by the
    outputs, the references and :func:`scorer_versions`."""
    from .scorers import MetricResult

    content = sha256_text(canonical_json([scorer_versions(), outs, refs])) if cache is not None else None  # hashed once

    def score(name: str) -> dict[str, Any]:
        return dataclasses.asdict(score_all([name], outs, refs)[name])

    return {name: MetricResult(**memoised(cache, name, content, lambda: score(name))) for name in metrics}


def _usage(records: list[CaseRecord], wall_s: float, extra_calls: list[Call] | None = None) -> Usage:
    """Totals over the model-under-test calls of ``records`` (or over
    ``extra_calls``, e.g. judge calls)."""
    calls = list(extra_calls) if extra_calls is not None else [c for r in records for c in r.calls]
    costs = [c.cost_usd for c in calls if c.cost_usd is not None and not c.cached]
    slow = sorted(((c.latency_s or 0.0, r.id) for r in records for c in r.calls if not c.cached), reverse=True)[:5]
    return Usage(
        calls=sum(not c.cached for c in calls),
        prompt_tokens=sum(c.prompt_tokens or 0 for c in calls),
        completion_tokens=sum(c.completion_tokens or 0 for c in calls),
        cost_usd=sum(costs) if costs else None,
        cache_hits=sum(c.cached for c in calls),
        cache_misses=sum(not c.cached for c in calls),
        errors=sum(c.error is not None for c in calls),
        retries=sum(c.retries for c in calls),
        wall_s=round(wall_s, 3),
        slowest=[{"id": i, "latency_s": round(s, 3)} for s, i in slow if s > 0],
    )


def _display_path(p) -> str | None:
    """``p`` relative to the working directory when inside it (records and
    baselines get committed; absolute paths would leak the author's layout)."""
    if p is None:
        return None
    try:
        return str(p.relative_to(os.getcwd()))
    except ValueError:
        return str(p)


def build_record(cfg: Config, prep: Prepared, *, source: str = "model", status: str = "complete") -> RunRecord:
    snapshot = cfg.snapshot()
    by_case: dict[int, list[Call]] = {}
    for r in prep.requests:
        if r.call is not None:
            by_case.setdefault(r.case_index, []).append(r.call)
    records = []
    for i, case in enumerate(prep.cases):
        calls = sorted(by_case.get(i, []), key=lambda c: c.repeat)
        first = calls[0] if calls else None
        records.append(CaseRecord(
            id=case.id, inputs=case.inputs, references=case.references, retrieval=prep.retrievals[i],
            messages=prep.messages[i] if prep.messages else None, calls=calls,
            output=first.output if first else None,
            error=next((c.error for c in calls if c.error), None) if calls else NOT_RUN,
        ))
    return RunRecord(
        run_id=new_run_id(), created_at=now_iso(), tool_version=__version__, source=source, status=status,
        config_path=_display_path(cfg.path), config=snapshot,
        fingerprint=fingerprint(snapshot, prep.corpus_hash), dataset_hash=prep.dataset_hash, corpus_hash=prep.corpus_hash,
        served=served_summary(prep.requests), environment=collect_environment(),
        cases=records,
    )


def served_summary(requests: list[Request]) -> dict[str, dict[str, int]]:
    """Who answered: requested model string → ``{"<served model> (<system
    fingerprint or ->)": number of calls}`` over the requests that got an
    answer (cached ones included; ``unknown`` when the provider named no
    model). Requests without an endpoint (outputs scored from a file) are
    left out."""
    out: dict[str, dict[str, int]] = {}
    for r in requests:
        call = r.call
        if r.endpoint is None or call is None or call.error is not None:
            continue
        label = f"{call.served_model or 'unknown'} ({call.system_fingerprint or '-'})"
        counts = out.setdefault(r.endpoint.model, {})
        counts[label] = counts.get(label, 0) + 1
    return {model: dict(sorted(counts.items())) for model, counts in sorted(out.items())}


def run_eval(cfg: Config, *, limit: int | None = None, concurrency: int = DEFAULT_CONCURRENCY,
             cache: ResponseCache | None = None, retries: int = DEFAULT_RETRIES,
             progress: ProgressFn | None = None, refresh: bool = False) -> RunRecord:
    """Answer and score every case of ``cfg``'s eval set.

    Args:
        cfg: a validated :class:`~llmops_cli.config.Config`.
        limit: number of cases (overrides ``dataset.limit``; 0 = all).
        concurrency: model calls in flight at once (≥ 1).
        cache: response cache, or ``None`` for no caching.
        retries: retries per call on 429/5xx/connection errors/timeouts.
        progress: called as ``progress(done, total)`` after each call.
        refresh: read no answer from ``cache`` — call the model (and the
            judges) for every case — but still write every answer to it.

    Returns:
        The run record, status ``complete``.

    Raises:
        ConfigError, DatasetError: bad input (exit 2), before any model call.
        RunIncomplete: the share of failed cases exceeded
            ``cfg.max_error_share`` (exit 3); ``.record`` is the partial run.
            Calls not yet started when that happened are skipped (their cases
            are recorded as "not run").
        Interrupted: Ctrl-C; ``.record`` holds every answer completed so far.
    """
    t0 = time.perf_counter()
    prep = prepare(cfg, limit, cache=cache)
    state = {"done": 0, "total": len(prep.requests)}

    def tick() -> None:
        state["done"] += 1
        if progress:
            progress(state["done"], state["total"])

    def interrupted(record: RunRecord | None = None) -> Interrupted:
        record = record or build_record(cfg, prep, status="interrupted")
        record.status = "interrupted"
        record.usage = _usage(record.cases, time.perf_counter() - t0)
        return Interrupted(f"interrupted after {state['done']} of {state['total']} calls; completed answers are cached", record)

    try:
        _resolve(cfg, prep.requests, cache, concurrency, retries, tick,
                 max_failed_cases=_allowed_failures(len(prep.cases), cfg.max_error_share), refresh=refresh)
    except KeyboardInterrupt:
        raise interrupted() from None
    record = build_record(cfg, prep)
    provider = cfg.model + (f" at {cfg.api_base}" if cfg.api_base else "")
    _check_errors(cfg, record, f"calling {provider}", t0)
    try:
        _score_and_judge(cfg, prep, record, cache, concurrency, retries, tick, state, refresh)
    except KeyboardInterrupt:
        raise interrupted(record) from None
    record.usage = _usage(record.cases, time.perf_counter() - t0)
    return record


def _allowed_failures(n_cases: int, max_error_share: float) -> int:
    """The most failed cases :func:`_check_errors` lets pass (``k / n ≤ share``,
    computed the same way, so float rounding cannot make the two disagree)."""
    return next((k for k in range(n_cases, -1, -1) if not n_cases or k / n_cases <= max_error_share), 0)


def _check_errors(cfg: Config, record: RunRecord, what: str, t0: float) -> None:
    """Raise :class:`RunIncomplete` when more than ``max_error_share`` of the
    cases have no output."""
    failed = [c for c in record.cases if c.error]
    if failed and len(failed) / len(record.cases) > cfg.max_error_share:
        record.status = "incomplete"
        record.usage = _usage(record.cases, time.perf_counter() - t0)
        errors = [c.error for c in failed if c.error != NOT_RUN]
        not_run = len(failed) - len(errors)
        raise RunIncomplete(f"{len(errors)} of {len(record.cases)} cases failed (limit {cfg.max_error_share:.0%}) {what}"
                            f"{f', so the other {not_run} were not run' if not_run else ''}; "
                            f"first error: {errors[0] if errors else NOT_RUN}", record)


def _score_and_judge(cfg: Config, prep: Prepared, record: RunRecord, cache: ResponseCache | None, concurrency: int,
                     retries: int, tick: Callable[[], None], state: dict[str, int], refresh: bool = False) -> None:
    """Reference-based scores, then the judges (their calls through the same
    cache, concurrency, retries and ``refresh`` as the model's)."""
    record.metrics = score_cases(cfg.metrics, record.cases, cfg.repeats if record.source == "model" else 1, cache)
    if not cfg.judges:
        return
    jreqs = judge_requests(cfg, prep, record.cases)
    state["total"] += len(jreqs)
    _resolve(cfg, jreqs, cache, concurrency, retries, tick, refresh=refresh)
    record.metrics.update(apply_judges(cfg, record.cases, jreqs))
    record.judge_usage = _usage([], 0.0, [r.call for r in jreqs if r.call is not None])
    record.judge_served = served_summary(jreqs)


def apply_judges(cfg: Config, records: list[CaseRecord], jreqs: list[Request]) -> dict[str, MetricSummary]:
    """Parse and reduce judge replies into ``CaseRecord.judges`` and
    ``.scores``; returns one summary per judge with, in ``info``, the
    effective ``model``, ``api_base`` and ``template_sha256`` that graded
    (:meth:`Config.effective_judge`), its unscored count, self-agreement and
    judge tokens/cost."""
    from .judge import default_reduce, parse_verdict, reduce_samples
    from .record import JudgeResult, JudgeSample

    grouped: dict[tuple[str, int, int], list[Request]] = {}
    for r in jreqs:
        grouped.setdefault((r.judge, r.case_index, r.repeat), []).append(r)
    summaries = {}
    for name, judge in cfg.judges.items():
        how = default_reduce(judge)
        agreements, disagreeing, n_samples, n_unparsed, errors = [], 0, 0, 0, 0
        for i, rec in enumerate(records):
            results = []
            for rep in sorted({c.repeat for c in rec.calls if c.error is None}):
                samples = []
                for r in sorted(grouped.get((name, i, rep), []), key=lambda r: r.sample):
                    verdict, value = parse_verdict(r.call.output if r.call.error is None else None, judge)
                    samples.append(JudgeSample(**r.call.model_dump(exclude={"repeat"}), repeat=rep, sample=r.sample,
                                               verdict=verdict, value=value))
                    n_samples += 1
                    n_unparsed += verdict is None
                    errors += r.call.error is not None
                red = reduce_samples([(s.verdict, s.value) for s in samples], how)
                results.append(JudgeResult(verdict=red["verdict"], value=red["value"], agreement=red["agreement"],
                                           spread=red["spread"], samples=samples))
                if red["agreement"] is not None and red["n_parsed"] > 1:
                    agreements.append(red["agreement"])
                    disagreeing += red["agreement"] < 1
            rec.judges[name] = results
            rec.scores[name] = mean([r.value for r in results])
        per_case = [rec.scores.get(name) for rec in records]
        scored = sum(v is not None for v in per_case)
        jcalls = [r.call for r in jreqs if r.judge == name and r.call is not None]
        u = _usage([], 0.0, jcalls)
        eff = cfg.effective_judge(name)
        summaries[name] = MetricSummary(
            aggregate=mean(per_case), scale=1.0, n_scored=scored, n_unscored=len(per_case) - scored,
            info={"judge": True, "type": judge.type, "model": eff["model"], "api_base": eff["api_base"],
                  "template_sha256": eff["template_sha256"], "samples": judge.samples,
                  "reduce": how, "unparsed_samples": n_unparsed, "error_samples": errors, "total_samples": n_samples,
                  "self_agreement": round(sum(agreements) / len(agreements), 4) if agreements else None,
                  "disagreement_rate": round(disagreeing / len(agreements), 4) if agreements else None,
                  "prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens, "cost_usd": u.cost_usd},
        )
    return summaries


def score_outputs(cfg: Config, outputs: dict[str, str], *, limit: int | None = None, name: str = "outputs",
                  cache: ResponseCache | None = None, concurrency: int = DEFAULT_CONCURRENCY,
                  retries: int = DEFAULT_RETRIES, progress: ProgressFn | None = None,
                  refresh: bool = False) -> RunRecord:
    """Score outputs produced elsewhere (``{case_id: output}``) exactly as a
    model run would be scored — judges included (their calls use ``cache``,
    ``concurrency``, ``retries`` and ``refresh``). A case with no output is an error.

    Raises:
        DatasetError: eval set unreadable; RunIncomplete: too many cases
        without an output (share above ``cfg.max_error_share``).
    """
    t0 = time.perf_counter()
    prep = prepare(cfg, limit, with_prompts=bool(cfg.judges), cache=cache)
    prep.requests = []
    for i, case in enumerate(prep.cases):
        out = outputs.get(case.id)
        call = Call(output=out) if isinstance(out, str) else Call(error=f"no output for case {case.id!r} in {name}")
        prep.requests.append(Request(i, 0, [], "", call=call))
    record = build_record(cfg, prep, source="outputs")
    record.config = {**record.config, "model": f"outputs:{name}"}
    record.fingerprint = fingerprint(record.config, prep.corpus_hash)
    _check_errors(cfg, record, f"in {name}", t0)
    state = {"done": 0, "total": 0}

    def tick() -> None:
        state["done"] += 1
        if progress:
            progress(state["done"], state["total"])

    _score_and_judge(cfg, prep, record, cache, concurrency, retries, tick, state, refresh)
    record.usage = Usage(wall_s=round(time.perf_counter() - t0, 3))
    return record
