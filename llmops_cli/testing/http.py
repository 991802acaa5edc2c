"""The HTTP side of :class:`~llmops_cli.testing.FakeOpenAI`: a threading
server on 127.0.0.1 and the request handler that answers OpenAI's
chat-completions (plain and streamed), models and error JSON. The answers
themselves come from the :class:`FakeOpenAI` the server belongs to.
"""

from __future__ import annotations

import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmops_cli.testing import FakeOpenAI

_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "permission_denied"),
    404: ("invalid_request_error", "unknown_url"),
    408: ("timeout", "timeout"),
    409: ("conflict", "conflict"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
}


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


class Server(ThreadingHTTPServer):
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


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeOpenAI/1.0"
    disable_nagle_algorithm = True  # headers and body go out in two writes: without this each request waits ~40 ms
    timeout = 30  # idle keep-alive connections end after this many seconds
    server: Server

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

    def _embeddings(self, raw: bytes) -> None:
        """OpenAI's ``/v1/embeddings``: each input gets the fake's embedding
        (a bag of hashed words, so texts sharing words are close)."""
        fake = self.server.fake
        try:
            body = json.loads(raw or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            self._send_error(400, f"could not parse the JSON body: {e}")
            return
        n = fake._received(body if isinstance(body, dict) else {}, Headers(self.headers.items()))
        try:
            inputs = body.get("input") if isinstance(body, dict) else None
            inputs = [inputs] if isinstance(inputs, str) else inputs
            if not isinstance(inputs, list) or not all(isinstance(t, str) for t in inputs):
                self._send_error(400, "'input' must be a string or a list of strings", code="invalid_value")
                return
            status = fake._failure_for(n)
            if status is not None:
                self._send_error(status, f"fake failure: request {n} answers {status}")
                return
            data = [{"object": "embedding", "index": i, "embedding": fake.embed(t)} for i, t in enumerate(inputs)]
            tokens = sum(len(t.split()) for t in inputs)
            self._send_json(200, {"object": "list", "data": data, "model": body.get("model", "fake-embedding"),
                                  "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})
        finally:
            fake._done()

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
        if path in ("/v1/embeddings", "/embeddings"):
            self._embeddings(raw)
            return
        if path not in ("/v1/chat/completions", "/chat/completions"):
            self._send_error(404, f"Unknown request URL: POST {self.path}")
            return
        try:
            body = json.loads(raw or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            body = None
            problem: str | None = f"could not parse the JSON body: {e}"
        else:
            problem = None if isinstance(body, dict) else "the JSON body must be an object"
        fake = self.server.fake
        n = fake._received(body if isinstance(body, dict) else {"_raw": raw.decode("utf-8", "replace")}, Headers(self.headers.items()))
        try:
            with fake.serving():  # a server with slots queues the request here until one is free
                self._answer(fake, n, body, problem)
        finally:
            fake._done()

    def _answer(self, fake, n: int, body: Any, problem: str | None) -> None:
        """Answer one chat-completions request (holding a slot, if the server has them)."""
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

    def _stream(self, body: dict[str, Any], messages: list[dict[str, Any]], text: str) -> None:
        """Answer as server-sent events, chunked transfer encoding."""
        fake = self.server.fake
        cid, created, model = fake._new_id(), int(time.time()), fake._model_for(body)

        def chunk(delta: dict[str, Any], finish: str | None = None, usage: dict | None = None,
                  logprobs: dict | None = None) -> dict[str, Any]:
            c = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                 "choices": [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}]}
            if fake.system_fingerprint is not None:
                c["system_fingerprint"] = fake.system_fingerprint
            if usage is not None:
                c["usage"] = usage
            return c

        events = [chunk({"role": "assistant", "content": ""})]
        pieces = _pieces(text)
        lp = fake._logprobs_for(body, text)  # one token per piece: each chunk carries its own
        tokens = lp["content"] if lp else [None] * len(pieces)
        events += [chunk({"content": piece}, logprobs={"content": [tok], "refusal": None} if tok else None)
                   for piece, tok in zip(pieces, tokens)]
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
