"""Checks: per-case assertions scored 0/1 with reasons, through the real
HTTP path (LiteLLM → the fake OpenAI server on 127.0.0.1), gated like every
metric; bad check configs are exit 2 before any model call."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from conftest import ANSWERS, QUESTIONS
from llmops_cli.cli import cli
from llmops_cli import prepare
from llmops_cli.config import Check
from llmops_cli.config import load_config as _load_config
from llmops_cli.measure.checks import Prepared, run_check
from llmops_cli.core.errors import ConfigError
from llmops_cli.jobs.runner import run_eval
from llmops_cli.testing import FakeOpenAI


def load_config(path):
    """The config as a run uses it: parsed, then prepared (templates, metric
    names, judge templates, checks; :func:`llmops_cli.prepare`)."""
    return prepare(_load_config(path))


def question_of(messages) -> str:
    return messages[-1]["content"].rsplit("Question: ", 1)[-1].strip()


def plain(messages, body) -> str:
    return ANSWERS[question_of(messages)]


def as_json(messages, body) -> str:
    q = question_of(messages)
    return json.dumps({"answer": ANSWERS[q], "quote": "Super Bowl 50"})


CHECKS = """
checks:
  names_it: {icontains: "{{ references[0] }}"}
  no_beyonce: {not_contains: [Beyonce, Rihanna]}
  short: {length: {max: 4, unit: words}}
  capitalised: {regex: "^[A-Z]"}
  starts_the: {starts_with: "The"}
  exact: {equals: "Von Miller"}
  any_of: {contains: [Broncos, Panthers], match: any}
  both: {contains: [Denver, Broncos], match: all}
"""


def check(**spec) -> Prepared:
    return Prepared("c", Check(**spec))


# -- one check on one output ---------------------------------------------------------------

@pytest.mark.parametrize("spec, value, output, score, why", [
    ({"equals": "Paris"}, "Paris", " Paris ", 1.0, None),
    ({"equals": "Paris"}, "Paris", "paris", 0.0, "is not"),
    ({"contains": ["a", "b"], "match": "all"}, ["a", "b"], "a only", 0.0, "does not contain 'b'"),
    ({"contains": ["x", "b"]}, ["x", "b"], "b only", 1.0, None),
    ({"icontains": "PARIS"}, "PARIS", "in paris", 1.0, None),
    ({"not_contains": ["Acme", "Globex"]}, ["Acme", "Globex"], "try Globex", 0.0, "contains 'Globex'"),
    ({"starts_with": "Answer:"}, "Answer:", "  Answer: 4", 1.0, None),
    ({"regex": r"^\d{4}$"}, r"^\d{4}$", "2016", 1.0, None),
    ({"regex": r"^\d{4}$"}, r"^\d{4}$", "in 2016", 0.0, "no match"),
    ({"is_json": True}, None, '{"a": 1}', 1.0, None),
    ({"is_json": True}, None, "{'a': 1}", 0.0, "not JSON"),
    ({"length": {"max": 3, "unit": "words"}}, None, "one two three four", 0.0, "4 words, allowed 0–3"),
    ({"length": {"min": 2, "max": 5}}, None, "abc", 1.0, None),
    ({"contains": "Paris", "field": "answer"}, "Paris", '{"answer": "Paris, France"}', 1.0, None),
    ({"contains": "Paris", "field": "answer"}, "Paris", "Paris", 0.0, "not JSON"),
    ({"contains": "Paris", "field": "answer"}, "Paris", '{"city": "Paris"}', 0.0, "no field 'answer'"),
])
def test_each_check_type(spec, value, output, score, why):
    got, reason = run_check(check(**spec), output, value, {}, [], [])
    assert got == score
    assert (reason is None) if why is None else (why in reason)


def test_json_schema_and_python_checks(tmp_path):
    (tmp_path / "q.jsonl").write_text('{"id": "1", "question": "q", "answers": ["a"]}\n')
    (tmp_path / "my_checks.py").write_text(
        "def quoted(output, chunks):\n"
        "    return (output in ' '.join(c['text'] for c in chunks), 'quote not in the passage')\n"
        "def half(output):\n    return 0.5\n"
        "def broken(output):\n    raise ValueError('boom')\n"
        "def weird(output):\n    return 'yes'\n")
    (tmp_path / "answer.schema.json").write_text(json.dumps(
        {"type": "object", "required": ["answer"], "properties": {"answer": {"type": "string"}}}))
    (tmp_path / "c.yaml").write_text("""
model: openai/x
prompt: {user: "{{ question }}"}
dataset: {path: q.jsonl, references: answers}
checks:
  shaped: {json_schema: answer.schema.json}
  quoted: {python: "my_checks.py:quoted"}
  half: {python: "my_checks:half"}
  broken: {python: "my_checks.py:broken"}
  weird: {python: "my_checks.py:weird"}
