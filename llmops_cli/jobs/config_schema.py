"""The config file's JSON Schema (draft 2020-12), for editors.

Editors that speak the YAML language server (VS Code's YAML extension, Neovim,
JetBrains, ...) complete keys, show the models' docstrings on hover and flag
mistakes in ``llmops.yaml`` as you type, given a first line naming the
schema by path (as the examples do) or by URL (:data:`SCHEMA_ID`)::

    # yaml-language-server: $schema=../../schema/llmops.schema.json

The schema is generated, never written by hand: it is
``Config.model_json_schema(mode="validation")`` of the pydantic models in
:mod:`llmops_cli.config.models`, plus the rules their validators enforce that
JSON Schema can state (one metric listed once, ``api_base`` starting with
``http://`` or ``https://``, a user template given, a rubric judge's
``criteria``, a faithfulness judge's ``retrieval``, at least one metric or
judge, ``deployments`` not beside ``api_base`` and ``fallbacks`` only with
them). The repository commits a copy as ``schema/llmops.schema.json``;
regenerate it after changing the models with::

    python -m llmops_cli.jobs.config_schema > schema/llmops.schema.json

:func:`~llmops_cli.config.load_config` stays the authority. It also checks
what the schema cannot: metric names (plugins may register more scorers),
``gate.metrics`` naming a metric or judge that runs, a judge not named like a
metric, ``chunking.overlap`` < ``size``, a judge's ``scale`` low < high, the
whole ``api_base`` URL, template syntax and files, and keys given twice. The
schema is stricter on one point: a quoted number (``repeats: "3"``) or a
boolean where a number goes, which pydantic's lax mode converts, is flagged.

Public API: :func:`config_schema`, :func:`schema_text`.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

from llmops_cli.config import answer, measure, models
from llmops_cli.config.models import Config

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_ID = "https://raw.githubusercontent.com/llmops-cli/llmops-cli/main/schema/llmops.schema.json"

# Necessary, not sufficient, for the loader's check (urlsplit: scheme http or
# https in any case, then a non-empty host part with no user:password in it; the
# credential-looking query parameters llmops_cli.core.urls refuses are the loader's).
_HTTP_URL = "^[Hh][Tt][Tt][Pp][Ss]?://[^/?#@]+([/?#].*)?$"


def _set(key: str) -> dict[str, Any]:
    """A subschema matching an object whose ``key`` holds a non-empty string
    (what the validators' ``if self.<key>`` tests)."""
    return {"required": [key], "properties": {key: {"type": "string", "minLength": 1}}}


def _plain(text: str) -> str:
    """A docstring as editor hover text: Sphinx roles become their target, a
    ``:data:`` constant of the models its value (``MAX_TIMEOUT_S`` → 3600)."""

    def sub(m: re.Match) -> str:
        role, name = m.group(1), m.group(2).lstrip("~")
        value = next((getattr(m, name) for m in (models, answer, measure) if hasattr(m, name)), None) if role == "data" else None
        return str(value) if isinstance(value, (int, float)) else f"``{name.rsplit('.', 1)[-1]}``"

    return re.sub(r":(\w+):`([^`]+)`", sub, text)


def config_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a config file, as a fresh dict.

    Generated from :class:`~llmops_cli.config.models.Config` in validation
    mode (class docstrings become descriptions; ``extra="forbid"`` becomes
    ``additionalProperties: false``), with the validators' rules JSON Schema
    can express added. It accepts every config :func:`load_config` accepts,
    except quoted numbers and booleans where a number goes (pydantic's lax
    conversions); :func:`load_config` also checks what it cannot express."""
    from llmops_cli.measure.scorers import SCORERS  # the registry; stdlib imports only

    body = Config.model_json_schema(mode="validation")
    defs = body["$defs"]
    for d in defs.values():
        if "description" in d:
            d["description"] = _plain(d["description"])

    for where in (body, defs["Judge"], defs["Embedding"], defs["Deployment"], defs["Fallback"]):
        api_base = where["properties"]["api_base"]
        api_base["description"] = ("An http(s) URL with a host, e.g. http://127.0.0.1:8000/v1 (an OpenAI-compatible "
                                   "server, a LiteLLM Proxy), with no user, password or credential-looking query "
                                   "parameter (key, api-key, token, sig, ...): the URL is recorded; the key's "
                                   "environment variable goes in api_key_env.")
        for branch in api_base["anyOf"]:
            if branch.get("type") == "string":
                branch["pattern"] = _HTTP_URL
    body["properties"]["deployments"]["anyOf"][0]["minItems"] = 1
    fallback = body["properties"]["fallbacks"]["anyOf"][0]  # a string is a model alone (Config._fallback_models)
    fallback["items"] = {"anyOf": [fallback["items"], {"type": "string"}]}

    names = sorted(SCORERS)
    metrics = body["properties"]["metrics"]
    metrics["description"] = (f"Reference-based metrics, each named once: {', '.join(names)} (plugins may register "
                              "more). LLM judges go under `judges`.")
    metrics["items"]["examples"] = names
    metrics["uniqueItems"] = True

    defs["Prompt"]["allOf"] = [
        {"anyOf": [_set("user"), _set("user_file")], "description": "A user template is required: user or user_file."},
        {"not": {"allOf": [_set("system"), _set("system_file")]},
         "description": "Give system or system_file, not both."},
        {"not": {"allOf": [_set("user"), _set("user_file")]},
         "description": "Give user or user_file, not both."},
    ]
    defs["Judge"]["if"] = {"required": ["type"], "properties": {"type": {"const": "rubric"}}}
    defs["Judge"]["then"] = {**_set("criteria"), "description": "A rubric judge needs criteria."}
    faithfulness_judge = {"required": ["type"], "properties": {"type": {"const": "faithfulness"}}}
    body["allOf"] = [
        {"not": {"required": ["metrics"], "properties": {"metrics": {"type": "array", "maxItems": 0},
                                                       "judges": {"type": "object", "maxProperties": 0}}},
         "description": "At least one metric or judge is required."},
        {"if": {"required": ["judges"],
                "properties": {"judges": {"not": {"additionalProperties": {"not": faithfulness_judge}}}}},
         "then": {"required": ["retrieval"], "properties": {"retrieval": {"type": "object"}}},
         "description": "A faithfulness judge needs a retrieval section."},
        {"not": {"required": ["api_base", "deployments"],
                 "properties": {"api_base": {"type": "string"}, "deployments": {"type": "array"}}},
         "description": "Not api_base and deployments both: give each deployment its own api_base."},
        {"if": {"required": ["fallbacks"], "properties": {"fallbacks": {"type": "array", "minItems": 1}}},
         "then": {"required": ["deployments"], "properties": {"deployments": {"type": "array"}}},
         "description": "fallbacks only with deployments."},
    ]

    del body["title"], body["description"]
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": SCHEMA_ID,
        "$comment": "Generated from llmops_cli/config/models.py by `python -m llmops_cli.jobs.config_schema`; "
                    "do not edit by hand.",
        "title": "llmops-cli config (llmops.yaml)",
        "description": ("The pinned configuration of an llmops-cli eval gate: the model, its parameters, the prompt "
                        "templates and the retrieval setup, plus the eval set, the metrics and judges, the gate rules "
                        "and where the baseline lives. Unknown keys are errors. Relative paths resolve from the "
                        "config file's folder."),
        **body,
    }


def schema_text() -> str:
    """:func:`config_schema` as the text of ``schema/llmops.schema.json``:
    2-space indented JSON, ASCII only (non-ASCII escaped, so any console
    encoding can print it), keys in the models' field order, ending in a
    newline. The same models always give the same text."""
    return json.dumps(config_schema(), indent=2, ensure_ascii=True) + "\n"


if __name__ == "__main__":
    sys.stdout.write(schema_text())
