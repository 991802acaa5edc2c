"""``llmops eval --watch``: run and gate again on every save, in one process.

:func:`watch` calls :func:`llmops_cli.jobs.evaluate.evaluate` once, then again
each time a file the run reads changes — the config, the prompt and judge
templates, the eval set, the corpus, the checks' schema and python files,
an ``--outputs`` file, the baseline (:func:`watched_files`, from
:func:`llmops_cli.measure.prepare.run_inputs`). The process stays alive, so LiteLLM is
imported once, and the response cache means that only the requests an edit
changed call the model. With ``--no-cache`` a private cache, dropped on
exit, plays that part between iterations.

Files are watched with `watchfiles <https://watchfiles.helpmanual.io>`_
(Rust's ``notify``: inotify, FSEvents, ...) through their parent folders,
not recursively, and filtered to the run's paths: editors save by writing a
new file and renaming it over the old one, which a watch on the file itself
would lose. Bursts of events are grouped (``debounce_ms``, ``step_ms``). The
set is recomputed after each iteration (an edited config may name another
template). A save made while an iteration runs is not lost: each file's
``stat`` before the run is compared with its ``stat`` once the new watch is
in place.

A bad edit is an iteration like any other (its outcome has exit code 2 and
a one-line reason); the watch goes on until the next save. Ctrl-C ends it:
during an iteration, that iteration's outcome is ``interrupted`` (exit 130)
and :func:`watch` returns it; while waiting, ``KeyboardInterrupt`` is raised.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

from llmops_cli.core.errors import InputError, LlmopsError

if TYPE_CHECKING:
    from llmops_cli.jobs.evaluate import EvalOptions
    from llmops_cli.gate.outcome import Outcome
    from llmops_cli.record.schema import RunRecord

DEBOUNCE_MS = 1600
"""Longest a burst of file events is gathered before the next run (ms)."""
STEP_MS = 100
"""A burst ends after this long without another event (ms)."""
POLL_MS = 300
"""How often the wait wakes without an event (ms). Its first wake, once the
watch is in place, compares the files' ``stat`` with the one taken before
the last run."""

Stat = tuple[int, int, int, int]
"""A file's inode, size, mtime and ctime (ns): what a save changes."""


@dataclass
class Iteration:
    """One run of the watch. ``number``: 1 for the first; ``outcome``: what
    :func:`~llmops_cli.jobs.evaluate.evaluate` returned; ``delta``: the one-line
    change of each metric's score since the last complete run
    (:func:`delta_line`; ``None`` for the first, or when this run has no
    scores); ``files``: the files watched next; ``changed``: the files whose
    change started this run (empty for the first)."""

    number: int
    outcome: Outcome
    delta: str | None
    files: list[Path]
    changed: list[Path] = field(default_factory=list)


def check_options(opts: EvalOptions) -> None:
    """Refuse the options a watch cannot take, before anything runs.

    Raises:
        InputError: naming the option — ``update_baseline``/``from_run``
            (each save would replace the baseline it is gated against),
            ``shard`` (a shard is not gated), ``candidate`` (a record made
            earlier does not change), ``refresh`` (every save would call the
            model for every case)."""
    refused = (
        ("--update-baseline", opts.update_baseline, "each save would replace the baseline it is gated against: write "
         "the baseline with one run (llmops eval CONFIG --update-baseline), then watch"),
        ("--from-run", opts.from_run, "a run record made earlier does not change: promote it without --watch"),
        ("--shard", opts.shard, "a shard is not gated: watch the whole eval set"),
        ("--candidate", opts.candidate, "a run record made earlier does not change: gate it without --watch"),
        ("--refresh", opts.refresh, "it would call the model for every case on every save: run once with --refresh, "
         "then watch"),
    )
    for key, given, why in refused:
        if given:
            raise InputError(None, key, f"cannot be combined with --watch: {why}")


