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
    n_unreadable: int = 0  # of n_unscored: the candidate answered, the metric could not score the answer


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
            out.n_unreadable += cc.error is None
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


def measure(metric: str, p: Paired, groups: list[list[int]] | None, counts_for, binary: bool = False) -> dict[str, Any]:
    """Aggregates, the delta's summary (its SE and degrees of freedom) and
    the SE used for power. ``counts_for(units)`` gives the shared resample
    counts for that many units.

    * A per-case mean (exact match, token F1, a check, a judge, a cost):
      the analytic paired SE, ``sd(c − b)/√n`` with ``n − 1`` df
      (Student 1908: the paired t-test); with clusters, the CR2
      cluster-robust SE of the mean difference — each cluster's summed
      residual weighted by ``1/(1 − n_g/n)`` (Bell & McCaffrey 2002,
      Survey Methodology 28:169) — with ``G − 1`` df, as Cameron & Miller
      2015 (§VI.C, §VI.D) recommend for few clusters. Deterministic: no
      resampling, no numpy.
    * Corpus BLEU and quantiles (p95 latency): the paired bootstrap
      (:mod:`llmops_cli.gate.stats`), its SE rescaled by ``√(u/(u − 1))`` with
      ``u − 1`` df (:func:`llmops_cli.gate.stats.small_sample`).
    * ``binary`` (the metric declares itself 0/1 and every paired value is
      0 or 1, no clusters): also the discordant pairs (``"binary"``), which
      the gate tests exactly (:mod:`llmops_cli.gate.exact`)."""
    sc = scorer_of(metric)
    if sc is not None and sc.quantile is not None:
        return _measure_quantile(sc.quantile, p, groups, counts_for)
    if p.bs is None:
        return _measure_mean(p, groups, binary)
    import numpy as np
    assert p.cs is not None  # set with bs, for a corpus metric

    cs = [s if s is not None else sc.worst_stats(p.failed_refs[cid]) for cid, s in zip(p.ids, p.cs)]
    base, cand = np.array(p.bs, dtype=float), np.array(cs, dtype=float)

    def agg(sums):
        return np.array([sc.from_stats(row) for row in sums])
    if groups is not None:
        unit = _unit_index(groups, len(p.ids))
        bu, cu = np.zeros((len(groups), base.shape[1])), np.zeros((len(groups), base.shape[1]))
        np.add.at(bu, unit, base)
        np.add.at(cu, unit, cand)
    else:
        bu, cu = base, cand
    summary = stats.small_sample(stats.paired_bootstrap(bu, cu, agg, counts_for(bu.shape[0])))
    b_agg, c_agg = float(agg(base.sum(0)[None, :])[0]), float(agg(cand.sum(0)[None, :])[0])
    se = summary.se
    constant = len(set(p.b) | set(p.c)) <= 1  # the same value on every case, on both sides
    if se == 0 and not constant and len(p.b) > 1:
        # the runs agree case by case: SE from the baseline's spread (paired correlation 0.5)
        spread = np.array([sc.from_stats(x) for x in p.bs])
        se = float(spread.std(ddof=1)) / math.sqrt(len(p.b))
    return {"summary": summary.to_dict(), "baseline": b_agg, "candidate": c_agg, "se": se,
            "cannot_detect": constant}


def _measure_mean(p: Paired, groups: list[list[int]] | None, binary: bool) -> dict[str, Any]:
    """:func:`measure` for a per-case mean: the analytic paired SE (CR2 over
    clusters), pure Python."""
    from llmops_cli.gate.exact import discordant, is_binary

    n = len(p.b)
    d = [c - b for b, c in zip(p.b, p.c)]
    theta = math.fsum(d) / n
    b_agg, c_agg = math.fsum(p.b) / n, math.fsum(p.c) / n
    df: float
    if groups is None:
        units, df = n, n - 1
        var = math.fsum((x - theta) ** 2 for x in d) / (n - 1) / n if n > 1 else 0.0
    else:
        units, df = len(groups), _bell_mccaffrey_df([len(g) for g in groups], n, _within_correlation(d, groups))
        var = math.fsum(math.fsum(d[i] - theta for i in g) ** 2 / (1 - len(g) / n)
                        for g in groups) / (n * n) if len(groups) > 1 else 0.0
    se = math.sqrt(var)
    se = se if se > 1e-12 * max(1.0, abs(theta)) else 0.0
    summary = stats.BootstrapSummary(theta, se, units, df if df > 0 else None)
    constant = len(set(p.b) | set(p.c)) <= 1
    se_power = se
    if se == 0 and not constant and n > 1:
        # the runs agree case by case: SE from the baseline's spread (paired correlation 0.5)
        mb = math.fsum(p.b) / n
        se_power = math.sqrt(math.fsum((x - mb) ** 2 for x in p.b) / (n - 1)) / math.sqrt(n)
    pairs = discordant(p.b, p.c) if binary and groups is None and is_binary(p.b) and is_binary(p.c) else None
    return {"summary": summary.to_dict(), "baseline": b_agg, "candidate": c_agg, "se": se_power,
            "cannot_detect": constant, "binary": pairs.to_dict() if pairs else None}


