"""The gate (llmops_cli.gate.rules.compare): verdicts on constructed runs, the
paired bootstrap checked against independent implementations (numpy here,
sacrebleu's own paired bootstrap for corpus BLEU), unpaired cases, dataset
mismatch, the cluster bootstrap and the MDE."""

from __future__ import annotations

import json
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pytest

from llmops_cli.config import Gate, GateRule
from llmops_cli.core.errors import BaselineError
from llmops_cli.gate.rules import compare
from llmops_cli.record.schema import CaseRecord, MetricSummary, RunRecord
from llmops_cli.measure.scorers import SCORERS, aggregate, score_all

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = ROOT / "examples" / "squad-rag" / "data" / "questions.jsonl"
PREDICTIONS = ROOT / "examples" / "squad-predictions"

Z80 = NormalDist().inv_cdf(0.975) + NormalDist().inv_cdf(0.80)  # MDE factor at α = 0.05, power 0.8


# -- helpers -------------------------------------------------------------------------

def make_record(ids: list[str], scores: dict[str, list[float | None]], *, stats: dict[str, list[list[float]]] | None = None,
                inputs: list[dict] | None = None, outputs: list[str] | None = None, references: list[list[str]] | None = None,
                dataset_hash: str = "d0", kind: str = "run", model: str = "m") -> RunRecord:
    """A run record with the given per-case scores (and BLEU sufficient
    statistics), aggregates computed as the runner does."""
    cases = []
    for i, cid in enumerate(ids):
        cases.append(CaseRecord(
            id=cid, inputs=inputs[i] if inputs else {"question": f"q {cid}"},
            references=references[i] if references else ["ref"],
            output=outputs[i] if outputs else f"out {cid}",
            scores={m: v[i] for m, v in scores.items()},
            stats={m: s[i] for m, s in (stats or {}).items()},
        ))
    metrics = {}
    for m, v in scores.items():
        sc = SCORERS[m]
        metrics[m] = MetricSummary(aggregate=aggregate(m, v, (stats or {}).get(m) if sc.from_stats else None),
                                   scale=sc.scale, n_scored=sum(x is not None for x in v),
                                   n_unscored=sum(x is None for x in v))
    return RunRecord(kind=kind, run_id=f"run-{model}", config={"model": model}, fingerprint=f"fp-{model}",
                     dataset_hash=dataset_hash, metrics=metrics, cases=cases)


def pair(base: list[float], cand: list[float], metric: str = "token_f1", **kw) -> tuple[RunRecord, RunRecord]:
    ids = [f"c{i:03d}" for i in range(len(base))]
    return (make_record(ids, {metric: list(base)}, kind="baseline", model="base", **kw),
            make_record(ids, {metric: list(cand)}, model="cand", **kw))


def gate(metric: str = "token_f1", mode: str = "paired", resamples: int = 1000, cluster: str | None = None,
         **rule) -> Gate:
    return Gate(mode=mode, resamples=resamples, cluster=cluster, metrics={metric: GateRule(**rule)})


def numpy_paired_bootstrap(base: np.ndarray, cand: np.ndarray, resamples: int = 4000, seed: int = 2024,
                           confidence: float = 0.95) -> tuple[float, float, float, float]:
    """Independent percentile bootstrap of mean(cand) − mean(base), resampling
    cases (pairs kept together): (delta, low, high, standard error)."""
    rng = np.random.default_rng(seed)
    n = len(base)
    diffs = cand - base
    reps = np.array([diffs[rng.integers(0, n, n)].mean() for _ in range(resamples)])
    a = 1 - confidence
    lo, hi = np.quantile(reps, [a / 2, 1 - a / 2])
    return float(diffs.mean()), float(lo), float(hi), float(reps.std(ddof=1))


def load_squad() -> list[dict]:
    return [json.loads(line) for line in QUESTIONS.read_text(encoding="utf-8").splitlines() if line.strip()]


def predictions(system: str) -> dict[str, str]:
    return json.loads((PREDICTIONS / f"predictions-{system}.json").read_text(encoding="utf-8"))


