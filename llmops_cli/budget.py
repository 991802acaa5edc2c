"""``--max-cost USD``: a budget for the run's model and judge calls.

Before the first call (:func:`check_before_run`): the run's estimated cost
(:mod:`llmops_cli.estimate`) — its lower bound — must not exceed the budget,
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
from typing import TYPE_CHECKING

from .errors import InputError, RunIncomplete

if TYPE_CHECKING:
    from .estimate import CostEstimate

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
    """Make ``budget`` the one :func:`llmops_cli.execute.execute` watches, for
    the answers and the judges alike."""
    token = _current.set(budget)
    try:
        yield budget
    finally:
        _current.reset(token)


def check_before_run(estimate: CostEstimate, max_usd: float, where: str) -> None:
    """Refuse a run the budget cannot hold, before any call.

    Raises:
        InputError: (exit 2, naming ``where`` and ``--max-cost``) a new
            call's model has no price in LiteLLM's price map, or the
            estimate's lower bound exceeds ``max_usd``."""
    if estimate.unpriced:
        raise InputError(where, "--max-cost", f"LiteLLM has no price for {', '.join(estimate.unpriced)}, so the "
                         f"spend cannot be held to ${max_usd:g}")
    low = estimate.low or 0.0
    if low > max_usd:
        raise InputError(where, "--max-cost", f"the run costs at least ${low:.4f} (prompt tokens of its new calls "
                         f"alone), more than ${max_usd:g}")
