"""The jobs the commands run, each from a config to a record or an :class:`Outcome`.

* :mod:`.runner` — :func:`run_eval`, :func:`score_outputs`: plan → run → measure → record.
* :mod:`.evaluate` — :func:`evaluate`, :func:`validate`, :func:`merge_runs`: the
  ``eval``/``score``/``baseline update``/``validate``/``gate``/``merge`` jobs.
* :mod:`.merge` — checking and merging shard records.
* :mod:`.sequential_run` — a sequential run: the seeded order answered in waves until the gate decides.
* :mod:`.processes`, :mod:`.process_worker` — ``eval --processes N``: one run's shards in worker processes,
  merged and gated as one.
* :mod:`.config_schema` — the config's JSON Schema (with the scorer registry's names), for editors.
* :mod:`.ref_baseline` and :mod:`.gitref` — ``--baseline-ref``: the config at a git
  ref, run and made the baseline.
* :mod:`.view` — ``llmops report``: the HTML report of a saved run.
* :mod:`.watch` — ``eval --watch``.
* :mod:`.starter` — the project ``llmops init`` writes.
* :mod:`.review` — human review sampling and agreement.

The top of the library: stands on every stage and the reports; only :mod:`llmops_cli.cli` is above it.
"""

from llmops_cli.core.exports import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    "run_eval": "runner", "score_outputs": "runner", "evaluate": "evaluate", "validate": "evaluate",
    "EvalOptions": "evaluate", "merge_runs": "evaluate", "merge_records": "merge", "create_project": "starter",
})
__all__ = __dir__()
