"""Report writers (JUnit XML, Markdown, JSON) and `llmops score` end to end
through click's CliRunner on a 100-question slice of the SQuAD predictions."""

from __future__ import annotations

import json
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np
import pytest

from conftest import SCORE_CONFIG
from typer.testing import CliRunner

from llmops_cli.cli import cli
from llmops_cli.config import Gate, GateRule
from llmops_cli.gate.rules import compare
from llmops_cli.record.schema import CaseRecord, MetricSummary, RunRecord, load_record
from llmops_cli.report import comparison_json, junit_xml, markdown

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = ROOT / "examples" / "squad-rag" / "data" / "questions.jsonl"
PREDICTIONS = ROOT / "examples" / "squad-predictions"


# -- writers on a constructed comparison --------------------------------------------------

def _record(kind: str, scores: dict[str, list[float]], outputs: list[str]) -> RunRecord:
    n = len(outputs)
    cases = [CaseRecord(id=f"q{i}", inputs={"question": f"What is {i} | {i}?"}, references=[str(i)], output=outputs[i],
                        scores={m: v[i] for m, v in scores.items()}) for i in range(n)]
    metrics = {m: MetricSummary(aggregate=float(np.mean(v)), n_scored=n) for m, v in scores.items()}
    return RunRecord(kind=kind, run_id=f"run-{kind}", config={"model": kind}, fingerprint=f"fp-{kind}", dataset_hash="d",
                     metrics=metrics, cases=cases)


