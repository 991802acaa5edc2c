"""Hostile input (issue item 9, "bad input found in a fuzz of 103 hostile
inputs"): each case is exit 2 (or 3 where stated) with ONE line on stderr
naming the file and the key, no traceback, nothing overwritten and — where it
can be known — no model call.

Through the real CLI (``python -m llmops_cli.cli``) against the fake
OpenAI-compatible server on 127.0.0.1, and through the library where a
failure has to be simulated (a full disk, a read-only cache)."""

from __future__ import annotations

import asyncio
import errno
import gc
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import CORPUS, QUESTIONS, write_jsonl
from test_exit_codes import _signal_mid_run
from llmops_cli.cli import cli
from llmops_cli.config import Dataset as DatasetSpec
from llmops_cli.config import Retrieval as RetrievalSpec
from llmops_cli.config import load_config
from llmops_cli.core.errors import BaselineError, ConfigError, DatasetError, InputError, OutputError
from llmops_cli.testing import FakeOpenAI


# -- helpers -----------------------------------------------------------------

def llmops(*args, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """The real command, in a child process."""
    return subprocess.run([sys.executable, "-m", "llmops_cli.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=120, cwd=cwd, env={**os.environ, **(env or {})})


def one_line(res: subprocess.CompletedProcess, code: int = 2) -> str:
    """The single stderr line of a run that failed with ``code``."""
    assert res.returncode == code, res.stderr
    assert "Traceback" not in res.stderr
    assert res.stderr.endswith("\n") and res.stderr.count("\n") == 1, res.stderr
    assert res.stderr.startswith("llmops: error: "), res.stderr
    return res.stderr.rstrip("\n")


def invoke(args) -> "typer.testing.Result":  # noqa: F821
    """The command in-process (for monkeypatched failures); never an uncaught exception."""
    res = CliRunner().invoke(cli, [str(a) for a in args])
    assert res.exception is None or isinstance(res.exception, SystemExit), (res.exception, res.output)
    return res


def edit(cfg: Path, old: str, new: str) -> Path:
    text = cfg.read_text()
    assert old in text, f"{old!r} not in the config"
    cfg.write_text(text.replace(old, new, 1))
    return cfg


def snapshot_files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def config_error(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as ei:
        load_config(path)
    assert ei.value.exit_code == 2 and "\n" not in str(ei.value) and str(path) in str(ei.value)
    return ei.value


# -- 1. duplicate YAML keys ----------------------------------------------------

BLOCK_PARAMS = "params:\n  temperature: 0\n  max_tokens: 32\n  temperature: 0.7\n"


@pytest.mark.parametrize("yaml_text, key, line, first", [
    (BLOCK_PARAMS, "params.temperature", 4, 2),
    ("model: openai/a\nmodel: openai/b\n", "model", 2, 1),
    ("judges:\n  tone:\n    type: rubric\n    criteria: c\n    samples: 1\n    samples: 5\n", "judges.tone.samples", 6, 5),
    ("params: {temperature: 0, temperature: 0.7}\n", "params.temperature", 1, 1),
    ("gate:\n  metrics:\n    token_f1: {max_drop: 0.05, max_drop: 0.5}\n", "gate.metrics.token_f1.max_drop", 3, 3),
])
def test_duplicate_yaml_key_is_an_error_naming_key_and_line(tmp_path, yaml_text, key, line, first):
    cfg = tmp_path / "llmops.yaml"
    cfg.write_text("prompt: {user: '{{ question }}'}\ndataset: {path: q.jsonl}\n" + yaml_text)
    lines_before = 2
    err = config_error(cfg)
    assert err.key == key
    assert f"duplicate key on line {line + lines_before}" in err.message and f"first on line {first + lines_before}" in err.message


def test_duplicate_temperature_is_exit_2_before_any_call(make_project, fake_server):
    cfg = make_project(fake_server.url)
    edit(cfg, "params: {temperature: 0, max_tokens: 32, timeout: 10}", "params:\n  temperature: 0\n  max_tokens: 32\n  temperature: 0.7")
    before = snapshot_files(cfg.parent)
    line = one_line(llmops("eval", cfg, "--update-baseline", cwd=cfg.parent))
    assert str(cfg) in line and "params.temperature" in line and "duplicate key on line 6" in line
    assert fake_server.request_count == 0 and snapshot_files(cfg.parent) == before


def test_yaml_merge_keys_may_still_be_overridden_and_safe_load_is_kept(tmp_path):
    cfg = tmp_path / "llmops.yaml"
    cfg.write_text("model: m\nprompt: {user: x}\ndataset: {path: q.jsonl}\n"
                   "x-base: &base {temperature: 0, max_tokens: 32}\n"
                   "params:\n  <<: *base\n  temperature: 0.5\n")
    err = config_error(cfg)  # x-base is an unknown key — but the merge itself was accepted
    assert err.key == "x-base" and "unknown key" in err.message
    cfg.write_text(cfg.read_text().replace("x-base: &base {temperature: 0, max_tokens: 32}\n", "")
                   .replace("  <<: *base\n", "  <<: {temperature: 0, max_tokens: 32}\n"))
    assert load_config(cfg).params.temperature == 0.5
    cfg.write_text("model: !!python/object/apply:os.getcwd []\nprompt: {user: x}\ndataset: {path: q.jsonl}\n")
    err = config_error(cfg)  # still safe_load: no Python objects
    assert "invalid YAML" in err.message


# -- 2. CSV line breaks, JSONL line separators, byte-order marks ---------------

def test_csv_quoted_multiline_field_is_read_intact(tmp_path):
    from llmops_cli.plan.dataset import load_dataset

    (tmp_path / "q.csv").write_bytes(b'id,question,reference\r\n1,"first line\nsecond line",x\r\n'
                                     b'2,"with\r\ncrlf inside",y\r\n3,plain,z\r\n')
    cases = load_dataset(DatasetSpec(path="q.csv"), tmp_path)
    assert [c.inputs["question"] for c in cases] == ["first line\nsecond line", "with\r\ncrlf inside", "plain"]
    assert [c.references for c in cases] == [["x"], ["y"], ["z"]]


def test_corpus_csv_with_multiline_text(tmp_path):
    from llmops_cli.plan.retrieval import load_corpus

    (tmp_path / "c.csv").write_text('id,text\nd1,"para one\n\npara two"\nd2,other\n', encoding="utf-8")
    chunks, _ = load_corpus(RetrievalSpec(corpus="c.csv"), tmp_path)
    assert [(c.id, c.text) for c in chunks] == [("d1", "para one\n\npara two"), ("d2", "other")]


@pytest.mark.parametrize("sep", ["\u2028", "\u2029", "\u0085"])
def test_jsonl_keeps_unicode_line_separators_inside_strings(tmp_path, sep):
    from llmops_cli.core.files import read_records

    rows = [{"id": "a", "question": f"one{sep}two", "reference": "x"}, {"id": "b", "question": "q", "reference": "y"}]
    p = tmp_path / "q.jsonl"
    p.write_bytes("".join(json.dumps(r, ensure_ascii=False) + "\r\n" for r in rows).encode("utf-8"))
    assert sep.encode("utf-8") in p.read_bytes()  # really raw in the file
    assert read_records(p) == rows


@pytest.mark.parametrize("name, body", [
    ("q.csv", "id,question,reference\n1,Who?,x\n"),
    ("q.jsonl", '{"id": "1", "question": "Who?", "reference": "x"}\n'),
    ("q.json", '[{"id": "1", "question": "Who?", "reference": "x"}]'),
])
def test_utf8_bom_is_accepted(tmp_path, name, body):
    from llmops_cli.plan.dataset import load_dataset

    (tmp_path / name).write_bytes(b"\xef\xbb\xbf" + body.encode("utf-8"))
    (case,) = load_dataset(DatasetSpec(path=name), tmp_path)
    assert (case.id, case.inputs, case.references) == ("1", {"question": "Who?"}, ["x"])


def test_csv_row_with_more_cells_than_the_header(tmp_path):
    from llmops_cli.core.files import read_records

    p = tmp_path / "q.csv"
    p.write_text("id,question,reference\n1,a,b\n2,a,b,extra\n")
    with pytest.raises(DatasetError) as ei:
        read_records(p)
    assert ei.value.key == "line 3" and str(p) in str(ei.value)


# -- 3. load-time validation -----------------------------------------------------

@pytest.mark.parametrize("old, new, key", [
    ("references: answers", "references: []", "dataset.references"),
    ("timeout: 10", "timeout: .inf", "params.timeout"),
    ("timeout: 10", "timeout: .nan", "params.timeout"),
    ("timeout: 10", "timeout: -.inf", "params.timeout"),
    ("timeout: 10", "timeout: 0", "params.timeout"),
    ("timeout: 10", "timeout: 86400", "params.timeout"),
    ("temperature: 0", "temperature: .nan", "params.temperature"),
    ("api_base: http://127.0.0.1:9/v1", "api_base: ftp://127.0.0.1/v1", "api_base"),
    ("api_base: http://127.0.0.1:9/v1", "api_base: 127.0.0.1:8000/v1", "api_base"),
    ("api_base: http://127.0.0.1:9/v1", "api_base: 'http://'", "api_base"),
    ("api_base: http://127.0.0.1:9/v1", "api_base: 'http://host:99999/v1'", "api_base"),
    ("api_base: http://127.0.0.1:9/v1", "api_base: 'http://exa mple.com/v1'", "api_base"),
    ("api_base: http://127.0.0.1:9/v1", "api_base: ''", "api_base"),
    ("max_error_share: 0.1", "max_error_share: 0.1\nrepeats: 1000", "repeats"),
    ("max_error_share: 0.1", "max_error_share: 0.1\njudges: {c: {api_base: 'file:///etc/passwd'}}", "judges.c.api_base"),
    ("max_error_share: 0.1", "max_error_share: 0.1\njudges: {c: {samples: 21}}", "judges.c.samples"),
    ("token_f1: {max_drop: 0.05}", "token_f1: {max_drop: 0.05}\n  resamples: 100000000", "gate.resamples"),
])
def test_load_time_validation_names_the_key(make_project, old, new, key):
    cfg = edit(make_project(), old, new)
    err = config_error(cfg)
    assert err.key == key, str(err)


def test_sane_values_still_load(make_project):
    cfg = edit(make_project(), "timeout: 10", "timeout: 3600")
    edit(cfg, "api_base: http://127.0.0.1:9/v1", "api_base: https://api.example.com:8443/openai/v1")
    edit(cfg, "max_error_share: 0.1", "max_error_share: 0.1\nrepeats: 100\njudges: {c: {api_base: 'http://[::1]:8000/v1'}}")
    c = load_config(cfg)
    assert c.params.timeout == 3600 and c.repeats == 100 and c.judges["c"].api_base == "http://[::1]:8000/v1"


def test_infinite_timeout_is_exit_2_one_line(make_project, fake_server):
    cfg = edit(make_project(fake_server.url), "timeout: 10", "timeout: .inf")
    line = one_line(llmops("eval", cfg, "--update-baseline", cwd=cfg.parent))
    assert str(cfg) in line and "params.timeout" in line and fake_server.request_count == 0


# -- 4. duplicate corpus ids -----------------------------------------------------

def test_duplicate_corpus_id_is_exit_2_naming_the_row(make_project, fake_server):
    corpus = CORPUS + [{"id": "venue", "text": "Another text with the same id."}]
    cfg = make_project(fake_server.url, corpus=corpus)
    line = one_line(llmops("eval", cfg, "--update-baseline", cwd=cfg.parent))
    assert str(cfg.parent / "corpus.jsonl") in line and f"row {len(corpus)}.id" in line
    assert "duplicate id 'venue'" in line and "first in row 2" in line
    assert fake_server.request_count == 0 and not (cfg.parent / "baseline.json").exists()


def test_empty_corpus_id_is_an_error(tmp_path):
    from llmops_cli.plan.retrieval import load_corpus

    write_jsonl(tmp_path / "c.jsonl", [{"id": "a", "text": "t"}, {"id": "", "text": "u"}])
    with pytest.raises(DatasetError, match="row 2.id: empty id"):
        load_corpus(RetrievalSpec(corpus="c.jsonl"), tmp_path)


# -- 5. template runtime errors ----------------------------------------------------

@pytest.mark.parametrize("old, new, key", [
    ('user: "Context:', 'user: "{{ 1/0 }} Context:', "prompt.user"),
    ('system: "Answer briefly."', 'system: "Answer briefly. {{ question | round }}"', "prompt.system"),
    ('system: "Answer briefly."', 'system: "{{ \'%d\' | format(question) }}"', "prompt.system"),
    ('query: "{{ question }}"', 'query: "{{ question | length / 0 }}"', "retrieval.query"),
    ('query: "{{ question }}"', 'query: "{{ question[1000] }}"', "retrieval.query"),
])
def test_template_runtime_error_is_exit_2_before_any_call(make_project, fake_server, old, new, key):
    cfg = edit(make_project(fake_server.url), old, new)
    line = one_line(llmops("eval", cfg, "--update-baseline", cwd=cfg.parent))
    assert str(cfg) in line and f": {key}: template error" in line
    assert fake_server.request_count == 0 and not (cfg.parent / "baseline.json").exists()


def test_render_wraps_any_exception():
    from llmops_cli.plan.prompt import render

    with pytest.raises(ConfigError) as ei:
        render("{{ 1/0 }}", {}, "cfg.yaml", "prompt.user")
    assert ei.value.key == "prompt.user" and "ZeroDivisionError" in str(ei.value)


# -- 6. a run record given as the baseline -------------------------------------------

def test_run_record_is_refused_as_baseline_but_promoted_by_baseline_update(make_project, litellm_loaded, tmp_path):
    from llmops_cli.gate.baseline import load_baseline

    with FakeOpenAI() as srv:
        cfg = make_project(srv.url)
        run_json = tmp_path / "run.json"
        assert invoke(["eval", cfg, "--update-baseline", "-o", run_json]).exit_code == 0
        with pytest.raises(BaselineError) as ei:
            load_baseline(run_json)
        assert ei.value.key == "kind" and str(run_json) in str(ei.value)
        n = srv.request_count
        res = llmops("eval", cfg, "--baseline", run_json, cwd=cfg.parent)
        line = one_line(res)
        assert f"{run_json}: kind: is 'run'" in line and "--from-run" in line
        assert srv.request_count == n
        res = invoke(["baseline", "update", cfg, "--from-run", run_json])
        assert res.exit_code == 0, res.output
        assert json.loads((cfg.parent / "baseline.json").read_text())["kind"] == "baseline"
        assert load_baseline(cfg.parent / "baseline.json").kind == "baseline"


# -- 7. read-only or full disk ----------------------------------------------------------

@pytest.mark.parametrize("option", ["-o", "--junit", "--markdown", "--comment", "--cache-dir"])
def test_unwritable_output_is_exit_2_before_any_call(make_project, fake_server, option):
    """Tests run as root, which ignores permission bits: a parent that is a
    regular file stands in for a read-only folder."""
    cfg = make_project(fake_server.url)
    (cfg.parent / "somefile.txt").write_text("not a folder")
    target = cfg.parent / "somefile.txt" / ("cache" if option == "--cache-dir" else "out.x")
    gated = option in ("--junit", "--markdown", "--comment")
    args = ["eval", cfg, option, target] + ([] if gated else ["--update-baseline"])
    if gated:  # a gated run needs a baseline
        assert invoke(["score", cfg, "--outputs", _outputs(cfg), "--update-baseline", "-o", cfg.parent / "b.json"]).exit_code == 0
    before = snapshot_files(cfg.parent)
    line = one_line(llmops(*args, cwd=cfg.parent))
    assert str(target) in line and "somefile.txt is not a folder" in line
    assert fake_server.request_count == 0 and snapshot_files(cfg.parent) == before


def _outputs(cfg: Path) -> Path:
    p = cfg.parent / "outputs.json"
    p.write_text(json.dumps({q["id"]: q["answers"][0] for q in QUESTIONS}))
    return p


def test_unwritable_baseline_is_exit_2_before_any_call(make_project, fake_server):
    cfg = edit(make_project(fake_server.url), "baseline: baseline.json", "baseline: somefile.txt/baseline.json")
    (cfg.parent / "somefile.txt").write_text("x")
    for args in (["eval", cfg, "--update-baseline"], ["baseline", "update", cfg]):
        line = one_line(llmops(*args, cwd=cfg.parent))
        assert "somefile.txt/baseline.json" in line and ": baseline: cannot write" in line
    assert fake_server.request_count == 0


def test_full_disk_while_writing_is_an_output_error(tmp_path, monkeypatch):
    from llmops_cli.core.files import atomic_write_text

    target = tmp_path / "baseline.json"
    target.write_text("old baseline\n")

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OutputError) as ei:
        atomic_write_text(target, "new\n" * 1000)
    err = ei.value
    assert isinstance(err, InputError) and isinstance(err, OSError) and err.exit_code == 2
    assert str(err) == f"{target}: cannot write: No space left on device"
    assert target.read_text() == "old baseline\n" and [p.name for p in tmp_path.iterdir()] == ["baseline.json"]


def test_full_disk_for_the_run_record_and_reports_is_exit_2(make_project, monkeypatch, tmp_path):
    """After the run: the record cannot be written — exit 2 naming it, not "internal error"."""
    cfg = make_project()
    outputs = _outputs(cfg)
    assert invoke(["score", cfg, "--outputs", outputs, "--update-baseline", "-o", tmp_path / "b.json"]).exit_code == 0
    with monkeypatch.context() as m:
        m.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left on device")))
        res = invoke(["score", cfg, "--outputs", outputs, "-o", tmp_path / "r.json"])
    assert res.exit_code == 2 and res.stderr.count("\n") == 1
    assert f"{tmp_path / 'r.json'}: cannot write: No space left on device" in res.stderr
    assert "internal error" not in res.output and not (tmp_path / "r.json").exists()
    (tmp_path / "somefile.txt").write_text("x")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "somefile.txt" / "summary.md"))
    res = invoke(["score", cfg, "--outputs", outputs, "-o", tmp_path / "r.json"])
    assert res.exit_code == 2 and "summary.md: cannot write" in res.stderr and res.stderr.count("\n") == 1


def test_cache_that_cannot_be_written(tmp_path, monkeypatch):
    from llmops_cli.core.cache import Cache

    (tmp_path / "somefile.txt").write_text("x")
    with pytest.raises(OutputError, match="somefile.txt is not a folder"):
        Cache(tmp_path / "somefile.txt" / "cache").open()

    (tmp_path / "dir-db" / "responses.sqlite").mkdir(parents=True)  # the database path is a folder
    with pytest.raises(OutputError) as ei:
        Cache(tmp_path / "dir-db").open()
    assert str(tmp_path / "dir-db" / "responses.sqlite") in str(ei.value)

    class Conn:  # what SQLite says on a read-only file system or a full disk
        def __init__(self, message):
            self.message = message

        def execute(self, *args):
            raise sqlite3.OperationalError(self.message)

        def close(self):
            pass

    for message in ("attempt to write a readonly database", "database or disk is full", "unable to open database file"):
        cache = Cache(tmp_path / "ok")
        with monkeypatch.context() as m:
            m.setattr(sqlite3, "connect", lambda *a, **k: Conn(message))  # noqa: B023  (used within the iteration)
            with pytest.raises(OutputError) as ei:
                cache.open()
        assert str(ei.value).startswith(f"{cache.path}: cache: cannot use the response cache: {message}")
        cache = Cache(tmp_path / "ok").open()
        cache._conn = Conn(message)  # fails mid-run
        with pytest.raises(OutputError, match=message):
            cache.put("k", "m", {"output": "x"})
        with pytest.raises(OutputError, match=message):
            cache.get_memo("k")


def test_cache_failing_mid_run_is_one_line_without_traceback(make_project, monkeypatch, litellm_loaded):
    from llmops_cli.core.cache import Cache

    def put(self, key, model, value):
        with self._guard():
            raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(Cache, "put", put)
    with FakeOpenAI() as srv:
        cfg = make_project(srv.url)
        res = invoke(["eval", cfg, "--update-baseline"])
    assert res.exit_code in (2, 3)
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and "responses.sqlite" in lines[0] and "database or disk is full" in lines[0]
    assert "internal error" not in res.output and not (cfg.parent / "baseline.json").exists()


# -- 8. outputs that would overwrite an input ------------------------------------------------

@pytest.mark.parametrize("option", ["-o", "--junit", "--markdown", "--comment"])
@pytest.mark.parametrize("target", ["llmops.yaml", "baseline.json", "questions.jsonl", "corpus.jsonl", "outputs.json"])
def test_output_never_overwrites_an_input(make_project, fake_server, option, target):
    cfg = make_project(fake_server.url)
    outputs = _outputs(cfg)
    assert invoke(["score", cfg, "--outputs", outputs, "--update-baseline", "-o", cfg.parent / "b.json"]).exit_code == 0
    before = snapshot_files(cfg.parent)
    for cmd in (["eval", cfg], ["score", cfg, "--outputs", outputs]):
        if target == "outputs.json" and cmd[0] == "eval":
            continue
        res = llmops(*cmd, option, cfg.parent / target, cwd=cfg.parent)
        line = one_line(res)
        assert f"{cfg.parent / target}: {'--output' if option == '-o' else option}: refusing to overwrite" in line
    assert fake_server.request_count == 0 and snapshot_files(cfg.parent) == before


def test_output_through_a_link_or_relative_path_is_refused(make_project, fake_server):
    cfg = make_project(fake_server.url)
    os.link(cfg.parent / "questions.jsonl", cfg.parent / "hard.jsonl")
    os.symlink(cfg, cfg.parent / "soft.yaml")
    before = snapshot_files(cfg.parent)
    for target in ("hard.jsonl", "soft.yaml", "./sub/../llmops.yaml"):
        (cfg.parent / "sub").mkdir(exist_ok=True)
        line = one_line(llmops("eval", "llmops.yaml", "--update-baseline", "-o", target, cwd=cfg.parent))
        assert "refusing to overwrite" in line
    line = one_line(llmops("eval", "llmops.yaml", "--update-baseline", "--junit", "j.xml", "--markdown", "j.xml", cwd=cfg.parent))
    assert "--markdown: refusing to overwrite --junit" in line
    assert fake_server.request_count == 0 and snapshot_files(cfg.parent) == before


def test_review_sample_never_overwrites_its_run(tmp_path):
    run = tmp_path / "run.json"
    run.write_text("{}")
    line = one_line(llmops("review", "sample", run, "-o", run))
    assert "refusing to overwrite the run record" in line and run.read_text() == "{}"


# -- 9. usage errors: one line -------------------------------------------------------------

@pytest.mark.parametrize("args, needle, where", [
    (["eval", "--lmit", "3", "x.yaml"], "No such option: --lmit", "llmops eval"),
    (["eval", "x.yaml", "--limit", "-1"], "Invalid value for '--limit'", "llmops eval"),
    (["eval", "x.yaml", "--concurrency", "0"], "Invalid value for '--concurrency'", "llmops eval"),
    (["eval"], "Missing argument 'CONFIG'", "llmops eval"),
    (["diff", "a.json"], "Missing argument 'RUN_B'", "llmops diff"),
    (["baseline", "update", "x.yaml", "--from-run"], "Option '--from-run' requires an argument", "llmops baseline update"),
    (["evaluate", "x.yaml"], "No such command 'evaluate'", "llmops"),
    (["score", "x.yaml"], "Missing option '--outputs'", "llmops score"),
])
def test_usage_error_is_one_line(tmp_path, args, needle, where):
    line = one_line(llmops(*args, cwd=tmp_path))
    assert needle in line and line.endswith(f"(see {where} --help)")


def test_help_and_version_are_unaffected():
    res = llmops("eval", "--help")
    assert res.returncode == 0 and res.stdout.lstrip().startswith("Usage: llmops eval") and res.stderr == ""
    res = llmops("--version")
    assert res.returncode == 0 and "llmops, version" in res.stdout and res.stderr == ""
    res = llmops()  # no command at all: the help, as before
    assert "Usage: llmops" in res.stdout + res.stderr and "Commands" in res.stdout + res.stderr


# -- 10. SIGTERM leaves no coroutine unawaited ----------------------------------------------

def test_settle_cancels_late_tasks_and_closes_orphaned_coroutines():
    """The two leaks seen after SIGTERM, reproduced without LiteLLM: a call
    whose ``finally`` starts a fire-and-forget task (LiteLLM's timing hook),
    and a coroutine returned by an executor job whose awaiting task was
    cancelled meanwhile (LiteLLM's ``acompletion``). Without :func:`settle`
    the second is "never awaited"; with it, neither is."""
    from llmops_cli.run.aio import ClosingExecutor, settle

    async def hook():
        await asyncio.sleep(0)

    def setup_in_thread():
        time.sleep(0.2)
        return hook()  # the coroutine the caller was to await

    async def call():
        try:
            await asyncio.sleep(30)
        finally:
            asyncio.ensure_future(hook())

    async def via_executor():
        coro = await asyncio.get_running_loop().run_in_executor(None, setup_in_thread)
        await coro

    async def main(clean: bool):
        executor = ClosingExecutor()
        asyncio.get_running_loop().set_default_executor(executor)
        tasks = [asyncio.ensure_future(call()) for _ in range(8)] + [asyncio.ensure_future(via_executor())]
        asyncio.get_running_loop().call_later(0.05, asyncio.current_task().cancel)  # the interrupt
        try:
            await asyncio.gather(*tasks)
        finally:
            if clean:
                await settle(executor)

    def unawaited(clean: bool) -> list[str]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with pytest.raises(asyncio.CancelledError):
                asyncio.run(main(clean))
            gc.collect()
        return [str(w.message) for w in caught if "never awaited" in str(w.message)]

    assert unawaited(clean=False)  # the scenario does leak without settle ...
    assert unawaited(clean=True) == []  # ... and not with it


def test_run_leaves_no_task_pending_when_the_clean_up_starts_one(caplog):
    """The leak CI saw once ("Task was destroyed but it is pending!" for
    LiteLLM's timing hook): a task started during the loop's own clean-up —
    here from the ``finally`` of an async generator that ``shutdown_asyncgens``
    closes. ``asyncio.run`` closes the loop with that task pending;
    :func:`llmops_cli.run.aio.run` runs the clean-up until no task is left."""
    from llmops_cli.run import aio

    finished = []

    async def hook():
        await asyncio.sleep(0.05)
        finished.append(True)

    async def stream():
        try:
            yield 1
            await asyncio.sleep(30)
            yield 2
        finally:
            asyncio.ensure_future(hook())  # fire-and-forget, as LiteLLM's hooks are

    async def main():
        agen = stream()
        await agen.__anext__()  # left suspended: closed by the loop's clean-up
        return agen  # kept alive until the loop has closed it

    def destroyed(runner) -> list[str]:
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="asyncio"):
            agen = runner(main())
            del agen
            gc.collect()
        return [r.getMessage() for r in caplog.records if "destroyed but it is pending" in r.getMessage()]

    assert destroyed(asyncio.run)  # the scenario does leak with asyncio.run ...
    assert destroyed(aio.run) == []  # ... and not with ours: the hook was cancelled or finished, not dropped
    assert aio.run(asyncio.sleep(0, result=7)) == 7


