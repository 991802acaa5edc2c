"""Merging the records of a run's shards (``llmops eval --shard k/n``, see
:mod:`llmops_cli.plan.shards`) into the record the unsharded run would have
written (``llmops merge``).

**Checks** (each an :class:`~llmops_cli.core.errors.InputError`, exit 2, naming
the file): every record is a shard's; all share the config fingerprint, the
config snapshot, the source, the dataset hash and the shard count; no shard
index is given twice and none is missing; every case is in the shard its id
hashes to, no case id appears twice, and the cases, put back in their
positions, are exactly the eval set the shards were run on (its dataset hash
recomputed from their ids, inputs and references).

**The merged record**: the cases in the unsharded order with their outputs,
calls, scores, statistics, judge verdicts and reasons as the shards recorded
them; every metric re-aggregated from the cases exactly as a run aggregates
it (:func:`summarise`: corpus BLEU from summed statistics, means, quantiles,
check pass rates, judge summaries, perplexity), then the slices
(:func:`llmops_cli.measure.score.slice_summary`); usage summed over the shards (wall
time too: the machine time spent, not the elapsed time; the most calls in
flight is the largest shard's); served-model counts summed; status
``complete`` only when every shard's is (else the first other status). A
plugin scorer whose own aggregate is not the mean of its per-case scores (or
a corpus score from ``stats``) is re-aggregated as that mean.

Also what is checked before a record made earlier is gated (``llmops gate``):
:func:`load_candidate`, :func:`recorded_config`, :func:`check_candidate`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from llmops_cli.core.errors import InputError
from llmops_cli.record.schema import CaseRecord, MetricSummary, RunRecord, Usage, load_record, new_run_id, now_iso

if TYPE_CHECKING:
    from llmops_cli.record.schema import ShardInfo

Shard = tuple[Path, RunRecord]


def merge_files(paths: Sequence[str | Path]) -> tuple[RunRecord, list[str]]:
    """Read the shard records at ``paths`` and merge them (:func:`merge_records`).

    Raises:
        BaselineError: a file missing, unreadable or not a run record.
        InputError: see :func:`check_shards`."""
    return merge_records([(Path(p), load_record(p)) for p in paths])


def merge_records(shards: Sequence[Shard]) -> tuple[RunRecord, list[str]]:
    """One record from the shards' ``(path, record)`` pairs, in any order:
    the record the unsharded run would have written (see the module), and
    notes for people (shards that ran with other library versions).

    Raises:
        InputError: see :func:`check_shards` (exit 2, naming the file)."""
    from llmops_cli.record.environment import version_changes
    from llmops_cli.measure.score import slice_summary

    ordered = check_shards(shards)
    cases = ordered_cases(ordered)
    p0, r0 = ordered[0]
    runs = [r for _, r in ordered]
    merged = RunRecord(
        kind="run", run_id=new_run_id(), created_at=now_iso(), tool_version=r0.tool_version, source=r0.source,
        status=next((r.status for r in runs if r.status != "complete"), "complete"), config_path=r0.config_path,
        config=r0.config, fingerprint=r0.fingerprint, dataset_hash=r0.dataset_hash, corpus_hash=r0.corpus_hash,
        usage=sum_usage([r.usage for r in runs]),
        judge_usage=sum_usage([r.judge_usage for r in runs if r.judge_usage is not None])
        if any(r.judge_usage is not None for r in runs) else None,
        served=sum_counts([r.served for r in runs]), judge_served=sum_counts([r.judge_served for r in runs]),
        environment=r0.environment, cases=cases)
    merged.metrics = summarise(cases, runs)
    merged.slices = slice_summary(merged)
    notes = []
    for path, r in ordered[1:]:
        changes = version_changes(r0.environment, r.environment)
        if changes:
            notes.append(f"{path} ran with other library versions than {p0}: {', '.join(changes)}")
    return merged, notes


def check_shards(shards: Sequence[Shard]) -> list[Shard]:
    """Check that ``shards`` are all the shards of one run; return them in
    shard order.

    Raises:
        InputError: no record; a record that is not a shard's; a fingerprint,
            config, source, dataset hash, shard count or eval-set size that
            differs from the first record's; a shard index given twice or
            missing; a case in the wrong shard (each names the file)."""
    from llmops_cli.core.fingerprint import canonical_json, config_diff
    from llmops_cli.plan.shards import shard_of

    if not shards:
        raise InputError(None, "merge", "no shard records given")
    for path, r in shards:
        if r.shard is None:
            raise InputError(path, "shard", "not the record of a shard (made without --shard): nothing to merge")
    p0, r0 = shards[0]
    assert r0.shard is not None  # every record was checked to be a shard's just above
    n = r0.shard.count
    by_index: dict[int, Path] = {}
    for path, r in shards:
        assert r.shard is not None  # as above
        k = r.shard.index
        if r.fingerprint != r0.fingerprint:
            diff = config_diff(r0.config, r.config)
            raise InputError(path, "fingerprint", f"{r.fingerprint} ≠ {r0.fingerprint} of {p0}: the shards were run "
                             f"with different configurations{' (' + diff[0] + ')' if diff else ''}")
        if r.dataset_hash != r0.dataset_hash or r.shard.total != r0.shard.total:
            raise InputError(path, "dataset_hash", f"{r.dataset_hash} ≠ {r0.dataset_hash} of {p0}: the shards were run "
                             "on different eval sets")
        if canonical_json(r.config) != canonical_json(r0.config) or r.source != r0.source:
            diff = config_diff(r0.config, r.config)
            raise InputError(path, "config", f"differs from {p0}'s ({diff[0] if diff else 'source, eval set or gate'}); "
                             "merge shards of one run")
        if r.shard.count != n:
            raise InputError(path, "shard.count", f"shard {k}/{r.shard.count}, but {p0} is a shard of {n}")
        if k in by_index:
            raise InputError(path, "shard.index", f"shard {k}/{n} is given twice (also {by_index[k]})")
        by_index[k] = path
        if len(r.shard.positions) != len(r.cases):
            raise InputError(path, "shard.positions", f"{len(r.shard.positions)} positions for {len(r.cases)} cases")
        for c in r.cases:
            if shard_of(c.id, n) != k:
                raise InputError(path, "cases", f"case {c.id!r} belongs to shard {shard_of(c.id, n)}/{n}, not {k}/{n}")
    missing = [k for k in range(1, n + 1) if k not in by_index]
    if missing:
        given = ", ".join(f"{k}/{n} ({by_index[k]})" for k in sorted(by_index))
        raise InputError(None, None, f"shard {missing[0]}/{n} is missing ({len(missing)} of {n} missing; "
                         f"given: {given})")
    return sorted(shards, key=lambda s: _shard_info(s[1]).index)


def _shard_info(r: RunRecord) -> ShardInfo:
    """The ``shard`` of a record :func:`check_shards` has checked to be a shard's."""
    assert r.shard is not None, "not a shard's record"
    return r.shard


