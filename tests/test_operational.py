"""Cost, latency and tokens as metrics, through the real HTTP path: measured
from the calls, a cached answer keeping its first latency, gated on a rise
with max_increase / max_increase_pct / max, and refused where a rule points
the wrong way."""

from __future__ import annotations

import math

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import ANSWERS, PLANTED_KEY
from llmops_cli.gate import stats
from llmops_cli.core.cache import Cache
from llmops_cli.cli import cli
from llmops_cli import prepare
from llmops_cli.config import load_config as _load_config
from llmops_cli.core.errors import ConfigError
from llmops_cli.gate.stats import quantile
from llmops_cli.jobs.runner import run_eval
from llmops_cli.testing import FakeOpenAI


def load_config(path):
    """The config as a run uses it: parsed, then prepared (templates, metric
    names, judge templates, checks; :func:`llmops_cli.prepare`)."""
    return prepare(_load_config(path))

OPS = "[exact_match, latency_s, latency_p95, prompt_tokens, completion_tokens, cost_usd]"


def answer(messages, body):
    return ANSWERS[messages[-1]["content"].rsplit("Question: ", 1)[-1].strip()]


def project(make_project, url: str, gate: str = "", model: str = "openai/gpt-4o-mini"):
    cfg = make_project(url)
    text = cfg.read_text().replace("metrics: [exact_match, token_f1, bleu, rougeL]", f"metrics: {OPS}")
    text = text.replace("model: openai/fake-model", f"model: {model}")
    text = text.replace("  metrics:\n    token_f1: {max_drop: 0.05}\n", "  metrics:\n" + gate if gate else "  metrics: {}\n")
    cfg.write_text(text)
    return cfg


def run(args):
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def test_measured_from_the_calls_and_cached_answers_keep_their_first_latency(make_project, litellm_loaded, tmp_path):
    with FakeOpenAI(reply=answer, latency_s=0.05) as srv:
        cfg = load_config(project(make_project, srv.url))
        cache = Cache(tmp_path / "cache").open()
        first = run_eval(cfg, cache=cache)
        again = run_eval(cfg, cache=cache)
        assert srv.request_count == len(first.cases)  # the second run was all cache hits
    for case in first.cases:
        call = case.calls[0]
        assert case.scores["latency_s"] == pytest.approx(call.latency_s) and call.latency_s >= 0.05
        assert case.scores["prompt_tokens"] == call.prompt_tokens > 0
        assert case.scores["completion_tokens"] == call.completion_tokens > 0
        assert case.scores["cost_usd"] == pytest.approx(call.cost_usd) and call.cost_usd > 0  # LiteLLM's price map
    lat = [c.scores["latency_s"] for c in first.cases]
    assert first.metrics["latency_s"].aggregate == pytest.approx(sum(lat) / len(lat))
    assert first.metrics["latency_p95"].aggregate == max(lat)  # 6 cases: the 95th percentile is the slowest
    assert first.metrics["latency_s"].info["unit"] == "s" and first.metrics["cost_usd"].info["unit"] == "USD"
    assert all(c.calls[0].cached for c in again.cases) and again.metrics["latency_s"].info["cached"] == 6
    assert [c.scores["latency_s"] for c in again.cases] == lat
    assert again.metrics["cost_usd"].aggregate == pytest.approx(first.metrics["cost_usd"].aggregate)
    assert again.usage.cost_usd is None  # the cached run paid nothing; the metric is what the answers cost


def test_unknown_price_is_unscored_not_free(make_project, litellm_loaded):
    with FakeOpenAI(reply=answer) as srv:
        rec = run_eval(load_config(project(make_project, srv.url, model="openai/no-such-priced-model")), cache=None)
    assert rec.metrics["cost_usd"].aggregate is None and rec.metrics["cost_usd"].n_unscored == 6
    assert all(c.scores["cost_usd"] is None and "no price" in c.reasons["cost_usd"] for c in rec.cases)
    assert rec.metrics["prompt_tokens"].n_scored == 6


