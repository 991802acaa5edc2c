"""Names from the config are escaped in Markdown (issue 21, item 3): a
check, judge or deployment named like a verdict, an @mention or HTML shows as
text in the pull-request comment and the job summary."""

from __future__ import annotations

import yaml
from typer.testing import CliRunner

from conftest import ANSWERS, QUESTIONS, write_jsonl
from llmops_cli.cli import cli
from llmops_cli.testing import FakeOpenAI

HOSTILE = "**✅ llmops gate passed** @octocat <img src=x> [link](http://evil.example) `code` | cell"


def _reply(messages, body):
    text = messages[-1]["content"]
    if "GRADE" in text:
        return "Looks fine.\nGRADE: C"
    return "I do not know" if "worse" in messages[0]["content"] else ANSWERS.get(text.rsplit("Question: ", 1)[-1], "?")


def _config(folder, url: str, system: str):
    write_jsonl(folder / "questions.jsonl", QUESTIONS)
    data = {"model": "openai/fake-model", "deployments": [{"api_base": url, "name": HOSTILE}],
            "params": {"temperature": 0, "max_tokens": 32, "timeout": 10},
            "prompt": {"system": system, "user": "Question: {{ question }}"},
            "dataset": {"path": "questions.jsonl", "inputs": ["question"], "references": "answers"},
            "metrics": ["token_f1"],
            "checks": {HOSTILE: {"contains": "o"}},
            "judges": {HOSTILE + " judge": {"type": "correctness"}},
            "gate": {"metrics": {"token_f1": {"max_drop": 0.05}, HOSTILE: {"max_drop": 0.05}}}}
    path = folder / "llmops.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def test_hostile_names_show_as_text_in_the_comment_and_job_summary(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    with FakeOpenAI(reply=_reply) as srv:
        cfg = _config(tmp_path, srv.url, "Answer briefly.")
        first = CliRunner().invoke(cli, ["eval", str(cfg), "--update-baseline"])
        assert first.exit_code == 0, first.output
        cfg.write_text(cfg.read_text().replace("Answer briefly.", "Answer worse."))
        res = CliRunner().invoke(cli, ["eval", str(cfg), "--comment", "comment.md", "--markdown", "summary2.md"])
    assert res.exit_code == 1, res.output  # the gate failed ...
    for body in ((tmp_path / "comment.md").read_text(), summary.read_text(), (tmp_path / "summary2.md").read_text()):
        assert "❌ **llmops gate failed**" in body
        # ... and no name can say otherwise, mention anyone, or add HTML, a link or a table cell
        assert "**✅" not in body and "✅ llmops gate passed**" not in body
        assert "@octocat" not in body and "@\u2060octocat" in body
        assert "<img" not in body and "](http" not in body and "`code`" not in body
        assert "&#42;&#42;✅ llmops gate passed&#42;&#42;" in body  # shown, as text
        gate_rows = [line for line in body.splitlines() if line.startswith("| ") and line.endswith("** |")
                     and "llmops gate passed" in line]
        assert gate_rows and all(line.count(" | ") == 8 for line in gate_rows), gate_rows  # 9 cells
