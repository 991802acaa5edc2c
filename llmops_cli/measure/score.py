"""Scoring a run's cases: the reference-based metrics (each repeat scored,
then averaged per case; whole metric results memoised by outputs, references
and scorer-library versions), then the judges (their calls executed like the
model's, their verdicts reduced by :mod:`.judge`).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

from llmops_cli.core import __version__
from llmops_cli.core.cache import Cache, memoised
from llmops_cli.record.compact import shared_float
from llmops_cli.config import Config
from llmops_cli.core.fingerprint import canonical_json, sha256_text
from llmops_cli.record.environment import installed_version
from llmops_cli.run.concurrency import DEFAULT_CAP
from llmops_cli.run.execute import Progress, execute
from llmops_cli.plan.requests import Plan
from llmops_cli.record.schema import CaseRecord, MetricSummary, RunRecord
from llmops_cli.record.usage import served_summary, usage_of
from llmops_cli.measure.scorers import SCORERS, aggregate, answer_field, mean, score_all

SCORER_VERSION = f"{__version__}/1"  # bump when a scorer's definition changes: memoised scores are keyed by it
SCORER_LIBRARIES = ("sacrebleu", "rouge-score", "nltk")  # their versions key memoised scores too


def score_cases(metrics: list[str], records: list[CaseRecord], repeats: int,
                memo: Cache | None = None, field: str | None = None) -> dict[str, MetricSummary]:
    """Score every case's calls (each repeat scored, then averaged per case)
    and fill ``CaseRecord.scores`` / ``.stats``. Returns the aggregates.

    ``repeats``: calls per case to score (1 for outputs scored from a file).
    ``field``: score this field of JSON answers (:func:`~llmops_cli.measure.scorers.answer_field`).
    With a ``memo``, a metric's whole result for the same outputs and
    references is reused (a fully cached re-run then imports no scorer)."""
    refs = [c.references for c in records]
    per_repeat = []
    for rep in range(repeats):
        outs = [c.calls[rep].output if rep < len(c.calls) and c.calls[rep].error is None else None for c in records]
        if field is not None:
            for case, i in zip(records, range(len(outs))):
                if (out := outs[i]) is not None:
                    outs[i], why = answer_field(out, field)
                    if why and "output_field" not in case.reasons:
                        case.reasons["output_field"] = why
        per_repeat.append(_score_memo(metrics, outs, refs, memo))
    summaries: dict[str, MetricSummary] = {}
    for name in metrics:
        for i, case in enumerate(records):
            st_rows = [r[name].stats[i] for r in per_repeat if r[name].stats and r[name].stats[i] is not None]
            value = mean([r[name].per_case[i] for r in per_repeat])
            case.scores[name] = None if value is None else shared_float(value)
            if st_rows:
                case.stats[name] = [shared_float(sum(col) / len(st_rows)) for col in zip(*st_rows)]
        # one repeat: the scorer's own aggregate (the same value; no scorer library imported on a memoised re-run)
        summaries[name] = case_summary(name, records, info=per_repeat[0][name].info,
                                       value=per_repeat[0][name].aggregate if repeats == 1 else _AGGREGATE)
    return summaries


_AGGREGATE = object()  # case_summary's "aggregate the cases' scores" default


def aggregate_cases(name: str, cases: list[CaseRecord]) -> float | None:
    """The aggregate of metric ``name`` over ``cases`` (their
    ``scores[name]`` and ``stats[name]``), as a run aggregates it: the
    scorer's quantile (``latency_p95``), a corpus score from summed
    statistics (``bleu``), else the mean of the scored cases (None when none
    is scored). A metric not in :data:`~llmops_cli.measure.scorers.SCORERS` (a
    judge, a check) is a mean."""
    from llmops_cli.measure.scorers import quantile

    sc = SCORERS.get(name)
    scores = [c.scores.get(name) for c in cases]
    if sc is not None and sc.quantile is not None:
        vals = [v for v in scores if v is not None]
        return quantile(vals, sc.quantile) if vals else None
    if sc is not None and sc.from_stats is not None:
        return aggregate(name, scores, [c.stats.get(name) for c in cases])
    return mean(scores)


def case_summary(name: str, cases: list[CaseRecord], *, info: dict[str, Any] | None = None,
                 value: Any = _AGGREGATE) -> MetricSummary:
    """The :class:`MetricSummary` of metric ``name`` over ``cases`` (scored
    already): the aggregate ``value`` (default :func:`aggregate_cases`), the scorer's
    scale (1 for a metric not in the registry), how many cases are scored
    and unscored, and ``info`` as given. Used by a run and by a merge of
    shards (:mod:`llmops_cli.jobs.merge`)."""
    scored = sum(c.scores.get(name) is not None for c in cases)
    sc = SCORERS.get(name)
    return MetricSummary(aggregate=aggregate_cases(name, cases) if value is _AGGREGATE else value,
                         scale=sc.scale if sc is not None else 1.0, n_scored=scored, n_unscored=len(cases) - scored,
                         info=dict(info or {}))


def slice_summary(record: RunRecord) -> dict[str, dict[str, dict[str, Any]]]:
    """Every metric's aggregate per slice: ``{field: {value: {"n": cases,
    metric: aggregate or None}}}`` over the cases carrying that slice value,
    aggregated as the run's own (:func:`aggregate_cases`)."""
    groups: dict[str, dict[str, list[CaseRecord]]] = {}
    for case in record.cases:
        for field, value in case.slices.items():
            groups.setdefault(field, {}).setdefault(value, []).append(case)
    return {field: {value: {"n": len(cases), **{name: aggregate_cases(name, cases) for name in record.metrics}}
                    for value, cases in values.items()}
            for field, values in groups.items()}


