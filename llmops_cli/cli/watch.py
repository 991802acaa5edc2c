"""``llmops eval --watch``: render each iteration of
:func:`llmops_cli.jobs.watch.watch` — the gate table against the baseline, the
one-line change since the previous run, what is watched — and exit 130 on
Ctrl-C (143 on SIGTERM, mapped by :func:`llmops_cli.cli.main`)."""

from __future__ import annotations

from typing import NoReturn


def watch_eval(opts, *, top: int = 5, quiet: bool = False, json_out: bool = False) -> NoReturn:
    """Watch ``opts`` (:class:`~llmops_cli.jobs.evaluate.EvalOptions`) until
    Ctrl-C. An option a watch cannot take (``json_out`` included) is one
    line and exit 2 before anything runs."""
    from llmops_cli.core.errors import InputError, LlmopsError
    from llmops_cli.jobs.evaluate import _shown, evaluate
    from llmops_cli.report import print_error, print_outcome, terminal
    from llmops_cli.jobs.watch import check_options, watch
    from llmops_cli.report.terminal import progress_bar

    try:
        if json_out:
            raise InputError(None, "--json", "cannot be combined with --watch: it prints one JSON document per run")
        check_options(opts)
    except InputError as err:
        print_error(str(err))
        raise SystemExit(2) from None
    console = terminal()

    def run(o):
        with progress_bar(console, quiet) as update:
            return evaluate(o, progress=update)

    def show(it) -> None:
        if it.changed:
            console.rule(f"run {it.number}: {', '.join(_shown(p) for p in it.changed)} changed", style="dim")
        print_outcome(console, it.outcome, top=top, quiet=quiet)
        if it.delta:
            console.print(it.delta, markup=False, soft_wrap=True)
        if it.outcome.exit_code != 130:
            console.print(f"watching {len(it.files)} files… (Ctrl-C to stop)", style="dim")

    try:
        last = watch(opts, show, run=run)
    except KeyboardInterrupt:  # while waiting for a save
        console.print("stopped watching", style="dim")
        raise SystemExit(130) from None
    except LlmopsError as err:  # --no-cache's private cache cannot be made
        print_error(str(err))
        raise SystemExit(err.exit_code) from None
    raise SystemExit(last.outcome.exit_code if last is not None else 0)
