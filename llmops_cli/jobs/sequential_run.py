"""Running a sequential gate (:mod:`llmops_cli.gate.sequential_rules`): the plan's
cases answered in a seeded random order, one wave at a time — each wave
answered (:func:`llmops_cli.run.execute.execute`), scored (:func:`llmops_cli.measure.score.score_run`,
judges and checks included) and shown to the sequences — until the rule says
stop or the eval set runs out. The waves' records are then joined into one
run record, as :mod:`llmops_cli.jobs.merge` joins shards, holding only the cases
answered and the ``sequential`` block.
"""

from __future__ import annotations

import dataclasses
import random
import time
from typing import Callable

from llmops_cli.core.cache import Cache
from llmops_cli.run.concurrency import DEFAULT_CAP, DEFAULT_START
from llmops_cli.config import Config
from llmops_cli.core.errors import Interrupted
from llmops_cli.run.execute import DEFAULT_RETRIES, Progress, allowed_failures, execute
from llmops_cli.plan.requests import Plan, make_plan
from llmops_cli.record.schema import RunRecord
from llmops_cli.gate.sequential_rules import SequentialGate

ProgressFn = Callable[[int, int], None]


def seeded_order(ids: list[str], seed: int) -> list[str]:
    """``ids`` shuffled by ``random.Random(seed)`` (Fisher–Yates; the same
    order on every machine and Python 3 version for the same ids and seed)."""
    order = list(ids)
    random.Random(seed).shuffle(order)
    return order


def sub_plan(plan: Plan, indices: list[int]) -> Plan:
    """The part of ``plan`` for the cases at ``indices`` (in that order):
    its cases, retrieval, messages, check values and requests (re-indexed;
    fresh :class:`~llmops_cli.plan.Request` objects, so each wave's calls
    are its own). The dataset and corpus hashes stay the whole plan's."""
    pos = {i: j for j, i in enumerate(indices)}
    by_case: dict[int, list] = {}
    for r in plan.requests:
        if r.case_index in pos:
            by_case.setdefault(r.case_index, []).append(dataclasses.replace(r, case_index=pos[r.case_index], call=None))
    pick = lambda xs: [xs[i] for i in indices] if xs else []  # noqa: E731
    return Plan(pick(plan.cases), plan.dataset_hash, plan.corpus_hash, pick(plan.retrievals), pick(plan.messages),
                requests=[r for i in indices for r in by_case.get(i, [])], chunk_vars=pick(plan.chunk_vars),
                check_values=pick(plan.check_values))


def run_sequential(cfg: Config, baseline: RunRecord, *, limit: int | None = None, concurrency: int | None = None,
                   max_concurrency: int = DEFAULT_CAP, cache: Cache | None = None, retries: int = DEFAULT_RETRIES,
                   progress: ProgressFn | None = None, refresh: bool = False,
                   on_wave: Callable[[SequentialGate], None] | None = None) -> RunRecord:
    """Answer ``cfg``'s eval set in a seeded random order (``cfg.gate.seed``),
    in waves, until every gated metric's sequence against ``baseline`` is
    decided (or one regressed, ``stop: first_regression``) or the cases run
    out.

    A wave is as many cases as calls may be in flight: ``concurrency`` when
    fixed, else the adaptive limit where the previous wave left it (the
    first: 8), at most ``max_concurrency``. Its answers come from ``cache``
    when there, else from the model; its judges are called with it.

    Args:
        cfg: a validated config with ``gate.sequential`` set
            (:func:`llmops_cli.gate.sequential_rules.check_config` passed).
        baseline: the baseline (its per-case scores); other arguments as
            :func:`llmops_cli.jobs.runner.run_eval`. ``on_wave(state)``: called
            after each wave (tests, progress).

    Returns:
        The run record of the cases answered, in the order answered, with its
        ``sequential`` block (:class:`~llmops_cli.record.SequentialInfo`).

    Raises:
        ConfigError, DatasetError: bad input, before any call.
        RunIncomplete: more than ``max_error_share`` of the answered cases
            failed (exit 3); ``.record``: the partial run. Once more cases
            failed than a full run would allow, no further wave is started.
        Interrupted: Ctrl-C; ``.record``: the waves answered so far.
    """
    from llmops_cli.jobs.merge import sum_counts, sum_usage, summarise
    from llmops_cli.jobs.recording import build_record, check_errors
    from llmops_cli.measure.score import score_run, slice_summary
    from llmops_cli.record.usage import usage_of

    t0 = time.perf_counter()
    plan = make_plan(cfg, limit, memo=cache)
    index = {c.id: i for i, c in enumerate(plan.cases)}
    order = seeded_order([c.id for c in plan.cases], cfg.gate.seed)
    state = SequentialGate(cfg.gate, baseline, order)
    prog = Progress(progress)
    prog.add(len(plan.requests))
    waves: list[RunRecord] = []
    limits: list = []  # what each wave's concurrency limits saw (execute's return values)
    allowed = allowed_failures(len(plan.cases), cfg.max_error_share)
    failed = 0
    size = concurrency or min(DEFAULT_START, max_concurrency)
    pos = 0

    def joined(status: str) -> RunRecord:
        cases = [c for w in waves for c in w.cases]
        head = waves[0] if waves else build_record(cfg, sub_plan(plan, []))
        record = head.model_copy(update={"cases": cases, "status": status})
        record.metrics = summarise(cases, waves) if waves else {}
        record.slices = slice_summary(record)
        record.served = sum_counts([w.served for w in waves])
        judged = [w.judge_usage for w in waves if w.judge_usage is not None]
        record.judge_usage = sum_usage(judged) if judged else None
        record.judge_served = sum_counts([w.judge_served for w in waves])
        record.usage = usage_of(cases, time.perf_counter() - t0, limits=limits)
        record.sequential = state.info()
        return record

    try:
        while pos < len(order) and not state.done and failed <= allowed:
            ids = order[pos:pos + size]
            pos += len(ids)
            part = sub_plan(plan, [index[cid] for cid in ids])
            seen = execute(part.requests, cache, concurrency=concurrency, max_concurrency=max_concurrency,
                           retries=retries, on_done=prog.tick, refresh=refresh, config_path=cfg.path,
                           max_failed_cases=max(0, allowed - failed))
            limits.append(seen)
            wave = build_record(cfg, part)
            score_run(cfg, part, wave, cache, concurrency=concurrency, max_concurrency=max_concurrency,
                      retries=retries, progress=prog, refresh=refresh)
            waves.append(wave)
            failed += sum(bool(c.error) for c in wave.cases)
            state.observe(wave.cases)
            if on_wave is not None:
                on_wave(state)
            if concurrency is None and seen is not None:  # the adaptive limit where this wave left it
                size = max(1, min(max_concurrency, seen.final))
    except KeyboardInterrupt:
        record = joined("interrupted")
        raise Interrupted(f"interrupted after {prog.done} of {prog.total} calls; completed answers are cached",
                          record) from None
    record = joined("complete")
    provider = cfg.model + (f" at {cfg.api_base}" if cfg.api_base else "")
    check_errors(cfg, record, f"calling {provider}", t0, limits)
    return record
