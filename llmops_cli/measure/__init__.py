"""Measure: every answer scored, per case, with the reason.

* :mod:`.scorers` — the metric registry (:data:`SCORERS`, :func:`register`) and the
  built-in metrics (exact match, token F1, BLEU, ROUGE, ...).
* :mod:`.plugins` — scorers from other packages (entry points ``llmops.scorers``).
* :mod:`.checks` — per-case checks (contains, regex, JSON Schema, length, python).
* :mod:`.judge` — LLM-as-judge: templates, verdict parsing, judge calls, reducing samples.
* :mod:`.similarity` — embeddings through LiteLLM, cosine similarity.
* :mod:`.perplexity` — perplexity from the calls' token log-probabilities.
* :mod:`.operational` — cost, latency and token metrics measured from the calls.
* :mod:`.score` — scoring a run: metrics per case (memoised), judges, aggregates.
* :mod:`.estimate` — the run's calls, tokens and cost range before it runs (``validate``, ``--max-cost``).
* :mod:`.prepare` — what a config needs beyond its YAML (prompt files, templates,
  plugins, checks, judge templates), made ready in one step before any call.

Stands on run (judges and embeddings call models), plan, record, config and core.
"""

from llmops_cli.core.exports import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    "SCORERS": "scorers", "register": "scorers", "score_all": "scorers", "Scorer": "scorers",
    "MetricResult": "scorers", "load_plugins": "plugins", "prepare_checks": "checks",
    "score_run": "score", "score_cases": "score", "prepare": "prepare",
})
__all__ = __dir__()
