"""The environment a run was made in: installed versions of the libraries
that can change an answer, a retrieval or a score (read from package
metadata, nothing imported), and what changed between two runs' environments.
"""

from __future__ import annotations


def installed_version(name: str) -> str | None:
    """The installed version of distribution ``name``, or ``None``."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


# distributions whose version can change an answer, a retrieval or a score; optional ones are left out when absent
ENVIRONMENT_PACKAGES = ("llmops-cli", "litellm", "bm25s", "sacrebleu", "rouge-score", "nltk", "llama-cpp-python")


def collect_environment() -> dict[str, str]:
    """Installed versions, read from package metadata (nothing is imported):
    ``{"python": "3.11.7", "llmops-cli": "0.1.0", "litellm": "1.106.2",
    "bm25s": ..., "sacrebleu": ..., "rouge-score": ..., "nltk": ...,
    "llama-cpp-python": ...}``; a package that is not installed is left out."""
    import sys

    env = {"python": ".".join(map(str, sys.version_info[:3]))}
    for name in ENVIRONMENT_PACKAGES:
        v = installed_version(name)
        if v is not None:
            env[name] = v
    return env


def environment_changes(old: dict[str, str], new: dict[str, str]) -> list[str]:
    """What differs between two :attr:`RunRecord.environment` blocks, one
    line per package in name order, e.g. ``sacrebleu: 2.5.1 → 2.6.0`` (``—``
    for a package only one side has). An empty ``old`` (a record made before
    environments were recorded) gives ``[]``: unknown is not a change."""
    if not old:
        return []
    return [f"{k}: {old.get(k) or '—'} → {new.get(k) or '—'}"
            for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
