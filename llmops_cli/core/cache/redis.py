"""The shared cache: Redis (``cache.url``, ``--cache-url``,
``$LLMOPS_CACHE_URL``), so that every CI runner and developer reuses answers
already paid for.

Same keys as the SQLite cache, under a namespace: an answer under
``<prefix>:answer:<cache key>`` (JSON ``{"model", "created", "value"}``), a
memoised result under ``<prefix>:memo:<kind>:<hash>`` (its JSON value); the
prefix defaults to ``llmops``. Entries expire ``ttl_s`` seconds after they
were written (``None``: never). ``clear`` deletes only keys under the prefix.

Connecting and every command time out after 2 seconds and are not retried.
Redis failing during a run (server gone, timeout) turns every later read into
a miss and every write into nothing, with one warning line: the run
completes, uncached from there. A password in the URL is never shown
(:func:`redact_url`). Uses redis-py (the ``redis`` extra), imported only when
a URL is given.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from collections import Counter
from itertools import islice
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import unquote, urlsplit

from llmops_cli.core.errors import InputError

SCHEMES = ("redis", "rediss", "unix")
DEFAULT_PREFIX = "llmops"
TIMEOUT_S = 2.0  # connect and per-command socket timeout, seconds
_BATCH = 500  # keys per MGET/UNLINK in `info` and `clear`


class CacheUnavailable(InputError):
    """Redis cannot be reached or used (refused, unknown host, timeout, wrong
    password, client not installed). The message is one line naming the
    redacted URL; exit code 2 if it reaches the command line."""

    def __init__(self, message: str):
        super().__init__(None, None, message)


def redact_url(url: str) -> str:
    """``url`` fit to print: whatever stands before the ``@`` of the host
    (user name and password) becomes ``***`` (``redis://:secret@host:6379/0``
    → ``redis://***@host:6379/0``), and so does any ``password=`` or
    ``username=`` query value."""
    head, sep, rest = url.partition("://")
    if not sep:
        head, rest = "", url
    if "@" in rest:
        rest = "***@" + rest.rpartition("@")[2]
    rest = re.sub(r"(?i)([?&](?:password|username|user)=)[^&#]*", r"\1***", rest)
    return f"{head}{sep}{rest}"


def check_url(url: str) -> str | None:
    """What is wrong with ``url`` as a Redis URL, or ``None``: the scheme must
    be ``redis://``, ``rediss://`` (TLS) or ``unix://``; a ``redis(s)`` URL
    needs a host and a numeric port if any. The message never shows a
    password."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number in range
    except ValueError as e:
        return f"not a valid URL ({e}): {redact_url(url)}"
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES or "://" not in url:
        return f"expected a redis://, rediss:// or unix:// URL, got {redact_url(url)!r}"
    if scheme == "unix":
        return None if parts.path else f"a unix:// URL needs the socket's path: {redact_url(url)}"
    if not parts.hostname:
        return f"the URL has no host: {redact_url(url)}"
    return None


def warn_line(message: str) -> None:
    """Write ``llmops: warning: <message>`` as one line on stderr."""
    sys.stderr.write(f"llmops: warning: {' '.join(message.split())}\n")
    sys.stderr.flush()


def _batches(items: Iterable[Any], n: int) -> Iterator[list[Any]]:
    it = iter(items)
    while batch := list(islice(it, n)):
        yield batch


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


class RedisCache:
    """The cache in Redis at ``url``, with the interface of the SQLite
    :class:`~llmops_cli.core.cache.sqlite.Cache`: ``get(key)``/``put(key, model,
    value)`` for answers (counted in ``hits`` and ``misses``),
    ``get_memo``/``put_memo`` for memoised results, ``open``, ``info``,
    ``clear``, ``close``.

    ``ttl_s``: seconds an entry lives after it is written (``None``: no
    expiry). ``prefix``: the keys' namespace. ``timeout_s``: connect and
    command timeout, seconds. ``warn``: called once with a one-line message
    when Redis fails during a run (default: :func:`warn_line`).

    During a run nothing raises: after the first failure every ``get`` is a
    miss and every ``put`` does nothing. :meth:`open`, :meth:`info` and
    :meth:`clear` raise :class:`CacheUnavailable` instead.
    """

    def __init__(self, url: str, *, ttl_s: int | None = None, prefix: str = DEFAULT_PREFIX,
                 timeout_s: float = TIMEOUT_S, warn: Callable[[str], None] | None = None):
        self.url = url
        self.shown = redact_url(url)
        self.path = self.shown  # what messages and `llmops cache info` show
        self.ttl_s = int(ttl_s) if ttl_s else None
        self.prefix = prefix
        self.timeout_s = timeout_s
        self.hits = 0
        self.misses = 0
        self.down: str | None = None  # why Redis stopped being used during the run
        self._warn = warn
        self._client: Any = None
        self._lock = threading.Lock()

    # -- plumbing ----------------------------------------------------------
    def _reason(self, exc: BaseException) -> str:
        """``exc`` as one short line, with no secret of the URL in it."""
        text = " ".join(str(exc).split()) or type(exc).__name__
        try:
            parts = urlsplit(self.url)
            secrets = [unquote(s) for s in (parts.password, parts.username) if s]
        except ValueError:
            secrets = []
        for s in secrets:
            if len(s) >= 3:
                text = text.replace(s, "***")
        return re.sub(r"://[^\s@/]*@", "://***@", text)[:300]

    def _connect(self):
        if self._client is None:
            problem = check_url(self.url)
            if problem:
                raise InputError(None, "cache.url", problem)
            try:
                import redis
                from redis.backoff import NoBackoff
                from redis.retry import Retry
            except ImportError:
                raise CacheUnavailable(f"cache {self.shown} unusable (the redis client is not installed: pip install "
                                       "'llmops-cli[redis]')") from None
            self._client = redis.Redis.from_url(
                self.url, socket_timeout=self.timeout_s, socket_connect_timeout=self.timeout_s,
                retry=Retry(NoBackoff(), 0), retry_on_timeout=False, health_check_interval=0)
        return self._client

    def _unavailable(self, exc: BaseException) -> CacheUnavailable:
        word = "unreachable" if _is_connection_error(exc) else "unusable"
        return CacheUnavailable(f"cache {self.shown} {word} ({self._reason(exc)})")

    def _key(self, kind: str, key: str) -> str:
        return f"{self.prefix}:{kind}:{key}"

    def _do(self, op: Callable[[Any], Any]) -> Any:
        """``op(client)``, or ``None`` once Redis has failed (warning once)."""
        if self.down is not None:
            return None
        try:
            return op(self._connect())
        except CacheUnavailable as err:
            self._fail(err.message)
        except Exception as exc:  # redis.RedisError, OSError: degrade, never stop the run
            if not _is_redis_error(exc):
                raise
            self._fail(f"cache {self.shown} failed ({self._reason(exc)})")
        return None

    def _fail(self, message: str) -> None:
        with self._lock:
            if self.down is not None:
                return
            self.down = message
        (self._warn or warn_line)(f"{message}; running uncached from here")

    # -- the interface -----------------------------------------------------
    def open(self) -> "RedisCache":
        """Connect, and write a probe key (``<prefix>:probe``, expiring after
        60 s), so that a Redis that cannot be reached or written fails now,
        before any model call.

        Raises:
            CacheUnavailable: refused, unknown host, timeout (``timeout_s``
                seconds), wrong password, read-only replica, or redis-py not
                installed; the message names the URL without its password.
            InputError: not a redis://, rediss:// or unix:// URL."""
        client = self._connect()
        try:
            client.set(self._key("probe", "open"), str(time.time()), ex=60)
        except Exception as exc:
            if not _is_redis_error(exc):
                raise
            raise self._unavailable(exc) from None
        return self

    def get(self, key: str) -> dict[str, Any] | None:
        """The answer stored under ``key`` (a :func:`~llmops_cli.core.cache.cache_key`),
        or ``None`` (also when Redis has failed or the entry does not parse)."""
        raw = self._do(lambda c: c.get(self._key("answer", key)))
        value = None
        if raw is not None:
            try:
                value = json.loads(raw)["value"]
            except (ValueError, TypeError, KeyError):
                value = None
        if value is None:
            self.misses += 1
            return None
        self.hits += 1
        return value

    def put(self, key: str, model: str, value: dict[str, Any]) -> None:
        """Store the JSON-serialisable answer ``value`` of ``model`` under
        ``key``, expiring after ``ttl_s`` seconds if set."""
        text = json.dumps({"model": model, "created": time.time(), "value": value}, ensure_ascii=False)
        self._do(lambda c: c.set(self._key("answer", key), text, ex=self.ttl_s))

    def get_memo(self, key: str) -> Any:
        """A memoised derived result (see :func:`~llmops_cli.core.cache.memoised`),
        or ``None``. Not counted as a hit or miss."""
        raw = self._do(lambda c: c.get(self._key("memo", key)))
        if raw is None:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return None

    def put_memo(self, key: str, value: Any) -> None:
        """Store a JSON-serialisable derived result under ``key``."""
        text = json.dumps(value)
        self._do(lambda c: c.set(self._key("memo", key), text, ex=self.ttl_s))

    def info(self) -> dict[str, Any]:
        """``{path, entries, bytes, models: {model: entries}, memo: {kind: entries}}``
        like the SQLite cache's: ``path`` is the URL (password redacted) and
        prefix, ``bytes`` the size of the stored values. Scans only the keys
        under the prefix.

        Raises:
            CacheUnavailable: Redis cannot be reached or used."""
        client = self._connect()
        models: Counter = Counter()
        memo: Counter = Counter()
        entries = size = 0
        skip = len(self._key("memo", ""))
        try:
            for batch in _batches(client.scan_iter(match=self._pattern("answer"), count=1000), _BATCH):
                for raw in client.mget(batch):
                    if raw is None:  # expired meanwhile
                        continue
                    entries += 1
                    size += len(raw)
                    try:
                        models[json.loads(raw).get("model") or "?"] += 1
                    except (ValueError, AttributeError):
                        models["?"] += 1
            for batch in _batches(client.scan_iter(match=self._pattern("memo"), count=1000), _BATCH):
                pipe = client.pipeline(transaction=False)
                for k in batch:
                    pipe.strlen(k)
                for k, n in zip(batch, pipe.execute()):
                    if n:
                        memo[k.decode("utf-8", "replace")[skip:].partition(":")[0]] += 1
                        size += n
        except Exception as exc:
            if not _is_redis_error(exc):
                raise
            raise self._unavailable(exc) from None
        return {"path": f"{self.shown} (keys {self.prefix}:*)", "entries": entries, "bytes": size,
                "models": dict(models), "memo": dict(memo)}

    def clear(self) -> int:
        """Delete every answer and memoised result under the prefix (never the
        rest of the database); returns how many answers were deleted.

        Raises:
            CacheUnavailable: Redis cannot be reached or used."""
        client = self._connect()
        n = 0
        try:
            for kind in ("answer", "memo", "probe"):
                for batch in _batches(client.scan_iter(match=self._pattern(kind), count=1000), _BATCH):
                    deleted = client.unlink(*batch)
                    n += deleted if kind == "answer" else 0
        except Exception as exc:
            if not _is_redis_error(exc):
                raise
            raise self._unavailable(exc) from None
        return n

    def close(self) -> None:
        """Close the connections (a later call reconnects)."""
        if self._client is not None:
            try:
                self._client.close()
            finally:
                self._client = None

    def _pattern(self, kind: str) -> str:
        return f"{_glob_escape(self.prefix)}:{kind}:*"


def _is_redis_error(exc: BaseException) -> bool:
    """A failure of Redis or of the connection to it (not a bug of ours)."""
    if isinstance(exc, OSError):
        return True
    try:
        from redis.exceptions import RedisError
    except ImportError:
        return False
    return isinstance(exc, RedisError)


def _is_connection_error(exc: BaseException) -> bool:
    try:
        from redis.exceptions import AuthenticationError, ConnectionError, TimeoutError
    except ImportError:
        return isinstance(exc, OSError)
    if isinstance(exc, AuthenticationError):
        return False
    return isinstance(exc, (ConnectionError, TimeoutError, OSError))
