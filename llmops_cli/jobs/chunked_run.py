"""A large run a chunk of cases at a time, so that its memory does not grow
with everything each case carries (:func:`run_chunked`; used by
:func:`llmops_cli.jobs.runner.run_eval` for more cases than one chunk).

Before any call, every chunk is planned once — the eval set read, retrieval
run, every prompt and check value rendered, every cache key computed — so a
bad template or row is exit 2 before the first paid call, as in a whole run;
those plans are dropped as soon as made. Then each chunk is planned again,
answered, recorded and scored (judges included), and its case records go to
a :class:`~llmops_cli.record.spool.CaseSpool`; the run keeps a
:class:`~llmops_cli.record.spool.CaseRow` per case. The record is the one a
whole run would write: the metrics are aggregated over every case as a merge
of shards aggregates them (:func:`llmops_cli.jobs.merge.summarise`: corpus
BLEU from summed statistics, means, quantiles, check pass rates, judge
summaries, perplexity), then the slices; usage is summed over the chunks
with the run's own wall time.

What differs from a whole run: the adaptive concurrency limit starts afresh
in each chunk (one chunk is thousands of calls, so the climb costs little);
the memoised metric results are keyed per chunk; and a run that stops early
(too many failures, the budget spent, Ctrl-C) records the cases of the chunks
it never planned as ``not run`` without rendered messages or retrieval,
while the chunks it finished keep their scores.
"""

from __future__ import annotations

import time

from llmops_cli.config import Config
from llmops_cli.core import stop
from llmops_cli.core.cache import Cache
from llmops_cli.core.errors import Interrupted
from llmops_cli.jobs.recording import NOT_RUN, build_record, check_errors, current_budget
from llmops_cli.plan.dataset import release_loaded
from llmops_cli.plan.requests import Plan, make_plan, select_cases
from llmops_cli.record.schema import CaseRecord, RunRecord, new_run_id, now_iso
from llmops_cli.record.spool import CaseSpool
from llmops_cli.run.execute import Progress, allowed_failures, execute


def run_chunked(cfg: Config, total: int, chunk: int, *, limit: int | None,
                shard: tuple[int, int] | None, cache: Cache | None, concurrency: int | None, max_concurrency: int,
                retries: int, prog: Progress, refresh: bool, t0: float) -> RunRecord:
    """Answer and score the ``total`` selected cases ``chunk`` at a time;
    arguments as :func:`llmops_cli.jobs.runner.run_eval`, ``t0`` its
    ``perf_counter`` start.

    Returns:
        The run record, status ``complete``; its cases are
        :class:`~llmops_cli.record.spool.CaseRow`\\ s.

    Raises:
        ConfigError, DatasetError: bad input in any chunk, before any call.
        RunIncomplete: more than ``cfg.max_error_share`` of the cases failed
            (no chunk is started once more have failed than the whole run
            may), or the ``--max-cost`` budget was spent; ``.record``: the
            partial run.
        Interrupted: Ctrl-C; ``.record``: the chunks done so far.
    """
    from llmops_cli.jobs.merge import sum_counts, sum_usage, summarise
    from llmops_cli.measure.score import score_run, slice_summary
    from llmops_cli.record.usage import usage_of

    parts = [slice(s, s + chunk) for s in range(0, total, chunk)]
    for part in parts[1:]:  # every template, row and check value, before the first call (the first: in the loop)
        make_plan(cfg, limit, memo=cache, shard=shard, part=part)
    spool = CaseSpool()
    rows: list = []
    done: list[RunRecord] = []  # each finished chunk's record, its cases spooled
    limits: list = []
    allowed = allowed_failures(total, cfg.max_error_share)
    failed = 0
    budget = current_budget()

    def interrupted(record: RunRecord) -> Interrupted:
        return Interrupted(f"interrupted after {prog.done} of {prog.total} calls; completed answers are cached",
                           joined("interrupted", record))

    def joined(status: str, current: RunRecord | None = None) -> RunRecord:
        """The run so far: the spooled rows, the cases of ``current`` (a
        chunk's record, not spooled), then the cases never planned as not run."""
        cases = [*rows, *(current.cases if current is not None else ())]
        if len(cases) < total:
            every = select_cases(cfg, limit, shard)[0]
            cases += [CaseRecord.model_construct(CaseRecord.all_fields(), id=c.id, inputs=c.inputs,
                                                 references=c.references, slices=c.slices, error=NOT_RUN)
                      for c in every[len(cases):]]
        head = done[0] if done else current
        assert head is not None, "a chunk is done or in hand"
        record = head.model_copy(update={"cases": cases, "status": status, "run_id": run_id,
                                         "created_at": created_at})
        record.metrics = summarise(cases, done) if done else {}
        record.slices = slice_summary(record) if done else {}
        record.served = sum_counts([r.served for r in done])
        judged = [r.judge_usage for r in done if r.judge_usage is not None]
        record.judge_usage = sum_usage(judged) if judged else None
        record.judge_served = sum_counts([r.judge_served for r in done])
        usage = sum_usage([*(r.usage for r in done),
                           usage_of(current.cases if current is not None else [], 0.0, limits=limits[len(done):])])
        usage.wall_s = round(time.perf_counter() - t0, 3)
        record.usage = usage
        return record

    run_id, created_at = new_run_id(), now_iso()
    plan: Plan | None = None  # one chunk's plan at a time
    provider = cfg.model + (f" at {cfg.api_base}" if cfg.api_base else "")
    for part in parts:
        if plan is None:
            plan = make_plan(cfg, limit, memo=cache, shard=shard, part=part)
        if part is parts[-1]:  # every chunk planned: the eval set is held only by the cases of this one
            release_loaded()
        try:
            seen = execute(plan.requests, cache, concurrency=concurrency, max_concurrency=max_concurrency,
                           retries=retries, on_done=prog.tick, refresh=refresh, config_path=cfg.path,
                           max_failed_cases=max(0, allowed - failed))
            limits.append(seen)
            stop.check()
        except KeyboardInterrupt:
            raise interrupted(build_record(cfg, plan, status="interrupted")) from None
        record = build_record(cfg, plan)
        failed += sum(c.error is not None for c in record.cases)
        if budget is not None and budget.exceeded:
            raise budget.stop(joined("incomplete", record),
                              f"{sum(c.error is None for c in [*rows, *record.cases])} of {total} cases answered")
        if failed > allowed:
            partial = joined("complete", record)
            check_errors(cfg, partial, f"calling {provider}", t0, usage=partial.usage)
        try:
            score_run(cfg, plan, record, cache, concurrency=concurrency, max_concurrency=max_concurrency,
                      retries=retries, progress=prog, refresh=refresh)
            stop.check()
        except KeyboardInterrupt:
            raise interrupted(record) from None
        record.usage = usage_of(record.cases, 0.0, limits=[seen])
        rows.extend(spool.add(c) for c in record.cases)
        record.cases = []
        done.append(record)
        plan = None
        if budget is not None and budget.exceeded:  # passed while the judges were called
            raise budget.stop(joined("incomplete"), "some judge calls not made")
    return joined("complete")
