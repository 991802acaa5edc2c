"""Several deployments of one model, called through one ``litellm.Router``
per execution: load balancing, per-deployment limits, cooldown of a failing
deployment, and fallbacks to other models when every deployment failed.

The config's ``deployments`` (and ``fallbacks``) become :class:`Target` objects
on the model's :class:`~llmops_cli.run.provider.Endpoint`; its cache key stays
the logical model's (model, params, messages — no URL), so the deployments
share every answer. :class:`RoutedCalls` wraps the Router an execution builds
for one endpoint and says which target answered a response.

How LiteLLM 1.106's Router is used (``litellm/router.py``):

* **routing** — ``simple-shuffle``: a random deployment, weighted by
  ``weight`` (else ``rpm``, else ``tpm``); with ``enable_weighted_failover``
  a call whose deployment fails (a retryable error: 429, 5xx, connection,
  timeout) is sent at once to another deployment not tried yet. When any
  deployment sets ``rpm``/``tpm``: ``usage-based-routing-v2`` instead, which
  keeps each deployment under its limits per minute (a call none can take
  fails with a 429 and ``Retry-After: 60``) and picks the least used; the
  Router then re-picks another deployment up to (deployments − 1) times
  (``num_retries``, no wait while a healthy deployment is left).
* **cooldown** — LiteLLM's own rule: a deployment that fails more than half
  of at least 5 calls in the current minute, or answers 429/401/404 while
  other deployments exist, is left out for ``cooldown_time`` (5 s, or the
  429's ``Retry-After``). A refused connection counts (LiteLLM reports it as
  a 500). With every deployment cooling down, the Router raises
  ``RouterRateLimitError``; :func:`llmops_cli.run.provider.is_retryable` retries
  it after its cooldown.
* **fallbacks** — each fallback is a model group of its own, tried in order
  once the deployments failed.
* **retries over time** stay ours (:func:`llmops_cli.run.provider.retrying`):
  the Router spreads one attempt over the deployments, our loop backs off
  and tries again when all of them failed.
* **who answered** — ``response._hidden_params["model_id"]``: each target's
  ``model_info.id`` is its label.
* **limits shared across runners** — with a Redis cache (``cache.url``,
  ``--cache-url``, ``$LLMOPS_CACHE_URL``) and ``rpm``/``tpm`` on a
  deployment, the Router gets that ``redis_url``: its per-minute counters
  live in Redis as well as in memory (LiteLLM's ``usage-based-routing-v2``
  adds each call in memory at once and to Redis in batches, syncing every
  ``DEFAULT_REDIS_SYNC_INTERVAL`` = 1 s), so shards on several runners share
  each deployment's limits — within what each sends in one sync interval.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any


from llmops_cli.plan.endpoint import Target, targets  # noqa: F401  (public here too)

if TYPE_CHECKING:
    from llmops_cli.plan.endpoint import Endpoint

COOLDOWN_S = 5  # LiteLLM's default cooldown_time, stated here so the README and the Router agree


def _entry(group: str, t: Target, config_path) -> dict[str, Any]:
    """The Router's ``model_list`` entry of one target; the key is read
    from the environment here and lives only in the Router's memory."""
    from llmops_cli.run.provider import key_from_env

    params: dict[str, Any] = {"model": t.model}
    key = key_from_env(t.api_key_env, config_path, f"{t.where}.api_key_env")
    for name, value in (("api_base", t.api_base), ("api_key", key), ("rpm", t.rpm), ("tpm", t.tpm),
                        ("weight", t.weight)):
        if value is not None:
            params[name] = value
    return {"model_name": group, "litellm_params": params, "model_info": {"id": t.label}}


