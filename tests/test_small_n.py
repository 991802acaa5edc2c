"""The gate at small n: Student-t quantiles and unbiased SEs, McNemar's exact
test for pass/fail metrics (Tango's score test with a margin), "too few to
decide", few clusters, and intervals clipped to what a metric can reach.
The pure-Python distributions are held equal to SciPy's."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from llmops_cli.gate import exact
from llmops_cli.config import Gate, GateRule
from llmops_cli.gate.rules import compare
from llmops_cli.gate.student import betainc, binom_sf_half, t_cdf, t_ppf
from test_gate import make_record, pair


@pytest.mark.parametrize("df", [1, 2, 3, 4, 7, 19, 49, 809, 99_999, 2.5, 1.17])
def test_t_distribution_equals_scipy(df):
    for x in (-40.0, -3.1, -1.0, -0.2, 0.0, 0.7, 1.96, 2.5, 8.0):
        assert t_cdf(x, df) == pytest.approx(sps.t.cdf(x, df), rel=1e-9, abs=1e-14)
    for p in (1e-6, 0.00625, 0.0125, 0.025, 0.2, 0.5, 0.8, 0.975, 0.99375, 1 - 1e-6):
        assert t_ppf(p, df) == pytest.approx(sps.t.ppf(p, df), rel=1e-9, abs=1e-12)


def test_betainc_equals_scipy():
    from scipy.special import betainc as ref

    rng = np.random.default_rng(1)
    for a, b, x in zip(rng.uniform(0.1, 500, 200), rng.uniform(0.1, 500, 200), rng.uniform(0, 1, 200)):
        assert betainc(a, b, x) == pytest.approx(ref(a, b, x), rel=1e-9, abs=1e-300)


@pytest.mark.parametrize("n", [0, 1, 4, 5, 20, 63, 1000, 2000, 2001, 50_000])
def test_exact_binomial_tail_equals_scipy_binomtest(n):
    for k in sorted({0, min(1, n), n // 3, n // 2, min(n, n // 2 + 1), (2 * n) // 3, n}):
        want = sps.binomtest(k, n, 0.5, alternative="greater").pvalue if n else 1.0
        assert binom_sf_half(k, n) == pytest.approx(want, rel=1e-9, abs=1e-300)


def test_tango_score_test_matches_its_definition():
    """Tango (1998): Z = (b − c − nδ)/√(n(2q̂ + δ(1 − δ))), q̂ the restricted MLE of
    P(gained), which maximises the multinomial likelihood under p_lost − p_gained = δ."""
    from scipy.optimize import minimize_scalar

    for lost, gained, n, delta in ((12, 3, 100, 0.05), (30, 10, 400, 0.02), (0, 0, 50, 0.1), (5, 9, 80, 0.03)):
        def nll(q, lost=lost, gained=gained, n=n, delta=delta):
            pl, pg = q + delta, q
            rest = 1 - pl - pg
            return -(lost * math.log(pl) + (gained * math.log(pg) if gained else 0) + (n - lost - gained) * math.log(rest))
        best = minimize_scalar(nll, bounds=(1e-12, (1 - delta) / 2 - 1e-12), method="bounded", options={"xatol": 1e-12})
        q = exact._tango_q(lost, gained, n, delta)
        assert q == pytest.approx(best.x, abs=1e-6)
        z = (lost - gained - n * delta) / math.sqrt(n * (2 * q + delta * (1 - delta)))
        assert exact.p_drop_exceeds(exact.Discordant(lost, gained, n), delta) == pytest.approx(sps.norm.sf(z), rel=1e-9)


def binary_pair(n: int, lost: int, gained: int, metric: str = "exact_match"):
    base = [1.0] * lost + [0.0] * gained + [1.0] * (n - lost - gained)
    cand = [0.0] * lost + [1.0] * gained + [1.0] * (n - lost - gained)
    return pair(base, cand, metric=metric)


def test_four_of_twenty_fell_is_not_a_regression_under_the_exact_test():
    """The issue's example: 4 of 20 cases pass → fail, none the other way.
    A normal test says p = 0.013, "regressed"; McNemar's exact test says
    p = 0.0625 (a sign test on 4 pairs), not significant at 2.5%."""
    b, c = binary_pair(20, 4, 0)
    m = compare(b, c, Gate(metrics={"exact_match": GateRule(max_drop=0.0)})).metrics[0]
    assert m.test == "McNemar exact"
    assert m.discordant == {"lost": 4, "gained": 0, "n": 20}
    assert m.verdict == "pass" and not m.failed
    assert m.too_few == "4 cases changed: too few to decide at 95% (needs at least 6)"
    assert m.too_few in m.notes
    from llmops_cli.report.text import fmt_p

    assert fmt_p(m) == "too few"  # no p-value that could never fire
    assert m.delta == pytest.approx(-0.2) and m.ci_high < 0  # the interval stays on the delta's scale


def test_enough_discordant_pairs_decide_exactly():
    b, c = binary_pair(30, 7, 0)
    m = compare(b, c, Gate(metrics={"exact_match": GateRule(max_drop=0.0)})).metrics[0]
    assert m.p_test == pytest.approx(sps.binomtest(7, 7, 0.5, alternative="greater").pvalue)  # 1/128
    assert m.verdict == "regressed" and "McNemar exact: 7 of 7 changed cases fell" in m.reason
    b, c = binary_pair(30, 7, 2)
    m = compare(b, c, Gate(metrics={"exact_match": GateRule(max_drop=0.0)})).metrics[0]
    assert m.p_test == pytest.approx(sps.binomtest(7, 9, 0.5, alternative="greater").pvalue)  # 0.09
    assert m.verdict == "pass" and not m.too_few


def test_a_check_is_tested_exactly_and_a_fractional_one_is_not():
    """A check (info.check) is pass/fail: exact. Token F1 holding only 0s and
    1s is not declared binary: the t-test."""
    b, c = binary_pair(30, 7, 0, metric="token_f1")
    m = compare(b, c, Gate(metrics={"token_f1": GateRule(max_drop=0.0)})).metrics[0]
    assert m.discordant is None and m.test.startswith("t, 29 df")
    ids = [f"c{i}" for i in range(30)]
    base = [1.0] * 30
    cand = [0.0] * 7 + [1.0] * 23
    b2 = make_record(ids, {"exact_match": base}, kind="baseline")
    c2 = make_record(ids, {"exact_match": cand})
    for rec in (b2, c2):  # rename the metric to a check
        for case in rec.cases:
            case.scores = {"has_answer": case.scores["exact_match"]}
        rec.metrics = {"has_answer": rec.metrics["exact_match"].model_copy(update={"info": {"check": True}})}
    m = compare(b2, c2, Gate(metrics={"has_answer": GateRule(max_drop=0.0)})).metrics[0]
    assert m.test == "McNemar exact" and m.verdict == "regressed"
    # a python check averaged over repeats scores 0.5 on a case: not 0/1, so the t-test
    c2.cases[0].scores["has_answer"] = 0.5
    m = compare(b2, c2, Gate(metrics={"has_answer": GateRule(max_drop=0.0)})).metrics[0]
    assert m.discordant is None and m.test.startswith("t,")


def test_too_few_leaves_the_holm_family():
    """A 0/1 test that can never fire does not widen the others' levels (Tarone 1990)."""
    ids = [f"c{i:02d}" for i in range(40)]
    rng = np.random.default_rng(3)
    base_f1 = rng.uniform(0.3, 0.9, 40)
    em_b = [1.0] * 40
    em_c = [0.0] * 2 + [1.0] * 38
    b = make_record(ids, {"exact_match": em_b, "token_f1": list(base_f1)}, kind="baseline")
    c = make_record(ids, {"exact_match": em_c, "token_f1": list(base_f1 - 0.05 + rng.normal(0, 0.02, 40))})
    cmp = compare(b, c, Gate(metrics={"exact_match": GateRule(max_drop=0.0), "token_f1": GateRule(max_drop=0.0)}))
    assert cmp.family_size == 1
    by = {m.metric: m for m in cmp.metrics}
    assert by["exact_match"].too_few.startswith("2 cases changed")
    assert by["token_f1"].verdict == "regressed" and by["token_f1"].alpha_one_sided == pytest.approx(0.025)


