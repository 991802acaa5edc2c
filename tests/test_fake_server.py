"""The fake OpenAI-compatible server itself (llmops_cli.testing)."""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
import time
from urllib.parse import urlsplit

import pytest

from llmops_cli.testing import FakeOpenAI, Headers, echo_last_line


def _conn(srv: FakeOpenAI) -> http.client.HTTPConnection:
    u = urlsplit(srv.url)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=5)


def post(srv, body, path="/v1/chat/completions", conn=None, headers=None):
    c = conn or _conn(srv)
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    c.request("POST", path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
    r = c.getresponse()
    raw = r.read()
    if conn is None:
        c.close()
    return r, json.loads(raw) if raw else None


def chat(text="hello", model="fake-model", **kw):
    return {"model": model, "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}], **kw}


def test_chat_completion_shape(fake_server):
    r, body = post(fake_server, chat("Context: x y\nQuestion: who won?", model="my-model"),
                   headers={"Authorization": "Bearer sk-abc"})
    assert r.status == 200 and r.getheader("Content-Type") == "application/json"
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    assert body["model"] == "my-model" and isinstance(body["created"], int)
    assert body["choices"] == [{"index": 0, "message": {"role": "assistant", "content": "Question: who won?"},
                                "logprobs": None, "finish_reason": "stop"}]
    # whitespace tokens: "Be brief." (2) + "Context: x y\nQuestion: who won?" (6); reply 3
    assert body["usage"] == {"prompt_tokens": 8, "completion_tokens": 3, "total_tokens": 11}
    assert fake_server.requests == [chat("Context: x y\nQuestion: who won?", model="my-model")]
    h = fake_server.headers[0]
    assert h["Authorization"] == h["authorization"] == "Bearer sk-abc" and "AUTHORIZATION" in h


def test_both_paths_and_keep_alive(fake_server):
    c = _conn(fake_server)
    r1, b1 = post(fake_server, chat("one"), conn=c)
    sock = c.sock
    r2, b2 = post(fake_server, chat("two"), path="/chat/completions", conn=c)
    assert c.sock is sock and sock is not None  # the same connection served both
    assert r1.version == 11 and not r1.will_close
    assert [b1["choices"][0]["message"]["content"], b2["choices"][0]["message"]["content"]] == ["one", "two"]
    c.close()


def test_scripted_replies_cycle():
    with FakeOpenAI(reply=["a", "b"]) as srv:
        outs = [post(srv, chat())[1]["choices"][0]["message"]["content"] for _ in range(5)]
    assert outs == ["a", "b", "a", "b", "a"]


def test_reply_function_gets_messages_and_body():
    seen = []

    def reply(messages, body):
        seen.append((messages, body))
        return f"{body['model']}:{len(messages)}"

    with FakeOpenAI(reply=reply) as srv:
        assert post(srv, chat(temperature=0))[1]["choices"][0]["message"]["content"] == "fake-model:2"
    assert seen[0][1]["temperature"] == 0


def test_echo_default():
    assert echo_last_line([{"role": "user", "content": "a\nb\n\n"}], {}) == "b"
    assert echo_last_line([{"role": "user", "content": "first"}, {"role": "assistant", "content": "x"}], {}) == "first"
    assert echo_last_line([{"role": "user", "content": [{"type": "text", "text": "part one"}, {"type": "text", "text": "part two"}]}], {}) == "part two"
    assert echo_last_line([{"role": "system", "content": "s"}], {}) == ""


def test_fail_every():
    with FakeOpenAI(fail_every={5: 429, 7: 500}) as srv:
        results = [post(srv, chat(f"m{n}")) for n in range(1, 15)]
    statuses = [r.status for r, _ in results]
    assert statuses == [200, 200, 200, 200, 429, 200, 500, 200, 200, 429, 200, 200, 200, 500]
    r429, b429 = results[4]
    assert r429.getheader("Retry-After") == "0"
    assert b429["error"]["type"] == "rate_limit_error" and b429["error"]["code"] == "rate_limit_exceeded"
    assert "message" in b429["error"]
    r500, b500 = results[6]
    assert r500.getheader("Retry-After") is None and b500["error"]["type"] == "server_error"
    assert srv.failures == 4 and len(srv.requests) == 14


def test_errors_use_openai_error_shape(fake_server):
    r, body = post(fake_server, chat(), path="/v1/completions")
    assert r.status == 404 and set(body["error"]) == {"message", "type", "param", "code"}
    r, body = post(fake_server, b"{not json")
    assert r.status == 400 and body["error"]["type"] == "invalid_request_error"
    r, body = post(fake_server, {"model": "m", "messages": []})
    assert r.status == 400 and "messages" in body["error"]["message"]
    assert len(fake_server.requests) == 2  # bodies sent to the chat endpoint are recorded, even bad ones


def test_reply_may_answer_an_error_and_a_broken_reply_is_500():
    with FakeOpenAI(reply=lambda m, b: (401, "Incorrect API key provided")) as srv:
        r, body = post(srv, chat())
        assert r.status == 401 and body["error"]["message"] == "Incorrect API key provided"
    with FakeOpenAI(reply=lambda m, b: 1 / 0) as srv:
        r, body = post(srv, chat())
        assert r.status == 500 and "ZeroDivisionError" in body["error"]["message"]
        assert post(srv, chat())[0].status == 500  # still serving


def test_models_endpoint(fake_server):
    c = _conn(fake_server)
    c.request("GET", "/v1/models")
    r = c.getresponse()
    assert r.status == 200 and json.loads(r.read())["data"][0]["id"] == "fake-model"


def test_streaming(fake_server):
    c = _conn(fake_server)
    c.request("POST", "/v1/chat/completions", body=json.dumps(chat("stream these words", stream=True,
                                                                      stream_options={"include_usage": True})))
    r = c.getresponse()
    assert r.status == 200 and r.getheader("Content-Type") == "text/event-stream"
    events = [ln[len("data: "):] for ln in r.read().decode().splitlines() if ln.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(ch["object"] == "chat.completion.chunk" for ch in chunks)
    assert "".join(ch["choices"][0]["delta"].get("content", "") for ch in chunks) == "stream these words"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop" and chunks[-1]["usage"]["completion_tokens"] == 3


def test_latency_and_concurrency():
    n = 32
    with FakeOpenAI(latency_s=0.2) as srv:
        statuses = []
        threads = [threading.Thread(target=lambda i=i: statuses.append(post(srv, chat(f"m{i}"))[0].status)) for i in range(n)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0
    assert statuses == [200] * n
    assert srv.max_in_flight == n and srv.in_flight == 0  # all were served at once...
    assert 0.2 <= elapsed < 1.5  # ... not one after the other (32 × 0.2 s)


def test_down_server_refuses_connections():
    srv = FakeOpenAI(down=True)
    with srv:
        assert srv.url.startswith("http://127.0.0.1:") and srv.url.endswith("/v1") and srv.port
        with pytest.raises(ConnectionRefusedError):
            post(srv, chat())
    assert srv.requests == []


def test_stop_refuses_new_connections_and_is_idempotent():
    srv = FakeOpenAI().start()
    keep = _conn(srv)
    post(srv, chat(), conn=keep)  # an idle keep-alive connection stays open
    srv.stop()
    srv.stop()
    with pytest.raises(ConnectionRefusedError):
        post(srv, chat())
    with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
        post(srv, chat(), conn=keep)
    keep.close()


def test_reset_and_validation():
    with FakeOpenAI(reply=["a", "b"]) as srv:
        post(srv, chat())
        srv.reset()
        assert srv.requests == [] and srv.headers == [] and srv.request_count == 0
        assert post(srv, chat())[1]["choices"][0]["message"]["content"] == "a"
    with pytest.raises(ValueError):
        FakeOpenAI(reply=[])
    with pytest.raises(ValueError):
        FakeOpenAI(fail_every={0: 500})


def test_headers_mapping():
    h = Headers([("content-type", "a"), ("X-Stainless-OS", "Linux")])
    assert h["Content-Type"] == "a" and h.get("x-stainless-os") == "Linux" and "CONTENT-TYPE" in h
    assert h.get("missing", 1) == 1


def test_through_litellm(litellm_loaded, fake_server):
    r = asyncio.run(litellm_loaded.acompletion(model="openai/fake-model", api_base=fake_server.url,
                                               messages=[{"role": "user", "content": "hi there"}], num_retries=0, max_retries=0))
    assert r.choices[0].message.content == "hi there" and r.usage.total_tokens == 4
    assert fake_server.requests[0]["model"] == "fake-model"
    assert fake_server.headers[0]["Authorization"].startswith("Bearer sk-llmops-test-")
