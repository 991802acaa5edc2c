"""Lazy public names for a package's ``__init__``: ``from llmops_cli.gate import
compare`` imports :mod:`llmops_cli.gate.rules` only when ``compare`` is first
used, so ``llmops --help`` and a fully cached re-run import no more than they
need (no numpy, no LiteLLM)."""

from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_exports(package: str, names: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: each public name maps to the
    submodule (relative to ``package``, e.g. ``"rules"``) that defines it.

    Raises (from ``__getattr__``):
        AttributeError: ``name`` is not one of ``names``.
    """

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{module}"), name)

    def __dir__() -> list[str]:
        return sorted(names)

    return __getattr__, __dir__
