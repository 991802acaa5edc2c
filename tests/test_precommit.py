"""pre-commit end to end: a throwaway git repository whose local hook runs
`llmops score` (no model, no network) blocks a commit that makes the answers
worse, and is skipped for a commit that touches none of its files.

Needs the `pre-commit` package (skipped without it); also validates this
repository's .pre-commit-hooks.yaml and the example config with it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import SCORE_CONFIG

pytest.importorskip("pre_commit")

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = ROOT / "examples" / "squad-rag" / "data" / "questions.jsonl"
PREDICTIONS = ROOT / "examples" / "squad-predictions"
N_CASES = 50

if shutil.which("git") is None:
    pytest.skip("git is not installed", allow_module_level=True)


def _llmops_exe() -> str:
    near = Path(sys.executable).with_name("llmops")
    exe = str(near) if near.exists() else shutil.which("llmops")
    if exe is None:
        pytest.skip("the llmops console script is not installed")
    return exe


def _pre_commit(*args: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pre_commit", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def _git(*args: str, cwd: Path, env: dict, check: bool = True) -> subprocess.CompletedProcess:
    cmd = ["git", "-c", "user.email=ci@example.com", "-c", "user.name=llmops test", "-c", "commit.gpgsign=false", *args]
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    return res


def _answers(system: str, ids: list[str]) -> str:
    preds = json.loads((PREDICTIONS / f"predictions-{system}.json").read_text(encoding="utf-8"))
    return json.dumps({i: preds[i] for i in ids}, indent=1) + "\n"


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A git repository with pre-commit installed and a first commit (the
    baseline) that the hook let through."""
    root = tmp_path_factory.mktemp("precommit")
    work = root / "repo"
    work.mkdir()
    home = root / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "PRE_COMMIT_HOME": str(root / "pre-commit-home"),
           "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_TERMINAL_PROMPT": "0"}
    env.pop("GITHUB_STEP_SUMMARY", None)
    lines = QUESTIONS.read_text(encoding="utf-8").splitlines()[:N_CASES]
    ids = [json.loads(x)["id"] for x in lines]
    (work / "questions.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (work / "outputs.json").write_text(_answers("bert-ensemble", ids), encoding="utf-8")
    (work / "README.md").write_text("# demo\n", encoding="utf-8")
    (work / ".gitignore").write_text(".llmops/\n", encoding="utf-8")
    (work / "llmops.yaml").write_text(SCORE_CONFIG, encoding="utf-8")
    exe = _llmops_exe()
    (work / ".pre-commit-config.yaml").write_text(textwrap.dedent(f"""\
        repos:
          - repo: local
            hooks:
              - id: llmops-score
                name: llmops score gate
                entry: {exe} score llmops.yaml --outputs outputs.json
                language: system
                pass_filenames: false
                files: ^(llmops\\.yaml|outputs\\.json|questions\\.jsonl)$
        """), encoding="utf-8")
    made = subprocess.run([exe, "score", "llmops.yaml", "--outputs", "outputs.json", "--update-baseline"], cwd=work, env=env,
                          capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stdout + made.stderr
    _git("init", "-q", "-b", "main", cwd=work, env=env)
    res = _pre_commit("install", cwd=work, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert (work / ".git" / "hooks" / "pre-commit").exists()
    _git("add", "-A", cwd=work, env=env)
    first = _git("commit", "-m", "baseline", cwd=work, env=env)
    out = first.stdout + first.stderr
    assert "llmops score gate" in out and "Passed" in out  # the hook ran: same answers as the baseline
    return work, env, ids


def _head(work: Path, env: dict) -> str:
    return _git("rev-parse", "HEAD", cwd=work, env=env).stdout.strip()


def test_worse_outputs_block_the_commit(repo):
    work, env, ids = repo
    head = _head(work, env)
    (work / "outputs.json").write_text(_answers("logistic-regression", ids), encoding="utf-8")
    _git("add", "outputs.json", cwd=work, env=env)
    res = _git("commit", "-m", "worse answers", cwd=work, env=env, check=False)
    out = res.stdout + res.stderr
    assert res.returncode != 0, out
    assert "llmops score gate" in out and "Failed" in out
    assert "exit code: 1" in out  # llmops's regression exit code
    assert "regressed" in out
    assert _head(work, env) == head  # nothing was committed
    # put the good answers back (staged and in the work tree)
    _git("checkout", "HEAD", "--", "outputs.json", cwd=work, env=env)


def test_unrelated_change_skips_the_hook(repo):
    work, env, _ = repo
    head = _head(work, env)
    runs_before = set((work / ".llmops" / "runs").glob("*.json"))
    (work / "README.md").write_text("# demo\n\nmore words\n", encoding="utf-8")
    _git("add", "README.md", cwd=work, env=env)
    res = _git("commit", "-m", "docs", cwd=work, env=env)
    out = res.stdout + res.stderr
    assert "llmops score gate" in out and "Skipped" in out and "no files to check" in out
    assert _head(work, env) != head
    assert set((work / ".llmops" / "runs").glob("*.json")) == runs_before  # llmops did not run


def test_hook_manifest_and_example_config_validate():
    env = {**os.environ}
    res = _pre_commit("validate-manifest", str(ROOT / ".pre-commit-hooks.yaml"), cwd=ROOT, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    res = _pre_commit("validate-config", str(ROOT / "examples" / "ci" / "pre-commit-config.yaml"), cwd=ROOT, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    import re

    import yaml

    hook = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))[0]
    assert hook["id"] == "llmops-eval" and hook["entry"] == "llmops eval --quiet" and hook["language"] == "python"
    assert hook["pass_filenames"] is False
    rx = re.compile(hook["files"])
    for path in ("llmops.yaml", "app/llmops.yaml", "prompts/user.j2", "app/prompts/system.txt", "data/evals.jsonl",
                 "data/evals.csv", "data/evals.json", "templates/answer.j2"):
        assert rx.search(path), path
    for path in ("README.md", "src/app.py", "docs/index.html"):
        assert not rx.search(path), path
