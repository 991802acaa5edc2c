"""Every case counts, for every metric, through the real HTTP path (LiteLLM →
the fake OpenAI server on 127.0.0.1): a python check that raises on the
candidate's answer fails the check for that case (never left out, never a
pass); a metric that cannot score answered cases (perplexity without
log-probabilities) is bounded by ``max_unscored_share`` (exit 3)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from llmops_cli.cli import cli
from llmops_cli.testing import FakeOpenAI

QUESTIONS = [{"id": f"q{i:02d}", "question": f"What is item {i}?", "answers": [f"answer {i}"]} for i in range(40)]
READABLE = """\
import json


def readable(output):
    return bool(json.loads(output)["answer"])  # raises on an answer that is not JSON
"""


def number(messages) -> int:
    return int(messages[-1]["content"].rsplit("item ", 1)[-1].rstrip("?"))


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_a_python_check_raising_on_most_candidate_answers_never_passes(make_project, litellm_loaded):
    """The issue's case: a check that raised on 60% of the candidate's answers
    (and passed the rest) gave "1.0000 40/100 scored … pass", exit 0."""
    mode = {"json": True}

    def reply(messages, body):
        i = number(messages)
        if mode["json"] or i % 5 >= 3:  # the candidate answers 60% of the cases in plain text
            return json.dumps({"answer": f"answer {i}"})
        return f"answer {i}"

    with FakeOpenAI(reply=reply) as srv:
        cfg = make_project(srv.url, questions=QUESTIONS, extra="""
checks:
  readable: {python: "readable.py:readable"}
""")
        (cfg.parent / "readable.py").write_text(READABLE, encoding="utf-8")
        cfg.write_text(cfg.read_text().replace("    token_f1: {max_drop: 0.05}\n", "    readable: {max_drop: 0}\n"))
        res = run("eval", cfg, "--update-baseline")
        assert res.exit_code == 0, res.output
        mode["json"] = False
        res = run("eval", cfg, "--no-cache", "--json")
    assert res.exit_code in (1, 3), res.output
    assert res.exit_code == 1
    data = json.loads(res.stdout)
    m = next(x for x in data["metrics"] if x["metric"] == "readable")
    assert m["verdict"] == "regressed"
    assert m["n"] == 40 and m["n_unscored"] == 0  # no case left out
    assert m["discordant"] == {"lost": 24, "gained": 0, "n": 40} and m["test"] == "McNemar exact"
    assert m["candidate"] == 16 / 40


def test_a_check_that_exits_or_hangs_is_a_failed_check_and_the_run_goes_on(make_project, litellm_loaded):
    """User check code is contained: sys.exit() cannot end the run, and a call
    that outlasts its time limit fails the check for that case, with the reason."""
    with FakeOpenAI(reply=lambda messages, body: f"answer {number(messages)}") as srv:
        cfg = make_project(srv.url, questions=QUESTIONS[:6], extra="""
checks:
  quits: {python: "bad.py:quits"}
  hangs: {python: "bad.py:hangs", timeout: 0.2}
""")
        (cfg.parent / "bad.py").write_text("import sys, time\n\n\ndef quits(output):\n    sys.exit(0)\n\n\n"
                                           "def hangs(output):\n    while True:\n        time.sleep(0.01)\n", encoding="utf-8")
        out = cfg.parent / "run.json"
        res = run("eval", cfg, "-o", out, "--update-baseline")
    assert res.exit_code == 0, res.output  # the run itself completed (and may be a baseline: every case scored)
    rec = json.loads(out.read_text())
    for case in rec["cases"]:
        assert case["scores"]["quits"] == 0.0 and "raised SystemExit" in case["reasons"]["quits"]
        assert case["scores"]["hangs"] == 0.0 and "took longer than 0.2 s" in case["reasons"]["hangs"]


class SomeLogprobs(FakeOpenAI):
    """The project's fake server, returning log-probabilities for some answers only."""

    def __init__(self, *a, missing=lambda text: False, **kw):
        super().__init__(*a, **kw)
        self.missing = missing

    def _logprobs_for(self, body, text):
        return None if self.missing(text) else super()._logprobs_for(body, text)


def test_unscored_perplexity_beyond_max_unscored_share_is_exit_3(make_project, litellm_loaded):
    """Before, 5 of 8 answers without log-probabilities left the comparison
    and the gate decided on the other 3."""
    drop = {"on": False}
    with SomeLogprobs(reply=lambda messages, body: f"answer {number(messages)}",
                      missing=lambda text: drop["on"] and int(text.split()[-1]) < 5) as srv:
        cfg = make_project(srv.url, questions=QUESTIONS[:8])
        text = cfg.read_text().replace("metrics: [exact_match, token_f1, bleu, rougeL]", "metrics: [token_f1, perplexity]")
        cfg.write_text(text.replace("    token_f1: {max_drop: 0.05}\n",
                                    "    token_f1: {max_drop: 0.05}\n    perplexity: {max_increase_pct: 50}\n"))
        res = run("eval", cfg, "--update-baseline")
        assert res.exit_code == 0, res.output
        drop["on"] = True  # the provider stops returning log-probabilities for 5 of the 8 answers
        res = run("eval", cfg, "--no-cache")
    assert res.exit_code == 3, res.output
    out = " ".join(res.output.split())
    assert "perplexity: 62% of cases unscored by the metric (limit max_unscored_share" in out
    assert "3/8" in out  # the gate table shows how many cases were scored