def test_tango_with_a_margin():
    b, c = binary_pair(200, 25, 5)
    m = compare(b, c, Gate(metrics={"exact_match": GateRule(max_drop=0.02)})).metrics[0]
    assert m.test == "Tango score (non-inferiority)"
    assert m.p_test == pytest.approx(exact.p_drop_exceeds(exact.Discordant(25, 5, 200), 0.02))
    assert m.verdict == "regressed"  # a drop of 0.10, far beyond 0.02


def test_small_n_interval_uses_t_with_n_minus_1_df():
    rng = np.random.default_rng(11)
    base = rng.uniform(0.2, 0.9, 8)
    cand = np.clip(base + rng.normal(0, 0.15, 8), 0, 1)
    b, c = pair(list(base), list(cand))
    m = compare(b, c, Gate(correction="none", metrics={"token_f1": GateRule(max_drop=0.0)})).metrics[0]
    d = cand - base
    res = sps.ttest_rel(cand, base, alternative="less")  # the paired t-test
    assert m.df == 7 and m.se == pytest.approx(d.std(ddof=1) / math.sqrt(8))
    assert m.p_test == pytest.approx(res.pvalue, rel=1e-9)
    ci = sps.t.interval(0.95, 7, loc=d.mean(), scale=m.se)
    assert (m.ci_low, m.ci_high) == pytest.approx(ci)


