"""The gate keeps its promise: failed cases count, Holm controls the family,
the power figure describes the rule, strict mode, the whole-run floor, power
requirements and the one place where exit codes are decided."""

from __future__ import annotations

import json
import math
from statistics import NormalDist

import numpy as np
import pytest
from typer.testing import CliRunner

from llmops_cli.cli import cli
from llmops_cli.config import Gate, GateRule, PowerRequirement
from llmops_cli.core.errors import BaselineError
from llmops_cli.gate.rules import compare
from llmops_cli.gate.power import check_before_run
from llmops_cli.gate.outcome import from_comparison as outcome
from llmops_cli.record.schema import CaseRecord
from llmops_cli.measure.scorers import score_all
from llmops_cli.testing import FakeOpenAI
from test_gate import make_record, pair

Z = NormalDist().inv_cdf


def with_failures(record, ids: set[str]):
    """``record`` as a run whose calls failed on ``ids``: no output, no scores."""
    cases = [CaseRecord(id=c.id, inputs=c.inputs, references=c.references, output=None, error="BadRequestError: 400",
                        scores={m: None for m in c.scores}) if c.id in ids else c for c in record.cases]
    return record.model_copy(update={"cases": cases})


# -- every case counts --------------------------------------------------------------------

def test_candidate_failures_count_as_zero_not_as_missing():
    """70 of 810 cases fail exactly where the baseline was right: the gate
    sees a drop of 70/810, not a candidate judged on the cases it answered."""
    n, failed = 810, 70
    base, cand = pair([1.0] * n, [1.0] * n)
    cand = with_failures(cand, {f"c{i:03d}" for i in range(failed)})
    cmp = compare(base, cand, Gate(metrics={"token_f1": GateRule(max_drop=0.02)}))
    m = cmp.metrics[0]
    assert m.n == n and m.n_failed == failed
    assert m.candidate == pytest.approx(1 - failed / n) and m.delta == pytest.approx(-failed / n)
    assert m.verdict == "regressed" and outcome(cmp).exit_code == 1
    # the per-case diff shows the failures as fallen cases, with their error
    assert cmp.n_worse_cases == failed
    assert cmp.changed_cases[0].candidate_error == "BadRequestError: 400"
    assert cmp.changed_cases[0].scores["token_f1"] == (1.0, 0.0)


def test_cases_missing_on_the_baseline_side_are_excluded_and_counted():
    base = make_record(["a", "b", "c", "d"], {"token_f1": [1.0, None, 0.5, 0.5]}, kind="baseline")
    cand = make_record(["a", "b", "c", "d"], {"token_f1": [1.0, 1.0, 0.5, 0.5]})
    m = compare(base, cand, Gate(metrics={"token_f1": GateRule(max_drop=0.1)})).metrics[0]
    assert m.n == 3 and m.n_baseline_missing == 1 and m.n_failed == 0


def test_a_failed_case_counts_as_an_empty_answer_in_corpus_bleu():
    outs = ["the Denver Broncos beat the Panthers", "at Levi's Stadium in Santa Clara", "Von Miller was the most valuable player",
            "Coldplay headlined the halftime show"]
    refs = [[o] for o in outs]
    ids = ["a", "b", "c", "d"]
    res = score_all(["bleu"], outs, refs)["bleu"]
    base = make_record(ids, {"bleu": res.per_case}, stats={"bleu": res.stats}, outputs=outs, references=refs, kind="baseline")
    cand = with_failures(make_record(ids, {"bleu": res.per_case}, stats={"bleu": res.stats}, outputs=outs, references=refs),
                         {"d"})
    m = compare(base, cand, Gate(metrics={"bleu": GateRule(max_drop=1.0)}), metrics=["bleu"]).metrics[0]
    # sacrebleu on the same corpus with an empty answer in place of the failure
    expected = score_all(["bleu"], outs[:3] + [""], refs)["bleu"].aggregate
    assert m.n_failed == 1 and m.candidate == pytest.approx(expected)
    assert m.candidate < m.baseline == pytest.approx(100.0)


def test_an_unscored_judge_verdict_stays_unscored():
    base = make_record(["a", "b"], {"token_f1": [1.0, 1.0]}, kind="baseline")
    cand = make_record(["a", "b"], {"token_f1": [1.0, None]})  # no error: scored by nobody, not failed
    m = compare(base, cand, Gate(metrics={"token_f1": GateRule(max_drop=0.1)})).metrics[0]
    assert m.n == 1 and m.n_unscored == 1 and m.n_failed == 0 and m.delta == 0