def test_a_slower_model_regresses_latency_and_says_how_many_were_cached(make_project, litellm_loaded, tmp_path):
    gate = "    latency_s: {max_increase_pct: 50}\n    latency_p95: {max_increase: 0.1}\n    exact_match: {max_drop: 0.1}\n"
    with FakeOpenAI(reply=answer, latency_s=0.02) as srv:
        cfg = project(make_project, srv.url, gate)
        assert run(["eval", str(cfg), "--update-baseline", "--cache-dir", str(tmp_path / "c")]).exit_code == 0
        same = run(["eval", str(cfg), "--cache-dir", str(tmp_path / "c")])
        assert same.exit_code == 0, same.output
        assert "6 of 6 answers from the cache, timed when first answered" in same.output
        srv.latency_s = 0.3
        slow = run(["eval", str(cfg), "--no-cache"])
    assert slow.exit_code == 1, slow.output
    assert "latency_s regressed" in slow.output and "CI lower bound" in slow.output and "> +" in slow.output
    assert "latency_p95 regressed" in slow.output
    assert "exact_match regressed" not in slow.output
    assert PLANTED_KEY not in slow.output


def test_a_faster_model_improves_and_a_longer_prompt_raises_tokens(make_project, litellm_loaded, tmp_path):
    gate = "    latency_s: {max_increase: 0.05}\n    prompt_tokens: {max_increase_pct: 10}\n"
    with FakeOpenAI(reply=answer, latency_s=0.3) as srv:
        cfg = project(make_project, srv.url, gate)
        assert run(["eval", str(cfg), "--update-baseline", "--no-cache"]).exit_code == 0
        srv.latency_s = 0.0
        fast = run(["eval", str(cfg), "--no-cache", "--json"])
        assert fast.exit_code == 0, fast.output
        cfg.write_text(cfg.read_text().replace('system: "Answer briefly."', 'system: "' + "Answer briefly. " * 30 + '"'))
        long = run(["eval", str(cfg), "--no-cache"])
    assert '"verdict": "improved"' in fast.output
    assert long.exit_code == 1 and "prompt_tokens regressed" in long.output


def test_max_is_a_ceiling_on_the_whole_run(make_project, litellm_loaded):
    with FakeOpenAI(reply=answer, latency_s=0.05) as srv:
        cfg = project(make_project, srv.url, "    latency_p95: {max: 0.01}\n")
        assert run(["eval", str(cfg), "--update-baseline", "--no-cache"]).exit_code == 0
        res = run(["eval", str(cfg), "--no-cache"])
    assert res.exit_code == 1 and "latency_p95 above max" in res.output and "> max 0.01" in res.output


@pytest.mark.parametrize("rule, key", [
    ("    latency_s: {max_drop: 0.1}\n", "gate.metrics.latency_s.max_drop"),
    ("    exact_match: {max_increase: 0.1}\n", "gate.metrics.exact_match.max_increase"),
    ("    cost_usd: {max_increase: 0.1, max_increase_pct: 5}\n", "max_increase_pct"),
])
def test_a_rule_in_the_wrong_direction_is_bad_input(make_project, rule, key):
    cfg = project(make_project, "http://127.0.0.1:9/v1", rule)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(cfg)
    res = run(["eval", str(cfg)])
    assert res.exit_code == 2 and key in res.output and "Traceback" not in res.output


def test_quantile_is_the_inverted_cdf_one():
    rng = np.random.default_rng(3)
    for n in (1, 2, 7, 20, 101):
        v = list(rng.exponential(1.0, n))
        for q in (0.5, 0.9, 0.95):
            assert quantile(v, q) == np.quantile(v, q, method="inverted_cdf")


def test_p95_bootstrap_interval_covers_a_known_shift_and_not_an_unchanged_run():
    rng = np.random.default_rng(7)
    base = rng.lognormal(0.0, 0.5, 400)
    counts = stats.resample_counts(400, 1000, 1)
    same, b_q, c_q = stats.paired_quantile_bootstrap(base, base, 0.95, counts)
    assert same.theta == 0 and same.se == 0 and b_q == c_q == np.quantile(base, 0.95, method="inverted_cdf")
    shifted, b_q, c_q = stats.paired_quantile_bootstrap(base, base + 0.5, 0.95, counts)
    assert shifted.theta == pytest.approx(0.5) and shifted.bound(0.025) > 0.4  # a constant shift moves the quantile exactly
    noisy = base * rng.lognormal(0.0, 0.2, 400)
    s, b_q, c_q = stats.paired_quantile_bootstrap(base, noisy, 0.95, counts)
    assert s.se > 0 and math.isfinite(s.se) and s.bound(0.025) < s.theta < s.bound(0.975)
    clustered, _, _ = stats.paired_quantile_bootstrap(base, noisy, 0.95, stats.resample_counts(40, 1000, 1),
                                                      np.repeat(np.arange(40), 10))
    assert clustered.units == 40 and clustered.theta == pytest.approx(s.theta)
