"""Every exit code of `llmops eval`, through the real CLI against the fake
OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from conftest import PLANTED_KEY, QUESTIONS, run_in_fresh_process
from llmops_cli.cli import cli
from llmops_cli.testing import FakeOpenAI


MODE = {"answer": "right"}


def right_answers(messages, body):
    """The first reference answer of the question in the prompt, or (when a
    test switches MODE) a fixed wrong one."""
    if MODE["answer"] != "right":
        return MODE["answer"]
    q = messages[-1]["content"].rsplit("Question: ", 1)[-1].strip()
    return next((c["answers"][0] for c in QUESTIONS if c["question"] == q), "I do not know")


@pytest.fixture(autouse=True)
def _right_by_default():
    MODE["answer"] = "right"
    yield
    MODE["answer"] = "right"


def run(args, **kw):
    res = CliRunner().invoke(cli, args, catch_exceptions=False, **kw)
    return res


@pytest.fixture
def project(make_project, litellm_loaded):
    with FakeOpenAI(reply=right_answers) as srv:
        cfg = make_project(srv.url)
        assert run(["eval", str(cfg), "--update-baseline"]).exit_code == 0
        yield cfg, srv


def test_pass_is_exit_0_and_served_from_cache(project):
    cfg, srv = project
    n = srv.request_count
    res = run(["eval", str(cfg)])
    assert res.exit_code == 0, res.output
    assert "gate passed" in res.output
    assert srv.request_count == n  # every answer came from the cache


def test_worse_prompt_is_exit_1_and_names_the_metric(project):
    cfg, srv = project
    text = cfg.read_text().replace('system: "Answer briefly."', 'system: "Answer in French."')
    cfg.write_text(text)
    MODE["answer"] = "Je ne sais pas"
    res = run(["eval", str(cfg), "--markdown", str(cfg.parent / "s.md")])
    assert res.exit_code == 1, res.output
    assert "regressed" in res.output and "token_f1" in res.output
    assert "prompt.system" in res.output  # what changed in the config
    assert "regressed" in (cfg.parent / "s.md").read_text()


@pytest.mark.parametrize("edit, key", [
    (lambda t: t.replace("temperature: 0", "temprature: 0"), "params.temprature"),
    (lambda t: t.replace("metrics: [exact_match", "metrics: [exact_matc"), "metrics"),
    (lambda t: t.replace("{{ question }}\"\nretrieval", "{{ questoin }}\"\nretrieval"), "prompt.user"),
    (lambda t: t.replace("path: questions.jsonl", "path: missing.jsonl"), None),
    (lambda t: t.replace("gate:\n", "gate:\n  mode: lenient\n"), "gate.mode"),
    (lambda t: t + "gate:\n  mode: strict\n", "gate"),  # a second `gate:` key
])
def test_bad_input_is_exit_2_one_line_nothing_overwritten(project, edit, key):
    cfg, _ = project
    baseline = cfg.parent / "baseline.json"
    before = baseline.read_bytes()
    cfg.write_text(edit(cfg.read_text()))
    res = subprocess.run([sys.executable, "-m", "llmops_cli.cli", "eval", str(cfg)], capture_output=True, text=True,
                         env={**os.environ}, timeout=120)
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in res.stderr
    assert str(cfg) in lines[0] or "missing.jsonl" in lines[0]
    if key:
        assert key in lines[0]
    assert baseline.read_bytes() == before


def test_baseline_problems_are_exit_2(project):
    cfg, _ = project
    res = run(["eval", str(cfg), "--baseline", str(cfg.parent / "nope.json")])
    assert res.exit_code == 2 and "baseline not found" in res.output
    bad = cfg.parent / "v99.json"
    data = json.loads((cfg.parent / "baseline.json").read_text())
    bad.write_text(json.dumps({**data, "schema_version": 99}))
    res = run(["eval", str(cfg), "--baseline", str(bad)])
    assert res.exit_code == 2 and "schema_version" in res.output
    res = run(["eval", str(cfg), "--limit", "3"])  # another eval set than the baseline's
    assert res.exit_code == 2 and "another eval set" in res.output


def test_fully_cached_run_imports_no_model_code_and_makes_no_call(project):
    """Issue 5: a fully cached re-run never imports LiteLLM (nor the embedded
    model; nor bm25s or numpy: retrieval hits and bootstrap intervals are
    memoised too once a first comparison ran) and calls nothing."""
    cfg, srv = project
    assert run(["eval", str(cfg)]).exit_code == 0  # the first comparison against the new baseline
    srv.stop()  # any call would now fail the run
    res = run_in_fresh_process(["eval", cfg], ("litellm", "openai", "httpx", "llama_cpp", "bm25s", "numpy"), cfg.parent,
                               timeout=60)
    assert "EXIT 0" in res.stdout and "LOADED []" in res.stdout, res.stdout + res.stderr
    assert f"calls 0 · cache {len(QUESTIONS)} hit / 0 miss" in res.stdout


def test_empty_dataset_and_bad_flags_are_exit_2(project):
    cfg, _ = project
    (cfg.parent / "questions.jsonl").write_text("")
    assert run(["eval", str(cfg), "--update-baseline"]).exit_code == 2
    assert run(["eval", str(cfg), "--concurrency", "0"]).exit_code == 2


def test_server_down_is_exit_3_without_traceback(make_project, litellm_loaded):
    with FakeOpenAI(down=True) as srv:
        cfg = make_project(srv.url, timeout=2)
    t0 = time.time()
    res = subprocess.run([sys.executable, "-m", "llmops_cli.cli", "eval", str(cfg), "--update-baseline", "--retries", "1"],
                         capture_output=True, text=True, timeout=120, cwd=cfg.parent)
    assert res.returncode == 3, res.stderr
    assert "Traceback" not in res.stderr and "openai/fake-model" in res.stderr
    assert not (cfg.parent / "baseline.json").exists()
    assert time.time() - t0 < 60


def test_missing_key_is_exit_2_before_any_call(make_project, litellm_loaded, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    with FakeOpenAI() as srv:
        cfg = make_project(srv.url)
        res = run(["eval", str(cfg), "--update-baseline"])
        assert res.exit_code == 2 and "OPENAI_API_KEY" in res.output
        assert srv.request_count == 0


def _signal_mid_run(srv, cfg, record: Path, sig: int, after_requests: int, jobs: int = 1) -> tuple[int, str]:
    """Start `llmops eval --update-baseline -j JOBS` on ``cfg``, send ``sig`` once
    the server has seen ``after_requests`` requests; returns (exit code, stderr)."""
    cmd = [sys.executable, "-m", "llmops_cli.cli", "eval", str(cfg), "--update-baseline", "-j", str(jobs), "-o", str(record)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cfg.parent,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 60
    while srv.request_count < after_requests and time.time() < deadline:
        time.sleep(0.05)
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    return p.returncode, err


def test_ctrl_c_is_exit_130_keeps_answers_and_rerun_finishes(make_project, litellm_loaded, tmp_path):
    with FakeOpenAI(reply=right_answers, latency_s=0.6) as srv:
        cfg = make_project(srv.url)
        code, err = _signal_mid_run(srv, cfg, tmp_path / "part.json", signal.SIGINT, 3)
        assert code == 130, err
        part = json.loads((tmp_path / "part.json").read_text())
        done = sum(1 for c in part["cases"] if c["output"])
        assert part["status"] == "interrupted" and 1 <= done < len(part["cases"])
        assert not (cfg.parent / "baseline.json").exists()
        before = srv.request_count
        res = run(["eval", str(cfg), "--update-baseline"])
        assert res.exit_code == 0
        assert f"cache {done} hit / {6 - done} miss" in res.output
        assert srv.request_count - before == 6 - done


def test_sigterm_is_exit_143_and_keeps_the_partial_record(make_project, litellm_loaded, tmp_path):
    """A cancelled CI job gets SIGTERM: handled like Ctrl-C (record kept, answers cached), exit 143."""
    with FakeOpenAI(reply=right_answers, latency_s=0.6) as srv:
        cfg = make_project(srv.url)
        code, err = _signal_mid_run(srv, cfg, tmp_path / "part.json", signal.SIGTERM, 2)
    assert code == 143, err
    assert "Traceback" not in err and "interrupted after" in err
    part = json.loads((tmp_path / "part.json").read_text())
    assert part["status"] == "interrupted" and 1 <= sum(1 for c in part["cases"] if c["output"]) < len(part["cases"])
    assert not (cfg.parent / "baseline.json").exists()


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_outside_a_run_is_never_exit_1(tmp_path, sig, code):
    """Click's own handling would print "Aborted!" and exit 1 — the code of a regression."""
    fifo = tmp_path / "llmops.yaml"
    os.mkfifo(fifo)  # reading the config blocks until the signal arrives
    p = subprocess.Popen([sys.executable, "-m", "llmops_cli.cli", "eval", str(fifo)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 30
    while True:  # a writer can open the FIFO only once llmops has opened it to read the config
        try:
            writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError:
            assert time.time() < deadline and p.poll() is None
            time.sleep(0.02)
    # while llmops waits for the config's bytes. A signal that lands after Python checked for signals but before
    # the read() syscall starts is handled only at the next signal (as a user presses Ctrl-C again): resend it.
    for _ in range(15):
        p.send_signal(sig)
        try:
            _, err = p.communicate(timeout=2)
            break
        except subprocess.TimeoutExpired:
            continue
    else:
        p.kill()
        raise AssertionError("llmops did not exit on a signal")
    os.close(writer)
    assert p.returncode == code, err
    assert "llmops: interrupted" in err and "Aborted" not in err


def test_baseline_update_from_run_and_diff(project, tmp_path):
    cfg, srv = project
    assert run(["eval", str(cfg), "-o", str(tmp_path / "a.json")]).exit_code == 0
    MODE["answer"] = "Denver Broncos"
    cfg.write_text(cfg.read_text().replace("temperature: 0", "temperature: 0.5"))
    assert run(["eval", str(cfg), "-o", str(tmp_path / "b.json")]).exit_code == 1
    res = run(["diff", str(tmp_path / "a.json"), str(tmp_path / "b.json")])
    assert res.exit_code == 0 and "params.temperature: 0.0 → 0.5" in res.output and "q2" in res.output
    assert run(["baseline", "update", str(cfg), "--from-run", str(tmp_path / "b.json")]).exit_code == 0
    assert run(["eval", str(cfg)]).exit_code == 0


def test_cache_info_and_clear(project):
    res = run(["cache", "info"])
    assert res.exit_code == 0 and "entries" in res.output and "openai/fake-model" in res.output
    assert "deleted" in run(["cache", "clear"]).output
    assert " 0 entries" in run(["cache", "info"]).output


@pytest.mark.parametrize("args", [["--help"], ["eval", "--help"], ["score", "--help"]])
def test_help_lists_exit_codes(args):
    res = run(args)
    assert res.exit_code == 0 and "Exit codes" in res.output and "regression" in res.output and "130" in res.output


def test_no_file_written_holds_the_key(project, tmp_path):
    cfg, _ = project
    run(["eval", str(cfg), "-o", str(tmp_path / "r.json"), "--junit", str(tmp_path / "j.xml"), "--markdown", str(tmp_path / "m.md")])
    roots = [cfg.parent, tmp_path, os.environ["LLMOPS_CACHE_DIR"]]
    for root in roots:
        for dirpath, _, files in os.walk(root):
            for f in files:
                assert PLANTED_KEY.encode() not in open(os.path.join(dirpath, f), "rb").read(), f


def test_failed_cases_within_max_error_share_are_gated_on_the_rest(make_project, litellm_loaded):
    """max_unscored_share bounds judge verdicts only: provider errors are
    bounded by max_error_share, and the gate decides on the scored pairs."""
    def reply(messages, body):
        q = messages[-1]["content"].rsplit("Question: ", 1)[-1].strip()
        return (400, "bad request") if q in (QUESTIONS[0]["question"], QUESTIONS[1]["question"]) else right_answers(messages, body)
    with FakeOpenAI(reply=reply) as srv:
        cfg = make_project(srv.url, max_error_share=0.5)
        assert run(["eval", str(cfg), "--update-baseline"]).exit_code == 0
        res = run(["eval", str(cfg)])
    assert res.exit_code == 0, res.output


def test_cli_defaults_are_the_library_defaults():
    from llmops_cli.run.concurrency import DEFAULT_CAP
    from llmops_cli.run.execute import DEFAULT_RETRIES

    from llmops_cli import cli as cli_module

    params = {p.name: p.default for p in typer.main.get_command(cli).commands["eval"].params}
    assert (params["concurrency"], params["max_concurrency"], params["retries"]) == (None, DEFAULT_CAP, DEFAULT_RETRIES)
    assert (cli_module.DEFAULT_MAX_CONCURRENCY, cli_module.DEFAULT_RETRIES) == (DEFAULT_CAP, DEFAULT_RETRIES)
