"""The run record: a versioned, typed log of one eval run (JSON).

Every run writes one under ``.llmops/runs/`` (or ``--output``). A baseline is
the same record with ``kind: "baseline"`` and without the bulky traces (raw
responses and rendered messages), meant to be committed next to the config.

Files are written atomically (temporary file + ``os.replace``); a file that
cannot be written is an :class:`~llmops_cli.core.errors.OutputError` naming it
(see :mod:`llmops_cli.core.files`).
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from llmops_cli.record.compact import CompactObject, PerCaseModel, RecordModel, SharedFloat
from llmops_cli.core.errors import BaselineError
from llmops_cli.core.files import atomic_write_chunks

SCHEMA_VERSION = 1


class Call(PerCaseModel):
    """One model call for one case (one per repeat). Tokens are counts,
    ``latency_s`` seconds (for a cache hit: the latency recorded when it was
    first answered), ``cost_usd`` US dollars (None
    when LiteLLM has no price for the model). ``served_model`` and
    ``system_fingerprint`` are what the provider said served the answer (its
    response's ``model`` and ``system_fingerprint``; None when it did not
    say); a cached answer keeps those of the call that made it.
    ``logprob_sum`` is the sum of the output tokens' log-probabilities under
    the answering model (natural log, nats) and ``logprob_tokens`` their
    count, read from the response when the provider returned them (asked for
    by the ``perplexity`` metric; see :mod:`llmops_cli.measure.perplexity`); None
    when it did not. ``deployment``: which of the config's ``deployments``
    (or ``fallbacks``) answered — its ``name``, else its ``api_base``, else
    its model string; never a key — None without deployments.

    ``latency_s`` is the answering attempt's time: from sending the request
    to receiving the response (LiteLLM's own work on the call included), not
    the wait for a free slot of the concurrency limit (``queue_s``) nor the
    retries' back-off (``backoff_s``: the seconds spent waiting between
    attempts); for a call that failed, its last attempt's. ``queue_s`` and
    ``backoff_s`` are this run's (None for a cached answer)."""

    repeat: int = 0
    output: str | None = None
    response: CompactObject | None = None  # a RawJSON
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_s: float | None = None
    cost_usd: float | None = None
    cached: bool = False
    retries: int = 0
    error: str | None = None
    served_model: str | None = None
    system_fingerprint: str | None = None
    logprob_sum: float | None = None
    logprob_tokens: int | None = None
    deployment: str | None = None
    queue_s: float | None = None
    backoff_s: float | None = None


class JudgeSample(Call):
    """One judge call: ``output`` is the judge's raw reply, ``verdict`` the
    parsed grade (``C``/``P``/``I`` or the rubric score) or None (unscored),
    ``value`` its 0–1 value."""

    sample: int = 0
    verdict: str | None = None
    value: float | None = None


class JudgeResult(PerCaseModel):
    """A judge's reduced verdict on one output: ``value`` 0–1 or None
    (unscored), ``agreement`` share of parsed samples agreeing with the most
    common verdict, ``spread`` max − min of sample values."""

    verdict: str | None = None
    value: float | None = None
    agreement: float | None = None
    spread: float | None = None
    samples: list[JudgeSample] = []


class RetrievedChunk(PerCaseModel):
    """A retrieved chunk: id, BM25 score, and its text (dropped in baselines)."""

    id: str
    score: float
    text: str | None = None


class RetrievedContext(PerCaseModel):
    query: str
    chunks: list[RetrievedChunk]


class CaseRecord(PerCaseModel):
    """One case: its inputs, references, retrieval trace, rendered messages,
    calls, the (first) output, per-metric scores (None = unscored), and why a
    check failed or was not scored (``reasons``: check name → one line).
    ``slices``: the case's value of each ``dataset.slices`` field."""

    id: str
    inputs: dict[str, Any]
    references: list[str]
    slices: dict[str, str] = {}
    retrieval: RetrievedContext | None = None
    messages: list[dict[str, Any]] | None = None
    calls: list[Call] = []
    output: str | None = None
    error: str | None = None
    scores: dict[str, SharedFloat | None] = {}
    stats: dict[str, list[SharedFloat]] = {}
    judges: dict[str, list[JudgeResult]] = {}
    reasons: dict[str, str] = {}

    def without_traces(self) -> "CaseRecord":
        """A fresh copy as a baseline keeps it: without the bulky traces
        (:data:`BASELINE_EXCLUDE`; they become null)."""
        return CaseRecord.model_validate(self.model_dump(exclude=BASELINE_EXCLUDE))


