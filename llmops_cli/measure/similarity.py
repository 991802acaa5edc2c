"""``semantic_similarity``: the cosine similarity of an output's embedding and
its closest reference's, through ``litellm.aembedding`` with the config's
pinned ``embedding`` model (hosted, or any OpenAI-compatible embedding
server such as Ollama). Scores are ``max(0, cos)``, 0–1; a case the model
failed counts as 0 in the gate, like every metric.

Embeddings are cached next to the answers (keyed by embedding model,
api_base and text), so a re-run embeds only new texts and a fully cached run
imports no LiteLLM.
"""

from __future__ import annotations

import math
from typing import Any

from llmops_cli.core.cache import Cache
from llmops_cli.config import Config
from llmops_cli.core.fingerprint import canonical_json, sha256_text
from llmops_cli.record.schema import CaseRecord, MetricSummary
from llmops_cli.measure.scorers import mean

NAME = "semantic_similarity"
BATCH = 64  # texts per embedding request


def cosine(a: list[float], b: list[float]) -> float:
    """Cosine similarity of two vectors (0 when either is all zeros)."""
    dot = sum(x * y for x, y in zip(a, b))
    na, nb = math.sqrt(sum(x * x for x in a)), math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0


def _key(cfg: Config, text: str) -> str:
    e = cfg.embedding
    assert e is not None  # Config requires embedding with semantic_similarity
    return "embedding:" + sha256_text(canonical_json([e.model, e.api_base, text]))


def embed(cfg: Config, texts: list[str], cache: Cache | None, retries: int = 8) -> dict[str, list[float]]:
    """Embeddings of ``texts`` (distinct), from ``cache`` or by calling the
    embedding model in batches of :data:`BATCH`.

    Raises:
        ConfigError: the embedding model's key is missing (before any call).
        RunIncomplete: the embedding model failed after its retries."""
    out: dict[str, list[float]] = {}
    todo = []
    for t in dict.fromkeys(texts):
        hit = cache.get_memo(_key(cfg, t)) if cache is not None else None
        if hit is not None:
            out[t] = hit
        else:
            todo.append(t)
    if todo:
        from llmops_cli.run import aio

        aio.run(_embed_all(cfg, todo, out, cache, retries))
    return out


async def _embed_all(cfg: Config, todo: list[str], out: dict, cache: Cache | None, retries: int) -> None:
    from llmops_cli.core.errors import RunIncomplete
    from llmops_cli.run.provider import import_litellm, key_from_env, redact, retrying

    e = cfg.embedding
    assert e is not None  # Config requires embedding with semantic_similarity
    key = key_from_env(e.api_key_env, cfg.path, "embedding.api_key_env")
    litellm = import_litellm()
    kwargs: dict[str, Any] = {"model": e.model, "timeout": e.timeout}
    if e.api_base:
        kwargs["api_base"] = e.api_base
    if key:
        kwargs["api_key"] = key
    for i in range(0, len(todo), BATCH):
        batch = todo[i: i + BATCH]
        try:
            async for attempt in retrying(retries):
                with attempt:
                    resp = await litellm.aembedding(input=batch, **kwargs)
        except Exception as exc:  # the metric cannot be computed: the run cannot complete
            raise RunIncomplete(redact(f"{NAME}: the embedding model {e.model} failed: {type(exc).__name__}: {exc}",
                                       (e.api_key_env,))[:500]) from None
        for item in resp.data:
            vec = item["embedding"] if isinstance(item, dict) else item.embedding
            idx = item["index"] if isinstance(item, dict) else item.index
            out[batch[idx]] = list(vec)
            if cache is not None:
                cache.put_memo(_key(cfg, batch[idx]), list(vec))


def score_similarity(cfg: Config, records: list[CaseRecord], cache: Cache | None) -> MetricSummary:
    """Fill ``CaseRecord.scores["semantic_similarity"]`` (repeats averaged;
    best over references) and return the summary; cases without an output
    stay unscored here (the gate counts them as 0)."""
    texts = [c.output for r in records for c in r.calls if c.error is None and c.output is not None]
    texts += [ref for r in records for ref in r.references]
    vectors = embed(cfg, texts, cache)
    per_case: list[float | None] = []
    for r in records:
        scores = [max(0.0, max((cosine(vectors[c.output], vectors[ref]) for ref in r.references), default=0.0))
                  for c in r.calls if c.error is None and c.output is not None]
        value = mean(scores) if scores else None
        r.scores[NAME] = value
        per_case.append(value)
    scored = sum(v is not None for v in per_case)
    assert cfg.embedding is not None  # Config requires embedding with semantic_similarity
    return MetricSummary(aggregate=mean(per_case), scale=1.0, n_scored=scored, n_unscored=len(per_case) - scored,
                         info={"embedding_model": cfg.embedding.model, "api_base": cfg.embedding.api_base})
