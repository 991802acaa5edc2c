"""The config's JSON Schema (schema/llmops.schema.json): the committed file is
the generated one, and the schema and the loader agree on the example
configs and on configs built to be wrong (or unusual but valid)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from llmops_cli.config import ConfigError, load_config, parse_config
from llmops_cli.jobs.config_schema import SCHEMA_ID, config_schema, schema_text

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_FILE = ROOT / "schema" / "llmops.schema.json"
REGENERATE = "python -m llmops_cli.jobs.config_schema > schema/llmops.schema.json"
EXAMPLES = sorted(p for p in (ROOT / "examples").rglob("*.yaml")
                  if "ci" not in p.relative_to(ROOT / "examples").parts[:1]
                  and isinstance(d := yaml.safe_load(p.read_text(encoding="utf-8")), dict) and "model" in d)
LSP_LINE = "# yaml-language-server: $schema="


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = config_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _loader_ok(data, path: str | Path = "<config>") -> bool:
    try:
        parse_config(copy.deepcopy(data), path)
    except ConfigError:
        return False
    return True


# A config needing no file: prompt inline, dataset not read at load time.
BASE = {"model": "openai/gpt-4o-mini", "prompt": {"user": "{{ question }}"}, "dataset": {"path": "q.jsonl"}}


def _with(**changes) -> dict:
    """BASE with keys set, nested ones spelled with ``__`` (``params__stop``),
    or removed (value ``...``)."""
    data = copy.deepcopy(BASE)
    for spelled, value in changes.items():
        *parents, last = spelled.split("__")
        node = data
        for key in parents:
            node = node.setdefault(key, {})
        if value is ...:
            del node[last]
        else:
            node[last] = value
    return data


# -- the committed file ------------------------------------------------------

def test_committed_schema_is_the_generated_one():
    assert SCHEMA_FILE.is_file(), f"{SCHEMA_FILE} is missing; create it with: {REGENERATE}"
    assert SCHEMA_FILE.read_text(encoding="utf-8") == schema_text(), (
        f"{SCHEMA_FILE.relative_to(ROOT)} is stale (the config models changed); regenerate it with: {REGENERATE}")


def test_schema_text_is_stable_json_with_the_header():
    text = schema_text()
    assert text.endswith("}\n") and text == schema_text() and text.isascii()
    schema = json.loads(text)
    assert list(schema)[:4] == ["$schema", "$id", "$comment", "title"]
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == SCHEMA_ID and SCHEMA_ID.endswith("/schema/llmops.schema.json")
    assert schema["title"] and schema["description"] and schema["additionalProperties"] is False
    assert set(schema["required"]) == {"model", "prompt", "dataset"}
    # every model's docstring made it in, Sphinx roles resolved for hover text
    for name, sub in schema["$defs"].items():
        assert sub.get("description"), name
        assert ":data:" not in sub["description"] and ":func:" not in sub["description"], name
    assert "at most 3600" in schema["$defs"]["Params"]["description"]


def test_metric_names_are_suggested_not_enforced():
    from llmops_cli.measure.scorers import SCORERS

    metrics = config_schema()["properties"]["metrics"]
    assert metrics["items"]["examples"] == sorted(SCORERS) and "enum" not in metrics["items"]
    assert {"exact_match", "token_f1", "bleu", "rougeL"} <= set(metrics["items"]["examples"])


# -- the example configs -----------------------------------------------------

def test_the_examples_are_found():
    names = {p.relative_to(ROOT).as_posix() for p in EXAMPLES}
    assert {"examples/squad-rag/llmops.yaml", "examples/squad-rag/llmops-judged.yaml",
            "examples/squad-predictions/llmops.yaml"} <= names
    assert not any(n.startswith("examples/ci/") for n in names)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_example_config_passes_schema_and_loader(path, validator):
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    errors = [f"{'.'.join(map(str, e.absolute_path)) or '<top>'}: {e.message}" for e in validator.iter_errors(data)]
    assert not errors, errors
    load_config(path)  # raises ConfigError if the loader disagrees


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_example_config_points_editors_at_the_schema(path):
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith(LSP_LINE), f"{path}: first line should be {LSP_LINE}<relative path to the schema>"
    target = first.removeprefix(LSP_LINE).strip()
    assert not target.startswith(("http:", "https:", "/")), "use a relative path, so a clone works offline"
    resolved = (path.parent / target).resolve()
    assert resolved.is_file(), f"{path}: {target} does not exist"
    assert resolved == SCHEMA_FILE


# -- agreement on configs built to be wrong, or valid in an unusual form ------

def test_base_config_is_valid(validator):
    # the rejection cases below would prove nothing if BASE were already invalid
    assert validator.is_valid(BASE) and _loader_ok(BASE)


REJECTED = {
    "unknown top-level key": _with(modle="gpt-4o"),
    "unknown key in params": _with(params__temprature=0),
    "unknown key in a judge": _with(judges__j={"modle": "x"}),
    "unknown key in a gate rule": _with(gate__metrics__token_f1={"max_dorp": 0.1}),
    "wrong type: repeats three": _with(repeats="three"),
    "wrong type: prompt a string": _with(prompt="hi"),
    "missing model": _with(model=...),
    "missing dataset.path": _with(dataset={"references": "answers"}),
    "gate.mode fancy": _with(gate__mode="fancy"),
    "version 2": _with(version=2),
    "repeats above the maximum": _with(repeats=101),
    "temperature above 2": _with(params__temperature=2.5),
    "timeout 0": _with(params__timeout=0),
    "stop a number": _with(params__stop=3),
    "stop a list holding a number": _with(params__stop=["\n", 3]),
    "references empty": _with(dataset__references=[]),
    "references null": _with(dataset__references=None),
    "inputs a number": _with(dataset__inputs=3),
    "judge scale of three": _with(judges__j={"scale": [1, 3, 5]}),
    "a metric twice": _with(metrics=["bleu", "bleu"]),
    "api_base without a scheme": _with(api_base="localhost:8000"),
    "api_base ftp": _with(api_base="ftp://example.com"),
    "api_base without a host": _with(api_base="http:///v1"),
    "judge api_base without a scheme": _with(judges__j={"api_base": "127.0.0.1:8000"}),
    "api_base with user and port": _with(api_base="http://u:p@127.0.0.1:8000/v1"),
    "judge api_base with a password": _with(judges__j={"api_base": "http://:pw@127.0.0.1:8000/v1"}),
    "no user template": _with(prompt={"system": "Be brief."}),
    "an empty user template": _with(prompt={"user": ""}),
    "user and user_file": _with(prompt={"user": "{{ q }}", "user_file": "u.j2"}),
    "system and system_file": _with(prompt={"user": "{{ q }}", "system": "s", "system_file": "s.j2"}),
    "rubric without criteria": _with(judges__tone={"type": "rubric"}),
    "faithfulness without retrieval": _with(judges__grounded={"type": "faithfulness"}),
    "faithfulness with retrieval null": _with(judges__grounded={"type": "faithfulness"}, retrieval=None),
    "no metric and no judge": _with(metrics=[]),
    "no metric and empty judges": _with(metrics=[], judges={}),
}


@pytest.mark.parametrize("data", REJECTED.values(), ids=REJECTED.keys())
def test_loader_and_schema_both_reject(data, validator):
    assert not _loader_ok(data), "the loader accepts this; the case is wrong"
    assert not validator.is_valid(data), "the schema accepts a config the loader rejects"


ACCEPTED = {
    "stop a string": _with(params__stop="\n"),
    "stop a list": _with(params__stop=["\n"]),
    "stop null": _with(params__stop=None),
    "judge stop a string": _with(judges__j={"params": {"stop": "END"}}),
    "references a string": _with(dataset__references="answers"),
    "references a list": _with(dataset__references=["a", "b"]),
    "inputs a string": _with(dataset__inputs="question"),
    "inputs a list": _with(dataset__inputs=["question", "paragraph"]),
    "inputs null": _with(dataset__inputs=None),
    "retrieval null": _with(retrieval=None),
    "temperature null, an int": _with(params__temperature=None, params__max_tokens=5),
    "integral float for an int": _with(repeats=3.0),
    "api_base https in capitals": _with(api_base="HTTPS://example.com/v1"),
    "api_base with port and a plain query": _with(api_base="http://127.0.0.1:8000/v1?api-version=2024-06-01"),
    "api_base null": _with(api_base=None),
    "empty system with user_file unset": _with(prompt={"user": "{{ q }}", "system": ""}),
    "null user beside a user template file": _with(prompt={"user": None, "user_file": "u.j2"}),
    "judges only": _with(metrics=[], judges={"j": {}}),
    "rubric with criteria": _with(judges__tone={"type": "rubric", "criteria": "Polite.", "scale": [0, 10]}),
    "faithfulness with retrieval": _with(judges__g={"type": "faithfulness"}, retrieval={"corpus": "c.jsonl"}),
    "gate rules and power": _with(gate={"mode": "strict", "require_power": {"drop": 0.05},
                                        "metrics": {"token_f1": {"max_drop": 0.02, "min": 0.5}}}),
}


@pytest.mark.parametrize("data", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_loader_and_schema_both_accept(data, validator, tmp_path):
    (tmp_path / "u.j2").write_text("{{ q }}")  # for the user_file case
    assert _loader_ok(data, tmp_path / "llmops.yaml"), "the loader rejects this; the case is wrong"
    errors = [e.message for e in validator.iter_errors(data)]
    assert not errors, errors