@pytest.fixture
def regressed_cmp():
    """token_f1 falls by 0.5 on every case (regressed), exact_match is flat
    (pass), rougeL is not gated (info)."""
    n = 20
    base = _record("baseline", {"token_f1": [0.9] * n, "exact_match": [1.0, 0.0] * (n // 2), "rougeL": [0.5] * n},
                   [f"answer {i}" for i in range(n)])
    cand = _record("run", {"token_f1": [0.4] * n, "exact_match": [1.0, 0.0] * (n // 2), "rougeL": [0.6] * n},
                   [f"other {i}" for i in range(n)])
    g = Gate(metrics={"token_f1": GateRule(max_drop=0.05), "exact_match": GateRule(max_drop=0.05)})
    return compare(base, cand, g, metrics=["token_f1", "exact_match", "rougeL"]), cand


def test_junit_xml_parses_with_one_testcase_per_metric(regressed_cmp):
    cmp, _ = regressed_cmp
    root = ET.fromstring(junit_xml(cmp).encode("utf-8"))
    assert root.tag == "testsuite" and root.get("name") == "llmops"
    assert root.get("tests") == "3" and root.get("failures") == "1" and root.get("errors") == "0"
    cases = {tc.get("name"): tc for tc in root.iter("testcase")}
    assert list(cases) == ["token_f1", "exact_match", "rougeL"]
    assert all(tc.get("classname") == "llmops.gate" for tc in cases.values())
    failure = cases["token_f1"].find("failure")
    assert failure is not None and failure.get("type") == "regressed"
    assert "token_f1 regressed" in failure.get("message") and "CI upper bound -0.5" in failure.get("message")
    text = failure.text
    for part in ("baseline=0.9000", "candidate=0.4000", "delta=-0.5000", "ci=[-0.5000, -0.5000]", "n=20", "rule=drop ≤ 0.05 (CI)"):
        assert part in text, (part, text)
    for name in ("exact_match", "rougeL"):
        assert cases[name].find("failure") is None and cases[name].find("error") is None
    assert cases["exact_match"].find("system-out").text.startswith("pass: ")
    assert cases["rougeL"].find("system-out").text.startswith("info: ")


def test_junit_xml_unscored_metric_is_an_error():
    base = _record("baseline", {"token_f1": [1.0, 0.5]}, ["a", "b"])
    cand = _record("run", {"token_f1": [1.0, 0.5]}, ["a", "b"])
    for c in cand.cases:
        c.scores["token_f1"] = None
    cmp = compare(base, cand, Gate(metrics={"token_f1": GateRule(max_drop=0.05)}))
    root = ET.fromstring(junit_xml(cmp))
    assert root.get("errors") == "1" and root.get("failures") == "0"
    assert root.find("testcase/error").get("type") == "unscored"


def test_markdown_has_table_and_verdicts(regressed_cmp):
    cmp, cand = regressed_cmp
    md = markdown(cmp, cand)
    assert md.startswith("❌ **llmops gate failed**")
    lines = md.splitlines()
    head = lines.index("| metric | baseline | candidate | delta | CI | p | MDE | rule | verdict |")
    assert lines[head + 1].startswith("|---|")
    rows = {ln.split("|")[1].strip(): ln for ln in lines[head + 2: head + 5]}
    assert set(rows) == {"token_f1", "exact_match", "rougeL"}
    assert "| 0.9000 | 0.4000 | -0.5000 | [-0.5000, -0.5000] |" in rows["token_f1"] and "**regressed**" in rows["token_f1"]
    assert "**pass**" in rows["exact_match"] and "**info**" in rows["rougeL"]
    assert "paired mode" in md
    assert "**Most changed cases** (20 worse, 0 better):" in md
    assert "What is 0 \\| 0?" in md  # pipes in cells are escaped
    assert "**Config changes**" in md and 'model: "baseline" → "run"' in md
    passed = compare(cand, cand, Gate(metrics={"token_f1": GateRule(max_drop=0.05)}))
    assert markdown(passed).startswith("✅ **llmops gate passed**")


def test_comparison_json_round_trips(regressed_cmp):
    cmp, cand = regressed_cmp
    d = json.loads(comparison_json(cmp, cand))
    assert d["passed"] is False
    assert d["mode"] == "paired" and d["resamples"] == 1000 and d["confidence"] == 0.95
    by = {m["metric"]: m for m in d["metrics"]}
    assert by["token_f1"]["verdict"] == "regressed" and by["token_f1"]["delta"] == pytest.approx(-0.5)
    assert by["exact_match"]["verdict"] == "pass"
    assert d["run"]["run_id"] == "run-run" and d["run"]["dataset_hash"] == "d"
    assert len(d["changed_cases"]) == 10 and d["n_worse_cases"] == 20
    assert json.loads(comparison_json(compare(cand, cand, Gate())))["passed"] is True


# -- the CLI end to end ----------------------------------------------------------------

N_CASES = 100


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A tiny project: the first 100 SQuAD questions, a config and the
    predictions of three systems restricted to those questions."""
    lines = QUESTIONS.read_text(encoding="utf-8").splitlines()[:N_CASES]
    (tmp_path / "questions.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    ids = [json.loads(x)["id"] for x in lines]
    for system in ("bert-ensemble", "logistic-regression", "slqa-plus"):
        preds = json.loads((PREDICTIONS / f"predictions-{system}.json").read_text(encoding="utf-8"))
        (tmp_path / f"{system}.json").write_text(json.dumps({i: preds[i] for i in ids}), encoding="utf-8")
    (tmp_path / "llmops.yaml").write_text(SCORE_CONFIG, encoding="utf-8")
    monkeypatch.chdir(tmp_path)  # run records go to ./.llmops/runs
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    return tmp_path


def run_cli(*args: str):
    result = CliRunner().invoke(cli, list(args))
    # an uncaught exception also gives exit code 1 under CliRunner: tell it apart from a regression
    assert result.exception is None or isinstance(result.exception, SystemExit), (result.exception, result.output)
    return result


def _reports(p: Path, tag: str) -> list[str]:
    return ["--junit", str(p / f"{tag}.xml"), "--markdown", str(p / f"{tag}.md"), "-o", str(p / f"{tag}-run.json")]


def test_cli_score_exit_codes_and_reports(project, monkeypatch):
    p = project
    summary = p / "step-summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))

    r = run_cli("score", "llmops.yaml", "--outputs", "bert-ensemble.json", "--update-baseline")
    assert r.exit_code == 0, r.output
    assert "baseline written" in r.output
    baseline = load_record(p / "baseline.json")
    assert baseline.kind == "baseline" and len(baseline.cases) == N_CASES and baseline.source == "outputs"
    assert len(list((p / ".llmops" / "runs").glob("*.json"))) == 1
    assert not summary.exists()  # nothing compared, nothing summarised

    # the same outputs as the baseline: exit 0
    r = run_cli("score", "llmops.yaml", "--outputs", "bert-ensemble.json", "--json", *_reports(p, "same"))
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)  # --json: the comparison alone on stdout
    assert d["passed"] is True
    assert {m["metric"]: m["delta"] for m in d["metrics"]} == {"token_f1": 0.0, "exact_match": 0.0}
    assert d["changed_cases"] == [] and d["config_changes"] == []
    assert "gate passed" in r.stderr
    root = ET.parse(p / "same.xml").getroot()
    assert root.get("tests") == "2" and root.get("failures") == "0"
    assert (p / "same.md").read_text(encoding="utf-8").startswith("✅ **llmops gate passed**")
    assert load_record(p / "same-run.json").kind == "run"
    assert summary.read_text(encoding="utf-8").count("llmops gate passed") == 1

    # logistic-regression against the bert-ensemble baseline: exit 1
    r = run_cli("score", "llmops.yaml", "--outputs", "logistic-regression.json", "--json", *_reports(p, "lr"))
    assert r.exit_code == 1, r.output
    d = json.loads(r.stdout)
    assert d["passed"] is False
    assert {m["metric"]: m["verdict"] for m in d["metrics"]} == {"token_f1": "regressed", "exact_match": "regressed"}
    assert d["config_changes"] == ['model: "outputs:bert-ensemble.json" → "outputs:logistic-regression.json"']
    root = ET.parse(p / "lr.xml").getroot()
    assert root.get("failures") == "2"
    failures = {tc.get("name"): tc.find("failure") for tc in root.iter("testcase")}
    assert all(f is not None and f.get("type") == "regressed" for f in failures.values())
    lr_delta = next(m["delta"] for m in d["metrics"] if m["metric"] == "token_f1")
    assert f"delta={lr_delta:+.4f}" in failures["token_f1"].text
    md = (p / "lr.md").read_text(encoding="utf-8")
    assert md.startswith("❌ **llmops gate failed**") and "**regressed**" in md
    step = summary.read_text(encoding="utf-8")
    assert step.count("llmops gate passed") == 1 and step.count("llmops gate failed") == 1  # appended, not overwritten
    assert "regression: token_f1, exact_match" in r.stderr

    # human output (no --json): the gate table on stdout
    r = run_cli("score", "llmops.yaml", "--outputs", "logistic-regression.json", "--top", "3")
    assert r.exit_code == 1
    assert "gate" in r.stdout and "regressed" in r.stdout and "token_f1" in r.stdout


def test_cli_score_plain_mode(project):
    run_cli("score", "llmops.yaml", "--outputs", "bert-ensemble.json", "--update-baseline")
    r = run_cli("score", "llmops.yaml", "--outputs", "slqa-plus.json", "--json")
    d = json.loads(r.stdout)
    assert d["mode"] == "paired"
    r_plain = run_cli("score", "llmops.yaml", "--outputs", "slqa-plus.json", "--json", "--plain")
    dp = json.loads(r_plain.stdout)
    assert dp["mode"] == "plain"
    for m, mp in zip(d["metrics"], dp["metrics"]):
        assert m["delta"] == mp["delta"]
        # plain: the point estimate decides
        assert mp["verdict"] == ("regressed" if mp["delta"] < -0.02 else "improved" if mp["delta"] > 0 else "pass")
    assert r_plain.exit_code == (0 if dp["passed"] else 1)


def test_cli_score_missing_baseline_exits_2(project):
    r = run_cli("score", "llmops.yaml", "--outputs", "bert-ensemble.json", "--junit", "j.xml")
    assert r.exit_code == 2
    assert "baseline not found" in r.output and "--update-baseline" in r.output
    assert not (project / "j.xml").exists()
    assert not (project / ".llmops").exists()  # failed before scoring anything
    r = run_cli("score", "llmops.yaml", "--outputs", "bert-ensemble.json", "--baseline", "nowhere.json")
    assert r.exit_code == 2 and "nowhere.json" in r.output


def test_cli_score_baseline_from_another_dataset_exits_2(project):
    r = run_cli("score", "llmops.yaml", "--outputs", "bert-ensemble.json", "--update-baseline", "--limit", "50",
                "--baseline", "other.json")
    assert r.exit_code == 0, r.output
    assert len(load_record(project / "other.json").cases) == 50
    r = run_cli("score", "llmops.yaml", "--outputs", "bert-ensemble.json", "--baseline", "other.json", "--json")
    assert r.exit_code == 2
    assert "dataset_hash" in r.output and "another eval set" in r.output
    assert r.stdout == ""  # no comparison was printed


def test_cli_score_bad_outputs_file_exits_2(project):
    (project / "bad.json").write_text('["not", "a", "mapping"]', encoding="utf-8")
    run_cli("score", "llmops.yaml", "--outputs", "bert-ensemble.json", "--update-baseline")
    r = run_cli("score", "llmops.yaml", "--outputs", "bad.json")
    assert r.exit_code == 2 and "expected a JSON object" in r.output
    r = run_cli("score", "llmops.yaml", "--outputs", "missing.json")
    assert r.exit_code == 2 and "not found" in r.output


def test_cli_score_too_few_outputs_exits_3(project):
    (project / "few.json").write_text(json.dumps({"56be4db0acb8001400a502ec": "Denver Broncos"}), encoding="utf-8")
    run_cli("score", "llmops.yaml", "--outputs", "bert-ensemble.json", "--update-baseline")
    r = run_cli("score", "llmops.yaml", "--outputs", "few.json")
    assert r.exit_code == 3 and "few.json" in r.output and "no output" in r.output
    r = run_cli("score", "llmops.yaml", "--outputs", "few.json", "--update-baseline", "--baseline", "never.json")
    assert r.exit_code == 3 and not (project / "never.json").exists()  # no baseline from an incomplete run
