"""llmops-cli: an eval gate for LLM applications.

Public API (imported lazily, so ``llmops --help`` stays fast)::

    from llmops_cli import load_config, run_eval, compare, load_record

The packages, in the order data flows through them (each imports only those
before it; ``lint-imports`` checks it): :mod:`.core` → :mod:`.config` →
:mod:`.record` → :mod:`.plan` → :mod:`.run` → :mod:`.measure` → :mod:`.gate` →
:mod:`.report` → :mod:`.jobs` → :mod:`.cli`. See ARCHITECTURE.md.
"""

from llmops_cli.core import __version__
from llmops_cli.core.exports import lazy_exports

_EXPORTS = {
    "load_config": "config", "Config": "config", "config_diff": "core.fingerprint", "fingerprint": "core.fingerprint",
    "load_dataset": "plan.dataset", "Case": "plan.dataset",
    "run_eval": "jobs.runner", "score_outputs": "jobs.runner", "make_plan": "plan.requests", "Plan": "plan.requests",
    "prepare": "measure.prepare",
    "SCORERS": "measure.scorers", "register": "measure.scorers", "score_all": "measure.scorers",
    "MetricResult": "measure.scorers", "mean": "measure.scorers",
    "RunRecord": "record.schema", "load_record": "record.schema", "save_record": "record.schema",
    "Cache": "core.cache",
    "compare": "gate.rules", "Comparison": "gate.comparison",
    "evaluate": "jobs.evaluate", "validate": "jobs.evaluate", "EvalOptions": "jobs.evaluate", "Outcome": "gate.outcome",
    "LlmopsError": "core.errors", "InputError": "core.errors", "RunIncomplete": "core.errors",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = ["__version__", *sorted(_EXPORTS)]
