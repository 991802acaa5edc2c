"""Prompt templates: Jinja2 with undefined variables as errors.

Templates see the case's input fields by name, plus, when retrieval is on,
``chunks`` (list of ``{id, doc_id, text, score}``) and ``context`` (the chunk
texts joined by blank lines).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

from .errors import ConfigError


@lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    return jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False, autoescape=False)


@lru_cache(maxsize=64)
def _compile(text: str) -> jinja2.Template:
    return _env().from_string(text)


def check_template(text: str, path: str | Path, key: str) -> None:
    """Raise :class:`ConfigError` naming ``path`` and ``key`` if ``text`` is
    not valid Jinja2 syntax."""
    try:
        _compile(text)
    except jinja2.TemplateSyntaxError as e:
        raise ConfigError(path, key, f"template syntax error on line {e.lineno}: {e.message}") from None


def render(text: str, variables: dict[str, Any], path: str | Path, key: str) -> str:
    """Render one template. Raises :class:`ConfigError` when the template uses
    a variable the case does not have."""
    try:
        return _compile(text).render(**variables)
    except jinja2.UndefinedError as e:
        raise ConfigError(path, key, f"template error: {e.message}; available: {', '.join(sorted(variables))}") from None
    except jinja2.TemplateError as e:
        raise ConfigError(path, key, f"template error: {e}") from None


def render_messages(system: str | None, user: str, variables: dict[str, Any], path: str | Path) -> list[dict[str, str]]:
    """Render the chat messages for one case: ``[{"role", "content"}, ...]``."""
    messages = []
    if system:
        messages.append({"role": "system", "content": render(system, variables, path, "prompt.system")})
    messages.append({"role": "user", "content": render(user, variables, path, "prompt.user")})
    return messages
