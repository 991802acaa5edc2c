"""The response cache and durable writes: concurrent writers, one entry per
repeat, memoised derived results, and atomic files that survive a failed
write."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys

import pytest

from conftest import QUESTIONS
from llmops_cli.core.cache import Cache
from llmops_cli.config import load_config
from llmops_cli.core.files import atomic_write_text
from llmops_cli.jobs.runner import run_eval
from llmops_cli.testing import FakeOpenAI


def _writer(directory: str, tag: str, n: int) -> None:
    cache = Cache(directory)
    for i in range(n):
        cache.put(f"shared-{i}", "m", {"output": f"{tag}-{i}"})  # both processes write these keys
        cache.put(f"{tag}-{i}", "m", {"output": tag})
        assert cache.get(f"{tag}-{i}") == {"output": tag}
        cache.put_memo(f"memo-{i}", [i, tag])
    cache.close()


def test_two_processes_write_one_cache_at_once(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), tag, 300)) for tag in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]  # no "database is locked", no failed read-back
    cache = Cache(tmp_path)
    assert cache.info()["entries"] == 3 * 300  # 300 shared keys + 300 of each writer's own
    assert cache.get("shared-7")["output"] in ("a-7", "b-7")
    assert cache.get_memo("memo-299")[0] == 299


def _open_at(directory: str, start: float) -> None:
    import time

    while time.time() < start:  # every process reaches the fresh database at the same moment
        pass
    Cache(directory).open().put("k", "m", {"output": "x"})


def test_many_processes_creating_one_cache_at_once(tmp_path):
    """Switching a new database to WAL mode can fail at once with "database is
    locked" (no busy timeout applies); measured before the retry: 4 of 160
    processes failed. A CI matrix starting together must not exit 2 for that."""
    import time

    ctx = multiprocessing.get_context("fork")
    failed = 0
    for r in range(10):
        start = time.time() + 0.3
        procs = [ctx.Process(target=_open_at, args=(str(tmp_path / f"c{r}"), start)) for _ in range(8)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        failed += sum(p.exitcode != 0 for p in procs)
    assert failed == 0


def test_two_runs_share_a_cache_at_once(make_project, litellm_loaded, tmp_path):
    with FakeOpenAI(reply=lambda m, b: "Denver Broncos", latency_s=0.05) as srv:
        cfg = make_project(srv.url)
        env = {**os.environ, "LLMOPS_CACHE_DIR": str(tmp_path / "cache")}
        runs = [subprocess.Popen([sys.executable, "-m", "llmops_cli.cli", "eval", str(cfg), "--update-baseline",
                                  "--baseline", str(tmp_path / f"b{i}.json"), "-o", str(tmp_path / f"r{i}.json"), "-j", "2"],
                                 env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
        outs = [p.communicate(timeout=120) for p in runs]
    assert [p.returncode for p in runs] == [0, 0], outs
    assert (tmp_path / "b0.json").exists() and (tmp_path / "b1.json").exists()
    assert Cache(tmp_path / "cache").info()["entries"] == len(QUESTIONS)  # same keys, one entry each
    assert len(QUESTIONS) <= srv.request_count <= 2 * len(QUESTIONS)


def test_repeats_at_temperature_get_one_entry_each(make_project, litellm_loaded, tmp_path):
    counter = iter(range(10_000))
    with FakeOpenAI(reply=lambda m, b: f"answer {next(counter)}") as srv:
        path = make_project(srv.url, extra="repeats: 3\n")
        path.write_text(path.read_text().replace("temperature: 0,", "temperature: 0.7,"))
        assert "temperature: 0.7," in path.read_text()
        cfg = load_config(path)
        first = run_eval(cfg, cache=Cache(tmp_path / "cache"))
        n = len(QUESTIONS)
        assert Cache(tmp_path / "cache").info()["entries"] == 3 * n
        assert all(len({c.output for c in case.calls}) == 3 for case in first.cases)  # three different samples
        srv.reset()
        again = run_eval(cfg, cache=Cache(tmp_path / "cache"))
        assert srv.requests == [] and again.usage.cache_hits == 3 * n
    assert [[c.output for c in case.calls] for case in again.cases] == [[c.output for c in case.calls] for case in first.cases]


def test_clear_empties_answers_and_memo(tmp_path):
    cache = Cache(tmp_path)
    cache.put("k", "m", {"output": "x"})
    cache.put_memo("retrieval:abc", [[[0, 1.5]]])
    cache.put_memo("token_f1:def", {"per_case": [1.0]})
    cache.put_memo("token_f1:ghi", {"per_case": [0.0]})
    assert cache.info()["memo"] == {"retrieval": 1, "token_f1": 2}
    assert cache.clear() == 1
    assert cache.get("k") is None and cache.get_memo("retrieval:abc") is None
    assert cache.info()["entries"] == 0


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "baseline.json"
    target.write_text("old baseline\n")

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        atomic_write_text(target, "new baseline\n" * 1000)
    assert target.read_text() == "old baseline\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["baseline.json"]
    monkeypatch.undo()
    atomic_write_text(target, "new baseline\n")
    umask = os.umask(0)
    os.umask(umask)
    assert target.read_text() == "new baseline\n"
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # an ordinary file, not mkstemp's 0600
