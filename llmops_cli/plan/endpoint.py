"""Where a request goes: :class:`Endpoint` (model, api_base, the *name* of
the key's environment variable, answer-shaping params, timeout) and its cache
key; :class:`Target` (one deployment or fallback a ``litellm.Router`` may
call). Plain data decided while planning, before any call; :mod:`llmops_cli.run`
makes the calls."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmops_cli.core.cache import cache_key
from llmops_cli.core.fingerprint import key_order

if TYPE_CHECKING:
    from llmops_cli.config import Config

CALL_PARAMS = ("temperature", "max_tokens", "top_p", "seed", "stop", "response_format", "tools", "tool_choice")


def _frozen(value: Any) -> Any:
    """A hashable form of a param value: lists become tuples, dicts tuples of
    pairs tagged as dicts, in their own order (the endpoint is a dict key;
    the order of a JSON schema's properties is the order the model writes
    them in, so it is kept)."""
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, dict):
        return ("__dict__", tuple((k, _frozen(v)) for k, v in value.items()))
    return value


def _thawed(value: Any) -> Any:
    """The inverse of :func:`_frozen`."""
    if isinstance(value, tuple):
        if len(value) == 2 and value[0] == "__dict__" and isinstance(value[1], tuple):
            return {k: _thawed(v) for k, v in value[1]}
        return [_thawed(v) for v in value]
    return value


@dataclass(frozen=True)
class Endpoint:
    """Where and how a call goes: LiteLLM model string, optional api_base,
    the *name* of the environment variable holding the key (never the key),
    answer-shaping params, and the per-request timeout in seconds.
    ``deployments``: the :class:`~llmops_cli.run.deployments.Target` objects a
    ``litellm.Router`` spreads the calls over (``model`` is then the logical
    model and ``api_base`` None); not part of the cache key."""

    model: str
    api_base: str | None
    api_key_env: str | None
    params: tuple[tuple[str, Any], ...]
    timeout: float
    deployments: tuple = ()

    @classmethod
    def of(cls, model: str, api_base: str | None, api_key_env: str | None, params, *,
           logprobs: bool = False, deployments: tuple = ()) -> "Endpoint":
        """The endpoint for a config's ``params`` (:data:`CALL_PARAMS` that are
        set). ``logprobs``: also ask for the output tokens' log-probabilities
        (OpenAI's ``logprobs: true`` with ``top_logprobs: 0``, for the
        ``perplexity`` metric); only then are they among the params, so other
        calls keep their cache keys."""
        p = params.model_dump()
        frozen = tuple((k, _frozen(p[k])) for k in CALL_PARAMS if p.get(k) is not None)
        if logprobs:  # top_logprobs 0: llama.cpp's server returns log-probabilities only when it is sent too
            frozen += (("logprobs", True), ("top_logprobs", 0))
        return cls(model, api_base, api_key_env, frozen, params.timeout, tuple(deployments))

    @property
    def call_params(self) -> dict[str, Any]:
        """The params as LiteLLM takes them (lists and dicts, not their frozen forms)."""
        return {k: _thawed(v) for k, v in self.params}

    @property
    def is_local(self) -> bool:
        return self.model.startswith("local/")

    def for_sample(self, k: int) -> "Endpoint":
        """The endpoint for the k-th repeat/sample: a pinned ``seed`` becomes
        ``seed + k`` so that repeated samples are not identical by design."""
        if k == 0 or "seed" not in dict(self.params):
            return self
        return dataclasses.replace(self, params=tuple((n, v + k if n == "seed" else v) for n, v in self.params))

    @property
    def route(self) -> tuple:
        """Where calls go: one adaptive concurrency limit (and one Router) each."""
        return self.model, self.api_base, self.deployments

    def key(self, messages: list[dict[str, Any]], repeat: int) -> str:
        """The cache key of one call; for params holding mappings
        (``response_format``, ``tools``) the order of their keys counts too."""
        params = self.call_params
        order = {k: key_order(v) for k, v in params.items() if isinstance(v, (dict, list))}
        if any(v is not None for v in order.values()):
            params = {**params, "__key_order__": order}
        return cache_key(self.model, self.api_base, messages, params, repeat)


@dataclass(frozen=True)
class Target:
    """One place a routed call may go: a deployment of the logical model, or
    a fallback (``fallback``). ``label`` names it in the record (``name``,
    else ``api_base``, else ``model``; never a key); ``api_key_env`` is the
    *name* of the variable holding its key; ``rpm``/``tpm`` per minute;
    ``where`` is its config key (``deployments[1]``) for error messages."""

    label: str
    model: str
    api_base: str | None
    api_key_env: str | None
    where: str
    rpm: int | None = None
    tpm: int | None = None
    weight: float | None = None
    fallback: bool = False


def targets(cfg: Config) -> tuple[Target, ...]:
    """The config's deployments then fallbacks as :class:`Target` objects (empty
    without ``deployments``); the top-level ``api_key_env`` is the default key
    of those that name none."""
    out = []
    for i, d in enumerate(cfg.deployments or []):
        out.append(Target(d.label(cfg.model), d.model or cfg.model, d.api_base, d.api_key_env or cfg.api_key_env,
                          f"deployments[{i}]", d.rpm, d.tpm, d.weight))
    for i, f in enumerate(cfg.fallbacks or []):
        assert not isinstance(f, str)  # Config's validator made each a Fallback
        out.append(Target(f.label(cfg.model), f.model, f.api_base, f.api_key_env, f"fallbacks[{i}]", fallback=True))
    return tuple(out)
