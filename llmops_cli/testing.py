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
* ``fail_every``: ``{k: status}``; the n-th request (1-based, counted over
  every request the server receives) answers ``status`` when ``n % k == 0``
  (the first matching rule wins). 429 answers carry ``Retry-After: 0``.
* ``down``: the port is bound and closed again at once, so connections are
  refused while :attr:`url` stays a well-formed address.
* ``served_model``: the ``model`` field of every answer (what served it);
  default ``None`` echoes the request's ``model``.
* ``system_fingerprint``: the answers' ``system_fingerprint`` (default
  ``"fp_fake"``); ``None`` leaves the field out.

``served_model``, ``system_fingerprint``, ``latency_s`` and ``fail_every`` are
plain attributes: assigning one on a running server changes the answers that
follow (e.g. a provider silently switching the model behind a name).

The server records every request body (:attr:`requests`) and its headers
(:attr:`headers`, case-insensitive dicts including ``Authorization``: tests
may check that a key was *sent*; those lists live only in memory), and counts requests in flight
(:attr:`in_flight`, :attr:`max_in_flight`) so that tests can check a
concurrency bound.
"""

from __future__ import annotations

import itertools
import json
import socket
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Sequence

__all__ = ["FakeOpenAI", "Headers", "echo_last_line"]

ReplyFn = Callable[[list[dict[str, Any]], dict[str, Any]], "str | tuple[int, str]"]

_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "permission_denied"),
    404: ("invalid_request_error", "unknown_url"),
    408: ("timeout", "timeout"),
    409: ("conflict", "conflict"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
}


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


class Headers(dict):
    """Request headers as a dict whose lookups ignore case (clients differ:
    aiohttp sends ``authorization``, httpx ``Authorization``). Keys are stored
    in canonical form (``Authorization``, ``Content-Type``)."""

    @staticmethod
    def _canon(key: Any) -> Any:
        return "-".join(w.capitalize() for w in key.split("-")) if isinstance(key, str) else key

    def __init__(self, items: Any = ()):
        super().__init__()
        for k, v in (items.items() if hasattr(items, "items") else items):
            self[k] = v

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(self._canon(key), value)

    def __getitem__(self, key: Any) -> Any:
        return super().__getitem__(self._canon(key))

    def __contains__(self, key: Any) -> bool:
        return super().__contains__(self._canon(key))

    def get(self, key: Any, default: Any = None) -> Any:
        return super().get(self._canon(key), default)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    allow_reuse_address = True

    fake: "FakeOpenAI"

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet when a client hangs up first (e.g. its timeout expired
        during ``latency_s``); report anything else as usual."""
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeOpenAI/1.0"
    disable_nagle_algorithm = True  # headers and body go out in two writes: without this each request waits ~40 ms
    timeout = 30  # idle keep-alive connections end after this many seconds
    server: _Server

    # -- plumbing ---------------------------------------------------------
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of the base class
        pass

    def setup(self) -> None:
        super().setup()
        self.server.fake._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.fake._track(self.connection, add=False)

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _send_error(self, status: int, message: str, err_type: str | None = None, code: str | None = None) -> None:
        default_type, default_code = _ERROR_TYPES.get(status, ("server_error" if status >= 500 else "invalid_request_error", None))
        payload = {"error": {"message": message, "type": err_type or default_type, "param": None, "code": code or default_code}}
        headers = {"Retry-After": "0"} if status == 429 else None
        self._send_json(status, payload, headers)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    # -- routes -----------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = self.path.split("?", 1)[0].rstrip("/")
        if path in ("/v1/models", "/models"):
            self._send_json(200, {"object": "list", "data": [{"id": "fake-model", "object": "model", "created": 0, "owned_by": "llmops-test"}]})
        else:
            self._send_error(404, f"Unknown request URL: GET {self.path}")

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        raw = self._read_body()  # always drain the body, so keep-alive stays in sync
        path = self.path.split("?", 1)[0].rstrip("/")
        if path not in ("/v1/chat/completions", "/chat/completions"):
            self._send_error(404, f"Unknown request URL: POST {self.path}")
            return
        try:
            body = json.loads(raw or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            body = None
            problem = f"could not parse the JSON body: {e}"
        else:
            problem = None if isinstance(body, dict) else "the JSON body must be an object"
        fake = self.server.fake
        n = fake._received(body if isinstance(body, dict) else {"_raw": raw.decode("utf-8", "replace")}, Headers(self.headers.items()))
        try:
            if fake.latency_s > 0:
                time.sleep(fake.latency_s)
            if problem:
                self._send_error(400, problem)
                return
            status = fake._failure_for(n)
            if status is not None:
                self._send_error(status, f"fake failure: request {n} answers {status}")
                return
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                self._send_error(400, "'messages' must be a non-empty list", code="invalid_value")
                return
            try:
                reply = fake._reply(messages, body)
            except Exception as e:  # a broken reply function answers 500, not a dropped connection
                self._send_error(500, f"reply function failed: {type(e).__name__}: {e}")
                return
            if isinstance(reply, tuple):
                status, message = reply
                self._send_error(int(status), str(message))
                return
            if body.get("stream"):
                self._stream(body, messages, reply)
            else:
                self._send_json(200, fake._completion(body, messages, reply))
        finally:
            fake._done()

    def _stream(self, body: dict[str, Any], messages: list[dict[str, Any]], text: str) -> None:
        """Answer as server-sent events, chunked transfer encoding."""
        fake = self.server.fake
        cid, created, model = fake._new_id(), int(time.time()), fake._model_for(body)

        def chunk(delta: dict[str, Any], finish: str | None = None, usage: dict | None = None) -> dict[str, Any]:
            c = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                 "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            if fake.system_fingerprint is not None:
                c["system_fingerprint"] = fake.system_fingerprint
            if usage is not None:
                c["usage"] = usage
            return c

        events = [chunk({"role": "assistant", "content": ""})]
        events += [chunk({"content": piece}) for piece in _pieces(text)]
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        events.append(chunk({}, "stop", fake._usage(messages, text) if include_usage else None))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for ev in events:
            self._write_chunk(f"data: {json.dumps(ev)}\n\n".encode("utf-8"))
        self._write_chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode("ascii") + data + b"\r\n")


