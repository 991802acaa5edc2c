"""perplexity: the model-under-test calls ask for token log-probabilities
only when the metric is configured (other configs keep their cache keys); the
fake OpenAI server's logprobs go through LiteLLM into the record and the
cache; an answer without logprobs is unscored with a reason, never 0; the
embedded model returns logprobs too."""

from __future__ import annotations

import json
import math
import urllib.request

import pytest

from conftest import ANSWERS, needs_local_model
from llmops_cli.core.cache import Cache, cache_key
from llmops_cli.config import load_config
from llmops_cli.measure.perplexity import FROM_FILE, NO_LOGPROBS, NO_TOKENS, score_perplexity
from llmops_cli.run.provider import logprob_totals
from llmops_cli.plan.requests import make_plan, model_endpoint
from llmops_cli.record.schema import Call, CaseRecord
from llmops_cli.jobs.runner import run_eval, score_outputs
from llmops_cli.measure.scorers import SCORERS
from llmops_cli.testing import FakeOpenAI
from llmops_cli.testing.http import _pieces


def answer(messages, body):
    return ANSWERS[messages[-1]["content"].rsplit("Question: ", 1)[-1].strip()]


def config(make_project, url: str, metrics: str = "[token_f1, perplexity]", params: str = "", extra: str = ""):
    cfg = make_project(url, extra=extra)
    text = cfg.read_text().replace("metrics: [exact_match, token_f1, bleu, rougeL]", f"metrics: {metrics}")
    cfg.write_text(text.replace("params: {temperature: 0,", "params: {temperature: 0," + params))
    return load_config(cfg)


def expected_perplexity(output: str) -> float:
    """exp(−mean log-prob) of the tokens the fake server sends for ``output``."""
    lps = [FakeOpenAI.token_logprob(t) for t in _pieces(output)]
    return math.exp(-sum(lps) / len(lps))


def test_perplexity_is_exp_of_minus_the_mean_logprob_the_server_sent_and_is_cached(make_project, litellm_loaded,
                                                                                    tmp_path):
    with FakeOpenAI(reply=answer) as srv:
        cfg = config(make_project, srv.url)
        cache = Cache(tmp_path / "cache").open()
        rec = run_eval(cfg, cache=cache)
        assert len(srv.requests) == 6 and all(b.get("logprobs") is True and b.get("top_logprobs") == 0 for b in srv.requests)
        for case in rec.cases:
            call = case.calls[0]
            sent = call.response["choices"][0]["logprobs"]["content"]  # what LiteLLM kept of the server's answer
            assert [t["token"] for t in sent] == _pieces(case.output)
            assert call.logprob_tokens == len(sent) and call.logprob_sum == pytest.approx(sum(t["logprob"] for t in sent))
            assert case.scores["perplexity"] == pytest.approx(expected_perplexity(case.output))
            assert case.scores["perplexity"] > 1 and "perplexity" not in case.reasons
        summary = rec.metrics["perplexity"]
        assert summary.aggregate == pytest.approx(sum(c.scores["perplexity"] for c in rec.cases) / 6)
        assert (summary.n_scored, summary.n_unscored) == (6, 0)
        assert summary.info == {"unit": "ppl", "model": "openai/fake-model", "tokens": sum(len(_pieces(a)) for a in ANSWERS.values())}

        again = run_eval(cfg, cache=cache)
        assert srv.request_count == 6  # answered from the cache
    assert all(c.calls[0].cached for c in again.cases)
    assert [c.calls[0].logprob_sum for c in again.cases] == [c.calls[0].logprob_sum for c in rec.cases]
    assert [c.scores["perplexity"] for c in again.cases] == [c.scores["perplexity"] for c in rec.cases]
    assert again.metrics["perplexity"].aggregate == summary.aggregate