def squad_records(base_system: str, cand_system: str, metrics: list[str], n: int | None = None) -> tuple[RunRecord, RunRecord]:
    """Baseline and candidate records scored by llmops's scorers on the first
    ``n`` SQuAD questions (inputs keep the paragraph id for clustering)."""
    qs = load_squad()[:n]
    ids = [q["id"] for q in qs]
    refs = [q["answers"] for q in qs]
    inputs = [{"question": q["question"], "paragraph": q["paragraph"]} for q in qs]
    out = []
    for system, kind in ((base_system, "baseline"), (cand_system, "run")):
        preds = predictions(system)
        outs = [preds[i] for i in ids]
        res = score_all(metrics, outs, refs)
        stats = {m: r.stats for m, r in res.items() if r.stats is not None}
        out.append(make_record(ids, {m: r.per_case for m, r in res.items()}, stats=stats, inputs=inputs, outputs=outs,
                               references=refs, kind=kind, model=system))
    return out[0], out[1]


# -- verdicts on constructed data ----------------------------------------------------

BASE5 = [1.0, 0.5, 0.0, 1.0, 0.8]
CAND5 = [1.0, 0.3, 0.5, 0.6, 0.8]  # per-case differences 0, −0.2, +0.5, −0.4, 0 → mean −0.02


def test_hand_computed_example():
    b, c = pair(BASE5, CAND5)
    cmp = compare(b, c, gate(max_drop=0.05))
    m = cmp.metrics[0]
    assert m.metric == "token_f1" and m.n == 5
    assert m.baseline == pytest.approx(0.66)
    assert m.candidate == pytest.approx(0.64)
    assert m.delta == pytest.approx(-0.02)
    # delta ± t₄·SE with the paired SE sd(c − b)/√5 (n − 1 = 4 df)
    from scipy.stats import t

    se = np.std(np.array(CAND5) - np.array(BASE5), ddof=1) / np.sqrt(5)
    assert m.se == pytest.approx(se) and m.df == 4
    assert m.ci_low == pytest.approx(-0.02 - t.ppf(0.975, 4) * se)
    assert m.ci_high == pytest.approx(min(-0.02 + t.ppf(0.975, 4) * se, 1 - 0.66))  # clipped: 0.64 + 0.36 > 1
    assert 0 < m.p_value <= 1
    assert m.mde > 0
    assert m.verdict == "pass"  # the CI reaches far above −0.05
    assert cmp.passed and not cmp.failed
    assert m.scale == 1.0 and m.rule == "drop ≤ 0.05 (CI)"
    # the changed cases: 3 moved, the most fallen first
    assert [ch.id for ch in cmp.changed_cases] == ["c003", "c001", "c002"]
    assert cmp.n_worse_cases == 2 and cmp.n_improved_cases == 1
    assert cmp.changed_cases[0].delta == pytest.approx(-0.4)
    assert cmp.changed_cases[0].scores["token_f1"] == (1.0, 0.6)


