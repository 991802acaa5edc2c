"""The sequential gate through the real CLI and HTTP path (LiteLLM → the
fake OpenAI-compatible server on 127.0.0.1, which counts the requests)."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from llmops_cli.cli import cli
from llmops_cli.testing import FakeOpenAI

N = 300

CONFIG = """\
model: openai/fake-model
api_base: {url}
params: {{temperature: 0, max_tokens: 16}}
prompt:
  system: "{system}"
  user: "Question: {{{{ question }}}}"
dataset: {{path: questions.jsonl, id: id, inputs: [question], references: answers}}
metrics: [exact_match, token_f1, bleu]
gate:
  metrics:
    token_f1: {{max_drop: {max_drop}}}
    exact_match: {{max_drop: {max_drop}}}
{extra}baseline: baseline.json
"""


def reply(messages, body):
    """Right answers, unless the system prompt says ``broken``."""
    if "broken" in messages[0]["content"]:
        return "I do not know"
    n = re.search(r"number (\d+)", messages[-1]["content"]).group(1)
    return f"alpha {n} bravo"


def run(args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def project(tmp_path, litellm_loaded):
    rows = [{"id": f"q{i}", "question": f"What is code word number {i}?", "answers": [f"alpha {i} bravo"]}
            for i in range(N)]
    (tmp_path / "questions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with FakeOpenAI(reply=reply) as srv:
        def write(system="Answer briefly.", max_drop=0.05, extra=""):
            cfg = tmp_path / "llmops.yaml"
            cfg.write_text(CONFIG.format(url=srv.url, system=system, max_drop=max_drop, extra=extra), encoding="utf-8")
            return cfg

        cfg = write()
        assert run(["eval", cfg, "--update-baseline", "-q"]).exit_code == 0
        assert srv.request_count == N
        yield write, srv, tmp_path


def test_a_broken_candidate_stops_early_with_exit_1(project):
    write, srv, d = project
    cfg = write(system="Answer briefly, broken.")
    before = srv.request_count
    res = run(["eval", cfg, "--sequential", "-j", "8", "-o", d / "run.json", "--json", "--markdown", d / "s.md",
               "--html", d / "r.html"])
    assert res.exit_code == 1, res.output
    called = srv.request_count - before
    record = json.loads((d / "run.json").read_text())
    seq = record["sequential"]
    assert called == seq["answered"] <= 40  # every answer was a new call; the other cases were never asked
    assert seq["total"] == N and len(seq["order"]) == N and sorted(seq["order"]) == sorted(f"q{i}" for i in range(N))
    assert len(record["cases"]) == seq["answered"] and not any(c["error"] for c in record["cases"])
    assert [c["id"] for c in record["cases"]] == seq["order"][:seq["answered"]]
    assert seq["metrics"]["token_f1"]["decision"] == "regressed" and seq["metrics"]["token_f1"]["upper"] < -0.05
    out = json.loads(res.stdout[res.stdout.index("{"):])
    s = out["sequential"]
    assert len(s["not_needed"]) == N - seq["answered"]
    assert s["headline"].startswith(f"decided after {seq['answered']} of {N} cases (")
    assert "regressed" in s["headline"] and "cases not needed" in res.output
    for report in ("s.md", "r.html"):  # the same sentence in every report
        text = (d / report).read_text()
        assert s["headline"].split(":")[0] in text and f"{N - seq['answered']} cases not needed" in text

    # the record gated again, calling nothing, says the same
    again = run(["gate", d / "run.json", cfg, "--json"])
    assert again.exit_code == 1, again.output
    assert json.loads(again.stdout[again.stdout.index("{"):])["sequential"]["headline"] == s["headline"]
    assert srv.request_count == before + called

    # and it never becomes a baseline
    promoted = run(["baseline", "update", cfg, "--from-run", d / "run.json"])
    assert promoted.exit_code == 2 and "sequential" in promoted.output


def test_an_unchanged_candidate_passes_without_answering_every_case(project):
    write, srv, d = project
    cfg = write(system="Answer briefly!", max_drop=0.1, extra="  sequential: true\n")  # new prompt: no cache hit
    before = srv.request_count
    res = run(["eval", cfg, "-j", "8", "-o", d / "run.json", "--markdown", d / "s.md"])
    assert res.exit_code == 0, res.output
    seq = json.loads((d / "run.json").read_text())["sequential"]
    assert srv.request_count - before == seq["answered"] < N
    assert all(m["decision"] == "within" for m in seq["metrics"].values())
    assert "of model calls saved" in (d / "s.md").read_text()


@pytest.mark.parametrize("args, says", [
    (["--shard", "1/2"], "--shard"),
    (["--update-baseline"], "--update-baseline"),
])
def test_refused_combinations(project, args, says):
    write, srv, d = project
    before = srv.request_count
    res = run(["eval", write(system="Answer briefly, broken."), "--sequential", *args])
    assert res.exit_code == 2 and says in res.output
    assert srv.request_count == before


def test_a_gated_corpus_metric_is_refused_before_any_call(project):
    write, srv, d = project
    cfg = write(system="Answer briefly, broken.", extra="    bleu: {max_drop: 1}\n")
    before = srv.request_count
    res = run(["eval", cfg, "--sequential"])
    assert res.exit_code == 2, res.output
    assert "gate.metrics.bleu" in res.output and "per-case means" in res.output
    assert srv.request_count == before


def test_a_config_that_says_sequential_still_writes_a_whole_baseline(project):
    write, srv, d = project
    cfg = write(system="Answer briefly?", extra="  sequential: true\n")
    before = srv.request_count
    assert run(["eval", cfg, "--update-baseline", "-q"]).exit_code == 0
    assert srv.request_count - before == N


# -- the verdict at the end of the eval set, from records (no model) --------------------------

def _records(deltas: list[float]):
    """A baseline scoring 0.5 everywhere and a candidate ``0.5 + delta`` per case."""
    from llmops_cli.record.schema import CaseRecord, MetricSummary, RunRecord

    def rec(kind, shift):
        cases = [CaseRecord(id=f"c{i}", inputs={}, references=["x"], output="x",
                            scores={"token_f1": 0.5 + shift[i]}) for i in range(len(deltas))]
        return RunRecord(kind=kind, dataset_hash="d", metrics={"token_f1": MetricSummary(aggregate=0.5)}, cases=cases)

    return rec("baseline", [0.0] * len(deltas)), rec("run", deltas)


@pytest.mark.parametrize("mode, verdict, code", [("paired", "pass", 0), ("strict", "unproven", 1)])
def test_undecided_at_the_end_passes_in_paired_mode_and_is_unproven_in_strict(mode, verdict, code):
    from llmops_cli.config import Gate, GateRule
    from llmops_cli.gate.outcome import from_comparison
    from llmops_cli.gate.sequential_rules import SequentialGate, compare_sequential

    rng = __import__("random").Random(1)
    base, cand = _records([rng.choice([-0.3, 0.3]) for _ in range(60)])  # noisy, mean near 0: too few to decide
    gate = Gate(mode=mode, metrics={"token_f1": GateRule(max_drop=0.02)}, sequential=True)
    state = SequentialGate(gate, base, [c.id for c in cand.cases])
    for start in range(0, 60, 10):
        state.observe(cand.cases[start:start + 10])
    assert state.decisions == {"token_f1": "undecided"} and not state.done
    cand.sequential = state.info()
    cmp = compare_sequential(base, cand, gate, check_dataset=False)
    m = cmp.metrics[0]
    assert m.verdict == verdict and "undecided after 60 of 60 cases" in m.reason
    assert m.ci_low < -0.02 < m.ci_high and m.mde is None
    assert cmp.sequential["headline"].startswith("undecided after 60 of 60 cases (0% of model calls saved)")
    assert from_comparison(cmp, cand).exit_code == code


def test_a_replayed_record_with_a_missing_case_is_refused():
    from llmops_cli.config import Gate, GateRule
    from llmops_cli.core.errors import InputError
    from llmops_cli.gate.sequential_rules import SequentialGate, compare_sequential

    base, cand = _records([-0.5] * 40)
    gate = Gate(metrics={"token_f1": GateRule(max_drop=0.02)}, sequential=True)
    state = SequentialGate(gate, base, [c.id for c in cand.cases])
    state.observe(cand.cases[:20])
    cand.sequential = state.info()
    cand.cases = cand.cases[1:20]  # the record lost an answered case
    with pytest.raises(InputError, match="c0"):
        compare_sequential(base, cand, gate, check_dataset=False)