def test_run_passes_an_interrupt_through_when_the_main_task_settles_in_its_finally():
    """A KeyboardInterrupt raised in a worker (a progress callback, a signal)
    leaves the main task pending; its ``finally`` (:func:`settle`) then
    cancels every other task — the clean-up's own among them. The caller
    still gets the KeyboardInterrupt, never a CancelledError."""
    from llmops_cli.run import aio

    async def worker(i):
        await asyncio.sleep(0.01 * i)
        if i == 2:
            raise KeyboardInterrupt

    async def main():
        try:
            await asyncio.gather(*(worker(i) for i in range(5)))
        finally:
            await aio.settle()

    with pytest.raises(KeyboardInterrupt):
        aio.run(main())


@pytest.mark.parametrize("sig, code, after", [(signal.SIGTERM, 143, 2), (signal.SIGTERM, 143, 12), (signal.SIGINT, 130, 7)])
def test_interrupt_mid_run_prints_one_line_and_no_unawaited_coroutine(make_project, litellm_loaded, tmp_path, sig, code, after):
    questions = [{"id": f"q{i}", "question": f"Question {i}?", "answers": ["x"]} for i in range(40)]
    with FakeOpenAI(latency_s=0.3) as srv:
        cfg = make_project(srv.url, questions=questions)
        rc, err = _signal_mid_run(srv, cfg, tmp_path / "part.json", sig, after, jobs=8)
    assert "never awaited" not in err and "Task was destroyed" not in err, err
    line = one_line(subprocess.CompletedProcess([], rc, "", err), code)
    assert "interrupted after" in line
    assert json.loads((tmp_path / "part.json").read_text())["status"] == "interrupted"


