"""``llmops init``: the starter project (:func:`llmops_cli.jobs.starter.create_project`)
is written whole or not at all, never overwrites a file, appends ``.llmops/``
to an existing ``.gitignore`` only when needed, loads as a valid config and
eval set — and, end to end in a child process as a new user would run it,
gates offline on the embedded model."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import needs_local_model
from llmops_cli.jobs import starter
from llmops_cli.config import load_config
from llmops_cli.plan.dataset import load_dataset
from llmops_cli.core.errors import InputError, OutputError
from llmops_cli.plan.prompt import render_messages
from llmops_cli.jobs.starter import create_project

SCHEMA_LINE = ("# yaml-language-server: $schema="
               "https://raw.githubusercontent.com/llmops-cli/llmops-cli/main/schema/llmops.schema.json")
FILES = ["llmops.yaml", "prompts/user.j2", "data/evals.jsonl", "LLMOPS.md", ".gitignore"]


def snapshot(root: Path) -> dict[str, tuple[bytes, int] | None]:
    """Every path under ``root`` → (bytes, mtime_ns) for a file, None for a folder."""
    if not root.exists():
        return {}
    return {p.relative_to(root).as_posix(): ((p.read_bytes(), p.stat().st_mtime_ns) if p.is_file() else None)
            for p in sorted(root.rglob("*"))}


# -- writing ---------------------------------------------------------------------

def test_writes_the_starter_files_and_returns_them_in_order(tmp_path):
    root = tmp_path / "new" / "project"  # parents are created too
    written = create_project(root)
    assert written == [root / f for f in FILES]
    files_on_disk = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert files_on_disk == sorted(FILES)
    for path in written:
        data = path.read_bytes()
        assert data and b"\r" not in data and data.endswith(b"\n"), path
        data.decode("utf-8")
    assert (root / "llmops.yaml").read_text(encoding="utf-8").split("\n")[0] == SCHEMA_LINE
    assert ".llmops/" in (root / ".gitignore").read_text(encoding="utf-8").splitlines()
    assert "{{ question }}" in (root / "prompts/user.j2").read_text(encoding="utf-8")
    readme = (root / "LLMOPS.md").read_text(encoding="utf-8")
    assert "llmops eval llmops.yaml --update-baseline" in readme and readme.count("llmops eval llmops.yaml") >= 2
    assert "openai/gpt-4o-mini" in readme and "OPENAI_API_KEY" in readme
    assert all(f"| {code} |" in readme for code in range(4))  # the exit codes


def test_accepts_a_str_and_an_existing_empty_folder(tmp_path):
    written = create_project(str(tmp_path))
    assert written == [tmp_path / f for f in FILES]


def test_the_config_loads_and_every_case_has_references(tmp_path):
    create_project(tmp_path)
    cfg = load_config(tmp_path / "llmops.yaml")
    assert cfg.model == "local/smollm2-135m"
    assert cfg.params.temperature == 0 and cfg.params.seed == 0 and cfg.params.stop == ["\n"]
    assert cfg.params.max_tokens <= 32  # short answers keep the first run quick
    assert cfg.metrics == ["exact_match", "token_f1", "rougeL"]
    assert cfg.gate.metrics and all(rule.max_drop is not None for rule in cfg.gate.metrics.values())
    assert cfg.baseline_path == tmp_path / "baseline.json"
    cases = load_dataset(cfg.dataset, cfg.base_dir)
    assert 5 <= len(cases) <= 12  # small: the first run on the embedded model takes seconds
    assert len({c.id for c in cases}) == len(cases)
    for case in cases:
        assert case.references and all(isinstance(r, str) and r.strip() for r in case.references), case.id
        question = case.inputs["question"]
        messages = render_messages(cfg.system_template, cfg.user_template, case.inputs, cfg.path)
        assert messages[-1]["role"] == "user" and question in messages[-1]["content"]
        assert not any(ref in messages[-1]["content"] for ref in case.references)  # no answer leaks into the prompt


# -- refusing --------------------------------------------------------------------

@pytest.mark.parametrize("existing", ["llmops.yaml", "prompts/user.j2", "data/evals.jsonl", "LLMOPS.md"])
def test_refuses_when_any_target_exists_and_writes_nothing(tmp_path, existing):
    (tmp_path / existing).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / existing).write_text("mine\n", encoding="utf-8")
    before = snapshot(tmp_path)
    with pytest.raises(InputError) as err:
        create_project(tmp_path)
    assert not isinstance(err.value, OutputError)
    msg = str(err.value)
    assert "\n" not in msg and Path(err.value.path) == tmp_path / existing and "already exists" in msg
    assert snapshot(tmp_path) == before


def test_names_the_first_existing_file(tmp_path):
    (tmp_path / "LLMOPS.md").write_text("mine\n", encoding="utf-8")
    (tmp_path / "llmops.yaml").write_text("mine\n", encoding="utf-8")
    with pytest.raises(InputError) as err:
        create_project(tmp_path)
    assert Path(err.value.path) == tmp_path / "llmops.yaml"


def test_a_second_run_refuses_and_changes_nothing(tmp_path):
    create_project(tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(InputError, match="already exists"):
        create_project(tmp_path)
    assert snapshot(tmp_path) == before


def test_refuses_a_directory_that_is_a_file(tmp_path):
    target = tmp_path / "project"
    target.write_text("not a folder\n", encoding="utf-8")
    before = snapshot(tmp_path)
    with pytest.raises(InputError) as err:
        create_project(target)
    assert Path(err.value.path) == target and "not a folder" in str(err.value)
    assert snapshot(tmp_path) == before
    with pytest.raises(InputError) as err:  # a parent that is a file
        create_project(target / "sub")
    assert Path(err.value.path) == target
    assert snapshot(tmp_path) == before


def test_refuses_a_needed_subfolder_that_is_a_file(tmp_path):
    (tmp_path / "data").write_text("a file, not a folder\n", encoding="utf-8")
    before = snapshot(tmp_path)
    with pytest.raises(InputError) as err:
        create_project(tmp_path)
    assert Path(err.value.path) == tmp_path / "data"
    assert snapshot(tmp_path) == before


def test_refuses_a_dangling_symlink_target(tmp_path):
    (tmp_path / "llmops.yaml").symlink_to(tmp_path / "elsewhere.yaml")
    with pytest.raises(InputError, match="already exists"):
        create_project(tmp_path)
    assert not (tmp_path / "elsewhere.yaml").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["llmops.yaml"]


# -- .gitignore ------------------------------------------------------------------

@pytest.mark.parametrize(("before", "after"), [
    ("node_modules/\n", "node_modules/\n.llmops/\n"),
    ("node_modules/", "node_modules/\n.llmops/\n"),  # no final newline: one is added first
    ("", ".llmops/\n"),
    ("dist/\r\n*.pyc\r\n", "dist/\r\n*.pyc\r\n.llmops/\r\n"),  # keeps the file's line endings
    (".llmops-old\n#.llmops/\n", ".llmops-old\n#.llmops/\n.llmops/\n"),  # neither line ignores .llmops/
])
def test_appends_to_an_existing_gitignore_once(tmp_path, before, after):
    gitignore = tmp_path / ".gitignore"
    gitignore.write_bytes(before.encode())
    written = create_project(tmp_path)
    assert written == [tmp_path / f for f in FILES]
    assert gitignore.read_bytes() == after.encode()
    with pytest.raises(InputError):  # again: refused, and .llmops/ still listed once
        create_project(tmp_path)
    assert gitignore.read_bytes() == after.encode()


@pytest.mark.parametrize("line", [".llmops", ".llmops/", "/.llmops/", "  .llmops/  "])
def test_leaves_a_gitignore_that_already_ignores_llmops(tmp_path, line):
    gitignore = tmp_path / ".gitignore"
    gitignore.write_text(f"dist/\n{line}\n*.pyc\n", encoding="utf-8")
    before = gitignore.stat().st_mtime_ns, gitignore.read_bytes()
    written = create_project(tmp_path)
    assert written == [tmp_path / f for f in FILES if f != ".gitignore"]
    assert (gitignore.stat().st_mtime_ns, gitignore.read_bytes()) == before
    assert (tmp_path / "llmops.yaml").is_file()


def test_refuses_a_gitignore_that_is_a_folder(tmp_path):
    (tmp_path / ".gitignore").mkdir()
    before = snapshot(tmp_path)
    with pytest.raises(InputError) as err:
        create_project(tmp_path)
    assert Path(err.value.path) == tmp_path / ".gitignore"
    assert snapshot(tmp_path) == before


# -- write failures --------------------------------------------------------------

def _failing_open(fail_when):
    real_open = open

    def fake(file, mode="r", *args, **kwargs):
        if fail_when(Path(file), mode):
            raise OSError(28, "No space left on device", str(file))
        return real_open(file, mode, *args, **kwargs)

    return fake


def test_a_write_failure_is_an_output_error_and_undoes_what_was_written(tmp_path, monkeypatch):
    root = tmp_path / "a" / "project"
    monkeypatch.setattr(starter, "open", _failing_open(lambda p, mode: p.name == "evals.jsonl"), raising=False)
    with pytest.raises(OutputError) as err:
        create_project(root)
    assert Path(err.value.path) == root / "data" / "evals.jsonl" and "No space left" in str(err.value)
    assert err.value.exit_code == 2 and "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == []  # the files and the folders it created are gone


def test_a_failed_gitignore_append_leaves_it_as_it_was(tmp_path, monkeypatch):
    gitignore = tmp_path / ".gitignore"
    gitignore.write_text("dist/\n", encoding="utf-8")
    before = snapshot(tmp_path)
    monkeypatch.setattr(starter, "open", _failing_open(lambda p, mode: mode == "ab"), raising=False)
    with pytest.raises(OutputError) as err:
        create_project(tmp_path)
    assert Path(err.value.path) == gitignore
    assert snapshot(tmp_path) == before


def test_importing_the_module_stays_light():
    code = ("import sys; import llmops_cli.jobs.starter; "
            "heavy = [m for m in ('litellm', 'yaml', 'pydantic', 'jinja2', 'llama_cpp') if m in sys.modules]; "
            "print(heavy); sys.exit(1 if heavy else 0)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


# -- end to end, offline, as a new user ------------------------------------------

def _user_env() -> dict[str, str]:
    """A new user's environment: no API key, the default cache folder (./.llmops)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "LLMOPS_CACHE_DIR")}
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    return env


