"""The Markdown summary and the pull-request comment (llmops_cli.report.markdown):
the fallen cases in <details> blocks, outputs side by side, untrusted text
escaped, GitHub's size limit kept for 10,000 cases, the marker line; and the
GitHub Action (action.yml) that posts it — its structure, and its gate step's
shell run for real."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from conftest import ANSWERS
from llmops_cli.cli import cli
from llmops_cli.gate.comparison import CaseChange, Comparison, MetricComparison
from llmops_cli.gate.outcome import Outcome
from llmops_cli.record.schema import CaseRecord, JudgeResult, JudgeSample, RunRecord, load_record
from llmops_cli.report import MARKER_PREFIX, comment_body, comment_marker, markdown, no_verdict_comment
from llmops_cli.report.markdown import COMMENT_LIMIT, MARKDOWN_BUDGET, escape
from llmops_cli.testing import FakeOpenAI

ROOT = Path(__file__).resolve().parents[1]
HOSTILE = "<script>alert('x')</script></details> | ```\nrm -rf @octocat [link](javascript:alert(1)) & done"
BLOCK = re.compile(r"<details><summary>(.*?)</summary>\n(.*?)\n</details>", re.S)


def cells(row: str) -> list[str]:
    """A Markdown table row's cells, split at unescaped pipes."""
    return [c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]]


def blocks(md: str) -> list[tuple[str, str, float]]:
    """The per-case <details> blocks: (case id, body, delta in the summary line)."""
    out = []
    for summary, body in BLOCK.findall(md):
        if "<b>" in summary:  # not a per-slice table
            out.append((re.search(r"<b>(.*?)</b>", summary).group(1), body,
                        float(re.search(r"\(([-+]\d+\.\d+)\)", summary).group(1))))
    return out


def row_after(body: str, header: str) -> list[str]:
    lines = body.splitlines()
    return cells(lines[lines.index(header) + 2])


# -- a real regression against the test server ----------------------------------------------------

# The candidate's answers: q1 hostile, three others worse, q5 and q6 as before.
CANDIDATE = {**ANSWERS, "Who won Super Bowl 50?": HOSTILE, "Where was Super Bowl 50 played?": "Santa Clara",
             "Who was the most valuable player?": "Miller", "Who headlined the halftime show?": "no idea"}


@pytest.fixture
def regressed(make_project, litellm_loaded, monkeypatch):
    """A project whose baseline is ANSWERS, and a server now answering CANDIDATE."""
    answers = dict(ANSWERS)

    def reply(messages, body):
        return answers[messages[-1]["content"].rsplit("Question: ", 1)[-1].strip()]

    with FakeOpenAI(reply=reply) as srv:
        cfg = make_project(srv.url, extra='checks:\n  names_it: {icontains: "{{ references[0] }}"}\n')
        # 4 of 6 cases fell: a t-test on 6 cases (5 df) cannot show it at 97.5% (p 0.033); a floor fails the gate
        cfg.write_text(cfg.read_text().replace("token_f1: {max_drop: 0.05}", "token_f1: {max_drop: 0.05, min: 0.5}"))
        monkeypatch.chdir(cfg.parent)
        res = CliRunner().invoke(cli, ["eval", "llmops.yaml", "--update-baseline"])
        assert res.exit_code == 0, res.output
        answers.update(CANDIDATE)
        yield cfg


