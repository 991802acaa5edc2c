"""The cache: model answers, and memoised derived results.

Answers are keyed by SHA-256 of the canonical JSON of model, api_base,
messages, call parameters and repeat index (:func:`cache_key`). The cache
stores the response text, token usage, cost and the raw response — never
credentials (api keys are not part of the request description passed in, and
raw responses carry none). LiteLLM's own cache is not used (its hit path
imports proxy-only modules in 1.106.2).

Derived results — metric results, retrieval hits, bootstrap intervals — are
memoised under a hash of everything each depends on (:func:`memoised`), so
that a fully cached re-run loads no scorer, no bm25s and no numpy.

Two stores, one interface (``get``/``put``, ``get_memo``/``put_memo``,
``open``, ``info``, ``clear``, ``close``; ``hits``/``misses``):

* :class:`~.sqlite.Cache` — SQLite in ``--cache-dir`` / ``$LLMOPS_CACHE_DIR``
  (default ``.llmops/cache``); the default.
* :class:`~.redis.RedisCache` — a Redis shared by CI runners and developers,
  when a URL is given (``--cache-url`` > ``$LLMOPS_CACHE_URL`` > the config's
  ``cache.url``). It then replaces the local folder; it is not a second level.

:func:`open_cache` picks and opens one for a run.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Callable

from llmops_cli.core.errors import ConfigError, InputError
from llmops_cli.core.fingerprint import canonical_json, sha256_text
from llmops_cli.core.cache.redis import DEFAULT_PREFIX, redact_url
from llmops_cli.core.cache.sqlite import DEFAULT_DIR, Cache, default_dir

__all__ = ["Cache", "DEFAULT_DIR", "DEFAULT_PREFIX", "ENV_URL", "cache_key", "default_dir", "memoised", "open_cache",
           "redact_url", "resolve_url"]

ENV_URL = "LLMOPS_CACHE_URL"


def cache_key(model: str, api_base: str | None, messages: list[dict], params: dict[str, Any], repeat: int = 0) -> str:
    """The cache key of one model call (64 hex digits)."""
    return sha256_text(canonical_json({"model": model, "api_base": api_base, "messages": messages, "params": params, "repeat": repeat}))


def memoised(memo: "Cache | None", kind: str, inputs: Any, compute: Callable[[], Any]) -> Any:
    """``compute()``'s JSON-serialisable result, read from ``memo``'s derived
    results when present, else computed and stored there. The key is ``kind``
    plus the SHA-256 of the canonical JSON of ``inputs``, which must hold
    everything the result depends on (versions included). With ``memo=None``
    this is just ``compute()``. ``memo`` is either store (SQLite or Redis)."""
    if memo is None:
        return compute()
    key = f"{kind}:{sha256_text(canonical_json(inputs))}"
    value = memo.get_memo(key)
    if value is None:
        value = compute()
        memo.put_memo(key, value)
    return value


def resolve_url(flag: str | None, configured: str | None) -> tuple[str | None, str]:
    """The Redis URL a run uses and where it came from: ``--cache-url``
    (``flag``), else ``$LLMOPS_CACHE_URL``, else the config's ``cache.url``
    (``configured``); an empty value counts as unset. ``(None, "cache.url")``
    when none is given: the local SQLite cache."""
    if flag:
        return flag, "--cache-url"
    if os.environ.get(ENV_URL):
        return os.environ[ENV_URL], f"${ENV_URL}"
    return configured or None, "cache.url"


def _warn(message: str) -> None:
    sys.stderr.write(f"llmops: warning: {message}\n")
    sys.stderr.flush()


def open_cache(directory: str | Path | None = None, *, url: str | None = None, where: str = "cache.url",
               ttl_s: int | None = None, prefix: str = DEFAULT_PREFIX, required: bool = False,
               config_path: str | Path | None = None, warn: Callable[[str], None] | None = None):
    """The cache a run uses, opened now — before any model call.

    Without ``url``: the SQLite :class:`Cache` in ``directory`` (default
    ``$LLMOPS_CACHE_DIR`` or ``.llmops/cache``). With ``url``: a
    :class:`~.redis.RedisCache` (entries kept ``ttl_s`` seconds, ``None``:
    for ever; keys under ``prefix``); ``directory`` is then not used. A Redis
    that cannot be reached (or used: wrong password, client not installed)
    within its 2-second timeouts gives one warning line through ``warn``
    (default: ``llmops: warning: …`` on stderr) and ``None`` — the run goes on
    uncached — unless ``required``. ``where`` names the URL's source for
    errors (``--cache-url``, ``$LLMOPS_CACHE_URL`` or ``cache.url``). A
    password in the URL is never printed.

    Raises:
        OutputError: the SQLite cache cannot be created or written.
        ConfigError: ``required`` and Redis is unreachable (names
            ``config_path`` and ``cache.url``).
        InputError: ``url`` is not a ``redis://``, ``rediss://`` or
            ``unix://`` URL (names ``where``; a :class:`ConfigError` naming
            ``config_path`` when ``where`` is ``cache.url``).
    """
    if not url:
        return Cache(directory).open()
    from llmops_cli.core.cache.redis import CacheUnavailable, RedisCache, check_url

    problem = check_url(url)
    if problem:
        if where == "cache.url":
            raise ConfigError(config_path, where, problem)
        raise InputError(None, where, problem)
    warn = warn or _warn
    cache = RedisCache(url, ttl_s=ttl_s, prefix=prefix, warn=warn)
    try:
        return cache.open()
    except CacheUnavailable as err:
        if required:
            source = "" if where == "cache.url" else f" (from {where})"
            raise ConfigError(config_path, "cache.url", f"{err.message}{source}; cache.required is true, so no "
                              "model is called") from None
        warn(f"{err.message}; running uncached")
        return None