def test_memoised_intervals_equal_computed_ones_and_follow_the_scores(tmp_path, monkeypatch):
    """A bootstrap (corpus BLEU) is memoised in the local cache, keyed by its
    inputs and the llmops/numpy/scipy versions; a per-case mean is computed
    analytically every time and never stored."""
    import llmops_cli.gate.rules as gate_module
    import llmops_cli.gate.pairing as pairing_module
    from llmops_cli.core.cache import Cache

    memo = Cache(tmp_path / "cache")
    b, c = squad_records("r-net-plus", "slqa-plus", ["bleu"], n=40)
    rule = {"bleu": GateRule(max_drop=1.0)}
    fresh = compare(b, c, Gate(metrics=rule))
    first = compare(b, c, Gate(metrics=rule), memo=memo)
    computed = []
    real = pairing_module.measure
    monkeypatch.setattr(pairing_module, "measure", lambda *a: computed.append(a[0]) or real(*a))
    again = compare(b, c, Gate(metrics=rule), memo=memo)
    assert computed == []  # served from the memo
    assert again.metrics == first.metrics == fresh.metrics
    # other scores or another seed are computed afresh; another confidence level reuses the
    # bootstrap (it does not depend on the level) and only reads another interval off it
    compare(b, b.model_copy(update={"kind": "run"}), Gate(metrics=rule), memo=memo)
    compare(b, c, Gate(seed=7, metrics=rule), memo=memo)
    assert computed == ["bleu"] * 2
    wider = compare(b, c, Gate(confidence=0.99, metrics=rule), memo=memo).metrics[0]
    assert computed == ["bleu"] * 2
    assert wider.ci_low < first.metrics[0].ci_low and wider.ci_high >= first.metrics[0].ci_high  # (clipped at 100)
    # another numpy or scipy: computed afresh
    monkeypatch.setattr(gate_module, "_stat_versions", lambda: ("0", "numpy==0", "scipy==0"))
    compare(b, c, Gate(metrics=rule), memo=memo)
    assert computed == ["bleu"] * 3
    # a per-case mean: analytic, computed on every comparison, nothing stored
    bm, cm = pair(BASE5, CAND5)
    stored = memo.info()["memo"]
    compare(bm, cm, gate(max_drop=0.05), memo=memo)
    compare(bm, cm, gate(max_drop=0.05), memo=memo)
    assert computed == ["bleu"] * 3 + ["token_f1"] * 2
    assert memo.info()["memo"] == stored


def test_identical_runs_zero_delta_and_fallback_mde():
    b, c = pair(BASE5, BASE5)
    m = compare(b, c, gate(max_drop=0.05)).metrics[0]
    assert m.delta == 0 and m.ci_low == 0 and m.ci_high == 0
    assert m.p_value == 1.0 and m.verdict == "pass"
    # SE of the delta is 0: the MDE under the rule falls back to max_drop + (t₄ + z₀.₈) · sd(baseline) / √n
    from scipy.stats import t

    assert m.mde == pytest.approx(0.05 + (t.ppf(0.975, 4) + NormalDist().inv_cdf(0.8)) * np.std(BASE5, ddof=1) / np.sqrt(5))
    assert compare(b, c, gate(max_drop=0.05)).changed_cases == []


def test_clear_regression():
    rng = np.random.default_rng(1)
    base = rng.uniform(0.4, 1.0, 50)
    b, c = pair(base, base - 0.3)
    cmp = compare(b, c, gate(max_drop=0.05))
    m = cmp.metrics[0]
    assert m.delta == pytest.approx(-0.3)
    assert m.ci_low == pytest.approx(-0.3) and m.ci_high == pytest.approx(-0.3)  # every case fell by exactly 0.3
    assert m.verdict == "regressed" and m.failed
    assert "CI upper bound" in m.reason
    assert not cmp.passed and cmp.failed == [m]
    assert cmp.n_worse_cases == 50 and cmp.n_improved_cases == 0


def test_noise_level_change_passes():
    rng = np.random.default_rng(7)
    base = rng.uniform(0.3, 0.7, 50)
    noise = rng.permutation(np.r_[np.full(25, 0.1), np.full(25, -0.1)])  # random ±0.1, mean exactly 0
    b, c = pair(base, base + noise)
    m = compare(b, c, gate(max_drop=0.05)).metrics[0]
    assert m.delta == pytest.approx(0.0, abs=1e-12)
    assert m.ci_low < 0 < m.ci_high
    assert m.ci_high > -0.05
    assert m.p_value > 0.5
    assert m.verdict == "pass"


def test_clear_improvement():
    rng = np.random.default_rng(3)
    base = rng.uniform(0.2, 0.7, 50)
    cand = base + 0.2 + rng.normal(0, 0.05, 50)
    b, c = pair(base, cand)
    m = compare(b, c, gate(max_drop=0.05)).metrics[0]
    assert m.delta == pytest.approx(float(np.mean(cand - base)))
    assert m.ci_low > 0
    assert m.p_value < 0.01
    assert m.verdict == "improved" and not m.failed


