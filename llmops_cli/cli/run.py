"""``llmops eval``, ``score``, ``baseline update`` and ``validate``: each
builds :class:`~llmops_cli.jobs.evaluate.EvalOptions`, calls the library, renders
the :class:`~llmops_cli.gate.outcome.Outcome` and exits with its code."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from llmops_cli.cli.app import DEFAULT_MAX_CONCURRENCY, DEFAULT_RETRIES, EXIT_CODES, cli

RUN, CACHE, GATE, REPORTS = "Run", "Cache", "Gate", "Reports"

Config = Annotated[Path, typer.Argument(metavar="CONFIG", dir_okay=False, show_default=False, help="The llmops.yaml file.")]
Limit = Annotated[Optional[int], typer.Option(min=0, help="Use the first N cases (0 = all); overrides dataset.limit.",
                                              rich_help_panel=RUN)]
Concurrency = Annotated[Optional[int], typer.Option("--concurrency", "-j", min=1, show_default=False,
                                                    help="Model calls in flight at once, fixed \\[default: adaptive: "
                                                    "from 8, growing while calls succeed, halved on 429s and timeouts].",
                                                    rich_help_panel=RUN)]
MaxConcurrency = Annotated[int, typer.Option("--max-concurrency", min=1, help="The most calls in flight an adaptive run "
                                             "reaches.", rich_help_panel=RUN)]
Retries = Annotated[int, typer.Option(min=0, help="Retries per call on 429/5xx/timeouts.", rich_help_panel=RUN)]
Outputs = Annotated[Optional[Path], typer.Option(dir_okay=False, help="Score this file of {id: output} instead of "
                                                 "calling the model.", rich_help_panel=RUN)]
NoCache = Annotated[bool, typer.Option("--no-cache", help="Do not read or write the cache.", rich_help_panel=CACHE)]
Refresh = Annotated[bool, typer.Option("--refresh", help="Call the model (and judges) for every case, reading no cached "
                                       "answer; the new answers are still cached (re-measures what the provider serves "
                                       "now).", rich_help_panel=CACHE)]
CacheDir = Annotated[Optional[Path], typer.Option(file_okay=False, help="Cache folder \\[default: $LLMOPS_CACHE_DIR or "
                                                  ".llmops/cache].", rich_help_panel=CACHE)]
CacheUrl = Annotated[Optional[str], typer.Option("--cache-url", metavar="URL", show_default=False, rich_help_panel=CACHE,
                                                 help="Share the cache in Redis (redis://[:password@]host:port/db) "
                                                 "instead of --cache-dir \\[default: $LLMOPS_CACHE_URL or the config's "
                                                 "cache.url]. Prefer the variable for a URL with a password.")]
Output = Annotated[Optional[Path], typer.Option("--output", "-o", dir_okay=False, help="Run record path \\[default: "
                                                ".llmops/runs/<run-id>.json].", rich_help_panel=REPORTS)]
UpdateBaseline = Annotated[bool, typer.Option("--update-baseline", help="Write this run as the new baseline (only if it "
                                              "completes).", rich_help_panel=GATE)]
Baseline = Annotated[Optional[Path], typer.Option("--baseline", dir_okay=False, help="Baseline file \\[default: the "
                                                  "config's baseline].", rich_help_panel=GATE)]
Plain = Annotated[bool, typer.Option("--plain", help="Gate on point estimates only (no confidence intervals).",
                                     rich_help_panel=GATE)]
AllowJudgeChange = Annotated[bool, typer.Option("--allow-judge-change", help="Gate a judge metric even though the "
                                                "baseline was judged by another model (refused by default).",
                                                rich_help_panel=GATE)]
BaselineRef = Annotated[Optional[str], typer.Option("--baseline-ref", metavar="REF", show_default=False,
                                                    rich_help_panel=GATE,
                                                    help="Gate against this config as it is at git REF (origin/main, "
                                                         "a sha, HEAD~1): its config, templates, eval set and corpus "
                                                         "are read at REF and run first (mostly from the cache), "
                                                         "instead of a baseline file. REF's python checks RUN (its "
                                                         "code is imported) and its templates render in the same "
                                                         "sandbox: give only a commit you would check out and run "
                                                         "yourself.")]
AllowDatasetChange = Annotated[bool, typer.Option("--allow-dataset-change", rich_help_panel=GATE,
                                                  help="With --baseline-ref: gate although the eval set differs at "
                                                       "REF, comparing the cases both hold unchanged (refused by "
                                                       "default).")]
Junit = Annotated[Optional[Path], typer.Option(dir_okay=False, help="Write a JUnit XML report (one test per gated "
                                               "metric).", rich_help_panel=REPORTS)]
Markdown = Annotated[Optional[Path], typer.Option(dir_okay=False, help="Write a Markdown summary (for a PR comment).",
                                                  rich_help_panel=REPORTS)]
Comment = Annotated[Optional[Path], typer.Option(dir_okay=False, help="Write the pull-request comment: a hidden "
                                                 "marker line naming CONFIG, then the Markdown summary (see action.yml).",
                                                 rich_help_panel=REPORTS)]
Html = Annotated[Optional[Path], typer.Option(dir_okay=False, help="Write the HTML report: one self-contained file "
                                              "that opens offline (gate, plots, every case side by side).",
                                              rich_help_panel=REPORTS)]
Json = Annotated[bool, typer.Option("--json", help="Print the comparison as JSON on stdout (human output goes to "
                                    "stderr).", rich_help_panel=REPORTS)]
Top = Annotated[int, typer.Option(min=0, help="Most-changed cases to show.", rich_help_panel=REPORTS)]
MaxCost = Annotated[Optional[float], typer.Option("--max-cost", metavar="USD", min=0, show_default=False,
                                                  rich_help_panel=RUN,
                                                  help="Refuse a run whose new calls cost more than USD at least "
                                                       "(exit 2, before any call; `validate` shows the estimate), "
                                                       "and stop one whose spend passes it (exit 3, record kept, "
                                                       "answers cached).")]
Processes = Annotated[int, typer.Option("--processes", min=1, rich_help_panel=RUN,
                                        help="Worker processes: run the eval set's shards at once in N processes "
                                             "sharing the cache, merged into one record and gated as one run "
                                             "(the calls in flight, -j or --max-concurrency, are split among them).")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="For hooks: print nothing when the gate passes; otherwise "
                                     "only the gate table and the verdict.", rich_help_panel=REPORTS)]


def finish(opts, *, top: int = 5, quiet: bool = False, json_out: bool = False, validate: bool = False,
           watch: bool = False) -> None:
    """Run the job (``evaluate`` or ``validate``, or ``evaluate`` on every save with ``watch``), render its
    outcome, exit with its code."""
    from llmops_cli.report import print_outcome, terminal

    if watch:
        from llmops_cli.cli.watch import watch_eval

        watch_eval(opts, top=top, quiet=quiet, json_out=json_out)

    console = terminal(stderr=json_out)
    if validate:
        from llmops_cli.jobs.evaluate import validate as job

        out = job(opts)
    else:
        from llmops_cli.jobs.evaluate import evaluate

        from llmops_cli.report.terminal import progress_bar

        with progress_bar(console, quiet) as update:
            out = evaluate(opts, progress=update)
    print_outcome(console, out, top=top, quiet=quiet, json_out=json_out)
    raise SystemExit(out.exit_code)


@cli.command("eval", epilog=EXIT_CODES)
def eval_cmd(config: Config, limit: Limit = None, concurrency: Concurrency = None,
             max_concurrency: MaxConcurrency = DEFAULT_MAX_CONCURRENCY, retries: Retries = DEFAULT_RETRIES, outputs: Outputs = None, no_cache: NoCache = False,
             refresh: Refresh = False, cache_dir: CacheDir = None, cache_url: CacheUrl = None,
             update_baseline: UpdateBaseline = False, baseline: Baseline = None, plain: Plain = False, allow_judge_change: AllowJudgeChange = False,
             baseline_ref: BaselineRef = None, allow_dataset_change: AllowDatasetChange = False,
             output: Output = None, junit: Junit = None, markdown: Markdown = None, comment: Comment = None,
             html: Html = None, json_out: Json = False, top: Top = 5, quiet: Quiet = False,
             max_cost: MaxCost = None, processes: Processes = 1,
             shard: Annotated[Optional[str], typer.Option("--shard", metavar="K/N", show_default=False,
                                                          rich_help_panel=RUN,
                                                          help="Run only shard K of N (cases split by a hash of their "
                                                               "id) and write its record, not gated: merge the shards "
                                                               "with `llmops merge`, then `llmops gate`.")] = None,
             sequential: Annotated[bool, typer.Option("--sequential", rich_help_panel=GATE,
                                                      help="Answer the cases in a seeded random order and stop "
                                                           "calling the model once every gated metric's anytime-"
                                                           "valid confidence sequence is decided (gate.sequential).")
                                   ] = False,
             watch: Annotated[bool, typer.Option("--watch", rich_help_panel=RUN,
                                                 help="Keep running: run and gate again each time the config, a "
                                                      "template, the eval set, the corpus or the baseline is saved "
                                                      "(only changed requests call the model); Ctrl-C stops.")] = False
             ) -> None:
    """Run CONFIG's eval set, score it and gate it against the baseline."""
    from llmops_cli.jobs.evaluate import EvalOptions

    finish(EvalOptions(config, limit=limit, concurrency=concurrency, max_concurrency=max_concurrency, retries=retries,
                       use_cache=not no_cache, cache_dir=cache_dir, cache_url=cache_url, refresh=refresh,
                       record_path=output, outputs=outputs, update_baseline=update_baseline, baseline=baseline, plain=plain,
                       allow_judge_change=allow_judge_change, junit=junit, markdown=markdown, comment=comment, html=html,
                       top=top, shard=shard, baseline_ref=baseline_ref, allow_dataset_change=allow_dataset_change,
                       sequential=sequential, max_cost=max_cost, processes=processes),
           top=top, quiet=quiet, json_out=json_out, watch=watch)


