"""`llmops eval --watch` (llmops_cli.jobs.watch): real file changes in a temporary
project against the fake OpenAI-compatible server on 127.0.0.1. The watch
runs in a thread (stopped by an event) or, for Ctrl-C, in a subprocess."""

from __future__ import annotations

import json
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import ANSWERS, QUESTIONS
from llmops_cli.core.cache import Cache, default_dir
from llmops_cli.cli import cli
from llmops_cli.core.errors import InputError
from llmops_cli.jobs.evaluate import EvalOptions, evaluate
from llmops_cli.core.files import atomic_write_text
from llmops_cli.record.schema import MetricSummary, RunRecord
from llmops_cli.testing import FakeOpenAI
from llmops_cli.jobs.watch import Iteration, delta_line, watch, watched_files

WAIT_S = 60  # generous: no timing is asserted, this only bounds a hung test
TEMPLATE = "Context:\n{{ context }}\n\nQuestion: {{ question }}\n"
# the edit: a hint for the "Who ...?" questions only (4 of the 6), so only their requests change
HINTED = "Context:\n{{ context }}\n{% if question.startswith('Who') %}Give a name.\n{% endif %}\nQuestion: {{ question }}\n"
WHO = sum(q["question"].startswith("Who") for q in QUESTIONS)


def answer(messages, body):
    """The fixture's fixed answer to the question in the prompt; with the
    hint, its first reference answer (so the scores move)."""
    content = messages[-1]["content"]
    q = content.rsplit("Question: ", 1)[-1].strip()
    if "Give a name." in content:
        return next(c["answers"][0] for c in QUESTIONS if c["question"] == q)
    return ANSWERS.get(q, "I do not know")


@pytest.fixture
def project(make_project, litellm_loaded, monkeypatch):
    """A project whose user prompt is a template file, with its baseline
    written; cwd is its folder. Yields (config path, server)."""
    with FakeOpenAI(reply=answer) as srv:
        cfg = make_project(srv.url)
        (cfg.parent / "prompts").mkdir()
        (cfg.parent / "prompts" / "user.j2").write_text(TEMPLATE, encoding="utf-8")
        text = re.sub(r"(?m)^  user: .*$", "  user_file: prompts/user.j2", cfg.read_text(encoding="utf-8"))
        cfg.write_text(text, encoding="utf-8")
        monkeypatch.chdir(cfg.parent)
        out = evaluate(EvalOptions(cfg, update_baseline=True))
        assert out.status == "baseline written", out.reason
        assert srv.request_count == len(QUESTIONS)
        yield cfg, srv


class Watching:
    """``watch(opts)`` in a thread; :meth:`next` is the next iteration."""

    def __init__(self, opts: EvalOptions):
        self.iterations: queue.Queue[Iteration] = queue.Queue()
        self.stop = threading.Event()
        self.error: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, args=(opts,), daemon=True)
        self.thread.start()

    def _run(self, opts: EvalOptions) -> None:
        try:
            self.result = watch(opts, self.iterations.put, stop_event=self.stop)
        except BaseException as e:  # shown by the test, not lost in the thread
            self.error.append(e)

    def next(self) -> Iteration:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            assert not self.error, self.error
            try:
                return self.iterations.get(timeout=0.2)
            except queue.Empty:
                continue
        raise AssertionError("no iteration within the time limit")

    def close(self) -> None:
        self.stop.set()
        self.thread.join(WAIT_S)
        assert not self.thread.is_alive(), "the watch did not stop"
        assert not self.error, self.error
        assert self.result is None


def test_a_template_edit_calls_the_model_only_for_the_changed_requests(project):
    cfg, srv = project
    template = cfg.parent / "prompts" / "user.j2"
    w = Watching(EvalOptions(cfg))
    try:
        first = w.next()
        assert (first.number, first.outcome.exit_code, first.delta, first.changed) == (1, 0, None, [])
        assert srv.request_count == len(QUESTIONS)  # the baseline's answers, all from the cache
        for f in (cfg, template, cfg.parent / "questions.jsonl", cfg.parent / "corpus.jsonl",
                  cfg.parent / "baseline.json"):
            assert f.resolve() in first.files

        before = srv.request_count
        atomic_write_text(template, HINTED)  # as editors save: a new file renamed over the old one
        second = w.next()
        assert srv.request_count - before == WHO < len(QUESTIONS)  # only the hinted questions were asked again
        assert second.changed == [template.resolve()]
        assert second.outcome.record.usage.cache_hits == len(QUESTIONS) - WHO
        assert second.outcome.exit_code == 0 and second.outcome.comparison is not None  # gated against the baseline
        then, now = first.outcome.record.metrics, second.outcome.record.metrics
        assert now["token_f1"].aggregate > then["token_f1"].aggregate
        assert second.delta.startswith("vs previous: ")
        assert (f"token_f1 {then['token_f1'].aggregate:.4f} → {now['token_f1'].aggregate:.4f} "
                f"(+{now['token_f1'].aggregate - then['token_f1'].aggregate:.4f})") in second.delta
    finally:
        w.close()