def test_min_floor():
    b, c = pair(BASE5, CAND5)
    cmp = compare(b, c, gate(min=0.9))
    m = cmp.metrics[0]
    assert m.verdict == "below min" and m.failed and not cmp.passed
    assert "< min 0.9" in m.reason
    assert m.rule == "≥ 0.9"
    # the floor applies with max_drop too, and when the candidate clears it the rule passes
    assert compare(b, c, gate(min=0.9, max_drop=0.5)).metrics[0].verdict == "below min"
    assert compare(b, c, gate(min=0.6, max_drop=0.5)).metrics[0].verdict == "pass"


def test_plain_and_paired_modes_differ_on_small_noisy_sample():
    base = [0.9, 0.2, 1.0, 0.4, 0.8, 0.6, 1.0, 0.3]
    diffs = [-0.5, 0.3, -0.4, 0.2, 0.0, -0.3, -0.1, 0.16]  # mean −0.08, sd ≈ 0.29
    cand = [x + d for x, d in zip(base, diffs)]
    b, c = pair(base, cand)
    plain = compare(b, c, gate(max_drop=0.05, mode="plain")).metrics[0]
    paired = compare(b, c, gate(max_drop=0.05, mode="paired")).metrics[0]
    assert plain.delta == paired.delta == pytest.approx(-0.08)
    assert plain.delta < -0.05  # the point drop exceeds max_drop ...
    assert paired.ci_high > -0.05  # ... but the CI does not exclude a smaller drop
    assert plain.verdict == "regressed" and plain.reason.startswith("delta")
    assert paired.verdict == "pass"
    assert plain.rule == "drop ≤ 0.05" and paired.rule == "drop ≤ 0.05 (CI)"


def test_ungated_metric_is_info():
    b, c = pair(BASE5, CAND5)
    cmp = compare(b, c, Gate(), metrics=["token_f1"])
    assert cmp.metrics[0].verdict == "info" and cmp.passed


# -- the bootstrap against independent implementations ----------------------------------

def test_mean_metric_ci_matches_independent_numpy_bootstrap():
    """The interval is delta ± t·SE with the analytic paired SE (which an
    independent paired bootstrap matches) and n − 1 df; token F1's p-value is
    the one-sided paired t-test's, exact match's (0/1) Tango's score test at
    the 0.02 margin."""
    from scipy.stats import t
    b, c = squad_records("r-net-plus", "slqa-plus", ["token_f1", "exact_match"])
    cmp = compare(b, c, Gate(resamples=2000, correction="none", metrics={"token_f1": GateRule(max_drop=0.02),
                                                                        "exact_match": GateRule(max_drop=0.02)}))
    for m in cmp.metrics:
        base = np.array([x.scores[m.metric] for x in b.cases])
        cand = np.array([x.scores[m.metric] for x in c.cases])
        n = len(base)
        delta, _, _, boot_se = numpy_paired_bootstrap(base, cand)
        se = np.std(cand - base, ddof=1) / np.sqrt(n)  # the paired t-test's SE
        q = t.ppf(0.975, n - 1)
        assert m.delta == pytest.approx(delta, abs=1e-12)
        assert m.se == pytest.approx(se, rel=1e-9) and m.df == n - 1
        assert m.se == pytest.approx(boot_se, rel=0.06)
        assert (m.ci_low, m.ci_high) == (m.raw_ci_low, m.raw_ci_high)  # no correction asked for
        assert m.ci_low == pytest.approx(delta - q * se, rel=1e-9)
        assert m.ci_high == pytest.approx(delta + q * se, rel=1e-9)
        if m.metric == "token_f1":
            assert m.p_test == pytest.approx(t.cdf((m.delta + 0.02) / m.se, n - 1), rel=1e-9)
        else:
            assert m.test.startswith("Tango") and m.discordant["lost"] + m.discordant["gained"] == int((base != cand).sum())
        assert m.mde == pytest.approx(0.02 + (q + NormalDist().inv_cdf(0.8)) * se, rel=1e-9)