""")
    cfg = load_config(tmp_path / "c.yaml")
    from llmops_cli.measure.checks import prepare_checks

    p = prepare_checks(cfg)
    assert run_check(p["shaped"], '{"answer": "x"}', None, {}, [], []) == (1.0, None)
    score, why = run_check(p["shaped"], '{"answer": 3}', None, {}, [], [])
    assert score == 0.0 and why.startswith("schema: answer:") and "not of type 'string'" in why
    chunks = [{"text": "The Denver Broncos won."}]
    assert run_check(p["quoted"], "Denver Broncos", None, {}, [], chunks) == (1.0, None)
    assert run_check(p["quoted"], "Panthers", None, {}, [], chunks) == (0.0, "quote not in the passage")
    assert run_check(p["half"], "x", None, {}, [], []) == (0.5, "failed")
    score, why = run_check(p["broken"], "x", None, {}, [], [])
    assert score == 0.0 and "raised ValueError: boom" in why  # a failed check with the reason, never left out
    score, why = run_check(p["weird"], "x", None, {}, [], [])
    assert score == 0.0 and "not a bool or a 0–1 score" in why


def test_a_module_check_is_the_one_next_to_its_config(tmp_path):
    """Two projects in one process (a watch loop, --baseline-ref, a test suite) whose checks are both
    ``samename:verdict``: each config gets the module next to it, not the one imported first."""
    from llmops_cli.measure.checks import prepare_checks

    verdicts = {}
    for name, value in (("a", 1.0), ("b", 0.0)):
        d = tmp_path / name
        d.mkdir()
        (d / "samename_checks_mod.py").write_text(f"def verdict(output):\n    return {value}\n")
        (d / "samename_checks_pkg").mkdir()  # a package too: its submodule must not come from the first project
        (d / "samename_checks_pkg" / "__init__.py").write_text("")
        (d / "samename_checks_pkg" / "sub.py").write_text(f"def verdict(output):\n    return {value}\n")
        (d / "q.jsonl").write_text('{"id": "1", "question": "q", "answers": ["a"]}\n')
        (d / "c.yaml").write_text('model: openai/x\nprompt: {user: "{{ question }}"}\ndataset: {path: q.jsonl, references: answers}\n'
                                  "checks:\n  v: {python: \"samename_checks_mod:verdict\"}\n"
                                  "  w: {python: \"samename_checks_pkg.sub:verdict\"}\n")
        p = prepare_checks(load_config(d / "c.yaml"))
        verdicts[name] = (run_check(p["v"], "x", None, {}, [], [])[0], run_check(p["w"], "x", None, {}, [], [])[0])
    assert verdicts == {"a": (1.0, 1.0), "b": (0.0, 0.0)}


# -- through a run, gated ------------------------------------------------------------------

def test_checks_are_scored_through_the_http_path(make_project, litellm_loaded):
    with FakeOpenAI(reply=plain) as srv:
        cfg = load_config(make_project(srv.url, extra=CHECKS))
        rec = run_eval(cfg)
    by_id = rec.case_map()
    assert by_id["q5"].scores["no_beyonce"] == 0.0 and "contains 'Beyonce'" in by_id["q5"].reasons["no_beyonce"]
    assert by_id["q1"].scores["names_it"] == 1.0  # "{{ references[0] }}" rendered per case: "Denver Broncos"
    assert by_id["q5"].scores["names_it"] == 0.0 and "Lady Gaga" in by_id["q5"].reasons["names_it"]
    assert by_id["q3"].scores["exact"] == 1.0 and by_id["q1"].scores["exact"] == 0.0
    assert by_id["q1"].scores["both"] == 1.0 and by_id["q6"].scores["any_of"] == 1.0
    assert by_id["q2"].scores["short"] == 0.0 and "5 words" in by_id["q2"].reasons["short"]
    m = rec.metrics["no_beyonce"]
    assert m.aggregate == pytest.approx(5 / 6) and m.info["check"] and m.info["failed"] == 1
    assert "q1" not in {k for k, r in by_id.items() if "no_beyonce" in r.reasons}


def _gated(cfg_path, rule: str):
    text = cfg_path.read_text()
    cfg_path.write_text(text.replace("    token_f1: {max_drop: 0.05}\n", "    token_f1: {max_drop: 0.05}\n" + rule))
    return cfg_path


def test_a_check_that_starts_failing_regresses_and_the_diff_says_why(make_project, litellm_loaded):
    mode = {"json": True}

    def reply(messages, body):
        return as_json(messages, body) if mode["json"] else plain(messages, body)

    with FakeOpenAI(reply=reply) as srv:
        cfg = _gated(make_project(srv.url, extra="""
