"""Pairing a candidate's cases with the baseline's, by id, and measuring one
metric over the pairs.

**Every case counts**: a candidate case that failed (provider error, no
output, not run) counts as the metric's worst value (0 on 0–1 metrics; for
corpus BLEU, the statistics of an empty answer), never silently dropped;
cases the baseline did not score are excluded and counted; an unscored
judge verdict on an answer that exists stays unscored. Also the per-case
diffs (:func:`case_changes`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from llmops_cli.gate import stats
from llmops_cli.gate.comparison import CaseChange
from llmops_cli.record.schema import CaseRecord, RunRecord
from llmops_cli.measure.scorers import SCORERS

def scorer_of(metric: str):
    """The metric's registered scorer; ``None`` for judges (0–1, mean-aggregated)."""
    return SCORERS.get(metric)


def scale_of(metric: str) -> float:
    """The top of the metric's range: 1, or 100 for BLEU."""
    sc = scorer_of(metric)
    return sc.scale if sc else 1.0


def worst_of(metric: str) -> float | None:
    """The score a failed case counts as (the bottom of the metric's range);
    ``None`` for lower-is-better metrics, where a failed case counts with
    what it measured."""
    sc = scorer_of(metric)
    return sc.worst if sc else 0.0


def higher_is_better(metric: str) -> bool:
    """False for costs, latencies, token counts and perplexity."""
    sc = scorer_of(metric)
    return sc.higher_is_better if sc else True


def unit_of(metric: str) -> str:
    """``USD``, ``s``, ``tokens``, or empty for scores."""
    sc = scorer_of(metric)
    return sc.unit if sc else ""


def counted(case: CaseRecord, metric: str) -> float | None:
    """The score a candidate case counts with in the gate: its own, the
    metric's worst value when the case failed, or ``None`` when an answer
    exists but was not scored (e.g. an unparseable judge verdict) or the
    metric has no worst value."""
    v = case.scores.get(metric)
    if v is None:
        worst = worst_of(metric)
        return worst if case.error and worst is not None else None
    return float(v)


def groups(ids: list[str], cluster_of: dict[str, Any] | None) -> list[list[int]] | None:
    """Resampling units as lists of case positions; ``None`` means every
    case is its own unit (the ordinary paired bootstrap)."""
    if cluster_of is None:
        return None
    groups: dict[Any, list[int]] = {}
    for i, cid in enumerate(ids):
        groups.setdefault(cluster_of.get(cid, cid), []).append(i)
    return list(groups.values())


@dataclass
class Paired:
    """One metric's paired data: per-case scores (a candidate failure as the
    worst value) and, for corpus metrics, statistics (``None`` in ``cs``
    where the candidate failed: filled with an empty answer's)."""

    ids: list[str]
    b: list[float]
    c: list[float]
    bs: list | None
    cs: list | None
    failed_refs: dict[str, list[str]]
    n_missing: int
    n_unscored: int


def pair(metric: str, common: list[str], bmap: dict[str, CaseRecord], cmap: dict[str, CaseRecord]) -> Paired:
    """``metric``'s pairs over the case ids ``common`` to both runs (``bmap``: the
    baseline's cases by id, ``cmap``: the candidate's)."""
    sc = scorer_of(metric)
    corpus = sc is not None and sc.from_stats is not None
    out = Paired([], [], [], [] if corpus else None, [] if corpus else None, {}, 0, 0)
    for cid in common:
        bc, cc = bmap[cid], cmap[cid]
        b = bc.scores.get(metric)
        if b is None:
            out.n_missing += 1
            continue
        c = counted(cc, metric)
        if c is None:
            out.n_unscored += 1
            continue
        failed = cc.scores.get(metric) is None
        out.ids.append(cid)
        out.b.append(float(b))
        out.c.append(c)
        if failed:
            out.failed_refs[cid] = list(cc.references)
        if corpus:
            assert out.bs is not None and out.cs is not None  # lists for a corpus metric
            out.bs.append(bc.stats[metric])
            out.cs.append(None if failed else cc.stats.get(metric))
    return out


