"""Structured output: response_format, tools and tool_choice pass through
LiteLLM to the provider (the fake OpenAI server records what it received);
the embedded model honours a JSON schema with grammar-constrained decoding;
a reply that is only a tool call is read as its arguments."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from conftest import ANSWERS, needs_local_model
from llmops_cli.config import load_config
from llmops_cli.core.fingerprint import fingerprint
from llmops_cli.run.local_model import llama_response_format
from llmops_cli.run.provider import _output_text
from llmops_cli.jobs.runner import run_eval
from llmops_cli.testing import FakeOpenAI

SCHEMA = {"type": "object", "properties": {"answer": {"type": "string", "maxLength": 40},
                                          "quote": {"type": "string", "maxLength": 40}},
          "required": ["answer", "quote"], "additionalProperties": False}


def _with_params(cfg_path, extra_params: str):
    text = cfg_path.read_text()
    cfg_path.write_text(text.replace("params: {temperature: 0, max_tokens: 32,", "params: {temperature: 0, max_tokens: 32, "
                                     + extra_params + ","))
    return cfg_path


def test_response_format_and_tools_reach_the_provider(make_project, litellm_loaded):
    rf = {"type": "json_schema", "json_schema": {"name": "qa", "schema": SCHEMA, "strict": True}}
    tools = [{"type": "function", "function": {"name": "answer", "parameters": SCHEMA}}]
    with FakeOpenAI(reply=lambda m, b: json.dumps({"answer": "x", "quote": "y"})) as srv:
        cfg_path = _with_params(make_project(srv.url), f"response_format: {json.dumps(rf)}, tools: {json.dumps(tools)}, "
                                                       'tool_choice: required')
        cfg = load_config(cfg_path)
        rec = run_eval(cfg)
        body = srv.requests[-1]
    assert body["response_format"] == rf
    assert body["tools"] == tools and body["tool_choice"] == "required"
    assert all(json.loads(c.output) == {"answer": "x", "quote": "y"} for c in rec.cases)
    # the schema is part of what is answered: another schema, another fingerprint (and other cache keys)
    other = load_config(cfg_path)
    other.params.response_format = {"type": "json_object"}
    assert fingerprint(other.snapshot(), rec.corpus_hash) != rec.fingerprint


def test_plain_params_keep_their_cache_keys(make_project, litellm_loaded):
    """Adding the structured-output params must not change the keys of configs that do not use them."""
    with FakeOpenAI(reply=lambda m, b: ANSWERS[m[-1]["content"].rsplit("Question: ", 1)[-1].strip()]) as srv:
        cfg = load_config(make_project(srv.url))
        body_params = None
        run_eval(cfg)
        body_params = {k for k in srv.requests[-1] if k in ("response_format", "tools", "tool_choice")}
    assert body_params == set()  # nothing sent that was not asked for


def test_a_tool_call_reply_is_read_as_its_arguments():
    call = SimpleNamespace(function=SimpleNamespace(name="answer", arguments='{"answer": "Paris"}'))
    assert _output_text(SimpleNamespace(content=None, tool_calls=[call])) == '{"answer": "Paris"}'
    assert _output_text(SimpleNamespace(content=" Paris ", tool_calls=[call])) == "Paris"
    assert _output_text(SimpleNamespace(content=None, tool_calls=None)) == ""


def test_openai_response_format_becomes_llama_grammar_form():
    rf = {"type": "json_schema", "json_schema": {"name": "qa", "schema": SCHEMA}}
    assert llama_response_format(rf) == {"type": "json_object", "schema": SCHEMA}
    assert llama_response_format({"type": "json_object"}) == {"type": "json_object"}
    assert llama_response_format({"type": "text"}) == {"type": "text"}


@pytest.mark.local_model
@needs_local_model
def test_embedded_model_answers_within_the_schema(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    (tmp_path / "q.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [
        {"id": "1", "question": "What is the capital of France?", "answers": ["Paris"]},
        {"id": "2", "question": "Who wrote Hamlet?", "answers": ["William Shakespeare"]},
        {"id": "3", "question": "What is the largest ocean?", "answers": ["Pacific Ocean"]}]))
    rf = {"type": "json_schema", "json_schema": {"name": "qa", "schema": SCHEMA}}
    (tmp_path / "c.yaml").write_text(f"""
model: local/smollm2-135m
params: {{temperature: 0, max_tokens: 120, seed: 0, response_format: {json.dumps(rf)}}}
prompt: {{user: "Answer as JSON with an answer and a quote. {{{{ question }}}}"}}
dataset: {{path: q.jsonl, references: answers}}
metrics: [token_f1]
checks:
  valid: {{json_schema: {json.dumps(SCHEMA)}}}
""")
    rec = run_eval(load_config(tmp_path / "c.yaml"))
    assert rec.metrics["valid"].aggregate == 1.0, [c.output for c in rec.cases]  # constrained decoding: always valid
    assert all(set(json.loads(c.output)) == {"answer", "quote"} for c in rec.cases)


def test_the_order_of_schema_properties_reaches_the_provider_and_counts(make_project, litellm_loaded):
    """The order of properties is the order the model writes the fields in
    (reasoning before the answer): it is sent as given, and it changes the
    cache key and the fingerprint."""
    quote_first = {"type": "object", "properties": {"quote": {"type": "string"}, "answer": {"type": "string"}},
                   "required": ["quote", "answer"]}
    answer_first = {**quote_first, "properties": dict(reversed(list(quote_first["properties"].items())))}

    def rf(schema):
        return json.dumps({"type": "json_schema", "json_schema": {"name": "qa", "schema": schema}})

    with FakeOpenAI(reply=lambda m, b: json.dumps({"quote": "y", "answer": "x"})) as srv:
        a = load_config(_with_params(make_project(srv.url), f"response_format: {rf(quote_first)}"))
        b = load_config(_with_params(make_project(srv.url), f"response_format: {rf(answer_first)}"))
        rec_a = run_eval(a, cache=None)
        sent = srv.requests[-1]["response_format"]["json_schema"]["schema"]["properties"]
        rec_b = run_eval(b, cache=None)
    assert list(sent) == ["quote", "answer"]
    assert list(srv.requests[-1]["response_format"]["json_schema"]["schema"]["properties"]) == ["answer", "quote"]
    from llmops_cli.plan.requests import make_plan

    assert make_plan(a).requests[0].key != make_plan(b).requests[0].key
    assert rec_a.fingerprint != rec_b.fingerprint