def ordered_cases(ordered: Sequence[Shard]) -> list[CaseRecord]:
    """The shards' cases put back in their places in the eval set.

    Raises:
        InputError: a case id in two places, a position out of range or
            taken twice, a place left empty, or cases that are not the eval
            set the shards were run on (its dataset hash)."""
    from llmops_cli.plan.dataset import Case, dataset_hash

    p0, r0 = ordered[0]
    total = _shard_info(r0).total
    at: dict[int, CaseRecord] = {}
    where: dict[str, Path] = {}
    for path, r in ordered:
        for pos, c in zip(_shard_info(r).positions, r.cases):
            if c.id in where:
                raise InputError(path, "cases", f"case {c.id!r} appears twice (also in {where[c.id]})")
            if not 0 <= pos < total or pos in at:
                raise InputError(path, "shard.positions", f"case {c.id!r} at position {pos}: out of range 0–{total - 1} "
                                 "or taken twice")
            where[c.id] = path
            at[pos] = c
    if len(at) != total:
        raise InputError(p0, "cases", f"the shards hold {len(at)} of the eval set's {total} cases")
    cases = [at[i] for i in range(total)]
    if dataset_hash([Case(c.id, c.inputs, c.references) for c in cases]) != r0.dataset_hash:
        raise InputError(p0, "dataset_hash", "the shards' cases, in their positions, are not the eval set they were "
                         f"run on ({r0.dataset_hash})")
    return cases


def summarise(cases: list[CaseRecord], runs: Sequence[RunRecord]) -> dict[str, MetricSummary]:
    """Every metric the ``runs`` (shards) scored, re-aggregated over
    ``cases`` (all of them, in order) as a run aggregates it, in the shards'
    order of metrics."""
    names = list(dict.fromkeys(name for r in runs for name in r.metrics))
    out = {}
    for name in names:
        summaries = [r.metrics[name] for r in runs if name in r.metrics]
        info = next((s.info for s in summaries if s.info), {})
        out[name] = summarise_metric(name, cases, info, scale=summaries[0].scale)
    return out


def summarise_metric(name: str, cases: list[CaseRecord], info: dict[str, Any], scale: float = 1.0) -> MetricSummary:
    """The summary of metric ``name`` over ``cases`` (scored already), by the
    function the run itself uses for its kind: a judge (``info["judge"]``),
    a check (``info["check"]``), an operational metric, perplexity, else
    :func:`llmops_cli.measure.score.case_summary` (``info`` kept; ``scale``: the
    shards' own, for a scorer not installed here)."""
    from llmops_cli.measure.operational import OPERATIONAL, operational_summary
    from llmops_cli.measure.score import case_summary
    from llmops_cli.measure.scorers import SCORERS

    if info.get("judge"):
        from llmops_cli.measure.judge import JUDGE_SETTINGS, judge_summary

        return judge_summary(name, cases, {k: info.get(k) for k in JUDGE_SETTINGS})
    if info.get("check"):
        from llmops_cli.measure.checks import check_summary

        return check_summary(name, info.get("type", ""), cases)
    if name in OPERATIONAL:
        return operational_summary(name, cases)
    if name == "perplexity":
        from llmops_cli.measure.perplexity import perplexity_summary

        return perplexity_summary(cases, info.get("model"))
    if name not in SCORERS:
        from llmops_cli.measure.plugins import load_plugins

        load_plugins()
    summary = case_summary(name, cases, info=info)
    if name not in SCORERS:
        summary.scale = scale
    return summary


