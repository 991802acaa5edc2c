"""Honest latency, through the HTTP path: ``latency_s`` is the answering
attempt's time (request sent → response received), not the wait for a slot
of the concurrency limit (``queue_s``) nor the retries' back-off and failed
attempts (``backoff_s``); all three are in the run record."""

from __future__ import annotations

import json

from conftest import ANSWERS
from llmops_cli.config import load_config
from llmops_cli.jobs.runner import run_eval
from llmops_cli.testing import FakeOpenAI

LATENCY = 0.3


def answer(messages, body):
    return ANSWERS[messages[-1]["content"].rsplit("Question: ", 1)[-1].strip()]


def test_latency_excludes_queue_wait_and_back_off(make_project, litellm_loaded, tmp_path):
    # every 2nd request answers 500 after the same latency: retried, with back-off
    with FakeOpenAI(reply=answer, latency_s=LATENCY, fail_every={2: 500}) as srv:
        rec = run_eval(load_config(make_project(srv.url)), concurrency=1, cache=None)
    calls = [c for case in rec.cases for c in case.calls]
    assert all(c.error is None for c in calls) and len(calls) >= 3
    retried = [c for c in calls if c.retries]
    assert retried  # the failures were retried
    for c in calls:
        assert LATENCY <= c.latency_s < 1.6 * LATENCY  # one attempt, never the failed one before it
        assert c.queue_s is not None and c.backoff_s is not None
    assert all(c.backoff_s > 0 for c in retried) and all(c.backoff_s < 0.05 for c in calls if not c.retries)
    assert all(c.queue_s < 0.05 for c in calls)  # -j 1: one worker, each call starts when the one before ended
    path = tmp_path / "run.json"
    from llmops_cli.record.schema import save_record

    save_record(rec, path)
    saved = json.loads(path.read_text())["cases"][0]["calls"][0]
    assert {"latency_s", "queue_s", "backoff_s"} <= saved.keys()


def test_waiting_for_a_slot_is_queue_s_not_latency(make_project, litellm_loaded):
    """Adaptive, starting at 8 calls in flight: the calls beyond the first 8
    wait for a slot; that wait is ``queue_s``, their latency stays the server's."""
    from conftest import QUESTIONS

    questions = [{**q, "id": f"{q['id']}-{k}"} for k in range(4) for q in QUESTIONS][:20]
    with FakeOpenAI(reply=answer, latency_s=LATENCY) as srv:
        rec = run_eval(load_config(make_project(srv.url, questions=questions)), cache=None)
    calls = [c for case in rec.cases for c in case.calls]
    assert len(calls) == 20 and all(c.error is None for c in calls)
    assert sum(c.queue_s >= 0.8 * LATENCY for c in calls) >= 4  # waited about a round for a slot
    assert all(c.latency_s < 2 * LATENCY for c in calls)  # the wait is not in the latency
