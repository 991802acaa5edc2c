"""Scorers from other packages, through the entry-point group
``llmops.scorers`` (the way simonw/llm and pytest find plugins). They land in
the same registry as the built-in scorers (:data:`llmops_cli.measure.scorers.SCORERS`).

A package declares, in its ``pyproject.toml``::

    [project.entry-points."llmops.scorers"]
    polite = "my_pkg.scorers:polite"

The object an entry point names is either

* a per-case function ``fn(output: str, references: list[str]) -> float``
  (0–1; registered under the entry point's name, aggregated by the mean; a
  function with the attribute ``binary = True`` declares itself pass/fail,
  tested exactly by the gate), or
* anything whose import registers scorers itself with
  :func:`llmops_cli.measure.scorers.register` (a decorated function, or a module).

Plugins are loaded when a config names a metric that is not built in, and by
``llmops scorers``; a plugin's distribution name and version key its
memoised results, so upgrading it re-scores.
"""

from __future__ import annotations

from typing import Any

GROUP = "llmops.scorers"
PLUGINS: dict[str, str] = {}  # scorer name → "distribution==version" that provides it
_loaded = False


def load_plugins() -> dict[str, str]:
    """Load every ``llmops.scorers`` entry point once; returns
    :data:`PLUGINS`. A plugin that fails to load is skipped here and named in
    :data:`FAILED` (a config that names its metric then fails as unknown, with
    the reason)."""
    global _loaded
    if _loaded:
        return PLUGINS
    _loaded = True
    from importlib.metadata import entry_points

    from llmops_cli.measure.scorers import SCORERS, _per_case, register

    for ep in entry_points(group=GROUP):
        dist = getattr(ep, "dist", None)
        source = f"{dist.name}=={dist.version}" if dist is not None else ep.value
        before = set(SCORERS)
        try:
            obj = ep.load()
        except Exception as e:  # a broken plugin must not break llmops for the scorers that work
            FAILED[ep.name] = f"{source}: {type(e).__name__}: {e}"
            continue
        added = set(SCORERS) - before
        if ep.name not in SCORERS and callable(obj):
            fn = obj

            def per_case(outputs, references, name=ep.name, fn=fn) -> Any:
                return _per_case(name, outputs, references, fn)

            register(ep.name, description=(fn.__doc__ or "").strip().split("\n")[0],
                     binary=bool(getattr(fn, "binary", False)), sequential=True)(per_case)  # 0–1 means
            added.add(ep.name)
        for name in added:
            PLUGINS[name] = source
    return PLUGINS


FAILED: dict[str, str] = {}  # entry point name → why it could not be loaded


def plugin_versions() -> tuple[str, ...]:
    """``name=distribution==version`` of the loaded plugin scorers, sorted:
    part of the key of memoised metric results."""
    return tuple(f"{name}={src}" for name, src in sorted(PLUGINS.items()))