def test_min_applies_to_the_whole_candidate_run():
    """The floor is checked on every candidate case, failures as 0, not only
    on the cases paired with the baseline."""
    base = make_record(["a", "b", "c", "d"], {"token_f1": [1.0, None, None, None]}, kind="baseline")
    cand = with_failures(make_record(["a", "b", "c", "d"], {"token_f1": [1.0, 1.0, 1.0, 1.0]}), {"c", "d"})
    m = compare(base, cand, Gate(metrics={"token_f1": GateRule(min=0.8)})).metrics[0]
    assert m.candidate == 1.0  # the paired case
    assert m.candidate_all == pytest.approx(0.5)
    assert m.verdict == "below min" and "whole run" in m.reason


# -- family-wise control -----------------------------------------------------------------

FOUR = ["exact_match", "token_f1", "rouge1", "rougeL"]


def four_metric_pair(n: int, k: int):
    """Four gated metrics with the same per-case scores: the baseline right on
    every case, the candidate wrong on ``k`` of ``n``."""
    base = [1.0] * n
    cand = [0.0] * k + [1.0] * (n - k)
    ids = [f"c{i:03d}" for i in range(n)]
    return (make_record(ids, {m: base for m in FOUR}, kind="baseline"), make_record(ids, {m: cand for m in FOUR}))


def test_holm_keeps_a_borderline_drop_from_failing_four_times():
    b, c = four_metric_pair(400, 6)  # one-sided p ≈ 0.007 (t) and 1/64 (exact match, McNemar): below 0.025, above 0.025 / 4
    rules = {m: GateRule(max_drop=0.0) for m in FOUR}
    uncorrected = compare(b, c, Gate(correction="none", metrics=rules))
    assert all(m.verdict == "regressed" for m in uncorrected.metrics)
    assert all(0.025 / 4 < m.p_test < 0.025 for m in uncorrected.metrics)
    holm = compare(b, c, Gate(metrics=rules))
    assert holm.correction == "holm" and holm.family_size == 4
    assert all(m.verdict == "pass" for m in holm.metrics) and holm.passed
    for m in holm.metrics:
        assert m.p_adjusted > 0.025 and m.p_adjusted >= m.p_test
        if m.metric != "exact_match":  # the three t-tests share the smallest p
            assert m.p_adjusted == pytest.approx(min(1.0, 4 * m.p_test), rel=1e-6)
        assert m.ci_confidence == pytest.approx(1 - 2 * 0.025 / 4)
        assert m.ci_high >= 0 > m.raw_ci_high  # the interval the verdict uses is the adjusted one


def test_holm_still_fails_a_clear_regression_and_intervals_match_verdicts():
    rng = np.random.default_rng(3)
    n = 300
    base = rng.uniform(0.3, 1.0, n)
    drops = {"exact_match": 0.0, "token_f1": 0.06, "rouge1": 0.02, "rougeL": 0.3}
    ids = [f"c{i:03d}" for i in range(n)]
    b = make_record(ids, {m: list(base) for m in FOUR}, kind="baseline")
    c = make_record(ids, {m: list(np.clip(base - d + rng.normal(0, 0.05, n), 0, 1)) for m, d in drops.items()})
    cmp = compare(b, c, Gate(metrics={m: GateRule(max_drop=0.01) for m in FOUR}))
    verdicts = {m.metric: m.verdict for m in cmp.metrics}
    assert verdicts["rougeL"] == "regressed" and verdicts["token_f1"] == "regressed" and verdicts["exact_match"] != "regressed"
    for m in cmp.metrics:
        assert (m.ci_high < -0.01) == (m.verdict == "regressed"), m
        assert (m.p_adjusted < 0.025) == (m.verdict == "regressed"), m


def test_ungated_metrics_are_not_in_the_family():
    b, c = four_metric_pair(400, 5)
    cmp = compare(b, c, Gate(metrics={"token_f1": GateRule(max_drop=0.0)}), metrics=FOUR)
    assert cmp.family_size == 1
    gated = next(m for m in cmp.metrics if m.metric == "token_f1")
    assert gated.verdict == "regressed" and gated.p_adjusted == gated.p_test
    assert {m.verdict for m in cmp.metrics if m.metric != "token_f1"} == {"info"}


# -- power ---------------------------------------------------------------------------------

