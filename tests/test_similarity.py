"""semantic_similarity through the real HTTP path: litellm.aembedding to the
fake server's /v1/embeddings, cached like answers, gated like every metric."""

from __future__ import annotations

import pytest

from conftest import ANSWERS
from llmops_cli.core.cache import Cache
from llmops_cli.config import load_config
from llmops_cli.core.errors import ConfigError
from llmops_cli.jobs.runner import run_eval
from llmops_cli.measure.similarity import cosine
from llmops_cli.testing import FakeOpenAI


def answer(messages, body):
    return ANSWERS[messages[-1]["content"].rsplit("Question: ", 1)[-1].strip()]


def config(make_project, url: str):
    cfg = make_project(url, extra=f"embedding: {{model: openai/fake-embedding, api_base: '{url}'}}\n")
    cfg.write_text(cfg.read_text().replace("metrics: [exact_match, token_f1, bleu, rougeL]",
                                           "metrics: [token_f1, semantic_similarity]"))
    return cfg


def test_similarity_is_the_cosine_of_embeddings_and_is_cached(make_project, litellm_loaded, tmp_path):
    with FakeOpenAI(reply=answer) as srv:
        cfg = load_config(config(make_project, srv.url))
        cache = Cache(tmp_path / "cache").open()
        rec = run_eval(cfg, cache=cache)
        embed_requests = [r for r in srv.requests if "input" in r]
        assert embed_requests and all(r["model"] == "fake-embedding" for r in embed_requests)
        by_id = rec.case_map()
        expected = max(cosine(FakeOpenAI.embed(answer_text), FakeOpenAI.embed(ref))
                       for answer_text in [by_id["q1"].output] for ref in by_id["q1"].references)
        assert by_id["q1"].scores["semantic_similarity"] == pytest.approx(expected)
        assert by_id["q3"].scores["semantic_similarity"] == pytest.approx(1.0)  # "Von Miller" == "Von Miller"
        assert by_id["q5"].scores["semantic_similarity"] == pytest.approx(0.0)  # "Beyonce" vs "Lady Gaga"
        assert 0 < rec.metrics["semantic_similarity"].aggregate < 1
        n = srv.request_count
        again = run_eval(cfg, cache=cache)
        assert srv.request_count == n  # answers and embeddings both from the cache
        assert again.metrics["semantic_similarity"].aggregate == rec.metrics["semantic_similarity"].aggregate


def test_similarity_needs_an_embedding_model(make_project):
    cfg = make_project()
    cfg.write_text(cfg.read_text().replace("metrics: [exact_match, token_f1, bleu, rougeL]",
                                           "metrics: [token_f1, semantic_similarity]"))
    with pytest.raises(ConfigError, match="embedding"):
        load_config(cfg)
