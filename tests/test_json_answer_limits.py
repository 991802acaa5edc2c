"""An answer Python's json module refuses with a plain ValueError (an integer
literal longer than ``sys.get_int_max_str_digits()``, 4,300 digits by
default) is "not JSON" for the checks and for ``output_field`` — scored as a
failure with a reason, never a crash of the run."""

from __future__ import annotations

from llmops_cli.config import Check
from llmops_cli.measure.checks import Prepared, prepare_checks, run_check
from llmops_cli.measure.scorers import answer_field

HUGE_INT = "1" * 5000  # valid JSON, but over CPython's int conversion limit


def test_answer_field_of_an_unconvertible_integer_is_not_json():
    text, why = answer_field(HUGE_INT, "answer")
    assert text == ""
    assert why is not None and why.startswith("not JSON (") and "no field 'answer'" in why


def test_is_json_check_fails_an_unconvertible_integer_with_a_reason():
    score, why = run_check(Prepared("c", Check(is_json=True)), HUGE_INT, None, {}, [], [])
    assert score == 0.0
    assert why is not None and why.startswith("not JSON: ")


def test_json_schema_check_fails_an_unconvertible_integer_with_a_reason(tmp_path):
    from llmops_cli.config import load_config

    (tmp_path / "c.yaml").write_text("""
model: openai/x
prompt: {user: "{{ question }}"}
dataset: {path: q.jsonl, references: answers}
checks:
  shaped: {json_schema: {type: object}}
""")
    p = prepare_checks(load_config(tmp_path / "c.yaml"))
    score, why = run_check(p["shaped"], HUGE_INT, None, {}, [], [])
    assert score == 0.0
    assert why is not None and why.startswith("not JSON: ")


def test_a_json_syntax_error_still_names_its_position():
    assert run_check(Prepared("c", Check(is_json=True)), "{'a': 1}", None, {}, [], []) == (
        0.0, "not JSON: Expecting property name enclosed in double quotes (char 1)")
