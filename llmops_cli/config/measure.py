"""The parts of a config that say how answers are measured: judges, checks,
the embedding model of ``semantic_similarity``, and the gate's rules.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from llmops_cli.config.answer import MAX_TIMEOUT_S, Params, _credential_free_url, _Strict


class PowerRequirement(_Strict):
    """The drop a gate must be able to catch: ``drop`` (see where it is set
    for its units) with probability ``power`` (0–1)."""

    drop: float = Field(gt=0)
    power: float = Field(0.8, gt=0.5, lt=1)


class GateRule(_Strict):
    """Per-metric rule, in the metric's own units. ``min`` / ``max``: absolute
    floor / ceiling for the candidate's aggregate over its whole run.
    ``max_drop``: largest allowed fall from the baseline (candidate −
    baseline ≥ −max_drop) of a higher-is-better metric. For lower-is-better
    metrics (cost, latency, tokens, perplexity): ``max_increase``, the largest
    allowed rise in the metric's unit, or ``max_increase_pct``, in percent of
    the baseline's aggregate (at most one of the three margins).
    ``require_power``: this metric's power requirement (``drop`` in the
    metric's units; for a lower-is-better metric, the rise to catch),
    overriding ``gate.require_power``."""

    min: float | None = None
    max: float | None = None
    max_drop: float | None = Field(None, ge=0)
    max_increase: float | None = Field(None, ge=0)
    max_increase_pct: float | None = Field(None, ge=0)
    require_power: PowerRequirement | None = None

    @model_validator(mode="after")
    def _one_margin(self):
        given = [k for k in ("max_drop", "max_increase", "max_increase_pct") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"give one of max_drop, max_increase, max_increase_pct (got {', '.join(given)})")
        return self

    @property
    def margin_key(self) -> str | None:
        """Which margin the rule sets: ``max_drop``, ``max_increase``,
        ``max_increase_pct`` or None."""
        return next((k for k in ("max_drop", "max_increase", "max_increase_pct") if getattr(self, k) is not None), None)


class JudgeParams(Params):
    """Judge call parameters; the judge reasons before its verdict, so it gets
    more tokens by default."""

    max_tokens: int | None = Field(512, gt=0)


class Judge(_Strict):
    """An LLM-as-judge scorer. ``type``:

    * ``correctness`` — reference-guided; grades C / P / I → 1 / 0.5 / 0.
    * ``rubric`` — the user's ``criteria``, scored on the integer scale
      ``scale: [lo, hi]``, normalised to 0–1 as (s − lo) / (hi − lo).
    * ``faithfulness`` — is every claim supported by the retrieved chunks?
      C / P / I → 1 / 0.5 / 0. Needs ``retrieval``.

    ``model`` is any LiteLLM model string (default: the model under test);
    ``samples`` asks k times per case and reduces by ``majority`` (grades) or
    ``mean``. ``template_file`` overrides the packaged template."""

    type: Literal["correctness", "rubric", "faithfulness"] = "correctness"
    model: str | None = None
    api_base: str | None = None
    api_key_env: str | None = None
    params: JudgeParams = JudgeParams()
    samples: int = Field(1, ge=1, le=20)
    reduce: Literal["majority", "mean"] | None = None
    criteria: str | None = None
    scale: tuple[int, int] = (1, 5)
    template_file: str | None = None

    @field_validator("api_base")
    @classmethod
    def _api_base(cls, v):
        return _credential_free_url(v)

    @model_validator(mode="after")
    def _rubric_needs_criteria(self):
        if self.type == "rubric" and not self.criteria:
            raise ValueError("a rubric judge needs criteria")
        if self.scale[1] <= self.scale[0]:
            raise ValueError("scale must be [low, high] with low < high")
        return self


CHECK_TYPES = ("equals", "contains", "icontains", "not_contains", "starts_with", "regex", "is_json", "json_schema",
               "length", "python")


class LengthRule(_Strict):
    """``length`` check: the output has at least ``min`` and at most ``max``
    units (``unit``: characters, or whitespace-separated words)."""

    min: int | None = Field(None, ge=0)
    max: int | None = Field(None, ge=0)
    unit: Literal["chars", "words"] = "chars"

    @model_validator(mode="after")
    def _some_bound(self):
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min is larger than max")
        return self


CHECK_TIMEOUT_S = 10.0  # a python check's or a regex search's default time limit per case, seconds


class Check(_Strict):
    """A per-case check, scored 1 (pass) or 0 (fail) with a reason kept in the
    record (``python`` may also return a 0–1 score). Exactly one type:
    ``equals``, ``starts_with``, ``regex`` (a search with the ``regex``
    library, ``re``'s syntax, under the time limit below): a string;
    ``contains``, ``icontains`` (case-insensitive), ``not_contains``: a string
    or a list (``match: any`` or ``all`` of them for the first two;
    ``not_contains`` fails on any); ``is_json: true``; ``json_schema``: an
    inline JSON Schema or the path of a ``.json`` file (checked with the
    ``jsonschema`` library); ``length``: ``{min, max, unit: chars|words}``;
    ``python``: ``module:function`` or ``path.py:function``, called with
    ``output``, ``inputs``, ``references`` and ``chunks``, returning a bool, a
    0–1 float, or ``(score, reason)``. String values are Jinja2 templates over
    the case's inputs and ``references``. ``field``: check this field of a
    JSON answer instead of the whole output (an answer that does not parse
    fails the check). ``timeout``: seconds a ``python`` check, or a ``regex``
    search, may take on one case (default :data:`CHECK_TIMEOUT_S`); one that
    takes longer fails the check for that case, with the reason (a regex from
    an untrusted pull request cannot hang the run by catastrophic
    backtracking)."""

    equals: str | None = None
    contains: str | list[str] | None = None
    icontains: str | list[str] | None = None
    not_contains: str | list[str] | None = None
    starts_with: str | None = None
    regex: str | None = None
    is_json: Literal[True] | None = None
    json_schema: dict[str, Any] | str | None = None
    length: LengthRule | None = None
    python: str | None = None
    match: Literal["any", "all"] = "any"
    field: str | None = None
    timeout: float | None = Field(None, gt=0, le=3600, allow_inf_nan=False)  # None: CHECK_TIMEOUT_S

    @model_validator(mode="after")
    def _exactly_one(self):
        given = [t for t in CHECK_TYPES if getattr(self, t) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one check type of {', '.join(CHECK_TYPES)}"
                             + (f" (got {', '.join(given)})" if given else ""))
        if self.python is not None and ":" not in self.python:
            raise ValueError("python: give module:function or path.py:function")
        return self

    @property
    def type(self) -> str:
        return next(t for t in CHECK_TYPES if getattr(self, t) is not None)


class Embedding(_Strict):
    """The embedding model of ``semantic_similarity``: any LiteLLM embedding
    model string (``openai/text-embedding-3-small``, ``ollama/nomic-embed-text``,
    or any OpenAI-compatible server with ``api_base``), pinned like the model
    under test; ``timeout`` in seconds per request."""

    model: str
    api_base: str | None = None
    api_key_env: str | None = None
    timeout: float = Field(60.0, gt=0, le=MAX_TIMEOUT_S, allow_inf_nan=False)

    @field_validator("api_base")
    @classmethod
    def _api_base(cls, v):
        return _credential_free_url(v)


class Sequential(_Strict):
    """The sequential gate (``gate.sequential: true``, or these settings;
    see :mod:`llmops_cli.gate.sequential_rules`): cases answered in a seeded random
    order, in waves, each gated metric's anytime-valid confidence sequence
    updated after each wave, and the model no longer called once the verdict
    is certain. ``stop``: ``first_regression`` (default) stops as soon as
    one gated metric is decided regressed (the gate exits 1 whatever the rest
    say) or every one is decided; ``all_decided`` waits until every gated
    metric is decided (each metric's own verdict is then known). ``population``:
    ``cases`` (default) covers the paired delta of the population the eval
    set's cases are drawn from — the fixed-n gate's target; ``eval_set``
    covers this eval set's own delta (what answering every case would
    measure; sampling without replacement), for a deterministic model."""

    stop: Literal["first_regression", "all_decided"] = "first_regression"
    population: Literal["cases", "eval_set"] = "cases"


class Gate(_Strict):
    """Gate settings.

    ``mode``: ``paired`` (default) flags a regression only when the paired
    bootstrap interval of the delta lies wholly below ``-max_drop``
    (Holm-adjusted across the gated metrics when ``correction: holm``);
    ``strict`` (non-inferiority) passes a metric only when the interval's
    lower bound lies above ``-max_drop``; ``plain`` compares the aggregates.
    ``require_power``: every gated metric must catch a drop of ``drop`` (on
    a 0–1 scale; ×100 for 0–100 metrics such as BLEU) with probability
    ``power``, else exit 2. ``on_model_drift``: what to do when the served
    model differs from the baseline's (``warn`` or ``fail``, exit 1).
    ``slices``: rules for one slice of the eval set, keyed ``field=value``
    (``field`` one of ``dataset.slices``; ``field=*``: every value of it),
    each a mapping of metric → rule like ``metrics``; their tests join the
    same family-wise correction. ``sequential``: ``true`` or a
    :class:`Sequential` (also ``eval --sequential``): stop calling the model
    once every gated metric is decided."""

    mode: Literal["paired", "plain", "strict"] = "paired"
    confidence: float = Field(0.95, gt=0.5, lt=1)
    resamples: int = Field(1000, ge=100, le=100_000)
    seed: int = 12345
    cluster: str | None = None
    correction: Literal["holm", "none"] = "holm"
    require_power: PowerRequirement | None = None
    on_model_drift: Literal["warn", "fail"] = "warn"
    metrics: dict[str, GateRule] = {}
    slices: dict[str, dict[str, GateRule]] = {}
    sequential: Sequential | bool | None = None  # true → Sequential(), false → None (the validator below)

    @field_validator("sequential", mode="before")
    @classmethod
    def _sequential_flag(cls, v):
        if v is True:
            return {}
        return None if v is False else v

    @field_validator("slices")
    @classmethod
    def _slice_keys(cls, v):
        for key in v:
            field, eq, value = key.partition("=")
            if not eq or not field.strip() or not value.strip():
                raise ValueError(f"{key!r}: a slice is named field=value (or field=* for every value)")
        return v


# check types whose values are Jinja2 templates, rendered per case while planning
TEMPLATED = ("equals", "contains", "icontains", "not_contains", "starts_with", "regex")