def test_logprobs_are_asked_for_only_with_perplexity_and_other_cache_keys_stay(make_project, litellm_loaded):
    with FakeOpenAI(reply=answer) as srv:
        plain = config(make_project, srv.url, metrics="[token_f1]")
        rec = run_eval(plain)
        assert srv.requests and all("logprobs" not in b for b in srv.requests)
    assert all(c.calls[0].logprob_sum is None and c.calls[0].response["choices"][0].get("logprobs") is None
               for c in rec.cases)
    # the key of a call without perplexity is computed from the same params as before the metric existed
    msgs = make_plan(plain).messages[0]
    assert model_endpoint(plain).key(msgs, 0) == cache_key("openai/fake-model", srv.url, msgs,
                                                           {"temperature": 0.0, "max_tokens": 32}, 0)
    with_ppl = config(make_project, srv.url)
    assert model_endpoint(with_ppl).call_params == {"temperature": 0.0, "max_tokens": 32, "logprobs": True,
                                                    "top_logprobs": 0}
    assert model_endpoint(with_ppl).key(msgs, 0) != model_endpoint(plain).key(msgs, 0)


def test_no_logprobs_from_the_provider_is_unscored_with_the_reason(make_project, litellm_loaded):
    with FakeOpenAI(reply=answer, logprobs=False) as srv:
        rec = run_eval(config(make_project, srv.url))
        assert all(b.get("logprobs") is True for b in srv.requests)  # asked, but not given
    assert rec.status == "complete"
    for case in rec.cases:
        assert case.output and case.scores["perplexity"] is None and case.scores["token_f1"] is not None
        assert case.reasons["perplexity"] == NO_LOGPROBS
    summary = rec.metrics["perplexity"]
    assert summary.aggregate is None and (summary.n_scored, summary.n_unscored) == (0, 6)
    assert summary.info["answered_unscored"] == 6 and summary.info["reason"] == f"6 of 6 cases unscored: {NO_LOGPROBS}"


def test_outputs_made_elsewhere_have_no_perplexity(make_project):
    cfg = config(make_project, "http://127.0.0.1:9/v1")
    rec = score_outputs(cfg, {q: a for q, a in zip([f"q{i}" for i in range(1, 7)], ANSWERS.values())})
    assert all(c.scores["perplexity"] is None and c.reasons["perplexity"] == FROM_FILE for c in rec.cases)
    assert rec.metrics["perplexity"].n_unscored == 6


def test_a_case_is_the_mean_over_its_repeats(make_project, litellm_loaded):
    def reply(messages, body):  # the second repeat (seed 8) answers differently
        return answer(messages, body) + (" indeed" if body["seed"] == 8 else "")

    with FakeOpenAI(reply=reply) as srv:
        cfg = config(make_project, srv.url, params=" seed: 7,", extra="repeats: 2\n")
        rec = run_eval(cfg)
    for case in rec.cases:
        first, second = (c.output for c in case.calls)
        assert second == first + " indeed"
        assert case.scores["perplexity"] == pytest.approx((expected_perplexity(first) + expected_perplexity(second)) / 2)


def test_token_logprobs_are_read_from_openai_format():
    def resp(content):
        return {"choices": [{"logprobs": None if content is None else {"content": content}}]}

    assert logprob_totals(resp([{"token": "a", "logprob": -0.5}, {"token": "b", "logprob": -1.25}])) == (-1.75, 2)
    assert logprob_totals(resp([])) == (0.0, 0)  # an empty answer: no perplexity (NO_TOKENS), not 1
    assert logprob_totals(resp(None)) == (None, None)
    assert logprob_totals(resp([{"token": "a", "logprob": float("-inf")}])) == (None, None)
    assert logprob_totals({"choices": []}) == (None, None) and logprob_totals(None) == (None, None)
    sc = SCORERS["perplexity"]
    assert sc.external and not sc.higher_is_better and sc.worst is None


def test_an_empty_answer_or_a_failed_call_is_unscored_never_0():
    cases = [CaseRecord(id="empty", inputs={}, references=["x"], calls=[Call(output="", logprob_sum=0.0, logprob_tokens=0)]),
             CaseRecord(id="failed", inputs={}, references=["x"], calls=[Call(error="boom")]),
             CaseRecord(id="ok", inputs={}, references=["x"], calls=[Call(output="a b", logprob_sum=-2.0, logprob_tokens=2)])]
    summary = score_perplexity(cases, "m")
    assert [c.scores["perplexity"] for c in cases] == [None, None, pytest.approx(math.e)]
    assert cases[0].reasons == {"perplexity": NO_TOKENS} and cases[1].reasons == {}  # the error says why
    assert summary.aggregate == pytest.approx(math.e) and (summary.n_scored, summary.n_unscored) == (1, 2)
    assert summary.info["reason"] == f"1 of 3 cases unscored: {NO_TOKENS}"


