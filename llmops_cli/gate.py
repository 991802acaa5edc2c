"""The gate: compare a candidate run with the baseline, metric by metric.

Cases are paired by id (cases on one side only are reported and excluded).
For each metric the delta (candidate − baseline) gets a confidence interval
from a seeded **paired bootstrap** over cases (Efron & Tibshirani 1993; for
evals: Miller 2024, "Adding Error Bars to Evals", arXiv:2411.00640). Corpus
BLEU is resampled from per-sentence sufficient statistics, as sacrebleu's
``--paired-bs`` does (Koehn 2004). With ``gate.cluster`` set, whole clusters
(e.g. source paragraphs) are resampled instead of cases (cluster bootstrap).

Rule (mode ``paired``): a metric *regresses* when the upper bound of the
delta's CI lies below ``-max_drop`` — the drop exceeds ``max_drop`` with
confidence — or when the candidate's aggregate is below ``min``. Mode
``plain`` compares the point estimates only.

The smallest detectable drop (MDE) at 80% power is
``(z_{1-α/2} + z_{0.80}) · SE(delta)``, SE from the paired bootstrap; when the
two runs agree on every case (SE = 0) it falls back to
``(z_{1-α/2} + z_{0.80}) · sd(baseline scores) / √n`` (paired correlation 0.5).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache
from statistics import NormalDist
from typing import Any, Literal

from .cache import memoised
from .config import Gate, GateRule, config_diff
from .errors import BaselineError, InputError
from .record import RunRecord
from .scorers import SCORERS


def _scale(metric: str) -> float:
    sc = SCORERS.get(metric)
    return sc.scale if sc else 1.0  # judges score 0–1


def _from_stats(metric: str):
    sc = SCORERS.get(metric)
    return sc.from_stats if sc else None

GATE_VERSION = 1  # bump when the bootstrap changes: memoised intervals are keyed by it

Verdict = Literal["pass", "improved", "regressed", "below min", "unscored", "info"]


@dataclass
class MetricComparison:
    """One metric's comparison. Scores are in the metric's own units
    (0–1, or 0–100 for BLEU); ``p_value`` is two-sided, from the bootstrap."""

    metric: str
    n: int
    baseline: float | None
    candidate: float | None
    delta: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    mde: float | None
    rule: str
    verdict: Verdict
    scale: float = 1.0
    reason: str = ""

    @property
    def failed(self) -> bool:
        return self.verdict in ("regressed", "below min")


@dataclass
class CaseChange:
    """A case whose score moved: per-metric (baseline, candidate) scores."""

    id: str
    delta: float
    metric: str
    baseline_output: str | None
    candidate_output: str | None
    inputs: dict[str, Any]
    references: list[str]
    scores: dict[str, tuple[float | None, float | None]]


@dataclass
class Comparison:
    """Result of :func:`compare`. ``passed`` is False when any gated metric
    regressed or fell below its floor; ``unscored`` lists gated metrics with no
    scored pair (the run cannot pass: exit 3)."""

    mode: str
    confidence: float
    resamples: int
    metrics: list[MetricComparison]
    changed_cases: list[CaseChange]
    only_baseline: list[str]
    only_candidate: list[str]
    config_changes: list[str]
    baseline_fingerprint: str
    candidate_fingerprint: str
    cluster: str | None = None
    n_improved_cases: int = 0
    n_worse_cases: int = 0

    @property
    def failed(self) -> list[MetricComparison]:
        return [m for m in self.metrics if m.failed]

    @property
    def unscored(self) -> list[MetricComparison]:
        return [m for m in self.metrics if m.verdict == "unscored"]

    @property
    def passed(self) -> bool:
        return not self.failed and not self.unscored

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["passed"] = self.passed
        return d


def _rule_text(rule: GateRule | None, mode: str) -> str:
    if rule is None:
        return "—"
    parts = []
    if rule.max_drop is not None:
        parts.append(f"drop ≤ {rule.max_drop:g}" + (" (CI)" if mode == "paired" else ""))
    if rule.min is not None:
        parts.append(f"≥ {rule.min:g}")
    return ", ".join(parts) or "—"


def _groups(ids: list[str], cluster_of: dict[str, Any] | None) -> list[list[int]] | None:
    """Resampling units as lists of case positions; ``None`` means every
    case is its own unit (the ordinary paired bootstrap)."""
    if cluster_of is None:
        return None
    groups: dict[Any, list[int]] = {}
    for i, cid in enumerate(ids):
        groups.setdefault(cluster_of.get(cid, cid), []).append(i)
    return list(groups.values())


@lru_cache(maxsize=1)
def _resample_indices(n: int, resamples: int, seed: int):
    """``resamples × n`` unit indices drawn with replacement (seeded numpy
    array); shared by every metric of a comparison, which all resample the
    same cases."""
    import numpy as np

    pick = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    pick.flags.writeable = False
    return pick


def bootstrap_deltas(metric: str, base, cand, base_stats, cand_stats, groups: list[list[int]] | None, resamples: int,
                     seed: int):
    """``resamples`` bootstrap replicates of (candidate − baseline) aggregate,
    as a numpy array. ``base``/``cand`` are per-case scores, ``*_stats``
    per-case sufficient statistics (cases × k) or ``None``.

    Mean metrics resample per-case score differences; corpus metrics (BLEU)
    resample per-case sufficient statistics of both systems with the same
    indices and recompute each corpus score. ``groups`` are the resampling
    units (clusters of case positions), or ``None`` for single cases."""
    import numpy as np

    base, cand = np.asarray(base, dtype=float), np.asarray(cand, dtype=float)
    if base_stats is not None:
        base_stats, cand_stats = np.asarray(base_stats, dtype=float), np.asarray(cand_stats, dtype=float)
    pick = _resample_indices(len(base) if groups is None else len(groups), resamples, seed)
    from_stats = _from_stats(metric)
    if groups is None:
        if from_stats is None or base_stats is None:
            return (cand - base)[pick].mean(axis=1)
        sb, sc = base_stats[pick].sum(axis=1), cand_stats[pick].sum(axis=1)
        return np.array([from_stats(c) - from_stats(b) for b, c in zip(sb, sc)])
    units = [np.array(g) for g in groups]
    out = np.empty(resamples)
    for r in range(resamples):
        idx = np.concatenate([units[g] for g in pick[r]])
        if from_stats is None or base_stats is None:
            out[r] = (cand[idx] - base[idx]).mean()
        else:
            out[r] = from_stats(cand_stats[idx].sum(0)) - from_stats(base_stats[idx].sum(0))
    return out


def _interval(metric: str, delta: float, base: list[float], cand: list[float], base_stats: list | None,
              cand_stats: list | None, groups: list[list[int]] | None, gate: Gate) -> tuple[float, float, float, float]:
    """``(ci_low, ci_high, p_value, se)`` of the delta from the paired
    bootstrap: percentile CI at ``gate.confidence``; two-sided p from the
    centred replicates; ``se`` their standard deviation, or — when the runs
    agree on every case — the baseline's standard error (for the MDE)."""
    import numpy as np

    alpha = 1 - gate.confidence
    boots = bootstrap_deltas(metric, base, cand, base_stats, cand_stats, groups, gate.resamples, gate.seed)
    lo, hi = (float(x) for x in np.quantile(boots, [alpha / 2, 1 - alpha / 2]))
    centred = np.abs(boots - boots.mean())
    p = float((np.sum(centred >= abs(delta) - 1e-12) + 1) / (len(boots) + 1)) if delta != 0 else 1.0
    se = float(boots.std(ddof=1))
    if se == 0:
        from_stats = _from_stats(metric)
        spread = np.array([from_stats(x) for x in base_stats] if from_stats is not None and base_stats is not None else base)
        se = float(spread.std(ddof=1)) / float(np.sqrt(len(base))) if len(base) > 1 else 0.0
    return lo, hi, p, se