@functools.lru_cache(maxsize=1)
def scorer_versions() -> tuple[str, ...]:
    """:data:`SCORER_VERSION` and the installed versions of the scoring
    libraries (:data:`SCORER_LIBRARIES`, ``name==version``, or ``name==-``
    when absent), read from package metadata without importing them: a new
    sacrebleu or rouge-score makes memoised metric results stale."""
    return (SCORER_VERSION, *(f"{name}=={installed_version(name) or '-'}" for name in SCORER_LIBRARIES))


def _memo_versions() -> tuple[str, ...]:
    """:func:`scorer_versions` and the loaded plugin scorers' distributions."""
    from llmops_cli.measure.plugins import plugin_versions

    return scorer_versions() + plugin_versions()


def _score_memo(metrics: list[str], outs: list[str | None], refs: list[list[str]], memo: Cache | None):
    """Each metric's :class:`MetricResult`, memoised in ``memo`` by the
    outputs, the references and :func:`scorer_versions`."""
    from llmops_cli.measure.scorers import MetricResult

    content = sha256_text(canonical_json([_memo_versions(), outs, refs])) if memo is not None else None  # hashed once

    def score(name: str) -> dict[str, Any]:
        return dataclasses.asdict(score_all([name], outs, refs)[name])

    return {name: MetricResult(**memoised(memo, name, content, functools.partial(score, name))) for name in metrics}


def score_run(cfg: Config, plan: Plan, record: RunRecord, cache: Cache | None, *, concurrency: int | None,
              retries: int, progress: Progress, refresh: bool = False, max_concurrency: int = DEFAULT_CAP) -> None:
    """Fill ``record``'s scores: the reference-based metrics, the
    operational ones (:mod:`llmops_cli.measure.operational`), the checks
    (:mod:`llmops_cli.measure.checks`), then the judges
    (their calls executed through the same cache, concurrency, retries and
    ``refresh`` as the model's; see :func:`llmops_cli.run.execute.execute`).

    Raises:
        ConfigError: a judge's key is missing (before any judge call).
        KeyboardInterrupt: Ctrl-C while the judges are called."""
    from llmops_cli.measure.operational import OPERATIONAL, score_operational

    plain = [m for m in cfg.metrics if not SCORERS[m].external]
    record.metrics = score_cases(plain, record.cases, cfg.repeats if record.source == "model" else 1, cache,
                                 field=cfg.output_field)
    measured = [m for m in cfg.metrics if m in OPERATIONAL]
    if measured:
        record.metrics.update(score_operational(measured, record.cases))
    if "semantic_similarity" in cfg.metrics:
        from llmops_cli.measure.similarity import NAME, score_similarity

        record.metrics[NAME] = score_similarity(cfg, record.cases, cache)
    if "perplexity" in cfg.metrics:
        from llmops_cli.measure.perplexity import score_perplexity

        record.metrics["perplexity"] = score_perplexity(record.cases, cfg.model, record.source)
    if cfg.checks:
        from llmops_cli.measure.checks import score_checks

        chunks = [cv.get("chunks", []) for cv in plan.chunk_vars] if plan.chunk_vars else []
        record.metrics.update(score_checks(cfg, record.cases, plan.check_values, chunks))
    if cfg.judges:
        _judge(cfg, plan, record, cache, concurrency=concurrency, max_concurrency=max_concurrency, retries=retries,
               progress=progress, refresh=refresh)
    record.slices = slice_summary(record)


def _judge(cfg: Config, plan: Plan, record: RunRecord, cache: Cache | None, *, concurrency: int | None,
           max_concurrency: int, retries: int, progress: Progress, refresh: bool) -> None:
    from llmops_cli.measure.judge import apply_judges, judge_requests

    jreqs = judge_requests(cfg, plan, record.cases)
    progress.add(len(jreqs))
    limits = execute(jreqs, cache, concurrency=concurrency, max_concurrency=max_concurrency, retries=retries,
                     on_done=progress.tick, refresh=refresh, config_path=cfg.path)
    record.metrics.update(apply_judges(cfg, record.cases, jreqs))
    record.judge_usage = usage_of([], 0.0, [r.call for r in jreqs if r.call is not None], limits=[limits])
    record.judge_served = served_summary(jreqs)
