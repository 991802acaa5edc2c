"""Eval-set loading: formats, field mapping, references, limits, errors and
the dataset hash."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmops_cli.config import Dataset as DatasetSpec
from llmops_cli.plan.dataset import Case, dataset_hash, load_dataset
from llmops_cli.core.files import read_records
from llmops_cli.core.errors import DatasetError, InputError

from conftest import write_jsonl

ROWS = [
    {"id": "a", "question": "Who won?", "answers": ["Broncos", "Denver Broncos"], "note": "x"},
    {"id": "b", "question": "Where?", "answers": ["Santa Clara"], "note": "y"},
    {"id": "c", "question": "When?", "answers": "February 7, 2016", "note": "z"},
]


def spec(path: str = "q.jsonl", **kw) -> DatasetSpec:
    return DatasetSpec(path=path, **kw)


def _load(tmp_path: Path, **kw) -> list[Case]:
    return load_dataset(spec(**kw), tmp_path)


def test_jsonl_with_mapping_and_multiple_references(tmp_path):
    write_jsonl(tmp_path / "q.jsonl", ROWS)
    cases = _load(tmp_path, id="id", inputs=["question"], references="answers")
    assert [c.id for c in cases] == ["a", "b", "c"]
    assert cases[0] == Case("a", {"question": "Who won?"}, ["Broncos", "Denver Broncos"])
    assert cases[2].references == ["February 7, 2016"]  # a string becomes a one-item list


def test_default_inputs_are_all_other_fields(tmp_path):
    write_jsonl(tmp_path / "q.jsonl", ROWS)
    cases = _load(tmp_path, references=["answers"])
    assert cases[0].inputs == {"question": "Who won?", "note": "x"}


def test_references_from_several_fields(tmp_path):
    write_jsonl(tmp_path / "q.jsonl", [{"id": 1, "q": "?", "ans": "one", "alt": ["uno", "eins"], "extra": ""}])
    (case,) = _load(tmp_path, inputs=["q"], references=["ans", "alt", "extra"])
    assert case.id == "1"  # ids are strings
    assert case.references == ["one", "uno", "eins"]  # empty values are skipped


def test_csv(tmp_path):
    (tmp_path / "q.csv").write_text('qid,question,reference\n1,"Who, exactly?",Broncos\n2,Where?,Santa Clara\n')
    cases = load_dataset(spec("q.csv", id="qid"), tmp_path)
    assert [(c.id, c.inputs, c.references) for c in cases] == [
        ("1", {"question": "Who, exactly?"}, ["Broncos"]),
        ("2", {"question": "Where?"}, ["Santa Clara"]),
    ]


def test_json_list(tmp_path):
    (tmp_path / "q.json").write_text(json.dumps(ROWS))
    cases = load_dataset(spec("q.json", inputs=["question"], references=["answers"]), tmp_path)
    assert len(cases) == 3 and cases[1].references == ["Santa Clara"]


def test_explicit_format_overrides_suffix(tmp_path):
    write_jsonl(tmp_path / "q.txt", ROWS)
    with pytest.raises(DatasetError, match="cannot tell the format"):
        load_dataset(spec("q.txt", references=["answers"]), tmp_path)
    assert len(load_dataset(spec("q.txt", format="jsonl", references=["answers"]), tmp_path)) == 3


def test_absolute_path(tmp_path):
    p = write_jsonl(tmp_path / "q.jsonl", ROWS)
    assert len(load_dataset(spec(str(p), references=["answers"]), Path("/nonexistent"))) == 3


def test_limit(tmp_path):
    write_jsonl(tmp_path / "q.jsonl", ROWS)
    assert [c.id for c in _load(tmp_path, references=["answers"], limit=2)] == ["a", "b"]
    # the argument overrides the spec; 0 means all
    assert len(load_dataset(spec(references=["answers"], limit=2), tmp_path, limit=1)) == 1
    assert len(load_dataset(spec(references=["answers"], limit=2), tmp_path, limit=0)) == 3
    assert len(load_dataset(spec(references=["answers"]), tmp_path, limit=99)) == 3


def test_duplicate_ids(tmp_path):
    write_jsonl(tmp_path / "q.jsonl", [ROWS[0], ROWS[1], {**ROWS[2], "id": "a"}])
    with pytest.raises(DatasetError) as ei:
        _load(tmp_path, references=["answers"])
    assert "duplicate id 'a'" in str(ei.value) and ei.value.key == "row 3"
    assert str(tmp_path / "q.jsonl") in str(ei.value)


@pytest.mark.parametrize("content", ["", "\n\n", "   \n"])
def test_empty_set(tmp_path, content):
    (tmp_path / "q.jsonl").write_text(content)
    with pytest.raises(DatasetError, match="the eval set is empty"):
        _load(tmp_path, references=["answers"])


def test_empty_json_and_csv(tmp_path):
    (tmp_path / "q.json").write_text("[]")
    (tmp_path / "q.csv").write_text("id,question,reference\n")
    for name in ("q.json", "q.csv"):
        with pytest.raises(DatasetError, match="empty"):
            load_dataset(spec(name), tmp_path)


def test_malformed_jsonl_line(tmp_path):
    good = json.dumps(ROWS[0])
    (tmp_path / "q.jsonl").write_text(f"{good}\n\n{{\"id\": \"b\", \"question\": \n{good}\n")
    with pytest.raises(DatasetError) as ei:
        _load(tmp_path, references=["answers"])
    err = ei.value
    assert err.key == "line 3" and "line 3" in str(err)  # blank lines still count
    assert "invalid JSON" in str(err) and str(tmp_path / "q.jsonl") in str(err)
    assert isinstance(err, InputError) and err.exit_code == 2


def test_jsonl_line_not_an_object(tmp_path):
    (tmp_path / "q.jsonl").write_text(json.dumps(ROWS[0]) + "\n[1, 2]\n")
    with pytest.raises(DatasetError, match="line 2: expected a JSON object"):
        _load(tmp_path, references=["answers"])


def test_malformed_json(tmp_path):
    (tmp_path / "q.json").write_text('[\n{"id": "a",}\n]')
    with pytest.raises(DatasetError, match="line 2"):
        load_dataset(spec("q.json"), tmp_path)
    (tmp_path / "q.json").write_text('{"id": "a"}')
    with pytest.raises(DatasetError, match="list of objects"):
        load_dataset(spec("q.json"), tmp_path)


def test_missing_file(tmp_path):
    with pytest.raises(DatasetError, match="eval set not found"):
        _load(tmp_path)


@pytest.mark.parametrize("row, kw, needle", [
    ({"question": "?", "answers": "x"}, {}, "missing id field 'id'"),
    ({"id": "", "question": "?", "answers": "x"}, {}, "missing id field 'id'"),
    ({"id": "a", "answers": "x"}, {"inputs": ["question"]}, "missing input field 'question'"),
    ({"id": "a", "question": "?"}, {}, "missing reference field 'answers'"),
    ({"id": "a", "question": "?", "answers": [1, 2]}, {}, "a reference must be a string or a list of strings"),
])
def test_missing_or_bad_fields(tmp_path, row, kw, needle):
    write_jsonl(tmp_path / "q.jsonl", [row])
    with pytest.raises(DatasetError, match=needle):
        _load(tmp_path, references=["answers"], **kw)


def test_read_records_shared_reader(tmp_path):
    p = write_jsonl(tmp_path / "c.ndjson", [{"id": "d1", "text": "t"}])
    assert read_records(p) == [{"id": "d1", "text": "t"}]
    with pytest.raises(DatasetError, match="corpus not found"):
        read_records(tmp_path / "missing.jsonl", what="corpus")


def test_dataset_hash(tmp_path):
    write_jsonl(tmp_path / "q.jsonl", ROWS)
    cases = _load(tmp_path, references=["answers"])
    h = dataset_hash(cases)
    assert len(h) == 16
    assert dataset_hash(_load(tmp_path, references=["answers"])) == h  # stable
    changed = [dict(r) for r in ROWS]
    changed[1]["answers"] = ["Santa Clara, California"]
    write_jsonl(tmp_path / "q.jsonl", changed)
    assert dataset_hash(_load(tmp_path, references=["answers"])) != h
    # the limit and the mapping are part of what is hashed
    write_jsonl(tmp_path / "q.jsonl", ROWS)
    assert dataset_hash(_load(tmp_path, references=["answers"], limit=2)) != h
    assert dataset_hash(_load(tmp_path, references=["answers"], inputs=["question"])) != h
    # ... but not the file's formatting
    (tmp_path / "q.jsonl").write_text("".join(json.dumps(r, indent=None, separators=(",", ":")) + "\n" for r in ROWS))
    assert dataset_hash(_load(tmp_path, references=["answers"])) == h