checks:
  valid_json: {is_json: true}
  names_it: {icontains: "{{ references[0] }}", field: answer}
"""), "    valid_json: {max_drop: 0.1, min: 0.5}\n")
        run = lambda *a: CliRunner().invoke(cli, [str(x) for x in a])  # noqa: E731
        res = run("eval", cfg, "--update-baseline")
        assert res.exit_code == 0, res.output
        mode["json"] = False  # the model stops answering in JSON
        res = run("eval", cfg, "--no-cache", "--top", "6", "--markdown", cfg.parent / "summary.md")
    assert res.exit_code == 1, res.output
    out = " ".join(res.output.split())
    # 6 of 6 cases fell: McNemar's exact p (1/64, Holm ×2) cannot decide on 6 cases; the floor does
    assert "valid_json" in out and "below min" in out
    assert "not JSON" in out  # the per-case diff gives the failing reason
    md = (cfg.parent / "summary.md").read_text()
    assert "valid_json: not JSON" in md


def test_failed_cases_count_as_failing_checks(make_project, litellm_loaded):
    """A case the model failed on is never left out of a check's comparison."""
    broken = {"on": False}

    def reply(messages, body):
        if broken["on"] and question_of(messages) in (QUESTIONS[0]["question"], QUESTIONS[1]["question"]):
            return 400, "bad request"
        return plain(messages, body)

    with FakeOpenAI(reply=reply) as srv:
        cfg = _gated(make_project(srv.url, max_error_share=0.5, extra="""
checks:
  capitalised: {regex: "^[A-Z]"}
"""), "    capitalised: {max_drop: 0.2}\n")
        run = lambda *a: CliRunner().invoke(cli, [str(x) for x in a])  # noqa: E731
        assert run("eval", cfg, "--update-baseline").exit_code == 0
        broken["on"] = True
        res = run("eval", cfg, "--no-cache", "--plain")  # 6 cases: point estimates, the CI would be too wide
    out = " ".join(res.output.split())
    assert res.exit_code == 1 and "capitalised" in out and "2 candidate failures counted as 0" in out, out


# -- bad check configs: exit 2 before any call ---------------------------------------------

@pytest.mark.parametrize("extra, key", [
    ("checks:\n  bad: {regex: '('}\n", "checks.bad.regex"),
    ("checks:\n  bad: {contains: a, regex: b}\n", "checks.bad"),
    ("checks:\n  bad: {}\n", "checks.bad"),
    ("checks:\n  bad: {python: nosuchmodule_xyz:f}\n", "checks.bad.python"),
    ("checks:\n  bad: {python: no_colon}\n", "checks.bad"),
    ("checks:\n  bad: {json_schema: missing.json}\n", "checks.bad.json_schema"),
    ("checks:\n  bad: {json_schema: {type: 12}}\n", "checks.bad.json_schema"),
    ("checks:\n  bad: {contains: '{{ nosuchfield }}'}\n", "checks.bad.contains"),
    ("checks:\n  token_f1: {is_json: true}\n", "checks.token_f1"),
    ("checks:\n  bad: {length: {min: 5, max: 2}}\n", "checks.bad.length"),
])
def test_bad_check_is_exit_2_before_any_call(make_project, extra, key):
    with FakeOpenAI() as srv:
        cfg = make_project(srv.url, extra=extra)
        res = CliRunner().invoke(cli, ["eval", str(cfg), "--update-baseline"])
        assert res.exit_code == 2, res.output
        assert key in res.stderr and res.stderr.count("\n") == 1
        assert srv.request_count == 0


def test_load_config_names_the_check(make_project):
    with pytest.raises(ConfigError, match="checks.bad.regex"):
        load_config(make_project(extra="checks:\n  bad: {regex: '[a-'}\n"))


# -- output_field: the metrics score one field of a JSON answer ------------------------------

def test_metrics_score_a_field_and_a_broken_answer_counts_as_worst(make_project, litellm_loaded):
    def reply(messages, body):
        q = question_of(messages)
        if q == QUESTIONS[4]["question"]:
            return "Lady Gaga"  # not JSON: scored as an empty answer (0), with the reason; never left out
        return json.dumps({"answer": ANSWERS[q], "quote": "x"})

    with FakeOpenAI(reply=reply) as srv:
        cfg = load_config(make_project(srv.url, extra="output_field: answer\n"))
        rec = run_eval(cfg)
    by_id = rec.case_map()
    assert by_id["q3"].scores["exact_match"] == 1.0  # {"answer": "Von Miller", ...}
    assert by_id["q5"].scores["exact_match"] == 0.0 and by_id["q5"].scores["token_f1"] == 0.0
    assert "not JSON" in by_id["q5"].reasons["output_field"]
    assert rec.metrics["exact_match"].n_scored == 6