def _within_correlation(d: list[float], groups: list[list[int]]) -> float:
    """The correlation of two cases' paired differences within a cluster,
    estimated from the residuals (mean within-cluster cross-product over
    the mean square), clipped to [0, 0.99]: the working model of
    :func:`_bell_mccaffrey_df` (Imbens & Kolesár 2016, §5)."""
    n = len(d)
    mu = math.fsum(d) / n
    e = [x - mu for x in d]
    ss = math.fsum(x * x for x in e) / n
    pairs = sum(len(g) * (len(g) - 1) for g in groups)
    if ss <= 0 or pairs == 0:
        return 0.0
    cross = math.fsum(math.fsum(e[i] for i in g) ** 2 - math.fsum(e[i] ** 2 for i in g) for g in groups) / pairs
    return min(0.99, max(0.0, cross / ss))


def _bell_mccaffrey_df(sizes: list[int], n: int, rho: float = 0.0) -> float:
    """Degrees of freedom of the CR2 variance of a mean over clusters of
    ``sizes`` (summing to ``n``): Bell & McCaffrey's (2002) Satterthwaite
    approximation ``tr(AK)² / tr(AKAK)``, ``K = U'MΣMU = (1 − ρ)W + ρW²``,
    ``W = diag(n_g) − n n'/n``, ``A = diag(1/(1 − n_g/n))``, under the
    working model of cases correlated ``ρ`` within a cluster (Imbens &
    Kolesár 2016, "Robust Standard Errors in Small Samples", Rev. Econ.
    Stat. 98:701, their K_IK; Cameron & Miller 2015, §VI.D). Equal clusters
    give ``G − 1``; unequal ones fewer, the more so the more the cases of a
    cluster move together (a few large clusters then carry the variance).
    Computed on G × G matrices (numpy) up to 2,000 clusters; above that, at
    ``ρ = 0`` in O(G) (the quantile is then the normal's to 3 decimals)."""
    G = len(sizes)
    if G < 2:
        return 0.0
    if G > 2000 or rho <= 0:
        a = [1 / (1 - s / n) for s in sizes]
        tr = math.fsum(ag * s - ag * s * s / n for ag, s in zip(a, sizes))
        dd = math.fsum((ag * s) ** 2 for ag, s in zip(a, sizes))  # tr(D²), D = diag(a_g n_g)
        vdv = math.fsum(ag * s * ag * s * s for ag, s in zip(a, sizes))  # v'Dv, v_g = √a_g n_g
        vv = math.fsum(ag * s * s for ag, s in zip(a, sizes))
        tr2 = dd - 2 * vdv / n + vv * vv / (n * n)
        return tr * tr / tr2 if tr2 > 0 else G - 1.0
    import numpy as np

    sz = np.asarray(sizes, dtype=float)
    W = np.diag(sz) - np.outer(sz, sz) / n
    K = (1 - rho) * W + rho * (W @ W)
    AK = (1 / (1 - sz / n))[:, None] * K
    tr2 = float(np.sum(AK * AK.T))
    return float(np.trace(AK)) ** 2 / tr2 if tr2 > 0 else G - 1.0


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
    summary = stats.small_sample(summary)
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


def case_changes(a: RunRecord, b: RunRecord, metrics: list[str], top: int | None = None) -> list[CaseChange]:
    """Cases whose score changed between runs ``a`` and ``b``, most fallen
    first. A case ``b`` failed counts as the metric's worst value. The sort
    key (``delta``, on ``metric``) is the largest fall over ``metrics``
    (scaled to 0–1) when the case fell on any, else the change in the first
    metric; ties are broken by the mean scaled change over all of them.
    Lower-is-better metrics (costs, latencies, tokens, perplexity) do not
    rank cases: per-case timing jitter is not a fallen answer. ``top``: only
    the first ``top`` (their inputs and references are read only for them:
    a spooled case reads them back from disk)."""
    ranked = rank_changes(a, b, metrics)
    return [as_change(r) for r in (ranked[:top] if top else ranked)]


def rank_changes(a: RunRecord, b: RunRecord, metrics: list[str], amap: dict | None = None) -> list[tuple]:
    """The ranking of :func:`case_changes`, as ``(delta, mean change, ca, cb,
    metric, scores)`` tuples (``ca``, ``cb``: the case in ``a`` and in
    ``b``) in its order; :func:`changed_counts` counts them. ``amap``:
    ``a.case_map()`` when already made."""
    metrics = [m for m in metrics if higher_is_better(m)]
    amap = a.case_map() if amap is None else amap
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
        out.append((diffs[metric], sum(diffs.values()) / len(diffs), ca, cb, metric, scores))
    out.sort(key=lambda t: (t[0], t[1]))
    return [t for t in out if t[0] != 0 or t[1] != 0] + [t for t in out if t[0] == 0 and t[1] == 0]


def changed_counts(ranked: list[tuple]) -> tuple[int, int]:
    """``(improved, worse)``: the cases of :func:`rank_changes` whose sort key rose, and fell."""
    return sum(r[0] > 0 for r in ranked), sum(r[0] < 0 for r in ranked)


def as_change(ranked: tuple) -> CaseChange:
    """One tuple of :func:`rank_changes` as a :class:`CaseChange` (the
    candidate's inputs, references and reasons read now)."""
    key, _, ca, cb, metric, scores = ranked
    return CaseChange(cb.id, key, metric, ca.output, cb.output, cb.inputs, cb.references, scores, cb.error,
                      dict(cb.reasons))
