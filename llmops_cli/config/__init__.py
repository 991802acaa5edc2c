"""The pinned LLM configuration: one YAML file, validated by pydantic.

* :mod:`.models` — the whole config (pydantic; unknown keys are errors), made of
  :mod:`.answer` (params, prompt, retrieval, eval set) and :mod:`.measure`
  (judges, checks, embedding, gate);
* :mod:`.load` — reading the file (:func:`load_config`, :func:`parse_config`).

The fingerprint and config diff live in :mod:`llmops_cli.core.fingerprint`.
"""

from llmops_cli.core.errors import ConfigError
from llmops_cli.config.load import load_config, parse_config
from llmops_cli.config.answer import MAX_TIMEOUT_S, Chunking, Dataset, Params, Prompt, Retrieval
from llmops_cli.config.measure import Check, Embedding, Gate, GateRule, Judge, JudgeParams, LengthRule, PowerRequirement
from llmops_cli.config.models import MAX_REPEATS, SCHEMA_VERSION, CacheSettings, Config

__all__ = ["ConfigError", "load_config", "parse_config", "MAX_REPEATS", "MAX_TIMEOUT_S", "SCHEMA_VERSION", "CacheSettings", "Check", "Chunking", "Embedding", "LengthRule",
           "Config", "Dataset", "Gate", "GateRule", "Judge", "JudgeParams", "Params", "PowerRequirement", "Prompt",
           "Retrieval"]
