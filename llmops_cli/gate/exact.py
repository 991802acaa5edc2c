"""The paired test of a pass/fail (0/1) metric: exact match, a check, any
scorer that declares itself ``binary``.

A paired 0/1 comparison is decided by its *discordant* pairs: ``lost``, the
cases the baseline passed and the candidate failed, and ``gained``, the
reverse. The delta is ``(gained − lost)/n``.

* ``max_drop: 0`` — **McNemar's exact test** (McNemar 1947; the exact
  conditional form, Agresti 2013, *Categorical Data Analysis* §11.1.4):
  given ``D = lost + gained`` discordant pairs, under "no change" ``lost`` is
  ``Binomial(D, ½)``; the one-sided p-value of "the candidate got worse" is
  ``P(X ≥ lost)`` — ``scipy.stats.binomtest(lost, D, 0.5,
  alternative="greater").pvalue`` (computed in :mod:`llmops_cli.gate.student`,
  equal to SciPy's to 1e-10 in the tests). It is exact at every n: its
  false-alarm rate never exceeds the stated level.
* ``max_drop: δ > 0`` — a **non-inferiority** margin on the difference of
  paired proportions. The conditional test no longer applies (the null
  distribution depends on ``P(discordant)``), so the gate uses **Tango's
  score test** (Tango 1998, "Equivalence test and confidence interval for
  the difference in proportions for the paired-sample design", Stat. Med.
  17:891–908): ``Z = (lost − gained − nδ) / √(n(2q̂ + δ(1 − δ)))`` with
  ``q̂`` the maximum-likelihood estimate of P(gained) restricted to a drop of
  exactly δ (the root of Tango's quadratic, eq. 4), p = ``1 − Φ(Z)``. Liu et
  al. 2002 (Stat. Med. 21:231–245) found its size close to nominal from
  n ≈ 20 pairs; it is asymptotic, not exact.

**Too few to decide.** With ``D`` discordant pairs the smallest p-value any
outcome can give is that of "every changed case fell" (``½^D`` at δ = 0).
When even that is above the test's level, no outcome can fire and the gate
says so (:func:`too_few`) rather than print a p-value that cannot decide.
Such a test is left out of the Holm family: it can never reject, and leaving
it out keeps the others' levels (Tarone 1990, "A modified Bonferroni method
for discrete data", Biometrics 46:515).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Sequence

from llmops_cli.gate.student import binom_sf_half

_N = NormalDist()


@dataclass
class Discordant:
    """The discordant pairs of a paired 0/1 comparison: ``lost`` (1 → 0),
    ``gained`` (0 → 1), out of ``n`` pairs."""

    lost: int
    gained: int
    n: int

    @property
    def changed(self) -> int:
        return self.lost + self.gained

    def to_dict(self) -> dict:
        return {"lost": self.lost, "gained": self.gained, "n": self.n}


def is_binary(values: Sequence[float]) -> bool:
    """Every value is 0 or 1."""
    return all(v == 0.0 or v == 1.0 for v in values)


def discordant(base: Sequence[float], cand: Sequence[float]) -> Discordant:
    """Count the discordant pairs of two 0/1 sequences paired by position."""
    lost = sum(1 for b, c in zip(base, cand) if b > c)
    gained = sum(1 for b, c in zip(base, cand) if c > b)
    return Discordant(lost, gained, len(base))


def _tango_q(lost: int, gained: int, n: int, margin: float) -> float:
    """Tango's restricted MLE of P(gained) under a drop of exactly ``margin``:
    the root of ``2n q² + (−lost − gained + (2n − lost + gained)δ) q − gained·δ(1 − δ) = 0``."""
    a = 2.0 * n
    b = -lost - gained + (2.0 * n - lost + gained) * margin
    c = -gained * margin * (1 - margin)
    return max(0.0, (math.sqrt(max(0.0, b * b - 4 * a * c)) - b) / (2 * a))


def p_drop_exceeds(d: Discordant, margin: float) -> float:
    """One-sided p-value of H₀ "the drop is at most ``margin``" (0–1 units)
    against "it exceeds it": McNemar's exact test at ``margin`` 0, Tango's
    score test above it (see the module docstring)."""
    if d.n == 0:
        return 1.0
    if margin <= 0:
        return binom_sf_half(d.lost, d.changed)
    if margin >= 1:
        return 1.0
    q = _tango_q(d.lost, d.gained, d.n, margin)
    var = d.n * (2 * q + margin * (1 - margin))
    if var <= 0:
        return 1.0
    return _N.cdf(-(d.lost - d.gained - d.n * margin) / math.sqrt(var))


def smallest_p(d: Discordant, margin: float) -> float:
    """The smallest p-value :func:`p_drop_exceeds` can give with this many
    discordant pairs: every changed case fell."""
    return p_drop_exceeds(Discordant(d.changed, 0, d.n), margin)


def too_few(d: Discordant, margin: float, level: float) -> bool:
    """No outcome of these discordant pairs can reach one-sided ``level``."""
    return smallest_p(d, margin) > level


def needed(margin: float, level: float, n: int) -> int | None:
    """The fewest discordant pairs (all lost) that can reach ``level`` with
    ``n`` pairs in all; None when none can."""
    for k in range(1, n + 1):
        if smallest_p(Discordant(k, 0, n), margin) <= level:
            return k
    return None
