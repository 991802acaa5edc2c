"""Operational metrics: what each case costs and how long its answers take,
measured from the model-under-test calls of the run (judge calls are not
counted). Lower is better; gate them with ``max_increase`` (in the metric's
unit) or ``max_increase_pct`` (percent of the baseline's aggregate).

* ``cost_usd`` — US dollars per case, summed over its calls (repeats), from
  LiteLLM's price map (``response_cost``). A call LiteLLM has no price for
  leaves the case unscored (never 0), unless it failed (nothing billed: 0).
* ``latency_s`` — seconds per answer: the mean over the case's calls, each
  its answering attempt (request sent → response received; the wait for a
  slot and the retries' back-off are the call's ``queue_s``/``backoff_s``). A cached answer counts
  with the latency recorded when it was first answered, so a cached re-run
  measures the configuration, not the cache; the summary says how many were
  cached. Aggregate: the mean over cases.
* ``latency_p95`` — the same per-case latencies; aggregate: their 95th
  percentile (the inverted-CDF quantile, numpy's ``method="inverted_cdf"``,
  Hyndman & Fan 1996 definition 1), with a bootstrap interval of the
  quantile's change in the gate.
* ``prompt_tokens``, ``completion_tokens`` — tokens per case, summed over its
  calls, as the provider reported them (a failed call: 0).

A case whose calls measured nothing (never run, or scored from an outputs
file) is unscored, with the reason in the record.
"""

from __future__ import annotations

import math
from typing import Sequence

from llmops_cli.record.schema import Call, CaseRecord, MetricSummary
from llmops_cli.measure.scorers import SCORERS
from llmops_cli.measure.scorers import quantile

OPERATIONAL = ("cost_usd", "latency_s", "latency_p95", "prompt_tokens", "completion_tokens")


def _case_value(name: str, calls: list[Call]) -> tuple[float | None, str | None]:
    """(value, reason when unscored) of metric ``name`` over one case's calls."""
    if not calls:
        return None, "no call was made for this case"
    if name in ("latency_s", "latency_p95"):
        times = [c.latency_s for c in calls if c.latency_s is not None]
        if not times:
            return None, "no latency recorded (answer cached before latencies were kept; --refresh measures it)"
        return math.fsum(times) / len(times), None
    if name == "cost_usd":
        if any(c.cost_usd is None and c.error is None for c in calls):
            return None, "LiteLLM has no price for this model, so the cost is unknown"
        return math.fsum(c.cost_usd or 0.0 for c in calls), None
    return float(sum(getattr(c, name) or 0 for c in calls)), None


def score_operational(names: Sequence[str], records: list[CaseRecord]) -> dict[str, MetricSummary]:
    """Measure the operational metrics ``names`` (a subset of
    :data:`OPERATIONAL`) on every case: fills ``case.scores`` (units: USD,
    seconds or tokens per case; None = unscored, with ``case.reasons``) and
    returns each metric's summary (:func:`operational_summary`)."""
    out: dict[str, MetricSummary] = {}
    for name in names:
        for case in records:
            value, why = _case_value(name, case.calls)
            case.scores[name] = value
            if value is None:
                assert why is not None  # _case_value gives a reason with every None
                case.reasons.setdefault(name, why)
        out[name] = operational_summary(name, records)
    return out


def operational_summary(name: str, records: list[CaseRecord]) -> MetricSummary:
    """The summary of operational metric ``name`` over ``records`` (measured
    already, see :func:`score_operational`): the mean of the scored cases, or
    the scorer's quantile (``latency_p95``). ``info`` holds the unit, the
    number of calls and how many were served from the cache, and for the
    latencies both the mean and the 95th percentile (seconds). Used by a run
    and by a merge of shards (:mod:`llmops_cli.jobs.merge`)."""
    sc = SCORERS[name]
    calls = [c for r in records for c in r.calls]
    values = [v for case in records if (v := case.scores.get(name)) is not None]
    info = {"unit": sc.unit, "calls": len(calls), "cached": sum(c.cached for c in calls)}
    agg = None
    if values:
        mean = math.fsum(values) / len(values)
        agg = quantile(values, sc.quantile) if sc.quantile is not None else mean
        if sc.unit == "s":
            info.update(mean=mean, p95=quantile(values, 0.95))
    return MetricSummary(aggregate=agg, scale=sc.scale, n_scored=len(values), n_unscored=len(records) - len(values),
                         info=info)
