"""Shards and merge (issue 11, item 4): `llmops eval --shard k/n` runs a
stable part of the eval set, `llmops merge` joins the shards' records into
the unsharded run's, `llmops gate` gates it — with the unsharded run's
scores, outputs and verdict. Through the real CLI against the fake
OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import QUESTIONS
from llmops_cli.cli import cli
from llmops_cli.plan.dataset import Case
from llmops_cli.core.errors import InputError
from llmops_cli.record.schema import load_record
from llmops_cli.plan.shards import parse_shard, select, shard_of
from llmops_cli.testing import FakeOpenAI

KINDS = {"q1": "who", "q2": "where", "q3": "who", "q4": "who", "q5": "who", "q6": "which"}
MORE = [
    {"id": "q7", "question": "Who beat the Panthers?", "answers": ["Denver Broncos"], "kind": "who"},
    {"id": "q8", "question": "Which stadium hosted the game?", "answers": ["Levi's Stadium"], "kind": "which"},
    {"id": "q9", "question": "Where is Levi's Stadium?", "answers": ["Santa Clara, California"], "kind": "where"},
    {"id": "q10", "question": "Who was named most valuable player?", "answers": ["Von Miller"], "kind": "who"},
    {"id": "q11", "question": "Who joined Coldplay at halftime?", "answers": ["Beyonce and Bruno Mars"], "kind": "who"},
    {"id": "q12", "question": "What was the final score?", "answers": ["24 to 10"], "kind": "what"},
    {"id": "q13", "question": "What position did Von Miller play?", "answers": ["linebacker"], "kind": "what"},
    {"id": "q14", "question": "Which team won, Denver or Carolina?", "answers": ["Denver"], "kind": "which"},
]
CASES = [{**q, "kind": KINDS[q["id"]]} for q in QUESTIONS] + MORE

EXTRA = """\
dataset: {path: questions.jsonl, id: id, inputs: [question], references: answers, slices: [kind]}
metrics: [exact_match, token_f1, bleu, rougeL, latency_s, latency_p95, prompt_tokens, perplexity]
checks:
  short: {length: {max: 4, unit: words}}
"""
JUDGED = """\
judges:
  correctness: {model: openai/judge-model, api_base: "API_BASE", samples: 2}
