"""The LiteLLM-facing code: importing LiteLLM (offline price map, the
embedded ``local`` provider registered), where a call goes (:class:`Endpoint`),
one call with retries (:func:`call_model`; the retry policy is in
:mod:`.faults`, routing over deployments in :mod:`.deployments`), its cost,
credentials, and the redaction of keys from error messages.

LiteLLM is imported only when some call misses the cache, with
``LITELLM_LOCAL_MODEL_COST_MAP=True`` set first so that it never fetches its
price list from the network.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from .cache import cache_key
from .errors import ConfigError
from .faults import congestion_signal, is_retryable, retry_after_s, retrying  # noqa: F401  (public here too)
from .fingerprint import key_order
from .perplexity import logprob_totals
from .record import Call

if TYPE_CHECKING:
    from .plan import Request

# passed to every call when set; response_format, tools and tool_choice are OpenAI's (LiteLLM maps them per provider)
CALL_PARAMS = ("temperature", "max_tokens", "top_p", "seed", "stop", "response_format", "tools", "tool_choice")


def import_litellm():
    """Import LiteLLM (≈3.5 s) with the offline price map, and register the
    embedded ``local`` provider."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    from . import local_model

    litellm.suppress_debug_info = True
    litellm.drop_params = True
    import logging

    logging.getLogger("LiteLLM").setLevel(logging.ERROR)  # its warnings (e.g. a new event loop per phase) are not the user's
    import gc

    gc.freeze()  # LiteLLM leaves ~370k long-lived objects; keep every collection during the run from re-walking them
    local_model.register(litellm)
    return litellm


async def warm_up(litellm, endpoints) -> None:
    """Do the client's first-call work before any timed call, so that
    ``latency_s`` measures the provider, not our process's cold start: the
    OpenAI SDK imports its resources on first use (≈0.4 s here) and LiteLLM
    its call path (≈0.2 s) — both paid by every call of the first wave
    otherwise. A ``mock_response`` call: nothing leaves the process. Only
    when a hosted (non-embedded) endpoint will be called."""
    hosted = [ep for ep in endpoints if not ep.is_local]
    if not hosted:
        return
    import openai.resources.chat  # noqa: F401

    model = hosted[0].deployments[0].model if hosted[0].deployments else hosted[0].model
    await litellm.acompletion(model=model, messages=[{"role": "user", "content": "warm-up"}], mock_response="ok",
                              num_retries=0)


@contextlib.asynccontextmanager
async def _no_limit():
    yield 0


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
    ``deployments``: the :class:`~llmops_cli.deployments.Target` objects a
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


def redact(text: str, extra_env: tuple[str | None, ...] = ()) -> str:
    """``text`` with the values of key-like environment variables (``*_API_KEY``,
    ``*_TOKEN``, ``*_SECRET``, ``*_KEY`` and ``extra_env``) replaced by ``***``."""
    names = [n for n in extra_env if n] + [k for k in os.environ if k.endswith(("_API_KEY", "_TOKEN", "_SECRET", "_KEY"))]
    for n in names:
        secret = os.environ.get(n, "")
        if len(secret) >= 6:
            text = text.replace(secret, "***")
    return text


def _error_text(exc: BaseException, ep: Endpoint) -> str:
    envs = (ep.api_key_env,) + tuple(t.api_key_env for t in ep.deployments)
    return redact(" ".join(f"{type(exc).__name__}: {exc}".split()), envs)[:500]


def api_key(ep: Endpoint, config_path: str | Path | None = None) -> str | None:
    """The key from ``ep.api_key_env`` (see :func:`key_from_env`)."""
    return key_from_env(ep.api_key_env, config_path)


def key_from_env(name: str | None, config_path: str | Path | None = None, where: str = "api_key_env") -> str | None:
    """The value of the environment variable ``name`` (``None`` when no name
    is given: LiteLLM then reads its provider's default, e.g. ``OPENAI_API_KEY``).

    Raises:
        ConfigError: the named variable is not set (names the config file
            and the key ``where``)."""
    if not name:
        return None
    key = os.environ.get(name)
    if not key:
        raise ConfigError(config_path or "<config>", where, f"environment variable {name} is not set")
    return key


def check_credentials(ep: Endpoint, config_path: str | Path | None = None) -> None:
    """Raise :class:`ConfigError` (exit 2) when the key an endpoint needs is
    not in the environment (LiteLLM's ``validate_environment``; api-base
    settings are not required, providers have defaults)."""
    if ep.deployments:
        from .deployments import check_credentials as check_targets

        return check_targets(ep, config_path)
    if api_key(ep, config_path) or ep.is_local:
        return
    require_provider_key(import_litellm(), ep.model, ep.api_base, config_path, "model")


def require_provider_key(litellm, model: str, api_base: str | None, config_path: str | Path | None,
                         where: str) -> None:
    """What LiteLLM's ``validate_environment`` says ``model`` needs from the
    environment (its ``*_KEY``/``*_TOKEN``/``*_SECRET`` variables) is set.
    An unknown provider passes: the call itself reports it.

    Raises:
        ConfigError: a variable is missing (names the config file and ``where``)."""
    try:
        env = litellm.validate_environment(model=model, api_base=api_base)
    except Exception:
        return
    missing = [k for k in env.get("missing_keys", []) if k.endswith(("_KEY", "_TOKEN", "_SECRET"))]
    if missing:
        raise ConfigError(config_path or "<config>", where,
                          f"{', '.join(missing)} is not set in the environment (or .env); {model} needs it")


