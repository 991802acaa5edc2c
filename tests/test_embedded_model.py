"""End to end with the real embedded model (SmolLM2-135M-Instruct via
llama-cpp-python, registered as LiteLLM's ``local`` provider): a few SQuAD
cases through the CLI, offline."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from conftest import needs_local_model
from llmops_cli.cli import cli

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "squad-rag"

pytestmark = needs_local_model


def test_embedded_model_answers_and_gates(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")  # the embedded model needs no key
    project = tmp_path / "squad-rag"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("baseline*.json"))
    runner = CliRunner()
    run_a, run_b = tmp_path / "a.json", tmp_path / "b.json"
    res = runner.invoke(cli, ["eval", str(project / "llmops.yaml"), "--limit", "3", "--update-baseline", "-o", str(run_a)],
                        catch_exceptions=False)
    assert res.exit_code == 0, res.output
    rec = json.loads(run_a.read_text())
    assert rec["status"] == "complete" and rec["config"]["model"] == "local/smollm2-135m"
    for case in rec["cases"]:
        call = case["calls"][0]
        assert isinstance(case["output"], str) and case["output"].strip()
        assert call["prompt_tokens"] > 50 and call["completion_tokens"] > 0 and call["latency_s"] > 0
        assert case["retrieval"]["chunks"][0]["id"].startswith("p")
        assert case["messages"][-1]["content"].startswith("Text: ")
    # the same configuration again: answered from the cache, gate passes
    res = runner.invoke(cli, ["eval", str(project / "llmops.yaml"), "--limit", "3", "-o", str(run_b)], catch_exceptions=False)
    assert res.exit_code == 0 and "cache 3 hit / 0 miss" in res.output
    assert [c["output"] for c in json.loads(run_b.read_text())["cases"]] == [c["output"] for c in rec["cases"]]