class RoutedCalls:
    """The ``litellm.Router`` of one endpoint with deployments, for one
    execution (its HTTP clients belong to that event loop). Build with
    :func:`routers`; :meth:`close` unhooks it from LiteLLM's global
    callbacks (LiteLLM keeps at most 30: a process running many evals
    would otherwise stop tracking cooldowns).

    Raises (constructor):
        ConfigError: a target's ``api_key_env`` names an unset variable."""

    def __init__(self, litellm, ep: Endpoint, config_path=None, redis_url: str | None = None):
        import logging

        logging.getLogger("LiteLLM Router").setLevel(logging.CRITICAL)  # failures are ours to report, once
        primary = [t for t in ep.deployments if not t.fallback]
        backups = [t for t in ep.deployments if t.fallback]
        groups = [f"{ep.model} fallback {i + 1}" for i in range(len(backups))]
        limited = any(t.rpm or t.tpm for t in primary)
        self.by_label = {t.label: t for t in ep.deployments}
        self._litellm = litellm
        self._priced = set(litellm.model_cost)
        self.router = litellm.Router(
            model_list=[_entry(ep.model, t, config_path) for t in primary]
            + [_entry(g, t, config_path) for g, t in zip(groups, backups)],
            routing_strategy="usage-based-routing-v2" if limited else "simple-shuffle",
            enable_weighted_failover=not limited, num_retries=len(primary) - 1 if limited else 0,
            max_fallbacks=len(ep.deployments), fallbacks=[{ep.model: groups}] if groups else [],
            cooldown_time=COOLDOWN_S, **({"redis_url": redis_url} if redis_url and limited else {}))
        self._forget_prices()

    def _forget_prices(self) -> None:
        """The Router registers every deployment's model in LiteLLM's price
        map, with no price for a model LiteLLM does not know — after which
        LiteLLM prices its calls at 0 USD. Take those entries out again: an
        unknown price leaves ``cost_usd`` unscored, never 0."""
        for key in set(self._litellm.model_cost) - self._priced:
            entry = self._litellm.model_cost[key]
            if not isinstance(entry, dict) or entry.get("input_cost_per_token") is None:
                del self._litellm.model_cost[key]

    async def complete(self, **kwargs) -> Any:
        """``router.acompletion`` with LiteLLM's keyword arguments: ``model``
        is the logical model (the Router's group); no ``api_base``/``api_key``."""
        return await self.router.acompletion(**kwargs)

    def answered_by(self, response) -> Target | None:
        """The target that answered ``response`` (its ``_hidden_params``
        ``model_id``), or None when LiteLLM did not say."""
        hidden = getattr(response, "_hidden_params", None) or {}
        return self.by_label.get(str(hidden.get("model_id")))

    @staticmethod
    def hops(response) -> int:
        """How many times the Router moved this call to another deployment or
        fallback before it was answered (its ``x-litellm-attempted-retries``
        and ``-fallbacks`` headers)."""
        headers = (getattr(response, "_hidden_params", None) or {}).get("additional_headers") or {}
        n = 0
        for name in ("x-litellm-attempted-retries", "x-litellm-attempted-fallbacks"):
            try:
                n += int(headers.get(name) or 0)
            except (TypeError, ValueError):
                pass
        return n

    def close(self) -> None:
        """Unhook the Router from LiteLLM's global callback lists (and take
        out any price entry it added since)."""
        self.router.discard()
        self._forget_prices()


def routers(litellm, endpoints, config_path=None, redis_url: str | None = None) -> dict[tuple, RoutedCalls]:
    """One :class:`RoutedCalls` per distinct route among ``endpoints`` that
    have deployments (the model under test and a judge following it share
    one), keyed by :attr:`Endpoint.route`. ``redis_url``: the run's shared
    Redis cache; deployments with ``rpm``/``tpm`` then count their calls and
    tokens per minute in it (LiteLLM's multi-instance routing), so runners
    sharing it stay within the limits together."""
    out: dict[tuple, RoutedCalls] = {}
    for ep in endpoints:
        if ep.deployments and ep.route not in out:
            out[ep.route] = RoutedCalls(litellm, ep, config_path, redis_url)
    return out
