"""``llmops init``: the starter project (:func:`llmops_cli.jobs.starter.create_project`)
is written whole or not at all, never overwrites a file, appends ``.llmops/``
to an existing ``.gitignore`` only when needed, loads as a valid config and
eval set whose gated checks a correct answer passes, ships a changed config
that differs in one prompt line and whose failure mode the gate catches —
and, end to end in a child process as a new user would run it, on the
embedded model: the baseline and the unchanged config exit 0, the changed
config exits 1 with the failed checks' reasons in the table and the HTML
report."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import jsonschema

from conftest import needs_local_model
from llmops_cli import compare, score_outputs
from llmops_cli.jobs import starter
from llmops_cli.config import load_config
from llmops_cli.plan.dataset import load_dataset
from llmops_cli.core.errors import InputError, OutputError
from llmops_cli.plan.prompt import render_messages
from llmops_cli.jobs.starter import create_project

SCHEMA_LINE = ("# yaml-language-server: $schema="
               "https://raw.githubusercontent.com/llmops-cli/llmops-cli/main/schema/llmops.schema.json")
FILES = ["llmops.yaml", "llmops.changed.yaml", "data/tickets.jsonl", "LLMOPS.md", ".gitignore"]
CHECKS = ["order_id_copied", "fits_schema", "short"]


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
    for config in ("llmops.yaml", "llmops.changed.yaml"):
        assert (root / config).read_text(encoding="utf-8").split("\n")[0] == SCHEMA_LINE
    assert ".llmops/" in (root / ".gitignore").read_text(encoding="utf-8").splitlines()
    assert "{{ order_id }}" in (root / "llmops.yaml").read_text(encoding="utf-8")
    readme = (root / "LLMOPS.md").read_text(encoding="utf-8")
    assert "llmops eval llmops.yaml --update-baseline" in readme and readme.count("llmops eval llmops.yaml") >= 2
    assert "llmops eval llmops.changed.yaml --html report.html" in readme and "exit 1" in readme
    assert "openai/gpt-4o-mini" in readme and "OPENAI_API_KEY" in readme
    assert all(f"| {code} |" in readme for code in range(4))  # the exit codes


def test_accepts_a_str_and_an_existing_empty_folder(tmp_path):
    written = create_project(str(tmp_path))
    assert written == [tmp_path / f for f in FILES]


def _schema(cfg) -> dict:
    rf = cfg.params.response_format
    assert rf["type"] == "json_schema"
    return rf["json_schema"]["schema"]


def test_the_config_loads_and_every_case_has_references(tmp_path):
    create_project(tmp_path)
    cfg = load_config(tmp_path / "llmops.yaml")
    assert cfg.model == "local/smollm2-135m"
    assert cfg.params.temperature == 0 and cfg.params.seed == 0
    assert cfg.params.max_tokens <= 64  # short answers keep the first run quick
    schema = _schema(cfg)  # decoding is constrained to it (a grammar on the embedded model)
    assert schema["required"] == ["order_id", "topic"] and schema["additionalProperties"] is False
    assert cfg.output_field == "topic" and "exact_match" in cfg.metrics
    assert sorted(cfg.checks) == sorted(CHECKS)
    assert cfg.checks["fits_schema"].json_schema == schema  # the same schema (a YAML anchor)
    # the gate guards the checks; topic accuracy is measured but not gated (the tiny model guesses it)
    assert sorted(cfg.gate.metrics) == sorted(CHECKS) and "exact_match" not in cfg.gate.metrics
    assert all(rule.max_drop is not None or rule.min is not None for rule in cfg.gate.metrics.values())
    assert cfg.baseline_path == tmp_path / "baseline.json"
    cases = load_dataset(cfg.dataset, cfg.base_dir)
    assert 30 <= len(cases) <= 40  # enough for the gate to see a large drop; a baseline and a changed run < 3 min
    assert len({c.id for c in cases}) == len(cases)
    assert len({c.inputs["order_id"] for c in cases}) == len(cases)
    topics = schema["properties"]["topic"]["enum"]
    for case in cases:
        assert case.references and all(isinstance(r, str) and r.strip() for r in case.references), case.id
        assert all(ref in topics for ref in case.references), case.id
        order_id = case.inputs["order_id"]
        assert re.fullmatch(schema["properties"]["order_id"]["pattern"], order_id), case.id
        messages = render_messages(cfg.system_template, cfg.user_template, case.inputs, cfg.path)
        # the prompt shows the inputs and nothing else: no answer leaks into it
        assert messages[-1] == {"role": "user", "content": f"Order {order_id}: {case.inputs['message']}"}
    assert {ref for case in cases for ref in case.references} == set(topics)  # every topic is asked for


def test_a_correct_answer_passes_every_check_and_an_invented_id_fails_the_gate(tmp_path):
    """Scored without a model: the answer the prompt asks for passes every gated
    check, and answers with an invented order id (what the changed config's
    model writes) make the gate fail on order_id_copied alone, with reasons."""
    create_project(tmp_path)
    cfg = load_config(tmp_path / "llmops.yaml")
    cases = load_dataset(cfg.dataset, cfg.base_dir)
    right = {c.id: json.dumps({"order_id": c.inputs["order_id"], "topic": c.references[0]}) for c in cases}
    for out in right.values():
        jsonschema.validate(json.loads(out), _schema(cfg))
    invented = {c.id: json.dumps({"order_id": "A-1234", "topic": c.references[0]}) for c in cases}
    base = score_outputs(cfg, right, name="right")
    assert {m: base.metrics[m].aggregate for m in [*CHECKS, "exact_match"]} == dict.fromkeys([*CHECKS, "exact_match"], 1.0)
    cand = score_outputs(cfg, invented, name="invented")
    assert cand.metrics["order_id_copied"].aggregate == 0.0
    assert cand.metrics["fits_schema"].aggregate == cand.metrics["short"].aggregate == 1.0
    base.kind = "baseline"
    cmp = compare(base, cand, cfg.gate)
    assert not cmp.passed and [m.metric for m in cmp.failed] == ["order_id_copied"]
    first = next(c for c in cand.cases if c.id == cases[0].id)
    assert first.reasons["order_id_copied"] == f"'A-1234' is not '{cases[0].inputs['order_id']}'"


def test_the_changed_config_differs_in_one_prompt_line(tmp_path):
    create_project(tmp_path)
    lines = {name: [line for line in (tmp_path / name).read_text(encoding="utf-8").splitlines()
                    if not line.lstrip().startswith("#")]
             for name in ("llmops.yaml", "llmops.changed.yaml")}
    differ = [(a, b) for a, b in zip(lines["llmops.yaml"], lines["llmops.changed.yaml"], strict=True) if a != b]
    assert differ == [('  user: "Order {{ order_id }}: {{ message }}"', '  user: "{{ message }}"')]
    assert "CHANGED" in (tmp_path / "llmops.changed.yaml").read_text(encoding="utf-8")
    cfg, changed = load_config(tmp_path / "llmops.yaml"), load_config(tmp_path / "llmops.changed.yaml")
    assert changed.baseline_path == cfg.baseline_path  # compared with the same baseline
    assert changed.model_dump(exclude={"prompt"}) == cfg.model_dump(exclude={"prompt"})
    for case in load_dataset(changed.dataset, changed.base_dir):  # the order id is nowhere in its prompt
        messages = render_messages(changed.system_template, changed.user_template, case.inputs, changed.path)
        assert all(case.inputs["order_id"] not in m["content"] for m in messages), case.id


# -- refusing --------------------------------------------------------------------

@pytest.mark.parametrize("existing", ["llmops.yaml", "llmops.changed.yaml", "data/tickets.jsonl", "LLMOPS.md"])
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
    monkeypatch.setattr(starter, "open", _failing_open(lambda p, mode: p.name == "tickets.jsonl"), raising=False)
    with pytest.raises(OutputError) as err:
        create_project(root)
    assert Path(err.value.path) == root / "data" / "tickets.jsonl" and "No space left" in str(err.value)
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
    """The README's quickstart: init, baseline (exit 0), the unchanged config
    again (exit 0, from the cache), the shipped change (exit 1, and why)."""
    project = tmp_path / "my-evals"
    res = _llmops("init", "my-evals", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "llmops.yaml" in res.stdout and "--update-baseline" in res.stdout  # the files and the next command
    assert sorted(p.relative_to(project).as_posix() for p in project.rglob("*") if p.is_file()) == sorted(FILES)

    res = _llmops("eval", "llmops.yaml", "--update-baseline", cwd=project)
    assert res.returncode == 0, res.stdout + res.stderr
    assert (project / "baseline.json").is_file()
    baseline = (project / "baseline.json").read_bytes()
    assert (project / ".llmops" / "cache").is_dir() and (project / ".llmops" / "runs").is_dir()

    res = _llmops("eval", "llmops.yaml", cwd=project)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "gate passed" in res.stdout
    assert re.search(r"cache \d+ hit / 0 miss", res.stdout), res.stdout  # answered from ./.llmops/cache

    # the shipped one-line change: a regression caught, and why, in the table and in the HTML report
    res = _llmops("eval", "llmops.changed.yaml", "--html", "report.html", cwd=project)
    assert res.returncode == 1, res.stdout + res.stderr
    out = " ".join(res.stdout.split())  # rich wraps table cells
    assert 'prompt.user: "Order {{ order_id }}: {{ message }}" → "{{ message }}"' in out, res.stdout
    assert re.search(r"order_id_copied │ +0\.9\d+ │ +0\.\d+ │ -0\.\d+ │.*│ regressed", res.stdout), res.stdout
    assert "regression: order_id_copied" in res.stdout and "fits_schema" in res.stdout
    fell = res.stdout[res.stdout.index("cases that fell most"):]  # its "why" column wraps within the cell
    assert "order_id_copied:" in fell and "is not" in fell and re.search(r"'[A-Z]-\d{4}'", fell), res.stdout
    assert (project / "baseline.json").read_bytes() == baseline  # the failed run left the baseline as it was
    html = (project / "report.html").read_text(encoding="utf-8")
    assert "regressed" in html and re.search(r"order_id_copied: .{0,12}[A-Z]-\d{4}.{0,12} is not", html)

    before = snapshot(project)
    res = _llmops("init", "my-evals", cwd=tmp_path)
    assert res.returncode == 2, res.stdout + res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("llmops: error:") and "llmops.yaml" in lines[0], res.stderr
    assert "already exists" in lines[0]
    assert snapshot(project) == before