def measure(metric: str, p: Paired, groups: list[list[int]] | None, counts_for) -> dict[str, Any]:
    """Aggregates, the bootstrap summary and the SE used for power (numpy;
    memoised by :func:`llmops_cli.gate.rules.compare`). ``counts_for(units)`` gives
    the shared resample counts for that many units."""
    import numpy as np

    sc = scorer_of(metric)
    if sc is not None and sc.quantile is not None:
        return _measure_quantile(sc.quantile, p, groups, counts_for)
    if p.bs is not None:
        assert p.cs is not None  # set with bs, for a corpus metric
        cs = [s if s is not None else sc.worst_stats(p.failed_refs[cid]) for cid, s in zip(p.ids, p.cs)]
        base, cand = np.array(p.bs, dtype=float), np.array(cs, dtype=float)

        def agg(sums):
            return np.array([sc.from_stats(row) for row in sums])
    else:
        ones = np.ones(len(p.b))
        base, cand = np.column_stack([p.b, ones]), np.column_stack([p.c, ones])

        def agg(sums):
            return sums[:, 0] / sums[:, 1]
    if groups is not None:
        unit = _unit_index(groups, len(p.ids))
        bu, cu = np.zeros((len(groups), base.shape[1])), np.zeros((len(groups), base.shape[1]))
        np.add.at(bu, unit, base)
        np.add.at(cu, unit, cand)
    else:
        bu, cu = base, cand
    summary = stats.paired_bootstrap(bu, cu, agg, counts_for(bu.shape[0]))
    b_agg, c_agg = float(agg(base.sum(0)[None, :])[0]), float(agg(cand.sum(0)[None, :])[0])
    se = summary.se
    constant = len(set(p.b) | set(p.c)) <= 1  # the same value on every case, on both sides
    if se == 0 and not constant and len(p.b) > 1:
        # the runs agree case by case: SE from the baseline's spread (paired correlation 0.5)
        spread = np.array([sc.from_stats(x) for x in p.bs] if p.bs is not None else p.b)
        se = float(spread.std(ddof=1)) / math.sqrt(len(p.b))
    return {"summary": summary.to_dict(), "baseline": b_agg, "candidate": c_agg, "se": se,
            "cannot_detect": constant}


def _unit_index(groups: list[list[int]], n: int):
    """A numpy array: the resampling unit (cluster) of each of the ``n`` cases."""
    import numpy as np

    unit = np.empty(n, dtype=int)
    for g, members in enumerate(groups):
        unit[members] = g
    return unit


def _measure_quantile(q: float, p: Paired, groups: list[list[int]] | None, counts_for) -> dict[str, Any]:
    """:func:`measure` for a quantile aggregate (``latency_p95``): the paired
    bootstrap of the change in the ``q``-quantile (:func:`stats.paired_quantile_bootstrap`)."""
    unit = _unit_index(groups, len(p.ids)) if groups is not None else None
    units = len(groups) if groups is not None else len(p.ids)
    summary, b_agg, c_agg = stats.paired_quantile_bootstrap(p.b, p.c, q, counts_for(units), unit)
    return {"summary": summary.to_dict(), "baseline": b_agg, "candidate": c_agg, "se": summary.se,
            "cannot_detect": len(set(p.b) | set(p.c)) <= 1}


def candidate_all(metric: str, candidate: RunRecord, ids: list[str] | None = None) -> float | None:
    """The candidate's aggregate over its whole run — or over the cases
    ``ids`` (a slice) — failures as the worst value (what ``min`` and
    ``max`` apply to)."""
    sc = scorer_of(metric)
    vals, stats_rows = [], []
    keep = None if ids is None else set(ids)
    for case in candidate.cases:
        if keep is not None and case.id not in keep:
            continue
        v = counted(case, metric)
        if v is None:
            continue
        vals.append(v)
        if sc is not None and sc.from_stats is not None:
            failed = case.scores.get(metric) is None
            stats_rows.append(sc.worst_stats(case.references) if failed else case.stats[metric])
    if not vals:
        return None
    if sc is not None and sc.quantile is not None:
        return stats.quantile(vals, sc.quantile)
    if stats_rows:
        return sc.from_stats([math.fsum(col) for col in zip(*stats_rows)])
    return math.fsum(vals) / len(vals)


def case_changes(a: RunRecord, b: RunRecord, metrics: list[str]) -> list[CaseChange]:
    """Cases whose score changed between runs ``a`` and ``b``, most fallen
    first. A case ``b`` failed counts as the metric's worst value. The sort
    key (``delta``, on ``metric``) is the largest fall over ``metrics``
    (scaled to 0–1) when the case fell on any, else the change in the first
    metric; ties are broken by the mean scaled change over all of them.
    Lower-is-better metrics (costs, latencies, tokens, perplexity) do not
    rank cases: per-case timing jitter is not a fallen answer."""
    metrics = [m for m in metrics if higher_is_better(m)]
    amap = a.case_map()
    out = []
    for cb in b.cases:
        ca = amap.get(cb.id)
        if ca is None:
            continue
        scores = {m: (ca.scores.get(m), counted(cb, m)) for m in metrics}
        diffs = {m: (y - x) / scale_of(m) for m, (x, y) in scores.items() if x is not None and y is not None}
        if not diffs or (all(d == 0 for d in diffs.values()) and ca.output == cb.output):
            continue
        fell = min(diffs, key=diffs.__getitem__)
        metric = fell if diffs[fell] < 0 else next(iter(diffs))
        key = diffs[metric]
        out.append((key, sum(diffs.values()) / len(diffs), CaseChange(cb.id, key, metric, ca.output, cb.output, cb.inputs,
                                                                      cb.references, scores, cb.error, dict(cb.reasons))))
    out.sort(key=lambda t: (t[0], t[1]))
    return [t[2] for t in out if t[0] != 0 or t[1] != 0] + [t[2] for t in out if t[0] == 0 and t[1] == 0]
