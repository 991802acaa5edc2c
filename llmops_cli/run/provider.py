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
import math
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, cast

from llmops_cli.core.errors import ConfigError
from llmops_cli.core.files import valid_text
from llmops_cli.run.faults import congestion_signal, is_retryable, retry_after_s, retrying  # noqa: F401  (public here too)
from llmops_cli.plan.endpoint import CALL_PARAMS, Endpoint  # noqa: F401  (public here too)
from llmops_cli.record.schema import Call

if TYPE_CHECKING:
    from llmops_cli.plan.requests import Request

def import_litellm():
    """Import LiteLLM (≈2 s) with the offline price map and the garbage
    collector paused (:mod:`llmops_cli.core.imports`), and register the
    embedded ``local`` provider."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    from llmops_cli.core.imports import collector_paused

    with collector_paused():
        import litellm

    from llmops_cli.run import local_model

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
    from llmops_cli.core.imports import collector_paused

    with collector_paused():
        import openai.resources.chat  # noqa: F401

    model = hosted[0].deployments[0].model if hosted[0].deployments else hosted[0].model
    await litellm.acompletion(model=model, messages=[{"role": "user", "content": "warm-up"}], mock_response="ok",
                              num_retries=0)


@contextlib.asynccontextmanager
async def _no_limit():
    yield 0


def logprob_totals(response: dict[str, Any] | None) -> tuple[float | None, int | None]:
    """The sum (nats) and number of the output tokens' log-probabilities in
    an OpenAI-format chat completion (``choices[0].logprobs.content[*].logprob``);
    ``(0.0, 0)`` for an answer of no tokens; ``(None, None)`` when the
    response has none or one is not a finite number."""
    try:
        content = response["choices"][0]["logprobs"]["content"]  # type: ignore[index]
    except (KeyError, IndexError, TypeError):
        return None, None
    if not isinstance(content, list):
        return None, None
    values = [t.get("logprob") if isinstance(t, dict) else None for t in content]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
        return None, None
    return float(sum(cast("list[float]", values))), len(values)  # each checked a finite number above


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
    """One line for a failed call: the error's type and message, keys
    redacted, at most 500 characters, and never a traceback (LiteLLM puts
    a custom provider's whole traceback into its error's message)."""
    envs = (ep.api_key_env,) + tuple(t.api_key_env for t in ep.deployments)
    text = f"{type(exc).__name__}: {exc}".split("Traceback (most recent call last)")[0]
    return redact(" ".join(text.split()), envs)[:500]


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
        return _check_targets(ep, config_path)
    if ep.is_local:
        from llmops_cli.run.local_model import unavailable

        problem = unavailable(ep.model)
        if problem:
            raise ConfigError(config_path or "<config>", "model", problem)
        return
    if api_key(ep, config_path):
        return
    require_provider_key(import_litellm(), ep.model, ep.api_base, config_path, "model")


def _check_targets(ep: Endpoint, config_path: str | Path | None = None) -> None:
    """Every target's key is in the environment: its ``api_key_env``, else
    what LiteLLM's ``validate_environment`` says its model needs.

    Raises:
        ConfigError: a key is missing (names the config file and the
            target's key, e.g. ``deployments[1].api_key_env``)."""
    litellm = None  # imported once, only when a target names no key of its own
    for t in ep.deployments:
        if not key_from_env(t.api_key_env, config_path, f"{t.where}.api_key_env"):
            litellm = litellm or import_litellm()
            require_provider_key(litellm, t.model, t.api_base, config_path, f"{t.where}.model")


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
    deployments, ``router`` (a :class:`~llmops_cli.run.deployments.RoutedCalls`)
    — with retries, holding a slot
    of ``limit`` (an :class:`~llmops_cli.run.concurrency.AdaptiveLimit`, or
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

    from llmops_cli.run.concurrency import Skipped

    ep = req.endpoint
    assert ep is not None, "a request without an endpoint is never sent"  # its call is given up front
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
        return Call(repeat=req.repeat, error=valid_text(_error_text(exc, ep)), retries=attempts - 1,
                    latency_s=round(attempt_s, 4) if attempt_s is not None else None,
                    queue_s=round(t0 - asked, 4) if t0 is not None else None,
                    backoff_s=round(max(0.0, ended - t0 - in_attempts), 4) if t0 is not None else None)
    choice = response.choices[0]
    usage = getattr(response, "usage", None)
    raw = valid_text(response.model_dump(mode="json"))
    logprob_sum, logprob_tokens = logprob_totals(raw)
    target = router.answered_by(response) if router is not None else None
    return Call(
        repeat=req.repeat,
        output=valid_text(_output_text(choice.message)),
        response=raw,
        served_model=str_or_none(raw.get("model")),
        system_fingerprint=str_or_none(raw.get("system_fingerprint")),
        prompt_tokens=getattr(usage, "prompt_tokens", None),
        completion_tokens=getattr(usage, "completion_tokens", None),
        latency_s=None if attempt_s is None else round(attempt_s, 4),
        queue_s=round(t0 - asked, 4),
        backoff_s=round(max(0.0, ended - t0 - in_attempts), 4),
        cost_usd=_cost(response),
        retries=attempts - 1 + (router.hops(response) if router is not None else 0),
        deployment=target.label if target is not None else None,
        logprob_sum=logprob_sum,
        logprob_tokens=logprob_tokens,
    )
