"""The anytime-valid confidence sequences of the sequential gate
(:mod:`llmops_cli.gate.sequential`): the authors' own numbers, coverage by
simulation, the without-replacement version, and the decisions."""

from __future__ import annotations

import random

import pytest

from llmops_cli.gate.sequential import BettingCS, MetricSequence, metric_alpha

# Waudby-Smith & Ramdas's reference implementation (confseq 0.0.11, confseq.betting.hedged_cs with alpha 0.05,
# breaks 1000, no running intersection; its grid endpoints are widened by 1/1000) on three seeded samples
# (numpy default_rng(2023): 200 Bernoulli(0.3), 300 Beta(2, 5), 100 uniforms rounded to 3 places drawn without
# replacement from N = 150), at t = 10, 50 and the last. confseq itself does not install here (its C++ part
# needs the Boost headers): these numbers were computed once from its pure-Python betting module.
CONFSEQ = {
    "bern30": (None, [0.118, 0.141, 0.188], [0.878, 0.459, 0.376]),
    "beta25": (None, [0.066, 0.178, 0.247], [0.582, 0.351, 0.315]),
    "unif_wor": (150, [0.183, 0.374, 0.435], [0.718, 0.583, 0.556]),
}


def _samples():
    np = pytest.importorskip("numpy")
    rng = np.random.default_rng(2023)
    x1 = (rng.random(200) < 0.3).astype(float)
    x2 = rng.beta(2, 5, 300)
    x3 = np.round(rng.random(100), 3)
    return {"bern30": list(map(float, x1)), "beta25": list(map(float, x2)), "unif_wor": list(map(float, x3))}


@pytest.mark.parametrize("name", list(CONFSEQ))
def test_matches_the_authors_implementation(name):
    xs = _samples()[name]
    population, lows, highs = CONFSEQ[name]
    cs = BettingCS(0.05, population=population)
    seen = 0
    for t, lo_ref, hi_ref in zip((10, 50, len(xs)), lows, highs):
        cs.update(xs[seen:t])
        seen = t
        lo, hi = cs.interval()
        # confseq's grid interval contains the exact one and is at most two grid steps wider
        assert lo_ref - 1e-9 <= lo <= lo_ref + 0.002, (t, lo, lo_ref)
        assert hi_ref - 0.002 <= hi <= hi_ref + 1e-9, (t, hi, hi_ref)


def _ever_misses(draw, truth, alpha, n, wave, population=None, horizon=None):
    cs = BettingCS(alpha, population=population, horizon=horizon, boundaries=[truth])
    for start in range(0, n, wave):
        cs.update(draw(start, wave))
        if cs.excludes_above(truth) or cs.excludes_below(truth):
            return True
    return False


@pytest.mark.parametrize("p, horizon", [(0.5, None), (0.93, None), (0.5, 400), (0.93, 400)])
def test_covers_the_mean_at_every_look(p, horizon):
    """Ville: the sequence misses the true mean at *some* look in at most α
    of the runs — here looking after every observation, 300 runs of 400 —
    also with the bets mixed with ones tuned for the horizon."""
    rng = random.Random(7)
    misses = sum(_ever_misses(lambda s, w: [float(rng.random() < p) for _ in range(w)], p, 0.1, 400, 1,
                              horizon=horizon) for _ in range(300))
    assert misses / 300 <= 0.1 + 0.05  # α = 0.1 (a wide α makes misses common enough to count)


def test_without_replacement_covers_the_set_mean_and_collapses_to_it():
    rng = random.Random(3)
    misses = 0
    for _ in range(200):
        values = [float(rng.random() < 0.5) for _ in range(300)]
        rng.shuffle(values)
        truth = sum(values) / len(values)
        misses += _ever_misses(lambda s, w: values[s:s + w], truth, 0.1, 300, 1, population=300)  # noqa: B023  (called within the iteration)
    assert misses / 200 <= 0.15
    cs = BettingCS(0.05, population=300)
    cs.update(values)
    lo, hi = cs.interval()
    assert lo == pytest.approx(sum(values) / 300, abs=1e-6) and hi == pytest.approx(sum(values) / 300, abs=1e-6)