def test_few_clusters_cr2_se_and_bell_mccaffrey_df():
    """Cluster-robust (CR2) SE of the mean difference with the Bell–McCaffrey df,
    checked against the matrix formulas (Imbens & Kolesár 2016)."""
    rng = np.random.default_rng(5)
    sizes = [2, 3, 5, 8, 12]
    groups = np.repeat(np.arange(5), sizes)
    n = len(groups)
    base = rng.uniform(0.2, 0.9, n)
    cand = np.clip(base + rng.normal(0, 0.2, n) + rng.normal(0, 0.1, 5)[groups], 0, 1)
    inputs = [{"question": f"q{i}", "para": f"p{g}"} for i, g in enumerate(groups)]
    b, c = pair(list(base), list(cand), inputs=inputs)
    m = compare(b, c, Gate(cluster="para", metrics={"token_f1": GateRule(max_drop=0.0)})).metrics[0]
    d = cand - base
    e = d - d.mean()
    U = np.zeros((n, 5))
    U[np.arange(n), groups] = 1
    M = np.eye(n) - np.ones((n, n)) / n
    A = np.diag([1 / (1 - s / n) for s in sizes])
    V = sum((U[:, g] @ e) ** 2 * A[g, g] for g in range(5)) / n ** 2
    C = M @ U @ A @ U.T @ M
    # the working model: cases correlated rho within a cluster, rho from the residuals' cross-products
    same = (U @ U.T) - np.eye(n)
    rho = min(0.99, max(0.0, (e @ same @ e / same.sum()) / (e @ e / n)))
    S = (1 - rho) * np.eye(n) + rho * (U @ U.T)
    assert m.se == pytest.approx(math.sqrt(V), rel=1e-9)
    assert m.df == pytest.approx(np.trace(C @ S) ** 2 / np.trace(C @ S @ C @ S), rel=1e-9)
    assert 1 < m.df < 4  # fewer than G − 1: unequal clusters


def test_interval_clipped_to_what_the_metric_can_reach():
    b, c = pair([0.02, 0.0, 0.05, 0.0, 0.01], [0.6, 0.0, 0.9, 0.0, 0.0])
    m = compare(b, c, Gate(metrics={"token_f1": GateRule(max_drop=0.0)})).metrics[0]
    assert m.ci_low == pytest.approx(-m.baseline)  # the candidate cannot score below 0
    assert m.ci_high <= 1 - m.baseline