def test_a_bad_edit_is_exit_2_and_the_watch_goes_on_to_the_fix(project):
    cfg, srv = project
    good = cfg.read_text(encoding="utf-8")
    system = cfg.parent / "prompts" / "system.j2"
    w = Watching(EvalOptions(cfg))
    try:
        assert w.next().outcome.exit_code == 0
        cfg.write_text(good + "params: [unclosed\n", encoding="utf-8")
        bad = w.next()
        assert bad.outcome.exit_code == 2 and bad.outcome.record is None and bad.delta is None
        assert "llmops.yaml" in bad.outcome.reason and "\n" not in bad.outcome.reason
        assert cfg.resolve() in bad.files  # still watched: the fix will run

        before = srv.request_count
        system.write_text("Answer briefly.", encoding="utf-8")  # not watched yet: starts nothing
        cfg.write_text(good.replace('system: "Answer briefly."', "system_file: prompts/system.j2"), encoding="utf-8")
        fixed = w.next()
        assert fixed.outcome.exit_code == 0, fixed.outcome.reason
        assert srv.request_count == before  # the same prompts as before the bad edit: all cached
        assert fixed.delta is not None and "(+" not in fixed.delta and "(-" not in fixed.delta  # vs the last complete run
        assert system.resolve() in fixed.files  # the config now names it

        system.write_text("Answer in a few words.", encoding="utf-8")
        again = w.next()
        assert again.changed == [system.resolve()] and srv.request_count - before == len(QUESTIONS)
    finally:
        w.close()


def test_no_cache_keeps_a_private_cache_between_iterations(project):
    cfg, srv = project
    entries = Cache(default_dir()).info()["entries"]
    w = Watching(EvalOptions(cfg, use_cache=False))
    try:
        before = srv.request_count
        assert w.next().outcome.exit_code == 0
        assert srv.request_count - before == len(QUESTIONS)  # --no-cache: the shared cache is not read
        (cfg.parent / "prompts" / "user.j2").write_text(HINTED, encoding="utf-8")
        assert w.next().outcome.exit_code == 0
        assert srv.request_count - before == len(QUESTIONS) + WHO  # nor asked again for unchanged requests
    finally:
        w.close()
    assert Cache(default_dir()).info()["entries"] == entries  # nor written


def test_watched_files_follow_the_config(project):
    cfg, _ = project
    extra = """
    judges:
      polite: {model: openai/fake-model, api_base: http://127.0.0.1:9/v1, template_file: judge.j2}
    checks:
      short: {python: "checks.py:short"}
    """
    (cfg.parent / "judge.j2").write_text("Rate {{ output }} 1-5. {{ references }}", encoding="utf-8")
    (cfg.parent / "checks.py").write_text("def short(output):\n    return len(output) < 80\n", encoding="utf-8")
    cfg.write_text(cfg.read_text(encoding="utf-8") + "\n".join(line[4:] for line in extra.splitlines()),
                   encoding="utf-8")
    files = watched_files(EvalOptions(cfg, outputs=cfg.parent / "outs.json"))
    names = {p.name for p in files}
    assert {"llmops.yaml", "user.j2", "questions.jsonl", "corpus.jsonl", "baseline.json", "judge.j2", "checks.py",
            "outs.json"} <= names
    assert all(p.is_absolute() for p in files)
    # the same list keeps an output from overwriting a check's code
    out = evaluate(EvalOptions(cfg, record_path=cfg.parent / "checks.py"))
    assert out.exit_code == 2 and "checks.short.python" in out.reason


def test_options_a_watch_cannot_take_are_refused_before_anything_runs(project):
    cfg, srv = project
    before = srv.request_count
    for opts, key in ((EvalOptions(cfg, update_baseline=True), "--update-baseline"),
                      (EvalOptions(cfg, shard="1/2"), "--shard"), (EvalOptions(cfg, refresh=True), "--refresh"),
                      (EvalOptions(None, candidate="run.json"), "--candidate")):
        with pytest.raises(InputError, match=f"^{key}: cannot be combined with --watch"):
            watch(opts, lambda it: pytest.fail("ran"))
    for flag in ("--update-baseline", "--json"):
        res = CliRunner().invoke(cli, ["eval", str(cfg), "--watch", flag])
        assert res.exit_code == 2 and res.stdout == ""
        assert res.stderr.startswith(f"llmops: error: {flag}: cannot be combined with --watch") and \
            res.stderr.count("\n") == 1, res.stderr
    assert srv.request_count == before


