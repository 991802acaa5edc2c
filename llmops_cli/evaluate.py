"""The jobs behind ``llmops eval``, ``score``, ``baseline update`` and
``validate``, as library calls that return an :class:`~llmops_cli.outcome.Outcome`
(exit code and reason included) instead of printing or exiting.

:func:`evaluate` checks everything that can be checked before the first
model call (config, templates, eval set, output paths, baseline, judges,
power), runs or scores, writes the run record, then either writes the
baseline or gates against it and writes the requested reports.
:func:`validate` stops before the first call and says whether ``evaluate``
would get that far.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .errors import LlmopsError
from .execute import DEFAULT_CONCURRENCY, DEFAULT_RETRIES
from .outcome import Outcome, from_comparison, from_error

RUNS_DIR = Path(".llmops/runs")


@dataclass
class EvalOptions:
    """What to run and where results go (the command line's options).

    ``config``: the YAML file. ``limit``: first N cases (0 = all; overrides
    ``dataset.limit``). ``concurrency``: model calls in flight; ``retries``:
    per call. ``use_cache``/``cache_dir``/``refresh``: the answer cache (see
    :func:`llmops_cli.runner.run_eval`). ``record_path``: the run record
    (default ``.llmops/runs/<run-id>.json``). ``outputs``: a JSON file
    ``{case_id: output}`` to score instead of calling the model.
    ``update_baseline``: write the run as the baseline instead of gating;
    ``from_run``: promote this run record to the baseline without running.
    ``baseline``: the baseline file (default: the config's). ``plain``: gate
    on point estimates. ``allow_judge_change``: gate a judge metric graded by
    another model than the baseline's. ``junit``/``markdown``: report files.
    ``top``: most-changed cases kept in the comparison (at least 10)."""

    config: str | Path
    limit: int | None = None
    concurrency: int = DEFAULT_CONCURRENCY
    retries: int = DEFAULT_RETRIES
    use_cache: bool = True
    cache_dir: str | Path | None = None
    refresh: bool = False
    record_path: str | Path | None = None
    outputs: str | Path | None = None
    update_baseline: bool = False
    from_run: str | Path | None = None
    baseline: str | Path | None = None
    plain: bool = False
    allow_judge_change: bool = False
    junit: str | Path | None = None
    markdown: str | Path | None = None
    top: int = 5


ProgressFn = Callable[[int, int], None]


def record_path_for(option: str | Path | None, run_id: str) -> Path:
    """Where a run record goes: ``option``, else ``.llmops/runs/<run_id>.json``."""
    return Path(option) if option else RUNS_DIR / f"{run_id}.json"


def _prepare(opts: EvalOptions):
    """Every check that needs no model call. Returns ``(config, baseline
    path, baseline or None, notes)``.

    Raises:
        InputError (and subclasses): bad config, templates, eval set, output
            path, baseline, judge change, or an unreachable ``require_power``.
    """
    from .baseline import check_dataset, check_judges, load_baseline
    from .config import load_config
    from .files import check_outputs, check_writable, run_inputs
    from .gate import check_before_run
    from .plan import make_plan

    cfg = load_config(opts.config)
    if opts.plain:
        cfg.gate.mode = "plain"
    bpath = Path(opts.baseline) if opts.baseline else cfg.baseline_path
    if not opts.from_run:
        files = {"--output": opts.record_path or record_path_for(None, "<run-id>"), "--junit": opts.junit,
                 "--markdown": opts.markdown}
        check_outputs(files, run_inputs(cfg, bpath, opts.outputs))
    if opts.update_baseline or opts.from_run:
        check_writable(bpath, "baseline")
        return cfg, bpath, None, []
    baseline = load_baseline(bpath)  # fail before paying for a run
    check_dataset(baseline, make_plan(cfg, opts.limit, with_prompts=False).dataset_hash, bpath)
    check_before_run(baseline, cfg.gate, cfg.all_metrics, str(bpath))
    notes = [f"judge changed: {n} (--allow-judge-change)" for n in check_judges(baseline, cfg, bpath, allow=opts.allow_judge_change)]
    return cfg, bpath, baseline, notes


def _open_cache(opts: EvalOptions):
    """The cache, opened now: one that cannot be written fails before any call."""
    from .cache import Cache

    return Cache(opts.cache_dir).open() if opts.use_cache else None


def evaluate(opts: EvalOptions, progress: ProgressFn | None = None) -> Outcome:
    """Run (or score, or promote) and gate, as ``llmops eval`` does.

    ``progress(done, total)`` is called after each resolved call. Never
    raises :class:`~llmops_cli.errors.LlmopsError`: bad input, a run that
    cannot complete and Ctrl-C come back as the outcome (exit 2, 3, 130),
    with the partial run record written where there is one.
    """
    from .baseline import promote_run, write_baseline
    from .gate import compare
    from .record import save_record

    notes: list[str] = []
    record = rpath = None
    try:
        cfg, bpath, baseline, notes = _prepare(opts)
        if opts.from_run:
            path = promote_run(cfg, opts.from_run)
            return Outcome("baseline written", f"baseline written: {path}", baseline_path=path, notes=notes)
        cache = _open_cache(opts)
        record = _run(cfg, opts, cache, progress)
        rpath = save_record(record, record_path_for(opts.record_path, record.run_id))
        if opts.update_baseline:
            write_baseline(record, bpath, max_unscored_share=cfg.max_unscored_share)
            return Outcome("baseline written", f"baseline written: {bpath}", record, record_path=rpath,
                           baseline_path=bpath, notes=notes)
        cmp = compare(baseline, record, cfg.gate, top=max(opts.top, 10), baseline_path=str(bpath),
                      max_unscored_share=cfg.max_unscored_share, memo=cache)
        out = from_comparison(cmp, record, max_unscored_share=cfg.max_unscored_share)
        out.record_path, out.baseline_path, out.notes = rpath, bpath, notes
    except LlmopsError as err:  # Interrupted is one too
        out = _failed(err, opts, notes)
        if out.record is None and record is not None:  # failed after the run was recorded (e.g. a judge left too much unscored)
            out.record, out.record_path = record, rpath
        return out
    try:
        write_reports(out, opts)
    except LlmopsError as err:  # a report that cannot be written: exit 2, the comparison still shown
        failed = from_error(err, rpath)
        failed.record, failed.comparison, failed.notes = record, cmp, notes
        return failed
    return out


def _run(cfg, opts: EvalOptions, cache, progress: ProgressFn | None):
    from .runner import load_outputs, run_eval, score_outputs

    kw = dict(limit=opts.limit, concurrency=opts.concurrency, cache=cache, retries=opts.retries, progress=progress,
              refresh=opts.refresh)
    if opts.outputs:
        return score_outputs(cfg, load_outputs(opts.outputs), name=Path(opts.outputs).name, **kw)
    return run_eval(cfg, **kw)


def _failed(err: LlmopsError, opts: EvalOptions, notes: list[str]) -> Outcome:
    """The outcome of ``err``, with its partial run record (if any) written."""
    from .errors import OutputError
    from .record import save_record

    record = getattr(err, "record", None)
    path = None
    if record is not None:
        try:
            path = save_record(record, record_path_for(opts.record_path, record.run_id))
        except OutputError as failed:  # the error that stopped the run stays the one reported
            notes = [*notes, f"partial run record not written: {failed}"]
    out = from_error(err, path)
    out.notes = notes
    return out


def write_reports(out: Outcome, opts: EvalOptions) -> None:
    """Write the Markdown summary (``opts.markdown``, and appended to
    ``$GITHUB_STEP_SUMMARY`` when set) and the JUnit XML (``opts.junit``).

    Raises:
        OutputError: a report cannot be written (names the file)."""
    from .files import append_text, atomic_write_text
    from .report import junit_xml, markdown

    md = markdown(out.comparison, out.record, opts.top)
    if opts.markdown:
        atomic_write_text(opts.markdown, md + "\n")
    if os.environ.get("GITHUB_STEP_SUMMARY"):
        append_text(os.environ["GITHUB_STEP_SUMMARY"], md + "\n")
    if opts.junit:
        atomic_write_text(opts.junit, junit_xml(out.comparison))


def validate(opts: EvalOptions) -> Outcome:
    """Everything :func:`evaluate` checks before its first model call —
    config, templates (every prompt rendered), eval set, corpus and
    retrieval, output paths, baseline compatibility (eval set, gated metrics,
    judges, ``require_power``), credentials for the model and every judge,
    the cache — with no call made. Exit 0 (status ``valid``) or 2."""
    from .plan import make_plan
    from .provider import check_credentials

    try:
        cfg, bpath, baseline, notes = _prepare(opts)
        if opts.outputs:
            from .runner import load_outputs

            load_outputs(opts.outputs)  # readable, a JSON object of strings
        cache = _open_cache(opts)
        plan = make_plan(cfg, opts.limit, with_prompts=not opts.outputs or bool(cfg.judges), memo=cache)
        endpoints = {r.endpoint for r in plan.requests} if not opts.outputs else set()
        if cfg.judges:
            from .judge import judge_endpoint

            endpoints |= {judge_endpoint(cfg, name) for name in cfg.judges}
        for ep in sorted(endpoints, key=lambda e: (e.model, e.api_base or "")):
            check_credentials(ep, cfg.path)
    except LlmopsError as err:
        return _failed(err, opts, [])
    cached = sum(cache.get(r.key) is not None for r in plan.requests) if cache is not None and not opts.outputs else 0
    what = f"{len(plan.cases)} cases"
    if not opts.outputs:
        what += f", {len(plan.requests)} model calls ({cached} cached)"
    against = "no baseline needed (--update-baseline)" if baseline is None else f"baseline {_shown(bpath)} is compatible"
    return Outcome("valid", f"{opts.config}: {what}; {against}; no model called", baseline_path=bpath, notes=notes)


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
