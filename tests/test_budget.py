"""Cost before the run and a budget: ``validate`` prints the calls a run will
make (cached and new), their tokens (LiteLLM's token_counter) and the cost
range (LiteLLM's price map); ``--max-cost`` refuses a run whose lower bound
exceeds it before any call (exit 2) and stops one whose spend passes it
(exit 3, record written, answers cached)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from conftest import ANSWERS
from llmops_cli.cli import cli
from llmops_cli.config import load_config
from llmops_cli.measure.estimate import estimate_run
from llmops_cli.plan.requests import make_plan
from llmops_cli.testing import FakeOpenAI

PRICED = "openai/gpt-4o-mini"  # in LiteLLM's price map: $0.15 / $0.60 per million tokens
LONG = " ".join(["word"] * 300)


def answer(messages, body):
    return ANSWERS[messages[-1]["content"].rsplit("Question: ", 1)[-1].strip()]


def priced_project(make_project, url: str, extra: str = ""):
    cfg = make_project(url, extra=extra)
    cfg.write_text(cfg.read_text().replace("model: openai/fake-model", f"model: {PRICED}"))
    return cfg


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_validate_prints_calls_tokens_and_the_cost_range(make_project, litellm_loaded, tmp_path):
    with FakeOpenAI(reply=answer) as srv:
        cfg = priced_project(make_project, srv.url)
        res = run("validate", str(cfg), "--update-baseline")
        assert res.exit_code == 0, res.output
        assert srv.request_count == 0  # nothing called
        assert "answers (openai/gpt-4o-mini): 6 calls, 0 cached, 6 new" in res.output
        assert "estimated cost of the new calls: $0.0" in res.output

        est = estimate_run(load_config(cfg), make_plan(load_config(cfg)), None)
        g = est.groups[0]
        assert g.prompt_tokens[0] > 6 * 10 and g.completion_tokens == 6 * 32  # max_tokens 32 per new call
        assert est.low == g.prompt_tokens[0] * 0.15e-6
        assert est.high == g.prompt_tokens[0] * 0.15e-6 + 6 * 32 * 0.6e-6

        assert run("eval", str(cfg), "--update-baseline").exit_code == 0
        res = run("validate", str(cfg))
        assert "6 calls, 6 cached, 0 new" in res.output and "estimated cost of the new calls: $0.0000" in res.output


def test_no_price_is_unknown_never_zero(make_project, litellm_loaded):
    with FakeOpenAI(reply=answer) as srv:
        res = run("validate", str(make_project(srv.url)), "--update-baseline")  # openai/fake-model: no price
        assert res.exit_code == 0 and "cost unknown" in res.output.replace("cost unknown – unknown", "cost unknown")
        assert "no price for openai/fake-model" in res.output
        res = run("eval", str(make_project(srv.url)), "--update-baseline", "--max-cost", "1")
        assert res.exit_code == 2 and "--max-cost" in res.output and "no price" in res.output
        assert srv.request_count == 0


def test_max_cost_below_the_least_cost_is_refused_before_any_call(make_project, litellm_loaded, tmp_path):
    with FakeOpenAI(reply=answer) as srv:
        cfg = priced_project(make_project, srv.url)
        res = run("eval", str(cfg), "--update-baseline", "--max-cost", "0.000001")
        assert res.exit_code == 2, res.output
        assert "costs at least $" in res.output and srv.request_count == 0
        assert not (cfg.parent / "baseline.json").exists()


def test_a_run_whose_spend_passes_max_cost_stops_with_its_record(make_project, litellm_loaded, tmp_path):
    with FakeOpenAI(reply=lambda m, b: LONG) as srv:
        cfg = priced_project(make_project, srv.url, extra="")
        cfg.write_text(cfg.read_text().replace("max_tokens: 32", "max_tokens: 400"))
        est = estimate_run(load_config(cfg), make_plan(load_config(cfg)), None)
        budget = est.low * 1.5  # the least cost passes; 300 completion tokens per answer do not
        out = tmp_path / "run.json"
        res = run("eval", str(cfg), "--update-baseline", "-j", "1", "--max-cost", f"{budget:.10f}", "-o", str(out))
        assert res.exit_code == 3, res.output
        assert "--max-cost" in res.output and "cached" in res.output
        made = srv.request_count
        assert 1 <= made < 6
        rec = json.loads(out.read_text())
        assert rec["status"] == "incomplete"
        stopped = [c for c in rec["cases"] if c["calls"] and "--max-cost" in (c["calls"][0]["error"] or "")]
        assert len(stopped) == 6 - made
        assert not (cfg.parent / "baseline.json").exists()
        res = run("eval", str(cfg), "--update-baseline", "-j", "1")  # no budget: the answers paid for are cached
        assert res.exit_code == 0, res.output
        assert srv.request_count == 6