class MetricSummary(RecordModel):
    """Aggregate of one metric. ``scale`` is the top of its range (1 or 100)."""

    aggregate: float | None
    scale: float = 1.0
    n_scored: int = 0
    n_unscored: int = 0
    info: dict[str, Any] = {}


class Usage(RecordModel):
    """Totals for the run: tokens, USD, calls, cache hits/misses, errors,
    retries, and wall time in seconds; ``concurrency_peak``: the most calls
    in flight at once (None when nothing was called), ``throttled``: 429
    answers seen (retried attempts included), ``congestion``: those and the
    503s, 529s and timeouts that made the adaptive concurrency back off.
    ``deployments``: answers this run got from each deployment (or
    fallback), by its label — calls made, not cached ones; empty without
    deployments."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None
    cache_hits: int = 0
    cache_misses: int = 0
    errors: int = 0
    retries: int = 0
    wall_s: float = 0.0
    slowest: list[dict[str, Any]] = []
    concurrency_peak: int | None = None
    throttled: int = 0
    congestion: int = 0
    deployments: dict[str, int] = {}


class ShardInfo(RecordModel):
    """Which part of the eval set a shard's run holds (``llmops eval --shard
    k/n``; see :mod:`llmops_cli.plan.shards`): ``index`` k (1-based) of ``count``
    n, ``total`` cases in the whole eval set, and ``positions``: each of the
    record's cases' 0-based position in the whole set, in the record's order."""

    index: int
    count: int
    total: int
    positions: list[int] = []


class SequentialInfo(RecordModel):
    """How a sequential run (``gate.sequential``; :mod:`llmops_cli.gate.sequential_rules`)
    went: ``order``, every case id of the eval set in the seeded random order
    the cases were to be answered in; the first ``answered`` of them were
    (the record's cases), the rest were *not needed* — never called, never
    failures, never part of a baseline; ``total`` cases in the eval set;
    ``looks``: the number of cases answered at each look (after each wave),
    where the sequences were checked; ``stop``, ``population``: the settings;
    ``decided``: True when every gated metric was decided or one regressed
    (the stop was the rule's, not the eval set's end); ``reason``: one line
    for people; ``metrics``: each gated metric's sequence at the stop
    (:meth:`llmops_cli.gate.sequential.MetricSequence.summary`, metric units)."""

    order: list[str]
    answered: int
    total: int
    looks: list[int] = []
    stop: str = "first_regression"
    population: str = "cases"
    decided: bool = False
    reason: str = ""
    metrics: dict[str, dict[str, Any]] = {}

    @property
    def not_needed(self) -> list[str]:
        """The ids of the cases that were never answered."""
        return self.order[self.answered:]


