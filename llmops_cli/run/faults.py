"""The retry policy of every model call: which errors are retried
(:func:`is_retryable`), how long to wait (:func:`retry_after_s`, tenacity's
exponential backoff in :func:`retrying`), and which errors say the provider
is overloaded (:func:`congestion_signal`, for :mod:`llmops_cli.run.concurrency`).
LiteLLM is imported by the caller before any of these runs.
"""

from __future__ import annotations

import re
import time


def _status(exc: BaseException) -> int | None:
    code = getattr(exc, "status_code", None)
    return code if isinstance(code, int) else None


OVERLOAD = (408, 409, 429, 502, 503, 504, 529)  # statuses that say "not now": retried up to --retries times
SERVER_ERROR_RETRIES = 2  # a 500 (or a 5xx not in OVERLOAD) is retried at most this many times: it may be permanent
# a server error whose message is a validation of the request (FastAPI/pydantic's wording, e.g. llama.cpp's server
# refusing response_format json_schema with a 500): the same request fails the same way, so it is not retried
REQUEST_ERROR = re.compile(r"\bvalidation errors?\b|Input should be|Field required|Extra inputs are not permitted",
                           re.IGNORECASE)


def is_retryable(exc: BaseException, attempt: int = 1) -> bool:
    """Whether attempt number ``attempt`` (1-based) failing with ``exc`` is
    retried (within ``--retries``): 429, 408, 409, 502, 503, 504, 529,
    connection errors and timeouts, and a Router's "every deployment is
    cooling down" (after its cooldown: :func:`retry_after_s`), always; a 500
    or another 5xx only for the first :data:`SERVER_ERROR_RETRIES` retries,
    and never when its message is a validation of the request
    (:data:`REQUEST_ERROR`); any other error (400, 401, 404, 422 …) never."""
    import asyncio

    import litellm

    # LiteLLM gives a failed connection (refused, reset) status 500 too: it is a connection error, not the server's
    if isinstance(exc, (litellm.Timeout, litellm.APIConnectionError, asyncio.TimeoutError, _all_cooling())):
        return True
    code = _status(exc)
    if code in OVERLOAD:
        return True
    return code is not None and code >= 500 and attempt <= SERVER_ERROR_RETRIES and not REQUEST_ERROR.search(str(exc))


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
    429/408/409/502/503/504/529, connection errors and timeouts, at most
    :data:`SERVER_ERROR_RETRIES` of a 500, none of a 500 that is a validation
    error (:func:`is_retryable`); exponential backoff with jitter (tenacity:
    a random wait up to 0.5·2^n s, at most 20 s), a ``Retry-After`` header
    honoured up to 60 s; the last error is re-raised. Use as
    ``async for attempt in retrying(n): with attempt: ...``."""
    from tenacity import AsyncRetrying, stop_after_attempt, wait_random_exponential

    backoff = wait_random_exponential(multiplier=0.5, max=20)

    def wait(state) -> float:
        ra = retry_after_s(state.outcome.exception())
        base = backoff(state)
        return max(base, min(ra, 60.0)) if ra is not None else base

    def retry(state) -> bool:
        exc = state.outcome.exception() if state.outcome is not None else None
        return exc is not None and is_retryable(exc, state.attempt_number)

    return AsyncRetrying(stop=stop_after_attempt(retries + 1), wait=wait, retry=retry, reraise=True)
