"""Which errors are retried and how often (llmops_cli.run.faults), through the
HTTP path: overload statuses up to --retries, a plain 500 at most twice, a
500 whose body is a validation of the request never (llama.cpp's server
answers a response_format it does not take so); none of them is a score."""

from __future__ import annotations

import pytest

from llmops_cli.config import load_config
from llmops_cli.run.faults import SERVER_ERROR_RETRIES
from llmops_cli.jobs.runner import run_eval
from llmops_cli.testing import FakeOpenAI

VALIDATION = ("1 validation error: {'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), "
              "'msg': \"Input should be 'text' or 'json_object'\"}")


@pytest.mark.parametrize("status, message, attempts", [
    (500, VALIDATION, 1),  # permanent, dressed as a 500: not retried
    (500, "internal error", 1 + SERVER_ERROR_RETRIES),  # a plain 500: retried, but only twice
    (503, "overloaded", 1 + 3),  # overload: every retry (--retries 3)
    (400, "bad request", 1),
])
def test_retries_by_kind_of_error(make_project, litellm_loaded, status, message, attempts):
    with FakeOpenAI(reply=lambda m, b: (status, message)) as srv:
        cfg = load_config(make_project(srv.url, max_error_share=1.0))
        rec = run_eval(cfg, concurrency=1, cache=None, retries=3)
    n = len(rec.cases)
    assert srv.request_count == n * attempts
    assert all(c.calls[0].error and message[:12] in c.calls[0].error for c in rec.cases)
    assert all(v is None for c in rec.cases for v in c.scores.values())  # errors, never scores
