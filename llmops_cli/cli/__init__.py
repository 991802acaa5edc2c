"""The ``llmops`` command (Typer): parse options, call the library, render,
exit with the outcome's code. The work is in the library; the commands live
in small modules — :mod:`.run` (eval, score, baseline update, validate),
:mod:`.tools` (diff, review, cache), :mod:`.project` (init, schema, scorers).

Start-up stays fast (``llmops --help`` imports Typer and nothing of the
library): every command imports what it needs when it runs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

# the library's defaults (llmops_cli.execute; not imported here, to keep --help fast; a test holds them equal)
DEFAULT_CONCURRENCY = 8
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


from . import run, tools, project  # noqa: E402,I001  (the commands register themselves on `cli`)

_terminated: list[int] = []


def _on_sigterm(signum, frame) -> None:
    """SIGTERM (a cancelled CI job, ``docker stop``) is handled like Ctrl-C:
    the partial run record is written, then the exit code is 143."""
    _terminated.append(signum)
    raise KeyboardInterrupt


def _interrupted_code() -> int:
    """130 after Ctrl-C, 143 (128 + SIGTERM) after SIGTERM."""
    return 143 if _terminated else 130


def _command_path(command, args: list[str]) -> str:
    """``llmops baseline update`` for ``["baseline", "update", "x.yaml", ...]``."""
    path = ["llmops"]
    for tok in args:
        sub = getattr(command, "commands", {}).get(tok)
        if sub is not None:
            command = sub
            path.append(tok)
        elif not tok.startswith("-"):
            break
    return " ".join(path)


def _usage_error(err, command, args: list[str]) -> int:
    """Print a usage error (unknown option, bad value, missing argument) as
    one line on stderr — ``llmops: error: <message> (see llmops eval --help)``
    — and return its exit code: 2. ``llmops`` alone prints the help."""
    from typer._click.exceptions import NoArgsIsHelpError

    if isinstance(err, NoArgsIsHelpError):
        err.show()
        return 2
    ctx = getattr(err, "ctx", None)
    where = ctx.command_path if ctx is not None else _command_path(command, args)
    sys.stderr.write(f"llmops: error: {' '.join(err.format_message().split())} (see {where} --help)\n")
    return 2


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    import signal

    from typer._click.exceptions import ClickException
    from typer.exceptions import Abort

    from ..errors import LlmopsError

    # llmops uses no pydantic plugins: skip their entry-point scan (~30 ms of every start-up)
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _on_sigterm)
    command = typer.main.get_command(cli)
    try:
        # not standalone mode: ours maps Ctrl-C to 130/143 (never 1, the code of a regression) and usage errors to one line
        code = command.main(args=argv, prog_name="llmops", standalone_mode=False)
    except SystemExit as done:  # our commands exit with their documented codes
        if done.code == 130:
            raise SystemExit(_interrupted_code()) from None
        raise
    except (Abort, KeyboardInterrupt):  # interrupted outside a run: nothing to keep
        code = 130
    except ClickException as err:  # usage errors: one line, exit 2
        raise SystemExit(_usage_error(err, command, list(sys.argv[1:] if argv is None else argv))) from None
    except LlmopsError as err:  # raised outside a command's own handling (e.g. `cache info` on a broken cache)
        sys.stderr.write(f"llmops: error: {err}\n")
        raise SystemExit(err.exit_code) from None
    except Exception as exc:  # a bug or an environment failure: never a pass, never a regression
        if os.environ.get("LLMOPS_DEBUG"):
            raise
        from ..provider import redact

        sys.stderr.write(redact(f"llmops: internal error, the run could not complete: {type(exc).__name__}: {exc} "
                                "(set LLMOPS_DEBUG=1 for the traceback)")[:1000] + "\n")
        raise SystemExit(3)
    if code == 130:  # Typer turns a Ctrl-C it sees into 130
        sys.stderr.write("llmops: interrupted\n")
        raise SystemExit(_interrupted_code())
    raise SystemExit(code if isinstance(code, int) else 0)  # `--help`/`--version` return 0; commands exit themselves
