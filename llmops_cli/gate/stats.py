"""The gate's statistics: the paired bootstrap, the intervals and p-values
read off it, Holm's step-down correction, and power under the gate's rule.

* **Bootstrap** (Efron & Tibshirani 1993): cases — or whole clusters — are
  resampled with replacement, the same draw for baseline and candidate (a
  *paired* bootstrap; Miller 2024, "Adding Error Bars to Evals",
  arXiv:2411.00640). Each resampling unit carries sufficient statistics
  (``[score sum, count]`` for mean metrics, sacrebleu's n-gram statistics for
  corpus BLEU, as sacrebleu's ``--paired-bs`` does, Koehn 2004), so a
  replicate recomputes the corpus-level aggregate exactly. The replicates'
  standard deviation is the delta's standard error (SE).
* **Intervals**: ``delta ± q·SE`` (the *standard bootstrap interval*,
  Efron & Tibshirani 1993, §13.2), and the matching one-sided p-values. At
  small n the normal quantile and the bootstrap's plug-in variance (divisor
  n, not n − 1) are both too optimistic: 5.5% false alarms at 8 cases where
  2.5% was stated. So a summary carries degrees of freedom ``df`` and the
  quantile ``q`` is Student's t with ``df`` (``n − 1`` cases, or ``G − 1``
  clusters: Cameron & Miller 2015, "A Practitioner's Guide to
  Cluster-Robust Inference", J. Human Resources 50:317, §VI.C), and a
  bootstrap SE is rescaled by ``√(u/(u − 1))`` over ``u`` resampling units
  (:func:`small_sample`), the bootstrap analogue of the unbiased variance
  (Efron & Tibshirani 1993, §5.2). Per-case means use the analytic paired
  SE instead (:mod:`llmops_cli.gate.pairing`). ``df`` None is the normal. Under "nothing changed" baseline and candidate are exchangeable,
  so the delta's distribution is symmetric about 0, which a symmetric
  interval respects. Intervals that take their shape from the resampled
  distribution import the sample's own skew instead, which for corpus BLEU
  follows the sign of the observed delta: in 1000 A/A comparisons of a
  stochastic SQuAD model (benchmarks/calibration.py) the one-sided 2.5%
  bound of BLEU fired in 4.1% (percentile), 7.8% (BCa), 6.1% (studentized)
  and 1.8% (this interval); exact match, token F1 and ROUGE-L were within
  2.0–2.8% under every method, 2.0–2.5% under this one.
* **Quantiles** (a p95 latency): the same paired draws, each replicate's
  quantile taken over the drawn cases (:func:`paired_quantile_bootstrap`).
* **Holm–Bonferroni** (Holm 1979, "A Simple Sequentially Rejective Multiple
  Test Procedure", Scand. J. Statist. 6:65): the step-down rule and
  adjusted p-values of ``statsmodels.stats.multitest.multipletests(method=
  "holm")``, written out here (ten lines) because importing that module
  loads SciPy's statistics and adds about 100 MB of RSS and 0.7 s to every
  gated run, more than the rest of a 10,000-case run's data; the tests hold
  the two equal on thousands of random families.
* **Power** under the rule "upper bound below ``-max_drop``" at one-sided
  level α₁: a true drop ``d`` is caught with probability
  ``Φ((d − max_drop)/SE − q₁₋α₁)`` (``q`` the t quantile with the summary's
  df); the smallest drop caught with power π is ``max_drop + (q₁₋α₁ + z_π)·SE``.

Everything after the bootstrap itself is pure Python on a
:class:`BootstrapSummary`, which is JSON-serialisable and memoised, so a
fully cached re-run needs no numpy.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Callable, Sequence

from llmops_cli.measure.scorers import quantile  # noqa: E402,F401  (an aggregate of the scorers; public here too)
from llmops_cli.gate.student import t_cdf, t_ppf

_N = NormalDist()


@dataclass
class BootstrapSummary:
    """What the gate keeps of one metric's paired bootstrap: ``theta``, the
    observed delta (candidate − baseline aggregate, metric units); ``se``,
    the standard deviation of its bootstrap replicates (0 when the runs
    agree on every case); ``units``, the number of resampling units (cases
    or clusters); ``df``: degrees of freedom of the Student-t quantile the
    intervals and p-values use (None: the normal)."""

    theta: float
    se: float
    units: int
    df: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def bound(self, level: float) -> float:
        """The interval endpoint at lower-tail probability ``level`` (0–1):
        ``bound(α/2)`` and ``bound(1 − α/2)`` form the two-sided interval at
        confidence 1 − α."""
        return self.theta + t_ppf(level, self.df) * self.se if self.se > 0 else self.theta

    def _below(self, x: float) -> float:
        """P(T ≤ (x − theta)/se): the level whose endpoint is ``x``."""
        if self.se > 0:
            return t_cdf((x - self.theta) / self.se, self.df)
        return 1.0 if x > self.theta else (0.0 if x < self.theta else 0.5)

    def p_drop_exceeds(self, max_drop: float) -> float:
        """One-sided p-value of H₀ "delta ≥ −max_drop" (no drop beyond
        ``max_drop``): small when the drop exceeds ``max_drop``."""
        if self.se > 0:
            return t_cdf((self.theta + max_drop) / self.se, self.df)  # = 1 − level at −max_drop, without cancellation
        return 0.0 if self.theta < -max_drop else 1.0

    def p_not_inferior(self, max_drop: float) -> float:
        """One-sided p-value of H₀ "delta ≤ −max_drop" (strict mode): small
        when the candidate is shown to be at most ``max_drop`` worse."""
        if self.se > 0:
            return self._below(-max_drop)
        return 0.0 if self.theta > -max_drop else 1.0

    def p_two_sided(self) -> float:
        """Two-sided p-value of "delta = 0"."""
        if self.se <= 0:
            return 1.0 if self.theta == 0 else 0.0
        return 2 * t_cdf(-abs(self.theta) / self.se, self.df)


def small_sample(s: BootstrapSummary) -> BootstrapSummary:
    """A bootstrap summary made fit for small samples: its SE rescaled by
    ``√(u/(u − 1))`` (the bootstrap's variance has the plug-in divisor ``u``,
    the number of resampling units; Efron & Tibshirani 1993, §5.2) and
    ``df = u − 1`` for a Student-t quantile (over ``u`` clusters, the
    ``T(G − 1)`` of Cameron & Miller 2015, §VI.C). Unchanged with one unit."""
    if s.units < 2:
        return s
    return BootstrapSummary(s.theta, s.se * math.sqrt(s.units / (s.units - 1)), s.units, s.units - 1)


class ResampleCounts:
    """The bootstrap's draws: how often each of ``units`` resampling units
    is drawn in each of ``resamples`` replicates (a seeded draw of ``units``
    with replacement per replicate), as float64 blocks of replicates.

    The whole ``resamples × units`` matrix is 160 MB at 2,000 × 10,000, so
    it is kept only up to :attr:`KEEP_ENTRIES` entries; above that each
    :meth:`blocks` call draws it again, a block at a time, from the same
    seed (the same numbers: numpy's bounded integers consume the stream
    alike whether drawn in one call or in blocks of an even size)."""

    KEEP_ENTRIES = 1 << 20  # 8 MB of float64
    BLOCK_ENTRIES = 1 << 16  # 512 KB per block (and as much for the draws)

    def __init__(self, units: int, resamples: int, seed: int):
        self.units, self.resamples, self.seed = units, resamples, seed
        self._kept = None

    def blocks(self):
        """Yield ``r × units`` float64 arrays of draw counts, ``r`` summing to
        ``resamples``, in replicate order."""
        if self._kept is not None:
            yield self._kept
            return
        import numpy as np

        keep = self.units * self.resamples <= self.KEEP_ENTRIES
        rows = self.resamples if keep else max(2, (self.BLOCK_ENTRIES // max(1, self.units)) // 2 * 2)
        rng = np.random.default_rng(self.seed)
        for start in range(0, self.resamples, rows):
            pick = rng.integers(0, self.units, size=(min(rows, self.resamples - start), self.units))
            block = np.empty(pick.shape, dtype=np.float64)
            for r in range(pick.shape[0]):
                block[r] = np.bincount(pick[r], minlength=self.units)
            del pick
            if keep:
                self._kept = block
            yield block

    def replicates(self, fn):
        """``fn(block)`` (one value per replicate of the block) over every
        block, concatenated: a numpy array of ``resamples`` values."""
        import numpy as np

        return np.concatenate([fn(block) for block in self.blocks()])


def resample_counts(units: int, resamples: int, seed: int) -> ResampleCounts:
    """The draws of a paired bootstrap over ``units`` units (see
    :class:`ResampleCounts`), shared by every metric of a comparison."""
    return ResampleCounts(units, resamples, seed)


def paired_bootstrap(base_units, cand_units, agg: Callable, counts) -> BootstrapSummary:
    """Paired bootstrap of ``agg(cand) − agg(base)``.

    Args:
        base_units, cand_units: ``units × k`` arrays of per-unit sufficient
            statistics (summed over the cases of a cluster).
        agg: maps an ``r × k`` array of summed statistics to ``r``
            aggregates (vectorised over rows).
        counts: the draws (:func:`resample_counts`), shared by every
            metric of a comparison.
    """
    import numpy as np

    b = np.asarray(base_units, dtype=float)
    c = np.asarray(cand_units, dtype=float)
    theta = float(agg(c.sum(axis=0)[None, :])[0] - agg(b.sum(axis=0)[None, :])[0])
    reps = counts.replicates(lambda w: agg(w @ c) - agg(w @ b))
    se = float(reps.std(ddof=1)) if len(reps) > 1 else 0.0
    return BootstrapSummary(theta, se if se > 1e-12 * max(1.0, abs(theta)) else 0.0, counts.units)


def _weighted_quantiles(values, weights, q: float):
    """Per row of ``weights`` (``r × n`` draw counts), the inverted-CDF
    ``q``-quantile of ``values`` (length n) weighted by that row: the
    smallest value whose weighted empirical CDF reaches ``q``."""
    import numpy as np

    order = np.argsort(values, kind="stable")
    v = np.asarray(values, dtype=float)[order]
    cum = np.cumsum(weights[:, order], axis=1)
    idx = (cum < q * cum[:, -1:] - 1e-9).sum(axis=1)
    return v[np.minimum(idx, len(v) - 1)]


def paired_quantile_bootstrap(base: Sequence[float], cand: Sequence[float], q: float, counts,
                              unit=None) -> tuple[BootstrapSummary, float, float]:
    """Paired bootstrap of the change in the ``q``-quantile (0–1), e.g. a
    p95 latency: each replicate draws the same cases (or clusters) on both
    sides and takes each side's inverted-CDF quantile of the drawn cases
    (Efron & Tibshirani 1993, ch. 13; Hyndman & Fan 1996, definition 1).

    Args:
        base, cand: per-case values (seconds, USD, …), paired by position.
        counts: the draws (:func:`resample_counts`).
        unit: the resampling unit of each case (cluster index), or None when
            every case is its own unit.

    Returns:
        ``(summary, baseline quantile, candidate quantile)``."""
    import numpy as np

    b, c = np.asarray(base, dtype=float), np.asarray(cand, dtype=float)
    b_q, c_q = float(quantile(list(base), q)), float(quantile(list(cand), q))

    def replicate(w):
        weights = w if unit is None else w[:, unit]
        return _weighted_quantiles(c, weights, q) - _weighted_quantiles(b, weights, q)

    reps = counts.replicates(replicate)
    theta = c_q - b_q
    se = float(reps.std(ddof=1)) if len(reps) > 1 else 0.0
    return BootstrapSummary(theta, se if se > 1e-12 * max(1.0, abs(theta)) else 0.0, counts.units), b_q, c_q


def holm(p_values: Sequence[float], alpha: float) -> tuple[list[bool], list[float]]:
    """Holm's step-down correction (Holm 1979) of one-sided p-values at
    family-wise level ``alpha``: ``(reject, adjusted p-values)``, as
    ``statsmodels.stats.multitest.multipletests(method="holm")`` computes
    them. Sorted ascending, the r-th p-value (r = 0, 1, …) is rejected while
    it and every smaller one are at most ``alpha / (m − r)``; its adjusted
    value is the running maximum of ``(m − r)·p``, capped at 1."""
    m = len(p_values)
    reject, adjusted = [False] * m, [0.0] * m
    stepping, running = True, 0.0
    for rank, i in enumerate(sorted(range(m), key=lambda j: p_values[j])):
        p = float(p_values[i])
        stepping = stepping and p <= alpha / (m - rank)
        reject[i] = stepping
        running = max(running, p * (m - rank))
        adjusted[i] = min(running, 1.0)
    return reject, adjusted


def holm_levels(p_values: Sequence[float], alpha: float) -> list[float]:
    """The one-sided level each test's displayed interval uses under Holm:
    α/(m − r + 1) for the r-th smallest p-value while every smaller one was
    rejected, and the level of the first non-rejected step after that (so
    an interval excludes the margin exactly when its test is rejected)."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    levels = [alpha] * m
    stop_level = None
    for rank, i in enumerate(order):
        level = alpha / (m - rank)
        if stop_level is None and p_values[i] > level:
            stop_level = level
        levels[i] = stop_level if stop_level is not None else level
    return levels