def test_mde_describes_the_rule_and_the_warning_gives_the_cases_needed():
    rng = np.random.default_rng(5)
    n = 200
    base = rng.uniform(0, 1, n)
    b, c = pair(list(base), list(np.clip(base + rng.normal(0, 0.2, n), 0, 1)))
    m = compare(b, c, Gate(metrics={"token_f1": GateRule(max_drop=0.01)})).metrics[0]
    # the smallest drop exiting 1 with 80% probability: max_drop + (t_{n-1, 1-α/2} + z_0.8)·SE, one metric in the family
    from scipy.stats import t

    assert m.mde == pytest.approx(0.01 + (t.ppf(0.975, n - 1) + Z(0.8)) * m.se)
    assert m.power_at(m.mde) == pytest.approx(0.8)
    assert m.power_at(0.01) == pytest.approx(0.025, abs=0.001)  # at the margin the rule fires at about its level
    # the gate cannot catch twice max_drop: one warning, with the number of cases that could
    assert m.power_warning.startswith("token_f1: underpowered")
    n_needed = m.cases_needed
    assert n_needed > n
    se_then = m.se * math.sqrt(n / n_needed)
    assert 0.01 + (Z(0.975) + Z(0.8)) * se_then == pytest.approx(0.02, abs=2e-4)
    assert f"{n_needed:,}" in m.power_warning


def test_holm_bound_enters_the_mde():
    from scipy.stats import t

    b, c = four_metric_pair(400, 6)
    cmp = compare(b, c, Gate(metrics={m: GateRule(max_drop=0.0) for m in FOUR}))
    for m in cmp.metrics:
        assert m.alpha_one_sided == pytest.approx(0.025 / 4)
        assert m.df == 399
        assert m.mde == pytest.approx((t.ppf(1 - 0.025 / 4, 399) + Z(0.8)) * m.se)


def test_a_metric_that_cannot_vary_has_unknown_power():
    b, c = pair([0.0] * 50, [0.0] * 50, metric="exact_match")
    cmp = compare(b, c, Gate(metrics={"exact_match": GateRule(max_drop=0.01)}))
    m = cmp.metrics[0]
    assert m.mde is None and "power unknown" in m.power_warning
    from llmops_cli.report import fmt_mde, markdown

    assert fmt_mde(m) == "unknown"
    assert "| unknown |" in markdown(cmp) and "0.0000 | drop" not in markdown(cmp)


def test_planted_drop_is_caught_about_as_often_as_predicted():
    """Each of 120 comparisons plants the same true drop in a noisy metric;
    the share caught agrees with the power the gate predicted for it."""
    rng = np.random.default_rng(11)
    n, drop, max_drop = 300, 0.03, 0.0
    caught, predicted = 0, []
    for _ in range(120):
        base = rng.uniform(0, 1, n)
        cand = np.clip(base + rng.normal(-drop, 0.25, n), -1, 2)  # no clipping effect: the mean drop is exactly `drop`
        b, c = pair(list(base), list(cand))
        m = compare(b, c, Gate(metrics={"token_f1": GateRule(max_drop=max_drop)})).metrics[0]
        caught += m.verdict == "regressed"
        predicted.append(m.power_at(drop))
    expected = sum(predicted) / len(predicted)
    assert 0.4 < expected < 0.9
    assert abs(caught / 120 - expected) < 3 * math.sqrt(expected * (1 - expected) / 120)


# -- strict mode ------------------------------------------------------------------------------

def test_strict_mode_needs_proof_of_non_inferiority():
    rng = np.random.default_rng(2)
    base = list(rng.uniform(0, 1, 40))
    noisy = list(np.clip(np.array(base) + rng.normal(0, 0.3, 40), 0, 1))
    b, c = pair(base, noisy)
    paired = compare(b, c, Gate(metrics={"token_f1": GateRule(max_drop=0.02)})).metrics[0]
    strict = compare(b, c, Gate(mode="strict", metrics={"token_f1": GateRule(max_drop=0.02)})).metrics[0]
    assert paired.verdict == "pass"  # the drop beyond 0.02 is not shown ...
    assert strict.verdict == "unproven" and strict.failed  # ... nor is its absence
    assert strict.raw_ci_low <= -0.02 and "strict" in strict.reason
    assert "strict mode passes an unchanged candidate only" in strict.power_warning
    # with 2000 cases of small noise the lower bound clears -max_drop
    base = list(rng.uniform(0, 1, 2000))
    b, c = pair(base, list(np.array(base) + rng.normal(0, 0.05, 2000)))
    ok = compare(b, c, Gate(mode="strict", metrics={"token_f1": GateRule(max_drop=0.02)})).metrics[0]
    assert ok.verdict in ("pass", "improved") and ok.raw_ci_low > -0.02


# -- power requirements and exit precedence --------------------------------------------------------