def test_the_fake_server_streams_logprobs_per_token(fake_server):
    def post(body):
        req = urllib.request.Request(fake_server.url + "/chat/completions", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
        with urllib.request.urlopen(req) as r:
            return r.read().decode()

    base = {"model": "m", "messages": [{"role": "user", "content": "the Carolina Panthers"}]}
    plain = json.loads(post(base))
    assert plain["choices"][0]["logprobs"] is None
    full = json.loads(post({**base, "logprobs": True, "top_logprobs": 1}))["choices"][0]["logprobs"]
    assert full == FakeOpenAI.token_logprobs("the Carolina Panthers", top=1)
    assert all(-5 < t["logprob"] < 0 and t["top_logprobs"] == [{k: t[k] for k in ("token", "logprob", "bytes")}]
               for t in full["content"])
    events = [json.loads(line[6:]) for line in post({**base, "logprobs": True, "stream": True}).splitlines()
              if line.startswith("data: {")]
    streamed = [t for e in events if e["choices"][0]["logprobs"] for t in e["choices"][0]["logprobs"]["content"]]
    assert [t["token"] for t in streamed] == ["the", " Carolina", " Panthers"]
    assert [t["logprob"] for t in streamed] == [t["logprob"] for t in full["content"]]


@pytest.mark.local_model
@needs_local_model
def test_the_embedded_model_returns_logprobs(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    (tmp_path / "q.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [
        {"id": "1", "question": "What is the capital of France?", "answers": ["Paris"]},
        {"id": "2", "question": "Who wrote Hamlet?", "answers": ["William Shakespeare"]}]))
    (tmp_path / "c.yaml").write_text("""
model: local/smollm2-135m
params: {temperature: 0, max_tokens: 24, seed: 0}
prompt: {system: "Answer in one short sentence.", user: "{{ question }}"}
dataset: {path: q.jsonl, references: answers}
metrics: [token_f1, perplexity]
""")
    rec = run_eval(load_config(tmp_path / "c.yaml"))
    for case in rec.cases:
        call = case.calls[0]
        assert call.output and call.logprob_tokens == call.completion_tokens > 0, case
        assert math.isfinite(case.scores["perplexity"]) and case.scores["perplexity"] > 1, case
        assert case.scores["perplexity"] == pytest.approx(math.exp(-call.logprob_sum / call.logprob_tokens))
    assert rec.metrics["perplexity"].n_scored == 2


def test_the_gate_notes_perplexity_measured_under_another_model():
    from llmops_cli.config import Gate
    from llmops_cli.gate.rules import compare
    from llmops_cli.record.schema import CaseRecord, MetricSummary, RunRecord

    def rec(model: str, values: list[float]) -> RunRecord:
        cases = [CaseRecord(id=f"c{i}", inputs={"q": str(i)}, references=["x"], output="x", scores={"perplexity": v})
                 for i, v in enumerate(values)]
        return RunRecord(dataset_hash="d", cases=cases,
                         metrics={"perplexity": MetricSummary(aggregate=sum(values) / len(values), info={"model": model})})

    gate = Gate(metrics={"perplexity": {"max_increase_pct": 10}})
    same = compare(rec("a", [2.0, 3.0, 4.0, 5.0]), rec("a", [2.0, 3.0, 4.0, 5.0]), gate)
    other = compare(rec("a", [2.0, 3.0, 4.0, 5.0]), rec("b", [4.0, 6.0, 8.0, 10.0]), gate)
    assert same.passed and not same.metrics[0].notes
    assert "measured under another model (a → b)" in other.metrics[0].notes[0]
    assert other.metrics[0].verdict == "regressed" and other.metrics[0].delta == pytest.approx(3.5)
