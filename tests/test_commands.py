"""`llmops validate`, `--quiet`, `llmops schema`, `llmops init` and the
outcome's exit codes, in-process through Typer's CliRunner against the fake
OpenAI-compatible server on 127.0.0.1 (no network, no model download)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from conftest import QUESTIONS, write_jsonl
from llmops_cli.cli import cli
from llmops_cli.core.errors import BaselineError, ConfigError, InputError, Interrupted, RunIncomplete
from llmops_cli.jobs.evaluate import EvalOptions, validate
from llmops_cli.gate.outcome import Outcome, from_comparison, from_error
from llmops_cli.testing import FakeOpenAI

ROOT = Path(__file__).resolve().parent.parent
N = len(QUESTIONS)
MODE = {"answer": "right"}


def right_answers(messages, body):
    """The first reference answer of the question in the prompt, or the fixed
    wrong answer a test puts in MODE."""
    if MODE["answer"] != "right":
        return MODE["answer"]
    q = messages[-1]["content"].rsplit("Question: ", 1)[-1].strip()
    return next((c["answers"][0] for c in QUESTIONS if c["question"] == q), "I do not know")


def run(args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def flat(text: str) -> str:
    """Rich folds long lines at 120 columns in a non-terminal: compare words."""
    return " ".join(text.split())


def one_error_line(res) -> str:
    """The single `llmops: error:` line of a failed command (nothing else printed)."""
    assert res.exit_code == 2, res.output
    assert res.stdout == "", res.stdout
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("llmops: error: "), res.stderr
    return res.stderr


@pytest.fixture(autouse=True)
def _right_by_default():
    MODE["answer"] = "right"
    yield
    MODE["answer"] = "right"


@pytest.fixture
def fresh(make_project, litellm_loaded, monkeypatch):
    """A project with no baseline yet; cwd is its folder (run records land there)."""
    with FakeOpenAI(reply=right_answers) as srv:
        cfg = make_project(srv.url)
        monkeypatch.chdir(cfg.parent)
        yield cfg, srv


@pytest.fixture
def project(fresh):
    """A project whose baseline was written by `eval --update-baseline`."""
    cfg, srv = fresh
    res = run(["eval", cfg, "--update-baseline"])
    assert res.exit_code == 0, res.output
    assert (cfg.parent / "baseline.json").is_file() and srv.request_count == N
    yield cfg, srv


def runs(cfg: Path) -> list[str]:
    d = cfg.parent / ".llmops" / "runs"
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


# -- validate: a good project ---------------------------------------------------

def test_validate_good_project_makes_no_call_and_reports_cached_answers(project):
    cfg, srv = project
    before = srv.request_count
    res = run(["validate", cfg])
    assert res.exit_code == 0, res.output
    out = flat(res.stdout)
    assert f"{N} cases" in out and f"{N} model calls ({N} cached)" in out
    assert "baseline.json is compatible" in out  # named relative to the working directory when inside it
    assert res.stderr == ""
    assert srv.request_count == before


def test_validate_library_call_returns_a_valid_outcome(project):
    cfg, srv = project
    before = srv.request_count
    out = validate(EvalOptions(cfg))
    assert (out.status, out.exit_code, out.ok) == ("valid", 0, True)
    assert out.baseline_path == cfg.parent / "baseline.json" and out.error is None and out.record is None
    assert "is compatible" in out.reason and f"({N} cached)" in out.reason
    missing = validate(EvalOptions(cfg, baseline=cfg.parent / "nope.json"))
    assert (missing.status, missing.exit_code) == ("bad input", 2)
    assert isinstance(missing.error, BaselineError) and "nope.json" in missing.reason
    assert srv.request_count == before


def test_validate_writes_nothing(project):
    cfg, _ = project
    baseline = cfg.parent / "baseline.json"
    before_bytes, before_runs = baseline.read_bytes(), runs(cfg)
    assert len(before_runs) == 1  # the eval --update-baseline's record, in the project's cwd
    assert run(["validate", cfg]).exit_code == 0
    assert run(["validate", cfg, "--update-baseline"]).exit_code == 0
    assert validate(EvalOptions(cfg)).exit_code == 0
    assert runs(cfg) == before_runs and baseline.read_bytes() == before_bytes


def test_validate_without_baseline(fresh):
    cfg, srv = fresh
    res = run(["validate", cfg, "--update-baseline"])
    assert res.exit_code == 0, res.output
    assert "no baseline needed" in flat(res.stdout) and f"{N} model calls (0 cached)" in flat(res.stdout)
    line = one_error_line(run(["validate", cfg]))
    assert str(cfg.parent / "baseline.json") in line and "baseline not found" in line
    assert srv.request_count == 0 and runs(cfg) == [] and not (cfg.parent / "baseline.json").exists()


# -- validate: bad inputs, each exit 2, one line, no call ------------------------------

def _edit(cfg: Path, old: str, new: str) -> list:
    text = cfg.read_text()
    assert old in text
    cfg.write_text(text.replace(old, new))
    return []  # no extra command-line arguments


def _drop_eval_set(cfg: Path) -> list:
    (cfg.parent / "questions.jsonl").unlink()
    return []


def _other_eval_set(cfg: Path) -> list:
    write_jsonl(cfg.parent / "questions.jsonl", QUESTIONS[:-1])  # the baseline was made on all of them
    return []


# name: (edit of the project returning extra CLI arguments, text the error line must hold)
BAD_INPUTS = {
    "unknown config key": (lambda cfg: _edit(cfg, "baseline: baseline.json", "baseline: baseline.json\ncolour: blue"),
                           "colour"),
    "undefined template variable": (lambda cfg: _edit(cfg, "Question: {{ question }}",
                                                      "Question: {{ question }} {{ nosuchfield }}"), "nosuchfield"),
    "eval set missing": (_drop_eval_set, "questions.jsonl"),
    "baseline of another eval set": (_other_eval_set, "another eval set"),
    "api_key_env not set": (lambda cfg: _edit(cfg, "model: openai/fake-model\n",
                                              "model: openai/fake-model\napi_key_env: LLMOPS_TEST_UNSET_KEY\n"),
                            "LLMOPS_TEST_UNSET_KEY"),
    "-o is the config file": (lambda cfg: ["-o", cfg], "refusing to overwrite the config file"),
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_validate_bad_input_is_exit_2_one_line_no_call(project, monkeypatch, name):
    cfg, srv = project
    monkeypatch.delenv("LLMOPS_TEST_UNSET_KEY", raising=False)
    baseline = cfg.parent / "baseline.json"
    before, before_runs, calls = baseline.read_bytes(), runs(cfg), srv.request_count
    edit, expected = BAD_INPUTS[name]
    extra = edit(cfg)
    line = one_error_line(run(["validate", cfg, *extra]))
    assert expected in line, line
    assert "Traceback" not in line
    assert srv.request_count == calls and runs(cfg) == before_runs and baseline.read_bytes() == before


def test_undefined_variable_is_caught_by_rendering_not_by_loading(fresh):
    """Valid Jinja2 syntax: load_config accepts it; validate renders every prompt and refuses it."""
    from llmops_cli.config import load_config

    cfg, srv = fresh
    cfg.write_text(cfg.read_text().replace("Question: {{ question }}", "Question: {{ nosuchfield }}"))
    load_config(cfg)  # no error at load time
    out = validate(EvalOptions(cfg, update_baseline=True))
    assert out.exit_code == 2 and isinstance(out.error, ConfigError)
    assert "prompt.user" in out.reason and "'nosuchfield' is undefined" in out.reason
    assert srv.request_count == 0


# -- --quiet -------------------------------------------------------------------------

def test_quiet_pass_prints_nothing(project):
    cfg, _ = project
    res = run(["eval", cfg, "--quiet"])
    assert res.exit_code == 0, res.output
    assert res.stdout == "" and res.stderr == ""
    assert len(runs(cfg)) == 2  # quiet, but the run record is still written


def test_quiet_regression_prints_only_the_gate_table_and_verdict(project):
    cfg, srv = project
    MODE["answer"] = "I do not know"
    before = srv.request_count
    res = run(["eval", cfg, "--quiet", "--no-cache"])
    assert srv.request_count == before + N  # really re-asked the (now wrong) model
    assert res.exit_code == 1, res.output
    out = res.stdout
    assert "token_f1" in out and "regressed" in out
    assert "regression: token_f1" in out  # the verdict line
    # not the run summary (`run <run-id> · N cases · ...`, metrics, usage) nor the record's path
    assert "run record:" not in out and f"· {N} cases ·" not in flat(out) and "model calls" not in out
    assert not any(line.startswith("run ") for line in out.splitlines())
    loud = run(["eval", cfg, "--no-cache"])  # the same run without --quiet does print the summary
    assert loud.exit_code == 1 and "run record:" in loud.stdout and f"· {N} cases ·" in flat(loud.stdout)


def test_quiet_bad_input_still_prints_the_error(project):
    cfg, srv = project
    calls = srv.request_count
    cfg.write_text(cfg.read_text() + "colour: blue\n")
    line = one_error_line(run(["eval", cfg, "-q"]))
    assert "colour" in line and str(cfg) in line and srv.request_count == calls


def test_baseline_update_quiet_prints_nothing(project):
    cfg, _ = project
    baseline = cfg.parent / "baseline.json"
    before = baseline.read_bytes()
    res = run(["baseline", "update", cfg, "--quiet"])
    assert res.exit_code == 0, res.output
    assert res.stdout == "" and res.stderr == ""
    assert baseline.read_bytes() != before and json.loads(baseline.read_text())  # rewritten (a new run id)


# -- llmops schema ---------------------------------------------------------------------

def test_schema_prints_the_committed_schema():
    from llmops_cli.jobs.config_schema import schema_text

    res = run(["schema"])
    assert res.exit_code == 0 and res.stderr == ""
    assert res.stdout == schema_text()
    assert res.stdout == (ROOT / "schema" / "llmops.schema.json").read_text(encoding="utf-8")
    schema = json.loads(res.stdout)
    assert schema["additionalProperties"] is False and schema["type"] == "object"


# -- llmops init ---------------------------------------------------------------------

STARTER = ["llmops.yaml", "llmops.changed.yaml", "data/tickets.jsonl", "LLMOPS.md", ".gitignore"]


def test_init_writes_the_starter_once_and_it_validates(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPENAI_API_KEY")
    res = run(["init", "starter"])
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[:len(STARTER)] == [f"wrote {Path('starter') / rel}" for rel in STARTER]
    assert "--update-baseline" in lines[-1] and flat(lines[-1]).startswith("next: cd starter && llmops eval")
    before = {rel: (tmp_path / "starter" / rel).read_bytes() for rel in STARTER}

    again = run(["init", "starter"])
    line = one_error_line(again)
    assert "already exists" in line and "llmops.yaml" in line
    assert {rel: (tmp_path / "starter" / rel).read_bytes() for rel in STARTER} == before

    res = run(["validate", "starter/llmops.yaml", "--update-baseline"])
    assert res.exit_code == 0, res.output
    assert "valid:" in res.stdout and "40 cases" in flat(res.stdout)
    assert not (tmp_path / "starter" / "baseline.json").exists() and not (tmp_path / ".llmops" / "runs").exists()


# -- outcome: exit codes and their precedence -------------------------------------------

def test_from_error_maps_each_error_to_its_exit_code():
    cases = [(InputError("c.yaml", "model", "bad"), 2, "bad input"), (RunIncomplete("too many errors"), 3, "incomplete"),
             (Interrupted(), 130, "interrupted")]
    for err, code, status in cases:
        out = from_error(err, Path("r.json"))
        assert (out.exit_code, out.status, out.ok) == (code, status, False)
        assert out.error is err and out.reason == str(err) and out.record_path == Path("r.json")
    assert from_error(InputError("c.yaml", "model", "bad")).reason == "c.yaml: model: bad"


def test_status_exit_codes():
    assert Outcome("passed", "gate passed").exit_code == 0
    assert Outcome("baseline written", "x").exit_code == 0 and Outcome("valid", "x").exit_code == 0
    assert Outcome("regressed", "regression: token_f1").exit_code == 1
    assert Outcome("bad input", "x").exit_code == 2 and Outcome("incomplete", "x").exit_code == 3
    # an error decides over the status it was given
    assert Outcome("passed", "x", error=RunIncomplete("boom")).exit_code == 3


def _cmp(unscored=(), failed=(), drift=False, underpowered=()):
    return SimpleNamespace(unscored=[SimpleNamespace(metric=m, label=m, reason="no scored pairs") for m in unscored],
                           failed=[SimpleNamespace(metric=m, label=m) for m in failed], drift_failed=drift,
                           underpowered=[SimpleNamespace(power_warning=f"{m} underpowered") for m in underpowered])


@pytest.mark.parametrize("kw, status, code", [
    (dict(unscored=["bleu"], failed=["token_f1"], underpowered=["rougeL"]), "incomplete", 3),
    (dict(failed=["token_f1"], underpowered=["rougeL"]), "regressed", 1),
    (dict(drift=True, underpowered=["rougeL"]), "regressed", 1),
    (dict(underpowered=["rougeL"]), "bad input", 2),
    (dict(), "passed", 0),
])
def test_from_comparison_precedence_3_1_2_0(kw, status, code):
    out = from_comparison(_cmp(**kw))
    assert (out.status, out.exit_code) == (status, code), out.reason


def test_validate_reads_the_outputs_file(tmp_path):
    from llmops_cli.jobs.evaluate import EvalOptions, validate

    (tmp_path / "q.jsonl").write_text('{"id": "1", "question": "q", "answers": ["a"]}\n')
    (tmp_path / "c.yaml").write_text('model: local/smollm2-135m\nprompt: {user: "{{ question }}"}\n'
                                     'dataset: {path: q.jsonl, references: answers}\n')
    (tmp_path / "outputs.json").write_text('["not", "an", "object"]')
    out = validate(EvalOptions(tmp_path / "c.yaml", outputs=tmp_path / "outputs.json", update_baseline=True,
                               record_path=tmp_path / "r.json", use_cache=False))
    assert out.exit_code == 2 and "outputs.json" in out.reason and "JSON object" in out.reason
    (tmp_path / "outputs.json").write_text('{"1": "a"}')
    out = validate(EvalOptions(tmp_path / "c.yaml", outputs=tmp_path / "outputs.json", update_baseline=True,
                               record_path=tmp_path / "r.json", use_cache=False))
    assert out.exit_code == 0 and "1 cases" in out.reason
