"""Ctrl-C and SIGTERM are never lost.

The CLI's signal handlers raise ``KeyboardInterrupt`` where the signal lands,
which stops the run — unless the code it lands in swallows it: in 4 of 96
SIGTERMs sent mid-call the interrupt was caught inside aiohttp and the run
finished, exit 0, baseline written. So the handlers also *record* the signal
here, and the run checks the record at its checkpoints (:func:`check`: after
the calls, after scoring, before a baseline is written or a verdict given)
and the CLI once more before it exits: a recorded signal is always an
interrupted run (exit 130, or 143 after SIGTERM), never a pass, a regression
or a new baseline.
"""

from __future__ import annotations

import signal

received: list[int] = []  # the signals received, in order


def request(signum: int) -> None:
    """Record that ``signum`` (SIGINT or SIGTERM) asked the run to stop."""
    received.append(signum)


def requested() -> bool:
    """Whether a stop was asked for since the process started (or :func:`reset`)."""
    return bool(received)


def terminated() -> bool:
    """Whether the stop came from SIGTERM (exit 143, else 130)."""
    return signal.SIGTERM in received


def check() -> None:
    """Raise ``KeyboardInterrupt`` when a stop was asked for, whether or not
    the interrupt raised at the time reached us."""
    if received:
        raise KeyboardInterrupt


def reset() -> None:
    """Forget the signals received (``eval --watch`` starts each run afresh)."""
    received.clear()