def _llmops(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "llmops_cli.cli", *args], cwd=cwd, env=_user_env(),
                          capture_output=True, text=True, timeout=600)


@pytest.mark.local_model
@needs_local_model
def test_init_then_eval_offline_on_the_embedded_model(tmp_path):
    project = tmp_path / "my-evals"
    res = _llmops("init", "my-evals", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "llmops.yaml" in res.stdout and "--update-baseline" in res.stdout  # the files and the next command
    assert sorted(p.relative_to(project).as_posix() for p in project.rglob("*") if p.is_file()) == sorted(FILES)

    res = _llmops("eval", "llmops.yaml", "--update-baseline", cwd=project)
    assert res.returncode == 0, res.stdout + res.stderr
    assert (project / "baseline.json").is_file()
    assert (project / ".llmops" / "cache").is_dir() and (project / ".llmops" / "runs").is_dir()

    res = _llmops("eval", "llmops.yaml", cwd=project)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "gate passed" in res.stdout
    assert re.search(r"cache \d+ hit / 0 miss", res.stdout), res.stdout  # answered from ./.llmops/cache

    before = snapshot(project)
    res = _llmops("init", "my-evals", cwd=tmp_path)
    assert res.returncode == 2, res.stdout + res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("llmops: error:") and "llmops.yaml" in lines[0], res.stderr
    assert "already exists" in lines[0]
    assert snapshot(project) == before
