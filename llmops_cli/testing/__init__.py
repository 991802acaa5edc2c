"""A fake OpenAI-compatible chat-completions server, for tests and benchmarks.

A real HTTP server on ``127.0.0.1`` (a free port picked by the OS), built on
the standard library only (``http.server.ThreadingHTTPServer`` in a daemon
thread), so that a run goes through exactly the same client path (LiteLLM →
OpenAI SDK → HTTP) as against a hosted model, without the network::

    from llmops_cli.testing import FakeOpenAI

    with FakeOpenAI(reply=["Denver Broncos", "Carolina Panthers"]) as srv:
        ...  # point ``api_base`` at ``srv.url``
        assert len(srv.requests) == 2

It answers ``POST /v1/chat/completions`` (and ``/chat/completions``) with a
standard ``chat.completion`` object (or, for ``"stream": true``, server-sent
``chat.completion.chunk`` events), ``GET /v1/models`` with a model list, and
everything else with OpenAI's error JSON ``{"error": {message, type, param,
code}}``.

Options:

* ``reply``: ``callable(messages, body) -> str``, or a list of strings used in
  turn (cycling). Default: the last line of the last user message (an echo).
  A callable may also return a ``(status, message)`` tuple to answer an error.
* ``latency_s``: seconds to sleep before answering each request.
* ``slots``: how many requests are served at once (default ``None``: all of
  them); the others wait in a queue, in arrival order, without an error — as
  llama.cpp's server (one slot), Ollama or vLLM under load do. ``latency_s``
  is then each request's service time once it holds a slot.
* ``fail_every``: ``{k: status}``; the n-th request (1-based, counted over
  every request the server receives) answers ``status`` when ``n % k == 0``
  (the first matching rule wins). 429 answers carry ``Retry-After: 0``.
* ``down``: the port is bound and closed again at once, so connections are
  refused while :attr:`url` stays a well-formed address.
* ``served_model``: the ``model`` field of every answer (what served it);
  default ``None`` echoes the request's ``model``.
* ``system_fingerprint``: the answers' ``system_fingerprint`` (default
  ``"fp_fake"``); ``None`` leaves the field out.
* ``logprobs``: answer a request with ``"logprobs": true`` with OpenAI's
  ``choices[0].logprobs`` (default ``True``): one entry per token — the
  word-sized pieces a stream sends — with the fake log-probability
  :meth:`FakeOpenAI.token_logprob` (and ``top_logprobs`` alternatives: the
  token itself); ``False`` ignores the parameter, like a provider that has
  none. A request without it gets ``"logprobs": null``.

``served_model``, ``system_fingerprint``, ``latency_s``, ``fail_every`` and ``logprobs`` are
plain attributes: assigning one on a running server changes the answers that
follow (e.g. a provider silently switching the model behind a name).

The server records every request body (:attr:`requests`) and its headers
(:attr:`headers`, case-insensitive dicts including ``Authorization``: tests
may check that a key was *sent*; those lists live only in memory), and counts requests in flight
(:attr:`in_flight`, :attr:`max_in_flight`) so that tests can check a
concurrency bound.
"""

from __future__ import annotations

import hashlib
import itertools
import socket
import threading
import time
import uuid
from typing import Any, Callable, Sequence

from llmops_cli.testing.http import Headers, Handler, Server, _pieces

__all__ = ["FakeOpenAI", "Headers", "echo_last_line"]

ReplyFn = Callable[[list[dict[str, Any]], dict[str, Any]], "str | tuple[int, str]"]