def sum_usage(usages: Sequence[Usage]) -> Usage:
    """The shards' usage added up: counts and tokens summed, cost summed
    (None when no shard knows it), wall time summed (seconds of machine time,
    not elapsed), the slowest calls the five slowest of all, the most calls
    in flight the largest, answers per deployment summed."""
    data: dict[str, Any] = {}
    for name in Usage.model_fields:
        values = [getattr(u, name) for u in usages]
        if name == "slowest":
            data[name] = sorted((s for v in values for s in v), key=lambda s: -s.get("latency_s", 0))[:5]
        elif name == "concurrency_peak":
            data[name] = max((v for v in values if v is not None), default=None)
        elif name == "cost_usd":
            known = [v for v in values if v is not None]
            data[name] = math.fsum(known) if known else None
        elif name == "wall_s":
            data[name] = round(math.fsum(values), 3)
        elif name == "deployments":  # answers per deployment label
            data[name] = sum_counts([{"": v} for v in values]).get("", {})
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            data[name] = sum(values)
        elif values:
            data[name] = values[0]
    return Usage(**data)


def sum_counts(blocks: Sequence[dict[str, dict[str, int]]]) -> dict[str, dict[str, int]]:
    """Served-model summaries (``{model: {label: calls}}``) added up, sorted
    like :func:`llmops_cli.record.usage.served_summary`'s."""
    out: dict[str, dict[str, int]] = {}
    for block in blocks:
        for model, counts in block.items():
            mine = out.setdefault(model, {})
            for label, n in counts.items():
                mine[label] = mine.get(label, 0) + n
    return {model: dict(sorted(counts.items())) for model, counts in sorted(out.items())}


# -- gating a record made earlier (`llmops gate`) ---------------------------------------------

def load_candidate(path: str | Path) -> RunRecord:
    """Read a run record to gate without running (``llmops gate``).

    Raises:
        BaselineError: missing, unreadable or malformed.
        InputError: the record of one shard (merge the shards first)."""
    record = load_record(path)
    if record.shard is not None:
        raise InputError(path, "shard", f"the record of shard {record.shard.index}/{record.shard.count} alone: merge "
                         "the shards first (llmops merge SHARD... -o run.json), then gate the merged record")
    return record


def recorded_config(record: RunRecord, path: str | Path) -> str:
    """The config file a run record names (``config_path``, relative to the
    working directory it ran in), for gating it without naming one.

    Raises:
        InputError: the record names none, or one not found from here."""
    if not record.config_path:
        raise InputError(path, "config_path", "the record names no config file; give the config: llmops gate RUN CONFIG")
    if not Path(record.config_path).is_file():
        raise InputError(path, "config_path", f"{record.config_path} is not found from here (the path is relative to "
                         "where the run was made); give the config: llmops gate RUN CONFIG")
    return record.config_path


def check_candidate(record: RunRecord, cfg, path: str | Path) -> None:
    """Refuse to gate ``record`` with ``cfg``'s rules when they do not
    describe the same run: its fingerprint must be the one ``cfg`` has with
    the record's corpus (the model, parameters, prompts, retrieval, repeats
    and judges are unchanged; the gate rules may change), and it must hold
    every metric the gate names. A record that did not complete can neither
    pass nor fail.

    Raises:
        InputError: another configuration (naming the first change), or a
            gated metric the record lacks (exit 2).
        RunIncomplete: the record's status is not ``complete`` (exit 3)."""
    from llmops_cli.core.errors import RunIncomplete
    from llmops_cli.core.fingerprint import config_diff, fingerprint

    snapshot = cfg.snapshot()
    if record.source == "outputs":  # scored from a file: its fingerprint names the file, not the model
        snapshot = {**snapshot, "model": record.config.get("model")}
    if fingerprint(snapshot, record.corpus_hash) != record.fingerprint:
        diff = config_diff(record.config, snapshot)
        raise InputError(path, "fingerprint", f"the record was made with another configuration than {cfg.path}"
                         f"{' (' + diff[0] + ')' if diff else ''}; gate it with the config it ran")
    for m in cfg.gate.metrics:
        if m in cfg.all_metrics and m not in record.metrics:
            raise InputError(path, f"metrics.{m}", "the record has no scores for this gated metric")
    if record.status != "complete":
        raise RunIncomplete(f"{path}: the run did not complete (status {record.status}); it can neither pass nor "
                            "fail the gate")
