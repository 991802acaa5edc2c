"""End-to-end runs through LiteLLM against the fake OpenAI server: traces,
scores, concurrency, the response cache, retries, failures and secrets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmops_cli.core.cache import Cache
from llmops_cli.config import load_config
from llmops_cli.core.errors import ConfigError, RunIncomplete
from llmops_cli.record.schema import load_record, save_record
from llmops_cli.jobs.runner import run_eval, score_outputs
from llmops_cli.measure.scorers import score_all
from llmops_cli.testing import FakeOpenAI

from conftest import ANSWERS, CORPUS, PLANTED_KEY, QUESTIONS

pytestmark = pytest.mark.usefixtures("litellm_loaded")

EXPECTED_TOP_DOC = {"q1": "broncos", "q2": "venue", "q3": "mvp", "q4": "halftime", "q5": "anthem", "q6": "broncos"}


def question_of(messages) -> str:
    return messages[-1]["content"].rsplit("Question: ", 1)[1].strip()


def answer_by_question(messages, body):
    return ANSWERS[question_of(messages)]


def _files_containing(root: Path, needle: str) -> list[Path]:
    hits = []
    for p in root.rglob("*"):
        if p.is_file() and needle.encode() in p.read_bytes():
            hits.append(p)
    return hits


# -- a normal run ------------------------------------------------------------

def test_run_records_every_case_with_full_trace(make_project):
    with FakeOpenAI(reply=answer_by_question, latency_s=0.01) as srv:
        cfg = load_config(make_project(srv.url))
        seen = []
        rec = run_eval(cfg, progress=lambda done, total: seen.append((done, total)))
    n = len(QUESTIONS)
    assert rec.status == "complete" and rec.kind == "run" and rec.source == "model"
    assert [c.id for c in rec.cases] == [q["id"] for q in QUESTIONS]
    assert len(srv.requests) == n
    assert sorted(seen) == [(i, n) for i in range(1, n + 1)]
    assert rec.fingerprint and rec.dataset_hash and rec.corpus_hash and rec.run_id and rec.created_at
    assert rec.config["model"] == "openai/fake-model" and rec.config_path == str(cfg.path)

    bodies = {b["messages"][-1]["content"]: b for b in srv.requests}
    for case, q in zip(rec.cases, QUESTIONS):
        assert case.inputs == {"question": q["question"]} and case.references == q["answers"]
        # retrieval trace
        assert case.retrieval.query == q["question"]
        ids = [ch.id for ch in case.retrieval.chunks]
        assert len(ids) == 2 and ids[0] == EXPECTED_TOP_DOC[case.id]
        assert set(ids) <= {d["id"] for d in CORPUS}
        assert case.retrieval.chunks[0].score >= case.retrieval.chunks[1].score
        # rendered messages, with the retrieved texts as context
        texts = {d["id"]: d["text"] for d in CORPUS}
        assert case.messages == [
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": f"Context:\n{texts[ids[0]]}\n\n{texts[ids[1]]}\n\nQuestion: {q['question']}"},
        ]
        # what the server received is what the record says was sent
        body = bodies[case.messages[-1]["content"]]
        assert body["messages"] == case.messages
        assert body["model"] == "fake-model" and body["temperature"] == 0 and body["max_tokens"] == 32
        # the call
        (call,) = case.calls
        assert call.error is None and not call.cached and call.retries == 0
        assert call.output == case.output == ANSWERS[q["question"]]
        assert call.response["choices"][0]["message"]["content"] == call.output
        assert call.response["object"] == "chat.completion"
        words = sum(len(m["content"].split()) for m in case.messages)
        assert call.prompt_tokens == words and call.completion_tokens == len(call.output.split())
        assert call.latency_s >= 0.01
        assert case.error is None
        assert set(case.scores) == set(cfg.metrics) and "bleu" in case.stats

    u = rec.usage
    assert u.calls == n and u.cache_misses == n and u.cache_hits == 0 and u.errors == 0 and u.retries == 0
    assert u.prompt_tokens == sum(c.calls[0].prompt_tokens for c in rec.cases)
    assert u.completion_tokens == sum(c.calls[0].completion_tokens for c in rec.cases)
    assert u.wall_s > 0 and len(u.slowest) == 5


def test_metrics_match_scorers_on_outputs(make_project):
    with FakeOpenAI(reply=answer_by_question) as srv:
        cfg = load_config(make_project(srv.url))
        rec = run_eval(cfg)
    outputs = [c.output for c in rec.cases]
    refs = [c.references for c in rec.cases]
    expected = score_all(cfg.metrics, outputs, refs)
    assert set(rec.metrics) == set(cfg.metrics)
    for name, res in expected.items():
        m = rec.metrics[name]
        assert m.aggregate == pytest.approx(res.aggregate), name
        assert m.n_scored == len(QUESTIONS) and m.n_unscored == 0
        assert [c.scores[name] for c in rec.cases] == pytest.approx(res.per_case), name
    # hand-checked: EM right for q1 (article dropped), q3, q4; q6 "the Carolina Panthers" == "Carolina Panthers"
    assert rec.metrics["exact_match"].aggregate == pytest.approx(4 / 6)
    assert rec.metrics["bleu"].scale == 100.0 and "signature" in rec.metrics["bleu"].info


def test_concurrency_bound_is_respected(make_project):
    questions = [{"id": f"c{i}", "question": f"Question number {i} about the Broncos?", "answers": ["x"]} for i in range(12)]
    with FakeOpenAI(reply=["x"], latency_s=0.15) as srv:
        cfg = load_config(make_project(srv.url, questions=questions))
        rec = run_eval(cfg, concurrency=3)
    assert len(srv.requests) == 12 and rec.metrics["exact_match"].aggregate == 1.0
    assert srv.max_in_flight <= 3
    assert srv.max_in_flight >= 2  # calls do overlap
    assert srv.in_flight == 0


def test_concurrency_one_is_sequential(make_project):
    with FakeOpenAI(latency_s=0.02) as srv:
        run_eval(load_config(make_project(srv.url)), concurrency=1)
    assert srv.max_in_flight == 1 and len(srv.requests) == len(QUESTIONS)


def test_repeats_make_one_call_per_repeat(make_project):
    with FakeOpenAI(reply=answer_by_question) as srv:
        cfg = load_config(make_project(srv.url, extra="repeats: 2\n"))
        rec = run_eval(cfg)
    assert len(srv.requests) == 2 * len(QUESTIONS)
    assert all([c.repeat for c in case.calls] == [0, 1] for case in rec.cases)
    assert rec.usage.calls == 2 * len(QUESTIONS)


# -- response cache ------------------------------------------------------------

def test_second_run_is_served_from_cache(make_project, tmp_path):
    with FakeOpenAI(reply=answer_by_question) as srv:
        cfg = load_config(make_project(srv.url))
        first = run_eval(cfg, cache=Cache(tmp_path / "cache"))
        n = len(QUESTIONS)
        assert len(srv.requests) == n and first.usage.cache_misses == n
        srv.reset()
        second = run_eval(cfg, cache=Cache(tmp_path / "cache"))
        assert srv.requests == []  # zero requests reached the server
    assert second.usage.cache_hits == n and second.usage.cache_misses == 0 and second.usage.calls == 0
    # a cached answer keeps the latency recorded when it was first answered
    assert all(b.calls[0].cached and b.calls[0].latency_s == a.calls[0].latency_s > 0 for a, b in zip(first.cases, second.cases))
    assert [c.output for c in second.cases] == [c.output for c in first.cases]
    assert {k: m.aggregate for k, m in second.metrics.items()} == {k: m.aggregate for k, m in first.metrics.items()}
    assert second.usage.prompt_tokens == first.usage.prompt_tokens
    assert second.fingerprint == first.fingerprint


def test_default_cache_dir_from_env_and_key_changes(make_project, monkeypatch, tmp_path):
    monkeypatch.setenv("LLMOPS_CACHE_DIR", str(tmp_path / "envcache"))
    with FakeOpenAI(reply=answer_by_question) as srv:
        path = make_project(srv.url)
        run_eval(load_config(path), cache=Cache())
        assert (tmp_path / "envcache" / "responses.sqlite").exists()
        assert Cache().info()["entries"] == len(QUESTIONS)
        srv.reset()
        # another temperature is another cache key: every case is asked again
        path.write_text(path.read_text().replace("temperature: 0,", "temperature: 0.5,"))
        rec = run_eval(load_config(path), cache=Cache())
        assert len(srv.requests) == len(QUESTIONS) and rec.usage.cache_hits == 0


def test_failed_calls_are_not_cached(make_project, tmp_path):
    def fail_q5(messages, body):
        if "national anthem" in question_of(messages):
            return (400, "bad request for this one")
        return answer_by_question(messages, body)

    with FakeOpenAI(reply=fail_q5) as srv:
        cfg = load_config(make_project(srv.url, max_error_share=0.2))
        rec = run_eval(cfg, cache=Cache(tmp_path / "c"), retries=2)
        q5 = rec.case_map()["q5"]
        assert q5.error and "bad request for this one" in q5.error and q5.output is None
        assert q5.calls[0].retries == 0  # 400 is not retried
        assert all(v is None for v in q5.scores.values())
        assert rec.metrics["token_f1"].n_scored == 5 and rec.metrics["token_f1"].n_unscored == 1
        assert rec.usage.errors == 1
        srv.reset()
        again = run_eval(cfg, cache=Cache(tmp_path / "c"), retries=2)
        assert len(srv.requests) == 1 and again.usage.cache_hits == 5


# -- provider errors -------------------------------------------------------------

def test_rate_limits_and_server_errors_are_retried(make_project):
    questions = QUESTIONS + [{"id": "q7", "question": "Who won Super Bowl 50?", "answers": ["Broncos"]},
                             {"id": "q8", "question": "Who sang the national anthem?", "answers": ["Lady Gaga"]}]
    with FakeOpenAI(reply=answer_by_question, fail_every={5: 429, 7: 500}) as srv:
        cfg = load_config(make_project(srv.url, questions=questions))
        rec = run_eval(cfg, retries=4)
    assert rec.status == "complete"
    assert srv.failures >= 2 and len(srv.requests) == len(questions) + srv.failures
    assert all(c.error is None and c.output for c in rec.cases)
    assert all(m.n_scored == len(questions) for m in rec.metrics.values())
    assert rec.usage.retries == srv.failures > 0 and rec.usage.errors == 0
    assert sum(c.calls[0].retries for c in rec.cases) == rec.usage.retries


def test_down_server_raises_run_incomplete(make_project):
    srv = FakeOpenAI(down=True).start()
    cfg = load_config(make_project(srv.url, timeout=1, max_error_share=0.99))  # every case is tried before giving up
    with pytest.raises(RunIncomplete) as ei:
        run_eval(cfg, retries=1)
    err = ei.value
    assert err.exit_code == 3
    assert f"{len(QUESTIONS)} of {len(QUESTIONS)} cases failed" in str(err) and srv.url in str(err)
    rec = err.record
    assert rec is not None and rec.status == "incomplete" and rec.metrics == {}
    assert all(c.error and c.output is None for c in rec.cases)
    assert all(c.calls[0].retries == 1 for c in rec.cases)  # connection errors are retried
    assert rec.usage.errors == len(QUESTIONS)
    assert PLANTED_KEY not in str(err) and PLANTED_KEY not in rec.model_dump_json()


def test_early_stop_bound_agrees_with_the_error_share_check():
    from llmops_cli.run.execute import allowed_failures as _allowed_failures

    for n in range(1, 120):
        for share in (0.0, 0.01, 0.05, 0.1, 0.2, 0.29, 0.3, 0.7, 1.0):
            k = _allowed_failures(n, share)
            assert k / n <= share and (k == n or (k + 1) / n > share), (n, share, k)


def test_run_stops_calling_once_it_cannot_complete(make_project):
    """Past max_error_share failed cases the remaining cases are not called:
    a dead provider costs one round of retries, not one per case."""
    srv = FakeOpenAI(down=True).start()
    cfg = load_config(make_project(srv.url, timeout=1, max_error_share=0.2))  # 6 cases: one may fail, two may not
    with pytest.raises(RunIncomplete) as ei:
        run_eval(cfg, retries=1, concurrency=1)
    rec = ei.value.record
    tried = [c for c in rec.cases if c.calls]
    assert len(tried) == 2 and all(c.calls[0].retries == 1 and "Connection" in c.error for c in tried)
    assert [c.error for c in rec.cases if not c.calls] == ["not run"] * (len(QUESTIONS) - 2)
    assert rec.usage.errors == 2 and rec.status == "incomplete"
    msg = str(ei.value)
    assert f"2 of {len(QUESTIONS)} cases failed (limit 20%)" in msg and f"the other {len(QUESTIONS) - 2} were not run" in msg
    assert "first error: " in msg and "first error: not run" not in msg


def test_error_share_over_limit(make_project):
    def fail_two(messages, body):
        question = question_of(messages)
        if "anthem" in question or "halftime" in question:
            return (400, "nope")
        return answer_by_question(messages, body)

    with FakeOpenAI(reply=fail_two) as srv:
        with pytest.raises(RunIncomplete, match="2 of 6 cases failed"):
            run_eval(load_config(make_project(srv.url, max_error_share=0.2)))
        rec = run_eval(load_config(make_project(srv.url, max_error_share=0.5)))
    assert rec.status == "complete" and rec.metrics["exact_match"].n_unscored == 2


# -- secrets -------------------------------------------------------------------

def test_key_is_sent_but_never_stored(make_project, tmp_path, monkeypatch):
    cache_dir = tmp_path / "cache"
    monkeypatch.setenv("LLMOPS_CACHE_DIR", str(cache_dir))
    with FakeOpenAI(reply=answer_by_question) as srv:
        cfg = load_config(make_project(srv.url))
        cache = Cache()
        rec = run_eval(cfg, cache=cache)
        run_eval(cfg, cache=cache)  # and a cached run
    cache.close()
    out = save_record(rec, tmp_path / "runs" / "run.json")
    save_record(rec.as_baseline(), cfg.baseline_path)
    # the key was used ...
    assert len(srv.headers) == len(QUESTIONS)
    assert all(h["Authorization"] == f"Bearer {PLANTED_KEY}" for h in srv.headers)
    # ... but is nowhere on disk
    assert (cache_dir / "responses.sqlite").exists() and out.exists()
    assert _files_containing(tmp_path, PLANTED_KEY) == []
    assert PLANTED_KEY not in json.dumps(load_record(out).model_dump())


def test_key_echoed_in_provider_error_is_redacted(make_project, tmp_path):
    # Providers echo (parts of) a wrong key in 401 messages.
    with FakeOpenAI(reply=lambda m, b: (401, f"Incorrect API key provided: {PLANTED_KEY}")) as srv:
        cfg = load_config(make_project(srv.url))
        with pytest.raises(RunIncomplete) as ei:
            run_eval(cfg, cache=Cache(tmp_path / "cache"))
    assert len(srv.requests) == len(QUESTIONS)  # 401 is not retried
    rec = ei.value.record
    assert all("Incorrect API key provided: ***" in c.error for c in rec.cases)
    assert PLANTED_KEY not in str(ei.value)
    save_record(rec, tmp_path / "run.json")
    assert _files_containing(tmp_path, PLANTED_KEY) == []


def test_api_key_env(make_project, monkeypatch):
    monkeypatch.setenv("MY_LLM_KEY", "sk-other-planted-key-42")
    with FakeOpenAI(reply=answer_by_question) as srv:
        cfg = load_config(make_project(srv.url, extra="api_key_env: MY_LLM_KEY\n"))
        rec = run_eval(cfg)
        assert {h["Authorization"] for h in srv.headers} == {"Bearer sk-other-planted-key-42"}
        assert rec.config["api_key_env"] == "MY_LLM_KEY"
        assert "sk-other-planted-key-42" not in rec.model_dump_json()
        monkeypatch.delenv("MY_LLM_KEY")
        with pytest.raises(ConfigError, match="MY_LLM_KEY is not set"):
            run_eval(cfg)
        assert len(srv.requests) == len(QUESTIONS)  # no call was made without the key


# -- scoring outputs made elsewhere ------------------------------------------------

def test_score_outputs(make_project):
    cfg = load_config(make_project(max_error_share=0.2))
    outputs = {q["id"]: ANSWERS[q["question"]] for q in QUESTIONS}
    rec = score_outputs(cfg, outputs, name="preds.json")
    assert rec.source == "outputs" and rec.config["model"] == "outputs:preds.json"
    assert rec.metrics["exact_match"].aggregate == pytest.approx(4 / 6)
    assert all(c.retrieval is None and c.messages is None for c in rec.cases)
    del outputs["q1"]
    rec = score_outputs(cfg, outputs, name="preds.json")
    assert rec.case_map()["q1"].error == "no output for case 'q1' in preds.json"
    assert rec.metrics["exact_match"].n_unscored == 1
    with pytest.raises(RunIncomplete, match="cases failed .* in outputs; first error: no output for case"):
        score_outputs(cfg, {"q1": "x"})


def test_undefined_template_variable_fails_before_any_call(make_project):
    with FakeOpenAI() as srv:
        path = make_project(srv.url)
        path.write_text(path.read_text().replace("Question: {{ question }}", "Question: {{ questoin }}"))
        with pytest.raises(ConfigError) as ei:
            run_eval(load_config(path))
        assert srv.requests == []
    err = ei.value
    assert err.key == "prompt.user" and "questoin" in str(err) and "available:" in str(err) and "question" in str(err)


def test_limit_overrides_dataset(make_project):
    with FakeOpenAI(reply=answer_by_question) as srv:
        rec = run_eval(load_config(make_project(srv.url)), limit=2)
    assert [c.id for c in rec.cases] == ["q1", "q2"] and len(srv.requests) == 2


def test_slow_server_times_out_and_is_retried(make_project):
    with FakeOpenAI(reply=answer_by_question, latency_s=1.0) as srv:
        cfg = load_config(make_project(srv.url, timeout=0.2, max_error_share=1.0, questions=QUESTIONS[:2]))
        rec = run_eval(cfg, retries=1)
    assert len(srv.requests) == 4  # each case: one try and one retry
    for case in rec.cases:
        assert case.output is None and "Timeout" in case.error and case.calls[0].retries == 1
    assert rec.metrics["token_f1"].aggregate is None and rec.metrics["token_f1"].n_unscored == 2


def test_cost_in_usd_from_litellm_price_map(make_project):
    """A model LiteLLM has a price for gets a cost per call (USD, from the
    offline price map); the served answer comes from the loopback server."""
    with FakeOpenAI(reply=answer_by_question) as srv:
        cfg_path = make_project(srv.url)
        cfg_path.write_text(cfg_path.read_text().replace("model: openai/fake-model", "model: openai/gpt-4o-mini-2024-07-18"))
        rec = run_eval(load_config(cfg_path))
    costs = [c.calls[0].cost_usd for c in rec.cases]
    assert all(x is not None and 0 < x < 0.01 for x in costs)
    assert rec.usage.cost_usd == pytest.approx(sum(costs), rel=1e-3)