def _content_text(content: Any) -> str:
    """The text of a message's ``content``: a string, or a list of parts
    (``{"type": "text", "text": ...}``) as in OpenAI's multimodal format."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    return str(content)


def echo_last_line(messages: list[dict[str, Any]], body: dict[str, Any]) -> str:
    """The default reply: the last non-empty line of the last user message."""
    for m in reversed(messages):
        if isinstance(m, dict) and m.get("role") == "user":
            lines = [ln.strip() for ln in _content_text(m.get("content")).splitlines() if ln.strip()]
            return lines[-1] if lines else ""
    return ""


def _count_tokens(text: str) -> int:
    return len(text.split())


class FakeOpenAI:
    """An OpenAI-compatible chat-completions server on ``127.0.0.1``.

    Use as a context manager (``with FakeOpenAI() as srv:``) or call
    :meth:`start` / :meth:`stop`. :attr:`url` (``http://127.0.0.1:PORT/v1``)
    is the ``api_base`` to give the client.
    """

    def __init__(self, reply: ReplyFn | Sequence[str] | None = None, latency_s: float = 0.0,
                 fail_every: dict[int, int] | None = None, down: bool = False, served_model: str | None = None,
                 system_fingerprint: str | None = "fp_fake", logprobs: bool = True, slots: int | None = None):
        if reply is not None and not callable(reply):
            replies = list(reply)
            if not replies or not all(isinstance(r, str) for r in replies):
                raise ValueError("reply must be a callable or a non-empty list of strings")
        else:
            replies = None
        if latency_s < 0:
            raise ValueError("latency_s must be >= 0")
        if slots is not None and (not isinstance(slots, int) or slots < 1):
            raise ValueError(f"slots must be a positive integer or None, got {slots!r}")
        for k in (fail_every or {}):
            if not isinstance(k, int) or k < 1:
                raise ValueError(f"fail_every keys must be positive integers, got {k!r}")
        self.reply_fn: ReplyFn | None = reply if callable(reply) else None
        self.replies: list[str] | None = replies
        self.latency_s = latency_s
        self.fail_every: dict[int, int] = dict(fail_every or {})
        self.down = down
        self.served_model = served_model
        self.system_fingerprint = system_fingerprint
        self.logprobs = logprobs
        self.slots = slots
        self._serving = threading.Semaphore(slots) if slots else None  # FIFO enough: threads wake in wait order
        self.url = ""
        self.port: int | None = None
        self.requests: list[dict[str, Any]] = []
        self.headers: list[Headers] = []
        self.request_count = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.failures = 0
        self._lock = threading.Lock()
        self._cycle = itertools.count()
        self._ids = itertools.count(1)
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()

    # -- lifecycle --------------------------------------------------------
    def start(self) -> "FakeOpenAI":
        """Start serving (idempotent). Returns ``self``."""
        if self._server is not None or (self.down and self.port is not None):
            return self
        if self.down:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
            s.close()  # nothing listens there now: connections are refused
        else:
            server = Server(("127.0.0.1", 0), Handler)
            server.fake = self
            self._server = server
            self.port = server.server_address[1]
            self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                            name=f"FakeOpenAI:{self.port}", daemon=True)
            self._thread.start()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        return self

    def stop(self) -> None:
        """Stop serving and drop open keep-alive connections (idempotent)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "FakeOpenAI":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget recorded requests and counters (the reply cycle restarts)."""
        with self._lock:
            self.requests.clear()
            self.headers.clear()
            self.request_count = 0
            self.max_in_flight = self.in_flight
            self.failures = 0
            self._cycle = itertools.count()

    def __repr__(self) -> str:
        state = "down" if self.down else ("running" if self._server else "stopped")
        return f"<FakeOpenAI {self.url or '(not started)'} {state}, {self.request_count} requests>"

    # -- used by the handler ------------------------------------------------
    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            (self._conns.add if add else self._conns.discard)(conn)

    @staticmethod
    def embed(text: str, dims: int = 64) -> list[float]:
        """The fake embedding of ``text`` (``POST /v1/embeddings``): counts of
        its lower-cased words hashed into ``dims`` buckets, unit length, so
        texts that share words have a high cosine similarity."""
        import hashlib
        import math

        v = [0.0] * dims
        for word in text.lower().split():
            v[int(hashlib.sha256(word.strip(".,;:!?'\"").encode()).hexdigest(), 16) % dims] += 1.0
        norm = math.sqrt(sum(x * x for x in v)) or 1.0
        return [x / norm for x in v]

    @staticmethod
    def token_logprob(token: str) -> float:
        """The fake log-probability (natural log) of ``token``: a value in
        (−5, 0) from its SHA-256, so the same token always gets the same."""
        h = int.from_bytes(hashlib.sha256(token.encode("utf-8")).digest()[:8], "big")
        return -5.0 * (h + 1) / (2 ** 64 + 1)

    @classmethod
    def token_logprobs(cls, text: str, top: int = 0) -> dict[str, Any]:
        """OpenAI's ``choices[0].logprobs`` for an answer ``text``: its tokens
        (word-sized pieces that join back to it) with :meth:`token_logprob`,
        and the token itself as its only alternative when ``top`` > 0."""
        content = []
        for tok in _pieces(text):
            entry = {"token": tok, "logprob": cls.token_logprob(tok), "bytes": list(tok.encode("utf-8"))}
            content.append({**entry, "top_logprobs": [entry] if top > 0 else []})
        return {"content": content, "refusal": None}

    def _logprobs_for(self, body: dict[str, Any], text: str) -> dict[str, Any] | None:
        """The answer's ``logprobs``: present when asked for and :attr:`logprobs` is on."""
        if not (self.logprobs and body.get("logprobs") is True):
            return None
        top = body.get("top_logprobs")
        return self.token_logprobs(text, top if isinstance(top, int) else 0)

    def _received(self, body: dict[str, Any], headers: Headers) -> int:
        with self._lock:
            self.request_count += 1
            self.requests.append(body)
            self.headers.append(headers)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            return self.request_count

    def serving(self):
        """A context held while one request is served: one of :attr:`slots`
        (waiting for it is the server's queue), or nothing without slots."""
        import contextlib

        return self._serving if self._serving is not None else contextlib.nullcontext()

    def _done(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def _failure_for(self, n: int) -> int | None:
        for k, status in self.fail_every.items():
            if n % k == 0:
                with self._lock:
                    self.failures += 1
                return int(status)
        return None

    def _reply(self, messages: list[dict[str, Any]], body: dict[str, Any]) -> "str | tuple[int, str]":
        if self.replies is not None:
            with self._lock:
                i = next(self._cycle)
            return self.replies[i % len(self.replies)]
        fn = self.reply_fn or echo_last_line
        return fn(messages, body)

    def _new_id(self) -> str:
        with self._lock:
            n = next(self._ids)
        return f"chatcmpl-fake{n:06d}{uuid.uuid4().hex[:8]}"

    @staticmethod
    def _usage(messages: list[dict[str, Any]], text: str) -> dict[str, int]:
        prompt = sum(_count_tokens(_content_text(m.get("content"))) for m in messages if isinstance(m, dict))
        completion = _count_tokens(text)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def _model_for(self, body: dict[str, Any]) -> str:
        """The ``model`` an answer names: :attr:`served_model`, else the request's."""
        return self.served_model or body.get("model") or "fake-model"

    def _completion(self, body: dict[str, Any], messages: list[dict[str, Any]], text: str) -> dict[str, Any]:
        out = {
            "id": self._new_id(),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self._model_for(body),
            "system_fingerprint": self.system_fingerprint,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": self._logprobs_for(body, text),
                "finish_reason": "stop",
            }],
            "usage": self._usage(messages, text),
        }
        if self.system_fingerprint is None:
            del out["system_fingerprint"]
        return out