def _cost(response) -> float | None:
    """USD cost LiteLLM computed for the response (its price map), or None
    when it has no price for the model. Not recomputed: LiteLLM already tried."""
    cost = (getattr(response, "_hidden_params", None) or {}).get("response_cost")
    return float(cost) if cost is not None else None


def str_or_none(value: Any) -> str | None:
    """``value`` when it is a non-empty string, else ``None``; interned (the
    served model and system fingerprint repeat over every call: one string
    each, not one per case)."""
    return sys.intern(value) if isinstance(value, str) and value else None


def _output_text(message) -> str:
    """The answer's text: its content, or — for a reply that is only a tool
    call (``tools``/``tool_choice``) — the first tool call's arguments (a
    JSON string), so that checks and ``field`` can read it."""
    content = (message.content or "").strip()
    calls = getattr(message, "tool_calls", None) or []
    if content or not calls:
        return content
    fn = getattr(calls[0], "function", None)
    return (getattr(fn, "arguments", None) or "").strip()


async def call_model(litellm, req: Request, key: str | None, retries: int, limit=None,
                     abort: Callable[[], bool] | None = None, router=None) -> Call | None:
    """One call through ``litellm.acompletion`` — or, for an endpoint with
    deployments, ``router`` (a :class:`~llmops_cli.deployments.RoutedCalls`)
    — with retries, holding a slot
    of ``limit`` (an :class:`~llmops_cli.concurrency.AdaptiveLimit`, or
    None) throughout, each failed attempt reported to it. Returns None,
    making no call, when ``abort()`` is true once the slot is free (the
    run's early stop). The answer's
    ``served_model``/``system_fingerprint`` are the response's ``model`` and
    ``system_fingerprint`` — for an OpenAI-compatible server, what the server
    returned, not the requested model string (LiteLLM 1.106 copies them from
    the server's JSON); ``deployment`` the label of the deployment that
    answered, and ``retries`` counts the Router's moves to another one too.
    ``latency_s`` times the answering attempt alone (request sent → response
    received; with deployments, the Router's whole attempt); the wait for a
    slot is ``queue_s``, the waits between attempts ``backoff_s``."""
    import asyncio

    from .concurrency import Skipped

    ep = req.endpoint
    kwargs = dict(model=ep.model, messages=req.messages, timeout=ep.timeout, max_retries=0, **ep.call_params)
    if router is None:  # the Router has its own num_retries (re-picks), and each deployment its URL and key
        kwargs["num_retries"] = 0
        if ep.api_base:
            kwargs["api_base"] = ep.api_base
        if key:
            kwargs["api_key"] = key
    complete = litellm.acompletion if router is None else router.complete
    if "tools" in kwargs:
        # LiteLLM 1.106 routes any call with tools through its MCP handler, which imports the optional `mcp`
        # package (proxy extras); our tools are plain function definitions passed to the provider as they are
        kwargs["_skip_mcp_handler"] = True
    attempts = 0
    asked = time.perf_counter()
    t0 = attempt_s = None
    in_attempts = 0.0  # seconds spent inside attempts; the rest of the slot's time is back-off
    try:
        async with limit.slot(abort) if limit is not None else _no_limit() as started_in:
            t0 = time.perf_counter()
            async for attempt in retrying(retries):
                with attempt:
                    attempts += 1
                    sent = time.perf_counter()
                    try:
                        response = await complete(**kwargs)
                    except Exception as exc:
                        attempt_s = time.perf_counter() - sent
                        in_attempts += attempt_s
                        if limit is not None:
                            limit.note(exc, started_in)
                        raise
                    attempt_s = time.perf_counter() - sent
                    in_attempts += attempt_s
                    if limit is not None:
                        limit.observe(attempt_s)
            ended = time.perf_counter()
    except asyncio.CancelledError:
        raise
    except Skipped:
        return None
    except Exception as exc:  # recorded as the case's error, never as a score
        ended = time.perf_counter()
        return Call(repeat=req.repeat, error=_error_text(exc, ep), retries=attempts - 1,
                    latency_s=round(attempt_s, 4) if attempt_s is not None else None,
                    queue_s=round(t0 - asked, 4) if t0 is not None else None,
                    backoff_s=round(max(0.0, ended - t0 - in_attempts), 4) if t0 is not None else None)
    choice = response.choices[0]
    usage = getattr(response, "usage", None)
    raw = response.model_dump(mode="json")
    logprob_sum, logprob_tokens = logprob_totals(raw)
    target = router.answered_by(response) if router is not None else None
    return Call(
        repeat=req.repeat,
        output=_output_text(choice.message),
        response=raw,
        served_model=str_or_none(raw.get("model")),
        system_fingerprint=str_or_none(raw.get("system_fingerprint")),
        prompt_tokens=getattr(usage, "prompt_tokens", None),
        completion_tokens=getattr(usage, "completion_tokens", None),
        latency_s=round(attempt_s, 4),
        queue_s=round(t0 - asked, 4),
        backoff_s=round(max(0.0, ended - t0 - in_attempts), 4),
        cost_usd=_cost(response),
        retries=attempts - 1 + (router.hops(response) if router is not None else 0),
        deployment=target.label if target is not None else None,
        logprob_sum=logprob_sum,
        logprob_tokens=logprob_tokens,
    )