class RunRecord(RecordModel):
    """A whole run. ``status``: ``complete``, ``incomplete`` (too many errors)
    or ``interrupted`` (Ctrl-C).

    ``served``: requested model string → ``{"<served model> (<system
    fingerprint or ->)": number of calls}`` over the model-under-test calls
    that answered (cached ones included: they keep what served them);
    ``judge_served``: the same over judge calls, keyed by each judge's
    requested model. ``environment``: installed versions of llmops and the
    libraries that shape answers and scores (distribution name → version;
    see :func:`collect_environment`). Baselines keep all three.
    ``slices``: per ``dataset.slices`` field and value, ``{"n": cases,
    metric: aggregate over them}`` (:func:`llmops_cli.measure.score.slice_summary`).
    ``shard``: set on the record of one shard of a run (``--shard``), never
    gated or made a baseline until merged (:mod:`llmops_cli.jobs.merge`); None
    for a whole run. ``sequential``: set on a sequential run's record, which
    holds only the cases it answered (:class:`SequentialInfo`); never made a
    baseline."""

    schema_version: int = SCHEMA_VERSION
    kind: Literal["run", "baseline"] = "run"
    run_id: str = ""
    created_at: str = ""
    tool_version: str = ""
    source: Literal["model", "outputs"] = "model"
    status: Literal["complete", "incomplete", "interrupted"] = "complete"
    config_path: str | None = None
    config: dict[str, Any] = {}
    fingerprint: str = ""
    dataset_hash: str = ""
    corpus_hash: str | None = None
    metrics: dict[str, MetricSummary] = {}
    usage: Usage = Usage()
    judge_usage: Usage | None = None
    served: dict[str, dict[str, int]] = {}
    judge_served: dict[str, dict[str, int]] = {}
    environment: dict[str, str] = {}
    slices: dict[str, dict[str, dict[str, Any]]] = {}
    shard: ShardInfo | None = None
    sequential: SequentialInfo | None = None
    cases: list[CaseRecord] = []

    @classmethod
    def held(cls, case: Any) -> Any:
        """A case as this kind of record keeps it once loaded (itself here;
        a subclass may keep it more compactly)."""
        return case

    def case_map(self) -> dict[str, CaseRecord]:
        return {c.id: c for c in self.cases}

    def release_traces(self) -> None:
        """Drop, in place, what a gate and its reports never read: each
        case's rendered messages and raw responses (judge replies' too), for
        a record already saved."""
        for case in self.cases:
            if not isinstance(case, CaseRecord):  # a spooled case (llmops_cli.record.spool): held without them
                continue
            case.messages = None
            for call in case.calls:
                call.response = None
            for results in case.judges.values():
                for result in results:
                    for sample in result.samples:
                        sample.response = None

    def as_baseline(self) -> "RunRecord":
        """A copy fit to commit: kind ``baseline``, no raw responses or
        rendered messages (:data:`BASELINE_EXCLUDE`)."""
        data = self.model_dump(exclude={"cases"})  # a fresh copy, 5× faster than a deep copy
        return RunRecord.model_validate({**data, "kind": "baseline", "cases": [c.without_traces() for c in self.cases]})


# what a baseline leaves out of each case: the bulky traces
BASELINE_EXCLUDE: dict[str, Any] = {"messages": True, "calls": {"__all__": {"response"}}, "retrieval": {"chunks": {"__all__": {"text"}}},
                    "judges": {"__all__": {"__all__": {"samples": {"__all__": {"response"}}}}}}


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + os.urandom(3).hex()


def save_record(record: RunRecord, path: str | Path, *, as_baseline: bool = False) -> Path:
    """Write a run record (or baseline) as indented JSON, atomically, one
    case at a time: the file is byte for byte ``record.model_dump_json(indent=1)``
    but never held whole in memory. ``as_baseline``: write
    :meth:`RunRecord.as_baseline` of it (kind ``baseline``, without the
    bulky traces) without making that copy.

    Raises:
        OutputError: the file cannot be written (see :func:`atomic_write_chunks`).
    """
    return atomic_write_chunks(path, record_json_chunks(record, as_baseline=as_baseline))


def record_json_chunks(record: RunRecord, *, as_baseline: bool = False):
    """The text of :func:`save_record`, in pieces: the record without its
    cases, then each case (``cases`` is the record's last field)."""
    head = record.model_copy(update={"cases": [], **({"kind": "baseline"} if as_baseline else {})})
    text = head.model_dump_json(indent=1)
    if not record.cases:
        yield text + "\n"
        return
    tail = '\n "cases": []\n}'
    assert text.endswith(tail), "cases must stay RunRecord's last field"
    yield text[: -len(tail)] + '\n "cases": [\n'
    last = len(record.cases) - 1
    for i, case in enumerate(record.cases):
        body = (case.without_traces() if as_baseline else case).model_dump_json(indent=1)
        yield "  " + body.replace("\n", "\n  ") + (",\n" if i < last else "\n")
    yield " ]\n}\n"


# above this size (bytes) a record is read one case at a time (:func:`_stream_validate`): parsed whole, the
# 105 MB baseline of a 100,000-case run took 505 MB of peak RSS and kept 401 MB; one case at a time, 163 MB
STREAM_ABOVE = 8 * 1024 * 1024


