"""``llmops merge`` (the records of a run's shards into one) and ``llmops
gate`` (gate a run record made earlier, e.g. the merged one)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from llmops_cli.cli.app import EXIT_CODES, cli
from llmops_cli.cli.run import REPORTS, AllowJudgeChange, Baseline, CacheDir, Comment, Html, Json, Junit, Markdown, NoCache, Plain, Quiet, Top, finish


@cli.command("merge", epilog=EXIT_CODES)
def merge_cmd(records: Annotated[list[Path], typer.Argument(metavar="RECORD...", dir_okay=False, show_default=False,
                                                            help="The shards' run records (`llmops eval --shard K/N`), "
                                                                 "every shard once.")],
              output: Annotated[Optional[Path], typer.Option("--output", "-o", dir_okay=False, rich_help_panel=REPORTS,
                                                             help="Merged run record \\[default: "
                                                                  ".llmops/runs/<run-id>.json].")] = None,
              quiet: Quiet = False) -> None:
    """Merge the records of a run's shards into the record the unsharded run would have written (same cases, order,
    outputs and scores; metrics re-aggregated; usage summed). Gate it with `llmops gate`. Exit 2 when the shards are not
    those of one run (fingerprint, eval set, a shard missing or given twice)."""
    from llmops_cli.jobs.evaluate import merge_runs
    from llmops_cli.report import print_outcome, terminal

    out = merge_runs(list(records), output)
    print_outcome(terminal(), out, quiet=quiet)
    raise SystemExit(out.exit_code)


@cli.command("gate", epilog=EXIT_CODES)
def gate_cmd(run: Annotated[Path, typer.Argument(metavar="RUN", dir_okay=False, show_default=False,
                                                 help="The run record to gate (e.g. merged by `llmops merge`).")],
             config: Annotated[Optional[Path], typer.Argument(metavar="CONFIG", dir_okay=False, show_default=False,
                                                              help="The llmops.yaml with the gate rules and baseline "
                                                                   "\\[default: the config the record names].")] = None,
             baseline: Baseline = None, plain: Plain = False, allow_judge_change: AllowJudgeChange = False,
             no_cache: NoCache = False, cache_dir: CacheDir = None, junit: Junit = None, markdown: Markdown = None,
             comment: Comment = None, html: Html = None, json_out: Json = False, top: Top = 5,
             quiet: Quiet = False) -> None:
    """Gate a run record made earlier against the baseline with CONFIG's rules, as `llmops eval` gates the run it
    makes — same table, reports and exit codes — calling no model. The record must have been made with CONFIG's
    model, parameters, prompts, retrieval and judges (its fingerprint)."""
    from llmops_cli.jobs.evaluate import EvalOptions

    finish(EvalOptions(config, candidate=run, use_cache=not no_cache, cache_dir=cache_dir, baseline=baseline,
                       plain=plain, allow_judge_change=allow_judge_change, junit=junit, markdown=markdown,
                       comment=comment, html=html, top=top),
           top=top, quiet=quiet, json_out=json_out)

