"""The parts of a config that decide what the application answers: the
call parameters, the prompt, the retrieval setup, the eval set. (How answers
are measured is in :mod:`.measure`; the whole config in :mod:`.models`.)
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_TIMEOUT_S = 3600  # params.timeout: seconds per request


class _Strict(BaseModel):
    # unknown keys are errors; so are NaN and ±Infinity in any number (`min: .nan` made a floor that never fires,
    # `max_drop: .inf` a rule that cannot fail)
    model_config = ConfigDict(extra="forbid", protected_namespaces=(), allow_inf_nan=False)


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
    references field is required. ``slices``: fields (any column of the
    eval set, inputs or not) whose values split the report — every metric
    per value, and gate rules per slice (``gate.slices``); every case must
    have them."""

    path: str
    format: Literal["jsonl", "csv", "json"] | None = None
    id: str = "id"
    inputs: list[str] | None = Field(None, json_schema_extra={  # one string is a list of one (_as_list)
        "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}, {"type": "null"}]})
    references: list[str] = Field(["reference"], json_schema_extra={"type": ["string", "array"], "minItems": 1})
    limit: int | None = Field(None, gt=0)
    sample: int | None = Field(None, gt=0)
    sample_seed: int = 0
    slices: list[str] = Field([], json_schema_extra={"type": ["string", "array"]})

    @field_validator("references", "inputs", "slices", mode="before")
    @classmethod
    def _as_list(cls, v):
        return [v] if isinstance(v, str) else v

    @field_validator("references")
    @classmethod
    def _some_reference(cls, v):
        if not v:
            raise ValueError("at least one reference field is required")
        return v


class Fallback(_Strict):
    """A model tried when every deployment failed (``fallbacks:``): a LiteLLM
    model string, where it is served (``api_base``; unset: the provider's
    default), the NAME of the environment variable holding its key
    (``api_key_env``; unset: LiteLLM's default for the provider), and
    ``name``, its label in the run record (default: its api_base, else its
    model). A plain string is a model string alone."""

    model: str = Field(min_length=1)
    api_base: str | None = None
    api_key_env: str | None = None
    name: str | None = Field(None, min_length=1, max_length=200)

    @field_validator("api_base")
    @classmethod
    def _api_base(cls, v):
        return _credential_free_url(v)

    def label(self, logical_model: str) -> str:
        """What the record calls it: ``name``, else ``api_base``, else the model."""
        return self.name or self.api_base or self.model or logical_model


class Deployment(Fallback):
    """One deployment of the model under test (``deployments:``); every one
    answers for the logical ``model`` and they share its cached answers.
    ``model``: another LiteLLM model string for the same logical model (e.g.
    ``azure/gpt-4o-eu``), default the logical ``model``. ``weight``: its
    relative share of the calls. ``rpm``/``tpm``: requests and tokens per
    minute it may take; when any deployment sets one, LiteLLM's usage-based
    routing keeps each deployment under its own limits and sends a call to the
    least used. ``api_base`` must not hold a user, password or
    credential-looking query parameter (keys come from ``api_key_env``)."""

    model: str | None = Field(None, min_length=1)  # type: ignore[assignment]  # optional here
    rpm: int | None = Field(None, ge=1)
    tpm: int | None = Field(None, ge=1)
    weight: float | None = Field(None, gt=0, allow_inf_nan=False)


def _credential_free_url(v: str | None) -> str | None:
    """The rule of every ``api_base``: an http(s) URL with a host and no
    user, password or credential-looking query parameter
    (:func:`llmops_cli.core.urls.credential_free_url`)."""
    from llmops_cli.core.urls import credential_free_url

    return credential_free_url(v)


_http_url = _credential_free_url  # the name models.py used before every api_base got the same rule