def _compare_metric(metric: str, pairs: list[tuple[str, float, float]], baseline: dict, candidate: dict, rule: GateRule | None,
                    gate: Gate, cluster_of: dict | None, unscored_share: float = 0.0,
                    max_unscored_share: float | None = None, memo=None) -> MetricComparison:
    scale = _scale(metric)
    rule_s = _rule_text(rule, gate.mode)
    if not pairs:
        return MetricComparison(metric, 0, None, None, None, None, None, None, None, rule_s, "unscored", scale, "no case scored on both sides")
    ids = [p[0] for p in pairs]
    b = [float(p[1]) for p in pairs]
    c = [float(p[2]) for p in pairs]
    from_stats = _from_stats(metric)
    bs = cs = None
    if from_stats is not None:
        bs = [baseline[i].stats[metric] for i in ids]
        cs = [candidate[i].stats[metric] for i in ids]
        b_agg, c_agg = from_stats([sum(col) for col in zip(*bs)]), from_stats([sum(col) for col in zip(*cs)])
    else:
        b_agg, c_agg = math.fsum(b) / len(b), math.fsum(c) / len(c)
    delta = c_agg - b_agg
    groups = _groups(ids, cluster_of)
    # memoised: comparing the same runs again (a fully cached re-run) needs no bootstrap, nor numpy
    lo, hi, p, se = memoised(memo, "bootstrap", [GATE_VERSION, metric, b, c, bs, cs, groups, gate.resamples, gate.seed,
                                                 gate.confidence],
                             lambda: list(_interval(metric, delta, b, c, bs, cs, groups, gate)))
    z = NormalDist().inv_cdf(1 - (1 - gate.confidence) / 2) + NormalDist().inv_cdf(0.8)
    mde = z * se
    verdict: Verdict = "info" if rule is None else "pass"
    reason = ""
    if max_unscored_share is not None and unscored_share > max_unscored_share:
        verdict = "unscored"
        reason = f"{unscored_share:.0%} of cases unscored by the judge (limit max_unscored_share {max_unscored_share:.0%})"
    elif rule is not None:
        if rule.min is not None and c_agg < rule.min:
            verdict, reason = "below min", f"{c_agg:.4g} < min {rule.min:g}"
        elif rule.max_drop is not None:
            bound = hi if gate.mode == "paired" else delta
            if bound < -rule.max_drop:
                verdict = "regressed"
                reason = (f"CI upper bound {hi:+.4g} < -{rule.max_drop:g}" if gate.mode == "paired"
                          else f"delta {delta:+.4g} < -{rule.max_drop:g}")
            elif gate.mode == "paired" and lo > 0:
                verdict = "improved"
            elif gate.mode == "plain" and delta > 0:
                verdict = "improved"
    return MetricComparison(metric, len(pairs), b_agg, c_agg, delta, lo, hi, p, mde, rule_s, verdict, scale, reason)


