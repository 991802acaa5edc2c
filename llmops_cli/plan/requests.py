"""Planning a run, before any model call: load the cases, retrieve context,
render the prompts and describe every call to make (:class:`Request`, with
its endpoint and cache key). The result is a :class:`Plan`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from llmops_cli.core.cache import Cache
from llmops_cli.config import Config, ConfigError
from llmops_cli.plan.dataset import Case, dataset_hash, load_dataset
from llmops_cli.plan.prompt import render, render_messages
from llmops_cli.plan.endpoint import Endpoint
from llmops_cli.record.schema import Call, RetrievedChunk, RetrievedContext, ShardInfo


@dataclass
class Request:
    """One call to make: case index, repeat (or judge sample), messages,
    endpoint and cache key. ``judge`` names the judge for judge calls."""

    case_index: int
    repeat: int
    messages: list[dict[str, Any]]
    key: str
    endpoint: Endpoint | None = None
    call: Call | None = None
    judge: str | None = None
    sample: int = 0


@dataclass
class Plan:
    """Everything known before any model call: the cases, the dataset and
    corpus hashes, each case's retrieved context and rendered messages
    (``messages`` is empty when only the cases were loaded), the requests to
    make, each case's template variables from retrieval (``chunks``,
    ``context``) for the judges and checks, and each case's rendered check
    values. ``shard``: which part of the eval set this plan runs (``--shard``),
    None for all of it; ``dataset_hash`` is then still the whole set's."""

    cases: list[Case]
    dataset_hash: str
    corpus_hash: str | None
    retrievals: list[RetrievedContext | None]
    messages: list[list[dict[str, Any]]]
    requests: list[Request] = field(default_factory=list)
    chunk_vars: list[dict[str, Any]] = field(default_factory=list)
    check_values: list[dict[str, Any]] = field(default_factory=list)
    shard: ShardInfo | None = None

    def drop_recorded(self) -> None:
        """Forget what the run record now holds — the cases, their retrieval
        traces and rendered messages, and the requests with their calls —
        keeping what scoring still reads (``chunk_vars``, ``check_values``,
        the hashes): 6 MB less peak RSS in a 10,000-case run."""
        self.cases, self.retrievals, self.messages, self.requests = [], [], [], []


def model_endpoint(cfg: Config) -> Endpoint:
    """The endpoint of the model under test; it asks for the output tokens'
    log-probabilities when ``perplexity`` is among the metrics. With
    ``deployments`` it carries them (:func:`llmops_cli.run.deployments.targets`)
    and its cache keys are the logical model's: no URL in them."""
    from llmops_cli.plan.endpoint import targets

    return Endpoint.of(cfg.model, cfg.api_base, cfg.api_key_env, cfg.params, logprobs="perplexity" in cfg.metrics,
                       deployments=targets(cfg))


