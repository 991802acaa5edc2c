"""llmops-cli: an eval gate for LLM applications.

Public API (imported lazily, so ``llmops --help`` stays fast)::

    from llmops_cli import load_config, run_eval, compare, load_record
"""

__version__ = "0.1.0"

_EXPORTS = {
    "load_config": "config", "Config": "config", "config_diff": "fingerprint", "fingerprint": "fingerprint",
    "load_dataset": "dataset", "Case": "dataset",
    "run_eval": "runner", "score_outputs": "runner", "make_plan": "plan", "Plan": "plan",
    "SCORERS": "scorers", "register": "scorers", "score_all": "scorers",
    "RunRecord": "record", "load_record": "record", "save_record": "record",
    "Cache": "cache",
    "compare": "gate", "Comparison": "comparison",
    "evaluate": "evaluate", "validate": "evaluate", "EvalOptions": "evaluate", "Outcome": "outcome",
    "LlmopsError": "errors", "InputError": "errors", "RunIncomplete": "errors",
}


def __getattr__(name):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(name)


__all__ = sorted(_EXPORTS)
