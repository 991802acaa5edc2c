"""Hostile inputs found by a fuzz (issue 20), each exit 2 naming the file,
case and key — never a verdict: NaN and Infinity in a baseline or in a run
record given to ``gate``, a baseline missing a case its dataset hash covers;
and validate catching, before any model call, a check regex that is invalid
once templated, a JSON schema whose $ref points nowhere and gate.slices
naming a value no case has."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from conftest import ANSWERS
from llmops_cli.cli import cli
from llmops_cli.testing import FakeOpenAI


def answer(messages, body):
    return ANSWERS[messages[-1]["content"].rsplit("Question: ", 1)[-1].strip()]


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture
def gated_project(make_project, litellm_loaded):
    """A project with a baseline and a run record of the same configuration."""
    with FakeOpenAI(reply=answer) as srv:
        cfg = make_project(srv.url)
        res = run("eval", cfg, "--update-baseline", "-o", cfg.parent / "run.json")
        assert res.exit_code == 0, res.output
        yield cfg, srv


def rewrite(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, allow_nan=True))


@pytest.mark.parametrize("value,word", [(float("nan"), "NaN"), (float("inf"), "Infinity"), (float("-inf"), "-Infinity")])
def test_a_non_finite_baseline_score_is_exit_2_before_any_call(gated_project, value, word):
    cfg, srv = gated_project
    rewrite(cfg.parent / "baseline.json", lambda d: d["cases"][2]["scores"].__setitem__("exact_match", value))
    calls = srv.request_count
    res = run("eval", cfg, "--no-cache")
    assert res.exit_code == 2, res.output
    line = " ".join(res.output.split())
    assert "baseline.json" in line and "cases[2] (id 'q3').scores.exact_match" in line and f"is {word}" in line
    assert "Traceback" not in res.output
    assert srv.request_count == calls  # refused before any model call


def test_a_non_finite_score_in_a_gated_run_record_is_exit_2(gated_project):
    cfg, _ = gated_project
    rewrite(cfg.parent / "run.json", lambda d: d["cases"][0]["scores"].__setitem__("token_f1", float("nan")))
    res = run("gate", cfg.parent / "run.json", cfg)
    assert res.exit_code == 2, res.output
    line = " ".join(res.output.split())
    assert "run.json" in line and "cases[0] (id 'q1').scores.token_f1: is NaN" in line


def test_a_non_finite_bleu_statistic_is_exit_2(gated_project):
    cfg, _ = gated_project
    rewrite(cfg.parent / "baseline.json", lambda d: d["cases"][1]["stats"]["bleu"].__setitem__(0, float("inf")))
    res = run("gate", cfg.parent / "run.json", cfg)
    assert res.exit_code == 2, res.output
    assert "cases[1] (id 'q2').stats.bleu" in " ".join(res.output.split())


def test_a_baseline_missing_a_case_its_dataset_hash_covers_is_exit_2(gated_project):
    cfg, _ = gated_project
    rewrite(cfg.parent / "baseline.json", lambda d: d["cases"].pop(3))
    res = run("gate", cfg.parent / "run.json", cfg)
    assert res.exit_code == 2, res.output
    line = " ".join(res.output.split())
    assert "baseline.json" in line and "lacks case 'q4'" in line and "dataset hash" in line


@pytest.mark.parametrize("check,key,says", [
    ('{regex: "^{{ references[0] }}("}', "checks.bad.regex", "invalid regular expression once rendered for case 'q1'"),
    ('{json_schema: {"$ref": "#/$defs/answer"}}', "checks.bad.json_schema", "the $ref '#/$defs/answer' at # resolves to nothing"),
    ('{json_schema: {properties: {a: {items: {"$ref": "#/nowhere"}}}}}', "checks.bad.json_schema",
     "'#/nowhere' at #/properties/a/items"),
])
def test_validate_catches_what_failed_only_after_paid_calls(make_project, check, key, says):
    with FakeOpenAI(reply=answer) as srv:
        cfg = make_project(srv.url, extra=f"checks:\n  bad: {check}\n")
        for args in (("validate", cfg, "--update-baseline"), ("eval", cfg, "--update-baseline", "--no-cache")):
            res = run(*args)
            line = " ".join(res.output.split())
            assert res.exit_code == 2, res.output
            assert "llmops.yaml" in line and key in line and says in line and "Traceback" not in res.output
        assert srv.request_count == 0


def test_a_sigterm_swallowed_mid_call_still_stops_the_run(make_project, litellm_loaded, monkeypatch):
    """Where the KeyboardInterrupt of a SIGTERM was swallowed (inside aiohttp,
    4 of 96 times), the run finished: exit 0, baseline written. The recorded
    signal now stops it at the next checkpoint: interrupted, no baseline.
    (Through a real process and a real signal: benchmarks/sigterm_stress.py.)"""
    import signal

    from llmops_cli.core import stop

    monkeypatch.setattr(stop, "received", [])

    def reply(messages, body):
        stop.request(signal.SIGTERM)  # the handler ran; its KeyboardInterrupt never reached llmops
        return answer(messages, body)

    with FakeOpenAI(reply=reply) as srv:
        cfg = make_project(srv.url)
        res = run("eval", cfg, "--update-baseline", "-o", cfg.parent / "run.json")
    assert res.exit_code == 130, res.output  # the CLI's main() maps it to 143 after SIGTERM
    assert stop.terminated()
    assert not (cfg.parent / "baseline.json").exists()
    assert json.loads((cfg.parent / "run.json").read_text())["status"] == "interrupted"


# -- nesting deeper than Python's parsers recurse (JSON's C scanner stops at 1,000 levels) ----

DEEP = 3000


def _deep_list(n: int = DEEP) -> str:
    return "[" * n + "]" * n


@pytest.mark.parametrize("edit, key, says", [
    (lambda t: t + f"params2: {_deep_list()}\n", None, "nested too deeply to read"),
    (lambda t: t.replace('user: "Context', 'user: "{{ ' + "(" * DEEP + "question" + ")" * DEEP + ' }}Context', 1),
     "prompt.user", "template nested too deeply to parse"),
    (lambda t: t + 'checks:\n  r: {regex: "' + "(" * DEEP + "a" + ")" * DEEP + '"}\n', "checks.r.regex",
     "invalid regular expression"),
    (lambda t: t + "checks:\n  s: {json_schema: deep.schema.json}\n", "checks.s.json_schema", "nested too deeply"),
])
def test_a_config_nested_too_deeply_is_exit_2_naming_the_file_and_key(make_project, edit, key, says):
    """A config, template, regex or schema file nested past what the YAML,
    Jinja2, sre or JSON parser recurses through was an internal error (exit
    3, "RecursionError"); it is bad input: exit 2, one line, before any call."""
    with FakeOpenAI(reply=answer) as srv:
        cfg = make_project(srv.url)
        (cfg.parent / "deep.schema.json").write_text('{"items": ' * DEEP + "{}" + "}" * DEEP)
        cfg.write_text(edit(cfg.read_text()))
        for args in (("validate", cfg), ("eval", cfg, "--update-baseline", "--no-cache")):
            res = run(*args)
            line = " ".join(res.output.split())
            assert res.exit_code == 2, res.output
            assert "llmops.yaml" in line and says in line and "Traceback" not in res.output and "internal" not in line
            assert key is None or key in line
        assert srv.request_count == 0


def test_an_outputs_file_or_baseline_nested_too_deeply_is_exit_2(gated_project):
    cfg, srv = gated_project
    outputs = cfg.parent / "outputs.json"
    outputs.write_text('{"q1": ' + _deep_list() + "}")
    res = run("eval", cfg, "--outputs", outputs, "--no-cache")
    assert res.exit_code == 2 and "outputs.json" in res.output and "nested too deeply" in " ".join(res.output.split())
    rewrite(cfg.parent / "baseline.json", lambda d: d.__setitem__("environment", {"x": []}))
    text = (cfg.parent / "baseline.json").read_text().replace('"x": []', '"x": ' + _deep_list(), 1)
    (cfg.parent / "baseline.json").write_text(text)
    calls = srv.request_count
    res = run("eval", cfg, "--no-cache")
    line = " ".join(res.output.split())
    assert res.exit_code == 2, res.output
    assert "baseline.json" in line and "nested too deeply" in line and "Traceback" not in res.output
    assert srv.request_count == calls


def test_an_answer_nested_too_deeply_fails_its_json_checks_and_the_run_completes(make_project, litellm_loaded):
    """A model (or an outputs file) answering 3,000 nested brackets stopped
    scoring with an internal error; the answer is now not readable as JSON:
    each JSON check fails with the reason and a field metric scores it empty."""
    deep = _deep_list()
    with FakeOpenAI(reply=lambda m, b: deep) as srv:
        cfg = make_project(srv.url, extra="""\
            checks:
              j: {is_json: true}
              s: {json_schema: {type: array}}
            """)
        res = run("eval", cfg, "--update-baseline", "--no-cache", "-o", cfg.parent / "run.json")
        assert res.exit_code == 0, res.output
    case = json.loads((cfg.parent / "run.json").read_text())["cases"][0]
    assert case["scores"]["j"] == 0.0 and case["reasons"]["j"] == "not JSON: nested too deeply to read"
    assert case["scores"]["s"] == 0.0 and "nested too deeply" in case["reasons"]["s"]
    from llmops_cli.measure.scorers import answer_field

    assert answer_field(deep, "answer") == ("", "not JSON (nested too deeply to read), so no field 'answer'")


def test_a_regex_check_that_backtracks_catastrophically_fails_in_its_time_limit(make_project, litellm_loaded):
    """``(a|aa)+$`` against 40 a's and a b: ``re`` had not finished after a
    minute; the search now stops at the check's ``timeout`` and the check
    fails for that case, with the reason; the run completes, and a regex
    that matches still passes."""
    with FakeOpenAI(reply=lambda m, b: "a" * 40 + "b") as srv:
        cfg = make_project(srv.url, extra="""\
            checks:
              slow: {regex: "(a|aa)+$", timeout: 0.2}
              fine: {regex: "a+b$"}
            """)
        res = run("eval", cfg, "--update-baseline", "--no-cache", "-o", cfg.parent / "run.json")
    assert res.exit_code == 0, res.output
    cases = json.loads((cfg.parent / "run.json").read_text())["cases"]
    assert all(c["scores"]["slow"] == 0.0 and c["scores"]["fine"] == 1.0 for c in cases)
    assert cases[0]["reasons"]["slow"] == "the search for /(a|aa)+$/ took longer than 0.2 s (checks.slow.timeout)"


def test_answers_ids_and_names_holding_rich_markup_are_printed_as_text(make_project, litellm_loaded):
    """A model answer with "[/]" in it (code, a regex) crashed the terminal
    report with rich's MarkupError after the run; so would a case id, a
    served-model name or a baseline's version string. Every such text is
    printed as it is, and the verdict stands (exit 1, not an internal error)."""
    questions = [{"id": f"[/]q{i}", "question": f"Question {i}?", "answers": ["[bold]x[/bold]"]} for i in range(12)]
    state = {"answer": "[bold]x[/bold]"}
    with FakeOpenAI(reply=lambda m, b: state["answer"], served_model="[/]served") as srv:
        cfg = make_project(srv.url, questions=questions)
        res = run("eval", cfg, "--update-baseline", "--no-cache")
        assert res.exit_code == 0, res.output
        rewrite(cfg.parent / "baseline.json", lambda d: d["environment"].__setitem__("litellm", "[/]0.0"))
        state["answer"] = "[/] no [link=http://example.invalid]idea[/link]"
        res = run("eval", cfg, "--no-cache")
    assert res.exit_code == 1, res.output
    assert "MarkupError" not in res.output and "internal error" not in res.output
    flat = " ".join(res.output.split())
    assert "[/]q0" in flat and "[/] no [link=http://example.invalid]ide" in flat and "[bold]x[/bold]" in flat
    assert "environment changes: litellm: [/]0.0" in flat


# -- lone UTF-16 surrogates: valid JSON and YAML escapes, not Unicode text -------------------

def test_an_answer_holding_a_lone_surrogate_is_recorded_with_a_replacement_character(make_project, litellm_loaded):
    """A server answering "\\ud800" (a JSON escape json.loads keeps) ended the
    run in an internal error: the answer could not be cached or written as
    UTF-8. It is recorded with U+FFFD in its place, and scored."""
    with FakeOpenAI(reply=lambda m, b: "Denver \ud800 Broncos") as srv:
        cfg = make_project(srv.url)
        res = run("eval", cfg, "--update-baseline", "-o", cfg.parent / "run.json")
        assert res.exit_code == 0, res.output
        res = run("eval", cfg, "-o", cfg.parent / "again.json")  # from the cache
        assert res.exit_code == 0, res.output
    for name in ("run.json", "again.json"):
        case = json.loads((cfg.parent / name).read_text(encoding="utf-8"))["cases"][0]
        assert case["output"] == "Denver \ufffd Broncos" and case["scores"]["token_f1"] > 0


@pytest.mark.parametrize("where", ["dataset", "config", "outputs"])
def test_a_lone_surrogate_in_an_input_file_is_exit_2_naming_where(make_project, where):
    with FakeOpenAI(reply=answer) as srv:
        cfg = make_project(srv.url)
        args = ["validate", cfg, "--update-baseline"]
        if where == "dataset":
            path = cfg.parent / "questions.jsonl"
            lines = path.read_text().splitlines()
            lines[1] = lines[1].replace('"question": "', '"question": "\\ud800 ', 1)
            path.write_text("\n".join(lines) + "\n")
            expect = ["questions.jsonl", "line 2"]
        elif where == "config":
            cfg.write_text(cfg.read_text().replace('system: "Answer briefly."', 'system: "Answer \\ud800 briefly."'))
            expect = ["llmops.yaml", "prompt.system"]
        else:
            (cfg.parent / "out.json").write_text(json.dumps({"q1": "x \ud800"}))
            args = ["eval", cfg, "--outputs", cfg.parent / "out.json", "--update-baseline"]
            expect = ["out.json", "'q1'"]
        res = run(*args)
        line = " ".join(res.output.split())
        assert res.exit_code == 2, res.output
        assert all(e in line for e in expect) and "lone UTF-16 surrogate" in line and "internal" not in line
        assert srv.request_count == 0


def test_control_characters_in_answers_and_ids_reach_the_terminal_as_text(make_project, litellm_loaded):
    """An answer (or case id) holding ESC sequences — clear the screen, write
    the clipboard (OSC 52) — went to the terminal as they were; they are
    shown as \\x1b, never executed, and the verdict stands."""
    questions = [{"id": f"q{i}\x1b]52;c;ZXZpbA==\x07", "question": f"Question {i}?", "answers": ["Broncos"]} for i in range(12)]
    state = {"answer": "Broncos"}
    with FakeOpenAI(reply=lambda m, b: state["answer"]) as srv:
        cfg = make_project(srv.url, questions=questions)
        assert run("eval", cfg, "--update-baseline", "--no-cache").exit_code == 0
        state["answer"] = "\x1b[2J\x1b[Hgate passed\x9b"
        res = run("eval", cfg, "--no-cache")
    assert res.exit_code == 1, res.output
    assert "\x1b" not in res.output and "\x9b" not in res.output and "\x07" not in res.output
    flat = " ".join(res.output.split())
    assert "\\x1b[2J\\x1b[Hgate" in flat and "\\x1b]52;c;ZXZp" in flat


@pytest.mark.parametrize("rule, key", [("{min: .nan}", "token_f1.min"), ("{max_drop: .inf}", "token_f1.max_drop"),
                                       ("{max: -.inf}", "token_f1.max")])
def test_nan_or_infinity_in_a_config_number_is_exit_2(make_project, rule, key):
    """`min: .nan` made a floor that never fires (every comparison with NaN
    is false) and `max_drop: .inf` a rule that cannot fail: both passed
    validation silently. Every config number must be finite."""
    with FakeOpenAI(reply=answer) as srv:
        cfg = make_project(srv.url)
        cfg.write_text(cfg.read_text().replace("token_f1: {max_drop: 0.05}", f"token_f1: {rule}"))
        res = run("validate", cfg)
        line = " ".join(res.output.split())
        assert res.exit_code == 2, res.output
        assert "llmops.yaml" in line and f"gate.metrics.{key}" in line and "finite number" in line
        assert srv.request_count == 0


CHECKS_PY = '''
class Unprintable:
    def __str__(self):
        raise RuntimeError("no str")

def surrogate(output):
    return (False, "bad \\ud800 reason")

def huge(output):
    return (False, "x" * 1_000_000)

def unprintable(output):
    return (False, Unprintable())

def raises_unprintable(output):
    class Boom(Exception):
        def __str__(self):
            raise RuntimeError("no str either")
    raise Boom()
'''


def test_a_python_checks_reason_is_recorded_safely_whatever_it_returns(make_project, litellm_loaded):
    """A python check (from a pull request) returning a reason with a lone
    surrogate, a reason whose str() raises, or one exception whose str()
    raises ended the run in an internal error (exit 3, no record); a
    1,000,000-character reason went into the record and the baseline whole.
    Each is now the failed check's recorded reason: replaced, named, or cut
    to MAX_REASON_CHARS."""
    from llmops_cli.measure.checks import MAX_REASON_CHARS

    with FakeOpenAI(reply=answer) as srv:
        cfg = make_project(srv.url, extra="""\
            checks:
              sur: {python: "hostile_checks.py:surrogate"}
              big: {python: "hostile_checks.py:huge"}
              obj: {python: "hostile_checks.py:unprintable"}
              exc: {python: "hostile_checks.py:raises_unprintable"}
            """)
        (cfg.parent / "hostile_checks.py").write_text(CHECKS_PY)
        res = run("eval", cfg, "--update-baseline", "--no-cache", "-o", cfg.parent / "run.json")
        assert res.exit_code == 0, res.output
    reasons = json.loads((cfg.parent / "run.json").read_text(encoding="utf-8"))["cases"][0]["reasons"]
    assert reasons["sur"] == "bad \ufffd reason"
    assert len(reasons["big"]) == MAX_REASON_CHARS and reasons["big"].endswith("…")
    assert reasons["obj"] == "<a Unprintable whose str() raised RuntimeError>"
    assert reasons["exc"] == "hostile_checks.py:raises_unprintable raised Boom: <a Boom whose str() raised RuntimeError>"
    assert (cfg.parent / "baseline.json").stat().st_size < 200_000
