"""Run an eval set through a pinned configuration, one way through the
pipeline: config → :mod:`.plan` (cases, retrieval, rendered requests) →
:mod:`.execute` (cache, calls, retries, early stop) → :mod:`.score` (metrics,
judges) → the run record (:mod:`.record`). ``run_eval`` answers with the
model; ``score_outputs`` scores answers made elsewhere.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from llmops_cli.core import stop
from llmops_cli.core.cache import Cache
from llmops_cli.config import Config
from llmops_cli.core.errors import InputError, Interrupted
from llmops_cli.run.concurrency import DEFAULT_CAP, LimitStats
from llmops_cli.run.execute import DEFAULT_RETRIES, Progress, allowed_failures, execute
from llmops_cli.core.fingerprint import fingerprint
from llmops_cli.jobs.recording import build_record, check_errors, current_budget
from llmops_cli.plan.requests import Request, make_plan, select_cases
from llmops_cli.record.schema import Call, RunRecord, Usage
from llmops_cli.record.usage import usage_of
from llmops_cli.measure.score import score_run
from llmops_cli.measure.prepare import prepare

CHUNK = 5_000  # cases planned, answered and scored at a time by a larger run (:mod:`llmops_cli.jobs.chunked_run`)
ProgressFn = Callable[[int, int], None]


def run_eval(cfg: Config, *, limit: int | None = None, concurrency: int | None = None,
             max_concurrency: int = DEFAULT_CAP, cache: Cache | None = None, retries: int = DEFAULT_RETRIES,
             progress: ProgressFn | None = None, refresh: bool = False,
             shard: tuple[int, int] | None = None, chunk: int = CHUNK) -> RunRecord:
    """Answer and score every case of ``cfg``'s eval set (or of one shard of it).

    Args:
        cfg: a validated :class:`~llmops_cli.config.Config`.
        limit: number of cases (overrides ``dataset.limit``; 0 = all).
        concurrency: model calls in flight at once (≥ 1), fixed; None
            (default): adaptive up to ``max_concurrency`` (AIMD, see
            :mod:`llmops_cli.run.concurrency`).
        cache: response cache, or ``None`` for no caching.
        retries: retries per call on 429/5xx/connection errors/timeouts.
        progress: called as ``progress(done, total)`` after each call.
        refresh: read no answer from ``cache`` — call the model (and the
            judges) for every case — but still write every answer to it.
        shard: ``(k, n)``: only the cases of shard k of n (1-based; see
            :mod:`llmops_cli.plan.shards`); the record gets a ``shard`` block and
            keeps the whole eval set's dataset hash.
        chunk: cases planned, answered and scored at a time (≥ 1). A run of
            more cases holds each finished case on disk, not in memory
            (:mod:`llmops_cli.jobs.chunked_run`); its record is the same.

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
    prepare(cfg)
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, not {chunk}")
    total = len(select_cases(cfg, limit, shard)[0])
    prog = Progress(progress)
    if total > chunk:
        from llmops_cli.jobs.chunked_run import run_chunked

        prog.add(total * cfg.repeats)
        return run_chunked(cfg, total, chunk, limit=limit, shard=shard, cache=cache, concurrency=concurrency,
                           max_concurrency=max_concurrency, retries=retries, prog=prog, refresh=refresh, t0=t0)
    plan = make_plan(cfg, limit, memo=cache, shard=shard)
    prog.add(len(plan.requests))

    limits: list[LimitStats | None] = []  # what the concurrency limits saw, per execute() call

    def interrupted(record: RunRecord | None = None) -> Interrupted:
        record = record or build_record(cfg, plan, status="interrupted")
        record.status = "interrupted"
        record.usage = usage_of(record.cases, time.perf_counter() - t0, limits=limits)
        return Interrupted(f"interrupted after {prog.done} of {prog.total} calls; completed answers are cached", record)

    try:
        limits.append(execute(plan.requests, cache, concurrency=concurrency, max_concurrency=max_concurrency,
                              retries=retries, on_done=prog.tick, refresh=refresh, config_path=cfg.path,
                              max_failed_cases=allowed_failures(len(plan.cases), cfg.max_error_share)))
        stop.check()  # a signal swallowed where it landed (inside aiohttp) still stops the run
    except KeyboardInterrupt:
        raise interrupted() from None
    record = build_record(cfg, plan)
    plan.drop_recorded()
    budget = current_budget()
    if budget is not None and budget.exceeded:
        record.usage = usage_of(record.cases, time.perf_counter() - t0, limits=limits)
        raise budget.stop(record, f"{sum(c.error is None for c in record.cases)} of {len(record.cases)} cases answered")
    provider = cfg.model + (f" at {cfg.api_base}" if cfg.api_base else "")
    if cfg.deployments:
        provider += f" through {len(cfg.deployments)} deployment{'s' if len(cfg.deployments) > 1 else ''}"
    check_errors(cfg, record, f"calling {provider}", t0, limits)
    try:
        score_run(cfg, plan, record, cache, concurrency=concurrency, max_concurrency=max_concurrency, retries=retries,
                  progress=prog, refresh=refresh)
        stop.check()
    except KeyboardInterrupt:
        raise interrupted(record) from None
    record.usage = usage_of(record.cases, time.perf_counter() - t0, limits=limits)
    if budget is not None and budget.exceeded:  # passed while the judges were called
        raise budget.stop(record, "every case answered, some judge calls not made")
    return record


