"""``llmops report``: the HTML report of a saved run record."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from llmops_cli.cli.app import cli
from llmops_cli.cli.run import REPORTS

REPORT_EPILOG = """\
[bold]Exit codes[/]
  0  the report was written (whatever the gate's verdict in it)
  2  bad input: a record, baseline or config missing or malformed, or an HTML path that cannot be written"""


@cli.command("report", epilog=REPORT_EPILOG)
def report_cmd(run: Annotated[Path, typer.Argument(metavar="RUN", dir_okay=False, show_default=False,
                                                   help="A run record (.llmops/runs/<run-id>.json, or eval -o).")],
               html: Annotated[Path, typer.Option("--html", dir_okay=False, show_default=False, rich_help_panel=REPORTS,
                                                  help="Write the self-contained HTML report here (opens offline).")],
               baseline: Annotated[Optional[Path], typer.Option("--baseline", dir_okay=False, show_default=False,
                                                                help="Compare with this baseline (or another run's "
                                                                     "record) under CONFIG's gate \\[default: the run "
                                                                     "alone, not gated].")] = None,
               config: Annotated[Optional[Path], typer.Option("--config", dir_okay=False, show_default=False,
                                                              help="The llmops.yaml whose gate rules apply with "
                                                                   "--baseline \\[default: the config the record "
                                                                   "names].")] = None) -> None:
    """Write the HTML report of RUN — verdict, gate table with a forest plot, config and environment changes, score
    distributions, slices, every case side by side with the baseline, run statistics — as one file that opens offline.
    Calls no model."""
    from llmops_cli.core.errors import LlmopsError
    from llmops_cli.report import print_error, terminal
    from llmops_cli.jobs.view import write_html_report

    try:
        path, outcome = write_html_report(run, html, baseline=baseline, config=config)
    except LlmopsError as err:
        print_error(str(err))
        raise SystemExit(err.exit_code) from None  # InputError: 2
    verdict = "" if outcome is None else f" (gate: {outcome.status}, exit code {outcome.exit_code})"
    terminal().print(f"report written: {path}{verdict}", markup=False, highlight=False)
    raise SystemExit(0)
