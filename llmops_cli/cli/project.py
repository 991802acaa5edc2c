"""``llmops init`` (a starter project) and ``llmops schema`` (the config's JSON Schema)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from llmops_cli.cli.app import cli


@cli.command("init")
def init_cmd(directory: Annotated[Path, typer.Argument(metavar="[DIR]", file_okay=False,
                                                       help="Folder for the project (created if missing).")] = Path(".")
             ) -> None:
    """Write a starter project — llmops.yaml on the embedded model with 40 cases, llmops.changed.yaml (one prompt
    line changed), LLMOPS.md, a .gitignore entry for .llmops/ — that runs offline right away: `llmops eval
    llmops.yaml --update-baseline` passes, `llmops eval llmops.changed.yaml` is a regression caught (exit 1).
    Never overwrites a file (exit 2)."""
    from llmops_cli.core.errors import LlmopsError
    from llmops_cli.report import print_error, terminal
    from llmops_cli.jobs.starter import create_project

    try:
        written = create_project(directory)
    except LlmopsError as err:
        print_error(str(err))
        raise SystemExit(err.exit_code) from None
    console = terminal()
    for path in written:
        console.print(f"wrote {path}", markup=False)
    where = "" if directory.resolve() == Path.cwd().resolve() else f"cd {directory} && "
    console.print("llmops.changed.yaml changes one prompt line; the gate catches it (exit 1). LLMOPS.md says why.")
    console.print(f"next: {where}llmops eval llmops.yaml --update-baseline && llmops eval llmops.changed.yaml", markup=False)


@cli.command("schema")
def schema_cmd() -> None:
    """Print the config's JSON Schema (for editors: `# yaml-language-server: $schema=...`)."""
    from llmops_cli.jobs.config_schema import schema_text

    typer.echo(schema_text(), nl=False)


@cli.command("scorers")
def scorers_cmd() -> None:
    """List the metrics a config can name: the built-in scorers and those installed by other packages (entry-point
    group llmops.scorers)."""
    from llmops_cli.measure.plugins import FAILED, load_plugins
    from llmops_cli.report import print_scorers, terminal
    from llmops_cli.measure.scorers import SCORERS

    print_scorers(terminal(), SCORERS, load_plugins(), FAILED)
