"""Plan: what the run will ask, decided before any model call.

* :mod:`.dataset` — the eval set: cases, field mapping, sampling, slice values, hashing.
* :mod:`.retrieval` — the corpus, chunking and BM25 retrieval (bm25s).
* :mod:`.prompt` — Jinja2 templates (sandboxed rendering, variables).
* :mod:`.shards` — ``--shard k/n``: which cases a shard holds.
* :mod:`.requests` — :func:`make_plan`: cases, retrieval, rendered messages, the
  requests and their cache keys (:class:`Endpoint`: where a request goes).

Stands on config, record and core.
"""

from llmops_cli.core.exports import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    "Case": "dataset", "load_dataset": "dataset", "dataset_hash": "dataset",
    "load_corpus": "retrieval", "retrieve": "retrieval",
    "render": "prompt", "render_messages": "prompt",
    "parse_shard": "shards", "select": "shards",
    "Plan": "requests", "Request": "requests", "make_plan": "requests", "model_endpoint": "requests",
})
__all__ = __dir__()