def test_require_power_refused_before_the_run_when_the_baseline_shows_it():
    b, _ = pair([1.0, 0.0] * 25, [1.0, 0.0] * 25, metric="exact_match")
    g = Gate(require_power=PowerRequirement(drop=0.05, power=0.8), metrics={"exact_match": GateRule(max_drop=0.01)})
    with pytest.raises(BaselineError, match="at most .* probability") as ei:
        check_before_run(b, g, ["exact_match"], "base.json")
    assert ei.value.key == "gate.require_power" and ei.value.exit_code == 2
    # max_drop at or above the drop it must catch can never have the power
    with pytest.raises(BaselineError, match="not below"):
        check_before_run(b, Gate(metrics={"exact_match": GateRule(max_drop=0.1, require_power={"drop": 0.05})}),
                         ["exact_match"], "base.json")
    # a continuous metric: the baseline alone cannot tell, the run decides
    bf, _ = pair(list(np.linspace(0, 1, 50)), [0.5] * 50)
    check_before_run(bf, Gate(require_power=PowerRequirement(drop=0.05), metrics={"token_f1": GateRule(max_drop=0.01)}),
                     ["token_f1"], "base.json")
    # a gated metric the baseline lacks
    with pytest.raises(BaselineError, match="no scores for this gated metric"):
        check_before_run(b, Gate(metrics={"token_f1": GateRule(max_drop=0.01)}), ["token_f1"], "base.json")


def test_require_power_after_the_run_is_exit_2_unless_a_regression_was_found():
    rng = np.random.default_rng(9)
    base = list(rng.uniform(0, 1, 60))
    b, c = pair(base, list(np.array(base) + rng.normal(0, 0.2, 60)))
    g = Gate(require_power=PowerRequirement(drop=0.05), metrics={"token_f1": GateRule(max_drop=0.01)})
    cmp = compare(b, c, g)
    assert cmp.underpowered and not cmp.failed
    out = outcome(cmp)
    assert out.exit_code == 2 and "require_power" in out.reason
    b2, c2 = pair(base, list(np.array(base) - 0.5))
    assert outcome(compare(b2, c2, g)).exit_code == 1  # a real regression is reported as one


def test_outcome_precedence():
    b, c = pair([1.0] * 10, [0.0] * 10)
    assert outcome(compare(b, c, Gate(metrics={"token_f1": GateRule(max_drop=0.1)}))).exit_code == 1
    nothing = compare(make_record(["a"], {"token_f1": [None]}, kind="baseline"), make_record(["a"], {"token_f1": [1.0]}),
                      Gate(metrics={"token_f1": GateRule(max_drop=0.1)}))
    assert outcome(nothing).exit_code == 3
    same = compare(*pair([1.0, 0.5], [1.0, 0.5]), Gate(metrics={"token_f1": GateRule(max_drop=0.1)}))
    assert outcome(same) .exit_code == 0


# -- through the real HTTP path -------------------------------------------------------------------

N_HTTP = 300
FAILING = 25  # 8.3% of the cases: within max_error_share 0.1


def _http_project(tmp_path, api_base: str, gate_yaml: str) -> str:
    qs = [{"id": f"q{i:03d}", "question": f"What is item {i}?", "answers": [f"answer {i}"]} for i in range(N_HTTP)]
    (tmp_path / "questions.jsonl").write_text("".join(json.dumps(q) + "\n" for q in qs), encoding="utf-8")
    cfg = tmp_path / "llmops.yaml"
    cfg.write_text(f"""\
model: openai/fake-model
api_base: {api_base}
params: {{temperature: 0, max_tokens: 16, timeout: 10}}
prompt:
  user: "Question: {{{{ question }}}}"
dataset: {{path: questions.jsonl, inputs: [question], references: answers}}
metrics: [exact_match, token_f1]
max_error_share: 0.1
{gate_yaml}
baseline: baseline.json
""", encoding="utf-8")
    return str(cfg)


FAIL = {"on": False}


def _answer(messages, body):
    q = messages[-1]["content"].rsplit("item ", 1)[-1].rstrip("?")
    if FAIL["on"] and int(q) < FAILING:
        return 400, "This model's maximum context length is exceeded"
    return f"answer {q}"


