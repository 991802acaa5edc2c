"""The ``llmops`` Typer application: its help, the exit-code table, the
library's defaults shown in ``--help``, and the root options (``--version``;
``.env`` loading). Commands register on :data:`cli` from :mod:`.run`,
:mod:`.tools` and :mod:`.project`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

# the library's defaults (llmops_cli.run.execute; not imported here, to keep --help fast; a test holds them equal)
DEFAULT_MAX_CONCURRENCY = 64
DEFAULT_RETRIES = 8

EXIT_CODES = """\
[bold]Exit codes[/]
  0  the gate passed (or the baseline was written, or the config is valid)
  1  regression: a gated metric fell past its rule
  2  bad input or usage (config, dataset, corpus, baseline, flags)
  3  the run could not complete (provider errors, unscored metrics)
  130 interrupted (Ctrl-C); the partial run record is kept
  143 terminated (SIGTERM); the partial run record is kept"""

cli = typer.Typer(
    name="llmops", help="llmops — an eval gate for LLM applications.\n\nPin prompt, model, parameters and retrieval in one "
    "YAML file; `llmops eval` runs the eval set through it, scores the outputs, compares them with the committed "
    "baseline and exits non-zero on a regression.", epilog=EXIT_CODES, rich_markup_mode="rich", no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}, pretty_exceptions_enable=False)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"llmops, version {version('llmops-cli')}")
        raise typer.Exit()


@cli.callback()
def _root(version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True,
                                                            help="Show the version and exit.")] = None) -> None:
    env_file = Path.cwd() / ".env"
    if env_file.is_file():  # API keys may live in .env; never written anywhere
        from dotenv import load_dotenv

        load_dotenv(env_file, override=False)