def z(p: float) -> float:
    """Standard normal quantile ``Φ⁻¹(p)``."""
    return _N.inv_cdf(p)


def power(drop: float, max_drop: float, se: float, alpha_one_sided: float, df: float | None = None) -> float:
    """Probability (0–1) that a true drop ``drop`` (metric units, ≥ 0) makes
    the rule "upper bound below ``-max_drop``" fire at one-sided level
    ``alpha_one_sided``, with standard error ``se``: ``Φ((d − δ)/SE − q)``
    with ``q`` the rule's critical value (Student's t with ``df``, else the
    normal's; the usual normal approximation to the noncentral t)."""
    if se <= 0:
        return 1.0 if drop > max_drop else 0.0
    return _N.cdf((drop - max_drop) / se - t_ppf(1 - alpha_one_sided, df))


def detectable_drop(max_drop: float, se: float, alpha_one_sided: float, target_power: float = 0.8,
                    df: float | None = None) -> float:
    """The smallest true drop the rule catches with probability
    ``target_power``: ``max_drop + (q₁₋α₁ + z_π)·SE`` (metric units; ``q``
    Student's t quantile with ``df``, else the normal's)."""
    return max_drop + (t_ppf(1 - alpha_one_sided, df) + z(target_power)) * se


def cases_needed(n: int, max_drop: float, se: float, alpha_one_sided: float, target_drop: float,
                 target_power: float = 0.8) -> int | None:
    """How many cases would make ``target_drop`` detectable with
    ``target_power``, scaling the observed SE by √(n/n') (same paired
    variance per case). ``None`` when no number can: ``target_drop`` is not
    above ``max_drop``."""
    if target_drop <= max_drop:
        return None
    k = (z(1 - alpha_one_sided) + z(target_power)) * se / (target_drop - max_drop)
    return max(n, math.ceil(n * k * k))