def load_outputs(path: str | Path) -> dict[str, str]:
    """Read a file of outputs made elsewhere: a JSON object ``{case_id: output}``.

    Raises:
        InputError: missing, unreadable, not JSON, or not an object of strings."""
    import json

    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(p, None, "outputs file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(p, None, f"cannot read outputs: {e}") from None
    except RecursionError:
        raise InputError(p, None, "cannot read outputs: JSON nested too deeply") from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise InputError(p, None, "expected a JSON object {case_id: output string}")
    from llmops_cli.core.files import LONE_SURROGATE, has_lone_surrogate

    bad = next((k for k, v in data.items() if has_lone_surrogate(k) or has_lone_surrogate(v)), None)
    if bad is not None:
        raise InputError(p, ascii(bad), LONE_SURROGATE)
    return data


def score_outputs(cfg: Config, outputs: dict[str, str], *, limit: int | None = None, name: str = "outputs",
                  cache: Cache | None = None, concurrency: int | None = None, max_concurrency: int = DEFAULT_CAP,
                  retries: int = DEFAULT_RETRIES, progress: ProgressFn | None = None,
                  refresh: bool = False, shard: tuple[int, int] | None = None) -> RunRecord:
    """Score outputs produced elsewhere (``{case_id: output}``) exactly as a
    model run would be scored — judges included (their calls use ``cache``,
    ``concurrency``, ``retries`` and ``refresh``). A case with no output is an error.
    ``shard``: as in :func:`run_eval`.

    Raises:
        DatasetError: eval set unreadable; RunIncomplete: too many cases
        without an output (share above ``cfg.max_error_share``).
    """
    t0 = time.perf_counter()
    prepare(cfg)
    needs_chunks = bool(cfg.judges) or any(c.type == "python" for c in cfg.checks.values())
    plan = make_plan(cfg, limit, with_prompts=needs_chunks, memo=cache, shard=shard)
    plan.requests = []
    for i, case in enumerate(plan.cases):
        out = outputs.get(case.id)
        call = Call(output=out) if isinstance(out, str) else Call(error=f"no output for case {case.id!r} in {name}")
        plan.requests.append(Request(i, 0, [], "", call=call))
    record = build_record(cfg, plan, source="outputs")
    plan.drop_recorded()
    record.config = {**record.config, "model": f"outputs:{name}"}
    record.fingerprint = fingerprint(record.config, plan.corpus_hash)
    check_errors(cfg, record, f"in {name}", t0)
    score_run(cfg, plan, record, cache, concurrency=concurrency, max_concurrency=max_concurrency, retries=retries,
              progress=Progress(progress), refresh=refresh)
    record.usage = Usage(wall_s=round(time.perf_counter() - t0, 3))
    return record
