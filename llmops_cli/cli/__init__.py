"""The ``llmops`` command (Typer): parse options, call the library, render,
exit with the outcome's code. The work is in the library; the commands live
in small modules — :mod:`.run` (eval, score, baseline update, validate),
:mod:`.tools` (diff, review, cache), :mod:`.shards` (merge, gate), :mod:`.view` (report),
:mod:`.project` (init, schema); the application itself in :mod:`.app`.

Start-up stays fast (``llmops --help`` imports Typer and nothing of the
library): every command imports what it needs when it runs.
"""

from __future__ import annotations

import os
import sys

import typer

from llmops_cli.cli.app import DEFAULT_MAX_CONCURRENCY, DEFAULT_RETRIES, EXIT_CODES, cli  # noqa: F401  (public: tests, entry point)
from llmops_cli.cli import run, tools, project, shards, view  # noqa: F401  (the commands register themselves on `cli`)

_terminated: list[int] = []


def _on_sigterm(signum, frame) -> None:
    """SIGTERM (a cancelled CI job, ``docker stop``) is handled like Ctrl-C:
    the partial run record is written, then the exit code is 143. The
    signal is also recorded (:mod:`llmops_cli.core.stop`), so that it is not lost
    when the ``KeyboardInterrupt`` lands in code that swallows it."""
    from llmops_cli.core import stop

    _terminated.append(signum)
    stop.request(signum)
    raise KeyboardInterrupt


def _on_sigint(signum, frame) -> None:
    """Ctrl-C: Python's own behaviour (``KeyboardInterrupt``), recorded too."""
    from llmops_cli.core import stop

    stop.request(signum)
    raise KeyboardInterrupt


def _interrupted_code() -> int:
    """130 after Ctrl-C, 143 (128 + SIGTERM) after SIGTERM."""
    from llmops_cli.core import stop

    return 143 if _terminated or stop.terminated() else 130


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

    from llmops_cli.core.errors import LlmopsError

    # llmops uses no pydantic plugins: skip their entry-point scan (~30 ms of every start-up)
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _on_sigterm)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_sigint)
    command = typer.main.get_command(cli)
    try:
        # not standalone mode: ours maps Ctrl-C to 130/143 (never 1, the code of a regression) and usage errors to one line
        code = command.main(args=argv, prog_name="llmops", standalone_mode=False)
    except SystemExit as done:  # our commands exit with their documented codes
        from llmops_cli.core import stop

        if done.code == 130 or stop.requested():  # a stop asked for is never lost, whatever the command made of it
            if done.code != 130:
                sys.stderr.write("llmops: interrupted\n")
            raise SystemExit(_interrupted_code()) from None
        raise
    except (Abort, KeyboardInterrupt):  # interrupted outside a run: nothing to keep
        code = 130
    except ClickException as err:  # usage errors: one line, exit 2
        raise SystemExit(_usage_error(err, command, list(sys.argv[1:] if argv is None else argv))) from None
    except LlmopsError as err:  # raised outside a command's own handling (e.g. `cache info` on a broken cache)
        from llmops_cli.report.terminal import visible

        sys.stderr.write(visible(f"llmops: error: {err}") + "\n")
        raise SystemExit(err.exit_code) from None
    except Exception as exc:  # a bug or an environment failure: never a pass, never a regression
        if os.environ.get("LLMOPS_DEBUG"):
            raise
        from llmops_cli.report.terminal import visible
        from llmops_cli.run.provider import redact

        sys.stderr.write(visible(redact(f"llmops: internal error, the run could not complete: {type(exc).__name__}: "
                                        f"{exc} (set LLMOPS_DEBUG=1 for the traceback)")[:1000]) + "\n")
        raise SystemExit(3) from None
    if code == 130:  # Typer turns a Ctrl-C it sees into 130
        sys.stderr.write("llmops: interrupted\n")
        raise SystemExit(_interrupted_code())
    raise SystemExit(code if isinstance(code, int) else 0)  # `--help`/`--version` return 0; commands exit themselves
