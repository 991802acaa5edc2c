"""The structured-output example, examples/squad-json: its data is what
prepare.py makes from SQuAD, its config validates against its committed
baseline, and — with the real embedded model — a few of its cases re-run
against the committed baseline pass, while the same cases without the JSON
schema in the params fail the gate on the `schema` check, with the reason."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from conftest import needs_local_model
from llmops_cli.cli import cli
from llmops_cli.config import load_config
from llmops_cli.plan.dataset import dataset_hash, load_dataset

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "squad-json"
RAG = ROOT / "examples" / "squad-rag"
N = 4  # cases re-run with the embedded model: about 10 s with the schema, 20 s without (long free-form answers)

def _prepare_module():
    spec = importlib.util.spec_from_file_location("squad_json_prepare", EXAMPLE / "prepare.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


prepare = _prepare_module()


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _run(args: list[str]):
    return CliRunner().invoke(cli, args, catch_exceptions=False)


# -- the data -----------------------------------------------------------------

@pytest.mark.parametrize("question, qtype", [
    ("How many points did the Broncos score?", "how many"),
    ("How much money did a 1/2 minute commercial cost?", "how many"),
    ("Who won Super Bowl 50?", "who"),
    ("Whose record did Manning break?", "who"),
    ("To whom was the trophy given?", "who"),
    ("When was the game played?", "when"),
    ("In what year was the Super Bowl last held in the Miami area?", "when"),
    ("On what day was media day held?", "when"),
    ("What date were the top two stadium choices announced?", "when"),
    ("What was the final score?", "what"),
    ("Which team won the NFC?", "what"),
    ("If Roman numerals were used, what would Super Bowl 50 have been called?", "what"),
    ("Prior to this game, who was the oldest quarterback?", "who"),
    ("Where was Super Bowl 50 played?", "other"),
    ("How old was Peyton Manning in 2015?", "other"),
    ("Peyton Manning's age in 2015?", "other"),
])
def test_question_type_rule(question, qtype):
    assert prepare.qtype(question) == qtype


def test_committed_data_is_squad_rag_plus_qtype():
    """The corpus is squad-rag's; the questions are squad-rag's with qtype
    added, and every qtype follows the rule (no shared data needed)."""
    assert (EXAMPLE / "data" / "corpus.jsonl").read_bytes() == (RAG / "data" / "corpus.jsonl").read_bytes()
    ours, rag = _rows(EXAMPLE / "data" / "questions.jsonl"), _rows(RAG / "data" / "questions.jsonl")
    assert len(ours) == len(rag) == 810
    assert [{k: v for k, v in q.items() if k != "qtype"} for q in ours] == rag
    assert all(q["qtype"] == prepare.qtype(q["question"]) for q in ours)
    assert {t: sum(q["qtype"] == t for q in ours) for t in prepare.QTYPES} == {
        "how many": 141, "who": 198, "when": 61, "what": 372, "other": 38}


def _squad_source() -> Path:
    """The SQuAD file prepare.py reads by default (../shared/... next to the
    repository), or $LLMOPS_SQUAD_SUPERBOWL_JSON."""
    return Path(os.environ.get("LLMOPS_SQUAD_SUPERBOWL_JSON") or prepare.DEFAULT_SOURCE)


@pytest.mark.skipif(not _squad_source().is_file(), reason="the SQuAD Super_Bowl_50 file is not available")
def test_prepare_reproduces_the_committed_data(tmp_path):
    assert prepare.main([str(_squad_source()), "--out", str(tmp_path)]) == 0
    for name in ("corpus.jsonl", "questions.jsonl"):
        assert (tmp_path / name).read_bytes() == (EXAMPLE / "data" / name).read_bytes(), name


# -- the config ---------------------------------------------------------------

def test_the_example_validates_against_its_baseline():
    res = _run(["validate", str(EXAMPLE / "llmops.yaml")])
    assert res.exit_code == 0, res.output
    assert "baseline" in res.output and "compatible" in res.output


def test_the_params_schema_is_the_checked_schema():
    cfg = load_config(EXAMPLE / "llmops.yaml")
    rf = cfg.params.response_format
    assert rf["type"] == "json_schema"
    assert rf["json_schema"]["schema"] == json.loads((EXAMPLE / "schema.json").read_text(encoding="utf-8"))
    assert cfg.checks["schema"].json_schema == "schema.json" and cfg.output_field == "answer"
    assert cfg.model == "local/smollm2-135m" and cfg.params.temperature == 0 and cfg.params.seed == 0


def test_quote_check():
    spec = importlib.util.spec_from_file_location("squad_json_checks", EXAMPLE / "checks.py")
    checks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(checks)
    f = checks.quote_in_paragraph
    chunks = [{"id": "p00", "doc_id": "p00", "text": "The Denver Broncos defeated\nthe Carolina Panthers 24–10.", "score": 1.0}]
    ok = json.dumps({"answer": "Denver Broncos", "quote": "Broncos defeated the  Carolina"})
    assert f(ok, {"paragraph": "p00"}, chunks) == (1.0, None)
    score, why = f(json.dumps({"answer": "x", "quote": "broncos defeated"}), {"paragraph": "p00"}, chunks)
    assert score == 0 and "ignoring case" in why
    score, why = f(json.dumps({"answer": "x", "quote": "Cam Newton"}), {"paragraph": "p07"}, chunks)
    assert score == 0 and "p00" in why and "p07, which was not retrieved" in why
    assert f("{not json", {}, chunks)[0] == 0 and f('{"answer": "x"}', {}, chunks) == (0.0, "no quote in the answer")


# -- with the embedded model -------------------------------------------------------

def _copy(tmp_path: Path, name: str, *, schema: bool) -> Path:
    """The example in tmp_path, limited to the first N cases of its sample
    (``dataset.limit``: ``--limit`` would take the first N of the file, which
    the sample need not contain), gated against the committed baseline's
    scores for those cases: the baseline file is cut to them, as a baseline
    made on another eval set is refused. ``schema=False`` removes
    response_format from the params. Latency rules, if any, are dropped:
    wall-clock time depends on the machine, not on the config."""
    project = tmp_path / name
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("__pycache__", "baseline*.json"))
    cfg_path = project / "llmops.yaml"
    data = yaml.safe_load(cfg_path.read_text(encoding="utf-8"))
    data["dataset"]["limit"] = N
    if not schema:
        del data["params"]["response_format"]
    for rule in [m for m in data["gate"]["metrics"] if m.startswith("latency")]:
        del data["gate"]["metrics"][rule]
    # 4 cases cannot show a drop at 95% (McNemar's exact test needs 6 changed cases, more under Holm): a floor can
    data["gate"]["metrics"]["schema"]["min"] = 0.75
    cfg_path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")

    cfg = load_config(cfg_path)
    cases = load_dataset(cfg.dataset, cfg.base_dir)
    baseline = json.loads((EXAMPLE / "baseline.json").read_text(encoding="utf-8"))
    by_id = {c["id"]: c for c in baseline["cases"]}
    assert len(cases) == N and all(c.id in by_id for c in cases)
    baseline["cases"] = [by_id[c.id] for c in cases]
    baseline["dataset_hash"] = dataset_hash(cases)
    (project / "baseline.json").write_text(json.dumps(baseline, ensure_ascii=False), encoding="utf-8")
    return cfg_path


@needs_local_model
def test_reruns_pass_and_removing_the_schema_regresses(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")  # the embedded model needs no key
    same = _copy(tmp_path, "same", schema=True)
    res = _run(["eval", str(same), "-o", str(tmp_path / "same.json")])
    assert res.exit_code == 0, res.output
    rec = json.loads((tmp_path / "same.json").read_text(encoding="utf-8"))
    assert [c["scores"]["schema"] for c in rec["cases"]] == [1.0] * N  # grammar-constrained: always valid
    for case in rec["cases"]:
        assert set(json.loads(case["output"])) == {"answer", "quote"}

    free = _copy(tmp_path, "free", schema=False)
    md = tmp_path / "free.md"
    res = _run(["eval", str(free), "-o", str(tmp_path / "free.json"), "--markdown", str(md)])
    assert res.exit_code == 1, res.output
    assert "params.response_format" in res.output  # named under "config changes"
    out = " ".join(res.output.split())
    assert "schema below min" in out
    assert "4 cases changed: too few to decide at 95%" in out  # and the gate says why its test could not
    rec = json.loads((tmp_path / "free.json").read_text(encoding="utf-8"))
    reasons = [c["reasons"].get("schema", "") for c in rec["cases"]]
    assert all(r.startswith(("not JSON", "schema: ")) for r in reasons), reasons
    report = md.read_text(encoding="utf-8")
    assert "| schema |" in report and "**below min**" in report
    assert "not JSON" in report or "is a required property" in report  # the per-case reasons