def _pieces(text: str) -> list[str]:
    """Split ``text`` into word-sized stream deltas that join back to it."""
    parts: list[str] = []
    for i, word in enumerate(text.split(" ")):
        parts.append(word if i == 0 else " " + word)
    return [p for p in parts if p] or ([text] if text else [])


class FakeOpenAI:
    """An OpenAI-compatible chat-completions server on ``127.0.0.1``.

    Use as a context manager (``with FakeOpenAI() as srv:``) or call
    :meth:`start` / :meth:`stop`. :attr:`url` (``http://127.0.0.1:PORT/v1``)
    is the ``api_base`` to give the client.
    """

    def __init__(self, reply: ReplyFn | Sequence[str] | None = None, latency_s: float = 0.0,
                 fail_every: dict[int, int] | None = None, down: bool = False, served_model: str | None = None,
                 system_fingerprint: str | None = "fp_fake"):
        if reply is not None and not callable(reply):
            replies = list(reply)
            if not replies or not all(isinstance(r, str) for r in replies):
                raise ValueError("reply must be a callable or a non-empty list of strings")
        else:
            replies = None
        if latency_s < 0:
            raise ValueError("latency_s must be >= 0")
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
        self._server: _Server | None = None
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
            server = _Server(("127.0.0.1", 0), _Handler)
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

    def _received(self, body: dict[str, Any], headers: Headers) -> int:
        with self._lock:
            self.request_count += 1
            self.requests.append(body)
            self.headers.append(headers)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            return self.request_count

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
                "logprobs": None,
                "finish_reason": "stop",
            }],
            "usage": self._usage(messages, text),
        }
        if self.system_fingerprint is None:
            del out["system_fingerprint"]
        return out
