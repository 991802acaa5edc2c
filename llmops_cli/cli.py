"""The ``llmops`` command: parse options, call the library, render, exit.

Exit codes: 0 gate passed (or baseline written); 1 regression; 2 bad input or
usage; 3 the run could not complete; 130 interrupted (partial record kept).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

# the library's defaults (llmops_cli.runner; not imported here, to keep --help fast; a test holds them equal)
DEFAULT_CONCURRENCY = 8
DEFAULT_RETRIES = 8

EXIT_CODES = """\b
Exit codes:
  0  the gate passed (or the baseline was written)
  1  regression: a gated metric fell past its rule
  2  bad input or usage (config, dataset, corpus, baseline, flags)
  3  the run could not complete (provider errors, unscored metrics)
  130 interrupted (Ctrl-C); the partial run record is kept
  143 terminated (SIGTERM); the partial run record is kept
"""


def _console(stderr: bool = False):
    from rich.console import Console

    console = Console(stderr=stderr, highlight=False, soft_wrap=False)
    if not console.is_terminal:
        console.width = max(console.width, 120)  # CI logs: do not fold the tables at 80 columns
    return console


def _fail(console, err) -> None:
    """Print ``err`` as one line on stderr (never folded) and exit with its code."""
    from rich.markup import escape

    _console(stderr=True).print(f"[bold red]llmops: error:[/] {escape(str(err))}", soft_wrap=True)
    raise SystemExit(err.exit_code)


class _NoProgress:
    """Stands in for a progress bar when stderr/stdout is not a terminal (CI logs)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def add_task(self, *args, **kwargs) -> int:
        return 0

    def update(self, *args, **kwargs) -> None:
        pass


