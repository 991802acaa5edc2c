"""Usage accounting: a run's totals over its calls (tokens, USD, cache hits,
errors, retries, the concurrency reached, who answered) and the served-model
summary, as the run record stores them (:class:`~llmops_cli.record.schema.Usage`,
``RunRecord.served``)."""

from __future__ import annotations

from collections.abc import Sequence

from llmops_cli.record.schema import Call, CaseRecord, Usage


def usage_of(records: list[CaseRecord], wall_s: float, extra_calls: Sequence[Call] | None = None, *,
             limits=()) -> Usage:
    """Totals over the model-under-test calls of ``records`` (or over
    ``extra_calls``, e.g. judge calls); ``wall_s`` in seconds. Costs (USD)
    and calls count only answers not served from the cache. ``limits``:
    what the concurrency limits saw (:class:`~llmops_cli.run.concurrency.LimitStats`,
    None for an execution that called nothing)."""
    seen = [lim for lim in limits if lim is not None]
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
        concurrency_peak=max((lim.peak for lim in seen), default=None),
        throttled=sum(lim.throttled for lim in seen),
        congestion=sum(lim.congestion for lim in seen),
        deployments=_counts(c.deployment for c in calls if c.deployment and not c.cached and c.error is None),
    )


def _counts(labels) -> dict[str, int]:
    out: dict[str, int] = {}
    for label in labels:
        out[label] = out.get(label, 0) + 1
    return dict(sorted(out.items()))


def served_summary(requests) -> dict[str, dict[str, int]]:
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