def compare(baseline: RunRecord, candidate: RunRecord, gate: Gate, *, metrics: list[str] | None = None,
            top: int = 10, baseline_path: str = "baseline", check_dataset: bool = True,
            max_unscored_share: float | None = None, memo=None) -> Comparison:
    """Compare ``candidate`` with ``baseline`` under the ``gate`` rules.

    Args:
        baseline, candidate: run records (the baseline has ``kind: baseline``).
        gate: gate settings and per-metric rules (``Config.gate``).
        metrics: metrics to compare (default: the gated ones, else all that
            both runs scored).
        top: how many most-changed cases to return.
        check_dataset: refuse records made on different eval sets.
        max_unscored_share: a judge metric with a larger share (0–1) of
            unscored candidate cases gets verdict ``unscored`` (the run cannot
            pass).
        memo: a :class:`~llmops_cli.cache.ResponseCache` to memoise each
            metric's bootstrap interval in (keyed by a hash of the paired
            scores, statistics, clusters and gate settings), or ``None``.

    Raises:
        BaselineError: the dataset hashes differ (exit 2), or a gated metric
            is missing from the baseline.
        InputError: ``gate.cluster`` names a field the cases do not have.
    """
    if check_dataset:
        from .baseline import check_dataset as _check

        _check(baseline, candidate.dataset_hash, baseline_path)
    names = metrics or list(gate.metrics) or [m for m in candidate.metrics if m in baseline.metrics]
    for m in names:
        if m not in baseline.metrics:
            raise BaselineError(baseline_path, f"metrics.{m}", "the baseline has no scores for this metric; update the baseline")
    bmap, cmap = baseline.case_map(), candidate.case_map()
    common = [cid for cid in cmap if cid in bmap]
    cluster_of = None
    if gate.cluster:
        missing = [cid for cid in common if gate.cluster not in cmap[cid].inputs]
        if missing:
            raise InputError(None, "gate.cluster", f"case {missing[0]!r} has no input field {gate.cluster!r} to cluster by "
                             "(add it to dataset.inputs)")
        cluster_of = {cid: cmap[cid].inputs[gate.cluster] for cid in common}
    results = []
    for m in names:
        pairs = [(cid, bmap[cid].scores.get(m), cmap[cid].scores.get(m)) for cid in common]
        pairs = [p for p in pairs if p[1] is not None and p[2] is not None]
        summ = candidate.metrics.get(m)
        total = (summ.n_scored + summ.n_unscored) if summ else 0
        # judge verdicts only: failed cases of reference metrics are bounded by max_error_share instead
        share = summ.n_unscored / total if summ and total and summ.info.get("judge") else 0.0
        results.append(_compare_metric(m, pairs, bmap, cmap, gate.metrics.get(m), gate, cluster_of, share, max_unscored_share, memo))
    _resample_indices.cache_clear()  # shared within one comparison only (10,000 cases × 1000 resamples is 80 MB)
    changes = case_changes(baseline, candidate, names)
    return Comparison(
        mode=gate.mode, confidence=gate.confidence, resamples=gate.resamples, metrics=results,
        changed_cases=changes[:top] if top else changes,
        only_baseline=[cid for cid in bmap if cid not in cmap], only_candidate=[cid for cid in cmap if cid not in bmap],
        config_changes=config_diff(baseline.config, candidate.config),
        baseline_fingerprint=baseline.fingerprint, candidate_fingerprint=candidate.fingerprint,
        cluster=gate.cluster,
        n_improved_cases=sum(ch.delta > 0 for ch in changes), n_worse_cases=sum(ch.delta < 0 for ch in changes),
    )


def case_changes(a: RunRecord, b: RunRecord, metrics: list[str]) -> list[CaseChange]:
    """Cases whose score changed between runs ``a`` and ``b``, most fallen
    first. The sort key is the change in the first metric of ``metrics``
    (scaled to 0–1), ties broken by the mean scaled change over all of them."""
    amap = a.case_map()
    out = []
    for cb in b.cases:
        ca = amap.get(cb.id)
        if ca is None:
            continue
        scores = {m: (ca.scores.get(m), cb.scores.get(m)) for m in metrics}
        diffs = [(y - x) / _scale(m) for m, (x, y) in scores.items() if x is not None and y is not None]
        if not diffs or (all(d == 0 for d in diffs) and ca.output == cb.output):
            continue
        first = diffs[0]
        out.append((first, sum(diffs) / len(diffs), CaseChange(cb.id, first, metrics[0], ca.output, cb.output, cb.inputs, cb.references, scores)))
    out.sort(key=lambda t: (t[0], t[1]))
    return [t[2] for t in out if t[0] != 0 or t[1] != 0] + [t[2] for t in out if t[0] == 0 and t[1] == 0]
