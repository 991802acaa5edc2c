"""Slices: every metric per value of dataset.slices fields, gate rules per
slice joining the Holm family, and the bad inputs (missing slice values,
unknown fields and values) as exit 2 — through the real HTTP path."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from conftest import ANSWERS, QUESTIONS
from llmops_cli.core.cache import Cache
from llmops_cli.cli import cli
from llmops_cli import prepare
from llmops_cli.config import load_config as _load_config
from llmops_cli.core.errors import ConfigError, DatasetError
from llmops_cli.gate.rules import compare
from llmops_cli.jobs.runner import run_eval
from llmops_cli.testing import FakeOpenAI


def load_config(path):
    """The config as a run uses it: parsed, then prepared (templates, metric
    names, judge templates, checks; :func:`llmops_cli.prepare`)."""
    return prepare(_load_config(path))

TOPIC = {"q1": "teams", "q2": "venue", "q3": "people", "q4": "people", "q5": "people", "q6": "teams"}
PEOPLE = {"Who was the most valuable player?", "Who headlined the halftime show?", "Who sang the national anthem?"}
WRONG = {"value": False}


def answer(messages, body):
    q = messages[-1]["content"].rsplit("Question: ", 1)[-1].strip()
    return "no idea" if WRONG["value"] and q in PEOPLE else ANSWERS[q]


@pytest.fixture(autouse=True)
def _right():
    WRONG["value"] = False


def rows_with_topics(copies: int = 4) -> list[dict]:
    """The six questions, each ``copies`` times (ids q1-0, q1-1, ...), with a topic."""
    return [{**q, "id": f"{q['id']}-{k}", "topic": TOPIC[q["id"]]} for k in range(copies) for q in QUESTIONS]


def project(make_project, url: str, slice_rules: str = "", questions=None):
    rows = questions or rows_with_topics()
    cfg = make_project(url, questions=rows)
    text = cfg.read_text().replace("references: answers}", "references: answers, slices: [topic]}")
    text = text.replace("metrics: [exact_match, token_f1, bleu, rougeL]", "metrics: [exact_match, token_f1, latency_s]")
    if slice_rules:
        text = text.replace("baseline: baseline.json", "  slices:\n" + slice_rules + "baseline: baseline.json")
    cfg.write_text(text)
    return cfg


def run(args):
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def test_every_metric_per_slice_value_and_a_fall_in_one_slice(make_project, litellm_loaded, tmp_path):
    with FakeOpenAI(reply=answer) as srv:
        cfg = load_config(project(make_project, srv.url, "    topic=people: {exact_match: {max_drop: 0.1}}\n"))
        base = run_eval(cfg, cache=None).as_baseline()
        WRONG["value"] = True
        cand = run_eval(cfg, cache=None)
    assert {c.id: c.slices for c in cand.cases} == {f"{k}-{n}": {"topic": v} for k, v in TOPIC.items() for n in range(4)}
    assert "topic" not in cand.cases[0].inputs  # a slice field need not be an input
    assert cand.slices["topic"]["people"]["n"] == 12 and cand.slices["topic"]["people"]["exact_match"] == 0.0
    assert cand.slices["topic"]["teams"]["exact_match"] == base.slices["topic"]["teams"]["exact_match"]
    cmp = compare(base, cand, cfg.gate, metrics=cfg.all_metrics)
    by = {(m.slice, m.metric): m for m in cmp.slices}
    assert {s for s, _ in by} == {"topic=teams", "topic=venue", "topic=people"}
    assert {m for _, m in by} == {"exact_match", "token_f1", "latency_s"}  # every metric, gated or not
    people = by[("topic=people", "exact_match")]
    assert people.n == 12 and people.delta == pytest.approx(-base.slices["topic"]["people"]["exact_match"])
    assert people.verdict == "regressed" and people.label == "exact_match [topic=people]"
    assert by[("topic=teams", "exact_match")].verdict == "info" and by[("topic=teams", "exact_match")].delta == 0
    whole = next(m for m in cmp.metrics if m.metric == "exact_match")
    assert whole.verdict == "info" and whole.n == 24
    assert cmp.family_size == 2  # token_f1 (whole run) and exact_match on topic=people
    assert not cmp.passed and {m.label for m in cmp.failed} == {"token_f1", "exact_match [topic=people]"}


def test_slice_rules_for_every_value_and_the_cli_tables(make_project, litellm_loaded, tmp_path):
    with FakeOpenAI(reply=answer) as srv:
        cfg = project(make_project, srv.url, "    topic=*: {token_f1: {max_drop: 0.2}}\n")
        first = run(["eval", str(cfg), "--update-baseline", "--cache-dir", str(tmp_path / "c")])
        assert first.exit_code == 0 and "by topic" in first.output
        same = run(["eval", str(cfg), "--cache-dir", str(tmp_path / "c")])
        assert same.exit_code == 0, same.output
        assert "by topic" in same.output and "people" in same.output
        WRONG["value"] = True
        res = run(["eval", str(cfg), "--cache-dir", str(tmp_path / "c2"), "--junit", str(tmp_path / "j.xml"),
                   "--markdown", str(tmp_path / "s.md"), "--json"])
    assert res.exit_code == 1, res.output
    assert "token_f1 [topic=people] regressed" in res.output
    verdict = res.output.split("regression:")[-1]
    assert "token_f1 [topic=people]" in verdict and "token_f1 [topic=teams]" not in verdict  # not eaten as markup
    assert 'name="token_f1 [topic=people]"' in (tmp_path / "j.xml").read_text()
    md = (tmp_path / "s.md").read_text()
    assert "<details><summary>by topic</summary>" in md and "| people | 12 |" in md
    data = json.loads(res.output[res.output.index("{"):res.output.rindex("}") + 1])
    assert {m["slice"] for m in data["slices"]} == {"topic=teams", "topic=venue", "topic=people"}


def test_a_baseline_made_before_slices_were_declared_still_compares(make_project, litellm_loaded, tmp_path):
    with FakeOpenAI(reply=answer) as srv:
        path = project(make_project, srv.url)
        path.write_text(path.read_text().replace(", slices: [topic]", ""))
        assert run(["eval", str(path), "--update-baseline", "--no-cache"]).exit_code == 0
        path.write_text(path.read_text().replace("references: answers}", "references: answers, slices: [topic]}"))
        res = run(["eval", str(path), "--no-cache"])
    assert res.exit_code == 0, res.output  # the slice field is not part of the dataset hash
    assert "by topic" in res.output


def test_a_case_without_a_slice_value_is_bad_input(make_project):
    rows = rows_with_topics(1)
    del rows[3]["topic"]
    cfg = project(make_project, "http://127.0.0.1:9/v1", questions=rows)
    with pytest.raises(DatasetError, match=r"row 4 \(id 'q4-0'\): missing slice field 'topic'"):
        run_eval(load_config(cfg), cache=Cache(cfg.parent / "cache"))
    res = run(["eval", str(cfg), "--update-baseline"])
    assert res.exit_code == 2 and "questions.jsonl" in res.output and "slice field 'topic'" in res.output
    assert "Traceback" not in res.output


def test_slice_rules_name_a_declared_field_and_a_value_that_exists(make_project, litellm_loaded):
    with pytest.raises(ConfigError, match=r"gate\.slices\.lang=en: 'lang' is not among dataset\.slices"):
        load_config(project(make_project, "http://127.0.0.1:9/v1", "    lang=en: {token_f1: {max_drop: 0.1}}\n"))
    with pytest.raises(ConfigError, match="field=value"):
        load_config(project(make_project, "http://127.0.0.1:9/v1", "    topic: {token_f1: {max_drop: 0.1}}\n"))
    with pytest.raises(ConfigError, match=r"gate\.slices\.topic=people\.latency_s\.max_drop"):
        load_config(project(make_project, "http://127.0.0.1:9/v1", "    topic=people: {latency_s: {max_drop: 0.1}}\n"))
    with FakeOpenAI(reply=answer) as srv:
        cfg = project(make_project, srv.url, "    topic=sports: {token_f1: {max_drop: 0.1}}\n")
        # checked against the eval set when the run is planned: validate says so, eval calls nothing
        for args in (["validate", str(cfg), "--update-baseline"], ["eval", str(cfg), "--update-baseline", "--no-cache"]):
            res = run(args)
            line = " ".join(res.output.split())
            assert res.exit_code == 2 and "gate.slices.topic=sports" in line and "people" in line, res.output
            assert "llmops.yaml" in line  # names the file
        assert srv.request_count == 0
