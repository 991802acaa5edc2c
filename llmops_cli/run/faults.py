"""The retry policy of every model call: which errors are retried
(:func:`is_retryable`), how long to wait (:func:`retry_after_s`, tenacity's
exponential backoff in :func:`retrying`), and which errors say the provider
is overloaded (:func:`congestion_signal`, for :mod:`llmops_cli.run.concurrency`).
LiteLLM is imported by the caller before any of these runs.
"""

from __future__ import annotations

import time


def _status(exc: BaseException) -> int | None:
    code = getattr(exc, "status_code", None)
    return code if isinstance(code, int) else None


def is_retryable(exc: BaseException) -> bool:
    """429, 408, 409, 5xx, connection errors and timeouts are retried, and
    so is a Router's "every deployment is cooling down" (after its cooldown:
    :func:`retry_after_s`)."""
    import asyncio

    import litellm

    if isinstance(exc, (litellm.Timeout, litellm.APIConnectionError, asyncio.TimeoutError, _all_cooling())):
        return True
    code = _status(exc)
    return code is not None and (code in (408, 409, 429) or code >= 500)


def _all_cooling() -> type:
    """The Router's error when every deployment is cooling down."""
    from litellm.types.router import RouterRateLimitError

    return RouterRateLimitError


def congestion_signal(exc: BaseException) -> str | None:
    """``"429"`` for a rate-limit answer, ``"congestion"`` for another sign
    of an overloaded provider (503, 529, a timeout), else None: what makes
    the adaptive concurrency (:mod:`llmops_cli.run.concurrency`) back off."""
    import asyncio

    import litellm

    code = _status(exc)
    if code == 429:
        return "429"
    if code in (503, 529) or isinstance(exc, (litellm.Timeout, asyncio.TimeoutError, _all_cooling())):
        return "congestion"
    return None


def retry_after_s(exc: BaseException) -> float | None:
    """Seconds from a ``Retry-After`` header on the error's response, if any
    (or, every deployment cooling down, the Router's ``cooldown_time``)."""
    cooldown = getattr(exc, "cooldown_time", None)
    if isinstance(cooldown, (int, float)) and not isinstance(cooldown, bool):
        return max(0.0, float(cooldown))
    headers = getattr(exc, "litellm_response_headers", None)
    resp = getattr(exc, "response", None)
    if headers is None and resp is not None:
        headers = getattr(resp, "headers", None)
    value = headers.get("retry-after") if headers is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        import email.utils

        parsed = email.utils.parsedate_tz(value)
        return max(0.0, email.utils.mktime_tz(parsed) - time.time()) if parsed else None


def retrying(retries: int):
    """The retry policy of every model call: up to ``retries`` retries of
    429/408/409/5xx, connection errors and timeouts (:func:`is_retryable`),
    exponential backoff with jitter (tenacity), a ``Retry-After`` header
    honoured up to 60 s; the last error is re-raised. Use as
    ``async for attempt in retrying(n): with attempt: ...``."""
    from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential

    backoff = wait_random_exponential(multiplier=0.5, max=20)

    def wait(state) -> float:
        ra = retry_after_s(state.outcome.exception())
        base = backoff(state)
        return max(base, min(ra, 60.0)) if ra is not None else base

    return AsyncRetrying(stop=stop_after_attempt(retries + 1), wait=wait, retry=retry_if_exception(is_retryable),
                         reraise=True)