@pytest.fixture(scope="module")
def bleu_systems():
    """BLEU of bert-ensemble (baseline) and logistic-regression (candidate)
    answers against the SQuAD references, as llmops scores them."""
    qs = load_squad()
    refs = [q["answers"] for q in qs]
    hyps = {s: [predictions(s)[q["id"]] for q in qs] for s in ("bert-ensemble", "logistic-regression", "r-net-plus", "slqa-plus")}
    width = max(len(r) for r in refs)
    streams = [[r[k] if k < len(r) else None for r in refs] for k in range(width)]
    return qs, refs, hyps, streams


def _bleu_records(qs, refs, hyps, base_system, cand_system):
    ids = [q["id"] for q in qs]
    recs = []
    for system, kind in ((base_system, "baseline"), (cand_system, "run")):
        res = score_all(["bleu"], hyps[system], refs)["bleu"]
        assert res.stats is not None and res.scale == 100.0
        recs.append(make_record(ids, {"bleu": res.per_case}, stats={"bleu": res.stats}, outputs=hyps[system],
                                references=refs, kind=kind, model=system))
    return recs


@pytest.mark.parametrize("base_system,cand_system", [("bert-ensemble", "logistic-regression"), ("r-net-plus", "slqa-plus")])
def test_bleu_delta_and_ci_match_sacrebleu(bleu_systems, base_system, cand_system, monkeypatch):
    import sacrebleu
    from sacrebleu.metrics import BLEU
    from sacrebleu.significance import PairedTest

    qs, refs, hyps, streams = bleu_systems
    b, c = _bleu_records(qs, refs, hyps, base_system, cand_system)
    seed, resamples = 12345, 1000
    cmp = compare(b, c, Gate(resamples=resamples, seed=seed, metrics={"bleu": GateRule(max_drop=1.0)}))
    m = cmp.metrics[0]
    assert m.scale == 100.0 and m.n == len(qs)

    # aggregates and delta: sacrebleu's corpus BLEU of each system
    base_bleu = sacrebleu.corpus_bleu(hyps[base_system], streams).score
    cand_bleu = sacrebleu.corpus_bleu(hyps[cand_system], streams).score
    assert m.baseline == pytest.approx(base_bleu, abs=1e-9)
    assert m.candidate == pytest.approx(cand_bleu, abs=1e-9)
    assert m.delta == pytest.approx(cand_bleu - base_bleu, abs=1e-9)

    # the CI: sacrebleu's paired resampling as in significance._paired_bs_test
    # (rng.choice indices from the same seed, float32 statistics summed per
    # resample, _compute_score_from_stats), then the 2.5/97.5% delta quantiles
    metric = BLEU()
    bs = np.array(metric._extract_corpus_statistics(hyps[base_system], streams), dtype="float32")
    cs = np.array(metric._extract_corpus_statistics(hyps[cand_system], streams), dtype="float32")
    rng = np.random.default_rng(seed)
    idxs = rng.choice(len(qs), size=(resamples, len(qs)), replace=True)
    diffs = np.array([metric._compute_score_from_stats(c_.sum(0)).score - metric._compute_score_from_stats(b_.sum(0)).score
                      for b_, c_ in zip(bs[idxs], cs[idxs])])
    # the same resampling scheme gives the same standard error, and the interval is delta ± z·SE
    assert m.se == pytest.approx(diffs.std(ddof=1), rel=0.08)
    from scipy.stats import t

    q = t.ppf(0.975, len(qs) - 1)  # Student's t with n − 1 df; the SE rescaled by √(n/(n − 1))
    assert m.df == len(qs) - 1
    assert m.ci_low == pytest.approx(max(m.delta - q * m.se, -m.baseline))
    assert m.ci_high == pytest.approx(min(m.delta + q * m.se, 100 - m.baseline))

    # sacrebleu's own paired bootstrap test (same seed and resample count):
    # same system score, and the same decision at the 0.05 level
    monkeypatch.setenv("SACREBLEU_SEED", str(seed))
    _, res = PairedTest([(base_system, hyps[base_system]), (cand_system, hyps[cand_system])], {"BLEU": BLEU()},
                        streams, test_type="bs", n_samples=resamples)()
    sys_result = res["BLEU"][1]
    assert sys_result.score == pytest.approx(cand_bleu, abs=1e-9)
    assert (sys_result.p_value < 0.05) == (m.p_value < 0.05)
    # its 95% CI on the candidate's score is about as wide as the spread of the
    # candidate's resampled scores that our bootstrap saw (same indices)
    assert sys_result.mean == pytest.approx(m.candidate, abs=1.0)


