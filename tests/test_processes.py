"""``llmops eval --processes N`` (issue 23, item 4): the run's shards in N
worker processes sharing the cache, merged into one record and gated as one
run. Through the real CLI against the fake OpenAI-compatible server on
127.0.0.1 (the workers are real processes calling it over HTTP)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import ANSWERS, QUESTIONS
from llmops_cli.cli import cli
from llmops_cli.jobs.processes import split
from llmops_cli.record.schema import load_record
from llmops_cli.testing import FakeOpenAI

ROOT = Path(__file__).resolve().parents[1]
MORE = [{"id": f"x{i}", "question": f"Extra question {i}?", "answers": [f"answer {i}", "the answer"]} for i in range(14)]
CASES = QUESTIONS + MORE
EXTRA = """\
checks:
  short: {length: {max: 4, unit: words}}
"""
MODE = {"wrong": False}


def reply(messages, body):
    """The first reference (or a fixed answer per ``ANSWERS``); everything
    wrong when a test sets ``MODE["wrong"]``."""
    if MODE["wrong"]:
        return "I really do not know the answer"
    q = messages[-1]["content"].rsplit("Question: ", 1)[-1].strip()
    if q in ANSWERS:
        return ANSWERS[q]
    return next((c["answers"][0] for c in CASES if c["question"] == q), "no idea")


@pytest.fixture(autouse=True)
def _right_by_default():
    MODE["wrong"] = False
    yield
    MODE["wrong"] = False


def run(*args):
    res = CliRunner().invoke(cli, [str(a) for a in args])
    assert res.exception is None or isinstance(res.exception, SystemExit), (res.exception, res.output)
    return res


def scores(path: Path) -> list[tuple[str, dict]]:
    return [(c.id, c.scores) for c in load_record(path).cases]


def test_split_keeps_the_total():
    assert split(32, 2) == [16, 16] and split(33, 2) == [17, 16] and split(5, 3) == [2, 2, 1]
    assert sum(split(64, 3)) == 64 and split(1, 2) == [1, 1]


def test_two_processes_give_one_process_scores_and_verdict_and_share_the_cache(make_project):
    with FakeOpenAI(reply=reply) as srv:
        cfg = make_project(srv.url, questions=CASES, extra=EXTRA)
        d = cfg.parent
        # 2 workers, empty cache: every case answered once, the merged record becomes the baseline
        res = run("eval", cfg, "--processes", "2", "--update-baseline", "-o", d / "p2-base.json")
        assert res.exit_code == 0, res.output
        assert "baseline written" in res.output
        assert srv.request_count == len(CASES)
        base = json.loads((d / "baseline.json").read_text())
        merged = load_record(d / "p2-base.json")
        assert merged.shard is None and merged.status == "complete" and len(merged.cases) == len(CASES)
        assert [c["id"] for c in base["cases"]] == [c["id"] for c in CASES]  # the eval set's order
        assert merged.usage.calls == len(CASES)
        assert [(c["id"], c["scores"]) for c in base["cases"]] == scores(d / "p2-base.json")

        # one process: every answer comes from the cache the workers wrote
        one = run("eval", cfg, "--processes", "1", "-o", d / "p1.json", "--json")
        assert one.exit_code == 0, one.output
        assert srv.request_count == len(CASES)
        # two processes again: no request either (the workers share the cache)
        two = run("eval", cfg, "--processes", "2", "-o", d / "p2.json", "--json", "--junit", d / "junit.xml")
        assert two.exit_code == 0, two.output
        assert srv.request_count == len(CASES)
        assert scores(d / "p2.json") == scores(d / "p1.json") == scores(d / "p2-base.json")
        a, b = json.loads(one.stdout), json.loads(two.stdout)
        assert a["passed"] and b["passed"] and a["metrics"] == b["metrics"]
        r1, r2 = load_record(d / "p1.json"), load_record(d / "p2.json")
        assert {k: v.model_dump() for k, v in r1.metrics.items()} == {k: v.model_dump() for k, v in r2.metrics.items()}
        assert (d / "junit.xml").is_file()

        # a regression: the same verdict (exit 1) and numbers either way
        MODE["wrong"] = True
        bad2 = run("eval", cfg, "--processes", "2", "--refresh", "-o", d / "bad2.json", "--json")
        bad1 = run("eval", cfg, "-o", d / "bad1.json", "--json")  # cached wrong answers
        assert bad2.exit_code == bad1.exit_code == 1, (bad2.output, bad1.output)
        assert json.loads(bad2.stdout)["metrics"] == json.loads(bad1.stdout)["metrics"]
        assert scores(d / "bad2.json") == scores(d / "bad1.json")


def test_bad_input_in_a_worker_is_exit_2_one_line(make_project):
    cfg = make_project(questions=QUESTIONS)
    with (cfg.parent / "questions.jsonl").open("a") as f:
        f.write("{not json\n")  # found when the eval set is read: by the workers (no baseline to check first)
    one = run("eval", cfg, "--update-baseline")
    res = run("eval", cfg, "--processes", "2", "--update-baseline")
    assert one.exit_code == res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and "questions.jsonl" in lines[0] and "Traceback" not in res.output
    assert lines[0] == one.output.strip()
    assert not (cfg.parent / "baseline.json").exists()


def test_a_worker_that_cannot_complete_is_exit_3(make_project):
    cfg = make_project("http://127.0.0.1:9/v1", timeout=2, max_error_share=0.0)  # nothing listens on port 9
    res = run("eval", cfg, "--processes", "2", "--update-baseline", "--retries", "0", "-o", cfg.parent / "run.json")
    assert res.exit_code == 3, res.output
    assert "Traceback" not in res.output
    assert not (cfg.parent / "baseline.json").exists()


@pytest.mark.parametrize("flags", [["--shard", "1/2"], ["-j", "1"], ["--max-cost", "1"], ["--sequential"]])
def test_options_a_run_over_processes_cannot_take_are_exit_2(make_project, flags):
    cfg = make_project()
    res = run("eval", cfg, "--processes", "2", *flags)
    assert res.exit_code == 2, res.output
    assert len(res.output.strip().splitlines()) == 1 and "--processes" in res.output


def _llmops_processes(cmd_line_marker: str) -> list[int]:
    """Pids of live processes whose command line holds ``cmd_line_marker``."""
    pids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if cmd_line_marker in (p / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(p.name))
            except OSError:
                pass
    return pids


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_reaches_the_workers_and_no_baseline_is_written(make_project, sig, code):
    cases = [{"id": f"s{i}", "question": f"Slow question {i}?", "answers": ["a"]} for i in range(200)]
    with FakeOpenAI(reply=lambda m, b: "a", latency_s=0.5) as srv:
        cfg = make_project(srv.url, questions=cases, timeout=30)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        proc = subprocess.Popen([sys.executable, "-m", "llmops_cli.cli", "eval", str(cfg), "--processes", "2",
                                 "--update-baseline", "-j", "4", "-q"], cwd=cfg.parent, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while srv.request_count < 4 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert srv.request_count >= 4, proc.communicate()
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == code, err
        assert "Traceback" not in err
        assert not (cfg.parent / "baseline.json").exists()
        assert _llmops_processes(str(cfg)) == []  # no worker left behind
        seen = srv.request_count
        time.sleep(1.0)
        assert srv.request_count == seen  # and none still calling
        assert seen < len(cases)
