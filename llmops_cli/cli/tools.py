"""``llmops diff``, ``review sample|import`` and ``cache info|clear``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from llmops_cli.cli.app import cli

CacheDir = Annotated[Optional[Path], typer.Option(file_okay=False, help="Cache folder \\[default: $LLMOPS_CACHE_DIR or "
                                                  ".llmops/cache].")]


def _failing(err) -> None:
    from llmops_cli.report import print_error

    print_error(str(err))
    raise SystemExit(err.exit_code)


@cli.command("diff")
def diff_cmd(run_a: Annotated[Path, typer.Argument(metavar="RUN_A", dir_okay=False, show_default=False)],
             run_b: Annotated[Path, typer.Argument(metavar="RUN_B", dir_okay=False, show_default=False)],
             metric: Annotated[Optional[list[str]], typer.Option(help="Metric(s) to compare \\[default: all both runs "
                                                                      "have].")] = None,
             top: Annotated[int, typer.Option(min=0, help="Most-changed cases to show.")] = 10) -> None:
    """Compare any two run records (or baselines) case by case."""
    from llmops_cli.core.errors import LlmopsError
    from llmops_cli.report import print_changed_cases, print_comparison, terminal

    try:
        from llmops_cli.config import Gate
        from llmops_cli.gate.rules import compare
        from llmops_cli.record.schema import load_record

        a, b = load_record(run_a), load_record(run_b)
        cmp = compare(a, b, Gate(), metrics=list(metric or []) or None, top=top, baseline_path=str(run_a),
                      check_dataset=False)
    except LlmopsError as err:
        _failing(err)
    console = terminal()
    print_comparison(console, cmp, 0)
    print_changed_cases(console, cmp, top)


review_app = typer.Typer(help="Sampled human review of judge verdicts.", no_args_is_help=True)
cli.add_typer(review_app, name="review")


@review_app.command("sample")
def review_sample(run: Annotated[Path, typer.Argument(metavar="RUN", dir_okay=False, show_default=False)],
                  n: Annotated[int, typer.Option("--n", min=1, help="Cases to sample.")] = 50,
                  seed: Annotated[int, typer.Option(help="Random seed (same seed, same sample).")] = 0,
                  output: Annotated[Path, typer.Option("--output", "-o", dir_okay=False,
                                                       help="CSV (.csv) or JSONL file to write.")] = Path("review.csv")
                  ) -> None:
    """Write a reproducible random sample of RUN's cases for a person to label: fill the *_human columns (C/P/I, or
    the rubric score)."""
    from llmops_cli.core.errors import LlmopsError
    from llmops_cli.report import terminal

    try:
        from llmops_cli.core.files import check_outputs
        from llmops_cli.record.schema import load_record
        from llmops_cli.jobs.review import sample_rows, write_rows

        check_outputs({"--output": output}, {"the run record": run})
        rows = sample_rows(load_record(run), n, seed)
        path = write_rows(rows, output)
    except LlmopsError as err:
        _failing(err)
    terminal().print(f"wrote {len(rows)} cases to {path}; fill the *_human columns, then `llmops review import {path}`", markup=False)


@review_app.command("import")
def review_import(file: Annotated[Path, typer.Argument(metavar="FILE", dir_okay=False, show_default=False)]) -> None:
    """Read human labels back and report judge-vs-human agreement (accuracy and Cohen's kappa) per judge."""
    from llmops_cli.core.errors import LlmopsError
    from llmops_cli.report import print_agreement, terminal

    try:
        from llmops_cli.jobs.review import agreement

        rows = agreement(file)
    except LlmopsError as err:
        _failing(err)
    print_agreement(terminal(), rows)


cache_app = typer.Typer(help="Inspect or clear the cache (answers and memoised results).", no_args_is_help=True)
cli.add_typer(cache_app, name="cache")


CacheUrl = Annotated[Optional[str], typer.Option("--cache-url", metavar="URL", show_default=False,
                                                 help="The Redis cache (redis://[:password@]host:port/db) instead of "
                                                 "--cache-dir \\[default: $LLMOPS_CACHE_URL].")]
Prefix = Annotated[str, typer.Option(help="The Redis keys' namespace (the config's cache.prefix).")]


def _cache(cache_dir: Optional[Path], cache_url: Optional[str], prefix: str):
    """The SQLite cache in ``cache_dir``, or the Redis one at ``--cache-url``
    or ``$LLMOPS_CACHE_URL`` (not opened: ``info`` and ``clear`` connect)."""
    from llmops_cli.core.cache import Cache, resolve_url

    url, where = resolve_url(cache_url, None)
    if not url:
        return Cache(cache_dir)
    from llmops_cli.core.cache.redis import RedisCache, check_url
    from llmops_cli.core.errors import InputError

    problem = check_url(url)
    if problem:
        raise InputError(None, where, problem)
    return RedisCache(url, prefix=prefix)


@cache_app.command("info")
def cache_info(cache_dir: CacheDir = None, cache_url: CacheUrl = None, prefix: Prefix = "llmops") -> None:
    """Show the cache's location, size and entries per model."""
    from llmops_cli.core.errors import LlmopsError
    from llmops_cli.report import print_cache_info, terminal

    try:
        info = _cache(cache_dir, cache_url, prefix).info()
    except LlmopsError as err:
        _failing(err)
    print_cache_info(terminal(), info)


@cache_app.command("clear")
def cache_clear(cache_dir: CacheDir = None, cache_url: CacheUrl = None, prefix: Prefix = "llmops") -> None:
    """Delete every cached answer and memoised result (in Redis: only the keys under the prefix)."""
    from llmops_cli.core.errors import LlmopsError
    from llmops_cli.report import terminal

    try:
        n = _cache(cache_dir, cache_url, prefix).clear()
    except LlmopsError as err:
        _failing(err)
    terminal().print(f"deleted {n} cached responses")
