"""The pinned LLM configuration: one YAML file, validated by pydantic.

* :mod:`.models` — the schema (pydantic models; unknown keys are errors);
* :mod:`.load` — reading the file (:func:`load_config`, :func:`parse_config`).

The fingerprint and config diff live in :mod:`llmops_cli.fingerprint`.
"""

from ..errors import ConfigError
from .load import load_config, parse_config
from .models import (MAX_REPEATS, MAX_TIMEOUT_S, SCHEMA_VERSION, Check, Chunking, Config, Embedding, LengthRule, Dataset, Gate, GateRule, Judge,
                     JudgeParams, Params, PowerRequirement, Prompt, Retrieval)

__all__ = ["ConfigError", "load_config", "parse_config", "MAX_REPEATS", "MAX_TIMEOUT_S", "SCHEMA_VERSION", "Check", "Chunking", "Embedding", "LengthRule",
           "Config", "Dataset", "Gate", "GateRule", "Judge", "JudgeParams", "Params", "PowerRequirement", "Prompt",
           "Retrieval"]
