"""``--max-cost USD``: a budget for the run's model and judge calls.

Before the first call (:func:`llmops_cli.measure.estimate.check_before_run`):
the run's estimated cost — its lower bound — must not exceed the budget,
and every new call must have a price (else the spend could not be watched):
otherwise exit 2, nothing called. During the run (:class:`Budget`): each
answered call's ``cost_usd`` is added as it arrives; once the spend passes
the budget, calls not yet started are not made (each is recorded with the
error :data:`STOPPED`), the calls in flight finish (they are paid for, and
cached), and the run ends incomplete (exit 3) with its record written.
"""

from __future__ import annotations

import contextlib
import contextvars
from llmops_cli.core.errors import RunIncomplete

STOPPED = "not made: the run's spend passed --max-cost"

_current: contextvars.ContextVar["Budget | None"] = contextvars.ContextVar("llmops_budget", default=None)


class Budget:
    """The spend of one run against ``max_usd`` (US dollars)."""

    def __init__(self, max_usd: float):
        self.max_usd = float(max_usd)
        self.spent = 0.0

    def spend(self, cost_usd: float | None) -> None:
        """Add one answered call's cost (None: no price, nothing added)."""
        if cost_usd:
            self.spent += cost_usd

    @property
    def exceeded(self) -> bool:
        return self.spent > self.max_usd

    def stop(self, record, done: str) -> RunIncomplete:
        """The error that ends a run whose spend passed the budget (``done``:
        what was completed), with its partial ``record`` (status ``incomplete``)."""
        record.status = "incomplete"
        return RunIncomplete(f"the spend passed --max-cost ${self.max_usd:g}: ${self.spent:.4f} spent; {done}; "
                             f"the calls not yet started were not made, the answers so far are cached", record)


def current() -> Budget | None:
    """The budget of the run being executed (see :func:`active`), or None."""
    return _current.get()


@contextlib.contextmanager
def active(budget: Budget | None):
    """Make ``budget`` the one :func:`llmops_cli.run.execute.execute` watches, for
    the answers and the judges alike."""
    token = _current.set(budget)
    try:
        yield budget
    finally:
        _current.reset(token)
