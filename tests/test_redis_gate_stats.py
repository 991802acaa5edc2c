"""The verdict is computed, never read from a shared store: a Redis cache (a
real redis-server on 127.0.0.1) holds answers and scorer results, never the
gate's statistics (bootstrap summaries, Holm's flags)."""

from __future__ import annotations

from test_redis_cache import _no_cache_url, redis_server, right_answer, run, start_redis  # noqa: F401  (fixtures)
from llmops_cli.testing import FakeOpenAI


def test_a_redis_cache_holds_no_gate_statistics(make_project, litellm_loaded, redis_server):  # noqa: F811
    with FakeOpenAI(reply=right_answer) as srv:
        cfg = make_project(srv.url)
        # BLEU is bootstrapped (it was memoised through the cache); four gated metrics form a Holm family
        cfg.write_text(cfg.read_text().replace("    token_f1: {max_drop: 0.05}\n", "    token_f1: {max_drop: 0.05}\n"
                                               "    bleu: {max_drop: 5}\n    exact_match: {max_drop: 0.05}\n"
                                               "    rougeL: {max_drop: 0.05}\n"))
        assert run(["eval", cfg, "--update-baseline", "--cache-url", redis_server.url]).exit_code == 0
        first = run(["eval", cfg, "--cache-url", redis_server.url])
        again = run(["eval", cfg, "--cache-url", redis_server.url])
    assert first.exit_code == again.exit_code == 0
    keys = redis_server.keys()
    assert keys  # the answers are there
    assert not [k for k in keys if "bootstrap" in k or "holm" in k], keys