def test_a_regression_run_comments_the_fallen_cases_worst_first(regressed, monkeypatch):
    summary = regressed.parent / "step-summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    res = CliRunner().invoke(cli, ["eval", "llmops.yaml", "--no-cache", "--top", "10", "-o", "run.json",
                                   "--comment", "comment.md", "--markdown", "summary.md"])
    assert res.exit_code == 1, res.output
    body = (regressed.parent / "comment.md").read_text(encoding="utf-8")
    first, _, md = body.partition("\n")
    assert first == "<!-- llmops-gate: llmops.yaml -->" == comment_marker("llmops.yaml")
    assert md.startswith("❌ **llmops gate failed**")
    assert (regressed.parent / "summary.md").read_text(encoding="utf-8").startswith("❌ **llmops gate failed**")
    step = summary.read_text(encoding="utf-8")  # the job summary: the same summary, without the marker
    assert "llmops gate failed" in step and MARKER_PREFIX not in step

    base, run = load_record(regressed.parent / "baseline.json"), load_record(regressed.parent / "run.json")
    before = {c.id: c.scores["token_f1"] for c in base.cases}
    fallen = {c.id: c.scores["token_f1"] - before[c.id] for c in run.cases if c.scores["token_f1"] < before[c.id]}
    assert len(fallen) == 4
    shown = blocks(md)
    assert [cid for cid, _, _ in shown] == sorted(fallen, key=lambda cid: fallen[cid])[:len(shown)]  # worst first
    assert {cid for cid, _, _ in shown} == set(fallen)
    assert [d for _, _, d in shown] == pytest.approx(sorted(fallen.values()), abs=1e-4)

    by_id = {cid: b for cid, b, _ in shown}
    q1 = by_id["q1"]
    assert row_after(q1, "| question | reference |") == ["Who won Super Bowl 50?", "Denver Broncos<br>the Broncos"]
    baseline_out, candidate_out = row_after(q1, "| baseline | candidate |")  # side by side
    assert baseline_out == "The Denver Broncos"
    assert candidate_out == ("&lt;script&gt;alert('x')&lt;/script&gt;&lt;/details&gt; \\| &#96;&#96;&#96;<br>rm -rf "
                             "@\u2060octocat &#91;link&#93;(javascript:alert(1)) &amp; done")
    assert "| names_it |" in q1 and "| check / judge | why |" in q1  # the failed check's reason
    # nothing of the hostile output escaped its cell
    assert "<script" not in body and "```" not in body.split("**Most changed cases**")[1]
    assert body.count("<details>") == body.count("</details>") == len(shown)


