"""The pinned LLM configuration's schema: pydantic models of the YAML file.

A config pins everything that decides what the application answers — model,
parameters, prompt templates and retrieval setup — plus the eval set, the
metrics, the gate rules and where the baseline lives. Unknown keys are errors.
Read a file with :func:`llmops_cli.config.load_config`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..fingerprint import sha256_text

SCHEMA_VERSION = 1
MAX_TIMEOUT_S = 3600  # params.timeout: seconds per request
MAX_REPEATS = 100  # repeats: answers per case


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


OPTIONAL_PARAMS = ("response_format", "tools", "tool_choice")  # left out of snapshots when unset


class Params(_Strict):
    """Parameters passed to every model call (OpenAI names; LiteLLM maps them).

    ``timeout`` is seconds per request (finite, at most :data:`MAX_TIMEOUT_S`);
    ``max_tokens`` counts completion tokens. Structured output:
    ``response_format`` (``{"type": "json_object"}`` or ``{"type":
    "json_schema", "json_schema": {"name", "schema"}}``), ``tools`` and
    ``tool_choice``, in OpenAI's form; the embedded model honours a JSON
    schema with llama.cpp's grammar-constrained decoding.
    """

    temperature: float | None = Field(0.0, ge=0, le=2, allow_inf_nan=False)
    max_tokens: int | None = Field(256, gt=0)
    top_p: float | None = Field(None, gt=0, le=1, allow_inf_nan=False)
    seed: int | None = None
    stop: list[str] | None = Field(None, json_schema_extra={  # one string is a list of one (_stop_list)
        "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}, {"type": "null"}]})
    timeout: float = Field(60.0, gt=0, le=MAX_TIMEOUT_S, allow_inf_nan=False)
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_list(cls, v):
        return [v] if isinstance(v, str) else v

    def dump(self) -> dict[str, Any]:
        """The params as plain data for snapshots and fingerprints; the
        structured-output params are left out when unset, so that configs
        without them keep the fingerprints they had before these existed."""
        d = self.model_dump(mode="json")
        for k in OPTIONAL_PARAMS:
            if d.get(k) is None:
                d.pop(k, None)
        return d


class Prompt(_Strict):
    """System and user message templates (Jinja2, undefined variables are
    errors). Give each inline (``system``/``user``) or as a file next to the
    config (``system_file``/``user_file``); files are read at load time."""

    system: str | None = None
    user: str | None = None
    system_file: str | None = None
    user_file: str | None = None

    @model_validator(mode="after")
    def _one_source(self):
        if self.system and self.system_file:
            raise ValueError("give either system or system_file, not both")
        if self.user and self.user_file:
            raise ValueError("give either user or user_file, not both")
        if not (self.user or self.user_file):
            raise ValueError("a user template is required (user or user_file)")
        return self


class Chunking(_Strict):
    """How corpus documents become retrievable chunks: ``document`` keeps each
    document whole; ``words`` cuts windows of ``size`` words overlapping by
    ``overlap`` words."""

    mode: Literal["document", "words"] = "document"
    size: int = Field(200, gt=0)
    overlap: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _overlap_lt_size(self):
        if self.overlap >= self.size:
            raise ValueError("overlap must be smaller than size")
        return self


class Retrieval(_Strict):
    """Retrieval setup. ``corpus`` is a JSONL/JSON/CSV file of documents with
    ``id_field`` and ``text_field``; ``query`` is a Jinja2 template over the
    case inputs; the ``top_k`` chunks are given to the prompt as ``chunks``
    (a list of ``{id, doc_id, text, score}``) and ``context`` (their texts
    joined by blank lines)."""

    corpus: str
    id_field: str = "id"
    text_field: str = "text"
    chunking: Chunking = Chunking()
    retriever: Literal["bm25"] = "bm25"
    k1: float = Field(1.5, gt=0)
    b: float = Field(0.75, ge=0, le=1)
    top_k: int = Field(3, gt=0)
    query: str = "{{ question }}"


class Dataset(_Strict):
    """The eval set: a JSONL, CSV or JSON (list of objects) file.

    ``id``: the field holding a unique case id. ``inputs``: fields passed to
    the templates (default: every field but id and references).
    ``references``: the field (or fields) holding the reference answer(s); a
    field may hold a string or a list of strings. ``limit``: use only the
    first N cases. ``sample``: use a seeded random subset of N cases (kept in
    file order; ``sample_seed``), applied before ``limit``. At least one
    references field is required."""

    path: str
    format: Literal["jsonl", "csv", "json"] | None = None
    id: str = "id"
    inputs: list[str] | None = Field(None, json_schema_extra={  # one string is a list of one (_as_list)
        "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}, {"type": "null"}]})
    references: list[str] = Field(["reference"], json_schema_extra={"type": ["string", "array"], "minItems": 1})
    limit: int | None = Field(None, gt=0)
    sample: int | None = Field(None, gt=0)
    sample_seed: int = 0

    @field_validator("references", "inputs", mode="before")
    @classmethod
    def _as_list(cls, v):
        return [v] if isinstance(v, str) else v

    @field_validator("references")
    @classmethod
    def _some_reference(cls, v):
        if not v:
            raise ValueError("at least one reference field is required")
        return v


class PowerRequirement(_Strict):
    """The drop a gate must be able to catch: ``drop`` (see where it is set
    for its units) with probability ``power`` (0–1)."""

    drop: float = Field(gt=0)
    power: float = Field(0.8, gt=0.5, lt=1)


class GateRule(_Strict):
    """Per-metric rule, in the metric's own units. ``min``: absolute floor for
    the candidate's aggregate over its whole run. ``max_drop``: largest
    allowed fall from the baseline (candidate − baseline ≥ −max_drop).
    ``require_power``: this metric's power requirement (``drop`` in the
    metric's units), overriding ``gate.require_power``."""

    min: float | None = None
    max_drop: float | None = Field(None, ge=0)
    require_power: PowerRequirement | None = None


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