def test_failures_within_max_error_share_exit_1_through_http(tmp_path, litellm_loaded):
    """The candidate answers like the baseline except on 25 of 300 cases,
    where its calls fail with HTTP 400 (not retried): within max_error_share,
    so the run completes, and those failures are a drop past max_drop."""
    FAIL["on"] = False
    with FakeOpenAI(reply=_answer) as srv:
        cfg = _http_project(tmp_path, srv.url, "gate:\n  metrics:\n    exact_match: {max_drop: 0.02}\n    token_f1: {max_drop: 0.02}")
        res = CliRunner().invoke(cli, ["eval", cfg, "--update-baseline"], catch_exceptions=False)
        assert res.exit_code == 0, res.output
        FAIL["on"] = True
        res = CliRunner().invoke(cli, ["eval", cfg, "--no-cache"], catch_exceptions=False)
    FAIL["on"] = False
    assert res.exit_code == 1, res.output
    assert f"{FAILING} candidate failures counted as 0" in res.output
    assert "regression" in res.output and "exact_match" in res.output


# -- served-model drift --------------------------------------------------------------------------

@pytest.mark.parametrize("policy", ["warn", "fail"])
def test_served_model_drift_is_shown_and_can_fail(tmp_path, litellm_loaded, policy):
    """The same answers, served by another model behind the same name: a line
    above the gate table says so; ``on_model_drift: fail`` makes it exit 1."""
    FAIL["on"] = False
    with FakeOpenAI(reply=_answer, served_model="fake-model-2024-05-13") as srv:
        gate_yaml = f"gate:\n  on_model_drift: {policy}\n  metrics:\n    token_f1: {{max_drop: 0.02}}"
        cfg = _http_project(tmp_path, srv.url, gate_yaml)
        assert CliRunner().invoke(cli, ["eval", cfg, "--update-baseline"], catch_exceptions=False).exit_code == 0
        baseline = json.loads((tmp_path / "baseline.json").read_text(encoding="utf-8"))
        assert baseline["served"] == {"openai/fake-model": {"fake-model-2024-05-13 (fp_fake)": N_HTTP}}
        srv.served_model, srv.system_fingerprint = "fake-model-2024-08-06", "fp_new"
        res = CliRunner().invoke(cli, ["eval", cfg, "--refresh"], catch_exceptions=False)
    assert "served model drift" in res.output
    assert "fake-model-2024-05-13 (fp_fake)" in res.output and "fake-model-2024-08-06 (fp_new)" in res.output
    assert res.output.index("served model drift") < res.output.index("gate")
    if policy == "warn":
        assert res.exit_code == 0, res.output
    else:
        assert res.exit_code == 1, res.output
        assert "served model drift (gate.on_model_drift: fail)" in res.output


def test_holm_equals_statsmodels_multipletests():
    """stats.holm is statsmodels' Holm (kept out of the run for its ~100 MB import): same rejections and adjusted
    p-values on random families, ties and p-values exactly on a step's threshold included."""
    import random

    from statsmodels.stats.multitest import multipletests

    from llmops_cli.gate import stats

    rng = random.Random(7)
    families = [[rng.random() ** rng.choice([1, 3, 8]) for _ in range(rng.randint(1, 12))] for _ in range(2000)]
    families += [[0.01, 0.01, 0.02, 0.9], [0.025 / 2, 0.025, 0.5], [0.0, 1.0, 0.0125], [0.3] * 5, [0.025]]
    for ps in families:
        for alpha in (0.025, 0.05):
            want_reject, want_adj, _, _ = multipletests(ps, alpha=alpha, method="holm")
            reject, adjusted = stats.holm(ps, alpha)
            assert reject == [bool(r) for r in want_reject], (ps, alpha)
            assert adjusted == pytest.approx([float(a) for a in want_adj], abs=1e-15), (ps, alpha)


def test_streamed_bootstrap_draws_equal_the_kept_matrix(monkeypatch):
    """Above KEEP_ENTRIES the draws are drawn again block by block (a 10,000-case gate would otherwise hold 160 MB):
    the same replicates, so the same SE and quantile intervals, as the whole matrix kept in memory."""
    from llmops_cli.gate import stats

    rng = np.random.default_rng(3)
    base, cand = rng.random((301, 2)), rng.random((301, 2))
    lat_b, lat_c = list(rng.random(301)), list(rng.random(301) + 0.1)

    def agg(sums):
        return sums[:, 0] / sums[:, 1]

    def measured():
        return (stats.paired_bootstrap(base, cand, agg, stats.resample_counts(301, 999, 5)),
                stats.paired_quantile_bootstrap(lat_b, lat_c, 0.95, stats.resample_counts(301, 999, 5))[0])

    kept = measured()
    monkeypatch.setattr(stats.ResampleCounts, "KEEP_ENTRIES", 0)
    monkeypatch.setattr(stats.ResampleCounts, "BLOCK_ENTRIES", 301 * 64)
    counts = stats.resample_counts(301, 999, 5)
    assert [len(b) for b in counts.blocks()] == [64] * 15 + [39]
    assert measured() == kept