def test_delta_line_compares_each_metric_with_the_previous_run():
    def rec(status="complete", **scores):
        return RunRecord(status=status, metrics={k: MetricSummary(aggregate=v, scale=100.0 if k == "bleu" else 1.0)
                                                 for k, v in scores.items()})

    prev, now = rec(token_f1=0.612, exact_match=0.4, bleu=20.0), rec(token_f1=0.655, exact_match=0.4, bleu=None)
    assert delta_line(prev, now) == ("vs previous: token_f1 0.6120 → 0.6550 (+0.0430), exact_match 0.4000 → 0.4000, "
                                     "bleu 20.00 → —")
    assert delta_line(None, now) is None
    assert delta_line(prev, rec("interrupted", token_f1=0.1)) is None
    assert delta_line(now, rec(token_f1=0.5)) == "vs previous: token_f1 0.6550 → 0.5000 (-0.1550)"


# -- Ctrl-C: a real process and a real SIGINT -----------------------------------

def _watch_process(cfg: Path, *args: str) -> tuple[subprocess.Popen, queue.Queue]:
    """``llmops eval CONFIG --watch ARGS`` in its folder; its stdout lines
    arrive on the queue."""
    p = subprocess.Popen([sys.executable, "-m", "llmops_cli.cli", "eval", str(cfg), "--watch", *args], cwd=cfg.parent,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in p.stdout], daemon=True).start()
    return p, lines


def _stop(p: subprocess.Popen) -> tuple[int, str]:
    p.send_signal(signal.SIGINT)
    try:
        p.wait(WAIT_S)
    finally:
        if p.poll() is None:
            p.kill()
    return p.returncode, p.stderr.read()


def test_ctrl_c_while_watching_exits_130_without_a_traceback(project):
    cfg, _ = project
    p, lines = _watch_process(cfg)
    seen = []
    deadline = time.monotonic() + WAIT_S
    while not any(line.startswith("watching ") for line in seen) and time.monotonic() < deadline and p.poll() is None:
        try:
            seen.append(lines.get(timeout=0.2))
        except queue.Empty:
            pass
    assert any("gate passed" in line for line in seen), seen
    assert any(re.match(r"watching \d+ files… \(Ctrl-C to stop\)", line) for line in seen), seen
    code, err = _stop(p)
    assert code == 130, err
    assert "Traceback" not in err


def test_ctrl_c_during_an_iteration_exits_130_without_a_traceback(project):
    cfg, srv = project
    srv.latency_s = 0.5
    before, runs = srv.request_count, set((cfg.parent / ".llmops" / "runs").glob("*.json"))
    p, _ = _watch_process(cfg, "--no-cache", "-j", "1")
    deadline = time.monotonic() + WAIT_S
    while srv.request_count == before and time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.05)
    assert srv.request_count > before, "the watch made no call"
    code, err = _stop(p)
    assert code == 130, err
    assert "Traceback" not in err and "interrupted" in err
    new = set((cfg.parent / ".llmops" / "runs").glob("*.json")) - runs
    assert [json.loads(f.read_text())["status"] for f in new] == ["interrupted"]  # the partial record is kept


def test_an_edited_python_check_is_imported_again(project):
    cfg, srv = project
    checks = cfg.parent / "mychecks.py"
    checks.write_text("def short(output):\n    return len(output) < 80\n", encoding="utf-8")
    cfg.write_text(cfg.read_text(encoding="utf-8") + 'checks:\n  short: {python: "mychecks:short"}\n', encoding="utf-8")
    before = srv.request_count
    w = Watching(EvalOptions(cfg))
    try:
        first = w.next()
        assert first.outcome.exit_code == 0, first.outcome.reason
        assert checks.resolve() in first.files and first.outcome.record.metrics["short"].aggregate == 1.0
        checks.write_text("def short(output):\n    return len(output) < 5\n", encoding="utf-8")
        second = w.next()
        assert second.changed == [checks.resolve()]
        assert second.outcome.record.metrics["short"].aggregate < 1.0  # the edited function, not the imported one
        assert "short 1.0000 → " in second.delta
    finally:
        w.close()
    assert srv.request_count == before  # a check change calls no model
