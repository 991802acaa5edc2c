"""A run's record from its plan (:func:`build_record`), the check that
too many of its cases failed (:func:`check_errors`), and the budget it runs
under — shared by the whole, chunked and sequential runs.
"""

from __future__ import annotations

import os
import time

from llmops_cli import __version__
from llmops_cli.config import Config
from llmops_cli.core.errors import RunIncomplete
from llmops_cli.core.fingerprint import fingerprint
from llmops_cli.plan.requests import Plan
from llmops_cli.record.environment import collect_environment
from llmops_cli.record.schema import Call, CaseRecord, RunRecord, Usage, new_run_id, now_iso
from llmops_cli.record.usage import served_summary, usage_of

NOT_RUN = "not run"  # a case's error when its call was never made (interrupted, or the run stopped early)


def _display_path(p) -> str | None:
    """``p`` relative to the working directory when inside it (records and
    baselines get committed; absolute paths would leak the author's layout)."""
    if p is None:
        return None
    try:
        return str(p.relative_to(os.getcwd()))
    except ValueError:
        return str(p)


def build_record(cfg: Config, plan: Plan, *, source: str = "model", status: str = "complete") -> RunRecord:
    """The run record of ``plan`` after execution: one case record per case
    with its calls (a case without any is ``not run``), the config snapshot,
    fingerprint, hashes, who served the answers and the environment. Scores
    and usage are filled in later."""
    snapshot = cfg.snapshot()
    by_case: dict[int, list[Call]] = {}
    for r in plan.requests:
        if r.call is not None:
            by_case.setdefault(r.case_index, []).append(r.call)
    records = []
    for i, case in enumerate(plan.cases):
        calls = sorted(by_case.get(i, []), key=lambda c: c.repeat)
        first = calls[0] if calls else None
        # built from the plan's already-validated parts, sharing them (the eval set's inputs and references
        # are not copied: 4 MB less peak RSS at 10,000 cases)
        records.append(CaseRecord.model_construct(
            CaseRecord.all_fields(),
            id=case.id, inputs=case.inputs, references=case.references, slices=case.slices, retrieval=plan.retrievals[i],
            messages=plan.messages[i] if plan.messages else None, calls=calls,
            output=first.output if first else None,
            error=next((c.error for c in calls if c.error), None) if calls else NOT_RUN,
        ))
    return RunRecord(
        run_id=new_run_id(), created_at=now_iso(), tool_version=__version__, source=source, status=status,
        config_path=_display_path(cfg.path), config=snapshot,
        fingerprint=fingerprint(snapshot, plan.corpus_hash), dataset_hash=plan.dataset_hash, corpus_hash=plan.corpus_hash,
        served=served_summary(plan.requests), environment=collect_environment(),
        shard=plan.shard, cases=records,
    )


def current_budget():
    from llmops_cli.run.budget import current

    return current()


def check_errors(cfg: Config, record: RunRecord, what: str, t0: float, limits=(), usage: Usage | None = None) -> None:
    """Raise :class:`RunIncomplete` (status ``incomplete``, usage filled in)
    when more than ``cfg.max_error_share`` of the cases have no output;
    ``what`` says where, e.g. ``calling openai/gpt-4o``; ``t0`` is the run's
    ``time.perf_counter()`` start; ``limits``: what the concurrency limits saw;
    ``usage``: the run's usage when already summed (else counted from the cases)."""
    failed = [c for c in record.cases if c.error]
    if failed and len(failed) / len(record.cases) > cfg.max_error_share:
        record.status = "incomplete"
        record.usage = usage or usage_of(record.cases, time.perf_counter() - t0, limits=limits)
        errors = [c.error for c in failed if c.error != NOT_RUN]
        not_run = len(failed) - len(errors)
        raise RunIncomplete(f"{len(errors)} of {len(record.cases)} cases failed (limit {cfg.max_error_share:.0%}) {what}"
                            f"{f', so the other {not_run} were not run' if not_run else ''}; "
                            f"first error: {errors[0] if errors else NOT_RUN}", record)