class Check(_Strict):
    """A per-case check, scored 1 (pass) or 0 (fail) with a reason kept in the
    record (``python`` may also return a 0–1 score). Exactly one type:
    ``equals``, ``starts_with``, ``regex`` (``re.search``): a string;
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
    fails the check)."""

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
    model differs from the baseline's (``warn`` or ``fail``, exit 1)."""

    mode: Literal["paired", "plain", "strict"] = "paired"
    confidence: float = Field(0.95, gt=0.5, lt=1)
    resamples: int = Field(1000, ge=100, le=100_000)
    seed: int = 12345
    cluster: str | None = None
    correction: Literal["holm", "none"] = "holm"
    require_power: PowerRequirement | None = None
    on_model_drift: Literal["warn", "fail"] = "warn"
    metrics: dict[str, GateRule] = {}


def _http_url(v: str | None) -> str | None:
    """``v`` if it is ``None`` or an http(s) URL with a host; else ValueError."""
    if v is None:
        return v
    from urllib.parse import urlsplit

    try:
        u = urlsplit(v)
        ok = u.scheme in ("http", "https") and bool(u.hostname) and not any(c.isspace() or ord(c) < 32 for c in v)
        u.port  # noqa: B018 — raises ValueError for a port that is not a number in 0–65535
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"{v!r} is not an http(s) URL with a host, e.g. http://127.0.0.1:8000/v1")
    return v