@cli.command("score", epilog=EXIT_CODES)
def score_cmd(config: Config,
              outputs: Annotated[Path, typer.Option(dir_okay=False, show_default=False, rich_help_panel=RUN,
                                                    help="JSON file {case_id: output} made by another system.")],
              limit: Limit = None, cache_url: CacheUrl = None, output: Output = None,
              update_baseline: UpdateBaseline = False, baseline: Baseline = None, plain: Plain = False,
              allow_judge_change: AllowJudgeChange = False, junit: Junit = None, markdown: Markdown = None,
              comment: Comment = None, html: Html = None, json_out: Json = False, top: Top = 5,
              quiet: Quiet = False) -> None:
    """Score outputs produced elsewhere and gate them exactly like a model run."""
    from llmops_cli.jobs.evaluate import EvalOptions

    finish(EvalOptions(config, limit=limit, cache_url=cache_url, record_path=output, outputs=outputs,
                       update_baseline=update_baseline, baseline=baseline, plain=plain,
                       allow_judge_change=allow_judge_change, junit=junit, markdown=markdown, comment=comment, html=html,
                       top=top),
           top=top, quiet=quiet, json_out=json_out)


@cli.command("validate", epilog=EXIT_CODES)
def validate_cmd(config: Config, limit: Limit = None, outputs: Outputs = None, baseline: Baseline = None,
                 update_baseline: Annotated[bool, typer.Option("--update-baseline", rich_help_panel=GATE,
                                                               help="Check for a run that writes the baseline (no "
                                                                    "baseline needed, it must be writable).")] = False,
                 no_cache: NoCache = False, cache_dir: CacheDir = None, cache_url: CacheUrl = None,
                 output: Output = None, junit: Junit = None, markdown: Markdown = None, comment: Comment = None,
                 html: Html = None, refresh: Refresh = False, max_cost: MaxCost = None) -> None:
    """Check everything `eval` checks before its first model call — config, templates (every prompt rendered), eval
    set, corpus, output paths, baseline compatibility, credentials — and call nothing; print the calls the run will
    make (cached and new), their tokens and the cost range (LiteLLM's price map). Exit 0 or 2."""
    from llmops_cli.jobs.evaluate import EvalOptions

    finish(EvalOptions(config, limit=limit, use_cache=not no_cache, cache_dir=cache_dir, cache_url=cache_url,
                       record_path=output, outputs=outputs, update_baseline=update_baseline, baseline=baseline,
                       junit=junit, markdown=markdown, comment=comment, html=html, refresh=refresh, max_cost=max_cost),
           validate=True)


