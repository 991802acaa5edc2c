"""The foundation every stage stands on; it imports nothing else of llmops-cli.

* :mod:`.errors` — the exception classes: :class:`InputError` (and ``ConfigError``,
  ``DatasetError``, ``BaselineError``, ``GitError``, ``OutputError``) for bad input,
  exit 2; :class:`RunIncomplete`, exit 3; :class:`Interrupted`.
* :mod:`.fingerprint` — canonical JSON, SHA-256, the config fingerprint and diff.
* :mod:`.files` — tabular reading (JSONL/CSV/JSON), atomic writes, output-path checks.
* :mod:`.urls` — the rule every URL of a config follows: no user, password or credential-looking parameter.
* :mod:`.cache` — the cache of answers and memoised results: keys, ``memoised``,
  the SQLite (local) and Redis (shared) stores.
* :mod:`.exports` — lazy public names for the packages' ``__init__``.
* :mod:`.stop` — SIGTERM and Ctrl-C recorded, so a run that was asked to stop never writes a baseline or a verdict.
"""

from llmops_cli.core.exports import lazy_exports

__version__ = "0.1.0"

__getattr__, __dir__ = lazy_exports(__name__, {
    "LlmopsError": "errors", "InputError": "errors", "ConfigError": "errors", "DatasetError": "errors",
    "BaselineError": "errors", "GitError": "errors", "OutputError": "errors", "RunIncomplete": "errors",
    "Interrupted": "errors",
    "canonical_json": "fingerprint", "sha256_text": "fingerprint", "fingerprint": "fingerprint",
    "config_diff": "fingerprint",
    "read_records": "files", "atomic_write_text": "files", "check_outputs": "files",
    "Cache": "cache", "cache_key": "cache", "memoised": "cache", "open_cache": "cache",
})
__all__ = ["__version__", "lazy_exports", *__dir__()]