def test_the_actions_gate_step_runs_llmops_and_leaves_the_exit_code_for_the_last_step(regressed, tmp_path):
    """The action's own shell, run by bash with the real llmops against the test server."""
    env, outputs = _step_env(tmp_path, regressed.parent, PATH="/usr/bin:/bin", LLMOPS_BIN=str(Path(sys.executable).parent),
                             ARGS="--no-cache")
    res = subprocess.run(["bash", "-eo", "pipefail", "-c", _step("gate")["run"]], env=env, cwd=regressed.parent,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr  # the step itself does not fail: the last step does
    out = dict(line.split("=", 1) for line in outputs.read_text().splitlines())
    assert out["exit-code"] == "1", res.stderr
    folder = Path(out["dir"])
    comment = (folder / "comment.md").read_text(encoding="utf-8")
    assert comment.splitlines()[0] == comment_marker("llmops.yaml") and "❌ **llmops gate failed**" in comment
    assert {cid for cid, _, _ in blocks(comment)} == {"q1", "q2", "q3", "q4"}
    assert load_record(folder / "run.json").kind == "run" and (folder / "report.html").is_file()
    assert "llmops gate failed" in (tmp_path / "step-summary.md").read_text(encoding="utf-8")


def test_the_actions_gate_step_comments_a_run_without_a_verdict(tmp_path):
    """llmops exits 2 writing nothing: the step still leaves a comment under the config's marker."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "llmops").write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$ARGS_SEEN"\nexit 2\n')
    (bin_dir / "llmops").chmod(0o755)
    (bin_dir / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (bin_dir / "python").chmod(0o755)
    env, outputs = _step_env(tmp_path, ROOT, PATH="/usr/bin:/bin", LLMOPS_BIN=str(bin_dir), CONFIG="ex/a b.yaml",
                             BASELINE_REF="origin/main", ARGS="--limit 3", ARGS_SEEN=str(tmp_path / "argv"))
    res = subprocess.run(["bash", "-eo", "pipefail", "-c", _step("gate")["run"]], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    out = dict(line.split("=", 1) for line in outputs.read_text().splitlines())
    assert out["exit-code"] == "2" and re.fullmatch(r"llmops-ex-a-b\.yaml-[0-9a-f]{8}-job-0-1", out["artifact"])
    argv = (tmp_path / "argv").read_text().splitlines()
    assert argv[:4] == ["eval", "ex/a b.yaml", "--baseline-ref", "origin/main"] and argv[-2:] == ["--limit", "3"]
    assert {"--comment", "--html", "-o"} <= set(argv)
    comment = Path(out["dir"], "comment.md").read_text(encoding="utf-8")
    assert comment == no_verdict_comment("ex/a b.yaml", 2)
    assert comment.startswith(comment_marker("ex/a b.yaml") + "\n") and "exit 2 (bad input)" in comment
    assert "exit 2" in (tmp_path / "step-summary.md").read_text(encoding="utf-8")


def _step_env(tmp_path: Path, cwd: Path, **extra: str) -> tuple[dict[str, str], Path]:
    outputs = tmp_path / "github-output"
    env = {**os.environ, "RUNNER_TEMP": str(tmp_path / "runner-temp"), "GITHUB_OUTPUT": str(outputs),
           "GITHUB_STEP_SUMMARY": str(tmp_path / "step-summary.md"), "CONFIG": "llmops.yaml", "BASELINE_REF": "",
           "ARGS": "", **extra}
    (tmp_path / "runner-temp").mkdir()
    return env, outputs


# -- escaping, size, marker on constructed comparisons ------------------------------------------------

def _metric(name: str = "token_f1", **kw) -> MetricComparison:
    base = dict(metric=name, n=10_000, baseline=0.9, candidate=0.5, delta=-0.4, ci_low=-0.41, ci_high=-0.39,
                p_value=0.0, mde=0.01, rule="drop ≤ 0.05 (CI)", verdict="regressed")
    return MetricComparison(**{**base, **kw})


def _comparison(cases: list[CaseChange], **kw) -> Comparison:
    return Comparison(mode="paired", confidence=0.95, resamples=1000, metrics=[_metric()], changed_cases=cases,
                      only_baseline=[], only_candidate=[], config_changes=kw.pop("config_changes", []),
                      baseline_fingerprint="a", candidate_fingerprint="b",
                      n_worse_cases=sum(c.delta < 0 for c in cases), n_improved_cases=sum(c.delta > 0 for c in cases),
                      **kw)


def _case(i: int, delta: float, text_chars: int = 50, output: str | None = None) -> CaseChange:
    long = (HOSTILE + " ") * (text_chars // len(HOSTILE) + 1)
    return CaseChange(id=f"case-{i:05d}", delta=delta, metric="token_f1", baseline_output=f"right answer {i}",
                      candidate_output=output if output is not None else long[:text_chars],
                      inputs={"question": long[:text_chars]}, references=[long[:text_chars]] * 3,
                      scores={"token_f1": (0.9, 0.9 + delta)}, reasons={"names_it": long[:text_chars]})


def test_a_hostile_output_shows_as_text_in_its_cell():
    md = markdown(_comparison([_case(0, -1.0, output=HOSTILE)]))
    (cid, body, delta), = blocks(md)
    assert cid == "case-00000" and delta == -1.0
    assert row_after(body, "| baseline | candidate |")[1].startswith("&lt;script&gt;alert('x')&lt;/script&gt;&lt;/details&gt; \\|")
    assert all(len(cells(line)) == 2 for line in body.splitlines() if line.startswith("|"))  # no | broke a row
    assert "<script" not in md and "```" not in md and md.count("</details>") == 1
    assert escape("a|b\nc", cell=False) == "a&#124;b<br>c" and escape("valid_json _x_") == "valid_json &#95;x&#95;"


def rendered(md: str) -> tuple[list[str], str, list[int]]:
    """``md`` rendered as GitHub does (CommonMark with tables; raw HTML
    kept): the HTML tags it makes, its text, and the cells per table row."""
    from html.parser import HTMLParser

    from markdown_it import MarkdownIt

    class Collect(HTMLParser):
        def __init__(self):
            super().__init__()
            self.tags, self.text, self.cells = [], [], []

        def handle_starttag(self, tag, attrs):
            self.tags.append(tag)
            if tag == "tr":
                self.cells.append(0)
            elif tag in ("td", "th"):
                self.cells[-1] += 1

        def handle_data(self, data):
            self.text.append(data)

    parser = Collect()
    parser.feed(MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(md))
    return parser.tags, "".join(parser.text), parser.cells


def test_a_rendered_summary_makes_only_its_own_html():
    md = markdown(_comparison([_case(0, -1.0, output=HOSTILE), _case(1, -0.5)],
                              config_changes=[f"prompt.user: {HOSTILE!r}"], model_drift=[HOSTILE]))
    tags, text, row_cells = rendered(md)
    assert set(tags) <= {"p", "strong", "em", "br", "table", "thead", "tbody", "tr", "th", "td", "details", "summary",
                         "b", "pre", "code", "ul", "li"}, set(tags)
    assert tags.count("details") == 2 and "script" not in tags and "a" not in tags
    assert HOSTILE.replace("\n", "") in text.replace("\u2060", "")  # shown as text, every character of it
    assert row_cells[:2] == [9, 9] and set(row_cells[2:]) == {2}  # the gate table's 9 columns; every case table's 2


def test_judge_replies_and_errors_show_in_the_case_block():
    reply = "The answer names another team. GRADE: I <img src=x>"
    rec = RunRecord(cases=[CaseRecord(id="case-00000", inputs={}, references=[], judges={"correctness": [
        JudgeResult(verdict="I", value=0.0, samples=[JudgeSample(output=reply, verdict="I", value=0.0)])]})])
    failed = _case(1, -0.5)
    failed.candidate_output, failed.candidate_error = None, "timeout after 10 s"
    md = markdown(_comparison([_case(0, -1.0), failed]), rec)
    (_, first, _), (_, second, _) = blocks(md)
    assert "| judge correctness (I) | The answer names another team. GRADE: I &lt;img src=x&gt; |" in first
    assert row_after(second, "| baseline | candidate |")[1] == "_(failed: timeout after 10 s)_"
    summary = next(line for line in md.splitlines() if line.startswith("<details><summary><b>case-00001"))
    assert summary.endswith(" · error: timeout after 10 s</summary>")  # the short reason


def test_ten_thousand_cases_with_long_hostile_outputs_fit_in_a_comment():
    n = 10_000
    cases = [_case(i, -1.0 + i / (2 * n), text_chars=5_000) for i in range(n)]
    cmp = _comparison(cases, config_changes=[f"prompt.system: {'x' * 5_000} → {HOSTILE}"] * 300,
                      slices=[_metric(slice=f"topic=v{i}|{HOSTILE[:20]}", verdict="info") for i in range(n)],
                      model_drift=[f"served {HOSTILE}"] * 100, environment_changes=[f"lib{i} 1 → 2" for i in range(500)])
    judges = {"correctness": [JudgeResult(verdict="I", samples=[JudgeSample(output=HOSTILE * 200)])]}
    rec = RunRecord(cases=[CaseRecord(id=c.id, inputs={}, references=[], judges=judges) for c in cases])
    for top in (5, n):
        body = comment_body(cmp, rec, config_path="examples/squad-rag/llmops.yaml", top=top)
        assert len(body) < COMMENT_LIMIT and len(body) <= MARKDOWN_BUDGET
        assert body.startswith("<!-- llmops-gate: examples/squad-rag/llmops.yaml -->\n❌ **llmops gate failed**")
        shown = blocks(body)
        assert shown and shown[0][0] == "case-00000" and shown[0][2] == -1.0  # the worst case is there, first
        assert [cid for cid, _, _ in shown] == [c.id for c in cases[:len(shown)]]
        assert f"_{n - len(shown):,} more changed cases not shown here" in body
        assert "(cut: 5,000 characters)" in shown[0][1]  # long texts cut, saying how long they were
        assert "<script" not in body and body.count("<details>") == body.count("</details>")
        assert "| token_f1 | 0.9000 | 0.5000 |" in body  # the gate table is kept
        tags, _, _ = rendered(body)
        assert "script" not in tags and tags.count("details") == len(shown) + 1  # the cases and the slice table
    assert len(blocks(comment_body(cmp, rec, config_path="c.yaml", top=n))) > 5  # shorter texts buy more blocks


def test_a_summary_whose_gate_table_alone_is_too_long_is_cut_at_a_line():
    cmp = _comparison([_case(0, -1.0)])
    cmp.metrics = [_metric(f"metric_{i}") for i in range(2_000)]
    md = markdown(cmp)
    assert len(md) <= MARKDOWN_BUDGET and md.endswith("Summary cut to fit GitHub's size limit: see the HTML report._\n")


def test_the_marker_names_the_config_on_one_line_that_cannot_end_early():
    assert comment_marker("./examples/squad-rag/../squad-rag/llmops.yaml") == "<!-- llmops-gate: examples/squad-rag/llmops.yaml -->"
    assert comment_marker("a.yaml") != comment_marker("b.yaml")  # two gates, two comments
    odd = comment_marker("x-->y\n<b>.yaml")
    assert odd.startswith(MARKER_PREFIX) and odd.endswith(" -->") and "-->" not in odd[:-3] and "\n" not in odd
    assert "<b>" not in odd
    body = comment_body(_comparison([]), config_path="llmops.yaml")
    assert body.split("\n")[0] == comment_marker("llmops.yaml") and "**Most changed cases**" not in body
    bad = Outcome("bad input", "llmops.yaml: params.temprature: unknown key <b>")
    assert comment_body(bad, config_path="llmops.yaml") == no_verdict_comment("llmops.yaml", 2, bad.reason)
    assert "exit 2 (bad input): llmops.yaml: params.temprature: unknown key &lt;b&gt;" in comment_body(bad, config_path="x")
    passed = Outcome("passed", "gate passed", comparison=_comparison([]))
    assert comment_body(passed, config_path="llmops.yaml") == comment_body(passed.comparison, config_path="llmops.yaml")
    assert no_verdict_comment("c.yaml", 3, "too many errors").startswith(
        comment_marker("c.yaml") + "\n⚠️ **llmops gate could not decide** — exit 3 (incomplete): too many errors")


# -- the action -------------------------------------------------------------------------------------------

def _action() -> dict:
    return yaml.safe_load((ROOT / "action.yml").read_text(encoding="utf-8"))


def _step(step_id: str) -> dict:
    return next(s for s in _action()["runs"]["steps"] if s.get("id") == step_id)


def test_the_action_is_composite_and_uses_its_inputs():
    action = _action()
    assert action["runs"]["using"] == "composite"
    inputs = action["inputs"]
    assert {"config", "baseline-ref", "args", "python-version", "cache-key", "github-token", "comment"} <= set(inputs)
    assert inputs["config"]["required"] is True and inputs["github-token"]["default"] == "${{ github.token }}"
    steps = action["runs"]["steps"]
    text = json.dumps(steps)
    for name in inputs:
        assert f"inputs.{name}" in text, name
    for step in steps:
        if "uses" in step:
            assert re.fullmatch(r"actions/[\w-]+(/[\w-]+)?@[0-9a-f]{40}", step["uses"]), step["uses"]  # pinned by SHA
        else:
            assert step["shell"] == "bash" and len(step["run"].splitlines()) <= 14  # shell kept short
    uses = [s.get("uses", "").split("@")[0] for s in steps]
    assert "actions/setup-python" in uses and "actions/upload-artifact" in uses
    gate_at = next(i for i, s in enumerate(steps) if s.get("id") == "gate")
    cache_at = {s.get("with", {}).get("path"): i for i, s in enumerate(steps) if "actions/cache/" in s.get("uses", "")}
    assert next(i for i, s in enumerate(steps) if s.get("id") == "cache") < gate_at < len(steps) - 1
    assert uses[len(steps) - 2] == "actions/cache/save" and cache_at[".llmops/cache"] == len(steps) - 2
    restore = next(s for s in steps if s.get("id") == "cache")["with"]
    assert restore["path"] == ".llmops/cache" and "hashFiles(inputs.config)" in restore["key"] and restore["restore-keys"]
    install = next(s for s in steps if s.get("name") == "Install llmops")
    assert 'pip" install -q -c "$ACTION_PATH/constraints.txt" "$ACTION_PATH' in install["run"]
    gate = _step("gate")["run"]
    assert '"$LLMOPS_BIN/llmops" eval "$CONFIG"' in gate and "--comment" in gate and "--html" in gate and "|| code=$?" in gate
    assert steps[-1]["env"]["CODE"] == "${{ steps.gate.outputs.exit-code }}" and 'exit "${CODE' in steps[-1]["run"]
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact"))["with"]["path"]
    assert "report.html" in upload and "run.json" in upload


def test_the_actions_comment_step_finds_the_comment_by_the_librarys_marker():
    step = next(s for s in _action()["runs"]["steps"] if s.get("uses", "").startswith("actions/github-script"))
    assert "github.event_name == 'pull_request'" in step["if"] and "inputs.comment == 'true'" in step["if"]
    assert step["with"]["github-token"] == "${{ inputs.github-token }}"
    assert step["env"]["STICKY"] == "${{ github.action_path }}/comment/sticky-comment.cjs"
    script = (ROOT / "comment" / "sticky-comment.cjs").read_text(encoding="utf-8")  # the script the step requires
    assert "split('\\n')[0]" in script and f"MARKER_PREFIX = '{MARKER_PREFIX}'" in script  # the body's first line
    for call in ("listComments", "updateComment", "createComment", "viewer { login"):
        assert call in script
    assert "403" in script  # a fork's read-only token: a warning, not a failure


def test_the_example_workflow_uses_the_action_on_pull_requests():
    wf = yaml.safe_load((ROOT / "examples" / "ci" / "github-actions-pr-comment.yml").read_text(encoding="utf-8"))
    assert list(wf[True]) == ["pull_request"]  # YAML 1.1 reads the key `on` as true
    assert wf["permissions"] == {"contents": "read"}  # the comment is posted by the workflow_run workflow
    steps = wf["jobs"]["eval"]["steps"]
    assert steps[0]["uses"].startswith("actions/checkout@") and steps[0]["with"]["fetch-depth"] == 0
    gate = next(s for s in steps if s.get("uses", "").startswith("llmops-cli/llmops-cli@"))
    assert set(gate["with"]) <= set(_action()["inputs"]) and gate["with"]["config"] == "examples/squad-rag/llmops.yaml"
    assert gate["with"]["baseline-ref"].startswith("origin/")