def watched_files(opts: EvalOptions) -> list[Path]:
    """The files a run of ``opts`` reads (resolved, sorted): its config's
    :func:`~llmops_cli.measure.prepare.run_inputs` with ``opts.baseline`` and
    ``opts.outputs``.

    Raises:
        ConfigError: the config (or a template or check it names) cannot be
            loaded."""
    from llmops_cli.config import load_config
    from llmops_cli.measure.prepare import run_inputs

    assert opts.config is not None  # a watch takes no --candidate (check_options), so it has a config
    cfg = load_config(opts.config)
    bpath = Path(opts.baseline) if opts.baseline else cfg.baseline_path
    return sorted({p.resolve() for p in run_inputs(cfg, bpath, opts.outputs).values() if p is not None})


def delta_line(previous: RunRecord | None, current: RunRecord | None) -> str | None:
    """Each metric of ``current`` that ``previous`` also has, its aggregate
    then and now, in its own units (0–1, 0–100 for BLEU, USD, s, tokens), e.g.
    ``vs previous: token_f1 0.6120 → 0.6550 (+0.0430), exact_match 0.4000 →
    0.4000``; an unscored aggregate shows as ``—``, never 0. ``None`` when
    either record is missing or incomplete, or they share no metric."""
    from llmops_cli.report.text import fmt

    if previous is None or current is None or previous.status != "complete" or current.status != "complete":
        return None
    parts = []
    for name, now in current.metrics.items():
        then = previous.metrics.get(name)
        if then is None:
            continue
        unit = now.info.get("unit", "")
        text = f"{name} {fmt(then.aggregate, then.scale, unit=unit)} → {fmt(now.aggregate, now.scale, unit=unit)}"
        if then.aggregate is not None and now.aggregate is not None and now.aggregate != then.aggregate:
            text += f" ({fmt(now.aggregate - then.aggregate, now.scale, True, unit)})"
        parts.append(text)
    return "vs previous: " + ", ".join(parts) if parts else None


def watch(opts: EvalOptions, on_iteration: Callable[[Iteration], None], *, stop_event: Any = None,
          run: Callable[[EvalOptions], Outcome] | None = None, debounce_ms: int = DEBOUNCE_MS,
          step_ms: int = STEP_MS) -> Iteration | None:
    """Run and gate ``opts`` now and after every change to a file it reads,
    calling ``on_iteration`` with each :class:`Iteration`, until Ctrl-C or
    ``stop_event`` (anything with ``is_set()``, e.g. a ``threading.Event``;
    for a watch in another thread) is set.

    ``run``: called as ``run(opts)`` for each iteration (default
    :func:`~llmops_cli.jobs.evaluate.evaluate`; the CLI wraps it in a progress
    bar). ``debounce_ms``/``step_ms``: how events are grouped (milliseconds;
    see :data:`DEBOUNCE_MS`, :data:`STEP_MS`).

    Returns:
        The interrupted iteration (Ctrl-C during a run: exit 130), or
        ``None`` once ``stop_event`` is set.

    Raises:
        InputError: an option a watch cannot take (:func:`check_options`),
            before anything runs; OutputError: ``--no-cache``'s private
            cache cannot be created.
        KeyboardInterrupt: Ctrl-C while waiting for a change.
    """
    import tempfile

    from llmops_cli.jobs.evaluate import evaluate

    check_options(opts)
    run = run or evaluate
    with tempfile.TemporaryDirectory(prefix="llmops-watch-") as folder:
        private = None
        if not opts.use_cache and opts.cache is None:  # so that unchanged requests are not called again either
            from llmops_cli.core.cache import Cache

            private = Cache(folder).open()
            opts = dataclasses.replace(opts, cache=private)
        try:
            return _loop(opts, on_iteration, stop_event, run, debounce_ms, step_ms)
        finally:
            if private is not None:
                private.close()