def test_bleu_significance_examples(bleu_systems):
    """bert-ensemble → logistic-regression is a certain BLEU drop; r-net-plus →
    slqa-plus a +3 BLEU change that 810 short answers cannot confirm."""
    qs, refs, hyps, _ = bleu_systems
    g = Gate(metrics={"bleu": GateRule(max_drop=1.0)})
    big = compare(*_bleu_records(qs, refs, hyps, "bert-ensemble", "logistic-regression"), g).metrics[0]
    assert big.delta < -60 and big.ci_high < -1.0 and big.verdict == "regressed" and big.p_value < 0.01
    small = compare(*_bleu_records(qs, refs, hyps, "r-net-plus", "slqa-plus"), g).metrics[0]
    assert 0 < small.delta < 5 and small.ci_low < 0 < small.ci_high and small.verdict == "pass"


# -- pairing, dataset identity -----------------------------------------------------------

def test_unpaired_cases_are_excluded_and_reported():
    b = make_record(["a", "b", "c", "d", "e"], {"token_f1": [1.0, 1.0, 0.0, 0.5, 0.5]}, kind="baseline")
    c = make_record(["b", "c", "d", "e", "f"], {"token_f1": [0.0, 0.0, 0.5, 0.5, 1.0]})
    # the same dataset hash cannot hold other cases (integrity.check_covers): as with --allow-dataset-change
    cmp = compare(b, c, gate(max_drop=0.1), check_dataset=False)
    m = cmp.metrics[0]
    assert cmp.only_baseline == ["a"] and cmp.only_candidate == ["f"]
    assert m.n == 4
    # paired over b..e only: baseline 0.5, candidate 0.25
    assert m.baseline == pytest.approx(0.5) and m.candidate == pytest.approx(0.25)
    assert m.delta == pytest.approx(-0.25)
    assert {ch.id for ch in cmp.changed_cases} == {"b"}


def test_unscored_cases_are_left_out_of_the_pairs():
    b = make_record(["a", "b", "c"], {"token_f1": [1.0, None, 0.5]}, kind="baseline")
    c = make_record(["a", "b", "c"], {"token_f1": [0.5, 1.0, None]})
    m = compare(b, c, gate(max_drop=0.1)).metrics[0]
    assert m.n == 1 and m.delta == pytest.approx(-0.5)
    nothing = compare(make_record(["a"], {"token_f1": [None]}, kind="baseline"), make_record(["a"], {"token_f1": [1.0]}),
                      gate(max_drop=0.1))
    assert nothing.metrics[0].verdict == "unscored" and not nothing.passed and nothing.unscored


def test_dataset_hash_mismatch_raises():
    b, _ = pair(BASE5, CAND5)
    _, c = pair(BASE5, CAND5, dataset_hash="another")
    with pytest.raises(BaselineError, match="another eval set") as ei:
        compare(b, c, gate(max_drop=0.05), baseline_path="base.json")
    assert ei.value.exit_code == 2 and ei.value.key == "dataset_hash" and ei.value.path == "base.json"
    # `llmops diff` compares across eval sets on purpose
    assert compare(b, c, gate(max_drop=0.05), check_dataset=False).metrics[0].n == 5


