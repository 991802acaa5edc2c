"""Config loading and validation, fingerprints and diffs."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmops_cli import prepare
from llmops_cli.config import Config, parse_config
from llmops_cli.config import load_config as _load_config
from llmops_cli.core.fingerprint import config_diff, fingerprint
from llmops_cli.core.errors import ConfigError, InputError


def load_config(path):
    """The config as a run uses it: parsed, then prepared (templates, metric
    names, judge templates, checks; :func:`llmops_cli.prepare`)."""
    return prepare(_load_config(path))

URL = "http://127.0.0.1:9/v1"


def _edit(path: Path, old: str, new: str) -> Path:
    text = path.read_text()
    assert old in text, f"{old!r} not in the config"
    path.write_text(text.replace(old, new, 1))
    return path


def _error(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as ei:
        load_config(path)
    err = ei.value
    assert isinstance(err, InputError) and err.exit_code == 2
    assert "\n" not in str(err)
    return err


def test_valid_config_loads(make_project):
    path = make_project(URL)
    cfg = load_config(path)
    assert isinstance(cfg, Config)
    assert cfg.model == "openai/fake-model" and cfg.api_base == URL
    assert cfg.params.temperature == 0.0 and cfg.params.max_tokens == 32 and cfg.params.timeout == 10
    assert cfg.retrieval.top_k == 2 and cfg.retrieval.retriever == "bm25" and cfg.retrieval.chunking.mode == "document"
    assert cfg.dataset.inputs == ["question"] and cfg.dataset.references == ["answers"]
    assert cfg.metrics == ["exact_match", "token_f1", "bleu", "rougeL"]
    assert cfg.gate.metrics["token_f1"].max_drop == 0.05 and cfg.gate.mode == "paired"
    assert cfg.path == path.resolve() and cfg.base_dir == path.parent.resolve()
    assert cfg.baseline_path == path.parent.resolve() / "baseline.json"
    assert cfg.system_template == "Answer briefly."
    assert cfg.user_template == "Context:\n{{ context }}\n\nQuestion: {{ question }}"
    snap = cfg.snapshot()
    assert snap["prompt"] == {"system": "Answer briefly.", "user": cfg.user_template}


def test_unknown_key_names_file_and_key(make_project):
    path = _edit(make_project(URL), "temperature: 0", "temprature: 0")
    err = _error(path)
    assert str(path) in str(err)
    assert "params.temprature" in str(err)
    assert err.key == "params.temprature" and "unknown key" in err.message


def test_unknown_top_level_key(make_project):
    path = make_project(URL, extra="modle: gpt-4o\n")
    err = _error(path)
    assert err.key == "modle" and "unknown key" in str(err)


def test_missing_required_key(make_project):
    path = _edit(make_project(URL), "model: openai/fake-model\n", "")
    err = _error(path)
    assert err.key == "model" and "required key is missing" in str(err)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    err = _error(path)
    assert str(path) in str(err) and "not found" in str(err)


def test_directory_instead_of_file(tmp_path):
    assert "directory" in str(_error(tmp_path))


def test_invalid_yaml(tmp_path):
    path = tmp_path / "llmops.yaml"
    path.write_text("model: openai/x\nparams: {temperature: 0\nprompt:\n  user: hi\n")
    err = _error(path)
    assert str(path) in str(err) and "invalid YAML" in str(err)
    assert err.key and err.key.startswith("line ")


@pytest.mark.parametrize("text, needle", [
    ("", "empty"),
    ("- a\n- b\n", "mapping"),
])
def test_empty_or_non_mapping(tmp_path, text, needle):
    path = tmp_path / "llmops.yaml"
    path.write_text(text)
    assert needle in str(_error(path))


def test_unknown_metric(make_project):
    path = _edit(make_project(URL), "metrics: [exact_match", "metrics: [exact_matsh")
    err = _error(path)
    assert err.key == "metrics" and "unknown metric 'exact_matsh'" in str(err)
    assert "token_f1" in str(err)  # lists the known ones


def test_duplicate_metric(make_project):
    path = _edit(make_project(URL), "metrics: [exact_match", "metrics: [token_f1, exact_match")
    assert "twice" in str(_error(path))


def test_gate_metric_not_in_metrics(make_project):
    path = _edit(make_project(URL), "    token_f1: {max_drop: 0.05}", "    rouge2: {max_drop: 0.05}")
    err = _error(path)
    assert str(path) in str(err) and "gate.metrics.rouge2" in str(err)
    assert "not in metrics" in str(err) or "not among the metrics" in str(err)


@pytest.mark.parametrize("old, new, key", [
    ("temperature: 0,", "temperature: 3,", "params.temperature"),
    ("max_tokens: 32", "max_tokens: 0", "params.max_tokens"),
    ("top_k: 2", "top_k: 0", "retrieval.top_k"),
    ("{max_drop: 0.05}", "{max_drop: -1}", "gate.metrics.token_f1.max_drop"),
])
def test_out_of_range_values(make_project, old, new, key):
    err = _error(_edit(make_project(URL), old, new))
    assert err.key == key


def test_chunk_overlap_must_be_smaller_than_size(make_project):
    path = _edit(make_project(URL), "top_k: 2,", "top_k: 2, chunking: {mode: words, size: 5, overlap: 5},")
    assert "overlap must be smaller than size" in str(_error(path))


def test_prompt_template_syntax_error(make_project):
    path = _edit(make_project(URL), "Question: {{ question }}", "Question: {{ question }")
    err = _error(path)
    assert err.key == "prompt.user" and "template syntax error" in str(err) and str(path) in str(err)


def test_retrieval_query_syntax_error(make_project):
    path = _edit(make_project(URL), 'query: "{{ question }}"', 'query: "{% if %}"')
    assert _error(path).key == "retrieval.query"


def test_user_and_user_file_exclusive(make_project):
    path = _edit(make_project(URL), "  system: ", "  user_file: u.j2\n  system: ")
    assert "either user or user_file" in str(_error(path))


def test_user_file_resolved_relative_to_config(make_project, tmp_path, monkeypatch):
    path = make_project(URL)
    (path.parent / "prompts").mkdir()
    (path.parent / "prompts" / "user.j2").write_text("Q: {{ question }}\nC: {{ context }}")
    text = path.read_text().replace('  user: "Context:\\n{{ context }}\\n\\nQuestion: {{ question }}"', "  user_file: prompts/user.j2")
    assert "user_file" in text
    path.write_text(text)
    monkeypatch.chdir(tmp_path)  # not the config's folder
    cfg = load_config(path)
    assert cfg.user_template == "Q: {{ question }}\nC: {{ context }}"
    assert cfg.snapshot()["prompt"]["user"] == cfg.user_template
    # a syntax error inside the file is reported against prompt.user
    (path.parent / "prompts" / "user.j2").write_text("Q: {{ question")
    assert _error(path).key == "prompt.user"
    # a missing file names prompt.user_file
    (path.parent / "prompts" / "user.j2").unlink()
    err = _error(path)
    assert err.key == "prompt.user_file" and "file not found" in str(err)


def test_parse_config_without_file():
    cfg = parse_config({"model": "openai/x", "prompt": {"user": "{{ question }}"}, "dataset": {"path": "q.jsonl"}})
    assert cfg.path is None and cfg.base_dir == Path.cwd()
    assert cfg.dataset.references == ["reference"]  # a single string default
    cfg2 = parse_config({"model": "m", "prompt": {"user": "x"}, "dataset": {"path": "q.jsonl", "references": "ans"},
                         "params": {"stop": "\n"}})
    assert cfg2.dataset.references == ["ans"] and cfg2.params.stop == ["\n"]


# -- identity ------------------------------------------------------------------

def test_fingerprint_stable_and_sensitive(make_project):
    path = make_project(URL)
    a, b = load_config(path), load_config(path)
    fa = fingerprint(a.snapshot(), "corpus1")
    assert fa == fingerprint(b.snapshot(), "corpus1")
    assert len(fa) == 16 and int(fa, 16) >= 0
    assert fingerprint(a.snapshot(), "corpus2") != fa  # the corpus content is part of it
    _edit(path, "temperature: 0,", "temperature: 0.7,")
    c = load_config(path)
    assert fingerprint(c.snapshot(), "corpus1") != fa


def test_fingerprint_ignores_how_it_is_measured(make_project):
    path = make_project(URL)
    fa = fingerprint(load_config(path).snapshot())
    _edit(path, "metrics: [exact_match, token_f1, bleu, rougeL]", "metrics: [exact_match, token_f1]")
    _edit(path, "max_drop: 0.05", "max_drop: 0.5")
    assert fingerprint(load_config(path).snapshot()) == fa


def test_config_diff(make_project):
    path = make_project(URL)
    old = load_config(path).snapshot()
    _edit(path, "temperature: 0,", "temperature: 0.7,")
    new = load_config(path).snapshot()
    assert config_diff(old, new) == ["params.temperature: 0.0 → 0.7"]
    assert config_diff(old, old) == []
    assert config_diff(None, new) == []


def test_config_diff_prompt_and_missing_values(make_project):
    path = make_project(URL)
    old = load_config(path).snapshot()
    _edit(path, '"Answer briefly."', '"Answer in one word."')
    _edit(path, "max_tokens: 32", "max_tokens: 32, seed: 7")
    lines = config_diff(old, load_config(path).snapshot())
    assert 'prompt.system: "Answer briefly." → "Answer in one word."' in lines
    assert "params.seed: — → 7" in lines
    assert len(lines) == 2