def _loop(opts, on_iteration, stop_event, run, debounce_ms: int, step_ms: int) -> Iteration | None:
    files = _files_or(opts, [])
    changed: list[Path] | None = []
    last_complete = None
    for number in itertools.count(1):
        before = _snapshot(files)
        out = run(opts)
        files = _files_or(opts, files)
        before.update({p: _stat(p) for p in files if p not in before})  # a file the config names from now on
        assert changed is not None  # a None from wait_for_change returned below
        it = Iteration(number, out, delta_line(last_complete, out.record), files, changed)
        if out.record is not None and out.record.status == "complete":
            last_complete = out.record
        on_iteration(it)
        if out.exit_code == 130:
            return it
        if stop_event is not None and stop_event.is_set():
            return None
        changed = wait_for_change(files, before, stop_event=stop_event, debounce_ms=debounce_ms, step_ms=step_ms)
        if changed is None:
            return None
        _forget_modules(changed)
    return None  # not reached: itertools.count never ends


def _files_or(opts: EvalOptions, fallback: list[Path]) -> list[Path]:
    """:func:`watched_files`, or — when the config cannot be loaded (a bad
    edit) — ``fallback`` and the config, so that fixing it runs again."""
    try:
        return watched_files(opts)
    except LlmopsError:
        assert opts.config is not None  # a watch takes no --candidate (check_options), so it has a config
        return sorted({*fallback, Path(opts.config).resolve()})


def _stat(path: Path) -> Stat | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def _snapshot(files: Iterable[Path]) -> dict[Path, Stat | None]:
    return {p: _stat(p) for p in files}


def _targets(files: Iterable[Path]) -> tuple[list[Path], set[Path]]:
    """The folders to watch (each file's nearest existing folder) and the
    paths whose events count: the files, and the missing folders between a
    watched folder and a file (creating one may bring the file back)."""
    folders, relevant = set(), set()
    for f in files:
        relevant.add(f)
        folder = f.parent
        while not folder.is_dir() and folder != folder.parent:
            relevant.add(folder)
            folder = folder.parent
        folders.add(folder)
    return sorted(folders), relevant


def wait_for_change(files: list[Path], before: dict[Path, Stat | None] | None = None, *, stop_event: Any = None,
                    debounce_ms: int = DEBOUNCE_MS, step_ms: int = STEP_MS) -> list[Path] | None:
    """Block until one of ``files`` (resolved paths) is written, replaced,
    created or deleted; return those that changed (sorted), or ``None`` once
    ``stop_event`` is set. ``before``: each file's ``stat`` from before the
    last run (:func:`_snapshot`); a file that differs from it once the watch
    is in place changed during the run, and is returned at once.

    Raises:
        KeyboardInterrupt: Ctrl-C (in the main thread)."""
    import watchfiles

    folders, relevant = _targets(files)
    events = watchfiles.watch(*folders, watch_filter=lambda _change, path: Path(path) in relevant,
                              debounce=debounce_ms, step=step_ms, stop_event=stop_event, rust_timeout=POLL_MS,
                              yield_on_timeout=True, recursive=False, raise_interrupt=True)
    from llmops_cli.core import stop

    first = True
    try:
        for changes in events:  # at least every POLL_MS (yield_on_timeout)
            stop.check()  # a Ctrl-C or SIGTERM swallowed where it landed still ends the watch
            if first and before:  # the watch is in place: what changed since the run began?
                first = False
                moved = [p for p, st in before.items() if p in relevant and _stat(p) != st]
                if moved:
                    return sorted(moved)
            if changes:
                return sorted({Path(path) for _, path in changes})
    finally:
        events.close()
    return None


def _forget_modules(changed: list[Path]) -> None:
    """Drop from ``sys.modules`` the python checks among ``changed``
    imported as ``module:function``, so the next run imports the edited
    code (a ``path.py:function`` check is executed afresh anyway)."""
    changed_py = {p for p in changed if p.suffix == ".py"}
    if not changed_py:
        return
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if file and Path(os.path.realpath(file)) in changed_py:
            del sys.modules[name]