def make_plan(cfg: Config, limit: int | None = None, with_prompts: bool = True, memo: Cache | None = None,
              shard: tuple[int, int] | None = None, part: slice | None = None) -> Plan:
    """Load cases, retrieve, render messages and compute cache keys.

    ``limit``: number of cases (overrides ``dataset.limit``; 0 = all).
    ``shard``: ``(k, n)``, plan only the cases of shard k of n (1-based; see
    :mod:`llmops_cli.plan.shards`), chosen after sampling and the limit; the
    plan's ``dataset_hash`` stays the whole eval set's.
    ``part``: plan only these cases of the selection (after the shard), e.g.
    ``slice(10000, 20000)`` — one chunk of a large run; ``shard`` (the
    record's block) still describes the whole selection.
    ``with_prompts=False`` only loads the cases (for the dataset hash).
    ``memo`` memoises the retrieval hits (see :func:`retrieval.retrieve`).

    Raises:
        DatasetError: eval set or corpus unreadable/empty.
        ConfigError: a template uses an undefined variable or fails while
            rendering, a check's regex is invalid once rendered for a case,
            or a ``gate.slices`` rule names a value no case has.
    """
    cases, full_hash, shard_info = select_cases(cfg, limit, shard)
    if part is not None:
        cases = cases[part]
    path = cfg.path or "<config>"
    if cfg.gate.cluster and any(cfg.gate.cluster not in c.inputs for c in cases):
        raise ConfigError(path, "gate.cluster", f"not an input field of the eval set (inputs: {', '.join(cases[0].inputs)})")
    retrievals: list[RetrievedContext | None] = [None] * len(cases)
    chunk_vars: list[dict[str, Any]] = [{} for _ in cases]
    corpus_hash = None
    if cfg.retrieval and with_prompts:
        from llmops_cli.plan.retrieval import chunk_variables, load_corpus, retrieve

        r = cfg.retrieval
        chunks, corpus_hash = load_corpus(r, cfg.base_dir)
        queries = [render(r.query, c.inputs, path, "retrieval.query") for c in cases]
        hits = retrieve(r, chunks, corpus_hash, queries, memo)
        for i, (q, h) in enumerate(zip(queries, hits)):
            retrievals[i] = RetrievedContext(query=q, chunks=[RetrievedChunk(id=c.id, score=round(s, 4), text=c.text) for c, s in h])
            chunk_vars[i] = chunk_variables(h)
    messages: list[list[dict[str, Any]]] = []
    if with_prompts:
        for c, cv in zip(cases, chunk_vars):
            variables = {**c.inputs, **cv}  # never the references: the model under test must not see the gold answers
            messages.append(render_messages(cfg.system_template, cfg.user_template, variables, path))
    check_values = []
    if cfg.checks:  # rendered now: an undefined variable in a check is exit 2 before any call
        from llmops_cli.plan.prompt import render_values

        check_values = [render_values(cfg, c.inputs, c.references, c.id) for c in cases]
    plan = Plan(cases, full_hash, corpus_hash, retrievals, messages, chunk_vars=chunk_vars,
                check_values=check_values, shard=shard_info)
    if with_prompts:
        ep = model_endpoint(cfg)
        for i, msgs in enumerate(messages):
            for rep in range(cfg.repeats):
                ep_r = ep.for_sample(rep)
                plan.requests.append(Request(i, rep, msgs, ep_r.key(msgs, rep), ep_r))
    return plan


def select_cases(cfg: Config, limit: int | None = None,
                 shard: tuple[int, int] | None = None) -> tuple[list[Case], str, ShardInfo | None]:
    """The cases a run of ``cfg`` holds (arguments as :func:`make_plan`),
    the whole eval set's dataset hash, and the ``shard`` block (None without
    a shard).

    Raises:
        DatasetError: eval set unreadable or empty.
        ConfigError: a ``gate.slices`` rule names a value no case has."""
    cases = load_dataset(cfg.dataset, cfg.base_dir, limit)
    full_hash, shard_info = dataset_hash(cases), None
    check_slice_rules(cfg, cases)  # gate.slices against the eval set: exit 2 before any call
    if shard is not None:
        from llmops_cli.plan.shards import select

        cases, shard_info = select(cases, *shard)
    return cases, full_hash, shard_info


def check_slice_rules(cfg: Config, cases: list[Case]) -> None:
    """Every ``gate.slices`` rule ``field=value`` must name a value some case
    of the eval set has (``field=*`` matches any), checked when the run is
    planned — before any model call.

    Raises:
        ConfigError: key ``gate.slices.<field=value>``, listing the values
            the eval set has."""
    for key in cfg.gate.slices:
        field, _, value = key.partition("=")
        if value == "*":
            continue
        values = {c.slices[field] for c in cases if field in c.slices}
        if value not in values:
            raise ConfigError(cfg.path or "<config>", f"gate.slices.{key}", f"no case of the eval set has {field} = {value!r}"
                              + (f" (values: {', '.join(sorted(values))})" if values else
                                 f" ({field!r} is not one of dataset.slices)"))