class Config(_Strict):
    """A whole pinned configuration. Build with :func:`load_config`.
    ``output_field``: the answers are JSON objects and the reference-based
    metrics score this field of them (an answer that does not parse, or lacks
    the field, scores as an empty answer: the metric's worst value, with the
    reason in the record); checks have their own ``field``.
    ``api_base`` (and each judge's) must be an http(s) URL with a host;
    ``repeats`` is at most :data:`MAX_REPEATS`."""

    version: Literal[1] = 1
    name: str | None = None
    model: str
    api_base: str | None = None
    api_key_env: str | None = None
    params: Params = Params()
    prompt: Prompt
    retrieval: Retrieval | None = None
    dataset: Dataset
    metrics: list[str] = ["exact_match", "token_f1"]
    judges: dict[str, Judge] = {}
    checks: dict[str, Check] = {}
    embedding: Embedding | None = None
    gate: Gate = Gate()
    output_field: str | None = None
    baseline: str = "baseline.json"
    repeats: int = Field(1, ge=1, le=MAX_REPEATS)
    max_error_share: float = Field(0.1, ge=0, le=1)
    max_unscored_share: float = Field(0.1, ge=0, le=1)

    # set by load_config, not by the YAML
    _path: Path | None = None
    _system_text: str | None = None
    _user_text: str = ""
    _judge_templates: dict[str, str] = {}  # judge name → template text (read at load time)

    @field_validator("api_base")
    @classmethod
    def _api_base_is_url(cls, v):
        return _http_url(v)

    @model_validator(mode="after")
    def _judge_api_bases_are_urls(self):
        if self.embedding is not None:
            try:
                _http_url(self.embedding.api_base)
            except ValueError as e:
                raise ValueError(f"embedding.api_base: {e}") from None
        for name, judge in self.judges.items():
            try:
                _http_url(judge.api_base)
            except ValueError as e:
                raise ValueError(f"judges.{name}.api_base: {e}") from None
        return self

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, v):
        from ..scorers import SCORERS

        if any(name not in SCORERS for name in v):
            from ..plugins import FAILED, load_plugins

            load_plugins()  # scorers from other packages (entry points), only when a name is not built in
            for name in v:
                if name in FAILED:
                    raise ValueError(f"the plugin scorer {name!r} failed to load: {FAILED[name]}")
        for name in v:
            if name not in SCORERS:
                raise ValueError(f"unknown metric {name!r}; known: {', '.join(sorted(SCORERS))}")
        if len(set(v)) != len(v):
            raise ValueError("a metric is listed twice")
        return v

    @model_validator(mode="after")
    def _gated_metrics_are_run(self):
        if not self.all_metrics:
            raise ValueError("metrics: at least one metric or judge is required")
        for name in self.judges:
            if name in self.metrics:
                raise ValueError(f"judges.{name}: the name is already a metric")
            if self.judges[name].type == "faithfulness" and self.retrieval is None:
                raise ValueError(f"judges.{name}: a faithfulness judge needs a retrieval section")
        if "semantic_similarity" in self.metrics and self.embedding is None:
            raise ValueError("embedding: semantic_similarity needs an embedding model (embedding: {model: ...})")
        for name in self.checks:
            if name in self.metrics or name in self.judges:
                raise ValueError(f"checks.{name}: the name is already a metric or judge")
        for name in self.gate.metrics:
            if name not in self.all_metrics:
                raise ValueError(f"gate.metrics.{name}: not among the metrics or judges {self.all_metrics}")
        return self

    @property
    def all_metrics(self) -> list[str]:
        """Reference-based metric names, then judge names, then check names."""
        return list(self.metrics) + list(self.judges) + list(self.checks)

    # -- paths -----------------------------------------------------------
    @property
    def path(self) -> Path | None:
        return self._path

    @property
    def base_dir(self) -> Path:
        return self._path.parent if self._path else Path.cwd()

    def resolve(self, p: str) -> Path:
        """Resolve a path from the config relative to the config's folder."""
        q = Path(p).expanduser()
        return q if q.is_absolute() else self.base_dir / q

    @property
    def baseline_path(self) -> Path:
        return self.resolve(self.baseline)

    @property
    def system_template(self) -> str | None:
        return self._system_text if self._system_text is not None else self.prompt.system

    @property
    def user_template(self) -> str:
        return self._user_text or self.prompt.user or ""

    # -- judges ----------------------------------------------------------
    def judge_target(self, name: str) -> tuple[str, str | None, str | None]:
        """``(model, api_base, api_key_env)`` judge ``name`` calls: its own
        when it pins ``model``; otherwise the model under test's, its own
        ``api_base``/``api_key_env`` taking precedence when given."""
        j = self.judges[name]
        if j.model:
            return j.model, j.api_base, j.api_key_env
        return self.model, j.api_base or self.api_base, j.api_key_env or self.api_key_env

    def judge_template(self, name: str) -> str:
        """Judge ``name``'s Jinja2 template: its ``template_file`` (read by
        :func:`parse_config`) or the packaged one for its type.

        Raises:
            ConfigError: an unreadable or invalid ``template_file``."""
        text = self._judge_templates.get(name)
        if text is None:
            from ..judge import template_text

            text = self._judge_templates[name] = template_text(self.judges[name], self, name)
        return text

    def effective_judge(self, name: str) -> dict[str, Any]:
        """What actually grades for judge ``name``: ``{model, api_base,
        params, template_sha256}`` — the model and api_base it calls (see
        :meth:`judge_target`), its params, and the SHA-256 (64 hex digits) of
        its template text."""
        model, api_base, _ = self.judge_target(name)
        return {"model": model, "api_base": api_base, "params": self.judges[name].params.dump(),
                "template_sha256": sha256_text(self.judge_template(name))}

    # -- identity --------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """The configuration as plain data, prompt files inlined, for the run
        record and for :func:`config_diff`; each judge also gets an
        ``effective`` block (:meth:`effective_judge`). Holds no secrets:
        ``api_key_env`` is the *name* of an environment variable."""
        d = self.model_dump(mode="json")
        d["params"] = self.params.dump()
        d["prompt"] = {"system": self.system_template, "user": self.user_template}
        for name in self.judges:
            d["judges"][name]["params"] = self.judges[name].params.dump()
            d["judges"][name]["effective"] = self.effective_judge(name)
        return d