def test_gated_metric_missing_from_baseline_raises():
    b, c = pair(BASE5, CAND5)
    with pytest.raises(BaselineError, match="no scores for this metric"):
        compare(b, c, gate("exact_match", max_drop=0.05))


# -- cluster bootstrap, MDE --------------------------------------------------------------

def test_cluster_bootstrap_is_wider_on_correlated_clusters():
    rng = np.random.default_rng(11)
    n_clusters, size = 20, 10
    effect = np.repeat(rng.normal(0, 0.15, n_clusters), size)  # shared within a cluster
    base = rng.uniform(0.3, 0.7, n_clusters * size)
    cand = base + effect + rng.normal(0, 0.02, n_clusters * size)
    inputs = [{"question": f"q{i}", "paragraph": f"p{i // size:02d}"} for i in range(n_clusters * size)]
    b, c = pair(base, cand, inputs=inputs)
    flat = compare(b, c, gate(max_drop=0.05)).metrics[0]
    clustered_cmp = compare(b, c, gate(max_drop=0.05, cluster="paragraph"))
    clustered = clustered_cmp.metrics[0]
    assert clustered_cmp.cluster == "paragraph"
    assert clustered.delta == pytest.approx(flat.delta, abs=1e-12)
    w_flat, w_clu = flat.ci_high - flat.ci_low, clustered.ci_high - clustered.ci_low
    assert w_clu >= w_flat
    assert w_clu > 2 * w_flat  # with 10 near-identical cases per cluster, about √10 wider
    assert clustered.mde > flat.mde
    # an independent cluster bootstrap agrees on the standard error
    diffs = (cand - base).reshape(n_clusters, size).mean(axis=1)
    _, _, _, se = numpy_paired_bootstrap(np.zeros(n_clusters), diffs)
    assert clustered.se == pytest.approx(se, rel=0.1)


def test_cluster_bootstrap_on_squad_paragraphs_is_not_narrower():
    b, c = squad_records("r-net-plus", "slqa-plus", ["token_f1"])
    flat = compare(b, c, gate(max_drop=0.02)).metrics[0]
    clu = compare(b, c, gate(max_drop=0.02, cluster="paragraph")).metrics[0]
    assert clu.delta == flat.delta
    assert (clu.ci_high - clu.ci_low) >= 0.9 * (flat.ci_high - flat.ci_low)


def test_mde_positive_and_shrinks_with_n():
    mdes = {}
    for n in (30, 810):
        b, c = squad_records("r-net-plus", "slqa-plus", ["token_f1", "exact_match"], n=n)
        cmp = compare(b, c, Gate(metrics={"token_f1": GateRule(max_drop=0.02), "exact_match": GateRule(max_drop=0.02)}))
        mdes[n] = {m.metric: m.mde for m in cmp.metrics}
        assert all(m.n == n for m in cmp.metrics)
    for metric in ("token_f1", "exact_match"):
        assert mdes[30][metric] > 0 and mdes[810][metric] > 0
        assert mdes[30][metric] > 2 * mdes[810][metric]  # ≈ √(810/30) ≈ 5× when the per-case spread is similar
        assert mdes[810][metric] < 0.051


def test_a_cluster_field_a_case_lacks_is_bad_input_naming_the_case():
    from llmops_cli.core.errors import InputError

    ids = ["a", "b", "c", "d"]
    inputs = [{"question": "q", "doc": "p1"}, {"question": "q", "doc": "p1"}, {"question": "q"}, {"question": "q"}]
    base = make_record(ids, {"token_f1": [1.0, 0.5, 1.0, 0.0]}, kind="baseline", model="base", inputs=inputs)
    cand = make_record(ids, {"token_f1": [1.0, 0.5, 0.5, 0.0]}, model="cand", inputs=inputs)
    with pytest.raises(InputError, match=r"case 'c' has no input field 'doc'"):
        compare(base, cand, Gate(metrics={"token_f1": GateRule(max_drop=0.1)}, cluster="doc"))