baseline_app = typer.Typer(help="Manage the baseline file.", no_args_is_help=True)
cli.add_typer(baseline_app, name="baseline")


@baseline_app.command("update", epilog=EXIT_CODES)
def baseline_update(config: Config, limit: Limit = None, concurrency: Concurrency = None,
                    max_concurrency: MaxConcurrency = DEFAULT_MAX_CONCURRENCY, retries: Retries = DEFAULT_RETRIES, outputs: Outputs = None, no_cache: NoCache = False,
                    refresh: Refresh = False, cache_dir: CacheDir = None, cache_url: CacheUrl = None,
                    output: Output = None, max_cost: MaxCost = None, processes: Processes = 1,
                    from_run: Annotated[Optional[Path], typer.Option(dir_okay=False, rich_help_panel=GATE,
                                                                     help="Promote an existing run record instead of "
                                                                          "running.")] = None,
                    quiet: Quiet = False) -> None:
    """Run CONFIG (or take --from-run RUN) and write it as the baseline — only from a complete run whose judges scored
    enough cases (max_unscored_share), as `eval --update-baseline` does."""
    from llmops_cli.jobs.evaluate import EvalOptions

    finish(EvalOptions(config, limit=limit, concurrency=concurrency, max_concurrency=max_concurrency, retries=retries,
                       use_cache=not no_cache, cache_dir=cache_dir, cache_url=cache_url, refresh=refresh,
                       record_path=output, outputs=outputs, update_baseline=True, from_run=from_run,
                       max_cost=max_cost, processes=processes), quiet=quiet)
