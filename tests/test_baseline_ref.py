"""`llmops eval CONFIG --baseline-ref REF`: the working tree gated against the
same config as it is at a git commit, in a real temporary git repository
(two commits) against the fake OpenAI server on 127.0.0.1; the checkout is
private (no worktree, nothing left in the temporary folder, the working tree
untouched)."""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import QUESTIONS, write_jsonl
from llmops_cli.cli import cli
from llmops_cli.jobs.evaluate import EvalOptions, evaluate
from llmops_cli.testing import FakeOpenAI

N = len(QUESTIONS)
GOOD, WORSE = 'system: "Answer briefly."', 'system: "Answer vaguely."'


def answers(messages, body):
    """The first reference answer — unless the system prompt asks for vague answers."""
    if "vaguely" in messages[0]["content"]:
        return "something or other"
    q = messages[-1]["content"].rsplit("Question: ", 1)[-1].strip()
    return next((c["answers"][0] for c in QUESTIONS if c["question"] == q), "I do not know")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=llmops tests", "-c", "user.email=tests@example.invalid",
                           "-c", "commit.gpgsign=false", *args], cwd=repo, check=True, capture_output=True,
                          text=True).stdout.strip()


def commit(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def one_error_line(res) -> str:
    assert res.exit_code == 2, res.output
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("llmops: error: "), res.stderr
    return " ".join(res.stderr.split())


@pytest.fixture
def repo(tmp_path, make_project, litellm_loaded, monkeypatch):
    """A git repository (``tmp_path``) holding a project in ``project0/``
    whose first commit answers well; cwd is the project, the temporary
    folder is private. Yields ``(config, server, first commit)``."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/dev/null")  # the developer's git settings play no part
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    temp = tmp_path.parent / f"{tmp_path.name}-temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    with FakeOpenAI(reply=answers) as srv:
        cfg = make_project(srv.url)
        (tmp_path / ".gitignore").write_text(".llmops/\n", encoding="utf-8")
        git(tmp_path, "init", "-q")
        first = commit(tmp_path, "a good prompt")
        monkeypatch.chdir(cfg.parent)
        yield cfg, srv, first
    assert not list(temp.glob("llmops-ref-*")), "a checkout was left behind"
    assert len(git(tmp_path, "worktree", "list").splitlines()) == 1  # no worktree was added


def short(repo: Path, sha: str) -> str:
    return git(repo, "rev-parse", "--short", sha)


def test_a_regression_between_two_commits_exits_1(repo):
    cfg, srv, first = repo
    edit(cfg, GOOD, WORSE)
    second = commit(cfg.parent.parent, "a worse prompt")
    res = run("eval", cfg, "--baseline-ref", "HEAD~1", "--json", "--markdown", ".llmops/summary.md")
    assert res.exit_code == 1, res.output
    out = json.loads(res.stdout)
    summary = (cfg.parent / ".llmops" / "summary.md").read_text()
    assert short(cfg.parent.parent, first) in summary and short(cfg.parent.parent, second) in summary  # both commits
    assert out["commits"] == {"baseline": f"HEAD~1 {short(cfg.parent.parent, first)}",
                              "candidate": f"working tree at {short(cfg.parent.parent, second)}"}
    assert not out["passed"] and [m["verdict"] for m in out["metrics"]] == ["regressed"]
    assert "prompt.system: \"Answer briefly.\" → \"Answer vaguely.\"" in " ".join(res.stderr.split())
    assert f"baseline HEAD~1 {short(cfg.parent.parent, first)}" in " ".join(res.stderr.split())
    assert srv.request_count == 2 * N  # both configs ran, nothing asked twice
    records = [json.loads(p.read_text()) for p in (cfg.parent / ".llmops" / "runs").glob("*.json")]
    assert sorted(r["config_path"] for r in records) == ["HEAD~1:project0/llmops.yaml", "llmops.yaml"]  # side by side
    at_ref = next(r for r in records if r["config_path"].startswith("HEAD~1:"))
    assert at_ref["config"]["prompt"]["system"] == "Answer briefly."
    assert git(cfg.parent.parent, "status", "--porcelain") == ""


def test_identical_commits_pass_and_a_warm_cache_calls_nothing(repo):
    cfg, srv, first = repo
    res = run("eval", cfg, "--baseline-ref", "HEAD")
    assert res.exit_code == 0, res.output
    assert srv.request_count == N  # the ref's run filled the cache; the working tree's asked the same
    res = run("eval", cfg, "--baseline-ref", "HEAD", "--json")
    assert res.exit_code == 0, res.output
    assert srv.request_count == N  # warm cache: zero new model calls
    out = json.loads(res.stdout)
    sha = short(cfg.parent.parent, first)
    assert out["commits"] == {"baseline": f"HEAD {sha}", "candidate": f"working tree at {sha}"}
    assert out["config_changes"] == [] and out["passed"]
    assert git(cfg.parent.parent, "status", "--porcelain") == ""


def test_uncommitted_changes_to_a_file_outside_the_config_folder(repo):
    """The prompt lives in ../shared/: REF's copy is read at REF, the edited
    one in the working tree; the candidate is named as uncommitted."""
    cfg, srv, _ = repo
    root = cfg.parent.parent
    (root / "shared").mkdir()
    (root / "shared" / "system.j2").write_text("Answer briefly.", encoding="utf-8")
    edit(cfg, GOOD, "system_file: ../shared/system.j2")
    second = commit(root, "the system prompt in a shared file")
    (root / "shared" / "system.j2").write_text("Answer vaguely.", encoding="utf-8")  # not committed
    res = run("eval", cfg, "--baseline-ref", "HEAD", "--json")
    assert res.exit_code == 1, res.output
    sha = short(root, second)
    assert json.loads(res.stdout)["commits"] == {"baseline": f"HEAD {sha}", "candidate": f"{sha} + uncommitted changes"}
    assert (root / "shared" / "system.j2").read_text() == "Answer vaguely."  # the working tree is untouched
    assert git(root, "status", "--porcelain") == "M shared/system.j2"


def test_a_ref_that_names_no_commit_is_exit_2_before_any_call(repo):
    cfg, srv, _ = repo
    line = one_error_line(run("eval", cfg, "--baseline-ref", "no-such-branch"))
    assert "llmops.yaml: --baseline-ref no-such-branch: 'no-such-branch' is not a commit" in line
    assert srv.request_count == 0


def test_a_ref_without_the_config_is_exit_2(repo):
    cfg, srv, first = repo
    root = cfg.parent.parent
    git(root, "mv", "project0", "moved")
    commit(root, "moved")
    moved = root / "moved" / "llmops.yaml"
    git(root, "mv", "moved", "project0")  # back again, uncommitted: HEAD has no project0/llmops.yaml
    line = one_error_line(run("eval", cfg, "--baseline-ref", "HEAD"))
    assert f"--baseline-ref HEAD: HEAD ({short(root, 'HEAD')}) has no project0/llmops.yaml" in line
    assert srv.request_count == 0 and not moved.exists()


def test_outside_a_git_repository_is_exit_2(make_project, litellm_loaded, monkeypatch, tmp_path):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # never find a repository above the test folder
    with FakeOpenAI(reply=answers) as srv:
        cfg = make_project(srv.url)
        monkeypatch.chdir(cfg.parent)
        line = one_error_line(run("eval", cfg, "--baseline-ref", "HEAD"))
        assert "llmops.yaml: --baseline-ref HEAD: not inside a git repository" in line
        assert srv.request_count == 0


def test_a_bad_config_at_the_ref_is_named_at_the_ref(repo):
    cfg, srv, _ = repo
    edit(cfg, "max_tokens: 32", "max_tokens: 32, colour: blue")
    commit(cfg.parent.parent, "an unknown key")
    edit(cfg, "max_tokens: 32, colour: blue", "max_tokens: 32")
    line = one_error_line(run("eval", cfg, "--baseline-ref", "HEAD"))
    assert line.startswith("llmops: error: HEAD:project0/llmops.yaml: params.colour: unknown key"), line
    assert "llmops-ref-" not in line and srv.request_count == 0


def test_a_changed_eval_set_is_exit_2_unless_allowed(repo):
    cfg, srv, first = repo
    rows = [dict(q) for q in QUESTIONS]
    rows[0]["answers"] = ["Denver"]  # q1 changed
    rows = rows[:-1] + [{"id": "q7", "question": "Who won Super Bowl 50?", "answers": ["Broncos"]}]  # q6 out, q7 in
    write_jsonl(cfg.parent / "questions.jsonl", rows)
    line = one_error_line(run("eval", cfg, "--baseline-ref", "HEAD"))
    assert "the eval set differs at HEAD (1 cases added, 1 changed, 1 removed)" in line
    assert "--allow-dataset-change" in line and srv.request_count == 0
    res = run("eval", cfg, "--baseline-ref", "HEAD", "--allow-dataset-change", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert sorted(out["only_candidate"]) == ["q1", "q7"] and out["only_baseline"] == ["q6"]
    assert [m["n"] for m in out["metrics"]] == [N - 2]  # only the cases both hold unchanged
    assert ("eval set changed since HEAD (--allow-dataset-change): 4 cases compared; 1 added, 1 changed and "
            "1 removed are not compared") in " ".join(res.stderr.split())


def test_the_ref_run_that_cannot_complete_is_exit_3(repo):
    cfg, srv, _ = repo
    edit(cfg, srv.url, "http://127.0.0.1:9/v1")  # nothing listens there
    commit(cfg.parent.parent, "a dead endpoint")
    edit(cfg, "http://127.0.0.1:9/v1", srv.url)
    res = run("eval", cfg, "--baseline-ref", "HEAD", "--retries", "0")
    assert res.exit_code == 3, res.output
    assert "the baseline at HEAD could not be measured" in " ".join(res.stderr.split())
    assert srv.request_count == 0  # the working tree never ran


@pytest.mark.parametrize("extra", [["--update-baseline"], ["--shard", "1/2"], ["--baseline", "b.json"]])
def test_options_that_cannot_go_with_a_ref(repo, extra):
    cfg, srv, _ = repo
    line = one_error_line(run("eval", cfg, "--baseline-ref", "HEAD", *extra))
    assert f"--baseline-ref: cannot go with {extra[0]}" in line


def test_allow_dataset_change_needs_a_ref(repo):
    cfg, *_ = repo
    assert "--allow-dataset-change: only goes with --baseline-ref" in one_error_line(
        run("eval", cfg, "--allow-dataset-change"))


def test_python_checks_are_imported_from_the_ref(repo):
    """A `module:function` check next to the config: REF's version of the
    module grades REF's answers, the working tree's the candidate's."""
    cfg, srv, first = repo
    checks = cfg.parent / "mychecks.py"
    checks.write_text("def short(output):\n    return len(output) < 100\n", encoding="utf-8")
    cfg.write_text(cfg.read_text() + "checks:\n  short: {python: \"mychecks:short\"}\n"
                   "  # gated below\n", encoding="utf-8")
    edit(cfg, "token_f1: {max_drop: 0.05}", "token_f1: {max_drop: 0.05}\n    short: {max_drop: 0.05}")
    commit(cfg.parent.parent, "a python check")
    checks.write_text("def short(output):\n    return len(output) < 3\n", encoding="utf-8")  # stricter now
    out = evaluate(EvalOptions(cfg, baseline_ref="HEAD"))
    assert out.exit_code == 1, out.reason
    short_check = next(m for m in out.comparison.metrics if m.metric == "short")
    assert (short_check.baseline, short_check.candidate, short_check.verdict) == (1.0, 0.0, "regressed")
    assert out.comparison.commits["candidate"].endswith("+ uncommitted changes")


def test_a_gated_metric_the_ref_does_not_measure_is_exit_2(repo):
    cfg, srv, _ = repo
    (cfg.parent / "mychecks.py").write_text("def short(output):\n    return len(output) < 100\n", encoding="utf-8")
    cfg.write_text(cfg.read_text() + "checks:\n  short: {python: \"mychecks:short\"}\n", encoding="utf-8")
    edit(cfg, "token_f1: {max_drop: 0.05}", "token_f1: {max_drop: 0.05}\n    short: {max_drop: 0.05}")
    line = one_error_line(run("eval", cfg, "--baseline-ref", "HEAD"))
    assert "gate.metrics.short: HEAD:project0/llmops.yaml does not measure it" in line
    assert srv.request_count == 0


def test_ctrl_c_during_the_ref_run_leaves_no_checkout(repo):
    cfg, srv, _ = repo

    def interrupt(done, total):
        if done == 2:
            raise KeyboardInterrupt

    out = evaluate(EvalOptions(cfg, baseline_ref="HEAD", concurrency=1), progress=interrupt)
    assert out.exit_code == 130, out.reason
    assert "the baseline at HEAD could not be measured" in out.reason and "partial run record" in out.reason
    assert srv.request_count < N  # the working tree never ran
