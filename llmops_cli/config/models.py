"""The pinned LLM configuration's schema: the whole :class:`Config`, made of
the parts in :mod:`.answer` (what decides the answers) and :mod:`.measure`
(how they are measured).

A config pins everything that decides what the application answers — model,
parameters, prompt templates and retrieval setup — plus the eval set, the
metrics, the gate rules and where the baseline lives. Unknown keys are errors.
Read a file with :func:`llmops_cli.config.load_config`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from llmops_cli.core.errors import ConfigError
from llmops_cli.core.fingerprint import sha256_text
from llmops_cli.config.answer import Dataset, Deployment, Fallback, Params, Prompt, Retrieval, _credential_free_url, _Strict
from llmops_cli.config.measure import Check, Embedding, Gate, Judge

SCHEMA_VERSION = 1


def _load_text(cfg: "Config", key: str, rel: str) -> str:
    """The text of a file the config names (relative to its folder).
    Raises :class:`ConfigError` naming ``key``."""
    p = cfg.resolve(rel)
    where = cfg.path or "<config>"
    try:
        return p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(where, key, f"file not found: {p}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(where, key, f"cannot read {p}: {e}") from None
MAX_REPEATS = 100  # repeats: answers per case


class CacheSettings(_Strict):
    """Where answers and memoised results are cached. Changes no answer, so it
    is not part of the fingerprint (nor of the run record's config).

    ``url``: a Redis shared by every CI runner and developer
    (``redis://[:password@]host:6379/0``, ``rediss://`` for TLS, or
    ``unix:///path/to/socket``); unset: the local SQLite cache
    (``--cache-dir``). ``--cache-url`` and ``$LLMOPS_CACHE_URL`` take
    precedence over it. Prefer ``$LLMOPS_CACHE_URL`` for a URL holding a
    password (it is never printed). ``ttl_s``: seconds a Redis entry is kept
    after it is written (unset: for ever). ``required``: a Redis that cannot be
    reached is exit 2 before any model call, instead of one warning line and an
    uncached run. ``prefix``: the namespace of the Redis keys
    (``<prefix>:answer:<key>``, ``<prefix>:memo:<key>``)."""

    url: str | None = Field(None, repr=False, json_schema_extra={"pattern": "^([Rr][Ee][Dd][Ii][Ss][Ss]?|[Uu][Nn][Ii][Xx])://"})
    ttl_s: int | None = Field(None, ge=1)
    required: bool = False
    prefix: str = Field("llmops", min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$")

    @field_validator("url")
    @classmethod
    def _redis_url(cls, v):
        if v:
            from llmops_cli.core.cache.redis import check_url

            problem = check_url(v)
            if problem:
                raise ValueError(problem)
        return v or None


class Config(_Strict):
    """A whole pinned configuration. Build with :func:`load_config`.
    ``output_field``: the answers are JSON objects and the reference-based
    metrics score this field of them (an answer that does not parse, or lacks
    the field, scores as an empty answer: the metric's worst value, with the
    reason in the record); checks have their own ``field``.
    Every ``api_base`` (the model's, each judge's, the embedding's, each
    deployment's and fallback's) must be an http(s) URL with a host and no
    user, password or credential-looking query parameter
    (:func:`llmops_cli.core.urls.credential_free_url`: keys go in ``api_key_env``);
    ``repeats`` is at most :data:`MAX_REPEATS`.

    ``deployments``: several deployments of ``model`` (then the logical
    model's name) called through one ``litellm.Router`` — load balancing,
    per-deployment limits, cooldown of a failing deployment — instead of
    ``api_base`` (not both); ``api_key_env`` is then the default of
    deployments that name none. ``fallbacks``: models tried when every
    deployment failed (only with deployments). The embedded model
    (``local/...``) is neither."""

    version: Literal[1] = 1
    name: str | None = None
    model: str
    api_base: str | None = None
    api_key_env: str | None = None
    deployments: list[Deployment] | None = None
    fallbacks: list[Fallback] | None = None  # a string is a model alone (_fallback_models; json_schema says so)
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
    cache: CacheSettings = CacheSettings()

    # set by load_config (the path) and by measure.prepare, not by the YAML
    _path: Path | None = None
    _system_text: str | None = None
    _user_text: str | None = None
    _judge_templates: dict[str, str] = {}  # judge name → template text (read by measure.prepare)
    _checks: dict[str, Any] | None = None  # check name → checks.Prepared (compiled by measure.prepare)
    _prepared: bool = False

    @field_validator("api_base")
    @classmethod
    def _api_base_is_url(cls, v):
        return _credential_free_url(v)

    @field_validator("fallbacks", mode="before")
    @classmethod
    def _fallback_models(cls, v):
        # before validation, so that an error inside a fallback is named fallbacks.N.key (not once per union branch)
        return [{"model": f} if isinstance(f, str) else f for f in v] if isinstance(v, list) else v

    @model_validator(mode="after")
    def _deployments_fit(self):
        if self.deployments is None:
            if self.fallbacks:
                raise ValueError("fallbacks: only with deployments (a single endpoint: list it as the one deployment)")
            return self
        if not self.deployments:
            raise ValueError("deployments: give at least one deployment, or leave the key out")
        if self.api_base is not None:
            raise ValueError("api_base: not with deployments; give each deployment its own api_base")
        if self.model.startswith("local/"):
            raise ValueError("deployments: the embedded model (local/...) runs in this process; it has no deployments")
        seen: dict[str, str] = {}
        targets = [(f"deployments[{i}]", d) for i, d in enumerate(self.deployments)]
        targets += [(f"fallbacks[{i}]", f) for i, f in enumerate(self.fallbacks or [])]
        for where, t in targets:
            if (t.model or "").startswith("local/"):
                raise ValueError(f"{where}.model: the embedded model (local/...) cannot be a deployment or fallback")
            label = t.label(self.model)
            if label in seen:
                raise ValueError(f"{where}: its label {label!r} is also {seen[label]}'s; give each a distinct name")
            seen[label] = where
        return self

    @field_validator("metrics")
    @classmethod
    def _metrics_once(cls, v):  # the names are resolved (built in, or plugins) by measure.prepare
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
        for name, rule in self.gate.metrics.items():
            self._check_rule(f"gate.metrics.{name}", name, rule)
        for key, rules in self.gate.slices.items():
            field = key.partition("=")[0].strip()
            if field not in self.dataset.slices:
                raise ValueError(f"gate.slices.{key}: {field!r} is not among dataset.slices {self.dataset.slices}")
            for name, rule in rules.items():
                self._check_rule(f"gate.slices.{key}.{name}", name, rule)
        return self

    def _check_rule(self, where: str, name: str, rule) -> None:
        """A gate rule names a metric of this config (whether its margin points
        the metric's way is checked by :func:`llmops_cli.measure.prepare.check_metrics`)."""
        if name not in self.all_metrics:
            raise ValueError(f"{where}: not among the metrics, judges or checks {self.all_metrics}")

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
        """The system prompt's template: ``prompt.system``, or the text of
        ``prompt.system_file`` (read on first use). Raises :class:`ConfigError`
        for an unreadable file."""
        if self.prompt.system_file and self._system_text is None:
            self._system_text = _load_text(self, "prompt.system_file", self.prompt.system_file)
        return self._system_text if self._system_text is not None else self.prompt.system

    @property
    def user_template(self) -> str:
        """The user prompt's template: ``prompt.user``, or the text of
        ``prompt.user_file`` (read on first use). Raises :class:`ConfigError`."""
        if self.prompt.user_file and self._user_text is None:
            self._user_text = _load_text(self, "prompt.user_file", self.prompt.user_file)
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

    def judge_uses_deployments(self, name: str) -> bool:
        """Judge ``name`` follows the model under test to its ``deployments``
        (it pins neither ``model`` nor ``api_base``)."""
        j = self.judges[name]
        return bool(self.deployments) and not j.model and not j.api_base

    def judge_template(self, name: str) -> str:
        """Judge ``name``'s Jinja2 template, as :func:`llmops_cli.measure.prepare.prepare`
        read it (its ``template_file``, or the packaged one for its type).

        Raises:
            RuntimeError: the config was not prepared."""
        text = self._judge_templates.get(name)
        if text is None:
            raise RuntimeError(f"judges.{name}: its template is read by llmops_cli.prepare(cfg); call it first")
        return text

    def effective_judge(self, name: str) -> dict[str, Any]:
        """What actually grades for judge ``name``: ``{model, api_base,
        params, template_sha256}`` — the model and api_base it calls (see
        :meth:`judge_target`), its params, and the SHA-256 (64 hex digits) of
        its template text — plus its ``criteria``, ``samples`` (when not 1)
        and ``reduce`` when set: each changes the grade, so each joins the
        fingerprint."""
        model, api_base, _ = self.judge_target(name)
        j = self.judges[name]
        out: dict[str, Any] = {"model": model, "api_base": api_base, "params": j.params.dump(),
               "template_sha256": sha256_text(self.judge_template(name))}
        # what else decides the grade; only when set, so that a judge without them keeps its fingerprint
        for key, value in (("criteria", j.criteria), ("samples", j.samples if j.samples != 1 else None),
                           ("reduce", j.reduce)):
            if value is not None:
                out[key] = value
        return out

    # -- identity --------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """The configuration as plain data, prompt files inlined, for the run
        record and for :func:`config_diff`; each judge also gets an
        ``effective`` block (:meth:`effective_judge`). Holds no secrets:
        ``api_key_env`` is the *name* of an environment variable; the
        ``cache`` section (whose URL may hold a password, and which changes no
        answer) is left out."""
        d = self.model_dump(mode="json", exclude={"cache"})
        for key in ("deployments", "fallbacks"):  # left out when unset: older snapshots never had them
            if not d.get(key):
                d.pop(key, None)
        d["params"] = self.params.dump()
        d["prompt"] = {"system": self.system_template, "user": self.user_template}
        for name in self.judges:
            d["judges"][name]["params"] = self.judges[name].params.dump()
            d["judges"][name]["effective"] = self.effective_judge(name)
        return d