# -- 11. a data file larger than memory -------------------------------------------------------

def test_file_larger_than_the_memory_bound_is_refused(tmp_path, monkeypatch):
    from llmops_cli.plan import dataset
    from llmops_cli.core import files
    from llmops_cli.plan.retrieval import load_corpus

    write_jsonl(tmp_path / "q.jsonl", QUESTIONS)
    write_jsonl(tmp_path / "c.jsonl", CORPUS)
    monkeypatch.setattr(files, "available_memory", lambda: 200)
    with pytest.raises(DatasetError) as ei:
        dataset.load_dataset(DatasetSpec(path="q.jsonl", references="answers"), tmp_path)
    assert str(tmp_path / "q.jsonl") in str(ei.value) and "more than half the memory available" in str(ei.value)
    with pytest.raises(DatasetError, match="corpus is .* MB, more than half the memory"):
        load_corpus(RetrievalSpec(corpus="c.jsonl"), tmp_path)
    monkeypatch.setattr(files, "available_memory", lambda: None)  # unknown: no bound
    assert len(files.read_records(tmp_path / "q.jsonl")) == len(QUESTIONS)


def test_memory_bound_is_exit_2_before_any_call(make_project, fake_server, monkeypatch):
    from llmops_cli.core import files

    cfg = make_project(fake_server.url)
    monkeypatch.setattr(files, "max_file_bytes", lambda: 100)
    res = invoke(["eval", cfg, "--update-baseline"])
    assert res.exit_code == 2 and res.stderr.count("\n") == 1
    assert "questions.jsonl" in res.stderr and "memory available" in res.stderr
    assert fake_server.request_count == 0


def test_available_memory_is_known_here():
    from llmops_cli.core.files import available_memory, max_file_bytes

    avail = available_memory()
    assert avail is not None and avail > 0 and max_file_bytes() == avail // 2


def test_records_are_read_once_from_the_open_file(tmp_path, monkeypatch):
    """No whole-file read_text()/read_bytes() copy that is then split into a
    second one: JSONL and CSV are iterated line by line; the corpus hash is
    streamed."""
    from llmops_cli.core.files import read_records
    from llmops_cli.plan.retrieval import load_corpus

    write_jsonl(tmp_path / "c.jsonl", CORPUS)
    (tmp_path / "q.csv").write_text("id,question,reference\n1,a,b\n")

    def forbidden(*a, **k):
        raise AssertionError("read the whole file into memory")

    with monkeypatch.context() as m:
        m.setattr(Path, "read_text", forbidden)
        m.setattr(Path, "read_bytes", forbidden)
        assert len(read_records(tmp_path / "q.csv")) == 1
        chunks, digest = load_corpus(RetrievalSpec(corpus="c.jsonl"), tmp_path)
    import hashlib

    assert len(chunks) == len(CORPUS) and digest == hashlib.sha256((tmp_path / "c.jsonl").read_bytes()).hexdigest()[:16]