def _stream_validate(path: Path, model: type[RunRecord]) -> RunRecord:
    """Read the record at ``path`` as ``model`` one case at a time (ijson's
    incremental parser, its C backend where installed): the run-level fields
    are built as JSON values, each case is validated as soon as it is parsed,
    so the file is never held whole, as text or as a parsed tree. Numbers are
    read as Python floats (ints stay ints), as :func:`json.loads` reads them.

    Raises:
        ValueError: invalid JSON (``ijson.JSONError``, non-finite numbers
            included), a top level that is not an object, ``cases`` that is
            not an array, or a field that does not validate
            (``pydantic.ValidationError``) — the caller's slower path then
            names the key.
    """
    import typing

    import ijson
    from ijson.common import ObjectBuilder

    case_model = typing.get_args(model.model_fields["cases"].annotation)[0]
    head: dict[str, Any] = {}

    def everything_but_cases(events):  # builds the run-level fields into head; yields the events of "cases"
        key, builder, depth, key_seen = None, None, 0, False
        for ev in events:
            prefix, event, value = ev
            if builder is None:
                if prefix == "":
                    if event not in ("start_map", "end_map", "map_key"):
                        raise ValueError("a run record is a JSON object")
                    if event == "map_key":
                        if value == "cases" and key_seen:
                            raise ValueError("cases given twice")  # the slower path reads it as json.loads does
                        key_seen = key_seen or value == "cases"
                        key = value
                    continue
                if key == "cases":
                    if prefix == "cases" and event not in ("start_array", "end_array"):
                        raise ValueError("cases must be an array")
                    yield ev
                    continue
                builder, depth = ObjectBuilder(), 0
            builder.event(event, value)
            depth += event in ("start_map", "start_array")
            depth -= event in ("end_map", "end_array")
            if depth == 0:
                head[str(key)] = builder.value
                builder = None

    with path.open("rb") as f:
        try:
            cases = [model.held(case_model.model_validate(c))
                     for c in ijson.items(everything_but_cases(ijson.parse(f, use_float=True)), "cases.item")]
        except ijson.JSONError as e:
            raise ValueError(f"invalid JSON: {e}") from None
    record = model.model_validate(head)
    record.cases = cases
    return record


def load_record(path: str | Path, what: str = "run record", model: type[RunRecord] = RunRecord) -> RunRecord:
    """Read a run record or baseline, as ``model`` (a :class:`RunRecord`
    or a subclass holding less of each case).

    Raises:
        BaselineError: missing file, invalid JSON, another schema version, a
            record that does not validate (the message names the key), or a
            non-finite score (:func:`~llmops_cli.record.integrity.check_finite`).
    """
    from llmops_cli.record.integrity import check_finite

    path = Path(path)
    try:
        if path.stat().st_size > STREAM_ABOVE:
            record = _stream_validate(path, model)
        else:  # straight from JSON to the models (no intermediate dicts)
            record = model.model_validate_json(path.read_bytes())
            record.cases = [model.held(c) for c in record.cases]
    except (OSError, ValueError):  # ValidationError, ijson's JSONError, a shape _stream_validate refuses
        pass  # the slower path below names what is wrong
    else:
        if record.schema_version == SCHEMA_VERSION and "schema_version" in record.model_fields_set:
            check_finite(record, path)
            return record
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BaselineError(path, None, f"{what} not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise BaselineError(path, None, f"cannot read {what}: {e}") from None
    except json.JSONDecodeError as e:
        raise BaselineError(path, f"line {e.lineno}", f"invalid JSON: {e.msg}") from None
    except RecursionError:
        raise BaselineError(path, None, f"cannot read {what}: JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise BaselineError(path, None, f"{what} must be a JSON object")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise BaselineError(path, "schema_version", f"is {version!r}; this llmops reads schema version {SCHEMA_VERSION}")
    try:
        record = model.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        key = ".".join(str(x) for x in first["loc"])
        raise BaselineError(path, key, first["msg"]) from None
    check_finite(record, path)
    record.cases = [model.held(c) for c in record.cases]
    return record
