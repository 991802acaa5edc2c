"""Anytime-valid confidence sequences for the sequential gate: the statistics
alone, pure Python (no numpy), updated one observation at a time.

**What is estimated.** For one gated metric whose per-case score is bounded
(0 to ``scale``) and whose aggregate is the mean of the cases, each answered
case gives a paired difference ``d = candidate − baseline`` in
``[−scale, scale]`` (a failed candidate case counts as the worst value, as in
the fixed-n gate). It is rescaled to ``x = (d/scale + 1)/2`` in ``[0, 1]``;
the sequence below covers the mean of ``x`` and is mapped back to the mean of
``d``. Cases are answered in a seeded random order, so — under the fixed-n
gate's own assumption that the eval set's cases are independent draws from
the population of cases the application will meet — the answered cases are
an i.i.d. sample of that population at every stage, and the sequence covers
the *population* paired delta, the quantity the paired bootstrap tests.

**The sequence** is Waudby-Smith & Ramdas's hedged capital process with
predictable plug-in bets (I. Waudby-Smith and A. Ramdas, "Estimating means of
bounded random variables by betting", JRSS-B 86(1):1–27, 2024 (read 2023),
arXiv:2010.09686: the hedged capital process with predictable plug-in
bets; the authors' code is ``confseq.betting.hedged_cs``):

* for each candidate mean ``m``, two gamblers bet on ``x`` being above and
  below ``m``; their capitals are
  ``K⁺ₜ(m) = ∏ᵢ (1 + λ⁺ᵢ(m)(xᵢ − m))`` and ``K⁻ₜ(m) = ∏ᵢ (1 − λ⁻ᵢ(m)(xᵢ − m))``;
* the bets are the predictable plug-in
  ``λᵢ = √(2 log(2/α) / (σ̂²ᵢ₋₁ · i · log(1 + i)))`` with the regularised
  estimates ``μ̂ᵢ = (1/2 + Σⱼ≤ᵢ xⱼ)/(i + 1)`` and
  ``σ̂²ᵢ = (1/4 + Σⱼ≤ᵢ (xⱼ − μ̂ⱼ)²)/(i + 1)`` (``σ̂²₀ = 1/4``), truncated
  ``λ⁺ᵢ(m) = λᵢ ∧ c/m`` and ``λ⁻ᵢ(m) = λᵢ ∧ c/(1 − m)`` with ``c = 1/2``
  (the authors' ``confseq.betting.hedged_cs`` defaults);
* when the eval set's size N is known (``horizon``) each gambler splits its
  capital evenly between those time-uniform bets and the plug-in tuned for
  a sample of N, ``√(2 log(2/α) / (σ̂²ᵢ₋₁ · N))`` (the paper's bets for a
  fixed-size interval): a mixture of test martingales is one (the paper's
  "diversified" betting; confseq's ``diversified_betting_mart``).
  It costs a factor 2 of capital early and narrows the sequence near N: on
  the SQuAD benchmark the mixture stopped slqa-plus → bert-ensemble before
  810 cases in every order tried, the time-uniform bets alone in about half;
* the hedged capital ``Kₜ(m) = max(θK⁺ₜ(m), (1 − θ)K⁻ₜ(m))``, ``θ = 1/2``,
  is a nonnegative martingale when ``m`` is the true mean, so by Ville's
  inequality ``P(∃t: Kₜ(m) ≥ 1/α) ≤ α``: the set
  ``Cₜ = {m : Kₜ(m) < 1/α}`` covers the mean at *every* t at once, hence at
  any stopping time, however the stop was chosen.

(For the general theory of time-uniform confidence sequences — Ville's
inequality, boundaries, stitching — see S. R. Howard, A. Ramdas, J.
McAuliffe and J. Sekhon, "Time-uniform, nonparametric, nonasymptotic
confidence sequences", Annals of Statistics 49(2), 2021; for bounded
observations the betting sequences are the tighter ones, as Waudby-Smith
& Ramdas show.)

Each factor of ``K⁺`` is positive and non-increasing in ``m`` (and each of
``K⁻`` non-decreasing), so ``Cₜ`` is an interval ``(Lₜ, Uₜ)``:
``Uₜ < b`` exactly when ``(1 − θ)K⁻ₜ(b) ≥ 1/α``. The gate therefore decides
at its boundary ``b`` exactly, from two running sums, without a grid; the
interval itself is found by bisection when it is shown. The running
intersection of the intervals (``max Lₛ``, ``min Uₛ``) is as valid and is
what the decisions use (a decision, once made, stands).

**Without replacement** (``population=N``; Waudby-Smith & Ramdas 2024,
and "Confidence sequences for sampling without replacement", NeurIPS 2020):
the same capital with ``m`` replaced by the mean of the cases not yet seen
under the null, ``μᵢ(m) = (N·m − Sᵢ₋₁)/(N − i + 1)`` (an impossible ``m``
has infinite capital), intersected with the logical bounds
``[Sₜ/N, 1 − (t − Sₜ)/N]``. It covers the mean of this very set of N
values — what the full run would measure — and shrinks to it at t = N; it
says nothing about the population the eval set was drawn from, so the gate
uses it only when asked (``gate.sequential.population: eval_set``).

**Several metrics** share the gate's one-sided level by Bonferroni: with k
gated metrics each sequence runs at ``α = (1 − confidence)/k`` (two-sided,
θ = 1/2 gives each direction half), so the chance that an unchanged
configuration is ever declared regressed on any metric is at most
``(1 − confidence)/2`` (:func:`metric_alpha`). Measured by simulation in
``benchmarks/sequential.py``; coverage of the sequence itself is tested in
``tests/test_sequential.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Literal

THETA = 0.5  # the hedge between the two gamblers (Waudby-Smith & Ramdas's default)
TRUNCATION = 0.5  # c: a bet never stakes more than half the capital (confseq's trunc_scale)

_EPS = 1e-9  # the logical bounds are sums of floats: no rounding may exclude the truth

Decision = Literal["regressed", "within", "undecided"]


def metric_alpha(confidence: float, k: int, correction: str = "holm") -> float:
    """The two-sided level of each of ``k`` gated metrics' sequences: the
    gate's ``1 − confidence`` split evenly (Bonferroni) unless
    ``correction`` is ``"none"``. The hedge gives each direction half of it."""
    alpha = 1.0 - confidence
    return alpha / k if correction != "none" and k > 1 else alpha


class BettingCS:
    """A hedged-capital confidence sequence for the mean of observations in
    ``[0, 1]`` (see the module docstring for the construction and sources).

    Args:
        alpha: two-sided level (0–1): the sequence misses the mean at some
            time with probability at most ``alpha``, each direction at most
            ``alpha/2``.
        population: N, to sample without replacement from N fixed values
            (covers their mean); None (default): i.i.d. observations.
        horizon: the number of observations there will be at most (the
            eval set's size), or None. With it, each gambler splits its
            capital between the time-uniform bets and bets tuned for that
            sample size (see :data:`SCHEDULES`); without, it uses the first
            only.
        boundaries: points ``b`` in [0, 1] at which to track the capitals
            exactly as data arrive (:meth:`excludes_above`, :meth:`excludes_below`).

    Raises:
        ValueError: ``alpha`` not in (0, 1), a boundary outside [0, 1], an
            observation outside [0, 1] (:meth:`update`), or more than
            ``population`` observations.
    """

    def __init__(self, alpha: float, *, population: int | None = None, horizon: int | None = None,
                 boundaries: Iterable[float] = ()):
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), not {alpha}")
        if population is not None and population < 1:
            raise ValueError("population must be at least 1")
        self.alpha = alpha
        self.population = population
        self.horizon = horizon if horizon is None else max(1, int(horizon))
        self.k = 1 if horizon is None else 2  # bet schedules mixed
        self.xs: list[float] = []
        self.lambdas: list[tuple[float, ...]] = []  # the bets placed on each observation (before truncation)
        self._sum = 0.0  # Σ x
        self._mu_hat = 0.5  # μ̂ₜ (regularised)
        self._ss = 0.25  # 1/4 + Σ (xᵢ − μ̂ᵢ)²
        self._log_threshold_up = math.log(1 / (THETA * alpha))
        self._log_threshold_down = math.log(1 / ((1 - THETA) * alpha))
        self._tracked: dict[float, _Tracked] = {}
        self._interval: tuple[int, tuple[float, float]] | None = None  # memo: (n, interval)
        for b in boundaries:
            self.track(b)

    # -- data -----------------------------------------------------------------------------
    @property
    def n(self) -> int:
        return len(self.xs)

    @property
    def mean(self) -> float | None:
        """The sample mean of the observations (None before any)."""
        return self._sum / len(self.xs) if self.xs else None

    def _next_lambdas(self) -> tuple[float, ...]:
        t = len(self.xs) + 1
        sigma2 = self._ss / t  # σ̂²ₜ₋₁ = (1/4 + Σⱼ<ₜ …)/t
        c = 2 * math.log(2 / self.alpha) / sigma2
        uniform = math.sqrt(c / (t * math.log(1 + t)))
        return (uniform,) if self.horizon is None else (uniform, math.sqrt(c / self.horizon))

    def _mu(self, m: float, i: int, s_before: float) -> float:
        """The null mean of observation ``i`` (0-based) given the sum of the
        ones before: ``m``, or without replacement the unseen values' mean."""
        if self.population is None:
            return m
        return (self.population * m - s_before) / (self.population - i)

    @staticmethod
    def _log_factors(lam: float, x: float, mu: float) -> tuple[float, float]:
        """log of the two gamblers' factors at null mean ``mu``. An impossible
        ``mu`` (outside [0, 1], without replacement) is rejected on its own
        side only — ``inf`` for the gambler betting away from it — which keeps
        each capital monotone in ``m``."""
        if mu < -_EPS:  # m is too low to be the mean of these N values: only the upward gambler wins
            return math.inf, 0.0
        if mu > 1 + _EPS:
            return 0.0, math.inf
        mu = min(1.0, max(0.0, mu))
        up = min(lam, TRUNCATION / mu) if mu > 0 else lam
        down = min(lam, TRUNCATION / (1 - mu)) if mu < 1 else lam
        return math.log1p(up * (x - mu)), math.log1p(-down * (x - mu))

    def track(self, b: float) -> None:
        """Keep the log-capitals at the point ``b`` (0–1) up to date from now
        on (replaying the observations so far)."""
        if not 0 <= b <= 1:
            raise ValueError(f"a boundary must be in [0, 1], not {b}")
        if b in self._tracked:
            return
        tr = _Tracked([0.0] * self.k, [0.0] * self.k)
        s = 0.0
        for i, (x, lams) in enumerate(zip(self.xs, self.lambdas)):
            tr.add(lams, x, self._mu(b, i, s))
            s += x
        tr.look(self.k)
        self._tracked[b] = tr

    def update(self, xs: Iterable[float]) -> None:
        """Add observations (each in [0, 1]), in the order they were drawn,
        then look: the decisions (:meth:`excludes_above`, ``ever``) consider
        the sequence at every look, i.e. at the end of every ``update``."""
        for x in xs:
            x = float(x)
            if not 0 <= x <= 1 or math.isnan(x):
                raise ValueError(f"an observation must be in [0, 1], not {x}")
            if self.population is not None and len(self.xs) >= self.population:
                raise ValueError(f"more observations than the population of {self.population}")
            lams = self._next_lambdas()
            i, s_before = len(self.xs), self._sum
            for b, tr in self._tracked.items():
                tr.add(lams, x, self._mu(b, i, s_before))
            self.xs.append(x)
            self.lambdas.append(lams)
            self._sum += x
            t = len(self.xs)
            self._mu_hat = (0.5 + self._sum) / (t + 1)
            self._ss += (x - self._mu_hat) ** 2
        for tr in self._tracked.values():  # a look: the running intersection takes it in
            tr.look(self.k)

    # -- capitals and the interval ------------------------------------------------------------
    def _capitals(self, m: float) -> tuple[float, float]:
        """log K⁺ₜ(m), log K⁻ₜ(m) over all observations so far (each the
        equal-weight mixture over the bet schedules)."""
        tr = _Tracked([0.0] * self.k, [0.0] * self.k)
        s = 0.0
        for i, (x, lams) in enumerate(zip(self.xs, self.lambdas)):
            tr.add(lams, x, self._mu(m, i, s))
            s += x
        return _mix(tr.up, self.k), _mix(tr.down, self.k)

    def excludes_above(self, b: float, *, ever: bool = True) -> bool:
        """True when the sequence lies wholly below ``b`` (0–1): every mean
        ≥ ``b`` is rejected — now, or (``ever``, the running intersection)
        at some look so far. ``b`` must be tracked (:meth:`track`)."""
        tr = self._tracked[b]
        if (tr.max_down if ever else _mix(tr.down, self.k)) >= self._log_threshold_down:
            return True
        lo, hi = self._logical()
        return hi < b - _EPS

    def excludes_below(self, b: float, *, ever: bool = True) -> bool:
        """True when the sequence lies wholly above ``b``: every mean ≤ ``b``
        is rejected (now, or at some look so far with ``ever``)."""
        tr = self._tracked[b]
        if (tr.max_up if ever else _mix(tr.up, self.k)) >= self._log_threshold_up:
            return True
        lo, hi = self._logical()
        return lo > b + _EPS

    def _logical(self) -> tuple[float, float]:
        """Without replacement, the bounds any N values in [0, 1] with these
        first t allow; else [0, 1]."""
        if self.population is None:
            return 0.0, 1.0
        return self._sum / self.population, 1 - (len(self.xs) - self._sum) / self.population

    def _capitals_many(self, ms):
        """:meth:`_capitals` at every point of the array ``ms`` at once
        (numpy; rows in blocks, so memory stays bounded at any n)."""
        import numpy as np

        ms = np.asarray(ms, dtype=float)[None, :]
        up_tot = np.zeros((self.k, ms.shape[1]))
        down_tot = np.zeros((self.k, ms.shape[1]))
        xs_all = np.asarray(self.xs, dtype=float)
        lam_all = np.asarray(self.lambdas, dtype=float).reshape(len(self.xs), self.k)
        before_all = np.concatenate([[0.0], np.cumsum(xs_all)[:-1]])
        block = max(1, (1 << 18) // ms.shape[1])
        for start in range(0, len(xs_all), block):
            x = xs_all[start:start + block, None]
            if self.population is None:
                mu = np.broadcast_to(ms, (x.shape[0], ms.shape[1]))
            else:
                i = np.arange(start, start + x.shape[0], dtype=float)[:, None]
                mu = (self.population * ms - before_all[start:start + x.shape[0], None]) / (self.population - i)
            low, high = mu < -_EPS, mu > 1 + _EPS
            mu = np.clip(mu, 0.0, 1.0)
            with np.errstate(divide="ignore"):
                cap_up = np.where(mu > 0, TRUNCATION / np.where(mu > 0, mu, 1.0), np.inf)
                cap_down = np.where(mu < 1, TRUNCATION / np.where(mu < 1, 1 - mu, 1.0), np.inf)
            for j in range(self.k):
                lam = lam_all[start:start + x.shape[0], j:j + 1]
                up = np.log1p(np.minimum(lam, cap_up) * (x - mu))
                down = np.log1p(-np.minimum(lam, cap_down) * (x - mu))
                up = np.where(low, np.inf, np.where(high, 0.0, up))
                down = np.where(high, np.inf, np.where(low, 0.0, down))
                up_tot[j] += up.sum(axis=0)
                down_tot[j] += down.sum(axis=0)

        def mix(logs):
            top = logs.max(axis=0)
            if self.k == 1:
                return top
            with np.errstate(invalid="ignore"):
                out = top + np.log(np.exp(logs - top).sum(axis=0) / self.k)
            return np.where(np.isinf(top), top, out)

        return mix(up_tot), mix(down_tot)

    def interval(self, tol: float = 1e-7) -> tuple[float, float]:
        """The sequence now, ``(Lₜ, Uₜ)`` in [0, 1] (not intersected with
        earlier looks), found by repeated grid search on the monotone
        capitals (33 points a round, numpy) to within ``tol`` on the
        conservative side: ``Lₜ`` is never above, ``Uₜ`` never below, the
        exact endpoints. Memoised per number of observations."""
        if not self.xs:
            return 0.0, 1.0
        if self._interval is not None and self._interval[0] == len(self.xs):
            return self._interval[1]
        import numpy as np

        def search(rejected_at, low_side: bool) -> float:
            a, z = 0.0, 1.0
            while z - a > tol:
                grid = np.linspace(a, z, 33)
                r = rejected_at(grid)
                if low_side:  # rejected on [0, L]: L lies after the last rejected point
                    if not r[0]:
                        return a
                    j = int(np.flatnonzero(r)[-1])
                    if j == len(grid) - 1:
                        return z
                    a, z = grid[j], grid[j + 1]
                else:  # rejected on [U, 1]
                    if not r[-1]:
                        return z
                    j = int(np.flatnonzero(r)[0])
                    if j == 0:
                        return a
                    a, z = grid[j - 1], grid[j]
            return a if low_side else z

        lo = search(lambda g: self._capitals_many(g)[0] >= self._log_threshold_up, True)
        hi = search(lambda g: self._capitals_many(g)[1] >= self._log_threshold_down, False)
        llo, lhi = self._logical()
        result = (max(float(lo), llo), min(float(hi), lhi))
        self._interval = (len(self.xs), result)
        return result

    def p_below(self, b: float) -> float:
        """Anytime-valid one-sided p-value of "the mean is at least ``b``"
        (small when it is shown below ``b``): ``min(1, 1/max K⁻ₛ(b))`` over
        the looks so far; the sequence excludes ``b`` from above exactly when
        it is at most ``(1 − θ)·alpha``, i.e. ``alpha/2``. ``b`` must be
        tracked. (Ville: under the null, P(p ≤ a) ≤ a at any stopping time.)"""
        return min(1.0, math.exp(-self._tracked[b].max_down))

    def p_above(self, b: float) -> float:
        """Anytime-valid one-sided p-value of "the mean is at most ``b``"."""
        return min(1.0, math.exp(-self._tracked[b].max_up))


def _mix(logs: list[float], k: int) -> float:
    """log of the mean of ``exp(logs)`` (the mixture of k capitals)."""
    top = max(logs)
    if top == math.inf or k == 1:
        return top
    return top + math.log(sum(math.exp(v - top) for v in logs) / k)


@dataclass
class _Tracked:
    """The log-capitals at one tracked point, per bet schedule, and the
    largest mixture seen at a look (the running intersection)."""

    up: list[float]
    down: list[float]
    max_up: float = -math.inf
    max_down: float = -math.inf

    def add(self, lams: tuple[float, ...], x: float, mu: float) -> None:
        for j, lam in enumerate(lams):
            lu, ld = BettingCS._log_factors(lam, x, mu)
            self.up[j] += lu
            self.down[j] += ld

    def look(self, k: int) -> None:
        self.max_up = max(self.max_up, _mix(self.up, k))
        self.max_down = max(self.max_down, _mix(self.down, k))


@dataclass
class MetricSequence:
    """One gated metric's sequence in the metric's own units: the paired
    deltas ``d = candidate − baseline`` in ``[−scale, scale]``, the rule's
    boundary ``−max_drop`` and the decision there.

    Args:
        metric: its name; ``scale``: the top of its score range (1, or 100);
        max_drop: the rule's margin (≥ 0, metric units); ``alpha``: the
        sequence's two-sided level (:func:`metric_alpha`); ``population``:
        N for the without-replacement sequence, else None.
    """

    metric: str
    max_drop: float
    alpha: float
    scale: float = 1.0
    population: int | None = None
    horizon: int | None = None
    want_intervals: bool = True  # False: skip the bisections (simulations that read decisions only)
    cs: BettingCS = field(init=False, repr=False)
    decision: Decision = "undecided"
    decided_at: int | None = None  # cases seen when it was decided
    decided_interval: tuple[float, float] | None = None  # the sequence then (metric units)

    def __post_init__(self):
        self.cs = BettingCS(self.alpha, population=self.population, horizon=self.horizon,
                            boundaries=[self.boundary_x])

    @property
    def boundary_x(self) -> float:
        """``−max_drop`` on the [0, 1] scale of the sequence."""
        return min(1.0, max(0.0, (1 - self.max_drop / self.scale) / 2))

    def to_x(self, d: float) -> float:
        return (d / self.scale + 1) / 2

    def to_d(self, x: float) -> float:
        return self.scale * (2 * x - 1)

    def update(self, deltas: Iterable[float]) -> Decision:
        """Add the paired deltas of a wave of cases and decide: ``regressed``
        when the sequence lies wholly below ``−max_drop``, ``within`` when
        wholly above, else ``undecided``. A decision made stays made.

        Raises:
            ValueError: a delta outside ``[−scale, scale]``."""
        xs = []
        for d in deltas:
            if not -self.scale - 1e-9 <= d <= self.scale + 1e-9:
                raise ValueError(f"{self.metric}: a paired delta of {d} is outside [−{self.scale:g}, {self.scale:g}]")
            xs.append(min(1.0, max(0.0, self.to_x(d))))
        self.cs.update(xs)
        if self.decision == "undecided" and self.cs.n:
            if self.cs.excludes_above(self.boundary_x):
                self.decision, self.decided_at = "regressed", self.cs.n
            elif self.cs.excludes_below(self.boundary_x):
                self.decision, self.decided_at = "within", self.cs.n
            if self.decision != "undecided" and self.want_intervals:
                self.decided_interval = self.interval()
        return self.decision

    @property
    def n(self) -> int:
        return self.cs.n

    @property
    def mean(self) -> float | None:
        """The mean paired delta so far (metric units)."""
        m = self.cs.mean
        return None if m is None else self.to_d(m)

    def interval(self) -> tuple[float, float]:
        """The sequence now, in the metric's units (delta)."""
        lo, hi = self.cs.interval()
        return self.to_d(lo), self.to_d(hi)

    def p_regressed(self) -> float:
        """Anytime-valid one-sided p of "the drop does not exceed max_drop":
        decided regressed when it is at most ``alpha/2`` (Bonferroni already
        in ``alpha``)."""
        return self.cs.p_below(self.boundary_x)

    def summary(self) -> dict:
        """What the run record keeps of it (metric units)."""
        lo, hi = self.interval()
        return {"n": self.n, "mean": self.mean, "lower": lo, "upper": hi, "boundary": -self.max_drop,
                "alpha": self.alpha, "decision": self.decision, "decided_at": self.decided_at,
                "decided_interval": list(self.decided_interval) if self.decided_interval else None,
                "p": self.p_regressed(), "population": self.population, "horizon": self.horizon}
