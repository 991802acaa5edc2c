"""One run over several worker processes (``llmops eval --processes N``):
the run's shards (:mod:`llmops_cli.plan.shards`) answered and scored by N
worker processes at once, merged in this process into one record
(:func:`llmops_cli.jobs.merge.merge_records`), which :func:`llmops_cli.jobs.evaluate.evaluate`
then saves and gates as it does a one-process run.

Why: a run against a fast server is CPU-bound in one process (LiteLLM spends
milliseconds of CPU per call), so a second core can take half the cases.

**Workers.** Worker k is ``python -m llmops_cli.jobs.process_worker`` running
``evaluate`` with ``shard=(k, N)`` on the same config, eval set, cache
(the SQLite file is shared: WAL mode, one answer per key; a Redis cache is
shared anyway), limit, retries and refresh; the calls in flight are split:
``-j C`` gives the workers C in total (C // N each, the remainder to the
first), an adaptive run's ``--max-concurrency`` likewise. Each writes its
shard's record to a temporary folder, removed after the merge. Workers run
in their own process group: Ctrl-C and SIGTERM reach this process, which
sends SIGINT to each worker (each writes its partial record and exits 130),
merges what they recorded when every shard has a record, and raises
:class:`~llmops_cli.core.errors.Interrupted` (the CLI exits 130, or 143 after
SIGTERM). A worker that fails stops the others: its bad input is an
:class:`~llmops_cli.core.errors.InputError` with its one line (exit 2), a run
it could not complete a :class:`~llmops_cli.core.errors.RunIncomplete` (exit 3,
with the merged partial record when there is one).

**The record** is the merged one: the cases in the eval set's order with the
scores each worker computed, metrics re-aggregated from the cases exactly as
one process aggregates them — the same scores and verdict as one process.
Its usage is summed over the workers (the most calls in flight too: the
workers' peaks added, an upper bound) except ``wall_s``: the elapsed time of
the whole run. ``max_error_share`` applies per worker (to its shard's
cases), as it does for ``--shard``.

**Refused** with N > 1 (:func:`check_processes`, exit 2 before any call):
``--shard`` (the workers are the shards), ``--from-run`` or a candidate (no
run), ``--baseline-ref``, sequential gating (it stops on the verdict of the
cases answered so far, in one order), ``--max-cost`` (a budget is counted
per process), an open cache object (it cannot be shared with processes),
``-j C`` below N, and a system that is not POSIX (the workers get their own
process group and a pipe by descriptor).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from llmops_cli.core.errors import InputError, Interrupted, RunIncomplete

if TYPE_CHECKING:
    from llmops_cli.record.schema import RunRecord

STOP_WAIT_S = 30.0  # how long stopped workers get to write their partial records before they are killed
_POLL_S = 0.05


def check_processes(opts, sequential: bool = False) -> int:
    """``opts.processes`` (:class:`~llmops_cli.jobs.evaluate.EvalOptions`)
    checked against the other options; returns it.

    ``sequential``: whether the run would be gated sequentially.

    Raises:
        InputError: ``processes`` below 1, or above 1 with an option a run
            over several processes cannot take (see the module), naming
            ``--processes`` (exit 2)."""
    n = opts.processes
    if n < 1:
        raise InputError(None, "--processes", f"must be at least 1, got {n}")
    if n == 1:
        return 1
    refused = (("--shard", opts.shard, "the workers are the run's shards; run one shard with one process"),
               ("--from-run", opts.from_run, "promoting a record runs nothing"),
               ("--candidate", opts.candidate, "gating a record runs nothing"),
               ("--baseline-ref", opts.baseline_ref, "the ref's baseline run is one process; drop --processes"),
               ("--sequential", sequential, "sequential gating stops on the cases answered so far, in one order"),
               ("--max-cost", opts.max_cost is not None, "a spending limit is counted per process"),
               ("cache", opts.cache is not None, "an open cache object cannot be shared with worker processes"),
               ("this system", os.name != "posix", "worker processes need a POSIX system (Linux, macOS)"))
    for key, given, why in refused:
        if given:
            raise InputError(None, "--processes", f"cannot be used with {key}: {why}")
    if opts.concurrency is not None and opts.concurrency < n:
        raise InputError(None, "--processes", f"{n} processes need at least {n} calls in flight (-j {opts.concurrency})")
    return n


def split(total: int, n: int) -> list[int]:
    """``total`` calls in flight shared by ``n`` workers: ``total // n``
    each, the remainder one more to the first ones; at least 1 each."""
    return [max(1, total // n + (1 if k < total % n else 0)) for k in range(n)]


@dataclass
class _Worker:
    index: int
    proc: subprocess.Popen
    record_path: Path
    done: int = 0
    total: int = 0
    result: dict[str, Any] = field(default_factory=dict)
    stopped: bool = False


def _worker_options(opts, k: int, n: int, record_path: Path, concurrency: int | None,
                    max_concurrency: int) -> dict[str, Any]:
    """The JSON-able options of worker ``k`` of ``n``: its shard of this run."""
    def s(v):
        return None if v is None else str(v)

    return {"config": s(opts.config), "limit": opts.limit, "concurrency": concurrency,
            "max_concurrency": max_concurrency, "retries": opts.retries, "use_cache": opts.use_cache,
            "cache_dir": s(opts.cache_dir), "cache_url": opts.cache_url, "refresh": opts.refresh,
            "record_path": str(record_path), "outputs": s(opts.outputs), "shard": [k, n]}


def _read(worker: _Worker, fd: int) -> None:
    """Worker messages, one JSON line each: ``{"done": d, "total": t}`` or
    ``{"result": {...}}``."""
    with os.fdopen(fd, "r", encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if "result" in msg:
                worker.result = msg["result"]
            else:
                worker.done, worker.total = int(msg.get("done", 0)), int(msg.get("total", 0))


def _spawn(spec: dict[str, Any], k: int, record_path: Path) -> tuple[_Worker, threading.Thread]:
    import llmops_cli

    r, w = os.pipe()
    env = dict(os.environ)
    root = str(Path(llmops_cli.__file__).resolve().parents[1])  # this llmops_cli, even when not installed
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    env.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    try:
        proc = subprocess.Popen([sys.executable, "-m", "llmops_cli.jobs.process_worker", json.dumps(spec), str(w)],
                                pass_fds=(w,), stdin=subprocess.DEVNULL, stdout=_stderr_fd(),
                                env=env, process_group=0)
    finally:
        os.close(w)
    worker = _Worker(k, proc, record_path)
    reader = threading.Thread(target=_read, args=(worker, r), daemon=True)
    reader.start()
    return worker, reader


def _stderr_fd() -> int | None:
    """Where a worker's stray stdout goes: this process's stderr (stdout
    may carry ``--json``)."""
    try:
        return sys.__stderr__.fileno() if sys.__stderr__ is not None else None
    except (OSError, ValueError):
        return None


def _stop(workers: list[_Worker]) -> None:
    for w in workers:
        if w.proc.poll() is None and not w.stopped:
            w.stopped = True
            try:
                w.proc.send_signal(signal.SIGINT)
            except ProcessLookupError:
                pass


def _wait_stopped(workers: list[_Worker]) -> None:
    """Wait for stopped workers to write their partial records; kill those
    that take longer than :data:`STOP_WAIT_S` or a second Ctrl-C."""
    deadline = time.monotonic() + STOP_WAIT_S
    try:
        while any(w.proc.poll() is None for w in workers) and time.monotonic() < deadline:
            time.sleep(_POLL_S)
    except KeyboardInterrupt:
        pass
    for w in workers:
        if w.proc.poll() is None:
            w.proc.kill()
            w.proc.wait()


def run_processes(opts, progress: Callable[[int, int], None] | None = None) -> RunRecord:
    """Run ``opts``'s eval set as ``opts.processes`` worker processes, one
    shard each, and return the merged record (not yet saved; see the module).

    ``progress(done, total)``: the workers' calls, summed, as they report
    them (about ten times a second).

    Raises:
        InputError: a worker's bad input (its one line; exit 2) or shard
            records that do not merge.
        RunIncomplete: a worker could not complete, crashed or was stopped
            by someone else (exit 3; ``.record``: the merged partial record
            when every shard wrote one).
        Interrupted: Ctrl-C or SIGTERM here (``.record`` likewise)."""
    n = opts.processes
    t0 = time.perf_counter()
    conc = split(opts.concurrency, n) if opts.concurrency is not None else [None] * n
    caps = split(opts.max_concurrency, n)
    workers: list[_Worker] = []
    readers: list[threading.Thread] = []
    with tempfile.TemporaryDirectory(prefix="llmops-processes-") as tmp:
        interrupted = False
        first_failed: _Worker | None = None
        try:
            for k in range(1, n + 1):
                path = Path(tmp) / f"shard-{k}.json"
                w, r = _spawn(_worker_options(opts, k, n, path, conc[k - 1], caps[k - 1]), k, path)
                workers.append(w)
                readers.append(r)
            shown = (-1, -1)
            while True:
                running = [w for w in workers if w.proc.poll() is None]
                if first_failed is None:
                    first_failed = next((w for w in workers if w.proc.returncode not in (None, 0)), None)
                    if first_failed is not None:
                        _stop(running)
                now = (sum(w.done for w in workers), sum(w.total for w in workers))
                if progress is not None and now != shown and now[1]:
                    progress(*now)
                    shown = now
                if not running:
                    break
                time.sleep(_POLL_S)
        except KeyboardInterrupt:
            interrupted = True
            _stop(workers)
            _wait_stopped(workers)
        for r in readers:
            r.join(timeout=5)
        if interrupted:
            raise Interrupted("interrupted; completed answers are cached", _merged_partial(workers))
        if first_failed is not None:
            raise _failure(first_failed, workers, n)
        record = _merge(workers)
    record.usage.wall_s = round(time.perf_counter() - t0, 3)
    return record


def _failure(w: _Worker, workers: list[_Worker], n: int) -> Exception:
    code = w.proc.returncode
    message = str(w.result.get("reason") or "").strip()
    if code == 2:
        return InputError(None, None, message or f"worker {w.index}/{n} exited with code 2")
    what = f"worker {w.index}/{n}"
    if code == 3:
        return RunIncomplete(message or f"{what} could not complete", _merged_partial(workers))
    if code in (130, 143):
        return RunIncomplete(f"{what} was stopped (exit {code}); the run did not complete", _merged_partial(workers))
    return RunIncomplete(f"{what} failed (exit {code}){': ' + message if message else ''}; the run did not complete",
                         _merged_partial(workers))


def _merge(workers: list[_Worker]) -> RunRecord:
    from llmops_cli.jobs.merge import merge_records
    from llmops_cli.record.schema import load_record

    shards = [(w.record_path, load_record(w.record_path)) for w in workers]
    record, _ = merge_records(shards)
    peaks = [r.usage.concurrency_peak for _, r in shards if r.usage.concurrency_peak is not None]
    if peaks:  # the workers ran at once: their calls in flight add up (at most)
        record.usage.concurrency_peak = sum(peaks)
    return record


def _merged_partial(workers: list[_Worker]) -> RunRecord | None:
    """The workers' partial records merged, when every one wrote a record."""
    from llmops_cli.core.errors import LlmopsError

    if not all(w.record_path.is_file() for w in workers):
        return None
    try:
        return _merge(workers)
    except LlmopsError:
        return None