"""

MODE = {"answer": "right"}
_judge_turn = itertools.count()


def reply(messages, body):
    """A judge (model ``judge-model``) grades C, P or I in turn (so samples
    disagree); the model under test answers the first reference, or (when a
    test switches MODE) a fixed wrong answer."""
    if body.get("model") == "judge-model":
        return "Reasoning.\nGRADE: " + "CPCI"[next(_judge_turn) % 4]
    if MODE["answer"] != "right":
        return MODE["answer"]
    q = messages[-1]["content"].rsplit("Question: ", 1)[-1].strip()
    return next((c["answers"][0] for c in CASES if c["question"] == q), "I do not know")


@pytest.fixture(autouse=True)
def _right_by_default():
    MODE["answer"] = "right"
    yield
    MODE["answer"] = "right"


def run(*args):
    res = CliRunner().invoke(cli, [str(a) for a in args])
    assert res.exception is None or isinstance(res.exception, SystemExit), (res.exception, res.output)
    return res


@pytest.fixture
def server(litellm_loaded):
    with FakeOpenAI(reply=reply) as srv:
        yield srv


def _project(make_project, url, extra=EXTRA, cases=CASES):
    cfg = make_project(url, questions=cases)
    extra = extra.replace("API_BASE", url)
    cfg.write_text(cfg.read_text().replace(
        "dataset: {path: questions.jsonl, id: id, inputs: [question], references: answers}\n", "").replace(
        "metrics: [exact_match, token_f1, bleu, rougeL]\n", "") + extra, encoding="utf-8")
    return cfg


def _shards(cfg, n=3, *flags):
    paths = []
    for k in range(1, n + 1):
        path = cfg.parent / f"shard{k}.json"
        res = run("eval", cfg, "--shard", f"{k}/{n}", "-o", path, *flags)
        assert res.exit_code == 0, res.output
        assert f"shard {k}/{n} written" in res.output and "not gated" in res.output
        assert "gate passed" not in res.output and "regress" not in res.output
        paths.append(path)
    return paths


# -- membership -------------------------------------------------------------------------------------

def test_membership_partitions_the_set_and_adding_cases_moves_none():
    ids = [f"case-{i}" for i in range(300)]
    before = {i: shard_of(i, 3) for i in ids}
    more = ids + [f"new-{i}" for i in range(200)]
    assert all(shard_of(i, 3) == before[i] for i in ids)  # depends on the id and n alone
    cases = [Case(i, {"q": i}) for i in more]
    parts = [select(cases, k, 3) for k in (1, 2, 3)]
    got = sorted(p for _, info in parts for p in info.positions)
    assert got == list(range(len(cases)))  # every case in exactly one shard
    for k, (subset, info) in zip((1, 2, 3), parts):
        assert info.index == k and info.count == 3 and info.total == len(cases)
        assert [c.id for c in subset] == [more[p] for p in info.positions]
        assert 100 < len(subset) < 233  # about a third each
    assert {shard_of(i, 1) for i in ids} == {1}


@pytest.mark.parametrize("spec", ["0/3", "4/3", "x", "3/0", "1/", "-1/3", "2/3/4"])
def test_bad_shard_specs_are_input_errors(spec):
    with pytest.raises(InputError, match="--shard"):
        parse_shard(spec)
    assert parse_shard(" 2 / 3 ") == (2, 3)


@pytest.mark.parametrize("spec", ["0/3", "4/3", "x"])
def test_bad_shard_flag_is_exit_2_one_line(make_project, spec):
    cfg = make_project()  # nothing is called: the flag is refused first
    res = run("eval", cfg, "--shard", spec)
    assert res.exit_code == 2, res.output
    assert len(res.output.strip().splitlines()) == 1 and "--shard" in res.output


def test_shard_with_update_baseline_is_exit_2(make_project):
    cfg = make_project()
    res = run("eval", cfg, "--shard", "1/3", "--update-baseline")
    assert res.exit_code == 2 and "--shard" in res.output and "baseline" in res.output
    assert not (cfg.parent / "baseline.json").exists()


# -- merged == unsharded ---------------------------------------------------------------------------

VOLATILE = {"run_id", "created_at"}
USAGE_VOLATILE = {"wall_s", "slowest", "concurrency_peak"}


def _assert_same_run(full, merged):
    a, b = full.model_dump(), merged.model_dump()
    for key in a:
        if key in VOLATILE:
            continue
        if key in ("usage", "judge_usage") and a[key] is not None:
            assert {k: v for k, v in a[key].items() if k not in USAGE_VOLATILE} == \
                   {k: v for k, v in b[key].items() if k not in USAGE_VOLATILE}, key
            continue
        if key == "cases":
            assert [c["id"] for c in a["cases"]] == [c["id"] for c in b["cases"]]
            for ca, cb in zip(a["cases"], b["cases"]):
                for field in ca:
                    assert ca[field] == cb[field], (ca["id"], field)
            continue
        if key == "metrics":
            assert list(a["metrics"]) == list(b["metrics"])
            for name in a["metrics"]:
                assert a["metrics"][name] == b["metrics"][name], name
            continue
        assert a[key] == b[key], key


@pytest.mark.parametrize("extra", [EXTRA, EXTRA + JUDGED, EXTRA + "repeats: 2\n"], ids=["no-judge", "judged", "repeats"])
def test_three_shards_merged_equal_the_unsharded_run(make_project, server, extra):
    cfg = _project(make_project, server.url, extra)
    d = cfg.parent
    assert run("eval", cfg, "--update-baseline", "-o", d / "first.json").exit_code == 0  # fills the cache
    full_res = run("eval", cfg, "-o", d / "full.json", "--json")  # cached, like the shards below
    assert full_res.exit_code == 0, full_res.output
    paths = _shards(cfg)
    shard_cases = [len(load_record(p).cases) for p in paths]
    assert sum(shard_cases) == len(CASES) and all(shard_cases)
    res = run("merge", *paths, "-o", d / "merged.json")
    assert res.exit_code == 0, res.output
    assert f"merged 3 shards ({len(CASES)} cases)" in res.output
    full, merged = load_record(d / "full.json"), load_record(d / "merged.json")
    assert merged.shard is None and merged.status == "complete"
    _assert_same_run(full, merged)
    assert merged.metrics["bleu"].aggregate is not None and merged.slices["kind"]["who"]["n"] == 7
    if "judges" in extra:
        assert merged.metrics["correctness"].info["self_agreement"] is not None
    assert merged.usage.wall_s == pytest.approx(sum(load_record(p).usage.wall_s for p in paths), abs=0.01)

    gated = run("gate", d / "merged.json", cfg, "--json")  # the same verdict and numbers as the unsharded eval
    assert gated.exit_code == 0, gated.output
    a, b = json.loads(full_res.stdout), json.loads(gated.stdout)
    assert a["passed"] and b["passed"]
    assert a["metrics"] == b["metrics"] and a["slices"] == b["slices"]


def test_worse_answers_in_every_shard_regress_like_the_unsharded_run(make_project, server):
    cfg = _project(make_project, server.url)
    d = cfg.parent
    assert run("eval", cfg, "--update-baseline").exit_code == 0
    MODE["answer"] = "I do not know"
    full = run("eval", cfg, "--no-cache", "-o", d / "full.json")
    assert full.exit_code == 1 and "token_f1" in full.output
    paths = _shards(cfg, 3, "--no-cache")
    assert run("merge", *paths, "-o", d / "merged.json").exit_code == 0
    res = run("gate", d / "merged.json", "--markdown", d / "gate.md", "--junit", d / "gate.xml")  # the config it names
    assert res.exit_code == 1, res.output
    assert "regression: token_f1" in res.output
    assert "regressed" in (d / "gate.md").read_text() and "<failure" in (d / "gate.xml").read_text()
    # the merged record can become the baseline; a shard's cannot
    assert run("baseline", "update", cfg, "--from-run", paths[0]).exit_code == 2
    assert run("baseline", "update", cfg, "--from-run", d / "merged.json").exit_code == 0
    assert run("gate", d / "merged.json", cfg).exit_code == 0


# -- merge errors -------------------------------------------------------------------------------------

@pytest.fixture
def shards(make_project, server):
    cfg = _project(make_project, server.url)
    return cfg, _shards(cfg)


def _refused(res, *words):
    assert res.exit_code == 2, res.output
    assert len(res.output.strip().splitlines()) == 1, res.output
    for w in words:
        assert str(w) in res.output, (w, res.output)


def test_missing_shard_is_exit_2(shards):
    cfg, (s1, s2, s3) = shards
    _refused(run("merge", s1, s3, "-o", cfg.parent / "m.json"), "shard 2/3 is missing", s1.name, s3.name)
    assert not (cfg.parent / "m.json").exists()


def test_duplicate_shard_is_exit_2(shards):
    cfg, (s1, s2, s3) = shards
    again = shutil.copy(s2, cfg.parent / "again.json")
    _refused(run("merge", s1, s2, again, s3, "-o", cfg.parent / "m.json"), "again.json", "shard 2/3 is given twice")


def test_mixed_fingerprints_are_exit_2(shards):
    cfg, (s1, s2, s3) = shards
    other = cfg.parent / "other.yaml"
    other.write_text(cfg.read_text().replace("temperature: 0", "temperature: 0.5"))
    s2b = cfg.parent / "s2b.json"
    assert run("eval", other, "--shard", "2/3", "-o", s2b).exit_code == 0
    _refused(run("merge", s1, s2b, s3, "-o", cfg.parent / "m.json"), "s2b.json", "fingerprint", "params.temperature")


def test_mixed_datasets_are_exit_2(shards, make_project, server):
    cfg, (s1, s2, s3) = shards
    changed = [dict(c, question=c["question"] + " (again)") if c["id"] == "q1" else c for c in CASES]
    other = _project(make_project, server.url, cases=changed)
    s2b = other.parent / "s2b.json"
    assert run("eval", other, "--shard", "2/3", "-o", s2b).exit_code == 0
    _refused(run("merge", s1, s2b, s3, "-o", cfg.parent / "m.json"), "s2b.json", "dataset_hash", "different eval sets")


def test_a_case_twice_and_a_whole_run_are_exit_2(shards):
    cfg, (s1, s2, s3) = shards
    rec = json.loads(s2.read_text())
    rec["cases"].append(rec["cases"][0])
    rec["shard"]["positions"].append(rec["shard"]["positions"][0])
    (cfg.parent / "twice.json").write_text(json.dumps(rec))
    _refused(run("merge", s1, cfg.parent / "twice.json", s3), "twice.json", "appears twice")
    whole = cfg.parent / "whole.json"
    assert run("eval", cfg, "--update-baseline", "-o", whole).exit_code == 0
    _refused(run("merge", s1, whole, s3), "whole.json", "not the record of a shard")
    _refused(run("merge", s1, s2, s3, "-o", s2), "shard2.json", "refusing to overwrite")


def test_a_shard_alone_is_not_gated(shards):
    cfg, (s1, _, _) = shards
    assert run("eval", cfg, "--update-baseline").exit_code == 0
    _refused(run("gate", s1, cfg), "shard1.json", "merge the shards first")


def test_gate_refuses_a_record_of_another_config(shards):
    cfg, paths = shards
    d = cfg.parent
    assert run("eval", cfg, "--update-baseline").exit_code == 0
    assert run("merge", *paths, "-o", d / "merged.json").exit_code == 0
    cfg.write_text(cfg.read_text().replace('system: "Answer briefly."', 'system: "Answer at length."'))
    _refused(run("gate", d / "merged.json", cfg), "merged.json", "another configuration", "prompt.system")


def test_gate_without_config_takes_the_one_the_record_names(make_project, server, tmp_path, monkeypatch):
    cfg = _project(make_project, server.url)
    monkeypatch.chdir(cfg.parent)  # the record names its config relative to where it ran
    assert run("eval", "llmops.yaml", "--update-baseline").exit_code == 0
    assert run("merge", *_shards(Path("llmops.yaml")), "-o", "merged.json").exit_code == 0
    assert load_record("merged.json").config_path == "llmops.yaml"
    res = run("gate", "merged.json")
    assert res.exit_code == 0 and "gate passed" in res.output
    monkeypatch.chdir(tmp_path)
    _refused(run("gate", cfg.parent / "merged.json"), "config_path", "llmops gate RUN CONFIG")
    assert run("gate", cfg.parent / "merged.json", cfg).exit_code == 0


def test_an_empty_shard_is_a_record_without_cases(make_project, server):
    cfg = _project(make_project, server.url, cases=CASES[:2])
    empty = next(k for k in range(1, 11) if all(shard_of(c["id"], 10) != k for c in CASES[:2]))
    res = run("eval", cfg, "--shard", f"{empty}/10", "-o", cfg.parent / "empty.json")
    assert res.exit_code == 0, res.output
    assert load_record(cfg.parent / "empty.json").cases == []


def test_the_example_workflow_shards_merges_and_gates():
    import yaml

    wf = yaml.safe_load((Path(__file__).parent.parent / "examples/ci/github-actions-shards.yml").read_text())
    shard, gate = wf["jobs"]["shard"], wf["jobs"]["gate"]
    assert shard["strategy"]["matrix"]["shard"] == list(range(1, wf["env"]["SHARDS"] + 1))
    runs = " ".join(s.get("run", "") for s in shard["steps"])
    assert '--shard "$SHARD/$SHARDS"' in runs and any(s.get("env", {}).get("SHARD") == "${{ matrix.shard }}"
                                                       for s in shard["steps"])
    assert any(s.get("uses", "").startswith("actions/cache/restore@") for s in shard["steps"])
    save = next(s for s in shard["steps"] if s.get("uses", "").startswith("actions/cache/save@"))
    assert save["if"] == "always()" and save["continue-on-error"] is True
    assert any(s.get("uses", "").startswith("actions/upload-artifact@") for s in shard["steps"])
    assert gate["needs"] == "shard"
    runs = [s.get("run", "") for s in gate["steps"]]
    merge_at = next(i for i, r in enumerate(runs) if "llmops merge" in r)
    assert any("llmops gate" in r for r in runs[merge_at + 1:])
    assert any(s.get("uses", "").startswith("actions/download-artifact@") for s in gate["steps"])


def test_a_shard_that_did_not_complete_leaves_the_merged_run_incomplete(shards):
    cfg, (s1, s2, s3) = shards
    d = cfg.parent
    assert run("eval", cfg, "--update-baseline").exit_code == 0
    rec = json.loads(s2.read_text())
    rec["status"] = "incomplete"
    s2.write_text(json.dumps(rec))
    res = run("merge", s1, s2, s3, "-o", d / "merged.json")
    assert res.exit_code == 3 and "did not complete" in res.output
    assert load_record(d / "merged.json").status == "incomplete"  # still written, for a look at what failed
    res = run("gate", d / "merged.json", cfg)
    assert res.exit_code == 3 and "neither pass nor fail" in res.output
