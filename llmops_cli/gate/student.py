"""Student's t distribution and the exact binomial tail, in pure Python.

The gate's small-sample intervals read a t quantile with ``n − 1`` (or
``G − 1``) degrees of freedom, and its exact test of pass/fail metrics a
binomial tail. Both are written out here, as :func:`llmops_cli.gate.stats.holm`
is, because importing ``scipy.stats`` adds about 100 MB of RSS and 0.7 s to
every gated run; the tests hold them equal to ``scipy.stats.t`` and
``scipy.stats.binomtest`` to 1e-10.

* :func:`betainc`: the regularized incomplete beta function ``I_x(a, b)`` by
  its continued fraction, evaluated with the modified Lentz method
  (Press et al., *Numerical Recipes*, 3rd ed. 2007, §6.4; Lentz 1976).
* :func:`t_cdf`: ``P(T_ν ≤ t) = 1 − ½·I_{ν/(ν+t²)}(ν/2, ½)`` for t ≥ 0
  (Abramowitz & Stegun 1964, 26.7.1 and 26.5.27), by symmetry below 0.
* :func:`t_ppf`: its inverse, by bisection on :func:`t_cdf` to 1e-12.
* :func:`binom_sf_half`: ``P(X ≥ k)`` for ``X ~ Binomial(n, ½)``, exact in
  integers up to 2,000 trials, else ``I_{½}(k, n − k + 1)`` (A&S 26.5.24).
"""

from __future__ import annotations

import math
from statistics import NormalDist

_N = NormalDist()


def _betacf(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (Numerical
    Recipes §6.4, ``betacf``), by the modified Lentz method."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 100_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function ``I_x(a, b)`` (a, b > 0,
    0 ≤ x ≤ 1). Raises ``ValueError`` outside that domain."""
    if a <= 0 or b <= 0 or not 0 <= x <= 1:
        raise ValueError(f"betainc({a}, {b}, {x}) is undefined")
    if x == 0 or x == 1:
        return x
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float | None) -> float:
    """``P(T ≤ t)`` for Student's t with ``df`` degrees of freedom (> 0);
    ``df`` None or infinite: the standard normal."""
    if df is None or math.isinf(df):
        return _N.cdf(t)
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    tail = 0.5 * betainc(df / 2, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_ppf(p: float, df: float | None) -> float:
    """The ``p``-quantile (0 < p < 1) of Student's t with ``df`` degrees of
    freedom; ``df`` None: the standard normal's."""
    if df is None or math.isinf(df):
        return _N.inv_cdf(p)
    if not 0 < p < 1:
        raise ValueError(f"t quantile of {p}")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -t_ppf(1 - p, df)
    lo, hi = 0.0, max(1.0, _N.inv_cdf(p))
    while t_cdf(hi, df) < p:
        lo, hi = hi, hi * 2
    for _ in range(200):
        mid = (lo + hi) / 2
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-12 * max(1.0, hi):
            break
    return (lo + hi) / 2


def binom_sf_half(k: int, n: int) -> float:
    """``P(X ≥ k)`` for ``X ~ Binomial(n, ½)``: the one-sided p-value of the
    exact sign test (McNemar's exact test) with ``k`` of ``n`` discordant
    pairs in the tested direction."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if n <= 2000:
        return sum(math.comb(n, i) for i in range(k, n + 1)) / (1 << n)  # int / int: correctly rounded
    return betainc(k, n - k + 1, 0.5)
