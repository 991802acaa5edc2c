"""How a gated run ends: one :class:`Outcome` that knows its exit code and a
one-line reason, shared by ``eval``, ``score``, ``baseline update`` and
``validate``. The precedence between exit codes lives here and nowhere else.

==== ============== =====================================================
code status         when
==== ============== =====================================================
0    passed         the gate passed, the config is valid, or the baseline
                    was written; a shard's record was written (``shard
                    written``: not gated) or shards were merged (``merged``)
1    regressed      a gated metric fell past its rule (strict mode: was
                    not shown to stay within it), or the served model
                    drifted under ``gate.on_model_drift: fail``
2    bad input      config, dataset, corpus, baseline, template, flags or
                    an output path; a changed judge; a ``require_power``
                    the eval set cannot meet
3    incomplete     the run could not complete: too many provider errors,
                    too many unscored judge verdicts, a gated metric with
                    no scored case
130  interrupted    Ctrl-C (143 after SIGTERM, decided by the CLI)
==== ============== =====================================================

When a comparison gives several, **3 before 1 before 2 before 0**
(:func:`from_comparison`): a run that cannot decide is never a pass or a
regression, and a regression that was found is reported even by an
underpowered gate (it is real; the missing power is about drops it could
have missed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from llmops_cli.gate.comparison import Comparison
    from llmops_cli.core.errors import LlmopsError
    from llmops_cli.record.schema import RunRecord

Status = Literal["passed", "baseline written", "valid", "shard written", "merged", "regressed", "bad input",
                 "incomplete", "interrupted"]
EXIT_CODES: dict[Status, int] = {"passed": 0, "baseline written": 0, "valid": 0, "shard written": 0, "merged": 0,
                                 "regressed": 1, "bad input": 2, "incomplete": 3, "interrupted": 130}


@dataclass
class Outcome:
    """The end of a run. ``status`` and ``exit_code`` (see the module's
    table); ``reason``: one line for people; ``record``/``record_path``: the
    run record (partial after an error, when one exists) and where it was
    written; ``comparison``: the gate's, when the run was compared;
    ``baseline_path``: the baseline read or written; ``error``: the
    exception that ended the run, if any; ``notes``: lines to show above the
    verdict (e.g. a knowingly changed judge)."""

    status: Status
    reason: str
    record: RunRecord | None = None
    comparison: Comparison | None = None
    record_path: Path | None = None
    baseline_path: Path | None = None
    error: LlmopsError | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        if self.error is not None:
            return self.error.exit_code
        return EXIT_CODES[self.status]

    @property
    def ok(self) -> bool:
        """True for exit code 0."""
        return self.exit_code == 0


def from_comparison(cmp: Comparison, record: RunRecord | None = None, *,
                    max_unscored_share: float | None = None) -> Outcome:
    """The outcome of a comparison, with the precedence 3 > 1 > 2 > 0:

    3 — the gate cannot decide: ``record`` did not complete (its status is
    not ``complete``), a gated metric without scored pairs, or a judge
    (gated or not) that left more than ``max_unscored_share`` (0–1) of
    ``record``'s cases unscored;
    1 — a gated metric failed its rule, or the served model drifted under
    ``on_model_drift: fail``;
    2 — a ``require_power`` the eval set does not meet;
    0 — the gate passed."""
    if record is not None and record.status != "complete":
        return Outcome("incomplete", f"the run did not complete (status {record.status}); it can neither pass nor fail "
                       "the gate", record, cmp)
    unscored = [f"{m.label}: {m.reason}" for m in cmp.unscored]
    if record is not None and max_unscored_share is not None:
        unscored += _unscored_judges(record, max_unscored_share, skip={m.metric for m in cmp.unscored})
    if unscored:
        return Outcome("incomplete", "the gate cannot decide: " + "; ".join(unscored), record, cmp)
    if cmp.failed or cmp.drift_failed:
        parts = [m.label for m in cmp.failed] + (["served model drift (gate.on_model_drift: fail)"] if cmp.drift_failed else [])
        return Outcome("regressed", "regression: " + ", ".join(parts), record, cmp)
    if cmp.underpowered:
        return Outcome("bad input", "gate.require_power not met: " + "; ".join(m.power_warning for m in cmp.underpowered),
                       record, cmp)
    return Outcome("passed", "gate passed", record, cmp)


def _unscored_judges(record: RunRecord, max_unscored_share: float, skip: set[str]) -> list[str]:
    from llmops_cli.gate.baseline import unscored_judges

    return [line for name, line in unscored_judges(record, max_unscored_share) if name not in skip]


def from_error(err: LlmopsError, record_path: Path | None = None) -> Outcome:
    """The outcome of a run that raised ``err`` (its ``exit_code`` decides:
    2 bad input, 3 incomplete, 130 interrupted); ``err.record``, when there
    is one, is the partial run, written at ``record_path``."""
    code = err.exit_code
    status: Status = "bad input" if code == 2 else "incomplete" if code == 3 else "interrupted"
    return Outcome(status, str(err), getattr(err, "record", None), record_path=record_path, error=err)
