"""The jobs behind ``llmops eval``, ``score``, ``baseline update`` and
``validate`` — and ``gate`` (a run record made earlier) and ``merge`` (the
records of a run's shards) — as library calls that return an
:class:`~llmops_cli.gate.outcome.Outcome` (exit code and reason included) instead
of printing or exiting.

:func:`evaluate` checks everything that can be checked before the first
model call (config, templates, eval set, output paths, baseline, judges,
power), runs or scores, writes the run record, then either writes the
baseline or gates against it and writes the requested reports. With
``shard`` it runs one shard and stops after writing its record; with
``candidate`` it gates that record instead of running. :func:`merge_runs`
merges shard records into one.
:func:`validate` stops before the first call and says whether ``evaluate``
would get that far.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from llmops_cli.core import stop
from llmops_cli.core.errors import Interrupted, LlmopsError
from llmops_cli.run.concurrency import DEFAULT_CAP
from llmops_cli.run.execute import DEFAULT_RETRIES
from llmops_cli.gate.outcome import Outcome, from_comparison, from_error
from llmops_cli.plan.shards import check_shard_option

RUNS_DIR = Path(".llmops/runs")


@dataclass
class EvalOptions:
    """What to run and where results go (the command line's options).

    ``config``: the YAML file. ``limit``: first N cases (0 = all; overrides
    ``dataset.limit``). ``concurrency``: model calls in flight, fixed (None:
    adaptive up to ``max_concurrency``); ``retries``:
    per call. ``use_cache``/``cache_dir``/``refresh``: the answer cache (see
    :func:`llmops_cli.jobs.runner.run_eval`); ``cache_url``: a shared Redis cache
    instead of ``cache_dir`` (over ``$LLMOPS_CACHE_URL`` and the config's
    ``cache.url``; see :func:`llmops_cli.core.cache.open_cache`). ``record_path``: the run record
    (default ``.llmops/runs/<run-id>.json``). ``outputs``: a JSON file
    ``{case_id: output}`` to score instead of calling the model.
    ``update_baseline``: write the run as the baseline instead of gating;
    ``from_run``: promote this run record to the baseline without running.
    ``baseline``: the baseline file (default: the config's). ``plain``: gate
    on point estimates. ``allow_judge_change``: gate a judge metric graded by
    another model than the baseline's. ``junit``/``markdown``: report files;
    ``html``: the self-contained HTML report (:func:`llmops_cli.report.html.html_report`);
    ``comment``: the pull-request comment (the Markdown summary under a
    marker line naming the config, :func:`llmops_cli.report.comment_body`).
    ``top``: most-changed cases kept in the comparison (at least 10).
    ``shard``: ``"k/n"`` or ``(k, n)``: run only shard k of n (see
    :mod:`llmops_cli.plan.shards`), write its record and stop (not gated).
    ``candidate``: a run record to gate instead of running (``llmops gate``);
    ``config`` may then be None: the config the record names. ``cache``: an
    open cache to use instead of opening one (``use_cache``, ``cache_dir`` and
    ``cache_url`` then unused), e.g. the private one ``eval --watch --no-cache``
    keeps between iterations. ``baseline_ref``: a git ref (``origin/main``, a
    sha): gate against this config as it is at that commit, run first,
    instead of a baseline file (:mod:`llmops_cli.jobs.ref_baseline`);
    ``allow_dataset_change``: with it, an eval set that differs at the ref is
    compared on the cases both hold unchanged. ``sequential``: gate
    sequentially (``gate.sequential``; :mod:`llmops_cli.gate.sequential_rules`):
    stop calling the model once the verdict is certain. ``max_cost``: US dollars the
    run's new calls may cost (:mod:`llmops_cli.run.budget`): a run whose estimated
    lower bound exceeds it is refused before any call (exit 2), a run whose
    spend passes it stops (exit 3, record written, answers cached).
    ``processes``: worker processes answering the run's shards at once, merged
    into one record before it is gated (:mod:`llmops_cli.jobs.processes`); 1:
    this process alone."""

    config: str | Path | None
    limit: int | None = None
    concurrency: int | None = None
    max_concurrency: int = DEFAULT_CAP
    retries: int = DEFAULT_RETRIES
    use_cache: bool = True
    cache_dir: str | Path | None = None
    cache_url: str | None = None
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
    html: str | Path | None = None
    comment: str | Path | None = None
    top: int = 5
    shard: str | tuple[int, int] | None = None
    candidate: str | Path | None = None
    cache: Any = None
    baseline_ref: str | None = None
    allow_dataset_change: bool = False
    sequential: bool = False
    max_cost: float | None = None
    processes: int = 1


ProgressFn = Callable[[int, int], None]


def record_path_for(option: str | Path | None, run_id: str) -> Path:
    """Where a run record goes: ``option``, else ``.llmops/runs/<run_id>.json``."""
    return Path(option) if option else RUNS_DIR / f"{run_id}.json"


def _prepare(opts: EvalOptions):
    """Every check that needs no model call. Returns ``(config, baseline
    path, baseline or None, notes, the candidate record or None)``.

    Raises:
        InputError (and subclasses): bad config, templates, eval set, output
            path, baseline, judge change, an unreachable ``require_power``,
            a bad ``shard`` (or one with ``update_baseline``, ``from_run``,
            reports or a candidate), a candidate record of another config.
        RunIncomplete: a candidate record that did not complete (exit 3).
    """
    from llmops_cli.gate.baseline import check_dataset, check_judges, load_baseline
    from llmops_cli.config import load_config
    from llmops_cli.measure.prepare import prepare
    from llmops_cli.core.files import check_outputs, check_writable
    from llmops_cli.measure.prepare import run_inputs
    from llmops_cli.gate.power import check_before_run
    from llmops_cli.plan.requests import make_plan

    candidate = None
    if opts.candidate:
        from llmops_cli.jobs.merge import check_candidate, load_candidate, recorded_config

        candidate = load_candidate(opts.candidate)
    if opts.config is not None:
        cfg = prepare(load_config(opts.config))
    else:
        assert candidate is not None and opts.candidate is not None  # EvalOptions: no config only with a candidate
        cfg = prepare(load_config(recorded_config(candidate, opts.candidate)))
    if opts.plain:
        cfg.gate.mode = "plain"
    _check_local_models(cfg)
    bpath = Path(opts.baseline) if opts.baseline else cfg.baseline_path
    if opts.baseline_ref or opts.allow_dataset_change:
        from llmops_cli.jobs.ref_baseline import check_options

        check_options(opts)
    check_shard_option(opts)
    _check_sequential(opts, cfg)
    if opts.processes != 1:
        from llmops_cli.jobs.processes import check_processes

        check_processes(opts, sequential=cfg.gate.sequential is not None and _sequential_run(opts))
    if not opts.from_run:
        files = {"--output": None if candidate else opts.record_path or record_path_for(None, "<run-id>"),
                 "--junit": opts.junit, "--markdown": opts.markdown, "--comment": opts.comment,
                 "--html": opts.html}
        inputs = run_inputs(cfg, bpath, opts.outputs)
        check_outputs(files, {**inputs, "the run record": opts.candidate} if candidate else inputs)
    if opts.update_baseline or opts.from_run:
        check_writable(bpath, "baseline")
        return cfg, bpath, None, [], None
    if opts.shard or opts.baseline_ref:  # a shard is not gated; a ref's baseline is measured (evaluate)
        return cfg, bpath, None, [], None
    baseline = load_baseline(bpath, gated=True)  # fail before paying for a run
    dhash = candidate.dataset_hash if candidate else make_plan(cfg, opts.limit, with_prompts=False).dataset_hash
    check_dataset(baseline, dhash, bpath)
    check_before_run(baseline, cfg.gate, cfg.all_metrics, str(bpath))
    notes = [f"judge changed: {n} (--allow-judge-change)" for n in check_judges(baseline, cfg, bpath, allow=opts.allow_judge_change)]
    if candidate is not None:
        assert opts.candidate is not None  # the candidate was loaded from it
        check_candidate(candidate, cfg, opts.candidate)
    return cfg, bpath, baseline, notes, candidate


def _check_local_models(cfg) -> None:
    """An embedded model (``local/...``, the starter's default) that this
    installation cannot run — no ``[local]`` extra — is exit 2 at once, with
    the install command, before the baseline or anything else is looked at."""
    from llmops_cli.core.errors import ConfigError
    from llmops_cli.run.local_model import unavailable

    models = [("model", cfg.model)] + [(f"judges.{n}.model", j.model) for n, j in cfg.judges.items() if j.model]
    for key, model in models:
        if model.startswith("local/") and (problem := unavailable(model)):
            raise ConfigError(cfg.path or "<config>", key, problem)


def _sequential_run(opts: EvalOptions) -> bool:
    """Whether a run with these options would be gated sequentially when the
    config asks for it: not when writing a baseline, running a shard,
    scoring outputs or gating a record (each answers every case, or none)."""
    return not (opts.update_baseline or opts.from_run or opts.shard or opts.outputs or opts.candidate)


def _check_sequential(opts: EvalOptions, cfg) -> None:
    """``--sequential`` sets ``gate.sequential``; either is checked before
    any call (:func:`llmops_cli.gate.sequential_rules.check_config`)."""
    if opts.sequential:
        from llmops_cli.config.measure import Sequential
        from llmops_cli.gate.sequential_rules import check_options

        check_options(opts)
        if cfg.gate.sequential is None:
            cfg.gate.sequential = Sequential()
    if cfg.gate.sequential is not None and _sequential_run(opts):
        from llmops_cli.gate.sequential_rules import check_config

        check_config(cfg)


def _open_cache(opts: EvalOptions, cfg):
    """The cache, opened now: one that cannot be written fails before any
    call. Redis when a URL is given (``--cache-url`` > ``$LLMOPS_CACHE_URL`` >
    ``cache.url``; unreachable: one warning and ``None``, or exit 2 with
    ``cache.required``), else SQLite in ``opts.cache_dir``; ``opts.cache``
    when given."""
    if opts.cache is not None:
        return opts.cache
    if not opts.use_cache:
        return None
    from llmops_cli.core.cache import open_cache, resolve_url

    url, where = resolve_url(opts.cache_url, cfg.cache.url)
    return open_cache(opts.cache_dir, url=url, where=where, ttl_s=cfg.cache.ttl_s, prefix=cfg.cache.prefix,
                      required=cfg.cache.required, config_path=cfg.path or opts.config)


def evaluate(opts: EvalOptions, progress: ProgressFn | None = None) -> Outcome:
    """Run (or score, or promote) and gate, as ``llmops eval`` does.

    ``progress(done, total)`` is called after each resolved call. Never
    raises :class:`~llmops_cli.core.errors.LlmopsError`: bad input, a run that
    cannot complete and Ctrl-C come back as the outcome (exit 2, 3, 130),
    with the partial run record written where there is one.
    """
    from llmops_cli.gate.baseline import promote_run, write_baseline
    from llmops_cli.gate.rules import compare
    from llmops_cli.record.schema import save_record

    notes: list[str] = []
    record = rpath = ref = None
    try:
        cfg, bpath, baseline, notes, candidate = _prepare(opts)
        if opts.from_run:
            path = promote_run(cfg, opts.from_run)
            return Outcome("baseline written", f"baseline written: {path}", baseline_path=path, notes=notes)
        cache = _open_cache(opts, cfg)
        if opts.max_cost is not None and candidate is None and not opts.outputs:
            from llmops_cli.measure.estimate import check_before_run

            check_before_run(_estimate(cfg, opts, cache), opts.max_cost, cfg.path or str(opts.config))
        if opts.baseline_ref:  # base versus head: this config as it is at the git ref runs first, as the baseline
            from llmops_cli.jobs.ref_baseline import prepare_ref

            ref = prepare_ref(cfg, opts, memo=cache)
            baseline = ref.measure(lambda: _run(ref.config, opts, cache, progress),
                                   record_path_for(opts.record_path, "-").parent)
            bpath, notes = ref.record_path, [*notes, *ref.notes]
        if candidate is not None:  # gate a record made earlier (e.g. merged from shards)
            assert opts.candidate is not None  # the candidate was loaded from it
            record, rpath = candidate, Path(opts.candidate)
        else:
            record = _run(cfg, opts, cache, progress, baseline=baseline)
            rpath = save_record(record, record_path_for(opts.record_path, record.run_id))
            if not opts.update_baseline and record.shard is None:
                record.release_traces()  # saved whole; the gate and its reports never read them
        if record.shard is not None:
            s = record.shard
            return Outcome("shard written", f"shard {s.index}/{s.count} written: {rpath} ({len(record.cases)} of "
                           f"{s.total} cases); not gated: merge the shards (llmops merge), then llmops gate", record,
                           record_path=rpath, notes=notes)
        if stop.requested():  # Ctrl-C or SIGTERM swallowed where it landed: never a baseline, never a verdict
            record.status = "interrupted"
            raise Interrupted("interrupted (Ctrl-C or SIGTERM); no baseline written, no verdict given", record)
        if opts.update_baseline:
            write_baseline(record, bpath, max_unscored_share=cfg.max_unscored_share)
            return _with_html(Outcome("baseline written", f"baseline written: {bpath}", record, record_path=rpath,
                                      baseline_path=bpath, notes=notes), opts)
        if record.sequential is not None:  # the verdict of the sequences it stopped on (sequential_gate)
            from llmops_cli.gate.sequential_rules import compare_sequential as compare
        cmp = compare(baseline, record, cfg.gate, top=max(opts.top, 10), baseline_path=str(bpath),
                      max_unscored_share=cfg.max_unscored_share, memo=cache, check_dataset=ref is None)
        if ref is not None:
            cmp.commits = ref.commits
        out = from_comparison(cmp, record, max_unscored_share=cfg.max_unscored_share)
        out.record_path, out.baseline_path, out.notes = rpath, bpath, notes
    except LlmopsError as err:  # Interrupted is one too
        out = _failed(err, opts, notes)
        if out.record is None and record is not None:  # failed after the run was recorded (e.g. a judge left too much unscored)
            out.record, out.record_path = record, rpath
        return _with_html(out, opts)
    finally:
        if ref is not None:  # the ref's checkout, whatever happened
            ref.close()
    try:
        from llmops_cli.report.files import write_reports

        write_reports(out, opts, baseline)
    except LlmopsError as err:  # a report that cannot be written: exit 2, the comparison still shown
        failed = from_error(err, rpath)
        failed.record, failed.comparison, failed.notes = record, cmp, notes
        return failed
    return out


def _with_html(out: Outcome, opts: EvalOptions) -> Outcome:
    """``out`` after writing ``opts.html`` for a run that was not gated — the
    baseline written, or a run that could not complete (its partial record):
    the run alone, with that outcome. A report that cannot be written becomes
    a note (the outcome already happened: a baseline written stays written)."""
    if not opts.html or out.record is None:
        return out
    from llmops_cli.core.files import atomic_write_text
    from llmops_cli.report.html import html_report

    try:
        atomic_write_text(opts.html, html_report(out.record, outcome=out))
    except LlmopsError as err:
        out.notes = [*out.notes, f"HTML report not written: {err}"]
    return out


def _run(cfg, opts: EvalOptions, cache, progress: ProgressFn | None, baseline=None):
    from llmops_cli.jobs.runner import load_outputs, run_eval, score_outputs
    from llmops_cli.run.budget import Budget, active

    if opts.processes > 1:  # the shards in worker processes, merged here
        from llmops_cli.jobs.processes import run_processes

        return run_processes(opts, progress)
    if baseline is not None and cfg.gate.sequential is not None and _sequential_run(opts):
        from llmops_cli.jobs.sequential_run import run_sequential

        return run_sequential(cfg, baseline, limit=opts.limit, concurrency=opts.concurrency,
                              max_concurrency=opts.max_concurrency, cache=cache, retries=opts.retries,
                              progress=progress, refresh=opts.refresh)
    kw = dict(limit=opts.limit, concurrency=opts.concurrency, max_concurrency=opts.max_concurrency, cache=cache,
              retries=opts.retries, progress=progress, refresh=opts.refresh, shard=check_shard_option(opts))
    with active(Budget(opts.max_cost) if opts.max_cost is not None else None):
        if opts.outputs:
            return score_outputs(cfg, load_outputs(opts.outputs), name=Path(opts.outputs).name, **kw)
        return run_eval(cfg, **kw)


def _estimate(cfg, opts: EvalOptions, cache, plan=None):
    """The run's cost estimate (:func:`llmops_cli.measure.estimate.estimate_run`)."""
    from llmops_cli.measure.estimate import estimate_run
    from llmops_cli.plan.requests import make_plan

    plan = plan or make_plan(cfg, opts.limit, memo=cache, shard=check_shard_option(opts))
    return estimate_run(cfg, plan, cache, refresh=opts.refresh)


def _failed(err: LlmopsError, opts: EvalOptions, notes: list[str]) -> Outcome:
    """The outcome of ``err``, with its partial run record (if any) written."""
    from llmops_cli.core.errors import OutputError
    from llmops_cli.record.schema import save_record

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


def validate(opts: EvalOptions) -> Outcome:
    """Everything :func:`evaluate` checks before its first model call —
    config, templates (every prompt rendered), eval set, corpus and
    retrieval, output paths, baseline compatibility (eval set, gated metrics,
    judges, ``require_power``), credentials for the model and every judge,
    the cache — with no call made. Exit 0 (status ``valid``) or 2."""
    from llmops_cli.plan.requests import make_plan
    from llmops_cli.run.provider import check_credentials

    try:
        cfg, bpath, baseline, notes, _ = _prepare(opts)
        if opts.outputs:
            from llmops_cli.jobs.runner import load_outputs

            load_outputs(opts.outputs)  # readable, a JSON object of strings
        cache = _open_cache(opts, cfg)
        plan = make_plan(cfg, opts.limit, with_prompts=not opts.outputs or bool(cfg.judges), memo=cache)
        # make_plan gives every request its endpoint (only outputs read from a file have none)
        endpoints = {r.endpoint for r in plan.requests if r.endpoint is not None} if not opts.outputs else set()
        if cfg.judges:
            from llmops_cli.measure.judge import judge_endpoint

            endpoints |= {judge_endpoint(cfg, name) for name in cfg.judges}
        for ep in sorted(endpoints, key=lambda e: (e.model, e.api_base or "")):
            check_credentials(ep, cfg.path)
        cost = None
        if not opts.outputs:
            cost = _estimate(cfg, opts, cache, plan)
            if opts.max_cost is not None:
                from llmops_cli.measure.estimate import check_before_run

                check_before_run(cost, opts.max_cost, cfg.path or str(opts.config))
    except LlmopsError as err:
        return _failed(err, opts, [])
    if cost is not None:
        notes = [*notes, *cost.lines()]
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


def merge_runs(paths: list[str | Path], output: str | Path | None = None) -> Outcome:
    """Merge the records of a run's shards (``llmops merge``; see
    :mod:`llmops_cli.jobs.merge`) and write the merged record to ``output``
    (default ``.llmops/runs/<run-id>.json``). Exit 0 (status ``merged``);
    2 when the shards do not make one run (naming the file) or the output
    cannot be written or is one of them; 3 (status ``incomplete``, the
    merged record still written) when a shard did not complete."""
    from llmops_cli.core.files import check_outputs
    from llmops_cli.jobs.merge import merge_files
    from llmops_cli.record.schema import save_record

    try:
        check_outputs({"--output": output or record_path_for(None, "<run-id>")},
                      {f"the shard record {p}": p for p in paths})
        record, notes = merge_files(paths)
        rpath = save_record(record, record_path_for(output, record.run_id))
    except LlmopsError as err:
        return from_error(err)
    if record.status != "complete":
        return Outcome("incomplete", f"a shard did not complete (status {record.status}), so neither does the merged "
                       f"run: {rpath}", record, record_path=rpath, notes=notes)
    return Outcome("merged", f"merged {len(paths)} shards ({len(record.cases)} cases): {rpath}", record,
                   record_path=rpath, notes=notes)
