"""The run record: the data every stage writes and every later stage reads.

* :mod:`.schema` — :class:`RunRecord` (config snapshot, cases, calls, scores,
  usage), :class:`CaseRecord`, :class:`Call`, :func:`save_record`, :func:`load_record`.
* :mod:`.compact` — the per-case models held compactly in memory (raw responses as
  JSON text, one shared fields-set, one float object per score value).
* :mod:`.usage` — usage totals over a run's calls and who served them.
* :mod:`.integrity` — a record's numbers are finite and a baseline covers its eval set.
* :mod:`.environment` — the installed library versions recorded with a run, and what
  changed around two runs besides their config (library versions, served-model drift).

It stands on :mod:`llmops_cli.core` only; plan, run and measure fill it in.
"""

from llmops_cli.core.exports import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    "RunRecord": "schema", "CaseRecord": "schema", "Call": "schema", "MetricSummary": "schema", "Usage": "schema",
    "RetrievedChunk": "schema", "RetrievedContext": "schema", "ShardInfo": "schema", "JudgeResult": "schema",
    "SCHEMA_VERSION": "schema", "load_record": "schema", "save_record": "schema",
    "usage_of": "usage", "collect_environment": "environment",
})
__all__ = __dir__()