def test_the_sequence_shrinks_and_is_an_interval_around_the_mean():
    rng = random.Random(11)
    cs = BettingCS(0.05)
    widths = []
    for _ in range(5):
        cs.update([rng.betavariate(2, 2) for _ in range(200)])
        lo, hi = cs.interval()
        assert lo < cs.mean < hi
        widths.append(hi - lo)
    assert widths == sorted(widths, reverse=True) and widths[-1] < 0.12


def test_a_metric_sequence_decides_regressed_within_and_undecided():
    rng = random.Random(5)
    bad = MetricSequence("token_f1", max_drop=0.02, alpha=0.05)
    good = MetricSequence("token_f1", max_drop=0.02, alpha=0.05)
    tiny = MetricSequence("token_f1", max_drop=0.02, alpha=0.05)
    for _ in range(20):
        bad.update([-1.0 if rng.random() < 0.4 else 0.0 for _ in range(10)])  # a true drop of 0.4
        good.update([0.0] * 25)  # nothing changed on any case (500 cases: the bets are capped at c/m)
    tiny.update([-0.5, 0.5, 0.0])
    assert bad.decision == "regressed" and bad.decided_at <= 30
    lo, hi = bad.decided_interval
    assert hi < -0.02
    assert good.decision == "within" and good.decided_interval[0] > -0.02
    assert tiny.decision == "undecided"
    s = bad.summary()
    assert s["decision"] == "regressed" and s["boundary"] == -0.02 and s["p"] <= 0.025
    assert good.p_regressed() > 0.025


def test_bets_tuned_for_the_horizon_narrow_the_end():
    rng = random.Random(2)
    xs = [rng.betavariate(3, 3) for _ in range(800)]
    plain, mixed = BettingCS(0.05), BettingCS(0.05, horizon=800)
    plain.update(xs)
    mixed.update(xs)
    (a, b), (c, d) = plain.interval(), mixed.interval()
    assert d - c < b - a


def test_a_decision_stays_made():
    seq = MetricSequence("exact_match", max_drop=0.0, alpha=0.05)
    seq.update([-1.0] * 40)
    assert seq.decision == "regressed"
    seq.update([1.0] * 400)  # the later data would say otherwise: the stop was already justified
    assert seq.decision == "regressed"


def test_bleu_scale_and_bad_input():
    seq = MetricSequence("m100", max_drop=2.0, alpha=0.05, scale=100.0)
    assert seq.boundary_x == pytest.approx(0.49)
    with pytest.raises(ValueError, match="outside"):
        seq.update([150.0])
    with pytest.raises(ValueError):
        BettingCS(0.0)
    with pytest.raises(ValueError):
        BettingCS(0.05).update([1.5])
    with pytest.raises(ValueError, match="population"):
        BettingCS(0.05, population=2).update([0.1, 0.2, 0.3])


def test_bonferroni_split():
    assert metric_alpha(0.95, 4) == pytest.approx(0.0125)
    assert metric_alpha(0.95, 1) == pytest.approx(0.05)
    assert metric_alpha(0.95, 4, "none") == pytest.approx(0.05)


@pytest.mark.parametrize("population, horizon", [(None, None), (None, 500), (500, 500)])
def test_the_vectorised_capitals_equal_the_running_ones(population, horizon):
    rng = random.Random(4)
    cs = BettingCS(0.05, population=population, horizon=horizon, boundaries=[0.2, 0.45, 0.7])
    cs.update([float(rng.random() < 0.45) for _ in range(300)])
    many_up, many_down = cs._capitals_many([0.2, 0.45, 0.7])
    for j, m in enumerate((0.2, 0.45, 0.7)):
        up, down = cs._capitals(m)
        assert many_up[j] == pytest.approx(up, rel=1e-9, abs=1e-9) or many_up[j] == up == float("inf")
        assert many_down[j] == pytest.approx(down, rel=1e-9, abs=1e-9) or many_down[j] == down == float("inf")
