"""Acceptance: published SQuAD v1.1 leaderboard predictions for the 810
questions of the Super_Bowl_50 article, scored and gated through the library
exactly as `llmops score examples/squad-predictions/llmops.yaml` does.

* the aggregates reproduce the official evaluation script's numbers
  (examples/squad-rag/data/SOURCE.md) to 0.01 points;
* bert-ensemble → logistic-regression fails the gate, r-net-plus →
  slqa-plus passes it;
* every delta and CI bound agrees with an independent paired bootstrap
  written here in numpy, within 0.005 (0.5 points on the 0–100 scale).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from llmops_cli.gate.baseline import load_baseline
from llmops_cli.config import load_config
from llmops_cli.gate.rules import compare
from llmops_cli.jobs.runner import score_outputs

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "squad-predictions"
CONFIG = EXAMPLE / "llmops.yaml"

# official evaluate-v1.1.py on this article (exact match, token F1; 0–100)
PUBLISHED = {
    "bert-ensemble": (89.75, 92.47),
    "slqa-plus": (84.94, 87.25),
    "r-net-plus": (83.09, 85.35),
    "match-lstm": (65.80, 70.57),
    "logistic-regression": (35.56, 44.74),
}


@pytest.fixture(scope="module")
def cfg():
    return load_config(CONFIG)


@pytest.fixture(scope="module")
def runs(cfg):
    out = {}
    for system in PUBLISHED:
        preds = json.loads((EXAMPLE / f"predictions-{system}.json").read_text(encoding="utf-8"))
        out[system] = score_outputs(cfg, preds, name=f"predictions-{system}.json")
    return out


def numpy_paired_bootstrap(base: np.ndarray, cand: np.ndarray, resamples: int = 4000, seed: int = 7):
    """Paired bootstrap of mean(cand − base) over question pairs: (delta, its
    standard error), and the 95% interval delta ± 1.96·SE."""
    rng = np.random.default_rng(seed)
    d = cand - base
    means = d[rng.integers(0, len(d), size=(resamples, len(d)))].mean(axis=1)
    se = float(means.std(ddof=1))
    return float(d.mean()), float(d.mean() - 1.959964 * se), float(d.mean() + 1.959964 * se)


def test_config_is_the_documented_one(cfg):
    assert cfg.metrics == ["exact_match", "token_f1"]
    assert cfg.gate.mode == "paired" and cfg.gate.cluster is None
    assert {m: r.max_drop for m, r in cfg.gate.metrics.items()} == {"token_f1": 0.02, "exact_match": 0.02}
    assert cfg.baseline_path == EXAMPLE / "baseline-bert-ensemble.json"
    assert cfg.dataset.sample is None and cfg.dataset.limit is None


@pytest.mark.parametrize("system", list(PUBLISHED))
def test_aggregates_match_the_published_table(runs, system):
    rec = runs[system]
    assert rec.status == "complete" and rec.source == "outputs"
    assert len(rec.cases) == 810 and not any(c.error for c in rec.cases)
    em, f1 = PUBLISHED[system]
    assert rec.metrics["exact_match"].n_scored == 810
    assert 100 * rec.metrics["exact_match"].aggregate == pytest.approx(em, abs=0.01)
    assert 100 * rec.metrics["token_f1"].aggregate == pytest.approx(f1, abs=0.01)


def _check_against_numpy(cmp, base_rec, cand_rec):
    bmap, cmap = base_rec.case_map(), cand_rec.case_map()
    for m in cmp.metrics:
        b = np.array([bmap[i].scores[m.metric] for i in cmap])
        c = np.array([cmap[i].scores[m.metric] for i in cmap])
        delta, lo, hi = numpy_paired_bootstrap(b, c)
        assert m.n == 810
        assert m.baseline == pytest.approx(b.mean(), abs=1e-12) and m.candidate == pytest.approx(c.mean(), abs=1e-12)
        assert m.delta == pytest.approx(delta, abs=1e-12)
        assert m.raw_ci_low == pytest.approx(lo, abs=0.002), m
        assert m.raw_ci_high == pytest.approx(hi, abs=0.002), m
        # the verdict's interval is at least as wide (Holm over the two gated metrics)
        assert m.ci_low <= m.raw_ci_low and m.ci_high >= m.raw_ci_high


def test_bert_to_logistic_regression_fails(cfg, runs):
    base, cand = runs["bert-ensemble"].as_baseline(), runs["logistic-regression"]
    cmp = compare(base, cand, cfg.gate)
    assert not cmp.passed
    verdicts = {m.metric: m.verdict for m in cmp.metrics}
    assert verdicts == {"token_f1": "regressed", "exact_match": "regressed"}
    by = {m.metric: m for m in cmp.metrics}
    assert 100 * by["exact_match"].delta == pytest.approx(35.56 - 89.75, abs=0.02)
    assert 100 * by["token_f1"].delta == pytest.approx(44.74 - 92.47, abs=0.02)
    assert all(m.ci_high < -0.4 and m.p_value < 0.01 for m in cmp.metrics)
    _check_against_numpy(cmp, base, cand)


def test_bert_to_slqa_plus_fails_with_the_ci_wholly_below_the_margin(cfg, runs):
    """A close system, 4.8 EM points worse: both metrics regress, each interval
    (the Holm-adjusted one the verdict uses) lying wholly below −0.02."""
    base, cand = runs["bert-ensemble"].as_baseline(), runs["slqa-plus"]
    cmp = compare(base, cand, cfg.gate)
    assert not cmp.passed and cmp.family_size == 2
    by = {m.metric: m for m in cmp.metrics}
    assert 100 * by["exact_match"].delta == pytest.approx(84.94 - 89.75, abs=0.02)
    for m in cmp.metrics:
        assert m.verdict == "regressed" and m.ci_high < -0.02 and m.p_adjusted < 0.025
    _check_against_numpy(cmp, base, cand)


def test_r_net_plus_to_slqa_plus_passes(cfg, runs):
    base, cand = runs["r-net-plus"].as_baseline(), runs["slqa-plus"]
    cmp = compare(base, cand, cfg.gate)
    assert cmp.passed and not cmp.failed
    by = {m.metric: m for m in cmp.metrics}
    assert 100 * by["exact_match"].delta == pytest.approx(84.94 - 83.09, abs=0.02)
    assert 100 * by["token_f1"].delta == pytest.approx(87.25 - 85.35, abs=0.02)
    for m in cmp.metrics:
        assert m.verdict in ("pass", "improved")
        assert m.ci_high > 0 and m.ci_low > -0.02
        assert 0 < m.mde < 0.051  # 810 questions detect a drop of about 2.5 points (beyond the 0.02 margin)
    _check_against_numpy(cmp, base, cand)


def test_every_pair_of_systems_agrees_with_numpy(cfg, runs):
    """Adjacent leaderboard systems, both directions."""
    order = list(PUBLISHED)
    for a, b in zip(order, order[1:]):
        for base, cand in ((a, b), (b, a)):
            cmp = compare(runs[base].as_baseline(), runs[cand], cfg.gate)
            _check_against_numpy(cmp, runs[base], runs[cand])


def test_committed_baseline_is_bert_ensemble(cfg, runs):
    baseline = load_baseline(cfg.baseline_path)
    fresh = runs["bert-ensemble"]
    assert baseline.kind == "baseline" and baseline.dataset_hash == fresh.dataset_hash
    assert baseline.config["model"] == "outputs:predictions-bert-ensemble.json"
    assert {c.id: c.scores for c in baseline.cases} == {c.id: c.scores for c in fresh.cases}
    assert not compare(baseline, runs["logistic-regression"], cfg.gate, baseline_path=str(cfg.baseline_path)).passed