def _progress(console):
    if not console.is_terminal:
        return _NoProgress()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(TextColumn("answering"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                    console=console, transient=True)


def _run_options(f):
    opts = [
        click.option("--limit", type=click.IntRange(min=0), default=None, help="Use the first N cases (0 = all); overrides dataset.limit."),
        click.option("--concurrency", "-j", type=click.IntRange(min=1), default=DEFAULT_CONCURRENCY, show_default=True, help="Model calls in flight at once."),
        click.option("--retries", type=click.IntRange(min=0), default=DEFAULT_RETRIES, show_default=True, help="Retries per call on 429/5xx/timeouts."),
        click.option("--no-cache", is_flag=True, help="Do not read or write the response cache."),
        click.option("--refresh", is_flag=True, help="Call the model (and judges) for every case, reading no cached answer; "
                     "the new answers are still cached (re-measures what the provider serves now)."),
        click.option("--cache-dir", type=click.Path(file_okay=False), default=None, help="Cache folder [default: $LLMOPS_CACHE_DIR or .llmops/cache]."),
        click.option("--output", "-o", type=click.Path(dir_okay=False), default=None, help="Run record path [default: .llmops/runs/<run-id>.json]."),
        click.option("--outputs", type=click.Path(dir_okay=False), default=None, help="Score this file of {id: output} instead of calling the model."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _gate_options(f):
    opts = [
        click.option("--update-baseline", is_flag=True, help="Write this run as the new baseline (only if it completes)."),
        click.option("--baseline", "baseline_path", type=click.Path(dir_okay=False), default=None,
                     help="Baseline file [default: the config's baseline]."),
        click.option("--plain", is_flag=True, help="Gate on point estimates only (no confidence intervals)."),
        click.option("--allow-judge-change", is_flag=True,
                     help="Gate a judge metric even though the baseline was judged by another model (refused by default)."),
        click.option("--junit", type=click.Path(dir_okay=False), default=None, help="Write a JUnit XML report (one test per gated metric)."),
        click.option("--markdown", type=click.Path(dir_okay=False), default=None, help="Write a Markdown summary (for a PR comment)."),
        click.option("--json", "json_out", is_flag=True, help="Print the comparison as JSON on stdout (human output goes to stderr)."),
        click.option("--top", type=click.IntRange(min=0), default=5, show_default=True, help="Most-changed cases to show."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


@click.group(epilog=EXIT_CODES, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="llmops-cli", prog_name="llmops")
def cli():
    """llmops — an eval gate for LLM applications.

    Pin prompt, model, parameters and retrieval in one YAML file; `llmops eval`
    runs the eval set through it, scores the outputs, compares them with the
    committed baseline and exits non-zero on a regression.
    """
    env_file = Path.cwd() / ".env"
    if env_file.is_file():  # API keys may live in .env; never written anywhere
        from dotenv import load_dotenv

        load_dotenv(env_file, override=False)


def _load_outputs(path: str) -> dict[str, str]:
    import json

    from .errors import InputError

    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(p, None, "outputs file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(p, None, f"cannot read outputs: {e}") from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise InputError(p, None, "expected a JSON object {case_id: output string}")
    return data


def _cache(no_cache: bool, cache_dir: str | None):
    """The response cache, opened now: one that cannot be written fails before any model call."""
    from .cache import Cache

    return None if no_cache else Cache(cache_dir).open()


def _check_outputs(cfg, baseline_path, outputs_file, **files) -> None:
    """Exit 2 before any model call when a file to write (``--output=...``,
    ``--junit=...``; ``None`` = not asked for) would overwrite an input or
    cannot be written. ``--output`` defaults to a new file in .llmops/runs."""
    from .files import check_outputs, run_inputs

    out = {f"--{k}": v for k, v in files.items()}
    if "--output" in out and out["--output"] is None:
        out["--output"] = _record_path(None, "<run-id>")
    check_outputs(out, run_inputs(cfg, baseline_path, outputs_file))


def _execute(console, cfg, cache, *, limit, concurrency, retries, outputs, refresh=False):
    """Run (or score outputs) and return the record; exits 3/130 on failure.
    ``refresh``: read no answer from the cache (see :func:`runner.run_eval`)."""
    from .runner import run_eval, score_outputs

    with _progress(console) as prog:
        task = prog.add_task("answering", total=None)
        update = lambda done, total: prog.update(task, completed=done, total=total)  # noqa: E731
        if outputs:
            return score_outputs(cfg, _load_outputs(outputs), limit=limit, name=Path(outputs).name, cache=cache,
                                 concurrency=concurrency, retries=retries, progress=update, refresh=refresh)
        return run_eval(cfg, limit=limit, concurrency=concurrency, cache=cache, retries=retries, progress=update,
                        refresh=refresh)


def _record_path(output: str | None, run_id: str) -> Path:
    return Path(output) if output else Path(".llmops/runs") / f"{run_id}.json"


def _save_partial(console, err, output):
    from .errors import OutputError
    from .record import save_record

    if getattr(err, "record", None) is not None:
        try:
            path = save_record(err.record, _record_path(output, err.record.run_id))
        except OutputError as failed:  # stderr keeps its one line: the error that stopped the run
            console.print(f"partial run record not written: {failed}", style="dim")
            return
        console.print(f"partial run record: {path}", style="dim")


@cli.command("eval", epilog=EXIT_CODES)
@click.argument("config", type=click.Path(dir_okay=False))
@_run_options
@_gate_options
def eval_cmd(config, limit, concurrency, retries, no_cache, cache_dir, output, outputs, update_baseline, baseline_path,
             plain, junit, markdown, json_out, top, refresh, allow_judge_change):
    """Run CONFIG's eval set, score it and gate it against the baseline."""
    _gated(config, limit, concurrency, retries, no_cache, cache_dir, output, outputs, update_baseline, baseline_path,
           plain, junit, markdown, json_out, top, refresh=refresh, allow_judge_change=allow_judge_change)


def _gated(config, limit, concurrency, retries, no_cache, cache_dir, output, outputs, update_baseline, baseline_path,
           plain, junit, markdown, json_out, top, *, refresh=False, allow_judge_change=False):
    """`eval` and `score`: run, gate and exit; on an error (Ctrl-C included)
    the partial record is saved and the error printed as one line."""
    console = _console(stderr=json_out)
    from .errors import LlmopsError

    try:
        _eval(console, config, limit, concurrency, retries, no_cache, cache_dir, output, outputs, update_baseline,
              baseline_path, plain, junit, markdown, json_out, top, refresh=refresh, allow_judge_change=allow_judge_change)
    except LlmopsError as err:  # Interrupted is one too
        _save_partial(console, err, output)
        _fail(console, err)


def _eval(console, config, limit, concurrency, retries, no_cache, cache_dir, output, outputs, update_baseline,
          baseline_path, plain, junit, markdown, json_out, top, *, refresh=False, allow_judge_change=False):
    from .baseline import check_dataset, check_judges, check_unscored, load_baseline, write_baseline
    from .plan import make_plan as prepare
    from .config import load_config
    from .gate import check_before_run, compare
    from .record import save_record
    from .report import comparison_json, junit_xml, print_comparison, print_run_summary
    from .report import markdown as markdown_text
    from .files import append_text, check_writable
    from .files import atomic_write_text

    cfg = load_config(config)
    bpath = Path(baseline_path) if baseline_path else cfg.baseline_path
    _check_outputs(cfg, bpath, outputs, output=output, junit=junit, markdown=markdown)
    if update_baseline:
        check_writable(bpath, "baseline")
    if plain:
        cfg.gate.mode = "plain"
    baseline = None if update_baseline else load_baseline(bpath)  # fail before paying for a run
    if baseline is not None:
        check_dataset(baseline, prepare(cfg, limit, with_prompts=False).dataset_hash, bpath)
        check_before_run(baseline, cfg.gate, cfg.all_metrics, str(bpath))
        for note in check_judges(baseline, cfg, bpath, allow=allow_judge_change):
            console.print(f"[yellow]judge changed:[/] {note} (--allow-judge-change)")
    cache = _cache(no_cache, cache_dir)
    record = _execute(console, cfg, cache, limit=limit, concurrency=concurrency, retries=retries, outputs=outputs,
                      refresh=refresh)
    rpath = save_record(record, _record_path(output, record.run_id))
    print_run_summary(console, record)
    console.print(f"run record: {rpath}", style="dim")
    if update_baseline:
        write_baseline(record, bpath, max_unscored_share=cfg.max_unscored_share)
        console.print(f"[green]baseline written:[/] {bpath}")
        return
    cmp = compare(baseline, record, cfg.gate, top=max(top, 10), baseline_path=str(bpath), max_unscored_share=cfg.max_unscored_share,
                  memo=cache)
    print_comparison(console, cmp, top)
    md = markdown_text(cmp, record, top)
    if markdown:
        atomic_write_text(markdown, md + "\n")
    if os.environ.get("GITHUB_STEP_SUMMARY"):
        append_text(os.environ["GITHUB_STEP_SUMMARY"], md + "\n")
    if junit:
        atomic_write_text(junit, junit_xml(cmp))
    if json_out:
        click.echo(comparison_json(cmp, record))
    check_unscored(record, cfg.max_unscored_share)  # gated or not, a judge that mostly did not answer: exit 3
    _exit_for(console, cmp)


def _exit_for(console, cmp) -> None:
    """Render the comparison's :func:`~llmops_cli.gate.outcome` and exit with its code."""
    from .errors import InputError, RunIncomplete
    from .gate import outcome

    out = outcome(cmp)
    if out.exit_code == 3:
        _fail(console, RunIncomplete(out.reason))
    if out.exit_code == 2:
        _fail(console, InputError(None, None, out.reason))
    if out.exit_code == 1:
        console.print(f"[bold red]{out.reason.split(':')[0]}[/]:{out.reason.split(':', 1)[1]}")
        raise SystemExit(1)
    console.print("[bold green]gate passed[/]")


@cli.command("score", epilog=EXIT_CODES)
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--outputs", required=True, type=click.Path(dir_okay=False), help="JSON file {case_id: output} made by another system.")
@click.option("--limit", type=click.IntRange(min=0), default=None, help="Use the first N cases (0 = all).")
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None, help="Run record path.")
@_gate_options
def score_cmd(config, outputs, limit, output, update_baseline, baseline_path, plain, junit, markdown, json_out, top,
              allow_judge_change):
    """Score outputs produced elsewhere and gate them exactly like a model run."""
    _gated(config, limit, DEFAULT_CONCURRENCY, DEFAULT_RETRIES, False, None, output, outputs, update_baseline,
           baseline_path, plain, junit, markdown, json_out, top, allow_judge_change=allow_judge_change)


@cli.group()
def baseline():
    """Manage the baseline file."""


@baseline.command("update")
@click.argument("config", type=click.Path(dir_okay=False))
@_run_options
@click.option("--from-run", type=click.Path(dir_okay=False), default=None, help="Promote an existing run record instead of running.")
def baseline_update(config, limit, concurrency, retries, no_cache, cache_dir, output, outputs, refresh, from_run):
    """Run CONFIG (or take --from-run RUN) and write it as the baseline —
    only from a complete run whose judges scored enough cases
    (max_unscored_share), as `eval --update-baseline` does."""
    console = _console()
    from .errors import LlmopsError

    try:
        from .baseline import promote_run, write_baseline
        from .config import load_config
        from .files import check_writable
        from .record import save_record

        cfg = load_config(config)
        if not from_run:
            _check_outputs(cfg, cfg.baseline_path, outputs, output=output)
        check_writable(cfg.baseline_path, "baseline")
        if from_run:
            path = promote_run(cfg, from_run)
        else:
            record = _execute(console, cfg, _cache(no_cache, cache_dir), limit=limit, concurrency=concurrency,
                              retries=retries, outputs=outputs, refresh=refresh)
            save_record(record, _record_path(output, record.run_id))
            path = write_baseline(record, cfg.baseline_path, max_unscored_share=cfg.max_unscored_share)
        console.print(f"[green]baseline written:[/] {path}")
    except LlmopsError as err:
        _save_partial(console, err, output)
        _fail(console, err)


@cli.command("diff")
@click.argument("run_a", type=click.Path(dir_okay=False))
@click.argument("run_b", type=click.Path(dir_okay=False))
@click.option("--metric", "metrics", multiple=True, help="Metric(s) to compare [default: all both runs have].")
@click.option("--top", type=click.IntRange(min=0), default=10, show_default=True, help="Most-changed cases to show.")
def diff_cmd(run_a, run_b, metrics, top):
    """Compare any two run records (or baselines) case by case."""
    console = _console()
    from .errors import LlmopsError

    try:
        from .config import Gate
        from .gate import compare
        from .record import load_record
        from .report import print_changed_cases, print_comparison

        a, b = load_record(run_a), load_record(run_b)
        cmp = compare(a, b, Gate(), metrics=list(metrics) or None, top=top, baseline_path=run_a, check_dataset=False)
        print_comparison(console, cmp, 0)
        print_changed_cases(console, cmp, top)
    except LlmopsError as err:
        _fail(console, err)


@cli.group()
def review():
    """Sampled human review of judge verdicts."""


@review.command("sample")
@click.argument("run", type=click.Path(dir_okay=False))
@click.option("--n", "n", type=click.IntRange(min=1), default=50, show_default=True, help="Cases to sample.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed (same seed, same sample).")
@click.option("--output", "-o", type=click.Path(dir_okay=False), default="review.csv", show_default=True,
              help="CSV (.csv) or JSONL file to write.")
def review_sample(run, n, seed, output):
    """Write a reproducible random sample of RUN's cases for a person to label:
    fill the *_human columns (C/P/I, or the rubric score)."""
    console = _console()
    from .errors import LlmopsError

    try:
        from .files import check_outputs
        from .record import load_record
        from .review import sample_rows, write_rows

        check_outputs({"--output": output}, {"the run record": run})
        rows = sample_rows(load_record(run), n, seed)
        path = write_rows(rows, output)
        console.print(f"wrote {len(rows)} cases to {path}; fill the *_human columns, then `llmops review import {path}`")
    except LlmopsError as err:
        _fail(console, err)


@review.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
def review_import(file):
    """Read human labels back and report judge-vs-human agreement
    (accuracy and Cohen's kappa) per judge."""
    console = _console()
    from .errors import LlmopsError

    try:
        from rich.table import Table

        from .review import agreement

        t = Table(title="judge vs human", title_justify="left")
        for col in ("judge", "labels", "accuracy", "Cohen's kappa", "judge unscored"):
            t.add_column(col, justify="left" if col == "judge" else "right")
        for a in agreement(file):
            t.add_row(a.judge, str(a.n), "—" if a.accuracy is None else f"{a.accuracy:.3f}",
                      "—" if a.kappa is None else f"{a.kappa:.3f}", str(a.judge_unscored))
        console.print(t)
    except LlmopsError as err:
        _fail(console, err)


@cli.group()
def cache():
    """Inspect or clear the response cache."""


@cache.command("info")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None, help="Cache folder.")
def cache_info(cache_dir):
    """Show the cache's location, size and entries per model."""
    from .cache import Cache

    info = Cache(cache_dir).info()
    console = _console()
    console.print(f"{info['path']}: {info['entries']} entries, {info['bytes'] / 1e6:.1f} MB")
    for model, n in sorted(info["models"].items()):
        console.print(f"  {model}: {n}")
    if info["memo"]:
        console.print("memoised results: " + ", ".join(f"{kind} {n}" for kind, n in sorted(info["memo"].items())))


@cache.command("clear")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None, help="Cache folder.")
def cache_clear(cache_dir):
    """Delete every cached response."""
    from .cache import Cache

    n = Cache(cache_dir).clear()
    _console().print(f"deleted {n} cached responses")


_terminated: list[int] = []


def _on_sigterm(signum, frame) -> None:
    """SIGTERM (a cancelled CI job, ``docker stop``) is handled like Ctrl-C:
    the partial run record is written, then the exit code is 143."""
    _terminated.append(signum)
    raise KeyboardInterrupt


def _interrupted_code() -> int:
    """130 after Ctrl-C, 143 (128 + SIGTERM) after SIGTERM."""
    return 143 if _terminated else 130


def _command_path(args: list[str]) -> str:
    """``llmops baseline update`` for ``["baseline", "update", "x.yaml", ...]``."""
    cmd, path = cli, ["llmops"]
    for tok in args:
        if isinstance(cmd, click.Group) and tok in cmd.commands:
            cmd = cmd.commands[tok]
            path.append(tok)
        elif not tok.startswith("-"):
            break
    return " ".join(path)


def _usage_error(err: click.ClickException, args: list[str]) -> int:
    """Print a usage error (unknown option, bad value, missing argument) as
    one line on stderr — ``llmops: error: <message> (see llmops eval --help)``
    — and return its exit code: 2. ``llmops`` alone still prints the help."""
    if isinstance(err, getattr(click.exceptions, "NoArgsIsHelpError", ())):
        err.show()
        return 2
    ctx = getattr(err, "ctx", None)
    where = ctx.command_path if ctx is not None else _command_path(args)
    sys.stderr.write(f"llmops: error: {' '.join(err.format_message().split())} (see {where} --help)\n")
    return 2


def main(argv=None) -> None:
    """Console-script entry point."""
    import signal

    from .errors import LlmopsError

    # llmops uses no pydantic plugins: skip their entry-point scan (~30 ms of every start-up)
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        # not click's standalone mode: it turns Ctrl-C into "Aborted!" and exit code 1, the code of a regression
        code = cli.main(args=argv, prog_name="llmops", standalone_mode=False)
    except SystemExit as done:  # our commands exit with their documented codes
        if done.code == 130:
            raise SystemExit(_interrupted_code()) from None
        raise
    except (click.exceptions.Abort, KeyboardInterrupt):  # interrupted outside a run: nothing to keep
        sys.stderr.write("llmops: interrupted\n")
        raise SystemExit(_interrupted_code()) from None
    except click.ClickException as err:  # usage errors: one line, exit 2
        raise SystemExit(_usage_error(err, list(sys.argv[1:] if argv is None else argv))) from None
    except LlmopsError as err:  # raised outside a command's own handler (e.g. `cache info` on a broken cache)
        sys.stderr.write(f"llmops: error: {err}\n")
        raise SystemExit(err.exit_code) from None
    except Exception as exc:  # a bug or an environment failure: never a pass, never a regression
        if os.environ.get("LLMOPS_DEBUG"):
            raise
        from .provider import redact

        sys.stderr.write(redact(f"llmops: internal error, the run could not complete: {type(exc).__name__}: {exc} "
                                "(set LLMOPS_DEBUG=1 for the traceback)")[:1000] + "\n")
        raise SystemExit(3)
    raise SystemExit(code if isinstance(code, int) else 0)  # `--help`/`--version` return 0; commands return None


if __name__ == "__main__":
    main()
